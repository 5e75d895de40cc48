//! Reliability: the tool deletes or replaces only what it wrote, never through a symbolic
//! link, and trusts its user cache only when no one else can write it.
//!
//! Deleting: the `dockerfile` command's root files (`.containerize/<pkg>/rootfs`) and the layer
//! cache's clean-up (`<target>/containerize/cache/{stat,layers,blobs}`), both through
//! `src/util/owned.rs`. Trusting: `CARGO_CONTAINERIZE_CACHE` in a directory another local
//! user can write (the tests run as root; the other user is uid 65534, made by chown), with
//! a planted mimalloc entry, a planted `build.rs` in the helper crate, and a full disk.

use crate::common::*;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// Another local user: `nobody`.
const OTHER_UID: u32 = 65534;

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// chown -R, links themselves (not what they point to).
fn chown_tree(path: &Path, uid: u32) {
    for entry in walkdir::WalkDir::new(path) {
        let entry = entry.expect("walk");
        std::os::unix::fs::lchown(entry.path(), Some(uid), Some(uid)).expect("chown");
    }
}

/// Sets a file's mtime `days` into the past.
fn age(path: &Path, days: u64) {
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(days * 24 * 3600)))
        .expect("set mtime");
}

/// Every file below `dir` with its bytes, to compare before and after a run.
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.expect("walk"))
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().to_path_buf(), fs::read(e.path()).expect("read")))
        .collect();
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// `cargo containerize dockerfile`: the root files directory.

fn dockerfile(project: &Project, extra: &[&str]) -> Run {
    capture(tool(&project.root).args(["dockerfile", "-q"]).args(extra))
}

#[test]
fn dockerfile_replaces_only_the_root_files_it_wrote_and_keeps_the_users() {
    let project = Project::copy("hello");
    let plain = fs::read_to_string(project.manifest()).expect("Cargo.toml");
    let rootfs = project.root.join(".containerize/hello/rootfs");
    // Its own files change with the settings: /etc/localtime comes and goes.
    project.append_manifest("[package.metadata.containerize]\ntimezone = \"Europe/Berlin\"\n");
    dockerfile(&project, &[]).assert_success();
    assert!(fs::symlink_metadata(rootfs.join("etc/localtime")).is_ok());
    fs::write(project.manifest(), &plain).expect("Cargo.toml");
    dockerfile(&project, &[]).assert_success();
    assert!(
        fs::symlink_metadata(rootfs.join("etc/localtime")).is_err(),
        "the localtime the tool wrote stayed"
    );
    // A file the user put there is kept, and named with the remedy.
    let mine = rootfs.join("etc/app.conf");
    fs::write(&mine, "mine\n").expect("write");
    let before = contents(&project.root.join(".containerize"));
    let run = dockerfile(&project, &[]);
    assert_error(
        &run,
        1,
        &[
            "etc/app.conf",
            "not written by cargo-containerize",
            "--force",
        ],
    );
    assert_eq!(
        contents(&project.root.join(".containerize")),
        before,
        "{run}"
    );
    // So is one of its files the user changed.
    fs::remove_file(&mine).expect("rm");
    fs::write(rootfs.join("etc/group"), "edited\n").expect("write");
    let run = dockerfile(&project, &[]);
    assert_error(&run, 1, &["etc/group", "--force"]);
    assert_eq!(
        fs::read(rootfs.join("etc/group")).expect("group"),
        b"edited\n"
    );
    // --force says: replace the directory with the generated files.
    fs::write(&mine, "mine\n").expect("write");
    dockerfile(&project, &["--force"]).assert_success();
    assert!(!mine.exists());
    assert_ne!(
        fs::read(rootfs.join("etc/group")).expect("group"),
        b"edited\n"
    );
    // And a rerun with nothing of the user's in it is quiet and changes nothing.
    dockerfile(&project, &[]).assert_success();
}

#[test]
fn dockerfile_never_writes_or_deletes_through_a_symlinked_package_directory() {
    for linked in [
        ".containerize/hello",
        ".containerize/hello/rootfs",
        ".containerize",
    ] {
        let project = Project::copy("hello");
        let elsewhere = tempdir();
        fs::create_dir_all(elsewhere.path().join("rootfs/etc")).expect("mkdir");
        fs::create_dir_all(elsewhere.path().join("hello/rootfs")).expect("mkdir");
        fs::write(elsewhere.path().join("rootfs/etc/passwd"), "theirs\n").expect("write");
        fs::write(elsewhere.path().join("notes.txt"), "theirs\n").expect("write");
        let link = project.root.join(linked);
        fs::create_dir_all(link.parent().expect("parent")).expect("mkdir");
        symlink(elsewhere.path(), &link).expect("symlink");
        let before = contents(elsewhere.path());
        for extra in [&[][..], &["--force"][..]] {
            let run = dockerfile(&project, extra);
            assert_error(&run, 1, &[linked, "symbolic link", "remove the link"]);
            assert_eq!(
                contents(elsewhere.path()),
                before,
                "{linked} {extra:?}: {run}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The layer cache's clean-up.

#[test]
#[ignore = "heavy: builds fixture images"]
fn the_cache_clean_up_never_deletes_through_a_planted_symlink() {
    let project = Project::copy("hello");
    let binary = cargo_build_musl("hello", "hello");
    for (sub, files_in) in [
        ("stat", ""),
        ("layers", ""),
        ("blobs", "sha256"),
        ("blobs/sha256", ""),
    ] {
        let target = tempdir();
        let cache = target.path().join("containerize/cache");
        let victim = tempdir();
        let dir = victim.path().join(files_in);
        fs::create_dir_all(&dir).expect("mkdir");
        // Old files, named as the cache names its own and not.
        for name in ["a".repeat(64), "photo.jpg".to_string()] {
            fs::write(dir.join(&name), "theirs").expect("write");
            age(&dir.join(&name), 30);
        }
        let link = cache.join(sub);
        fs::create_dir_all(link.parent().expect("parent")).expect("mkdir");
        symlink(victim.path(), &link).expect("symlink");
        let before = contents(victim.path());
        let out = tempdir();
        let run = capture(
            tool(&project.root)
                .args(["build", "--locked", "--binary"])
                .arg(&binary)
                .arg("--target-dir")
                .arg(target.path())
                .args([
                    "--output",
                    &format!("oci:{}:t", out.path().join("img").display()),
                ]),
        );
        assert_error(&run, 1, &[sub, "symbolic link", "remove the link"]);
        assert_eq!(contents(victim.path()), before, "{sub}: {run}");
    }
}

// ---------------------------------------------------------------------------------------------
// The user cache (CARGO_CONTAINERIZE_CACHE): trusted only when no one else can write it.

const MIMALLOC: &str = "[package.metadata.containerize]\nallocator = \"mimalloc\"\n";

fn mimalloc_build(project: &Project, cwd: &Path, cache: &Path, out: &Path) -> Run {
    capture(
        tool(cwd)
            .args(["build", "--locked", "--manifest-path"])
            .arg(project.manifest())
            .args(["--output", &format!("oci:{}:t", out.display())])
            .env("CARGO_CONTAINERIZE_CACHE", cache),
    )
}

#[test]
#[ignore = "heavy: builds mimalloc"]
fn a_cache_others_can_write_is_refused_before_anything_is_built_or_used() {
    let project = Project::copy("hello");
    project.append_manifest(MIMALLOC);
    let scratch = tempdir();
    // World-writable (a cache in a shared directory).
    let cache = scratch.path().join("cache");
    fs::create_dir(&cache).expect("mkdir");
    chmod(&cache, 0o777);
    let out = scratch.path().join("img");
    let run = mimalloc_build(&project, &project.root, &cache, &out);
    assert_error(
        &run,
        1,
        &[
            "cache",
            "writable by everyone",
            "chmod go-w",
            "CARGO_CONTAINERIZE_CACHE",
        ],
    );
    assert!(!out.exists(), "an image was written: {run}");
    assert!(
        !cache.join("mimalloc").exists(),
        "the tool wrote into it: {run}"
    );
    // A directory in it that another user made while it was open: refused, even once the
    // root is private again.
    chmod(&cache, 0o700);
    fs::create_dir_all(cache.join("mimalloc/src")).expect("mkdir");
    chown_tree(&cache.join("mimalloc"), OTHER_UID);
    let run = mimalloc_build(&project, &project.root, &cache, &out);
    assert_error(
        &run,
        1,
        &["mimalloc", "owned by uid 65534", "CARGO_CONTAINERIZE_CACHE"],
    );
    assert!(!out.exists(), "an image was written: {run}");
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn remembered_answers_in_a_cache_others_can_write_are_neither_used_nor_stored() {
    let project = Project::copy("hello");
    let binary = cargo_build_musl("hello", "hello");
    let scratch = tempdir();
    let cache = scratch.path().join("cache");
    fs::create_dir(&cache).expect("mkdir");
    chmod(&cache, 0o1777);
    let run = capture(
        tool(&project.root)
            .args(["build", "--locked", "--binary"])
            .arg(&binary)
            .args([
                "--output",
                &format!("oci:{}:t", scratch.path().join("img").display()),
            ])
            .env("CARGO_CONTAINERIZE_CACHE", &cache),
    );
    run.assert_success();
    assert!(
        run.stderr.contains("warning: refusing to use the cache at")
            && run.stderr.contains("writable by everyone"),
        "{run}"
    );
    assert_eq!(
        fs::read_dir(&cache).expect("cache").count(),
        0,
        "answers were stored in a cache others can write: {run}"
    );
}

/// One real mimalloc build with a relative CARGO_CONTAINERIZE_CACHE from another directory
/// (made absolute where it is read), then what another user could plant in the cache: an
/// entry with a matching files.json (refused, never shipped) and a build.rs in the helper
/// crate (never run).
#[test]
#[ignore = "heavy: builds mimalloc"]
fn a_planted_mimalloc_entry_never_ships_and_a_planted_build_script_never_runs() {
    let project = Project::copy("hello");
    project.append_manifest(MIMALLOC);
    let elsewhere = project.root.join("elsewhere");
    fs::create_dir(&elsewhere).expect("mkdir");
    let scratch = tempdir();
    let run = mimalloc_build(
        &project,
        &elsewhere,
        Path::new("rel-cache"),
        &scratch.path().join("one"),
    );
    run.assert_success();
    let cache = elsewhere.join("rel-cache");
    let root = cache.join("mimalloc");
    let entry = fs::read_dir(&root)
        .expect("mimalloc cache")
        .map(|e| e.expect("entry").path())
        .find(|p| p.join("files.json").is_file())
        .unwrap_or_else(|| panic!("no mimalloc entry under {root:?}: {run}"));

    // A planted entry: other bytes, a files.json that matches them, another user's.
    let lib = entry.join("lib/libmimalloc.a");
    let planted = b"!<arch>\nplanted by another user\n".to_vec();
    fs::write(&lib, &planted).expect("write");
    let list = serde_json::json!([[
        "lib/libmimalloc.a",
        sha256_digest(&planted).trim_start_matches("sha256:")
    ]]);
    fs::write(
        entry.join("files.json"),
        serde_json::to_vec(&list).expect("json"),
    )
    .expect("write");
    chown_tree(&entry, OTHER_UID);
    let out = scratch.path().join("two");
    let run = mimalloc_build(&project, &elsewhere, Path::new("rel-cache"), &out);
    assert_error(&run, 1, &["owned by uid 65534", "CARGO_CONTAINERIZE_CACHE"]);
    assert!(!run.stderr.contains("Cached mimalloc"), "{run}");
    assert!(!out.exists(), "an image was written: {run}");

    // A build.rs planted in the helper crate (entry gone, so the helper builds again).
    chown_tree(&entry, 0);
    fs::remove_dir_all(&entry).expect("rm");
    let marker = scratch.path().join("planted-build-script-ran");
    let helper = fs::read_dir(root.join("src"))
        .expect("helper crates")
        .map(|e| e.expect("entry").path())
        .find(|p| p.join("Cargo.toml").is_file())
        .expect("a helper crate");
    fs::write(
        helper.join("build.rs"),
        format!(
            "fn main() {{ std::fs::write({:?}, \"ran\").unwrap(); }}\n",
            marker
        ),
    )
    .expect("write");
    let run = mimalloc_build(
        &project,
        &elsewhere,
        Path::new("rel-cache"),
        &scratch.path().join("three"),
    );
    run.assert_success();
    assert!(!marker.exists(), "the planted build.rs ran: {run}");
}

#[test]
#[ignore = "heavy: builds mimalloc"]
fn a_full_disk_while_building_mimalloc_names_the_disk_and_the_cache_variable() {
    let project = Project::copy("hello");
    project.append_manifest(MIMALLOC);
    let mount = tempdir();
    capture(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
            .arg(mount.path()),
    )
    .assert_success();
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(mount.path());
    let out = tempdir();
    let run = mimalloc_build(
        &project,
        &project.root,
        mount.path(),
        &out.path().join("img"),
    );
    assert!(!run.status.success(), "{run}");
    assert!(!run.stderr.contains("panicked"), "{run}");
    let last = run.stderr.lines().last().unwrap_or_default();
    for word in [
        "mimalloc",
        "disk",
        "full",
        "no space left on device",
        "CARGO_CONTAINERIZE_CACHE",
    ] {
        assert!(
            last.contains(word),
            "the last line does not name {word:?}: {run}"
        );
    }
    assert!(!out.path().join("img").exists(), "{run}");
}
