//! The `--message-format json` schema: what `cargo containerize build` prints on stdout, one
//! JSON object per run (as cargo's `machine_message.rs` holds cargo's). Field names and order
//! are the interface: scripts read them, so a change here is a change of that interface.

use crate::attest::Attached;
use crate::image::Image;
use crate::layers::Layer;
use crate::metadata::ImageSpec;
use crate::outputs::{Pushed, Written};
use crate::util::digest::Digest;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    pub digest: Digest,
    pub size: u64,
    pub what: crate::files::LayerKind,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManifestReport {
    pub platform: String,
    pub digest: Digest,
    pub size: u64,
    pub layers: Vec<LayerReport>,
}

/// The result, as `--message-format json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub bin: String,
    /// The platform, or a comma-separated list for an index.
    pub platform: String,
    /// The digest of the manifest (or of the index, for several platforms).
    pub digest: Digest,
    /// Bytes of the image: manifests, configs and layers (shared layers once).
    pub size: u64,
    /// The first platform's layers.
    pub layers: Vec<LayerReport>,
    pub manifests: Vec<ManifestReport>,
    pub outputs: Vec<String>,
    /// Layers compressed by this run (the others came from the cache).
    pub layers_built: usize,
    /// Every pushed reference (`REF@sha256:…` in JSON).
    pub pushed: Vec<Pushed>,
    pub bytes_uploaded: u64,
    pub blobs_uploaded: usize,
    pub blobs_skipped: usize,
    pub blobs_mounted: usize,
    /// The documents attached to the image's manifests (OCI 1.1 referrers): provenance, SBOMs.
    pub referrers: Vec<Attached>,
    /// Why the run stopped after writing part of its outputs (then the run fails, and the
    /// report says what was written: e.g. an image pushed without its referrers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The debug variant (`--debug`): the same report for the image on `debug-from`, its
    /// `-debug` references, digest, referrers and pushes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug: Option<Box<Report>>,
}

fn layer_reports(layers: &[Layer]) -> Vec<LayerReport> {
    layers
        .iter()
        .map(|l| LayerReport {
            digest: l.digest.clone(),
            size: l.size,
            what: l.what.clone(),
        })
        .collect()
}

impl Report {
    /// What the run made: `image` (with `referrers` attached) and what each output wrote.
    pub fn new(
        spec: &ImageSpec,
        image: &Image,
        written: Vec<Written>,
        referrers: Vec<Attached>,
    ) -> Report {
        let fresh: std::collections::BTreeSet<&Digest> = image
            .platforms
            .iter()
            .flat_map(|p| p.layers.iter().filter(|l| l.fresh).map(|l| &l.digest))
            .collect();
        Report {
            pushed: written.iter().flat_map(|w| w.pushed.clone()).collect(),
            bytes_uploaded: written.iter().map(|w| w.bytes_uploaded).sum(),
            blobs_uploaded: written.iter().map(|w| w.blobs_uploaded).sum(),
            blobs_skipped: written.iter().map(|w| w.blobs_skipped).sum(),
            blobs_mounted: written.iter().map(|w| w.blobs_mounted).sum(),
            bin: spec.build.bin.clone(),
            platform: image
                .platforms
                .iter()
                .map(|p| p.platform.to_string())
                .collect::<Vec<_>>()
                .join(","),
            digest: image.digest().clone(),
            size: image.size(),
            layers: layer_reports(&image.platforms[0].layers),
            manifests: image
                .platforms
                .iter()
                .map(|p| ManifestReport {
                    platform: p.platform.to_string(),
                    digest: p.manifest.digest.clone(),
                    size: p.size(),
                    layers: layer_reports(&p.layers),
                })
                .collect(),
            outputs: written.into_iter().map(|w| w.output).collect(),
            layers_built: fresh.len(),
            referrers,
            error: None,
            debug: None,
        }
    }
}
