//! Bad input fails cleanly: non-zero exit, a single `error: ` line naming the cause, no
//! panic, and nothing written where the image would have gone.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use tempfile::TempDir;

/// Runs the tool in `project` with `args` (which include any `--output`), using the
/// fixture's shared target dir, and returns the run. Asserts the project's files are
/// untouched.
fn run_in(project: &Project, fixture: &str, args: &[&str]) -> Run {
    let before = snapshot(&project.root);
    let run = capture(
        tool(&project.root)
            .args(["build", "--locked", "--target-dir"])
            .arg(shared_target_dir(fixture))
            .args(args),
    );
    assert_eq!(
        snapshot(&project.root),
        before,
        "the project changed: {run}"
    );
    run
}

/// The tool fails on `project` with exit 1 and an error line mentioning `keywords`; the
/// output directory it was given stays empty.
fn fails_with(project: &Project, fixture: &str, extra: &[&str], keywords: &[&str]) -> Run {
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "test");
    let mut args = vec!["--output".to_string(), layout.reference()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_in(project, fixture, &args);
    assert_error(&run, 1, keywords);
    let left = snapshot(out.path());
    assert!(
        left.is_empty(),
        "left behind in the output dir: {left:?}\n{run}"
    );
    run
}

/// Usage errors (bad flags or flag values): exit 2, one `error: ` line first, no panic.
fn assert_usage_error(run: &Run, keyword: &str) {
    assert_eq!(run.code(), Some(2), "usage errors exit 2: {run}");
    assert!(!run.stderr.contains("panicked"), "{run}");
    let first = run
        .stderr
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(
        first.starts_with("error: "),
        "first stderr line is not `error: ...`: {run}"
    );
    assert!(
        first.contains(keyword),
        "error line does not mention {keyword:?}: {run}"
    );
    let error_lines = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error"))
        .count();
    assert_eq!(error_lines, 1, "{run}");
}

fn metadata_project(toml: &str) -> Project {
    let project = Project::copy("hello");
    project.append_manifest(&format!("[package.metadata.containerize]\n{toml}\n"));
    project
}

#[test]
fn dynamic_binary_is_rejected_naming_its_interpreter_or_libraries() {
    let ls = fs::read("/bin/ls").expect("/bin/ls");
    let elf = goblin::elf::Elf::parse(&ls).expect("/bin/ls is ELF");
    let mut names: Vec<String> = elf.libraries.iter().map(|l| l.to_string()).collect();
    names.extend(elf.interpreter.map(str::to_string));
    assert!(!names.is_empty(), "/bin/ls on this machine is not dynamic");
    let project = Project::copy("hello");
    let run = fails_with(&project, "hello", &["--binary", "/bin/ls"], &[]);
    let line = error_line(&run);
    assert!(
        names.iter().any(|n| line.contains(n.as_str())),
        "error names none of {names:?}: {run}"
    );
}

#[test]
fn non_elf_binary_is_rejected() {
    let project = Project::copy("hello");
    let manifest = project.manifest();
    fails_with(
        &project,
        "hello",
        &["--binary", manifest.to_str().expect("utf-8")],
        &["ELF"],
    );
}

#[test]
fn binary_for_another_architecture_is_rejected() {
    let project = Project::copy("hello");
    let arm = aarch64_binary(project.parent());
    let run = fails_with(
        &project,
        "hello",
        &["--binary", arm.to_str().expect("utf-8")],
        &[],
    );
    let line = error_line(&run).to_lowercase();
    assert!(line.contains("aarch64") || line.contains("arm64"), "{run}");
}

#[test]
fn unknown_metadata_key_is_rejected_by_name() {
    let project = metadata_project("frobnicate = true");
    fails_with(&project, "hello", &[], &["frobnicate"]);
}

#[test]
fn metadata_value_of_the_wrong_type_is_rejected_naming_the_key() {
    let project = metadata_project("user = 65532");
    fails_with(&project, "hello", &[], &["user"]);
}

#[test]
fn unknown_zone_in_zones_is_rejected_by_name() {
    let project = metadata_project("zones = [\"UTC\", \"Mars/Olympus_Mons\"]");
    fails_with(&project, "hello", &[], &["Mars/Olympus_Mons"]);
}

#[test]
fn unknown_timezone_is_rejected_by_name() {
    let project = metadata_project("timezone = \"Mars/Olympus_Mons\"");
    fails_with(&project, "hello", &[], &["Mars/Olympus_Mons"]);
}

#[test]
fn missing_ca_certs_file_is_rejected_by_name() {
    let project = metadata_project("ca-certs = \"missing-ca.pem\"");
    fails_with(&project, "hello", &[], &["missing-ca.pem"]);
}

#[test]
fn unknown_bin_is_rejected_by_name() {
    let project = Project::copy("hello");
    fails_with(
        &project,
        "hello",
        &["--bin", "doesnotexist"],
        &["doesnotexist"],
    );
}

#[test]
fn unknown_package_is_rejected_by_name() {
    let project = Project::copy("workspace");
    fails_with(
        &project,
        "workspace",
        &["-p", "nosuchpackage"],
        &["nosuchpackage"],
    );
}

#[test]
fn several_bins_without_a_choice_are_rejected_listing_them() {
    let project = Project::copy("workspace");
    fails_with(&project, "workspace", &["-p", "app"], &["alpha", "beta"]);
}

#[test]
fn several_bins_in_a_member_directory_are_rejected_listing_them() {
    let project = Project::copy("workspace");
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "test");
    let run = capture(
        tool(&project.root.join("app"))
            .args(["--locked", "--target-dir"])
            .arg(shared_target_dir("workspace"))
            .args(["--output", &layout.reference()]),
    );
    assert_error(&run, 1, &["alpha", "beta"]);
    assert!(snapshot(out.path()).is_empty());
}

#[test]
fn directory_without_cargo_toml_is_rejected() {
    // Outside this repository: cargo looks for Cargo.toml in every ancestor directory.
    let empty = tempfile::tempdir().expect("tempdir");
    let stray: Vec<_> = empty
        .path()
        .ancestors()
        .filter(|dir| dir.join("Cargo.toml").exists())
        .collect();
    assert!(
        stray.is_empty(),
        "a Cargo.toml above the temp dir: {stray:?}"
    );
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "test");
    let run = capture(tool(empty.path()).args(["--output", &layout.reference()]));
    assert_error(&run, 1, &["Cargo.toml"]);
    assert!(snapshot(out.path()).is_empty());
    assert!(snapshot(empty.path()).is_empty());
}

/// A copy of the active toolchain (hard links, so no disk or time cost) with the
/// x86_64-unknown-linux-musl standard library removed: a real toolchain that lacks the
/// target, as on a machine where nobody ran `rustup target add`. The copy lives in the
/// returned directory, under `no-musl`.
fn toolchain_without_musl() -> TempDir {
    let sysroot = capture(Command::new("rustc").args(["--print", "sysroot"]));
    sysroot.assert_success();
    let sysroot = PathBuf::from(sysroot.stdout.trim());
    // Hard links need the same filesystem: try the scratch dir, then rustup's own tmp dir.
    let rustup_tmp = sysroot
        .parent()
        .and_then(Path::parent)
        .map(|home| home.join("tmp"));
    let candidates = std::iter::once(None).chain(rustup_tmp.map(Some));
    let mut failures = Vec::new();
    for place in candidates {
        let dir = match &place {
            None => tempdir(),
            Some(tmp) => {
                fs::create_dir_all(tmp).expect("rustup tmp dir");
                tempfile::Builder::new()
                    .prefix("cct-no-musl-")
                    .tempdir_in(tmp)
                    .expect("tempdir in rustup tmp")
            }
        };
        let copy = dir.path().join("no-musl");
        let linked = capture(Command::new("cp").arg("-al").arg(&sysroot).arg(&copy));
        if !linked.status.success() {
            failures.push(linked.to_string());
            continue;
        }
        let rustlib = copy.join("lib/rustlib");
        fs::remove_dir_all(rustlib.join(MUSL_TARGET)).expect("remove musl std");
        let _ = fs::remove_file(rustlib.join(format!("manifest-rust-std-{MUSL_TARGET}")));
        // `components` is a hard link into the real toolchain: replace, never edit in place.
        let components_path = rustlib.join("components");
        if let Ok(components) = fs::read_to_string(&components_path) {
            let kept: String = components
                .lines()
                .filter(|l| *l != format!("rust-std-{MUSL_TARGET}"))
                .map(|l| format!("{l}\n"))
                .collect();
            fs::remove_file(&components_path).expect("unlink components");
            fs::write(&components_path, kept).expect("write components");
        }
        return dir;
    }
    panic!("cannot hard-link the toolchain at {sysroot:?}: {failures:#?}");
}

#[test]
#[ignore = "heavy: copies the Rust toolchain"]
fn missing_musl_target_is_reported_with_the_rustup_remedy() {
    let toolchain_dir = toolchain_without_musl();
    let toolchain = &toolchain_dir.path().join("no-musl");
    let installed = capture(
        Command::new("rustup")
            .args(["target", "list", "--installed"])
            .env("RUSTUP_TOOLCHAIN", toolchain),
    );
    assert!(
        !installed.stdout.lines().any(|l| l == MUSL_TARGET),
        "the stripped toolchain still lists the target: {installed}"
    );
    let project = Project::copy("hello");
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "test");
    // What `cargo +<toolchain> containerize` hands to the subcommand.
    let run = capture(
        tool(&project.root)
            .args(["build", "--locked", "--target-dir"])
            .arg(project.parent().join("target"))
            .args(["--output", &layout.reference()])
            .env("RUSTUP_TOOLCHAIN", toolchain)
            .env("CARGO", toolchain.join("bin/cargo"))
            .env_remove("RUSTC")
            .env_remove("RUSTC_WRAPPER")
            .env_remove("RUSTDOC"),
    );
    assert_error(&run, 1, &[MUSL_TARGET]);
    let line = error_line(&run);
    assert!(
        line.contains("rustup target add") || line.contains("--install-target"),
        "no remedy in {line:?}"
    );
    assert!(snapshot(out.path()).is_empty());
}

#[test]
fn include_source_outside_the_package_is_rejected() {
    let project =
        metadata_project("include = [{ src = \"../outside.txt\", dest = \"/etc/outside.txt\" }]");
    fs::write(project.parent().join("outside.txt"), "secret\n").expect("outside file");
    fails_with(&project, "hello", &[], &["outside.txt"]);
}

#[test]
fn include_symlink_pointing_outside_the_package_is_rejected() {
    let project =
        metadata_project("include = [{ src = \"assets/escape\", dest = \"/etc/escape.txt\" }]");
    let outside = project.parent().join("outside.txt");
    fs::write(&outside, "secret\n").expect("outside file");
    fs::create_dir_all(project.root.join("assets")).expect("assets dir");
    std::os::unix::fs::symlink("../../outside.txt", project.root.join("assets/escape"))
        .expect("symlink");
    let run = fails_with(&project, "hello", &[], &[]);
    let line = error_line(&run);
    assert!(
        line.contains("escape") || line.contains("outside.txt"),
        "error names neither the link nor its target: {run}"
    );
}

#[test]
fn missing_include_source_is_rejected_by_name() {
    let project = metadata_project(
        "include = [{ src = \"assets/missing.txt\", dest = \"/etc/missing.txt\" }]",
    );
    fails_with(&project, "hello", &[], &["missing.txt"]);
}

#[test]
fn missing_prebuilt_binary_is_rejected_by_name() {
    let project = Project::copy("hello");
    let missing = project.parent().join("no-such-binary");
    fails_with(
        &project,
        "hello",
        &["--binary", missing.to_str().expect("utf-8")],
        &["no-such-binary"],
    );
}

#[test]
fn unwritable_output_path_is_reported() {
    let project = Project::copy("hello");
    let run = run_in(&project, "hello", &["--output", "oci:/proc/nope"]);
    assert_error(&run, 1, &["/proc/nope"]);
}

#[test]
fn failing_second_output_leaves_the_first_output_unwritten() {
    let project = Project::copy("hello");
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "test");
    let run = run_in(
        &project,
        "hello",
        &[
            "--output",
            &layout.reference(),
            "--output",
            "oci-archive:/proc/nope.tar",
        ],
    );
    assert_error(&run, 1, &["/proc/nope.tar"]);
    let left = snapshot(out.path());
    assert!(left.is_empty(), "left behind: {left:?}\n{run}");
}

#[test]
fn unknown_output_transport_is_a_usage_error() {
    let project = Project::copy("hello");
    let run = run_in(&project, "hello", &["--output", "bogus:foo"]);
    assert_usage_error(&run, "bogus");
    assert!(!project.root.join("foo").exists() && !project.root.join("bogus:foo").exists());
}

#[test]
fn output_without_a_path_is_a_usage_error() {
    let project = Project::copy("hello");
    let run = run_in(&project, "hello", &["--output", "oci:"]);
    assert_usage_error(&run, "oci:");
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let project = Project::copy("hello");
    let run = run_in(&project, "hello", &["--frobnicate"]);
    assert_usage_error(&run, "--frobnicate");
}

#[test]
fn is_one_line_error_accepts_logs_then_one_error_and_rejects_reports() {
    let good =
        "   Compiling hello v0.1.0\nerror: --bin doesnotexist: no such bin; available: hello\n";
    assert!(is_one_line_error(good));
    assert!(!is_one_line_error(""));
    assert!(!is_one_line_error("error: a\nerror: b\n"));
    assert!(!is_one_line_error("Error: a\n\nCaused by:\n    b\n"));
    assert!(!is_one_line_error(
        "thread 'main' panicked at src/main.rs:1:1:\nerror: x\n"
    ));
    assert!(!is_one_line_error("error: a\n  more detail\n"));
}
