//! The `[package.metadata.containerize]` schema (with `[workspace.metadata.containerize]` as
//! defaults). Every key is optional; `merge` lays the package's table over the workspace's.
//! Unknown keys are rejected so that a typo never silently does nothing.

use super::spec::{CaSource, Compression, TzData};
pub use super::values::Port;
use super::values::{
    Allocator, ConfigString, Entrypoint, EnvName, ImagePath, OpensslMode, SbomFormats, StopSignal,
    User, ZoneName,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Which binary target to package when the package has several.
    pub bin: Option<String>,
    /// Entrypoint (exec form); default: the binary's path in the image.
    pub entrypoint: Option<Entrypoint>,
    /// Cmd: arguments passed to the entrypoint.
    pub args: Option<Vec<ConfigString>>,
    /// Extra environment variables.
    pub env: Option<BTreeMap<EnvName, ConfigString>>,
    /// The user the process runs as; default "65532:65532" (nonroot).
    pub user: Option<User>,
    /// WorkingDir; default "/".
    pub workdir: Option<ImagePath>,
    /// Exposed ports: 8080, "8080", "8080/tcp", "53/udp".
    pub ports: Option<Vec<Port>>,
    /// StopSignal, e.g. "SIGTERM".
    pub stop_signal: Option<StopSignal>,
    /// Image labels (and manifest annotations); override the ones derived from Cargo.toml.
    pub labels: Option<BTreeMap<String, String>>,
    /// CA bundle: "webpki" (default, embedded), "host", "none", or a path to a PEM file.
    pub ca_certs: Option<CaSource>,
    /// Time zone database: "bundled" (default, embedded), "host", or "none".
    pub tzdata: Option<TzData>,
    /// Only these zones of the time zone database.
    pub zones: Option<Vec<ZoneName>>,
    /// Sets TZ and /etc/localtime, e.g. "Asia/Kolkata".
    pub timezone: Option<ZoneName>,
    /// Extra files: `{ src = "relative/to/package", dest = "/in/image" }`.
    pub include: Option<Vec<Include>>,
    /// Strip symbols and debug info from the binary; default true.
    pub strip: Option<bool>,
    /// Where the binary goes in the image; default /usr/local/bin/<name>.
    pub binary_path: Option<ImagePath>,
    /// Platforms to build, e.g. ["linux/amd64", "linux/arm64"]; default: the host's.
    pub platforms: Option<Vec<String>>,
    /// Layer compression: "gzip" (default) or "zstd".
    pub compression: Option<Compression>,
    /// Compression level: gzip 1–12 (default 5), zstd 1–19 (default 7).
    pub compression_level: Option<i32>,
    /// Registry repository to push to, e.g. "ghcr.io/owner/app".
    pub repository: Option<String>,
    /// Tags for `repository`; placeholders {version}, {git_sha}, {git_short_sha}.
    pub tags: Option<Vec<String>>,
    /// OpenSSL for openssl-sys: "build" (default: a static OpenSSL for the target, built once
    /// and cached) or "off".
    pub openssl: Option<OpensslMode>,
    /// Attach a provenance statement (in-toto, SLSA v1) to each platform manifest; default true.
    pub provenance: Option<bool>,
    /// The malloc linked into the binary: "musl" (default, musl's own) or "mimalloc".
    pub allocator: Option<Allocator>,
    /// SBOM formats attached to each platform manifest: true (default: SPDX and CycloneDX),
    /// false, or a list such as ["spdx"].
    pub sbom: Option<SbomFormats>,
    /// Embed the binary's dependency list (cargo-auditable's `.dep-v0` section) so scanners
    /// see its crates; default true.
    pub auditable: Option<bool>,
    /// List the referrers (SBOMs, provenance) in `oci:` layouts' and `oci-archive:` files'
    /// index.json too; default false.
    pub layout_referrers: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Include {
    pub src: String,
    pub dest: ImagePath,
}

/// The documented list of keys, for error messages and `init`.
pub const KEYS: &[&str] = &[
    "bin",
    "entrypoint",
    "args",
    "env",
    "user",
    "workdir",
    "ports",
    "stop-signal",
    "labels",
    "ca-certs",
    "tzdata",
    "zones",
    "timezone",
    "include",
    "strip",
    "binary-path",
    "platforms",
    "compression",
    "compression-level",
    "repository",
    "tags",
    "openssl",
    "provenance",
    "allocator",
    "sbom",
    "auditable",
    "layout-referrers",
];

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

    /// Lays `over` on top of `self`: scalar keys are replaced, tables (env, labels) are merged
    /// key by key, lists are replaced.
    pub fn merge(self, over: Settings) -> Settings {
        fn map<K: Ord, V>(
            a: Option<BTreeMap<K, V>>,
            b: Option<BTreeMap<K, V>>,
        ) -> Option<BTreeMap<K, V>> {
            match (a, b) {
                (Some(mut a), Some(b)) => {
                    a.extend(b);
                    Some(a)
                }
                (a, b) => b.or(a),
            }
        }
        Settings {
            bin: over.bin.or(self.bin),
            entrypoint: over.entrypoint.or(self.entrypoint),
            args: over.args.or(self.args),
            env: map(self.env, over.env),
            user: over.user.or(self.user),
            workdir: over.workdir.or(self.workdir),
            ports: over.ports.or(self.ports),
            stop_signal: over.stop_signal.or(self.stop_signal),
            labels: map(self.labels, over.labels),
            ca_certs: over.ca_certs.or(self.ca_certs),
            tzdata: over.tzdata.or(self.tzdata),
            zones: over.zones.or(self.zones),
            timezone: over.timezone.or(self.timezone),
            include: over.include.or(self.include),
            strip: over.strip.or(self.strip),
            binary_path: over.binary_path.or(self.binary_path),
            platforms: over.platforms.or(self.platforms),
            compression: over.compression.or(self.compression),
            compression_level: over.compression_level.or(self.compression_level),
            repository: over.repository.or(self.repository),
            tags: over.tags.or(self.tags),
            openssl: over.openssl.or(self.openssl),
            provenance: over.provenance.or(self.provenance),
            allocator: over.allocator.or(self.allocator),
            sbom: over.sbom.or(self.sbom),
            auditable: over.auditable.or(self.auditable),
            layout_referrers: over.layout_referrers.or(self.layout_referrers),
        }
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
            "layout-referrers": true
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
