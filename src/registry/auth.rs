//! Registry credentials and the token dance (after go-containerregistry's
//! `transport/{basic,bearer}.go` and its authn keychain).
//!
//! Credentials come from the command line, then docker's config.json (its `auths`, then
//! credHelpers and credsStore, run here with a bounded wait), then podman's auth.json. The
//! `WWW-Authenticate` challenge decides what is sent: Basic credentials as they are, or a
//! Bearer token from the realm (with an identity token exchanged through the OAuth2
//! refresh_token grant). No secret is ever formatted into a message: [`Secret`] prints as
//! `<redacted>`.

use super::error::Refusal;
use super::retry::{Failure, Policy, classify, net_failure, retry};
use super::transport::{TOKEN_BODY_LIMIT, is_loopback, read_capped, sanitize};
use anyhow::{Context, Result, bail};
use base64::Engine as _;
use reqwest::blocking::{Client as Http, RequestBuilder};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
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
/// `containers/auth.json` in docker's config directory) — where docker and podman keep them.
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
/// The files are parsed here and helpers run here (not through a crate that waits for them
/// without a bound): a helper that never answers (a locked keychain waiting for a prompt
/// nobody sees) would hang the push.
pub fn lookup(registry: &str, timeout: Duration) -> Result<Credential> {
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
            match from_auths(config, &key) {
                Ok(Some(c)) => return Ok(c),
                Ok(None) => {}
                Err(Undecodable) => bail!(
                    "the stored credentials for {registry} in {} cannot be decoded; log in again with `docker login {registry}`",
                    file.display()
                ),
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

/// An `auths` entry whose `auth` is not base64 of `user:password`, or disagrees with the
/// entry's own `username`/`password`.
#[derive(Debug, PartialEq, Eq)]
struct Undecodable;

/// One entry of an `auths` map, as docker writes it.
#[derive(serde::Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// The credential the `auths` map of `config` holds for `key`: the entry named exactly so,
/// else the one whose key names the same registry (`https://host/v1/` is `host`, Docker Hub's
/// names are one). In docker's order: an identity token, then `auth` (base64 of
/// `user:password`), then `username` and `password`. Hand-written on the `base64` crate: the
/// rule is these few lines, and the crate that had it also ran helpers without a bound.
fn from_auths(config: &serde_json::Value, key: &str) -> Result<Option<Credential>, Undecodable> {
    let Some(auths) = config
        .get("auths")
        .cloned()
        .and_then(|a| serde_json::from_value::<BTreeMap<String, AuthEntry>>(a).ok())
    else {
        return Ok(None);
    };
    let wanted = normalize_registry(key);
    let Some(entry) = auths.get(key).or_else(|| {
        auths
            .iter()
            .find(|(k, _)| registry_of_key(k) == wanted)
            .map(|(_, e)| e)
    }) else {
        return Ok(None);
    };
    if let Some(t) = &entry.identitytoken {
        return Ok(Some(Credential::IdentityToken(Secret::new(t.clone()))));
    }
    let pair = match (&entry.auth, &entry.username, &entry.password) {
        (Some(auth), u, p) => {
            let (user, pass) = decode_auth(auth)?;
            if let (Some(u), Some(p)) = (u, p)
                && (u != &user || p != &pass)
            {
                return Err(Undecodable);
            }
            (user, pass)
        }
        (None, Some(u), Some(p)) => (u.clone(), p.clone()),
        _ => return Ok(None),
    };
    Ok(Some(Credential::Basic {
        username: pair.0,
        password: Secret::new(pair.1),
    }))
}

/// `auth`'s base64 (padded or not) of `user:password`.
fn decode_auth(auth: &str) -> Result<(String, String), Undecodable> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let bytes = engine.decode(auth).map_err(|_| Undecodable)?;
    let text = String::from_utf8(bytes).map_err(|_| Undecodable)?;
    let (user, pass) = text.split_once(':').ok_or(Undecodable)?;
    Ok((user.to_string(), pass.to_string()))
}

/// The registry an `auths` key names: `https://host/v1/` and `http://host` are `host`.
fn registry_of_key(key: &str) -> &str {
    let stripped = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"));
    let host = match stripped {
        Some(rest) => rest.split('/').next().unwrap_or(rest),
        None => key,
    };
    normalize_registry(host)
}

/// Docker Hub's names, as one.
fn normalize_registry(registry: &str) -> &str {
    match registry {
        "registry-1.docker.io" | "docker.io" => "index.docker.io",
        other => other,
    }
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

/// The server a session talks to, as the token exchange needs it: the HTTP client and retry
/// policy, the registry's origin, and the names for messages.
pub struct Peer<'a> {
    pub http: &'a Http,
    pub policy: &'a Policy,
    pub home: &'a Home,
    pub registry: &'a str,
    pub repo: &'a str,
    /// Whether the session pushes (else it only pulls), for the remedy of a refusal.
    pub push: bool,
}

/// The Authorization header a session sends, and how it gets one: Basic credentials as they
/// are, or a Bearer token for `scopes` from the challenge's realm.
pub struct Authorizer {
    pub credential: Credential,
    scopes: Vec<String>,
    header: Mutex<Option<String>>,
}

impl Authorizer {
    /// `scopes` are the token scopes to ask for (`repository:NAME:pull,push`).
    pub fn new(credential: Credential, scopes: Vec<String>) -> Authorizer {
        Authorizer {
            credential,
            scopes,
            header: Mutex::new(None),
        }
    }

    /// The header to send to the registry's origin, once a challenge was answered.
    pub fn header(&self) -> Option<String> {
        self.header.lock().expect("auth lock").clone()
    }

    /// Sets the Authorization header for `challenge`.
    pub fn answer(&self, peer: &Peer<'_>, challenge: &Challenge) -> Result<()> {
        let header = match (challenge, &self.credential) {
            (Challenge::Basic, Credential::Basic { username, password }) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose()))
            )),
            (Challenge::Basic, _) => None, // the request will be refused with a clear 401 message
            (Challenge::Bearer { realm, service, .. }, _) => Some(format!(
                "Bearer {}",
                self.fetch_token(peer, realm, service.as_deref())?
            )),
        };
        *self.header.lock().expect("auth lock") = header;
        Ok(())
    }

    /// The token request: a refresh-token grant (POST, form-encoded) for an identity token,
    /// else a GET with the scopes, with Basic credentials if there are any.
    fn token_request(
        &self,
        http: &Http,
        url: &reqwest::Url,
        service: Option<&str>,
    ) -> RequestBuilder {
        match &self.credential {
            Credential::IdentityToken(t) => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("client_id", "cargo-containerize".to_string()),
                    ("refresh_token", t.expose().to_string()),
                    ("scope", self.scopes.join(" ")),
                ];
                if let Some(s) = service {
                    form.push(("service", s.to_string()));
                }
                http.post(url.clone()).form(&form)
            }
            other => {
                let mut u = url.clone();
                {
                    let mut q = u.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in &self.scopes {
                        q.append_pair("scope", s);
                    }
                }
                let r = http.get(u);
                match other {
                    Credential::Basic { username, password } => {
                        r.basic_auth(username, Some(password.expose()))
                    }
                    _ => r,
                }
            }
        }
    }

    fn fetch_token(&self, peer: &Peer<'_>, realm: &str, service: Option<&str>) -> Result<String> {
        let registry = peer.registry;
        let url = reqwest::Url::parse(realm).with_context(|| {
            format!(
                "registry {registry} sent an invalid token realm ({})",
                sanitize(realm)
            )
        })?;
        let realm_host = url.host_str().unwrap_or_default();
        let origin = url.origin().ascii_serialization();
        if url.scheme() != "https"
            && !is_loopback(realm_host)
            && self.credential != Credential::Anonymous
        {
            bail!(
                "registry {registry} asks for credentials to be sent to {origin} over plain HTTP; refusing (use an https realm)",
            );
        }
        let who = format!("the token service {origin} of registry {registry}");
        let resp = retry(peer.policy, registry, peer.repo, "get a token", || {
            let req = self.token_request(peer.http, &url, service);
            let request = match self.credential {
                Credential::IdentityToken(_) => format!("POST {origin}{}", url.path()),
                _ => format!("GET {origin}{}", url.path()),
            };
            peer.policy.shell.verbose("Request", &request);
            match req.send() {
                Ok(resp) => classify(resp),
                Err(e) => Err::<_, Failure>(net_failure(&e, &who, &request, peer.policy)),
            }
        })?;
        if !resp.status().is_success() {
            let refusal = Refusal {
                registry,
                repo: peer.repo,
                credential: self.credential.describe(),
                push: peer.push,
                from_registry: peer.home.owns(resp.url()),
            };
            return Err(refusal.error(resp, "a token"));
        }
        let length = resp.content_length();
        let body = read_capped(
            resp,
            length,
            TOKEN_BODY_LIMIT,
            "the token response",
            &origin,
        )?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .with_context(|| format!("the token service of {registry} sent no JSON"))?;
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .map(String::from)
            .with_context(|| format!("the token service of {registry} sent no token"))
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

    #[test]
    fn auths_entries_decode_like_docker() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let config = serde_json::json!({"auths": {
            "https://index.docker.io/v1/": {"auth": b64("hub:pw:with:colons")},
            "r.example:5000": {"auth": b64("u:p").trim_end_matches('=').to_string()},
            "https://other.example/v1/": {"username": "o", "password": "q"},
            "tok.example": {"identitytoken": "refresh"},
            "bad.example": {"auth": "%%%"},
            "mismatch.example": {"auth": b64("u:p"), "username": "u", "password": "x"},
            "empty.example": {}
        }});
        let basic = |u: &str, p: &str| Credential::Basic {
            username: u.into(),
            password: Secret::new(p),
        };
        assert_eq!(
            from_auths(&config, "docker.io"),
            Ok(Some(basic("hub", "pw:with:colons")))
        );
        assert_eq!(
            from_auths(&config, "r.example:5000"),
            Ok(Some(basic("u", "p")))
        );
        assert_eq!(
            from_auths(&config, "other.example"),
            Ok(Some(basic("o", "q")))
        );
        assert_eq!(
            from_auths(&config, "tok.example"),
            Ok(Some(Credential::IdentityToken(Secret::new("refresh"))))
        );
        assert_eq!(from_auths(&config, "bad.example"), Err(Undecodable));
        assert_eq!(from_auths(&config, "mismatch.example"), Err(Undecodable));
        assert_eq!(from_auths(&config, "empty.example"), Ok(None));
        assert_eq!(from_auths(&config, "nowhere.example"), Ok(None));
        assert_eq!(from_auths(&serde_json::json!({"auths": 3}), "x"), Ok(None));
    }
}
