//! Registry credentials and the token dance.
//!
//! Credentials come from the command line, then docker's config.json (auths read by the
//! docker_credential crate; credHelpers and credsStore run here, with a bounded wait), then
//! podman's auth.json. The
//! `WWW-Authenticate` challenge decides what is sent: Basic credentials as they are, or a
//! Bearer token from the realm (with an identity token exchanged through the OAuth2
//! refresh_token grant). No secret is ever formatted into a message: [`Secret`] prints as
//! `<redacted>`.

use anyhow::{Result, bail};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A string that never shows itself in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Anonymous,
    Basic {
        username: String,
        password: Secret,
    },
    /// A docker identity token (a refresh token for the realm's OAuth2 endpoint).
    IdentityToken(Secret),
}

impl Credential {
    /// Where it came from, for messages (never the secret itself).
    pub fn describe(&self) -> &'static str {
        match self {
            Credential::Anonymous => "no credentials",
            Credential::Basic { .. } => "username and password",
            Credential::IdentityToken(_) => "an identity token",
        }
    }
}

/// The config.json keys docker uses for Docker Hub.
fn server_keys(registry: &str) -> Vec<String> {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
        ],
        other => vec![
            other.into(),
            format!("https://{other}"),
            format!("http://{other}"),
        ],
    }
}

/// docker's config.json: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
fn docker_config_dir() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")))
}

/// The credential files, in the order they are asked: docker's config.json, then podman's
/// auth.json (`$REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`, else
/// `containers/auth.json` in docker's config directory) — the places the docker_credential
/// crate reads.
fn credential_files() -> Vec<PathBuf> {
    let docker = docker_config_dir().map(|d| d.join("config.json"));
    let podman = match std::env::var_os("REGISTRY_AUTH_FILE") {
        Some(f) => Some(PathBuf::from(f)),
        None => std::env::var_os("XDG_RUNTIME_DIR")
            .map(|d| Path::new(&d).join("containers/auth.json"))
            .filter(|p| p.is_file())
            .or_else(|| docker_config_dir().map(|d| d.join("containers/auth.json"))),
    };
    [docker, podman].into_iter().flatten().collect()
}

/// Looks the registry up in docker's and podman's credential stores. A credential helper
/// (`credHelpers`, `credsStore`) gets `timeout` to answer.
///
/// The files are read here and only their `auths` handed to the docker_credential crate: the
/// crate runs helpers itself and waits for them without a bound, so a helper that never
/// answers (a locked keychain waiting for a prompt nobody sees) would hang the push.
pub fn lookup(registry: &str, timeout: Duration) -> Result<Credential> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    let files: Vec<(PathBuf, serde_json::Value)> = credential_files()
        .into_iter()
        .filter_map(|f| {
            let text = std::fs::read(&f).ok()?;
            Some((f, serde_json::from_slice(&text).ok()?))
        })
        .collect();
    for key in server_keys(registry) {
        for (file, config) in &files {
            let helper_named = |field: &str| {
                let v = match field {
                    "credHelpers" => config.get(field)?.get(&key)?,
                    _ => config.get(field)?,
                };
                v.as_str().filter(|h| !h.is_empty()).map(String::from)
            };
            // docker's order: a registry's own helper, then auths, then the default store.
            if let Some(helper) = helper_named("credHelpers") {
                match from_helper(&helper, &key, registry, file, timeout)? {
                    Some(c) => return Ok(c),
                    None => continue,
                }
            }
            let mut auths_only = config.clone();
            if let Some(o) = auths_only.as_object_mut() {
                o.remove("credHelpers");
                o.remove("credsStore");
            }
            let bytes = serde_json::to_vec(&auths_only).unwrap_or_default();
            match docker_credential::get_credential_from_reader(&bytes[..], &key) {
                Ok(DockerCredential::UsernamePassword(username, password)) => {
                    return Ok(Credential::Basic {
                        username,
                        password: Secret::new(password),
                    });
                }
                Ok(DockerCredential::IdentityToken(t)) => {
                    return Ok(Credential::IdentityToken(Secret::new(t)));
                }
                Err(E::CredentialDecodingError | E::CredentialMismatchError) => bail!(
                    "the stored credentials for {registry} in {} cannot be decoded; log in again with `docker login {registry}`",
                    file.display()
                ),
                Err(_) => {} // nothing for this key here
            }
            if let Some(store) = helper_named("credsStore")
                && let Some(c) = from_helper(&store, &key, registry, file, timeout)?
            {
                return Ok(c);
            }
        }
    }
    Ok(Credential::Anonymous)
}

/// Asks `docker-credential-<helper> get` for `server`, waiting at most `timeout`. None when
/// the helper holds nothing for it.
fn from_helper(
    helper: &str,
    server: &str,
    registry: &str,
    config: &Path,
    timeout: Duration,
) -> Result<Option<Credential>> {
    use crate::util::process::{Outcome, run_bounded};
    let program = format!("docker-credential-{helper}");
    let Ok(path) = which::which(&program) else {
        bail!(
            "{} names the credential helper {program} for {registry}, but it is not on PATH; install it, or remove it from that file",
            config.display()
        );
    };
    let mut cmd = std::process::Command::new(path);
    cmd.arg("get");
    let out = run_bounded(&mut cmd, server.as_bytes(), timeout)?;
    let Outcome::Finished(out) = out else {
        bail!(
            "the credential helper {program} did not answer within {} for {registry} and was stopped; check it with `echo {server} | {program} get` (a locked keychain may be waiting for a password), or raise --registry-timeout",
            humantime::format_duration(timeout)
        );
    };
    if !out.status.success() {
        // The helper protocol's answer for "nothing stored"; anything else is a failure. Its
        // output may hold secrets: name the helper only.
        if String::from_utf8_lossy(&out.stdout).contains("credentials not found") {
            return Ok(None);
        }
        bail!(
            "the credential helper {program} failed for {registry}; run `{program} list` to check it, or log in again"
        );
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        username: String,
        secret: String,
    }
    let answer: Answer = serde_json::from_slice(&out.stdout).map_err(|_| {
        anyhow::anyhow!(
            "the credential helper {program} answered for {registry} with something that is not its JSON; check it with `echo {server} | {program} get`"
        )
    })?;
    Ok(Some(if answer.username == "<token>" {
        Credential::IdentityToken(Secret::new(answer.secret))
    } else {
        Credential::Basic {
            username: answer.username,
            password: Secret::new(answer.secret),
        }
    }))
}

/// The one rule for where a registry's credentials go: the registry's own origin (scheme,
/// host and port of the address its API answered on). Every request the registry client
/// makes asks it twice — whether the request may carry the Authorization header (the user's
/// password, or a token bought with it), and whether a 401's challenge may be answered at all
/// (answering it sends the credentials to the challenge's token realm, which may live on
/// another host, as Docker Hub's does). A 401 from anywhere else — an upload `Location` on a
/// storage host, the end of a redirect — is [`Foreign`], never answered.
///
/// (reqwest itself drops Authorization when it follows a redirect to another origin; a
/// redirect that ends on another origin is caught here, by the answer's final URL.)
#[derive(Debug, Clone)]
pub struct Home {
    base: reqwest::Url,
}

/// A 401 from an origin that is not the registry's: its challenge is not answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    /// `scheme://host:port` of the server that asked.
    pub origin: String,
}

impl Home {
    /// The registry at `base` (`https://host[:port]`).
    pub fn new(base: &str) -> Result<Home> {
        let base = reqwest::Url::parse(base)
            .map_err(|e| anyhow::anyhow!("the registry address {base} is not a URL ({e})"))?;
        Ok(Home { base })
    }

    /// Whether `url` is the registry's origin: the only place its credentials go.
    pub fn owns(&self, url: &reqwest::Url) -> bool {
        url.origin() == self.base.origin()
    }

    /// `scheme://host:port` of the registry, for messages.
    pub fn origin(&self) -> String {
        self.base.origin().ascii_serialization()
    }

    /// The challenge a 401 carries, when it may be answered: the answer came (after any
    /// redirects) from the registry's origin. None when it names no method this client knows.
    pub fn challenge(
        &self,
        answered_by: &reqwest::Url,
        headers: &reqwest::header::HeaderMap,
    ) -> Result<Option<Challenge>, Foreign> {
        if !self.owns(answered_by) {
            return Err(Foreign {
                origin: answered_by.origin().ascii_serialization(),
            });
        }
        Ok(headers
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .and_then(parse_challenge))
    }
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.remove("realm")?,
            service: params.remove("service"),
            scope: params.remove("scope"),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/a:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://ghcr.io/token".into(),
                service: Some("ghcr.io".into()),
                scope: Some("repository:o/a:pull,push".into()),
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
    }

    #[test]
    fn only_the_registrys_origin_is_home() {
        let home = Home::new("http://127.0.0.1:5100").unwrap();
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        assert!(home.owns(&url("http://127.0.0.1:5100/v2/a/blobs/uploads/x?_state=1")));
        for other in [
            "http://127.0.0.1:5101/upload/x",
            "https://127.0.0.1:5100/v2/",
            "http://localhost:5100/v2/",
        ] {
            assert!(!home.owns(&url(other)), "{other}");
        }
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::WWW_AUTHENTICATE,
            r#"Bearer realm="http://127.0.0.1:5101/token""#.parse().unwrap(),
        );
        assert_eq!(
            home.challenge(&url("http://127.0.0.1:5101/upload/x"), &headers),
            Err(Foreign {
                origin: "http://127.0.0.1:5101".into()
            })
        );
        assert!(matches!(
            home.challenge(&url("http://127.0.0.1:5100/v2/"), &headers),
            Ok(Some(Challenge::Bearer { .. }))
        ));
    }

    #[test]
    fn secrets_never_print() {
        let c = Credential::Basic {
            username: "u".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
