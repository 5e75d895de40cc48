//! Issue 23: images on a base (`from = "REF"`), the debug variant (`debug-from`), and the
//! bases themselves (tests/it/support/bases.rs: a busybox base from Debian's busybox-static and
//! a distroless-style base, each a two-platform index made with umoci, used as `oci:` layouts,
//! an `oci-archive:`, or pushed to a loopback docker-registry with skopeo, once with TLS and
//! htpasswd auth).
//!
//! The first section proves the bases are real images with real tools only (runc, qemu,
//! skopeo, syft), so that a failure further down is the tool's, not the fixture's. The second
//! is the list: the image runs (runc; arm64 under qemu), the debug variant's shell
//! works, skopeo and podman read it, the annotations, SBOMs, provenance and `Base` line name the
//! base's digest per platform, a moved tag is resolved again while a pinned base gives one
//! digest from two directories, a stopped registry or `--offline` builds from the store, a
//! damaged cached blob is fetched again and never shipped, the push mounts the base layers,
//! syft sees the base's dpkg package and the crates, the base's `nonroot` and passwd win, and
//! the refusals (collisions, a missing platform, `ca-certs = "base"` on scratch, `--debug`
//! without `debug-from`) are one-line errors. Images shared by several tests are built once
//! (`OnceLock`).
//!
//! Needs scripts/setup-test-env (runc, umoci, skopeo, podman, qemu-user-static,
//! docker-registry, and the busybox-static .debs it downloads) and scripts/setup-template-tools
//! (syft).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::*;
use crate::support::bases::{self, ARCHES, Base};
use crate::support::registry::{Credentials, Registry};
use goblin::elf::Elf;
use goblin::elf::header::{EM_AARCH64, EM_X86_64};
use serde_json::Value;

/// The packages syft finds in `source` for `platform`, as (type, name, version).
fn syft_packages(source: &str, platform: &str) -> Vec<(String, String, String)> {
    syft_artifacts(source, platform)
        .iter()
        .map(|a| {
            let field = |k: &str| a[k].as_str().unwrap_or_default().to_string();
            (field("type"), field("name"), field("version"))
        })
        .collect()
}

/// One platform of `base` copied by skopeo into a layout of its own (syft reads an `oci-dir:`
/// holding one image only).
fn single_platform_copy(base: &Base, arch: &str) -> (tempfile::TempDir, Layout) {
    let dir = tempdir();
    let layout = Layout::new(dir.path().join("oci"), arch);
    capture(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--preserve-digests"])
            .arg(base.platform(arch).reference())
            .arg(layout.reference()),
    )
    .assert_success();
    (dir, layout)
}

fn elf_machine(path: &Path) -> u16 {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    Elf::parse(&bytes)
        .unwrap_or_else(|e| panic!("{path:?} is not ELF: {e}"))
        .header
        .e_machine
}

// ---------------------------------------------------------------------------------------
// The fixtures themselves

#[test]
fn repository_drops_the_tag_and_the_digest_but_not_the_port() {
    assert_eq!(
        bases::repository("127.0.0.1:5000/a/b:1"),
        "127.0.0.1:5000/a/b"
    );
    assert_eq!(
        bases::repository("127.0.0.1:5000/a/b"),
        "127.0.0.1:5000/a/b"
    );
    assert_eq!(
        bases::repository("127.0.0.1:5000/b:1@sha256:00"),
        "127.0.0.1:5000/b"
    );
    assert_eq!(
        bases::repository("127.0.0.1:5000/b@sha256:00"),
        "127.0.0.1:5000/b"
    );
}

#[test]
#[ignore = "heavy: makes the base images; needs umoci, skopeo, the busybox-static .debs"]
fn both_bases_are_two_platform_indexes_whose_configs_say_each_architecture() {
    for base in [bases::busybox(), bases::distroless()] {
        let index = skopeo_manifest(&base.reference());
        assert_eq!(index["mediaType"], bases::INDEX_MEDIA_TYPE, "{index}");
        let digest = sha256_digest(&skopeo_manifest_bytes(&base.reference()));
        assert_eq!(digest, base.index_digest());
        let listed: Vec<(&str, &str)> = index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .map(|d| {
                (
                    d["platform"]["architecture"].as_str().expect("arch"),
                    d["digest"].as_str().expect("digest"),
                )
            })
            .collect();
        for arch in ARCHES {
            let manifest = base.manifest_digest(arch);
            assert!(listed.contains(&(arch, manifest.as_str())), "{index}");
            let config = skopeo_config(&base.platform(arch).reference());
            assert_eq!(config["architecture"], arch, "{config}");
            assert_eq!(config["os"], "linux", "{config}");
            assert_eq!(
                config_env_var(&config, "PATH").as_deref(),
                Some(bases::BASE_PATH)
            );
            assert_eq!(config["config"]["Labels"][bases::BASE_LABEL], base.name);
            assert_eq!(
                config_env_var(&config, bases::BASE_ENV).as_deref(),
                Some(base.name)
            );
            assert!(!base.layer_digests(arch).is_empty());
        }
        // The same index as an oci-archive.
        let dir = tempdir();
        let archive = base.archive(&dir.path().join("base.tar"));
        assert_eq!(
            sha256_digest(&skopeo_manifest_bytes(&archive)),
            base.index_digest()
        );
        assert_ne!(
            base.layer_digests("amd64"),
            base.layer_digests("arm64"),
            "{}: the platforms have the same layers",
            base.name
        );
    }
}

#[test]
#[ignore = "heavy: makes the busybox base; needs umoci, runc, qemu-user-static"]
fn busybox_base_runs_busybox_and_sh_under_runc_for_amd64_and_under_qemu_for_arm64() {
    let base = bases::busybox();
    let amd64 = base.platform("amd64").unpack();
    assert_eq!(elf_machine(&amd64.file("bin/busybox")), EM_X86_64);
    bases::set_args(&amd64, &["/bin/busybox", "echo", "hello from the base"]);
    let ran = amd64.run();
    ran.assert_success();
    assert_eq!(ran.stdout.trim(), "hello from the base", "{ran}");
    // /bin/sh is busybox's shell, and the config's PATH reaches it.
    bases::set_args(&amd64, &["/bin/sh", "-c", "echo ok; echo \"$PATH\""]);
    let ran = amd64.run();
    ran.assert_success();
    assert_eq!(
        ran.stdout.lines().collect::<Vec<_>>(),
        ["ok", bases::BASE_PATH],
        "{ran}"
    );

    let arm64 = base.platform("arm64").unpack();
    let sh = arm64.file("bin/sh");
    assert_eq!(
        fs::read_link(&sh).expect("sh is a symlink").to_str(),
        Some("busybox")
    );
    assert_eq!(elf_machine(&arm64.file("bin/busybox")), EM_AARCH64);
    let ran = bases::run_arm64(&sh, &["-c", "echo ok from arm64"]);
    ran.assert_success();
    assert_eq!(ran.stdout.trim(), "ok from arm64", "{ran}");
}

#[test]
#[ignore = "heavy: makes the distroless base; needs umoci, skopeo, syft (setup-template-tools)"]
fn distroless_base_has_nonroot_a_dpkg_status_syft_reads_and_the_hosts_certificates() {
    let base = bases::distroless();
    for arch in ARCHES {
        let config = base.config(arch);
        assert_eq!(config["config"]["User"], bases::NONROOT_UID.to_string());
        assert_eq!(config["config"]["WorkingDir"], bases::DISTROLESS_WORKDIR);
        let bundle = base.platform(arch).unpack();
        assert_eq!(
            fs::read_to_string(bundle.file("etc/passwd")).expect("passwd"),
            bases::DISTROLESS_PASSWD
        );
        assert!(
            fs::read_to_string(bundle.file("etc/group"))
                .expect("group")
                .contains("nonroot:x:65532:")
        );
        let home = fs::metadata(bundle.file("home/nonroot")).expect("home");
        assert_eq!((home.uid(), home.gid()), (65532, 65532));
        assert_eq!(home.permissions().mode() & 0o7777, 0o700);
        let tmp = fs::metadata(bundle.file("tmp")).expect("tmp");
        assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
        assert_eq!(
            fs::read(bundle.file(CA_BUNDLE)).expect("CA bundle"),
            fs::read("/etc/ssl/certs/ca-certificates.crt").expect("host CA bundle")
        );
        assert!(bundle.file("usr/share/zoneinfo/UTC").is_file());
        let status = fs::read_to_string(bundle.file("var/lib/dpkg/status.d/base-files"))
            .expect("dpkg status");
        assert!(
            status.contains(&format!("Architecture: {arch}\n")),
            "{status}"
        );
    }
    let paths = base.paths("arm64");
    for path in [
        "etc/passwd",
        "etc/group",
        "var/lib/dpkg/status.d/base-files",
        CA_BUNDLE,
    ] {
        assert!(paths.iter().any(|p| p == path), "no {path} in {paths:?}");
    }
    let (_dir, copy) = single_platform_copy(base, "amd64");
    let found = syft_packages(&format!("oci-dir:{}", copy.dir.display()), "linux/amd64");
    let (name, version) = bases::DPKG_PACKAGE;
    assert!(
        found.contains(&("deb".to_string(), name.to_string(), version.to_string())),
        "syft does not list the base's dpkg package: {found:?}"
    );
}

#[test]
#[ignore = "heavy: makes the bases; needs docker-registry, skopeo"]
fn bases_pushed_to_registries_keep_their_digests_and_serve_each_platform() {
    let registry = Registry::plain();
    let base = bases::busybox();
    let served = base.push(&registry, "bases/busybox:1");
    for arch in ARCHES {
        assert_eq!(served.manifest_digest(arch), base.manifest_digest(arch));
        let summary: Value = serde_json::from_slice(
            &capture(
                Command::new("skopeo")
                    .args(["inspect", "--override-arch", arch])
                    .args(registry.skopeo_flags(""))
                    .arg(format!("docker://{}", served.reference)),
            )
            .assert_success()
            .stdout
            .clone()
            .into_bytes(),
        )
        .expect("skopeo inspect JSON");
        assert_eq!(summary["Architecture"], arch, "{summary}");
        // (skopeo 1.9's `Digest` names the index; the layers are the platform's.)
        assert_eq!(
            summary["Layers"],
            serde_json::json!(base.layer_digests(arch)),
            "{summary}"
        );
    }
    assert_eq!(
        served.pinned(),
        format!("{}/bases/busybox@{}", registry.host(), base.index_digest())
    );

    // With TLS and htpasswd auth: pushed with the credentials, refused without them.
    let credentials = Credentials::new("base-user", "base-secret");
    let secure = Registry::secure(credentials);
    let base = bases::distroless();
    let served = base.push(&secure, "private/distroless:nonroot");
    assert_eq!(served.index_digest, base.index_digest());
    let anonymous = capture(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--no-creds"])
            .arg(format!("--cert-dir={}", secure.certs_dir().display()))
            .arg(format!("docker://{}", served.reference)),
    );
    assert!(
        !anonymous.status.success(),
        "read without credentials: {anonymous}"
    );
}

#[test]
#[ignore = "heavy: makes the busybox base; needs skopeo"]
fn a_copy_of_a_base_can_lack_a_platform() {
    let dir = tempdir();
    let base = bases::busybox();
    let only = base.with_only("arm64", &dir.path().join("base"));
    let index = skopeo_manifest(&only.reference());
    let listed: Vec<&str> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|d| d["digest"].as_str().expect("digest"))
        .collect();
    assert_eq!(listed, [base.manifest_digest("arm64")], "{index}");
    assert_eq!(index["manifests"][0]["platform"]["architecture"], "arm64");
    // The original is untouched.
    assert_eq!(
        sha256_digest(&skopeo_manifest_bytes(&base.reference())),
        base.index_digest()
    );
}

// ---------------------------------------------------------------------------------------
// Images on a base

/// The first line the hello fixture prints.
const GREETING: &str = "hello from cargo-containerize";
/// Both platforms, as `--platform` takes them.
const BOTH: &str = "linux/amd64,linux/arm64";
const BASE_NAME: &str = "org.opencontainers.image.base.name";
const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
/// Where the hello fixture's binary goes in an image.
const HELLO_PATH: &str = "usr/local/bin/hello";

/// A TOML basic string holding `text`.
fn toml_str(text: &str) -> String {
    serde_json::to_string(text).expect("a JSON string is a TOML basic string")
}

/// A copy of hello with `[package.metadata.containerize]` holding `settings` (TOML lines).
fn hello_with(settings: &str) -> Project {
    let project = Project::copy("hello");
    project.append_manifest(&format!("[package.metadata.containerize]\n{settings}\n"));
    project
}

/// An empty `DOCKER_CONFIG`, so that no credentials of the machine reach a test.
fn no_credentials() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| tempdir().keep())
}

/// `cargo containerize build --locked --target-dir TARGET` in `project`, with the tool's own
/// cache (remembered answers: the base's tag resolution) in `cache` and no credentials from the
/// machine.
fn build_in(project: &Project, target: &Path, cache: &Path) -> Command {
    let mut cmd = tool(&project.root);
    cmd.args(["build", "--locked", "--target-dir"])
        .arg(target)
        .env("CARGO_CONTAINERIZE_CACHE", cache)
        .env("DOCKER_CONFIG", no_credentials())
        .env_remove("REGISTRY_AUTH_FILE");
    cmd
}

/// The `Base NAME@sha256:…` status line of a run, as (NAME, digest).
fn base_line(run: &Run) -> (String, String) {
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Base "))
        .collect();
    assert_eq!(lines.len(), 1, "want one `Base` status line: {run}");
    let (name, digest) = lines[0]["Base ".len()..]
        .trim()
        .rsplit_once('@')
        .unwrap_or_else(|| panic!("no @digest in {:?}: {run}", lines[0]));
    assert!(is_sha256_digest(digest), "{:?}: {run}", lines[0]);
    (name.to_string(), digest.to_string())
}

fn blob_json(layout: &Layout, digest: &str) -> Value {
    let bytes = fs::read(layout.blob(digest)).unwrap_or_else(|e| panic!("blob {digest}: {e}"));
    assert_eq!(sha256_digest(&bytes), digest, "blob {digest} is damaged");
    serde_json::from_slice(&bytes).expect("blob JSON")
}

/// The index a layout holds under its tag, and the digest of each architecture's manifest.
fn platform_manifests(layout: &Layout) -> (Value, BTreeMap<String, String>) {
    let index = skopeo_manifest(&layout.reference());
    assert_eq!(index["mediaType"], bases::INDEX_MEDIA_TYPE, "{index}");
    let manifests = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter(|d| d["platform"]["architecture"].is_string())
        .map(|d| {
            (
                d["platform"]["architecture"].as_str().unwrap().to_string(),
                d["digest"].as_str().expect("digest").to_string(),
            )
        })
        .collect();
    (index, manifests)
}

/// One platform of a multi-platform layout, copied by skopeo into a layout of its own (umoci
/// unpacks single images only).
fn one_platform(layout: &Layout, arch: &str) -> (tempfile::TempDir, Layout) {
    let dir = tempdir();
    let copy = Layout::new(dir.path().join("oci"), arch);
    capture(
        Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--preserve-digests",
                "--override-arch",
                arch,
            ])
            .arg(layout.reference())
            .arg(copy.reference()),
    )
    .assert_success();
    (dir, copy)
}

/// The same layout under another tag (the debug variant is `<tag>-debug` beside the image).
fn tagged(layout: &Layout, tag: &str) -> Layout {
    Layout::new(&layout.dir, tag)
}

/// Asserts the image's bottom layers are the base's, for `arch`; returns our layers above them.
fn layers_above_base(image: &Layout, base: &Base, arch: &str) -> Vec<String> {
    let layers = image.layer_digests();
    let below = base.layer_digests(arch);
    assert!(
        layers.len() > below.len() && layers[..below.len()] == below[..],
        "the {arch} image does not start with the {} base's layers: {layers:?} vs {below:?}",
        base.name
    );
    layers[below.len()..].to_vec()
}

/// A fresh target directory, and whether cargo built anything for a musl target in it.
fn built_anything(target: &Path) -> bool {
    ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"]
        .iter()
        .any(|t| target.join(t).exists())
}

/// hello on the busybox base (`--from oci:…:latest`), both platforms.
fn on_busybox() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        build_fixture(
            "hello",
            &["--from", &bases::busybox().reference(), "--platform", BOTH],
        )
    })
}

/// hello on the distroless base with its debug variant on the busybox base, both platforms,
/// from the settings: `test` and `test-debug` in one layout.
fn with_debug() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let project = hello_with(&format!(
            "from = {}\ndebug-from = {}",
            toml_str(&bases::distroless().reference()),
            toml_str(&bases::busybox().reference())
        ));
        build(
            project,
            Some(&shared_target_dir("hello")),
            &["--debug", "--platform", BOTH],
        )
    })
}

/// hello on the distroless base, amd64 only, with the JSON report.
fn on_distroless() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        build_fixture(
            "hello",
            &[
                "--from",
                &bases::distroless().reference(),
                "--platform",
                "linux/amd64",
                "--message-format",
                "json",
            ],
        )
    })
}

#[test]
#[ignore = "heavy: builds on the busybox base; needs umoci, runc, skopeo, qemu-user-static"]
fn image_on_the_busybox_base_runs_with_the_bases_environment_and_our_entrypoint() {
    let built = on_busybox();
    let base = bases::busybox();
    let (_dir, amd64) = one_platform(&built.layout, "amd64");
    layers_above_base(&amd64, base, "amd64");
    let bundle = amd64.unpack();
    let ran = bundle.run();
    ran.assert_success();
    assert_eq!(ran.stdout.lines().next(), Some(GREETING), "{ran}");
    // The entrypoint and cmd are ours: the base's `Cmd ["sh"]` is not passed to the binary.
    assert_eq!(stdout_value(&ran, "args"), Some(""), "{ran}");
    // The base's environment is kept; the base has no user, so the default nonroot applies.
    assert_eq!(stdout_env(&ran, bases::BASE_ENV), Some("busybox"), "{ran}");
    assert_eq!(stdout_env(&ran, "PATH"), Some(bases::BASE_PATH), "{ran}");
    assert_eq!(stdout_value(&ran, "uid"), Some("65532"), "{ran}");
    // And the base's own program is still there and works.
    bases::set_args(&bundle, &["/bin/busybox", "echo", "busybox still works"]);
    let ran = bundle.run();
    ran.assert_success();
    assert_eq!(ran.stdout.trim(), "busybox still works", "{ran}");

    let (_dir, arm64) = one_platform(&built.layout, "arm64");
    layers_above_base(&arm64, base, "arm64");
    let bundle = arm64.unpack();
    assert_eq!(elf_machine(&bundle.file(HELLO_PATH)), EM_AARCH64);
    let ran = bases::run_arm64(&bundle.file(HELLO_PATH), &[]);
    ran.assert_success();
    assert_eq!(ran.stdout.lines().next(), Some(GREETING), "{ran}");
    let ran = bases::run_arm64(&bundle.file("bin/sh"), &["-c", "echo ok"]);
    ran.assert_success();
    assert_eq!(ran.stdout.trim(), "ok", "{ran}");
}

#[test]
#[ignore = "heavy: builds on two bases; needs umoci, runc, skopeo, qemu-user-static"]
fn debug_variant_has_a_working_shell_and_the_same_binary_while_the_main_image_has_none() {
    let built = with_debug();
    let main = &built.layout;
    let debug = tagged(main, "test-debug");
    let (_, main_manifests) = platform_manifests(main);
    let (_, debug_manifests) = platform_manifests(&debug);
    for arch in ARCHES {
        let (_main_dir, main_image) = one_platform(main, arch);
        let (_debug_dir, debug_image) = one_platform(&debug, arch);
        assert_eq!(
            main_image.manifest(),
            blob_json(main, &main_manifests[arch])
        );
        assert_eq!(
            debug_image.manifest(),
            blob_json(main, &debug_manifests[arch])
        );
        let ours = layers_above_base(&main_image, bases::distroless(), arch);
        let debug_ours = layers_above_base(&debug_image, bases::busybox(), arch);
        // The same binary: the binary layer (ours, on top) is one blob in both.
        assert_eq!(
            ours.last(),
            debug_ours.last(),
            "{arch}: the debug variant's binary layer differs"
        );
        let main_bundle = main_image.unpack();
        assert!(
            fs::symlink_metadata(main_bundle.file("bin/sh")).is_err(),
            "{arch}: the main image has a shell"
        );
        let bundle = debug_image.unpack();
        if arch == "amd64" {
            bases::set_args(&bundle, &["/bin/sh", "-c", "echo ok"]);
            let ran = bundle.run();
            ran.assert_success();
            assert_eq!(ran.stdout.trim(), "ok", "{ran}");
            // Its entrypoint is the binary, with the debug base's environment.
            bases::set_args(&bundle, &[&format!("/{HELLO_PATH}")]);
            let ran = bundle.run();
            ran.assert_success();
            assert_eq!(ran.stdout.lines().next(), Some(GREETING), "{ran}");
            assert_eq!(stdout_env(&ran, bases::BASE_ENV), Some("busybox"), "{ran}");
            let config = debug_image.config();
            assert_eq!(
                config["config"]["Entrypoint"],
                serde_json::json!([format!("/{HELLO_PATH}")])
            );
        } else {
            let ran = bases::run_arm64(&bundle.file("bin/sh"), &["-c", "echo ok"]);
            ran.assert_success();
            assert_eq!(ran.stdout.trim(), "ok", "{ran}");
            let ran = bases::run_arm64(&bundle.file(HELLO_PATH), &[]);
            ran.assert_success();
            assert_eq!(ran.stdout.lines().next(), Some(GREETING), "{ran}");
        }
    }
}

#[test]
#[ignore = "heavy: builds on the busybox base; needs skopeo, podman, docker-registry"]
fn skopeo_and_podman_read_the_image_on_a_base() {
    let built = on_busybox();
    for arch in ARCHES {
        let summary = skopeo_json(&[
            "inspect",
            "--override-arch",
            arch,
            &built.layout.reference(),
        ]);
        assert_eq!(summary["Architecture"], arch, "{summary}");
        let layers: Vec<String> = summary["Layers"]
            .as_array()
            .expect("Layers")
            .iter()
            .map(|l| l.as_str().expect("layer").to_string())
            .collect();
        let base_layers = bases::busybox().layer_digests(arch);
        assert_eq!(layers[..base_layers.len()], base_layers[..], "{summary}");
    }
    // podman pulls it (both platforms in a registry; podman takes the host's).
    let registry = Registry::plain();
    let reference = registry.reference("hello-on-busybox:1");
    capture(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--all", "--preserve-digests"])
            .args(registry.skopeo_flags("dest-"))
            .arg(built.layout.reference())
            .arg(format!("docker://{reference}")),
    )
    .assert_success();
    let podman = crate::support::podman::Podman::new();
    podman
        .podman(&["pull", "-q", "--tls-verify=false", &reference])
        .assert_success();
    let id = reference.as_str();
    let ran = podman.run(id, &[]);
    ran.assert_success();
    assert_eq!(ran.stdout.lines().next(), Some(GREETING), "{ran}");
    assert_eq!(stdout_env(&ran, bases::BASE_ENV), Some("busybox"), "{ran}");
    let shell = capture(
        podman
            .cmd()
            .args(["run", "--rm", "--network=none", "--entrypoint", "/bin/sh"])
            .arg(id)
            .args(["-c", "echo ok from podman"]),
    );
    shell.assert_success();
    assert_eq!(shell.stdout.trim(), "ok from podman", "{shell}");
}

/// `skopeo ARGS...` as JSON.
fn skopeo_json(args: &[&str]) -> Value {
    let run = capture(Command::new("skopeo").args(args));
    run.assert_success();
    serde_json::from_str(&run.stdout).expect("skopeo JSON")
}

/// Every string in a JSON document that starts with `pkg:oci/`.
fn oci_purls(doc: &Value, found: &mut Vec<String>) {
    match doc {
        Value::String(s) if s.starts_with("pkg:oci/") => found.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| oci_purls(v, found)),
        Value::Object(map) => map.values().for_each(|v| oci_purls(v, found)),
        _ => {}
    }
}

#[test]
#[ignore = "heavy: builds on a registry base; needs docker-registry, skopeo"]
fn annotations_sboms_provenance_and_the_base_line_name_the_resolved_base_digest() {
    let registry = Registry::plain();
    let served = bases::busybox().push(&registry, "bases/busybox:1");
    let project = Project::copy("hello");
    let cache = tempdir();
    let out = tempdir();
    let layout = Layout::new(out.path().join("oci"), "test");
    let sboms = out.path().join("sboms");
    let run = capture(
        build_in(&project, &shared_target_dir("hello"), cache.path())
            .args(["--from", &served.reference, "--platform", BOTH])
            .args(["--output", &layout.reference()])
            .arg("--sbom-dir")
            .arg(&sboms)
            .arg("--layout-referrers"),
    );
    run.assert_success();
    assert_eq!(
        base_line(&run),
        (served.reference.clone(), served.index_digest.clone())
    );
    let (index, manifests) = platform_manifests(&layout);
    assert_eq!(
        run.digest(),
        sha256_digest(&skopeo_manifest_bytes(&layout.reference()))
    );
    assert_eq!(index["annotations"][BASE_NAME], served.reference, "{index}");
    assert_eq!(
        index["annotations"][BASE_DIGEST], served.index_digest,
        "{index}"
    );
    for arch in ARCHES {
        let manifest = blob_json(&layout, &manifests[arch]);
        assert_eq!(
            manifest["annotations"][BASE_NAME], served.reference,
            "{manifest}"
        );
        assert_eq!(
            manifest["annotations"][BASE_DIGEST],
            served.manifest_digest(arch),
            "{arch}: {manifest}"
        );
        // Both SBOMs list the base image with its digest and registry.
        for ext in ["spdx.json", "cdx.json"] {
            let path = sboms.join(format!("hello-{arch}.{ext}"));
            let doc: Value = serde_json::from_slice(
                &fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            )
            .expect("SBOM JSON");
            let mut purls = Vec::new();
            oci_purls(&doc, &mut purls);
            let hexes = [
                &served.manifest_digest(arch)[7..],
                &served.index_digest[7..],
            ];
            assert!(
                purls.iter().any(|p| {
                    p.starts_with("pkg:oci/busybox@sha256%3A")
                        && hexes.iter().any(|h| p.contains(h))
                        && p.contains(&registry.addr().port().to_string())
                }),
                "{ext} of {arch} does not list the base image: {purls:?}"
            );
        }
        // The provenance statement lists it among the resolved dependencies.
        let statement = provenance_of(&layout, &manifests[arch]);
        let resolved = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap_or_else(|| panic!("no resolvedDependencies: {statement}"))
            .clone();
        assert!(
            resolved.iter().any(|d| {
                let sha = d["digest"]["sha256"].as_str().unwrap_or_default();
                sha == &served.manifest_digest(arch)[7..] || sha == &served.index_digest[7..]
            }),
            "{arch}: the provenance does not list the base: {resolved:?}"
        );
    }
}

/// The in-toto statement a layout lists (`--layout-referrers`) for the manifest `subject`.
fn provenance_of(layout: &Layout, subject: &str) -> Value {
    let index: Value =
        serde_json::from_slice(&fs::read(layout.dir.join("index.json")).expect("index.json"))
            .expect("index.json");
    let found: Vec<Value> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter(|d| d["artifactType"] == "application/vnd.in-toto+json")
        .map(|d| blob_json(layout, d["digest"].as_str().expect("digest")))
        .filter(|m| m["subject"]["digest"] == subject)
        .collect();
    assert_eq!(found.len(), 1, "want one provenance referrer of {subject}");
    blob_json(
        layout,
        found[0]["layers"][0]["digest"].as_str().expect("layer"),
    )
}

#[test]
#[ignore = "heavy: builds hello three times on a registry base; needs docker-registry"]
fn a_moved_base_tag_changes_the_printed_digest_and_a_pinned_base_gives_one_digest_from_two_directories()
 {
    let registry = Registry::plain();
    let first = bases::busybox().push(&registry, "bases/moving:1");
    let project = hello_with(&format!("from = {}", toml_str(&first.reference)));
    let cache = tempdir();
    let build_once = |project: &Project, target: &Path| {
        let run =
            capture(build_in(project, target, cache.path()).args(["--platform", "linux/amd64"]));
        run.assert_success();
        run
    };
    let before = build_once(&project, &shared_target_dir("hello"));
    assert_eq!(base_line(&before).1, first.index_digest);

    // The tag moves to another image: the next build resolves it again.
    let moved = bases::distroless().push(&registry, "bases/moving:1");
    assert_ne!(moved.index_digest, first.index_digest);
    let after = build_once(&project, &shared_target_dir("hello"));
    assert_eq!(
        base_line(&after),
        (first.reference.clone(), moved.index_digest.clone())
    );
    assert_ne!(
        after.digest(),
        before.digest(),
        "the image ignored the moved tag"
    );

    // Pinned by digest (to the first image, which the tag no longer names), from two
    // directories with their own target dirs: one image digest.
    let pinned = first.pinned();
    let digests: Vec<String> = (0..2)
        .map(|_| {
            let copy = hello_with(&format!("from = {}", toml_str(&pinned)));
            let run = build_once(&copy, &copy.parent().join("target"));
            assert_eq!(base_line(&run).1, first.index_digest, "{run}");
            run.digest()
        })
        .collect();
    assert_eq!(
        digests[0], digests[1],
        "a pinned base built differently in two directories"
    );
    assert_ne!(digests[0], after.digest());
}

#[test]
#[ignore = "heavy: builds hello on a registry base; needs docker-registry"]
fn with_the_registry_stopped_or_offline_a_second_build_uses_the_store() {
    let registry = Registry::plain();
    let served = bases::busybox().push(&registry, "bases/busybox:1");
    let project = hello_with(&format!("from = {}", toml_str(&served.reference)));
    let (target, cache) = (tempdir(), tempdir());
    let build_once = |extra: &[&str]| {
        capture(
            build_in(&project, target.path(), cache.path())
                .args(["--platform", "linux/amd64"])
                .args(extra),
        )
    };
    let online = build_once(&[]);
    online.assert_success();
    drop(registry);
    let stopped = build_once(&[]);
    stopped.assert_success();
    assert_eq!(stopped.digest(), online.digest());
    assert_eq!(base_line(&stopped).1, served.index_digest);
    assert!(
        stopped
            .stderr
            .lines()
            .any(|l| l.starts_with("warning") && l.contains(&served.reference)),
        "no warning that the remembered resolution of the tag was used: {stopped}"
    );
    let offline = build_once(&["--offline"]);
    offline.assert_success();
    assert_eq!(offline.digest(), online.digest());
}

/// Flips one byte in the middle of a file, keeping its size.
fn corrupt(path: &Path) {
    let mut bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(path, bytes).expect("write the corrupted blob");
}

#[test]
#[ignore = "heavy: builds hello on a registry base; needs docker-registry"]
fn a_corrupted_cached_base_blob_is_fetched_again_and_never_shipped() {
    let registry = Registry::plain();
    let served = bases::busybox().push(&registry, "bases/busybox:1");
    let project = hello_with(&format!("from = {}", toml_str(&served.reference)));
    let (target, cache) = (tempdir(), tempdir());
    let layer = bases::busybox().layer_digests("amd64")[0].clone();
    let build_once = |out: &Path| {
        let layout = Layout::new(out.join("oci"), "test");
        let run = capture(build_in(&project, target.path(), cache.path()).args([
            "--platform",
            "linux/amd64",
            "--output",
            &layout.reference(),
        ]));
        (run, layout)
    };
    let layer_gets = |registry: &Registry| {
        registry
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.uri.contains(&layer[7..]) && r.status == 200)
            .count()
    };
    let first_out = tempdir();
    let (first, _) = build_once(first_out.path());
    first.assert_success();
    let stored = target
        .path()
        .join("containerize/cache/blobs/sha256")
        .join(&layer[7..]);
    assert!(
        stored.is_file(),
        "the base layer is not in the blob store: {first}"
    );
    let fetched = layer_gets(&registry);
    assert!(fetched >= 1, "the base layer was never fetched");

    corrupt(&stored);
    let second_out = tempdir();
    let (second, layout) = build_once(second_out.path());
    second.assert_success();
    assert_eq!(second.digest(), first.digest());
    assert!(
        layer_gets(&registry) > fetched,
        "the damaged blob was not fetched again"
    );
    let shipped = fs::read(layout.blob(&layer)).expect("the layer in the output");
    assert_eq!(
        sha256_digest(&shipped),
        layer,
        "a damaged base layer was shipped"
    );
    assert_eq!(sha256_digest(&fs::read(&stored).expect("stored")), layer);

    // Damaged again, and the registry gone: the build fails and writes nothing.
    corrupt(&stored);
    drop(registry);
    let third_out = tempdir();
    let (third, _) = build_once(third_out.path());
    assert_one_line_error(&third, &[]);
    assert!(
        snapshot(third_out.path()).is_empty(),
        "a failed build wrote {:?}",
        snapshot(third_out.path())
    );
}

/// A `DOCKER_CONFIG` directory whose config.json holds `credentials` for `host`.
fn docker_config_for(host: &str, credentials: &Credentials) -> PathBuf {
    let dir = tempdir().keep();
    let config = serde_json::json!({ "auths": { host: { "auth": credentials.basic_auth() } } });
    fs::write(dir.join("config.json"), config.to_string()).expect("write config.json");
    dir
}

#[test]
#[ignore = "heavy: builds hello on a registry base; needs docker-registry (TLS, auth), skopeo"]
fn the_push_mounts_the_base_layers_from_the_bases_repository_and_uploads_none_of_them() {
    let credentials = Credentials::new("base-user", "base-secret-23");
    let registry = Registry::secure(credentials.clone());
    let served = bases::busybox().push(&registry, "bases/busybox:1");
    let target = registry.reference("app/hello:1");
    let project = Project::copy("hello");
    let cache = tempdir();
    let run = capture(
        build_in(&project, &shared_target_dir("hello"), cache.path())
            .env(
                "DOCKER_CONFIG",
                docker_config_for(&registry.host(), &credentials),
            )
            .args(["--from", &served.reference, "--platform", BOTH])
            .arg("--registry-ca")
            .arg(registry.ca_file())
            .args(["--push", "-t", &target, "--message-format", "json"]),
    );
    run.assert_success();
    for secret in [credentials.password.clone(), credentials.basic_auth()] {
        assert!(
            !run.stdout.contains(&secret) && !run.stderr.contains(&secret),
            "{run}"
        );
    }
    let report = run.json();
    let base_layers: Vec<String> = ARCHES
        .iter()
        .flat_map(|arch| bases::busybox().layer_digests(arch))
        .collect();
    let requests = registry.requests();
    for layer in &base_layers {
        let hex = &layer[7..];
        let uploads: Vec<_> = requests
            .iter()
            .filter(|r| {
                r.uri.starts_with("/v2/app/hello/blobs/uploads/")
                    && (r.method == "PUT" || r.method == "PATCH")
                    && r.uri.contains(hex)
            })
            .collect();
        assert!(
            uploads.is_empty(),
            "base layer {layer} was uploaded: {uploads:?}"
        );
        assert!(
            requests.iter().any(|r| r.method == "POST"
                && r.uri.starts_with("/v2/app/hello/blobs/uploads/")
                && r.uri.contains("mount=")
                && r.uri.contains(hex)
                && r.status == 201),
            "base layer {layer} was not mounted: {requests:?}"
        );
    }
    assert!(
        report["blobs_mounted"].as_u64().unwrap_or(0) >= base_layers.len() as u64,
        "{report}"
    );
    // The pushed image is whole: skopeo fetches and checks every blob.
    let copy = tempdir();
    registry
        .copy_to_layout("app/hello:1", &copy.path().join("oci"), "copied")
        .unwrap_or_else(|e| panic!("skopeo copy of the pushed image: {e}"));
}

#[test]
#[ignore = "heavy: builds depgraph on the distroless base; needs syft (setup-template-tools)"]
fn syft_lists_the_distroless_bases_dpkg_package_and_the_crates() {
    let built = build_fixture(
        "depgraph",
        &[
            "--from",
            &bases::distroless().reference(),
            "--platform",
            "linux/amd64",
        ],
    );
    let found = syft_packages(
        &format!("oci-dir:{}", built.layout.dir.display()),
        "linux/amd64",
    );
    let (name, version) = bases::DPKG_PACKAGE;
    assert!(
        found.contains(&("deb".to_string(), name.to_string(), version.to_string())),
        "syft does not list the base's dpkg package: {found:?}"
    );
    let crates: Vec<&(String, String, String)> =
        found.iter().filter(|(t, _, _)| t == "rust-crate").collect();
    assert!(
        crates.iter().any(|(_, n, _)| n == "greet") && crates.len() >= 20,
        "syft does not list the binary's crates: {crates:?}"
    );
}

#[test]
#[ignore = "heavy: builds hello on the distroless base; needs umoci, runc"]
fn the_distroless_bases_nonroot_user_home_and_passwd_are_used_and_ours_are_not_layered() {
    let built = on_distroless();
    let base = bases::distroless();
    let config = built.layout.config();
    assert_eq!(
        config["config"]["User"],
        bases::NONROOT_UID.to_string(),
        "{config}"
    );
    assert_eq!(
        config["config"]["WorkingDir"],
        bases::DISTROLESS_WORKDIR,
        "{config}"
    );
    assert_eq!(
        config["config"]["Labels"][bases::BASE_LABEL],
        "distroless",
        "the base's labels are gone: {config}"
    );
    for ours in layers_above_base(&built.layout, base, "amd64") {
        for entry in built.layout.layer_entries(&ours) {
            let path = entry.path.trim_start_matches("./").trim_start_matches('/');
            assert!(
                !["etc/passwd", "etc/group"].contains(&path),
                "a layer of ours ({ours}) carries {path}"
            );
        }
    }
    let bundle = built.bundle();
    assert_eq!(
        fs::read_to_string(bundle.file("etc/passwd")).expect("passwd"),
        bases::DISTROLESS_PASSWD
    );
    let ran = bundle.run();
    ran.assert_success();
    assert_eq!(ran.stdout.lines().next(), Some(GREETING), "{ran}");
    assert_eq!(stdout_value(&ran, "uid"), Some("65532"), "{ran}");
    assert_eq!(
        stdout_value(&ran, "cwd"),
        Some(bases::DISTROLESS_WORKDIR),
        "{ran}"
    );
    assert_eq!(
        stdout_env(&ran, bases::BASE_ENV),
        Some("distroless"),
        "{ran}"
    );
}

#[test]
#[ignore = "heavy: builds hello on the distroless base; needs umoci"]
fn ca_certs_and_tzdata_from_the_base_add_no_layer_of_ours() {
    let project = hello_with(&format!(
        "from = {}\nca-certs = \"base\"\ntzdata = \"base\"",
        toml_str(&bases::distroless().reference())
    ));
    let built = build(
        project,
        Some(&shared_target_dir("hello")),
        &["--platform", "linux/amd64", "--message-format", "json"],
    );
    let report = built.run.json();
    let what: Vec<&str> = report["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .filter_map(|l| l["what"].as_str())
        .collect();
    assert!(
        !what.contains(&"ca certificates") && !what.contains(&"tzdata"),
        "layers of ours for what the base has: {what:?}"
    );
    let bundle = built.bundle();
    assert_eq!(
        fs::read(bundle.file(CA_BUNDLE)).expect("CA bundle"),
        fs::read("/etc/ssl/certs/ca-certificates.crt").expect("the base's (the host's) bundle")
    );
    // The base's tzdata (UTC alone), not our bundled database.
    assert_eq!(
        bundle.files_under(ZONEINFO).into_iter().collect::<Vec<_>>(),
        ["UTC"]
    );
}

#[test]
#[ignore = "heavy: runs the tool; needs cargo metadata"]
fn ca_certs_or_tzdata_from_the_base_on_scratch_is_a_one_line_error_before_building() {
    for setting in ["ca-certs = \"base\"", "tzdata = \"base\""] {
        let project = hello_with(setting);
        let target = tempdir();
        let (run, layout, _out) = try_build(&project, Some(target.path()), &[]);
        let key = setting.split(' ').next().expect("key");
        assert_one_line_error(&run, &[key]);
        let line = error_line(&run);
        assert!(
            line.contains("scratch") || line.contains("from"),
            "the error does not say the base is missing: {run}"
        );
        assert!(!built_anything(target.path()), "it built first: {run}");
        assert!(!layout.dir.exists());
    }
}

#[test]
#[ignore = "heavy: builds hello on the busybox base"]
fn an_include_or_the_binary_path_colliding_with_a_base_file_is_a_one_line_error_naming_it() {
    let from = format!("from = {}", toml_str(&bases::busybox().reference()));
    let include = hello_with(&format!(
        "{from}\ninclude = [{{ src = \"assets/busybox\", dest = \"/bin/busybox\" }}]"
    ));
    include.write("assets/busybox", "not busybox\n");
    let binary_path = hello_with(&format!("{from}\nbinary-path = \"/bin/busybox\""));
    for project in [include, binary_path] {
        let (run, layout, _out) = try_build(
            &project,
            Some(&shared_target_dir("hello")),
            &["--platform", "linux/amd64"],
        );
        assert_one_line_error(&run, &["/bin/busybox", "base"]);
        assert!(!layout.dir.exists(), "a refused image was written: {run}");
    }
}

#[test]
#[ignore = "heavy: makes the bases; runs the tool"]
fn a_platform_the_base_lacks_is_a_one_line_error_naming_the_platforms_it_has_before_building() {
    let dir = tempdir();
    let only_amd64 = bases::busybox().with_only("amd64", &dir.path().join("base"));
    let project = Project::copy("hello");
    let target = tempdir();
    let (run, layout, _out) = try_build(
        &project,
        Some(target.path()),
        &["--from", &only_amd64.reference(), "--platform", BOTH],
    );
    assert_one_line_error(&run, &["linux/arm64", "linux/amd64"]);
    assert!(!built_anything(target.path()), "it built first: {run}");
    assert!(!layout.dir.exists());
}

#[test]
#[ignore = "heavy: runs the tool; needs cargo metadata"]
fn debug_without_debug_from_is_a_one_line_error() {
    let project = Project::copy("hello");
    let target = tempdir();
    let (run, layout, _out) = try_build(&project, Some(target.path()), &["--debug"]);
    assert_one_line_error(&run, &["debug-from"]);
    assert!(!built_anything(target.path()), "it built first: {run}");
    assert!(!layout.dir.exists());
}

#[test]
#[ignore = "heavy: builds hello on the busybox base from an oci-archive"]
fn a_base_from_an_oci_archive_gives_the_layers_of_the_same_base_from_its_layout() {
    let dir = tempdir();
    let archive = bases::busybox().archive(&dir.path().join("busybox.tar"));
    let built = build_fixture("hello", &["--from", &archive, "--platform", BOTH]);
    let (_, manifests) = platform_manifests(&built.layout);
    let (_, from_layout) = platform_manifests(&on_busybox().layout);
    for arch in ARCHES {
        let layers = |layout: &Layout, digest: &str| blob_json(layout, digest)["layers"].clone();
        assert_eq!(
            layers(&built.layout, &manifests[arch]),
            layers(&on_busybox().layout, &from_layout[arch]),
            "{arch}"
        );
    }
    assert_eq!(base_line(&built.run).1, bases::busybox().index_digest());
}

#[test]
#[ignore = "heavy: needs docker-registry"]
fn dockerfile_renders_the_final_stage_from_the_base_pinned_by_digest() {
    let registry = Registry::plain();
    let served = bases::busybox().push(&registry, "bases/busybox:1");
    let cache = tempdir();
    let repository = bases::repository(&served.reference).to_string();
    // A tag is resolved through the registry; a digest is used as given.
    for from in [served.reference.clone(), served.pinned()] {
        let project = hello_with(&format!("from = {}", toml_str(&from)));
        let run = capture(
            tool(&project.root)
                .args(["dockerfile", "-q"])
                .env("CARGO_CONTAINERIZE_CACHE", cache.path())
                .env("DOCKER_CONFIG", no_credentials()),
        );
        run.assert_success();
        let last_from = run
            .stdout
            .lines()
            .rfind(|l| l.starts_with("FROM "))
            .unwrap_or_else(|| panic!("no FROM line: {run}"));
        let image = last_from["FROM ".len()..]
            .split_whitespace()
            .find(|word| !word.starts_with("--"))
            .expect("the stage's image");
        assert!(
            image.starts_with(&repository) && image.ends_with(&format!("@{}", served.index_digest)),
            "the final stage is not the base pinned by digest ({from}): {last_from:?}"
        );
    }
}

#[test]
#[ignore = "heavy: builds hello on registry bases; needs docker-registry, skopeo"]
fn the_debug_variant_is_pushed_as_tag_debug_on_the_debug_base_signed_and_attested() {
    let registry = Registry::plain();
    let main_base = bases::distroless().push(&registry, "bases/distroless:nonroot");
    let debug_base = bases::busybox().push(&registry, "bases/busybox:1");
    let project = hello_with(&format!(
        "from = {}\ndebug-from = {}",
        toml_str(&main_base.reference),
        toml_str(&debug_base.reference)
    ));
    let cache = tempdir();
    let keys = tempdir();
    let password = "debug variant password";
    capture(
        tool(keys.path())
            .arg("generate-key-pair")
            .env("COSIGN_PASSWORD", password),
    )
    .assert_success();
    let run = capture(
        build_in(&project, &shared_target_dir("hello"), cache.path())
            .args(["--debug", "--platform", BOTH, "--message-format", "json"])
            .args(["--sign", "--key"])
            .arg(keys.path().join("cosign.key"))
            .args(["--push", "-t"])
            .arg(registry.reference("app/hello:2"))
            .env("COSIGN_PASSWORD", password),
    );
    run.assert_success();
    // The debug variant is a full image: the report names it, with its referrers (SBOMs,
    // provenance, about its own manifests), and it is signed and attested with the key.
    let report = run.json();
    let debug = &report["debug"];
    let debug_served = bases::served(&registry, "app/hello:2-debug");
    assert_eq!(debug["digest"], debug_served.index_digest, "{report}");
    assert_ne!(debug["digest"], report["digest"], "{report}");
    let pushed = debug["pushed"].as_array().expect("debug.pushed");
    assert!(
        pushed.iter().any(|p| p
            .as_str()
            .is_some_and(|p| p.contains("app/hello:2-debug@sha256:"))),
        "{report}"
    );
    for arch in ARCHES {
        let digest = debug_served.manifest_digest(arch);
        let kinds: Vec<&str> = debug["referrers"]
            .as_array()
            .expect("debug.referrers")
            .iter()
            .filter(|r| r["subject"] == digest)
            .filter_map(|r| r["artifactType"].as_str())
            .collect();
        assert!(
            kinds.contains(&"application/vnd.in-toto+json") && kinds.len() >= 2,
            "{arch}: the debug manifest's referrers are {kinds:?}: {report}"
        );
    }
    let verified = capture(
        tool(keys.path())
            .args(["verify-signature", &registry.reference("app/hello:2-debug")])
            .arg("--key")
            .arg(keys.path().join("cosign.pub")),
    );
    verified.assert_success();
    assert_eq!(verified.stdout.lines().count(), 3, "{verified}");
    assert!(
        verified.stdout.contains("https://slsa.dev/provenance/v1"),
        "{verified}"
    );
    for (tag, base, served) in [
        ("app/hello:2", bases::distroless(), &main_base),
        ("app/hello:2-debug", bases::busybox(), &debug_base),
    ] {
        let pushed = bases::served(&registry, tag);
        for arch in ARCHES {
            let manifest =
                registry.manifest(&format!("app/hello@{}", pushed.manifest_digest(arch)));
            let layers: Vec<String> = manifest["layers"]
                .as_array()
                .expect("layers")
                .iter()
                .map(|l| l["digest"].as_str().expect("digest").to_string())
                .collect();
            let below = base.layer_digests(arch);
            assert_eq!(layers[..below.len()], below[..], "{tag} {arch}");
            assert_eq!(
                manifest["annotations"][BASE_DIGEST],
                served.manifest_digest(arch),
                "{tag} {arch}: {manifest}"
            );
        }
    }
}
