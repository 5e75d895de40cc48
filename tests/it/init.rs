//! `cargo containerize init`: adds a commented `[package.metadata.containerize]` to Cargo.toml
//! without touching a byte of what was there, writes the Dockerfile and workflow on request,
//! and changes nothing when run again.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::SystemTime;

use crate::common::*;

/// A manifest with comments, odd spacing and tables after [package], as people write them.
fn commented_hello() -> Project {
    let project = Project::copy("hello");
    let original = fs::read_to_string(project.manifest()).expect("read");
    let text = format!(
        "# Top comment: kept.\n{}\n[profile.release]   # trailing comment\nopt-level = 3 # why not\n\n# closing words\n",
        original.replacen(
            "edition = \"2021\"",
            "edition    = \"2021\" # spacing kept",
            1
        )
    );
    fs::write(project.manifest(), text).expect("write");
    project
}

/// Every file below `dir` (but target/) with its bytes and mtime.
fn tree(dir: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    snapshot(dir)
        .into_iter()
        .filter(|p| !p.starts_with("target"))
        .filter_map(|p| {
            let path = dir.join(&p);
            let meta = fs::symlink_metadata(&path).ok()?;
            if meta.is_dir() {
                return None;
            }
            let bytes = if meta.file_type().is_symlink() {
                fs::read_link(&path)
                    .ok()?
                    .display()
                    .to_string()
                    .into_bytes()
            } else {
                fs::read(&path).ok()?
            };
            Some((p, (bytes, meta.modified().ok()?)))
        })
        .collect()
}

#[test]
#[ignore = "heavy: runs the tool once per documented setting (about 40 s)"]
fn init_adds_a_commented_section_and_keeps_every_byte_of_the_rest() {
    use std::os::unix::fs::PermissionsExt;
    let project = commented_hello();
    fs::set_permissions(project.manifest(), fs::Permissions::from_mode(0o640)).expect("chmod");
    let before = fs::read_to_string(project.manifest()).expect("read");
    let run = capture(tool(&project.root).arg("init"));
    run.assert_success();
    let after = fs::read_to_string(project.manifest()).expect("read");
    let mode = fs::metadata(project.manifest())
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o640, "init changed Cargo.toml's mode");
    assert!(
        after.starts_with(&before),
        "the manifest's text changed:\n{after}"
    );
    let added = &after[before.len()..];
    assert!(
        added.starts_with("\n[package.metadata.containerize]\n"),
        "{added}"
    );
    assert!(
        added.lines().skip(2).all(|l| l.starts_with('#')),
        "only comments follow the header:\n{added}"
    );
    insta::assert_snapshot!("init_section", added);

    // cargo reads it: an empty table, since every key is commented out.
    let meta = project.package_metadata();
    assert_eq!(
        meta["metadata"]["containerize"],
        serde_json::json!({}),
        "{meta}"
    );
    // Each commented line, uncommented alone, is a valid setting the tool accepts.
    for line in added.lines().skip(2).filter(|l| l.contains(" = ")) {
        let setting = line.trim_start_matches("# ");
        let setting = setting.split(" # ").next().expect("setting").trim();
        if setting.starts_with("include") || setting.starts_with("ca-certs") {
            continue; // names files that do not exist in the fixture
        }
        let copy = Project::copy("hello");
        copy.append_manifest(&format!("[package.metadata.containerize]\n{setting}\n"));
        let run = capture(tool(&copy.root).args(["dockerfile", "-q"]));
        assert!(run.status.success(), "`{setting}` is refused: {run}");
    }
}

#[test]
fn init_twice_changes_nothing() {
    let project = commented_hello();
    let run = capture(tool(&project.root).args(["init", "--dockerfile", "--workflow"]));
    run.assert_success();
    for file in [
        "Dockerfile",
        ".dockerignore",
        ".github/workflows/container.yml",
        ".containerize/hello/rootfs/etc/passwd",
    ] {
        assert!(project.root.join(file).is_file(), "{file} missing: {run}");
    }
    let first = tree(&project.root);
    let again = capture(tool(&project.root).args(["init", "--dockerfile", "--workflow"]));
    again.assert_success();
    assert!(!again.stderr.contains("Wrote"), "{again}");
    assert!(!again.stderr.contains("Added"), "{again}");
    assert_eq!(tree(&project.root), first, "the second run changed files");
    // --force has nothing to replace either.
    capture(tool(&project.root).args(["init", "--dockerfile", "--workflow", "--force"]))
        .assert_success();
    assert_eq!(
        tree(&project.root),
        first,
        "--force changed identical files"
    );
}

#[test]
fn a_present_section_is_left_as_it_is() {
    let project = Project::copy("hello");
    project.append_manifest(
        "[package.metadata.containerize]\n# mine\nuser = \"1000:1000\"   # spaced\n",
    );
    let before = fs::read(project.manifest()).expect("read");
    capture(tool(&project.root).args(["init", "--force"])).assert_success();
    assert_eq!(fs::read(project.manifest()).expect("read"), before);
}

#[test]
fn a_changed_file_needs_force_and_nothing_is_written_without_it() {
    let project = commented_hello();
    fs::write(project.root.join("Dockerfile"), "FROM scratch\n").expect("write");
    let before = tree(&project.root);
    let run = capture(tool(&project.root).args(["init", "--dockerfile", "--workflow"]));
    assert_error(&run, 1, &["Dockerfile", "--force"]);
    assert_eq!(
        tree(&project.root),
        before,
        "a refused init wrote something: {run}"
    );

    let run = capture(tool(&project.root).args(["init", "--dockerfile", "--workflow", "--force"]));
    run.assert_success();
    let dockerfile = fs::read_to_string(project.root.join("Dockerfile")).expect("read");
    assert!(dockerfile.starts_with("# syntax=docker/dockerfile:1"));
    assert!(
        project
            .root
            .join(".github/workflows/container.yml")
            .is_file()
    );
}

#[test]
fn in_a_workspace_init_edits_the_member_and_writes_at_the_root() {
    let project = Project::copy("workspace");
    let root_manifest = fs::read(project.manifest()).expect("read");
    let member = project.root.join("app/Cargo.toml");
    let member_before = fs::read_to_string(&member).expect("read");
    let run = capture(tool(&project.root).args([
        "init",
        "-p",
        "app",
        "--bin",
        "alpha",
        "--dockerfile",
        "--workflow",
    ]));
    run.assert_success();
    assert_eq!(fs::read(project.manifest()).expect("read"), root_manifest);
    let member_after = fs::read_to_string(&member).expect("read");
    assert!(member_after.starts_with(&member_before), "{member_after}");
    assert!(member_after.contains("\n[package.metadata.containerize]\n"));
    for file in [
        "app/Dockerfile",
        ".dockerignore",
        ".github/workflows/container.yml",
        ".containerize/app/rootfs/etc/passwd",
    ] {
        assert!(project.root.join(file).is_file(), "{file} missing: {run}");
    }
    // The Dockerfile is built from the workspace root, and says so.
    let dockerfile = fs::read_to_string(project.root.join("app/Dockerfile")).expect("read");
    assert!(dockerfile.contains("-f app/Dockerfile "), "{dockerfile}");
    assert!(dockerfile.contains("-p app --bin alpha"), "{dockerfile}");
    // Each file says how to render it again, with the options it was rendered with.
    assert!(
        dockerfile.contains(
            "`cargo containerize dockerfile -p app --bin alpha -o app/Dockerfile --force`"
        ),
        "{dockerfile}"
    );
    let workflow =
        fs::read_to_string(project.root.join(".github/workflows/container.yml")).expect("read");
    assert!(
        workflow.contains(
            "`cargo containerize workflow -p app --bin alpha -o .github/workflows/container.yml --force`"
        ),
        "{workflow}"
    );
}

#[test]
fn a_broken_manifest_is_an_error_and_nothing_is_written() {
    // cargo metadata reports it before init edits anything.
    let project = Project::copy("hello");
    fs::write(project.manifest(), "[package\nname = 1\n").expect("write");
    let before = tree(&project.root);
    let run = capture(tool(&project.root).arg("init"));
    assert_error(&run, 1, &["cargo metadata", "unclosed table"]);
    assert_eq!(tree(&project.root), before);
}
