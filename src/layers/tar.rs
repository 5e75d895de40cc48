//! Deterministic tar layers, streamed through the compressor into the blob store.
//!
//! Written on the `tar` crate's header API: the crate writes any header we ask for, but the
//! rules that make a layer reproducible (sorted entries, parents first, numeric owners, no
//! user or group names, fixed mtime and modes, fixed compressor settings) are ours to apply.

use super::Layer;
use super::compress::Codec;
use crate::blobs::{
    BlobStore, ContentHasher, ContentId, FileDigests, HashWriter, LayerIndex, Stat,
};
pub use crate::files::{Entry, EntryKind, LayerContent, Source};
use crate::util::digest::Digest;
use anyhow::{Context, Result, bail};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};

/// Bump when the tar bytes a layer is written as change, so old cache entries are not reused.
/// (Changes of the compressed bytes are caught by `compress::fingerprint`.)
/// v3: blobs are created readable (0666 less the umask), not owner-only.
/// v4: gzip layers are libdeflate members, one per MiB of tar.
/// v5: file contents are identified by BLAKE3 content ids.
const LAYER_FORMAT: &str = "cargo-containerize layer v5";

/// Adds the missing parent directories (root-owned, 0755) and sorts so that parents come first.
fn normalize(entries: &[Entry]) -> Result<Vec<Entry>> {
    let mut by_path: BTreeMap<String, Entry> = BTreeMap::new();
    for e in entries {
        if !e.path.starts_with('/') || e.path.split('/').any(|c| c == "..") || e.path == "/" {
            bail!("layer path `{}` must be absolute, without `..`", e.path);
        }
        let mut parent = String::new();
        let parts: Vec<&str> = e.path.split('/').filter(|c| !c.is_empty()).collect();
        for part in &parts[..parts.len() - 1] {
            parent.push('/');
            parent.push_str(part);
            by_path
                .entry(parent.clone())
                .or_insert_with(|| directory(&parent, 0o755));
        }
        // A directory the base layer defines keeps its mode and owner in every layer: an upper
        // layer's entry replaces the directory's metadata (/tmp would lose 1777).
        let e = match e.kind {
            EntryKind::Dir => &directory(&e.path, e.mode),
            _ => e,
        };
        if let Some(prev) = by_path.get(&e.path)
            && !matches!((&prev.kind, &e.kind), (EntryKind::Dir, EntryKind::Dir))
        {
            bail!(
                "two files are placed at {} in the image; give them different destinations",
                e.path
            );
        }
        by_path.insert(e.path.clone(), e.clone());
    }
    let mut out: Vec<Entry> = by_path.into_values().collect();
    out.sort_by_key(Entry::tar_name);
    Ok(out)
}

/// A directory entry: as the base layer defines it when it does, else root-owned with `mode`.
fn directory(path: &str, mode: u32) -> Entry {
    super::base::directory(path).unwrap_or_else(|| Entry::dir(path, mode))
}

fn open_source(s: &Source) -> Result<(Box<dyn Read + '_>, u64)> {
    Ok(match s {
        Source::Static(b) => (Box::new(*b), b.len() as u64),
        Source::Owned(b) => (Box::new(b.as_slice()), b.len() as u64),
        Source::Path(p) => {
            // Only a regular file: a FIFO would block the open, a device read without end.
            let f = crate::util::fs::open_regular(p)?;
            let len = f.metadata()?.len();
            (Box::new(io::BufReader::with_capacity(1 << 20, f)), len)
        }
    })
}

/// The content id of each file entry (None for other kinds): computed for bytes in memory,
/// looked up for files whose stat is unchanged since they were last read, read again for files
/// seen before whose stat changed, else None.
fn known_digests(entries: &[Entry], files: &FileDigests) -> Vec<Option<ContentId>> {
    entries
        .iter()
        .map(|e| match &e.kind {
            EntryKind::File(Source::Static(b)) => Some(crate::blobs::content_id(b)),
            EntryKind::File(Source::Owned(b)) => Some(crate::blobs::content_id(b)),
            EntryKind::File(Source::Path(p)) => {
                files.known_digest(p).or_else(|| files.rehashed_digest(p))
            }
            _ => None,
        })
        .collect()
}

/// The digest of everything that determines a layer's bytes; None while a file's content
/// digest is unknown.
fn cache_key(
    content: &LayerContent,
    entries: &[Entry],
    digests: &[Option<ContentId>],
    codec: Codec,
    shell: &crate::util::shell::Shell,
) -> Result<Option<String>> {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(LAYER_FORMAT.as_bytes());
    field(env!("CARGO_PKG_VERSION").as_bytes());
    let compressor = super::compress::fingerprint(codec, shell)?;
    field(format!("{codec:?} {compressor} {}", content.mtime).as_bytes());
    for (i, e) in entries.iter().enumerate() {
        field(e.tar_name().as_bytes());
        field(format!("{:o} {} {}", e.mode, e.uid, e.gid).as_bytes());
        match &e.kind {
            EntryKind::Dir => field(b"dir"),
            EntryKind::Symlink(t) => field(format!("symlink {t}").as_bytes()),
            EntryKind::Hardlink(t) => field(format!("hardlink {t}").as_bytes()),
            EntryKind::File(_) => match &digests[i] {
                Some(d) => field(d.as_str().as_bytes()),
                None => return Ok(None),
            },
        }
    }
    Ok(Some(hex::encode(h.finalize())))
}

/// A reader that hashes what passes through (the content digest of a file, in the same pass
/// that writes it into the layer).
struct Hashing<R> {
    inner: R,
    hash: ContentHasher,
    /// The sha256 too, when asked for.
    sha256: Option<Sha256>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        if let Some(sha) = &mut self.sha256 {
            sha.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// A file the tar writer read: its entry index, its stat before the read, its content digest,
/// and its sha256 when asked for.
type FileRead = (usize, Stat, ContentId, Option<Digest>);

/// Writes the tar; returns the writer and the content digest of every file read from disk
/// (by entry index), with the stat it had before it was read; with `sha256`, each file's
/// sha256 as well, from the same read.
fn write_tar<W: Write>(
    w: W,
    entries: &[Entry],
    mtime: u64,
    sha256: bool,
) -> Result<(W, Vec<FileRead>)> {
    let mut read_files = Vec::new();
    let mut b = tar::Builder::new(w);
    for (i, e) in entries.iter().enumerate() {
        let mut h = tar::Header::new_gnu();
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(mtime);
        let name = e.tar_name();
        match &e.kind {
            EntryKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, &name, io::empty())?;
            }
            EntryKind::File(src) => {
                let before = match src {
                    Source::Path(p) => Stat::of(p),
                    _ => None,
                };
                let (r, len) = open_source(src)?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(len);
                let mut r = Hashing {
                    inner: r,
                    hash: ContentHasher::default(),
                    sha256: (sha256 && before.is_some()).then(Sha256::new),
                };
                // The header says `len` bytes; a file that grows or shrinks while it is read
                // would corrupt the layer, so read at most `len` and check that all arrived.
                let mut limited = (&mut r).take(len);
                b.append_data(&mut h, &name, &mut limited)?;
                let (digest, read) = r.hash.finish();
                if read != len {
                    bail!(
                        "{} changed while it was being packed ({len} bytes expected, {read} read); run again once it is written",
                        e.path
                    );
                }
                if let Some(stat) = before {
                    read_files.push((i, stat, digest, r.sha256.map(Digest::from_sha256)));
                }
            }
            EntryKind::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, &name, target)?;
            }
            EntryKind::Hardlink(target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, &name, target.trim_start_matches('/'))?;
            }
        }
    }
    Ok((b.into_inner()?, read_files))
}

/// Writes a layer into the store (or finds it there) and describes it.
pub fn write_layer(content: &LayerContent, store: &BlobStore, codec: Codec) -> Result<Layer> {
    write_layer_keyed(content, store, codec).map(|(layer, _)| layer)
}

/// [`write_layer`], also giving the key of the layer's cache entry.
pub fn write_layer_keyed(
    content: &LayerContent,
    store: &BlobStore,
    codec: Codec,
) -> Result<(Layer, String)> {
    write(content, store, codec, false).map(|(layer, key, _)| (layer, key))
}

/// [`write_layer`] for a layer of one file from disk (the binary), also giving that file's
/// sha256 when this call read it (a layer found in the cache reads nothing; the digest is
/// then recorded with the file's stat, see [`FileDigests::known_sha256`]).
pub fn write_layer_digesting(
    content: &LayerContent,
    store: &BlobStore,
    codec: Codec,
) -> Result<(Layer, Option<Digest>)> {
    let (layer, _, mut read) = write(content, store, codec, true)?;
    Ok((layer, read.pop().flatten()))
}

/// Writes a layer (or finds it in the cache): the layer, its cache key, and the sha256 of
/// each file read from disk (with `sha256`; in entry order).
fn write(
    content: &LayerContent,
    store: &BlobStore,
    codec: Codec,
    sha256: bool,
) -> Result<(Layer, String, Vec<Option<Digest>>)> {
    let entries = normalize(&content.entries)?;
    let (index, files) = (LayerIndex::of(store), FileDigests::of(store));
    let mut digests = known_digests(&entries, &files);
    if let Some(key) = cache_key(content, &entries, &digests, codec, store.shell())?
        // Reused only once its blob is proven to match its digest; a damaged blob is removed
        // and the layer compressed again below.
        && let Some(layer) = index.cached_blob::<Layer>(&key)
    {
        store.shell().verbose(
            "Cache hit",
            format!("{} layer {}", content.what, layer.digest.short()),
        );
        return Ok((layer, key, Vec::new()));
    }
    store.shell().verbose(
        "Cache miss",
        format!("{} layer: compressing it", content.what),
    );
    // Not in the cache, or a file not seen before: one pass reads each file, hashes it for the
    // key and compresses it.
    let blob = store.writer()?;
    let encoder = codec.encoder(blob)?;
    let (writer, read_files) =
        write_tar(HashWriter::new(encoder), &entries, content.mtime, sha256)?;
    let (encoder, diff_id, tar_size) = writer.finish();
    let blob = encoder.finish()?;
    let mut sha256s = Vec::new();
    for (i, stat, digest, sha) in read_files {
        if let EntryKind::File(Source::Path(p)) = &entries[i].kind {
            files.record(p, &stat, &digest, sha.as_ref());
        }
        digests[i] = Some(digest);
        sha256s.push(sha);
    }
    let key = cache_key(content, &entries, &digests, codec, store.shell())?
        .context("a file of the layer vanished while it was packed; run again")?;
    let (digest, size) = store.commit(blob)?;
    let layer = Layer {
        what: content.what.clone(),
        digest,
        diff_id,
        size,
        tar_size,
        media_type: super::media_type(codec.kind),
        fresh: true,
        origin: None,
    };
    index.remember(&key, &layer)?;
    Ok((layer, key, sha256s))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::fs::File;

    fn read_names(layer: &Layer, store: &BlobStore) -> Vec<(String, u64, u32, u64)> {
        let f = File::open(store.path(&layer.digest)).unwrap();
        let mut a = tar::Archive::new(flate2::read::MultiGzDecoder::new(f));
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.uid().unwrap(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect()
    }

    const GZIP: Codec = Codec {
        kind: crate::metadata::values::Compression::Gzip,
        level: 6,
    };

    #[test]
    fn parents_first_sorted_root_owned() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), &crate::util::shell::Shell::discard()).unwrap();
        let content = LayerContent {
            what: crate::files::LayerKind::Other("t".into()),
            entries: vec![
                Entry::bytes("/usr/local/bin/x", b"x", 0o755),
                Entry::dir("/home/nonroot", 0o700).owned(65532, 65532),
                Entry::bytes("/etc/passwd", b"p", 0o644),
            ],
            mtime: 7,
        };
        let layer = write_layer(&content, &store, GZIP).unwrap();
        let names = read_names(&layer, &store);
        let paths: Vec<&str> = names.iter().map(|n| n.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "etc/",
                "etc/passwd",
                "home/",
                "home/nonroot/",
                "usr/",
                "usr/local/",
                "usr/local/bin/",
                "usr/local/bin/x"
            ]
        );
        assert!(names.iter().all(|n| n.3 == 7));
        let nonroot = names.iter().find(|n| n.0 == "home/nonroot/").unwrap();
        assert_eq!((nonroot.1, nonroot.2), (65532, 0o700));
    }

    #[test]
    fn same_content_same_digest_and_cache_hit() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let content = super::super::base::content();
        let sa = BlobStore::open(a.path(), &crate::util::shell::Shell::discard()).unwrap();
        let sb = BlobStore::open(b.path(), &crate::util::shell::Shell::discard()).unwrap();
        let la = write_layer(&content, &sa, GZIP).unwrap();
        let lb = write_layer(&content, &sb, GZIP).unwrap();
        assert_eq!(la, lb);
        assert!(la.fresh);
        let again = write_layer(&content, &sa, GZIP).unwrap();
        assert!(!again.fresh, "second write should come from the cache");
        assert_eq!(again.digest, la.digest);
    }

    #[test]
    fn another_codec_is_never_served_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), &crate::util::shell::Shell::discard()).unwrap();
        let content = super::super::base::content();
        let six = write_layer(&content, &store, GZIP).unwrap();
        let one = write_layer(&content, &store, Codec { level: 1, ..GZIP }).unwrap();
        assert!(one.fresh, "a new level must compress again");
        assert_eq!(one.diff_id, six.diff_id);
        let zstd = Codec {
            kind: crate::metadata::values::Compression::Zstd,
            level: 3,
        };
        let z = write_layer(&content, &store, zstd).unwrap();
        assert!(
            z.fresh
                && z.digest != six.digest
                && z.media_type == oci_spec::image::MediaType::ImageLayerZstd
        );
    }

    #[test]
    fn upper_layers_keep_the_base_directories_modes() {
        let entries = normalize(&[
            Entry::dir("/tmp", 0o755),
            Entry::bytes("/home/nonroot/.config/app.toml", b"x", 0o644),
        ])
        .unwrap();
        let find = |p: &str| entries.iter().find(|e| e.path == p).unwrap().clone();
        assert_eq!(find("/tmp").mode, 0o1777);
        let home = find("/home/nonroot");
        assert_eq!((home.mode, home.uid, home.gid), (0o700, 65532, 65532));
        assert_eq!(find("/home/nonroot/.config").mode, 0o755);
    }

    #[test]
    fn duplicate_destination_is_an_error() {
        let e = normalize(&[
            Entry::bytes("/a", b"1", 0o644),
            Entry::bytes("/a", b"2", 0o644),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("two files are placed at /a"));
    }
}
