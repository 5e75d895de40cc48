//! The layer index: the cache's small sealed entries under `layers/`, from the digest of a
//! layer's inputs to the layer it produced (and the shared layers' alias lists). An entry
//! that names a blob is served only while the blob store proves that blob.

use super::{BlobStore, NamesBlob, seal, touch, unseal};
use crate::util::owned;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::PathBuf;

/// The entries under `<cache>/layers`, keyed by hex digests of inputs.
#[derive(Debug, Clone)]
pub struct LayerIndex {
    blobs: BlobStore,
}

impl LayerIndex {
    /// The index beside `blobs` (the same cache directory), whose blobs its entries name.
    pub fn of(blobs: &BlobStore) -> LayerIndex {
        LayerIndex {
            blobs: blobs.clone(),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.blobs.root().join("layers").join(key)
    }

    /// A cached value stored under an input key. The entry is checked against its seal (see
    /// [`seal`]): a damaged one (a flipped digit of a diff_id would give an image whose config
    /// does not match its layers) is removed with a warning, and the caller makes the layer
    /// again.
    pub fn cached<T: for<'de> Deserialize<'de>>(&self, key: &str) -> Option<T> {
        let path = self.path(key);
        let bytes = fs::read(&path).ok()?;
        let Some(json) = unseal(&bytes) else {
            // An entry of an older version (plain JSON, unsealed) is simply replaced.
            if bytes.first() != Some(&b'{') && bytes.first() != Some(&b'[') {
                self.blobs.shell.warn(format!(
                    "cache file {} is damaged (it does not match its checksum); removed it, and it is made again from its inputs",
                    path.display()
                ));
                let _ = owned::remove_file(self.blobs.root(), &path, owned::Name::Digest);
            }
            return None;
        };
        let value = serde_json::from_slice(json).ok()?;
        // A hit keeps the entry (and so its blob) from the garbage collector.
        touch(&path);
        Some(value)
    }

    /// Like [`LayerIndex::cached`], for an entry that names a blob: None unless the blob is
    /// [proven](BlobStore::proven) (a damaged one is removed, so the caller makes it again).
    pub fn cached_blob<T: for<'de> Deserialize<'de> + NamesBlob>(&self, key: &str) -> Option<T> {
        let value: T = self.cached(key)?;
        let (digest, size) = value.blob();
        self.blobs.proven(digest, size).then_some(value)
    }

    /// Stores `value` under `key`, sealed.
    pub fn remember<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let mut tmp = self.blobs.temp_file()?;
        tmp.write_all(&seal(&serde_json::to_vec(value)?))?;
        owned::persist(tmp, &self.path(key))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_entry_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let index = LayerIndex::of(
            &BlobStore::open(dir.path(), &crate::util::shell::Shell::discard()).unwrap(),
        );
        let k = &"ab".repeat(32); // entries are named by hex keys
        index
            .remember(k, &serde_json::json!({ "diff_id": "sha256:0a" }))
            .unwrap();
        let path = dir.path().join("layers").join(k);
        let good = fs::read(&path).unwrap();
        assert_eq!(
            index.cached::<serde_json::Value>(k).unwrap()["diff_id"],
            "sha256:0a"
        );
        let flipped = String::from_utf8(good.clone())
            .unwrap()
            .replace("sha256:0a", "sha256:0b");
        fs::write(&path, flipped).unwrap();
        assert!(index.cached::<serde_json::Value>(k).is_none());
        assert!(!path.exists(), "a damaged entry was kept");
        // An older version's entry (plain JSON, unsealed) is a miss, replaced when the layer
        // is made.
        fs::write(&path, br#"{"diff_id":"sha256:0a"}"#).unwrap();
        assert!(index.cached::<serde_json::Value>(k).is_none());
    }

    /// An entry that names a blob, as a layer does.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Named {
        digest: crate::util::digest::Digest,
        size: u64,
    }

    impl NamesBlob for Named {
        fn blob(&self) -> (&crate::util::digest::Digest, u64) {
            (&self.digest, self.size)
        }
    }

    #[test]
    fn an_entry_is_served_only_with_its_blob_proven() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), &crate::util::shell::Shell::discard()).unwrap();
        let index = LayerIndex::of(&store);
        let entry = Named {
            digest: crate::util::digest::Digest::sha256_of(b"blob bytes"),
            size: 10,
        };
        let key = "cd".repeat(32);
        index.remember(&key, &entry).unwrap();
        // Its blob is absent: the entry alone is not served.
        assert!(index.cached_blob::<Named>(&key).is_none());
        // Present and intact (written by an earlier run, so proven by reading it): served.
        fs::write(store.path(&entry.digest), b"blob bytes").unwrap();
        assert_eq!(index.cached_blob::<Named>(&key), Some(entry.clone()));
        // Damaged: a miss, and the blob is removed so the caller makes it again.
        let other = Named {
            digest: crate::util::digest::Digest::sha256_of(b"other byte"),
            size: 10,
        };
        index.remember(&key, &other).unwrap();
        fs::write(store.path(&other.digest), b"blob bytes").unwrap();
        assert!(index.cached_blob::<Named>(&key).is_none());
        assert!(!store.has(&other.digest));
    }
}
