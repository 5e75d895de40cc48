//! Reliability: layout. Outputs on disk — OCI layouts and archives — never lose a file the
//! tool did not write, concurrent writers of one layout keep every tag, two outputs of one run
//! never write the same place, a killed run's temp files are removed by the next run (a live
//! run's never), and a full disk is reported with the remedy, leaving nothing behind.

use crate::common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The advisory lock file the tool keeps inside a layout it updates.
const LOCK_NAME: &str = ".cargo-containerize.lock";

/// The hello fixture's binary, built once with plain cargo: `--binary` skips the build, so a
/// run takes a fraction of a second.
fn hello_binary() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| cargo_build_musl("hello", "hello"))
        .clone()
}

/// A tool run packaging `binary` in `project`, with its cache in `target`.
fn pack(project: &Project, target: &Path, binary: &Path) -> Command {
    let mut cmd = tool(&project.root);
    cmd.arg("build")
        .arg("--binary")
        .arg(binary)
        .arg("--target-dir")
        .arg(target)
        .arg("-q");
    cmd
}

/// Every file below `dir` (relative path → bytes), to prove files are byte-identical after.
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    snapshot(dir)
        .into_iter()
        .filter(|rel| dir.join(rel).is_file())
        .map(|rel| {
            let bytes = fs::read(dir.join(&rel)).expect("read file");
            (rel, bytes)
        })
        .collect()
}

/// The tags listed in a layout's index.json.
fn tags(layout: &Path) -> BTreeSet<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index.json"))
            .expect("index.json is JSON");
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .map(String::from)
        .collect()
}

/// Names in `dir` starting with `prefix`.
fn names_with(dir: &Path, prefix: &str) -> Vec<String> {
    fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Only an OCI layout is treated as one; foreign files are never deleted.

#[test]
#[ignore = "heavy: builds fixture images"]
fn oci_output_refuses_a_directory_that_is_not_a_layout_and_leaves_it_as_it_was() {
    let project = Project::copy("hello");
    let target = tempdir();
    let out = tempdir();
    // A web app's directory: a valid-JSON index.json among other files.
    let web = out.path().join("site");
    fs::create_dir_all(web.join("css")).expect("mkdir");
    fs::write(
        web.join("index.json"),
        br#"{"name": "my-site", "pages": []}"#,
    )
    .expect("write");
    fs::write(web.join("app.js"), b"console.log('hi');\n").expect("write");
    fs::write(web.join("css/style.css"), b"body { margin: 0 }\n").expect("write");
    let before = contents(&web);
    let names_before = snapshot(&web);

    let run = capture(
        pack(&project, target.path(), &hello_binary())
            .arg("--output")
            .arg(format!("oci:{}:1", web.display())),
    );
    assert_one_line_error(
        &run,
        &[
            &web.display().to_string(),
            "not an OCI image layout",
            "oci-layout",
            "choose a new or empty directory",
        ],
    );
    assert_eq!(
        snapshot(&web),
        names_before,
        "files added or removed: {run}"
    );
    assert_eq!(contents(&web), before, "files changed: {run}");
}

#[test]
#[ignore = "heavy: builds fixture images; needs skopeo, umoci, runc"]
fn updating_a_skopeo_written_layout_keeps_the_files_beside_it_and_its_other_tags() {
    let project = Project::copy("hello");
    let target = tempdir();
    let out = tempdir();
    let first = Layout::new(out.path().join("first"), "test");
    capture(
        pack(&project, target.path(), &hello_binary())
            .arg("--output")
            .arg(first.reference()),
    )
    .assert_success();
    // A layout skopeo wrote, with a README and a notes directory the user put beside it.
    let layout = out.path().join("skopeo-layout");
    capture(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &first.reference(),
        &format!("oci:{}:other", layout.display()),
    ]))
    .assert_success();
    fs::write(layout.join("README.txt"), b"Images for the deploy job.\n").expect("write");
    fs::create_dir_all(layout.join("notes")).expect("mkdir");
    fs::write(layout.join("notes/2026.txt"), b"keep me\n").expect("write");
    let foreign: BTreeMap<String, Vec<u8>> = contents(&layout)
        .into_iter()
        .filter(|(rel, _)| rel == "README.txt" || rel.starts_with("notes"))
        .collect();
    assert_eq!(foreign.len(), 2);

    // A different image (another env), so the update adds blobs and rewrites the index.
    let run = capture(
        pack(&project, target.path(), &hello_binary())
            .args(["--env", "MODE=second"])
            .arg("--output")
            .arg(format!("oci:{}:new", layout.display())),
    );
    run.assert_success();
    let after = contents(&layout);
    for (rel, bytes) in &foreign {
        assert_eq!(after.get(rel), Some(bytes), "{rel} lost or changed: {run}");
    }
    assert_eq!(
        tags(&layout),
        BTreeSet::from(["other".to_string(), "new".to_string()])
    );
    // skopeo and umoci still read the layout, lock file and all, under both tags.
    assert!(layout.join(LOCK_NAME).exists());
    for tag in ["other", "new"] {
        let l = Layout::new(&layout, tag);
        skopeo_inspect(&l.reference());
        capture(Command::new("skopeo").args([
            "copy",
            "--quiet",
            &l.reference(),
            &format!("oci:{}:{tag}", out.path().join("copy").display()),
        ]))
        .assert_success();
        let bundle = l.unpack();
        assert!(bundle.file("usr/local/bin/hello").is_file());
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Concurrent writers of one layout take turns: no tag is lost.

#[test]
#[ignore = "heavy: builds fixture images"]
fn concurrent_runs_into_one_layout_keep_every_tag() {
    let project = Project::copy("hello");
    let target = tempdir();
    let out = tempdir();
    let binary = hello_binary();
    // Warm the layer cache, so the writers race on the layout, not on compression.
    capture(
        pack(&project, target.path(), &binary)
            .arg("--output")
            .arg(format!("oci:{}:warm", out.path().join("warm").display())),
    )
    .assert_success();
    // Three rounds of six writers: the first creates the layout, the others add to it.
    let layout = out.path().join("shared");
    let mut expected = BTreeSet::new();
    for round in 0..3 {
        let children: Vec<(String, Child)> = (0..6)
            .map(|i| {
                let tag = format!("r{round}-w{i}");
                let child = pack(&project, target.path(), &binary)
                    .args(["--env", &format!("WRITER={tag}")])
                    .arg("--output")
                    .arg(format!("oci:{}:{tag}", layout.display()))
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn the tool");
                (tag, child)
            })
            .collect();
        for (tag, child) in children {
            let out = child.wait_with_output().expect("wait for the tool");
            assert!(
                out.status.success(),
                "writer {tag} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            expected.insert(tag);
        }
        assert_eq!(tags(&layout), expected, "tags lost in round {round}");
    }
    for tag in &expected {
        let config = Layout::new(&layout, tag).config();
        assert_eq!(
            config_env_var(&config, "WRITER").as_deref(),
            Some(tag.as_str()),
            "tag {tag} names another writer's image"
        );
    }
}

/// Holds the layout's lock from another process (`flock`, util-linux) until dropped.
struct HeldLock(Child);

impl HeldLock {
    fn take(file: &Path) -> HeldLock {
        let mut child = Command::new("flock")
            .arg(file)
            .args(["-c", "echo locked; exec cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn flock");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("read from flock");
        assert_eq!(line.trim(), "locked");
        HeldLock(child)
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        drop(self.0.stdin.take()); // cat ends, flock releases
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn waiting_for_a_layout_held_by_another_run_is_bounded_and_says_so() {
    let project = Project::copy("hello");
    let target = tempdir();
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "one");
    capture(
        pack(&project, target.path(), &hello_binary())
            .arg("--output")
            .arg(layout.reference()),
    )
    .assert_success();
    let held = HeldLock::take(&layout.dir.join(LOCK_NAME));
    let before = contents(&layout.dir);
    let started = Instant::now();
    let run = capture(
        pack(&project, target.path(), &hello_binary())
            .env("CARGO_CONTAINERIZE_LOCK_TIMEOUT", "1")
            .arg("--output")
            .arg(format!("oci:{}:two", layout.dir.display())),
    );
    drop(held);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the wait was not bounded"
    );
    assert!(
        run.stderr.contains(&format!(
            "Waiting for the lock on {} held by another run",
            layout.dir.display()
        )),
        "the wait was not announced: {run}"
    );
    assert_one_line_error(
        &run,
        &[
            "timed out",
            "lock",
            &layout.dir.display().to_string(),
            "CARGO_CONTAINERIZE_LOCK_TIMEOUT",
        ],
    );
    assert_eq!(contents(&layout.dir), before, "the layout changed: {run}");
}

// ---------------------------------------------------------------------------------------------
// 3. Two outputs of one run that write the same place are refused before any build.

#[test]
#[ignore = "heavy: builds fixture images"]
fn outputs_writing_the_same_place_are_refused_before_any_build() {
    let project = Project::copy("hello");
    let out = tempdir();
    let real = out.path().join("real");
    fs::create_dir_all(&real).expect("mkdir");
    std::os::unix::fs::symlink(&real, out.path().join("link")).expect("symlink");
    fs::write(real.join("keep.tar"), b"a previous archive\n").expect("write");
    let at = |rel: &str| out.path().join(rel).display().to_string();
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec![
                format!("oci-archive:{}", at("real/img.tar")),
                format!("docker-archive:{}", at("real/img.tar")),
            ],
            vec!["both write", "give each output its own path"],
        ),
        (
            // One file spelled two ways: through a symlink and with `..`.
            vec![
                format!("docker-archive:{}", at("link/keep.tar")),
                format!("oci-archive:{}:2", at("real/../real/keep.tar")),
            ],
            vec!["both write", "keep.tar", "give each output its own path"],
        ),
        (
            vec![
                format!("oci:{}:1", at("layout")),
                format!("oci:{}:1", at("./new/../layout")),
            ],
            vec!["same tag", "give each its own tag or directory"],
        ),
        (
            vec![
                format!("oci:{}:1", at("real/keep.tar")),
                format!("oci-archive:{}", at("link/keep.tar")),
            ],
            vec!["both write", "give each output its own path"],
        ),
    ];
    for (outputs, keywords) in cases {
        let target = tempdir();
        let before = contents(out.path());
        let names_before = snapshot(out.path());
        let mut cmd = tool(&project.root);
        cmd.arg("build").arg("--target-dir").arg(target.path());
        for o in &outputs {
            cmd.args(["--output", o]);
        }
        let run = capture(&mut cmd);
        assert_one_line_error(&run, &keywords);
        // (The shared layers may be started speculatively; cargo must not have run.)
        for built in [MUSL_TARGET, "debug", "release"] {
            assert!(
                !target.path().join(built).exists(),
                "the build started before the outputs were checked: {run}"
            );
        }
        assert_eq!(snapshot(out.path()), names_before, "{run}");
        assert_eq!(contents(out.path()), before, "{run}");
    }
    // Two tags of one layout are two outputs, not a collision.
    let target = tempdir();
    let layout = at("layout");
    capture(
        pack(&project, target.path(), &hello_binary())
            .args(["--output", &format!("oci:{layout}:a")])
            .args(["--output", &format!("oci:{layout}:b")]),
    )
    .assert_success();
    assert_eq!(
        tags(Path::new(&layout)),
        BTreeSet::from(["a".to_string(), "b".to_string()])
    );
}

// ---------------------------------------------------------------------------------------------
// 4. A killed run's temp files are removed by the next write of that output; a live run's not.

/// This process's start time (field 22 of /proc/self/stat), as the tool writes it into its
/// temp names.
fn own_start_time() -> u64 {
    let stat = fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let rest = &stat[stat.rfind(')').expect("comm") + 1..];
    rest.split_whitespace()
        .nth(19)
        .expect("starttime")
        .parse()
        .expect("number")
}

/// The interval of a bounded poll (not a wait for something: the loop checks a condition),
/// short enough to catch a run in the middle of writing, long enough to leave it the CPU.
fn poll_pause() {
    std::thread::sleep(Duration::from_millis(2));
}

/// A PID that no process has now: one of a child that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

/// A static binary of 24 MiB in `dir` (the hello binary and zeros): writing its uncompressed
/// docker archive takes long enough to stop the run in the middle.
fn big_hello(dir: &Path) -> PathBuf {
    let big = dir.join("big-hello");
    let mut f = fs::File::create(&big).expect("create");
    f.write_all(&fs::read(hello_binary()).expect("read binary"))
        .expect("write");
    f.set_len(24 << 20).expect("grow");
    fs::set_permissions(&big, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    big
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn temp_files_of_a_killed_run_are_removed_by_the_next_run() {
    let project = Project::copy("hello");
    let target = tempdir();
    let out = tempdir();
    let big = big_hello(out.path());
    let dir = out.path().join("images");
    fs::create_dir_all(&dir).expect("mkdir");
    // Files that only look like temps: never removed.
    fs::write(dir.join(".app.tar.tmp-notes"), b"mine\n").expect("write");
    fs::write(dir.join(".app.tar.tmp-1-2"), b"mine too\n").expect("write");
    let archive = dir.join("app.tar");
    let output = format!("docker-archive:{}", archive.display());

    let mut leftover = None;
    for _attempt in 0..3 {
        let mut child = pack(&project, target.path(), &big)
            .args(["--output", &output])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the tool");
        // Poll (bounded) for the run's temp archive, then SIGKILL it.
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut seen = None;
        while seen.is_none() && Instant::now() < deadline {
            seen = names_with(&dir, ".app.tar.tmp-")
                .into_iter()
                .find(|n| !n.ends_with("-notes") && !n.ends_with("-1-2"));
            if child.try_wait().expect("try_wait").is_some() {
                break;
            }
            poll_pause();
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        if let Some(name) = seen.filter(|n| dir.join(n).exists()) {
            leftover = Some(dir.join(name));
            break;
        }
        // The run finished before it could be killed: try again.
    }
    let leftover = leftover.expect("no run was killed while writing its temp archive");

    let run = capture(pack(&project, target.path(), &hello_binary()).args(["--output", &output]));
    run.assert_success();
    assert!(
        !leftover.exists(),
        "{} of the killed run survived: {run}",
        leftover.display()
    );
    assert_eq!(
        fs::read(dir.join(".app.tar.tmp-notes")).expect("look-alike kept"),
        b"mine\n"
    );
    assert_eq!(
        fs::read(dir.join(".app.tar.tmp-1-2")).expect("look-alike kept"),
        b"mine too\n"
    );
    let mut names = snapshot(&dir);
    names.retain(|n| n.starts_with(".app.tar.tmp-") || n == "app.tar");
    assert_eq!(
        names,
        BTreeSet::from([
            ".app.tar.tmp-1-2".to_string(),
            ".app.tar.tmp-notes".to_string(),
            "app.tar".to_string()
        ])
    );
    let entries = tar_entries(fs::File::open(&archive).expect("archive"));
    assert!(entries.iter().any(|e| e.path == "manifest.json"));
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn temp_files_of_live_runs_are_kept_and_of_dead_runs_removed() {
    let project = Project::copy("hello");
    let target = tempdir();
    let out = tempdir();
    let archive = out.path().join("app.tar");
    let layout = out.path().join("layout");
    // This test process is alive: its temps stay. A reaped child's PID is dead: its go.
    let live_archive = out.path().join(format!(
        ".app.tar.tmp-{}-{}-AbC123",
        std::process::id(),
        own_start_time()
    ));
    let dead_archive = out
        .path()
        .join(format!(".app.tar.tmp-{}-12345-XyZ789", dead_pid()));
    // The same PID with another start time: the PID was reused, the owner is gone.
    let reused_archive = out.path().join(format!(
        ".app.tar.tmp-{}-{}-Reu5ed",
        std::process::id(),
        own_start_time() + 1
    ));
    let live_layout = out.path().join(format!(
        ".layout.tmp-{}-{}-Dir001",
        std::process::id(),
        own_start_time()
    ));
    let dead_layout = out
        .path()
        .join(format!(".layout.tmp-{}-777-Dir002", dead_pid()));
    for f in [&live_archive, &dead_archive, &reused_archive] {
        fs::write(f, b"half an archive").expect("write");
    }
    for d in [&live_layout, &dead_layout] {
        fs::create_dir_all(d.join("blobs/sha256")).expect("mkdir");
        fs::write(d.join("index.json"), b"{}").expect("write");
    }
    let run = capture(
        pack(&project, target.path(), &hello_binary())
            .args(["--output", &format!("docker-archive:{}", archive.display())])
            .args(["--output", &format!("oci:{}:1", layout.display())]),
    );
    run.assert_success();
    assert_eq!(
        fs::read(&live_archive).expect("live run's temp kept"),
        b"half an archive"
    );
    assert_eq!(
        fs::read(live_layout.join("index.json")).expect("live run's temp dir kept"),
        b"{}"
    );
    for gone in [&dead_archive, &reused_archive, &dead_layout] {
        assert!(!gone.exists(), "{} survived: {run}", gone.display());
    }
}

// ---------------------------------------------------------------------------------------------
// 5. A full disk: the error names the output and the remedy; nothing is left behind.

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop (even when the test fails).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempdir();
        capture(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir.path()),
        )
        .assert_success();
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn a_full_disk_names_the_output_and_the_remedy_and_leaves_nothing_behind() {
    let project = Project::copy("hello");
    let target = tempdir();
    let disk = Tmpfs::mount("256k");
    fs::write(disk.path().join("keep.txt"), b"the user's file\n").expect("write");
    // A previous archive that a failed write must leave as it was.
    fs::write(disk.path().join("img.tar"), b"the previous archive\n").expect("write");
    let before = contents(disk.path());
    let names_before = snapshot(disk.path());
    let outputs = [
        (
            format!("docker-archive:{}", disk.path().join("img.tar").display()),
            disk.path().join("img.tar"),
        ),
        (
            format!("oci-archive:{}", disk.path().join("oci.tar").display()),
            disk.path().join("oci.tar"),
        ),
        (
            format!("oci:{}:1", disk.path().join("layout").display()),
            disk.path().join("layout"),
        ),
    ];
    for (output, path) in outputs {
        let run =
            capture(pack(&project, target.path(), &hello_binary()).args(["--output", &output]));
        assert_one_line_error(
            &run,
            &[
                &path.display().to_string(),
                "disk is full",
                "free some space",
                "choose another output path",
            ],
        );
        assert_eq!(snapshot(disk.path()), names_before, "left behind: {run}");
        assert_eq!(contents(disk.path()), before, "{run}");
    }
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn a_full_disk_while_adding_to_a_layout_leaves_the_layout_as_it_was() {
    let project = Project::copy("hello");
    let target = tempdir();
    let disk = Tmpfs::mount("2m");
    let layout = disk.path().join("layout");
    capture(
        pack(&project, target.path(), &hello_binary())
            .args(["--output", &format!("oci:{}:1", layout.display())]),
    )
    .assert_success();
    fs::write(layout.join("README.txt"), b"the user's notes\n").expect("write");
    let before = contents(&layout);
    // A binary that cannot fit: the hello binary and 4 MiB that do not compress.
    let work = tempdir();
    let big = work.path().join("big-hello");
    let mut bytes = fs::read(hello_binary()).expect("read binary");
    let mut noise = vec![0u8; 4 << 20];
    std::io::Read::read_exact(
        &mut fs::File::open("/dev/urandom").expect("urandom"),
        &mut noise,
    )
    .expect("read urandom");
    bytes.extend_from_slice(&noise);
    fs::write(&big, bytes).expect("write");
    fs::set_permissions(&big, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let run = capture(
        pack(&project, target.path(), &big)
            .args(["--output", &format!("oci:{}:2", layout.display())]),
    );
    assert_one_line_error(
        &run,
        &[
            &layout.display().to_string(),
            "disk is full",
            "choose another output path",
        ],
    );
    // Nothing added but the (empty) lock file; every blob, the index and the README as before.
    let mut after = contents(&layout);
    assert_eq!(after.remove(LOCK_NAME), Some(Vec::new()), "{run}");
    assert_eq!(after, before, "{run}");
    assert_eq!(tags(&layout), BTreeSet::from(["1".to_string()]));
    assert_eq!(
        snapshot(disk.path()),
        BTreeSet::from(["layout".to_string()])
            .into_iter()
            .chain(snapshot(&layout).into_iter().map(|p| format!("layout/{p}")))
            .collect::<BTreeSet<_>>(),
        "temps left beside the layout: {run}"
    );
}

#[test]
#[ignore = "heavy: builds fixture images; needs skopeo"]
fn a_truncated_blob_in_a_layout_is_replaced_whole_by_the_next_write() {
    let project = Project::copy("hello");
    let target = tempdir();
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "1");
    let write = || {
        capture(
            pack(&project, target.path(), &hello_binary())
                .arg("--output")
                .arg(layout.reference()),
        )
    };
    write().assert_success();
    let blob = layout.blob(layout.layer_digests().last().expect("a layer"));
    let whole = fs::read(&blob).expect("blob");
    // Cut the blob in a copy (the layout's blob may share its inode with the cache's).
    fs::remove_file(&blob).expect("unlink");
    fs::write(&blob, &whole[..whole.len() / 2]).expect("write");
    write().assert_success();
    assert_eq!(fs::read(&blob).expect("blob"), whole);
    capture(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &layout.reference(),
        &format!("oci:{}:1", out.path().join("copy").display()),
    ]))
    .assert_success();
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn replacing_a_tag_removes_only_the_blobs_no_tag_uses() {
    let project = Project::copy("hello");
    let target = tempdir();
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "1");
    let write = |env: &str| {
        capture(
            pack(&project, target.path(), &hello_binary())
                .args(["--env", env, "--layout-referrers"])
                .arg("--output")
                .arg(layout.reference()),
        )
        .assert_success()
        .digest()
    };
    write("MODE=first");
    fs::write(layout.dir.join("README.txt"), b"notes\n").expect("write");
    // Not a blob name: kept whatever it is.
    fs::write(layout.dir.join("blobs/sha256/NOTES"), b"mine\n").expect("write");
    let digest = write("MODE=second");
    let manifest = layout.manifest();
    let mut want: BTreeSet<String> = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .chain([&manifest["config"]])
        .map(|d| d["digest"].as_str().expect("digest").to_string())
        .collect();
    want.insert(digest.clone());
    // The live image's referrers (its provenance) stay with it; the old image's went with it.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.dir.join("index.json")).expect("index.json"))
            .expect("index.json is JSON");
    for entry in index["manifests"].as_array().expect("manifests") {
        if entry.get("artifactType").is_none() {
            continue;
        }
        let referrer = entry["digest"].as_str().expect("digest");
        let m: serde_json::Value =
            serde_json::from_slice(&fs::read(layout.blob(referrer)).expect("referrer manifest"))
                .expect("referrer JSON");
        assert_eq!(m["subject"]["digest"], digest.as_str(), "{m}");
        want.insert(referrer.to_string());
        for d in m["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .chain([&m["config"]])
        {
            want.insert(d["digest"].as_str().expect("digest").to_string());
        }
    }
    let mut have: BTreeSet<String> = fs::read_dir(layout.dir.join("blobs/sha256"))
        .expect("blobs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(have.remove("NOTES"));
    let want: BTreeSet<String> = want
        .iter()
        .map(|d| d.trim_start_matches("sha256:").to_string())
        .collect();
    assert_eq!(have, want);
    assert_eq!(
        fs::read(layout.dir.join("README.txt")).expect("README kept"),
        b"notes\n"
    );
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn sigterm_while_writing_leaves_the_previous_output_and_no_temp() {
    let project = Project::copy("hello");
    let target = tempdir();
    let out = tempdir();
    let big = big_hello(out.path());
    let dir = out.path().join("images");
    fs::create_dir_all(&dir).expect("mkdir");
    let archive = dir.join("app.tar");
    fs::write(&archive, b"the previous archive\n").expect("write");
    let output = format!("docker-archive:{}", archive.display());
    for _attempt in 0..3 {
        let child = pack(&project, target.path(), &big)
            .args(["--output", &output])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the tool");
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut seen = false;
        while !seen && Instant::now() < deadline {
            seen = !names_with(&dir, ".app.tar.tmp-").is_empty();
            poll_pause();
        }
        capture(Command::new("kill").args(["-TERM", &child.id().to_string()])).assert_success();
        let done = child.wait_with_output().expect("wait");
        if done.status.success() {
            // It finished before the signal: put the previous archive back and try again.
            fs::write(&archive, b"the previous archive\n").expect("write");
            continue;
        }
        assert_eq!(done.status.code(), Some(130));
        let stderr = String::from_utf8_lossy(&done.stderr);
        assert!(
            stderr.trim_end().ends_with(
                "error: interrupted; unfinished outputs were removed and existing ones left as they were"
            ),
            "{stderr}"
        );
        assert_eq!(
            fs::read(&archive).expect("archive"),
            b"the previous archive\n"
        );
        assert_eq!(snapshot(&dir), BTreeSet::from(["app.tar".to_string()]));
        return;
    }
    panic!("no run was interrupted while writing");
}

/// Every file under `blobs/sha256` of `dir` whose bytes do not hash to its name.
fn mismatched_blobs(dir: &Path) -> Vec<String> {
    fs::read_dir(dir.join("blobs/sha256"))
        .expect("blobs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            let bytes = fs::read(dir.join("blobs/sha256").join(name)).expect("read blob");
            sha256_digest(&bytes) != format!("sha256:{name}")
        })
        .collect()
}

#[test]
#[ignore = "heavy: builds fixture images; needs skopeo"]
fn a_layout_blob_with_a_flipped_byte_is_replaced_not_reused() {
    let project = Project::copy("hello");
    let target = tempdir();
    let out = tempdir();
    let a = Layout::new(out.path().join("image"), "a");
    let write = |layout: &Layout| {
        capture(
            pack(&project, target.path(), &hello_binary())
                .arg("--output")
                .arg(layout.reference()),
        )
        .assert_success()
        .clone()
    };
    write(&a);
    // The binary's layer: the biggest blob. One byte flipped, same size.
    let layer = a
        .layer_digests()
        .into_iter()
        .max_by_key(|d| fs::metadata(a.blob(d)).expect("blob").len())
        .expect("a layer");
    let path = a.blob(&layer);
    let mut bytes = fs::read(&path).expect("read layer");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    fs::write(&path, &bytes).expect("damage layer");
    assert_eq!(mismatched_blobs(&a.dir).len(), 1);

    let b = Layout::new(a.dir.clone(), "b");
    let run = write(&b);
    write(&a);
    assert_eq!(
        mismatched_blobs(&a.dir),
        Vec::<String>::new(),
        "a damaged blob was reused"
    );
    capture(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &a.reference(),
        &format!("oci:{}:1", out.path().join("copy").display()),
    ]))
    .assert_success();
    assert!(
        run.stderr.contains("warning:") && run.stderr.contains(hex_of(&layer)),
        "no warning naming the damaged blob: {run}"
    );
}

fn hex_of(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}
#[test]
#[ignore = "heavy: builds fixture images; needs skopeo"]
fn a_tag_whose_manifest_cannot_be_read_keeps_its_blobs_when_another_tag_is_added() {
    let project = Project::copy("hello");
    let target = tempdir();
    let out = tempdir();
    let first = Layout::new(out.path().join("first"), "1");
    capture(
        pack(&project, target.path(), &hello_binary())
            .args(["--env", "MODE=other"])
            .arg("--output")
            .arg(first.reference()),
    )
    .assert_success();
    let other = Layout::new(out.path().join("shared"), "other");
    capture(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &first.reference(),
        &other.reference(),
    ]))
    .assert_success();
    let layers = other.layer_digests();
    let config = other.manifest()["config"]["digest"]
        .as_str()
        .expect("config")
        .to_string();
    // The other tag's manifest, damaged: no longer JSON.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(other.dir.join("index.json")).expect("index"))
            .expect("index is JSON");
    let manifest = index["manifests"][0]["digest"].as_str().expect("digest");
    fs::write(other.blob(manifest), b"\0not json at all\0").expect("damage manifest");

    let mine = Layout::new(other.dir.clone(), "mine");
    let run = capture(
        pack(&project, target.path(), &hello_binary())
            .args(["--env", "MODE=mine"])
            .arg("--output")
            .arg(mine.reference()),
    );
    run.assert_success();
    for d in layers.iter().chain([&config]) {
        assert!(
            other.blob(d).is_file(),
            "blob {d} of tag `other` was removed: {run}"
        );
    }
    assert_eq!(
        tags(&other.dir),
        BTreeSet::from(["other".into(), "mine".into()])
    );
    assert!(
        run.stderr.contains("warning:") && run.stderr.contains("other"),
        "no warning naming the unreadable tag: {run}"
    );
}
