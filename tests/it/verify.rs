//! `cargo containerize verify FILE...` reports static/dynamic per file and fails on any
//! dynamic one.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::*;

fn verify(files: &[&Path]) -> Run {
    let cwd = tempdir();
    capture(tool(cwd.path()).arg("verify").args(files))
}

/// The hello fixture built by plain cargo for musl (a static-pie executable).
fn static_pie() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| cargo_build_musl("hello", "hello"))
}

/// A static, non-PIE musl executable.
fn static_non_pie() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = tempdir().keep();
        let src = dir.join("main.rs");
        fs::write(&src, "fn main() { println!(\"non-pie\"); }\n").expect("main.rs");
        let out = dir.join("non-pie");
        capture(
            Command::new("rustc")
                .args(["--edition", "2021", "-O", "--target", MUSL_TARGET])
                .args([
                    "-C",
                    "relocation-model=static",
                    "-C",
                    "target-feature=+crt-static",
                ])
                .arg(&src)
                .arg("-o")
                .arg(&out)
                .current_dir(&dir),
        )
        .assert_success();
        out
    })
}

/// A report line for a dynamic file says so ("dynamic", or "not static").
fn says_not_static(report: &str) -> bool {
    report.contains("dynamic") || report.contains("not static")
}

/// The stdout lines that mention `file`, lowercased.
fn report_for(run: &Run, file: &Path) -> String {
    let name = file.display().to_string();
    let lines: Vec<&str> = run.stdout.lines().filter(|l| l.contains(&name)).collect();
    assert!(!lines.is_empty(), "report does not mention {name}: {run}");
    lines.join("\n").to_lowercase()
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn static_pie_musl_binary_passes() {
    let elf_bytes = fs::read(static_pie()).expect("binary");
    let elf = goblin::elf::Elf::parse(&elf_bytes).expect("ELF");
    assert!(elf.interpreter.is_none() && elf.libraries.is_empty());
    assert_eq!(
        elf.header.e_type,
        goblin::elf::header::ET_DYN,
        "fixture is not PIE"
    );
    let run = verify(&[static_pie()]);
    assert_eq!(run.code(), Some(0), "{run}");
    let report = report_for(&run, static_pie());
    assert!(report.contains("static"), "{run}");
}

#[test]
fn static_non_pie_musl_binary_passes() {
    let elf_bytes = fs::read(static_non_pie()).expect("binary");
    let elf = goblin::elf::Elf::parse(&elf_bytes).expect("ELF");
    assert_eq!(
        elf.header.e_type,
        goblin::elf::header::ET_EXEC,
        "not a non-PIE binary"
    );
    let run = verify(&[static_non_pie()]);
    assert_eq!(run.code(), Some(0), "{run}");
    assert!(
        report_for(&run, static_non_pie()).contains("static"),
        "{run}"
    );
}

#[test]
fn dynamic_bin_ls_fails_and_the_report_lists_its_libraries() {
    let ls = Path::new("/bin/ls");
    let bytes = fs::read(ls).expect("/bin/ls");
    let elf = goblin::elf::Elf::parse(&bytes).expect("ELF");
    assert!(elf.libraries.contains(&"libc.so.6"), "{:?}", elf.libraries);
    let run = verify(&[ls]);
    assert_eq!(run.code(), Some(1), "{run}");
    assert!(!run.stderr.contains("panicked"), "{run}");
    assert!(says_not_static(&report_for(&run, ls)), "{run}");
    for library in &elf.libraries {
        assert!(
            run.stdout.contains(library),
            "report lacks {library}: {run}"
        );
    }
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn one_dynamic_file_among_static_ones_fails_and_each_file_is_reported() {
    let ls = Path::new("/bin/ls");
    let run = verify(&[static_pie(), ls, static_non_pie()]);
    assert_eq!(run.code(), Some(1), "{run}");
    assert!(report_for(&run, static_pie()).contains("static"), "{run}");
    assert!(says_not_static(&report_for(&run, ls)), "{run}");
    assert!(
        report_for(&run, static_non_pie()).contains("static"),
        "{run}"
    );
}

#[test]
fn non_elf_file_fails_without_panicking() {
    let dir = tempdir();
    let text = dir.path().join("notes.txt");
    fs::write(&text, "not a program\n").expect("write");
    let run = verify(&[&text]);
    assert_eq!(run.code(), Some(1), "{run}");
    assert!(!run.stderr.contains("panicked"), "{run}");
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains("notes.txt"),
        "the file is not named: {run}"
    );
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let dir = tempdir();
    let missing = dir.path().join("does-not-exist");
    let run = verify(&[&missing]);
    assert_error(&run, 1, &["does-not-exist"]);
}

#[test]
fn verify_without_files_is_a_usage_error() {
    let run = verify(&[]);
    assert_eq!(run.code(), Some(2), "{run}");
    assert!(run.stderr.starts_with("error: "), "{run}");
    assert!(!run.stderr.contains("panicked"), "{run}");
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn direct_invocation_of_verify_works_like_the_subcommand() {
    let cwd = tempdir();
    let run = capture(
        hermetic(&mut Command::new(tool_path()))
            .arg("verify")
            .arg(static_pie())
            .current_dir(cwd.path()),
    );
    assert_eq!(run.code(), Some(0), "{run}");
    assert!(report_for(&run, static_pie()).contains("static"), "{run}");
}

/// Bytes after the binary's sections (padding, an appended archive) are not part of what it
/// runs: a replacement allocator's message there does not hide that it uses musl's malloc.
/// The search reads only `.rodata`, so verifying a large binary also reads only a small part.
#[test]
#[ignore = "heavy: builds mimalloc"]
fn a_malloc_message_outside_rodata_is_not_taken_for_a_replacement() {
    let dir = tempdir();
    let padded = dir.path().join("padded");
    let mut bytes = fs::read(static_pie()).expect("hello binary");
    bytes.extend_from_slice(b"\0mimalloc: warning: appended, not part of the program\0");
    fs::write(&padded, &bytes).expect("write");
    let run = verify(&[&padded]);
    run.assert_success();
    assert!(
        run.stderr.contains("uses musl's own malloc"),
        "the note on musl's malloc is missing: {run}"
    );
}
