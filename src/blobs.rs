//! A content-addressed blob store on disk (`<target-dir>/containerize/cache`).
//!
//! Layers are streamed into it (never held in memory), outputs read or hard-link from it, and
//! a small index maps the digest of a layer's *inputs* to the layer it produced, so an unchanged
//! layer is never compressed twice (the idea of ko's KOCACHE).

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A sha256 digest in OCI form, `sha256:<hex>`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The identity of some content inside the cache (never shown to registries or runtimes, which
/// see sha256 digests): BLAKE3, a few times faster than sha256 here, so hashing a file to find
/// its layer in the cache costs little next to compressing it.
pub fn content_id(bytes: &[u8]) -> String {
    format!("blake3:{}", blake3::hash(bytes).to_hex())
}

/// [`content_id`] of what passes through.
#[derive(Default)]
pub struct ContentHasher {
    hasher: blake3::Hasher,
    len: u64,
}

impl ContentHasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// The content id and the byte count.
    pub fn finish(&self) -> (String, u64) {
        (
            format!("blake3:{}", self.hasher.finalize().to_hex()),
            self.len,
        )
    }
}

/// The hex part of an OCI digest.
pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

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
    pub fn finish(self) -> (W, String, u64) {
        (
            self.inner,
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.len,
        )
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
}

/// A blob being written: a temp file in the store, hashed as it is written.
pub type BlobWriter = HashWriter<io::BufWriter<tempfile::NamedTempFile>>;

impl BlobStore {
    pub fn open(root: &Path) -> Result<BlobStore> {
        for sub in ["blobs/sha256", "layers", "stat", "tmp"] {
            fs::create_dir_all(root.join(sub)).with_context(|| {
                format!(
                    "cannot create the cache at {}; make it writable or pass --target-dir",
                    root.display()
                )
            })?;
        }
        // Temp files of runs that were killed (SIGKILL, power loss) are swept once they are an
        // hour old; a concurrent run's are younger.
        for e in files_in(&root.join("tmp")) {
            if older_than(&e, 3600) {
                let _ = fs::remove_file(e);
            }
        }
        let store = BlobStore {
            root: root.to_path_buf(),
        };
        store.collect_garbage();
        Ok(store)
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
        for entry in files_in(&self.root.join("layers")) {
            if older_than(&entry, KEEP_SECS) {
                let _ = fs::remove_file(&entry);
            } else if let Some(layer) = fs::read(&entry)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v.get("digest")?.as_str().map(String::from))
            {
                referenced.insert(hex_of(&layer).to_string());
            }
        }
        for blob in files_in(&self.root.join("blobs/sha256")) {
            let name = blob.file_name().map(|n| n.to_string_lossy().to_string());
            if older_than(&blob, KEEP_SECS) && !name.is_some_and(|n| referenced.contains(&n)) {
                let _ = fs::remove_file(&blob);
            }
        }
        for record in files_in(&self.root.join("stat")) {
            if older_than(&record, KEEP_SECS) {
                let _ = fs::remove_file(&record);
            }
        }
    }

    pub fn path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex_of(digest))
    }

    pub fn has(&self, digest: &str) -> bool {
        self.path(digest).is_file()
    }

    pub fn writer(&self) -> Result<BlobWriter> {
        // Layouts hard-link these blobs: they must be as readable as any other output.
        let tmp = tempfile::Builder::new()
            .permissions(crate::outputs::atomic::readable(0o666))
            .tempfile_in(self.root.join("tmp"))
            .context("creating a temp file in the cache")?;
        Ok(HashWriter::new(io::BufWriter::with_capacity(1 << 20, tmp)))
    }

    /// Moves a finished blob into place; returns its digest and size.
    pub fn commit(&self, w: BlobWriter) -> Result<(String, u64)> {
        let (buf, digest, size) = w.finish();
        let tmp = buf.into_inner().map_err(|e| e.into_error())?;
        tmp.persist(self.path(&digest))
            .map_err(|e| e.error)
            .context("storing a blob in the cache")?;
        Ok((digest, size))
    }

    /// Stores small documents (configs, manifests). One already there with its size is kept
    /// unless an older version left it readable by its owner only (layouts hard-link blobs).
    pub fn put(&self, bytes: &[u8]) -> Result<(String, u64)> {
        use std::os::unix::fs::PermissionsExt;
        let digest = digest_of(bytes);
        let path = self.path(&digest);
        if fs::metadata(&path)
            .is_ok_and(|m| m.len() == bytes.len() as u64 && m.permissions().mode() & 0o044 != 0)
            // Fresh again, so the garbage collector of a concurrent run leaves it be.
            && touch(&path)
        {
            return Ok((digest, bytes.len() as u64));
        }
        let mut w = self.writer()?;
        w.write_all(bytes)?;
        let (digest, size) = self.commit(w)?;
        Ok((digest, size))
    }

    /// A cached value stored under an input key, if its blob is still present.
    pub fn cached<T: for<'de> Deserialize<'de>>(&self, key: &str) -> Option<T> {
        let path = self.root.join("layers").join(key);
        let bytes = fs::read(&path).ok()?;
        let value = serde_json::from_slice(&bytes).ok()?;
        // A hit keeps the entry (and so its blob) from the garbage collector.
        touch(&path);
        Some(value)
    }

    pub fn remember<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        self.remember_at(&self.root.join("layers").join(key), value)
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

fn files_in(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn older_than(path: &Path, secs: u64) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
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
}

const RACY_NS: i128 = 2_000_000_000;

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// The [`content_id`] of a file's bytes, read in full.
pub fn file_content_id(path: &Path) -> Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_reader(fs::File::open(path)?)?;
    Ok(format!("blake3:{}", h.finalize().to_hex()))
}

impl BlobStore {
    fn stat_record_path(&self, path: &Path) -> PathBuf {
        let canon = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        self.root.join("stat").join(hex::encode(Sha256::digest(
            canon.as_os_str().as_encoded_bytes(),
        )))
    }

    /// The digest of a file's bytes without reading it, when the file is unchanged since a
    /// digest was recorded (read and checked instead when the record was racy).
    pub fn known_digest(&self, path: &Path) -> Option<String> {
        let record: StatRecord =
            serde_json::from_slice(&fs::read(self.stat_record_path(path)).ok()?).ok()?;
        let stat = Stat::of(path)?;
        if stat != record.stat {
            return None;
        }
        if record.recorded_ns - record.stat.mtime_ns.max(record.stat.ctime_ns) >= RACY_NS {
            return Some(record.digest);
        }
        let digest = file_content_id(path).ok()?;
        if digest != record.digest {
            return None;
        }
        self.record_digest(path, &stat, &digest);
        Some(digest)
    }

    /// The content id of a file this store has seen before but whose stat has changed since
    /// (typically a binary cargo relinked): read and hashed now, so that a rebuild with the
    /// same bytes finds its layer instead of compressing it again. None for a file never seen
    /// (it is hashed in the same pass that compresses it).
    pub fn rehashed_digest(&self, path: &Path) -> Option<String> {
        if !self.stat_record_path(path).is_file() {
            return None;
        }
        let before = Stat::of(path)?;
        let digest = file_content_id(path).ok()?;
        self.record_digest(path, &before, &digest);
        Some(digest)
    }

    /// Remembers the digest of a file whose stat, before it was read, was `before`.
    pub fn record_digest(&self, path: &Path, before: &Stat, digest: &str) {
        if Stat::of(path).as_ref() != Some(before) {
            return; // changed while it was read: nothing trustworthy to record
        }
        let record = StatRecord {
            stat: before.clone(),
            recorded_ns: now_ns(),
            digest: digest.to_string(),
        };
        let _ = self.remember_at(&self.stat_record_path(path), &record);
    }

    fn remember_at<T: Serialize>(&self, dest: &Path, value: &T) -> Result<()> {
        let tmp = tempfile::NamedTempFile::new_in(self.root.join("tmp"))?;
        serde_json::to_writer(&tmp, value)?;
        tmp.persist(dest).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&dir.path().join("cache")).unwrap();
        let f = dir.path().join("bin");
        fs::write(&f, b"one").unwrap();
        assert_eq!(store.known_digest(&f), None);
        let stat = Stat::of(&f).unwrap();
        store.record_digest(&f, &stat, &content_id(b"one"));
        // Racy (just written): checked by reading, and right.
        assert_eq!(store.known_digest(&f), Some(content_id(b"one")));
        // Same size, new bytes: ctime moves, so the record no longer applies...
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&f, b"two").unwrap();
        assert_eq!(store.known_digest(&f), None);
        // ...but a file seen before is read again, and its new bytes recorded.
        assert_eq!(store.rehashed_digest(&f), Some(content_id(b"two")));
        assert_eq!(store.known_digest(&f), Some(content_id(b"two")));
        // A file never seen is left to the pass that compresses it.
        let other = dir.path().join("other");
        fs::write(&other, b"three").unwrap();
        assert_eq!(store.rehashed_digest(&other), None);
    }

    #[test]
    fn garbage_collection_keeps_what_recent_layers_use() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        let store = BlobStore::open(&root).unwrap();
        let (used, _) = store.put(b"used layer").unwrap();
        let (orphan, _) = store.put(b"orphan").unwrap();
        let (stale, _) = store.put(b"stale layer").unwrap();
        store
            .remember("fresh", &serde_json::json!({ "digest": used }))
            .unwrap();
        store
            .remember("old", &serde_json::json!({ "digest": stale }))
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
        age(root.join("layers/old"));
        age(root.join("last-gc"));
        BlobStore::open(&root).unwrap();
        assert!(
            store.has(&used),
            "a recent layer's blob must stay, however old the blob"
        );
        assert!(!store.has(&orphan), "an old blob no entry names goes");
        assert!(
            !store.has(&stale) && !root.join("layers/old").exists(),
            "an unused entry goes"
        );
    }

    #[test]
    fn put_is_content_addressed() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let (d, n) = store.put(b"hello").unwrap();
        assert_eq!(
            d,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(n, 5);
        assert_eq!(fs::read(store.path(&d)).unwrap(), b"hello");
    }
}
