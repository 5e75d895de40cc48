//! Answers remembered in the user's cache (`$CARGO_CONTAINERIZE_CACHE`, else
//! `$XDG_CACHE_HOME/cargo-containerize`, else `~/.cache/cargo-containerize`), each used only while
//! every file that could change it has the size and mtime it had. This is how a no-op rerun
//! skips `cargo metadata`, `rustc --print sysroot` and the compressor check.
//!
//! Files changed less than two seconds before an answer is stored are not trusted: an edit in
//! the same coarse timestamp tick would go unseen (git calls these "racily clean"), so such an
//! answer is simply not stored.

use crate::util::shell::Shell;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Watched {
    path: PathBuf,
    /// (length, mtime in ns), or None when the file did not exist.
    stamp: Option<(u64, i128)>,
}

#[derive(Serialize, Deserialize)]
struct Entry<T> {
    watched: Vec<Watched>,
    value: T,
}

const FRESH_NS: i128 = 2_000_000_000;

/// How an answer being written is named beside the answers: `.answer.tmp-PID-START-XXXXXX`,
/// a [lease](crate::util::lease) of the run writing it (answers are named by hex keys).
const TEMP_PREFIX: &str = ".answer.tmp-";

fn stamp(p: &Path) -> Option<(u64, i128)> {
    let m = std::fs::metadata(p).ok()?;
    let t = m.modified().ok()?;
    let ns = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    Some((m.len(), ns))
}

/// The user's cache root, absolute: a relative `CARGO_CONTAINERIZE_CACHE` is taken from the
/// directory the tool was started in, once, where the variable is read (cargo runs the
/// helpers' builds from other directories).
pub(crate) fn base() -> Option<PathBuf> {
    static BASE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let chosen = std::env::var_os(crate::util::CACHE_VAR)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME")
                    .filter(|v| !v.is_empty())
                    .map(|d| PathBuf::from(d).join("cargo-containerize"))
            })
            .or_else(|| std::env::home_dir().map(|h| h.join(".cache/cargo-containerize")))?;
        std::path::absolute(chosen).ok()
    })
    .clone()
}

/// Whether the answers under `base/space` may be read and written: only when the cache root
/// and the directory are the user's and no one else can write them (see
/// [`crate::util::owned::check_private`]); otherwise answers are neither used nor stored, and
/// one warning per run says why.
fn trusted(base: &Path, space: &str, shell: &Shell) -> bool {
    match crate::util::owned::make_private_dir(base, &base.join(space)) {
        Ok(()) => true,
        Err(e) => {
            shell.warn_once("memo untrusted", || {
                format!("{e:#}; remembered answers are not used meanwhile")
            });
            false
        }
    }
}

/// A key from parts: the tool's version, then each part length-prefixed.
pub fn key(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION"));
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

pub fn get<T: DeserializeOwned>(space: &str, key: &str, shell: &Shell) -> Option<T> {
    get_in(&base()?, space, key, shell)
}

/// Best effort: an answer that cannot be stored only costs the next run some time.
pub fn put<T: Serialize>(space: &str, key: &str, value: &T, watched: &[PathBuf], shell: &Shell) {
    if let Some(base) = base() {
        put_in(&base, space, key, value, watched, shell);
    }
}

fn get_in<T: DeserializeOwned>(base: &Path, space: &str, key: &str, shell: &Shell) -> Option<T> {
    if !trusted(base, space, shell) {
        return None;
    }
    let path = base.join(space).join(key);
    let bytes = std::fs::read(&path).ok()?;
    // Sealed like the layer cache's entries: a damaged answer is never used.
    let Some(json) = crate::blobs::unseal(&bytes) else {
        // An answer of an older version (plain JSON) is simply replaced.
        if bytes.first() != Some(&b'{') {
            shell.warn(format!(
                "cache file {} is damaged (it does not match its checksum); removed it",
                path.display()
            ));
            let _ = crate::util::owned::remove_file(base, &path, crate::util::owned::Name::Digest);
        }
        return None;
    };
    let entry: Entry<T> = serde_json::from_slice(json).ok()?;
    entry
        .watched
        .iter()
        .all(|w| stamp(&w.path) == w.stamp)
        .then_some(entry.value)
}

fn put_in<T: Serialize>(
    base: &Path,
    space: &str,
    key: &str,
    value: &T,
    watched: &[PathBuf],
    shell: &Shell,
) {
    let dir = base.join(space);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    let entry = Entry {
        watched: watched
            .iter()
            .map(|p| Watched {
                path: p.clone(),
                stamp: stamp(p),
            })
            .collect(),
        value,
    };
    if entry
        .watched
        .iter()
        .any(|w| w.stamp.is_some_and(|(_, mtime)| now - mtime < FRESH_NS))
    {
        return;
    }
    if !trusted(base, space, shell) {
        return;
    }
    // Temps of runs killed here before (SIGKILL) go first; see `crate::util::lease`.
    crate::util::lease::sweep(&dir, TEMP_PREFIX);
    let Ok(mut tmp) = crate::util::lease::temp_file_in(&dir, TEMP_PREFIX) else {
        return;
    };
    if let Ok(bytes) = serde_json::to_vec(&entry)
        && tmp.write_all(&crate::blobs::seal(&bytes)).is_ok()
    {
        let _ = crate::util::owned::persist(tmp, &dir.join(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_follow_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("cache");
        let f = dir.path().join("Cargo.toml");
        std::fs::write(&f, "a").unwrap();
        put_in(
            &base,
            "t",
            "k",
            &1u32,
            std::slice::from_ref(&f),
            &Shell::discard(),
        );
        assert_eq!(
            get_in::<u32>(&base, "t", "k", &Shell::discard()),
            None,
            "a fresh file is not trusted"
        );
        // Age the file, then store.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(10);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(old)
            .unwrap();
        put_in(
            &base,
            "t",
            "k",
            &1u32,
            std::slice::from_ref(&f),
            &Shell::discard(),
        );
        assert_eq!(get_in::<u32>(&base, "t", "k", &Shell::discard()), Some(1));
        std::fs::write(&f, "bb").unwrap();
        assert_eq!(
            get_in::<u32>(&base, "t", "k", &Shell::discard()),
            None,
            "a changed file invalidates"
        );
    }

    #[test]
    fn a_killed_runs_temp_goes_with_the_next_answer_stored() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("cache");
        put_in(&base, "t", "k", &1u32, &[], &Shell::discard());
        // What a run killed between writing a temp and renaming it leaves (nobody holds it).
        let leftover = base.join("t/.answer.tmp-4194304-1-AbCdEf");
        std::fs::write(&leftover, b"{").unwrap();
        put_in(&base, "t", "k2", &2u32, &[], &Shell::discard());
        assert!(!leftover.exists());
        assert_eq!(
            get_in::<u32>(&base, "t", "k", &Shell::discard()),
            Some(1),
            "an answer was swept"
        );
        assert_eq!(get_in::<u32>(&base, "t", "k2", &Shell::discard()), Some(2));
    }

    #[test]
    fn a_damaged_answer_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("cache");
        let k = &"cd".repeat(32); // answers are named by hex keys (`key`)
        put_in(&base, "t", k, &"65532:65532", &[], &Shell::discard());
        let path = base.join("t").join(k);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("65532:", "65533:")).unwrap();
        assert_eq!(get_in::<String>(&base, "t", k, &Shell::discard()), None);
        assert!(!path.exists(), "a damaged answer was kept");
    }
}
