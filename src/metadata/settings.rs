//! The `[package.metadata.containerize]` schema (with `[workspace.metadata.containerize]` as
//! defaults). Every key is optional; `merge` lays the package's table over the workspace's.
//! Unknown keys are rejected so that a typo never silently does nothing.
//!
//! Each setting is declared once, in the `settings!` list below: its key, its typed value and
//! doc line, its default as README.md's settings table gives it, the example `init` writes,
//! how it merges, and its command-line flag. The list makes [`Settings`], [`KEYS`],
//! [`DECLARED`] (read by `init` and by the README test), [`Settings::merge`] and
//! [`SettingsFlags`] (the flags `cargo containerize build` flattens in). A `macro_rules!` list
//! is hand-written because no maintained crate joins a serde table, clap flags and these
//! texts from one declaration (figment and config layer sources but declare neither flags nor
//! docs; clap's `Args` alone declares no file keys).

pub use super::values::Port;
use super::values::{
    Allocator, BaseRef, CaSource, Compression, ConfigString, Entrypoint, EnvName, ImagePath,
    OpensslMode, SbomFormats, StopSignal, TzData, User, ZoneName,
};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What `init`'s examples may name: the package's binary and package names.
pub struct Example<'a> {
    pub bin: &'a str,
    pub package: &'a str,
}

/// A setting's texts, as declared: its key, its default as README.md's settings table
/// writes it, and the commented line `init` writes (`key = example  # note`).
pub struct Declared {
    pub key: &'static str,
    pub readme_default: &'static str,
    pub example: fn(&Example<'_>) -> String,
    pub note: &'static str,
}

/// The list of settings: see the module's documentation. Each entry is
///
/// ```text
/// /// doc line
/// field: Type {
///     key: "key", readme_default: "…", init: |example| "toml value".into(), note: "…",
///     [merge: function,]               // default: `replace` (the upper layer wins)
///     [flag: { /// help …  #[arg(…)] name: FlagType } = expression giving Result<Option<Type>>,]
/// }
/// ```
macro_rules! settings {
    (@merge $under:expr, $over:expr) => { replace($under, $over) };
    (@merge $under:expr, $over:expr, $merge:path) => { $merge($under, $over) };
    (@flag) => { None };
    (@flag $flag:ident, $flags:ident, $convert:expr) => {{
        let $flag = &$flags.$flag;
        $convert?
    }};
    ($(
        $(#[doc = $doc:literal])*
        $field:ident: $ty:ty {
            key: $key:literal,
            readme_default: $readme:literal,
            init: $init:expr,
            note: $note:literal,
            $(merge: $merge:path,)?
            $(flag: { $(#[$fattr:meta])* $flag:ident: $fty:ty } = $convert:expr,)?
        }
    )*) => {
        #[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
        #[serde(deny_unknown_fields)]
        pub struct Settings {
            $(
                $(#[doc = $doc])*
                #[serde(rename = $key)]
                pub $field: Option<$ty>,
            )*
        }

        /// The documented list of keys, for error messages and `init`.
        pub const KEYS: &[&str] = &[$($key),*];

        /// Every setting's texts, in the order `init` and README.md's table list them.
        pub const DECLARED: &[Declared] = &[$(Declared {
            key: $key,
            readme_default: $readme,
            example: $init,
            note: $note,
        }),*];

        impl Settings {
            /// Lays `over` on top of `self`: scalar keys are replaced, tables (env, labels) are
            /// merged key by key, lists are replaced.
            pub fn merge(self, over: Settings) -> Settings {
                Settings {
                    $($field: settings!(@merge self.$field, over.$field $(, $merge)?),)*
                }
            }
        }

        /// The settings' command-line flags (`cargo containerize build` flattens them in).
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct SettingsFlags {
            $($(
                $(#[$fattr])*
                pub $flag: $fty,
            )?)*
        }

        impl SettingsFlags {
            /// The settings given on the command line; they win over Cargo.toml's.
            pub fn settings(&self) -> Result<Settings> {
                let flags = self;
                Ok(Settings {
                    $($field: settings!(@flag $($flag, flags, $convert)?),)*
                })
            }
        }
    };
}

/// The upper layer's value when it has one (scalars and lists).
fn replace<T>(under: Option<T>, over: Option<T>) -> Option<T> {
    over.or(under)
}

/// Both layers' tables, key by key, the upper one winning (env, labels).
fn extend<K: Ord, V>(
    under: Option<BTreeMap<K, V>>,
    over: Option<BTreeMap<K, V>>,
) -> Option<BTreeMap<K, V>> {
    match (under, over) {
        (Some(mut under), Some(over)) => {
            under.extend(over);
            Some(under)
        }
        (under, over) => over.or(under),
    }
}

/// A flag's value as given (a typed flag clap parsed already).
fn given<T: Clone>(value: &Option<T>) -> Result<Option<T>> {
    Ok(value.clone())
}

/// A path flag, absolute (relative to the current directory): a path in Cargo.toml is relative
/// to the package instead, and both meet in one setting.
fn absolute(value: &Option<std::path::PathBuf>, flag: &str) -> Result<Option<std::path::PathBuf>> {
    value
        .as_deref()
        .map(std::path::absolute)
        .transpose()
        .with_context(|| format!("{flag}: cannot make the path absolute"))
}

/// A flag's text parsed into the setting's type, the flag named in the error.
fn parsed<T>(value: &Option<String>, flag: &str) -> Result<Option<T>>
where
    T: std::str::FromStr,
    T::Err: Into<anyhow::Error>,
{
    value
        .as_deref()
        .map(|v| v.parse().map_err(Into::into))
        .transpose()
        .context(flag.to_string())
}

/// Repeated `KEY=VALUE` flags as a table; none given is no table.
fn key_values(flag: &str, items: &[String]) -> Result<Option<BTreeMap<String, String>>> {
    if items.is_empty() {
        return Ok(None);
    }
    let mut m = BTreeMap::new();
    for item in items {
        let Some((k, v)) = item.split_once('=') else {
            bail!("{flag} `{item}` is not KEY=VALUE; write it as {flag} NAME=value");
        };
        m.insert(k.to_string(), v.to_string());
    }
    Ok(Some(m))
}

/// `--env KEY=VALUE` flags, each name and value checked.
fn env_flags(items: &[String]) -> Result<Option<BTreeMap<EnvName, ConfigString>>> {
    key_values("--env", items)?
        .map(|m| {
            m.into_iter()
                .map(|(k, v)| Ok((k.parse()?, v.parse()?)))
                .collect::<Result<_>>()
        })
        .transpose()
        .context("--env")
}

/// A TOML string, as `init` writes it.
pub fn toml_str(s: &str) -> String {
    toml_edit::Value::from(s).to_string().trim().to_string()
}

settings! {
    /// Which binary target to package when the package has several.
    bin: String {
        key: "bin",
        readme_default: "the only binary",
        init: |e| toml_str(e.bin),
        note: "the binary target, when the package has several",
    }
    /// Where the binary goes in the image; default /usr/local/bin/<name>.
    binary_path: ImagePath {
        key: "binary-path",
        readme_default: "`/usr/local/bin/<bin>`",
        init: |e| toml_str(&format!("/usr/local/bin/{}", e.bin)),
        note: "where the binary goes in the image",
    }
    /// The base image: "scratch" (default, nothing below the tool's layers), a registry
    /// reference (a tag or @sha256:…), "oci:DIR[:TAG]" or "oci-archive:FILE[:TAG]".
    from: BaseRef {
        key: "from",
        readme_default: "`\"scratch\"`",
        init: |_| toml_str("gcr.io/distroless/static:nonroot"),
        note: "the base image; default \"scratch\"",
        flag: {
            /// The base image: scratch [default], a registry reference, oci:DIR[:TAG] or
            /// oci-archive:FILE[:TAG]
            #[arg(long, value_name = "REF", help_heading = "Image options")]
            from: Option<String>
        } = parsed(from, "--from"),
    }
    /// The base of the debug variant (`--debug`: the same binary on it, tagged `<tag>-debug`),
    /// e.g. an image with a shell.
    debug_from: BaseRef {
        key: "debug-from",
        readme_default: "none",
        init: |_| toml_str("docker.io/library/busybox:musl"),
        note: "--debug also builds the image on this base, tagged <tag>-debug",
        flag: {
            /// The debug variant's base (with a shell); --debug builds it, tagged <tag>-debug
            #[arg(long, value_name = "REF", help_heading = "Image options")]
            debug_from: Option<String>
        } = parsed(debug_from, "--debug-from"),
    }
    /// Entrypoint (exec form); default: the binary's path in the image.
    entrypoint: Entrypoint {
        key: "entrypoint",
        readme_default: "`[\"/usr/local/bin/<bin>\"]`",
        init: |e| format!("[{}]", toml_str(&format!("/usr/local/bin/{}", e.bin))),
        note: "exec form",
    }
    /// Cmd: arguments passed to the entrypoint.
    args: Vec<ConfigString> {
        key: "args",
        readme_default: "none",
        init: |_| "[]".into(),
        note: "the image's Cmd",
    }
    /// Extra environment variables.
    env: BTreeMap<EnvName, ConfigString> {
        key: "env",
        readme_default: "none",
        init: |_| "{ RUST_LOG = \"info\" }".into(),
        note: "added to PATH, SSL_CERT_FILE and TZ",
        merge: extend,
        flag: {
            /// Set an environment variable (repeatable)
            #[arg(long = "env", value_name = "KEY=VALUE", help_heading = "Image options")]
            env: Vec<String>
        } = env_flags(env),
    }
    /// The user the process runs as; default "65532:65532" (nonroot).
    user: User {
        key: "user",
        readme_default: "`\"65532:65532\"`",
        init: |_| toml_str(super::values::DEFAULT_USER),
        note: "numeric UID:GID (65532 is nonroot)",
        flag: {
            /// User to run as, numeric UID[:GID] [default: 65532:65532]
            #[arg(long, help_heading = "Image options")]
            user: Option<String>
        } = parsed(user, "--user"),
    }
    /// WorkingDir; default "/".
    workdir: ImagePath {
        key: "workdir",
        readme_default: "`/`",
        init: |_| "\"/\"".into(),
        note: "",
    }
    /// Exposed ports: 8080, "8080", "8080/tcp", "53/udp".
    ports: Vec<Port> {
        key: "ports",
        readme_default: "none",
        init: |_| "[8080, \"53/udp\"]".into(),
        note: "exposed ports",
    }
    /// StopSignal, e.g. "SIGTERM".
    stop_signal: StopSignal {
        key: "stop-signal",
        readme_default: "none",
        init: |_| "\"SIGTERM\"".into(),
        note: "",
    }
    /// Image labels (and manifest annotations); override the ones derived from Cargo.toml.
    labels: BTreeMap<String, String> {
        key: "labels",
        readme_default: "from Cargo.toml",
        init: |_| "{ \"org.opencontainers.image.vendor\" = \"Example\" }".into(),
        note: "",
        merge: extend,
        flag: {
            /// Set a label and annotation (repeatable)
            #[arg(
                long = "label",
                value_name = "KEY=VALUE",
                help_heading = "Image options"
            )]
            labels: Vec<String>
        } = key_values("--label", labels),
    }
    /// CA bundle: "webpki" (default, embedded), "host", "none", "base" (the base image's), or a
    /// path to a PEM file.
    ca_certs: CaSource {
        key: "ca-certs",
        readme_default: "`\"webpki\"`",
        init: |_| toml_str(&CaSource::default().to_string()),
        note: "embedded Mozilla roots; \"host\", \"none\" or a PEM file",
        flag: {
            /// CA bundle: webpki, host, none, base (the base image's) or a PEM file
            #[arg(long, value_name = "SOURCE", help_heading = "Image options")]
            ca_certs: Option<CaSource>
        } = given(ca_certs),
    }
    /// Time zone database: "bundled" (default, embedded), "host", "none", or "base" (the base
    /// image's).
    tzdata: TzData {
        key: "tzdata",
        readme_default: "`\"bundled\"`",
        init: |_| toml_str(&TzData::default().to_string()),
        note: "embedded IANA data; \"host\" or \"none\"",
        flag: {
            /// Time zone database: bundled, host, none or base (the base image's)
            #[arg(long, value_name = "SOURCE", help_heading = "Image options")]
            tzdata: Option<TzData>
        } = given(tzdata),
    }
    /// Only these zones of the time zone database.
    zones: Vec<ZoneName> {
        key: "zones",
        readme_default: "all",
        init: |_| "[\"UTC\", \"Europe/Berlin\"]".into(),
        note: "only these zones (default: all)",
    }
    /// Sets TZ and /etc/localtime, e.g. "Asia/Kolkata".
    timezone: ZoneName {
        key: "timezone",
        readme_default: "none",
        init: |_| "\"UTC\"".into(),
        note: "sets TZ and /etc/localtime",
        flag: {
            /// Time zone for TZ and /etc/localtime, e.g. Asia/Kolkata
            #[arg(long, help_heading = "Image options")]
            timezone: Option<String>
        } = parsed(timezone, "--timezone"),
    }
    /// Extra files: `{ src = "relative/to/package", dest = "/in/image" }`.
    include: Vec<Include> {
        key: "include",
        readme_default: "none",
        init: |_| "[{ src = \"config/app.toml\", dest = \"/etc/app/app.toml\" }]".into(),
        note: "",
    }
    /// Strip symbols and debug info from the binary; default true.
    strip: bool {
        key: "strip",
        readme_default: "`true`",
        init: |_| "true".into(),
        note: "strip symbols and debug info",
        flag: {
            /// Keep symbols and debug info in the binary
            #[arg(long, help_heading = "Image options")]
            no_strip: bool
        } = Ok::<_, anyhow::Error>(no_strip.then_some(false)),
    }
    /// Embed the binary's dependency list (cargo-auditable's `.dep-v0` section) so scanners
    /// see its crates; default true.
    auditable: bool {
        key: "auditable",
        readme_default: "`true`",
        init: |_| "true".into(),
        note: "embed the dependency list scanners read (syft, trivy)",
        flag: {
            /// Embed the binary's dependency list for scanners (--auditable=false: don't)
            #[arg(
                long,
                value_name = "BOOL",
                num_args = 0..=1,
                require_equals = true,
                default_missing_value = "true",
                help_heading = "Image options"
            )]
            auditable: Option<bool>
        } = given(auditable),
    }
    /// List the referrers (SBOMs, provenance) in `oci:` layouts' and `oci-archive:` files'
    /// index.json too; default false.
    layout_referrers: bool {
        key: "layout-referrers",
        readme_default: "`false`",
        init: |_| "false".into(),
        note: "list SBOMs and provenance in oci: layouts' index.json too",
        flag: {
            /// List the SBOMs and provenance in oci: layouts' and oci-archive: files' index.json too
            /// [default: false, or `layout-referrers` in Cargo.toml]
            #[arg(
                long,
                value_name = "BOOL",
                num_args = 0..=1,
                require_equals = true,
                default_missing_value = "true",
                help_heading = "Image options"
            )]
            layout_referrers: Option<bool>
        } = given(layout_referrers),
    }
    /// OpenSSL for openssl-sys: "build" (default: a static OpenSSL for the target, built once
    /// and cached) or "off".
    openssl: OpensslMode {
        key: "openssl",
        readme_default: "`\"build\"`",
        init: |_| "\"build\"".into(),
        note: "static OpenSSL for openssl-sys, built once per target; or \"off\"",
    }
    /// Attach a provenance statement (in-toto, SLSA v1) to each platform manifest; default true.
    provenance: bool {
        key: "provenance",
        readme_default: "`true`",
        init: |_| "true".into(),
        note: "attach a SLSA provenance statement to each platform manifest",
        flag: {
            /// Attach a SLSA provenance statement (in-toto) to each platform manifest, as an OCI 1.1
            /// referrer [default: true, or `provenance` in Cargo.toml]
            #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, help_heading = "Image options")]
            provenance: Option<bool>
        } = given(provenance),
    }
    /// Sign what `--push` pushes, in cosign's format, with `signing-key`; default false.
    sign: bool {
        key: "sign",
        readme_default: "`false`",
        init: |_| "false".into(),
        note: "sign pushed images (cosign's format) with signing-key",
        flag: {
            /// Sign the pushed image and attest its provenance and SBOMs (cosign's format) with
            /// --key [default: false, or `sign` in Cargo.toml]
            #[arg(
                long,
                value_name = "BOOL",
                num_args = 0..=1,
                require_equals = true,
                default_missing_value = "true",
                help_heading = "Registry options"
            )]
            sign: Option<bool>
        } = given(sign),
    }
    /// The private key `sign` uses, relative to the package: cosign.key (encrypted; password
    /// from COSIGN_PASSWORD or the terminal) or an unencrypted PKCS#8 P-256 PEM.
    signing_key: std::path::PathBuf {
        key: "signing-key",
        readme_default: "none",
        init: |_| toml_str("cosign.key"),
        note: "cosign.key (password from COSIGN_PASSWORD) or a PKCS#8 P-256 PEM",
        flag: {
            /// The signing key: cosign.key (password from COSIGN_PASSWORD or the terminal) or a
            /// PKCS#8 P-256 PEM [default: `signing-key` in Cargo.toml]
            #[arg(long = "key", value_name = "PATH", help_heading = "Registry options")]
            key: Option<std::path::PathBuf>
        } = absolute(key, "--key"),
    }
    /// The malloc linked into the binary: "musl" (default, musl's own) or "mimalloc".
    allocator: Allocator {
        key: "allocator",
        readme_default: "`\"musl\"`",
        init: |_| toml_str(Allocator::default().as_str()),
        note: "musl's own malloc; \"mimalloc\" is faster for allocation-heavy programs",
        flag: {
            /// The malloc linked into the binary: musl [default] or mimalloc
            #[arg(long, value_name = "NAME", help_heading = "Image options")]
            allocator: Option<Allocator>
        } = given(allocator),
    }
    /// SBOM formats attached to each platform manifest: true (default: SPDX and CycloneDX),
    /// false, or a list such as ["spdx"].
    sbom: SbomFormats {
        key: "sbom",
        readme_default: "`true`",
        init: |_| "[\"spdx\", \"cyclonedx\"]".into(),
        note: "SBOMs attached to each platform manifest; or false",
        flag: {
            /// SBOMs attached to each platform manifest as OCI 1.1 referrers: spdx, cyclonedx (comma
            /// separated) or none [default: spdx,cyclonedx, or `sbom` in Cargo.toml]
            #[arg(long, value_name = "FORMATS", value_parser = SbomFormats::parse_arg, help_heading = "Image options")]
            sbom: Option<SbomFormats>
        } = given(sbom),
    }
    /// Platforms to build, e.g. ["linux/amd64", "linux/arm64"]; default: the host's.
    platforms: Vec<String> {
        key: "platforms",
        readme_default: "the host's",
        init: |_| "[\"linux/amd64\", \"linux/arm64\"]".into(),
        note: "default: the host's",
        flag: {
            /// Target platforms, comma separated [supported: linux/amd64, linux/arm64; default: the host's]
            #[arg(
                long,
                value_name = "PLATFORMS",
                value_delimiter = ',',
                help_heading = "Image options"
            )]
            platform: Vec<String>
        } = Ok::<_, anyhow::Error>((!platform.is_empty()).then(|| platform.clone())),
    }
    /// Layer compression: "gzip" (default) or "zstd".
    compression: Compression {
        key: "compression",
        readme_default: "`\"gzip\"`",
        init: |_| toml_str(&Compression::default().to_string()),
        note: "or \"zstd\"",
        flag: {
            /// Layer compression: gzip or zstd
            #[arg(long, value_name = "ALGORITHM", help_heading = "Image options")]
            compression: Option<Compression>
        } = given(compression),
    }
    /// Compression level: gzip 1–12 (default 5), zstd 1–19 (default 7).
    compression_level: i32 {
        key: "compression-level",
        readme_default: "gzip 5, zstd 7",
        init: |_| Compression::default().default_level().to_string(),
        note: "gzip 1-12 (default 5), zstd 1-19 (default 7)",
        flag: {
            /// Compression level: gzip 1-12 [default: 5], zstd 1-19 [default: 7]
            #[arg(long, value_name = "N", help_heading = "Image options")]
            compression_level: Option<i32>
        } = given(compression_level),
    }
    /// Registry repository to push to, e.g. "ghcr.io/owner/app".
    repository: String {
        key: "repository",
        readme_default: "none",
        init: |e| toml_str(&format!("ghcr.io/owner/{}", e.package)),
        note: "where --push goes",
    }
    /// Tags for `repository`; placeholders {version}, {git_sha}, {git_short_sha}.
    tags: Vec<String> {
        key: "tags",
        readme_default: "`[\"{version}\"]`",
        init: |_| "[\"{version}\", \"latest\"]".into(),
        note: "also {git_sha}, {git_short_sha}",
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Include {
    pub src: String,
    pub dest: ImagePath,
}

/// The path (`key`, or `include[i].key`) of the first key the schema does not have.
fn unknown_key(value: &serde_json::Value) -> Option<String> {
    let table = value.as_object()?;
    if let Some(k) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Some(k.clone());
    }
    let includes = table.get("include").and_then(|v| v.as_array())?;
    includes.iter().enumerate().find_map(|(i, inc)| {
        inc.as_object()?
            .keys()
            .find(|k| !matches!(k.as_str(), "src" | "dest"))
            .map(|k| format!("include[{i}].{k}"))
    })
}

impl Settings {
    /// Parses one metadata table. `origin` names where it came from, for the error message.
    pub fn from_value(value: &serde_json::Value, origin: &str) -> anyhow::Result<Settings> {
        if value.is_null() {
            return Ok(Settings::default());
        }
        // Unknown keys are found by looking at the keys, not at serde's message: the schema's
        // keys are KEYS, an include's are `src` and `dest`.
        if let Some(path) = unknown_key(value) {
            // A key may hold control characters (a NUL): shown escaped, never raw.
            let key: String = path
                .rsplit('.')
                .next()
                .unwrap_or(&path)
                .escape_debug()
                .collect();
            let path: String = path.escape_debug().collect();
            anyhow::bail!(
                "unknown key `{key}` (in `{path}`) in {origin}; remove it or use one of: {}",
                KEYS.join(", ")
            );
        }
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path: String = e.path().to_string().escape_debug().collect();
            let msg = e.into_inner().to_string();
            anyhow::anyhow!(
                "invalid value for `{path}` in {origin}: {msg}; see README.md, section Settings"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_key_is_named() {
        let err = Settings::from_value(
            &json!({"entrypiont": ["x"]}),
            "[package.metadata.containerize]",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown key `entrypiont`"), "{err}");
        assert!(err.contains("entrypoint"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = Settings::from_value(&json!({"user": 65532}), "[package.metadata.containerize]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`user`"), "{err}");
        let err = Settings::from_value(&json!({"include": [{"src": "a", "dst": "/a"}]}), "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`dst`") && err.contains("include[0]"), "{err}");
    }

    #[test]
    fn every_documented_key_parses() {
        let v = json!({
            "bin": "a", "entrypoint": ["/a"], "args": ["x"], "env": {"A": "1"}, "user": "1:1",
            "workdir": "/w", "ports": [80, "53/udp"], "stop-signal": "SIGINT", "labels": {"k": "v"},
            "ca-certs": "none", "tzdata": "none", "zones": ["UTC"], "timezone": "UTC",
            "include": [{"src": "a", "dest": "/a"}], "strip": false, "binary-path": "/app",
            "platforms": ["linux/amd64"], "compression": "zstd", "compression-level": 3, "repository": "r", "tags": ["t"],
            "openssl": "off", "provenance": false, "allocator": "mimalloc", "sbom": ["spdx"], "auditable": false,
            "layout-referrers": true, "sign": true, "signing-key": "cosign.key",
            "from": "oci:base", "debug-from": "busybox:musl"
        });
        let s = Settings::from_value(&v, "t").unwrap();
        let back = serde_json::to_value(&s).unwrap();
        for key in KEYS {
            assert!(
                back.get(key).is_some_and(|v| !v.is_null()),
                "{key} not parsed"
            );
        }
    }

    #[test]
    fn bad_values_name_the_key_and_the_remedy() {
        for (v, key, words) in [
            (json!({"ports": [80, 70000]}), "`ports[1]`", "1 to 65535"),
            (json!({"user": "+0"}), "`user`", "UID[:GID]"),
            (
                json!({"binary-path": "/a/.wh.b"}),
                "`binary-path`",
                "whiteout",
            ),
            (
                json!({"include": [{"src": "a", "dest": "x"}]}),
                "`include[0].dest`",
                "absolute",
            ),
            (json!({"env": {"A": "a\u{0}"}}), "`env.A`", "NUL"),
            (json!({"entrypoint": [""]}), "`entrypoint`", "program"),
            (json!({"openssl": "vendored"}), "`openssl`", "\"build\""),
            (
                json!({"allocator": "tcmalloc"}),
                "`allocator`",
                "\"mimalloc\"",
            ),
            (
                json!({"stop-signal": "SIGNOPE"}),
                "`stop-signal`",
                "SIGTERM",
            ),
        ] {
            let err = Settings::from_value(&v, "t").unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(words), "{v}: {err}");
        }
        let err = Settings::from_value(&json!({"env": {"A=B": "1"}}), "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("env") && err.contains("A=B"), "{err}");
    }

    /// README.md's settings table lists the declared settings, in their order, each with its
    /// declared default: a setting added, removed or re-defaulted without the README fails here.
    #[test]
    fn readme_table_matches_the_declarations() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("\n## Settings\n")
            .nth(1)
            .expect("README.md has a Settings section");
        let rows: Vec<(String, String)> = section
            .lines()
            .skip_while(|l| !l.starts_with("| key | default | meaning |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.split(" | ").collect();
                let key = cells[0].trim_start_matches("| ").trim_matches('`');
                (key.to_string(), cells[1].to_string())
            })
            .collect();
        let declared: Vec<(String, String)> = DECLARED
            .iter()
            .map(|d| (d.key.to_string(), d.readme_default.to_string()))
            .collect();
        assert_eq!(rows, declared, "README.md's settings table");
    }

    #[test]
    fn flags_lay_over_the_settings() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            flags: SettingsFlags,
        }
        let cli = Cli::parse_from([
            "x",
            "--env",
            "A=1",
            "--label",
            "k=v",
            "--user",
            "1:2",
            "--no-strip",
            "--platform",
            "linux/amd64,linux/arm64",
            "--compression",
            "zstd",
            "--auditable=false",
        ]);
        let s = cli.flags.settings().unwrap();
        assert_eq!(s.user.map(String::from).as_deref(), Some("1:2"));
        assert_eq!(s.strip, Some(false));
        assert_eq!(s.auditable, Some(false));
        assert_eq!(s.compression, Some(Compression::Zstd));
        assert_eq!(s.platforms.unwrap().len(), 2);
        assert_eq!(s.labels.unwrap()["k"], "v");
        assert_eq!(s.env.unwrap().len(), 1);
        assert_eq!(s.bin, None);
        let none = Cli::parse_from(["x"]).flags.settings().unwrap();
        assert_eq!(none, Settings::default());
        let err = Cli::parse_from(["x", "--env", "A"])
            .flags
            .settings()
            .unwrap_err();
        assert!(err.to_string().contains("KEY=VALUE"), "{err}");
        let err = Cli::parse_from(["x", "--user", "+0"])
            .flags
            .settings()
            .unwrap_err();
        assert!(format!("{err:#}").starts_with("--user: "), "{err:#}");
    }

    #[test]
    fn package_overrides_workspace_and_tables_merge() {
        let ws = Settings::from_value(&json!({"user": "1:1", "env": {"A": "ws", "B": "ws"}}), "w")
            .unwrap();
        let pkg = Settings::from_value(&json!({"env": {"B": "pkg"}, "strip": false}), "p").unwrap();
        let m = ws.merge(pkg);
        assert_eq!(m.user.map(String::from).as_deref(), Some("1:1"));
        assert_eq!(m.strip, Some(false));
        let env: BTreeMap<String, String> = m
            .env
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        assert_eq!(env["A"], "ws");
        assert_eq!(env["B"], "pkg");
    }
}
