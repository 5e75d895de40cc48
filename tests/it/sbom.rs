//! SBOMs (SPDX 2.3, CycloneDX 1.6) of the depgraph fixture: checked by the formats' own
//! validators (pyspdxtools from PyPI spdx-tools; cyclonedx-python-lib's strict 1.6 JSON schema
//! validator), against the crates cargo itself says the binary links (`cargo tree`) and the
//! checksums Cargo.lock holds; attached to the image as OCI 1.1 referrers, written by
//! `--sbom-dir`, printed by `cargo containerize sbom`. The validators come from
//! scripts/setup-template-tools (its virtualenv, or `$CONTAINERIZE_TOOLS_BIN`).

use crate::common::*;
use crate::support::registry::Registry;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const SPDX: &str = "application/spdx+json";
const CDX: &str = "application/vnd.cyclonedx+json";

/// `pyspdxtools -i FILE`: it parses the document and validates it against SPDX 2.3, and
/// prints what is wrong (its exit status says nothing, so its output must be empty).
fn assert_spdx_valid(file: &Path) {
    let run = capture(Command::new(setup_tool("pyspdxtools")).arg("-i").arg(file));
    run.assert_success();
    assert!(
        run.stdout.trim().is_empty() && run.stderr.trim().is_empty(),
        "pyspdxtools found problems in {}:\n{run}",
        file.display()
    );
}

/// cyclonedx-python-lib's strict JSON validator for CycloneDX 1.6.
fn assert_cyclonedx_valid(file: &Path) {
    let script = r#"
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
with open(sys.argv[1]) as f:
    data = f.read()
errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(data)
if errors is not None:
    print(errors)
    sys.exit(1)
print("valid")
"#;
    let run = capture(
        Command::new(setup_tool("python"))
            .args(["-c", script])
            .arg(file),
    );
    run.assert_success();
    assert_eq!(run.stdout.trim(), "valid", "{run}");
}

/// The crates the binary links for the musl target, as cargo says: `cargo tree` over normal
/// edges without proc-macros (no build-dependencies, no dev-dependencies, no other
/// platform's), the root left out. (name, version) pairs.
fn runtime_crates(root: &Path) -> BTreeSet<(String, String)> {
    let run = capture(
        Command::new("cargo")
            .args([
                "tree",
                "--locked",
                "--offline",
                "-e",
                "normal,no-proc-macro",
                "--target",
                MUSL_TARGET,
                "--prefix",
                "none",
                "--format",
                "{p}",
            ])
            .current_dir(root),
    );
    run.assert_success();
    let mut crates: BTreeSet<(String, String)> = run
        .stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?;
            let version = words.next()?.strip_prefix('v')?;
            Some((name.to_string(), version.to_string()))
        })
        .collect();
    crates.retain(|(n, _)| n != "depgraph");
    crates
}

/// Cargo.lock's checksums, by (name, version).
fn lock_checksums(root: &Path) -> BTreeMap<(String, String), String> {
    let text = std::fs::read_to_string(root.join("Cargo.lock")).expect("Cargo.lock");
    let mut out = BTreeMap::new();
    for block in text.split("[[package]]") {
        let field = |k: &str| {
            block.lines().find_map(|l| {
                l.strip_prefix(&format!("{k} = \""))
                    .and_then(|v| v.strip_suffix('"'))
                    .map(str::to_string)
            })
        };
        if let (Some(n), Some(v), Some(c)) = (field("name"), field("version"), field("checksum")) {
            out.insert((n, v), c);
        }
    }
    out
}

/// The packages of an SPDX document by (name, version).
fn spdx_packages(doc: &Value) -> BTreeMap<(String, String), Value> {
    doc["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                (
                    p["name"].as_str().unwrap_or_default().to_string(),
                    p["versionInfo"].as_str().unwrap_or_default().to_string(),
                ),
                p.clone(),
            )
        })
        .collect()
}

/// The components of a CycloneDX document by (name, version).
fn cdx_components(doc: &Value) -> BTreeMap<(String, String), Value> {
    doc["components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|c| {
            (
                (
                    c["name"].as_str().unwrap_or_default().to_string(),
                    c["version"].as_str().unwrap_or_default().to_string(),
                ),
                c.clone(),
            )
        })
        .collect()
}

/// Every runtime crate is in both documents at its locked version, with its purl and (for a
/// crates.io crate) Cargo.lock's sha256; neither the Windows-only nor the dev-dependency is.
fn assert_lists_the_runtime_crates(root: &Path, spdx: &Value, cdx: &Value) {
    let want = runtime_crates(root);
    assert!(want.len() >= 20, "cargo tree gave too few crates: {want:?}");
    let sums = lock_checksums(root);
    let packages = spdx_packages(spdx);
    let components = cdx_components(cdx);
    for key @ (name, version) in &want {
        let purl = format!("pkg:cargo/{name}@{version}");
        let p = packages
            .get(key)
            .unwrap_or_else(|| panic!("SPDX lacks {name} {version}"));
        assert_eq!(p["externalRefs"][0]["referenceLocator"], purl.as_str());
        let c = components
            .get(key)
            .unwrap_or_else(|| panic!("CycloneDX lacks {name} {version}"));
        assert_eq!(c["purl"], purl.as_str());
        assert_eq!(c["scope"], "required", "{name}");
        match sums.get(key) {
            Some(sum) => {
                assert_eq!(p["checksums"][0]["algorithm"], "SHA256", "{name}");
                assert_eq!(p["checksums"][0]["checksumValue"], sum.as_str(), "{name}");
                assert_eq!(c["hashes"][0]["alg"], "SHA-256", "{name}");
                assert_eq!(c["hashes"][0]["content"], sum.as_str(), "{name}");
                assert_eq!(
                    p["downloadLocation"],
                    format!("https://crates.io/api/v1/crates/{name}/{version}/download").as_str()
                );
            }
            // The path dependency: local, never published, no checksum.
            None => {
                assert_eq!(name, "greet");
                assert_eq!(p["downloadLocation"], "NOASSERTION");
            }
        }
    }
    for absent in ["winapi-util", "tempfile"] {
        assert!(
            !packages.keys().any(|(n, _)| n == absent),
            "SPDX lists {absent}"
        );
        assert!(
            !components.keys().any(|(n, _)| n == absent),
            "CycloneDX lists {absent}"
        );
    }
    // Build-time crates are marked, never listed as linked.
    let autocfg = components
        .iter()
        .find(|((n, _), _)| n == "autocfg")
        .map(|(_, c)| c)
        .expect("the build-dependency autocfg is listed");
    assert_eq!(autocfg["scope"], "excluded");
}

fn sbom_of(root: &Path, format: &str) -> Vec<u8> {
    let run = capture(tool(root).args(["sbom", "--locked", "--format", format]));
    run.assert_success();
    run.stdout.into_bytes()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}

#[test]
#[ignore = "heavy: needs the setup-template-tools checkers"]
fn the_sbom_command_prints_valid_documents_listing_every_linked_crate() {
    let project = Project::copy("depgraph");
    let out = tempdir();
    let spdx = sbom_of(&project.root, "spdx");
    let cdx = sbom_of(&project.root, "cyclonedx");
    assert_spdx_valid(&write(out.path(), "d.spdx.json", &spdx));
    assert_cyclonedx_valid(&write(out.path(), "d.cdx.json", &cdx));
    let spdx: Value = serde_json::from_slice(&spdx).unwrap();
    let cdx: Value = serde_json::from_slice(&cdx).unwrap();
    assert_lists_the_runtime_crates(&project.root, &spdx, &cdx);
    // No image was built: the binary is what the documents describe.
    assert_eq!(cdx["metadata"]["component"]["type"], "application");
    assert_eq!(cdx["metadata"]["component"]["name"], "depgraph");
    assert!(!project.root.join("target").join("containerize").exists());
}

#[test]
fn the_sbom_command_gives_the_same_bytes_twice_and_from_another_directory() {
    let a = Project::copy("depgraph");
    let b = Project::copy("depgraph");
    assert_ne!(a.root, b.root);
    for format in ["spdx", "cyclonedx"] {
        let first = sbom_of(&a.root, format);
        assert_eq!(first, sbom_of(&a.root, format), "{format}: twice");
        assert_eq!(
            first,
            sbom_of(&b.root, format),
            "{format}: another directory"
        );
        assert!(
            !String::from_utf8_lossy(&first).contains(a.root.to_str().unwrap()),
            "{format} names a local path"
        );
    }
}

/// A build of a depgraph copy into an `oci:` layout, with `--sbom-dir`.
struct Built {
    project: Project,
    layout: Layout,
    sbom_dir: PathBuf,
    digest: String,
}

/// Builds a fresh copy of depgraph into an `oci:` layout beside it (the shared target dir keeps
/// the dependencies compiled once), with `--sbom-dir` when `sbom_dir`.
fn build(sbom_dir: bool, extra: &[&str]) -> Built {
    let project = Project::copy("depgraph");
    let layout = Layout::new(project.parent().join("image"), "test");
    let dir = project.parent().join("sboms");
    let mut cmd = tool(&project.root);
    cmd.args(["build", "--layout-referrers", "--locked", "--target-dir"])
        .arg(shared_target_dir("depgraph"))
        .args(["--output", &layout.reference()])
        .args(extra);
    if sbom_dir {
        cmd.arg("--sbom-dir").arg(&dir);
    }
    let run = capture(&mut cmd);
    run.assert_success();
    let digest = run.digest();
    Built {
        project,
        layout,
        sbom_dir: dir,
        digest,
    }
}

/// Two builds of depgraph from two directories, with `--sbom-dir`.
fn built_twice() -> &'static (Built, Built) {
    static BUILT: OnceLock<(Built, Built)> = OnceLock::new();
    BUILT.get_or_init(|| (build(true, &[]), build(true, &[])))
}

/// The referrers index.json lists, by artifactType: (subject digest, document bytes).
fn referrers(layout: &Layout) -> BTreeMap<String, Vec<(String, Vec<u8>)>> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.dir.join("index.json")).expect("index.json"))
            .expect("index.json is JSON");
    let mut out: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    for entry in index["manifests"].as_array().expect("manifests") {
        let Some(kind) = entry["artifactType"].as_str() else {
            continue;
        };
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(layout.blob(entry["digest"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        assert_eq!(manifest["artifactType"], kind);
        let layer = &manifest["layers"][0];
        assert_eq!(layer["mediaType"], kind);
        let bytes = std::fs::read(layout.blob(layer["digest"].as_str().unwrap())).unwrap();
        assert_eq!(sha256_digest(&bytes), layer["digest"].as_str().unwrap());
        out.entry(kind.to_string()).or_default().push((
            manifest["subject"]["digest"].as_str().unwrap().to_string(),
            bytes,
        ));
    }
    out
}

#[test]
#[ignore = "heavy: builds fixture images; needs the setup-template-tools checkers"]
fn the_image_carries_valid_sboms_as_referrers_of_its_manifest() {
    let (built, _) = built_twice();
    let refs = referrers(&built.layout);
    let (subject, spdx) = &refs.get(SPDX).expect("an SPDX referrer")[0];
    let (cdx_subject, cdx) = &refs.get(CDX).expect("a CycloneDX referrer")[0];
    assert_eq!(refs[SPDX].len(), 1);
    assert_eq!(refs[CDX].len(), 1);
    // The subject is the image's (only) manifest.
    assert_eq!(subject, &built.digest);
    assert_eq!(cdx_subject, &built.digest);
    let out = tempdir();
    assert_spdx_valid(&write(out.path(), "image.spdx.json", spdx));
    assert_cyclonedx_valid(&write(out.path(), "image.cdx.json", cdx));
    let spdx: Value = serde_json::from_slice(spdx).unwrap();
    let cdx: Value = serde_json::from_slice(cdx).unwrap();
    assert_lists_the_runtime_crates(&built.project.root, &spdx, &cdx);

    // The image is the described package, holding the binary, whose checksum is the file's.
    let hex = built.digest.strip_prefix("sha256:").unwrap();
    let packages = spdx["packages"].as_array().unwrap();
    let image = packages
        .iter()
        .find(|p| p["primaryPackagePurpose"] == "CONTAINER")
        .expect("the image package");
    assert_eq!(image["checksums"][0]["checksumValue"], hex);
    let binary = packages
        .iter()
        .find(|p| p["primaryPackagePurpose"] == "APPLICATION")
        .expect("the binary package");
    let path = binary["packageFileName"].as_str().unwrap();
    let in_image = built
        .layout
        .layer_digests()
        .iter()
        .flat_map(|d| built.layout.layer_entries(d))
        .find(|e| e.path == path.trim_start_matches('/'))
        .expect("the binary in the image");
    let want = sha256_digest(&in_image.data);
    assert_eq!(
        binary["checksums"][0]["checksumValue"],
        want.strip_prefix("sha256:").unwrap()
    );
    let rels = spdx["relationships"].as_array().unwrap();
    let has = |a: &Value, t: &str, b: &Value| {
        rels.iter().any(|r| {
            r["spdxElementId"] == *a && r["relationshipType"] == t && r["relatedSpdxElement"] == *b
        })
    };
    assert!(has(
        &Value::from("SPDXRef-DOCUMENT"),
        "DESCRIBES",
        &image["SPDXID"]
    ));
    assert!(has(&image["SPDXID"], "CONTAINS", &binary["SPDXID"]));
    let regex = packages.iter().find(|p| p["name"] == "regex").unwrap();
    assert!(has(&binary["SPDXID"], "DEPENDS_ON", &regex["SPDXID"]));

    // The image's other contents: the CA bundle (the file's digest) and tzdata (the layer's).
    let ca = packages
        .iter()
        .find(|p| p["name"] == "ca-certificates")
        .expect("the CA bundle");
    let ca_file = built
        .layout
        .layer_digests()
        .iter()
        .flat_map(|d| built.layout.layer_entries(d))
        .find(|e| e.path == CA_BUNDLE)
        .expect("the CA bundle in the image");
    assert_eq!(
        format!(
            "sha256:{}",
            ca["checksums"][0]["checksumValue"].as_str().unwrap()
        ),
        sha256_digest(&ca_file.data)
    );
    assert!(has(&image["SPDXID"], "CONTAINS", &ca["SPDXID"]));
    let tz = packages
        .iter()
        .find(|p| p["name"] == "tzdata")
        .expect("tzdata");
    let diff_ids = built.layout.config()["rootfs"]["diff_ids"].clone();
    let tz_sum = format!(
        "sha256:{}",
        tz["checksums"][0]["checksumValue"].as_str().unwrap()
    );
    assert!(
        diff_ids
            .as_array()
            .unwrap()
            .iter()
            .any(|d| *d == tz_sum.as_str()),
        "tzdata's checksum {tz_sum} is none of the layers' {diff_ids}"
    );
    assert_eq!(cdx["metadata"]["component"]["type"], "container");
    assert_eq!(cdx["metadata"]["component"]["hashes"][0]["content"], hex);
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn two_directories_give_byte_identical_sboms_and_the_same_image() {
    let (a, b) = built_twice();
    assert_eq!(a.digest, b.digest);
    let (ra, rb) = (referrers(&a.layout), referrers(&b.layout));
    for kind in [SPDX, CDX] {
        assert_eq!(ra[kind], rb[kind], "{kind} differs between the two builds");
    }
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn sbom_dir_writes_the_attached_documents() {
    let (a, _) = built_twice();
    let refs = referrers(&a.layout);
    let arch = match MUSL_TARGET.split('-').next() {
        Some("x86_64") => "amd64",
        _ => "arm64",
    };
    let spdx = std::fs::read(a.sbom_dir.join(format!("depgraph-{arch}.spdx.json")))
        .expect("--sbom-dir wrote the SPDX document");
    let cdx = std::fs::read(a.sbom_dir.join(format!("depgraph-{arch}.cdx.json")))
        .expect("--sbom-dir wrote the CycloneDX document");
    assert_eq!(spdx, refs[SPDX][0].1);
    assert_eq!(cdx, refs[CDX][0].1);
    let names: BTreeSet<String> = std::fs::read_dir(&a.sbom_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn sbom_dir_never_replaces_a_file_it_did_not_write() {
    let project = Project::copy("depgraph");
    let dir = project.parent().join("sboms");
    std::fs::create_dir_all(&dir).unwrap();
    let arch = if MUSL_TARGET.starts_with("x86_64") {
        "amd64"
    } else {
        "arm64"
    };
    let theirs = dir.join(format!("depgraph-{arch}.spdx.json"));
    std::fs::write(&theirs, b"{\"someone\": \"else\"}").unwrap();
    let run = capture(
        tool(&project.root)
            .args(["build", "--layout-referrers", "--locked", "--target-dir"])
            .arg(shared_target_dir("depgraph"))
            .arg("--sbom-dir")
            .arg(&dir),
    );
    assert_one_line_error(
        &run,
        &["--sbom-dir", "not an SBOM written by", "move it away"],
    );
    assert_eq!(std::fs::read(&theirs).unwrap(), b"{\"someone\": \"else\"}");
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn sbom_none_attaches_no_sbom_and_leaves_the_image_as_it_was() {
    let (with, _) = built_twice();
    let without = build(false, &["--sbom", "none"]);
    assert_eq!(without.digest, with.digest);
    let refs = referrers(&without.layout);
    assert!(
        !refs.contains_key(SPDX) && !refs.contains_key(CDX),
        "{:?}",
        refs.keys()
    );
    assert!(!without.sbom_dir.exists());
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn the_sbom_setting_chooses_the_formats() {
    let project = Project::copy("depgraph");
    project.append_manifest("[package.metadata.containerize]\nsbom = [\"spdx\"]\n");
    let layout = Layout::new(project.parent().join("image"), "test");
    let run = capture(
        tool(&project.root)
            .args(["build", "--layout-referrers", "--locked", "--target-dir"])
            .arg(shared_target_dir("depgraph"))
            .args(["--output", &layout.reference()]),
    );
    run.assert_success();
    let refs = referrers(&layout);
    assert!(
        refs.contains_key(SPDX) && !refs.contains_key(CDX),
        "{:?}",
        refs.keys()
    );
    // A usage error: exit 2, clap's `error: ` line first, naming the value and the choices.
    let bad = capture(tool(&project.root).args(["build", "--sbom", "spdx,swid"]));
    assert_eq!(bad.code(), Some(2), "{bad}");
    let first = bad.stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("error: "), "{bad}");
    for word in ["swid", "\"spdx\"", "\"cyclonedx\"", "none"] {
        assert!(first.contains(word), "{word}: {bad}");
    }
}

#[test]
#[ignore = "heavy: builds fixture images; needs the setup-template-tools checkers"]
fn a_prebuilt_binary_gets_valid_sboms_that_claim_no_crates() {
    // --binary: the crates it was built from are not known, so none are listed; the image,
    // the binary (with its digest) and the image's other contents are.
    let binary = cargo_build_musl("hello", "hello");
    let project = Project::copy("hello");
    let layout = Layout::new(project.parent().join("image"), "test");
    let dir = project.parent().join("sboms");
    let run = capture(
        tool(&project.root)
            .args(["build", "--layout-referrers", "--binary"])
            .arg(&binary)
            .args(["--output", &layout.reference(), "--sbom-dir"])
            .arg(&dir),
    );
    run.assert_success();
    let refs = referrers(&layout);
    let out = tempdir();
    assert_spdx_valid(&write(out.path(), "bin.spdx.json", &refs[SPDX][0].1));
    assert_cyclonedx_valid(&write(out.path(), "bin.cdx.json", &refs[CDX][0].1));
    let cdx: Value = serde_json::from_slice(&refs[CDX][0].1).unwrap();
    let components = cdx["components"].as_array().unwrap();
    assert!(components.iter().all(|c| c["type"] != "library"), "{cdx}");
    let bin = components
        .iter()
        .find(|c| c["type"] == "application")
        .expect("the binary");
    let want = sha256_digest(&std::fs::read(&binary).unwrap());
    assert_eq!(
        bin["hashes"][0]["content"],
        want.strip_prefix("sha256:").unwrap()
    );
}

/// With oras (PyPI `oras`, a client no one here wrote), the SBOMs of `subject` in `repo`: the
/// registry has no referrers API, so through the `sha256-<hex>` tag schema's index. Writes
/// each document into `out` as `<artifactType's last word>.json` and returns the paths by
/// artifactType.
fn fetch_with_oras(host: &str, repo: &str, subject: &str, out: &Path) -> BTreeMap<String, PathBuf> {
    let script = r#"
import json, os, sys
import oras.provider
host, repo, subject, out = sys.argv[1:5]
reg = oras.provider.Registry(insecure=True)
tag = subject.replace(":", "-", 1)
index = reg.get_manifest(
    f"{host}/{repo}:{tag}", allowed_media_type=["application/vnd.oci.image.index.v1+json"]
)
found = {}
for d in index["manifests"]:
    kind = d.get("artifactType", "")
    if kind not in ("application/spdx+json", "application/vnd.cyclonedx+json"):
        continue
    ref = f"{host}/{repo}@{d['digest']}"
    manifest = reg.get_manifest(ref)
    assert manifest["subject"]["digest"] == subject, manifest
    path = os.path.join(out, kind.rsplit("/", 1)[1] + ".json")
    reg.download_blob(reg.get_container(ref), manifest["layers"][0]["digest"], path)
    found[kind] = path
print(json.dumps(found))
"#;
    let run = capture(
        Command::new(setup_tool("python"))
            .args(["-c", script, host, repo, subject])
            .arg(out),
    );
    run.assert_success();
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {run}"))
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry, the setup-template-tools checkers"]
fn pushed_sboms_are_fetched_from_the_registry_by_oras() {
    let (built, _) = built_twice();
    let registry = Registry::plain();
    let run = capture(
        tool(&built.project.root)
            .args(["build", "--layout-referrers", "--locked", "--target-dir"])
            .arg(shared_target_dir("depgraph"))
            .args(["--push", "-t", &registry.reference("depgraph:1")])
            .env("DOCKER_CONFIG", tempdir().keep()),
    );
    run.assert_success();
    let pushed = run
        .stdout
        .lines()
        .find_map(|l| l.split_once('@').map(|(_, d)| d.trim().to_string()))
        .unwrap_or_else(|| panic!("no REF@DIGEST line: {run}"));
    assert_eq!(pushed, built.digest);
    let out = tempdir();
    let found = fetch_with_oras(&registry.host(), "depgraph", &built.digest, out.path());
    let local = referrers(&built.layout);
    for kind in [SPDX, CDX] {
        let path = found
            .get(kind)
            .unwrap_or_else(|| panic!("oras found no {kind} referrer: {found:?}"));
        assert_eq!(
            std::fs::read(path).unwrap(),
            local[kind][0].1,
            "{kind}: the pushed document is the layout's"
        );
    }
    assert_spdx_valid(&found[SPDX]);
    assert_cyclonedx_valid(&found[CDX]);
}
