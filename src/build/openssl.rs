//! OpenSSL for openssl-sys: a static OpenSSL for the musl target, built once and cached.
//!
//! When openssl-sys is in the graph and the crate has no OpenSSL of its own (the `vendored`
//! feature, `OPENSSL_DIR` and friends), the tool builds OpenSSL from the sources the `openssl-src`
//! crate ships (the crate openssl-sys's own `vendored` feature uses, at the version openssl-sys
//! asks for) with the C compiler the build uses for the target, and hands the result to
//! openssl-sys through its target-specific variables (`<TRIPLE>_OPENSSL_DIR`,
//! `<TRIPLE>_OPENSSL_STATIC`).
//!
//! openssl-src is fetched by cargo, through a tiny helper crate the tool writes into its cache:
//! `--offline`, mirrors and source replacement in the user's cargo configuration apply to it as
//! to their own dependencies (cargo runs in the project's directory). The installed libraries
//! and headers are cached under `<cache>/openssl/<triple>-<version>-<key>`, the key covering the
//! target, the openssl-src version and features, and the C compiler's identity. An entry is
//! built under a lock keyed by its directory (`<dir>.lock`, a bounded wait), into a temp
//! directory of [`crate::util::atomic`] (a [lease](crate::util::lease): a killed run's is swept),
//! and renamed into place without replacing anything; it is used only after every file
//! matches the digest in its `files.json`, which is written last. A complete entry is never
//! removed: a run that finds one under the lock uses it.

use crate::metadata::values::OpensslMode;
use crate::metadata::{CargoArgs, NativeDep, Project};
use crate::util::atomic;
use crate::util::fs::sha256_file;
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const OPENSSL_SYS: &str = "openssl-sys";

/// The build script of the helper crate: openssl-src builds and installs OpenSSL for cargo's
/// TARGET with cargo's HOST toolchain and cc-rs's compiler for the target, then the static
/// libraries and headers are copied to where the tool asked.
const HELPER_BUILD_RS: &str = r#"// Written by cargo-containerize: builds a static OpenSSL for TARGET with openssl-src.
use std::path::Path;

fn copy_dir(from: &Path, to: &Path, only_archives: bool) {
    std::fs::create_dir_all(to).expect("create the output directory");
    for entry in std::fs::read_dir(from).expect("read the install directory") {
        let entry = entry.expect("directory entry");
        let kind = entry.file_type().expect("file type");
        let path = entry.path();
        if kind.is_dir() && !only_archives {
            copy_dir(&path, &to.join(entry.file_name()), false);
        } else if kind.is_file()
            && (!only_archives || path.extension().is_some_and(|e| e == "a"))
        {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copy");
        }
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=CARGO_CONTAINERIZE_OPENSSL_OUT");
    let out = std::env::var_os("CARGO_CONTAINERIZE_OPENSSL_OUT")
        .expect("CARGO_CONTAINERIZE_OPENSSL_OUT (set by cargo-containerize)");
    let out = Path::new(&out);
    let artifacts = openssl_src::Build::new().build();
    copy_dir(artifacts.lib_dir(), &out.join("lib"), true);
    copy_dir(artifacts.include_dir(), &out.join("include"), false);
}
"#;

/// Versions of the cache layout and of the helper: a change to either builds anew.
const FORMAT: &str = "cargo-containerize openssl cache 1";

/// What happens to openssl-sys on one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// openssl-sys is not in the graph.
    Absent,
    /// Its `vendored` feature builds OpenSSL from source in its own build script.
    Vendored,
    /// A feature makes it bind another library (AWS-LC, BoringSSL) that its crate builds.
    OtherBackend(String),
    /// The user points it at an OpenSSL of their own with this variable.
    UserDir(String),
    /// `openssl = "off"`: openssl-sys looks for OpenSSL itself.
    Off,
    /// The tool builds OpenSSL with openssl-src at this requirement, with these features.
    Build { req: String, features: Vec<String> },
}

/// The variables through which a user points openssl-sys at their own OpenSSL, as openssl-sys
/// reads them: target-prefixed first, then plain.
fn user_variable(triple: &str) -> Option<String> {
    let upper = triple.replace('-', "_").to_uppercase();
    ["OPENSSL_DIR", "OPENSSL_LIB_DIR", "OPENSSL_INCLUDE_DIR"]
        .iter()
        .flat_map(|v| [format!("{upper}_{v}"), v.to_string()])
        .find(|v| std::env::var_os(v).is_some())
}

pub fn decide(project: &Project, triple: &str) -> Decision {
    let Some(sys) = project
        .native
        .iter()
        .find(|d| d.name == OPENSSL_SYS && d.targets.iter().any(|t| t == triple))
    else {
        return Decision::Absent;
    };
    if sys.features.iter().any(|f| f == "vendored") {
        return Decision::Vendored;
    }
    if let Some(f) = sys
        .features
        .iter()
        .find(|f| ["aws-lc", "aws-lc-fips", "unstable_boringssl"].contains(&f.as_str()))
    {
        return Decision::OtherBackend(f.clone());
    }
    if let Some(var) = user_variable(triple) {
        return Decision::UserDir(var);
    }
    if project.settings.openssl.unwrap_or_default() == OpensslMode::Off {
        return Decision::Off;
    }
    let (req, features) = openssl_src_requirement(sys);
    Decision::Build { req, features }
}

/// The openssl-src requirement (and features) that this openssl-sys's `vendored` feature would
/// use; OpenSSL 3 for an openssl-sys too old to say.
fn openssl_src_requirement(sys: &NativeDep) -> (String, Vec<String>) {
    sys.deps
        .iter()
        .find(|(name, _, _)| name == "openssl-src")
        .map(|(_, req, features)| (req.clone(), features.clone()))
        .unwrap_or_else(|| ("^300".to_string(), Vec::new()))
}

/// How the build compiles C for the target.
#[derive(Debug, Clone)]
pub struct CCompiler {
    /// cargo-zigbuild drives the build (zig is the compiler).
    pub zig: bool,
    /// Variables the build sets for it (`CC_<triple>`…).
    pub env: Vec<(String, OsString)>,
    /// What identifies it: its path and `--version`.
    pub identity: String,
}

/// The variables that hand the OpenSSL in `dir` to openssl-sys for `triple`.
pub fn env_for(triple: &str, dir: &Path) -> Vec<(String, OsString)> {
    let upper = triple.replace('-', "_").to_uppercase();
    vec![
        (format!("{upper}_OPENSSL_DIR"), dir.as_os_str().to_owned()),
        (
            format!("{upper}_OPENSSL_LIB_DIR"),
            dir.join("lib").into_os_string(),
        ),
        (
            format!("{upper}_OPENSSL_INCLUDE_DIR"),
            dir.join("include").into_os_string(),
        ),
        (format!("{upper}_OPENSSL_STATIC"), "1".into()),
    ]
}

/// perl and make, which OpenSSL's build needs, are on PATH.
pub fn check_tools() -> Result<()> {
    let missing: Vec<&str> = ["perl", "make"]
        .into_iter()
        .filter(|t| which::which(t).is_err())
        .collect();
    if !missing.is_empty() {
        bail!(
            "building a static OpenSSL for openssl-sys needs perl and make, and {} not installed; install them (`apt-get install perl make`), or set openssl = \"off\" in [package.metadata.containerize] and point OPENSSL_DIR at a static OpenSSL",
            match missing.as_slice() {
                [one] => format!("{one} is"),
                _ => missing.join(" and ") + " are",
            }
        );
    }
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

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

const MANIFEST: &str = "files.json";

/// Writes `files.json`: every file's sha256.
fn write_manifest(dir: &Path) -> Result<()> {
    let mut files = Vec::new();
    for rel in files_below(dir)? {
        let digest = sha256_file(&dir.join(&rel)).with_context(|| format!("reading {rel}"))?;
        files.push((rel, digest));
    }
    for lib in [
        "lib/libssl.a",
        "lib/libcrypto.a",
        "include/openssl/opensslv.h",
    ] {
        if !files.iter().any(|(rel, _)| rel == lib) {
            bail!(
                "the OpenSSL build wrote no {lib} in {}; report this at the tool's issue tracker with the build's output",
                dir.display()
            );
        }
    }
    std::fs::write(dir.join(MANIFEST), serde_json::to_vec_pretty(&files)?)
        .with_context(|| format!("writing {}", dir.join(MANIFEST).display()))
}

/// Whether `dir` holds exactly the files its manifest lists, each with its digest.
fn complete(dir: &Path) -> bool {
    let check = || -> Result<bool> {
        let listed: Vec<(String, String)> =
            serde_json::from_slice(&std::fs::read(dir.join(MANIFEST))?)?;
        let present: Vec<String> = files_below(dir)?
            .into_iter()
            .filter(|f| f != MANIFEST)
            .collect();
        if present.len() != listed.len()
            || present.iter().zip(&listed).any(|(p, (l, _))| p != l)
            || !present.iter().any(|f| f == "lib/libssl.a")
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

/// Writes `path` unless it already holds `contents` (so cargo sees no change).
fn write_if_changed(path: &Path, contents: &str) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == contents.as_bytes()) {
        return Ok(());
    }
    // Its errors name the path (and a full disk as such).
    atomic::write_file(path, |w| Ok(w.write_all(contents.as_bytes())?))
}

fn toml_string(s: &str) -> String {
    toml_edit::Value::from(s).to_string()
}

/// The helper crate for one openssl-src requirement.
fn write_helper(dir: &Path, req: &str, features: &[String]) -> Result<()> {
    let features = features
        .iter()
        .map(|f| toml_string(f))
        .collect::<Vec<_>>()
        .join(", ");
    let manifest = format!(
        "# Written by cargo-containerize: builds a static OpenSSL with openssl-src.\n\
         [package]\nname = \"cargo-containerize-openssl\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\nbuild = \"build.rs\"\n\n\
         [lib]\npath = \"lib.rs\"\n\n[workspace]\n\n\
         [build-dependencies]\nopenssl-src = {{ version = {}, features = [{features}] }}\n",
        toml_string(req)
    );
    write_if_changed(&dir.join("Cargo.toml"), &manifest)?;
    write_if_changed(&dir.join("build.rs"), HELPER_BUILD_RS)?;
    write_if_changed(&dir.join("lib.rs"), "")?;
    Ok(())
}

/// How old the helper's `Cargo.lock` may get before openssl-src is resolved again. OpenSSL's
/// security releases reach builds as new openssl-src versions, and the helper builds with
/// `--locked`, so a lock kept forever would pin the first OpenSSL it saw. The refresh rule:
/// without `--offline`/`--frozen`, a lock older than this is made again (`cargo
/// generate-lockfile`: the newest openssl-src the requirement allows), and a new version is a
/// new cache entry, built once; with them, or when resolving fails (no network), the lock is
/// used as it is, with a warning in the latter case. The status line names the OpenSSL used.
const REFRESH_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Whether the helper's lock file at `lock` is due to be resolved again (see [`REFRESH_AFTER`]).
fn needs_refresh(lock: &Path, offline: bool, max_age: Duration) -> bool {
    let age = std::fs::metadata(lock)
        .and_then(|m| m.modified())
        .map(|t| t.elapsed().unwrap_or_default());
    match age {
        Err(_) => true,
        Ok(_) if offline => false,
        Ok(age) => age > max_age,
    }
}

/// Resolves the helper's dependencies into its `Cargo.lock` (`cargo generate-lockfile`), and
/// marks the lock fresh.
fn resolve(helper: &Path, cwd: &Path, offline: bool) -> Result<()> {
    let mut cmd = Command::new(crate::build::cargo());
    cmd.arg("generate-lockfile")
        .arg("--manifest-path")
        .arg(helper.join("Cargo.toml"))
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if offline {
        cmd.arg("--offline");
    }
    let out = cmd.output().context("running cargo generate-lockfile")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .find(|l| l.starts_with("error"))
            .unwrap_or("cargo failed")
            .trim_start_matches("error: ");
        bail!(
            "resolving the openssl-src crate to build OpenSSL for openssl-sys failed: {first}; {}",
            if offline {
                "run once without --offline (or `cargo fetch` a crate that depends on openssl-src), or enable openssl-sys's `vendored` feature"
            } else {
                "check the network or your registry configuration, or set openssl = \"off\""
            }
        );
    }
    // cargo leaves an unchanged lock file as it was: its age is when it was last checked.
    std::fs::File::options()
        .write(true)
        .open(helper.join("Cargo.lock"))
        .and_then(|f| f.set_modified(std::time::SystemTime::now()))
        .with_context(|| format!("updating {}", helper.join("Cargo.lock").display()))
}

/// The openssl-src version the helper's lock file pins, resolving it first if there is none
/// or it is due for a refresh (see [`REFRESH_AFTER`]).
fn locked_version(helper: &Path, cwd: &Path, offline: bool) -> Result<String> {
    let lock = helper.join("Cargo.lock");
    if !lock.exists() {
        resolve(helper, cwd, offline)?;
    } else if needs_refresh(&lock, offline, REFRESH_AFTER)
        && let Err(e) = resolve(helper, cwd, offline)
    {
        crate::util::shell::warn(format!(
            "could not check for a newer openssl-src ({e:#}); building with the one resolved before"
        ));
    }
    let text =
        std::fs::read_to_string(&lock).with_context(|| format!("reading {}", lock.display()))?;
    let doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("parsing {}", lock.display()))?;
    doc.get("package")
        .and_then(|p| p.as_array_of_tables())
        .and_then(|ps| {
            ps.iter()
                .find(|p| p.get("name").and_then(|n| n.as_str()) == Some("openssl-src"))
        })
        .and_then(|p| p.get("version").and_then(|v| v.as_str()))
        .map(String::from)
        .with_context(|| format!("{} does not lock openssl-src", lock.display()))
}

/// The helper crate for one openssl-src requirement, written and resolved.
struct Helper {
    dir: PathBuf,
    /// The openssl-src version its lock file pins, e.g. `300.5.4+3.5.4`.
    src_version: String,
    /// Held while the helper's files, lock file and target directory are in use.
    _lock: atomic::DirLock,
}

impl Helper {
    /// The OpenSSL version in openssl-src's version (`300.5.4+3.5.4` → `3.5.4`).
    fn openssl_version(&self) -> &str {
        self.src_version
            .split_once('+')
            .map_or(self.src_version.as_str(), |(_, v)| v)
    }
}

/// Writes the helper crate for `req` and `features` under `root/src` and resolves its
/// openssl-src, holding the helper's lock (a bounded wait) for as long as the result lives.
fn prepare_helper(
    root: &Path,
    req: &str,
    features: &[String],
    cwd: &Path,
    offline: bool,
) -> Result<Helper> {
    let key = sha256_hex(format!("{FORMAT}\n{req}\n{features:?}").as_bytes());
    let src = root.join("src");
    std::fs::create_dir_all(&src).with_context(|| format!("creating {}", src.display()))?;
    let lock_path = src.join(format!("{}.lock", &key[..16]));
    let lock = atomic::lock_file(
        &lock_path,
        &format!(
            "the lock on {} held by another cargo-containerize building OpenSSL",
            lock_path.display()
        ),
        None,
    )?;
    let dir = src.join(&key[..16]);
    write_helper(&dir, req, features)?;
    let src_version = locked_version(&dir, cwd, offline)?;
    Ok(Helper {
        dir,
        src_version,
        _lock: lock,
    })
}

/// The cache directory of the OpenSSL that `helper` builds for `triple` with `cc`.
fn entry_dir(
    root: &Path,
    helper: &Helper,
    triple: &str,
    features: &[String],
    cc: &CCompiler,
) -> PathBuf {
    let key = sha256_hex(
        format!(
            "{FORMAT}\n{HELPER_BUILD_RS}\n{triple}\n{}\n{features:?}\n{}",
            helper.src_version, cc.identity
        )
        .as_bytes(),
    );
    root.join(format!(
        "{triple}-{}-{}",
        helper.openssl_version(),
        &key[..16]
    ))
}

/// The cached static OpenSSL for `triple` (built now when missing), as a directory with
/// `lib/` and `include/`.
#[allow(clippy::too_many_arguments)]
pub fn ensure(
    project: &Project,
    cargo_args: &CargoArgs,
    triple: &str,
    req: &str,
    features: &[String],
    cc: &CCompiler,
    quiet: bool,
) -> Result<PathBuf> {
    let root = crate::memo::base()
        .context("no cache directory for OpenSSL: set CARGO_CONTAINERIZE_CACHE or HOME")?
        .join("openssl");
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let offline = cargo_args.offline || cargo_args.frozen;
    let helper = prepare_helper(&root, req, features, &project.package_root, offline)?;
    let dir = entry_dir(&root, &helper, triple, features, cc);
    let version = helper.openssl_version();
    let say = |verb: &str, note: &str| {
        if !quiet {
            crate::util::shell::status(
                verb,
                format!("OpenSSL {version} for {triple} ({note}{})", dir.display()),
            );
        }
    };
    // What killed builds of this entry left beside it (their temps name their owner).
    atomic::sweep_beside(&dir);
    if complete(&dir) {
        say("Cached", "");
        return Ok(dir);
    }
    check_tools()?;
    let built = publish(&dir, None, |out| {
        say("Building", "once; cached in ");
        build_into(project, &helper, triple, cc, offline, quiet, out)
    })?;
    if !built {
        say("Cached", "");
    }
    Ok(dir)
}

/// Makes the cache entry `dir` unless a complete one is there: under the entry's lock
/// (`<dir>.lock`, waited on for at most `timeout`, or the lock timeout when None), a complete
/// entry (another run's, made meanwhile) is used as it is; otherwise `build` fills a temp
/// directory, its `files.json` is written, and it is renamed to `dir` without replacing
/// anything. An incomplete entry (a damaged one: a rename leaves none) is moved aside and
/// removed first. Returns whether this call built the entry.
fn publish(
    dir: &Path,
    timeout: Option<Duration>,
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
            "the lock on {} held by another cargo-containerize building OpenSSL",
            lock_path.display()
        ),
        timeout,
    )?;
    if complete(dir) {
        return Ok(false);
    }
    if std::fs::symlink_metadata(dir).is_ok() {
        // Not complete, and no other run writes it while we hold the lock: moved into a temp
        // of ours (removed when it is dropped), never deleted in place.
        // Named as `create_dir`'s temps are, so a sweep beside `dir` removes it should this
        // run be killed before it is dropped.
        let aside = crate::util::lease::temp_dir_in(root, &format!(".{name}.tmp-"))
            .with_context(|| format!("creating a directory in {}", root.display()))?;
        std::fs::rename(dir, aside.path().join("old"))
            .with_context(|| format!("moving the incomplete {} aside", dir.display()))?;
    }
    let created = atomic::create_dir(dir, |out| {
        build(out)?;
        write_manifest(out)
    })
    .map_err(|e| {
        atomic::disk_full_remedy_with(e, dir, "set CARGO_CONTAINERIZE_CACHE to another disk")
    })?;
    if !created && complete(dir) {
        // Made meanwhile by a run that did not take the lock; ours is dropped.
        return Ok(false);
    }
    if !complete(dir) {
        bail!(
            "the OpenSSL just built for {} does not match its file list; check the disk (df, dmesg) and run again",
            dir.display()
        );
    }
    Ok(true)
}

/// Builds OpenSSL with the helper crate into `out` (which exists).
fn build_into(
    project: &Project,
    helper: &Helper,
    triple: &str,
    cc: &CCompiler,
    offline: bool,
    quiet: bool,
    out: &Path,
) -> Result<()> {
    let mut cmd = Command::new(crate::build::cargo());
    cmd.arg(if cc.zig { "zigbuild" } else { "build" })
        .args(["--release", "--locked", "--target", triple])
        .arg("--manifest-path")
        .arg(helper.dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(helper.dir.join("target"))
        .current_dir(&project.package_root)
        .env("CARGO_CONTAINERIZE_OPENSSL_OUT", out)
        .stdout(Stdio::null())
        .stderr(if quiet {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
    if offline {
        cmd.arg("--offline");
    }
    for (k, v) in &cc.env {
        cmd.env(k, v);
    }
    let output = cmd
        .output()
        .context("running cargo to build OpenSSL; is cargo on PATH?")?;
    if !output.status.success() {
        if quiet {
            crate::util::shell::passthrough(&output.stderr);
        }
        bail!(
            "building OpenSSL {} for {triple} (openssl-src {}) failed (cargo's errors are above); fix what they name, or set openssl = \"off\" and provide OpenSSL yourself (OPENSSL_DIR, or openssl-sys's `vendored` feature)",
            helper.openssl_version(),
            helper.src_version
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_catches_a_changed_missing_or_extra_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("lib")).unwrap();
        std::fs::create_dir_all(d.join("include/openssl")).unwrap();
        std::fs::write(d.join("lib/libssl.a"), "ssl").unwrap();
        std::fs::write(d.join("lib/libcrypto.a"), "crypto").unwrap();
        std::fs::write(d.join("include/openssl/opensslv.h"), "h").unwrap();
        assert!(!complete(d), "no manifest yet");
        write_manifest(d).unwrap();
        assert!(complete(d));
        std::fs::write(d.join("lib/libssl.a"), "sst").unwrap();
        assert!(!complete(d), "changed bytes");
        std::fs::write(d.join("lib/libssl.a"), "ssl").unwrap();
        std::fs::write(d.join("lib/extra.a"), "x").unwrap();
        assert!(!complete(d), "an extra file");
        std::fs::remove_file(d.join("lib/extra.a")).unwrap();
        std::fs::remove_file(d.join("lib/libcrypto.a")).unwrap();
        assert!(!complete(d), "a missing file");
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
                    publish(&dir, Some(Duration::from_secs(60)), |out| {
                        builds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        fake_build(out)
                    })
                    .unwrap();
                    // Whichever run built it, the entry is whole once publish returns.
                    assert!(complete(&dir));
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
        let built = publish(&dir, Some(Duration::from_secs(1)), |_| {
            panic!("a complete entry is not built again")
        })
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
        assert!(publish(&dir, None, fake_build).unwrap());
        assert!(complete(&dir));
        // Another run holds the entry's lock: the wait is bounded and names the lock.
        let lock = root
            .path()
            .join("x86_64-unknown-linux-musl-3.5.4-0123456789abcdef.lock");
        let holder = std::fs::File::open(&lock).unwrap();
        assert!(crate::util::lease::try_lock(&holder).unwrap());
        let e = publish(&dir, Some(Duration::from_millis(50)), fake_build)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("timed out after 50ms waiting for the lock on")
                && e.contains("building OpenSSL")
                && e.contains("CARGO_CONTAINERIZE_LOCK_TIMEOUT"),
            "{e}"
        );
    }

    #[test]
    fn the_helpers_lock_is_resolved_again_after_a_day_unless_offline() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("Cargo.lock");
        let day = Duration::from_secs(24 * 60 * 60);
        assert!(
            needs_refresh(&lock, true, day),
            "none yet: resolved even offline"
        );
        std::fs::write(&lock, "").unwrap();
        assert!(!needs_refresh(&lock, false, day), "fresh");
        let old = std::time::SystemTime::now() - day - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(needs_refresh(&lock, false, day), "a day old");
        assert!(
            !needs_refresh(&lock, true, day),
            "--offline/--frozen: used as it is"
        );
    }

    #[test]
    fn vendored_or_another_backend_needs_no_openssl_from_the_tool() {
        let sys = |features: &[&str]| NativeDep {
            name: OPENSSL_SYS.into(),
            version: "0.9.118".into(),
            features: features.iter().map(|f| f.to_string()).collect(),
            deps: vec![],
            targets: vec!["x86_64-unknown-linux-musl".into()],
            host: false,
        };
        let decide_for = |f: &[&str]| {
            decide(
                &Project::for_test(vec![sys(f)]),
                "x86_64-unknown-linux-musl",
            )
        };
        assert_eq!(decide_for(&["vendored"]), Decision::Vendored);
        assert_eq!(
            decide_for(&["aws-lc"]),
            Decision::OtherBackend("aws-lc".into())
        );
        assert!(matches!(decide_for(&[]), Decision::Build { .. }));
        assert_eq!(
            decide(
                &Project::for_test(vec![sys(&[])]),
                "aarch64-unknown-linux-musl"
            ),
            Decision::Absent,
            "openssl-sys is linked only into the amd64 binary"
        );
    }

    #[test]
    fn openssl_src_follows_openssl_sys() {
        let sys = NativeDep {
            name: OPENSSL_SYS.into(),
            version: "0.9.118".into(),
            features: vec![],
            targets: vec![],
            host: false,
            deps: vec![(
                "openssl-src".into(),
                "^300.2.0".into(),
                vec!["legacy".into()],
            )],
        };
        assert_eq!(
            openssl_src_requirement(&sys),
            ("^300.2.0".to_string(), vec!["legacy".to_string()])
        );
    }
}
