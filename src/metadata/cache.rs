//! Remembers what `cargo metadata` answered, so that a rerun with nothing changed skips it
//! (it is most of a no-op run's time). The answer is keyed by the command line, the working
//! directory and cargo's environment, and is used only while every file that could change it
//! (manifests of path packages, Cargo.lock, cargo config files) has the size and mtime it had.

use super::{CargoArgs, Project};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Watched {
    path: PathBuf,
    /// (length, mtime in ns), or None when the file did not exist.
    stamp: Option<(u64, i128)>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    watched: Vec<Watched>,
    project: Project,
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

fn dir() -> Option<PathBuf> {
    let base = std::env::var_os("CARGO_CONTAINERIZE_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("cargo-containerize"))
        })
        .or_else(|| std::env::home_dir().map(|h| h.join(".cache/cargo-containerize")))?;
    Some(base.join("metadata"))
}

fn key(args: &CargoArgs, resolve: bool) -> String {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION"));
    h.update([resolve as u8]);
    h.update(format!("{args:?}"));
    h.update(
        std::env::current_dir()
            .unwrap_or_default()
            .as_os_str()
            .as_encoded_bytes(),
    );
    for var in [
        "CARGO",
        "CARGO_HOME",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTUP_TOOLCHAIN",
    ] {
        h.update(format!("{var}={:?};", std::env::var_os(var)));
    }
    hex::encode(h.finalize())
}

/// The files whose change could change the answer for `project`.
pub fn watched_paths(project: &Project, path_manifests: &[PathBuf]) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = path_manifests.to_vec();
    paths.push(project.workspace_root.join("Cargo.toml"));
    paths.push(project.workspace_root.join("Cargo.lock"));
    let cwd = std::env::current_dir().unwrap_or_default();
    for start in [cwd.as_path(), project.workspace_root.as_path()] {
        for dir in start.ancestors() {
            paths.push(dir.join(".cargo/config.toml"));
            paths.push(dir.join(".cargo/config"));
        }
    }
    if let Some(home) = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::home_dir().map(|h| h.join(".cargo")))
    {
        paths.push(home.join("config.toml"));
        paths.push(home.join("config"));
    }
    paths.sort();
    paths.dedup();
    paths
}

pub fn get(args: &CargoArgs, resolve: bool) -> Option<Project> {
    let bytes = std::fs::read(dir()?.join(key(args, resolve))).ok()?;
    let entry: Entry = serde_json::from_slice(&bytes).ok()?;
    entry
        .watched
        .iter()
        .all(|w| stamp(&w.path) == w.stamp)
        .then_some(entry.project)
}

/// Files changed less than this long ago are not trusted: an edit made while cargo metadata ran
/// could share their coarse mtime (git calls these "racily clean").
const FRESH_NS: i128 = 2_000_000_000;

/// Best effort: a cache that cannot be written only costs the next run some time.
pub fn put(args: &CargoArgs, resolve: bool, project: &Project, watched: &[PathBuf]) {
    let Some(dir) = dir() else { return };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let entry = Entry {
        watched: watched
            .iter()
            .map(|p| Watched {
                path: p.clone(),
                stamp: stamp(p),
            })
            .collect(),
        project: project.clone(),
    };
    if entry
        .watched
        .iter()
        .any(|w| w.stamp.is_some_and(|(_, mtime)| now - mtime < FRESH_NS))
    {
        return;
    }
    let Ok(tmp) = tempfile::NamedTempFile::new_in(&dir) else {
        return;
    };
    if serde_json::to_writer(&tmp, &entry).is_ok() {
        let _ = tmp.persist(dir.join(key(args, resolve)));
    }
}
