//! Remembers what `cargo metadata` answered, so that a rerun with nothing changed skips it
//! (it is most of a no-op run's time). The answer is keyed by the command line, the working
//! directory and cargo's environment, and is used only while every file that could change it
//! (manifests of path packages, Cargo.lock, cargo config files) has the size and mtime it had
//! and the binary targets cargo finds by itself (`src/main.rs`, `src/bin`) are the same ones:
//! editing a source file keeps the answer.

use super::{CargoArgs, Project};
use crate::memo::Watch;
use crate::util::shell::Shell;
use std::path::PathBuf;

fn key(args: &CargoArgs, resolve: bool) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    let env: String = [
        "CARGO",
        "CARGO_HOME",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTUP_TOOLCHAIN",
    ]
    .iter()
    .map(|var| format!("{var}={:?};", std::env::var_os(var)))
    .collect();
    crate::memo::key(&[
        &[resolve as u8],
        format!("{args:?}").as_bytes(),
        cwd.as_os_str().as_encoded_bytes(),
        env.as_bytes(),
    ])
}

/// The files whose change could change the answer for `project`, and what of each.
pub fn watched_paths(project: &Project, path_manifests: &[PathBuf]) -> Vec<(PathBuf, Watch)> {
    let mut watched: Vec<(PathBuf, Watch)> = Vec::new();
    // Binary targets cargo discovers by itself: adding or removing one changes the answer,
    // editing one does not (so the edit-to-image loop does not run `cargo metadata` again).
    for manifest in path_manifests {
        if let Some(dir) = manifest.parent() {
            watched.push((dir.join("src/main.rs"), Watch::Presence));
            watched.push((dir.join("src/bin"), Watch::Listing));
        }
    }
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
    watched.extend(paths.into_iter().map(|p| (p, Watch::Contents)));
    watched
}

pub fn get(args: &CargoArgs, resolve: bool, shell: &Shell) -> Option<Project> {
    crate::memo::get("metadata", &key(args, resolve), shell)
}

pub fn put(
    args: &CargoArgs,
    resolve: bool,
    project: &Project,
    watched: &[(PathBuf, Watch)],
    shell: &Shell,
) {
    crate::memo::put_watching("metadata", &key(args, resolve), project, watched, shell);
}
