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
    /// What [`Watch`] says of it: (length, mtime in ns) of its contents, or None when it did
    /// not exist.
    stamp: Option<(u64, i128)>,
    #[serde(default)]
    watch: Watch,
}

/// What of a watched path an answer depends on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Watch {
    /// Its contents: size and mtime (a manifest, a lock file, a config file).
    #[default]
    Contents,
    /// Only whether it is there, and whether as a directory: `src/main.rs`, whose presence
    /// makes a binary target, and whose every edit must not cost a `cargo metadata`.
    Presence,
    /// The names in a directory, and which of its subdirectories hold a `main.rs`: `src/bin`,
    /// whose files and `*/main.rs` are binary targets.
    Listing,
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

fn stamp_as(p: &Path, watch: Watch) -> Option<(u64, i128)> {
    match watch {
        Watch::Contents => stamp(p),
        Watch::Presence => std::fs::metadata(p).ok().map(|m| (m.is_dir() as u64, 0)),
        Watch::Listing => {
            let mut names: Vec<String> = std::fs::read_dir(p)
                .ok()?
                .filter_map(|e| e.ok())
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if e.path().join("main.rs").is_file() {
                        format!("{name}/main.rs")
                    } else {
                        name
                    }
                })
                .collect();
            names.sort();
            let mut h = Sha256::new();
            for n in &names {
                h.update((n.len() as u64).to_le_bytes());
                h.update(n.as_bytes());
            }
            let digest = h.finalize();
            let mut first = [0u8; 16];
            first.copy_from_slice(&digest[..16]);
            Some((names.len() as u64, i128::from_le_bytes(first)))
        }
    }
}

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
    let watched: Vec<(PathBuf, Watch)> = watched
        .iter()
        .map(|p| (p.clone(), Watch::Contents))
        .collect();
    put_watching(space, key, value, &watched, shell);
}

/// [`put`], each path watched as its [`Watch`] says.
pub fn put_watching<T: Serialize>(
    space: &str,
    key: &str,
    value: &T,
    watched: &[(PathBuf, Watch)],
    shell: &Shell,
) {
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
        .all(|w| stamp_as(&w.path, w.watch) == w.stamp)
        .then_some(entry.value)
}

fn put_in<T: Serialize>(
    base: &Path,
    space: &str,
    key: &str,
    value: &T,
    watched: &[(PathBuf, Watch)],
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
            .map(|(p, watch)| Watched {
                path: p.clone(),
                stamp: stamp_as(p, *watch),
                watch: *watch,
            })
            .collect(),
        value,
    };
    // Only a contents stamp can miss an edit in the same timestamp tick.
    if entry.watched.iter().any(|w| {
        w.watch == Watch::Contents && w.stamp.is_some_and(|(_, mtime)| now - mtime < FRESH_NS)
    }) {
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
            &[(f.clone(), Watch::Contents)],
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
            &[(f.clone(), Watch::Contents)],
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

    /// `src/main.rs` watched for presence: an edit (just now, even) keeps the answer, and
    /// removing it does not; `src/bin` watched as a listing: editing a file keeps it, adding
    /// a file or a `*/main.rs` does not.
    #[test]
    fn presence_and_listing_ignore_edits_but_not_new_or_gone_targets() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("cache");
        let main = dir.path().join("main.rs");
        let bin = dir.path().join("bin");
        std::fs::write(&main, "fn main() {}").unwrap();
        std::fs::create_dir_all(bin.join("tool")).unwrap();
        std::fs::write(bin.join("a.rs"), "fn main() {}").unwrap();
        let watched = [
            (main.clone(), Watch::Presence),
            (bin.clone(), Watch::Listing),
        ];
        let store = || put_in(&base, "t", "k", &1u32, &watched, &Shell::discard());
        let get = || get_in::<u32>(&base, "t", "k", &Shell::discard());
        store();
        assert_eq!(
            get(),
            Some(1),
            "files written just now are no reason to wait"
        );
        std::fs::write(&main, "fn main() { println!(); }").unwrap();
        std::fs::write(bin.join("a.rs"), "fn main() { println!(); }").unwrap();
        assert_eq!(get(), Some(1), "edits keep the answer");
        std::fs::write(bin.join("tool/main.rs"), "fn main() {}").unwrap();
        assert_eq!(get(), None, "a new src/bin/*/main.rs is a new target");
        store();
        std::fs::write(bin.join("b.rs"), "fn main() {}").unwrap();
        assert_eq!(get(), None, "a new src/bin/*.rs is a new target");
        store();
        std::fs::remove_file(&main).unwrap();
        assert_eq!(get(), None, "src/main.rs gone");
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
