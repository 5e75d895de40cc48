//! Stage 2 — the builder: `cargo build` for a musl target, reproducibly.
//!
//! Checks the Rust target is installed (or installs it with --install-target), finds a musl C
//! compiler when the crate compiles C code, remaps the workspace, target and cargo-home paths so
//! two checkouts give byte-identical binaries, and asks cargo where it put the executable.

pub mod allocator;
pub mod auditable;
pub mod cached;
pub mod cc;
pub mod diagnose;
mod helper_crate;
pub mod invocation;
pub mod openssl;
pub mod preflight;

use crate::metadata::values::Allocator;
use crate::metadata::{CargoArgs, Project};
use crate::platform::Platform;
use crate::util::shell::Shell;
use anyhow::{Context, Result, bail};
use cargo_metadata::{Message, TargetKind};
use std::ffi::OsString;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// What the builder needs beyond the project.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub platforms: Vec<Platform>,
    pub strip: bool,
    pub install_target: bool,
    /// The image's epoch (`SOURCE_DATE_EPOCH`, else HEAD's commit time, else 0), handed to
    /// cargo as `SOURCE_DATE_EPOCH` unless the user set that variable.
    pub source_date_epoch: u64,
    /// The malloc linked into the binary.
    pub allocator: Allocator,
    /// Link the binary's dependency list into it ([`auditable`]; the `auditable` setting).
    pub auditable: bool,
}

/// The binary the builder produced.
#[derive(Debug, Clone)]
pub struct Built {
    pub path: PathBuf,
    pub platform: Platform,
    /// The cargo command that built it, as [`invocation::describe`] writes it; None for a
    /// prebuilt binary.
    pub cargo_argv: Option<Vec<String>>,
}

/// Which program drives the build of one platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    Cargo,
    /// cargo-zigbuild: zig as the C compiler and linker for any target.
    Zigbuild,
}

/// How one platform is built.
#[derive(Debug, Clone)]
struct Plan {
    platform: Platform,
    driver: Driver,
    env: Vec<(String, OsString)>,
    /// rustc arguments for the binary's own crate only, never its dependencies: what the tool
    /// links into the binary (its dependency list, a malloc replacement). A plan with any is
    /// built alone, through `cargo rustc … -- ARGS`, because cargo passes such arguments to
    /// every target of one run and each target needs its own.
    final_args: Vec<String>,
}

fn rustc() -> OsString {
    std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into())
}

pub(crate) fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The cargo a build runs, and what goes into its environment for it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CargoProgram {
    program: OsString,
    env: Vec<(&'static str, OsString)>,
}

/// The cargo that builds in `dir`. Run as `cargo containerize`, that is `$CARGO`, the
/// toolchain's own cargo. Run directly, `cargo` on PATH is usually rustup's proxy, which works
/// the toolchain out again on every run: about 8 ms, a third of a no-op rerun. When both
/// `cargo` and `rustc` on PATH are the proxy of one rustup, and the toolchain it picks for
/// `dir` (the sysroot [`sysroot`] remembers while rustup's settings, every rust-toolchain file
/// that could apply, and RUSTUP_TOOLCHAIN, RUSTUP_HOME and PATH stay the same) is one of that
/// rustup's own (`<RUSTUP_HOME>/toolchains/NAME`), its cargo runs directly, with the variables
/// the proxy would set: CARGO_HOME, RUSTUP_HOME, RUSTUP_TOOLCHAIN and LD_LIBRARY_PATH. In every
/// other case (RUSTC or CARGO set, no rustup, a linked or custom toolchain) `cargo` runs as
/// before.
fn cargo_program(dir: &Path, shell: &Shell) -> CargoProgram {
    let through_path = CargoProgram {
        program: cargo(),
        env: Vec::new(),
    };
    if env_set("CARGO") || env_set("RUSTC") {
        return through_path;
    }
    direct_cargo(dir, shell).unwrap_or(through_path)
}

fn direct_cargo(dir: &Path, shell: &Shell) -> Option<CargoProgram> {
    let proxy = which::which("cargo").ok()?;
    let rustc_proxy = which::which("rustc").ok()?;
    if proxy.parent() != rustc_proxy.parent()
        || !is_rustup_proxy(&proxy)
        || !is_rustup_proxy(&rustc_proxy)
    {
        return None;
    }
    let rustup_home = rustup_home()?;
    let root = sysroot(dir, shell).ok()?;
    let toolchains = rustup_home.join("toolchains").canonicalize().ok()?;
    if root.parent()?.canonicalize().ok()? != toolchains {
        return None;
    }
    let name = root.file_name()?.to_os_string();
    let program = root
        .join("bin")
        .join(format!("cargo{}", std::env::consts::EXE_SUFFIX));
    if !program.is_file() {
        return None;
    }
    // What rustup's proxy puts into the environment of the program it runs.
    let mut library_path = std::ffi::OsString::from(root.join("lib"));
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH").filter(|v| !v.is_empty()) {
        library_path.push(":");
        library_path.push(old);
    }
    let mut env = vec![
        ("RUSTUP_HOME", rustup_home.into_os_string()),
        ("RUSTUP_TOOLCHAIN", name),
        ("LD_LIBRARY_PATH", library_path),
    ];
    if let Some(home) = cargo_home() {
        env.push(("CARGO_HOME", home.into_os_string()));
    }
    Some(CargoProgram {
        program: program.into_os_string(),
        env,
    })
}

/// rustup's home: `RUSTUP_HOME`, else `~/.rustup`.
fn rustup_home() -> Option<PathBuf> {
    std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::home_dir().map(|h| h.join(".rustup")))
}

/// Whether `path` is one of rustup's proxies: a link to the `rustup` beside it, symbolic (as
/// rustup-init makes them on Unix) or hard.
fn is_rustup_proxy(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(dir) = path.parent() else {
        return false;
    };
    let rustup = dir.join(format!("rustup{}", std::env::consts::EXE_SUFFIX));
    match (std::fs::metadata(path), std::fs::metadata(&rustup)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The sysroot of the toolchain that builds in `dir`.
fn sysroot(dir: &Path, shell: &Shell) -> Result<PathBuf> {
    // Run as `cargo containerize`, CARGO is the toolchain's own cargo, <sysroot>/bin/cargo:
    // that answers without starting rustc through the rustup proxy.
    if std::env::var_os("RUSTC").is_none()
        && let Some(root) = std::env::var_os("CARGO")
            .map(PathBuf::from)
            .and_then(|c| Some(c.parent()?.parent()?.to_path_buf()))
        && root.join("lib/rustlib").is_dir()
        && root
            .join("bin")
            .join(format!("rustc{}", std::env::consts::EXE_SUFFIX))
            .is_file()
    {
        return Ok(root);
    }
    // Asking rustc costs a rustup proxy and a compiler start: remember the answer while rustup's
    // settings and every rust-toolchain file that could apply are unchanged.
    let custom_rustc = std::env::var_os("RUSTC").is_some();
    let cwd = std::env::current_dir().unwrap_or_default();
    let env: String = ["RUSTUP_TOOLCHAIN", "RUSTUP_HOME", "PATH"]
        .iter()
        .map(|v| format!("{v}={:?};", std::env::var_os(v)))
        .collect();
    let key = crate::memo::key(&[
        dir.as_os_str().as_encoded_bytes(),
        cwd.as_os_str().as_encoded_bytes(),
        env.as_bytes(),
    ]);
    if !custom_rustc
        && let Some(root) = crate::memo::get::<PathBuf>("sysroot", &key, shell)
        && root.join("lib/rustlib").is_dir()
    {
        return Ok(root);
    }
    let out = Command::new(rustc())
        .args(["--print", "sysroot"])
        .current_dir(dir)
        .stderr(Stdio::null())
        .output()
        .context("running rustc; install Rust with rustup (https://rustup.rs)")?;
    if !out.status.success() {
        bail!("`rustc --print sysroot` failed; check your Rust installation (rustup show)");
    }
    let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !custom_rustc {
        crate::memo::put("sysroot", &key, &root, &toolchain_files(dir, &cwd), shell);
    }
    Ok(root)
}

/// The files whose change can change which toolchain builds in `dir` (run from `cwd`):
/// rustup's settings, and every `rust-toolchain` / `rust-toolchain.toml` that could apply.
/// What the toolchain's memoised answers (sysroot, `rustc -vV`) watch.
fn toolchain_files(dir: &Path, cwd: &Path) -> Vec<PathBuf> {
    let mut watched: Vec<PathBuf> = rustup_home()
        .into_iter()
        .map(|h| h.join("settings.toml"))
        .collect();
    for d in dir.ancestors().chain(cwd.ancestors()) {
        watched.push(d.join("rust-toolchain"));
        watched.push(d.join("rust-toolchain.toml"));
    }
    watched
}

/// Whether the toolchain that builds in `dir` has the standard library for `triple`.
fn target_installed(dir: &Path, triple: &str, shell: &Shell) -> Result<bool> {
    Ok(sysroot(dir, shell)?
        .join("lib/rustlib")
        .join(triple)
        .join("lib")
        .is_dir())
}

fn ensure_target(dir: &Path, triple: &str, install: bool, shell: &Shell) -> Result<()> {
    if target_installed(dir, triple, shell)? {
        return Ok(());
    }
    if !install {
        bail!(
            "the Rust target {triple} is not installed; run `rustup target add {triple}` (or pass --install-target)"
        );
    }
    shell.status(
        "Installing",
        format!("Rust target {triple} (rustup target add {triple})"),
    );
    let status = Command::new("rustup")
        .args(["target", "add", triple])
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .context("running rustup; --install-target needs rustup on PATH")?;
    if !status.success() || !target_installed(dir, triple, shell)? {
        bail!(
            "`rustup target add {triple}` failed; run it by hand to see why, or install the target another way"
        );
    }
    Ok(())
}

fn zigbuild_available() -> bool {
    which::which("cargo-zigbuild").is_ok()
        && (which::which("zig").is_ok() || which::which("python-zig").is_ok())
}

fn env_set(var: &str) -> bool {
    std::env::var_os(var).is_some()
}

/// Why the build needs a C compiler for the target, if it does: a crate compiles C code, or
/// the allocator is a malloc written in C.
fn needs_c(project: &Project, allocator: Allocator) -> Option<String> {
    if project.compiles_c {
        return Some(format!(
            "package `{}` compiles C code (it depends on the cc crate)",
            project.package.name
        ));
    }
    allocator::needs_c(allocator).map(String::from)
}

/// How to build `platform`: plain cargo with the right C compiler and linker, or
/// cargo-zigbuild; an error naming what to install when neither can. `needs_c` says why
/// a C compiler is needed (None: pure Rust, built with the toolchain's own linker).
fn plan(platform: Platform, needs_c: Option<&str>) -> Result<Plan> {
    let triple = platform.musl_triple();
    let upper = triple.replace('-', "_").to_uppercase();
    let cc_var = format!("CC_{}", triple.replace('-', "_"));
    let linker_var = format!("CARGO_TARGET_{upper}_LINKER");
    let cross = Platform::host() != Some(platform);
    let mut env: Vec<(String, OsString)> = Vec::new();

    let Some(why) = needs_c else {
        // Pure Rust links with the toolchain's own lld and the target's self-contained musl,
        // for the host's platform too (the musl target's default would be the host's cc): the
        // same linker on every machine and platform, and the one the generated Dockerfile
        // uses, so `build` and `docker build` of one commit give byte-identical binaries.
        if !env_set(&linker_var) {
            env.push((linker_var, "rust-lld".into()));
        }
        return Ok(Plan {
            platform,
            driver: Driver::Cargo,
            env,
            final_args: Vec::new(),
        });
    };
    if env_set(&cc_var) || env_set(&format!("CC_{triple}")) {
        return Ok(Plan {
            platform,
            driver: Driver::Cargo,
            env,
            final_args: Vec::new(),
        }); // the user chose; respect it
    }
    let gcc = if cross {
        format!(
            "{}-linux-musl-gcc",
            triple.split('-').next().unwrap_or_default()
        )
    } else {
        "musl-gcc".to_string()
    };
    if let Ok(path) = which::which(&gcc) {
        env.push((cc_var, path.clone().into_os_string()));
        if cross && !env_set(&linker_var) {
            env.push((linker_var, path.into_os_string()));
        }
        return Ok(Plan {
            platform,
            driver: Driver::Cargo,
            env,
            final_args: Vec::new(),
        });
    }
    if zigbuild_available() {
        return Ok(Plan {
            platform,
            driver: Driver::Zigbuild,
            env,
            final_args: Vec::new(),
        });
    }
    let install = if cross {
        format!(
            "cargo-zigbuild and zig (`pip install cargo-zigbuild ziglang`), or the {gcc} cross compiler"
        )
    } else {
        "musl-tools (`apt-get install musl-tools`), or cargo-zigbuild and zig (`pip install cargo-zigbuild ziglang`)".to_string()
    };
    bail!("{why} and no C compiler for {triple} was found; install {install}, or set {cc_var}")
}

/// The first line a program prints for `args` (its version), or "" when it cannot be run.
fn version_line(program: &std::ffi::OsStr, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// The C compiler a plan builds the target's C code with: what it is, what identifies it
/// (path and version, so a changed compiler is a different one), and the variables that
/// choose it.
fn c_compiler(plan: &Plan) -> cc::CCompiler {
    let triple = plan.platform.musl_triple();
    let cc_var = format!("CC_{}", triple.replace('-', "_"));
    let cc = plan
        .env
        .iter()
        .find(|(k, _)| *k == cc_var)
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var_os(&cc_var))
        .or_else(|| std::env::var_os(format!("CC_{triple}")));
    let identity = match (plan.driver, cc) {
        (Driver::Zigbuild, _) => {
            let zig = if which::which("zig").is_ok() {
                "zig"
            } else {
                "python-zig"
            };
            format!(
                "cargo-zigbuild {} / zig {}",
                version_line("cargo-zigbuild".as_ref(), &["--version"]),
                version_line(zig.as_ref(), &["version"])
            )
        }
        (Driver::Cargo, Some(cc)) => format!(
            "{} ({})",
            cc.to_string_lossy(),
            version_line(&cc, &["--version"])
        ),
        (Driver::Cargo, None) => "cc-rs default".to_string(),
    };
    cc::CCompiler {
        zig: plan.driver == Driver::Zigbuild,
        env: plan.env.clone(),
        identity,
    }
}

/// The linker a plan's cargo run uses for its target, when one is set (by the plan, or the
/// user's `CARGO_TARGET_<TRIPLE>_LINKER`); None: the target's default, a C compiler driver.
fn linker(plan: &Plan) -> Option<OsString> {
    let var = format!(
        "CARGO_TARGET_{}_LINKER",
        plan.platform.musl_triple().replace('-', "_").to_uppercase()
    );
    plan.env
        .iter()
        .find(|(k, _)| *k == var)
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var_os(&var))
}

/// What `doctor` reports about the toolchain for one platform.
pub struct Toolchain {
    /// Whether the Rust standard library for the musl target is installed.
    pub target_installed: bool,
    /// The C compiler for the target's C code: what it is, or why none can be used.
    pub c_compiler: std::result::Result<String, String>,
}

pub fn toolchain(project: &Project, platform: Platform, shell: &Shell) -> Result<Toolchain> {
    let target_installed = target_installed(&project.package_root, platform.musl_triple(), shell)?;
    let why = needs_c(project, project.settings.allocator.unwrap_or_default());
    let c_compiler = if why.is_some() {
        match plan(platform, why.as_deref()) {
            Ok(plan) => Ok(match plan.driver {
                Driver::Zigbuild => format!("zig through {}", c_compiler(&plan).identity),
                Driver::Cargo => c_compiler(&plan).identity,
            }),
            Err(e) => Err(e.to_string()),
        }
    } else {
        Ok("none needed (no crate compiles C code, and the allocator is musl's)".to_string())
    };
    Ok(Toolchain {
        target_installed,
        c_compiler,
    })
}

pub(super) fn cargo_home() -> Option<PathBuf> {
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

/// Builds the project's binary for every platform: one cargo run for all that plain cargo can
/// build (cargo schedules them across the cores), one cargo-zigbuild run for each of the rest.
///
/// `on_built` gets each binary as soon as cargo reports it, while cargo is still finishing
/// (other platforms, or its own bookkeeping), so the next stages overlap the build; its answers
/// are returned, by platform, once every cargo run has succeeded.
pub fn build<T>(
    project: &Project,
    cargo_args: &CargoArgs,
    opts: &BuildOptions,
    on_built: &mut dyn FnMut(&Built) -> Result<T>,
    shell: &Shell,
) -> Result<Vec<(Platform, T)>> {
    let mut plans = Vec::new();
    for &p in &opts.platforms {
        ensure_target(
            &project.package_root,
            p.musl_triple(),
            opts.install_target,
            shell,
        )?;
        // Every crate that cannot link statically stops the build here, before anything
        // compiles.
        let preflight = preflight::run(project, p.musl_triple(), shell);
        preflight.check()?;
        let mut plan = plan(p, needs_c(project, opts.allocator).as_deref())?;
        plan.env.extend(preflight.env);
        plans.push(plan);
    }
    for plan in &mut plans {
        let triple = plan.platform.musl_triple();
        if let openssl::Decision::Build { req, features } = openssl::decide(project, triple) {
            let cc = c_compiler(plan);
            let dir = openssl::ensure(project, cargo_args, triple, &req, &features, &cc, shell)?;
            plan.env.extend(openssl::env_for(triple, &dir));
        }
        if opts.auditable
            && let Some(graph) = project.graph(plan.platform)
        {
            let flavor = auditable::LinkerFlavor::of(linker(plan).as_deref());
            plan.final_args
                .extend(auditable::link_args(graph, &project.target_dir, flavor)?);
        }
    }
    for plan in plans
        .iter_mut()
        .filter(|_| opts.allocator != Allocator::Musl)
    {
        let args = allocator::link_args(
            project,
            cargo_args,
            opts.allocator,
            plan.platform.musl_triple(),
            &c_compiler(plan),
            shell,
        )?;
        plan.final_args.extend(args);
    }
    // Plain cargo builds every target that needs nothing of its own in one run (cargo
    // schedules them across the cores); each of the others gets a run of its own.
    let (plain, alone): (Vec<Plan>, Vec<Plan>) = plans
        .into_iter()
        .partition(|p| p.driver == Driver::Cargo && p.final_args.is_empty());
    let mut runs: Vec<Vec<Plan>> = Vec::new();
    if !plain.is_empty() {
        runs.push(plain);
    }
    runs.extend(alone.into_iter().map(|p| vec![p]));
    let mut built = Vec::new();
    for run in runs {
        built.extend(run_cargo(project, cargo_args, opts, &run, on_built, shell)?);
    }
    built.sort_by_key(|(p, _)| *p);
    Ok(built)
}

/// How much of cargo's stderr is kept for [`crate::build::diagnose`]: its end, where the errors are.
const STDERR_KEPT: usize = 4 << 20;

/// Copies cargo's stderr to ours line by line as it comes (through
/// [`Shell::passthrough`], which takes credentials out of URLs, so it needs whole
/// lines; a progress bar's `\r` ends one), and returns its last [`STDERR_KEPT`] bytes.
fn tee_stderr(mut from: impl std::io::Read, shell: &Shell) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                if let Some(end) = pending.iter().rposition(|b| matches!(b, b'\n' | b'\r')) {
                    shell.passthrough(&pending[..=end]);
                    pending.drain(..=end);
                } else if pending.len() > 1 << 16 {
                    // No line end in 64 KiB: not a line a URL could be scrubbed in anyway.
                    shell.passthrough(&pending);
                    pending.clear();
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * STDERR_KEPT {
                    kept.drain(..kept.len() - STDERR_KEPT);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    if !pending.is_empty() {
        shell.passthrough(&pending);
    }
    kept
}

/// Runs a helper crate's cargo (OpenSSL, mimalloc) and returns its output: its stderr is
/// passed on as it comes through [`Shell::passthrough`] (under the shell's lock, credentials
/// out of URLs), unless quiet, and kept (its last [`STDERR_KEPT`] bytes) for the caller.
pub(super) fn helper_output(cmd: &mut Command, shell: &Shell) -> std::io::Result<Output> {
    use std::io::Read;
    if !shell.is_quiet() {
        keep_terminal_output(cmd);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let stderr = child.stderr.take();
    let tee_shell = shell.clone();
    let tee = std::thread::spawn(move || match stderr {
        Some(from) if !tee_shell.is_quiet() => tee_stderr(from, &tee_shell),
        Some(mut from) => {
            let mut kept = Vec::new();
            let _ = from.read_to_end(&mut kept);
            kept
        }
        None => Vec::new(),
    });
    let mut stdout = Vec::new();
    if let Some(mut from) = child.stdout.take() {
        from.read_to_end(&mut stdout)?;
    }
    let status = child.wait()?;
    let stderr = tee.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn run_cargo<T>(
    project: &Project,
    cargo_args: &CargoArgs,
    opts: &BuildOptions,
    plans: &[Plan],
    on_built: &mut dyn FnMut(&Built) -> Result<T>,
    shell: &Shell,
) -> Result<Vec<(Platform, T)>> {
    let driver = plans[0].driver;
    let mut cmd = cargo_command(project, cargo_args, opts, plans, shell);
    let names: Vec<String> = plans.iter().map(|p| p.platform.to_string()).collect();
    announce(project, cargo_args, driver, &names, shell);
    shell.verbose("Running", format!("`{}`", command_line(&cmd)));
    let mut child = cmd.spawn().with_context(|| match driver {
        Driver::Cargo => "running cargo; is it on PATH?".to_string(),
        Driver::Zigbuild => "running cargo zigbuild; is cargo-zigbuild on PATH?".to_string(),
    })?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let stderr = child.stderr.take().context("cargo's stderr")?;
    let tee_shell = shell.clone();
    let tee = std::thread::spawn(move || tee_stderr(stderr, &tee_shell));
    let argv = invocation::describe(project, &cmd);
    let (built, failed) = take_artifacts(stdout, &project.bin, plans, &argv, on_built);
    let status = child.wait().context("waiting for cargo")?;
    let said = tee.join().unwrap_or_default();
    if !status.success() {
        return Err(cargo_failed(project, driver, plans, &names, &said));
    }
    if let Some(e) = failed {
        return Err(e);
    }
    for p in plans {
        if !built.iter().any(|(platform, _)| *platform == p.platform) {
            bail!(
                "cargo reported no executable for bin `{}` on {}",
                project.bin,
                p.platform
            );
        }
    }
    Ok(built)
}

/// The command line as `-v` shows it: the program and its arguments (the environment, which
/// may hold the user's flags or secrets, is left out).
fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.contains([' ', '"', '\'']) {
                format!("{a:?}")
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `cargo build` (or `cargo zigbuild`) for every plan's target at once; `cargo rustc` (or
/// `cargo-zigbuild rustc`) for a plan with arguments of its own for the binary's crate.
fn cargo_command(
    project: &Project,
    cargo_args: &CargoArgs,
    opts: &BuildOptions,
    plans: &[Plan],
    shell: &Shell,
) -> Command {
    let final_args = &plans[0].final_args;
    // cargo-zigbuild's rustc is not a cargo subcommand of its own: it runs directly.
    let mut cmd = if plans[0].driver == Driver::Zigbuild && !final_args.is_empty() {
        Command::new("cargo-zigbuild")
    } else {
        let cargo = cargo_program(&project.package_root, shell);
        let mut cmd = Command::new(&cargo.program);
        cmd.envs(cargo.env);
        cmd
    };
    cmd.arg(match (plans[0].driver, final_args.is_empty()) {
        (Driver::Cargo, true) => "build",
        (Driver::Zigbuild, true) => "zigbuild",
        (_, false) => "rustc",
    });
    for p in plans {
        cmd.args(["--target", p.platform.musl_triple()]);
        for (k, v) in &p.env {
            cmd.env(k, v);
        }
    }
    cmd.args(["--profile", &cargo_args.profile])
        .args(["--package", project.package.name.as_str()])
        .args(["--bin", &project.bin])
        .arg("--message-format=json-render-diagnostics")
        .args(cargo_args.common_flags())
        .args(cargo_args.feature_flags())
        .arg("--target-dir")
        .arg(&project.target_dir)
        .current_dir(&project.package_root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if shell.is_quiet() {
        cmd.arg("--quiet");
    }
    keep_terminal_output(&mut cmd);
    // Build scripts that stamp the build time honour SOURCE_DATE_EPOCH (the
    // reproducible-builds.org convention); the user's own value is left as it is.
    if std::env::var_os("SOURCE_DATE_EPOCH").is_none() {
        cmd.env("SOURCE_DATE_EPOCH", opts.source_date_epoch.to_string());
    }
    if opts.strip {
        cmd.args([
            "--config",
            &format!("profile.{}.strip=\"symbols\"", cargo_args.profile),
        ]);
    }
    add_rustflags(&mut cmd, remap_flags(project));
    if !final_args.is_empty() {
        cmd.arg("--").args(final_args);
    }
    cmd
}

/// cargo's stderr goes through a pipe (to be read after a failure): on a terminal it keeps
/// its colours and progress bar, as the user's own settings allow.
fn keep_terminal_output(cmd: &mut Command) {
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        if std::env::var_os("CARGO_TERM_COLOR").is_none() {
            cmd.arg("--color=always");
        }
        if std::env::var_os("CARGO_TERM_PROGRESS_WHEN").is_none()
            && let Some((terminal_size::Width(width), _)) =
                terminal_size::terminal_size_of(std::io::stderr())
        {
            cmd.env("CARGO_TERM_PROGRESS_WHEN", "always")
                .env("CARGO_TERM_PROGRESS_WIDTH", width.to_string());
        }
    }
}

/// Cargo takes rustflags from one source only: CARGO_ENCODED_RUSTFLAGS, else RUSTFLAGS, else
/// target.<triple>.rustflags, else build.rustflags. With the user's flags in the environment,
/// theirs and ours go together as CARGO_ENCODED_RUSTFLAGS (split as cargo splits RUSTFLAGS,
/// so a path with a space stays one argument). Otherwise ours go in as build.rustflags, which
/// cargo concatenates with the user's own build.rustflags. A project that sets
/// target.<musl triple>.rustflags overrides both, and its paths are then not remapped.
fn add_rustflags(cmd: &mut Command, ours: Vec<String>) {
    let user: Option<Vec<String>> = match std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        Ok(e) => Some(
            e.split('\x1f')
                .filter(|f| !f.is_empty())
                .map(String::from)
                .collect(),
        ),
        Err(_) => std::env::var("RUSTFLAGS")
            .ok()
            .map(|r| r.split_whitespace().map(String::from).collect()),
    };
    match user {
        Some(mut flags) => {
            flags.extend(ours);
            cmd.env_remove("RUSTFLAGS");
            cmd.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
        }
        None => {
            let list = ours
                .iter()
                .map(|f| format!("{f:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            cmd.args(["--config", &format!("build.rustflags=[{list}]")]);
        }
    }
}

/// `Building BIN (PACKAGE) for PLATFORMS`, and a note naming the package's other binaries.
fn announce(
    project: &Project,
    cargo_args: &CargoArgs,
    driver: Driver,
    names: &[String],
    shell: &Shell,
) {
    shell.status(
        "Building",
        format!(
            "{} ({}) for {} (profile {}{})",
            project.bin,
            project.package.name,
            names.join(", "),
            cargo_args.profile,
            if driver == Driver::Zigbuild {
                ", cargo-zigbuild"
            } else {
                ""
            }
        ),
    );
    let others: Vec<String> = project
        .bins
        .iter()
        .filter(|b| **b != project.bin)
        .map(
            |b| match project.bins_off.iter().find(|(off, _)| off == b) {
                Some((_, missing)) => {
                    format!("bin `{b}` (it needs `--features {}`)", missing.join(","))
                }
                None => format!("bin `{b}`"),
            },
        )
        .collect();
    if !others.is_empty() {
        shell.status(
            "Note",
            format!(
                "package `{}` also has {}; choose another with --bin NAME",
                project.package.name,
                others.join(", ")
            ),
        );
    }
}

/// Reads cargo's messages on a thread (so cargo never waits on a full pipe while `on_built`
/// packs a binary that is already done) and hands each of the bin's executables to
/// `on_built` as it comes. Returns what it made, and its first failure.
fn take_artifacts<T>(
    stdout: std::process::ChildStdout,
    bin: &str,
    plans: &[Plan],
    argv: &[String],
    on_built: &mut dyn FnMut(&Built) -> Result<T>,
) -> (Vec<(Platform, T)>, Option<anyhow::Error>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let bin = bin.to_string();
    let reader = std::thread::spawn(move || {
        for msg in Message::parse_stream(BufReader::new(stdout)) {
            if let Ok(Message::CompilerArtifact(a)) = msg
                && a.target.name == bin
                && a.target.kind.contains(&TargetKind::Bin)
                && let Some(path) = a.executable
            {
                let _ = tx.send(path.into_std_path_buf());
            }
        }
    });
    let mut built = Vec::new();
    let mut failed = None;
    for path in rx {
        // The artifact's directory names its target: <target-dir>/<triple>/<profile>/.
        let platform = plans
            .iter()
            .map(|p| p.platform)
            .find(|p| path.components().any(|c| c.as_os_str() == p.musl_triple()));
        if let Some(platform) = platform
            && failed.is_none()
        {
            match on_built(&Built {
                path,
                platform,
                cargo_argv: Some(argv.to_vec()),
            }) {
                Ok(t) => built.push((platform, t)),
                Err(e) => failed = Some(e),
            }
        }
    }
    let _ = reader.join();
    (built, failed)
}

/// The error for a failed cargo run: what cargo's stderr shows went wrong (a missing C
/// library, a -sys crate that needs a tool), else a pointer to its errors above.
fn cargo_failed(
    project: &Project,
    driver: Driver,
    plans: &[Plan],
    names: &[String],
    said: &[u8],
) -> anyhow::Error {
    let said = String::from_utf8_lossy(said);
    let verb = if driver == Driver::Zigbuild {
        "zigbuild"
    } else {
        "build"
    };
    match plans
        .iter()
        .find_map(|p| diagnose::diagnose(project, &said, p.platform.musl_triple()))
    {
        Some(why) => anyhow::anyhow!("cargo {verb} for {} failed: {why}", names.join(", ")),
        None => anyhow::anyhow!(
            "cargo {verb} for {} failed (its errors are above); fix them, then run cargo containerize again",
            names.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rustup's proxies are links to the `rustup` beside them, symbolic or hard; a copy, or a
    /// `cargo` with no `rustup` beside it, is not one.
    #[test]
    fn a_rustup_proxy_is_a_link_to_the_rustup_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let rustup = dir.path().join("rustup");
        std::fs::write(&rustup, b"rustup").unwrap();
        let symbolic = dir.path().join("cargo");
        std::os::unix::fs::symlink("rustup", &symbolic).unwrap();
        let hard = dir.path().join("rustc");
        std::fs::hard_link(&rustup, &hard).unwrap();
        let copy = dir.path().join("rustdoc");
        std::fs::write(&copy, b"rustup").unwrap();
        assert!(is_rustup_proxy(&symbolic));
        assert!(is_rustup_proxy(&hard));
        assert!(!is_rustup_proxy(&copy));
        let alone = tempfile::tempdir().unwrap();
        let cargo = alone.path().join("cargo");
        std::fs::write(&cargo, b"cargo").unwrap();
        assert!(!is_rustup_proxy(&cargo));
    }
}
