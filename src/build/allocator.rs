//! The malloc linked into the binary (`allocator`): musl's own, or mimalloc in its place.
//!
//! musl's malloc (mallocng) is small and hardened but slow for programs that allocate a lot,
//! above all from several threads; the usual fix is a code change (`#[global_allocator]`).
//! `allocator = "mimalloc"` needs none: musl (since 1.2.1) lets a static link replace malloc.
//! When the link's own objects define malloc, free, calloc, realloc, aligned_alloc,
//! posix_memalign, memalign and malloc_usable_size, the linker never takes musl's malloc out of
//! libc.a, and musl's internals (which call malloc or `__libc_malloc`) use the replacement too.
//! mimalloc built with `MI_MALLOC_OVERRIDE` defines every one of them, `__libc_malloc` and
//! friends included, so Rust's allocations and those of any C code in the binary go to it.
//!
//! The sources are the C sources the libmimalloc-sys crate ships, at the pinned
//! [`LIBMIMALLOC_SYS`], compiled by that crate's own build script (its `override` feature) for
//! the musl target with the C compiler the build uses for the target (musl-gcc, the
//! `<arch>-linux-musl-gcc` cross compiler, or zig through cargo-zigbuild). cargo fetches and
//! builds it through a tiny helper crate the tool writes into its cache, so `--offline`,
//! mirrors and source replacement apply as to the user's own dependencies. The static library
//! the build script leaves in its `OUT_DIR` (which cargo reports) is kept as a
//! [`super::cached`] entry, `<cache>/mimalloc/<triple>-<version>-<key>/lib/libmimalloc.a`, the
//! key covering the target, the crate version, the helper's Cargo.lock (cc-rs's version), the C
//! flags and the C compiler's identity: built once, used only after its digest matches.
//!
//! Linking: `-l static:+whole-archive=mimalloc -L native=<entry>/lib`, for the binary's own
//! crate only (the plan's `final_args`). rustc passes the current crate's native libraries to
//! the linker before those of its dependencies (std, then libc, whose `-lc` is musl's libc.a),
//! so GNU ld defines malloc from mimalloc before it ever reads libc.a; `+whole-archive` keeps
//! mimalloc's one object although nothing read before it calls malloc yet. lld resolves the
//! same way (the eagerly loaded object defines malloc, so libc.a's malloc members are never
//! fetched).

use super::cached::{self, toml_string};
use super::cc::CCompiler;
use super::helper_crate::{HelperCrate, Scaffold};
use crate::metadata::values::Allocator;
use crate::metadata::{CargoArgs, Project};
use crate::util::atomic;
use crate::util::digest::Digest;
use crate::util::shell::Shell;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The libmimalloc-sys release whose C sources (mimalloc 3.x) the tool builds. Pinned, so the
/// same tool builds the same malloc; a new pin is a new cache entry.
pub const LIBMIMALLOC_SYS: &str = "0.1.49";
const CRATE: &str = "libmimalloc-sys";
/// The library's name, as the crate's build script calls it (`libmimalloc.a`).
const LIB: &str = "mimalloc";

/// Versions of the cache layout and of the helper: a change to either builds anew.
const FORMAT: &str = "cargo-containerize mimalloc cache 2";

const ENTRY: cached::Kind = cached::Kind {
    what: "mimalloc",
    required: &["lib/libmimalloc.a"],
};

/// Why the build needs a C compiler for the allocator, when it does.
pub fn needs_c(allocator: Allocator) -> Option<&'static str> {
    match allocator {
        Allocator::Musl => None,
        Allocator::Mimalloc => Some("allocator = \"mimalloc\" compiles mimalloc's C sources"),
    }
}

/// The rustc arguments that link `allocator` into the binary for `triple` (none for musl's
/// own), building the library first when the cache has none.
pub fn link_args(
    project: &Project,
    cargo_args: &CargoArgs,
    allocator: Allocator,
    triple: &str,
    cc: &CCompiler,
    shell: &Shell,
) -> Result<Vec<String>> {
    if allocator == Allocator::Musl {
        return Ok(Vec::new());
    }
    // Two copies of mimalloc (the crate's own, through the mimalloc crate, and ours) define
    // the same symbols: the link would fail with pages of duplicates.
    if project
        .native
        .iter()
        .any(|d| d.name == CRATE && d.targets.iter().any(|t| t == triple))
    {
        bail!(
            "package `{}` already links mimalloc through the {CRATE} crate (the mimalloc crate), and allocator = \"mimalloc\" would link it a second time; remove the setting (or --allocator), or drop the crate and its #[global_allocator]",
            project.package.name
        );
    }
    let dir = ensure(project, cargo_args, triple, cc, shell)?;
    Ok(vec![
        "-l".into(),
        format!("static:+whole-archive={LIB}"),
        "-L".into(),
        format!("native={}", dir.join("lib").display()),
    ])
}

/// The helper crate: its only dependency is libmimalloc-sys with `override`.
fn scaffold(dependency: &str) -> Scaffold<'_> {
    Scaffold {
        what: "mimalloc",
        name: "mimalloc",
        purpose: "builds mimalloc as a malloc replacement with libmimalloc-sys.",
        table: "dependencies",
        dependency,
        build_rs: None,
    }
}

/// libmimalloc-sys's line in the helper's manifest: the pinned version, `override` only.
fn dependency() -> String {
    format!(
        "{CRATE} = {{ version = {}, default-features = false, features = [\"override\"] }}",
        toml_string(&format!("={LIBMIMALLOC_SYS}"))
    )
}

/// The helper crate under `root/src`, written and resolved, with its lock held (a bounded
/// wait) for as long as it is in use. Its Cargo.lock is made once and kept: the crate is
/// pinned, and what else it pins (cc-rs) is part of the cache key.
struct Helper {
    krate: HelperCrate,
    lock_file: String,
}

fn prepare_helper(
    base: &Path,
    root: &Path,
    cwd: &Path,
    offline: bool,
    shell: &Shell,
) -> Result<Helper> {
    let dependency = dependency();
    let scaffold = scaffold(&dependency);
    let krate = scaffold.write(
        base,
        root,
        &format!("{FORMAT}\n{}", scaffold.manifest()),
        shell,
    )?;
    let lock_file = krate.lock_file();
    if !lock_file.exists() {
        krate.resolve(cwd, offline, |first| {
            anyhow::anyhow!(
                "resolving the {CRATE} crate {LIBMIMALLOC_SYS} to build mimalloc failed: {first}; {}",
                if offline {
                    "run once without --offline, or leave allocator at \"musl\""
                } else {
                    "check the network or your registry configuration, or leave allocator at \"musl\""
                }
            )
        })?;
    }
    let lock_file = std::fs::read_to_string(&lock_file)
        .with_context(|| format!("reading {}", lock_file.display()))?;
    Ok(Helper { krate, lock_file })
}

/// The C flags the helper's build gets for `triple`: the user's (as cc-rs would pick them),
/// and a map of cargo's home to /cargo, so the sources' paths in debug info are the same on
/// every machine (as the Rust code's are: see `remap_flags`). For zig, also the epoch of
/// `__DATE__`/`__TIME__` (see [`build_into`]) as a flag: zig's own cache of compiled objects
/// does not look at SOURCE_DATE_EPOCH, so without it an object compiled earlier under another
/// epoch could come back.
fn c_flags(triple: &str, zig: bool) -> String {
    let under = triple.replace('-', "_");
    let user = [
        format!("CFLAGS_{triple}"),
        format!("CFLAGS_{under}"),
        "TARGET_CFLAGS".to_string(),
        "CFLAGS".to_string(),
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok())
    .unwrap_or_default();
    let mut flags = user.trim().to_string();
    if let Some(home) = super::cargo_home() {
        if !flags.is_empty() {
            flags.push(' ');
        }
        flags.push_str(&format!("-ffile-prefix-map={}=/cargo", home.display()));
    }
    if zig {
        flags.push_str(" -Xclang -source-date-epoch -Xclang 0");
    }
    flags.trim_start().to_string()
}

/// The cached static mimalloc for `triple` (built now when missing): a directory with `lib/`.
fn ensure(
    project: &Project,
    cargo_args: &CargoArgs,
    triple: &str,
    cc: &CCompiler,
    shell: &Shell,
) -> Result<PathBuf> {
    let (base, root) = cached::user_dir("mimalloc", "mimalloc")?;
    let offline = cargo_args.offline || cargo_args.frozen;
    let helper = prepare_helper(&base, &root, &project.package_root, offline, shell)?;
    let cflags = c_flags(triple, cc.zig);
    let key = Digest::sha256_of(
        format!(
            "{FORMAT}\n{triple}\n{}\n{cflags}\n{}",
            helper.lock_file, cc.identity
        )
        .as_bytes(),
    );
    let dir = root.join(format!("{triple}-{LIBMIMALLOC_SYS}-{}", &key.hex()[..16]));
    let say = |verb: &str, note: &str| {
        shell.status(
            verb,
            format!(
                "mimalloc ({CRATE} {LIBMIMALLOC_SYS}) for {triple} ({note}{})",
                dir.display()
            ),
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
    let built = ENTRY.publish(&dir, None, shell, |out| {
        say("Building", "once; cached in ");
        build_into(project, &helper, triple, cc, &cflags, offline, shell, out)
    })?;
    if !built {
        say("Cached", "");
    }
    Ok(dir)
}

/// Builds the helper for `triple` and copies the library its dependency's build script made
/// into `out/lib`.
#[allow(clippy::too_many_arguments)]
fn build_into(
    project: &Project,
    helper: &Helper,
    triple: &str,
    cc: &CCompiler,
    cflags: &str,
    offline: bool,
    shell: &Shell,
    out: &Path,
) -> Result<()> {
    let output = helper.krate.build(
        project,
        triple,
        cc,
        offline,
        shell,
        |cmd| {
            cmd.arg("--message-format=json-render-diagnostics")
                .env(format!("CFLAGS_{triple}"), cflags)
                // mimalloc's banner names the day and time it was compiled (__DATE__, __TIME__):
                // GCC and clang take them from SOURCE_DATE_EPOCH, so every build of an entry
                // says the same.
                .env("SOURCE_DATE_EPOCH", "0");
        },
        (
            &format!("mimalloc ({CRATE} {LIBMIMALLOC_SYS}) for {triple}"),
            "leave allocator at \"musl\"",
        ),
    )?;
    let out_dir = built_out_dir(&output.stdout).with_context(|| {
        format!(
            "cargo reported no build script run of {CRATE}; report this at the tool's issue tracker"
        )
    })?;
    let lib = out_dir.join(format!("lib{LIB}.a"));
    let to = out.join("lib");
    std::fs::create_dir_all(&to).with_context(|| format!("creating {}", to.display()))?;
    std::fs::copy(&lib, to.join(format!("lib{LIB}.a")))
        .with_context(|| format!("copying {}", lib.display()))?;
    Ok(())
}

/// The `OUT_DIR` of libmimalloc-sys's build script, from cargo's JSON messages.
fn built_out_dir(stdout: &[u8]) -> Option<PathBuf> {
    cargo_metadata::Message::parse_stream(stdout)
        .filter_map(|m| match m {
            Ok(cargo_metadata::Message::BuildScriptExecuted(b)) => Some(b),
            _ => None,
        })
        .find(|b| b.package_id.repr.contains(&format!("{CRATE}@")))
        .map(|b| b.out_dir.into_std_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helper_pins_the_crate_with_its_override_feature() {
        let m: toml_edit::DocumentMut = scaffold(&dependency()).manifest().parse().unwrap();
        let dep = &m["dependencies"][CRATE];
        assert_eq!(
            dep["version"].as_str(),
            Some(format!("={LIBMIMALLOC_SYS}").as_str())
        );
        assert_eq!(
            dep["features"]
                .as_array()
                .unwrap()
                .iter()
                .next()
                .unwrap()
                .as_str(),
            Some("override")
        );
    }

    #[test]
    fn the_out_dir_is_read_from_cargos_messages() {
        let msg = r#"{"reason":"build-script-executed","package_id":"registry+https://github.com/rust-lang/crates.io-index#libmimalloc-sys@0.1.49","linked_libs":["static=mimalloc"],"linked_paths":["native=/t/out"],"cfgs":[],"env":[],"out_dir":"/t/out"}
{"reason":"build-finished","success":true}
"#;
        assert_eq!(built_out_dir(msg.as_bytes()), Some(PathBuf::from("/t/out")));
        assert_eq!(
            built_out_dir(b"{\"reason\":\"build-finished\",\"success\":true}\n"),
            None
        );
    }

    #[test]
    fn a_crate_that_links_mimalloc_itself_is_refused_before_anything_builds() {
        let sys = crate::metadata::NativeDep {
            name: CRATE.into(),
            version: "0.1.43".into(),
            features: vec![],
            deps: vec![],
            targets: vec!["x86_64-unknown-linux-musl".into()],
            host: false,
            links: None,
            build_deps: vec![],
            enabled_via: vec![],
        };
        let project = Project::for_test(vec![sys]);
        let cc = CCompiler {
            zig: false,
            env: vec![],
            identity: "none".into(),
        };
        let e = link_args(
            &project,
            &CargoArgs::default(),
            Allocator::Mimalloc,
            "x86_64-unknown-linux-musl",
            &cc,
            &Shell::discard(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("already links mimalloc") && e.contains("remove the setting"),
            "{e}"
        );
        assert_eq!(
            link_args(
                &project,
                &CargoArgs::default(),
                Allocator::Musl,
                "x86_64-unknown-linux-musl",
                &cc,
                &Shell::discard()
            )
            .unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn musl_links_nothing_and_needs_no_c_compiler() {
        assert_eq!(needs_c(Allocator::Musl), None);
        assert!(
            needs_c(Allocator::Mimalloc)
                .unwrap()
                .contains("allocator = \"mimalloc\"")
        );
    }
}
