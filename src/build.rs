//! Stage 2 — the builder: `cargo build` for a musl target, reproducibly.
//!
//! Checks the Rust target is installed (or installs it with --install-target), finds a musl C
//! compiler when the crate compiles C code, remaps the workspace, target and cargo-home paths so
//! two checkouts give byte-identical binaries, and asks cargo where it put the executable.

use crate::metadata::{CargoArgs, Project};
use crate::platform::Platform;
use anyhow::{Context, Result, bail};
use cargo_metadata::{Message, TargetKind};
use std::ffi::OsString;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What the builder needs beyond the project.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub platform: Platform,
    pub strip: bool,
    pub install_target: bool,
    pub quiet: bool,
}

/// The binary the builder produced.
#[derive(Debug, Clone)]
pub struct Built {
    pub path: PathBuf,
    pub platform: Platform,
}

fn rustc() -> OsString {
    std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into())
}

fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Whether the toolchain that builds in `dir` has the standard library for `triple`.
fn target_installed(dir: &Path, triple: &str) -> Result<bool> {
    let out = Command::new(rustc())
        .args(["--print", "sysroot"])
        .current_dir(dir)
        .stderr(Stdio::null())
        .output()
        .context("running rustc; install Rust with rustup (https://rustup.rs)")?;
    if !out.status.success() {
        bail!("`rustc --print sysroot` failed; check your Rust installation (rustup show)");
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok(sysroot
        .join("lib/rustlib")
        .join(triple)
        .join("lib")
        .is_dir())
}

fn ensure_target(dir: &Path, triple: &str, install: bool, quiet: bool) -> Result<()> {
    if target_installed(dir, triple)? {
        return Ok(());
    }
    if !install {
        bail!(
            "the Rust target {triple} is not installed; run `rustup target add {triple}` (or pass --install-target)"
        );
    }
    if !quiet {
        eprintln!("    Installing Rust target {triple} (rustup target add {triple})");
    }
    let status = Command::new("rustup")
        .args(["target", "add", triple])
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .context("running rustup; --install-target needs rustup on PATH")?;
    if !status.success() || !target_installed(dir, triple)? {
        bail!(
            "`rustup target add {triple}` failed; run it by hand to see why, or install the target another way"
        );
    }
    Ok(())
}

/// The environment that lets cc-rs compile C for a musl target, or an error naming what to
/// install when nothing can.
fn c_compiler_env(project: &Project, platform: Platform) -> Result<Vec<(String, OsString)>> {
    if !project.compiles_c {
        return Ok(vec![]);
    }
    let triple = platform.musl_triple();
    let var = format!("CC_{}", triple.replace('-', "_"));
    if std::env::var_os(&var).is_some() || std::env::var_os(format!("CC_{triple}")).is_some() {
        return Ok(vec![]); // the user chose a compiler; respect it
    }
    let candidates: &[&str] = match (platform, Platform::host()) {
        (p, Some(h)) if p == h => &["musl-gcc"],
        (Platform::Amd64, _) => &["x86_64-linux-musl-gcc"],
        (Platform::Arm64, _) => &["aarch64-linux-musl-gcc"],
    };
    for c in candidates {
        if let Ok(path) = which::which(c) {
            return Ok(vec![(var, path.into_os_string())]);
        }
    }
    bail!(
        "package `{}` compiles C code (it depends on the cc crate) and no musl C compiler for {triple} was found; install one ({}) or set {var}",
        project.package.name,
        if candidates == ["musl-gcc"] {
            "apt-get install musl-tools".to_string()
        } else {
            format!("{} on PATH", candidates.join(" or "))
        }
    )
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::home_dir().map(|h| h.join(".cargo")))
}

/// `--remap-path-prefix` flags, least specific first (rustc lets the last match win).
fn remap_flags(project: &Project) -> Vec<String> {
    let mut maps: Vec<(PathBuf, &str)> = vec![(project.workspace_root.clone(), "/build")];
    if let Some(home) = cargo_home() {
        maps.push((home, "/cargo"));
    }
    maps.push((project.target_dir.clone(), "/build/target"));
    maps.sort_by_key(|(p, _)| p.as_os_str().len());
    maps.into_iter()
        .map(|(from, to)| format!("--remap-path-prefix={}={to}", from.display()))
        .collect()
}

/// Builds the project's binary for one platform.
pub fn build(project: &Project, cargo_args: &CargoArgs, opts: &BuildOptions) -> Result<Built> {
    let triple = opts.platform.musl_triple();
    ensure_target(
        &project.package_root,
        triple,
        opts.install_target,
        opts.quiet,
    )?;
    let cc_env = c_compiler_env(project, opts.platform)?;

    let mut cmd = Command::new(cargo());
    cmd.arg("build")
        .args(["--target", triple])
        .args(["--profile", &cargo_args.profile])
        .args(["--package", project.package.name.as_str()])
        .args(["--bin", &project.bin])
        .arg("--message-format=json-render-diagnostics")
        .args(cargo_args.common_flags())
        .args(cargo_args.feature_flags())
        .arg("--target-dir")
        .arg(&project.target_dir)
        .current_dir(&project.package_root)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if opts.quiet {
        cmd.arg("--quiet");
    }
    if opts.strip {
        cmd.args([
            "--config",
            &format!("profile.{}.strip=\"symbols\"", cargo_args.profile),
        ]);
    }
    let remap = remap_flags(project);
    // RUSTFLAGS in the environment replaces every config-file rustflags; keep the user's and add
    // ours. Otherwise pass ours as config, which cargo merges with the user's own target rustflags.
    if let Some(encoded) = std::env::var_os("CARGO_ENCODED_RUSTFLAGS") {
        let mut flags = encoded.into_string().unwrap_or_default();
        for f in &remap {
            if !flags.is_empty() {
                flags.push('\x1f');
            }
            flags.push_str(f);
        }
        cmd.env("CARGO_ENCODED_RUSTFLAGS", flags);
    } else if let Ok(user) = std::env::var("RUSTFLAGS") {
        cmd.env("RUSTFLAGS", format!("{user} {}", remap.join(" ")));
    } else {
        let list = remap
            .iter()
            .map(|f| format!("{f:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        cmd.args(["--config", &format!("target.{triple}.rustflags=[{list}]")]);
    }
    for (k, v) in cc_env {
        cmd.env(k, v);
    }

    if !opts.quiet {
        eprintln!(
            "    Building {} ({}) for {} ({triple}, profile {})",
            project.bin, project.package.name, opts.platform, cargo_args.profile
        );
    }
    let mut child = cmd.spawn().context("running cargo; is it on PATH?")?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut exe = None;
    for msg in Message::parse_stream(BufReader::new(stdout)) {
        if let Ok(Message::CompilerArtifact(a)) = msg
            && a.target.name == project.bin
            && a.target.kind.contains(&TargetKind::Bin)
            && let Some(path) = a.executable
        {
            exe = Some(path.into_std_path_buf());
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!(
            "cargo build for {triple} failed (its errors are above); fix them, then run cargo containerize again"
        );
    }
    let path = exe.with_context(|| {
        format!(
            "cargo build succeeded but reported no executable for bin `{}`",
            project.bin
        )
    })?;
    Ok(Built {
        path,
        platform: opts.platform,
    })
}
