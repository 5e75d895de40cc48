//! Issue 22: `--push --sign` signs the image and attests its provenance and SBOMs in cosign's
//! formats, checked by an implementation no one here wrote: sigstore-rs (the Sigstore
//! project's Rust library), in tests/sigstore-verifier/ — its own Cargo project, outside the
//! tool's dependency tree, built once per target directory by [`verifier`] (a OnceLock: the
//! first test that needs it builds it, which takes minutes cold; `cargo build` then finds it
//! fresh). It reads the `.sig` tags from the loopback docker-registry with
//! `trusted_signature_layers` + `verify_constraints` and a `PublicKeyVerifier`, and checks
//! each `.att` DSSE envelope with its own PAE and sigstore-rs's verification key; it also
//! writes a key file in cosign's encrypted format (sigstore-rs's writer) and reads ours.
//!
//! Needs scripts/setup-test-env (docker-registry, the aarch64 musl target, and a C compiler
//! and cmake-free toolchain for sigstore-rs's aws-lc-rs, which the setup already has).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::*;
use crate::support::proxy::{Fault, Proxy, Rule};
use crate::support::registry::Registry;
use serde_json::Value;

const PASSWORD: &str = "correct horse battery staple";
const SLSA: &str = "https://slsa.dev/provenance/v1";
const SPDX: &str = "https://spdx.dev/Document";

/// The verifier program, built once (its own lock file, `--locked`) into
/// `target/sigstore-verifier`.
fn verifier() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target/tmp has a parent")
            .join("sigstore-verifier");
        let run = capture(
            Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .args(["build", "--locked", "--quiet", "--manifest-path"])
                .arg(root.join("tests/sigstore-verifier/Cargo.toml"))
                .arg("--target-dir")
                .arg(&target)
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("CARGO_BUILD_TARGET"),
        );
        assert!(
            run.status.success(),
            "building tests/sigstore-verifier: {run}"
        );
        target.join("debug/sigstore-verifier")
    })
}

/// `sigstore-verifier ARGS`.
fn sigstore(args: &[&str]) -> Run {
    capture(Command::new(verifier()).args(args))
}

/// A key pair from `cargo containerize generate-key-pair` in a new directory: (dir, key, pub).
fn generated_key() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempdir();
    let run = capture(
        tool(dir.path())
            .arg("generate-key-pair")
            .env("COSIGN_PASSWORD", PASSWORD),
    );
    run.assert_success();
    let (key, public) = (dir.path().join("cosign.key"), dir.path().join("cosign.pub"));
    (dir, key, public)
}

/// hello pushed to `reference` with EXTRA, `--message-format json`, the password set: the
/// tool's JSON report.
fn push(reference: &str, extra: &[&str]) -> Value {
    let project = Project::copy("hello");
    let mut cmd = tool(&project.root);
    cmd.args([
        "build",
        "--locked",
        "--message-format",
        "json",
        "--target-dir",
    ])
    .arg(shared_target_dir("hello"))
    .args(["--push", "-t", reference])
    .args(extra)
    .env("COSIGN_PASSWORD", PASSWORD);
    let run = capture(&mut cmd);
    run.assert_success();
    run.json()
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"))
}

/// The digests a push report names: the top one, then each platform manifest's.
fn digests(report: &Value) -> (String, Vec<String>) {
    let platforms = report["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("no manifests: {report}"))
        .iter()
        .map(|m| str_of(&m["digest"], "digest").to_string())
        .collect();
    (str_of(&report["digest"], "digest").to_string(), platforms)
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").expect("a sha256 digest")
}

/// An HTTP client for the loopback registry (plain HTTP; rustls with its provider named here,
/// not installed process-wide).
fn http() -> reqwest::blocking::Client {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .expect("an HTTP client")
}

/// The registry's answer to GET /v2/NAME/PATH, as bytes.
fn get(registry: &Registry, path: &str) -> Vec<u8> {
    let url = format!("http://{}/v2/{path}", registry.host());
    let r = http()
        .get(&url)
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        )
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(r.status().is_success(), "GET {url}: {}", r.status());
    r.bytes().expect("body").to_vec()
}

fn get_json(registry: &Registry, path: &str) -> Value {
    serde_json::from_slice(&get(registry, path)).expect("JSON")
}

fn layers(manifest: &Value) -> &Vec<Value> {
    manifest["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layers: {manifest}"))
}

#[test]
#[ignore = "heavy: builds a two-platform image and tests/sigstore-verifier (sigstore-rs); needs docker-registry"]
fn a_signed_two_platform_image_verifies_with_its_key_and_with_no_other() {
    let registry = Registry::plain();
    let (_keys, key, public) = generated_key();
    let other = tempdir();
    sigstore(&["gen-key", other.path().to_str().unwrap(), "x"]).assert_success();
    let wrong = other.path().join("sigstore.pub");
    let reference = registry.reference("signed:1");
    let key_arg = key.to_str().unwrap();
    let both = ["--platform", "linux/amd64,linux/arm64"];
    let report = push(
        &reference,
        &[&both[..], &["--sign", "--key", key_arg]].concat(),
    );
    let (index, platforms) = digests(&report);
    assert_eq!(platforms.len(), 2, "{report}");
    let repo = registry.reference("signed");
    // sigstore-rs accepts every manifest's signature with the key, none with another key.
    for digest in std::iter::once(&index).chain(&platforms) {
        let image = format!("{repo}@{digest}");
        sigstore(&["verify", &image, public.to_str().unwrap()]).assert_success();
        let run = sigstore(&["verify", &image, wrong.to_str().unwrap()]);
        assert!(!run.status.success(), "a wrong key verified {image}: {run}");
    }
    // A manifest of the repository that was never signed (the provenance referrer's).
    let referrer = str_of(&report["referrers"][0]["digest"], "referrer");
    let run = sigstore(&[
        "verify",
        &format!("{repo}@{referrer}"),
        public.to_str().unwrap(),
    ]);
    assert!(!run.status.success(), "an unsigned digest verified: {run}");

    // The attestations: each platform's provenance (and SBOM), DSSE-signed with the key; the
    // provenance statement is byte for byte the one the tool attached as a referrer.
    for (platform, digest) in platforms.iter().enumerate() {
        let image = format!("{repo}@{digest}");
        let run = sigstore(&["attestations", &image, public.to_str().unwrap()]);
        run.assert_success();
        let statements: Vec<Value> = run
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("a statement per line"))
            .collect();
        let types: Vec<&str> = statements
            .iter()
            .map(|s| str_of(&s["predicateType"], "predicateType"))
            .collect();
        assert!(types.contains(&SLSA) && types.contains(&SPDX), "{types:?}");
        for s in &statements {
            assert_eq!(s["subject"][0]["digest"]["sha256"], hex(digest), "{s}");
        }
        let provenance = report["referrers"]
            .as_array()
            .expect("referrers")
            .iter()
            .find(|r| {
                r["subject"] == digest.as_str()
                    && r["artifactType"] == "application/vnd.in-toto+json"
            })
            .unwrap_or_else(|| panic!("no provenance referrer of platform {platform}: {report}"));
        let manifest = get_json(
            &registry,
            &format!(
                "signed/manifests/{}",
                str_of(&provenance["digest"], "digest")
            ),
        );
        let written = get_json(
            &registry,
            &format!(
                "signed/blobs/{}",
                str_of(&layers(&manifest)[0]["digest"], "digest")
            ),
        );
        let attested = statements
            .iter()
            .find(|s| s["predicateType"] == SLSA)
            .unwrap();
        assert_eq!(
            attested, &written,
            "the attested provenance is the one written"
        );
        let run = sigstore(&["attestations", &image, wrong.to_str().unwrap()]);
        assert!(
            !run.status.success(),
            "a wrong key verified the attestations: {run}"
        );
    }

    // The tool's own check agrees, and names what fails with another key.
    let run = capture(tool(registry.data_dir().as_path()).args([
        "verify-signature",
        &reference,
        "--key",
        public.to_str().unwrap(),
    ]));
    run.assert_success();
    assert_eq!(run.stdout.lines().count(), 3, "{run}");
    assert!(run.stdout.contains(SLSA), "{run}");
    let run = capture(tool(registry.data_dir().as_path()).args([
        "verify-signature",
        &reference,
        "--key",
        wrong.to_str().unwrap(),
    ]));
    assert_eq!(run.code(), Some(1), "{run}");
    assert!(
        run.stderr.contains("3 of 3 manifests failed verification"),
        "{run}"
    );

    // Signing changed no digest: the same build unsigned is the same image.
    let unsigned = push(&registry.reference("unsigned:1"), &both);
    assert_eq!(digests(&unsigned), (index.clone(), platforms.clone()));

    // Signing the unchanged image again leaves every .sig and .att tag as it was.
    let tags: Vec<String> = std::iter::once(&index)
        .chain(&platforms)
        .map(|d| format!("sha256-{}.sig", hex(d)))
        .chain(platforms.iter().map(|d| format!("sha256-{}.att", hex(d))))
        .collect();
    let before: Vec<Vec<u8>> = tags
        .iter()
        .map(|t| get(&registry, &format!("signed/manifests/{t}")))
        .collect();
    let again = push(
        &reference,
        &[&both[..], &["--sign", "--key", key_arg]].concat(),
    );
    assert_eq!(digests(&again), (index, platforms));
    let after: Vec<Vec<u8>> = tags
        .iter()
        .map(|t| get(&registry, &format!("signed/manifests/{t}")))
        .collect();
    assert_eq!(before, after, "re-signing changed a signature tag");
    assert_eq!(layers(&serde_json::from_slice(&after[0]).unwrap()).len(), 1);
}

/// Replaces the first layer of the manifest under `tag` in `repo` with `edit` of its bytes,
/// keeping its annotations (the signature): a forgery at the registry.
fn forge_first_layer(registry: &Registry, repo: &str, tag: &str, edit: impl Fn(&str) -> String) {
    let mut manifest = get_json(registry, &format!("{repo}/manifests/{tag}"));
    let layer = &layers(&manifest)[0];
    let text = String::from_utf8(get(
        registry,
        &format!("{repo}/blobs/{}", str_of(&layer["digest"], "digest")),
    ))
    .unwrap();
    let forged = edit(&text).into_bytes();
    assert_ne!(forged, text.as_bytes(), "the edit changed nothing");
    let digest = sha256_digest(&forged);
    let http = http();
    let host = registry.host();
    let start = http
        .post(format!("http://{host}/v2/{repo}/blobs/uploads/"))
        .send()
        .unwrap();
    let location = start.headers()["Location"].to_str().unwrap().to_string();
    let url = if location.starts_with("http") {
        location
    } else {
        format!("http://{host}{location}")
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let put = http
        .put(format!("{url}{sep}digest={digest}"))
        .body(forged.clone())
        .send()
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    manifest["layers"][0]["digest"] = digest.into();
    manifest["layers"][0]["size"] = forged.len().into();
    let put = http
        .put(format!("http://{host}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(serde_json::to_vec(&manifest).unwrap())
        .send()
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
}

/// A signature payload or an attestation rewritten at the registry, its signature kept, is
/// rejected by sigstore-rs and by `verify-signature`.
#[test]
#[ignore = "heavy: builds an image and tests/sigstore-verifier (sigstore-rs); needs docker-registry"]
fn a_tampered_payload_or_attestation_is_rejected() {
    use base64::Engine as _;
    let registry = Registry::plain();
    let (_keys, key, public) = generated_key();
    let public = public.to_str().unwrap();
    let reference = registry.reference("tampered:1");
    let report = push(
        &reference,
        &["--sign", "--key", key.to_str().unwrap(), "--sbom", "none"],
    );
    let (digest, _) = digests(&report);
    let image = format!("{}@{digest}", registry.reference("tampered"));
    sigstore(&["verify", &image, public]).assert_success();
    sigstore(&["attestations", &image, public]).assert_success();
    let verify_signature =
        || capture(tool(key.parent().unwrap()).args(["verify-signature", &image, "--key", public]));
    verify_signature().assert_success();

    // The attestation's statement rewritten (another builder named).
    forge_first_layer(
        &registry,
        "tampered",
        &format!("sha256-{}.att", hex(&digest)),
        |text| {
            let mut envelope: Value = serde_json::from_str(text).unwrap();
            let b64 = base64::engine::general_purpose::STANDARD;
            let statement = b64.decode(str_of(&envelope["payload"], "payload")).unwrap();
            let forged = String::from_utf8(statement)
                .unwrap()
                .replace("cargo-containerize", "forged");
            envelope["payload"] = b64.encode(forged).into();
            envelope.to_string()
        },
    );
    let run = sigstore(&["attestations", &image, public]);
    assert!(
        !run.status.success(),
        "a tampered attestation verified: {run}"
    );
    let run = verify_signature();
    assert_one_line_error(
        &run,
        &[
            "1 of 1 manifests",
            "none of the envelope's 1 signature(s) verifies",
        ],
    );

    // The signature's payload rewritten (another repository named).
    forge_first_layer(
        &registry,
        "tampered",
        &format!("sha256-{}.sig", hex(&digest)),
        |text| text.replace("tampered", "forged"),
    );
    let run = sigstore(&["verify", &image, public]);
    assert!(!run.status.success(), "a tampered payload verified: {run}");
    assert_one_line_error(&verify_signature(), &["the signature does not verify"]);
}

#[test]
#[ignore = "heavy: builds an image and tests/sigstore-verifier (sigstore-rs); needs docker-registry"]
fn key_files_cross_between_sigstore_rs_and_the_tool_and_other_signatures_stay() {
    // Ours read by sigstore-rs: the same public key.
    let (_keys, key, public) = generated_key();
    let run = sigstore(&["read-key", key.to_str().unwrap(), PASSWORD]);
    run.assert_success();
    // (sigstore-rs writes PEM with CRLF line ends.)
    assert_eq!(
        run.stdout.replace("\r\n", "\n").trim(),
        fs::read_to_string(&public).unwrap().trim()
    );
    // sigstore-rs's key file (cosign's encrypted format) signs with the tool.
    let theirs = tempdir();
    sigstore(&["gen-key", theirs.path().to_str().unwrap(), PASSWORD]).assert_success();
    let their_key = theirs.path().join("sigstore.key");
    let their_public = theirs.path().join("sigstore.pub");
    let registry = Registry::plain();
    let reference = registry.reference("twokeys:1");
    let report = push(
        &reference,
        &["--sign", "--key", key.to_str().unwrap(), "--sbom", "none"],
    );
    let (digest, _) = digests(&report);
    push(
        &reference,
        &[
            "--sign",
            "--key",
            their_key.to_str().unwrap(),
            "--sbom",
            "none",
        ],
    );
    // Both signatures are there, each verifies with its own key.
    let tag = format!("twokeys/manifests/sha256-{}.sig", hex(&digest));
    assert_eq!(layers(&get_json(&registry, &tag)).len(), 2);
    let image = format!("{}@{digest}", registry.reference("twokeys"));
    for public in [&public, &their_public] {
        sigstore(&["verify", &image, public.to_str().unwrap()]).assert_success();
    }
    // Signing again with the first key adds nothing.
    push(
        &reference,
        &["--sign", "--key", key.to_str().unwrap(), "--sbom", "none"],
    );
    assert_eq!(layers(&get_json(&registry, &tag)).len(), 2);
}

/// Bad signing requests stop before any build, with one line naming the remedy.
#[test]
fn signing_needs_a_push_a_key_and_its_password() {
    let project = Project::copy("hello");
    let target = tempdir();
    let (_keys, key, _) = generated_key();
    let key = key.to_str().unwrap();
    let run_with = |args: &[&str], password: Option<&str>| {
        let mut cmd = tool(&project.root);
        cmd.args(["build", "--locked", "--target-dir"])
            .arg(target.path())
            .args(args);
        match password {
            Some(p) => cmd.env("COSIGN_PASSWORD", p),
            None => cmd.env_remove("COSIGN_PASSWORD"),
        };
        cmd.stdin(std::process::Stdio::null());
        capture(&mut cmd)
    };
    let push = ["--push", "-t", "127.0.0.1:9/x:1"];
    for (args, password, words) in [
        (
            vec!["--sign", "--key", key],
            Some(PASSWORD),
            "--sign signs what --push pushes",
        ),
        (
            [&push[..], &["--sign"]].concat(),
            Some(PASSWORD),
            "--sign needs a key",
        ),
        (
            [&push[..], &["--key", key]].concat(),
            Some(PASSWORD),
            "signing is off",
        ),
        (
            [&push[..], &["--sign", "--key", key]].concat(),
            None,
            "COSIGN_PASSWORD is not set",
        ),
        (
            [&push[..], &["--sign", "--key", key]].concat(),
            Some("wrong"),
            "cannot be decrypted with that password",
        ),
        (
            [&push[..], &["--sign", "--key", "missing.key"]].concat(),
            Some(PASSWORD),
            "missing.key",
        ),
    ] {
        assert_one_line_error(&run_with(&args, password), &[words]);
    }
    // Nothing was built.
    assert!(!target.path().join("x86_64-unknown-linux-musl").exists());
}

/// A refused signature fails the run, saying the image is pushed and under which digest.
#[test]
#[ignore = "heavy: builds an image; needs docker-registry"]
fn a_refused_signature_says_the_image_is_pushed() {
    let registry = Registry::plain();
    let proxy = Proxy::start(
        registry.addr(),
        vec![Rule::new("PUT", ".sig").then(Fault::status(400))],
    );
    let (_keys, key, _) = generated_key();
    let reference = format!("{}/hello:refused", proxy.host());
    let project = Project::copy("hello");
    let mut cmd = tool(&project.root);
    cmd.args(["build", "--locked", "--sbom", "none", "--target-dir"])
        .arg(shared_target_dir("hello"))
        .args(["--push", "-t", &reference, "--sign", "--key"])
        .arg(&key)
        .env("COSIGN_PASSWORD", PASSWORD)
        .env("DOCKER_CONFIG", tempdir().keep());
    let run = capture(&mut cmd);
    let digest = sha256_digest(&registry.manifest_bytes("hello:refused"));
    assert_one_line_error(
        &run,
        &[
            "the image is pushed",
            &format!("{reference}@{digest}"),
            "not signed",
        ],
    );
    assert!(proxy.unfired().is_empty(), "{:?}", proxy.unfired());
}

/// An unencrypted key signs, and neither its PEM nor its DER reaches stdout, stderr (with
/// `-v`) or anything the registry stores.
#[test]
#[ignore = "heavy: builds an image; needs docker-registry"]
fn the_private_key_reaches_no_output_and_no_registry_blob() {
    use base64::Engine as _;
    let registry = Registry::plain();
    let key = fixtures_dir().join("keys/pkcs8-p256.key");
    let pem = fs::read_to_string(&key).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&body)
        .unwrap();
    let project = Project::copy("hello");
    let mut cmd = tool(&project.root);
    cmd.args(["build", "-v", "--locked", "--target-dir"])
        .arg(shared_target_dir("hello"))
        .args([
            "--push",
            "-t",
            &registry.reference("leak:1"),
            "--sign",
            "--key",
        ])
        .arg(&key);
    let run = capture(&mut cmd);
    run.assert_success();
    assert!(run.stderr.contains("Signed"), "{run}");
    // The secret scalar: in the SEC1 ECPrivateKey inside the PKCS#8, the 32-byte OCTET STRING
    // after `version 1` (02 01 01 04 20).
    let at = der
        .windows(5)
        .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
        .expect("a SEC1 private key")
        + 5;
    let scalar = &der[at..at + 32];
    let b64 = base64::engine::general_purpose::STANDARD;
    let texts = [hex::encode(scalar), b64.encode(scalar), body.clone()];
    for text in &texts {
        assert!(
            !run.stdout.contains(text.as_str()) && !run.stderr.contains(text.as_str()),
            "{run}"
        );
    }
    let mut searched = 0;
    for file in walkdir::WalkDir::new(registry.data_dir())
        .into_iter()
        .flatten()
    {
        if !file.file_type().is_file() {
            continue;
        }
        searched += 1;
        let bytes = fs::read(file.path()).unwrap();
        let lossy = String::from_utf8_lossy(&bytes);
        let leaked = bytes.windows(32).any(|w| w == scalar)
            || texts.iter().any(|t| lossy.contains(t.as_str()));
        assert!(!leaked, "the key is in {}", file.path().display());
    }
    assert!(searched > 10, "the registry stored {searched} files");
    let image = format!(
        "{}@{}",
        registry.reference("leak"),
        run.stdout.lines().next().unwrap().trim()
    );
    let public = tempdir();
    let public_key = public.path().join("key.pub");
    let derived = capture(
        Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key),
    );
    derived.assert_success();
    fs::write(&public_key, derived.stdout).unwrap();
    sigstore(&["verify", &image, public_key.to_str().unwrap()]).assert_success();
}

#[test]
fn generate_key_pair_never_replaces_a_file() {
    let (dir, key, public) = generated_key();
    let text = fs::read_to_string(&key).unwrap();
    assert!(
        text.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"),
        "{text}"
    );
    assert!(
        fs::read_to_string(&public)
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----\n")
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o077,
        0,
        "the key is private"
    );
    fs::remove_file(&public).unwrap();
    let run = capture(
        tool(dir.path())
            .arg("generate-key-pair")
            .env("COSIGN_PASSWORD", "other"),
    );
    assert_one_line_error(&run, &["cosign.key exists"]);
    assert_eq!(fs::read_to_string(&key).unwrap(), text);
    assert!(!public.exists(), "nothing written when refusing");
    // Without a password and with no terminal to ask on: one line, nothing written.
    let empty = tempdir();
    let run = capture(
        tool(empty.path())
            .arg("generate-key-pair")
            .env_remove("COSIGN_PASSWORD")
            .stdin(std::process::Stdio::null()),
    );
    assert_one_line_error(&run, &["COSIGN_PASSWORD is not set"]);
    assert_eq!(fs::read_dir(empty.path()).unwrap().count(), 0);
}
