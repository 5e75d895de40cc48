//! Reliability: cached blobs are proven to match their digests before they are reused.
//!
//! Each case builds the hello fixture's prebuilt binary (`--binary`, so no cargo build) with a
//! target directory of its own, damages a file of the layer cache under
//! `<target-dir>/containerize/cache` (or of a written layout), builds again into a fresh
//! layout, and checks every blob of every layout against its digest, then lets `skopeo copy`
//! (which checks them too) read the image.

use crate::common::*;
use serde_json::Value;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// A copy of the hello fixture, its prebuilt binary and a target directory of its own.
struct Cached {
    project: Project,
    binary: PathBuf,
    target: TempDir,
    out: TempDir,
}

impl Cached {
    fn new() -> Cached {
        Cached {
            project: Project::copy("hello"),
            binary: cargo_build_musl("hello", "hello"),
            target: tempdir(),
            out: tempdir(),
        }
    }

    fn cache(&self) -> PathBuf {
        self.target.path().join("containerize/cache")
    }

    /// The cache's file for blob `digest`.
    fn cache_blob(&self, digest: &str) -> PathBuf {
        self.cache()
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// The tool packaging `binary` into `oci:<out>/<name>:test`, not yet started.
    fn command(&self, binary: &Path, name: &str) -> (Command, Layout) {
        let layout = Layout::new(self.out.path().join(name), "test");
        let mut cmd = tool(&self.project.root);
        cmd.args(["build", "--locked", "--binary"])
            .arg(binary)
            .arg("--target-dir")
            .arg(self.target.path())
            .args(["--output", &layout.reference()]);
        (cmd, layout)
    }

    /// A build of the fixture's binary into a fresh layout `name`.
    fn build(&self, name: &str) -> (Run, Layout) {
        let (mut cmd, layout) = self.command(&self.binary.clone(), name);
        (capture(&mut cmd), layout)
    }
}

/// The manifest of the layout's one image, from the layout's own files.
fn manifest_of(layout: &Layout) -> Value {
    let index: Value =
        serde_json::from_slice(&fs::read(layout.dir.join("index.json")).expect("index.json"))
            .expect("index.json is JSON");
    let digest = index["manifests"][0]["digest"].as_str().expect("digest");
    serde_json::from_slice(&fs::read(layout.blob(digest)).expect("manifest blob"))
        .expect("manifest is JSON")
}

/// Config and layer digests of the layout's image, config first.
fn blob_digests(layout: &Layout) -> Vec<String> {
    let manifest = manifest_of(layout);
    let mut digests = vec![
        manifest["config"]["digest"]
            .as_str()
            .expect("config")
            .to_string(),
    ];
    for l in manifest["layers"].as_array().expect("layers") {
        digests.push(l["digest"].as_str().expect("layer digest").to_string());
    }
    digests
}

/// Every blob file of the layout holds the bytes its name promises, and skopeo, which checks
/// digests as it copies, reads the whole image.
fn assert_intact(layout: &Layout) {
    for entry in fs::read_dir(layout.dir.join("blobs/sha256")).expect("blobs dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let bytes = fs::read(&path).expect("read blob");
        assert_eq!(
            sha256_digest(&bytes),
            format!("sha256:{name}"),
            "blob {} does not match its digest",
            path.display()
        );
    }
    // The config's diff_ids are the digests of the uncompressed layers (skopeo does not check).
    let manifest = manifest_of(layout);
    let config: Value = serde_json::from_slice(
        &fs::read(layout.blob(manifest["config"]["digest"].as_str().expect("config")))
            .expect("config blob"),
    )
    .expect("config is JSON");
    for (layer, diff_id) in manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .zip(config["rootfs"]["diff_ids"].as_array().expect("diff_ids"))
    {
        let file =
            fs::File::open(layout.blob(layer["digest"].as_str().expect("digest"))).expect("layer");
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(file)
            .read_to_end(&mut tar)
            .expect("gunzip layer");
        assert_eq!(
            sha256_digest(&tar),
            diff_id.as_str().expect("diff_id"),
            "a layer does not match its diff_id"
        );
    }
    let copy = tempdir();
    let run = capture(Command::new("skopeo").args([
        "copy",
        "-q",
        &layout.reference(),
        &format!("oci:{}:copy", copy.path().join("x").display()),
    ]));
    assert!(run.status.success(), "skopeo cannot copy the image: {run}");
}

/// A successful run that warned, on one line, about the damaged cache file.
fn assert_repaired(run: &Run, damaged: &Path) {
    run.assert_success();
    let warning = run
        .stderr
        .lines()
        .find(|l| l.starts_with("warning: "))
        .unwrap_or_else(|| panic!("no warning about the damaged cache file: {run}"));
    assert!(
        warning.contains(&damaged.display().to_string()),
        "the warning does not name {}: {run}",
        damaged.display()
    );
}

fn flip_byte(path: &Path, at: u64) {
    let mut bytes = fs::read(path).expect("read");
    let at = at as usize % bytes.len();
    bytes[at] ^= 0x20;
    // Written in place, as an editor or a bad disk would: the inode stays the same.
    let mut f = fs::File::options().write(true).open(path).expect("open");
    f.seek(SeekFrom::Start(at as u64)).expect("seek");
    f.write_all(&bytes[at..=at]).expect("write");
}

#[test]
#[ignore = "heavy: builds fixture images; needs skopeo"]
fn flipped_byte_in_a_cached_layer_is_repaired_not_shipped() {
    let c = Cached::new();
    let (run, first) = c.build("first");
    run.assert_success();
    let binary_layer = blob_digests(&first).pop().expect("a layer");
    let damaged = c.cache_blob(&binary_layer);
    let len = fs::metadata(&damaged).expect("cached binary layer").len();
    flip_byte(&damaged, len / 2);

    assert_intact(&first); // written earlier: untouched by damage to the cache
    let (run, second) = c.build("second");
    assert_repaired(&run, &damaged);
    assert_intact(&second);
    assert_eq!(blob_digests(&second), blob_digests(&first));
    assert_eq!(
        sha256_digest(&fs::read(&damaged).expect("repaired blob")),
        binary_layer,
        "the cache still holds the damaged blob"
    );
}

#[test]
#[ignore = "heavy: builds fixture images; needs skopeo"]
fn truncated_cached_layer_is_repaired_not_shipped() {
    let c = Cached::new();
    let (run, first) = c.build("first");
    run.assert_success();
    // The base layer: one of those shared by every crate, found through their own shortcut.
    let base_layer = blob_digests(&first)[1].clone();
    let damaged = c.cache_blob(&base_layer);
    let len = fs::metadata(&damaged).expect("cached base layer").len();
    fs::File::options()
        .write(true)
        .open(&damaged)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate");

    assert_intact(&first);
    let (run, second) = c.build("second");
    assert_repaired(&run, &damaged);
    assert_intact(&second);
    assert_eq!(blob_digests(&second), blob_digests(&first));
}

#[test]
#[ignore = "heavy: builds fixture images; needs skopeo"]
fn editing_a_written_layout_does_not_reach_the_cache() {
    let c = Cached::new();
    let (run, first) = c.build("first");
    run.assert_success();
    let binary_layer = blob_digests(&first).pop().expect("a layer");
    flip_byte(&first.blob(&binary_layer), 100);

    let (run, second) = c.build("second");
    run.assert_success();
    assert_intact(&second);
}

#[test]
#[ignore = "heavy: builds fixture images; needs skopeo"]
fn damaged_cache_entry_is_repaired_not_served() {
    let c = Cached::new();
    let (run, first) = c.build("first");
    run.assert_success();
    // The binary layer's entry: what the layer's inputs map to (digest, diff_id, sizes).
    let binary_layer = blob_digests(&first).pop().expect("a layer");
    let entry = fs::read_dir(c.cache().join("layers"))
        .expect("cache entries")
        .map(|e| e.expect("entry").path())
        .find(|p| String::from_utf8_lossy(&fs::read(p).expect("read")).contains(&binary_layer))
        .expect("the binary layer's cache entry");
    let text = fs::read_to_string(&entry).expect("entry");
    let at = text.find("\"diff_id\":\"sha256:").expect("a diff_id") + 18;
    let flipped = if &text[at..=at] == "0" { "1" } else { "0" };
    fs::write(
        &entry,
        format!("{}{flipped}{}", &text[..at], &text[at + 1..]),
    )
    .expect("edit");

    let (run, second) = c.build("second");
    assert_repaired(&run, &entry);
    assert_intact(&second);
    assert_eq!(blob_digests(&second), blob_digests(&first));
}

#[test]
#[ignore = "heavy: builds fixture images; needs skopeo"]
fn edited_cached_config_is_repaired_not_reused() {
    let c = Cached::new();
    let (run, first) = c.build("first");
    run.assert_success();
    let config = blob_digests(&first)[0].clone();
    let damaged = c.cache_blob(&config);
    // Same size, still JSON: `"User"` → `"user"`... any one byte will do.
    flip_byte(&damaged, 10);

    assert_intact(&first);
    let (run, second) = c.build("second");
    assert_repaired(&run, &damaged);
    assert_intact(&second);
    assert_eq!(
        sha256_digest(&fs::read(&damaged).expect("repaired config")),
        config
    );
}

/// A static binary of about 64 MB that compresses slowly: the fixture's, then pseudo-random
/// bytes (an ELF may carry anything after its sections). `seed` makes each one different.
fn big_binary(dir: &Path, small: &Path, seed: u64) -> PathBuf {
    let path = dir.join(format!("big-{seed}"));
    let mut bytes = fs::read(small).expect("fixture binary");
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    bytes.reserve(64 << 20);
    for _ in 0..(8 << 20) {
        // xorshift64: cheap bytes no compressor can shrink.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    fs::write(&path, bytes).expect("write big binary");
    path
}

fn temps(cache: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(cache.join("tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Starts the tool on `binary` and returns once it is writing a temp file in the cache other
/// than `others` (at least 1 MiB of it, so the big layer, not a small record): the child and
/// that temp. Bounded: a run that never gets there fails the test.
fn start_writing(c: &Cached, binary: &Path, name: &str, others: &[PathBuf]) -> (Child, PathBuf) {
    let (mut cmd, _) = c.command(binary, name);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the tool");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let found = temps(&c.cache())
            .into_iter()
            .find(|t| !others.contains(t) && fs::metadata(t).is_ok_and(|m| m.len() >= 1 << 20));
        if let Some(t) = found {
            return (child, t);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended ({status}) before it wrote a temp file in the cache");
        }
        assert!(
            Instant::now() < deadline,
            "no temp file in {} after 120 s",
            c.cache().display()
        );
        std::thread::yield_now();
    }
}

fn signal(child: &Child, sig: &str) {
    capture(Command::new("kill").args([sig, &child.id().to_string()])).assert_success();
}

/// A run this test started: killed (SIGKILL works on a stopped process too) and reaped when
/// the test ends, whether it passes or not.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn killed_runs_temps_are_removed_and_live_runs_kept() {
    let c = Cached::new();
    let work = tempdir();
    // A live owner: a run stopped (SIGSTOP) while it writes its big layer.
    let (live, live_temp) = start_writing(&c, &big_binary(work.path(), &c.binary, 1), "live", &[]);
    let mut live = Started(live);
    signal(&live.0, "-STOP");
    // A dead one: a run killed (SIGKILL) while it writes its own.
    let (mut dead, dead_temp) = start_writing(
        &c,
        &big_binary(work.path(), &c.binary, 2),
        "dead",
        std::slice::from_ref(&live_temp),
    );
    dead.kill().expect("SIGKILL");
    dead.wait().expect("reap");
    assert!(
        dead_temp.exists(),
        "the killed run left no temp to test with"
    );

    let (run, _) = c.build("next");
    run.assert_success();
    assert!(
        !dead_temp.exists(),
        "the next run kept {}, the temp of a killed run",
        dead_temp.display()
    );
    assert!(
        live_temp.exists(),
        "the next run removed {}, the temp of a run still alive",
        live_temp.display()
    );

    // Once the stopped run is killed too, its temp goes with the next run.
    live.0.kill().expect("SIGKILL");
    live.0.wait().expect("reap");
    let (run, _) = c.build("last");
    run.assert_success();
    assert_eq!(
        temps(&c.cache()),
        Vec::<PathBuf>::new(),
        "temps left in the cache"
    );
}
