//! The shapes of real crates that did not build (issue 24): each is refused before anything
//! compiles, with a remedy, and each test follows the printed remedy word for word and gets a
//! working image. Nothing here reaches the network: the crates.io crates are the ones
//! `scripts/setup-test-env` fetched into cargo's cache, every cargo run (the tool's and the
//! remedies') has CARGO_NET_OFFLINE=true, and the registries whose answers matter (a lock
//! naming a version the registry lacks, a dependency needing a newer rustc) are directory
//! sources the tests write.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::*;

/// The tool in `cwd`, offline.
fn offline_tool(cwd: &Path) -> Command {
    let mut cmd = tool(cwd);
    cmd.env("CARGO_NET_OFFLINE", "true");
    cmd
}

/// A build of `project` into a fresh layout; returns the run and where the image is.
fn build_in(project: &Project, target: &Path, extra: &[&str]) -> (Run, Layout, tempfile::TempDir) {
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "test");
    let run = capture(
        offline_tool(&project.root)
            .args(["build", "--locked", "--output", &layout.reference()])
            .arg("--target-dir")
            .arg(target)
            .args(extra),
    );
    (run, layout, out)
}

/// The refusal the tool must give before compiling anything: one error line holding
/// `keywords`, no `Compiling`, nothing in the target dir for the musl target, no output.
fn assert_refused_before_compiling(run: &Run, target: &Path, out: &Path, keywords: &[&str]) {
    assert_one_line_error(run, keywords);
    assert!(
        !run.stderr.contains("Compiling"),
        "cargo compiled before the refusal: {run}"
    );
    assert!(
        !target.join(MUSL_TARGET).exists(),
        "the build started before the refusal: {run}"
    );
    assert!(snapshot(out).is_empty(), "an output was written");
}

/// The text between the backticks that follow `start` in `line` (`start` included).
fn quoted(line: &str, start: &str) -> String {
    let from = line
        .find(&format!("`{start}"))
        .unwrap_or_else(|| panic!("no `{start}…` in: {line}"))
        + 1;
    let len = line[from..].find('`').expect("closing backtick");
    line[from..from + len].to_string()
}

/// Runs a shell command line the tool printed, as the user would paste it, in `dir`.
fn run_remedy(dir: &Path, command_line: &str) -> Run {
    let run = capture(
        Command::new("sh")
            .args(["-c", command_line])
            .current_dir(dir)
            .env("CARGO_NET_OFFLINE", "true"),
    );
    run.assert_success();
    run
}

/// Builds and runs the image; its stdout must hold `expect`.
fn build_and_run(project: Project, target: &Path, extra: &[&str], expect: &str) -> Built {
    let (run, layout, out) = build_in(&project, target, extra);
    run.assert_success();
    assert!(run.stderr.contains("is static"), "{run}");
    let built = Built::new(project, out, layout, run);
    let ran = built.bundle().run();
    ran.assert_success();
    assert!(ran.stdout.contains(expect), "{ran}");
    built
}

/// A package in a directory source (`vendor/NAME-VERSION`), as `cargo vendor` writes it.
fn vendor_crate(vendor: &Path, name: &str, version: &str, extra_manifest: &str) {
    let dir = vendor.join(format!("{name}-{version}"));
    fs::create_dir_all(dir.join("src")).unwrap();
    fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"{version}\"\nedition = \"2021\"\n{extra_manifest}\n"
        ),
    )
    .unwrap();
    fs::write(
        dir.join("src/lib.rs"),
        format!("pub fn version() -> &'static str {{ \"{version}\" }}\n"),
    )
    .unwrap();
    let sum = sha256_digest(format!("{name} {version}").as_bytes());
    fs::write(
        dir.join(".cargo-checksum.json"),
        format!(
            "{{\"files\":{{}},\"package\":\"{}\"}}",
            sum.trim_start_matches("sha256:")
        ),
    )
    .unwrap();
}

/// A package `app` depending on `leaf = "1.0.10"`, whose crates.io is replaced by a
/// directory source holding `versions` of leaf (each with its extra manifest lines), and
/// whose Cargo.lock locks leaf at `locked`.
fn app_with_vendored_leaf(versions: &[(&str, &str)], locked: &str) -> Project {
    let dir = tempdir();
    let root = dir.path().join("app");
    let vendor = dir.path().join("vendor");
    for (v, extra) in versions {
        vendor_crate(&vendor, "leaf", v, extra);
    }
    fs::create_dir_all(root.join("src")).unwrap();
    fs::create_dir_all(root.join(".cargo")).unwrap();
    fs::write(
        root.join("Cargo.toml"),
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n\n[dependencies]\nleaf = \"1.0.10\"\n",
    )
    .unwrap();
    fs::write(
        root.join("src/main.rs"),
        "fn main() { println!(\"leaf {}\", leaf::version()); }\n",
    )
    .unwrap();
    fs::write(
        root.join(".cargo/config.toml"),
        format!(
            "[source.crates-io]\nreplace-with = \"vendored\"\n\n[source.vendored]\ndirectory = \"{}\"\n",
            vendor.display()
        ),
    )
    .unwrap();
    let sum = sha256_digest(format!("leaf {locked}").as_bytes());
    fs::write(
        root.join("Cargo.lock"),
        format!(
            "version = 4\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [\n \"leaf\",\n]\n\n[[package]]\nname = \"leaf\"\nversion = \"{locked}\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{}\"\n",
            sum.trim_start_matches("sha256:")
        ),
    )
    .unwrap();
    Project::in_dir(dir, root)
}

#[test]
#[ignore = "heavy: builds OpenSSL; needs umoci, runc"]
fn an_optional_sys_crate_behind_the_packages_own_bundled_feature_is_fixed_with_that_feature() {
    // diesel_cli's shape: libsqlite3-sys is optional, turned on by the package's `sqlite`
    // feature; its own `sqlite-bundled` feature turns on libsqlite3-sys/bundled. `cargo add`
    // would change nothing; the package's feature does.
    let project = Project::copy("dbcli");
    let target = tempdir();
    let (run, _layout, out) = build_in(&project, target.path(), &[]);
    assert_refused_before_compiling(
        &run,
        target.path(),
        out.path(),
        &[
            "libsqlite3-sys 0.40.0 links the system's SQLite",
            "`sqlite-bundled`",
            "`--features sqlite-bundled`",
        ],
    );
    assert!(!error_line(&run).contains("cargo add"), "{run}");
    let flags = quoted(error_line(&run), "--features ");
    let flags: Vec<&str> = flags.split_whitespace().collect();
    build_and_run(
        project,
        &shared_target_dir("dbcli-bundled"),
        &flags,
        "sqlite 3",
    );
}

#[test]
#[ignore = "heavy: builds OpenSSL; needs umoci, runc"]
fn an_indirect_sys_crate_no_feature_above_turns_on_gets_cargo_add_and_it_works() {
    // libsqlite3-sys reached through a crate of the user's with no feature for it: only an
    // edit of Cargo.toml can turn `bundled` on.
    let project = Project::copy("dbcli");
    project.write(
        "wrap/Cargo.toml",
        "[package]\nname = \"wrap\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nlibsqlite3-sys = \"0.40\"\n",
    );
    project.write(
        "wrap/src/lib.rs",
        "pub fn version() -> i32 { unsafe { libsqlite3_sys::sqlite3_libversion_number() } }\n",
    );
    project.write(
        "Cargo.toml",
        "[package]\nname = \"dbcli\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n\n[dependencies]\nwrap = { path = \"wrap\" }\n",
    );
    project.write(
        "src/main.rs",
        "fn main() { println!(\"sqlite {}\", wrap::version()); }\n",
    );
    capture(
        Command::new("cargo")
            .args(["generate-lockfile", "--offline"])
            .current_dir(&project.root),
    )
    .assert_success();
    let target = tempdir();
    let (run, _layout, out) = build_in(&project, target.path(), &[]);
    assert_refused_before_compiling(
        &run,
        target.path(),
        out.path(),
        &[
            "libsqlite3-sys 0.40.0 links the system's SQLite",
            "`cargo add libsqlite3-sys@0.40.0 --features bundled`",
        ],
    );
    run_remedy(&project.root, &quoted(error_line(&run), "cargo add "));
    build_and_run(
        project,
        &shared_target_dir("dbcli-wrapped"),
        &[],
        "sqlite 3",
    );
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn a_locked_time_that_no_longer_compiles_is_refused_before_compiling_and_cargo_update_fixes_it() {
    // rathole 0.5.0's shape: Cargo.lock locks time 0.3.29 (E0282 on Rust 1.80 and later).
    let project = Project::copy("oldtime");
    let target = tempdir();
    let (run, _layout, out) = build_in(&project, target.path(), &[]);
    assert_refused_before_compiling(
        &run,
        target.path(),
        out.path(),
        &["time 0.3.29", "E0282", "0.3.35", "`cargo update -p time`"],
    );
    let doctor = capture(offline_tool(&project.root).args(["doctor", "--locked"]));
    assert_eq!(doctor.code(), Some(1), "{doctor}");
    assert!(
        doctor
            .stdout
            .contains("time 0.3.29  REFUSED: time 0.3.29 (locked in Cargo.lock)")
            && !doctor.stdout.contains("nothing stops a build"),
        "{doctor}"
    );
    run_remedy(&project.root, &quoted(error_line(&run), "cargo update"));
    build_and_run(
        project,
        &shared_target_dir("oldtime-updated"),
        &[],
        "90 s = 1 min",
    );
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn a_lock_naming_a_version_the_registry_lacks_keeps_cargos_words_and_names_cargo_update() {
    // tealdeer 1.9.1's shape: Cargo.lock locks leaf 1.0.11, which the registry does not have.
    let project = app_with_vendored_leaf(&[("1.0.10", ""), ("1.0.12", "")], "1.0.11");
    let target = tempdir();
    let (run, _layout, out) = build_in(&project, target.path(), &[]);
    assert_refused_before_compiling(
        &run,
        target.path(),
        out.path(),
        &[
            "failed to select a version for the requirement `leaf = \"^1.0.10\"` (locked to 1.0.11)",
            "candidate versions found which didn't match: 1.0.12, 1.0.10",
            "`cargo update -p leaf`",
        ],
    );
    assert!(
        !error_line(&run).contains("run this inside a Cargo project"),
        "{run}"
    );
    run_remedy(&project.root, &quoted(error_line(&run), "cargo update"));
    build_and_run(project, target.path(), &[], "leaf 1.0.12");
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn a_dependency_needing_a_newer_rustc_is_refused_before_compiling_with_both_ways_out() {
    // cargo-generate 0.26.0's shape: the lock picks a version whose rust-version is newer
    // than the toolchain; an older version supports it.
    let project = app_with_vendored_leaf(
        &[
            ("1.0.10", "rust-version = \"1.60\""),
            ("1.0.12", "rust-version = \"1.200\""),
        ],
        "1.0.12",
    );
    let target = tempdir();
    let (run, _layout, out) = build_in(&project, target.path(), &[]);
    assert_refused_before_compiling(
        &run,
        target.path(),
        out.path(),
        &[
            "leaf 1.0.12 needs rustc 1.200",
            "rustup update",
            "`CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS=fallback cargo update leaf`",
        ],
    );
    let doctor = capture(offline_tool(&project.root).args(["doctor", "--locked"]));
    assert_eq!(doctor.code(), Some(1), "{doctor}");
    assert!(doctor.stdout.contains("leaf 1.0.12  REFUSED"), "{doctor}");
    run_remedy(
        &project.root,
        &quoted(
            error_line(&run),
            "CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS=",
        ),
    );
    build_and_run(project, target.path(), &[], "leaf 1.0.10");
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn a_build_script_that_only_asks_pkg_config_is_refused_and_a_library_built_for_musl_works() {
    // hurl's libxml shape: fakexml's build script asks pkg-config for libfakexml and has no
    // source build; the build machine's libraries are glibc's.
    let project = Project::copy("pkgprobe");
    let target = tempdir();
    let (run, _layout, out) = build_in(&project, target.path(), &[]);
    let var = "PKG_CONFIG_PATH_x86_64_unknown_linux_musl";
    assert_refused_before_compiling(
        &run,
        target.path(),
        out.path(),
        &[
            "fakexml 0.3.9 looks for the C library `fakexml`",
            "pkg-config",
            "static library for x86_64-unknown-linux-musl",
            var,
        ],
    );
    let doctor = capture(offline_tool(&project.root).args(["doctor", "--locked"]));
    assert_eq!(doctor.code(), Some(1), "{doctor}");
    assert!(doctor.stdout.contains("fakexml 0.3.9  REFUSED"), "{doctor}");

    // The remedy: the library built as a static library for the target (with musl-gcc, as
    // the message says), its .pc file in a directory, the variable set to it.
    let lib = tempdir();
    fs::write(
        lib.path().join("fakexml.c"),
        "int fakexml_version(void) { return 20914; }\n",
    )
    .unwrap();
    for args in [
        &["musl-gcc", "-c", "-O2", "fakexml.c", "-o", "fakexml.o"][..],
        &["ar", "rcs", "libfakexml.a", "fakexml.o"][..],
    ] {
        capture(
            Command::new(args[0])
                .args(&args[1..])
                .current_dir(lib.path()),
        )
        .assert_success();
    }
    fs::write(
        lib.path().join("fakexml.pc"),
        format!(
            "libdir={}\nName: fakexml\nDescription: test\nVersion: 2.9.14\nLibs: -L${{libdir}} -lfakexml\nCflags:\n",
            lib.path().display()
        ),
    )
    .unwrap();
    let (run, layout, out) = build_in_env(&project, target.path(), &[(var, lib.path())]);
    run.assert_success();
    assert!(run.stderr.contains("is static"), "{run}");
    let built = Built::new(project, out, layout, run);
    let ran = built.bundle().run();
    ran.assert_success();
    assert!(ran.stdout.contains("fakexml 20914"), "{ran}");
}

/// [`build_in`] with variables set.
fn build_in_env(
    project: &Project,
    target: &Path,
    env: &[(&str, &Path)],
) -> (Run, Layout, tempfile::TempDir) {
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "test");
    let mut cmd = offline_tool(&project.root);
    cmd.args(["build", "--locked", "--output", &layout.reference()])
        .arg("--target-dir")
        .arg(target);
    for (k, v) in env {
        cmd.env(k, v);
    }
    (capture(&mut cmd), layout, out)
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn the_only_binary_the_features_build_is_picked_and_the_other_named_with_its_feature() {
    // sccache's shape: bin `twobins-dist` needs the non-default feature `dist`.
    let project = Project::copy("twobins");
    let built = build_and_run(project, &shared_target_dir("twobins"), &[], "twobins main");
    assert!(
        built.run.stderr.contains("Building twobins (twobins)")
            && built
                .run
                .stderr
                .contains("bin `twobins-dist` (it needs `--features dist`)"),
        "{}",
        built.run
    );

    // Asked for by name without its feature: the feature is named.
    let project = Project::copy("twobins");
    let (run, _, _) = build_in(
        &project,
        &shared_target_dir("twobins"),
        &["--bin", "twobins-dist"],
    );
    assert_one_line_error(&run, &["bin `twobins-dist`", "`--features dist`"]);

    // With the feature both can be built: the one named like the package is picked, the
    // other named.
    let project = Project::copy("twobins");
    let (run, _, _) = build_in(
        &project,
        &shared_target_dir("twobins-dist"),
        &["--features", "dist"],
    );
    run.assert_success();
    assert!(
        run.stderr.contains("Building twobins (twobins)")
            && run
                .stderr
                .contains("also has bin `twobins-dist`; choose another"),
        "{run}"
    );
}

#[test]
fn message_format_json_keeps_progress_on_stderr_and_prints_an_error_object_on_failure() {
    let project = Project::copy("hello");
    let (run, _, _) = build_in(
        &project,
        &shared_target_dir("hello"),
        &["--message-format", "json"],
    );
    run.assert_success();
    assert!(
        run.stderr.contains("Building hello (hello)") && run.stderr.contains("is static"),
        "progress is not on stderr: {run}"
    );
    assert!(
        run.json()["digest"].as_str().is_some_and(is_sha256_digest),
        "{run}"
    );

    // A failure: one JSON object on stdout, the same error line ending stderr.
    let (run, _, _) = build_in(
        &project,
        &shared_target_dir("hello"),
        &["--message-format", "json", "--features", "nope"],
    );
    assert_one_line_error(&run, &["nope"]);
    let v = run.json();
    assert_eq!(v["success"], false, "{run}");
    assert_eq!(
        format!("error: {}", v["error"].as_str().unwrap()),
        error_line(&run),
        "{run}"
    );
}

#[test]
fn cargo_metadata_failures_keep_cargos_words_and_name_a_manifest_only_when_there_is_none() {
    let project = Project::copy("hello");
    // An unknown feature: cargo's words, no "run this inside a Cargo project".
    let run = capture(offline_tool(&project.root).args(["build", "--features", "nope"]));
    assert_one_line_error(
        &run,
        &[
            "the package 'hello' does not contain this feature: nope",
            "--features",
        ],
    );
    assert!(!run.stderr.contains("inside a Cargo project"), "{run}");

    // --frozen with no Cargo.lock: cargo's explanation and its own help.
    fs::remove_file(project.root.join("Cargo.lock")).ok();
    let run = capture(offline_tool(&project.root).args(["build", "--frozen"]));
    assert_one_line_error(
        &run,
        &[
            "cannot create the lock file",
            "--frozen",
            "use --offline instead",
        ],
    );
    assert!(!run.stderr.contains("inside a Cargo project"), "{run}");

    // No manifest at all: that remedy. (In the system's temp dir: cargo looks for a
    // Cargo.toml in every parent, and the scratch root is inside this repository.)
    let empty = tempfile::tempdir().expect("tempdir");
    let run = capture(offline_tool(empty.path()).args(["build"]));
    assert_one_line_error(&run, &["could not find `Cargo.toml`", "--manifest-path"]);
}

#[test]
fn doctor_lists_only_crates_that_build_or_link_native_code() {
    // dirs-sys's shape (a -sys crate with no build script, no `links`) and a build script
    // that only sets cfg flags link nothing: doctor has nothing to say about them.
    let project = Project::copy("hello");
    project.write(
        "quiet-sys/Cargo.toml",
        "[package]\nname = \"quiet-sys\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    project.write("quiet-sys/src/lib.rs", "pub fn f() {}\n");
    project.write(
        "cfgonly/Cargo.toml",
        "[package]\nname = \"cfgonly\"\nversion = \"0.1.0\"\nedition = \"2021\"\nbuild = \"build.rs\"\n",
    );
    project.write("cfgonly/src/lib.rs", "pub fn f() {}\n");
    project.write(
        "cfgonly/build.rs",
        "fn main() { println!(\"cargo:rustc-check-cfg=cfg(x)\"); }\n",
    );
    let manifest = fs::read_to_string(project.manifest()).unwrap();
    fs::write(
        project.manifest(),
        manifest.replace(
            "[dependencies]",
            "[dependencies]\nquiet-sys = { path = \"quiet-sys\" }\ncfgonly = { path = \"cfgonly\" }",
        ),
    )
    .unwrap();
    let run = capture(offline_tool(&project.root).args(["doctor"]));
    assert_eq!(run.code(), Some(0), "{run}");
    assert!(
        run.stdout.contains("C libraries   none")
            && !run.stdout.contains("quiet-sys")
            && !run.stdout.contains("cfgonly")
            && !run.stdout.contains("unknown to the tool"),
        "{run}"
    );
}
