//! What a build ran, for documents about it (provenance): the cargo command line per platform
//! and the compiler's version. Asked after the build, from the same functions the build uses,
//! so the answer is the command that ran; nothing here changes how the build runs.

use super::{cargo_home, rustc, toolchain_files};
use crate::metadata::Project;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The arguments of a cargo run as it ran, with the local paths written as `$WORKSPACE`,
/// `$TARGET_DIR`, `$CARGO_HOME` and `$CACHE` (the tool's cache), so the answer is the same
/// from any checkout and still says what ran. The program is `cargo`; environment variables
/// are left out (they may hold the user's secrets), and so are options that only change what
/// cargo prints (`--quiet`, colour).
pub(super) fn describe(project: &Project, cmd: &Command) -> Vec<String> {
    let mut maps: Vec<(String, &str)> = vec![
        (project.workspace_root.display().to_string(), "$WORKSPACE"),
        (project.target_dir.display().to_string(), "$TARGET_DIR"),
    ];
    if let Some(home) = cargo_home() {
        maps.push((home.display().to_string(), "$CARGO_HOME"));
    }
    if let Some(cache) = crate::memo::base() {
        maps.push((cache.display().to_string(), "$CACHE"));
    }
    // Most specific first: the target directory usually lies inside the workspace.
    maps.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    let remap = |a: &str| {
        maps.iter()
            .fold(a.to_string(), |s, (from, to)| s.replace(from.as_str(), to))
    };
    std::iter::once("cargo".to_string())
        .chain(
            cmd.get_args()
                .map(|a| remap(&a.to_string_lossy()))
                // What only changes what cargo prints: -q must not change the provenance.
                .filter(|a| a != "--color=always" && a != "--quiet"),
        )
        .collect()
}

/// `rustc -vV` of the toolchain that builds in `dir`, as printed (release, commit, host, LLVM).
/// Waits at most 30 s; remembered like the sysroot while rustup's settings and every
/// rust-toolchain file that could apply are unchanged.
pub fn rustc_version(dir: &Path, shell: &crate::util::shell::Shell) -> Result<String> {
    let custom_rustc = std::env::var_os("RUSTC").is_some();
    let cwd = std::env::current_dir().unwrap_or_default();
    let env: String = ["RUSTC", "RUSTUP_TOOLCHAIN", "RUSTUP_HOME", "PATH"]
        .iter()
        .map(|v| format!("{v}={:?};", std::env::var_os(v)))
        .collect();
    let key = crate::memo::key(&[
        b"rustc -vV",
        dir.as_os_str().as_encoded_bytes(),
        cwd.as_os_str().as_encoded_bytes(),
        env.as_bytes(),
    ]);
    if !custom_rustc && let Some(v) = crate::memo::get::<String>("rustc-version", &key, shell) {
        return Ok(v);
    }
    let mut cmd = Command::new(rustc());
    cmd.arg("-vV").current_dir(dir);
    let wait = Duration::from_secs(30);
    let out = match crate::util::process::run_bounded(&mut cmd, b"", wait)
        .context("running rustc; install Rust with rustup (https://rustup.rs)")?
    {
        crate::util::process::Outcome::Finished(f) if f.status.success() => f.stdout,
        crate::util::process::Outcome::Finished(_) => {
            bail!("`rustc -vV` failed; check your Rust installation (rustup show)")
        }
        crate::util::process::Outcome::TimedOut => bail!(
            "`rustc -vV` did not answer within {}s; check your Rust installation (rustup show)",
            wait.as_secs()
        ),
    };
    let version = String::from_utf8_lossy(&out).trim().to_string();
    if !custom_rustc {
        crate::memo::put(
            "rustc-version",
            &key,
            &version,
            &toolchain_files(dir, &cwd),
            shell,
        );
    }
    Ok(version)
}
