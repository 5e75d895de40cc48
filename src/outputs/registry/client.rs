//! A small blocking client for the OCI distribution API: scheme choice, authentication,
//! bounded retries with backoff, and error messages that name the registry, the repository,
//! what was refused and what to do.
//!
//! Hand-written on reqwest because oci-client (evaluated for this) drops response headers from
//! its errors, so it cannot honour Retry-After; treats a 202 answer to a cross-repository mount
//! as a failure instead of "upload normally"; has no identity-token (refresh_token) grant; and
//! retries nothing.

use super::RegistryOptions;
use super::auth::{Challenge, Credential, Home};
use super::remote::{ERROR_BODY_LIMIT, TOKEN_BODY_LIMIT, read_capped, read_prefix, sanitize};
use crate::util::shell::Shell;
use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::header::{AUTHORIZATION, RETRY_AFTER};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// Why one attempt failed.
pub enum Failure {
    /// Worth another try (connection trouble, a timeout, 408, 429, 5xx), after `after` if the
    /// server said.
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

/// How many tries and how long to wait for an answer.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub tries: u32,
    /// The longest wait for a connection or for the next bytes of an answer.
    pub timeout: Duration,
}

impl Policy {
    pub fn of(opts: &RegistryOptions) -> Policy {
        Policy {
            tries: opts.retries.saturating_add(1),
            timeout: opts.timeout,
        }
    }
}

/// A failed request, sorted by the error's type (never by its text): what the tool should
/// do about it depends on which of these it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// TLS verification refused the server's certificate (or the server refused ours).
    #[error("certificate: {0}")]
    Certificate(String),
    /// Nothing listens at the address.
    #[error("connection refused")]
    Refused,
    /// No connection or no answer within the timeout.
    #[error("no answer in time")]
    Timeout,
    /// Anything else on the way (reset, closed early, DNS): worth another try.
    #[error("{0}")]
    Other(String),
}

impl NetError {
    pub fn of(e: &reqwest::Error) -> NetError {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cur {
            for candidate in wrapped(err) {
                if let Some(tls) = candidate.downcast_ref::<rustls::Error>() {
                    use rustls::AlertDescription as A;
                    match tls {
                        rustls::Error::InvalidCertificate(_)
                        | rustls::Error::NoCertificatesPresented
                        | rustls::Error::AlertReceived(
                            A::BadCertificate
                            | A::UnknownCA
                            | A::CertificateUnknown
                            | A::CertificateExpired
                            | A::CertificateRequired
                            | A::UnsupportedCertificate,
                        ) => return NetError::Certificate(tls.to_string()),
                        _ => {}
                    }
                }
                if let Some(io) = candidate.downcast_ref::<std::io::Error>() {
                    match io.kind() {
                        std::io::ErrorKind::ConnectionRefused => return NetError::Refused,
                        std::io::ErrorKind::TimedOut => return NetError::Timeout,
                        _ => {}
                    }
                }
            }
            cur = err.source();
        }
        if e.is_timeout() {
            NetError::Timeout
        } else if e.is_body() {
            // reqwest's blocking client reports a connection the kernel dropped mid-body (see
            // tcp_user_timeout in Client::http) as a closed channel, losing the cause.
            NetError::Other("the connection broke while the body was sent or read".into())
        } else {
            // The URL is left out: the caller names the request, and an upload URL's query
            // is a long state token.
            let mut text = e.to_string();
            if let Some(url) = e.url() {
                text = text.replace(&format!(" for url ({url})"), "");
            }
            let mut cur = std::error::Error::source(e);
            while let Some(s) = cur {
                let t = s.to_string();
                if !text.contains(&t) {
                    text = format!("{text}: {t}");
                }
                cur = s.source();
            }
            NetError::Other(text)
        }
    }
}

/// `err` and the errors it wraps that `source()` skips: an io::Error reports its inner
/// error's source, not the inner error itself, and the connector nests io::Errors around
/// rustls's error.
fn wrapped<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = vec![err];
    let mut i = 0;
    while i < out.len() && out.len() < 16 {
        let e = out[i];
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            out.push(inner as &(dyn std::error::Error + 'static));
        }
        i += 1;
    }
    out
}

/// `METHOD scheme://host/path` of a request, for messages (no query: upload state tokens).
fn describe_request(method: &reqwest::Method, url: &reqwest::Url) -> String {
    format!(
        "{method} {}{}",
        url.origin().ascii_serialization(),
        url.path()
    )
}

/// What to do about a request that got no answer. `who` names the server ("registry
/// 127.0.0.1:5000", "the token service … of registry …").
fn net_failure(e: &reqwest::Error, who: &str, request: &str, policy: &Policy) -> Failure {
    let host = e.url().and_then(|u| {
        u.host_str()
            .map(|h| format!("{h}:{}", u.port_or_known_default().unwrap_or(0)))
    });
    if e.is_redirect() {
        // The redirect policy refused: asking again gets the same redirect.
        return Failure::Fatal(anyhow!(
            "{who} answered {request} with a redirect this tool does not follow ({}); check the registry's address and proxy settings",
            sanitize(&NetError::of(e).to_string())
        ));
    }
    match NetError::of(e) {
        NetError::Certificate(detail) => Failure::Fatal(anyhow!(
            "the TLS certificate of {who} is not trusted ({detail}); pass --registry-ca FILE with the CA that signed it"
        )),
        // A loopback address that refuses has no registry on that port: retrying with backoff
        // only delays the answer.
        NetError::Refused if host.as_deref().is_some_and(is_loopback) => Failure::Fatal(anyhow!(
            "nothing listens at {} ({who}: {request} was refused); check the port in the image reference, or start the registry",
            host.unwrap_or_default()
        )),
        NetError::Refused => Failure::Retry {
            reason: format!("{who} refused the connection for {request}"),
            after: None,
        },
        NetError::Timeout => Failure::Retry {
            reason: format!(
                "{who} did not answer {request} within {} (--registry-timeout)",
                humantime::format_duration(policy.timeout)
            ),
            after: None,
        },
        NetError::Other(text) => Failure::Retry {
            reason: format!("{request}: {}", sanitize(&text)),
            after: None,
        },
    }
}

/// A session with one repository of one registry.
pub struct Client {
    http: Http,
    /// `https://host` or `http://host`.
    base: String,
    /// The registry's origin: where its credentials go (see [`Home`]).
    home: Home,
    /// The registry as the user named it (for messages and credential lookup).
    pub registry: String,
    pub repo: String,
    credential: Credential,
    scopes: Vec<String>,
    authorization: Mutex<Option<String>>,
    pub policy: Policy,
    /// Where the session says what it does (requests with -v, retries).
    pub shell: Shell,
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

/// A registry's refusal, typed: the status, and the `errors[0]` code and message of its JSON
/// body (read up to 64 KiB; remote text sanitized).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct RegistryError {
    pub status: StatusCode,
    pub code: Option<String>,
    pub message: Option<String>,
}

impl RegistryError {
    pub fn read(resp: Response) -> RegistryError {
        let status = resp.status();
        let body = read_prefix(resp, ERROR_BODY_LIMIT);
        let first = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("errors")?.get(0).cloned());
        let field = |k: &str| {
            first
                .as_ref()
                .and_then(|e| e.get(k)?.as_str().map(sanitize))
                .filter(|s| !s.is_empty())
        };
        RegistryError {
            status,
            code: field("code"),
            message: field("message"),
        }
    }

    /// 408, 429 and 5xx: the registry may answer otherwise on another try.
    pub fn retryable(&self) -> bool {
        self.status == StatusCode::REQUEST_TIMEOUT
            || self.status == StatusCode::TOO_MANY_REQUESTS
            || self.status.is_server_error()
    }
}

impl RegistryError {
    /// `STATUS[: CODE MESSAGE]`, as messages quote it.
    fn describe(&self) -> String {
        let detail: Vec<&str> = [&self.code, &self.message]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        if detail.is_empty() {
            self.status.to_string()
        } else {
            format!("{}: {}", self.status, detail.join(" "))
        }
    }
}

impl Client {
    pub fn http(opts: &RegistryOptions, shell: &Shell) -> Result<Http> {
        // ring, not aws-lc: no cmake or large C build for users compiling this tool. Installing
        // twice is harmless (the second call reports the first provider).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = reqwest::Certificate::from_pem_bundle(&crate::util::ca::webpki_pem())
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
        // Besides these roots, reqwest's platform verifier trusts the system's store, which
        // SSL_CERT_FILE / SSL_CERT_DIR replace (rustls-native-certs): say so, since a
        // variable set for something else then decides whom a push trusts.
        for var in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
            if let Some(v) = std::env::var_os(var) {
                shell.status(
                    "Trusting",
                    format!(
                        "{var}={} for registry TLS (from the environment, in place of the system's CA store)",
                        std::path::Path::new(&v).display()
                    ),
                );
            }
        }
        let builder = Http::builder();
        // An upload into a registry that stopped reading (or vanished) leaves data unacknowledged
        // or the window shut: the kernel drops such a connection after the timeout, so a stall
        // mid-upload ends long before the upload's size-based limit.
        #[cfg(target_os = "linux")]
        let builder = builder.tcp_user_timeout(opts.timeout);
        builder
            .user_agent(concat!("cargo-containerize/", env!("CARGO_PKG_VERSION")))
            .tls_certs_merge(roots)
            .connect_timeout(opts.timeout)
            // Per request: the answer's head must come within the timeout, and then each read of
            // its body. A registry that stops answering is a retryable failure, not a hang.
            // Uploads get a limit of their own that grows with their size (see push::upload).
            .timeout(opts.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .redirect(redirects())
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
        shell: &Shell,
    ) -> Result<Client> {
        let host = api_host(registry);
        let mut scopes = vec![format!("repository:{repo}:pull,push")];
        scopes.extend(mount_from.iter().map(|r| format!("repository:{r}:pull")));
        let policy = Policy::of(opts);
        let who = format!("registry {registry}");
        let mut base = format!("https://{host}");
        let resp = retry(&policy, registry, repo, "reach the registry", shell, || {
            // A host that may be plain HTTP gets a short TLS probe before the fallback.
            let may_fall_back = base.starts_with("https://") && http_allowed(opts, host);
            let url = format!("{base}/v2/");
            let mut probe = http.get(&url);
            if may_fall_back {
                probe = probe.timeout(policy.timeout.min(Duration::from_secs(5)));
            }
            shell.verbose("Request", format!("GET {url}"));
            match probe.send() {
                Ok(resp) => classify(resp),
                Err(e) => {
                    let certificate = matches!(NetError::of(&e), NetError::Certificate(_));
                    if may_fall_back && !certificate {
                        // A loopback or --insecure-registry host that does not speak TLS.
                        let plain = format!("http://{host}/v2/");
                        shell.verbose("Request", format!("GET {plain}"));
                        return match http.get(&plain).send() {
                            Ok(resp) => {
                                base = format!("http://{host}");
                                classify(resp)
                            }
                            Err(e) => Err(net_failure(&e, &who, &format!("GET {plain}"), &policy)),
                        };
                    }
                    Err(net_failure(&e, &who, &format!("GET {url}"), &policy))
                }
            }
        })?;
        let client = Client {
            http: http.clone(),
            home: Home::new(&base)?,
            base,
            registry: registry.to_string(),
            repo: repo.to_string(),
            shell: shell.clone(),
            credential,
            scopes,
            authorization: Mutex::new(None),
            policy,
        };
        match resp.status() {
            StatusCode::UNAUTHORIZED => {
                let probe = reqwest::Url::parse(&format!("{}/v2/", client.base))?;
                let challenge = client
                    .challenge(&resp, &reqwest::Method::GET, &probe)?
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

    /// The token request: a refresh-token grant (POST, form-encoded) for an identity token,
    /// else a GET with the scopes, with Basic credentials if there are any.
    fn token_request(
        &self,
        url: &reqwest::Url,
        service: Option<&str>,
        cred: &Credential,
    ) -> RequestBuilder {
        let c = self;
        match cred {
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
                c.http.post(url.clone()).form(&form)
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
        }
    }

    fn fetch_token(&self, realm: &str, service: Option<&str>, cred: &Credential) -> Result<String> {
        let url = reqwest::Url::parse(realm).with_context(|| {
            format!(
                "registry {} sent an invalid token realm ({})",
                self.registry,
                sanitize(realm)
            )
        })?;
        let realm_host = url.host_str().unwrap_or_default();
        let origin = url.origin().ascii_serialization();
        if url.scheme() != "https" && !is_loopback(realm_host) && *cred != Credential::Anonymous {
            bail!(
                "registry {} asks for credentials to be sent to {origin} over plain HTTP; refusing (use an https realm)",
                self.registry,
            );
        }
        let who = format!("the token service {origin} of registry {}", self.registry);
        let c = self;
        let resp = self.retrying("get a token", || {
            let req = c.token_request(&url, service, cred);
            let request = match cred {
                Credential::IdentityToken(_) => format!("POST {origin}{}", url.path()),
                _ => format!("GET {origin}{}", url.path()),
            };
            c.shell.verbose("Request", &request);
            match req.send() {
                Ok(resp) => classify(resp),
                Err(e) => Err(net_failure(&e, &who, &request, &c.policy)),
            }
        })?;
        if !resp.status().is_success() {
            return Err(self.refused(resp, "a token"));
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
            .with_context(|| format!("the token service of {} sent no JSON", self.registry))?;
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .map(String::from)
            .with_context(|| format!("the token service of {} sent no token", self.registry))
    }

    /// Runs `op` up to the configured number of tries.
    pub fn retrying<T>(&self, what: &str, op: impl FnMut() -> Result<T, Failure>) -> Result<T> {
        retry(
            &self.policy,
            &self.registry,
            &self.repo,
            what,
            &self.shell,
            op,
        )
    }

    /// One attempt of an authenticated request; refreshes the token once on 401.
    pub fn send(&self, build: impl Fn(&Http, &str) -> RequestBuilder) -> Result<Response, Failure> {
        let who = format!("registry {}", self.registry);
        for fresh in [false, true] {
            let mut req = build(&self.http, &self.base).build().map_err(|e| {
                Failure::Fatal(anyhow!("cannot build a request for {}: {e}", self.registry))
            })?;
            // Credentials go only to the registry itself: an upload Location may name another
            // host (a storage service, a misconfigured proxy), which must not receive them.
            if self.home.owns(req.url())
                && let Some(a) = self.authorization.lock().expect("auth lock").clone()
            {
                let value = reqwest::header::HeaderValue::from_str(&a).map_err(|_| {
                    Failure::Fatal(anyhow!(
                        "registry {} issued a token that is not a valid header",
                        self.registry
                    ))
                })?;
                req.headers_mut().insert(AUTHORIZATION, value);
            }
            let (method, sent_to) = (req.method().clone(), req.url().clone());
            let request = describe_request(&method, &sent_to);
            self.shell.verbose("Request", &request);
            let resp = match self.http.execute(req) {
                Ok(r) => r,
                Err(e) => return Err(net_failure(&e, &who, &request, &self.policy)),
            };
            if resp.status() == StatusCode::UNAUTHORIZED {
                // Another origin's 401 is an error here; the registry's is answered (an expired
                // token: ask again, once).
                let challenge = self.challenge(&resp, &method, &sent_to)?;
                if let Some(ch) = challenge.filter(|_| !fresh) {
                    self.authenticate(&ch)?;
                    continue;
                }
            }
            return classify(resp);
        }
        unreachable!("the loop returns on its second pass")
    }

    /// The challenge of a 401 answer to the request `method` `sent_to`, if it may be answered
    /// (see [`Home`]): a 401 from any origin but the registry's is an error naming that origin.
    fn challenge(
        &self,
        resp: &Response,
        method: &reqwest::Method,
        sent_to: &reqwest::Url,
    ) -> Result<Option<Challenge>> {
        self.home
            .challenge(resp.url(), resp.headers())
            .map_err(|foreign| {
                let request = describe_request(method, sent_to);
                let how = if self.home.owns(sent_to) {
                    format!("registry {} redirected {request} to {}", self.registry, foreign.origin)
                } else {
                    format!("registry {} sent {request} to another host", self.registry)
                };
                anyhow!(
                    "{how}, and {0} asked for credentials (401); {0} is not the registry ({1}), whose credentials go only to itself and the token service it names, so none were sent; check the registry's storage or proxy settings",
                    foreign.origin,
                    self.home.origin()
                )
            })
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
        // The server that answered: the registry, or where it sent the request (an upload
        // Location, a redirect, its token service).
        let who = if self.home.owns(resp.url()) {
            format!("registry {}", self.registry)
        } else {
            format!(
                "{}, where registry {} sent the request,",
                resp.url().origin().ascii_serialization(),
                self.registry
            )
        };
        let reason = RegistryError::read(resp);
        let (reg, repo) = (&self.registry, &self.repo);
        let remedy = match reason.status {
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
        anyhow!("{who} refused {what} for repository {repo} ({reason}); {remedy}")
    }
}

/// Which redirects a request follows: at most 10, and none from https to plain http (the
/// request's body, a manifest, would go out in the clear). reqwest drops Authorization (and
/// cookies) on a hop to another origin — scheme, host or port — itself; where the last hop
/// asks for credentials, [`Home`] refuses to answer.
fn redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.url().scheme() == "http"
            && attempt.previous().iter().any(|u| u.scheme() == "https");
        if downgrade {
            let to = attempt.url().origin().ascii_serialization();
            attempt.error(format!(
                "redirected from https to {to}, which is plain HTTP; refusing to send the request in the clear"
            ))
        } else if attempt.previous().len() > 10 {
            attempt.error("more than 10 redirects")
        } else {
            attempt.follow()
        }
    })
}

/// Sorts a response into success, retry or "the caller decides" (other 4xx).
fn classify(resp: Response) -> Result<Response, Failure> {
    let s = resp.status();
    if s == StatusCode::REQUEST_TIMEOUT || s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error()
    {
        let after = retry_after(&resp);
        let reason = RegistryError::read(resp);
        debug_assert!(reason.retryable());
        return Err(Failure::Retry {
            after,
            reason: reason.to_string(),
        });
    }
    Ok(resp)
}

/// Runs `op` up to `policy.tries` times, sleeping between tries as the server asked or with
/// exponential backoff, and saying so on stderr (unless quiet): a push that waits is never
/// silent.
pub fn retry<T>(
    policy: &Policy,
    registry: &str,
    repo: &str,
    what: &str,
    shell: &Shell,
    mut op: impl FnMut() -> Result<T, Failure>,
) -> Result<T> {
    let tries = policy.tries;
    let mut last = String::new();
    for attempt in 1..=tries {
        match op() {
            Ok(v) => return Ok(v),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry { reason, after }) => {
                last = reason;
                if attempt < tries {
                    let wait = after.unwrap_or_else(|| backoff(attempt));
                    shell.status(
                        "Retrying",
                        format!(
                            "to {what} (try {} of {tries}, in {}): {last}",
                            attempt + 1,
                            humantime::format_duration(wait)
                        ),
                    );
                    std::thread::sleep(wait);
                }
            }
        }
    }
    bail!(
        "could not {what} for repository {repo} at registry {registry} after {tries} tries (last: {last}); check the registry is up, or raise --retries or --registry-timeout"
    )
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
