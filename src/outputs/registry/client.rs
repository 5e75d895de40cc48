//! A small blocking client for the OCI distribution API: scheme choice, authentication,
//! bounded retries with backoff, and error messages that name the registry, the repository,
//! what was refused and what to do.
//!
//! Hand-written on reqwest because oci-client (evaluated for this) drops response headers from
//! its errors, so it cannot honour Retry-After; treats a 202 answer to a cross-repository mount
//! as a failure instead of "upload normally"; has no identity-token (refresh_token) grant; and
//! retries nothing.

use super::RegistryOptions;
use super::auth::{Challenge, Credential, parse_challenge};
use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// Why one attempt failed.
pub enum Failure {
    /// Worth another try (connection trouble, 408, 429, 5xx), after `after` if the server said.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Fatal(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Fatal(e)
    }
}

/// A session with one repository of one registry.
pub struct Client {
    http: Http,
    /// `https://host` or `http://host`.
    base: String,
    /// The registry as the user named it (for messages and credential lookup).
    pub registry: String,
    pub repo: String,
    credential: Credential,
    scopes: Vec<String>,
    authorization: Mutex<Option<String>>,
    tries: u32,
}

/// True for hosts that may be reached over plain HTTP without being named insecure.
pub fn is_loopback(host: &str) -> bool {
    let name = host_name(host);
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

fn http_allowed(opts: &RegistryOptions, host: &str) -> bool {
    is_loopback(host)
        || opts
            .insecure
            .iter()
            .any(|i| i == host || i == host_name(host))
}

/// The host that serves the API for a registry name (Docker Hub's differs from its name).
pub fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

/// The error chain as one line: reqwest puts the useful part (refused, reset, certificate) deep.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

fn is_certificate_error(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("certificate") || t.contains("unknownissuer") || t.contains("notvalidforname")
}

pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((250u64 << attempt.min(6).saturating_sub(1)).min(10_000))
}

fn retry_after(resp: &Response) -> Option<Duration> {
    let v = resp.headers().get(RETRY_AFTER)?.to_str().ok()?;
    v.trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(60)))
}

/// The registry's own explanation, from its JSON error body (`errors[0].code/message`).
fn registry_reason(resp: Response) -> String {
    let status = resp.status();
    let body = resp.text().unwrap_or_default();
    let detail = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let e = v.get("errors")?.get(0)?;
            Some(format!(
                "{} {}",
                e.get("code").and_then(|c| c.as_str()).unwrap_or_default(),
                e.get("message")
                    .and_then(|c| c.as_str())
                    .unwrap_or_default()
            ))
        })
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty());
    match detail {
        Some(d) => format!("{status}: {d}"),
        None => status.to_string(),
    }
}

impl Client {
    pub fn http(opts: &RegistryOptions) -> Result<Http> {
        // ring, not aws-lc: no cmake or large C build for users compiling this tool. Installing
        // twice is harmless (the second call reports the first provider).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = reqwest::Certificate::from_pem_bundle(&crate::layers::certs::webpki_pem())
            .context("loading the embedded CA roots")?;
        if let Some(ca) = &opts.ca_file {
            let pem = std::fs::read(ca).with_context(|| {
                format!(
                    "cannot read --registry-ca {}; give the path of a PEM CA certificate",
                    ca.display()
                )
            })?;
            let extra = reqwest::Certificate::from_pem_bundle(&pem).ok().filter(|v| !v.is_empty()).with_context(|| {
                format!("--registry-ca {} holds no PEM certificate; give the registry's CA certificate in PEM form", ca.display())
            })?;
            roots.extend(extra);
        }
        Http::builder()
            .user_agent(concat!("cargo-containerize/", env!("CARGO_PKG_VERSION")))
            .tls_certs_merge(roots)
            .connect_timeout(Duration::from_secs(15))
            // A registry that stops answering is a retryable failure, not a hang. Uploads get a
            // longer limit of their own (see push::upload).
            .timeout(Duration::from_secs(120))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .context("setting up the HTTP client")
    }

    /// Connects to `registry`/`repo`: picks https (or http where allowed), and authenticates
    /// for pull and push (plus pull on `mount_from` repositories).
    pub fn connect(
        http: &Http,
        opts: &RegistryOptions,
        registry: &str,
        repo: &str,
        credential: Credential,
        mount_from: &[String],
    ) -> Result<Client> {
        let host = api_host(registry);
        let mut scopes = vec![format!("repository:{repo}:pull,push")];
        scopes.extend(mount_from.iter().map(|r| format!("repository:{r}:pull")));
        let tries = opts.tries.max(1);
        let mut base = format!("https://{host}");
        let resp = retry(tries, registry, repo, "reach the registry", || {
            // A host that may be plain HTTP gets a short TLS probe before the fallback.
            let mut probe = http.get(format!("{base}/v2/"));
            if base.starts_with("https://") && http_allowed(opts, host) {
                probe = probe.timeout(Duration::from_secs(5));
            }
            match probe.send() {
                Ok(resp) => classify(resp),
                Err(e) => {
                    let text = chain(&e);
                    if is_certificate_error(&text) {
                        return Err(Failure::Fatal(anyhow!(
                            "the TLS certificate of registry {registry} is not trusted ({text}); pass --registry-ca FILE with the CA that signed it"
                        )));
                    }
                    if base.starts_with("https://") && http_allowed(opts, host) {
                        // A loopback or --insecure-registry host that does not speak TLS.
                        if let Ok(resp) = http.get(format!("http://{host}/v2/")).send() {
                            base = format!("http://{host}");
                            return classify(resp);
                        }
                    }
                    Err(Failure::Retry {
                        reason: text,
                        after: None,
                    })
                }
            }
        })?;
        let client = Client {
            http: http.clone(),
            base,
            registry: registry.to_string(),
            repo: repo.to_string(),
            credential,
            scopes,
            authorization: Mutex::new(None),
            tries,
        };
        match resp.status() {
            StatusCode::UNAUTHORIZED => {
                let challenge = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|h| h.to_str().ok())
                    .and_then(parse_challenge)
                    .with_context(|| format!("registry {registry} asks for authentication but names no method it accepts"))?;
                client.authenticate(&challenge)?;
            }
            s if s.is_success() => {}
            s if s == StatusCode::NOT_FOUND => bail!(
                "{} does not serve the OCI distribution API (GET /v2/ answered 404); check the registry address",
                client.registry
            ),
            _ => return Err(client.refused(resp, "the API check")),
        }
        Ok(client)
    }

    /// Sets the Authorization header for `challenge`.
    fn authenticate(&self, challenge: &Challenge) -> Result<()> {
        let header = match (challenge, &self.credential) {
            (Challenge::Basic, Credential::Basic { username, password }) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose()))
            )),
            (Challenge::Basic, _) => None, // the request will be refused with a clear 401 message
            (Challenge::Bearer { realm, service, .. }, cred) => Some(format!(
                "Bearer {}",
                self.fetch_token(realm, service.as_deref(), cred)?
            )),
        };
        *self.authorization.lock().expect("auth lock") = header;
        Ok(())
    }

    fn fetch_token(&self, realm: &str, service: Option<&str>, cred: &Credential) -> Result<String> {
        let url = reqwest::Url::parse(realm)
            .with_context(|| format!("registry {} sent an invalid token realm", self.registry))?;
        let realm_host = url.host_str().unwrap_or_default();
        if url.scheme() != "https" && !is_loopback(realm_host) && *cred != Credential::Anonymous {
            bail!(
                "registry {} asks for credentials to be sent to {} over plain HTTP; refusing (use an https realm)",
                self.registry,
                url.origin().ascii_serialization()
            );
        }
        let c = self;
        let resp = self.retrying("get a token", || {
            let req = match cred {
                Credential::IdentityToken(t) => {
                    let mut form = vec![
                        ("grant_type", "refresh_token".to_string()),
                        ("client_id", "cargo-containerize".to_string()),
                        ("refresh_token", t.expose().to_string()),
                        ("scope", c.scopes.join(" ")),
                    ];
                    if let Some(s) = service {
                        form.push(("service", s.to_string()));
                    }
                    let body = form
                        .iter()
                        .map(|(k, v)| format!("{k}={}", urlencode(v)))
                        .collect::<Vec<_>>()
                        .join("&");
                    c.http
                        .post(url.clone())
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .body(body)
                }
                other => {
                    let mut u = url.clone();
                    {
                        let mut q = u.query_pairs_mut();
                        if let Some(s) = service {
                            q.append_pair("service", s);
                        }
                        for s in &c.scopes {
                            q.append_pair("scope", s);
                        }
                    }
                    let r = c.http.get(u);
                    match other {
                        Credential::Basic { username, password } => {
                            r.basic_auth(username, Some(password.expose()))
                        }
                        _ => r,
                    }
                }
            };
            match req.send() {
                Ok(resp) => classify(resp),
                Err(e) => Err(Failure::Retry {
                    reason: chain(&e),
                    after: None,
                }),
            }
        })?;
        if !resp.status().is_success() {
            return Err(self.refused(resp, "a token"));
        }
        let body = resp
            .bytes()
            .with_context(|| format!("reading the token from {}", self.registry))?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .with_context(|| format!("the token service of {} sent no JSON", self.registry))?;
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .map(String::from)
            .with_context(|| format!("the token service of {} sent no token", self.registry))
    }

    /// Runs `op` up to the configured number of tries.
    pub fn retrying<T>(&self, what: &str, op: impl FnMut() -> Result<T, Failure>) -> Result<T> {
        retry(self.tries, &self.registry, &self.repo, what, op)
    }

    /// One attempt of an authenticated request; refreshes the token once on 401.
    pub fn send(&self, build: impl Fn(&Http, &str) -> RequestBuilder) -> Result<Response, Failure> {
        for fresh in [false, true] {
            let mut req = build(&self.http, &self.base).build().map_err(|e| {
                Failure::Fatal(anyhow!("cannot build a request for {}: {e}", self.registry))
            })?;
            // Credentials go only to the registry itself: an upload Location may name another
            // host (a storage service, a misconfigured proxy), which must not receive them.
            let same_origin =
                reqwest::Url::parse(&self.base).is_ok_and(|b| b.origin() == req.url().origin());
            if same_origin && let Some(a) = self.authorization.lock().expect("auth lock").clone() {
                let value = reqwest::header::HeaderValue::from_str(&a).map_err(|_| {
                    Failure::Fatal(anyhow!(
                        "registry {} issued a token that is not a valid header",
                        self.registry
                    ))
                })?;
                req.headers_mut().insert(AUTHORIZATION, value);
            }
            let resp = match self.http.execute(req) {
                Ok(r) => r,
                Err(e) => {
                    let text = chain(&e);
                    if is_certificate_error(&text) {
                        return Err(Failure::Fatal(anyhow!(
                            "TLS error talking to {}: {text}; pass --registry-ca FILE",
                            self.registry
                        )));
                    }
                    return Err(Failure::Retry {
                        reason: text,
                        after: None,
                    });
                }
            };
            if resp.status() == StatusCode::UNAUTHORIZED && !fresh {
                // An expired token: ask again, once.
                if let Some(ch) = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|h| h.to_str().ok())
                    .and_then(parse_challenge)
                {
                    self.authenticate(&ch)?;
                    continue;
                }
            }
            return classify(resp);
        }
        unreachable!("the loop returns on its second pass")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repo)
    }

    /// Resolves a Location header against the registry's base URL.
    pub fn location(&self, resp: &Response) -> Result<reqwest::Url> {
        let loc = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|h| h.to_str().ok())
            .with_context(|| {
                format!(
                    "registry {} started an upload but sent no Location",
                    self.registry
                )
            })?;
        let url = reqwest::Url::parse(&self.base)?
            .join(loc)
            .with_context(|| {
                format!("registry {} sent an invalid upload Location", self.registry)
            })?;
        if self.base.starts_with("https://") && url.scheme() != "https" {
            bail!(
                "registry {} sent the upload to {}, which is not https; refusing to send the image in the clear (check the registry's proxy settings)",
                self.registry,
                url.origin().ascii_serialization()
            );
        }
        Ok(url)
    }

    /// The error for a refused request: registry, repository, what, and the remedy.
    pub fn refused(&self, resp: Response, what: &str) -> anyhow::Error {
        let status = resp.status();
        let reason = registry_reason(resp);
        let (reg, repo) = (&self.registry, &self.repo);
        let remedy = match status {
            StatusCode::UNAUTHORIZED => format!(
                "log in with `docker login {reg}` (or `podman login {reg}`), or pass --username and --password-stdin ({} were used)",
                self.credential.describe()
            ),
            StatusCode::FORBIDDEN => format!(
                "the credentials may not push to {repo}; check the repository name and that the token may write packages"
            ),
            StatusCode::NOT_FOUND => {
                format!("check that the repository {repo} exists and its name is right")
            }
            _ => "check the image reference and the registry's logs".to_string(),
        };
        anyhow!("registry {reg} refused {what} for repository {repo} ({reason}); {remedy}")
    }
}

/// Sorts a response into success, retry or "the caller decides" (other 4xx).
fn classify(resp: Response) -> Result<Response, Failure> {
    let s = resp.status();
    if s == StatusCode::REQUEST_TIMEOUT || s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error()
    {
        return Err(Failure::Retry {
            after: retry_after(&resp),
            reason: registry_reason(resp),
        });
    }
    Ok(resp)
}

/// Runs `op` up to `tries` times, sleeping between tries as the server asked or with
/// exponential backoff.
pub fn retry<T>(
    tries: u32,
    registry: &str,
    repo: &str,
    what: &str,
    mut op: impl FnMut() -> Result<T, Failure>,
) -> Result<T> {
    let mut last = String::new();
    for attempt in 1..=tries {
        match op() {
            Ok(v) => return Ok(v),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry { reason, after }) => {
                last = reason;
                if attempt < tries {
                    std::thread::sleep(after.unwrap_or_else(|| backoff(attempt)));
                }
            }
        }
    }
    bail!(
        "could not {what} for repository {repo} at registry {registry} after {tries} tries (last: {last}); check the registry is up, or raise --retries"
    )
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:5000",
            "localhost",
            "localhost:80",
            "[::1]:5000",
            "127.1.2.3",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["ghcr.io", "10.0.0.1:5000", "registry.local:5000"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert!(backoff(20) <= Duration::from_secs(10));
    }
}
