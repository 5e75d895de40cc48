//! `cargo_containerize::registry::pull` against a real registry (Debian's docker-registry on a
//! loopback port): a two-platform image the tool pushed comes back, index, manifests and
//! every blob, byte for byte; a blob corrupted in the registry's storage is refused and
//! nothing of it kept; Basic auth over TLS works and a wrong password is a one-line error.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;
use crate::support::registry::{Credentials, Registry};
use cargo_containerize::blobs::BlobStore;
use cargo_containerize::registry::RegistryOptions;
use cargo_containerize::registry::auth::{Credential, Secret};
use cargo_containerize::registry::client::ManifestRef;
use cargo_containerize::registry::pull::Puller;
use cargo_containerize::util::digest::Digest;
use cargo_containerize::util::shell::Shell;
use oci_spec::image::MediaType;
use serde_json::Value;

const BOTH: &str = "linux/amd64,linux/arm64";
const USER: &str = "cct-puller";
const PASSWORD: &str = "pull-Pa55w0rd-not-in-output";

/// Options for the loopback registry, with `credential` (never the machine's stores).
fn options(credential: Credential, ca: Option<PathBuf>) -> RegistryOptions {
    RegistryOptions {
        credential: Some(credential),
        ca_file: ca,
        retries: 1,
        ..RegistryOptions::default()
    }
}

/// hello for both platforms, pushed by the tool to `reference` and written to `layout` in
/// the same run.
fn push_two_platforms(reference: &str, layout: &Layout) {
    let project = Project::copy("hello");
    let no_credentials = tempdir();
    let mut cmd = tool(&project.root);
    cmd.args(["build", "--locked", "--target-dir"])
        .arg(shared_target_dir("hello"))
        .args(["--platform", BOTH, "--push", "-t", reference, "--output"])
        .arg(layout.reference())
        .env("DOCKER_CONFIG", no_credentials.path())
        .env_remove("REGISTRY_AUTH_FILE");
    capture(&mut cmd).assert_success();
}

/// Where the registry's filesystem storage keeps blob `digest`.
fn stored_blob(registry: &Registry, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    registry
        .data_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// The layout's index.json entry for its tag: the pushed image's top descriptor.
fn top_digest(layout: &Layout) -> String {
    let index: Value =
        serde_json::from_slice(&fs::read(layout.dir.join("index.json")).expect("index.json"))
            .expect("index.json is JSON");
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == layout.tag.as_str())
        .and_then(|m| m["digest"].as_str())
        .expect("the tag's descriptor")
        .to_string()
}

fn fresh_store(dir: &Path) -> BlobStore {
    BlobStore::open(dir, &Shell::discard()).expect("a blob store")
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry"]
fn pull_returns_the_pushed_two_platform_image_and_refuses_a_corrupted_blob() {
    let registry = Registry::plain();
    let out = tempdir();
    let layout = Layout::new(out.path().join("oci"), "pushed");
    push_two_platforms(&registry.reference("pull/hello:two"), &layout);
    let top: Digest = top_digest(&layout).parse().expect("a sha256 digest");

    let puller = Puller::connect(
        &options(Credential::Anonymous, None),
        &registry.host(),
        "pull/hello",
        &Shell::discard(),
    )
    .expect("connect");
    // The tag and the digest name the same index.
    let resolved = puller
        .resolve(ManifestRef::Tag("two"))
        .expect("resolve the tag");
    assert_eq!(resolved.digest, top);
    assert_eq!(resolved.media_type, MediaType::ImageIndex);
    assert_eq!(
        puller
            .resolve(ManifestRef::Digest(&top))
            .expect("resolve the digest"),
        resolved
    );
    let index = puller.manifest(ManifestRef::Tag("two")).expect("the index");
    assert!(index.is_index());
    assert_eq!(index.descriptor, resolved);
    assert_eq!(
        index.bytes,
        fs::read(layout.blob(&top)).expect("index blob")
    );

    // Each platform's manifest, then its config and layers, into a fresh store.
    let store_dir = tempdir();
    let store = fresh_store(store_dir.path());
    let platforms: Vec<_> = index
        .references()
        .expect("index entries")
        .into_iter()
        .filter(|d| d.media_type == MediaType::ImageManifest)
        .collect();
    assert!(platforms.len() >= 2, "{platforms:?}");
    let mut layers = Vec::new();
    for p in &platforms {
        let manifest = puller
            .manifest(ManifestRef::Digest(&p.digest))
            .expect("a platform manifest");
        assert_eq!(&manifest.descriptor, p);
        assert_eq!(
            manifest.bytes,
            fs::read(layout.blob(&p.digest)).expect("manifest blob")
        );
        for blob in manifest.references().expect("config and layers") {
            puller
                .blob(&store, &blob.digest, blob.size)
                .expect("a blob");
            assert_eq!(
                fs::read(store.path(&blob.digest)).expect("pulled blob"),
                fs::read(layout.blob(&blob.digest)).expect("written blob"),
                "{}",
                blob.digest
            );
            if blob.media_type.as_ref().contains("layer") {
                layers.push(blob);
            }
        }
    }

    // A layer's bytes changed in the registry's storage (same size): refused, naming the
    // digest, and not in the store afterwards.
    let victim = layers.last().expect("a layer").clone();
    let path = stored_blob(&registry, &victim.digest);
    let mut bytes = fs::read(&path).expect("the stored layer");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&path, &bytes).expect("corrupt the stored layer");
    let other_dir = tempdir();
    let other = fresh_store(other_dir.path());
    let e = format!(
        "{:#}",
        puller
            .blob(&other, &victim.digest, victim.size)
            .expect_err("a corrupted blob is refused")
    );
    assert!(e.contains(victim.digest.as_str()), "{e}");
    assert!(!e.contains('\n'), "{e}");
    assert!(!other.has(&victim.digest), "{e}");
    // Nor anywhere else in it: no file named by it, none of its size (a temp left behind).
    let leftovers: Vec<PathBuf> = walk(other_dir.path())
        .into_iter()
        .filter(|p| {
            p.to_string_lossy().contains(victim.digest.hex())
                || fs::metadata(p).is_ok_and(|m| m.len() == victim.size)
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry, skopeo, htpasswd"]
fn pull_with_basic_auth_over_tls_and_a_wrong_password_is_a_one_line_error() {
    let registry = Registry::secure(Credentials::new(USER, PASSWORD));
    let source = build_fixture("hello", &[]);
    registry.skopeo_push(&source.layout.reference(), "auth/hello:1");
    let manifest_digest = sha256_digest(&registry.manifest_bytes("auth/hello:1"));
    let basic = |password: &str| Credential::Basic {
        username: USER.into(),
        password: Secret::new(password),
    };
    let ca = Some(registry.ca_file());

    let puller = Puller::connect(
        &options(basic(PASSWORD), ca.clone()),
        &registry.host(),
        "auth/hello",
        &Shell::discard(),
    )
    .expect("connect with the password");
    let manifest = puller
        .manifest(ManifestRef::Tag("1"))
        .expect("the manifest");
    assert_eq!(manifest.descriptor.digest, manifest_digest.as_str());
    let store_dir = tempdir();
    let store = fresh_store(store_dir.path());
    for blob in manifest.references().expect("config and layers") {
        puller
            .blob(&store, &blob.digest, blob.size)
            .expect("a blob");
        assert!(store.proven(&blob.digest, blob.size), "{}", blob.digest);
    }

    let wrong = Puller::connect(
        &options(basic("not-the-Pa55w0rd"), ca),
        &registry.host(),
        "auth/hello",
        &Shell::discard(),
    )
    .and_then(|p| p.manifest(ManifestRef::Tag("1")));
    let e = format!("{:#}", wrong.expect_err("a wrong password fails"));
    assert!(!e.contains('\n'), "{e}");
    assert!(e.contains("401"), "{e}");
    assert!(e.contains("docker login"), "{e}");
    assert!(!e.contains("not-the-Pa55w0rd"), "{e}");
}
