//! `oci:DIR[:TAG]` and `oci-archive:FILE[:TAG]`: the OCI image layout, as a directory or as a
//! tar of that directory. A directory that already holds a layout keeps its other tags.

use super::{Output, Written, atomic};
use crate::blobs::{BlobStore, hex_of};
use crate::image::Image;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

pub struct OciLayout {
    pub path: PathBuf,
    pub tag: String,
    pub archive: bool,
}

/// The OCI ref name grammar, simplified: alphanumerics and `._-:/+@`, not empty.
pub fn check_tag(tag: &str) -> Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:/+@".contains(c))
        && tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok {
        bail!("tag `{tag}` is not valid; use letters, digits and . _ - (e.g. 1.0.0 or latest)");
    }
    Ok(())
}

/// The index.json entry for this image.
fn entry(image: &Image, tag: &str) -> Value {
    let top = image.top();
    let mut d = json!({
        "mediaType": top.media_type,
        "digest": top.digest,
        "size": top.size(),
        "annotations": { REF_NAME: tag },
    });
    if image.index.is_none() {
        let p = image.platforms[0].platform;
        let mut plat = json!({"architecture": p.arch(), "os": p.os()});
        if let Some(v) = p.variant() {
            plat["variant"] = json!(v);
        }
        d["platform"] = plat;
    }
    d
}

/// index.json: the entries of `old` for other tags, then ours.
/// The entries of an existing index.json that other tags keep.
fn kept_entries(old: Option<&Value>, tag: &str) -> Vec<Value> {
    old.and_then(|o| o.get("manifests"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|m| {
                    m.pointer(&format!("/annotations/{}", REF_NAME.replace('/', "~1")))
                        .and_then(Value::as_str)
                        != Some(tag)
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Every blob reachable from `entries` in the layout at `dir`: indexes and manifests are read
/// and followed to their manifests, configs and layers.
fn reachable(dir: &Path, entries: &[Value]) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut todo: Vec<Value> = entries.to_vec();
    while let Some(d) = todo.pop() {
        let Some(digest) = d.get("digest").and_then(Value::as_str) else {
            continue;
        };
        if !seen.insert(digest.to_string()) {
            continue;
        }
        let doc = fs::read(dir.join("blobs/sha256").join(hex_of(digest)))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        if let Some(doc) = doc {
            for key in ["manifests", "layers"] {
                todo.extend(
                    doc.get(key)
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            todo.extend(doc.get("config").cloned());
        }
    }
    seen
}

fn index_json(image: &Image, tag: &str, old: Option<&Value>) -> Result<Vec<u8>> {
    let mut manifests = kept_entries(old, tag);
    manifests.push(entry(image, tag));
    let index = json!({
        "schemaVersion": 2,
        "mediaType": crate::image::INDEX_MEDIA_TYPE,
        "manifests": manifests,
    });
    crate::image::canonical_json(&index)
}

fn read_existing(dir: &Path) -> Result<Option<Value>> {
    if !dir.exists() {
        return Ok(None);
    }
    let index = dir.join("index.json");
    if !index.is_file() {
        if fs::read_dir(dir)?.next().is_none() {
            return Ok(None);
        }
        bail!(
            "{} exists and is not an OCI image layout; remove it or choose another output directory",
            dir.display()
        );
    }
    let v = serde_json::from_slice(&fs::read(&index)?).with_context(|| {
        format!(
            "{} is not valid JSON; remove the directory or choose another",
            index.display()
        )
    })?;
    Ok(Some(v))
}

impl OciLayout {
    fn transport(&self) -> &'static str {
        if self.archive { "oci-archive" } else { "oci" }
    }

    /// Whether the layout already holds exactly this image under this tag.
    fn up_to_date(&self, image: &Image, old: Option<&Value>) -> bool {
        let Some(old) = old else { return false };
        let want = entry(image, &self.tag);
        let has_entry = old
            .get("manifests")
            .and_then(Value::as_array)
            .is_some_and(|ms| ms.contains(&want));
        has_entry
            && image.all_blobs().iter().all(|(d, n)| {
                fs::metadata(self.path.join("blobs/sha256").join(hex_of(d)))
                    .is_ok_and(|m| m.len() == *n)
            })
    }

    fn write_dir(&self, image: &Image, store: &BlobStore) -> Result<u64> {
        let old = read_existing(&self.path)?;
        if self.up_to_date(image, old.as_ref()) {
            return Ok(0);
        }
        let mut added = 0;
        atomic::write_dir(&self.path, |tmp| {
            let blobs = tmp.join("blobs/sha256");
            fs::create_dir_all(&blobs)?;
            // The blobs the other tags still use; what only the replaced tag used is dropped.
            for digest in reachable(&self.path, &kept_entries(old.as_ref(), &self.tag)) {
                let src = self.path.join("blobs/sha256").join(hex_of(&digest));
                if src.is_file() {
                    atomic::link_or_copy(&src, &blobs.join(hex_of(&digest)))?;
                }
            }
            for (digest, size) in image.all_blobs() {
                let dst = blobs.join(hex_of(&digest));
                if !dst.exists() {
                    store.copy_to(&digest, size, &dst)?;
                    added += size;
                }
            }
            fs::write(tmp.join("oci-layout"), LAYOUT)?;
            fs::write(
                tmp.join("index.json"),
                index_json(image, &self.tag, old.as_ref())?,
            )?;
            Ok(())
        })?;
        Ok(added)
    }

    fn write_archive(&self, image: &Image, store: &BlobStore) -> Result<u64> {
        let mut total = 0;
        atomic::write_file(&self.path, |w| {
            let mut out = CountingWriter { inner: w, n: 0 };
            {
                let mut t = tar::Builder::new(&mut out);
                add_bytes(&mut t, "oci-layout", LAYOUT)?;
                add_bytes(&mut t, "index.json", &index_json(image, &self.tag, None)?)?;
                add_dir(&mut t, "blobs/")?;
                add_dir(&mut t, "blobs/sha256/")?;
                for (digest, _) in image.all_blobs() {
                    add_file(
                        &mut t,
                        &format!("blobs/sha256/{}", hex_of(&digest)),
                        &store.path(&digest),
                    )?;
                }
                t.finish()?;
            }
            total = out.n;
            Ok(())
        })?;
        Ok(total)
    }
}

impl Output for OciLayout {
    fn describe(&self) -> String {
        format!("{}:{}:{}", self.transport(), self.path.display(), self.tag)
    }

    fn preflight(&self) -> Result<()> {
        atomic::check_writable(&self.path, !self.archive, &self.describe())?;
        if !self.archive {
            read_existing(&self.path)?;
        }
        Ok(())
    }

    fn write(&self, image: &Image, store: &BlobStore) -> Result<Written> {
        let bytes = if self.archive {
            self.write_archive(image, store)?
        } else {
            self.write_dir(image, store)?
        };
        let abs = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        Ok(Written {
            output: format!("{}:{}:{}", self.transport(), abs.display(), self.tag),
            bytes,
            ..Written::default()
        })
    }
}

pub(crate) struct CountingWriter<W> {
    pub inner: W,
    pub n: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A header for archive members: root-owned, mtime 0, so the archive is reproducible too.
pub(crate) fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h
}

pub(crate) fn add_bytes<W: Write>(t: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
    t.append_data(&mut h, name, bytes)?;
    Ok(())
}

pub(crate) fn add_dir<W: Write>(t: &mut tar::Builder<W>, name: &str) -> Result<()> {
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    t.append_data(&mut h, name, std::io::empty())?;
    Ok(())
}

pub(crate) fn add_file<W: Write>(t: &mut tar::Builder<W>, name: &str, path: &Path) -> Result<()> {
    let f = fs::File::open(path)
        .with_context(|| format!("blob {} is missing from the cache", path.display()))?;
    let len = f.metadata()?.len();
    let mut h = header(tar::EntryType::Regular, 0o644, len);
    t.append_data(&mut h, name, std::io::BufReader::with_capacity(1 << 20, f))?;
    Ok(())
}
