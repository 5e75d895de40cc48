//! Stage 5 — image: the OCI config and manifest (and, for several platforms, the index).
//!
//! An image is a [`Base`] (scratch, the empty one, today) with the crate's layers appended and
//! the settings laid over its config; it carries its [`Attachment`]s (referrers), and
//! [`Image::blobs`] is the one list of every blob it and they need, which every output uses.
//!
//! Built with oci-spec's types and serialized canonically (keys sorted, no whitespace): the
//! digest is over these exact bytes, so they must not depend on hash-map order.

pub mod base;

use crate::blobs::BlobStore;
use crate::layers::Layer;
use crate::metadata::ImageSpec;
use crate::metadata::values::texts;
use crate::platform::Platform;
use crate::util::digest::Digest;
use anyhow::Result;
use oci_spec::image::{
    Arch, Config, Descriptor, History, HistoryBuilder, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, Os, PlatformBuilder, RootFsBuilder,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// A JSON document stored as a blob: its exact bytes and their digest.
#[derive(Debug, Clone)]
pub struct Blob {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: MediaType,
}

impl Blob {
    fn new(bytes: Vec<u8>, media_type: MediaType) -> Blob {
        Blob {
            digest: Digest::sha256_of(&bytes),
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

    /// Its blobs, each before the document that references it: layers, config, manifest.
    pub fn blobs(&self) -> impl Iterator<Item = BlobRef<'_>> {
        let layers = self.layers.iter().map(|l| BlobRef {
            digest: &l.digest,
            size: l.size,
            media_type: &l.media_type,
            kind: BlobKind::Layer(l),
        });
        layers.chain([
            BlobRef::document(&self.config, BlobKind::Config),
            BlobRef::document(&self.manifest, BlobKind::Manifest),
        ])
    }
}

/// A blob an attachment carries (an SBOM document, a signature), already in the blob store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedBlob {
    pub digest: Digest,
    pub size: u64,
    pub media_type: MediaType,
}

/// A manifest that points at the image: an OCI 1.1 referrer (an SBOM, a provenance statement,
/// a signature). Its manifest names the `subject` it is about (the index or one platform's
/// manifest) and says what it is in `artifactType`; its config is the empty descriptor and its
/// layers are the blobs it carries. Outputs that have a place for referrers write it after
/// its subject: layouts list it in index.json, registries get it after the subject's push.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub artifact_type: MediaType,
    /// The digest of the manifest or index it refers to.
    pub subject: Digest,
    pub config: Blob,
    pub blobs: Vec<AttachedBlob>,
    pub manifest: Blob,
}

impl Attachment {
    /// The artifact manifest for `blobs` (already in the store) about `subject`.
    pub fn new(
        artifact_type: MediaType,
        subject: &Blob,
        blobs: Vec<AttachedBlob>,
        annotations: &BTreeMap<String, String>,
    ) -> Result<Attachment> {
        let config = Blob::new(b"{}".to_vec(), MediaType::EmptyJSON);
        let mut manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .artifact_type(artifact_type.clone())
            .config(descriptor(
                &config.media_type,
                config.size(),
                &config.digest,
            )?)
            .layers(
                blobs
                    .iter()
                    .map(|b| descriptor(&b.media_type, b.size, &b.digest))
                    .collect::<Result<Vec<_>>>()?,
            )
            .subject(descriptor(
                &subject.media_type,
                subject.size(),
                &subject.digest,
            )?)
            .build()?;
        if !annotations.is_empty() {
            manifest.set_annotations(Some(annotations.clone().into_iter().collect()));
        }
        Ok(Attachment {
            artifact_type,
            subject: subject.digest.clone(),
            config,
            blobs,
            manifest: Blob::new(canonical_json(&manifest)?, MediaType::ImageManifest),
        })
    }

    /// How an index lists it (index.json, the referrers API and its tag schema): its
    /// manifest's descriptor with `artifactType` and the manifest's annotations.
    pub fn oci_descriptor(&self) -> Result<Descriptor> {
        let mut d = descriptor(
            &self.manifest.media_type,
            self.manifest.size(),
            &self.manifest.digest,
        )?;
        d.set_artifact_type(Some(self.artifact_type.clone()));
        let manifest: oci_spec::image::ImageManifest =
            serde_json::from_slice(&self.manifest.bytes)?;
        d.set_annotations(manifest.annotations().clone());
        Ok(d)
    }

    /// [`Attachment::oci_descriptor`] as JSON.
    pub fn descriptor(&self) -> Result<serde_json::Value> {
        Ok(serde_json::to_value(self.oci_descriptor()?)?)
    }

    /// Its blobs, then its manifest.
    fn blobs(&self) -> impl Iterator<Item = BlobRef<'_>> {
        let carried = self.blobs.iter().map(move |b| BlobRef {
            digest: &b.digest,
            size: b.size,
            media_type: &b.media_type,
            kind: BlobKind::AttachmentBlob(self),
        });
        std::iter::once(BlobRef::document(
            &self.config,
            BlobKind::AttachmentBlob(self),
        ))
        .chain(carried)
        .chain([BlobRef::document(
            &self.manifest,
            BlobKind::AttachmentManifest(self),
        )])
    }
}

/// What a blob is to the image.
#[derive(Debug, Clone, Copy)]
pub enum BlobKind<'a> {
    Layer(&'a Layer),
    Config,
    /// One platform's manifest.
    Manifest,
    Index,
    /// A blob (or the empty config) of an attachment.
    AttachmentBlob(&'a Attachment),
    AttachmentManifest(&'a Attachment),
}

/// One blob of an image, as [`Image::blobs`] lists them.
#[derive(Debug, Clone, Copy)]
pub struct BlobRef<'a> {
    pub digest: &'a Digest,
    pub size: u64,
    pub media_type: &'a MediaType,
    pub kind: BlobKind<'a>,
}

impl<'a> BlobRef<'a> {
    fn document(b: &'a Blob, kind: BlobKind<'a>) -> BlobRef<'a> {
        BlobRef {
            digest: &b.digest,
            size: b.size(),
            media_type: &b.media_type,
            kind,
        }
    }

    /// A manifest or index: registries take it by PUT, after every blob it references.
    pub fn is_manifest(&self) -> bool {
        matches!(
            self.kind,
            BlobKind::Manifest | BlobKind::Index | BlobKind::AttachmentManifest(_)
        )
    }

    /// Part of an attachment rather than of the image itself.
    pub fn is_attachment(&self) -> bool {
        matches!(
            self.kind,
            BlobKind::AttachmentBlob(_) | BlobKind::AttachmentManifest(_)
        )
    }

    /// What it is, for logs: the layer's `what`, "config", or the attachment's artifact type.
    pub fn what(&self) -> &'a str {
        match self.kind {
            BlobKind::Layer(l) => l.what.as_str(),
            BlobKind::Config => "config",
            BlobKind::Manifest => "manifest",
            BlobKind::Index => "index",
            BlobKind::AttachmentBlob(a) | BlobKind::AttachmentManifest(a) => {
                a.artifact_type.as_ref()
            }
        }
    }
}

/// The finished image: one manifest, or an index over several, and what is attached to it.
#[derive(Debug, Clone)]
pub struct Image {
    pub platforms: Vec<PlatformImage>,
    /// Present when the image has more than one platform.
    pub index: Option<Blob>,
    /// Referrers of the image or of one of its manifests (made by the attest stage).
    pub attachments: Vec<Attachment>,
}

impl Image {
    /// The descriptor that names the whole image: the index, or the only manifest.
    pub fn top(&self) -> &Blob {
        self.index.as_ref().unwrap_or(&self.platforms[0].manifest)
    }
    pub fn digest(&self) -> &Digest {
        &self.top().digest
    }

    /// The same image with nothing attached: what an output that does not carry referrers
    /// writes.
    pub fn without_attachments(&self) -> Image {
        Image {
            platforms: self.platforms.clone(),
            index: self.index.clone(),
            attachments: Vec::new(),
        }
    }

    /// Attaches a referrer to the image or to one of its platforms' manifests.
    pub fn attach(&mut self, attachment: Attachment) -> Result<()> {
        let subjects = self
            .platforms
            .iter()
            .map(|p| &p.manifest.digest)
            .chain(self.index.as_ref().map(|i| &i.digest));
        if !subjects.into_iter().any(|d| *d == attachment.subject) {
            anyhow::bail!(
                "an attachment refers to {}, which is not a manifest of this image",
                attachment.subject
            );
        }
        self.attachments.push(attachment);
        Ok(())
    }

    /// Writes the JSON documents into the store so outputs can treat every blob alike. A
    /// document already there is reused only if it holds exactly these bytes (an edited one
    /// is replaced, with a warning): see [`BlobStore::put`].
    pub fn store_documents(&self, store: &BlobStore) -> Result<()> {
        for b in self.blobs() {
            if let Some(doc) = self.document(b.digest) {
                store.put(&doc.bytes)?;
            }
        }
        Ok(())
    }

    /// The JSON document (config, manifest, index) with this digest.
    pub fn document(&self, digest: &Digest) -> Option<&Blob> {
        let platforms = self.platforms.iter().flat_map(|p| [&p.config, &p.manifest]);
        let attachments = self
            .attachments
            .iter()
            .flat_map(|a| [&a.config, &a.manifest]);
        platforms
            .chain(&self.index)
            .chain(attachments)
            .find(|b| b.digest == *digest)
    }

    /// Every blob the image and its attachments need, each once, in an order where each comes
    /// before every document that references it and an attachment after its subject: for each
    /// platform its layers, config and manifest; then the index; then each attachment's config
    /// and blobs and its manifest. Every output goes through this: layouts and archives write
    /// these blobs, registries get them in this order, a layout keeps them when it collects
    /// garbage and removes them when its write fails.
    pub fn blobs(&self) -> impl Iterator<Item = BlobRef<'_>> {
        let mut seen = std::collections::HashSet::new();
        self.platforms
            .iter()
            .flat_map(PlatformImage::blobs)
            .chain(
                self.index
                    .iter()
                    .map(|i| BlobRef::document(i, BlobKind::Index)),
            )
            .chain(self.attachments.iter().flat_map(Attachment::blobs))
            .filter(move |b| seen.insert(b.digest))
    }

    /// Bytes of the image itself (manifests, configs, layers; shared layers once), without
    /// its attachments: what a client pulls to run it.
    pub fn size(&self) -> u64 {
        self.blobs()
            .filter(|b| !b.is_attachment())
            .map(|b| b.size)
            .sum()
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

pub(crate) fn descriptor(media_type: &MediaType, size: u64, digest: &Digest) -> Result<Descriptor> {
    Ok(Descriptor::new(media_type.clone(), size, digest.to_oci()))
}

pub(crate) fn oci_platform(p: Platform) -> Result<oci_spec::image::Platform> {
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
    /// Annotations each manifest on it gets (`org.opencontainers.image.base.name` and
    /// `.base.digest`; none for scratch).
    pub annotations: BTreeMap<String, String>,
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
/// USER, WORKDIR and STOPSIGNAL replace it when given (USER: the setting, else the base's
/// when it has one, else the default). Over scratch this is the settings alone.
fn configure(base: &Config, spec: &ImageSpec) -> Config {
    let mut cfg = base.clone();
    let base_user = base.user().as_deref().filter(|u| !u.is_empty());
    if spec.config.user_given || base_user.is_none() {
        cfg.set_user(Some(spec.config.user.to_string()));
    }
    let mut env = base.env().clone().unwrap_or_default();
    for (k, v) in &spec.config.env {
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
    cfg.set_entrypoint(Some(spec.config.entrypoint.to_strings()));
    cfg.set_cmd((!spec.config.cmd.is_empty()).then(|| texts(&spec.config.cmd)));
    let mut labels = base.labels().clone().unwrap_or_default();
    labels.extend(spec.config.labels.clone());
    cfg.set_labels(Some(labels));
    if let Some(w) = &spec.config.workdir {
        cfg.set_working_dir(Some(w.to_string()));
    }
    let mut ports = base.exposed_ports().clone().unwrap_or_default();
    for p in &spec.config.ports {
        let p = p.to_string();
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    cfg.set_exposed_ports((!ports.is_empty()).then_some(ports));
    if let Some(sig) = &spec.config.stop_signal {
        cfg.set_stop_signal(Some(sig.to_string()));
    }
    cfg
}

/// The history entry of a layer this tool appends.
fn history_of(spec: &ImageSpec, layer: &Layer) -> Result<History> {
    Ok(HistoryBuilder::default()
        .created(spec.created())
        .created_by(format!(
            "cargo-containerize {}: {}",
            env!("CARGO_PKG_VERSION"),
            layer.what
        ))
        .comment(layer.what.to_string())
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
        .created(spec.created())
        .architecture(oci_arch(platform))
        .os(Os::Linux)
        .config(configure(&base.config, spec))
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(
                    layers
                        .iter()
                        .map(|l| l.diff_id.to_string())
                        .collect::<Vec<_>>(),
                )
                .build()?,
        )
        .history(history)
        .build()?;
    if let Some(v) = platform.variant() {
        config.set_variant(Some(v.to_string()));
    }
    let config = Blob::new(canonical_json(&config)?, MediaType::ImageConfig);

    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(
            &config.media_type,
            config.size(),
            &config.digest,
        )?)
        .layers(
            layers
                .iter()
                .map(|l| descriptor(&l.media_type, l.size, &l.digest))
                .collect::<Result<Vec<_>>>()?,
        )
        .annotations(annotations(spec, &base.annotations))
        .build()?;
    let manifest = Blob::new(canonical_json(&manifest)?, MediaType::ImageManifest);
    Ok(PlatformImage {
        platform,
        layers,
        config,
        manifest,
    })
}

/// The manifest's and the index's annotations: the image's labels, and the base's
/// (`base.name`, `base.digest`) when it has a base.
fn annotations(spec: &ImageSpec, base: &BTreeMap<String, String>) -> HashMap<String, String> {
    spec.config
        .labels
        .clone()
        .into_iter()
        .chain(base.clone())
        .collect()
}

/// Puts the platforms' images together: one manifest alone, or an index over several.
pub fn finish(spec: &ImageSpec, platforms: Vec<PlatformImage>) -> Result<Image> {
    finish_on(spec, platforms, &BTreeMap::new())
}

/// [`finish`], the index annotated with `base` (a base image's name and index digest).
pub fn finish_on(
    spec: &ImageSpec,
    mut platforms: Vec<PlatformImage>,
    base: &BTreeMap<String, String>,
) -> Result<Image> {
    platforms.sort_by_key(|p| p.platform);
    let index = if platforms.len() > 1 {
        let manifests = platforms
            .iter()
            .map(|p| {
                let mut d = descriptor(
                    &p.manifest.media_type,
                    p.manifest.size(),
                    &p.manifest.digest,
                )?;
                d.set_platform(Some(oci_platform(p.platform)?));
                Ok(d)
            })
            .collect::<Result<Vec<_>>>()?;
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests)
            .annotations(annotations(spec, base))
            .build()?;
        Some(Blob::new(canonical_json(&index)?, MediaType::ImageIndex))
    } else {
        None
    };
    Ok(Image {
        platforms,
        index,
        attachments: Vec::new(),
    })
}

/// A small image and an attachment, for the tests of every output.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::layers::compress::Codec;
    use crate::metadata::spec::CaCerts;
    use crate::metadata::values::{Compression, TzData};

    /// [`ImageSpec::example`] with what these tests rely on: a PATH, no CA bundle or
    /// tzdata, one platform, and a `created` time (the default epoch, 1970).
    pub fn spec() -> ImageSpec {
        let mut spec = ImageSpec::example();
        spec.config.env = vec![("PATH".parse().unwrap(), "/bin".parse().unwrap())];
        spec.layers.ca_certs = CaCerts::None;
        spec.layers.tzdata = TzData::None;
        spec.build.platforms = vec![Platform::Amd64];
        spec
    }

    /// One layer (the base files) on scratch, for each platform, its documents stored.
    pub fn image(store: &BlobStore, platforms: &[Platform]) -> Image {
        let codec = Codec {
            kind: Compression::Gzip,
            level: 5,
        };
        let layer =
            crate::layers::tar::write_layer(&crate::files::base::content(), store, codec).unwrap();
        let spec = spec();
        let per = platforms
            .iter()
            .map(|p| assemble(&spec, *p, &Base::scratch(), vec![layer.clone()]).unwrap())
            .collect();
        let image = finish(&spec, per).unwrap();
        image.store_documents(store).unwrap();
        image
    }

    /// A small SBOM about the image's top manifest, its blob in the store.
    pub fn sbom(store: &BlobStore, image: &Image) -> Attachment {
        let doc = br#"{"spdxVersion":"SPDX-2.3","name":"app"}"#;
        let (digest, size) = store.put(doc).unwrap();
        Attachment::new(
            MediaType::from("application/spdx+json"),
            image.top(),
            vec![AttachedBlob {
                digest,
                size,
                media_type: MediaType::from("application/spdx+json"),
            }],
            &BTreeMap::new(),
        )
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::ConfigBuilder;

    #[test]
    fn appends_to_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), &crate::util::shell::Shell::discard()).unwrap();
        let ours = testing::image(&store, &[Platform::Amd64]).platforms[0].layers[0].clone();
        let below = Layer {
            what: crate::files::LayerKind::Other("base image layer".into()),
            digest: format!("sha256:{}", "b".repeat(64)).parse().unwrap(),
            diff_id: format!("sha256:{}", "d".repeat(64)).parse().unwrap(),
            ..ours.clone()
        };
        let base = Base {
            layers: vec![below.clone()],
            history: vec![
                HistoryBuilder::default()
                    .created_by("FROM")
                    .build()
                    .unwrap(),
            ],
            config: ConfigBuilder::default()
                .env(vec!["PATH=/usr/bin".to_string(), "LANG=C".to_string()])
                .cmd(vec!["sh".to_string()])
                .build()
                .unwrap(),
            annotations: BTreeMap::new(),
        };
        let img = assemble(&testing::spec(), Platform::Amd64, &base, vec![ours.clone()]).unwrap();
        assert_eq!(img.layers, vec![below.clone(), ours.clone()]);
        let config: serde_json::Value = serde_json::from_slice(&img.config.bytes).unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"],
            serde_json::json!([below.diff_id, ours.diff_id])
        );
        assert_eq!(config["history"][0]["created_by"], "FROM");
        assert_eq!(config["history"].as_array().unwrap().len(), 2);
        // Ours replaces PATH in place, the base's LANG stays, the entrypoint resets CMD.
        assert_eq!(
            config["config"]["Env"],
            serde_json::json!(["PATH=/bin", "LANG=C"])
        );
        assert!(config["config"].get("Cmd").is_none());
        let manifest: serde_json::Value = serde_json::from_slice(&img.manifest.bytes).unwrap();
        assert_eq!(manifest["layers"][0]["digest"], below.digest.as_str());
    }

    #[test]
    fn the_base_user_stays_unless_the_setting_names_one() {
        let base = ConfigBuilder::default()
            .user("1000:1000".to_string())
            .working_dir("/srv".to_string())
            .build()
            .unwrap();
        let mut spec = testing::spec();
        let cfg = configure(&base, &spec);
        assert_eq!(cfg.user().as_deref(), Some("1000:1000"));
        assert_eq!(cfg.working_dir().as_deref(), Some("/srv"));
        spec.config.user_given = true;
        assert_eq!(
            configure(&base, &spec).user().as_deref(),
            Some("65532:65532")
        );
        // No user in the base: the default.
        spec.config.user_given = false;
        let empty = Config::default();
        assert_eq!(
            configure(&empty, &spec).user().as_deref(),
            Some("65532:65532")
        );
    }

    #[test]
    fn scratch_adds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), &crate::util::shell::Shell::discard()).unwrap();
        let img = testing::image(&store, &[Platform::Amd64]);
        let config: serde_json::Value =
            serde_json::from_slice(&img.platforms[0].config.bytes).unwrap();
        assert_eq!(config["history"].as_array().unwrap().len(), 1);
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn blobs_come_before_what_references_them_and_attachments_last() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), &crate::util::shell::Shell::discard()).unwrap();
        let mut img = testing::image(&store, &[Platform::Amd64, Platform::Arm64]);
        let sbom = testing::sbom(&store, &img);
        img.attach(sbom.clone()).unwrap();
        let order: Vec<&Digest> = img.blobs().map(|b| b.digest).collect();
        let at = |d: &Digest| order.iter().position(|x| *x == d).unwrap();
        for p in &img.platforms {
            assert!(at(&p.layers[0].digest) < at(&p.manifest.digest));
            assert!(at(&p.config.digest) < at(&p.manifest.digest));
            assert!(at(&p.manifest.digest) < at(img.digest()));
        }
        assert!(at(img.digest()) < at(&sbom.manifest.digest));
        assert!(at(&sbom.blobs[0].digest) < at(&sbom.manifest.digest));
        let mut unique = order.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), order.len(), "each blob once");
        // The artifact manifest per OCI 1.1: artifactType, the empty config, the subject.
        let m: serde_json::Value = serde_json::from_slice(&sbom.manifest.bytes).unwrap();
        assert_eq!(m["artifactType"], "application/spdx+json");
        assert_eq!(
            m["config"]["mediaType"],
            "application/vnd.oci.empty.v1+json"
        );
        assert_eq!(m["subject"]["digest"], img.digest().as_str());
        assert_eq!(m["subject"]["mediaType"], MediaType::ImageIndex.as_ref());
        // The image's size leaves attachments out.
        let own: u64 = img.platforms[0].layers[0].size
            + img
                .platforms
                .iter()
                .map(|p| p.config.size() + p.manifest.size())
                .sum::<u64>()
            + img.index.as_ref().unwrap().size();
        assert_eq!(img.size(), own);
        // A referrer of something else is refused.
        let mut other = sbom;
        other.subject = format!("sha256:{}", "0".repeat(64)).parse().unwrap();
        assert!(img.attach(other).is_err());
    }

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
