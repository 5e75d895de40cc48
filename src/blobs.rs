//! A content-addressed blob store on disk (`<target-dir>/containerize/cache`).
//!
//! Layers are streamed into it (never held in memory) and outputs read or copy from it. Beside
//! it in the same directory, and in their own types: [`LayerIndex`] maps the digest of a
//! layer's *inputs* to the layer it produced, so an unchanged layer is never compressed twice
//! (the idea of ko's KOCACHE), and [`FileDigests`] remembers each input file's content id while
//! its stat is unchanged. [`BlobStore::open`] makes the directory and collects the garbage of
//! all three.
//!
//! # Integrity: a cached blob is proven before it is reused
//!
//! Anything can happen to a file between two runs: a flipped byte, a truncation, an editor.
//! So a blob from an earlier run goes into an image only once it is *proven* to match its
//! digest ([`BlobStore::proven`]); one that does not is removed with a warning naming the file,
//! and the caller makes it again from its inputs (a layer is compressed again, a document
//! serialised again). The trade-off chosen, to keep a no-op rerun at a few milliseconds:
//!
//! - A proof is remembered the way git's index remembers a clean file: beside the sha256 that
//!   was checked, the blob's stat (device, inode, size, mtime, ctime). While the stat is the
//!   same the bytes are (any write, truncation or replacement moves ctime, which no user can
//!   set back), so a rerun proves its layers with one `stat` and a small read each instead
//!   of reading them: re-hashing the 27 MB layer of a 100 MB binary costs ~20-30 ms, which
//!   a no-op rerun (~8 ms with that binary) would pay every time. A record made less than two
//!   seconds after the blob last changed proves nothing (an edit in the same timestamp tick
//!   would not show), so that blob is read once more on the next run. Within one process a
//!   blob is read at most once.
//! - Outputs get copies of blobs, never hard links ([`BlobStore::open_proven`]): a layout that
//!   shared the cache's inode was damaged along with it, and an edit in a layout damaged the
//!   cache. The copy is `copy_file_range`, which a file system that can (btrfs, XFS) turns
//!   into a reflink; elsewhere it is an in-kernel copy (~11 ms for that 27 MB layer on ext4
//!   here), paid only for blobs the output lacks: an up-to-date layout copies nothing.
//! - Not caught: bytes that change under an unchanged stat (media errors below the file
//!   system, or someone writing the block device). Registries check digests on upload.
//! - Configs and manifests are small: they are compared byte for byte whenever they are
//!   stored again ([`BlobStore::put`]).

use crate::util::digest::Digest;
use crate::util::owned;
use crate::util::shell::Shell;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

mod file_digests;
mod layer_index;

pub use file_digests::{ContentHasher, ContentId, FileDigests, content_id};
pub use layer_index::LayerIndex;

/// A writer that hashes and counts what passes through it.
pub struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_sha256(self.hasher), self.len)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    /// Where a damaged entry's warning goes.
    shell: Shell,
}

/// A blob being written: a temp file in the store, hashed as it is written.
pub type BlobWriter = HashWriter<io::BufWriter<tempfile::NamedTempFile>>;

/// What a writer held when it was committed as a blob it was not
/// ([`BlobStore::commit_expected`]): nothing of it was kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unexpected {
    /// The blob expected.
    pub expected: Digest,
    /// The digest and size of what was written instead.
    pub digest: Digest,
    pub size: u64,
}

impl std::fmt::Display for Unexpected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the bytes written as blob {} are {} ({} bytes); nothing of them is kept",
            self.expected, self.digest, self.size
        )
    }
}

impl std::error::Error for Unexpected {}

/// A cache entry that names a blob (a layer): reused only while its blob is [proven].
///
/// [proven]: BlobStore::proven
pub trait NamesBlob {
    /// The blob's digest and size.
    fn blob(&self) -> (&Digest, u64);
}

/// Blobs proven to match their digests in this process (by path): each is read at most once
/// per run, whichever thread or store handle asks.
static PROVEN: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn is_proven(path: &Path) -> bool {
    PROVEN.lock().is_ok_and(|p| p.contains(path))
}

fn mark_proven(path: &Path) {
    if let Ok(mut p) = PROVEN.lock() {
        p.insert(path.to_path_buf());
    }
}

/// Lets a test damage a blob this process has proven, as another process would.
#[cfg(test)]
fn forget_proven(path: &Path) {
    if let Ok(mut p) = PROVEN.lock() {
        p.remove(path);
    }
}

impl BlobStore {
    /// The store of the target directory `target_dir`: `<target_dir>/containerize/cache`,
    /// refused when a directory of it below `target_dir` is a link (see [`BlobStore::open`]).
    pub fn for_target(target_dir: &Path, shell: &Shell) -> Result<BlobStore> {
        let root = target_dir.join("containerize").join("cache");
        owned::make_dir(target_dir, &root)?;
        BlobStore::open(&root, shell)
    }

    /// The store at `root`. Its directories are made, or checked to be real directories: a
    /// link planted at `stat`, `layers`, `blobs` or `tmp` is refused (one line naming it),
    /// never written or cleaned through.
    pub fn open(root: &Path, shell: &Shell) -> Result<BlobStore> {
        fs::create_dir_all(root).with_context(|| {
            format!(
                "cannot create the cache at {}; make it writable or pass --target-dir",
                root.display()
            )
        })?;
        for sub in ["blobs/sha256", "layers", "stat", "tmp"] {
            owned::make_dir(root, &root.join(sub)).with_context(|| {
                format!(
                    "cannot use the cache at {}; make it writable or pass --target-dir",
                    root.display()
                )
            })?;
        }
        sweep_cache_tmp(root);
        let store = BlobStore {
            root: root.to_path_buf(),
            shell: shell.clone(),
        };
        store.collect_garbage();
        Ok(store)
    }

    /// The run's shell: what the store's users say about its entries (cache hits and misses,
    /// damaged entries) goes there.
    pub fn shell(&self) -> &Shell {
        &self.shell
    }

    /// At most once a day: forgets layers unused for [`KEEP_SECS`] (a hit touches its entry),
    /// then removes blobs that no remaining entry names and that are as old, and stale stat
    /// records. A blob a concurrent run is about to use belongs to an entry it has just
    /// touched, so it stays.
    fn collect_garbage(&self) {
        let stamp = self.root.join("last-gc");
        if !older_than(&stamp, 24 * 3600) && stamp.exists() {
            return;
        }
        let _ = fs::write(&stamp, b"");
        let mut referenced = std::collections::BTreeSet::new();
        let root = &self.root;
        // Listed and removed through `owned`: only regular files named as the store names
        // them, in its real directories (a link planted at `stat` is never followed).
        let old = |e: &owned::Listed| e.meta.is_file() && age_over(&e.meta, KEEP_SECS);
        for entry in owned::list(root, &root.join("layers")) {
            if old(&entry) {
                let _ = owned::remove_file(root, &entry.path, owned::Name::Digest);
            } else if entry.meta.is_file()
                && let Some(layer) = fs::read(&entry.path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(unseal(&b)?).ok())
                    .and_then(|v| v.get("digest")?.as_str()?.parse::<Digest>().ok())
            {
                referenced.insert(layer.hex().to_string());
            }
        }
        for blob in owned::list(root, &root.join("blobs/sha256")) {
            if old(&blob) && !referenced.contains(&blob.name) {
                let _ = owned::remove_file(root, &blob.path, owned::Name::Digest);
            }
        }
        for record in owned::list(root, &root.join("stat")) {
            if old(&record) {
                let _ = owned::remove_file(root, &record.path, owned::Name::Digest);
            }
        }
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Keeps blob `digest` from the garbage collector, which removes blobs no layer entry
    /// names once they are [`KEEP_SECS`] old: a base image's blobs, used by every build on
    /// it, get their mtime renewed (at most once a day, so their proof is redone as seldom).
    pub fn keep(&self, digest: &Digest) {
        let path = self.path(digest);
        if older_than(&path, 24 * 3600) {
            touch(&path);
        }
    }

    /// Whether the blob is in the store, whatever its bytes (see [`BlobStore::proven`]).
    pub fn has(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    pub fn writer(&self) -> Result<BlobWriter> {
        let tmp = self
            .temp_file()
            .context("creating a temp file in the cache")?;
        Ok(HashWriter::new(io::BufWriter::with_capacity(1 << 20, tmp)))
    }

    /// Moves a finished blob into place; returns its digest and size. This process hashed
    /// every byte on the way in, so the blob counts as proven for the rest of the run.
    pub fn commit(&self, w: BlobWriter) -> Result<(Digest, u64)> {
        let (buf, digest, size) = w.finish();
        self.put_in_place(buf, &digest)?;
        Ok((digest, size))
    }

    /// Puts a written temp file in place as blob `digest`, which this process hashed.
    fn put_in_place(
        &self,
        buf: io::BufWriter<tempfile::NamedTempFile>,
        digest: &Digest,
    ) -> Result<()> {
        let tmp = buf.into_inner().map_err(|e| e.into_error())?;
        let path = self.path(digest);
        // A rename, never a write into the old file: an image written by an older version
        // may still share the old file's inode.
        owned::persist(tmp, &path).context("storing a blob in the cache")?;
        mark_proven(&path);
        Ok(())
    }

    /// Moves a finished blob into place only if it is blob `digest` of `size` bytes (a pull
    /// knows what it fetches: the writer's own hash checks it, so each byte is hashed once).
    /// Else nothing is kept (the temp file goes with the writer) and the error is an
    /// [`Unexpected`] naming both digests.
    pub fn commit_expected(&self, w: BlobWriter, digest: &Digest, size: u64) -> Result<()> {
        let (buf, got, got_size) = w.finish();
        if got != *digest || got_size != size {
            return Err(Unexpected {
                expected: digest.clone(),
                digest: got,
                size: got_size,
            }
            .into());
        }
        self.put_in_place(buf, &got)
    }

    /// Stores small documents (configs, manifests). One already there is kept only if it
    /// holds exactly these bytes; a changed one is replaced, with a warning naming it.
    pub fn put(&self, bytes: &[u8]) -> Result<(Digest, u64)> {
        let digest = Digest::sha256_of(bytes);
        let path = self.path(&digest);
        match fs::read(&path) {
            // Fresh again, so the garbage collector of a concurrent run leaves it be.
            Ok(old) if old == bytes && touch(&path) => {
                mark_proven(&path);
                return Ok((digest, bytes.len() as u64));
            }
            Ok(old) if old != bytes => warn_replaced(
                &self.shell,
                &path,
                &digest,
                &mismatch(old.len() as u64, bytes.len() as u64),
            ),
            _ => {}
        }
        let mut w = self.writer()?;
        w.write_all(bytes)?;
        let (digest, size) = self.commit(w)?;
        Ok((digest, size))
    }

    /// Whether blob `digest` is in the store, `size` bytes long and proven to match its
    /// digest (see the module's notes: a remembered proof while the blob's stat is unchanged,
    /// else its bytes are read and hashed). A blob that fails is removed, with a warning
    /// naming the file; the caller makes it again.
    pub fn proven(&self, digest: &Digest, size: u64) -> bool {
        let path = self.path(digest);
        if is_proven(&path) {
            return true;
        }
        let Some(before) = Stat::of(&path) else {
            return false; // not there: nothing to warn about
        };
        let fault = if before.len != size {
            Some(mismatch(before.len, size))
        } else if self.proof_holds(digest, &before) {
            None
        } else {
            match Digest::sha256_of_file(&path) {
                Ok(actual) if actual == *digest => {
                    self.remember_proof(digest, &path, &before);
                    None
                }
                Ok(_) => Some(mismatch(size, size)),
                Err(e) => Some(format!("it cannot be read: {}", e.kind())),
            }
        };
        match fault {
            None => {
                mark_proven(&path);
                true
            }
            Some(why) => {
                warn_replaced(&self.shell, &path, digest, &why);
                // Only the file that was found damaged: a concurrent run may have put a
                // repaired one in its place meanwhile.
                if Stat::of(&path).as_ref() == Some(&before) {
                    let _ = owned::remove_file(&self.root, &path, owned::Name::Digest);
                }
                let _ =
                    owned::remove_file(&self.root, &self.proof_path(digest), owned::Name::Digest);
                false
            }
        }
    }

    /// Opens blob `digest` (`size` bytes) for copying into an output, once it is
    /// [proven](BlobStore::proven) to match its digest. Outputs copy, never hard-link: an output
    /// must not share an inode with the cache (damage to one would reach the other). `io::copy`
    /// between files is `copy_file_range`, a reflink where the file system can (btrfs, XFS), an
    /// in-kernel copy elsewhere.
    pub fn open_proven(&self, digest: &Digest, size: u64) -> Result<fs::File> {
        let src = self.path(digest);
        if !self.proven(digest, size) {
            bail!(
                "blob {digest} in the cache at {} changed or went away while this run used it; run again",
                self.root.display()
            );
        }
        fs::File::open(&src)
            .with_context(|| format!("cannot read {} from the cache", src.display()))
    }

    /// Whether the file at `path` outside the store (a blob of an output, say a layout's
    /// `blobs/sha256/HEX`) is `size` bytes long and matches `digest`, proven the way the
    /// store's own blobs are ([`BlobStore::proven`]): hashed once, then trusted while its
    /// stat is unchanged, the proof recorded under `stat/` keyed by the file's path and the
    /// digest. Nothing is removed or reported: the caller replaces a file that fails.
    pub fn file_proven(&self, path: &Path, digest: &Digest, size: u64) -> bool {
        let Some(before) = Stat::of(path) else {
            return false;
        };
        if before.len != size {
            return false;
        }
        let record = self.file_proof_path(path, digest);
        if self.proof_holds_at(&record, digest, &before) {
            return true;
        }
        match Digest::sha256_of_file(path) {
            Ok(actual) if actual == *digest => {
                self.remember_proof_at(&record, digest, path, &before);
                true
            }
            _ => false,
        }
    }

    /// Where the proof of `digest` for the file at `path` is recorded.
    fn file_proof_path(&self, path: &Path, digest: &Digest) -> PathBuf {
        let canon = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let mut h = Sha256::new();
        h.update(canon.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(digest.as_bytes());
        self.root
            .join("stat")
            .join(format!("file-{}", hex::encode(h.finalize())))
    }

    fn proof_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("stat")
            .join(format!("blob-{}", digest.hex()))
    }

    /// Whether a proof recorded for this blob still holds: same digest, same stat, and made
    /// at least [`RACY_NS`] after the blob last changed.
    fn proof_holds(&self, digest: &Digest, stat: &Stat) -> bool {
        self.proof_holds_at(&self.proof_path(digest), digest, stat)
    }

    /// Whether the proof recorded at `record` (a file under `stat/`) holds for a file whose
    /// stat is now `stat`: same digest, same stat, not racy.
    fn proof_holds_at(&self, record: &Path, digest: &Digest, stat: &Stat) -> bool {
        fs::read(record)
            .ok()
            .and_then(|b| serde_json::from_slice::<StatRecord>(&b).ok())
            .is_some_and(|r| {
                r.digest == digest.as_str()
                    && &r.stat == stat
                    && r.recorded_ns - r.stat.mtime_ns.max(r.stat.ctime_ns) >= RACY_NS
            })
    }

    fn remember_proof(&self, digest: &Digest, path: &Path, before: &Stat) {
        self.remember_proof_at(&self.proof_path(digest), digest, path, before);
    }

    /// Records at `record` that `path`, whose stat before it was hashed was `before`, has
    /// `digest` (nothing if it changed meanwhile).
    fn remember_proof_at(&self, record: &Path, digest: &Digest, path: &Path, before: &Stat) {
        if Stat::of(path).as_ref() != Some(before) {
            return; // changed while it was read
        }
        let record_value = StatRecord {
            stat: before.clone(),
            recorded_ns: now_ns(),
            digest: digest.to_string(),
            sha256: None,
        };
        let _ = self.remember_at(record, &record_value);
    }
}

/// A layer entry (or a `memo` answer) as stored: the sha256 of its JSON in hex, a newline,
/// the JSON. Entries are small, so checking the seal on every read costs nothing measurable.
pub(crate) fn seal(json: &[u8]) -> Vec<u8> {
    let mut out = hex::encode(Sha256::digest(json)).into_bytes();
    out.push(b'\n');
    out.extend_from_slice(json);
    out
}

/// The JSON of a sealed entry whose seal matches.
pub(crate) fn unseal(bytes: &[u8]) -> Option<&[u8]> {
    let (sum, json) = (bytes.get(..64)?, bytes.get(65..)?);
    (bytes[64] == b'\n' && hex::encode(Sha256::digest(json)).as_bytes() == sum).then_some(json)
}

/// "N bytes instead of M", or that the bytes differ.
fn mismatch(actual: u64, want: u64) -> String {
    if actual == want {
        "its bytes changed".into()
    } else {
        format!("{actual} bytes instead of {want}")
    }
}

/// The one line said when a cache file is found damaged.
fn warn_replaced(shell: &Shell, path: &Path, digest: &Digest, why: &str) {
    shell.warn(format!(
        "cache file {} does not match its digest {digest} ({why}); removed it, and it is made again from its inputs",
        path.display()
    ));
}

/// How the store's temp files (in `cache/tmp`) are named: `.blob.tmp-PID-START-XXXXXX`, a
/// [lease](crate::util::lease) of the run writing them.
const TEMP_PREFIX: &str = ".blob.tmp-";

impl BlobStore {
    /// A new temp file in `cache/tmp`, held by this run until it is persisted or dropped.
    fn temp_file(&self) -> io::Result<tempfile::NamedTempFile> {
        crate::util::lease::temp_file_in(&self.root.join("tmp"), TEMP_PREFIX)
    }

    /// The cache directory the store lives in (its [`LayerIndex`] and [`FileDigests`] too).
    fn root(&self) -> &Path {
        &self.root
    }

    /// Writes `value` as JSON at `dest` (under the cache directory), whole.
    fn remember_at<T: Serialize>(&self, dest: &Path, value: &T) -> Result<()> {
        let mut tmp = self.temp_file()?;
        tmp.write_all(&serde_json::to_vec(value)?)?;
        owned::persist(tmp, dest)?;
        Ok(())
    }
}

/// Removes the temps of runs that are no longer alive from `cache/tmp` (see [`crate::util::lease`]
/// for the rule: a live run's temp, even a stopped one's, stays). Besides those: older
/// versions of the tool made unlocked temps there, named by tempfile (`.tmpXXXXXX`), whose
/// owner nothing tells; those go once they are an hour old, no run taking that long to write
/// one. Only regular files, and only in `cache/tmp`, which holds nothing but the tool's temps.
fn sweep_cache_tmp(root: &Path) {
    let dir = root.join("tmp");
    crate::util::lease::sweep(&dir, TEMP_PREFIX);
    for entry in owned::list(root, &dir) {
        if entry.name.starts_with(".tmp") && entry.meta.is_file() && age_over(&entry.meta, 3600) {
            let _ = owned::remove_file(root, &entry.path, owned::Name::Temp(".tmp"));
        }
    }
}

/// Sets a file's mtime to now: the garbage collector keeps what was used recently.
fn touch(path: &Path) -> bool {
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()))
        .is_ok()
}

/// How long an unused layer stays in the cache.
const KEEP_SECS: u64 = 14 * 24 * 3600;

fn older_than(path: &Path, secs: u64) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| age_over(&m, secs))
}

/// Whether a file (by its own metadata) was last changed more than `secs` ago.
fn age_over(meta: &fs::Metadata, secs: u64) -> bool {
    meta.modified()
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() > secs)
}

/// What `stat` says of a file: if all of it is unchanged, so are its bytes (what git's index
/// relies on). ctime cannot be set back by a user, so a rewrite always shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stat {
    /// Whether the file changed less than [`RACY_NS`] ago.
    pub fn is_recent(&self) -> bool {
        now_ns() - self.mtime_ns.max(self.ctime_ns) < RACY_NS
    }

    pub fn of(path: &Path) -> Option<Stat> {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(path).ok()?;
        Some(Stat {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StatRecord {
    stat: Stat,
    /// When the record was made; a file changed less than [`RACY_NS`] before it could have
    /// changed again within the same timestamp tick, so its digest is checked, not trusted.
    recorded_ns: i128,
    digest: String,
    /// A file's sha256 as well, when the read that gave `digest` computed it (a binary, whose
    /// sha256 documents about the image name): see [`FileDigests::known_sha256`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

const RACY_NS: i128 = 2_000_000_000;

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_collection_keeps_what_recent_layers_use() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        let store = BlobStore::open(&root, &crate::util::shell::Shell::discard()).unwrap();
        let (used, _) = store.put(b"used layer").unwrap();
        let (orphan, _) = store.put(b"orphan").unwrap();
        let (stale, _) = store.put(b"stale layer").unwrap();
        // Entries are named by hex keys, as `memo::key` makes them.
        let (fresh_key, old_key) = ("f".repeat(64), "0".repeat(64));
        let index = LayerIndex::of(&store);
        index
            .remember(&fresh_key, &serde_json::json!({ "digest": used }))
            .unwrap();
        index
            .remember(&old_key, &serde_json::json!({ "digest": stale }))
            .unwrap();
        let long_ago =
            std::time::SystemTime::now() - std::time::Duration::from_secs(KEEP_SECS + 60);
        let age = |p: PathBuf| {
            fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(long_ago)
                .unwrap()
        };
        for d in [&used, &orphan, &stale] {
            age(store.path(d));
        }
        age(root.join("layers").join(&old_key));
        age(root.join("last-gc"));
        BlobStore::open(&root, &crate::util::shell::Shell::discard()).unwrap();
        assert!(
            store.has(&used),
            "a recent layer's blob must stay, however old the blob"
        );
        assert!(!store.has(&orphan), "an old blob no entry names goes");
        assert!(
            !store.has(&stale) && !root.join("layers").join(&old_key).exists(),
            "an unused entry goes"
        );
    }

    /// A blob placed in the store by "an earlier run": not proven in this process.
    fn place(store: &BlobStore, bytes: &[u8]) -> (Digest, u64) {
        let digest = Digest::sha256_of(bytes);
        fs::write(store.path(&digest), bytes).unwrap();
        (digest, bytes.len() as u64)
    }

    #[test]
    fn a_damaged_blob_is_not_proven_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), &crate::util::shell::Shell::discard()).unwrap();
        let damages: [fn(&Path); 2] = [
            |p| {
                let mut b = fs::read(p).unwrap();
                b[3] ^= 1;
                fs::write(p, b).unwrap();
            },
            |p| {
                fs::File::options()
                    .write(true)
                    .open(p)
                    .unwrap()
                    .set_len(2)
                    .unwrap()
            },
        ];
        for damage in damages {
            let (d, n) = place(&store, b"a layer's bytes");
            assert!(store.proven(&d, n), "intact blob");
            forget_proven(&store.path(&d));
            damage(&store.path(&d));
            assert!(!store.proven(&d, n), "damaged blob proven");
            assert!(!store.has(&d), "damaged blob kept");
        }
        assert!(!store.proven(&Digest::sha256_of(b"absent"), 6));
    }

    #[test]
    fn a_standing_proof_spares_the_read_and_a_racy_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), &crate::util::shell::Shell::discard()).unwrap();
        // A proof whose digest the bytes do not have: trusting it shows the file was not read.
        let claimed = Digest::sha256_of(b"other bytes");
        let path = store.path(&claimed);
        fs::write(&path, b"same length").unwrap();
        let proof = |recorded_ns| StatRecord {
            stat: Stat::of(&path).unwrap(),
            recorded_ns,
            digest: claimed.to_string(),
            sha256: None,
        };
        store
            .remember_at(&store.proof_path(&claimed), &proof(now_ns() + RACY_NS))
            .unwrap();
        assert!(store.proven(&claimed, 11), "a standing proof is trusted");
        forget_proven(&path);
        // Made right after the blob changed: proves nothing, so the bytes are read.
        store
            .remember_at(&store.proof_path(&claimed), &proof(now_ns()))
            .unwrap();
        assert!(!store.proven(&claimed, 11), "a racy proof was trusted");
        // A changed stat voids a standing proof.
        fs::write(&path, b"same length").unwrap();
        let stale = StatRecord {
            recorded_ns: now_ns() + RACY_NS,
            ..proof(0)
        };
        store
            .remember_at(&store.proof_path(&claimed), &stale)
            .unwrap();
        // Replaced (a new inode), as an editor saving the file would.
        let edited = path.with_extension("edited");
        fs::write(&edited, b"SAME length").unwrap();
        fs::rename(&edited, &path).unwrap();
        assert!(
            !store.proven(&claimed, 11),
            "a proof of an older stat was trusted"
        );
    }

    #[test]
    fn a_file_outside_the_store_is_proven_once_and_its_damage_seen() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(
            &dir.path().join("cache"),
            &crate::util::shell::Shell::discard(),
        )
        .unwrap();
        let f = dir.path().join("blob");
        fs::write(&f, b"layer bytes").unwrap();
        let d = Digest::sha256_of(b"layer bytes");
        assert!(store.file_proven(&f, &d, 11));
        assert!(!store.file_proven(&f, &d, 12), "wrong size proven");
        assert!(!store.file_proven(&f, &Digest::sha256_of(b"other"), 11));
        // One byte flipped, same size: a new stat, so the proof no longer applies.
        fs::write(&f, b"layer bytez").unwrap();
        assert!(!store.file_proven(&f, &d, 11), "damaged file proven");
        // A standing proof (not racy) spares the read: a false one is trusted while the stat
        // is unchanged, which shows the bytes were not read.
        let record = StatRecord {
            stat: Stat::of(&f).unwrap(),
            recorded_ns: now_ns() + RACY_NS,
            digest: d.to_string(),
            sha256: None,
        };
        store
            .remember_at(&store.file_proof_path(&f, &d), &record)
            .unwrap();
        assert!(store.file_proven(&f, &d, 11));
    }

    #[test]
    fn put_replaces_an_edited_document() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), &crate::util::shell::Shell::discard()).unwrap();
        let (d, _) = store.put(br#"{"a":1}"#).unwrap();
        fs::write(store.path(&d), br#"{"a":2}"#).unwrap();
        store.put(br#"{"a":1}"#).unwrap();
        assert_eq!(fs::read(store.path(&d)).unwrap(), br#"{"a":1}"#);
    }

    #[test]
    fn temps_of_gone_runs_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        let store = BlobStore::open(&root, &crate::util::shell::Shell::discard()).unwrap();
        let live = store.writer().unwrap();
        let live_path = live.inner.get_ref().path().to_path_buf();
        assert!(
            live_path
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&crate::util::lease::prefix(TEMP_PREFIX))
        );
        // What a killed run leaves: a temp named by the scheme that nobody holds.
        let dead = root.join("tmp/.blob.tmp-4194304-1-AbCdEf");
        fs::write(&dead, b"partial").unwrap();
        // An older version's temp, unlocked by design: only an hour decides.
        let legacy = root.join("tmp/.tmpAbCdEf");
        fs::write(&legacy, b"partial").unwrap();
        // Not the tool's, however old: never removed.
        let foreign = root.join("tmp/notes.txt");
        fs::write(&foreign, b"mine").unwrap();
        let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        fs::File::options()
            .write(true)
            .open(&foreign)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        BlobStore::open(&root, &crate::util::shell::Shell::discard()).unwrap();
        assert!(
            foreign.exists(),
            "a file the tool did not write was removed"
        );
        assert!(live_path.exists(), "a live run's temp was removed");
        assert!(!dead.exists(), "a gone run's temp was kept");
        assert!(legacy.exists(), "a recent unlocked temp was removed");
        let (digest, _) = store.commit(live).unwrap();
        assert!(store.has(&digest));
    }

    #[test]
    fn commit_expected_keeps_only_the_blob_expected() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), &crate::util::shell::Shell::discard()).unwrap();
        let hello = Digest::sha256_of(b"hello");
        let write = |bytes: &[u8]| {
            let mut w = store.writer().unwrap();
            w.write_all(bytes).unwrap();
            w
        };
        for (bytes, size) in [(&b"jello"[..], 5), (b"hello", 6), (b"hell", 5)] {
            let e = store
                .commit_expected(write(bytes), &hello, size)
                .unwrap_err();
            let u = e.downcast_ref::<Unexpected>().expect("an Unexpected");
            assert_eq!(
                (&u.expected, &u.digest, u.size),
                (&hello, &Digest::sha256_of(bytes), bytes.len() as u64)
            );
            assert!(e.to_string().contains(hello.as_str()), "{e}");
            assert!(!store.has(&hello), "a blob that does not match is not kept");
        }
        let tmp = dir.path().join("tmp");
        let left = fs::read_dir(&tmp).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| e.metadata().is_ok_and(|m| m.len() > 0))
                .count()
        });
        assert_eq!(left, 0, "no temp with content is left in {}", tmp.display());
        store.commit_expected(write(b"hello"), &hello, 5).unwrap();
        assert!(store.has(&hello) && store.proven(&hello, 5));
        assert_eq!(fs::read(store.path(&hello)).unwrap(), b"hello");
    }

    #[test]
    fn put_is_content_addressed() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), &crate::util::shell::Shell::discard()).unwrap();
        let (d, n) = store.put(b"hello").unwrap();
        assert_eq!(
            d,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(n, 5);
        assert_eq!(fs::read(store.path(&d)).unwrap(), b"hello");
    }
}
