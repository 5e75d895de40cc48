//! `oci:DIR[:TAG]` and `oci-archive:FILE[:TAG]`: the OCI image layout, as a directory or as a
//! tar of that directory.
//!
//! A new layout is written whole in a temp directory and renamed into place. An existing one
//! (only a directory with an `oci-layout` file is one) is updated in place, under an advisory
//! lock (flock on `.cargo-containerize.lock`, a dot-file skopeo and umoci ignore) so concurrent
//! runs add their tags one after the other: blobs first, then index.json by rename, then the
//! blobs no tag reaches any more are removed. Its other tags, and every file it holds besides
//! `blobs/`, `index.json` and `oci-layout`, stay as they were. Any other non-empty directory is
//! refused.
//!
//! A blob already in the layout is reused only once proven to match its digest
//! ([`BlobStore::file_proven`]: hashed once, then trusted while its stat is unchanged); a
//! damaged one is replaced whole, with a warning naming it. Unused blobs are removed only when
//! every kept tag can be followed: a tag whose index or manifest is missing or damaged stops
//! the removal (with a warning naming it), since the blobs it names are unknown.

use super::oci_index::{Entry, Index, REF_NAME};
use super::{Output, Written};
use crate::blobs::BlobStore;
use crate::image::Image;
use crate::util::atomic;
use crate::util::digest::Digest;
use crate::util::shell::Shell;
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

pub struct OciLayout {
    pub path: PathBuf,
    pub tag: String,
    pub archive: bool,
    /// Whether index.json lists the image's referrers too (`layout-referrers`). Off by
    /// default: syft and grype (stereoscope) read a layout only when its index lists one
    /// manifest, and `podman load` an archive only then.
    pub referrers: bool,
}

/// `oci:DIR[:TAG]`: the layout directory.
pub const OCI: super::Kind = super::Kind {
    transport: "oci",
    syntax: "oci:DIR[:TAG]",
    make: |path, tag, defaults| OciLayout::make(path, tag, defaults, false),
};

/// `oci-archive:FILE[:TAG]`: a tar of the layout.
pub const OCI_ARCHIVE: super::Kind = super::Kind {
    transport: "oci-archive",
    syntax: "oci-archive:FILE[:TAG]",
    make: |path, tag, defaults| OciLayout::make(path, tag, defaults, true),
};

impl OciLayout {
    /// The layout at `path` under `tag` (the version by default), the tag checked.
    fn make(
        path: PathBuf,
        tag: Option<&str>,
        defaults: &super::Defaults,
        archive: bool,
    ) -> Result<Box<dyn Output>> {
        let tag = tag.unwrap_or(&defaults.tag).to_string();
        check_tag(&tag)?;
        Ok(Box::new(OciLayout {
            path,
            tag,
            archive,
            referrers: defaults.layout_referrers,
        }))
    }
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

/// The index.json entry for this image: an OCI descriptor (with the platform, for one
/// platform's manifest) and the tag as `org.opencontainers.image.ref.name`.
fn entry(image: &Image, tag: &str) -> Result<oci_spec::image::Descriptor> {
    let top = image.top();
    let mut d = crate::image::descriptor(&top.media_type, top.size(), &top.digest)?;
    d.set_annotations(Some([(REF_NAME.to_string(), tag.to_string())].into()));
    if image.index.is_none() {
        d.set_platform(Some(crate::image::oci_platform(
            image.platforms[0].platform,
        )?));
    }
    Ok(d)
}

/// index.json's entries for this image under `tag`: the image, then its attachments (which
/// carry no tag: they live as long as their subject does, see [`entries_for`]).
fn entries(image: &Image, tag: &str) -> Result<Vec<Entry>> {
    let mut list = vec![Entry::Oci(Box::new(entry(image, tag)?))];
    for a in &image.attachments {
        list.push(Entry::Oci(Box::new(a.oci_descriptor()?)));
    }
    Ok(list)
}

/// The entries of an existing index.json that other tags keep.
fn kept_entries(old: Option<&Index>, tag: &str) -> Vec<Entry> {
    old.map(|o| {
        o.manifests
            .iter()
            .filter(|m| m.tag() != Some(tag))
            .cloned()
            .collect()
    })
    .unwrap_or_default()
}

/// The digest of the subject of the attachment `entry` lists, read from the layout at `dir`;
/// None for an entry that is not an attachment (or whose manifest cannot be read: kept).
fn subject_of(dir: &Path, entry: &Entry) -> Option<Digest> {
    if !entry.is_artifact() {
        return None;
    }
    let digest = entry.digest()?;
    let doc: Value =
        serde_json::from_slice(&fs::read(dir.join("blobs/sha256").join(digest.hex())).ok()?)
            .ok()?;
    doc.pointer("/subject/digest")?.as_str()?.parse().ok()
}

/// The index.json entries after writing `image` under `tag` into the layout at `dir`: the
/// entries other tags keep, then this image's. An attachment another run listed stays while
/// its subject is still reachable (from a kept tag or from this image) and goes with it.
fn entries_for(dir: &Path, old: Option<&Index>, image: &Image, tag: &str) -> Result<Vec<Entry>> {
    let kept = kept_entries(old, tag);
    let (attached, tagged): (Vec<Entry>, Vec<Entry>) =
        kept.into_iter().partition(|e| subject_of(dir, e).is_some());
    // None when a kept tag cannot be followed: every attachment then stays.
    let mut live = None;
    if !attached.is_empty() {
        live = reachable(dir, &tagged).ok().map(|mut l| {
            l.extend(image.blobs().map(|b| b.digest.clone()));
            l
        });
    }
    let new = entries(image, tag)?;
    let mut out = tagged;
    for e in attached {
        let alive = match (&live, subject_of(dir, &e)) {
            (None, _) => true,
            (Some(l), Some(subject)) => l.contains(&subject),
            (Some(_), None) => false,
        };
        if alive && !new.iter().any(|n| n.digest() == e.digest()) {
            out.push(e);
        }
    }
    out.extend(new);
    Ok(out)
}

/// Whether `name` is a sha256 hex digest: the only names taken as blobs.
fn is_sha256_hex(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Every blob reachable from `entries` in the layout at `dir`: indexes and manifests are read
/// and followed to their manifests, configs and layers. Err names the first entry (its tag,
/// else its digest) with an index or manifest that is missing, unreadable, too big or not
/// JSON: what it reaches is then unknown, so a caller must not remove anything on this basis.
fn reachable(dir: &Path, entries: &[Entry]) -> Result<std::collections::BTreeSet<Digest>, String> {
    // Registries refuse manifests over 4 MiB; a bigger "manifest" is not one.
    const DOCUMENT_MAX: u64 = 4 << 20;
    let mut seen = std::collections::BTreeSet::new();
    for top in entries {
        let top = top.to_value();
        let name = || match top.pointer(&format!("/annotations/{}", REF_NAME.replace('/', "~1"))) {
            Some(Value::String(tag)) => format!("tag `{tag}`"),
            _ => format!(
                "entry {}",
                top.get("digest").and_then(Value::as_str).unwrap_or("?")
            ),
        };
        // (descriptor, whether it names an index or manifest, to be read and followed)
        let mut todo: Vec<(Value, bool)> = vec![(top.clone(), true)];
        while let Some((d, document)) = todo.pop() {
            let Some(digest) = d
                .get("digest")
                .and_then(Value::as_str)
                .and_then(|d| d.parse::<Digest>().ok())
            else {
                if document {
                    return Err(name());
                }
                continue;
            };
            let path = dir.join("blobs/sha256").join(digest.hex());
            if !seen.insert(digest) || !document {
                continue;
            }
            let doc = fs::metadata(&path)
                .ok()
                .filter(|m| m.len() <= DOCUMENT_MAX)
                .and_then(|_| fs::read(&path).ok())
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .filter(Value::is_object)
                .ok_or_else(name)?;
            let list = |key: &str| doc.get(key).and_then(Value::as_array).cloned();
            todo.extend(list("manifests").into_iter().flatten().map(|m| (m, true)));
            for key in ["layers", "blobs"] {
                todo.extend(list(key).into_iter().flatten().map(|b| (b, false)));
            }
            todo.extend(doc.get("config").cloned().map(|c| (c, false)));
        }
    }
    Ok(seen)
}

/// Writes blob `digest` from the store at `dst`, whole (a temp renamed into place), after the
/// store has proven it matches its digest.
fn copy_blob(store: &BlobStore, digest: &Digest, size: u64, dst: &Path) -> Result<()> {
    let mut from = store.open_proven(digest, size)?;
    atomic::write_file(dst, |w| {
        let copied = std::io::copy(&mut from, w)
            .with_context(|| format!("cannot copy blob {digest} to {}", dst.display()))?;
        if copied != size {
            anyhow::bail!(
                "blob {digest} in the cache changed while this run copied it ({copied} bytes instead of {size}); run again"
            );
        }
        Ok(())
    })
}

/// What an `oci:` directory's path holds now.
#[derive(Debug, PartialEq, Eq)]
enum Existing {
    /// Nothing: the layout is made whole in a temp directory and renamed into place.
    Absent,
    /// An OCI layout (it has `oci-layout`), an empty directory, or a layout this tool began
    /// and did not finish: updated in place, under the lock.
    Layout,
}

/// Sorts out what is at `dir`. Only a directory with an `oci-layout` file is an OCI layout;
/// any other directory with files in it is someone else's and is refused, untouched.
fn classify(dir: &Path) -> Result<Existing> {
    let meta = match fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Absent),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    if !meta.is_dir() {
        bail!(
            "{} exists and is not a directory; remove it or choose another output directory",
            dir.display()
        );
    }
    if dir.join("oci-layout").is_file() {
        return Ok(Existing::Layout);
    }
    let names: Vec<String> = fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let ours = |n: &String| {
        n == atomic::LOCK_NAME
            || n == "blobs"
            || n == "index.json"
            || n.starts_with(".index.json.tmp-")
            || n.starts_with(".oci-layout.tmp-")
    };
    let empty = names.iter().all(|n| n == atomic::LOCK_NAME);
    // A first write that was cut short: our lock file, blobs and at most an index.
    let unfinished = names.iter().any(|n| n == atomic::LOCK_NAME) && names.iter().all(ours);
    if empty || unfinished {
        return Ok(Existing::Layout);
    }
    bail!(
        "{} is not empty and is not an OCI image layout (it has no oci-layout file); choose a new or empty directory",
        dir.display()
    )
}

/// The index.json of the layout at `dir`, if it has one.
fn read_existing(dir: &Path) -> Result<Option<Index>> {
    let index = dir.join("index.json");
    let bytes = match fs::read(&index) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", index.display())),
    };
    let v: Value = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is not valid JSON; repair or remove it, or choose another output directory",
            index.display()
        )
    })?;
    let Some(index) = Index::from_value(v) else {
        bail!(
            "{} is not an OCI image index (it has no manifests list); repair or remove it, or choose another output directory",
            index.display()
        );
    };
    Ok(Some(index))
}

/// Removes the blobs of `dir` that no entry of its index reaches any more (what only a
/// replaced tag used), never one of `image`'s. Only files named by a sha256 digest are blobs;
/// nothing else is touched. When an entry cannot be followed (its manifest is missing or
/// damaged) nothing is removed, with a warning naming it: the blobs it still names are
/// unknown, and removing them would lose what is left of it.
fn collect_garbage(dir: &Path, entries: &[Entry], image: &Image, shell: &Shell) {
    let reached = match reachable(dir, entries) {
        Ok(r) => r,
        Err(what) => {
            shell.warn(format!(
                "{what} in {} cannot be followed (an index or manifest of it is missing, unreadable or not JSON); removed no unused blobs from the layout, so none it may still use is lost; repair or remove that tag",
                dir.display()
            ));
            return;
        }
    };
    let keep: std::collections::BTreeSet<&str> = reached
        .iter()
        .chain(image.blobs().map(|b| b.digest))
        .map(Digest::hex)
        .collect();
    use crate::util::owned;
    for f in owned::list(dir, &dir.join("blobs/sha256")) {
        if is_sha256_hex(&f.name) && !keep.contains(f.name.as_str()) && f.meta.is_file() {
            let _ = owned::remove_file(dir, &f.path, owned::Name::Digest);
        }
    }
}

impl OciLayout {
    fn transport(&self) -> &'static str {
        if self.archive { "oci-archive" } else { "oci" }
    }

    /// Whether the layout already holds exactly this image under this tag, attachments
    /// included, every blob of it proven to match its digest ([`BlobStore::file_proven`]:
    /// hashed once, then trusted while its stat is unchanged, so a no-op rerun reads none).
    fn up_to_date(&self, image: &Image, old: Option<&Index>, store: &BlobStore) -> bool {
        let Some(old) = old else { return false };
        let has_entries =
            entries(image, &self.tag).is_ok_and(|es| es.iter().all(|e| old.manifests.contains(e)));
        has_entries
            && image.blobs().all(|b| {
                let path = self.path.join("blobs/sha256").join(b.digest.hex());
                store.file_proven(&path, b.digest, b.size)
            })
    }

    /// Puts the image's blobs, then an index.json with `manifests`, then `oci-layout` (if
    /// missing) into `dir`, each whole. The paths of blobs it adds go to `placed` until the
    /// index that uses them is in place. Returns the bytes added.
    fn place(
        &self,
        dir: &Path,
        image: &Image,
        store: &BlobStore,
        index: &Index,
        placed: &mut Vec<PathBuf>,
        shell: &Shell,
    ) -> Result<u64> {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).with_context(|| format!("cannot create {}", blobs.display()))?;
        // Copies of blobs that dead runs were writing here (`.HEX.tmp-PID-…`).
        atomic::sweep_dir(&blobs);
        let mut added = 0;
        // Until the index that uses them is in place, new blobs go if the run is interrupted.
        let mut pending = Vec::new();
        for b in image.blobs() {
            let (digest, size) = (b.digest, b.size);
            let dst = blobs.join(digest.hex());
            if fs::symlink_metadata(&dst).is_ok() {
                // Reused only once proven to match its digest (see `BlobStore::file_proven`).
                if store.file_proven(&dst, digest, size) {
                    continue;
                }
                // Damaged (a flipped byte, a truncation): replaced, whole.
                shell.warn(format!(
                    "blob {} does not match its digest {digest}; replaced it with an intact copy",
                    dst.display()
                ));
                copy_blob(store, digest, size, &dst)?;
            } else {
                // Registered before the copy, so an interrupt during or right after it removes
                // the blob no index references yet.
                pending.push(atomic::Pending::new(&dst));
                copy_blob(store, digest, size, &dst)?;
                placed.push(dst);
            }
            added += size;
        }
        let index = index.to_json()?;
        // The rename of index.json and the unregistering of the blobs it references are one
        // step for the interrupt handler (see `atomic::commit`): a Ctrl-C right after the
        // rename must not remove blobs the new index uses.
        atomic::write_file_releasing(&dir.join("index.json"), pending, |w| {
            Ok(w.write_all(&index)?)
        })?;
        placed.clear();
        if !dir.join("oci-layout").is_file() {
            atomic::write_file(&dir.join("oci-layout"), |w| Ok(w.write_all(LAYOUT)?))?;
        }
        Ok(added)
    }

    /// Writes the layout directory: a new one whole (temp directory, then rename); an
    /// existing one in place, under its lock, so files others put there stay and concurrent
    /// runs add their tags one after the other.
    fn write_dir(&self, image: &Image, store: &BlobStore, shell: &Shell) -> Result<u64> {
        atomic::sweep_beside(&self.path);
        if classify(&self.path)? == Existing::Absent {
            let mut added = 0;
            let created = atomic::create_dir(&self.path, |tmp| {
                let index = Index {
                    manifests: entries(image, &self.tag)?,
                    ..Index::default()
                };
                added = self.place(tmp, image, store, &index, &mut Vec::new(), shell)?;
                Ok(())
            })?;
            if created {
                return Ok(added);
            }
            // Another run made it meanwhile: add to it.
        }
        let _lock = atomic::lock_dir(&self.path, shell)?;
        // Looked at again under the lock: what is there may have changed while we waited.
        classify(&self.path)?;
        let old = read_existing(&self.path)?;
        if self.up_to_date(image, old.as_ref(), store) {
            return Ok(0);
        }
        let manifests = entries_for(&self.path, old.as_ref(), image, &self.tag)?;
        // The fields other tools wrote into the index stay.
        let index = old.unwrap_or_default().with_manifests(manifests);
        let mut placed = Vec::new();
        match self.place(&self.path, image, store, &index, &mut placed, shell) {
            Ok(added) => {
                collect_garbage(&self.path, &index.manifests, image, shell);
                Ok(added)
            }
            Err(e) => {
                // Blobs no index uses yet: this run's own, and only it could have added them
                // (it holds the lock).
                for p in placed {
                    let _ = crate::util::owned::remove_file(
                        &self.path,
                        &p,
                        crate::util::owned::Name::Made,
                    );
                }
                Err(atomic::disk_full_remedy(e, &self.path))
            }
        }
    }

    fn write_archive(&self, image: &Image, store: &BlobStore) -> Result<u64> {
        let mut total = 0;
        let entries = entries(image, &self.tag)?;
        atomic::write_file(&self.path, |w| {
            total = write_tar(w, image, store, entries, docker_manifest(image).as_deref())?;
            Ok(())
        })?;
        Ok(total)
    }
}

/// Writes an OCI layout as a tar to `w`: `oci-layout`, an `index.json` listing `entries`,
/// every blob of `image`, and docker's `manifest.json` when given. Returns the bytes written.
pub(crate) fn write_tar<W: Write>(
    w: W,
    image: &Image,
    store: &BlobStore,
    entries: Vec<Entry>,
    docker_manifest: Option<&[u8]>,
) -> Result<u64> {
    let mut out = CountingWriter { inner: w, n: 0 };
    {
        let mut t = tar::Builder::new(&mut out);
        add_bytes(&mut t, "oci-layout", LAYOUT)?;
        let index = Index {
            manifests: entries,
            ..Index::default()
        };
        add_bytes(&mut t, "index.json", &index.to_json()?)?;
        add_dir(&mut t, "blobs/")?;
        add_dir(&mut t, "blobs/sha256/")?;
        for b in image.blobs() {
            add_blob(
                &mut t,
                &format!("blobs/sha256/{}", b.digest.hex()),
                store,
                b.digest,
                b.size,
            )?;
        }
        if let Some(manifest) = docker_manifest {
            add_bytes(&mut t, "manifest.json", manifest)?;
        }
        t.finish()?;
    }
    out.flush()?;
    Ok(out.n)
}

/// index.json's entries naming `image` (its attachments left out) once per reference, the
/// way containerd's importer (Docker's containerd image store) names what it loads: the full
/// reference as `io.containerd.image.name`, its tag as `org.opencontainers.image.ref.name`.
pub(crate) fn named_entries(image: &Image, references: &[String]) -> Result<Vec<Entry>> {
    references
        .iter()
        .map(|r| {
            let parsed = crate::util::reference::Reference::parse(r)?;
            let tag = parsed.tag.as_deref().unwrap_or("latest");
            let mut e = entry(image, tag)?;
            // The full name, as docker's containerd store keeps it (`app:1` is
            // `docker.io/library/app:1`).
            let mut annotations = e.annotations().clone().unwrap_or_default();
            annotations.insert(
                "io.containerd.image.name".into(),
                format!("{}/{}:{tag}", parsed.registry, parsed.repository),
            );
            e.set_annotations(Some(annotations));
            Ok(Entry::Oci(Box::new(e)))
        })
        .collect()
}

/// The `manifest.json` that lets Docker Engines before 25 (which read only docker archives)
/// `docker load` the archive too, as `docker save` of Docker 25+ writes beside `index.json`:
/// the config and the layers, by their blob paths. Docker's older loader takes gzip-compressed
/// or plain layers, not zstd, and one image, so a zstd or multi-platform archive has none (it
/// still loads into Docker 25+, which reads `index.json`). No `RepoTags`: the archive's tag is
/// not a full image name, so docker loads the image by its id.
fn docker_manifest(image: &Image) -> Option<Vec<u8>> {
    let [img] = image.platforms.as_slice() else {
        return None;
    };
    let legacy_readable = img.layers.iter().all(|l| {
        let m = l.media_type.as_ref();
        m.ends_with(".tar+gzip") || m.ends_with(".tar") || m.ends_with(".tar.gzip")
    });
    if !legacy_readable {
        return None;
    }
    let path = |digest: &Digest| format!("blobs/sha256/{}", digest.hex());
    let manifest = serde_json::json!([{
        "Config": path(&img.config.digest),
        "RepoTags": null,
        "Layers": img.layers.iter().map(|l| path(&l.digest)).collect::<Vec<_>>(),
    }]);
    serde_json::to_vec(&manifest).ok()
}

impl Output for OciLayout {
    fn describe(&self) -> String {
        format!("{}:{}:{}", self.transport(), self.path.display(), self.tag)
    }

    fn preflight(&self) -> Result<()> {
        atomic::check_writable(&self.path, !self.archive, &self.describe())?;
        if !self.archive {
            if classify(&self.path)? == Existing::Layout {
                read_existing(&self.path)?;
            }
            atomic::lock_timeout()?;
        }
        Ok(())
    }

    fn destination(&self) -> Option<super::Destination> {
        Some(super::Destination {
            path: self.path.clone(),
            tag: (!self.archive).then(|| self.tag.clone()),
        })
    }

    fn carries_referrers(&self) -> bool {
        self.referrers
    }

    fn write(&self, image: &Image, store: &BlobStore, shell: &Shell) -> Result<Written> {
        let bytes = if self.archive {
            self.write_archive(image, store)
        } else {
            self.write_dir(image, store, shell)
        }
        .map_err(|e| atomic::disk_full_remedy(e, &self.path))?;
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

/// Appends blob `digest` (`size` bytes) of the store as member `name`, read through
/// [`BlobStore::open_proven`]: an output never reads a blob not proven to match its digest.
pub(crate) fn add_blob<W: Write>(
    t: &mut tar::Builder<W>,
    name: &str,
    store: &BlobStore,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    let f = store.open_proven(digest, size)?;
    let mut h = header(tar::EntryType::Regular, 0o644, size);
    let data = Exact {
        inner: std::io::BufReader::with_capacity(1 << 20, f).take(size),
        left: size,
        digest: digest.clone(),
    };
    t.append_data(&mut h, name, data)
        .with_context(|| format!("cannot add blob {digest} to the archive"))?;
    Ok(())
}

/// Reads exactly `left` bytes: ending early is an error, not a short member (tar pads what it
/// got to the header's size without complaint, which would give a corrupt archive).
pub(crate) struct Exact<R> {
    pub inner: R,
    pub left: u64,
    pub digest: Digest,
}

impl<R: std::io::Read> std::io::Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "blob {} in the cache shrank while this run read it; run again",
                    self.digest
                ),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}
