//! The push algorithm (after go-containerregistry's `remote.Write`): one round of concurrent
//! HEADs ([`survey`]) asks for every blob, manifest and tag at once, and what the registry
//! has is skipped; mount from a repository pushed earlier in this run; upload the rest
//! concurrently, streamed from disk; PUT manifests only once every blob they reference is
//! confirmed; then the index; then the same bytes under every further tag, each read back.
//! An unchanged re-push is that one round of HEADs.

use crate::blobs::BlobStore;
use crate::image::{BlobRef, Image};
use crate::registry::client::{Client, ManifestRef, Mount, Transfer};
use crate::util::digest::Digest;
use anyhow::{Result, anyhow};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// A blob to put in a repository.
#[derive(Debug, Clone)]
pub struct BlobJob {
    pub digest: Digest,
    pub size: u64,
    pub what: String,
    pub path: PathBuf,
    /// The base image's repository a layer came from: a push to the same registry mounts it
    /// from there.
    pub origin: Option<crate::layers::Origin>,
    /// Referenced only by the image's attachments (referrers), not by the image itself.
    pub attachment: bool,
}

impl BlobJob {
    /// The repository of `registry` to mount the blob from, other than `repo`: the base's it
    /// came from, else `fallback` (one pushed earlier in this run).
    fn mount_source<'a>(
        &'a self,
        registry: &str,
        repo: &str,
        fallback: Option<&'a str>,
    ) -> Option<&'a str> {
        self.origin
            .as_ref()
            .filter(|o| o.registry == registry && o.repository != repo)
            .map(|o| o.repository.as_str())
            .or(fallback)
    }
}

/// The base repositories of `registry` the image's layers came from (other than `repo`):
/// the push asks for pull access to them, to mount from.
pub fn base_repositories(blobs: &[BlobJob], registry: &str, repo: &str) -> Vec<String> {
    let mut repos: Vec<String> = blobs
        .iter()
        .filter_map(|b| b.origin.as_ref())
        .filter(|o| o.registry == registry && o.repository != repo)
        .map(|o| o.repository.clone())
        .collect();
    repos.sort();
    repos.dedup();
    repos
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

/// One blob's upload, as the observer follows it: its bytes and restarts
/// ([`Transfer`]), and its end.
pub trait Upload: Transfer {
    /// The registry confirmed the blob.
    fn finished(&self);
}

/// One question of a [`survey`].
#[derive(Debug, Clone, Copy)]
pub enum Check<'a> {
    /// Is this blob in the repository?
    Blob(&'a Digest),
    /// Is this manifest in the repository (by digest)?
    Manifest(&'a Digest),
    /// Which manifest is under this tag?
    Tag(&'a str),
}

/// What a registry already holds, by one round of HEADs: before a push, it tells what need
/// not be sent again (an unchanged re-push sends nothing).
#[derive(Debug, Clone, Default)]
pub struct Survey {
    /// Blobs the repository has.
    pub blobs: HashSet<Digest>,
    /// Manifests the repository has, by digest.
    pub manifests: HashSet<Digest>,
    /// The digest under each tag asked about that has one.
    pub tags: HashMap<String, Digest>,
}

/// HEADs asked at once by a survey: four per upload job, at most 16 (but never fewer than the
/// upload jobs). A HEAD is tiny, and a cold push waits for the whole round before its first
/// upload.
pub fn survey_jobs(upload_jobs: usize) -> usize {
    (upload_jobs * 4).min(16).max(upload_jobs)
}

/// Asks every check, `jobs` at a time (HEADs only); stops at the first error.
pub fn survey(c: &Client, checks: &[Check<'_>], jobs: usize) -> Result<Survey> {
    let queue: Mutex<VecDeque<&Check>> = Mutex::new(checks.iter().collect());
    let found = Mutex::new(Survey::default());
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let answer = |check: &Check| -> Result<()> {
        match *check {
            Check::Blob(d) => {
                if c.blob_exists(d)? {
                    found.lock().expect("survey").blobs.insert(d.clone());
                }
            }
            Check::Manifest(d) => {
                if c.manifest_served(ManifestRef::Digest(d))?.is_some() {
                    found.lock().expect("survey").manifests.insert(d.clone());
                }
            }
            Check::Tag(t) => {
                if let Some(d) = c.manifest_served(ManifestRef::Tag(t))? {
                    found.lock().expect("survey").tags.insert(t.to_string(), d);
                }
            }
        }
        Ok(())
    };
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, checks.len().max(1)) {
            s.spawn(|| {
                while first_error.lock().expect("error").is_none() {
                    let Some(check) = queue.lock().expect("queue").pop_front() else {
                        break;
                    };
                    if let Err(e) = answer(check) {
                        first_error.lock().expect("error").get_or_insert(e);
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("error") {
        return Err(e);
    }
    Ok(found.into_inner().expect("survey"))
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
            digest: b.digest.clone(),
            size: b.size,
            what: b.what().to_string(),
            path: store.path(b.digest),
            origin: match b.kind {
                crate::image::BlobKind::Layer(l) => l.origin.clone(),
                _ => None,
            },
            attachment: b.is_attachment(),
        })
        .collect()
}

/// The manifests to PUT once the blobs are in, in order: each after every manifest it
/// references (platform manifests, then the index: the image's top one, which goes under
/// every tag), and each attachment after its subject (a registry takes them in either order,
/// and `--push` sends the attachments' beside the image's: see [`super::referrers`]).
pub fn manifests(image: &Image) -> impl Iterator<Item = BlobRef<'_>> {
    image.blobs().filter(|b| b.is_manifest())
}

fn push_blob(
    c: &Client,
    job: &BlobJob,
    mount_from: Option<&str>,
    present: &HashSet<Digest>,
    progress: &dyn Observer,
) -> Result<Outcome> {
    if present.contains(&job.digest) {
        progress.exists(job);
        return Ok(Outcome::Skipped);
    }
    let mount_from = job.mount_source(&c.registry, &c.repo, mount_from);
    let location = match mount_from.map(|from| c.mount_blob(&job.digest, from)) {
        Some(Ok(Mount::Mounted)) => {
            progress.mounted(job);
            return Ok(Outcome::Mounted);
        }
        Some(Ok(Mount::Upload(url))) => Some(url),
        Some(Err(e)) => return Err(e),
        Some(Ok(Mount::Declined)) | None => None,
    };
    let transfer = progress.uploading(job);
    if !job.path.is_file() {
        return Err(anyhow!(
            "blob {} ({}) is missing from the cache; run the build again",
            job.digest,
            job.what
        ));
    }
    c.upload_blob(&job.digest, job.size, &job.path, &transfer, location)?;
    // Confirm before any manifest refers to it.
    if !c.blob_exists(&job.digest)? {
        return Err(anyhow!(
            "registry {} accepted blob {} but does not list it; check the registry's storage",
            c.registry,
            job.digest
        ));
    }
    transfer.finished();
    Ok(Outcome::Uploaded(job.size))
}

/// Upload slots shared by the blob pushes that run at once (the image's and its referrers'):
/// `--upload-jobs` bounds them together. Hand-written: std has no semaphore, and this needs
/// only a blocking take and a release, not an async runtime's.
pub struct Slots {
    size: usize,
    free: Mutex<usize>,
    freed: Condvar,
}

/// A slot taken from [`Slots`], given back when dropped.
struct Slot<'a>(&'a Slots);

impl Slots {
    pub fn new(size: usize) -> Slots {
        let size = size.max(1);
        Slots {
            size,
            free: Mutex::new(size),
            freed: Condvar::new(),
        }
    }

    /// Waits for a free slot. Each holder's upload is bounded by the registry timeouts, so
    /// the wait is too.
    fn take(&self) -> Slot<'_> {
        let mut free = self.free.lock().expect("slots");
        while *free == 0 {
            free = self.freed.wait(free).expect("slots");
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().expect("slots") += 1;
        self.0.freed.notify_one();
    }
}

/// Pushes every blob, at most as many at a time as `slots` has free (shared with any other
/// push running); stops at the first error. `present` holds the blobs a [`survey`] of the
/// repository found: those are skipped, the rest sent without asking again.
pub fn push_blobs(
    c: &Client,
    blobs: &[BlobJob],
    mount_from: Option<&str>,
    present: &HashSet<Digest>,
    slots: &Slots,
    progress: &dyn Observer,
) -> Result<BlobStats> {
    let queue: Mutex<VecDeque<&BlobJob>> = Mutex::new(blobs.iter().collect());
    let stats = Mutex::new(BlobStats::default());
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..slots.size.clamp(1, blobs.len().max(1)) {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let Some(job) = queue.lock().expect("queue").pop_front() else {
                        break;
                    };
                    let _slot = (!present.contains(&job.digest)).then(|| slots.take());
                    match push_blob(c, job, mount_from, present, progress) {
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
