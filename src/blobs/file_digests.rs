//! The file-digest memo under `stat/`: the content id of a file (a binary, an include) by its
//! path, trusted while the file's stat is unchanged, so a rerun finds its layer without
//! reading the file (git's index does the same for clean files).
//!
//! A content id is the identity of content inside the cache only (never shown to registries or
//! runtimes, which see sha256 digests): BLAKE3, a few times faster than sha256 here, so
//! hashing a file to find its layer in the cache costs little next to compressing it.

use super::{BlobStore, RACY_NS, Stat, StatRecord, now_ns};
use crate::util::digest::Digest;
use anyhow::{Context, Result};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::path::{Path, PathBuf};

/// A content id: `blake3:` and the hash's hex digits, the cache's own identity of content
/// (part of a layer's cache key and of a file's record). Its own type, so it is never taken
/// for (or mixed with) an OCI [`crate::util::digest::Digest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentId(String);

impl ContentId {
    fn of(hash: &blake3::Hash) -> ContentId {
        ContentId(format!("blake3:{}", hash.to_hex()))
    }

    /// Its text, as cache keys and records hold it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The content id of `bytes`.
pub fn content_id(bytes: &[u8]) -> ContentId {
    ContentId::of(&blake3::hash(bytes))
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
    pub fn finish(&self) -> (ContentId, u64) {
        (ContentId::of(&self.hasher.finalize()), self.len)
    }
}

/// The [`content_id`] of a file's bytes, read in full.
pub fn file_content_id(path: &Path) -> Result<ContentId> {
    let mut h = blake3::Hasher::new();
    h.update_reader(fs::File::open(path)?)?;
    Ok(ContentId::of(&h.finalize()))
}

/// The records under `<cache>/stat`, one per file path (named by the sha256 of the path).
#[derive(Debug, Clone)]
pub struct FileDigests {
    store: BlobStore,
}

impl FileDigests {
    /// The memo in `store`'s cache directory (its records are written like the store's
    /// temps: whole, then renamed into place).
    pub fn of(store: &BlobStore) -> FileDigests {
        FileDigests {
            store: store.clone(),
        }
    }

    fn record_path(&self, path: &Path) -> PathBuf {
        let canon = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        self.store
            .root()
            .join("stat")
            .join(hex::encode(Sha256::digest(
                canon.as_os_str().as_encoded_bytes(),
            )))
    }

    /// The content id of a file without reading it, when the file is unchanged since an id
    /// was recorded (read and checked instead when the record was racy).
    pub fn known_digest(&self, path: &Path) -> Option<ContentId> {
        let record: StatRecord =
            serde_json::from_slice(&fs::read(self.record_path(path)).ok()?).ok()?;
        let stat = Stat::of(path)?;
        if stat != record.stat {
            return None;
        }
        if record.recorded_ns - record.stat.mtime_ns.max(record.stat.ctime_ns) >= RACY_NS {
            return Some(ContentId(record.digest));
        }
        let digest = file_content_id(path).ok()?;
        if digest.0 != record.digest {
            return None;
        }
        // The same bytes: the sha256 read with them still holds.
        let sha256 = record.sha256.and_then(|d| d.parse().ok());
        self.record(path, &stat, &digest, sha256.as_ref());
        Some(digest)
    }

    /// The sha256 of a file without reading it, when the read that recorded its content id
    /// computed it too ([`FileDigests::record`]) and the file is unchanged since: how a rerun
    /// names its binary in documents without hashing it again. None when the record is racy
    /// (then the caller reads the file).
    pub fn known_sha256(&self, path: &Path) -> Option<Digest> {
        let record: StatRecord =
            serde_json::from_slice(&fs::read(self.record_path(path)).ok()?).ok()?;
        let fresh = record.recorded_ns - record.stat.mtime_ns.max(record.stat.ctime_ns) < RACY_NS;
        if fresh || Stat::of(path)? != record.stat {
            return None;
        }
        record.sha256?.parse().ok()
    }

    /// Reads `path` once for both its content id and its sha256, and records them.
    pub fn hash_both(&self, path: &Path) -> Result<(ContentId, Digest)> {
        let before = Stat::of(path).with_context(|| format!("reading {}", path.display()))?;
        let mut content = blake3::Hasher::new();
        let mut sha = Sha256::new();
        let mut f = fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let mut buf = vec![0; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut f, &mut buf)
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            content.update(&buf[..n]);
            sha.update(&buf[..n]);
        }
        let (id, sha256) = (ContentId::of(&content.finalize()), Digest::from_sha256(sha));
        self.record(path, &before, &id, Some(&sha256));
        Ok((id, sha256))
    }

    /// The content id of a file this memo has seen before but whose stat has changed since
    /// (typically a binary cargo relinked): read and hashed now, so that a rebuild with the
    /// same bytes finds its layer instead of compressing it again. None for a file never seen
    /// (it is hashed in the same pass that compresses it).
    pub fn rehashed_digest(&self, path: &Path) -> Option<ContentId> {
        if !self.record_path(path).is_file() {
            return None;
        }
        // Its sha256 from the same read: a relinked binary's documents need it.
        self.hash_both(path).ok().map(|(id, _)| id)
    }

    /// Remembers the content id of a file whose stat, before it was read, was `before`.
    pub fn record_digest(&self, path: &Path, before: &Stat, digest: &ContentId) {
        self.record(path, before, digest, None);
    }

    /// Remembers the content id of a file whose stat, before it was read, was `before`, and
    /// its sha256 when the same read computed it.
    pub fn record(&self, path: &Path, before: &Stat, digest: &ContentId, sha256: Option<&Digest>) {
        if Stat::of(path).as_ref() != Some(before) {
            return; // changed while it was read: nothing trustworthy to record
        }
        let record = StatRecord {
            stat: before.clone(),
            recorded_ns: now_ns(),
            digest: digest.0.clone(),
            sha256: sha256.map(ToString::to_string),
        };
        let _ = self.store.remember_at(&self.record_path(path), &record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_content_id_is_blake3_and_its_hex_digits() {
        // BLAKE3's published hash of no bytes: the text every cache key holds is unchanged.
        let empty = "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
        assert_eq!(content_id(b"").as_str(), empty);
        let mut h = ContentHasher::default();
        h.update(b"one ");
        h.update(b"two");
        assert_eq!(h.finish(), (content_id(b"one two"), 7));
    }

    /// A temp dir and the file digests of a new store in it.
    fn fresh() -> (tempfile::TempDir, FileDigests) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(
            &dir.path().join("cache"),
            &crate::util::shell::Shell::discard(),
        )
        .unwrap();
        let files = FileDigests::of(&store);
        (dir, files)
    }

    #[test]
    fn known_digest_follows_the_file() {
        let (dir, files) = fresh();
        let f = dir.path().join("bin");
        fs::write(&f, b"one").unwrap();
        assert_eq!(files.known_digest(&f), None);
        let stat = Stat::of(&f).unwrap();
        files.record_digest(&f, &stat, &content_id(b"one"));
        // Racy (just written): checked by reading, and right.
        assert_eq!(files.known_digest(&f), Some(content_id(b"one")));
        // Same size, new bytes: ctime moves, so the record no longer applies...
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&f, b"two").unwrap();
        assert_eq!(files.known_digest(&f), None);
        // ...but a file seen before is read again, and its new bytes recorded.
        assert_eq!(files.rehashed_digest(&f), Some(content_id(b"two")));
        assert_eq!(files.known_digest(&f), Some(content_id(b"two")));
        // A file never seen is left to the pass that compresses it.
        let other = dir.path().join("other");
        fs::write(&other, b"three").unwrap();
        assert_eq!(files.rehashed_digest(&other), None);
    }

    #[test]
    fn a_standing_record_spares_the_read() {
        let (dir, files) = fresh();
        let f = dir.path().join("bin");
        fs::write(&f, b"one").unwrap();
        // A record made well after the file changed, with an id the bytes do not have:
        // trusting it shows the file was not read.
        let record = StatRecord {
            stat: Stat::of(&f).unwrap(),
            recorded_ns: now_ns() + RACY_NS,
            digest: content_id(b"not one").0,
            sha256: None,
        };
        files
            .store
            .remember_at(&files.record_path(&f), &record)
            .unwrap();
        assert_eq!(files.known_digest(&f), Some(content_id(b"not one")));
    }

    #[test]
    fn a_binarys_sha256_is_recorded_with_its_read_and_trusted_only_while_standing() {
        let (dir, files) = fresh();
        let f = dir.path().join("bin");
        fs::write(&f, b"one").unwrap();
        assert_eq!(files.known_sha256(&f), None, "never seen");
        // One read gives both, and records both; just written, the record is racy.
        let (id, sha) = files.hash_both(&f).unwrap();
        assert_eq!((id, &sha), (content_id(b"one"), &Digest::sha256_of(b"one")));
        assert_eq!(files.known_sha256(&f), None, "a racy record is not trusted");
        // A standing record with a sha256 the bytes do not have: trusting it shows the file
        // was not read.
        let claimed = Digest::sha256_of(b"not one");
        let record = StatRecord {
            stat: Stat::of(&f).unwrap(),
            recorded_ns: now_ns() + RACY_NS,
            digest: content_id(b"one").0,
            sha256: Some(claimed.to_string()),
        };
        files
            .store
            .remember_at(&files.record_path(&f), &record)
            .unwrap();
        assert_eq!(files.known_sha256(&f), Some(claimed));
        // A changed file voids it.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&f, b"two").unwrap();
        assert_eq!(files.known_sha256(&f), None);
    }
}
