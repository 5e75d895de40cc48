//! Issue 14 (P9): `allocator = "mimalloc"` links mimalloc into the static binary as its malloc,
//! with no change to the program. Proved at runtime: mimalloc prints its statistics at exit
//! when MIMALLOC_SHOW_STATS=1 is in the environment, which musl's malloc knows nothing of; the
//! image runs under runc (amd64) and the arm64 binary out of the image under
//! qemu-aarch64-static. Proved at link time: an unstripped binary has mimalloc's symbols and
//! none of musl's malloc.
//!
//! Needs scripts/setup-test-env (runc, umoci, qemu-user-static, musl-tools, the aarch64 musl
//! target) and scripts/setup-cross-tools (cargo-zigbuild and zig, for arm64's C code).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::*;
use goblin::elf::Elf;
use goblin::elf::header::{EM_AARCH64, EM_X86_64};
use serde_json::Value;

const GREETING: &str = "hello from cargo-containerize";
const SETTING: &str = "[package.metadata.containerize]\nallocator = \"mimalloc\"\n";
/// Lines of the statistics mimalloc prints at exit with MIMALLOC_SHOW_STATS=1.
const STATS: &[&str] = &["peak rss", "elapsed", "threads"];
/// Symbols only musl's own malloc (mallocng) defines.
const MUSL_MALLOC: &[&str] = &[
    "__malloc_alloc_meta",
    "__libc_malloc_impl",
    "__malloc_context",
];

fn shows_stats(stderr: &str) -> bool {
    STATS.iter().all(|s| stderr.contains(s))
}

/// Where scripts/setup-cross-tools puts cargo-zigbuild and python-zig.
fn cross_tools_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("CONTAINERIZE_TOOLS_BIN") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    Path::new(&home).join(".cache/cargo-containerize/venv/bin")
}

/// PATH with the cross tools first (zig compiles mimalloc for arm64 when no
/// aarch64-linux-musl-gcc is installed).
fn path_with_cross_tools() -> OsString {
    let tools = cross_tools_bin();
    assert!(
        tools.join("cargo-zigbuild").is_file(),
        "cargo-zigbuild is not in {}: run scripts/setup-cross-tools (or point CONTAINERIZE_TOOLS_BIN at a directory holding it and zig)",
        tools.display()
    );
    let mut dirs = vec![tools];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).expect("PATH entries without ':'")
}

/// hello with `allocator = "mimalloc"`, built by the tool with EXTRA in `target`.
fn mimalloc_build(target: &Path, extra: &[&str]) -> Built {
    mimalloc_build_with_cache(target, extra, None)
}

/// [`mimalloc_build`] with the tool's cache in `cache` (CARGO_CONTAINERIZE_CACHE) when given.
fn mimalloc_build_with_cache(target: &Path, extra: &[&str], cache: Option<&Path>) -> Built {
    let project = Project::copy("hello");
    project.append_manifest(SETTING);
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "test");
    let run = capture(
        tool(&project.root)
            .args(["build", "--locked", "--output", &layout.reference()])
            .arg("--target-dir")
            .arg(target)
            .args(extra)
            .env("PATH", path_with_cross_tools())
            .envs(cache.map(|c| ("CARGO_CONTAINERIZE_CACHE", c))),
    );
    run.assert_success();
    Built::new(project, out, layout, run)
}

/// The target dir every mimalloc build of hello in this module shares.
fn mimalloc_target() -> PathBuf {
    shared_target_dir("allocator-mimalloc")
}

fn hello_mimalloc() -> &'static Built {
    static IMAGE: OnceLock<Built> = OnceLock::new();
    IMAGE.get_or_init(|| mimalloc_build(&mimalloc_target(), &[]))
}

fn hello_default() -> &'static Built {
    static IMAGE: OnceLock<Built> = OnceLock::new();
    IMAGE.get_or_init(|| build_fixture("hello", &[]))
}

/// `runc run` of the image with `vars` added to the process's environment.
fn run_with_env(built: &Built, vars: &[(&str, &str)]) -> Run {
    let bundle = built.layout.unpack();
    let config_path = bundle.path.join("config.json");
    let mut config: Value =
        serde_json::from_slice(&fs::read(&config_path).expect("config.json")).expect("json");
    let env = config["process"]["env"]
        .as_array_mut()
        .expect("process.env");
    for (k, v) in vars {
        env.push(Value::String(format!("{k}={v}")));
    }
    fs::write(&config_path, serde_json::to_vec(&config).expect("json")).expect("config.json");
    bundle.run()
}

/// The binary in a single-platform image, unpacked with umoci (which does not care about the
/// image's architecture).
fn binary_of(built: &Built) -> PathBuf {
    built.bundle().file("/usr/local/bin/hello")
}

/// The names in a binary's symbol table.
fn symbols(binary: &Path) -> Vec<String> {
    let bytes = fs::read(binary).expect("binary");
    let elf = Elf::parse(&bytes).expect("ELF");
    elf.syms
        .iter()
        .filter_map(|s| elf.strtab.get_at(s.st_name))
        .map(String::from)
        .collect()
}

fn verify(binary: &Path) -> Run {
    let cwd = tempdir();
    capture(tool(cwd.path()).arg("verify").arg(binary))
}

#[test]
#[ignore = "heavy: builds mimalloc; needs umoci, runc"]
fn mimalloc_image_runs_under_runc_and_mimalloc_prints_its_statistics_with_show_stats() {
    let built = hello_mimalloc();
    assert!(
        built.run.stderr.contains("mimalloc (libmimalloc-sys"),
        "no mimalloc status line: {}",
        built.run
    );
    let plain = run_with_env(built, &[]);
    plain.assert_success();
    assert_eq!(plain.stdout.lines().next(), Some(GREETING), "{plain}");
    assert!(
        !shows_stats(&plain.stderr),
        "stats without being asked: {plain}"
    );

    let stats = run_with_env(built, &[("MIMALLOC_SHOW_STATS", "1")]);
    stats.assert_success();
    assert_eq!(stats.stdout.lines().next(), Some(GREETING), "{stats}");
    assert!(
        shows_stats(&stats.stderr),
        "mimalloc printed no statistics, so it is not the malloc in use: {stats}"
    );
}

#[test]
#[ignore = "heavy: builds mimalloc; needs umoci, runc"]
fn the_default_image_uses_musls_malloc_which_prints_nothing_under_show_stats() {
    let built = hello_default();
    let run = run_with_env(
        built,
        &[("MIMALLOC_SHOW_STATS", "1"), ("MIMALLOC_VERBOSE", "1")],
    );
    run.assert_success();
    assert_eq!(run.stdout.lines().next(), Some(GREETING), "{run}");
    assert!(
        !shows_stats(&run.stderr) && !run.stderr.contains("mimalloc"),
        "{run}"
    );
}

#[test]
#[ignore = "heavy: builds mimalloc; needs umoci, runc"]
fn verify_says_both_are_static_and_notes_musls_malloc_only_in_the_default_one() {
    let mimalloc = binary_of(hello_mimalloc());
    let run = verify(&mimalloc);
    assert_eq!(run.code(), Some(0), "{run}");
    assert!(run.stdout.contains(": static, x86_64"), "{run}");
    assert!(!run.stderr.contains("musl's own malloc"), "{run}");

    let default = binary_of(hello_default());
    let run = verify(&default);
    assert_eq!(run.code(), Some(0), "{run}");
    assert!(run.stdout.contains(": static, x86_64"), "{run}");
    let note = run
        .stderr
        .lines()
        .find(|l| l.contains("musl's own malloc"))
        .unwrap_or_else(|| panic!("no note about musl's malloc: {run}"));
    assert!(
        note.contains("allocator = \"mimalloc\"") && note.contains(&default.display().to_string()),
        "{run}"
    );
}

#[test]
#[ignore = "heavy: builds mimalloc; needs umoci, runc"]
fn an_unstripped_mimalloc_binary_has_mimallocs_malloc_and_none_of_musls() {
    let built = mimalloc_build(&mimalloc_target(), &["--no-strip"]);
    let names = symbols(&binary_of(&built));
    for wanted in ["mi_malloc", "malloc", "free", "posix_memalign"] {
        assert!(
            names.iter().any(|n| n == wanted),
            "no {wanted} in the binary"
        );
    }
    for musl in MUSL_MALLOC {
        assert!(
            !names.iter().any(|n| n == musl),
            "musl's malloc ({musl}) was linked beside mimalloc"
        );
    }
    // The same symbols, looked for the same way, are in a default build: the check can fail.
    let default = build_fixture("hello", &["--no-strip"]);
    let names = symbols(&binary_of(&default));
    assert!(names.iter().any(|n| n == "__libc_malloc_impl"));
    assert!(!names.iter().any(|n| n == "mi_malloc"));
    // verify tells them apart with their symbol tables too.
    let run = verify(&binary_of(&built));
    assert!(
        run.code() == Some(0) && !run.stderr.contains("musl's own malloc"),
        "{run}"
    );
    let run = verify(&binary_of(&default));
    assert!(
        run.code() == Some(0) && run.stderr.contains("musl's own malloc"),
        "{run}"
    );
}

#[test]
#[ignore = "heavy: builds mimalloc; needs umoci, runc"]
fn the_arm64_mimalloc_binary_out_of_the_image_is_static_and_shows_statistics_under_qemu() {
    let built = mimalloc_build(&mimalloc_target(), &["--platform", "linux/arm64"]);
    let binary = binary_of(&built);
    let bytes = fs::read(&binary).expect("binary");
    let elf = Elf::parse(&bytes).expect("ELF");
    assert_eq!(elf.header.e_machine, EM_AARCH64);
    let run = verify(&binary);
    assert_eq!(run.code(), Some(0), "{run}");
    assert!(run.stdout.contains(": static, aarch64"), "{run}");
    assert!(!run.stderr.contains("musl's own malloc"), "{run}");

    let qemu = |show: bool| {
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=10", "120", "qemu-aarch64-static"])
            .arg(&binary);
        if show {
            cmd.env("MIMALLOC_SHOW_STATS", "1");
        }
        capture(&mut cmd)
    };
    let plain = qemu(false);
    plain.assert_success();
    assert_eq!(plain.stdout.lines().next(), Some(GREETING), "{plain}");
    assert!(!shows_stats(&plain.stderr), "{plain}");
    let stats = qemu(true);
    stats.assert_success();
    assert!(shows_stats(&stats.stderr), "{stats}");
}

/// The second build has a cache of its own, so it compiles mimalloc again: the C build is
/// reproducible too (mimalloc's banner holds `__DATE__` and `__TIME__`).
#[test]
#[ignore = "heavy: builds mimalloc; needs umoci, runc"]
fn mimalloc_builds_in_two_directories_give_the_same_digest() {
    let a_target = tempdir();
    let b_target = tempdir();
    let b_cache = tempdir();
    let a = mimalloc_build(a_target.path(), &[]);
    let b = mimalloc_build_with_cache(b_target.path(), &[], Some(b_cache.path()));
    assert!(b.run.stderr.contains("Building mimalloc"), "{}", b.run);
    assert_ne!(a.project.root, b.project.root);
    assert_eq!(a.run.digest(), b.run.digest());
    let amd64 = fs::read(binary_of(&a)).expect("binary");
    assert_eq!(Elf::parse(&amd64).expect("ELF").header.e_machine, EM_X86_64);
    assert!(amd64 == fs::read(binary_of(&b)).expect("binary"));
}

#[test]
#[ignore = "heavy: builds mimalloc"]
fn an_unknown_allocator_is_a_one_line_error_naming_the_key_and_the_values() {
    let project = Project::copy("hello");
    project.append_manifest("[package.metadata.containerize]\nallocator = \"tcmalloc\"\n");
    let (run, layout, _out) = try_build(&project, None, &[]);
    assert_error(
        &run,
        1,
        &["`allocator`", "tcmalloc", "\"musl\"", "\"mimalloc\""],
    );
    assert!(!layout.dir.exists(), "an image was written: {run}");
}

#[test]
#[ignore = "heavy: builds mimalloc"]
fn mimalloc_for_arm64_without_a_cross_c_compiler_or_zig_is_a_one_line_error_before_building() {
    // cargo's directory (rustup's proxies) and the system's: no zig, no aarch64-linux-musl-gcc.
    let cargo_dir = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .find(|d| d.join("cargo").is_file())
        .expect("cargo is on PATH");
    let dirs = [cargo_dir, PathBuf::from("/usr/bin"), PathBuf::from("/bin")];
    for dir in &dirs {
        for t in [
            "cargo-zigbuild",
            "zig",
            "python-zig",
            "aarch64-linux-musl-gcc",
        ] {
            assert!(
                !dir.join(t).exists(),
                "{} exists: this machine cannot test the branch",
                dir.join(t).display()
            );
        }
    }
    let project = Project::copy("hello");
    project.append_manifest(SETTING);
    let target = tempdir();
    let (run, layout, _out) = {
        let out = tempdir();
        let layout = Layout::new(out.path().join("image"), "test");
        let run = capture(
            tool(&project.root)
                .args(["build", "--locked", "--platform", "linux/arm64", "--output"])
                .arg(layout.reference())
                .arg("--target-dir")
                .arg(target.path())
                .env("PATH", std::env::join_paths(&dirs).expect("PATH"))
                .env_remove("CC_aarch64_unknown_linux_musl")
                .env_remove("CC_aarch64-unknown-linux-musl"),
        );
        (run, layout, out)
    };
    assert_error(
        &run,
        1,
        &[
            "allocator = \"mimalloc\"",
            "aarch64",
            "cargo-zigbuild",
            "zig",
        ],
    );
    assert!(!layout.dir.exists(), "an image was written: {run}");
    assert!(
        !target.path().join("aarch64-unknown-linux-musl").exists(),
        "cargo built before the error: {run}"
    );
}
