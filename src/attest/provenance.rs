//! Provenance: an in-toto Statement v1 about one platform manifest, with a SLSA Provenance v1
//! predicate (<https://slsa.dev/spec/v1.0/provenance>): how the image was built (this tool,
//! the exact cargo command, the toolchain), from what (the source revision and every
//! Cargo.lock entry), by whom (this tool and its version). No wall-clock time and no local
//! path goes in: the same source gives the same bytes.

use super::{Document, Facts, TOOL_NAME, TOOL_VERSION};
use crate::image::{Image, PlatformImage, canonical_json};
use crate::util::digest::Digest;
use crate::util::public_url::PublicUrl;
use anyhow::{Context, Result};
use oci_spec::image::MediaType;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The statement's media type, and the referrer's artifactType.
pub const MEDIA_TYPE: &str = "application/vnd.in-toto+json";
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// What our externalParameters and internalParameters mean: the buildType of this tool's
/// builds, versioned with the shape of its parameters.
pub const BUILD_TYPE: &str = "https://crates.io/crates/cargo-containerize/build-types/image/v1";
/// The key of the annotation a referrer carries for the predicate type (as cosign and
/// BuildKit's attestations say it).
pub const PREDICATE_ANNOTATION: &str = "in-toto.io/predicate-type";

/// An in-toto ResourceDescriptor: at least one of uri and digest.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Resource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<PublicUrl>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: &'static str,
    pub subject: Vec<Resource>,
    #[serde(rename = "predicateType")]
    pub predicate_type: &'static str,
    pub predicate: Provenance,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    pub build_type: &'static str,
    pub external_parameters: ExternalParameters,
    pub internal_parameters: InternalParameters,
    pub resolved_dependencies: Vec<Resource>,
}

/// What the user chose: the cargo command and the settings that shape the image.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalParameters {
    pub package: String,
    pub bin: String,
    pub profile: String,
    pub features: Vec<String>,
    pub all_features: bool,
    pub no_default_features: bool,
    pub platform: String,
    /// Every platform of the image.
    pub platforms: Vec<String>,
    /// The cargo command line that built this platform's binary, local paths written as
    /// `$WORKSPACE`, `$TARGET_DIR` and `$CARGO_HOME`; absent for a prebuilt `--binary`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cargo: Option<Vec<String>>,
    /// The binary was given with --binary, not built.
    pub prebuilt_binary: bool,
    pub settings: ImageSettings,
}

/// The settings that change the image (env values are left out: they may be secrets).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageSettings {
    pub binary_path: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub user: String,
    pub strip: bool,
    pub ca_certs: String,
    pub tzdata: crate::metadata::values::TzData,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zones: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    pub compression: crate::metadata::values::Compression,
    pub compression_level: i32,
}

/// What the builder decided for itself: the toolchain and the epoch.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InternalParameters {
    pub builder_version: &'static str,
    /// `rustc -vV`, one line per entry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rustc: Vec<String>,
    pub target: &'static str,
    /// SOURCE_DATE_EPOCH as the build saw it: the image's `created`, in seconds.
    pub source_date_epoch: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetails {
    pub builder: Builder,
    pub metadata: BuildMetadata,
    /// The binary in the image, by its path there.
    pub byproducts: Vec<Resource>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Builder {
    pub id: String,
    pub version: BTreeMap<String, String>,
}

/// No startedOn/finishedOn: a wall-clock time would make two builds' statements differ.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildMetadata {
    pub invocation_id: String,
}

/// The statement about `platform`'s manifest, as a referrer document.
pub fn document(facts: &Facts, image: &Image, platform: &PlatformImage) -> Result<Document> {
    let statement = statement(facts, image, platform)?;
    let mut annotations = BTreeMap::new();
    annotations.insert(PREDICATE_ANNOTATION.to_string(), PREDICATE_TYPE.to_string());
    annotations.insert(
        "org.opencontainers.image.created".to_string(),
        facts.spec.created(),
    );
    Ok(Document {
        artifact_type: MediaType::from(MEDIA_TYPE),
        media_type: MediaType::from(MEDIA_TYPE),
        bytes: canonical_json(&statement)?,
        annotations,
    })
}

/// A ResourceDescriptor's `digest` (a DigestSet) holding `digest`.
fn digest_set(digest: &Digest) -> BTreeMap<String, String> {
    BTreeMap::from([("sha256".to_string(), digest.hex().to_string())])
}

/// The statement about `platform`'s manifest of `image`.
pub fn statement(facts: &Facts, image: &Image, platform: &PlatformImage) -> Result<Statement> {
    let spec = facts.spec;
    let mut resolved = source(facts);
    // The base image (`from`), pinned by its manifest's digest.
    if let Some(base) = crate::attest::contents::BaseFacts::of(platform) {
        resolved.push(Resource {
            name: Some(base.name.clone()),
            uri: Some(PublicUrl::new(&base.purl())),
            digest: base
                .digest
                .strip_prefix("sha256:")
                .map(|h| BTreeMap::from([("sha256".to_string(), h.to_string())]))
                .unwrap_or_default(),
            annotations: BTreeMap::from([(
                "role".to_string(),
                serde_json::Value::from("base image"),
            )]),
        });
    }
    resolved.extend(
        cargo_lock(&facts.project.workspace_root)
            .context("reading Cargo.lock for the provenance statement")?,
    );
    let name = match &spec.publish.repository {
        Some(repo) => format!("{repo}:{}", spec.build.version),
        None => format!("{}:{}", spec.build.bin, spec.build.version),
    };
    Ok(Statement {
        statement_type: STATEMENT_TYPE,
        subject: vec![Resource {
            name: Some(name),
            uri: None,
            digest: digest_set(&platform.manifest.digest),
            annotations: BTreeMap::from([(
                "platform".to_string(),
                serde_json::Value::from(platform.platform.to_string()),
            )]),
        }],
        predicate_type: PREDICATE_TYPE,
        predicate: Provenance {
            build_definition: BuildDefinition {
                build_type: BUILD_TYPE,
                external_parameters: external_parameters(facts, image, platform),
                internal_parameters: InternalParameters {
                    builder_version: TOOL_VERSION,
                    rustc: facts
                        .rustc
                        .map(|r| r.lines().map(String::from).collect())
                        .unwrap_or_default(),
                    target: platform.platform.musl_triple(),
                    source_date_epoch: facts.epoch(),
                },
                resolved_dependencies: resolved,
            },
            run_details: run_details(facts, platform),
        },
    })
}

/// What the user chose for `platform`'s build: the cargo command and the image's settings.
fn external_parameters(
    facts: &Facts,
    image: &Image,
    platform: &PlatformImage,
) -> ExternalParameters {
    let spec = facts.spec;
    let binary = facts.binary(platform.platform);
    ExternalParameters {
        package: spec.build.package.clone(),
        bin: spec.build.bin.clone(),
        profile: facts.cargo.profile.to_string(),
        features: facts.cargo.features(),
        all_features: facts.cargo.all_features,
        no_default_features: facts.cargo.no_default_features,
        platform: platform.platform.to_string(),
        platforms: image
            .platforms
            .iter()
            .map(|p| p.platform.to_string())
            .collect(),
        cargo: binary.and_then(|b| b.cargo_argv.clone()),
        prebuilt_binary: binary.is_some_and(|b| b.cargo_argv.is_none()),
        settings: image_settings(spec),
    }
}

/// The settings that change the image, as the statement records them.
fn image_settings(spec: &crate::metadata::ImageSpec) -> ImageSettings {
    ImageSettings {
        binary_path: spec.config.binary_path.to_string(),
        entrypoint: spec.config.entrypoint.to_strings(),
        cmd: crate::metadata::values::texts(&spec.config.cmd),
        user: spec.config.user.to_string(),
        strip: spec.build.strip,
        ca_certs: match &spec.layers.ca_certs {
            crate::metadata::spec::CaCerts::Webpki => "webpki".into(),
            // The file's path is local; its content is in the image's layer.
            crate::metadata::spec::CaCerts::File(_) => "file".into(),
            crate::metadata::spec::CaCerts::None => "none".into(),
        },
        tzdata: spec.layers.tzdata,
        zones: spec.layers.zones.clone(),
        timezone: spec.layers.timezone.clone(),
        compression: spec.layers.compression,
        compression_level: spec.layers.compression_level,
    }
}

/// Who built it (this tool), the invocation's id and the binary in the image.
fn run_details(facts: &Facts, platform: &PlatformImage) -> RunDetails {
    RunDetails {
        builder: Builder {
            id: format!("https://crates.io/crates/{TOOL_NAME}/{TOOL_VERSION}"),
            version: BTreeMap::from([(TOOL_NAME.to_string(), TOOL_VERSION.to_string())]),
        },
        metadata: BuildMetadata {
            // Derived, not random: the same build has the same id.
            invocation_id: platform.manifest.digest.to_string(),
        },
        byproducts: facts
            .binary(platform.platform)
            .map(|b| Resource {
                name: Some(facts.spec.config.binary_path.to_string()),
                uri: None,
                digest: digest_set(&b.digest),
                annotations: BTreeMap::new(),
            })
            .into_iter()
            .collect(),
    }
}

/// The source checkout: its repository (Cargo.toml's `repository`, when given) at HEAD.
fn source(facts: &Facts) -> Vec<Resource> {
    let Some(sha) = &facts.git.sha else {
        return vec![];
    };
    let mut annotations = BTreeMap::new();
    if facts
        .git
        .revision
        .as_deref()
        .is_some_and(|r| r.ends_with("-dirty"))
    {
        // Tracked files differed from HEAD: the commit alone does not reproduce the build.
        annotations.insert("dirty".to_string(), serde_json::Value::Bool(true));
    }
    vec![Resource {
        name: Some("source".into()),
        uri: facts
            .project
            .package
            .repository
            .as_deref()
            // Scrubbed where the package was read (`metadata::public_links`); again here, as
            // every URL of a document is a `PublicUrl`.
            .map(|r| PublicUrl::new(r).wrapped("git+", &format!("@{sha}"))),
        digest: BTreeMap::from([("gitCommit".to_string(), sha.clone())]),
        annotations,
    }]
}

/// Every package Cargo.lock pins, but the workspace's own (the source covers those): name,
/// version and purl; the checksum of registry crates; the commit of git ones.
///
/// Read with toml_edit (already a dependency) rather than the `cargo-lock` crate, and kept on
/// its own so the resolved per-target graph (`metadata::graph`) can replace it.
pub fn cargo_lock(workspace_root: &Path) -> Result<Vec<Resource>> {
    use crate::metadata::graph::{self, Source};
    let mut out = Vec::new();
    for entry in graph::lock_entries(workspace_root)? {
        // A path package (no source) is part of the source, described by its revision.
        let Some(raw) = &entry.source else { continue };
        let (name, version) = (&entry.name, &entry.version);
        let purl = format!("pkg:cargo/{name}@{version}");
        let mut digest = BTreeMap::new();
        let mut annotations = BTreeMap::new();
        let source = Source::parse(Some(raw.as_str()), workspace_root, workspace_root);
        let uri = match &source {
            Source::Git { url, rev } => {
                if !rev.is_empty() {
                    digest.insert("gitCommit".to_string(), rev.clone());
                }
                url.wrapped("git+", "")
            }
            _ => {
                if let Some(sum) = &entry.checksum {
                    digest.insert("sha256".to_string(), sum.clone());
                }
                PublicUrl::new(&purl)
            }
        };
        if source != Source::CratesIo {
            annotations.insert(
                "source".to_string(),
                serde_json::Value::from(raw.to_string()),
            );
        }
        annotations.insert("version".into(), serde_json::Value::from(version.clone()));
        annotations.insert("purl".into(), serde_json::Value::from(purl));
        out.push(Resource {
            name: Some(name.clone()),
            uri: Some(uri),
            digest,
            annotations,
        });
    }
    out.sort_by(|a, b| (&a.name, &a.uri, &a.digest).cmp(&(&b.name, &b.uri, &b.digest)));
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_lock_lists_registry_and_git_packages_but_not_the_workspaces_own() {
        let dir = tempfile::tempdir().unwrap();
        let sum = "a".repeat(64);
        let rev = "0123456789abcdef0123456789abcdef01234567";
        std::fs::write(
            dir.path().join("Cargo.lock"),
            format!(
                r#"version = 4

[[package]]
name = "app"
version = "0.1.0"
dependencies = ["serde", "gitdep"]

[[package]]
name = "serde"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "{sum}"

[[package]]
name = "gitdep"
version = "0.2.0"
source = "git+https://example.com/o/gitdep?branch=main#{rev}"

[[package]]
name = "private"
version = "3.0.0"
source = "sparse+https://crates.example.com/index/"
checksum = "{sum}"
"#
            ),
        )
        .unwrap();
        let got = cargo_lock(dir.path()).unwrap();
        let json = serde_json::to_value(&got).unwrap();
        assert_eq!(got.len(), 3, "{json}");
        let by = |n: &str| {
            json.as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == n)
                .unwrap_or_else(|| panic!("{n} missing from {json}"))
                .clone()
        };
        let serde = by("serde");
        assert_eq!(serde["uri"], "pkg:cargo/serde@1.0.0");
        assert_eq!(serde["digest"]["sha256"], sum.as_str());
        assert!(serde["annotations"].get("source").is_none(), "{serde}");
        let git = by("gitdep");
        assert_eq!(git["uri"], "git+https://example.com/o/gitdep");
        assert_eq!(git["digest"]["gitCommit"], rev);
        assert_eq!(git["annotations"]["purl"], "pkg:cargo/gitdep@0.2.0");
        // Another registry says which.
        let private = by("private");
        assert_eq!(
            private["annotations"]["source"],
            "sparse+https://crates.example.com/index/"
        );
        // No Cargo.lock: nothing pinned.
        assert!(cargo_lock(&dir.path().join("none")).unwrap().is_empty());
    }
}
