//! Helpers shared by the integration tests: fixture copies, running the tool, inspecting
//! the images it writes with skopeo, running them for real with umoci + runc (podman's
//! sandbox is `support::podman`).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// The target every image is built for.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// Where the CA bundle lives in an image.
pub const CA_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";
/// Where tzdata lives in an image.
pub const ZONEINFO: &str = "usr/share/zoneinfo";

/// The binary under test.
pub fn tool_path() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cargo-containerize"))
}

/// `tests/fixtures` in the source tree.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Root of everything this test binary writes (`.../containerize-tests/it`). Wiped the first
/// time it is used in a run, so leftovers of images cached in statics (never dropped) do not
/// pile up across runs.
///
/// Under cargo-nextest (which a developer may use; `scripts/test` runs `cargo test`) every test
/// is a process of its own, several at once, so each process gets `it/nextest/<run id>/<pid>`
/// and wipes only that; the first use in a process also removes what earlier nextest runs left
/// (another run's directory, never one of this run's).
pub fn scratch_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let stem = exe
            .file_stem()
            .and_then(OsStr::to_str)
            .unwrap_or("tests")
            .to_string();
        // Test binaries are named `<file>-<hash>`; the hash changes with every rebuild.
        let name = stem
            .rsplit_once('-')
            .map_or(stem.as_str(), |(name, _)| name);
        let mut root = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("containerize-tests")
            .join(name);
        if let Some(run) = std::env::var_os("NEXTEST_RUN_ID") {
            let runs = root.join("nextest");
            sweep_other_runs(&runs, &run);
            root = runs.join(run).join(std::process::id().to_string());
        }
        if root.exists() {
            fs::remove_dir_all(&root).unwrap_or_else(|e| panic!("wiping {root:?}: {e}"));
        }
        fs::create_dir_all(&root).unwrap_or_else(|e| panic!("creating {root:?}: {e}"));
        root
    })
}

/// Removes the scratch directories of nextest runs other than `current`. Other processes of
/// this run sweep at the same time, so an entry that is already gone is no error.
fn sweep_other_runs(runs: &Path, current: &OsStr) {
    let Ok(entries) = fs::read_dir(runs) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name() != current {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// A fresh, empty directory inside this test binary's scratch root.
pub fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("t")
        .tempdir_in(scratch_root())
        .expect("tempdir")
}

/// A cargo target directory shared by every build of `fixture` (across test binaries and
/// runs) so that fixture dependencies compile once. Only for builds whose sources and
/// features are identical to the fixture's.
pub fn shared_target_dir(fixture: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("containerize-fixture-targets")
        .join(fixture)
}

/// A copy of a fixture crate in a fresh temporary directory.
pub struct Project {
    _dir: TempDir,
    /// The copied crate (the directory holding its Cargo.toml).
    pub root: PathBuf,
}

impl Project {
    /// Copies `tests/fixtures/<name>` (without any `target/`) into a fresh directory.
    pub fn copy(name: &str) -> Project {
        let dir = tempdir();
        let root = dir.path().join(name);
        copy_tree(&fixtures_dir().join(name), &root);
        Project { _dir: dir, root }
    }

    /// A crate a test wrote at `root`, inside `dir` (removed with it).
    pub fn in_dir(dir: TempDir, root: PathBuf) -> Project {
        Project { _dir: dir, root }
    }

    /// The directory that holds the copy; a place for files outside the package.
    pub fn parent(&self) -> &Path {
        self._dir.path()
    }

    pub fn manifest(&self) -> PathBuf {
        self.root.join("Cargo.toml")
    }

    /// Appends TOML to the copied Cargo.toml (e.g. a `[package.metadata.containerize]` table).
    pub fn append_manifest(&self, toml: &str) {
        let path = self.manifest();
        let mut text = fs::read_to_string(&path).expect("read Cargo.toml");
        text.push('\n');
        text.push_str(toml);
        fs::write(&path, text).expect("write Cargo.toml");
    }

    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.root.join(relative);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, contents).expect("write file");
        path
    }

    /// `cargo metadata` of the copy: the package's own fields, as cargo reads them.
    pub fn package_metadata(&self) -> Value {
        let out = Command::new("cargo")
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .arg("--manifest-path")
            .arg(self.manifest())
            .output()
            .expect("cargo metadata");
        assert!(
            out.status.success(),
            "cargo metadata: {}",
            lossy(&out.stderr)
        );
        let all: Value = serde_json::from_slice(&out.stdout).expect("metadata json");
        all["packages"][0].clone()
    }
}

/// Recursive copy that keeps symlinks as symlinks and skips `target/` directories.
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {to:?}: {e}"));
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("read_dir {from:?}: {e}")) {
        let entry = entry.expect("dir entry");
        let name = entry.file_name();
        let kind = entry.file_type().expect("file type");
        let (src, dst) = (entry.path(), to.join(&name));
        if kind.is_dir() {
            if name != "target" {
                copy_tree(&src, &dst);
            }
        } else if kind.is_symlink() {
            let link = fs::read_link(&src).expect("read_link");
            std::os::unix::fs::symlink(link, &dst).expect("symlink");
        } else {
            fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy {src:?}: {e}"));
        }
    }
}

/// Outcome of a command: exit status and the captured streams.
#[derive(Debug, Clone)]
pub struct Run {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics with everything captured unless the command succeeded.
    pub fn assert_success(&self) -> &Run {
        assert!(self.status.success(), "command failed: {self}");
        self
    }

    /// The manifest digest the tool prints as its last stdout line.
    pub fn digest(&self) -> String {
        let last = self.stdout.lines().rev().find(|l| !l.trim().is_empty());
        let last = last.unwrap_or_else(|| panic!("no stdout: {self}")).trim();
        assert!(
            is_sha256_digest(last),
            "last stdout line is not a digest: {self}"
        );
        last.to_string()
    }

    /// The single JSON object printed with `--message-format json`.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {self}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` -> {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs a command to completion with stdin closed, capturing both streams.
pub fn capture(cmd: &mut Command) -> Run {
    let command = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"));
    Run {
        command,
        status: out.status,
        stdout: lossy(&out.stdout),
        stderr: lossy(&out.stderr),
    }
}

/// Like [`capture`], with `input` written to stdin (`--password-stdin`).
pub fn capture_with_stdin(cmd: &mut Command, input: &str) -> Run {
    use std::io::Write;
    let command = format!("{} <<< (stdin)", describe(cmd));
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    Run {
        command,
        status: out.status,
        stdout: lossy(&out.stdout),
        stderr: lossy(&out.stderr),
    }
}

/// The artifacts (packages) syft finds in `source` (`oci-dir:…`, `registry:…`) for
/// `platform`: its JSON output's `artifacts`.
pub fn syft_artifacts(source: &str, platform: &str) -> Vec<Value> {
    let run = capture(
        Command::new(setup_tool("syft"))
            .args(["scan", "-q", "-o", "json", "--platform", platform])
            .arg(source)
            .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
            // The loopback registry speaks plain HTTP.
            .env("SYFT_REGISTRY_INSECURE_USE_HTTP", "true"),
    );
    run.assert_success();
    let mut doc: Value = serde_json::from_str(&run.stdout).expect("syft's JSON");
    match doc["artifacts"].take() {
        Value::Array(a) => a,
        other => panic!("syft's artifacts are not a list: {other}"),
    }
}

/// `cargo-containerize containerize` — the way cargo runs the subcommand — in `cwd`.
/// Add arguments, then [`capture`].
pub fn tool(cwd: &Path) -> Command {
    let mut cmd = Command::new(tool_path());
    cmd.arg("containerize").current_dir(cwd);
    hermetic(&mut cmd);
    cmd
}

/// Keeps the environment of the test run out of a tool run: no inherited target dir or
/// build target, no SOURCE_DATE_EPOCH, and git must not find the repository this test
/// suite itself lives in (fixture copies are inside its `target/`), so that revision labels
/// and creation times depend on the fixture alone.
pub fn hermetic(cmd: &mut Command) -> &mut Command {
    cmd.env("CARGO_TERM_COLOR", "never")
        .env("GIT_CEILING_DIRECTORIES", scratch_root())
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_BUILD_TARGET_DIR")
}

/// An OCI image layout directory holding one tagged image.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub tag: String,
}

impl Layout {
    pub fn new(dir: impl Into<PathBuf>, tag: &str) -> Layout {
        Layout {
            dir: dir.into(),
            tag: tag.to_string(),
        }
    }

    /// `oci:DIR:TAG`, as both the tool and skopeo spell it.
    pub fn reference(&self) -> String {
        format!("oci:{}:{}", self.dir.display(), self.tag)
    }

    /// Path of the blob named by `sha256:<hex>`.
    pub fn blob(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.dir.join("blobs/sha256").join(hex)
    }

    pub fn manifest(&self) -> Value {
        skopeo_manifest(&self.reference())
    }

    pub fn config(&self) -> Value {
        skopeo_config(&self.reference())
    }

    /// Manifest layer digests, bottom layer first.
    pub fn layer_digests(&self) -> Vec<String> {
        self.manifest()["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["digest"].as_str().expect("layer digest").to_string())
            .collect()
    }

    /// Entries of a (gzip-compressed) layer blob.
    pub fn layer_entries(&self, digest: &str) -> Vec<TarEntry> {
        let file = fs::File::open(self.blob(digest)).expect("open layer blob");
        tar_entries(flate2::read::MultiGzDecoder::new(file))
    }

    /// `umoci unpack` into a fresh bundle.
    pub fn unpack(&self) -> Bundle {
        Bundle::unpack(self)
    }
}

/// One entry of a layer tarball, as written.
#[derive(Debug, Clone)]
pub struct TarEntry {
    pub path: String,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub username: Vec<u8>,
    pub groupname: Vec<u8>,
    pub pax_keys: Vec<String>,
    pub link: Option<String>,
    pub data: Vec<u8>,
}

pub fn tar_entries(reader: impl Read) -> Vec<TarEntry> {
    let mut archive = tar::Archive::new(reader);
    let mut entries = Vec::new();
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        let mut pax_keys = Vec::new();
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                pax_keys.push(ext.key().unwrap_or("?").to_string());
            }
        }
        let header = entry.header().clone();
        let path = entry.path().expect("entry path").display().to_string();
        let link = entry
            .link_name()
            .ok()
            .flatten()
            .map(|l| l.display().to_string());
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("entry data");
        entries.push(TarEntry {
            path,
            kind: header.entry_type(),
            mode: header.mode().expect("mode"),
            uid: header.uid().expect("uid"),
            gid: header.gid().expect("gid"),
            mtime: header.mtime().expect("mtime"),
            username: header.username_bytes().unwrap_or_default().to_vec(),
            groupname: header.groupname_bytes().unwrap_or_default().to_vec(),
            pax_keys,
            link,
            data,
        });
    }
    entries
}

/// `skopeo inspect --raw REF`: the manifest bytes exactly as stored.
pub fn skopeo_manifest_bytes(reference: &str) -> Vec<u8> {
    skopeo(&["inspect", "--raw", reference])
}

pub fn skopeo_manifest(reference: &str) -> Value {
    parse_json(&skopeo_manifest_bytes(reference), reference)
}

/// `skopeo inspect --config --raw REF`: the image config blob.
pub fn skopeo_config(reference: &str) -> Value {
    parse_json(
        &skopeo(&["inspect", "--config", "--raw", reference]),
        reference,
    )
}

/// `skopeo inspect REF`: skopeo's summary (Digest, Labels, Layers, Env, ...).
pub fn skopeo_inspect(reference: &str) -> Value {
    parse_json(&skopeo(&["inspect", reference]), reference)
}

fn parse_json(bytes: &[u8], what: &str) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", lossy(bytes)))
}

fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        lossy(&out.stderr)
    );
    out.stdout
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut text = String::from("sha256:");
    for byte in hash.iter() {
        write!(text, "{byte:02x}").expect("write to String");
    }
    text
}

pub fn is_sha256_digest(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

/// The `Env` list of an image config as (key, value) pairs.
pub fn config_env(config: &Value) -> Vec<(String, String)> {
    config["config"]["Env"]
        .as_array()
        .map(|env| {
            env.iter()
                .filter_map(Value::as_str)
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (k.to_string(), v.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn config_env_var(config: &Value, key: &str) -> Option<String> {
    config_env(config)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

static CONTAINER_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A unique name for a container or image in this process.
pub fn unique_name(prefix: &str) -> String {
    let n = CONTAINER_SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// An OCI runtime bundle made by `umoci unpack` (as root: owners are kept as in the image).
pub struct Bundle {
    dir: TempDir,
    pub path: PathBuf,
}

impl Bundle {
    pub fn unpack(layout: &Layout) -> Bundle {
        let dir = tempdir();
        let path = dir.path().join("bundle");
        capture(
            Command::new("umoci")
                .arg("unpack")
                .arg("--image")
                .arg(format!("{}:{}", layout.dir.display(), layout.tag))
                .arg(&path),
        )
        .assert_success();
        // runc cannot set rlimits without CAP_SYS_RESOURCE, and there is no terminal.
        let config_path = path.join("config.json");
        let mut config: Value =
            serde_json::from_slice(&fs::read(&config_path).expect("read config.json"))
                .expect("config.json");
        let process = config["process"].as_object_mut().expect("process");
        process.remove("rlimits");
        process.insert("terminal".into(), Value::Bool(false));
        fs::write(
            &config_path,
            serde_json::to_vec_pretty(&config).expect("json"),
        )
        .expect("write config.json");
        Bundle { dir, path }
    }

    pub fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }

    /// A path inside the root filesystem (`rel` without a leading slash).
    pub fn file(&self, rel: &str) -> PathBuf {
        self.rootfs().join(rel.trim_start_matches('/'))
    }

    /// `runc run` of the bundle, to completion; the container's stdout/stderr are captured.
    pub fn run(&self) -> Run {
        let state = self.dir.path().join("runc-state");
        capture(
            Command::new("timeout")
                .args(["--kill-after=10", "120", "runc", "--root"])
                .arg(&state)
                .arg("run")
                .arg("--bundle")
                .arg(&self.path)
                .arg(unique_name("cct")),
        )
    }

    /// Every regular file and symlink below `rel` in the rootfs, relative to it, sorted.
    pub fn files_under(&self, rel: &str) -> BTreeSet<String> {
        let base = self.file(rel);
        let mut found = BTreeSet::new();
        walk(&base, &base, &mut found);
        found
    }

    /// Resolves a symlink inside the rootfs the way the container would see it.
    pub fn resolve(&self, rel: &str) -> PathBuf {
        let mut path = self.file(rel);
        for _ in 0..16 {
            match fs::read_link(&path) {
                Ok(target) if target.is_absolute() => path = self.file(&target.to_string_lossy()),
                Ok(target) => path = path.parent().expect("parent").join(target),
                Err(_) => return path,
            }
        }
        panic!("symlink loop at {rel}");
    }
}

fn walk(base: &Path, dir: &Path, found: &mut BTreeSet<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            walk(base, &path, found);
        } else {
            let rel = path.strip_prefix(base).expect("under base");
            found.insert(rel.display().to_string());
        }
    }
}

/// True when stderr carries exactly one line starting with `error`, it starts with `error: `,
/// and it is the last line: the tool's error format. Lines before it (build logs) are fine;
/// a panic or a multi-line error report is not.
pub fn is_one_line_error(stderr: &str) -> bool {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let error_lines: Vec<&&str> = lines
        .iter()
        .filter(|l| l.trim_start().to_ascii_lowercase().starts_with("error"))
        .collect();
    !stderr.contains("panicked")
        && !stderr.contains("internal error")
        && !stderr.contains("Caused by")
        && error_lines.len() == 1
        && lines.last().is_some_and(|l| l.starts_with("error: "))
}

/// Asserts the tool failed the way the contract says: exit `code`, one `error: ` line on
/// stderr that mentions every keyword (case-insensitive), no panic, no digest on stdout.
pub fn assert_error(run: &Run, code: i32, keywords: &[&str]) {
    assert_eq!(run.code(), Some(code), "wrong exit status: {run}");
    assert_one_line_error(run, keywords);
}

/// Asserts a failure is one `error: ` line (no panic) mentioning every keyword, whatever the
/// exit status.
pub fn assert_one_line_error(run: &Run, keywords: &[&str]) {
    assert!(!run.status.success(), "expected a failure: {run}");
    assert!(!run.stderr.contains("panicked"), "panicked: {run}");
    assert!(
        is_one_line_error(&run.stderr),
        "not a one-line `error: ` report: {run}"
    );
    let line = error_line(run).to_lowercase();
    for keyword in keywords {
        assert!(
            line.contains(&keyword.to_lowercase()),
            "error line does not mention {keyword:?}: {run}"
        );
    }
    assert!(
        !run.stdout.lines().any(|l| is_sha256_digest(l.trim())),
        "a failed run printed a digest: {run}"
    );
}

/// The `error: ` line of a failed run.
pub fn error_line(run: &Run) -> &str {
    run.stderr
        .lines()
        .find(|l| l.starts_with("error"))
        .unwrap_or_else(|| panic!("no error line: {run}"))
}

/// Every path below `dir` (relative), to compare before/after a failed run.
pub fn snapshot(dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    snapshot_into(dir, dir, &mut found);
    found
}

fn snapshot_into(base: &Path, dir: &Path, found: &mut BTreeSet<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        found.insert(
            path.strip_prefix(base)
                .expect("under base")
                .display()
                .to_string(),
        );
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            snapshot_into(base, &path, found);
        }
    }
}

/// Builds `fixture`'s crate for musl with plain cargo (no cargo-containerize) and returns
/// the path of bin `bin`. Uses a target dir of its own, so that the tool's builds (which
/// may set other profile options) never overwrite this binary while a test reads it.
pub fn cargo_build_musl(fixture: &str, bin: &str) -> PathBuf {
    let target_dir = shared_target_dir(&format!("plain-cargo-{fixture}"));
    let manifest = fixtures_dir().join(fixture).join("Cargo.toml");
    capture(
        Command::new("cargo")
            .args(["build", "--release", "--locked", "--target", MUSL_TARGET])
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target_dir)
            .env_remove("CARGO_BUILD_TARGET"),
    )
    .assert_success();
    target_dir.join(MUSL_TARGET).join("release").join(bin)
}

/// Compiles a one-line Rust program for aarch64-unknown-linux-musl (linked by rust-lld):
/// a genuine static ELF for the wrong machine.
pub fn aarch64_binary(dir: &Path) -> PathBuf {
    let src = dir.join("arm_main.rs");
    fs::write(&src, "fn main() { println!(\"arm\"); }\n").expect("write arm_main.rs");
    let out = dir.join("arm-hello");
    capture(
        Command::new("rustc")
            .args([
                "--edition",
                "2021",
                "-O",
                "--target",
                "aarch64-unknown-linux-musl",
            ])
            .args(["-C", "linker=rust-lld"])
            .arg(&src)
            .arg("-o")
            .arg(&out)
            .current_dir(dir),
    )
    .assert_success();
    out
}

/// Number of PEM certificates in a bundle.
pub fn pem_cert_count(pem: &[u8]) -> usize {
    String::from_utf8_lossy(pem)
        .matches("-----BEGIN CERTIFICATE-----")
        .count()
}

/// The value of a `key=value` line a fixture printed (e.g. `uid=65532`).
pub fn stdout_value<'a>(run: &'a Run, key: &str) -> Option<&'a str> {
    run.stdout
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
}

/// The `env KEY=VALUE` lines the hello fixture prints.
pub fn stdout_env<'a>(run: &'a Run, key: &str) -> Option<&'a str> {
    run.stdout.lines().find_map(|l| {
        l.strip_prefix("env ")
            .and_then(|kv| kv.strip_prefix(key))
            .and_then(|rest| rest.strip_prefix('='))
    })
}

/// A fixture image built by the tool into an OCI layout (tag `test`).
pub struct Built {
    pub project: Project,
    out: TempDir,
    pub layout: Layout,
    /// The tool's own run (stdout ends with the manifest digest).
    pub run: Run,
    bundle: OnceLock<Bundle>,
}

impl Built {
    /// A build the test ran itself (e.g. with extra environment).
    pub fn new(project: Project, out: TempDir, layout: Layout, run: Run) -> Built {
        Built {
            project,
            out,
            layout,
            run,
            bundle: OnceLock::new(),
        }
    }

    /// The image unpacked with umoci (once) for running and for looking at its files.
    pub fn bundle(&self) -> &Bundle {
        self.bundle.get_or_init(|| self.layout.unpack())
    }

    /// A directory next to the layout, for further outputs of this test.
    pub fn out_dir(&self) -> &Path {
        self.out.path()
    }
}

/// Runs `cargo containerize build --locked --output oci:<tmp>/image:test EXTRA...` in the
/// project; `target_dir` is passed as `--target-dir` when given.
pub fn try_build(
    project: &Project,
    target_dir: Option<&Path>,
    extra: &[&str],
) -> (Run, Layout, TempDir) {
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "test");
    let mut cmd = tool(&project.root);
    cmd.args(["build", "--locked", "--output", &layout.reference()]);
    if let Some(dir) = target_dir {
        cmd.arg("--target-dir").arg(dir);
    }
    cmd.args(extra);
    (capture(&mut cmd), layout, out)
}

/// [`try_build`] that must succeed.
pub fn build(project: Project, target_dir: Option<&Path>, extra: &[&str]) -> Built {
    let (run, layout, out) = try_build(&project, target_dir, extra);
    run.assert_success();
    Built {
        project,
        out,
        layout,
        run,
        bundle: OnceLock::new(),
    }
}

/// Builds an unmodified fixture with its shared target dir.
pub fn build_fixture(fixture: &str, extra: &[&str]) -> Built {
    let target = shared_target_dir(fixture);
    build(Project::copy(fixture), Some(&target), extra)
}

/// `git` in `dir` with a fixed identity and commit time.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let run = capture(
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args([
                "-c",
                "commit.gpgsign=false",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .env("GIT_AUTHOR_NAME", "Fixture Author")
            .env("GIT_AUTHOR_EMAIL", "fixture@example.com")
            .env("GIT_COMMITTER_NAME", "Fixture Author")
            .env("GIT_COMMITTER_EMAIL", "fixture@example.com")
            .env("GIT_AUTHOR_DATE", format!("@{COMMIT_TIME} +0000"))
            .env("GIT_COMMITTER_DATE", format!("@{COMMIT_TIME} +0000")),
    );
    run.assert_success();
    run.stdout.trim().to_string()
}

pub const COMMIT_TIME: u64 = 1_234_567_890;

/// Makes `dir` a git repository whose one commit holds everything in it; returns HEAD.
pub fn commit_all(dir: &Path) -> String {
    git(dir, &["init", "-q"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "fixture"]);
    git(dir, &["rev-parse", "HEAD"])
}

/// Like [`capture`], but a run still going after `limit` is killed and fails the test: it
/// hung. Returns the run and how long it took.
pub fn capture_within(cmd: &mut Command, limit: Duration) -> (Run, Duration) {
    let command = format!("{cmd:?}");
    let started = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let (out, hung) = match rx.recv_timeout(limit) {
        Ok(out) => (out, false),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            (rx.recv().expect("killed child"), true)
        }
    };
    let out = out.expect("wait for the tool");
    let run = Run {
        command,
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!hung, "still running after {limit:?}, killed: {run}");
    (run, started.elapsed())
}

/// A program scripts/setup-template-tools installs (linters, scanners, validators): in
/// `$CONTAINERIZE_TOOLS_BIN`, else `$CONTAINERIZE_TOOLS_VENV/bin`, else the default virtualenv.
pub fn setup_tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("CONTAINERIZE_TOOLS_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CONTAINERIZE_TOOLS_VENV").map(|v| PathBuf::from(v).join("bin"))
        })
        .unwrap_or_else(|| {
            std::env::home_dir()
                .expect("a home directory")
                .join(".cache/cargo-containerize/venv/bin")
        });
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{name} is not installed at {}; run scripts/setup-template-tools",
        path.display()
    );
    path
}
