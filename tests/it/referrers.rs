//! Issue 12: provenance attached to the image as OCI 1.1 referrers, found by clients no one
//! here wrote. The oras Python SDK reads (and validates) the `oci:` layout and the unpacked
//! `oci-archive:`, and reads the loopback docker-registry 2.8, which has no referrers API,
//! through the `sha256-<hex>` tag schema; skopeo reads that tag's index; the in-toto
//! attestation bindings parse every statement and its SLSA provenance v1 predicate strictly
//! (tests/it/support/oci_referrers.py drives both). The registry's own access log shows the
//! order of the PUTs.
//!
//! Needs scripts/setup-template-tools (oras and in-toto-attestation in
//! `$CONTAINERIZE_TOOLS_VENV`, default `$HOME/.cache/cargo-containerize/venv`) and
//! scripts/setup-test-env (skopeo, docker-registry, the aarch64 musl target).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::*;
use crate::support::proxy::{Fault, Proxy, Rule};
use crate::support::registry::Registry;
use serde_json::Value;

const IN_TOTO: &str = "application/vnd.in-toto+json";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const FOREIGN: &str = "application/vnd.example.signature";

/// The virtualenv's python, which has oras and in-toto-attestation.
fn python() -> PathBuf {
    let venv = std::env::var_os("CONTAINERIZE_TOOLS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME");
            Path::new(&home).join(".cache/cargo-containerize/venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "{} is missing; run scripts/setup-template-tools (it installs oras and in-toto-attestation)",
        python.display()
    );
    python
}

/// tests/it/support/oci_referrers.py ARGS: its JSON answer.
fn oci_referrers(args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/oci_referrers.py");
    let run = capture(Command::new(python()).arg(script).args(args));
    assert!(run.status.success(), "oci_referrers.py {args:?}: {run}");
    serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("oci_referrers.py {args:?} printed no JSON ({e}): {run}"))
}

fn referrers(answer: &Value) -> Vec<Value> {
    answer["referrers"]
        .as_array()
        .unwrap_or_else(|| panic!("no referrers array in {answer}"))
        .clone()
}

/// hello built once into `oci:<out>/image:test` and `oci-archive:<out>/image.tar:test`, with
/// `--message-format json`.
fn hello() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let project = Project::copy("hello");
        let out = tempdir();
        let layout = Layout::new(out.path().join("image"), "test");
        let archive = format!(
            "oci-archive:{}:test",
            out.path().join("image.tar").display()
        );
        let mut cmd = tool(&project.root);
        cmd.args([
            "build",
            "--sbom",
            "none",
            "--layout-referrers",
            "--locked",
            "--message-format",
            "json",
            "--target-dir",
        ])
        .arg(shared_target_dir("hello"))
        .args(["--output", &layout.reference(), "--output", &archive]);
        let run = capture(&mut cmd);
        run.assert_success();
        Built::new(project, out, layout, run)
    })
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"))
}

/// The image digest's hex, as in-toto subjects give it.
fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").expect("a sha256 digest")
}

/// Checks one referrer as oci_referrers.py read it: a provenance statement about `subject`
/// (a platform manifest) for `platform`, valid, naming this tool and a cargo command without
/// local paths.
fn assert_provenance_of(r: &Value, subject: &str, platform: &str) {
    assert_eq!(r["artifactType"], IN_TOTO, "{r}");
    assert_eq!(r["manifestArtifactType"], IN_TOTO, "{r}");
    assert_eq!(r["layerMediaType"], IN_TOTO, "{r}");
    assert_eq!(r["subject"], subject, "{r}");
    let st = &r["statement"];
    assert_eq!(st["type"], "https://in-toto.io/Statement/v1", "{r}");
    assert_eq!(st["predicateType"], "https://slsa.dev/provenance/v1", "{r}");
    assert_eq!(
        st["subjects"],
        serde_json::json!([{ "sha256": hex(subject) }]),
        "{r}"
    );
    assert_eq!(st["platform"], platform, "{r}");
    assert!(
        str_of(&st["builderId"], "builderId").contains("cargo-containerize"),
        "{r}"
    );
    let cargo: Vec<&str> = st["cargo"]
        .as_array()
        .unwrap_or_else(|| panic!("no cargo command in {r}"))
        .iter()
        .map(|a| str_of(a, "cargo argument"))
        .collect();
    // `cargo rustc` when the tool links its own objects into the binary (its dependency
    // list), `cargo build` otherwise.
    assert_eq!(cargo[0], "cargo", "{r}");
    assert!(matches!(cargo[1], "build" | "rustc"), "{r}");
    assert!(cargo.contains(&"--locked"), "{r}");
    let home = std::env::var("HOME").unwrap_or_default();
    for a in &cargo {
        assert!(
            !a.contains(env!("CARGO_TARGET_TMPDIR")) && (home.is_empty() || !a.contains(&home)),
            "a local path in the cargo command {a:?}: {r}"
        );
    }
}

#[test]
#[ignore = "heavy: builds fixture images; needs skopeo"]
fn layout_and_archive_hold_a_valid_provenance_referrer_of_the_manifest() {
    let built = hello();
    let report = built.run.json();
    let digest = str_of(&report["digest"], "digest");
    // The report lists the referrer.
    let reported = report["referrers"]
        .as_array()
        .expect("referrers in the report");
    assert_eq!(reported.len(), 1, "{report}");
    assert_eq!(reported[0]["artifactType"], IN_TOTO, "{report}");
    assert_eq!(reported[0]["subject"], digest, "{report}");
    assert_eq!(reported[0]["platform"], "linux/amd64", "{report}");

    // oras reads the layout; the statement validates.
    let in_layout = referrers(&oci_referrers(&[
        "layout",
        built.layout.dir.to_str().expect("utf-8 path"),
    ]));
    assert_eq!(in_layout.len(), 1, "{in_layout:?}");
    assert_eq!(in_layout[0]["digest"], reported[0]["digest"]);
    assert_provenance_of(&in_layout[0], digest, "linux/amd64");
    let cargo = &in_layout[0]["statement"]["cargo"];
    assert!(
        cargo
            .as_array()
            .expect("argv")
            .iter()
            .any(|a| a == "x86_64-unknown-linux-musl"),
        "{cargo}"
    );

    // The archive carries the same.
    let archive = built.out_dir().join("image.tar");
    let in_archive = referrers(&oci_referrers(&[
        "archive",
        archive.to_str().expect("utf-8 path"),
    ]));
    assert_eq!(in_archive, in_layout);

    // And the image is what it was: skopeo reads the tag as the same manifest.
    assert_eq!(
        sha256_digest(&skopeo_manifest_bytes(&built.layout.reference())),
        digest
    );
    assert_eq!(
        sha256_digest(&skopeo_manifest_bytes(&format!(
            "oci-archive:{}:test",
            archive.display()
        ))),
        digest
    );
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn without_provenance_there_are_no_referrers_and_the_same_image() {
    let digest = hello().run.json()["digest"].clone();
    let off = |extra: &[&str], toml: Option<&str>| {
        let project = Project::copy("hello");
        if let Some(t) = toml {
            project.append_manifest(t);
        }
        let mut args = vec![
            "--message-format",
            "json",
            "--sbom",
            "none",
            "--layout-referrers",
        ];
        args.extend(extra);
        let built = build(project, Some(&shared_target_dir("hello")), &args);
        let report = built.run.json();
        let found = referrers(&oci_referrers(&[
            "layout",
            built.layout.dir.to_str().expect("utf-8 path"),
        ]));
        (report, found)
    };
    for (extra, toml) in [
        (&["--provenance=false"][..], None),
        (
            &[][..],
            Some("\n[package.metadata.containerize]\nprovenance = false\n"),
        ),
    ] {
        let (report, found) = off(extra, toml);
        assert_eq!(report["digest"], digest, "{report}");
        assert_eq!(report["referrers"], serde_json::json!([]), "{report}");
        assert_eq!(found, Vec::<Value>::new());
    }
    // The command line wins over Cargo.toml.
    let (report, found) = off(
        &["--provenance=true"],
        Some("\n[package.metadata.containerize]\nprovenance = false\n"),
    );
    assert_eq!(report["digest"], digest, "{report}");
    assert_eq!(found.len(), 1, "{found:?}");
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn two_checkouts_attach_byte_identical_provenance() {
    let first = hello().run.json();
    // Another copy, another target directory (every local path differs), and cargo's
    // output shown rather than quiet.
    let own_target = tempdir();
    let other = build(
        Project::copy("hello"),
        Some(own_target.path()),
        &["--sbom", "none", "--layout-referrers"],
    );
    assert_eq!(
        other.run.digest(),
        first["digest"].as_str().expect("digest")
    );
    let found = referrers(&oci_referrers(&[
        "layout",
        other.layout.dir.to_str().expect("utf-8 path"),
    ]));
    let digests: Vec<&Value> = found.iter().map(|r| &r["digest"]).collect();
    assert_eq!(digests, [&first["referrers"][0]["digest"]], "{found:?}");
}

/// The registry's PUTs of manifests, as (uri) in the order it answered them.
fn manifest_puts(registry: &Registry) -> Vec<String> {
    registry
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.uri.contains("/manifests/") && r.status < 300)
        .map(|r| r.uri)
        .collect()
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry, skopeo"]
fn push_lists_provenance_under_the_tag_schema_and_keeps_foreign_referrers() {
    let registry = Registry::plain();
    let host = registry.host();
    let built = hello();
    let report = built.run.json();
    let digest = str_of(&report["digest"], "digest").to_string();
    let size = fs::read(built.layout.blob(&digest))
        .expect("manifest")
        .len();
    let tag = format!("sha256-{}", hex(&digest));

    // Another tool attached a signature first, and listed it under the fallback tag.
    let foreign = oci_referrers(&["foreign", &host, "hello", &digest, &size.to_string()]);
    let foreign = str_of(&foreign["digest"], "foreign digest").to_string();

    let push = || {
        let mut cmd = tool(&built.project.root);
        cmd.args([
            "build",
            "--sbom",
            "none",
            "--layout-referrers",
            "--locked",
            "--message-format",
            "json",
            "--target-dir",
        ])
        .arg(shared_target_dir("hello"))
        .args(["--push", "-t", &registry.reference("hello:1")])
        .env("DOCKER_CONFIG", tempdir().keep());
        let run = capture(&mut cmd);
        run.assert_success();
        run.json()
    };
    let pushed = push();
    assert_eq!(pushed["digest"], digest.as_str());
    let ours = str_of(&pushed["referrers"][0]["digest"], "referrer digest").to_string();
    assert_eq!(
        pushed["referrers"], report["referrers"],
        "the same referrer as the layout's"
    );

    // oras finds both through the tag schema; ours is the valid statement.
    let found = referrers(&oci_referrers(&["registry", &host, "hello", &digest]));
    assert_eq!(found.len(), 2, "{found:?}");
    let theirs = found.iter().find(|r| r["digest"] == foreign.as_str());
    assert_eq!(
        theirs.map(|r| r["artifactType"].clone()),
        Some(Value::from(FOREIGN)),
        "the foreign referrer was dropped: {found:?}"
    );
    let mine = found
        .iter()
        .find(|r| r["digest"] == ours.as_str())
        .unwrap_or_else(|| panic!("ours is not listed: {found:?}"));
    assert_provenance_of(mine, &digest, "linux/amd64");
    assert_eq!(
        mine["listedAnnotations"]["in-toto.io/predicate-type"],
        "https://slsa.dev/provenance/v1"
    );

    // skopeo reads the same index at the tag.
    let index: Value = serde_json::from_slice(
        &registry
            .skopeo_inspect(&format!("hello:{tag}"), true)
            .expect("skopeo inspect the fallback tag"),
    )
    .expect("index JSON");
    assert_eq!(index["mediaType"], INDEX_MEDIA_TYPE, "{index}");
    let listed: Vec<&str> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| str_of(&m["digest"], "digest"))
        .collect();
    assert_eq!(listed, [foreign.as_str(), ours.as_str()], "{index}");

    // The referrer, then the tag schema's index that lists it.
    let puts = manifest_puts(&registry);
    let at = |suffix: &str| {
        puts.iter()
            .rposition(|u| u.ends_with(suffix))
            .unwrap_or_else(|| panic!("no PUT of {suffix} in {puts:?}"))
    };
    assert!(puts.iter().any(|u| u.ends_with("/manifests/1")), "{puts:?}");
    assert!(
        at(&format!("/manifests/{ours}")) < at(&format!("/manifests/{tag}")),
        "{puts:?}"
    );

    // Pushing again lists it once, and leaves the index alone.
    let before = manifest_puts(&registry)
        .iter()
        .filter(|u| u.ends_with(&tag))
        .count();
    push();
    let again = referrers(&oci_referrers(&["registry", &host, "hello", &digest]));
    assert_eq!(again.len(), 2, "{again:?}");
    let after = manifest_puts(&registry)
        .iter()
        .filter(|u| u.ends_with(&tag))
        .count();
    assert_eq!(after, before, "the unchanged index was PUT again");
}

/// Issue 25: an unchanged re-push, referrers (provenance and SBOMs, as by default) included,
/// is one round of HEADs: no upload, no manifest PUT, no read of the tag schema's index (the
/// first push, with nothing remembered, sends the referrers without asking after them). Once
/// another tool rewrites that index (with its own referrer alone), the next push reads it
/// again, as its digest is no longer the one that listed ours, and lists ours again.
#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry"]
fn an_unchanged_repush_with_referrers_is_one_round_of_heads() {
    let registry = Registry::plain();
    let host = registry.host();
    let cache = tempdir();
    let push = || {
        let mut cmd = tool(&hello().project.root);
        cmd.args([
            "build",
            "--locked",
            "--message-format",
            "json",
            "--target-dir",
        ])
        .arg(shared_target_dir("hello"))
        .args(["--push", "-t", &registry.reference("hello:1")])
        .env("CARGO_CONTAINERIZE_CACHE", cache.path())
        .env("DOCKER_CONFIG", tempdir().keep());
        let run = capture(&mut cmd);
        run.assert_success();
        run.json()
    };
    let since = |n: usize| -> Vec<String> {
        registry.requests()[n..]
            .iter()
            .map(|r| format!("{} {} {}", r.method, r.uri, r.status))
            .collect()
    };
    let first = push();
    let digest = str_of(&first["digest"], "digest").to_string();
    let tag = format!("sha256-{}", hex(&digest));
    let ours = referrers(&first);
    assert_eq!(ours.len(), 3, "provenance and two SBOMs: {first}");
    // The first push here (nothing remembered in this cache) asks nothing of its referrers
    // before sending them: no HEAD of their manifests, just the PUTs.
    let requests = since(0);
    for d in ours.iter().map(|r| str_of(&r["digest"], "referrer")) {
        assert!(
            !requests
                .iter()
                .any(|r| r.starts_with(&format!("HEAD /v2/hello/manifests/{d} "))),
            "referrer {d} asked after on the first push: {requests:?}"
        );
        assert!(
            requests.contains(&format!("PUT /v2/hello/manifests/{d} 201")),
            "referrer {d} not sent: {requests:?}"
        );
    }

    let before = registry.requests().len();
    let again = push();
    assert_eq!(again["digest"], first["digest"]);
    assert_eq!(again["referrers"], first["referrers"]);
    assert_eq!(again["blobs_uploaded"], 0, "{again}");
    let requests = since(before);
    let not_head: Vec<&String> = requests
        .iter()
        .filter(|r| !r.starts_with("HEAD ") && !r.starts_with("GET /v2/ "))
        .collect();
    assert!(not_head.is_empty(), "beyond HEADs: {not_head:?}");
    for d in ours.iter().map(|r| str_of(&r["digest"], "referrer")) {
        assert!(
            requests.contains(&format!("HEAD /v2/hello/manifests/{d} 200")),
            "referrer {d} not proven: {requests:?}"
        );
    }
    assert!(
        requests.contains(&format!("HEAD /v2/hello/manifests/{tag} 200")),
        "the index not proven: {requests:?}"
    );

    // Another tool replaces the index with one listing its own referrer alone: the index is
    // read, not trusted, and ours listed again beside theirs.
    let size = registry.manifest_bytes("hello:1").len().to_string();
    oci_referrers(&["foreign", &host, "hello", &digest, &size]);
    assert_eq!(
        referrers(&oci_referrers(&["registry", &host, "hello", &digest])).len(),
        1
    );
    let before = registry.requests().len();
    push();
    let requests = since(before);
    assert!(
        requests.contains(&format!("GET /v2/hello/manifests/{tag} 200")),
        "the changed index was not read: {requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("PUT /v2/hello/manifests/{tag} "))),
        "ours were not listed again: {requests:?}"
    );
    let listed = referrers(&oci_referrers(&["registry", &host, "hello", &digest]));
    assert_eq!(listed.len(), 4, "{listed:?}");
    // And proven by HEADs once more.
    let before = registry.requests().len();
    push();
    let requests = since(before);
    assert!(
        !requests.iter().any(|r| r.starts_with("GET /v2/hello/")),
        "{requests:?}"
    );
}

/// A registry with the referrers API names the subject in `OCI-Subject` when it takes a
/// referrer, and indexes it itself: then no tag schema. (The loopback registry has no such
/// API: the proxy answers the referrer's PUT as one that has it would.)
#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry"]
fn a_registry_that_indexes_referrers_gets_no_tag_schema() {
    let registry = Registry::plain();
    let report = hello().run.json();
    let digest = str_of(&report["digest"], "digest").to_string();
    let referrer = str_of(&report["referrers"][0]["digest"], "referrer").to_string();
    let proxy = Proxy::start(
        registry.addr(),
        vec![
            Rule::new("PUT", &format!("/manifests/{referrer}")).then(Fault::Respond {
                status: 201,
                headers: vec![
                    ("OCI-Subject".into(), digest.clone()),
                    ("Docker-Content-Digest".into(), referrer.clone()),
                ],
            }),
        ],
    );
    let mut cmd = tool(&hello().project.root);
    cmd.args([
        "build",
        "--sbom",
        "none",
        "--layout-referrers",
        "--locked",
        "--target-dir",
    ])
    .arg(shared_target_dir("hello"))
    .args(["--push", "-t", &format!("{}/hello:api", proxy.host())])
    .env("DOCKER_CONFIG", tempdir().keep());
    capture(&mut cmd).assert_success();
    assert!(proxy.unfired().is_empty(), "{:?}", proxy.unfired());
    let tags: Vec<String> = registry
        .requests()
        .into_iter()
        .filter(|r| r.uri.contains("/manifests/sha256-"))
        .map(|r| format!("{} {}", r.method, r.uri))
        .collect();
    assert!(tags.is_empty(), "the tag schema was used: {tags:?}");
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn a_prebuilt_binary_gets_provenance_naming_it_and_no_cargo_command() {
    let binary = shared_target_dir("hello").join("x86_64-unknown-linux-musl/release/hello");
    hello(); // built it
    let bytes = fs::read(&binary).expect("hello's binary");
    let built = build(
        Project::copy("hello"),
        Some(&shared_target_dir("hello")),
        &[
            "--sbom",
            "none",
            "--layout-referrers",
            "--binary",
            binary.to_str().expect("utf-8 path"),
        ],
    );
    let found = referrers(&oci_referrers(&[
        "layout",
        built.layout.dir.to_str().expect("utf-8 path"),
    ]));
    assert_eq!(found.len(), 1, "{found:?}");
    let st = &found[0]["statement"];
    assert_eq!(found[0]["subject"], built.run.digest().as_str());
    assert_eq!(st["prebuiltBinary"], true, "{st}");
    assert_eq!(st["cargo"], Value::Null, "{st}");
    assert_eq!(st["rustc"], Value::Null, "{st}");
    assert_eq!(
        st["byproducts"],
        serde_json::json!([{
            "name": "/usr/local/bin/hello",
            "digest": { "sha256": hex(&sha256_digest(&bytes)) }
        }]),
        "{st}"
    );
}

/// `cargo containerize build --push -t REFERENCE` of the hello fixture with `args`, started
/// (not waited for).
fn start_push(reference: &str, args: &[&str]) -> std::process::Child {
    let mut cmd = tool(&hello().project.root);
    cmd.args([
        "build",
        "--locked",
        "--message-format",
        "json",
        "--target-dir",
    ])
    .arg(shared_target_dir("hello"))
    .args(args)
    .args(["--push", "-t", reference])
    .env("DOCKER_CONFIG", tempdir().keep())
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    cmd.spawn().expect("start the tool")
}

fn finish(child: std::process::Child, what: &str) -> Value {
    let out = child.wait_with_output().expect("wait for the tool");
    let run = format!(
        "{what} -> {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{run}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {run}"))
}

/// Two pushes of one image at once, one attaching the provenance (`--sbom none`), one the two
/// SBOMs (`--provenance=false`), to a registry without the referrers API: both read the
/// `sha256-<digest>` index, add theirs and PUT it back, so without a read-back the second PUT
/// drops the first one's entries. The proxy holds the answers to the first reads of that
/// index for a second (a slow registry), so the two read-modify-write cycles overlap every
/// time; each round is a fresh repository.
#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry"]
fn concurrent_pushes_of_one_image_keep_every_referrer() {
    let registry = Registry::plain();
    hello(); // built once, so both pushes find the binary built
    let proxy = Proxy::start(registry.addr(), vec![]);
    for round in 0..3 {
        let repo = format!("together-{round}");
        proxy.add_rule(
            Rule::new("GET", &format!("/v2/{repo}/manifests/sha256-"))
                .then(Fault::DelayAnswer(std::time::Duration::from_secs(1)))
                .then(Fault::DelayAnswer(std::time::Duration::from_secs(1))),
        );
        let reference = format!("{}/{repo}:1", proxy.host());
        let provenance = start_push(&reference, &["--sbom", "none"]);
        let sboms = start_push(&reference, &["--provenance=false"]);
        let a = finish(provenance, "the push with provenance");
        let b = finish(sboms, "the push with SBOMs");
        assert_eq!(a["digest"], b["digest"], "one image");
        let digest = str_of(&a["digest"], "digest");
        let mut expected: Vec<String> = [&a, &b]
            .iter()
            .flat_map(|r| r["referrers"].as_array().expect("referrers").clone())
            .map(|r| str_of(&r["digest"], "referrer").to_string())
            .collect();
        expected.sort();
        assert_eq!(expected.len(), 3, "{a}\n{b}");
        let index = registry.manifest(&format!("{repo}:sha256-{}", hex(digest)));
        let mut listed: Vec<String> = index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .map(|m| str_of(&m["digest"], "listed digest").to_string())
            .collect();
        listed.sort();
        assert_eq!(
            listed, expected,
            "round {round}: referrers were lost: {index}"
        );
    }
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry"]
fn a_refused_referrer_fails_the_push_and_says_the_image_is_in() {
    let registry = Registry::plain();
    let proxy = Proxy::start(
        registry.addr(),
        vec![Rule::new("PUT", "/manifests/sha256-").then(Fault::status(400))],
    );
    let (run, reference) = push_via(&proxy, "refused", &[]);
    assert_one_line_error(
        &run,
        &["the image is pushed", &reference, "referrers", "refused"],
    );
    // It is.
    let digest = str_of(&hello().run.json()["digest"], "digest").to_string();
    assert_eq!(
        sha256_digest(&registry.manifest_bytes("hello:refused")),
        digest
    );
}

/// hello pushed with `--sbom none` (the provenance its one referrer) through `proxy`, to
/// `PROXY/hello:TAG`, with `args` added.
fn push_via(proxy: &Proxy, tag: &str, args: &[&str]) -> (Run, String) {
    let reference = format!("{}/hello:{tag}", proxy.host());
    let mut cmd = tool(&hello().project.root);
    cmd.args([
        "build",
        "--sbom",
        "none",
        "--layout-referrers",
        "--locked",
        "--target-dir",
    ])
    .arg(shared_target_dir("hello"))
    .args(args)
    .args(["--push", "-t", &reference])
    .env("DOCKER_CONFIG", tempdir().keep());
    (capture(&mut cmd), reference)
}

/// [`push_via`] a proxy with `rules` in front of `registry`; every rule must fire.
fn push_through(registry: &Registry, rules: Vec<Rule>, tag: &str, args: &[&str]) -> (Run, String) {
    let proxy = Proxy::start(registry.addr(), rules);
    let (run, reference) = push_via(&proxy, tag, args);
    assert!(proxy.unfired().is_empty(), "{:?}: {run}", proxy.unfired());
    (run, reference)
}

/// The image manifest of [`hello`]'s layout.
fn hello_manifest() -> Value {
    let built = hello();
    let digest = str_of(&built.run.json()["digest"], "digest").to_string();
    serde_json::from_slice(&fs::read(built.layout.blob(&digest)).expect("manifest"))
        .expect("manifest JSON")
}

/// With `--message-format json`, a push whose referrers fail still prints the report: the
/// image's digest, the reference it is pushed under, and the referrer error; the run fails.
#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry"]
fn a_failed_referrer_push_still_reports_the_pushed_image_in_json() {
    let registry = Registry::plain();
    let (run, reference) = push_through(
        &registry,
        vec![Rule::new("PUT", "/manifests/sha256-").then(Fault::status(400))],
        "json",
        &["--message-format", "json"],
    );
    assert!(!run.status.success(), "{run}");
    let digest = str_of(&hello().run.json()["digest"], "digest").to_string();
    let report = run.json();
    assert_eq!(report["digest"], digest.as_str(), "{report}");
    assert_eq!(
        report["pushed"],
        serde_json::json!([format!("{reference}@{digest}")]),
        "{report}"
    );
    let error = str_of(&report["error"], "error");
    assert!(
        error.contains("the image is pushed") && error.contains("referrers"),
        "{error}"
    );
    assert_eq!(
        report["referrers"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert_one_line_error(&run, &["the image is pushed", "referrers"]);
}

/// A 403 on the `sha256-…` tag, after the same credentials pushed the image: the message
/// names that tag and the likely rule (immutable tags), not "the credentials may not push".
#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry"]
fn a_forbidden_referrers_tag_is_named_in_the_error() {
    let registry = Registry::plain();
    let digest = str_of(&hello().run.json()["digest"], "digest").to_string();
    let (run, _) = push_through(
        &registry,
        vec![Rule::new("PUT", "/manifests/sha256-").then(Fault::status(403))],
        "forbidden",
        &[],
    );
    let tag = format!("sha256-{}", hex(&digest));
    assert_one_line_error(&run, &["the image is pushed", &tag, "403", "immutable"]);
    assert!(!error_line(&run).contains("may not push"), "{run}");
}

/// Issue 25: the referrers go in beside the image, not after it (the distribution spec has a
/// registry accept a manifest whose subject is not in yet). With the registry's answer to
/// the image config's upload held back a second, the referrer and the tag schema's index
/// are in before the image's tag, and the run still ends with all three in place.
#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry"]
fn referrers_go_in_while_the_image_is_still_uploading() {
    let registry = Registry::plain();
    let digest = str_of(&hello().run.json()["digest"], "digest").to_string();
    let manifest = hello_manifest();
    let config = str_of(&manifest["config"]["digest"], "config digest");
    let held =
        Rule::new("PUT", hex(config)).then(Fault::DelayAnswer(std::time::Duration::from_secs(1)));
    let (run, reference) = push_through(&registry, vec![held], "beside", &[]);
    run.assert_success();
    let tag = format!("sha256-{}", hex(&digest));
    let puts = manifest_puts(&registry);
    let at = |suffix: &str| {
        puts.iter()
            .position(|u| u.ends_with(suffix))
            .unwrap_or_else(|| panic!("no PUT of {suffix} in {puts:?}"))
    };
    assert!(
        at(&format!("/manifests/{tag}")) < at("/manifests/beside"),
        "the referrers waited for the image: {puts:?}"
    );
    assert_eq!(
        sha256_digest(&registry.manifest_bytes("hello:beside")),
        digest,
        "{reference}"
    );
    let found = referrers(&oci_referrers(&[
        "registry",
        &registry.host(),
        "hello",
        &digest,
    ]));
    assert_eq!(found.len(), 1, "{found:?}");
}

/// `--upload-jobs 1` means one blob upload at a time, the referrers' included, though they go
/// in beside the image: with the answer to the image's first upload held back a second, no
/// other blob's upload runs while it waits.
#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry"]
fn upload_jobs_bound_the_image_and_its_referrers_together() {
    let registry = Registry::plain();
    let manifest = hello_manifest();
    // The image's first upload: the referrers' start at the same moment.
    let first = str_of(&manifest["layers"][0]["digest"], "first layer digest");
    let proxy = Proxy::start(
        registry.addr(),
        vec![
            Rule::new("PUT", hex(first))
                .then(Fault::DelayAnswer(std::time::Duration::from_secs(1))),
        ],
    );
    let (run, _) = push_via(&proxy, "one-at-a-time", &["--upload-jobs", "1"]);
    run.assert_success();
    assert!(proxy.unfired().is_empty(), "{:?}: {run}", proxy.unfired());
    // Each blob's upload, from its POST to its PUT's answer.
    let exchanges = proxy.exchanges();
    let uploads: Vec<_> = exchanges
        .iter()
        .filter(|e| e.method == "PUT" && e.target.contains("/blobs/uploads/"))
        .map(|put| {
            let post = exchanges
                .iter()
                .filter(|e| e.method == "POST" && e.target.contains("/blobs/uploads/"))
                .filter(|e| e.finished <= put.started)
                .map(|e| e.started)
                .max()
                .expect("a POST before each PUT");
            (post, put.finished, put.target.clone())
        })
        .collect();
    assert!(uploads.len() >= 3, "{exchanges:?}");
    let held = uploads
        .iter()
        .find(|u| u.2.contains(hex(first)))
        .expect("the first layer's upload");
    for other in uploads.iter().filter(|u| !u.2.contains(hex(first))) {
        assert!(
            other.1 <= held.0 || other.0 >= held.1,
            "an upload ran beside the held one with --upload-jobs 1: {other:?} during {held:?}"
        );
    }
}

/// Entries of a registry's `sha256-…` index that are not descriptors are dropped (with a
/// warning), not pushed back. docker-registry refuses to store such an index, so the proxy
/// serves it for the first read.
#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry"]
fn junk_in_the_referrers_index_is_dropped_with_a_warning() {
    let registry = Registry::plain();
    let junk = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [1, "x", null, {"digest": 5}],
    });
    let (run, _) = push_through(
        &registry,
        vec![
            Rule::new("GET", "/manifests/sha256-").then(Fault::RespondBody {
                status: 200,
                headers: vec![("Content-Type".into(), INDEX_MEDIA_TYPE.into())],
                body: junk.to_string().into_bytes(),
            }),
        ],
        "junk",
        &[],
    );
    run.assert_success();
    assert!(
        run.stderr.contains("4 entries that are not descriptors")
            && run.stderr.contains("dropping"),
        "no warning: {run}"
    );
    let digest = str_of(&hello().run.json()["digest"], "digest").to_string();
    let ours = str_of(&hello().run.json()["referrers"][0]["digest"], "referrer").to_string();
    let index = registry.manifest(&format!("hello:sha256-{}", hex(&digest)));
    let listed: Vec<&str> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| str_of(&m["digest"], "digest"))
        .collect();
    assert_eq!(listed, [ours.as_str()], "{index}");
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry"]
fn each_platform_manifest_gets_its_own_provenance_in_the_layout_and_the_registry() {
    let registry = Registry::plain();
    let host = registry.host();
    let built = build_fixture(
        "hello",
        &[
            "--sbom",
            "none",
            "--layout-referrers",
            "--platform",
            "linux/amd64,linux/arm64",
            "--message-format",
            "json",
            "--push",
            "-t",
            &registry.reference("multi:1"),
        ],
    );
    let report = built.run.json();
    let manifests: Vec<(String, String)> = report["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            (
                str_of(&m["platform"], "platform").to_string(),
                str_of(&m["digest"], "digest").to_string(),
            )
        })
        .collect();
    assert_eq!(manifests.len(), 2, "{report}");
    assert_eq!(
        report["referrers"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );

    let in_layout = referrers(&oci_referrers(&[
        "layout",
        built.layout.dir.to_str().expect("utf-8 path"),
    ]));
    assert_eq!(in_layout.len(), 2, "{in_layout:?}");
    let subjects: Vec<&str> = manifests.iter().map(|(_, d)| d.as_str()).collect();
    let mut args = vec!["registry", host.as_str(), "multi"];
    args.extend(&subjects);
    let in_registry = referrers(&oci_referrers(&args));
    assert_eq!(in_registry.len(), 2, "{in_registry:?}");
    for (platform, digest) in &manifests {
        for found in [&in_layout, &in_registry] {
            let r = found
                .iter()
                .find(|r| r["subject"] == digest.as_str())
                .unwrap_or_else(|| panic!("no referrer of {platform} {digest}: {found:?}"));
            assert_provenance_of(r, digest, platform);
            // The command is the cargo run that built this platform's binary: it names its
            // target (each binary links its own dependency list, so each has a run of its own).
            let cargo = r["statement"]["cargo"].as_array().expect("argv");
            let triple = match platform.as_str() {
                "linux/amd64" => "x86_64-unknown-linux-musl",
                _ => "aarch64-unknown-linux-musl",
            };
            assert!(cargo.iter().any(|a| a == triple), "{triple} missing: {r}");
        }
    }
    // The index itself has none: referrers are about what runs, one platform each.
    let top = str_of(&report["digest"], "digest");
    assert!(
        in_layout.iter().all(|r| r["subject"] != top),
        "{in_layout:?}"
    );
}

/// Cargo.lock's registry packages: (name, version, checksum).
fn locked_registry_crates(lock: &str) -> Vec<(String, String, String)> {
    lock.split("[[package]]")
        .skip(1)
        .filter_map(|block| {
            let field = |k: &str| {
                block.lines().find_map(|l| {
                    l.strip_prefix(&format!("{k} = \""))
                        .and_then(|v| v.strip_suffix('"'))
                        .map(String::from)
                })
            };
            field("source")?.starts_with("registry+").then_some(())?;
            Some((field("name")?, field("version")?, field("checksum")?))
        })
        .collect()
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn provenance_names_the_git_revision_and_every_locked_crate() {
    let project = Project::copy("cdep");
    let sha = commit_all(&project.root);
    let lock = fs::read_to_string(project.root.join("Cargo.lock")).expect("Cargo.lock");
    let crates = locked_registry_crates(&lock);
    assert!(crates.len() >= 3, "{crates:?}");
    let built = build(
        project,
        Some(&shared_target_dir("cdep")),
        &["--sbom", "none", "--layout-referrers"],
    );
    let found = referrers(&oci_referrers(&[
        "layout",
        built.layout.dir.to_str().expect("utf-8 path"),
    ]));
    assert_eq!(found.len(), 1, "{found:?}");
    let resolved = found[0]["statement"]["resolved"]
        .as_array()
        .expect("resolvedDependencies")
        .clone();
    assert!(
        resolved
            .iter()
            .any(|d| d["name"] == "source" && d["digest"]["gitCommit"] == sha.as_str()),
        "no source at {sha} in {resolved:?}"
    );
    for (name, version, checksum) in &crates {
        assert!(
            resolved.iter().any(|d| d["name"] == name.as_str()
                && d["uri"] == format!("pkg:cargo/{name}@{version}")
                && d["digest"]["sha256"] == checksum.as_str()),
            "{name} {version} missing from {resolved:?}"
        );
    }
    // The crate itself is the source, not a dependency.
    assert!(
        !resolved.iter().any(|d| d["name"] == "cdep"),
        "{resolved:?}"
    );
    assert_eq!(resolved.len(), crates.len() + 1, "{resolved:?}");
}
