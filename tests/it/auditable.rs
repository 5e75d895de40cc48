//! Auditable binaries: every image's binary carries its dependency list (cargo-auditable's
//! `.dep-v0` section), so scanners list the crates it links straight from the image.
//!
//! Read by real consumers: syft and trivy (from scripts/setup-template-tools; a missing one
//! fails the test naming the script), `auditable-info` (what `cargo audit bin` uses), and
//! goblin for the sections. What the binary should list is computed here by `cargo tree` for
//! the target, never written down.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::*;
use serde_json::Value;

const ARM64_TARGET: &str = "aarch64-unknown-linux-musl";

type Crates = BTreeSet<(String, String)>;

/// The crates cargo links into the depgraph binary for `triple`: `cargo tree` over normal
/// edges only (no build- or dev-dependencies, nothing below a proc-macro), the root included.
fn linked_crates(triple: &str) -> Crates {
    let manifest = fixtures_dir().join("depgraph/Cargo.toml");
    let run = capture(
        Command::new("cargo")
            .args(["tree", "--locked", "--offline", "--target", triple])
            .args(["-e", "normal,no-proc-macro", "--prefix", "none"])
            .args(["--format", "{p}"])
            .arg("--manifest-path")
            .arg(&manifest),
    );
    run.assert_success();
    let crates: Crates = run
        .stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?;
            let version = words.next()?.strip_prefix('v')?;
            Some((name.to_string(), version.to_string()))
        })
        .collect();
    assert!(
        crates.len() >= 20,
        "the fixture's graph is too small: {crates:?}"
    );
    crates
}

/// The depgraph fixture's amd64 image in an `oci:` layout.
fn depgraph_amd64() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| build_fixture("depgraph", &["--platform", "linux/amd64"]))
}

/// Its arm64 image, in a layout of its own: syft 1.18 reads an `oci-dir:` holding one image
/// only, not a multi-platform index.
fn depgraph_arm64() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| build_fixture("depgraph", &["--platform", "linux/arm64"]))
}

/// The crates syft finds in the layout's image for `platform`.
fn syft_crates(layout: &Path, platform: &str) -> Crates {
    syft_scan(&format!("oci-dir:{}", layout.display()), platform)
}

/// The crates syft finds in `source` (`oci-dir:…`, `registry:…`) for `platform`.
fn syft_scan(source: &str, platform: &str) -> Crates {
    syft_artifacts(source, platform)
        .iter()
        .filter(|a| a["type"] == "rust-crate")
        .map(|a| {
            (
                a["name"].as_str().expect("name").to_string(),
                a["version"].as_str().expect("version").to_string(),
            )
        })
        .collect()
}

fn assert_lists_exactly_the_linked_crates(found: &Crates, want: &Crates, who: &str) {
    assert_eq!(found, want, "{who} lists other crates than cargo links");
    assert!(want.iter().any(|(n, _)| n == "greet"), "the path crate");
    for absent in ["winapi-util", "tempfile", "autocfg", "clap_derive"] {
        assert!(
            !found.iter().any(|(n, _)| n == absent),
            "{who} lists {absent}, which is not linked: {found:?}"
        );
    }
}

#[test]
#[ignore = "heavy: builds fixture images; needs the setup-template-tools checkers"]
fn syft_lists_every_linked_crate_of_the_amd64_image_at_its_locked_version() {
    let built = depgraph_amd64();
    let found = syft_crates(&built.layout.dir, "linux/amd64");
    assert_lists_exactly_the_linked_crates(&found, &linked_crates(MUSL_TARGET), "syft");
}

#[test]
#[ignore = "heavy: builds fixture images; needs the setup-template-tools checkers"]
fn syft_lists_every_linked_crate_of_the_arm64_image_too() {
    let built = depgraph_arm64();
    let found = syft_crates(&built.layout.dir, "linux/arm64");
    assert_lists_exactly_the_linked_crates(&found, &linked_crates(ARM64_TARGET), "syft");
}

/// What a user does after `--push`: scan the image in the registry, each platform of it.
#[test]
#[ignore = "heavy: needs docker-registry, the setup-template-tools checkers"]
fn syft_lists_the_crates_of_each_platform_of_a_pushed_multi_platform_image() {
    let registry = crate::support::registry::Registry::plain();
    let reference = registry.reference("depgraph:1");
    let project = Project::copy("depgraph");
    capture(
        tool(&project.root)
            .args(["build", "--locked", "--target-dir"])
            .arg(shared_target_dir("depgraph"))
            .args(["--platform", "linux/amd64", "--platform", "linux/arm64"])
            .args(["--push", "-t", &reference]),
    )
    .assert_success();
    for (platform, triple) in [("linux/amd64", MUSL_TARGET), ("linux/arm64", ARM64_TARGET)] {
        let found = syft_scan(&format!("registry:{reference}"), platform);
        assert_lists_exactly_the_linked_crates(&found, &linked_crates(triple), "syft");
    }
}

#[test]
#[ignore = "heavy: builds fixture images; needs the setup-template-tools checkers"]
fn trivy_lists_every_linked_crate_offline() {
    let built = depgraph_amd64();
    let cache = tempdir();
    // SBOM output needs no vulnerability database: nothing is downloaded.
    let run = capture(
        Command::new(setup_tool("trivy"))
            .args(["image", "--quiet", "--format", "cyclonedx"])
            .args(["--platform", "linux/amd64", "--offline-scan"])
            .args([
                "--skip-db-update",
                "--skip-java-db-update",
                "--skip-check-update",
            ])
            .arg("--cache-dir")
            .arg(cache.path())
            .arg("--input")
            .arg(&built.layout.dir),
    );
    run.assert_success();
    let doc: Value = serde_json::from_str(&run.stdout).expect("trivy's CycloneDX");
    let found: Crates = doc["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter(|c| c["type"] == "library")
        .filter(|c| {
            c["purl"]
                .as_str()
                .is_some_and(|p| p.starts_with("pkg:cargo/"))
        })
        .map(|c| {
            (
                c["name"].as_str().expect("name").to_string(),
                c["version"].as_str().expect("version").to_string(),
            )
        })
        .collect();
    assert_lists_exactly_the_linked_crates(&found, &linked_crates(MUSL_TARGET), "trivy");
}

/// The binary cargo left in `target` for `triple` (release profile).
fn binary_in(target: &Path, triple: &str) -> PathBuf {
    target.join(triple).join("release").join("depgraph")
}

fn has_dep_section(binary: &Path) -> bool {
    let bytes = fs::read(binary).expect("binary");
    let elf = goblin::elf::Elf::parse(&bytes).expect("ELF");
    elf.section_headers
        .iter()
        .any(|sh| elf.shdr_strtab.get_at(sh.sh_name) == Some(".dep-v0"))
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn the_embedded_list_reads_back_with_auditable_info_as_the_graph_cargo_resolved() {
    // The binaries as the images hold them (unpacked by umoci).
    for (built, triple) in [
        (depgraph_amd64(), MUSL_TARGET),
        (depgraph_arm64(), ARM64_TARGET),
    ] {
        let binary = built.bundle().file("usr/local/bin/depgraph");
        let info = auditable_info::audit_info_from_file(&binary, Default::default())
            .unwrap_or_else(|e| panic!("auditable-info cannot read {}: {e}", binary.display()));
        let roots: Vec<_> = info.packages.iter().filter(|p| p.root).collect();
        assert_eq!(roots.len(), 1);
        assert_eq!(
            (roots[0].name.as_str(), roots[0].source.clone()),
            ("depgraph", auditable_serde::Source::Local)
        );
        let linked: Crates = info
            .packages
            .iter()
            .filter(|p| p.kind == auditable_serde::DependencyKind::Runtime)
            .map(|p| (p.name.clone(), p.version.to_string()))
            .collect();
        assert_eq!(linked, linked_crates(triple), "{triple}");
        let build: BTreeSet<&str> = info
            .packages
            .iter()
            .filter(|p| p.kind == auditable_serde::DependencyKind::Build)
            .map(|p| p.name.as_str())
            .collect();
        for b in ["autocfg", "clap_derive", "serde_derive", "syn"] {
            assert!(build.contains(b), "{b} is a build-time crate: {build:?}");
        }
        // No path of the build machine: the path crate is just "local".
        let json = auditable_info::json_from_file(&binary, Default::default()).expect("json");
        let root = built.project.root.display().to_string();
        assert!(!json.contains(&root) && !json.contains("/tmp"), "{json}");
    }
    // And `verify` says so, with the count of the linked crates.
    let built = depgraph_amd64();
    let run = capture(
        tool(&built.project.root)
            .arg("verify")
            .arg(built.bundle().file("usr/local/bin/depgraph")),
    );
    run.assert_success();
    let want = format!(
        "dependency list of {} crates",
        linked_crates(MUSL_TARGET).len()
    );
    assert!(run.stdout.contains(&want), "{run}");
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn two_directories_give_one_digest_with_the_list_embedded() {
    let build_in = |n: &str| {
        let project = Project::copy("depgraph");
        let target = project.parent().join(format!("own-target-{n}"));
        let built = build(project, Some(&target), &[]);
        assert!(has_dep_section(&binary_in(&target, MUSL_TARGET)));
        built
    };
    let (a, b) = (build_in("a"), build_in("b"));
    assert_ne!(a.project.root, b.project.root);
    assert_eq!(a.run.digest(), b.run.digest());
}

/// `$CARGO_HOME`, else ~/.cargo: what the tool remaps to /cargo.
fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::home_dir().expect("home").join(".cargo"))
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn auditable_false_builds_exactly_what_plain_cargo_builds() {
    // Its own target dir: these builds link the binary without the list.
    let target = shared_target_dir("depgraph-not-auditable");
    let project = Project::copy("depgraph");
    project.append_manifest("\n[package.metadata.containerize]\nauditable = false\n");
    let off = build(project, Some(&target), &["-v"]);
    // One plain `cargo build`, no arguments of the tool's own for the binary.
    let running: Vec<&str> = off
        .run
        .stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("Running `") && l.contains("--message-format=json"))
        .collect();
    assert_eq!(running.len(), 1, "{}", off.run);
    assert!(
        running[0].contains("cargo build ") && !running[0].contains("-Clink-arg"),
        "{}",
        running[0]
    );
    assert!(!has_dep_section(&binary_in(&target, MUSL_TARGET)));

    // The flag says the same as the setting.
    let flagged = build(
        Project::copy("depgraph"),
        Some(&target),
        &["--auditable=false"],
    );
    assert_eq!(flagged.run.digest(), off.run.digest());

    // Plain cargo with only the tool's long-standing options (strip, remapped paths, the
    // epoch), then packed with --binary: the very same image.
    let plain_target = off.project.parent().join("plain-target");
    let root = &off.project.root;
    let remaps = [
        (root.clone(), "/build"),
        (cargo_home(), "/cargo"),
        (plain_target.clone(), "/build/target"),
    ];
    let mut remaps = remaps.to_vec();
    remaps.sort_by_key(|(p, _)| p.as_os_str().len());
    let flags: Vec<String> = remaps
        .iter()
        .map(|(p, to)| format!("\"--remap-path-prefix={}={to}\"", p.display()))
        .collect();
    capture(
        Command::new("cargo")
            .args(["build", "--release", "--locked", "--target", MUSL_TARGET])
            .arg("--target-dir")
            .arg(&plain_target)
            .args(["--config", "profile.release.strip=\"symbols\""])
            // `build` links pure Rust with the toolchain's rust-lld on every platform.
            .args([
                "--config",
                &format!("target.{MUSL_TARGET}.linker=\"rust-lld\""),
            ])
            .args([
                "--config",
                &format!("build.rustflags=[{}]", flags.join(", ")),
            ])
            .env("SOURCE_DATE_EPOCH", "0")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .current_dir(root),
    )
    .assert_success();
    let plain = binary_in(&plain_target, MUSL_TARGET);
    assert!(!has_dep_section(&plain));
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "test");
    let packed = capture(
        tool(root)
            .args(["build", "--locked", "--output", &layout.reference()])
            .arg("--binary")
            .arg(&plain),
    );
    packed.assert_success();
    assert_eq!(packed.digest(), off.run.digest());
}
