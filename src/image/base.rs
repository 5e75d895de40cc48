//! The base stage (`from`, `debug-from`): the image the crate's layers go on, resolved once per
//! build into an [`super::Base`] per platform (after go-containerregistry's `remote.Image` and
//! `layout.Image`). A registry reference is resolved to a digest (printed, and remembered so
//! `--offline` and an unreachable registry reuse it), an `oci:` layout or `oci-archive:` file
//! is read from disk; either way every manifest, config and layer goes into the
//! [`BlobStore`] checked against its digest, and only what the store proves is used. The
//! base's files are listed (whiteouts applied) so the tool's own files never silently clobber
//! them.

use super::Base;
use crate::blobs::BlobStore;
use crate::layers::{Layer, Origin};
use crate::metadata::values::BaseRef;
use crate::platform::Platform;
use crate::registry::RegistryOptions;
use crate::registry::client::ManifestRef;
use crate::registry::pull::{self, Descriptor, Puller};
use crate::util::digest::Digest;
use crate::util::shell::Shell;
use anyhow::{Context, Result, anyhow, bail};
use oci_spec::image::MediaType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The annotation naming the base image (OCI image spec, "Pre-Defined Annotation Keys").
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
/// The annotation holding the base's manifest (or index) digest.
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

/// What a path is in the base's file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathKind {
    Dir,
    File,
    Symlink,
}

/// A base image resolved for the build's platforms.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The setting as given.
    pub from: BaseRef,
    /// The digest the reference resolved to: the index's, or the one manifest's.
    pub digest: Digest,
    /// Whether that is an index (or Docker manifest list).
    pub is_index: bool,
    /// Per platform, in the build's order.
    pub platforms: Vec<PlatformBase>,
}

/// One platform's base: its manifest's digest, the [`Base`] the image stage appends to, and
/// the paths its layers leave in the file system.
#[derive(Debug, Clone)]
pub struct PlatformBase {
    pub platform: Platform,
    pub manifest: Digest,
    pub base: Base,
    pub paths: BTreeMap<String, PathKind>,
}

impl Resolved {
    /// The base for `platform` (every platform of the build has one, checked when resolved).
    pub fn base_for(&self, platform: Platform) -> Option<&PlatformBase> {
        self.platforms.iter().find(|p| p.platform == platform)
    }

    /// The annotations an index over the build's platforms gets.
    pub fn index_annotations(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (BASE_NAME.to_string(), self.from.reference()),
            (BASE_DIGEST.to_string(), self.digest.to_string()),
        ])
    }

    /// Whether any platform's base has `path` (of any kind).
    pub fn has(&self, path: &str) -> bool {
        self.platforms.iter().any(|p| p.paths.contains_key(path))
    }
}

/// What resolving needs besides the reference.
pub struct Inputs<'a> {
    pub registry: &'a RegistryOptions,
    /// The registries the command line's credentials are for (those pushed to); any other
    /// base registry gets what docker's and podman's stores hold for it.
    pub credential_registries: &'a [String],
    /// `--offline` (or `--frozen`): no request, only what the cache holds.
    pub offline: bool,
    pub store: &'a BlobStore,
    pub shell: &'a Shell,
    /// Relative `oci:` and `oci-archive:` paths are taken from here (the package's directory).
    pub root: &'a Path,
}

/// Where the base's documents and blobs come from.
enum Source {
    Registry(Box<Remote>),
    /// An `oci:` layout's `blobs/sha256/`.
    Layout(PathBuf),
    /// Only the blob store (`--offline`, an unreachable registry, an imported archive); the
    /// text says what to do when a blob is not there.
    Store(String),
}

/// A registry repository, connected to when first asked for a blob the store lacks.
struct Remote {
    opts: RegistryOptions,
    registry: String,
    repository: String,
    shell: Shell,
    puller: std::cell::OnceCell<Puller>,
}

impl Remote {
    /// `r`'s repository, with the run's registry options; the command line's credential only
    /// when `r` is on a registry pushed to.
    fn new(r: &crate::util::reference::Reference, cx: &Inputs<'_>) -> Remote {
        let mut opts = cx.registry.clone();
        if !cx.credential_registries.contains(&r.registry) {
            opts.credential = None;
        }
        Remote {
            opts,
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            shell: cx.shell.clone(),
            puller: std::cell::OnceCell::new(),
        }
    }

    fn puller(&self) -> Result<&Puller> {
        if let Some(p) = self.puller.get() {
            return Ok(p);
        }
        let p = Puller::connect(&self.opts, &self.registry, &self.repository, &self.shell)?;
        Ok(self.puller.get_or_init(|| p))
    }
}

/// A tag's resolution as remembered in the user's cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Remembered {
    digest: Digest,
    media_type: String,
    size: u64,
    /// Seconds since 1970 when the registry answered.
    at: u64,
}

const MEMO_SPACE: &str = "base-resolutions";

/// Resolves `from` (not scratch) for `platforms`: prints `Base NAME@DIGEST`, and fetches every
/// blob into the store. A platform the base lacks is an error naming the ones it has.
pub fn resolve(from: &BaseRef, platforms: &[Platform], cx: &Inputs<'_>) -> Result<Resolved> {
    let (source, top) = top(from, cx)?;
    let name = from.name();
    cx.shell.status("Base", format!("{name}@{}", top.digest));
    let top_bytes = document(&source, cx.store, &top, &name)?;
    let is_index = is_index_type(&top.media_type);
    let manifests: Vec<(Platform, Descriptor)> = if is_index {
        pick_platforms(&top_bytes, &top.digest, platforms, &name)?
    } else {
        platforms.iter().map(|p| (*p, top.clone())).collect()
    };
    let mut per = Vec::new();
    for (platform, desc) in manifests {
        per.push(platform_base(&source, cx, &desc, platform, from)?);
    }
    Ok(Resolved {
        from: from.clone(),
        digest: top.digest,
        is_index,
        platforms: per,
    })
}

fn is_index_type(t: &MediaType) -> bool {
    *t == MediaType::ImageIndex || t.as_ref() == pull::DOCKER_MANIFEST_LIST
}

/// The source of the base's blobs and its top descriptor.
fn top(from: &BaseRef, cx: &Inputs<'_>) -> Result<(Source, Descriptor)> {
    match from {
        BaseRef::Scratch => bail!("scratch has no manifest to resolve"),
        BaseRef::Registry(r) => registry_top(from, r, cx),
        BaseRef::Layout { dir, tag } => {
            let dir = cx.root.join(dir);
            let index = std::fs::read(dir.join("index.json")).with_context(|| {
                format!(
                    "base {from}: {} has no readable index.json; name an OCI image layout directory",
                    dir.display()
                )
            })?;
            let top = layout_entry(&index, tag.as_deref(), from)?;
            Ok((Source::Layout(dir.join("blobs/sha256")), top))
        }
        BaseRef::Archive { file, tag } => {
            let path = cx.root.join(file);
            let index =
                import_archive(&path, cx.store).with_context(|| format!("reading base {from}"))?;
            let top = layout_entry(&index, tag.as_deref(), from)?;
            let remedy = format!("{} lacks it; write the archive again", path.display());
            Ok((Source::Store(remedy), top))
        }
    }
}

/// A registry reference's top descriptor: from the registry (remembered), else, offline or
/// when the registry cannot be reached, the remembered resolution (with a warning saying
/// which and from when).
fn registry_top(
    from: &BaseRef,
    r: &crate::util::reference::Reference,
    cx: &Inputs<'_>,
) -> Result<(Source, Descriptor)> {
    let key = crate::memo::key(&[b"base resolution v1", from.to_string().as_bytes()]);
    let pinned: Option<&Digest> = r.digest.as_ref();
    let offline_source = || {
        Source::Store(format!(
            "run once without --offline, with {} reachable",
            r.registry
        ))
    };
    let remembered = |why: String| -> Result<(Source, Descriptor)> {
        let m: Remembered = crate::memo::get(MEMO_SPACE, &key, cx.shell).ok_or_else(|| {
            anyhow!("base {from}: {why}, and no earlier resolution of it is remembered; run once with the registry reachable")
        })?;
        if pinned.is_some_and(|p| *p != m.digest) {
            bail!("base {from}: {why}, and the remembered resolution is of another digest");
        }
        let when = crate::metadata::spec::rfc3339(m.at);
        cx.shell.warn(format!(
            "{why}: using base {from} as resolved at {when} ({}); a newer push of the tag is not seen",
            m.digest.short()
        ));
        Ok((
            offline_source(),
            Descriptor {
                media_type: MediaType::from(m.media_type.as_str()),
                digest: m.digest,
                size: m.size,
            },
        ))
    };
    if cx.offline {
        return remembered("--offline".into());
    }
    let remote = Box::new(Remote::new(r, cx));
    // A digest whose manifest the store holds needs no request: the registry is asked only
    // for a blob the store lacks.
    if let Some(desc) = pinned.and_then(|p| stored_descriptor(cx.store, p)) {
        return Ok((Source::Registry(remote), desc));
    }
    let answer = remote.puller().and_then(|p| {
        let reference = match (pinned, &r.tag) {
            (Some(d), _) => ManifestRef::Digest(d),
            (None, Some(t)) => ManifestRef::Tag(t),
            (None, None) => ManifestRef::Tag("latest"),
        };
        p.resolve(reference)
    });
    match answer {
        Ok(desc) => {
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let m = Remembered {
                digest: desc.digest.clone(),
                media_type: desc.media_type.to_string(),
                size: desc.size,
                at,
            };
            crate::memo::put(MEMO_SPACE, &key, &m, &[], cx.shell);
            Ok((Source::Registry(remote), desc))
        }
        // Only a registry that cannot be reached falls back on the remembered resolution; one
        // that answered (a refusal, a missing tag, a server error) stops the build.
        Err(e) if !reachable(&r.registry, &remote.opts) => remembered(format!(
            "registry {} cannot be reached ({})",
            r.registry,
            crate::error_line(&e)
        ))
        .map_err(|_| e),
        Err(e) => Err(e),
    }
}

/// The descriptor of manifest or index `digest` when the store holds it, proven: its size is
/// the file's, its media type the document's own `mediaType` (else an index when it lists
/// `manifests`).
fn stored_descriptor(store: &BlobStore, digest: &Digest) -> Option<Descriptor> {
    let size = std::fs::metadata(store.path(digest)).ok()?.len();
    if size > crate::registry::transport::MANIFEST_BODY_LIMIT || !store.proven(digest, size) {
        return None;
    }
    let mut bytes = Vec::new();
    store
        .open_proven(digest, size)
        .ok()?
        .read_to_end(&mut bytes)
        .ok()?;
    let doc: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let media_type = match doc.get("mediaType").and_then(|t| t.as_str()) {
        Some(t) => MediaType::from(t),
        None if doc.get("manifests").is_some() => MediaType::ImageIndex,
        None => MediaType::ImageManifest,
    };
    Some(Descriptor {
        media_type,
        digest: digest.clone(),
        size,
    })
}

/// Whether anything accepts a connection at `registry`'s API address within the timeout: a
/// registry that does not (stopped, unplugged, its name unknown) is unreachable. A plain TCP
/// connection, because the registry client's errors are text: this asks the network alone.
fn reachable(registry: &str, opts: &RegistryOptions) -> bool {
    use std::net::ToSocketAddrs;
    let host = crate::registry::transport::api_host(registry);
    let has_port = match host.rfind(']') {
        Some(end) => host[end..].contains(':'),
        None => host.contains(':'),
    };
    let address = if has_port {
        host.to_string()
    } else if crate::registry::transport::http_allowed(opts, host) {
        format!("{host}:80")
    } else {
        format!("{host}:443")
    };
    let Ok(addrs) = address.to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| std::net::TcpStream::connect_timeout(&a, opts.timeout).is_ok())
}

/// The entry of a layout's index.json that `tag` names (by `org.opencontainers.image.ref.name`),
/// or its only entry when no tag is given.
fn layout_entry(index: &[u8], tag: Option<&str>, from: &BaseRef) -> Result<Descriptor> {
    let doc: serde_json::Value = serde_json::from_slice(index)
        .with_context(|| format!("base {from}: index.json is not JSON"))?;
    let entries = doc
        .get("manifests")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ref_name = |e: &serde_json::Value| {
        e.pointer("/annotations/org.opencontainers.image.ref.name")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    };
    let found: Vec<&serde_json::Value> = match tag {
        Some(t) => entries
            .iter()
            .filter(|e| ref_name(e).as_deref() == Some(t))
            .collect(),
        None => entries.iter().collect(),
    };
    let names = || {
        let n: Vec<String> = entries.iter().filter_map(ref_name).collect();
        if n.is_empty() {
            "none".to_string()
        } else {
            n.join(", ")
        }
    };
    match found.as_slice() {
        [one] => descriptor(one, &from.to_string()),
        [] => bail!(
            "base {from}: the layout has no image tagged `{}`; its tags: {}",
            tag.unwrap_or_default(),
            names()
        ),
        _ => bail!(
            "base {from}: the layout holds {} images; name one with :TAG (its tags: {})",
            found.len(),
            names()
        ),
    }
}

/// A descriptor from its JSON, checked.
fn descriptor(d: &serde_json::Value, name: &str) -> Result<Descriptor> {
    let bad = || anyhow!("base {name} has a descriptor without a valid mediaType, digest or size");
    Ok(Descriptor {
        media_type: MediaType::from(
            d.get("mediaType")
                .and_then(|v| v.as_str())
                .ok_or_else(bad)?,
        ),
        digest: d
            .get("digest")
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?,
        size: d.get("size").and_then(|v| v.as_u64()).ok_or_else(bad)?,
    })
}

/// Copies every `blobs/sha256/HEX` of the archive at `path` into the store (each checked
/// against its name) and returns its index.json.
fn import_archive(path: &Path, store: &BlobStore) -> Result<Vec<u8>> {
    let file = crate::util::fs::open_regular(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut index = None;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if name == "index.json" {
            let mut bytes = Vec::new();
            (&mut entry)
                .take(crate::registry::transport::MANIFEST_BODY_LIMIT)
                .read_to_end(&mut bytes)?;
            index = Some(bytes);
        } else if let Some(hex) = name.strip_prefix("blobs/sha256/")
            && entry.header().entry_type().is_file()
        {
            let digest: Digest = format!("sha256:{hex}")
                .parse()
                .map_err(|_| anyhow!("{name} is not named by a sha256 digest"))?;
            let size = entry.size();
            if store.proven(&digest, size) {
                continue;
            }
            let mut w = store.writer()?;
            std::io::copy(&mut entry, &mut w)?;
            store
                .commit_expected(w, &digest, size)
                .map_err(|_| anyhow!("{name} does not match its digest; the archive is damaged"))?;
        }
    }
    index.context("it has no index.json; name an OCI archive (oci-archive:FILE)")
}

/// A manifest, index or config: from the store when it holds it proven, else fetched (and
/// checked) into it.
fn document(src: &Source, store: &BlobStore, d: &Descriptor, name: &str) -> Result<Vec<u8>> {
    if d.size > crate::registry::transport::MANIFEST_BODY_LIMIT {
        bail!(
            "base {name}: document {} claims {} bytes, over the 4 MiB limit",
            d.digest,
            d.size
        );
    }
    if store.proven(&d.digest, d.size) {
        store.keep(&d.digest);
    } else {
        match src {
            Source::Registry(r) if is_manifest_type(&d.media_type) => {
                let m = r.puller()?.manifest(ManifestRef::Digest(&d.digest))?;
                store.put(&m.bytes)?;
            }
            _ => blob(src, store, &d.digest, d.size, name)?,
        }
    }
    let mut bytes = Vec::new();
    store
        .open_proven(&d.digest, d.size)?
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn is_manifest_type(t: &MediaType) -> bool {
    pull::ACCEPTED.contains(&t.as_ref())
}

/// Blob `digest` of `size` bytes into the store, checked (nothing to do when it is there,
/// proven: a damaged one is removed by [`BlobStore::proven`] and fetched again).
fn blob(src: &Source, store: &BlobStore, digest: &Digest, size: u64, name: &str) -> Result<()> {
    if store.proven(digest, size) {
        store.keep(digest);
        return Ok(());
    }
    match src {
        Source::Registry(r) => r.puller()?.blob(store, digest, size),
        Source::Layout(dir) => {
            let path = dir.join(digest.hex());
            let file = crate::util::fs::open_regular(&path).with_context(|| {
                format!(
                    "base {name}: the layout lacks blob {digest} ({})",
                    path.display()
                )
            })?;
            let mut w = store.writer()?;
            std::io::copy(&mut file.take(size + 1), &mut w)?;
            store.commit_expected(w, digest, size).map_err(|_| {
                anyhow!(
                    "base {name}: {} does not match its digest {digest} ({size} bytes); the layout is damaged",
                    path.display()
                )
            })
        }
        Source::Store(remedy) => bail!(
            "base {name}: blob {digest} is not in the cache ({}); {remedy}",
            store.path(digest).display()
        ),
    }
}

/// The OCI platform text of an index entry: `os/arch[/variant]`.
fn platform_text(e: &serde_json::Value) -> Option<String> {
    let p = e.get("platform")?;
    let s = |k: &str| p.get(k).and_then(|v| v.as_str());
    let mut t = format!("{}/{}", s("os")?, s("architecture")?);
    if let Some(v) = s("variant") {
        t.push('/');
        t.push_str(v);
    }
    Some(t)
}

/// Whether an index entry's platform is `p` (arm64's variant may be absent or v8).
fn matches(e: &serde_json::Value, p: Platform) -> bool {
    let Some(plat) = e.get("platform") else {
        return false;
    };
    let s = |k: &str| plat.get(k).and_then(|v| v.as_str());
    s("os") == Some(p.os())
        && s("architecture") == Some(p.arch())
        && s("variant").is_none_or(|v| Some(v) == p.variant())
}

/// Each build platform's manifest in the index; a platform it lacks is an error naming the
/// ones it has.
fn pick_platforms(
    index: &[u8],
    digest: &Digest,
    platforms: &[Platform],
    name: &str,
) -> Result<Vec<(Platform, Descriptor)>> {
    let doc: serde_json::Value = serde_json::from_slice(index)
        .with_context(|| format!("base {name}: index {digest} is not JSON"))?;
    let entries: Vec<serde_json::Value> = doc
        .get("manifests")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    platforms
        .iter()
        .map(|p| {
            let Some(e) = entries.iter().find(|e| matches(e, *p)) else {
                let has: Vec<String> = entries
                    .iter()
                    .filter_map(platform_text)
                    .filter(|t| !t.starts_with("unknown/"))
                    .collect();
                bail!(
                    "base {name} has no {p} image (it has {}); choose --platform from those, or another base",
                    if has.is_empty() { "none".to_string() } else { has.join(", ") }
                );
            };
            let d = descriptor(e, name).map_err(|_| {
                anyhow!("base {name}: index {digest} has an entry for {p} without a valid mediaType, digest or size")
            })?;
            Ok((*p, d))
        })
        .collect()
}

/// The layer media types a base may have: OCI's and Docker schema 2's, plain, gzip or zstd.
fn layer_compression(t: &MediaType) -> Option<&'static str> {
    match t.as_ref() {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Some("tar"),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some("gzip"),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Some("zstd"),
        _ => None,
    }
}

/// One platform's base: its manifest, config and layers fetched and checked, the layers
/// listed.
fn platform_base(
    src: &Source,
    cx: &Inputs<'_>,
    desc: &Descriptor,
    platform: Platform,
    from: &BaseRef,
) -> Result<PlatformBase> {
    let name = from.name();
    if pull::SCHEMA1.contains(&desc.media_type.as_ref()) {
        bail!(
            "base {name}: {} is a Docker schema 1 manifest, which this tool does not read (deprecated since 2017); write the base again with a current skopeo, podman or docker",
            desc.digest
        );
    }
    if !is_manifest_type(&desc.media_type) || is_index_type(&desc.media_type) {
        bail!(
            "base {name}: {} is a `{}`, not an image manifest; name an image",
            desc.digest,
            crate::registry::transport::sanitize(desc.media_type.as_ref())
        );
    }
    let bytes = document(src, cx.store, desc, &name)?;
    let manifest = pull::Manifest {
        descriptor: desc.clone(),
        bytes,
    };
    let mut refs = manifest.references()?.into_iter();
    let config_desc = refs
        .next()
        .with_context(|| format!("base {name}: manifest {} has no config", desc.digest))?;
    let config_bytes = document(src, cx.store, &config_desc, &name)?;
    let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&config_bytes)
        .with_context(|| {
            format!(
                "base {name}: config {} is not an image config",
                config_desc.digest
            )
        })?;
    let has = format!("{}/{}", config.os(), config.architecture());
    if config.os().to_string() != platform.os()
        || config.architecture().to_string() != platform.arch()
    {
        bail!(
            "base {name} is a {has} image, not {platform}; choose --platform {has}, or a base with {platform}"
        );
    }
    let diff_ids = config.rootfs().diff_ids();
    let layer_descs: Vec<Descriptor> = refs.collect();
    if diff_ids.len() != layer_descs.len() {
        bail!(
            "base {name}: manifest {} lists {} layers but its config {} diff_ids; the image is damaged",
            desc.digest,
            layer_descs.len(),
            diff_ids.len()
        );
    }
    let (layers, paths) = layers(src, cx, from, &layer_descs, diff_ids, &config_desc.digest)?;
    let annotations = BTreeMap::from([
        (BASE_NAME.to_string(), from.reference()),
        (BASE_DIGEST.to_string(), desc.digest.to_string()),
    ]);
    Ok(PlatformBase {
        platform,
        manifest: desc.digest.clone(),
        base: Base {
            layers,
            history: config.history().clone().unwrap_or_default(),
            config: config.config().clone().unwrap_or_default(),
            annotations,
        },
        paths,
    })
}

/// The base's layers, each fetched into the store, its diff_id checked and its paths listed:
/// as [`Layer`]s (with their origin, for the push to mount them) and the paths they leave.
fn layers(
    src: &Source,
    cx: &Inputs<'_>,
    from: &BaseRef,
    layer_descs: &[Descriptor],
    diff_ids: &[String],
    config: &Digest,
) -> Result<(Vec<Layer>, BTreeMap<String, PathKind>)> {
    let name = from.name();
    let origin = match from {
        BaseRef::Registry(r) => Some(Origin {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
        }),
        _ => None,
    };
    let mut layers = Vec::new();
    let mut paths = BTreeMap::new();
    for (d, diff_id) in layer_descs.iter().zip(diff_ids) {
        let Some(kind) = layer_compression(&d.media_type) else {
            bail!(
                "base {name}: layer {} has the media type `{}`, which this tool does not read (OCI or Docker schema 2 tar, gzip or zstd); choose another base",
                d.digest,
                crate::registry::transport::sanitize(d.media_type.as_ref())
            );
        };
        blob(src, cx.store, &d.digest, d.size, &name)?;
        let diff_id: Digest = diff_id
            .parse()
            .map_err(|_| anyhow!("base {name}: config {} has an invalid diff_id", config))?;
        let tar_size = list_layer(cx.store, d, kind, &diff_id, &mut paths)
            .with_context(|| format!("base {name}: reading layer {}", d.digest))?;
        layers.push(Layer {
            what: crate::files::LayerKind::Other("base image layer".into()),
            digest: d.digest.clone(),
            diff_id,
            size: d.size,
            tar_size,
            media_type: d.media_type.clone(),
            fresh: false,
            origin: origin.clone(),
        });
    }
    Ok((layers, paths))
}

/// What one layer does to the file system, in order: the paths it adds, and the whiteouts
/// that remove lower layers' paths.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Op {
    /// `.wh..wh..opq` in this directory: everything below it from lower layers goes.
    Opaque(String),
    /// `.wh.NAME`: this path (and what is below it) goes.
    Whiteout(String),
    Add(String, PathKind),
}

/// A layer's listing, remembered (memo space `base-layers`) by its digest and diff_id once
/// its uncompressed bytes were proven to be the diff_id: a rebuild on the same base reads no
/// layer again.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Listing {
    tar_size: u64,
    ops: Vec<Op>,
}

/// Applies layer `d`'s listing to `paths` and returns its tar's size: remembered, else read
/// from the store ([`read_layer`]).
fn list_layer(
    store: &BlobStore,
    d: &Descriptor,
    kind: &str,
    diff_id: &Digest,
    paths: &mut BTreeMap<String, PathKind>,
) -> Result<u64> {
    let key = crate::memo::key(&[
        b"base layer listing v1",
        d.digest.as_str().as_bytes(),
        diff_id.as_str().as_bytes(),
    ]);
    let listing = match crate::memo::get::<Listing>("base-layers", &key, store.shell()) {
        Some(l) => l,
        None => {
            let l = read_layer(store, d, kind, diff_id)?;
            crate::memo::put("base-layers", &key, &l, &[], store.shell());
            l
        }
    };
    apply(listing.ops, paths);
    Ok(listing.tar_size)
}

/// A layer's `ops` over the paths of the layers below: its whiteouts first, then its paths.
fn apply(ops: Vec<Op>, paths: &mut BTreeMap<String, PathKind>) {
    let mut added = Vec::new();
    for op in ops {
        match op {
            Op::Opaque(dir) => {
                let prefix = format!("{dir}/");
                paths.retain(|p, _| !p.starts_with(&prefix));
            }
            Op::Whiteout(gone) => {
                let below = format!("{gone}/");
                paths.retain(|p, _| *p != gone && !p.starts_with(&below));
            }
            Op::Add(path, k) => added.push((path, k)),
        }
    }
    paths.extend(added);
}

/// Reads layer `d` (proven in the store) uncompressed: checks its diff_id and lists what it
/// does to the file system.
fn read_layer(store: &BlobStore, d: &Descriptor, kind: &str, diff_id: &Digest) -> Result<Listing> {
    let file = std::io::BufReader::with_capacity(1 << 20, store.open_proven(&d.digest, d.size)?);
    let reader: Box<dyn Read> = match kind {
        "gzip" => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        "zstd" => Box::new(zstd::Decoder::with_buffer(file)?),
        _ => Box::new(file),
    };
    let mut hashed = crate::blobs::HashWriter::new(std::io::sink());
    let tee = TeeReader {
        inner: reader,
        out: &mut hashed,
    };
    let mut archive = tar::Archive::new(tee);
    let mut ops = Vec::new();
    // A tar that ends early (umoci 0.4's `insert` leaves the last entry unpadded, with no end
    // blocks) is listed up to where it ends: its diff_id below still proves its bytes.
    for entry in archive.entries()?.map_while(Result::ok) {
        let Ok(raw) = entry.path().map(|p| p.to_string_lossy().into_owned()) else {
            continue;
        };
        let Some(path) = normalise(&raw) else {
            continue;
        };
        let (dir, file) = path.rsplit_once('/').unwrap_or(("", &path));
        if file == ".wh..wh..opq" {
            ops.push(Op::Opaque(dir.to_string()));
        } else if let Some(gone) = file.strip_prefix(".wh.") {
            ops.push(Op::Whiteout(format!("{dir}/{gone}")));
        } else {
            let t = entry.header().entry_type();
            let k = if t.is_dir() {
                PathKind::Dir
            } else if t.is_symlink() {
                PathKind::Symlink
            } else {
                PathKind::File
            };
            ops.push(Op::Add(path, k));
        }
    }
    // The rest of the stream (tar's zero blocks) counts toward the diff_id too.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink())?;
    let (_, got, tar_size) = hashed.finish();
    if got != *diff_id {
        bail!(
            "its uncompressed content is {got}, not the config's diff_id {diff_id}; the image is damaged"
        );
    }
    Ok(Listing { tar_size, ops })
}

/// A tar entry's path as an absolute image path (`./etc/x/` → `/etc/x`); none for the root.
fn normalise(raw: &str) -> Option<String> {
    let p = raw
        .trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/');
    (!p.is_empty() && p != ".").then(|| format!("/{p}"))
}

/// Reads `inner`, copying what it reads to `out` (the diff_id's hash).
struct TeeReader<'a, R, W> {
    inner: R,
    out: &'a mut W,
}

impl<R: Read, W: std::io::Write> Read for TeeReader<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// What `doctor` says of a base without pulling it: the digest a registry reference or a
/// layout's entry resolves to, or that the archive is there; an error says why not.
pub fn check(from: &BaseRef, root: &Path, opts: &RegistryOptions, shell: &Shell) -> Result<String> {
    match from {
        BaseRef::Scratch => Ok("scratch (nothing below the tool's layers)".into()),
        BaseRef::Registry(r) => {
            let p = Puller::connect(opts, &r.registry, &r.repository, shell)?;
            let d = match (&r.digest, &r.tag) {
                (Some(d), _) => p.resolve(ManifestRef::Digest(d))?,
                (None, t) => p.resolve(ManifestRef::Tag(t.as_deref().unwrap_or("latest")))?,
            };
            Ok(format!("{}@{}", from.name(), d.digest))
        }
        BaseRef::Layout { dir, tag } => {
            let dir = root.join(dir);
            let index = std::fs::read(dir.join("index.json"))
                .with_context(|| format!("{} has no readable index.json", dir.display()))?;
            let d = layout_entry(&index, tag.as_deref(), from)?;
            Ok(format!("{from}@{}", d.digest))
        }
        BaseRef::Archive { file, .. } => {
            let path = root.join(file);
            crate::util::fs::open_regular(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            Ok(format!("{from} (read when building)"))
        }
    }
}

/// Warns, once per base, where the tool's CA bundle or time zone database goes over the
/// base's own (never silently): `ca-certs = "base"` / `tzdata = "base"` keep the base's.
pub fn warn_replaced(spec: &crate::metadata::ImageSpec, base: &Resolved, shell: &Shell) {
    use crate::metadata::spec::{CA_BUNDLE_PATH, CaCerts, ZONEINFO_DIR};
    use crate::metadata::values::TzData;
    let name = base.from.name();
    if spec.layers.ca_certs != CaCerts::None && base.has(CA_BUNDLE_PATH) {
        shell.warn(format!(
            "base {name} has its own {CA_BUNDLE_PATH}; the tool's CA bundle replaces it (ca-certs = \"base\" keeps the base's)"
        ));
    }
    if !matches!(spec.layers.tzdata, TzData::None | TzData::Base) && base.has(ZONEINFO_DIR) {
        shell.warn(format!(
            "base {name} has its own {ZONEINFO_DIR}; the tool's zones go over it (tzdata = \"base\" keeps the base's)"
        ));
    }
}

/// Checks that no path the settings put into the image (the binary, the includes) lands on a
/// file or directory of the base: an error naming both, as for scratch's own files.
pub fn check_collisions(spec: &crate::metadata::ImageSpec, base: &Resolved) -> Result<()> {
    let mut wanted: Vec<(String, bool, String)> = vec![(
        spec.config.binary_path.to_string(),
        false,
        format!("binary-path `{}`", spec.config.binary_path),
    )];
    for inc in &spec.layers.includes {
        wanted.push((
            inc.dest.clone(),
            inc.is_dir,
            format!("include dest `{}`", inc.dest),
        ));
    }
    let name = base.from.name();
    for pb in &base.platforms {
        for (path, is_dir, label) in &wanted {
            let hit = pb.paths.get(path.as_str());
            let clash = match hit {
                Some(PathKind::Dir) => !is_dir,
                Some(_) => true,
                None => false,
            };
            if clash {
                bail!(
                    "{label} collides with {path} of the base image {name} ({}); choose another path",
                    pb.platform
                );
            }
            for (i, _) in path.match_indices('/').filter(|(i, _)| *i > 0) {
                let dir = &path[..i];
                if pb.paths.get(dir) == Some(&PathKind::File) {
                    bail!(
                        "{label} would turn {dir}, a file of the base image {name} ({}), into a directory; choose another path",
                        pb.platform
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzip layer of `entries` (path, is a directory) in `store`, with its descriptor and
    /// diff_id.
    fn layer(store: &BlobStore, entries: &[(&str, bool)]) -> (Descriptor, Digest) {
        let mut b = tar::Builder::new(Vec::new());
        for (path, dir) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(if *dir {
                tar::EntryType::Directory
            } else {
                tar::EntryType::Regular
            });
            h.set_size(0);
            h.set_mode(0o644);
            b.append_data(&mut h, path, std::io::empty()).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let (digest, size) = store.put(&gz.finish().unwrap()).unwrap();
        let d = Descriptor {
            media_type: MediaType::ImageLayerGzip,
            digest,
            size,
        };
        (d, Digest::sha256_of(&tar))
    }

    #[test]
    fn whiteouts_remove_what_lower_layers_had_and_diff_ids_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), &Shell::discard()).unwrap();
        let (l1, id1) = layer(
            &store,
            &[
                ("etc/", true),
                ("etc/passwd", false),
                ("a/", true),
                ("a/x", false),
                ("b", false),
            ],
        );
        let (l2, id2) = layer(
            &store,
            &[
                ("a/.wh..wh..opq", false),
                ("a/z", false),
                ("etc/.wh.passwd", false),
            ],
        );
        let mut paths = BTreeMap::new();
        for (d, id) in [(&l1, &id1), (&l2, &id2)] {
            apply(read_layer(&store, d, "gzip", id).unwrap().ops, &mut paths);
        }
        let listed: Vec<&str> = paths.keys().map(String::as_str).collect();
        assert_eq!(listed, ["/a", "/a/z", "/b", "/etc"]);
        assert_eq!(paths["/a"], PathKind::Dir);
        let e = read_layer(&store, &l1, "gzip", &id2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("diff_id"), "{e}");
    }

    #[test]
    fn paths_are_normalised() {
        assert_eq!(normalise("./etc/passwd").as_deref(), Some("/etc/passwd"));
        assert_eq!(normalise("bin/").as_deref(), Some("/bin"));
        assert_eq!(normalise("./"), None);
        assert_eq!(normalise("/"), None);
    }

    #[test]
    fn platforms_are_picked_from_the_index() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let index = serde_json::json!({"manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d('a'), "size": 1,
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d('b'), "size": 2,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d('c'), "size": 3,
             "platform": {"os": "unknown", "architecture": "unknown"}}
        ]});
        let bytes = serde_json::to_vec(&index).unwrap();
        let top: Digest = d('f').parse().unwrap();
        let got = pick_platforms(&bytes, &top, &[Platform::Amd64, Platform::Arm64], "b").unwrap();
        assert_eq!(got[0].1.digest, d('a'));
        assert_eq!(got[1].1.digest, d('b'));
        let only_amd =
            serde_json::json!({"manifests": [index["manifests"][0], index["manifests"][2]]});
        let e = pick_platforms(
            &serde_json::to_vec(&only_amd).unwrap(),
            &top,
            &[Platform::Arm64],
            "b",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("no linux/arm64") && e.contains("(it has linux/amd64)"),
            "{e}"
        );
    }

    #[test]
    fn a_layout_entry_is_picked_by_tag_or_alone() {
        let from: BaseRef = "oci:x".parse().unwrap();
        let entry = |tag: &str, c: char| {
            serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{}", c.to_string().repeat(64)), "size": 5,
            "annotations": {"org.opencontainers.image.ref.name": tag}})
        };
        let one =
            serde_json::to_vec(&serde_json::json!({"manifests": [entry("v1", 'a')]})).unwrap();
        assert_eq!(layout_entry(&one, None, &from).unwrap().size, 5);
        let two = serde_json::to_vec(
            &serde_json::json!({"manifests": [entry("v1", 'a'), entry("v2", 'b')]}),
        )
        .unwrap();
        assert!(
            layout_entry(&two, Some("v2",), &from)
                .unwrap()
                .digest
                .hex()
                .starts_with('b')
        );
        let e = layout_entry(&two, None, &from).unwrap_err().to_string();
        assert!(e.contains("holds 2 images") && e.contains("v1, v2"), "{e}");
        let e = layout_entry(&two, Some("v3"), &from)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no image tagged `v3`"), "{e}");
    }

    #[test]
    fn layer_media_types_of_oci_and_docker() {
        for (t, k) in [
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some("gzip"),
            ),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Some("zstd")),
            ("application/vnd.oci.image.layer.v1.tar", Some("tar")),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                None,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                None,
            ),
        ] {
            assert_eq!(layer_compression(&MediaType::from(t)), k, "{t}");
        }
    }
}
