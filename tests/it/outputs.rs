//! The three output transports, the printed digest, `--message-format json`, the layer
//! structure, and loading the archives into podman.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::common::*;
use crate::support::podman::Podman;
use serde_json::Value;

/// hello, written to all three transports in one run.
struct Outputs {
    built: Built,
    oci_archive: PathBuf,
    docker_archive: PathBuf,
}

const DOCKER_REF: &str = "containerize-test/hello:outputs";

impl Outputs {
    fn oci_archive_ref(&self) -> String {
        format!("oci-archive:{}:test", self.oci_archive.display())
    }
    fn docker_archive_ref(&self) -> String {
        format!(
            "docker-archive:{}:{DOCKER_REF}",
            self.docker_archive.display()
        )
    }
    fn all_refs(&self) -> [String; 3] {
        [
            self.built.layout.reference(),
            self.oci_archive_ref(),
            self.docker_archive_ref(),
        ]
    }
}

fn outputs() -> &'static Outputs {
    static OUTPUTS: OnceLock<Outputs> = OnceLock::new();
    OUTPUTS.get_or_init(|| {
        let archives = tempdir().keep();
        let oci_archive = archives.join("hello-oci.tar");
        let docker_archive = archives.join("hello-docker.tar");
        let built = build_fixture(
            "hello",
            &[
                "--output",
                &format!("oci-archive:{}:test", oci_archive.display()),
                "--output",
                &format!("docker-archive:{}:{DOCKER_REF}", docker_archive.display()),
            ],
        );
        Outputs {
            built,
            oci_archive,
            docker_archive,
        }
    })
}

fn layout() -> &'static Layout {
    &outputs().built.layout
}

/// What each layer of the oci output holds: paths per layer, bottom first.
fn layer_paths() -> Vec<BTreeSet<String>> {
    layout()
        .layer_digests()
        .iter()
        .map(|d| {
            layout()
                .layer_entries(d)
                .into_iter()
                .map(|e| {
                    e.path
                        .trim_start_matches("./")
                        .trim_end_matches('/')
                        .to_string()
                })
                .collect()
        })
        .collect()
}

fn layer_index_of(path: &str) -> usize {
    let layers = layer_paths();
    let holders: Vec<usize> = (0..layers.len())
        .filter(|i| layers[*i].contains(path))
        .collect();
    assert_eq!(
        holders.len(),
        1,
        "{path} is in layers {holders:?}, expected exactly one"
    );
    holders[0]
}

#[test]
#[ignore = "heavy: builds fixture images; needs skopeo"]
fn every_transport_holds_the_same_config_and_layer_count() {
    let [oci, oci_archive, docker_archive] = outputs().all_refs();
    let manifests: Vec<Value> = [&oci, &oci_archive, &docker_archive]
        .iter()
        .map(|r| skopeo_manifest(r))
        .collect();
    let config_digests: Vec<&str> = manifests
        .iter()
        .map(|m| m["config"]["digest"].as_str().expect("config digest"))
        .collect();
    assert_eq!(config_digests[0], config_digests[1], "oci vs oci-archive");
    assert_eq!(
        config_digests[0], config_digests[2],
        "oci vs docker-archive"
    );
    let layer_counts: Vec<usize> = manifests
        .iter()
        .map(|m| m["layers"].as_array().expect("layers").len())
        .collect();
    assert_eq!(layer_counts, [layer_counts[0]; 3]);
    // skopeo computes the docker-archive's config digest from the stored bytes.
    let configs: Vec<Value> = [&oci, &oci_archive, &docker_archive]
        .iter()
        .map(|r| skopeo_config(r))
        .collect();
    assert_eq!(configs[0], configs[1]);
    assert_eq!(configs[0], configs[2]);
}

#[test]
#[ignore = "heavy: builds fixture images; needs skopeo"]
fn printed_digest_is_the_sha256_of_the_stored_manifest() {
    let printed = outputs().built.run.digest();
    let oci = skopeo_manifest_bytes(&layout().reference());
    assert_eq!(sha256_digest(&oci), printed, "oci layout manifest");
    let archive = skopeo_manifest_bytes(&outputs().oci_archive_ref());
    assert_eq!(sha256_digest(&archive), printed, "oci-archive manifest");
    assert_eq!(
        skopeo_inspect(&layout().reference())["Digest"],
        printed.as_str()
    );
    // The layout's index names the manifest under the tag.
    let index: Value =
        serde_json::from_slice(&fs::read(layout().dir.join("index.json")).expect("index.json"))
            .expect("index json");
    let tagged = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "test")
        .unwrap_or_else(|| panic!("no manifest tagged `test` in {index}"));
    assert_eq!(tagged["digest"], printed.as_str());
    assert_eq!(tagged["size"], oci.len());
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn stdout_ends_with_the_digest_and_logs_go_to_stderr() {
    let run = &outputs().built.run;
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(!lines.is_empty(), "{run}");
    assert!(is_sha256_digest(lines[lines.len() - 1].trim()), "{run}");
    assert!(
        !run.stdout.contains("Compiling") && !run.stdout.contains("Finished"),
        "build logs on stdout: {run}"
    );
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn manifest_and_config_use_oci_media_types() {
    let manifest = layout().manifest();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    for layer in manifest["layers"].as_array().expect("layers") {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn blobs_match_their_digests_and_diff_ids_hash_the_uncompressed_layers() {
    let manifest = layout().manifest();
    let config = layout().config();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(diff_ids.len(), layers.len());
    assert_eq!(config["rootfs"]["type"], "layers");
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        let digest = layer["digest"].as_str().expect("digest");
        let blob = fs::read(layout().blob(digest)).expect("layer blob");
        assert_eq!(sha256_digest(&blob), digest);
        assert_eq!(layer["size"], blob.len());
        let mut plain = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::MultiGzDecoder::new(&blob[..]),
            &mut plain,
        )
        .expect("gunzip layer");
        assert_eq!(diff_id, &Value::from(sha256_digest(&plain)));
    }
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .expect("config digest");
    let config_blob = fs::read(layout().blob(config_digest)).expect("config blob");
    assert_eq!(sha256_digest(&config_blob), config_digest);
    assert_eq!(manifest["config"]["size"], config_blob.len());
}

#[test]
#[ignore = "heavy: builds fixture images; needs skopeo"]
fn labels_come_from_cargo_toml_in_every_transport() {
    let package = outputs().built.project.package_metadata();
    let expected = [
        ("org.opencontainers.image.title", &package["name"]),
        ("org.opencontainers.image.version", &package["version"]),
        ("org.opencontainers.image.licenses", &package["license"]),
        (
            "org.opencontainers.image.description",
            &package["description"],
        ),
        ("org.opencontainers.image.source", &package["repository"]),
    ];
    for reference in outputs().all_refs() {
        let labels = &skopeo_inspect(&reference)["Labels"];
        for (key, value) in &expected {
            assert!(value.is_string(), "fixture lacks a value for {key}");
            assert_eq!(&labels[key], *value, "{key} in {reference}: {labels}");
        }
    }
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn layers_are_base_then_certs_then_tzdata_then_the_binary_last() {
    let layers = layer_paths();
    let base = layer_index_of("etc/passwd");
    let certs = layer_index_of(CA_BUNDLE);
    let tzdata = layer_index_of(&format!("{ZONEINFO}/Asia/Kolkata"));
    let binary = layer_index_of("usr/local/bin/hello");
    assert!(
        base < certs && certs < tzdata && tzdata < binary,
        "layer order base={base} certs={certs} tzdata={tzdata} binary={binary}"
    );
    assert_eq!(binary, layers.len() - 1, "the binary is not the top layer");
    assert_eq!(layer_index_of("etc/group"), base);
    assert_eq!(layer_index_of("etc/nsswitch.conf"), base);
    // The binary layer holds the binary and its parent directories only.
    let top: Vec<&String> = layers[binary]
        .iter()
        .filter(|p| !"usr/local/bin".starts_with(p.as_str()))
        .collect();
    assert_eq!(top, ["usr/local/bin/hello"]);
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn layer_tarballs_have_numeric_owners_fixed_mtimes_and_parents_first() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    for digest in layout().layer_digests() {
        let entries = layout().layer_entries(&digest);
        assert!(!entries.is_empty(), "empty layer {digest}");
        let mut seen = BTreeSet::new();
        for entry in &entries {
            let path = entry.path.trim_start_matches("./").trim_end_matches('/');
            assert!(
                entry.username.is_empty() && entry.groupname.is_empty(),
                "{path} carries user/group names"
            );
            for key in &entry.pax_keys {
                assert!(
                    !key.contains("atime") && !key.contains("ctime") && !key.contains("mtime"),
                    "{path} has PAX record {key}"
                );
            }
            assert_eq!(
                entry.mtime, entries[0].mtime,
                "{path}: mtimes differ within a layer"
            );
            assert!(
                entry.mtime + 86_400 < now,
                "{path}: mtime {} is the build time, not a fixed one",
                entry.mtime
            );
            if let Some((parent, _)) = path.rsplit_once('/') {
                assert!(
                    seen.contains(parent),
                    "{path} comes before its parent directory in {digest}"
                );
            }
            seen.insert(path.to_string());
        }
        let paths: Vec<&str> = entries
            .iter()
            .map(|e| e.path.trim_start_matches("./").trim_end_matches('/'))
            .collect();
        // Sorted by bytes or by path components; both are deterministic orders.
        let by_bytes = paths.windows(2).all(|w| w[0] <= w[1]);
        let by_components = paths
            .windows(2)
            .all(|w| std::path::Path::new(w[0]) <= std::path::Path::new(w[1]));
        assert!(
            by_bytes || by_components,
            "entries of {digest} are not sorted: {paths:?}"
        );
    }
}

#[test]
#[ignore = "heavy: builds fixture images; needs podman"]
fn docker_archive_loads_into_podman_and_runs_as_nonroot() {
    let podman = Podman::new();
    let loaded = podman.load(&outputs().docker_archive);
    let name = loaded
        .iter()
        .find(|name| name.ends_with(DOCKER_REF))
        .unwrap_or_else(|| panic!("podman loaded {loaded:?}, expected {DOCKER_REF}"));
    let run = podman.run(name, &[]);
    run.assert_success();
    assert_eq!(
        run.stdout.lines().next(),
        Some("hello from cargo-containerize"),
        "{run}"
    );
    assert_eq!(stdout_value(&run, "uid"), Some("65532"), "{run}");
    let image = podman.inspect(name);
    assert_eq!(image["Config"]["User"], "65532:65532");
}

#[test]
#[ignore = "heavy: builds fixture images; needs podman"]
fn oci_archive_loads_into_podman_and_runs() {
    let podman = Podman::new();
    // `podman load -i` takes only an archive whose index.json lists one manifest: the
    // referrers stay out of it unless layout-referrers asks for them.
    let loaded = podman.load(&outputs().oci_archive);
    assert!(!loaded.is_empty(), "podman reported nothing loaded");
    let run = podman.run(&loaded[0], &[]);
    run.assert_success();
    assert!(
        run.stdout.starts_with("hello from cargo-containerize"),
        "{run}"
    );
    assert_eq!(stdout_value(&run, "uid"), Some("65532"), "{run}");
}

#[test]
#[ignore = "heavy: needs skopeo, umoci, runc"]
fn default_output_is_an_oci_layout_under_target_dir_tagged_with_the_version() {
    let project = Project::copy("hello");
    let target = tempdir();
    let run = capture(
        tool(&project.root)
            .args(["--locked", "--target-dir"])
            .arg(target.path()),
    );
    run.assert_success();
    let version = project.package_metadata()["version"]
        .as_str()
        .expect("version")
        .to_string();
    let layout = Layout::new(target.path().join("containerize/hello"), &version);
    assert_eq!(
        sha256_digest(&skopeo_manifest_bytes(&layout.reference())),
        run.digest()
    );
    assert!(layout.unpack().run().stdout.contains("uid=65532"));
}

#[test]
#[ignore = "heavy: builds fixture images; needs skopeo"]
fn json_message_format_prints_one_object_describing_the_image() {
    let project = Project::copy("hello");
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "json");
    let archive = out.path().join("image.tar");
    let archive_spec = format!("oci-archive:{}:json", archive.display());
    let run = capture(
        tool(&project.root)
            .args([
                "build",
                "--locked",
                "--message-format",
                "json",
                "--target-dir",
            ])
            .arg(shared_target_dir("hello"))
            .args(["--output", &layout.reference(), "--output", &archive_spec]),
    );
    run.assert_success();
    let json = run.json();
    let manifest_bytes = skopeo_manifest_bytes(&layout.reference());
    let manifest: Value = serde_json::from_slice(&manifest_bytes).expect("manifest");
    assert_eq!(json["bin"], "hello");
    assert_eq!(json["platform"], "linux/amd64");
    assert_eq!(json["digest"], sha256_digest(&manifest_bytes).as_str());
    // `size` is the whole image: manifest, config and layer blobs.
    let image_size = manifest_bytes.len() as u64
        + manifest["config"]["size"].as_u64().expect("config size")
        + manifest_layers_size(&manifest);
    assert_eq!(json["size"], image_size);
    let layers = json["layers"].as_array().expect("layers array");
    let manifest_layers = manifest["layers"].as_array().expect("manifest layers");
    assert_eq!(layers.len(), manifest_layers.len());
    for (reported, stored) in layers.iter().zip(manifest_layers) {
        assert_eq!(reported["digest"], stored["digest"]);
        assert_eq!(reported["size"], stored["size"]);
        assert!(
            reported["what"].as_str().is_some_and(|w| !w.is_empty()),
            "layer without `what`: {reported}"
        );
    }
    let outputs = json["outputs"].as_array().expect("outputs array");
    assert_eq!(outputs.len(), 2, "{json}");
    let text = serde_json::to_string(outputs).expect("json");
    assert!(text.contains(&layout.dir.display().to_string()), "{json}");
    assert!(text.contains(&archive.display().to_string()), "{json}");
    // Same image as the human-format build of the same sources.
    assert_eq!(json["digest"], outputs_digest().as_str());
}

fn manifest_layers_size(manifest: &Value) -> u64 {
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["size"].as_u64().expect("layer size"))
        .sum()
}

fn outputs_digest() -> String {
    outputs().built.run.digest()
}

#[test]
fn quiet_mode_prints_only_the_digest_and_no_logs() {
    let project = Project::copy("hello");
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "quiet");
    let run = capture(
        tool(&project.root)
            .args(["build", "-q", "--locked", "--target-dir"])
            .arg(shared_target_dir("hello"))
            .args(["--output", &layout.reference()]),
    );
    run.assert_success();
    assert_eq!(run.stdout.trim(), run.digest(), "{run}");
    assert!(run.stderr.trim().is_empty(), "logs despite -q: {run}");
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn successful_build_leaves_only_its_outputs_beside_them() {
    let outputs = outputs();
    let archives = outputs.oci_archive.parent().expect("archive dir");
    assert_eq!(
        snapshot(archives),
        BTreeSet::from(["hello-docker.tar".to_string(), "hello-oci.tar".to_string()])
    );
    let beside_layout: BTreeSet<String> = snapshot(outputs.built.out_dir())
        .into_iter()
        .filter(|p| !p.contains('/'))
        .collect();
    assert_eq!(beside_layout, BTreeSet::from(["image".to_string()]));
}

#[test]
#[ignore = "heavy: needs skopeo"]
fn rebuilding_into_the_same_layout_keeps_one_manifest_per_tag() {
    let project = Project::copy("hello");
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "again");
    let mut digests = Vec::new();
    for _ in 0..2 {
        let run = capture(
            tool(&project.root)
                .args(["build", "--locked", "--target-dir"])
                .arg(shared_target_dir("hello"))
                .args(["--output", &layout.reference()]),
        );
        run.assert_success();
        digests.push(run.digest());
    }
    assert_eq!(digests[0], digests[1]);
    let index: Value =
        serde_json::from_slice(&fs::read(layout.dir.join("index.json")).expect("index.json"))
            .expect("index json");
    let tagged = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "again")
        .count();
    assert_eq!(tagged, 1, "{index}");
    assert_eq!(
        sha256_digest(&skopeo_manifest_bytes(&layout.reference())),
        digests[0]
    );
}

#[test]
fn outputs_are_readable_like_any_new_file_not_owner_only() {
    use std::os::unix::fs::MetadataExt;
    let project = Project::copy("hello");
    let out = tempdir();
    let layout = out.path().join("layout");
    let archive = out.path().join("image.tar");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 022 && exec \"$@\"")
        .arg("sh")
        .arg(tool_path())
        .arg("containerize")
        .arg("--target-dir")
        .arg(shared_target_dir("hello"))
        .arg("--output")
        .arg(format!("oci:{}:t", layout.display()))
        .arg("--output")
        .arg(format!("oci-archive:{}", archive.display()))
        .current_dir(&project.root);
    hermetic(&mut cmd);
    capture(&mut cmd).assert_success();
    let mode = |p: &std::path::Path| fs::metadata(p).expect("output").mode() & 0o777;
    assert_eq!(mode(&archive), 0o644);
    assert_eq!(mode(&layout), 0o755);
    assert_eq!(mode(&layout.join("index.json")), 0o644);
    for blob in fs::read_dir(layout.join("blobs/sha256")).expect("blobs") {
        let blob = blob.expect("blob").path();
        assert_eq!(mode(&blob), 0o644, "{}", blob.display());
    }
}
