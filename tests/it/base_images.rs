//! Issue 23: images on a base (`from = "REF"`), the debug variant (`debug-from`), and the
//! bases themselves (tests/it/support/bases.rs: a busybox base from Debian's busybox-static and
//! a distroless-style base, each a two-platform index made with umoci, pushed to a loopback
//! docker-registry with skopeo).
//!
//! The first section proves the bases are real images with real tools only (runc, qemu,
//! skopeo, syft), so that a failure further down is the tool's, not the fixture's.
//!
//! Needs scripts/setup-test-env (runc, umoci, skopeo, qemu-user-static, docker-registry, and
//! the busybox-static .debs it downloads) and scripts/setup-template-tools (syft).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use crate::common::*;
use crate::support::bases::{self, ARCHES, Base};
use crate::support::registry::{Credentials, Registry};
use goblin::elf::Elf;
use goblin::elf::header::{EM_AARCH64, EM_X86_64};
use serde_json::Value;

/// The packages syft finds in `source` for `platform`, as (type, name, version).
fn syft_packages(source: &str, platform: &str) -> Vec<(String, String, String)> {
    let run = capture(
        Command::new(setup_tool("syft"))
            .args(["scan", "-q", "-o", "json", "--platform", platform])
            .arg(source)
            .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
            // The loopback registry speaks plain HTTP.
            .env("SYFT_REGISTRY_INSECURE_USE_HTTP", "true"),
    );
    run.assert_success();
    let doc: Value = serde_json::from_str(&run.stdout).expect("syft's JSON");
    doc["artifacts"]
        .as_array()
        .expect("artifacts")
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

fn elf_machine(path: &std::path::Path) -> u16 {
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
