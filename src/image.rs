//! Stage 5 — image: the OCI config and manifest (and, for several platforms, the index).
//!
//! Built with oci-spec's types and serialized canonically (keys sorted, no whitespace): the
//! digest is over these exact bytes, so they must not depend on hash-map order.

use crate::blobs::{BlobStore, digest_of};
use crate::layers::Layer;
use crate::metadata::ImageSpec;
use crate::platform::Platform;
use anyhow::{Context, Result};
use oci_spec::image::{
    Arch, Config, Descriptor, History, HistoryBuilder, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, Os, PlatformBuilder, RootFsBuilder,
};
use serde::Serialize;
use std::collections::HashMap;
use std::str::FromStr;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// A JSON document stored as a blob: its exact bytes and their digest.
#[derive(Debug, Clone)]
pub struct Blob {
    pub bytes: Vec<u8>,
    pub digest: String,
    pub media_type: &'static str,
}

impl Blob {
    fn new(bytes: Vec<u8>, media_type: &'static str) -> Blob {
        Blob {
            digest: digest_of(&bytes),
            bytes,
            media_type,
        }
    }
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// One platform's image: its layers, config and manifest.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    pub platform: Platform,
    pub layers: Vec<Layer>,
    pub config: Blob,
    pub manifest: Blob,
}

impl PlatformImage {
    /// Bytes a client pulls: manifest, config and every layer.
    pub fn size(&self) -> u64 {
        self.manifest.size() + self.config.size() + self.layers.iter().map(|l| l.size).sum::<u64>()
    }
}

/// The finished image: one manifest, or an index over several.
#[derive(Debug, Clone)]
pub struct Image {
    pub platforms: Vec<PlatformImage>,
    /// Present when the image has more than one platform.
    pub index: Option<Blob>,
}

impl Image {
    /// The descriptor that names the whole image: the index, or the only manifest.
    pub fn top(&self) -> &Blob {
        self.index.as_ref().unwrap_or(&self.platforms[0].manifest)
    }
    pub fn digest(&self) -> &str {
        &self.top().digest
    }

    /// Writes the JSON documents into the store so outputs can treat every blob alike. A
    /// document already there is reused only if it holds exactly these bytes (an edited one
    /// is replaced, with a warning): see [`BlobStore::put`].
    pub fn store_documents(&self, store: &BlobStore) -> Result<()> {
        for p in &self.platforms {
            store.put(&p.config.bytes)?;
            store.put(&p.manifest.bytes)?;
        }
        if let Some(i) = &self.index {
            store.put(&i.bytes)?;
        }
        Ok(())
    }

    /// Every blob digest the image references, each once, documents included.
    pub fn all_blobs(&self) -> Vec<(String, u64)> {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        let mut add = |d: &str, n: u64| {
            if seen.insert(d.to_string()) {
                out.push((d.to_string(), n));
            }
        };
        for p in &self.platforms {
            for l in &p.layers {
                add(&l.digest, l.size);
            }
            add(&p.config.digest, p.config.size());
            add(&p.manifest.digest, p.manifest.size());
        }
        if let Some(i) = &self.index {
            add(&i.digest, i.size());
        }
        out
    }
}

/// Serializes with sorted keys and no whitespace, whatever map types the value uses.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    fn sort(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let mut entries: Vec<_> = m.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sort(v))).collect())
            }
            serde_json::Value::Array(a) => {
                serde_json::Value::Array(a.into_iter().map(sort).collect())
            }
            other => other,
        }
    }
    Ok(serde_json::to_vec(&sort(serde_json::to_value(value)?))?)
}

fn oci_arch(p: Platform) -> Arch {
    match p {
        Platform::Amd64 => Arch::Amd64,
        Platform::Arm64 => Arch::ARM64,
    }
}

fn descriptor(media_type: &str, size: u64, digest: &str) -> Result<Descriptor> {
    let digest = oci_spec::image::Digest::from_str(digest).context("invalid digest")?;
    Ok(Descriptor::new(MediaType::from(media_type), size, digest))
}

fn oci_platform(p: Platform) -> Result<oci_spec::image::Platform> {
    let mut b = PlatformBuilder::default()
        .architecture(oci_arch(p))
        .os(Os::Linux);
    if let Some(v) = p.variant() {
        b = b.variant(v);
    }
    Ok(b.build()?)
}

/// What an image is built on: the layers below the appended ones, their history, and the
/// runtime config they bring. go-containerregistry's `empty.Image` is the model: [`Base::scratch`]
/// is the base with nothing in it, and [`assemble`] appends to whatever base it is given, so
/// nothing downstream assumes there is nothing below the crate's layers (a `from` setting
/// would only have to make another `Base`).
#[derive(Debug, Clone, Default)]
pub struct Base {
    /// Layers below the appended ones, bottom first, their blobs in the store.
    pub layers: Vec<Layer>,
    /// The base config's history, bottom first (entries with `empty_layer` included).
    pub history: Vec<History>,
    /// The runtime config (env, entrypoint, labels, …) the image's settings are laid over.
    pub config: Config,
}

impl Base {
    /// The empty base: no layers, no history, an empty config.
    pub fn scratch() -> Base {
        Base::default()
    }
}

/// `base`'s runtime config with the image's settings laid over it, as a Dockerfile's
/// instructions would: ENV replaces a variable of the same name and appends the others;
/// ENTRYPOINT replaces the base's and resets its CMD; LABEL and EXPOSE add to the base's;
/// USER, WORKDIR and STOPSIGNAL replace it when given. Over scratch this is the settings alone.
fn configure(base: &Config, spec: &ImageSpec) -> Config {
    let mut cfg = base.clone();
    cfg.set_user(Some(spec.user.clone()));
    let mut env = base.env().clone().unwrap_or_default();
    for (k, v) in &spec.env {
        let line = format!("{k}={v}");
        match env
            .iter_mut()
            .find(|e| e.split('=').next() == Some(k.as_str()))
        {
            Some(e) => *e = line,
            None => env.push(line),
        }
    }
    cfg.set_env(Some(env));
    cfg.set_entrypoint(Some(spec.entrypoint.clone()));
    cfg.set_cmd((!spec.cmd.is_empty()).then(|| spec.cmd.clone()));
    let mut labels = base.labels().clone().unwrap_or_default();
    labels.extend(spec.labels.clone());
    cfg.set_labels(Some(labels));
    if let Some(w) = &spec.workdir {
        cfg.set_working_dir(Some(w.clone()));
    }
    let mut ports = base.exposed_ports().clone().unwrap_or_default();
    for p in &spec.ports {
        if !ports.contains(p) {
            ports.push(p.clone());
        }
    }
    cfg.set_exposed_ports((!ports.is_empty()).then_some(ports));
    if let Some(sig) = &spec.stop_signal {
        cfg.set_stop_signal(Some(sig.clone()));
    }
    cfg
}

/// The history entry of a layer this tool appends.
fn history_of(spec: &ImageSpec, layer: &Layer) -> Result<History> {
    Ok(HistoryBuilder::default()
        .created(spec.created.clone())
        .created_by(format!(
            "cargo-containerize {}: {}",
            env!("CARGO_PKG_VERSION"),
            layer.what
        ))
        .comment(layer.what.clone())
        .build()?)
}

/// One platform's image: `base` with `appended` on top (go-containerregistry's
/// `mutate.Append`) and the settings laid over its config. Layers, diff_ids and history are
/// the base's followed by the appended ones'.
pub fn assemble(
    spec: &ImageSpec,
    platform: Platform,
    base: &Base,
    appended: Vec<Layer>,
) -> Result<PlatformImage> {
    let mut history = base.history.clone();
    for l in &appended {
        history.push(history_of(spec, l)?);
    }
    let mut layers = base.layers.clone();
    layers.extend(appended);
    let mut config = ImageConfigurationBuilder::default()
        .created(spec.created.clone())
        .architecture(oci_arch(platform))
        .os(Os::Linux)
        .config(configure(&base.config, spec))
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>())
                .build()?,
        )
        .history(history)
        .build()?;
    if let Some(v) = platform.variant() {
        config.set_variant(Some(v.to_string()));
    }
    let config = Blob::new(canonical_json(&config)?, CONFIG_MEDIA_TYPE);

    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(
            CONFIG_MEDIA_TYPE,
            config.size(),
            &config.digest,
        )?)
        .layers(
            layers
                .iter()
                .map(|l| descriptor(&l.media_type, l.size, &l.digest))
                .collect::<Result<Vec<_>>>()?,
        )
        .annotations(spec.labels.clone().into_iter().collect::<HashMap<_, _>>())
        .build()?;
    let manifest = Blob::new(canonical_json(&manifest)?, MANIFEST_MEDIA_TYPE);
    Ok(PlatformImage {
        platform,
        layers,
        config,
        manifest,
    })
}

/// Puts the platforms' images together: one manifest alone, or an index over several.
pub fn finish(spec: &ImageSpec, mut platforms: Vec<PlatformImage>) -> Result<Image> {
    platforms.sort_by_key(|p| p.platform);
    let index = if platforms.len() > 1 {
        let manifests = platforms
            .iter()
            .map(|p| {
                let mut d = descriptor(MANIFEST_MEDIA_TYPE, p.manifest.size(), &p.manifest.digest)?;
                d.set_platform(Some(oci_platform(p.platform)?));
                Ok(d)
            })
            .collect::<Result<Vec<_>>>()?;
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests)
            .annotations(spec.labels.clone().into_iter().collect::<HashMap<_, _>>())
            .build()?;
        Some(Blob::new(canonical_json(&index)?, INDEX_MEDIA_TYPE))
    } else {
        None
    };
    Ok(Image { platforms, index })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_hash_maps() {
        let mut a = HashMap::new();
        for k in ["z", "a", "m", "b", "y"] {
            a.insert(k.to_string(), 1);
        }
        let bytes = canonical_json(&a).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"a":1,"b":1,"m":1,"y":1,"z":1}"#
        );
    }
}
