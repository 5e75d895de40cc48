//! The push algorithm (after go-containerregistry's `remote.Write`): HEAD every blob and skip
//! what the registry has; mount from a repository pushed earlier in this run; upload the rest
//! concurrently, streamed from disk; PUT manifests only once every blob they reference is
//! confirmed; then the index; then the same bytes under every further tag, each read back.

use super::client::{Client, Failure, backoff};
use super::remote::{MANIFEST_BODY_LIMIT, read_capped, sanitize};
use crate::blobs::BlobStore;
use crate::image::{BlobRef, Image};
use anyhow::{Result, anyhow};
use reqwest::StatusCode;
use reqwest::blocking::Body;
use std::collections::VecDeque;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A blob to put in a repository.
#[derive(Debug, Clone)]
pub struct BlobJob {
    pub digest: String,
    pub size: u64,
    pub what: String,
    pub path: PathBuf,
}

/// What happened to one repository's blobs.
#[derive(Debug, Clone, Default)]
pub struct BlobStats {
    pub uploaded: usize,
    pub skipped: usize,
    pub mounted: usize,
    pub bytes: u64,
}

/// What the push reports as it goes (after go-containerregistry's progress updates): a
/// terminal shows bars, a log shows lines, a test records events. Push knows nothing of how.
pub trait Observer: Sync {
    /// The registry already has the blob.
    fn exists(&self, blob: &BlobJob);
    /// The blob was mounted from another repository of the same registry.
    fn mounted(&self, blob: &BlobJob);
    /// An upload of the blob begins; the handle hears of its bytes.
    fn uploading(&self, blob: &BlobJob) -> Arc<dyn Upload>;
}

/// One blob's upload, as the observer follows it.
pub trait Upload: Send + Sync {
    /// `n` more bytes were read into the request.
    fn sent(&self, n: u64);
    /// The upload starts over (a retry).
    fn restarted(&self);
    /// The registry confirmed the blob.
    fn finished(&self);
}

enum Outcome {
    Skipped,
    Mounted,
    Uploaded(u64),
}

/// Every blob the image and its attachments reference except manifests and the index, each
/// once, in [`Image::blobs`]'s order: what must be in the repository before any manifest.
pub fn blob_jobs(image: &Image, store: &BlobStore) -> Vec<BlobJob> {
    image
        .blobs()
        .filter(|b| !b.is_manifest())
        .map(|b| BlobJob {
            digest: b.digest.to_string(),
            size: b.size,
            what: b.what().to_string(),
            path: store.path(b.digest),
        })
        .collect()
}

/// The manifests to PUT once the blobs are in, in order: each after every manifest it
/// references (platform manifests, then the index: the image's top one, which goes under
/// every tag), and each attachment after its subject.
pub fn manifests(image: &Image) -> impl Iterator<Item = BlobRef<'_>> {
    image.blobs().filter(|b| b.is_manifest())
}

fn blob_exists(c: &Client, digest: &str) -> Result<bool> {
    c.retrying("check a blob", || {
        let r = c.send(|h, _| h.head(c.url(&format!("blobs/{digest}"))))?;
        match r.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(Failure::Fatal(c.refused(r, "checking a blob"))),
        }
    })
}

/// Counts bytes as the HTTP client reads the body, for progress.
struct Counting<R> {
    inner: R,
    transfer: Arc<dyn Upload>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.transfer.sent(n as u64);
        Ok(n)
    }
}

fn upload(
    c: &Client,
    job: &BlobJob,
    transfer: &Arc<dyn Upload>,
    mut location: Option<reqwest::Url>,
) -> Result<()> {
    if !job.path.is_file() {
        return Err(anyhow!(
            "blob {} ({}) is missing from the cache; run the build again",
            job.digest,
            job.what
        ));
    }
    c.retrying("upload a blob", || {
        transfer.restarted();
        let mut url = match location.take() {
            Some(u) => u,
            None => {
                let r = c.send(|h, _| {
                    h.post(c.url("blobs/uploads/"))
                        .header("Content-Length", "0")
                })?;
                if r.status() != StatusCode::ACCEPTED {
                    return Err(Failure::Fatal(c.refused(r, "starting an upload")));
                }
                c.location(&r)?
            }
        };
        url.query_pairs_mut().append_pair("digest", &job.digest);
        let r = c.send(|h, _| {
            let file = std::fs::File::open(&job.path);
            let body = match file {
                Ok(f) => Body::sized(
                    Counting {
                        inner: std::io::BufReader::with_capacity(1 << 20, f),
                        transfer: transfer.clone(),
                    },
                    job.size,
                ),
                // Removed since the check above: the registry rejects the digest, reported below.
                Err(_) => Body::from(Vec::new()),
            };
            // The registry timeout plus a second per 64 KiB: even a slow link finishes, a dead
            // one fails. A total, not an idle limit: reqwest's blocking client has no idle
            // timeout for a request whose body is streamed (its async read_timeout, too, runs
            // from the start of the request to the answer's head), so the bound grows with the
            // size instead.
            h.put(url.clone())
                .timeout(c.policy.timeout + std::time::Duration::from_secs(job.size / 65_536))
                .header("Content-Type", "application/octet-stream")
                .header("Content-Length", job.size.to_string())
                .body(body)
        })?;
        match r.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
            _ => Err(Failure::Fatal(c.refused(r, "an upload"))),
        }
    })
}

fn push_blob(
    c: &Client,
    job: &BlobJob,
    mount_from: Option<&str>,
    progress: &dyn Observer,
) -> Result<Outcome> {
    if blob_exists(c, &job.digest)? {
        progress.exists(job);
        return Ok(Outcome::Skipped);
    }
    let mut location = None;
    if let Some(from) = mount_from {
        let r = c.retrying("mount a blob", || {
            c.send(|h, _| {
                let mut url =
                    reqwest::Url::parse(&c.url("blobs/uploads/")).expect("registry URLs parse");
                url.query_pairs_mut()
                    .append_pair("mount", &job.digest)
                    .append_pair("from", from);
                h.post(url).header("Content-Length", "0")
            })
        })?;
        match r.status() {
            StatusCode::CREATED => {
                progress.mounted(job);
                return Ok(Outcome::Mounted);
            }
            // 202: the registry declined to mount and opened an upload instead.
            StatusCode::ACCEPTED => location = Some(c.location(&r)?),
            _ => {} // mounting is an optimisation; upload normally
        }
    }
    let transfer = progress.uploading(job);
    upload(c, job, &transfer, location)?;
    // Confirm before any manifest refers to it.
    if !blob_exists(c, &job.digest)? {
        return Err(anyhow!(
            "registry {} accepted blob {} but does not list it; check the registry's storage",
            c.registry,
            job.digest
        ));
    }
    transfer.finished();
    Ok(Outcome::Uploaded(job.size))
}

/// Pushes every blob, `jobs` at a time; stops at the first error.
pub fn push_blobs(
    c: &Client,
    blobs: &[BlobJob],
    mount_from: Option<&str>,
    jobs: usize,
    progress: &dyn Observer,
) -> Result<BlobStats> {
    let queue: Mutex<VecDeque<&BlobJob>> = Mutex::new(blobs.iter().collect());
    let stats = Mutex::new(BlobStats::default());
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, blobs.len().max(1)) {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let Some(job) = queue.lock().expect("queue").pop_front() else {
                        break;
                    };
                    match push_blob(c, job, mount_from, progress) {
                        Ok(outcome) => {
                            let mut st = stats.lock().expect("stats");
                            match outcome {
                                Outcome::Skipped => st.skipped += 1,
                                Outcome::Mounted => st.mounted += 1,
                                Outcome::Uploaded(n) => {
                                    st.uploaded += 1;
                                    st.bytes += n;
                                }
                            }
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error.lock().expect("error").get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("error") {
        return Err(e);
    }
    Ok(stats.into_inner().expect("stats"))
}

/// What a registry answered to a manifest's PUT, beyond success.
#[derive(Debug, Clone, Default)]
pub struct PutAnswer {
    /// The `OCI-Subject` header: a registry with the referrers API names the subject of a
    /// manifest that has one (OCI distribution 1.1); one without it says nothing.
    pub oci_subject: Option<String>,
}

/// PUTs a manifest or index under `reference` (a tag or its digest).
pub fn put_manifest(
    c: &Client,
    reference: &str,
    bytes: &[u8],
    media_type: &str,
    digest: &str,
) -> Result<PutAnswer> {
    put_manifest_or(c, reference, bytes, media_type, digest, |r| {
        c.refused(r, &format!("the manifest {reference}"))
    })
}

/// [`put_manifest`], with `refused` making the error for an answer that is no success.
pub fn put_manifest_or(
    c: &Client,
    reference: &str,
    bytes: &[u8],
    media_type: &str,
    digest: &str,
    refused: impl FnOnce(reqwest::blocking::Response) -> anyhow::Error,
) -> Result<PutAnswer> {
    let r = c.retrying("push a manifest", || {
        c.send(|h, _| {
            h.put(c.url(&format!("manifests/{reference}")))
                .header("Content-Type", media_type)
                .body(bytes.to_vec())
        })
    })?;
    if !r.status().is_success() {
        return Err(refused(r));
    }
    if let Some(got) = r
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|h| h.to_str().ok())
        && got != digest
    {
        return Err(anyhow!(
            "registry {} stored manifest {reference} as {}, not {digest}; it rewrote the manifest, so the pushed digest would not match",
            c.registry,
            sanitize(got)
        ));
    }
    Ok(PutAnswer {
        oci_subject: r
            .headers()
            .get("OCI-Subject")
            .and_then(|h| h.to_str().ok())
            .map(String::from),
    })
}

/// Reads `reference` back after its PUT: a registry (or a proxy in front of it) may answer
/// 201 without storing anything. Compares the Docker-Content-Digest of a HEAD, or, if the
/// registry sends none, the digest of the manifest itself (read up to 4 MiB).
pub fn verify_manifest(c: &Client, reference: &str, media_type: &str, digest: &str) -> Result<()> {
    let read = |method: reqwest::Method| {
        c.retrying("read the manifest back", || {
            c.send(|h, _| {
                h.request(method.clone(), c.url(&format!("manifests/{reference}")))
                    .header(reqwest::header::ACCEPT, media_type)
            })
        })
    };
    // A registry whose storage is only eventually consistent may take a moment to serve
    // what it just accepted: a 404 is asked again, as often as other failures are.
    let mut attempt = 1;
    let r = loop {
        let r = read(reqwest::Method::HEAD)?;
        if r.status() != StatusCode::NOT_FOUND || attempt >= c.policy.tries {
            break r;
        }
        let wait = backoff(attempt);
        attempt += 1;
        c.shell.status(
            "Retrying",
            format!(
                "to read manifest {reference} back (try {attempt} of {}, in {}): registry {} answered 404",
                c.policy.tries,
                humantime::format_duration(wait),
                c.registry
            ),
        );
        std::thread::sleep(wait);
    };
    let not_stored = |status: StatusCode| {
        anyhow!(
            "registry {} accepted manifest {reference} of {} but does not serve it (reading it back answered {status}); the image was not stored, check the registry's storage and logs, then push again",
            c.registry,
            c.repo
        )
    };
    if r.status() == StatusCode::NOT_FOUND {
        return Err(not_stored(r.status()));
    }
    if !r.status().is_success() {
        return Err(c.refused(r, &format!("reading manifest {reference} back")));
    }
    let header = |r: &reqwest::blocking::Response| {
        r.headers()
            .get("Docker-Content-Digest")
            .and_then(|h| h.to_str().ok())
            .map(String::from)
    };
    let served = match header(&r) {
        Some(d) => d,
        None => {
            let r = read(reqwest::Method::GET)?;
            if !r.status().is_success() {
                return Err(not_stored(r.status()));
            }
            let length = r.content_length();
            let body = read_capped(
                r,
                length,
                MANIFEST_BODY_LIMIT,
                &format!("manifest {reference}"),
                &c.registry,
            )?;
            crate::blobs::digest_of(&body).to_string()
        }
    };
    if served != digest {
        return Err(anyhow!(
            "registry {} serves {}:{reference} as {}, not the {digest} just pushed; another push may have moved the tag, or the registry did not store it; push again",
            c.registry,
            c.repo,
            sanitize(&served)
        ));
    }
    Ok(())
}
