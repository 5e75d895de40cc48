//! The template context: one value, built from the same [`ImageSpec`] that `build` uses, so a
//! generated Dockerfile or workflow describes the image `cargo containerize build` makes.

use super::rootfs::octal;
pub use super::rootfs::{PathMode, RootfsContext};
use crate::metadata::spec::{CaCerts, ImageSpec};
use crate::metadata::values::{ConfigString, EnvName, ImagePath, StopSignal, texts};
use crate::metadata::{CargoArgs, Project};
use crate::platform::Platform;
use anyhow::{Context as _, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The cargo-auditable release the generated Dockerfile installs: it writes the same
/// `.dep-v0` format `cargo containerize build` links in (format 1: proc-macros marked build).
pub const CARGO_AUDITABLE_VERSION: &str = "0.7.7";

/// Labels whose value changes with every commit. Templates get them apart from the static
/// labels (in the Dockerfile they are build arguments), so a generated file stays the same from
/// one commit to the next.
pub const COMMIT_LABELS: [(&str, &str); 2] = [
    ("org.opencontainers.image.created", "CREATED"),
    ("org.opencontainers.image.revision", "REVISION"),
];

/// The documented template context: everything `templates/*.j2` (and a user's own template
/// given with `--template`) can use. Every field is resolved from Cargo.toml,
/// `[package.metadata.containerize]` and the command line exactly as `cargo containerize build`
/// resolves them, so both paths produce the same image content and config.
///
/// Paths called *context-relative* are relative to the workspace root, which is the build
/// context of the generated Dockerfile (`docker build -f <dockerfile> .` from the workspace
/// root).
#[derive(Debug, Clone, Serialize)]
pub struct TemplateContext {
    /// The version of cargo-containerize that rendered the file, e.g. `"0.1.0"`; the workflow
    /// installs this version.
    pub tool_version: String,
    /// The package's name (`[package] name`).
    pub package: String,
    /// The package's version (`[package] version`).
    pub version: String,
    /// The binary target packaged into the image.
    pub bin: String,
    /// Every binary target of the package.
    pub bins: Vec<String>,
    /// The package's directory, context-relative; `"."` when the package is the workspace root.
    pub package_dir: String,
    /// Features from `-F/--features`, one name per element.
    pub features: Vec<String>,
    /// `--all-features` was given.
    pub all_features: bool,
    /// `--no-default-features` was given.
    pub no_default_features: bool,
    /// The cargo profile (`--profile`, default `"release"`).
    pub profile: String,
    /// The directory cargo writes that profile into under `target/<triple>/`: `"debug"` for
    /// `dev` and `test`, `"release"` for `release` and `bench`, else the profile's name.
    pub profile_dir: String,
    /// Every flag for `cargo build` except `--target`: `--locked`, `--profile`, `-p`, `--bin`
    /// and the feature flags, in that order; shell-quote each (`| sh`) when writing a command.
    pub cargo_flags: Vec<String>,
    /// Strip symbols and debug info from the binary (`strip`, default true).
    pub strip: bool,
    /// Embed the binary's dependency list with cargo-auditable (`auditable`, default true).
    pub auditable: bool,
    /// The cargo-auditable the Dockerfile installs for that.
    pub cargo_auditable_version: String,
    /// Whether the build compiles C code through cc-rs (then a musl C compiler is needed).
    pub compiles_c: bool,
    /// The platforms to build, in order: `linux/amd64` before `linux/arm64`.
    pub platforms: Vec<PlatformContext>,
    /// Every platform cargo-containerize can build, whether chosen or not.
    pub supported_platforms: Vec<PlatformContext>,
    /// The Rust toolchain to build with.
    pub rust: RustContext,
    /// Where the binary goes in the image (`binary-path`, default `/usr/local/bin/<bin>`).
    pub binary_path: String,
    /// The entrypoint, exec form (`entrypoint`, default `[binary_path]`).
    pub entrypoint: Vec<String>,
    /// Arguments after the entrypoint (`args`), the image's Cmd; empty for none.
    pub cmd: Vec<String>,
    /// The environment, in the image config's order: PATH, SSL_CERT_FILE (unless
    /// `ca-certs = "none"`), TZ (with `timezone`), then `env` sorted by name.
    pub env: Vec<NameValue>,
    /// The numeric user, `UID[:GID]` (`user`, default `"65532:65532"`).
    pub user: String,
    /// Whether `user` is root (uid 0).
    pub user_is_root: bool,
    /// Whether `user` was set; on a base image without it, the base's USER stays.
    pub user_given: bool,
    /// The working directory (`workdir`), or none.
    pub workdir: Option<String>,
    /// Exposed ports, normalised to `PORT/PROTO` (`ports`).
    pub ports: Vec<String>,
    /// The stop signal (`stop-signal`), or none.
    pub stop_signal: Option<String>,
    /// Labels that do not change from commit to commit: the `org.opencontainers.image.*` ones
    /// derived from Cargo.toml, then `labels` (which win), sorted by key.
    pub labels: Vec<NameValue>,
    /// Labels that change with every commit (`created`, `revision`), unless set in `labels`:
    /// the label key, the build argument that carries it in the Dockerfile (`CREATED`,
    /// `REVISION`) and the value `build` would use right now (empty when unknown).
    pub commit_labels: Vec<CommitLabel>,
    /// The CA bundle: `"webpki"` (embedded Mozilla roots), `"file"` (a PEM file from the host
    /// or the package) or `"none"`.
    pub ca_certs: String,
    /// Where the CA bundle is in the image (`/etc/ssl/certs/ca-certificates.crt`), or none.
    pub ca_bundle_path: Option<String>,
    /// The time zone database: `"bundled"` (embedded IANA data), `"host"` or `"none"`.
    pub tzdata: String,
    /// Only these zones (`zones`), or none for all.
    pub zones: Option<Vec<String>>,
    /// The default time zone (`timezone`): TZ and /etc/localtime, or none.
    pub timezone: Option<String>,
    /// Files from the package copied into the image (`include`), expanded into single files.
    pub includes: Vec<IncludeContext>,
    /// The root file system every image gets apart from the binary and `include`.
    pub rootfs: RootfsContext,
    /// Registry repository to push to: `repository` in the metadata, e.g.
    /// `"ghcr.io/owner/app"`; none means `ghcr.io/<the GitHub repository>`.
    pub repository: Option<String>,
    /// The registry host of `repository` (`"ghcr.io"` without one).
    pub registry: String,
    /// Options of the command that renders.
    pub options: RenderOptions,
    /// The final stage's base image (`from`), when it is not scratch.
    pub base: Option<BaseContext>,
}

/// A platform, in every spelling the templates need.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformContext {
    /// The OCI name, e.g. `"linux/arm64"`.
    pub name: String,
    /// The architecture as Docker's TARGETARCH spells it, e.g. `"arm64"`.
    pub arch: String,
    /// The Rust musl target, e.g. `"aarch64-unknown-linux-musl"`.
    pub triple: String,
    /// The GitHub-hosted runner that builds it natively, e.g. `"ubuntu-24.04-arm"`.
    pub runner: String,
}

/// The Rust toolchain, and the builder image that has it.
#[derive(Debug, Clone, Serialize)]
pub struct RustContext {
    /// The builder image's repository: `"docker.io/library/rust"` (the official image).
    pub image: String,
    /// What the builder image's tag ends with: `"slim-bookworm"` (Debian 12, with gcc and
    /// binutils); the tag is `<version>-<variant>`.
    pub variant: String,
    /// The version in the builder image's tag (`<version>-<variant>`): the channel
    /// of `rust-toolchain.toml`/`rust-toolchain` when it names a version, else
    /// `rust-version`'s `MAJOR.MINOR`, else `"1"` (the newest stable).
    pub version: String,
    /// The toolchain for rustup: the toolchain file's channel, else `"stable"`.
    pub toolchain: String,
    /// Where `version` came from: `"rust-toolchain.toml"`, `"rust-toolchain"`,
    /// `"rust-version"` or `"default"`.
    pub source: String,
}

/// A name and a value (an environment variable or a label).
#[derive(Debug, Clone, Serialize)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

/// A label that changes with every commit.
#[derive(Debug, Clone, Serialize)]
pub struct CommitLabel {
    /// The label key, e.g. `"org.opencontainers.image.revision"`.
    pub name: String,
    /// The Dockerfile build argument carrying it, e.g. `"REVISION"`.
    pub arg: String,
    /// The value `build` would give it now; empty when unknown.
    pub value: String,
}

/// One file of an `include`.
#[derive(Debug, Clone, Serialize)]
pub struct IncludeContext {
    /// The file, context-relative.
    pub src: String,
    /// Its absolute path in the image.
    pub dest: String,
    /// Its mode in the image: `"0755"` for executables, else `"0644"`.
    pub mode: String,
}

/// Options of the command rendering the template.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RenderOptions {
    /// `workflow --split-platforms`: one job per platform on its own runner, then a job that
    /// merges their images into one index.
    pub split_platforms: bool,
    /// The generated Dockerfile's path, context-relative (for `docker build -f`).
    pub dockerfile: String,
    /// The command that renders this file again, run from the workspace root, e.g.
    /// `cargo containerize dockerfile -p app --bin alpha -o app/Dockerfile --force`.
    pub regenerate: String,
    /// Where the workflow installs cargo-containerize from (`workflow --tool-source`).
    pub tool: super::tool_source::ToolContext,
    /// The Dockerfile starts with `# syntax=docker/dockerfile:1` (false with `dockerfile
    /// --no-syntax-line`: BuildKit's built-in frontend, for machines that cannot pull).
    pub syntax_line: bool,
}

pub(crate) fn profile_dir(profile: &str) -> String {
    match profile {
        "dev" | "test" => "debug".into(),
        "release" | "bench" => "release".into(),
        other => other.into(),
    }
}

fn runner(p: Platform) -> &'static str {
    match p {
        Platform::Amd64 => "ubuntu-24.04",
        Platform::Arm64 => "ubuntu-24.04-arm",
    }
}

fn platform_context(p: Platform) -> PlatformContext {
    PlatformContext {
        name: p.to_string(),
        arch: p.arch().into(),
        triple: p.musl_triple().into(),
        runner: runner(p).into(),
    }
}

/// `path` relative to `base`, both made absolute and canonical first.
pub(crate) fn relative_to(path: &Path, base: &Path) -> Result<String> {
    let canon = |p: &Path| {
        p.canonicalize()
            .with_context(|| format!("cannot resolve {}", p.display()))
    };
    let (path, base) = (canon(path)?, canon(base)?);
    let rel = path.strip_prefix(&base).with_context(|| {
        format!(
            "{} is outside the workspace {}; the Docker build context cannot reach it, so move it into the workspace",
            path.display(),
            base.display()
        )
    })?;
    Ok(if rel.as_os_str().is_empty() {
        ".".into()
    } else {
        rel.display().to_string()
    })
}

/// Finds the toolchain file rustup would use when building in `dir`: the nearest
/// `rust-toolchain.toml` or `rust-toolchain` in `dir` or above, up to and including `stop`.
fn toolchain_file(dir: &Path, stop: &Path) -> Option<PathBuf> {
    let mut cur = Some(dir);
    while let Some(d) = cur {
        // rustup prefers the legacy name when both exist in one directory.
        for name in ["rust-toolchain", "rust-toolchain.toml"] {
            let f = d.join(name);
            if f.is_file() {
                return Some(f);
            }
        }
        if d == stop {
            break;
        }
        cur = d.parent();
    }
    None
}

/// The channel a toolchain file names: TOML `[toolchain] channel = "…"`, or the legacy
/// one-line form.
fn toolchain_channel(file: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let trimmed = text.trim();
    if !trimmed.contains(['\n', '=', '[']) && !trimmed.is_empty() {
        return Ok(trimmed.to_string());
    }
    let doc: toml_edit::DocumentMut = trimmed.parse().map_err(|e: toml_edit::TomlError| {
        anyhow::anyhow!(
            "{} is not valid TOML ({}); fix it as rustup documents",
            file.display(),
            e.message()
        )
    })?;
    doc.get("toolchain")
        .and_then(|t| t.get("channel"))
        .and_then(|c| c.as_str())
        .map(str::to_string)
        .with_context(|| {
            format!(
                "{} has no [toolchain] channel; add e.g. channel = \"1.85\"",
                file.display()
            )
        })
}

fn is_version(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn rust_context(project: &Project) -> Result<RustContext> {
    if let Some(file) = toolchain_file(&project.package_root, &project.workspace_root) {
        let channel = toolchain_channel(&file)?;
        // A channel such as "1.85-x86_64-unknown-linux-gnu" names a host; the image is the host.
        let version = channel.split('-').next().unwrap_or(&channel);
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        return Ok(RustContext {
            image: super::RUST_IMAGE.into(),
            variant: super::RUST_IMAGE_VARIANT.into(),
            version: if is_version(version) {
                version.to_string()
            } else {
                // "stable", "beta", "nightly-2025-01-01": the newest stable image; rustup in the
                // image installs the file's toolchain when the build starts.
                "1".to_string()
            },
            toolchain: channel,
            source: name,
        });
    }
    if let Some(v) = &project.package.rust_version {
        return Ok(RustContext {
            image: super::RUST_IMAGE.into(),
            variant: super::RUST_IMAGE_VARIANT.into(),
            version: format!("{}.{}", v.major, v.minor),
            toolchain: "stable".into(),
            source: "rust-version".into(),
        });
    }
    Ok(RustContext {
        image: super::RUST_IMAGE.into(),
        variant: super::RUST_IMAGE_VARIANT.into(),
        version: "1".into(),
        toolchain: "stable".into(),
        source: "default".into(),
    })
}

fn uid_of(user: &str) -> Option<u32> {
    user.split(':').next().and_then(|u| u.parse().ok())
}

/// The flags the Dockerfile's `cargo build` gets.
fn cargo_flags(spec: &ImageSpec, cargo: &CargoArgs) -> Vec<String> {
    let mut cargo_flags: Vec<String> = vec![
        "--locked".into(),
        "--profile".into(),
        cargo.profile.to_string(),
        "-p".into(),
        spec.build.package.clone(),
        "--bin".into(),
        spec.build.bin.clone(),
    ];
    cargo_flags.extend(cargo.feature_flags());
    cargo_flags
}

/// The labels set as they are, and the commit labels (revision, created) the Dockerfile takes
/// from build arguments, unless the user set them.
fn labels(project: &Project, spec: &ImageSpec) -> (Vec<NameValue>, Vec<CommitLabel>) {
    let user_labels = project.settings.labels.clone().unwrap_or_default();
    let mut labels = Vec::new();
    let mut commit_labels = Vec::new();
    for (name, value) in &spec.config.labels {
        match COMMIT_LABELS.iter().find(|(k, _)| k == name) {
            Some((_, arg)) if !user_labels.contains_key(name) => commit_labels.push(CommitLabel {
                name: name.clone(),
                arg: (*arg).into(),
                value: value.clone(),
            }),
            _ => labels.push(NameValue {
                name: name.clone(),
                value: value.clone(),
            }),
        }
    }
    // Both, always: a Dockerfile cannot leave a label out when its argument is empty.
    for (name, arg) in COMMIT_LABELS {
        if !spec.config.labels.contains_key(name) && !user_labels.contains_key(name) {
            commit_labels.push(CommitLabel {
                name: name.into(),
                arg: arg.into(),
                value: String::new(),
            });
        }
    }
    commit_labels.sort_by(|a, b| a.name.cmp(&b.name));
    (labels, commit_labels)
}

/// The include files the Dockerfile copies, relative to the build context.
fn includes(spec: &ImageSpec, ws: &Path) -> Result<Vec<IncludeContext>> {
    spec.layers
        .includes
        .iter()
        .filter(|i| !i.is_dir)
        .map(|i| {
            Ok(IncludeContext {
                src: relative_to(&i.src, ws)?,
                dest: i.dest.clone(),
                mode: octal(i.mode),
            })
        })
        .collect()
}

fn name_values(pairs: &[(EnvName, ConfigString)]) -> Vec<NameValue> {
    pairs
        .iter()
        .map(|(k, v)| NameValue {
            name: k.to_string(),
            value: v.to_string(),
        })
        .collect()
}

fn ca_certs_name(c: &CaCerts) -> &'static str {
    match c {
        CaCerts::Webpki => "webpki",
        CaCerts::File(_) => "file",
        CaCerts::None => "none",
    }
}

/// The final stage's `FROM` when `from` names a base image.
#[derive(Debug, Clone, Serialize)]
pub struct BaseContext {
    /// What `FROM` names: the reference pinned by digest (`NAME@sha256:…`), or as given when
    /// no digest is known (then `comment` says so).
    pub image: String,
    /// A line for above the `FROM`, when the reference could not be pinned.
    pub comment: Option<String>,
}

/// The base's `FROM`: its digest from the reference when given, else resolved through the
/// registry when it answers (a bounded wait), else the tag with a comment saying so. An
/// `oci:`/`oci-archive:` base is named through a build context.
fn base_context(from: &crate::metadata::values::BaseRef) -> Option<BaseContext> {
    use crate::metadata::values::BaseRef;
    let r = match from {
        BaseRef::Scratch => return None,
        BaseRef::Registry(r) => r,
        BaseRef::Layout { .. } | BaseRef::Archive { .. } => {
            return Some(BaseContext {
                image: "base".into(),
                comment: Some(format!(
                    "The base is {from}: pass it as a build context, e.g. --build-context base=oci-layout://DIR@sha256:…"
                )),
            });
        }
    };
    if r.digest.is_some() {
        return Some(BaseContext {
            image: from.to_string(),
            comment: None,
        });
    }
    let opts = crate::registry::RegistryOptions {
        timeout: std::time::Duration::from_secs(10),
        retries: 1,
        ..Default::default()
    };
    let shell = crate::util::shell::Shell::discard();
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let resolved =
        crate::registry::pull::Puller::connect(&opts, &r.registry, &r.repository, &shell)
            .and_then(|p| p.resolve(crate::registry::client::ManifestRef::Tag(&tag)));
    Some(match resolved {
        Ok(d) => BaseContext {
            image: format!("{}@{}", from.name(), d.digest),
            comment: None,
        },
        Err(e) => BaseContext {
            image: from.name(),
            comment: Some(format!(
                "Not pinned: {} did not answer ({}); pin it as NAME:TAG@sha256:…",
                r.registry,
                crate::error_line(&e)
            )),
        },
    })
}

impl TemplateContext {
    /// Builds the context for `project`, whose settings are already merged with the command
    /// line, and `spec`, resolved from them.
    pub fn new(
        project: &Project,
        spec: &ImageSpec,
        cargo: &CargoArgs,
        options: RenderOptions,
    ) -> Result<TemplateContext> {
        let ws = &project.workspace_root;
        let package_dir = relative_to(&project.package_root, ws)?;
        let features = cargo.features();

        let cargo_flags = cargo_flags(spec, cargo);

        let (labels, commit_labels) = labels(project, spec);

        let includes = includes(spec, ws)?;

        let rootfs = super::rootfs::context(spec, &project.package.name)?;
        let repository = project.settings.repository.clone();
        // The registry the workflow logs in to: the repository's, else ghcr.io.
        let registry = match repository.as_deref() {
            Some(r) => crate::util::reference::Reference::parse(r)?.registry,
            None => "ghcr.io".to_string(),
        };

        Ok(TemplateContext {
            tool_version: env!("CARGO_PKG_VERSION").into(),
            package: spec.build.package.clone(),
            version: spec.build.version.clone(),
            bin: spec.build.bin.clone(),
            bins: spec.build.bins.clone(),
            package_dir,
            features,
            all_features: cargo.all_features,
            no_default_features: cargo.no_default_features,
            profile: cargo.profile.to_string(),
            profile_dir: profile_dir(&cargo.profile),
            cargo_flags,
            strip: spec.build.strip,
            auditable: spec.build.auditable,
            cargo_auditable_version: CARGO_AUDITABLE_VERSION.into(),
            compiles_c: project.compiles_c,
            platforms: spec
                .build
                .platforms
                .iter()
                .copied()
                .map(platform_context)
                .collect(),
            supported_platforms: Platform::ALL.into_iter().map(platform_context).collect(),
            rust: rust_context(project)?,
            binary_path: spec.config.binary_path.to_string(),
            entrypoint: spec.config.entrypoint.to_strings(),
            cmd: texts(&spec.config.cmd),
            env: name_values(&spec.config.env),
            user: spec.config.user.to_string(),
            user_is_root: uid_of(spec.config.user.as_str()) == Some(0),
            user_given: spec.config.user_given,
            workdir: spec.config.workdir.as_ref().map(ImagePath::to_string),
            ports: texts(&spec.config.ports),
            stop_signal: spec.config.stop_signal.as_ref().map(StopSignal::to_string),
            labels,
            commit_labels,
            ca_certs: ca_certs_name(&spec.layers.ca_certs).into(),
            ca_bundle_path: (spec.layers.ca_certs != CaCerts::None)
                .then(|| crate::metadata::spec::CA_BUNDLE_PATH.to_string()),
            tzdata: spec.layers.tzdata.name().into(),
            zones: spec.layers.zones.clone(),
            timezone: spec.layers.timezone.clone(),
            includes,
            rootfs,
            repository,
            registry,
            options,
            base: base_context(&spec.layers.from),
        })
    }

    /// The context as a template value (minijinja's serde support).
    pub fn to_value(&self) -> Result<minijinja::Value> {
        Ok(minijinja::Value::from(minijinja::value::Serde(self)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_dirs() {
        assert_eq!(profile_dir("dev"), "debug");
        assert_eq!(profile_dir("release"), "release");
        assert_eq!(profile_dir("dist"), "dist");
    }

    #[test]
    fn versions() {
        assert!(is_version("1.85"));
        assert!(is_version("1.80.1"));
        assert!(!is_version("stable"));
        assert!(!is_version("1"));
        assert!(!is_version("nightly-2025-01-01"));
    }

    #[test]
    fn toolchain_file_forms() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("rust-toolchain.toml");
        std::fs::write(&f, "[toolchain]\nchannel = \"1.82.0\"\ntargets = [\"x\"]\n").unwrap();
        assert_eq!(toolchain_channel(&f).unwrap(), "1.82.0");
        let legacy = d.path().join("rust-toolchain");
        std::fs::write(&legacy, "nightly-2025-01-01\n").unwrap();
        assert_eq!(toolchain_channel(&legacy).unwrap(), "nightly-2025-01-01");
        assert_eq!(toolchain_file(d.path(), d.path()).unwrap(), legacy);
        std::fs::write(&f, "[toolchain]\n").unwrap();
        std::fs::remove_file(&legacy).unwrap();
        let e = toolchain_channel(&f).unwrap_err().to_string();
        assert!(e.contains("no [toolchain] channel"), "{e}");
    }
}
