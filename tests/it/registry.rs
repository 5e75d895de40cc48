//! `--push` to a real registry (Debian's docker-registry 2.8, started per test on a free
//! loopback port) and `--load` into podman: plain HTTP, TLS with a private CA and htpasswd
//! auth, every credential source, upload accounting, a fault-injecting proxy, a push killed
//! mid-upload, and tags from the metadata. The harness is in tests/it/support (proved with
//! skopeo alone in tests/it/registry_harness.rs).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::podman::Podman;
use crate::support::proxy::{Fault, Proxy, Rule};
use crate::support::registry::{Credentials, Registry};
use crate::support::token::{SERVICE, TokenServer};
use serde_json::{Value, json};

/// The first line the hello fixture prints.
const GREETING: &str = "hello from cargo-containerize";

/// hello built once into an OCI layout: every push of an unmodified copy of hello must
/// push exactly this image.
fn reference_image() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| build_fixture("hello", &[]))
}

fn reference_digest() -> String {
    sha256_digest(&skopeo_manifest_bytes(
        &reference_image().layout.reference(),
    ))
}

/// An empty `DOCKER_CONFIG`, so that no credentials of the machine leak into a test.
fn no_credentials() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| tempdir().keep())
}

/// `cargo containerize build --locked --target-dir TARGET ...` in `project`, with no
/// credentials from the environment.
fn tool_in(project: &Project, target_dir: &Path) -> Command {
    let mut cmd = tool(&project.root);
    cmd.args(["build", "--locked", "--target-dir"])
        .arg(target_dir)
        .env("DOCKER_CONFIG", no_credentials())
        .env_remove("REGISTRY_AUTH_FILE");
    cmd
}

/// A fresh copy of hello with `--push` and `args`, building in the shared target dir.
fn push_hello(args: &[&str]) -> (Project, Command) {
    let project = Project::copy("hello");
    let mut cmd = tool_in(&project, &shared_target_dir("hello"));
    cmd.arg("--push").args(args);
    (project, cmd)
}

/// The `REF@sha256:…` lines that end stdout, as (REF, digest), in order.
fn pushed_refs(run: &Run) -> Vec<(String, String)> {
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let first = lines
        .iter()
        .rposition(|l| !l.contains("@sha256:"))
        .map_or(0, |i| i + 1);
    lines[first..]
        .iter()
        .map(|l| {
            let (reference, digest) = l.split_once('@').expect("REF@digest");
            assert!(is_sha256_digest(digest), "not a digest in {l:?}: {run}");
            (reference.to_string(), digest.to_string())
        })
        .collect()
}

/// Asserts stdout ends with one `REF@<digest>` per ref of `refs`, in order, all of one
/// digest; returns that digest.
fn assert_pushed(run: &Run, refs: &[String]) -> String {
    let pushed = pushed_refs(run);
    let names: Vec<&str> = pushed.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        names, refs,
        "stdout does not end with the pushed refs: {run}"
    );
    let digest = pushed[0].1.clone();
    assert!(
        pushed.iter().all(|(_, d)| *d == digest),
        "refs of one push name different digests: {run}"
    );
    digest
}

/// `pushed` of the JSON report, split into (REF, digest).
fn json_pushed(report: &Value) -> Vec<(String, String)> {
    report["pushed"]
        .as_array()
        .unwrap_or_else(|| panic!("no `pushed` array in {report}"))
        .iter()
        .map(|p| {
            let p = p.as_str().expect("pushed entry is a string");
            let (r, d) = p.split_once('@').expect("REF@digest");
            (r.to_string(), d.to_string())
        })
        .collect()
}

fn json_u64(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no unsigned `{key}` in {report}"))
}

/// Layers of the JSON report as (what, digest, size).
fn json_layers(report: &Value) -> Vec<(String, String, u64)> {
    report["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            (
                l["what"].as_str().expect("what").to_string(),
                l["digest"].as_str().expect("digest").to_string(),
                l["size"].as_u64().expect("size"),
            )
        })
        .collect()
}

/// Neither the password nor the base64 `auth` string appears in stdout or stderr.
fn assert_no_secret(run: &Run, credentials: &Credentials) {
    for secret in [credentials.password.clone(), credentials.basic_auth()] {
        assert!(
            !run.stdout.contains(&secret) && !run.stderr.contains(&secret),
            "a secret ({secret:?}) appears in the output: {run}"
        );
    }
}

/// A `DOCKER_CONFIG` directory holding `config.json` = `config`.
fn docker_config(config: &Value) -> PathBuf {
    let dir = tempdir().keep();
    fs::write(dir.join("config.json"), config.to_string()).expect("write config.json");
    dir
}

/// `{"auths": {HOST: {"auth": base64(user:password)}}}`, docker's and podman's format.
fn auths(host: &str, credentials: &Credentials) -> Value {
    json!({ "auths": { host: { "auth": credentials.basic_auth() } } })
}

/// skopeo copy of the pushed image back to an OCI layout: every blob fetched and checked;
/// returns the layout for comparisons.
fn copy_back(registry: &Registry, name: &str) -> Layout {
    let dir = tempdir().keep().join("oci");
    registry
        .copy_to_layout(name, &dir, "copied")
        .unwrap_or_else(|e| panic!("skopeo copy of {}: {e}", registry.reference(name)));
    Layout::new(dir, "copied")
}

// ---------------------------------------------------------------------------------------
// Plain HTTP

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry, skopeo, podman"]
fn push_over_plain_http_to_loopback_is_readable_by_skopeo_and_runs_in_podman() {
    let registry = Registry::plain();
    let refs = [
        registry.reference("hello:1.0"),
        registry.reference("hello:stable"),
    ];
    let out = tempdir();
    let layout = Layout::new(out.path().join("oci"), "local");
    let (_project, mut cmd) = push_hello(&["-t", &refs[0], "-t", &refs[1]]);
    cmd.args(["--output", &layout.reference()]);
    let run = capture(&mut cmd);
    run.assert_success();
    let digest = assert_pushed(&run, &refs);

    // The pushed image is the image the tool builds: the same as its oci: output in the
    // same run, and as an earlier build of the same sources.
    assert_eq!(
        digest,
        sha256_digest(&skopeo_manifest_bytes(&layout.reference()))
    );
    assert_eq!(digest, reference_digest());

    // What the registry serves under both tags.
    assert_eq!(sha256_digest(&registry.manifest_bytes("hello:1.0")), digest);
    let summary = registry.inspect("hello:stable");
    assert_eq!(summary["Digest"], json!(digest));
    let mut tags: Vec<&str> = summary["RepoTags"]
        .as_array()
        .expect("RepoTags")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    tags.sort_unstable();
    // And the tag the referrers tag schema lists the image's provenance under (this registry
    // has no referrers API; tests/it/referrers.rs reads it).
    let schema_tag = digest.replacen(':', "-", 1);
    assert_eq!(tags, ["1.0", schema_tag.as_str(), "stable"]);
    assert_eq!(
        summary["Labels"]["org.opencontainers.image.title"],
        json!("hello")
    );
    assert_eq!(
        summary["Labels"]["org.opencontainers.image.version"],
        json!("0.3.1")
    );
    assert_eq!(
        summary["Layers"],
        json!(reference_image().layout.layer_digests())
    );

    // Every blob can be fetched and matches its digest; the copy is the same image.
    let copied = copy_back(&registry, "hello:1.0");
    assert_eq!(
        sha256_digest(&skopeo_manifest_bytes(&copied.reference())),
        digest
    );
    assert_eq!(copied.config(), reference_image().layout.config());

    // podman pulls it and runs it.
    let podman = Podman::new();
    podman
        .podman(&["pull", "--tls-verify=false", &refs[0]])
        .assert_success();
    let ran = podman.run(&refs[0], &[]);
    ran.assert_success();
    assert_eq!(ran.stdout.lines().next(), Some(GREETING), "{ran}");
    assert_eq!(stdout_value(&ran, "uid"), Some("65532"), "{ran}");
}

#[test]
#[ignore = "heavy: needs docker-registry"]
fn quiet_push_prints_nothing_on_stderr_and_the_ref_on_stdout() {
    let registry = Registry::plain();
    let reference = registry.reference("quiet/hello:1");
    let (_project, mut cmd) = push_hello(&["-q", "-t", &reference]);
    let run = capture(&mut cmd);
    run.assert_success();
    assert_eq!(run.stderr, "", "-q wrote on stderr: {run}");
    let digest = assert_pushed(&run, std::slice::from_ref(&reference));
    assert_eq!(
        sha256_digest(&registry.manifest_bytes("quiet/hello:1")),
        digest
    );
}

// ---------------------------------------------------------------------------------------
// Upload accounting

#[test]
#[ignore = "heavy: needs docker-registry, skopeo"]
fn repush_uploads_nothing_and_a_code_change_uploads_only_the_binary_layer_and_config() {
    let registry = Registry::plain();
    let project = Project::copy("hello");
    // Its own target dir: the sources change below.
    let target = tempdir();
    // The image's own blobs: referrers (and their accounting) are tests/it/referrers.rs's.
    let push = |tag: &str| {
        let mut cmd = tool_in(&project, target.path());
        cmd.args([
            "--provenance=false",
            "--sbom",
            "none",
            "--push",
            "--message-format",
            "json",
            "-t",
        ])
        .arg(registry.reference(tag));
        let run = capture(&mut cmd);
        run.assert_success();
        run.json()
    };

    // First push: every blob goes up, and the bytes are exactly the blobs' sizes.
    let first = push("hello:1");
    let digest = first["digest"].as_str().expect("digest").to_string();
    assert_eq!(
        json_pushed(&first),
        [(registry.reference("hello:1"), digest.clone())]
    );
    let manifest = registry.manifest("hello:1");
    assert_eq!(sha256_digest(&registry.manifest_bytes("hello:1")), digest);
    let layers = json_layers(&first);
    let served: Vec<&str> = manifest["layers"]
        .as_array()
        .expect("manifest layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("layer digest"))
        .collect();
    let reported: Vec<&str> = layers.iter().map(|(_, d, _)| d.as_str()).collect();
    assert_eq!(served, reported, "JSON layers vs the pushed manifest");
    let config_size = manifest["config"]["size"].as_u64().expect("config size");
    let layer_bytes: u64 = layers.iter().map(|(_, _, size)| size).sum();
    assert_eq!(json_u64(&first, "blobs_uploaded"), layers.len() as u64 + 1);
    assert_eq!(json_u64(&first, "blobs_skipped"), 0);
    assert_eq!(
        json_u64(&first, "bytes_uploaded"),
        layer_bytes + config_size
    );

    // The same image again, to another tag: nothing to upload.
    let again = push("hello:again");
    assert_eq!(again["digest"], json!(digest));
    assert_eq!(json_u64(&again, "bytes_uploaded"), 0, "{again}");
    assert_eq!(json_u64(&again, "blobs_uploaded"), 0, "{again}");
    assert_eq!(
        json_u64(&again, "blobs_skipped"),
        layers.len() as u64 + 1,
        "{again}"
    );
    assert_eq!(
        sha256_digest(&registry.manifest_bytes("hello:again")),
        digest
    );

    // A code change: a new binary layer and config; base files, certs, tzdata stay.
    let main_rs = project.root.join("src/main.rs");
    let source = fs::read_to_string(&main_rs).expect("read main.rs");
    fs::write(
        &main_rs,
        source.replace(
            "\"hello from cargo-containerize\"",
            "\"hello again from cargo-containerize\"",
        ),
    )
    .expect("write main.rs");
    let changed = push("hello:2");
    let new_digest = changed["digest"].as_str().expect("digest").to_string();
    assert_ne!(
        new_digest, digest,
        "the code change did not change the image"
    );
    let new_layers = json_layers(&changed);
    assert_eq!(new_layers.len(), layers.len());
    let mut new_bytes = 0;
    for (old, new) in layers.iter().zip(&new_layers) {
        assert_eq!(old.0, new.0, "layer order changed");
        if new.0 == "binary" {
            assert_ne!(old.1, new.1, "binary layer unchanged");
            new_bytes += new.2;
        } else {
            assert_eq!(old.1, new.1, "{} layer changed with the code", new.0);
        }
    }
    assert!(new_bytes > 0, "no binary layer in {changed}");
    let new_config_size = registry.manifest("hello:2")["config"]["size"]
        .as_u64()
        .expect("config size");
    assert_eq!(json_u64(&changed, "blobs_uploaded"), 2, "{changed}");
    assert_eq!(
        json_u64(&changed, "blobs_skipped"),
        layers.len() as u64 - 1,
        "{changed}"
    );
    assert_eq!(
        json_u64(&changed, "bytes_uploaded"),
        new_bytes + new_config_size,
        "{changed}"
    );
    assert_eq!(
        sha256_digest(&registry.manifest_bytes("hello:2")),
        new_digest
    );
    copy_back(&registry, "hello:2");
}

// ---------------------------------------------------------------------------------------
// Faults

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry, skopeo"]
fn push_survives_dropped_uploads_408_500_and_429_with_retry_after() {
    let registry = Registry::plain();
    let proxy = Proxy::start(
        registry.addr(),
        vec![
            Rule::new("HEAD", "/blobs/sha256:").then(Fault::status(408)),
            Rule::new("POST", "/blobs/uploads/").then(Fault::status(500)),
            Rule::new("PUT|PATCH", "/blobs/uploads/")
                .with_body()
                .then(Fault::DropMidBody),
            Rule::new("PUT", "/manifests/")
                .then(Fault::status(500))
                .then(Fault::too_many_requests(1)),
        ],
    );
    let reference = format!("{}/hello:faults", proxy.host());
    let (_project, mut cmd) = push_hello(&["-t", &reference]);
    let run = capture(&mut cmd);
    run.assert_success();
    let digest = assert_pushed(&run, std::slice::from_ref(&reference));
    assert_eq!(digest, reference_digest());
    assert!(
        proxy.unfired().is_empty(),
        "faults that never fired: {:?}",
        proxy.unfired()
    );

    // Retry-After: 1 was honoured before the manifest was sent again.
    let exchanges = proxy.exchanges();
    let manifest_puts: Vec<_> = exchanges
        .iter()
        .filter(|e| e.method == "PUT" && e.target.contains("/manifests/"))
        .collect();
    let throttled = manifest_puts
        .iter()
        .position(|e| e.status == Some(429))
        .expect("the 429 on the manifest");
    // The same manifest's next try (the referrers' manifests go in beside the image's).
    let next = manifest_puts[throttled + 1..]
        .iter()
        .find(|e| e.target == manifest_puts[throttled].target)
        .unwrap_or_else(|| panic!("no manifest PUT after the 429: {manifest_puts:?}"));
    let waited = next.started - manifest_puts[throttled].finished;
    assert!(
        waited >= Duration::from_millis(900),
        "the manifest was sent again {waited:?} after a 429 with Retry-After: 1"
    );
    assert!(
        manifest_puts.last().is_some_and(|e| e.status == Some(201)),
        "{manifest_puts:?}"
    );

    // The image's manifest went out only after every blob it references was uploaded (the
    // referrers' blobs and manifests go in beside it, on their own schedule).
    let manifest = registry.manifest("hello:faults");
    let referenced: Vec<String> = std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().expect("layers"))
        .map(|d| d["digest"].as_str().expect("digest").replace("sha256:", ""))
        .collect();
    let last_blob = exchanges
        .iter()
        .filter(|e| e.target.contains("/blobs/uploads/") && e.status == Some(201))
        .filter(|e| referenced.iter().any(|hex| e.target.contains(hex.as_str())))
        .map(|e| e.finished)
        .max()
        .expect("completed blob uploads");
    let image_put = manifest_puts
        .iter()
        .find(|e| e.target.ends_with("/manifests/faults"))
        .unwrap_or_else(|| panic!("no PUT of the tag: {manifest_puts:?}"));
    assert!(
        image_put.started >= last_blob,
        "the image's manifest PUT started before the last of its blobs was uploaded"
    );

    // The registry holds the whole image, every blob intact.
    assert_eq!(
        sha256_digest(&registry.manifest_bytes("hello:faults")),
        digest
    );
    let copied = copy_back(&registry, "hello:faults");
    assert_eq!(
        copied.layer_digests(),
        reference_image().layout.layer_digests()
    );
}

#[test]
#[ignore = "heavy: needs docker-registry, skopeo"]
fn push_gives_up_after_the_retries_with_a_one_line_error() {
    let registry = Registry::plain();
    let mut rule = Rule::new("PUT", "/manifests/give-up");
    for _ in 0..3 {
        rule = rule.then(Fault::status(503));
    }
    let proxy = Proxy::start(registry.addr(), vec![rule]);
    let reference = format!("{}/hello:give-up", proxy.host());
    let (_project, mut cmd) = push_hello(&["--retries", "2", "-t", &reference]);
    let run = capture(&mut cmd);
    assert_one_line_error(&run, &[&proxy.host(), "503", "--retries"]);
    assert!(proxy.unfired().is_empty(), "fewer than 3 tries: {run}");
    let puts = proxy
        .exchanges()
        .iter()
        .filter(|e| e.method == "PUT" && e.target.contains("/manifests/give-up"))
        .count();
    assert_eq!(puts, 3, "--retries 2 means 3 tries: {run}");
    assert!(registry.skopeo_inspect("hello:give-up", true).is_err());
}

/// hello for musl with 8 MiB of incompressible bytes appended: still a static ELF for the
/// host, with a binary layer big enough to kill the tool while it uploads.
fn big_binary() -> &'static Path {
    static BIG: OnceLock<PathBuf> = OnceLock::new();
    BIG.get_or_init(|| {
        let mut bytes = fs::read(cargo_build_musl("hello", "hello")).expect("read hello");
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..(8 << 20) / 8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        let path = tempdir().keep().join("big-hello");
        fs::write(&path, bytes).expect("write big binary");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    })
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry, skopeo"]
fn push_killed_mid_upload_never_leaves_a_tag_with_missing_blobs() {
    let registry = Registry::plain();
    // Holds any request body past 1 MiB: only the big binary layer gets there.
    let proxy = Proxy::stalling(registry.addr(), 1 << 20);
    let reference = format!("{}/big:1", proxy.host());
    let project = Project::copy("hello");
    let logs = tempdir();
    let mut cmd = tool_in(&project, &shared_target_dir("hello"));
    cmd.arg("--binary")
        .arg(big_binary())
        .args(["--push", "-t", &reference])
        .stdin(Stdio::null())
        .stdout(fs::File::create(logs.path().join("stdout")).expect("stdout file"))
        .stderr(fs::File::create(logs.path().join("stderr")).expect("stderr file"));
    let mut child = cmd.spawn().expect("spawn the tool");
    let stalled = proxy.wait_stalled(Duration::from_secs(240));
    let _ = child.kill(); // SIGKILL
    let status = child.wait().expect("wait");
    proxy.release();
    let output = || {
        format!(
            "status {status}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            fs::read_to_string(logs.path().join("stdout")).unwrap_or_default(),
            fs::read_to_string(logs.path().join("stderr")).unwrap_or_default()
        )
    };
    assert!(
        stalled,
        "the push never reached the big upload: {}",
        output()
    );
    assert!(!status.success(), "the tool finished before the kill");

    // The tag either does not exist, or names an image whose every blob is there.
    match registry.skopeo_inspect("big:1", true) {
        Err(stderr) => assert!(
            stderr.contains("manifest unknown") || stderr.contains("not found"),
            "inspect failed for another reason than a missing tag: {stderr}"
        ),
        Ok(_) => {
            copy_back(&registry, "big:1");
        }
    }

    // Pushing again (straight to the registry) completes and reuses what is there.
    let mut cmd = tool_in(&project, &shared_target_dir("hello"));
    cmd.arg("--binary")
        .arg(big_binary())
        .args([
            "--provenance=false",
            "--sbom",
            "none",
            "--push",
            "--message-format",
            "json",
            "-t",
        ])
        .arg(registry.reference("big:1"));
    let run = capture(&mut cmd);
    run.assert_success();
    let report = run.json();
    let blobs = json_layers(&report).len() as u64 + 1;
    assert_eq!(
        json_u64(&report, "blobs_uploaded") + json_u64(&report, "blobs_skipped"),
        blobs,
        "{report}"
    );
    assert_eq!(
        sha256_digest(&registry.manifest_bytes("big:1")),
        report["digest"].as_str().expect("digest")
    );
    copy_back(&registry, "big:1");
}

// ---------------------------------------------------------------------------------------
// Cross-repository mounts

#[test]
#[ignore = "heavy: needs docker-registry, skopeo"]
fn one_push_to_two_repositories_sends_each_blob_once() {
    let registry = Registry::plain();
    let refs = [
        registry.reference("one/hello:1"),
        registry.reference("two/hello:1"),
    ];
    let (_project, mut cmd) =
        push_hello(&["--message-format", "json", "-t", &refs[0], "-t", &refs[1]]);
    let run = capture(&mut cmd);
    run.assert_success();
    let report = run.json();
    let digest = report["digest"].as_str().expect("digest").to_string();
    assert_eq!(
        json_pushed(&report),
        [
            (refs[0].clone(), digest.clone()),
            (refs[1].clone(), digest.clone())
        ]
    );
    let config_size = registry.manifest("one/hello:1")["config"]["size"]
        .as_u64()
        .expect("config size");
    let layer_bytes: u64 = json_layers(&report).iter().map(|(_, _, size)| size).sum();
    // The referrers' blobs (the provenance statement, the empty config), each once too.
    let mut referrer_blobs = std::collections::BTreeMap::new();
    for r in report["referrers"].as_array().expect("referrers") {
        let m = registry.manifest(&format!(
            "one/hello@{}",
            r["digest"].as_str().expect("referrer digest")
        ));
        for d in m["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .chain([&m["config"]])
        {
            referrer_blobs.insert(
                d["digest"].as_str().expect("digest").to_string(),
                d["size"].as_u64().expect("size"),
            );
        }
    }
    assert!(!referrer_blobs.is_empty(), "{report}");
    assert_eq!(
        json_u64(&report, "bytes_uploaded"),
        layer_bytes + config_size + referrer_blobs.values().sum::<u64>(),
        "the blobs were sent more than once: {report}"
    );
    for name in ["one/hello:1", "two/hello:1"] {
        assert_eq!(sha256_digest(&registry.manifest_bytes(name)), digest);
        copy_back(&registry, name);
    }
}

#[test]
#[ignore = "heavy: needs docker-registry, skopeo"]
fn a_mount_answered_202_is_followed_by_a_normal_upload() {
    let registry = Registry::plain();
    // The first cross-repository mount reaches the registry as a plain upload start: it
    // answers 202 with an upload location, as a registry that cannot mount does.
    let proxy = Proxy::start(
        registry.addr(),
        vec![Rule::new("POST", "mount=").then(Fault::StripQuery)],
    );
    let refs = [
        format!("{}/one/hello:1", proxy.host()),
        format!("{}/two/hello:1", proxy.host()),
    ];
    let (_project, mut cmd) = push_hello(&["-t", &refs[0], "-t", &refs[1]]);
    let run = capture(&mut cmd);
    run.assert_success();
    let digest = assert_pushed(&run, &refs);
    assert!(
        proxy.unfired().is_empty(),
        "the tool never tried a cross-repository mount: {run}"
    );
    let exchanges = proxy.exchanges();
    let refused = exchanges
        .iter()
        .position(|e| e.fault.is_some())
        .expect("the rewritten mount");
    assert_eq!(exchanges[refused].status, Some(202));
    assert!(
        exchanges[refused..].iter().any(|e| {
            (e.method == "PUT" || e.method == "PATCH")
                && e.target.starts_with("/v2/two/hello/blobs/uploads/")
                && e.body_bytes > 0
        }),
        "no upload followed the 202: {exchanges:?}"
    );
    for name in ["one/hello:1", "two/hello:1"] {
        assert_eq!(sha256_digest(&registry.manifest_bytes(name)), digest);
        copy_back(&registry, name);
    }
}

// ---------------------------------------------------------------------------------------
// Tags from the metadata

#[test]
#[ignore = "heavy: needs docker-registry"]
fn metadata_repository_and_tags_push_every_tag_to_one_digest() {
    let registry = Registry::plain();
    let project = Project::copy("hello");
    project.append_manifest(&format!(
        "[package.metadata.containerize]\nrepository = \"{}\"\n\
         tags = [\"{{version}}\", \"latest\", \"{{git_short_sha}}\"]\n",
        registry.reference("app")
    ));
    let head = commit_all(&project.root);

    let mut cmd = tool_in(&project, &shared_target_dir("hello"));
    cmd.args(["--push", "--message-format", "json"]);
    let run = capture(&mut cmd);
    run.assert_success();
    let report = run.json();
    let digest = report["digest"].as_str().expect("digest").to_string();
    let pushed = json_pushed(&report);
    let refs: Vec<&str> = pushed.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(refs.len(), 3, "{report}");
    assert_eq!(refs[0], registry.reference("app:0.3.1"));
    assert_eq!(refs[1], registry.reference("app:latest"));
    let sha_tag = refs[2]
        .strip_prefix(&registry.reference("app:"))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        sha_tag.len() >= 7 && head.starts_with(sha_tag),
        "{{git_short_sha}} became {sha_tag:?}, HEAD is {head}"
    );
    for (reference, pushed_digest) in &pushed {
        assert_eq!(*pushed_digest, digest, "{reference}");
    }
    for tag in ["0.3.1", "latest", sha_tag] {
        let name = format!("app:{tag}");
        assert_eq!(
            sha256_digest(&registry.manifest_bytes(&name)),
            digest,
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// TLS and credentials

const USER: &str = "cct-pusher";
const PASSWORD: &str = "s3cret-Pa55w0rd-not-in-output";

fn secure_registry() -> Registry {
    Registry::secure(Credentials::new(USER, PASSWORD))
}

fn ca_arg(registry: &Registry) -> String {
    registry.ca_file().display().to_string()
}

/// Asserts a push with TLS and auth landed: the digest, read with skopeo (CA + creds).
fn assert_pushed_securely(registry: &Registry, run: &Run, name: &str) {
    run.assert_success();
    let digest = assert_pushed(run, &[registry.reference(name)]);
    assert_eq!(digest, reference_digest());
    assert_eq!(sha256_digest(&registry.manifest_bytes(name)), digest);
    assert_no_secret(run, registry.credentials().expect("credentials"));
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry, skopeo"]
fn tls_push_with_docker_config_auth_and_registry_ca() {
    let registry = secure_registry();
    let config = docker_config(&auths(
        &registry.host(),
        registry.credentials().expect("credentials"),
    ));
    let reference = registry.reference("hello:1");
    let ca = ca_arg(&registry);
    let (_project, mut cmd) = push_hello(&["--registry-ca", &ca, "-t", &reference]);
    cmd.env("DOCKER_CONFIG", &config);
    let run = capture(&mut cmd);
    assert_pushed_securely(&registry, &run, "hello:1");
    copy_back(&registry, "hello:1");
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry, skopeo"]
fn tls_push_with_username_and_password_stdin() {
    let registry = secure_registry();
    let reference = registry.reference("hello:stdin");
    let ca = ca_arg(&registry);
    let (_project, mut cmd) = push_hello(&[
        "--registry-ca",
        &ca,
        "--username",
        USER,
        "--password-stdin",
        "-t",
        &reference,
    ]);
    let run = capture_with_stdin(&mut cmd, &format!("{PASSWORD}\n"));
    assert_pushed_securely(&registry, &run, "hello:stdin");
}

/// `-v` shows the cargo command line the build runs and each registry request (method and
/// URL), and still no credential.
#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry, skopeo"]
fn verbose_push_shows_the_cargo_command_and_registry_requests_but_no_credential() {
    let registry = secure_registry();
    let reference = registry.reference("hello:verbose");
    let ca = ca_arg(&registry);
    let (_project, mut cmd) = push_hello(&[
        "-v",
        "--registry-ca",
        &ca,
        "--username",
        USER,
        "--password-stdin",
        "-t",
        &reference,
    ]);
    let run = capture_with_stdin(&mut cmd, &format!("{PASSWORD}\n"));
    assert_pushed_securely(&registry, &run, "hello:verbose");
    assert_no_secret(&run, registry.credentials().expect("credentials"));
    let lines: Vec<&str> = run.stderr.lines().map(str::trim_start).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("Running `")
            && l.contains("cargo")
            && l.contains("build")
            && l.contains("-unknown-linux-musl")),
        "no cargo command line: {run}"
    );
    let manifest = format!("PUT https://{}/v2/hello/manifests/verbose", registry.host());
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Request") && l.ends_with(&manifest)),
        "no `Request {manifest}` line: {run}"
    );
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry, skopeo, podman"]
fn tls_push_with_podman_registry_auth_file() {
    let registry = secure_registry();
    let auth_file = tempdir().keep().join("auth.json");
    fs::write(
        &auth_file,
        auths(
            &registry.host(),
            registry.credentials().expect("credentials"),
        )
        .to_string(),
    )
    .expect("write auth.json");
    let reference = registry.reference("hello:podman-auth");
    let ca = ca_arg(&registry);
    let (_project, mut cmd) = push_hello(&["--registry-ca", &ca, "-t", &reference]);
    cmd.env("REGISTRY_AUTH_FILE", &auth_file);
    let run = capture(&mut cmd);
    assert_pushed_securely(&registry, &run, "hello:podman-auth");
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry, skopeo"]
fn tls_push_with_a_docker_credential_helper() {
    let registry = secure_registry();
    let bin = tempdir().keep();
    let helper = bin.join("docker-credential-cct-test");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\n# docker credential helper protocol: `get` reads the server on stdin.\n\
             read -r server\n\
             [ \"$1\" = get ] || exit 1\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}\\n' \"$server\"\n"
        ),
    )
    .expect("write helper");
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).expect("chmod helper");
    let config = docker_config(&json!({ "credHelpers": { registry.host(): "cct-test" } }));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let reference = registry.reference("hello:helper");
    let ca = ca_arg(&registry);
    let (_project, mut cmd) = push_hello(&["--registry-ca", &ca, "-t", &reference]);
    cmd.env("DOCKER_CONFIG", &config).env("PATH", path);
    let run = capture(&mut cmd);
    assert_pushed_securely(&registry, &run, "hello:helper");
}

#[test]
#[ignore = "heavy: needs docker-registry, skopeo"]
fn tls_wrong_or_missing_credentials_fail_at_once_with_a_login_remedy() {
    let registry = secure_registry();
    let wrong = Credentials::new(USER, "wrong-Pa55w0rd-also-secret");
    let config = docker_config(&auths(&registry.host(), &wrong));
    let reference = registry.reference("hello:denied");
    let ca = ca_arg(&registry);

    let (_project, mut cmd) = push_hello(&["--registry-ca", &ca, "-t", &reference]);
    cmd.env("DOCKER_CONFIG", &config);
    let run = capture(&mut cmd);
    assert_one_line_error(&run, &[&registry.host(), "hello", "login"]);
    let line = error_line(&run).to_lowercase();
    assert!(
        line.contains("401") || line.contains("unauthorized"),
        "the error does not say the registry refused the credentials: {run}"
    );
    assert_no_secret(&run, &wrong);
    assert_no_secret(&run, registry.credentials().expect("credentials"));
    // 401 is not retried: no request was refused more than once with credentials (the
    // first refusal of a URL can be the challenge to an anonymous request).
    let refused: Vec<_> = registry
        .requests()
        .into_iter()
        .filter(|r| r.status == 401)
        .collect();
    assert!(
        !refused.is_empty(),
        "the registry log shows no 401 at all:\n{}",
        registry.log()
    );
    for r in &refused {
        let times = refused.iter().filter(|o| *o == r).count();
        assert!(times <= 2, "{} {} refused {times} times", r.method, r.uri);
    }

    // No credentials at all.
    let (_project, mut cmd) = push_hello(&["--registry-ca", &ca, "-t", &reference]);
    let run = capture(&mut cmd);
    assert_one_line_error(&run, &[&registry.host(), "hello", "login"]);
    assert!(registry.skopeo_inspect("hello:denied", true).is_err());
}

#[test]
#[ignore = "heavy: builds OpenSSL; needs docker-registry, skopeo"]
fn tls_push_without_registry_ca_fails_fast_with_a_certificate_error() {
    let registry = secure_registry();
    let config = docker_config(&auths(
        &registry.host(),
        registry.credentials().expect("credentials"),
    ));
    let reference = registry.reference("hello:untrusted");
    // Build first, so that the time measured below is the push's alone.
    reference_image();
    let (_project, mut cmd) = push_hello(&["-t", &reference]);
    cmd.env("DOCKER_CONFIG", &config);
    let started = Instant::now();
    let run = capture(&mut cmd);
    let took = started.elapsed();
    // Names the registry, says it is about TLS, and points at the flag that fixes it.
    assert_one_line_error(&run, &[&registry.host(), "--registry-ca"]);
    let line = error_line(&run).to_lowercase();
    assert!(
        line.contains("certificate") || line.contains("tls"),
        "not a TLS error: {run}"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}: {run}");
    assert_no_secret(&run, registry.credentials().expect("credentials"));
    assert!(registry.skopeo_inspect("hello:untrusted", true).is_err());
}

#[test]
#[ignore = "heavy: needs docker-registry, skopeo"]
fn insecure_registry_flag_does_not_turn_off_tls_verification() {
    let registry = secure_registry();
    let config = docker_config(&auths(
        &registry.host(),
        registry.credentials().expect("credentials"),
    ));
    let reference = registry.reference("hello:insecure");
    let (_project, mut cmd) =
        push_hello(&["--insecure-registry", &registry.host(), "-t", &reference]);
    cmd.env("DOCKER_CONFIG", &config);
    let run = capture(&mut cmd);
    assert_one_line_error(&run, &[&registry.host()]);
    assert_no_secret(&run, registry.credentials().expect("credentials"));
    assert!(
        registry.skopeo_inspect("hello:insecure", true).is_err(),
        "pushed to an untrusted TLS registry: {run}"
    );
}

// ---------------------------------------------------------------------------------------
// Bearer tokens

/// True for `repository:<name>:<actions>` with exactly pull and push, in any order.
fn is_push_scope(scope: &str, name: &str) -> bool {
    scope
        .strip_prefix(&format!("repository:{name}:"))
        .is_some_and(|actions| {
            let mut actions: Vec<&str> = actions.split(',').collect();
            actions.sort_unstable();
            actions == ["pull", "push"]
        })
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry, skopeo"]
fn bearer_token_flow_pushes_with_a_pull_push_scope_and_never_prints_the_token() {
    let credentials = Credentials::new(USER, PASSWORD);
    let tokens = TokenServer::start(credentials.clone());
    let registry = Registry::with_token(tokens.registry_auth(), credentials.clone());
    let config = docker_config(&auths(&registry.host(), &credentials));
    let reference = registry.reference("team/hello:1");
    let (_project, mut cmd) = push_hello(&["-t", &reference]);
    cmd.env("DOCKER_CONFIG", &config);
    let run = capture(&mut cmd);
    run.assert_success();
    let digest = assert_pushed(&run, std::slice::from_ref(&reference));
    assert_eq!(digest, reference_digest());
    assert_eq!(
        sha256_digest(&registry.manifest_bytes("team/hello:1")),
        digest
    );
    let requests = tokens.requests();
    assert!(
        requests.iter().any(|r| r.authenticated
            && r.service.as_deref() == Some(SERVICE)
            && r.scopes.iter().any(|s| is_push_scope(s, "team/hello"))),
        "no token asked for repository:team/hello:pull,push with the credentials: {requests:?}"
    );
    assert_no_secret(&run, &credentials);
    let issued = tokens.tokens();
    assert!(!issued.is_empty());
    for token in issued {
        assert!(
            !run.stdout.contains(&token) && !run.stderr.contains(&token),
            "a token appears in the output: {run}"
        );
    }
}

#[test]
#[ignore = "heavy: needs docker-registry, skopeo"]
fn bearer_token_refused_for_a_wrong_password_is_a_login_error() {
    let credentials = Credentials::new(USER, PASSWORD);
    let tokens = TokenServer::start(credentials.clone());
    let registry = Registry::with_token(tokens.registry_auth(), credentials);
    let wrong = Credentials::new(USER, "wrong-token-Pa55w0rd");
    let reference = registry.reference("team/hello:denied");
    let (_project, mut cmd) =
        push_hello(&["--username", USER, "--password-stdin", "-t", &reference]);
    let run = capture_with_stdin(&mut cmd, &format!("{}\n", wrong.password));
    assert_one_line_error(&run, &[&registry.host(), "team/hello", "login"]);
    assert_no_secret(&run, &wrong);
    assert!(
        tokens
            .requests()
            .iter()
            .any(|r| r.user.as_deref() == Some(USER) && !r.authenticated),
        "the token server never saw the credentials"
    );
    assert!(registry.skopeo_inspect("team/hello:denied", true).is_err());
}

// ---------------------------------------------------------------------------------------
// --load

/// PATH with no `docker` on it and everything else still there: a directory holding
/// `docker` is replaced by a directory of symlinks to all its other entries.
fn path_without_docker() -> String {
    let shim = tempdir().keep();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if !dir.join("docker").exists() {
            dirs.push(dir);
            continue;
        }
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let link = shim.join(entry.file_name());
            if entry.file_name() != "docker" && fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(entry.path(), &link).expect("symlink");
            }
        }
        if !dirs.contains(&shim) {
            dirs.push(shim.clone());
        }
    }
    let path = std::env::join_paths(&dirs).expect("join PATH");
    path.into_string().expect("utf-8 PATH")
}

#[test]
#[ignore = "heavy: needs podman"]
fn load_podman_then_podman_run_prints_the_greeting() {
    let podman = Podman::new();
    let project = Project::copy("hello");
    let mut cmd = tool_in(&project, &shared_target_dir("hello"));
    podman
        .apply(&mut cmd)
        .args(["--load", "podman", "-t", "cct.test/hello:loaded"]);
    let run = capture(&mut cmd);
    run.assert_success();
    let names = podman.image_names();
    assert!(
        names.iter().any(|n| n == "cct.test/hello:loaded"),
        "loaded as {names:?}: {run}"
    );
    let ran = podman.run("cct.test/hello:loaded", &[]);
    ran.assert_success();
    assert_eq!(ran.stdout.lines().next(), Some(GREETING), "{ran}");
}

#[test]
#[ignore = "heavy: needs podman, docker"]
fn load_without_an_engine_name_uses_podman_when_docker_is_absent_and_names_it_bin_version() {
    let podman = Podman::new();
    let project = Project::copy("hello");
    let mut cmd = tool_in(&project, &shared_target_dir("hello"));
    podman
        .apply(&mut cmd)
        .env("PATH", path_without_docker())
        .arg("--load");
    let run = capture(&mut cmd);
    run.assert_success();
    let names = podman.image_names();
    assert!(
        names.iter().any(|n| n == "localhost/hello:0.3.1"),
        "loaded as {names:?}: {run}"
    );
    let ran = podman.run("localhost/hello:0.3.1", &[]);
    ran.assert_success();
    assert_eq!(ran.stdout.lines().next(), Some(GREETING), "{ran}");
}

#[test]
#[ignore = "heavy: needs docker"]
fn load_docker_without_docker_is_a_clear_error() {
    let project = Project::copy("hello");
    let mut cmd = tool_in(&project, &shared_target_dir("hello"));
    cmd.env("PATH", path_without_docker())
        .args(["--load", "docker"]);
    let run = capture(&mut cmd);
    assert_one_line_error(&run, &["docker"]);
    let line = error_line(&run);
    assert!(
        line.contains("not found") || line.contains("missing") || line.contains("install"),
        "the error does not say docker is missing: {run}"
    );
}

#[test]
#[ignore = "heavy: needs podman"]
fn load_into_a_failing_podman_is_a_clear_error() {
    let podman = Podman::new();
    let broken = tempdir().keep().join("storage.conf");
    fs::write(
        &broken,
        "[storage]\ndriver = \"no-such-driver\"\ngraphroot = \"/nonexistent/cct\"\nrunroot = \"/nonexistent/cct-run\"\n",
    )
    .expect("write storage.conf");
    let project = Project::copy("hello");
    let mut cmd = tool_in(&project, &shared_target_dir("hello"));
    podman
        .apply(&mut cmd)
        .env("CONTAINERS_STORAGE_CONF", &broken)
        .args(["--load", "podman"]);
    let run = capture(&mut cmd);
    assert_one_line_error(&run, &["podman", "load"]);
}

#[test]
#[ignore = "heavy: needs docker-registry"]
fn credentials_never_follow_an_upload_location_to_another_origin() {
    // Proxy A fronts the registry and rewrites the Host of the first upload start, so the
    // registry itself answers with a Location on proxy B: another origin.
    let registry = Registry::start(crate::support::registry::Options {
        tls: false,
        auth: Some(Credentials::new(USER, PASSWORD)),
        token: None,
    });
    let other = Proxy::start(registry.addr(), vec![]);
    let front = Proxy::start(
        registry.addr(),
        vec![Rule::new("POST", "/blobs/uploads/").then(Fault::SetHost(other.host()))],
    );
    let reference = format!("{}/hello:elsewhere", front.host());
    let (_project, mut cmd) = push_hello(&[
        "--username",
        USER,
        "--password-stdin",
        "--retries",
        "0",
        "-t",
        &reference,
    ]);
    let run = capture_with_stdin(&mut cmd, &format!("{PASSWORD}\n"));
    let seen = other.exchanges();
    assert!(
        !seen.is_empty(),
        "the upload never reached the other origin: {run}"
    );
    assert!(
        seen.iter().all(|e| !e.authorized),
        "credentials were sent to the other origin: {seen:?}"
    );
    assert_one_line_error(&run, &["401"]);
    assert!(!run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD));
}

/// A registry with Basic auth behind proxy `front`; `other` is a second server on another
/// loopback port (another origin) that records every request it gets.
fn registry_and_another_origin() -> (Registry, Proxy, Proxy) {
    let registry = Registry::start(crate::support::registry::Options {
        tls: false,
        auth: Some(Credentials::new(USER, PASSWORD)),
        token: None,
    });
    let other = Proxy::start(registry.addr(), vec![]);
    let front = Proxy::start(registry.addr(), vec![]);
    (registry, front, other)
}

/// `other` answers requests whose path holds `path` with 401 and a Bearer challenge whose
/// token realm is on `other` itself.
fn ask_for_credentials(other: &Proxy, method: &str, path: &str) {
    let challenge = format!(
        r#"Bearer realm="http://{}/token",service="storage""#,
        other.host()
    );
    let mut rule = Rule::new(method, path);
    for _ in 0..5 {
        rule = rule.then(Fault::Respond {
            status: 401,
            headers: vec![("WWW-Authenticate".into(), challenge.clone())],
        });
    }
    other.add_rule(rule);
}

/// Pushes hello through `front` with the test's user and password; the run and what `other`
/// saw, after asserting that no request to `other` carried credentials or asked its realm.
fn push_past_another_origin(front: &Proxy, other: &Proxy, tag: &str) -> Run {
    let reference = format!("{}/hello:{tag}", front.host());
    let (_project, mut cmd) = push_hello(&[
        "--username",
        USER,
        "--password-stdin",
        "--retries",
        "0",
        "--sbom",
        "none",
        "--provenance=false",
        "-t",
        &reference,
    ]);
    let run = capture_with_stdin(&mut cmd, &format!("{PASSWORD}\n"));
    let seen = other.exchanges();
    assert!(
        seen.iter().any(|e| e.status == Some(401)),
        "the other origin was never asked: {seen:?}\n{run}"
    );
    assert!(
        seen.iter().all(|e| !e.authorized),
        "credentials were sent to the other origin: {seen:?}\n{run}"
    );
    assert!(
        seen.iter().all(|e| !e.target.contains("/token")),
        "the other origin's token realm was asked (with the user's password): {seen:?}\n{run}"
    );
    assert!(!run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD));
    run
}

/// The registry sends the upload to another origin (its `Location`), which answers the PUT
/// with 401 and a token realm of its own: its challenge is not answered (the user's password
/// would go to that realm), and the error names that origin, not the registry.
#[test]
#[ignore = "heavy: needs docker-registry"]
fn a_401_from_the_upload_host_is_not_answered_and_the_error_names_that_host() {
    let (_registry, front, other) = registry_and_another_origin();
    front.add_rule(Rule::new("POST", "/blobs/uploads/").then(Fault::SetHost(other.host())));
    ask_for_credentials(&other, "PUT", "/blobs/uploads/");
    let run = push_past_another_origin(&front, &other, "upload-elsewhere");
    assert_one_line_error(&run, &[&other.host(), "401", "none were sent"]);
    let line = error_line(&run);
    assert!(
        !line.contains(&format!("registry {} refused", front.host())),
        "the registry is blamed for the other host's answer: {line}"
    );
}

/// A 307 from the registry to another origin: reqwest follows it without the Authorization
/// header, and when the other origin asks for credentials, its challenge is not answered.
#[test]
#[ignore = "heavy: needs docker-registry"]
fn a_redirect_to_another_origin_gets_no_credentials_and_its_401_is_not_answered() {
    let (_registry, front, other) = registry_and_another_origin();
    front.add_rule(Rule::new("HEAD", "/blobs/sha256:").then(Fault::Respond {
        status: 307,
        headers: vec![(
            "Location".into(),
            format!("http://{}/v2/hello/blobs/moved", other.host()),
        )],
    }));
    ask_for_credentials(&other, "HEAD", "/blobs/moved");
    let run = push_past_another_origin(&front, &other, "redirected");
    assert!(
        other
            .exchanges()
            .iter()
            .any(|e| e.method == "HEAD" && e.target.contains("/blobs/moved")),
        "the redirect was not followed: {run}"
    );
    assert_one_line_error(&run, &[&other.host(), "401", "none were sent"]);
}
