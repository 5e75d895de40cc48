//! Cache entries the builder makes once per machine from C sources, through cargo (a static
//! OpenSSL, a malloc replacement), shared by every build that needs the same one.
//!
//! An entry is a directory whose `files.json`, written last, lists every file with its sha256.
//! It is built under a lock keyed by its directory (`<dir>.lock`, a bounded wait), into a temp
//! directory of [`crate::util::atomic`] (a [lease](crate::util::lease): a killed run's is
//! swept), and renamed into place without replacing anything; it is used only after every
//! file matches its digest. A complete entry is never removed: a run that finds one under the
//! lock uses it.

use crate::util::fs::sha256_file;
use crate::util::shell::Shell;
use crate::util::{atomic, owned};
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What kind of entry: what it holds, for messages, and the files it must have.
pub struct Kind {
    /// What the entry holds, as messages name it: "OpenSSL", "mimalloc".
    pub what: &'static str,
    /// Files (relative, '/'-separated) a complete entry must hold.
    pub required: &'static [&'static str],
}

const MANIFEST: &str = "files.json";

/// Every regular file below `dir`, as sorted paths relative to it ('/'-separated).
fn files_below(dir: &Path) -> Result<Vec<String>> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(base, &entry.path(), out)?;
            } else {
                let path = entry.path();
                let rel = path.strip_prefix(base).unwrap_or(&path);
                out.push(rel.to_string_lossy().into_owned());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out).with_context(|| format!("listing {}", dir.display()))?;
    out.sort();
    Ok(out)
}

/// Writes `path` unless it already holds `contents` (so cargo sees no change).
pub fn write_if_changed(path: &Path, contents: &str) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == contents.as_bytes()) {
        return Ok(());
    }
    // Its errors name the path (and a full disk as such).
    atomic::write_file(path, |w| Ok(w.write_all(contents.as_bytes())?))
}

/// The user's cache directory `<cache>/<sub>` for `what` ("mimalloc"), made private to the
/// user (0700) or checked to be: the cache root and every directory down to it must be the
/// user's and writable by no one else ([`owned::check_private`]), else a one-line refusal
/// naming the path and the fix. Returns the cache root and the directory.
pub fn user_dir(sub: &str, what: &str) -> Result<(PathBuf, PathBuf)> {
    let base = crate::memo::base().with_context(|| {
        format!("no cache directory for {what}: set CARGO_CONTAINERIZE_CACHE or HOME")
    })?;
    let dir = base.join(sub);
    owned::make_private_dir(&base, &dir)?;
    Ok((base, dir))
}

/// What to say after a C library's build under the cache failed, when the disk holding the
/// cache at `root` is (all but) full: cargo's own error is an "os error 28" among many lines.
pub fn disk_full_note(root: &Path) -> Option<String> {
    let free = atomic::free_bytes(root)?;
    (free < 64 << 20).then(|| {
        format!(
            "the disk holding the cache at {} is full ({} KiB free: no space left on device); free some space there or set CARGO_CONTAINERIZE_CACHE to a directory on another disk",
            root.display(),
            free >> 10
        )
    })
}

pub fn toml_string(s: &str) -> String {
    toml_edit::Value::from(s).to_string()
}

impl Kind {
    /// Writes `files.json`: every file's sha256; fails when a required file is missing.
    fn write_manifest(&self, dir: &Path) -> Result<()> {
        let mut files = Vec::new();
        for rel in files_below(dir)? {
            let digest = sha256_file(&dir.join(&rel)).with_context(|| format!("reading {rel}"))?;
            files.push((rel, digest));
        }
        for lib in self.required {
            if !files.iter().any(|(rel, _)| rel == lib) {
                bail!(
                    "the {} build wrote no {lib} in {}; report this at the tool's issue tracker with the build's output",
                    self.what,
                    dir.display()
                );
            }
        }
        std::fs::write(dir.join(MANIFEST), serde_json::to_vec_pretty(&files)?)
            .with_context(|| format!("writing {}", dir.join(MANIFEST).display()))
    }

    /// Refuses the entry `dir` of the cache at `base` unless it, everything in it and every
    /// directory from `base` down to it is the user's and writable by no one else: an entry
    /// another user could have planted (a library with their constructor and a matching
    /// `files.json`) is never used. An entry not there yet passes.
    pub fn check_trusted(&self, base: &Path, dir: &Path) -> Result<()> {
        owned::check_private_tree(base, dir)
    }

    /// Whether `dir` holds exactly the files its manifest lists, each with its digest, and
    /// every required file.
    pub fn complete(&self, dir: &Path) -> bool {
        let check = || -> Result<bool> {
            let listed: Vec<(String, String)> =
                serde_json::from_slice(&std::fs::read(dir.join(MANIFEST))?)?;
            let present: Vec<String> = files_below(dir)?
                .into_iter()
                .filter(|f| f != MANIFEST)
                .collect();
            if present.len() != listed.len()
                || present.iter().zip(&listed).any(|(p, (l, _))| p != l)
                || !self.required.iter().all(|r| present.iter().any(|f| f == r))
            {
                return Ok(false);
            }
            for (rel, digest) in &listed {
                if sha256_file(&dir.join(rel))? != *digest {
                    return Ok(false);
                }
            }
            Ok(true)
        };
        check().unwrap_or(false)
    }

    /// Makes the cache entry `dir` unless a complete one is there: under the entry's lock
    /// (`<dir>.lock`, waited on for at most `timeout`, or the lock timeout when None), a complete
    /// entry (another run's, made meanwhile) is used as it is; otherwise `build` fills a temp
    /// directory, its `files.json` is written, and it is renamed to `dir` without replacing
    /// anything. An incomplete entry (a damaged one: a rename leaves none) is moved aside and
    /// removed first. Returns whether this call built the entry.
    pub fn publish(
        &self,
        dir: &Path,
        timeout: Option<Duration>,
        shell: &Shell,
        build: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<bool> {
        let name = dir
            .file_name()
            .context("a cache entry has a name")?
            .to_string_lossy()
            .into_owned();
        let root = dir.parent().context("a cache entry has a parent")?;
        let lock_path = root.join(format!("{name}.lock"));
        let _lock = atomic::lock_file(
            &lock_path,
            &format!(
                "the lock on {} held by another cargo-containerize building {}",
                lock_path.display(),
                self.what
            ),
            timeout,
            shell,
        )?;
        if self.complete(dir) {
            return Ok(false);
        }
        if std::fs::symlink_metadata(dir).is_ok() {
            // Not complete, and no other run writes it while we hold the lock: moved into a temp
            // of ours (removed when it is dropped), never deleted in place.
            // Named as `create_dir`'s temps are, so a sweep beside `dir` removes it should this
            // run be killed before it is dropped.
            let aside = crate::util::lease::temp_dir_in(root, &format!(".{name}.tmp-"))
                .with_context(|| format!("creating a directory in {}", root.display()))?;
            crate::util::owned::rename(dir, &aside.path().join("old"))
                .with_context(|| format!("moving the incomplete {} aside", dir.display()))?;
        }
        let created = atomic::create_dir(dir, |out| {
            build(out)?;
            self.write_manifest(out)
        })
        .map_err(|e| {
            atomic::disk_full_remedy_with(e, dir, "set CARGO_CONTAINERIZE_CACHE to another disk")
        })?;
        if !created && self.complete(dir) {
            // Made meanwhile by a run that did not take the lock; ours is dropped.
            return Ok(false);
        }
        if !self.complete(dir) {
            bail!(
                "the {} just built for {} does not match its file list; check the disk (df, dmesg) and run again",
                self.what,
                dir.display()
            );
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENSSL: Kind = Kind {
        what: "OpenSSL",
        required: &[
            "lib/libssl.a",
            "lib/libcrypto.a",
            "include/openssl/opensslv.h",
        ],
    };

    #[test]
    fn the_manifest_catches_a_changed_missing_or_extra_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("lib")).unwrap();
        std::fs::create_dir_all(d.join("include/openssl")).unwrap();
        std::fs::write(d.join("lib/libssl.a"), "ssl").unwrap();
        std::fs::write(d.join("lib/libcrypto.a"), "crypto").unwrap();
        std::fs::write(d.join("include/openssl/opensslv.h"), "h").unwrap();
        assert!(!OPENSSL.complete(d), "no manifest yet");
        OPENSSL.write_manifest(d).unwrap();
        assert!(OPENSSL.complete(d));
        std::fs::write(d.join("lib/libssl.a"), "sst").unwrap();
        assert!(!OPENSSL.complete(d), "changed bytes");
        std::fs::write(d.join("lib/libssl.a"), "ssl").unwrap();
        std::fs::write(d.join("lib/extra.a"), "x").unwrap();
        assert!(!OPENSSL.complete(d), "an extra file");
        std::fs::remove_file(d.join("lib/extra.a")).unwrap();
        std::fs::remove_file(d.join("lib/libcrypto.a")).unwrap();
        assert!(!OPENSSL.complete(d), "a missing file");
    }

    /// What the helper's build script leaves in its output directory.
    fn fake_build(out: &Path) -> Result<()> {
        std::fs::create_dir_all(out.join("lib"))?;
        std::fs::create_dir_all(out.join("include/openssl"))?;
        std::fs::write(out.join("lib/libssl.a"), "ssl")?;
        std::fs::write(out.join("lib/libcrypto.a"), "crypto")?;
        std::fs::write(out.join("include/openssl/opensslv.h"), "h")?;
        Ok(())
    }

    fn inode(p: &Path) -> u64 {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap())
    }

    #[test]
    fn runs_publishing_one_entry_build_it_once_and_never_remove_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = root
            .path()
            .join("x86_64-unknown-linux-musl-3.5.4-0123456789abcdef");
        let builds = std::sync::atomic::AtomicUsize::new(0);
        let start = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    start.wait();
                    OPENSSL
                        .publish(
                            &dir,
                            Some(Duration::from_secs(60)),
                            &Shell::discard(),
                            |out| {
                                builds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                fake_build(out)
                            },
                        )
                        .unwrap();
                    // Whichever run built it, the entry is whole once publish returns.
                    assert!(OPENSSL.complete(&dir));
                });
            }
        });
        assert_eq!(
            builds.into_inner(),
            1,
            "the second run used the first's entry"
        );
        // A complete entry is used as it is: not rebuilt, not replaced.
        let before = inode(&dir);
        let built = OPENSSL
            .publish(
                &dir,
                Some(Duration::from_secs(1)),
                &Shell::discard(),
                |_| panic!("a complete entry is not built again"),
            )
            .unwrap();
        assert!(!built);
        assert_eq!(inode(&dir), before);
        // Only this entry's temps were made beside it, and none is left.
        let names: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "the entry and its lock file: {names:?}");
    }

    #[test]
    fn an_incomplete_entry_is_rebuilt_and_a_held_lock_times_out() {
        let root = tempfile::tempdir().unwrap();
        let dir = root
            .path()
            .join("x86_64-unknown-linux-musl-3.5.4-0123456789abcdef");
        fake_build(&dir).unwrap(); // no files.json: incomplete
        assert!(
            OPENSSL
                .publish(&dir, None, &Shell::discard(), fake_build)
                .unwrap()
        );
        assert!(OPENSSL.complete(&dir));
        // Another run holds the entry's lock: the wait is bounded and names the lock.
        let lock = root
            .path()
            .join("x86_64-unknown-linux-musl-3.5.4-0123456789abcdef.lock");
        let holder = std::fs::File::open(&lock).unwrap();
        assert!(crate::util::lease::try_lock(&holder).unwrap());
        let e = OPENSSL
            .publish(
                &dir,
                Some(Duration::from_millis(50)),
                &Shell::discard(),
                fake_build,
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("timed out after 50ms waiting for the lock on")
                && e.contains("building OpenSSL")
                && e.contains("CARGO_CONTAINERIZE_LOCK_TIMEOUT"),
            "{e}"
        );
    }
}
