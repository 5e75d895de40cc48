//! Identical inputs give identical images, whatever the directory, the file times or the
//! moment of the build; layers that do not depend on the program are shared between programs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use crate::common::*;
use serde_json::Value;

/// Sets the modification time of every file below `dir` to `time`.
fn set_mtimes(dir: &Path, time: SystemTime) {
    for entry in fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if entry.file_type().expect("type").is_dir() {
            set_mtimes(&path, time);
        } else {
            fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(time))
                .unwrap_or_else(|e| panic!("touch {path:?}: {e}"));
        }
    }
}

/// One independent build: own copy, own target dir, an oci layout and an oci-archive.
struct Independent {
    built: Built,
    archive: PathBuf,
}

fn independent_build(fixture: &str, mtime: Option<SystemTime>) -> Independent {
    let project = Project::copy(fixture);
    if let Some(time) = mtime {
        set_mtimes(&project.root, time);
    }
    let archive = project.parent().join("image.tar");
    let target = project.parent().join("own-target");
    let spec = format!("oci-archive:{}:test", archive.display());
    let built = build(project, Some(&target), &["--output", &spec]);
    Independent { built, archive }
}

/// Two builds of `fixture` in different directories, the second one a moment later from
/// sources with other modification times.
fn twin_builds(fixture: &str) -> (Independent, Independent) {
    let first = independent_build(fixture, None);
    std::thread::sleep(Duration::from_millis(1100));
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_234_567_890);
    let second = independent_build(fixture, Some(old));
    assert_ne!(first.built.project.root, second.built.project.root);
    (first, second)
}

fn hello_twins() -> &'static (Independent, Independent) {
    static TWINS: OnceLock<(Independent, Independent)> = OnceLock::new();
    TWINS.get_or_init(|| twin_builds("hello"))
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn hello_built_in_two_directories_has_the_same_digest() {
    let (a, b) = hello_twins();
    assert_eq!(a.built.run.digest(), b.built.run.digest());
    assert_eq!(a.built.layout.config(), b.built.layout.config());
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn hello_oci_archives_built_in_two_directories_are_byte_identical() {
    let (a, b) = hello_twins();
    let (a_bytes, b_bytes) = (
        fs::read(&a.archive).expect("a"),
        fs::read(&b.archive).expect("b"),
    );
    assert!(a_bytes == b_bytes, "oci-archive files differ");
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn cdep_built_in_two_directories_has_the_same_digest() {
    let (a, b) = twin_builds("cdep");
    assert_eq!(a.built.run.digest(), b.built.run.digest());
    let run = a.built.bundle().run();
    assert_eq!(run.stdout.trim(), "c says 5", "{run}");
}

fn json_layers(fixture: &str) -> (Vec<Value>, Layout) {
    let project = Project::copy(fixture);
    let out = tempdir().keep();
    let layout = Layout::new(out.join("image"), "test");
    let run = capture(
        tool(&project.root)
            .args([
                "build",
                "--locked",
                "--message-format",
                "json",
                "--target-dir",
            ])
            .arg(shared_target_dir(fixture))
            .args(["--output", &layout.reference()]),
    );
    run.assert_success();
    let layers = run.json()["layers"].as_array().expect("layers").clone();
    (layers, layout)
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn base_certs_and_tzdata_layers_are_identical_between_different_programs() {
    let (hello, hello_layout) = json_layers("hello");
    let (tz, _) = json_layers("tz");
    assert_eq!(hello.len(), tz.len(), "hello {hello:?}\ntz {tz:?}");
    assert!(
        hello.len() >= 4,
        "expected base, certs, tzdata and binary layers: {hello:?}"
    );
    let (hello_top, hello_shared) = hello.split_last().expect("layers");
    let (tz_top, tz_shared) = tz.split_last().expect("layers");
    assert_eq!(hello_shared, tz_shared, "program-independent layers differ");
    assert_ne!(
        hello_top["digest"], tz_top["digest"],
        "binary layers are equal"
    );
    // The shared layers are the ones that hold the base files, the CA bundle and tzdata.
    let holder = |path: &str| {
        hello_layout
            .layer_digests()
            .into_iter()
            .find(|d| {
                hello_layout
                    .layer_entries(d)
                    .iter()
                    .any(|e| e.path.trim_start_matches("./") == path)
            })
            .unwrap_or_else(|| panic!("no layer holds {path}"))
    };
    for path in ["etc/passwd", CA_BUNDLE, "usr/share/zoneinfo/UTC"] {
        let digest = holder(path);
        assert!(
            hello_shared.iter().any(|l| l["digest"] == digest.as_str()),
            "{path} is not in a shared layer"
        );
    }
}

/// `date -u` rendering of a Unix time as `YYYY-MM-DDTHH:MM:SS`.
fn utc(seconds: u64) -> String {
    let run = capture(Command::new("date").args([
        "-u",
        "-d",
        &format!("@{seconds}"),
        "+%Y-%m-%dT%H:%M:%S",
    ]));
    run.assert_success();
    run.stdout.trim().to_string()
}

/// A copy of hello committed to a fresh git repository.
fn committed_hello() -> Project {
    let project = Project::copy("hello");
    commit_all(&project.root);
    project
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn image_outside_git_and_without_source_date_epoch_is_created_at_the_epoch() {
    let (a, _) = hello_twins();
    let created = a.built.layout.config()["created"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(created.starts_with(&utc(0)), "created = {created:?}");
}

#[test]
fn source_date_epoch_sets_the_creation_time() {
    let project = Project::copy("hello");
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "test");
    let epoch = 1_700_000_000;
    let run = capture(
        tool(&project.root)
            .args(["build", "--locked", "--target-dir"])
            .arg(shared_target_dir("hello"))
            .args(["--output", &layout.reference()])
            .env("SOURCE_DATE_EPOCH", epoch.to_string()),
    );
    run.assert_success();
    let created = layout.config()["created"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(created.starts_with(&utc(epoch)), "created = {created:?}");
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn git_checkout_sets_the_revision_label_and_the_commit_time_as_creation_time() {
    let project = committed_hello();
    let head = git(&project.root, &["rev-parse", "HEAD"]);
    let built = build(project, Some(&shared_target_dir("hello")), &[]);
    let config = built.layout.config();
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.revision"],
        head.as_str()
    );
    let created = config["created"].as_str().unwrap_or("").to_string();
    assert!(
        created.starts_with(&utc(COMMIT_TIME)),
        "created = {created:?}"
    );
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn uncommitted_changes_mark_the_revision_dirty() {
    let project = committed_hello();
    let head = git(&project.root, &["rev-parse", "HEAD"]);
    let main = project.root.join("src/main.rs");
    let mut source = fs::read_to_string(&main).expect("main.rs");
    source.push_str("\n// an uncommitted change\n");
    fs::write(&main, source).expect("write main.rs");
    let built = build(project, None, &[]);
    let revision =
        built.layout.config()["config"]["Labels"]["org.opencontainers.image.revision"].clone();
    assert_eq!(revision, format!("{head}-dirty").as_str());
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn clones_of_one_commit_in_two_directories_have_the_same_digest() {
    let original = committed_hello();
    let clone_dir = tempdir();
    let clone = clone_dir.path().join("hello");
    git(
        clone_dir.path(),
        &[
            "clone",
            "-q",
            original.root.to_str().expect("utf-8"),
            "hello",
        ],
    );
    let original_built = build(original, Some(&tempdir().keep()), &[]);
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "test");
    let run = capture(
        tool(&clone)
            .args(["build", "--locked", "--target-dir"])
            .arg(clone_dir.path().join("target"))
            .args(["--output", &layout.reference()]),
    );
    run.assert_success();
    assert_eq!(run.digest(), original_built.run.digest());
}

/// A clean build of the `stamp` fixture (its build script embeds SOURCE_DATE_EPOCH, or the
/// wall clock in nanoseconds when it is unset, as vergen does), in a directory of its own.
struct Stamp {
    _project: Project,
    run: Run,
    layout: Layout,
    _out: tempfile::TempDir,
}

impl Stamp {
    fn build(commit: bool, epoch: Option<u64>) -> Stamp {
        let project = Project::copy("stamp");
        if commit {
            commit_all(&project.root);
        }
        let out = tempdir();
        let layout = Layout::new(out.path().join("image"), "test");
        let mut cmd = tool(&project.root);
        cmd.args(["build", "--locked", "--output", &layout.reference()])
            .arg("--target-dir")
            .arg(project.parent().join("own-target"));
        if let Some(epoch) = epoch {
            cmd.env("SOURCE_DATE_EPOCH", epoch.to_string());
        }
        let run = capture(&mut cmd);
        run.assert_success();
        Stamp {
            _project: project,
            run,
            layout,
            _out: out,
        }
    }

    /// What the image prints when it runs.
    fn output(&self) -> String {
        let run = self.layout.unpack().run();
        assert!(run.status.success(), "{run}");
        run.stdout.trim().to_string()
    }
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn a_build_script_stamping_the_build_time_sees_the_commit_time() {
    let (a, b) = (Stamp::build(true, None), Stamp::build(true, None));
    assert_eq!(a.run.digest(), b.run.digest(), "{}\n{}", a.run, b.run);
    assert_eq!(a.output(), format!("built=epoch {COMMIT_TIME}"));
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn a_build_script_stamping_the_build_time_sees_epoch_0_outside_git() {
    let (a, b) = (Stamp::build(false, None), Stamp::build(false, None));
    assert_eq!(a.run.digest(), b.run.digest(), "{}\n{}", a.run, b.run);
    assert_eq!(a.output(), "built=epoch 0");
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn the_users_source_date_epoch_reaches_the_build_script() {
    let built = Stamp::build(true, Some(1_700_000_000));
    assert_eq!(built.output(), "built=epoch 1700000000");
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn the_build_log_names_the_binary_packed_and_the_others() {
    let built = Stamp::build(false, None);
    let note = "package `stamp` also has bin `other`; choose another with --bin NAME";
    assert!(built.run.stderr.contains(note), "{}", built.run);
}
