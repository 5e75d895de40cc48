//! `workflow --tool-source`: where the generated workflow installs cargo-containerize from,
//! pinned so that the job (which holds `packages: write`, `id-token: write` and
//! `attestations: write`) runs exactly the code the maintainer chose.
//!
//! Two sources, each pinned to one immutable thing: a crate on crates.io at one exact version
//! (`cargo install NAME --version =X.Y.Z --locked`), or a git repository at one full commit
//! (`cargo install --git URL --rev SHA --locked`). A version range, a branch, a tag or a short
//! hash is refused, since each can come to name other code later.

use anyhow::{Result, bail};
use serde::Serialize;
use std::str::FromStr;

/// The binary every source must provide (the package may be renamed; the binary may not,
/// since `cargo containerize` runs it).
pub const TOOL_BIN: &str = "cargo-containerize";

/// Where the generated workflow installs cargo-containerize from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolSource {
    /// `crates.io:NAME@X.Y.Z`: the crate `NAME` at exactly that version.
    Crate {
        name: String,
        version: semver::Version,
    },
    /// `git:https://HOST/PATH#SHA`: the repository at that full commit.
    Git { url: url::Url, rev: String },
}

impl Default for ToolSource {
    /// This build's own package and version, from crates.io.
    fn default() -> Self {
        ToolSource::Crate {
            name: env!("CARGO_PKG_NAME").into(),
            version: semver::Version::parse(env!("CARGO_PKG_VERSION"))
                .expect("the package version is semver"),
        }
    }
}

impl std::fmt::Display for ToolSource {
    /// The form `--tool-source` takes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ToolSource::Crate { name, version } => write!(f, "crates.io:{name}@{version}"),
            ToolSource::Git { url, rev } => write!(f, "git:{url}#{rev}"),
        }
    }
}

/// What `--tool-source` takes, for messages.
const FORMS: &str = "crates.io:NAME@X.Y.Z or git:https://HOST/PATH#<full commit hash>";

/// crates.io's rule for a crate name: ASCII letters, digits, `-` and `_`, starting with a
/// letter, at most 64 characters.
fn check_crate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        bail!(
            "`{name}` is not a crate name (ASCII letters, digits, - and _, starting with a letter, at most 64 characters)"
        );
    }
    Ok(())
}

impl FromStr for ToolSource {
    type Err = anyhow::Error;

    /// Parses `crates.io:NAME@X.Y.Z` or `git:URL#SHA`. The message of an error never repeats
    /// a URL's user information (it may be a token).
    fn from_str(s: &str) -> Result<ToolSource> {
        if let Some(rest) = s.strip_prefix("crates.io:") {
            let Some((name, version)) = rest.split_once('@') else {
                bail!("`{rest}` has no version; give crates.io:NAME@X.Y.Z (one exact version)");
            };
            check_crate_name(name)?;
            let exact = version.strip_prefix('=').unwrap_or(version);
            let version = semver::Version::parse(exact).map_err(|_| {
                anyhow::anyhow!(
                    "`{version}` is not one exact version; give X.Y.Z (a range could install a later release nobody reviewed)"
                )
            })?;
            return Ok(ToolSource::Crate {
                name: name.to_string(),
                version,
            });
        }
        if let Some(rest) = s.strip_prefix("git:") {
            let Some((url, rev)) = rest.rsplit_once('#') else {
                bail!(
                    "the git source has no commit; give git:https://HOST/PATH#<full commit hash>"
                );
            };
            let url = url::Url::parse(url).map_err(|e| {
                anyhow::anyhow!("the git source's URL does not parse ({e}); give https://HOST/PATH")
            })?;
            if !url.username().is_empty() || url.password().is_some() {
                bail!(
                    "the git source's URL holds user information, which the workflow file would publish; give the URL without it (a private repository needs the job's own git credentials)"
                );
            }
            if url.scheme() != "https" {
                bail!(
                    "the git source's URL is {}:, not https:; give an https:// URL (the runner has no other credentials or trust)",
                    url.scheme()
                );
            }
            if url.host_str().is_none_or(str::is_empty) {
                bail!("the git source's URL has no host; give https://HOST/PATH");
            }
            if url.query().is_some() || url.fragment().is_some() {
                bail!(
                    "the git source's URL has a query or a fragment; give https://HOST/PATH#<commit>"
                );
            }
            let full = matches!(rev.len(), 40 | 64)
                && rev
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !full {
                bail!(
                    "`{rev}` is not a full commit hash; give all 40 lower-case hex digits (`git rev-parse HEAD`): a branch, tag or short hash can come to name other code"
                );
            }
            return Ok(ToolSource::Git {
                url,
                rev: rev.to_string(),
            });
        }
        let shown: String = if s.contains('@') && s.contains("://") {
            // May be a URL with user information: do not repeat it.
            "the value".into()
        } else {
            format!("`{s}`")
        };
        bail!("{shown} is not a source; give {FORMS}")
    }
}

/// The workflow's view of a [`ToolSource`] (the template context's `options.tool`).
#[derive(Debug, Clone, Serialize)]
pub struct ToolContext {
    /// `"crate"` or `"git"`.
    pub kind: &'static str,
    /// The crate's name (`kind == "crate"`), else empty.
    pub name: String,
    /// The exact version (`kind == "crate"`), else empty.
    pub version: String,
    /// The repository URL (`kind == "git"`), else empty.
    pub url: String,
    /// The full commit (`kind == "git"`), else empty.
    pub rev: String,
    /// The source was not given: this build's own package and version, from crates.io.
    pub default: bool,
    /// The `cargo install` arguments naming the source, each shell-safe as it stands.
    pub install_args: Vec<String>,
    /// The binary installed (`--bin`), always `cargo-containerize`.
    pub bin: &'static str,
    /// A cache key part naming the source and its version, e.g.
    /// `crates.io-cargo-containerize-0.1.0` or `git-<commit>`.
    pub cache_key: String,
    /// One line for a step's name, e.g. `cargo-containerize =0.1.0 from crates.io`.
    pub describe: String,
}

impl Default for ToolContext {
    /// The default source's context.
    fn default() -> Self {
        ToolSource::default().context(true)
    }
}

impl ToolSource {
    pub fn context(&self, default: bool) -> ToolContext {
        let sh = super::filter_sh;
        match self {
            ToolSource::Crate { name, version } => ToolContext {
                kind: "crate",
                name: name.clone(),
                version: version.to_string(),
                url: String::new(),
                rev: String::new(),
                default,
                install_args: vec![
                    sh(name.clone()),
                    "--version".into(),
                    sh(format!("={version}")),
                ],
                bin: TOOL_BIN,
                cache_key: format!("crates.io-{name}-{version}"),
                describe: format!("{name} ={version} from crates.io"),
            },
            ToolSource::Git { url, rev } => ToolContext {
                kind: "git",
                name: String::new(),
                version: String::new(),
                url: url.to_string(),
                rev: rev.clone(),
                default,
                install_args: vec![
                    "--git".into(),
                    sh(url.to_string()),
                    "--rev".into(),
                    rev.clone(),
                ],
                bin: TOOL_BIN,
                cache_key: format!("git-{rev}"),
                describe: format!("{TOOL_BIN} from {url} at {}", &rev[..12]),
            },
        }
    }
}

/// clap's parser for `--tool-source`: the error names the cause and the remedy and, unlike
/// clap's usual "invalid value '…'", never echoes the value (a URL may carry a token).
#[derive(Clone)]
pub struct ToolSourceParser;

impl clap::builder::TypedValueParser for ToolSourceParser {
    type Value = ToolSource;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<ToolSource, clap::Error> {
        let fail = |msg: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--tool-source: {msg}\n"),
            )
            .with_cmd(cmd)
        };
        let s = value
            .to_str()
            .ok_or_else(|| fail(format!("the value is not UTF-8; give {FORMS}")))?;
        s.parse().map_err(|e: anyhow::Error| fail(format!("{e:#}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn crate_sources() {
        let s: ToolSource = "crates.io:cargo-containerize@0.2.1".parse().unwrap();
        assert_eq!(
            s.context(false).install_args,
            ["cargo-containerize", "--version", "=0.2.1"]
        );
        let s: ToolSource = "crates.io:my_tool@=1.0.0-rc.1".parse().unwrap();
        assert_eq!(s.context(false).cache_key, "crates.io-my_tool-1.0.0-rc.1");
        for bad in [
            "crates.io:cargo-containerize",
            "crates.io:cargo-containerize@^0.1",
            "crates.io:cargo-containerize@0.1",
            "crates.io:cargo-containerize@*",
            "crates.io:9lives@1.0.0",
            "crates.io:a b@1.0.0",
            "crates.io:$(reboot)@1.0.0",
            "cargo-containerize",
        ] {
            assert!(bad.parse::<ToolSource>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn git_sources() {
        let s: ToolSource = format!("git:https://github.com/o/r#{SHA}").parse().unwrap();
        let c = s.context(false);
        assert_eq!(
            c.install_args,
            ["--git", "https://github.com/o/r", "--rev", SHA]
        );
        assert_eq!(c.cache_key, format!("git-{SHA}"));
        for bad in [
            "git:https://github.com/o/r".to_string(),
            "git:https://github.com/o/r#main".into(),
            "git:https://github.com/o/r#0123456".into(),
            format!("git:https://github.com/o/r#{}", SHA.to_uppercase()),
            format!("git:http://github.com/o/r#{SHA}"),
            format!("git:ssh://git@github.com/o/r#{SHA}"),
            format!("git:https://github.com/o/r?x=1#{SHA}"),
            format!("git:file:///srv/r#{SHA}"),
        ] {
            assert!(bad.parse::<ToolSource>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_token_in_the_url_is_refused_and_never_repeated() {
        for s in [
            format!("git:https://x-access-token:ghp_SECRET@github.com/o/r#{SHA}"),
            format!("git:https://ghp_SECRET@github.com/o/r#{SHA}"),
            "https://ghp_SECRET@github.com/o/r".to_string(),
        ] {
            let e = format!("{:#}", s.parse::<ToolSource>().unwrap_err());
            assert!(!e.contains("ghp_SECRET"), "{e}");
        }
    }

    #[test]
    fn the_default_is_this_build() {
        let c = ToolSource::default().context(true);
        assert_eq!(c.name, env!("CARGO_PKG_NAME"));
        assert_eq!(c.version, env!("CARGO_PKG_VERSION"));
    }
}
