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
//! target, the openssl-src version and features, and the C compiler's identity: a
//! [`super::cached`] entry, built once under a lock and used only after every file matches its
//! digest.

use super::cached::{self, toml_string};
use super::cc::CCompiler;
use super::helper_crate::{HelperCrate, Scaffold};
use crate::metadata::values::OpensslMode;
use crate::metadata::{CargoArgs, NativeDep, Project};
use crate::util::atomic;
use crate::util::digest::Digest;
use crate::util::shell::Shell;
use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
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

/// What a complete OpenSSL cache entry holds.
const ENTRY: cached::Kind = cached::Kind {
    what: "OpenSSL",
    required: &[
        "lib/libssl.a",
        "lib/libcrypto.a",
        "include/openssl/opensslv.h",
    ],
};

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

/// The helper crate for one openssl-src requirement (`dependency`: its line).
fn scaffold(dependency: &str) -> Scaffold<'_> {
    Scaffold {
        what: "OpenSSL",
        name: "openssl",
        purpose: "builds a static OpenSSL with openssl-src.",
        table: "build-dependencies",
        dependency,
        build_rs: Some(HELPER_BUILD_RS),
    }
}

/// openssl-src's line in the helper's manifest, at `req` with `features`.
fn dependency(req: &str, features: &[String]) -> String {
    let features = features
        .iter()
        .map(|f| toml_string(f))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "openssl-src = {{ version = {}, features = [{features}] }}",
        toml_string(req)
    )
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
fn resolve(helper: &HelperCrate, cwd: &Path, offline: bool) -> Result<()> {
    helper.resolve(cwd, offline, |first| {
        anyhow::anyhow!(
            "resolving the openssl-src crate to build OpenSSL for openssl-sys failed: {first}; {}",
            if offline {
                "run once without --offline (or `cargo fetch` a crate that depends on openssl-src), or enable openssl-sys's `vendored` feature"
            } else {
                "check the network or your registry configuration, or set openssl = \"off\""
            }
        )
    })?;
    // cargo leaves an unchanged lock file as it was: its age is when it was last checked.
    let lock = helper.lock_file();
    std::fs::File::options()
        .write(true)
        .open(&lock)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()))
        .with_context(|| format!("updating {}", lock.display()))
}

/// The openssl-src version the helper's lock file pins, resolving it first if there is none
/// or it is due for a refresh (see [`REFRESH_AFTER`]).
fn locked_version(
    helper: &HelperCrate,
    cwd: &Path,
    offline: bool,
    shell: &Shell,
) -> Result<String> {
    let lock = helper.lock_file();
    if !lock.exists() {
        resolve(helper, cwd, offline)?;
    } else if needs_refresh(&lock, offline, REFRESH_AFTER)
        && let Err(e) = resolve(helper, cwd, offline)
    {
        shell.warn(format!(
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

/// The helper crate for one openssl-src requirement, written and resolved (its lock held).
struct Helper {
    krate: HelperCrate,
    /// The openssl-src version its lock file pins, e.g. `300.5.4+3.5.4`.
    src_version: String,
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
    base: &Path,
    root: &Path,
    req: &str,
    features: &[String],
    cwd: &Path,
    offline: bool,
    shell: &Shell,
) -> Result<Helper> {
    let dependency = dependency(req, features);
    let krate = scaffold(&dependency).write(
        base,
        root,
        &format!("{FORMAT}\n{req}\n{features:?}"),
        shell,
    )?;
    let src_version = locked_version(&krate, cwd, offline, shell)?;
    Ok(Helper { krate, src_version })
}

/// The cache directory of the OpenSSL that `helper` builds for `triple` with `cc`.
fn entry_dir(
    root: &Path,
    helper: &Helper,
    triple: &str,
    features: &[String],
    cc: &CCompiler,
) -> PathBuf {
    let key = Digest::sha256_of(
        format!(
            "{FORMAT}\n{HELPER_BUILD_RS}\n{triple}\n{}\n{features:?}\n{}",
            helper.src_version, cc.identity
        )
        .as_bytes(),
    );
    root.join(format!(
        "{triple}-{}-{}",
        helper.openssl_version(),
        &key.hex()[..16]
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
    shell: &Shell,
) -> Result<PathBuf> {
    let (base, root) = cached::user_dir("openssl", "OpenSSL")?;
    let offline = cargo_args.offline || cargo_args.frozen;
    let helper = prepare_helper(
        &base,
        &root,
        req,
        features,
        &project.package_root,
        offline,
        shell,
    )?;
    let dir = entry_dir(&root, &helper, triple, features, cc);
    let version = helper.openssl_version();
    let say = |verb: &str, note: &str| {
        shell.status(
            verb,
            format!("OpenSSL {version} for {triple} ({note}{})", dir.display()),
        );
    };
    // What killed builds of this entry left beside it (their temps name their owner).
    atomic::sweep_beside(&dir);
    // An entry another user could have planted or changed is refused, not used or replaced.
    ENTRY.check_trusted(&base, &dir)?;
    if ENTRY.complete(&dir) {
        say("Cached", "");
        return Ok(dir);
    }
    check_tools()?;
    let built = ENTRY.publish(&dir, None, shell, |out| {
        say("Building", "once; cached in ");
        build_into(project, &helper, triple, cc, offline, shell, out)
    })?;
    if !built {
        say("Cached", "");
    }
    Ok(dir)
}

/// Builds OpenSSL with the helper crate into `out` (which exists).
fn build_into(
    project: &Project,
    helper: &Helper,
    triple: &str,
    cc: &CCompiler,
    offline: bool,
    shell: &Shell,
    out: &Path,
) -> Result<()> {
    helper.krate.build(
        project,
        triple,
        cc,
        offline,
        shell,
        |cmd| {
            cmd.env("CARGO_CONTAINERIZE_OPENSSL_OUT", out);
        },
        (
            &format!(
                "OpenSSL {} for {triple} (openssl-src {})",
                helper.openssl_version(),
                helper.src_version
            ),
            "set openssl = \"off\" and provide OpenSSL yourself (OPENSSL_DIR, or openssl-sys's `vendored` feature)",
        ),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
            links: None,
            build_deps: vec![],
            enabled_via: vec![],
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
            links: None,
            build_deps: vec![],
            enabled_via: vec![],
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
