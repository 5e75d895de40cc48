//! Stage 4 — layers: deterministic tar layers, compressed into the blob store.
//!
//! Each layer is a sorted list of entries with explicit owner, mode and mtime, so the same
//! inputs give the same bytes on every machine. Layers are ordered by how often they change:
//! base files, CA certificates and tzdata (the same for every crate, so registries and runtimes
//! share them), then the crate's own files, then the binary.

pub mod certs;
pub mod compress;
pub mod tar;
pub mod tzdata;

use crate::blobs::BlobStore;
use crate::metadata::ImageSpec;
use crate::metadata::spec::CaCerts;
use crate::metadata::values::{Compression, TzData};
use crate::verify::VerifiedBinary;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub use crate::files::{Entry, EntryKind, LayerContent, Source, base};

/// A layer in the blob store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Layer {
    /// What the layer holds, for logs and JSON output ("base files", "binary", …).
    pub what: crate::files::LayerKind,
    /// Digest of the compressed blob.
    pub digest: crate::util::digest::Digest,
    /// Digest of the uncompressed tar (the config's rootfs.diff_ids).
    pub diff_id: crate::util::digest::Digest,
    /// Size of the compressed blob.
    pub size: u64,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
    pub media_type: oci_spec::image::MediaType,
    /// Whether this run compressed it (false: reused from the cache).
    #[serde(skip)]
    pub fresh: bool,
    /// Where a base image's layer came from, so a push to the same registry can mount it
    /// from there instead of uploading it (none for the tool's own layers).
    #[serde(skip)]
    pub origin: Option<Origin>,
}

/// A registry repository a layer was pulled from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub registry: String,
    pub repository: String,
}

impl crate::blobs::NamesBlob for Layer {
    fn blob(&self) -> (&crate::util::digest::Digest, u64) {
        (&self.digest, self.size)
    }
}

/// The mtime stamped on the crate's own layers: the image's epoch
/// ([`crate::metadata::spec::Epoch`]: SOURCE_DATE_EPOCH, else the commit's time, else 0), the
/// same time its `created` says. The crate-independent layers always use 0 so that they are
/// shared by every crate.
pub fn crate_mtime(spec: &ImageSpec) -> u64 {
    spec.epoch.seconds()
}

/// Everything the layers shared by every crate depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedInputs {
    pub ca_certs: CaCerts,
    pub tzdata: TzData,
    pub zones: Option<Vec<String>>,
    pub codec: compress::Codec,
    /// The base files (users, groups, /tmp, …) a base image has already: left out of ours,
    /// so the base's own are used.
    pub base_has: Vec<String>,
}

impl SharedInputs {
    pub fn of(spec: &ImageSpec) -> SharedInputs {
        SharedInputs {
            ca_certs: spec.layers.ca_certs.clone(),
            tzdata: spec.layers.tzdata,
            zones: spec.layers.zones.clone(),
            codec: compress::Codec::of(spec),
            base_has: Vec::new(),
        }
    }
}

/// What goes into the layers that do not depend on the crate: base files, CA certificates,
/// tzdata. The Dockerfile template lays out the same contents.
pub fn shared_contents(spec: &ImageSpec) -> Result<Vec<LayerContent>> {
    contents_of(&SharedInputs::of(spec))
}

fn contents_of(inputs: &SharedInputs) -> Result<Vec<LayerContent>> {
    let mut ours = base::content();
    ours.entries.retain(|e| !inputs.base_has.contains(&e.path));
    let mut contents = Vec::new();
    if !ours.entries.is_empty() {
        contents.push(ours);
    }
    if let Some(c) = certs::content(&inputs.ca_certs)? {
        contents.push(c);
    }
    if let Some(c) = tzdata::content(&inputs.tzdata, inputs.zones.as_deref())? {
        contents.push(c);
    }
    Ok(contents)
}

/// The layers that do not depend on the crate or the platform.
pub fn shared_layers(inputs: &SharedInputs, store: &BlobStore) -> Result<Vec<Layer>> {
    let codec = inputs.codec;
    let alias = shared_alias(inputs);
    let index = crate::blobs::LayerIndex::of(store);
    if let Some(alias) = &alias
        && let Some(keys) = index.cached::<Vec<String>>(alias)
        && let Some(layers) = keys
            .iter()
            .map(|k| index.cached_blob::<Layer>(k))
            .collect::<Option<Vec<Layer>>>()
    {
        return Ok(layers);
    }
    let mut layers = Vec::new();
    let mut keys = Vec::new();
    for c in contents_of(inputs)? {
        let (layer, key) = tar::write_layer_keyed(&c, store, codec)?;
        layers.push(layer);
        keys.push(key);
    }
    if let Some(alias) = alias {
        index.remember(&alias, &keys)?;
    }
    Ok(layers)
}

/// A shortcut to the shared layers' cache entries: the embedded certificates and zones are
/// part of this executable, so the same executable with the same settings makes the same
/// layers. Finding them by that saves a rerun from laying out and hashing ~600 embedded files
/// (a couple of milliseconds of a no-op rerun). None when the content comes from the host's
/// zoneinfo, whose many files would all need a check.
fn shared_alias(inputs: &SharedInputs) -> Option<String> {
    use crate::blobs::Stat;
    let exe = std::env::current_exe().ok()?;
    let exe_stat = Stat::of(&exe)?;
    let certs_stat = match &inputs.ca_certs {
        // A bundle changed within the last two seconds could change again unseen within the
        // same timestamp tick (racily clean): no shortcut for it.
        CaCerts::File(p) => Some(Stat::of(p).filter(|s| !s.is_recent())?),
        _ => None,
    };
    if inputs.tzdata == TzData::Host {
        return None;
    }
    Some(crate::memo::key(&[
        b"shared layers alias v1",
        exe.as_os_str().as_encoded_bytes(),
        format!("{exe_stat:?} {certs_stat:?} {inputs:?}").as_bytes(),
    ]))
}

/// The entries the settings generate (not copied from the package): /etc/localtime for
/// `timezone`, and the WORKDIR directory, which exists in the image as a Dockerfile's WORKDIR
/// would create it.
pub fn generated_entries(spec: &ImageSpec) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    if let Some(tz) = &spec.layers.timezone {
        entries.push(tzdata::localtime_entry(
            &spec.layers.tzdata,
            spec.layers.zones.as_deref(),
            tz,
        )?);
    }
    if let Some(w) = spec.config.workdir.as_deref().filter(|w| *w != "/")
        && !spec.layers.includes.iter().any(|i| i.dest == w)
    {
        entries.push(Entry::dir(w, 0o755));
    }
    Ok(entries)
}

/// The crate's own files: `include`s and the generated entries, if any.
pub fn files_layer(spec: &ImageSpec, store: &BlobStore) -> Result<Option<Layer>> {
    let mut entries: Vec<Entry> = spec
        .layers
        .includes
        .iter()
        .map(|inc| {
            if inc.is_dir {
                Entry::dir(&inc.dest, inc.mode)
            } else {
                Entry::file(&inc.dest, Source::Path(inc.src.clone()), inc.mode)
            }
        })
        .collect();
    entries.extend(generated_entries(spec)?);
    if entries.is_empty() {
        return Ok(None);
    }
    let content = LayerContent {
        what: crate::files::LayerKind::Files,
        entries,
        mtime: crate_mtime(spec),
    };
    tar::write_layer(&content, store, compress::Codec::of(spec)).map(Some)
}

/// The binary, at its path in the image, mode 0755; and its sha256 when this call read it
/// (the layer was not in the cache), for documents about the image.
pub fn binary_layer(
    spec: &ImageSpec,
    bin: &VerifiedBinary,
    store: &BlobStore,
) -> Result<(Layer, Option<crate::util::digest::Digest>)> {
    let content = LayerContent {
        what: crate::files::LayerKind::Binary,
        entries: vec![Entry::file(
            &spec.config.binary_path,
            Source::Path(PathBuf::from(&bin.path)),
            0o755,
        )],
        mtime: crate_mtime(spec),
    };
    tar::write_layer_digesting(&content, store, compress::Codec::of(spec))
}

pub fn media_type(c: Compression) -> oci_spec::image::MediaType {
    match c {
        Compression::Gzip => oci_spec::image::MediaType::ImageLayerGzip,
        Compression::Zstd => oci_spec::image::MediaType::ImageLayerZstd,
    }
}
