//! A session with one repository of one registry, and the distribution API's primitives on
//! it: blob HEAD, mount and upload; manifest GET, PUT and read-back; blob GET. The push
//! (`outputs/registry/push.rs`) and the pull ([`super::pull`]) are made of these.
//!
//! Hand-written on reqwest because oci-client (evaluated for this) drops response headers from
//! its errors, so it cannot honour Retry-After; treats a 202 answer to a cross-repository mount
//! as a failure instead of "upload normally"; has no identity-token (refresh_token) grant; and
//! retries nothing.

use super::RegistryOptions;
use super::auth::{Authorizer, Challenge, Credential, Home, Peer};
use super::error::Refusal;
use super::retry::{Failure, Policy, backoff, classify, net_failure, retry};
use super::transport::{
    MANIFEST_BODY_LIMIT, NetError, api_host, describe_request, http_allowed, read_capped, sanitize,
};
use crate::util::digest::Digest;
use crate::util::shell::Shell;
use anyhow::{Context, Result, anyhow, bail};
use oci_spec::image::MediaType;
use reqwest::StatusCode;
use reqwest::blocking::{Body, Client as Http, RequestBuilder, Response};
use reqwest::header::AUTHORIZATION;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Every manifest media type a push writes or a tag may hold, as an Accept header.
const ANY_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

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
    auth: Authorizer,
    /// Whether the session may push (else it only pulls).
    push: bool,
    pub policy: Policy,
}

impl Client {
    /// Where this session says what it does.
    pub fn shell(&self) -> &Shell {
        &self.policy.shell
    }
}

/// What a session is for: the token scopes it asks for.
pub enum Access<'a> {
    /// Pull from the repository.
    Pull,
    /// Pull and push, plus pull on the repositories blobs are mounted from.
    Push { mount_from: &'a [String] },
}

/// How a cross-repository mount went.
pub enum Mount {
    /// The registry mounted the blob.
    Mounted,
    /// It declined and opened an upload at this address instead (202).
    Upload(reqwest::Url),
    /// It declined (mounting is an optimisation: upload normally).
    Declined,
}

/// Hears of an upload's bytes, for progress.
pub trait Transfer: Send + Sync {
    /// `n` more bytes were read into the request.
    fn sent(&self, n: u64);
    /// The upload starts over (a retry).
    fn restarted(&self);
}

/// Counts bytes as the HTTP client reads the body, for progress.
struct Counting<R, T: ?Sized> {
    inner: R,
    transfer: Arc<T>,
}

impl<R: Read, T: Transfer + ?Sized> Read for Counting<R, T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.transfer.sent(n as u64);
        Ok(n)
    }
}

/// How a request names a manifest: by tag or by digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestRef<'a> {
    Tag(&'a str),
    Digest(&'a Digest),
}

impl std::fmt::Display for ManifestRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestRef::Tag(t) => f.write_str(t),
            ManifestRef::Digest(d) => f.write_str(d),
        }
    }
}

/// What a registry answered to a manifest's PUT, beyond success.
#[derive(Debug, Clone, Default)]
pub struct PutAnswer {
    /// The `OCI-Subject` header: a registry with the referrers API names the subject of a
    /// manifest that has one (OCI distribution 1.1); one without it says nothing. It only
    /// decides whether the registry indexed the manifest, so a header that is no sha256
    /// digest counts as none (the referrers tag schema is used instead).
    pub oci_subject: Option<Digest>,
}

/// Finds the API base of `registry`: https, or, for a loopback or `--insecure-registry` host
/// that does not speak TLS, plain http (after a short TLS probe). Returns the base and the
/// answer to `GET /v2/`.
fn probe(
    http: &Http,
    opts: &RegistryOptions,
    registry: &str,
    repo: &str,
    policy: &Policy,
) -> Result<(String, Response)> {
    let host = api_host(registry);
    let who = format!("registry {registry}");
    let mut base = format!("https://{host}");
    let resp = retry(policy, registry, repo, "reach the registry", || {
        // A host that may be plain HTTP gets a short TLS probe before the fallback.
        let may_fall_back = base.starts_with("https://") && http_allowed(opts, host);
        let url = format!("{base}/v2/");
        let mut probe = http.get(&url);
        if may_fall_back {
            probe = probe.timeout(policy.timeout.min(Duration::from_secs(5)));
        }
        policy.shell.verbose("Request", format!("GET {url}"));
        match probe.send() {
            Ok(resp) => classify(resp),
            Err(e) => {
                let certificate = matches!(NetError::of(&e), NetError::Certificate(_));
                if may_fall_back && !certificate {
                    // A loopback or --insecure-registry host that does not speak TLS.
                    let plain = format!("http://{host}/v2/");
                    policy.shell.verbose("Request", format!("GET {plain}"));
                    return match http.get(&plain).send() {
                        Ok(resp) => {
                            base = format!("http://{host}");
                            classify(resp)
                        }
                        Err(e) => Err(net_failure(&e, &who, &format!("GET {plain}"), policy)),
                    };
                }
                Err(net_failure(&e, &who, &format!("GET {url}"), policy))
            }
        }
    })?;
    Ok((base, resp))
}

impl Client {
    /// Connects to `registry`/`repo`: picks https (or http where allowed), and authenticates
    /// for `access`.
    pub fn connect(
        http: &Http,
        opts: &RegistryOptions,
        registry: &str,
        repo: &str,
        credential: Credential,
        access: &Access<'_>,
        shell: &Shell,
    ) -> Result<Client> {
        let mut scopes = vec![];
        let push = match access {
            Access::Pull => {
                scopes.push(format!("repository:{repo}:pull"));
                false
            }
            Access::Push { mount_from } => {
                scopes.push(format!("repository:{repo}:pull,push"));
                scopes.extend(mount_from.iter().map(|r| format!("repository:{r}:pull")));
                true
            }
        };
        let policy = Policy::of(opts, shell);
        let (base, resp) = probe(http, opts, registry, repo, &policy)?;
        let client = Client {
            http: http.clone(),
            home: Home::new(&base)?,
            base,
            registry: registry.to_string(),
            repo: repo.to_string(),
            auth: Authorizer::new(credential, scopes),
            push,
            policy,
        };
        match resp.status() {
            StatusCode::UNAUTHORIZED => {
                let probe = reqwest::Url::parse(&format!("{}/v2/", client.base))?;
                let challenge = client
                    .challenge(&resp, &reqwest::Method::GET, &probe)?
                    .with_context(|| format!("registry {registry} asks for authentication but names no method it accepts"))?;
                client.auth.answer(&client.peer(), &challenge)?;
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

    /// The server as the token exchange needs it.
    fn peer(&self) -> Peer<'_> {
        Peer {
            http: &self.http,
            policy: &self.policy,
            home: &self.home,
            registry: &self.registry,
            repo: &self.repo,
            push: self.push,
        }
    }

    /// Runs `op` up to the configured number of tries.
    pub fn retrying<T>(&self, what: &str, op: impl FnMut() -> Result<T, Failure>) -> Result<T> {
        retry(&self.policy, &self.registry, &self.repo, what, op)
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
                && let Some(a) = self.auth.header()
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
            self.policy.shell.verbose("Request", &request);
            let resp = match self.http.execute(req) {
                Ok(r) => r,
                Err(e) => return Err(net_failure(&e, &who, &request, &self.policy)),
            };
            if resp.status() == StatusCode::UNAUTHORIZED {
                // Another origin's 401 is an error here; the registry's is answered (an expired
                // token: ask again, once).
                let challenge = self.challenge(&resp, &method, &sent_to)?;
                if let Some(ch) = challenge.filter(|_| !fresh) {
                    self.auth.answer(&self.peer(), &ch)?;
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
        Refusal {
            registry: &self.registry,
            repo: &self.repo,
            credential: self.auth.credential.describe(),
            push: self.push,
            from_registry: self.home.owns(resp.url()),
        }
        .error(resp, what)
    }
}

/// The blob primitives.
impl Client {
    /// Whether the repository has blob `digest` (HEAD).
    pub fn blob_exists(&self, digest: &Digest) -> Result<bool> {
        self.retrying("check a blob", || {
            let r = self.send(|h, _| h.head(self.url(&format!("blobs/{digest}"))))?;
            match r.status() {
                s if s.is_success() => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                _ => Err(Failure::Fatal(self.refused(r, "checking a blob"))),
            }
        })
    }

    /// Asks the registry to mount blob `digest` from repository `from` of the same registry.
    pub fn mount_blob(&self, digest: &Digest, from: &str) -> Result<Mount> {
        let r = self.retrying("mount a blob", || {
            self.send(|h, _| {
                let mut url =
                    reqwest::Url::parse(&self.url("blobs/uploads/")).expect("registry URLs parse");
                url.query_pairs_mut()
                    .append_pair("mount", digest)
                    .append_pair("from", from);
                h.post(url).header("Content-Length", "0")
            })
        })?;
        Ok(match r.status() {
            StatusCode::CREATED => Mount::Mounted,
            // 202: the registry declined to mount and opened an upload instead.
            StatusCode::ACCEPTED => Mount::Upload(self.location(&r)?),
            _ => Mount::Declined,
        })
    }

    /// Uploads the `size` bytes of the file at `path` as blob `digest` (monolithic: POST for
    /// an upload address unless `location` is one already, then one PUT), streamed from disk;
    /// each try starts over.
    pub fn upload_blob<T: Transfer + ?Sized + 'static>(
        &self,
        digest: &Digest,
        size: u64,
        path: &Path,
        transfer: &Arc<T>,
        mut location: Option<reqwest::Url>,
    ) -> Result<()> {
        self.retrying("upload a blob", || {
            transfer.restarted();
            let mut url = match location.take() {
                Some(u) => u,
                None => {
                    let r = self.send(|h, _| {
                        h.post(self.url("blobs/uploads/"))
                            .header("Content-Length", "0")
                    })?;
                    if r.status() != StatusCode::ACCEPTED {
                        return Err(Failure::Fatal(self.refused(r, "starting an upload")));
                    }
                    self.location(&r)?
                }
            };
            url.query_pairs_mut().append_pair("digest", digest);
            let r = self.send(|h, _| {
                let body = match std::fs::File::open(path) {
                    Ok(f) => Body::sized(
                        Counting {
                            inner: std::io::BufReader::with_capacity(1 << 20, f),
                            transfer: transfer.clone(),
                        },
                        size,
                    ),
                    // Removed since the caller's check: the registry rejects the digest,
                    // reported below.
                    Err(_) => Body::from(Vec::new()),
                };
                // The registry timeout plus a second per 64 KiB: even a slow link finishes, a
                // dead one fails. A total, not an idle limit: reqwest's blocking client has no
                // idle timeout for a request whose body is streamed (its async read_timeout,
                // too, runs from the start of the request to the answer's head), so the bound
                // grows with the size instead.
                h.put(url.clone())
                    .timeout(self.policy.timeout + Duration::from_secs(size / 65_536))
                    .header("Content-Type", "application/octet-stream")
                    .header("Content-Length", size.to_string())
                    .body(body)
            })?;
            match r.status() {
                StatusCode::CREATED | StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
                _ => Err(Failure::Fatal(self.refused(r, "an upload"))),
            }
        })
    }

    /// One GET of blob `digest`: the answer, its body not yet read.
    pub fn get_blob(&self, digest: &Digest) -> Result<Response, Failure> {
        self.send(|h, _| h.get(self.url(&format!("blobs/{digest}"))))
    }
}

/// The manifest primitives.
impl Client {
    /// GETs (or HEADs) manifest `reference` (a tag or a digest), accepting `accept` (media
    /// types, comma-separated): the answer, its body not yet read (a refusal is an error).
    pub fn get_manifest(
        &self,
        method: reqwest::Method,
        reference: ManifestRef<'_>,
        accept: &str,
    ) -> Result<Response> {
        let r = self.retrying("fetch a manifest", || {
            self.send(|h, _| {
                h.request(method.clone(), self.url(&format!("manifests/{reference}")))
                    .header(reqwest::header::ACCEPT, accept)
            })
        })?;
        if !r.status().is_success() {
            return Err(self.refused(r, &format!("the manifest {reference}")));
        }
        Ok(r)
    }

    /// The digest the registry serves manifest `reference` (a tag or a digest) as, from a
    /// HEAD accepting every manifest type: None when it has no such manifest, names no digest,
    /// or serves a digest reference as another digest. What proves a manifest or a tag in
    /// place without reading it.
    pub fn manifest_served(&self, reference: ManifestRef<'_>) -> Result<Option<Digest>> {
        let r = self.retrying("check a manifest", || {
            let r = self.send(|h, _| {
                h.head(self.url(&format!("manifests/{reference}")))
                    .header(reqwest::header::ACCEPT, ANY_MANIFEST)
            })?;
            match r.status() {
                s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(r),
                _ => Err(Failure::Fatal(
                    self.refused(r, &format!("checking manifest {reference}")),
                )),
            }
        })?;
        if r.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let served = self.content_digest(&r, reference)?;
        Ok(match reference {
            ManifestRef::Digest(d) => served.filter(|s| s == d),
            ManifestRef::Tag(_) => served,
        })
    }

    /// PUTs a manifest or index under `reference` (a tag or its digest).
    pub fn put_manifest(
        &self,
        reference: ManifestRef<'_>,
        bytes: &[u8],
        media_type: &MediaType,
        digest: &Digest,
    ) -> Result<PutAnswer> {
        self.put_manifest_or(reference, bytes, media_type, digest, |r| {
            self.refused(r, &format!("the manifest {reference}"))
        })
    }

    /// [`Client::put_manifest`], with `refused` making the error for an answer that is no
    /// success.
    pub fn put_manifest_or(
        &self,
        reference: ManifestRef<'_>,
        bytes: &[u8],
        media_type: &MediaType,
        digest: &Digest,
        refused: impl FnOnce(Response) -> anyhow::Error,
    ) -> Result<PutAnswer> {
        let r = self.retrying("push a manifest", || {
            self.send(|h, _| {
                h.put(self.url(&format!("manifests/{reference}")))
                    .header("Content-Type", media_type.as_ref())
                    .body(bytes.to_vec())
            })
        })?;
        if !r.status().is_success() {
            return Err(refused(r));
        }
        if let Some(got) = self.content_digest(&r, reference)?
            && got != *digest
        {
            return Err(anyhow!(
                "registry {} stored manifest {reference} as {got}, not {digest}; it rewrote the manifest, so the pushed digest would not match",
                self.registry
            ));
        }
        Ok(PutAnswer {
            oci_subject: r
                .headers()
                .get("OCI-Subject")
                .and_then(|h| h.to_str().ok()?.parse().ok()),
        })
    }

    /// HEADs `reference` until it is not 404, as often as other failures are tried: a
    /// registry whose storage is only eventually consistent may take a moment to serve what it
    /// just accepted.
    fn head_until_found(
        &self,
        reference: ManifestRef<'_>,
        media_type: &MediaType,
    ) -> Result<Response> {
        let mut attempt = 1;
        loop {
            let r = self.retrying("read the manifest back", || {
                self.send(|h, _| {
                    h.head(self.url(&format!("manifests/{reference}")))
                        .header(reqwest::header::ACCEPT, media_type.as_ref())
                })
            })?;
            if r.status() != StatusCode::NOT_FOUND || attempt >= self.policy.tries {
                return Ok(r);
            }
            let wait = backoff(attempt);
            attempt += 1;
            self.policy.shell.status(
                "Retrying",
                format!(
                    "to read manifest {reference} back (try {attempt} of {}, in {}): registry {} answered 404",
                    self.policy.tries,
                    humantime::format_duration(wait),
                    self.registry
                ),
            );
            std::thread::sleep(wait);
        }
    }

    /// Reads `reference` back after its PUT: a registry (or a proxy in front of it) may answer
    /// 201 without storing anything. Compares the Docker-Content-Digest of a HEAD, or, if the
    /// registry sends none, the digest of the manifest itself (read up to 4 MiB).
    pub fn verify_manifest(
        &self,
        reference: ManifestRef<'_>,
        media_type: &MediaType,
        digest: &Digest,
    ) -> Result<()> {
        let not_stored = |status: StatusCode| {
            anyhow!(
                "registry {} accepted manifest {reference} of {} but does not serve it (reading it back answered {status}); the image was not stored, check the registry's storage and logs, then push again",
                self.registry,
                self.repo
            )
        };
        let r = self.head_until_found(reference, media_type)?;
        if r.status() == StatusCode::NOT_FOUND {
            return Err(not_stored(r.status()));
        }
        if !r.status().is_success() {
            return Err(self.refused(r, &format!("reading manifest {reference} back")));
        }
        let served = match self.content_digest(&r, reference)? {
            Some(d) => d,
            None => {
                let r = self.retrying("read the manifest back", || {
                    self.send(|h, _| {
                        h.get(self.url(&format!("manifests/{reference}")))
                            .header(reqwest::header::ACCEPT, media_type.as_ref())
                    })
                })?;
                if !r.status().is_success() {
                    return Err(not_stored(r.status()));
                }
                let length = r.content_length();
                let body = read_capped(
                    r,
                    length,
                    MANIFEST_BODY_LIMIT,
                    &format!("manifest {reference}"),
                    &self.registry,
                )?;
                Digest::sha256_of(&body)
            }
        };
        if served != *digest {
            return Err(anyhow!(
                "registry {} serves {}:{reference} as {served}, not the {digest} just pushed; another push may have moved the tag, or the registry did not store it; push again",
                self.registry,
                self.repo
            ));
        }
        Ok(())
    }

    /// The `Docker-Content-Digest` header of the answer for manifest `reference`, if it has
    /// one: where a served digest enters, checked once. One that is not a sha256 digest is an
    /// error naming the registry.
    pub fn content_digest(
        &self,
        r: &Response,
        reference: ManifestRef<'_>,
    ) -> Result<Option<Digest>> {
        let Some(header) = r.headers().get("Docker-Content-Digest") else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(header.as_bytes());
        text.parse().map(Some).map_err(|_| {
            anyhow!(
                "registry {} answered for {reference} with the digest {}, which is not a sha256 digest",
                self.registry,
                sanitize(&text)
            )
        })
    }
}
