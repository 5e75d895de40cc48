//! Issue 4: `--platform linux/amd64,linux/arm64` builds both platforms from this (amd64) host
//! into one OCI image index, with real tools: skopeo reads and splits the index, umoci + runc
//! run the amd64 image, qemu-aarch64-static runs the arm64 binary taken out of the image,
//! cargo-zigbuild cross-compiles the C fixture, a loopback docker-registry receives the index
//! and podman pulls its arm64 image. Each fixture's two-platform image is built once.
//!
//! Needs scripts/setup-test-env (qemu-user-static, umoci, runc, skopeo, podman,
//! docker-registry, the aarch64 musl target) and scripts/setup-cross-tools (cargo-zigbuild and
//! zig in `$CONTAINERIZE_TOOLS_BIN`, default `$HOME/.cache/cargo-containerize/venv/bin`).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::*;
use crate::support::podman::Podman;
use crate::support::registry::Registry;
use goblin::elf::Elf;
use goblin::elf::header::{EM_AARCH64, EM_X86_64};
use serde_json::Value;

/// The first line the hello fixture prints.
const GREETING: &str = "hello from cargo-containerize";
/// What the cdep fixture prints (2 + 3 computed by its C function).
const C_SAYS: &str = "c says 5";
/// Both platforms, as `--platform` takes them.
const BOTH: &str = "linux/amd64,linux/arm64";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// hello built once for both platforms into `oci:<tmp>/image:test`, `--message-format json`.
fn hello_multi() -> &'static Built {
    static IMAGE: OnceLock<Built> = OnceLock::new();
    IMAGE.get_or_init(|| build_fixture("hello", &["--platform", BOTH, "--message-format", "json"]))
}

/// The index `skopeo inspect --raw` reads from a layout, as bytes and as JSON.
fn index_of(layout: &Layout) -> (Vec<u8>, Value) {
    let bytes = skopeo_manifest_bytes(&layout.reference());
    let value = serde_json::from_slice(&bytes).expect("index JSON");
    (bytes, value)
}

/// The index descriptor whose platform has architecture `arch`.
fn descriptor_for<'a>(index: &'a Value, arch: &str) -> &'a Value {
    let found: Vec<&Value> = index["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("index without manifests: {index}"))
        .iter()
        .filter(|d| d["platform"]["architecture"] == arch)
        .collect();
    assert_eq!(found.len(), 1, "want one {arch} manifest in {index}");
    found[0]
}

/// The `manifests` entry of the tool's JSON report for `platform` (e.g. "linux/arm64").
fn reported_manifest<'a>(json: &'a Value, platform: &str) -> &'a Value {
    json["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("no `manifests` array: {json}"))
        .iter()
        .find(|m| m["platform"] == platform)
        .unwrap_or_else(|| panic!("no {platform} manifest reported: {json}"))
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"))
}

/// A blob of the layout, checked against its digest.
fn blob_bytes(layout: &Layout, digest: &str) -> Vec<u8> {
    let bytes = fs::read(layout.blob(digest)).unwrap_or_else(|e| panic!("blob {digest}: {e}"));
    assert_eq!(
        sha256_digest(&bytes),
        digest,
        "blob content/digest mismatch"
    );
    bytes
}

fn blob_json(layout: &Layout, digest: &str) -> Value {
    serde_json::from_slice(&blob_bytes(layout, digest)).expect("blob is JSON")
}

/// Layer digests of a manifest, bottom first.
fn layer_digests(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| str_of(&l["digest"], "layer digest").to_string())
        .collect()
}

/// Takes the entrypoint binary of the image whose manifest is `manifest_digest` out of its
/// layer blobs (the topmost layer holding it wins) into `dir`, executable.
fn binary_from_image(layout: &Layout, manifest_digest: &str, dir: &Path) -> PathBuf {
    let manifest = blob_json(layout, manifest_digest);
    let config = blob_json(layout, str_of(&manifest["config"]["digest"], "config"));
    let entrypoint = str_of(&config["config"]["Entrypoint"][0], "Entrypoint[0]");
    let wanted = entrypoint.trim_start_matches('/');
    let data = layer_digests(&manifest)
        .iter()
        .rev()
        .find_map(|digest| {
            layout
                .layer_entries(digest)
                .into_iter()
                .find(|e| e.path.trim_start_matches("./").trim_start_matches('/') == wanted)
                .map(|e| e.data)
        })
        .unwrap_or_else(|| panic!("no layer of {manifest_digest} holds {entrypoint}"));
    let out = dir.join(format!(
        "{}-{}",
        wanted.rsplit('/').next().unwrap_or("bin"),
        &manifest_digest[7..19]
    ));
    fs::write(&out, data).expect("write extracted binary");
    fs::set_permissions(&out, fs::Permissions::from_mode(0o755)).expect("chmod binary");
    out
}

/// ELF machine of a file, and whether it is static (no interpreter, no needed libraries).
fn elf_machine(path: &Path) -> (u16, bool) {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let elf = Elf::parse(&bytes).unwrap_or_else(|e| panic!("{path:?} is not ELF: {e}"));
    (
        elf.header.e_machine,
        elf.interpreter.is_none() && elf.libraries.is_empty(),
    )
}

/// Runs an aarch64 Linux binary with Debian's qemu-user-static.
fn run_under_qemu(binary: &Path) -> Run {
    capture(
        Command::new("timeout")
            .args(["--kill-after=10", "120", "qemu-aarch64-static"])
            .arg(binary),
    )
}

/// `skopeo copy --override-arch ARCH SRC oci:DIR:TAG`.
fn skopeo_copy_arch(arch: &str, source: &str, dest: &Layout) {
    capture(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--override-arch", arch])
            .arg(source)
            .arg(dest.reference()),
    )
    .assert_success();
}

/// A fresh directory for a cargo target dir no other build has used.
fn fresh_target_dir() -> tempfile::TempDir {
    tempdir()
}

/// The `<triple>` directories cargo made under a target dir: empty when nothing was built.
/// A refusal that came before any work: nothing written in `out`, cargo never ran in `target`.
fn assert_refused_before_building(run: &Run, out: &Path, target: &Path) {
    let written = snapshot(out);
    assert!(written.is_empty(), "a refused run wrote {written:?}: {run}");
    assert_eq!(
        built_triples(target),
        Vec::<String>::new(),
        "cargo ran before the refusal: {run}"
    );
}

fn built_triples(target_dir: &Path) -> Vec<String> {
    ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"]
        .into_iter()
        .filter(|t| target_dir.join(t).exists())
        .map(String::from)
        .collect()
}

/// Where scripts/setup-cross-tools puts cargo-zigbuild and python-zig.
fn cross_tools_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("CONTAINERIZE_TOOLS_BIN") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    Path::new(&home).join(".cache/cargo-containerize/venv/bin")
}

/// The directory of the `cargo` that runs this test (rustup's proxies live beside it).
fn cargo_dir() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|dir| dir.join("cargo").is_file())
        .or_else(|| {
            std::env::var_os("CARGO")
                .map(PathBuf::from)
                .and_then(|c| c.parent().map(Path::to_path_buf))
        })
        .expect("cargo is on PATH")
}

/// A PATH with cargo and the system's /usr/bin and /bin only: no cross C compiler for
/// aarch64 and no zig, which this asserts (the machine would otherwise not test the branch).
fn path_without_cross_tools() -> Vec<PathBuf> {
    let dirs = vec![
        cargo_dir(),
        PathBuf::from("/usr/bin"),
        PathBuf::from("/bin"),
    ];
    for dir in &dirs {
        for tool in [
            "cargo-zigbuild",
            "zig",
            "python-zig",
            "aarch64-linux-musl-gcc",
        ] {
            assert!(
                !dir.join(tool).exists(),
                "{} exists, so this machine cannot test the missing-cross-compiler branch",
                dir.join(tool).display()
            );
        }
    }
    dirs
}

fn join_path(dirs: &[PathBuf]) -> OsString {
    std::env::join_paths(dirs).expect("PATH entries without ':'")
}

/// `cargo containerize build --locked --platform amd64,arm64` of a fresh cdep copy into
/// `oci:<out>/image:test`, in `target_dir`, with `path` as PATH and no CC override.
fn cdep_command(project: &Project, target_dir: &Path, layout: &Layout, path: &OsString) -> Command {
    let mut cmd = tool(&project.root);
    cmd.args(["build", "--locked", "--platform", BOTH, "--output"])
        .arg(layout.reference())
        .arg("--target-dir")
        .arg(target_dir)
        .env("PATH", path)
        .env_remove("CC_aarch64_unknown_linux_musl")
        .env_remove("CC_aarch64-unknown-linux-musl")
        .env_remove("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER");
    cmd
}

#[test]
#[ignore = "heavy: builds fixture images; needs skopeo"]
fn two_platform_build_writes_an_index_whose_manifests_configs_say_amd64_and_arm64() {
    let built = hello_multi();
    let (_, index) = index_of(&built.layout);
    assert_eq!(index["mediaType"], INDEX_MEDIA_TYPE, "{index}");
    assert_eq!(index["schemaVersion"], 2, "{index}");
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 2, "{index}");
    let platforms: BTreeSet<(String, String)> = manifests
        .iter()
        .map(|d| {
            (
                str_of(&d["platform"]["os"], "os").to_string(),
                str_of(&d["platform"]["architecture"], "architecture").to_string(),
            )
        })
        .collect();
    assert_eq!(
        platforms,
        BTreeSet::from([
            ("linux".to_string(), "amd64".to_string()),
            ("linux".to_string(), "arm64".to_string())
        ])
    );
    for descriptor in manifests {
        assert_eq!(descriptor["mediaType"], MANIFEST_MEDIA_TYPE, "{descriptor}");
        let digest = str_of(&descriptor["digest"], "digest");
        let bytes = blob_bytes(&built.layout, digest);
        assert_eq!(descriptor["size"], bytes.len() as u64, "{descriptor}");
        let manifest: Value = serde_json::from_slice(&bytes).expect("manifest JSON");
        assert_eq!(manifest["mediaType"], MANIFEST_MEDIA_TYPE, "{manifest}");
        let config = blob_json(
            &built.layout,
            str_of(&manifest["config"]["digest"], "config"),
        );
        assert_eq!(
            config["architecture"], descriptor["platform"]["architecture"],
            "config of {digest} says another architecture than its index entry"
        );
        assert_eq!(config["os"], "linux");
    }
}

#[test]
#[ignore = "heavy: builds fixture images; needs skopeo"]
fn json_report_gives_the_index_digest_and_each_platforms_manifest() {
    let built = hello_multi();
    let json = built.run.json();
    let (bytes, index) = index_of(&built.layout);
    assert_eq!(json["digest"], sha256_digest(&bytes).as_str(), "{json}");
    assert_eq!(json["platform"], "linux/amd64,linux/arm64", "{json}");
    let reported = json["manifests"].as_array().expect("manifests array");
    assert_eq!(reported.len(), 2, "{json}");
    let mut blobs: BTreeSet<(String, u64)> = BTreeSet::new();
    for (platform, arch) in [("linux/amd64", "amd64"), ("linux/arm64", "arm64")] {
        let report = reported_manifest(&json, platform);
        let descriptor = descriptor_for(&index, arch);
        assert_eq!(report["digest"], descriptor["digest"], "{platform}: {json}");
        let digest = str_of(&descriptor["digest"], "digest");
        let manifest_bytes = blob_bytes(&built.layout, digest);
        let manifest: Value = serde_json::from_slice(&manifest_bytes).expect("manifest");
        let stored_layers = manifest["layers"].as_array().expect("layers");
        let reported_layers = report["layers"].as_array().expect("reported layers");
        assert_eq!(reported_layers.len(), stored_layers.len(), "{platform}");
        for (r, s) in reported_layers.iter().zip(stored_layers) {
            assert_eq!(r["digest"], s["digest"], "{platform}");
            assert_eq!(r["size"], s["size"], "{platform}");
        }
        // A platform's size is what a client of that platform pulls.
        let layers_size: u64 = stored_layers
            .iter()
            .map(|l| l["size"].as_u64().expect("size"))
            .sum();
        let config_size = manifest["config"]["size"].as_u64().expect("config size");
        assert_eq!(
            report["size"],
            manifest_bytes.len() as u64 + config_size + layers_size,
            "{platform}: {json}"
        );
        blobs.insert((digest.to_string(), manifest_bytes.len() as u64));
        blobs.insert((
            str_of(&manifest["config"]["digest"], "config").to_string(),
            config_size,
        ));
        for l in stored_layers {
            blobs.insert((
                str_of(&l["digest"], "digest").to_string(),
                l["size"].as_u64().expect("size"),
            ));
        }
    }
    // The whole image's size counts the index and every distinct blob once.
    let total: u64 = bytes.len() as u64 + blobs.iter().map(|(_, n)| n).sum::<u64>();
    assert_eq!(json["size"], total, "{json}");
}

#[test]
#[ignore = "heavy: builds fixture images; needs skopeo"]
fn platform_independent_layers_are_shared_and_only_the_binary_layer_differs() {
    let built = hello_multi();
    let (_, index) = index_of(&built.layout);
    let amd64 = blob_json(
        &built.layout,
        str_of(&descriptor_for(&index, "amd64")["digest"], "digest"),
    );
    let arm64 = blob_json(
        &built.layout,
        str_of(&descriptor_for(&index, "arm64")["digest"], "digest"),
    );
    let (a, b) = (layer_digests(&amd64), layer_digests(&arm64));
    assert_eq!(a.len(), b.len(), "layer counts differ: {a:?} / {b:?}");
    assert!(a.len() >= 2, "{a:?}");
    let last = a.len() - 1;
    assert_eq!(
        a[..last],
        b[..last],
        "shared layers differ between platforms"
    );
    assert_ne!(a[last], b[last], "both platforms got the same binary layer");
    let json = built.run.json();
    let what = &reported_manifest(&json, "linux/arm64")["layers"][last]["what"];
    assert_eq!(what, "binary", "{json}");
}

#[test]
#[ignore = "heavy: builds fixture images; needs skopeo"]
fn skopeo_copy_override_arch_arm64_picks_the_arm64_manifest() {
    let built = hello_multi();
    let json = built.run.json();
    let arm64_digest = str_of(&reported_manifest(&json, "linux/arm64")["digest"], "digest");
    let copy = Layout::new(built.out_dir().join("arm64-copy"), "picked");
    skopeo_copy_arch("arm64", &built.layout.reference(), &copy);
    let bytes = skopeo_manifest_bytes(&copy.reference());
    assert_eq!(sha256_digest(&bytes), arm64_digest);
    let config = copy.config();
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["os"], "linux");
}

#[test]
#[ignore = "heavy: builds fixture images; needs skopeo, umoci, runc"]
fn amd64_image_copied_out_of_the_index_runs_under_runc() {
    let built = hello_multi();
    let json = built.run.json();
    let amd64_digest = str_of(&reported_manifest(&json, "linux/amd64")["digest"], "digest");
    let copy = Layout::new(built.out_dir().join("amd64-copy"), "run");
    skopeo_copy_arch("amd64", &built.layout.reference(), &copy);
    assert_eq!(
        sha256_digest(&skopeo_manifest_bytes(&copy.reference())),
        amd64_digest
    );
    let bundle = copy.unpack();
    let (machine, is_static) = elf_machine(&bundle.file("usr/local/bin/hello"));
    assert_eq!(machine, EM_X86_64, "amd64 image holds a non-x86_64 binary");
    assert!(is_static, "amd64 binary is not static");
    let run = bundle.run();
    run.assert_success();
    assert_eq!(run.stdout.lines().next(), Some(GREETING), "{run}");
    assert_eq!(stdout_value(&run, "uid"), Some("65532"), "{run}");
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn arm64_binary_taken_out_of_the_image_is_static_aarch64_and_runs_under_qemu() {
    let built = hello_multi();
    let json = built.run.json();
    let arm64_digest = str_of(&reported_manifest(&json, "linux/arm64")["digest"], "digest");
    let binary = binary_from_image(&built.layout, arm64_digest, built.out_dir());
    let (machine, is_static) = elf_machine(&binary);
    assert_eq!(
        machine, EM_AARCH64,
        "arm64 image holds a non-aarch64 binary"
    );
    assert!(is_static, "arm64 binary is not static");
    let run = run_under_qemu(&binary);
    run.assert_success();
    assert_eq!(run.stdout.lines().next(), Some(GREETING), "{run}");
    assert_eq!(stdout_value(&run, "profile"), Some("release"), "{run}");
}

#[test]
#[ignore = "heavy: needs skopeo"]
fn cdep_builds_for_arm64_with_cargo_zigbuild_and_both_binaries_print_c_says_5() {
    let tools = cross_tools_bin();
    let has = |name: &str| tools.join(name).is_file();
    assert!(
        has("cargo-zigbuild") && (has("zig") || has("python-zig")),
        "cargo-zigbuild and zig (python-zig) are not in {}: run scripts/setup-cross-tools \
         (or point CONTAINERIZE_TOOLS_BIN at a directory holding them)",
        tools.display()
    );
    let mut dirs = vec![tools];
    dirs.extend(path_without_cross_tools());
    let project = Project::copy("cdep");
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "test");
    // Its own shared target dir: zigbuild's C settings differ from the other cdep builds'.
    let target = shared_target_dir("multiplatform-cdep");
    let run = capture(&mut cdep_command(
        &project,
        &target,
        &layout,
        &join_path(&dirs),
    ));
    run.assert_success();
    assert!(
        run.stderr.contains("cargo-zigbuild"),
        "arm64 was not built with cargo-zigbuild: {run}"
    );
    let (bytes, index) = index_of(&layout);
    assert_eq!(run.digest(), sha256_digest(&bytes));

    let arm64 = str_of(&descriptor_for(&index, "arm64")["digest"], "digest");
    let binary = binary_from_image(&layout, arm64, out.path());
    let (machine, is_static) = elf_machine(&binary);
    assert_eq!(machine, EM_AARCH64);
    assert!(is_static, "arm64 cdep is not static");
    let qemu = run_under_qemu(&binary);
    qemu.assert_success();
    assert_eq!(qemu.stdout.trim(), C_SAYS, "{qemu}");

    let amd64 = str_of(&descriptor_for(&index, "amd64")["digest"], "digest");
    let binary = binary_from_image(&layout, amd64, out.path());
    assert_eq!(elf_machine(&binary), (EM_X86_64, true));
    let native = capture(&mut Command::new(&binary));
    native.assert_success();
    assert_eq!(native.stdout.trim(), C_SAYS, "{native}");
}

#[test]
fn cdep_for_arm64_without_a_c_cross_compiler_or_zig_fails_before_building_naming_cargo_zigbuild() {
    let path = join_path(&path_without_cross_tools());
    let project = Project::copy("cdep");
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "test");
    let target = fresh_target_dir();
    let run = capture(&mut cdep_command(&project, target.path(), &layout, &path));
    assert_error(&run, 1, &["cargo-zigbuild", "zig", "aarch64"]);
    assert_refused_before_building(&run, out.path(), target.path());
}

#[test]
#[ignore = "heavy: needs docker-registry, skopeo, podman"]
fn pushed_index_is_in_the_registry_and_podman_pull_arch_arm64_gets_the_arm64_manifest() {
    let registry = Registry::plain();
    let reference = registry.reference("hello:multi");
    let project = Project::copy("hello");
    let no_credentials = tempdir();
    let run = capture(
        tool(&project.root)
            .args(["build", "--locked", "--platform", BOTH, "--push", "-t"])
            .arg(&reference)
            .args(["--message-format", "json", "--target-dir"])
            .arg(shared_target_dir("hello"))
            .env("DOCKER_CONFIG", no_credentials.path())
            .env_remove("REGISTRY_AUTH_FILE"),
    );
    run.assert_success();
    let json = run.json();
    let digest = str_of(&json["digest"], "digest");
    assert_eq!(
        json["pushed"],
        serde_json::json!([format!("{reference}@{digest}")])
    );

    // The tag names the index, byte for byte.
    let bytes = registry.manifest_bytes("hello:multi");
    assert_eq!(sha256_digest(&bytes), digest);
    let index: Value = serde_json::from_slice(&bytes).expect("index JSON");
    assert_eq!(index["mediaType"], INDEX_MEDIA_TYPE, "{index}");
    // Each manifest is there by digest.
    for platform in ["linux/amd64", "linux/arm64"] {
        let m = str_of(&reported_manifest(&json, platform)["digest"], "digest");
        let arch = platform.rsplit('/').next().expect("arch");
        assert_eq!(descriptor_for(&index, arch)["digest"], m);
        let stored = registry.manifest_bytes(&format!("hello@{m}"));
        assert_eq!(sha256_digest(&stored), m, "{platform}");
    }

    let arm64 = str_of(&reported_manifest(&json, "linux/arm64")["digest"], "digest");
    let amd64 = str_of(&reported_manifest(&json, "linux/amd64")["digest"], "digest");
    let podman = Podman::new();
    podman
        .podman(&["pull", "--tls-verify=false", "--arch", "arm64", &reference])
        .assert_success();
    let inspect = podman.podman(&["image", "inspect", &reference]);
    inspect.assert_success();
    let image: Value = serde_json::from_str(&inspect.stdout).expect("inspect JSON");
    let image = &image[0];
    assert_eq!(image["Architecture"], "arm64", "{image}");
    let repo_digests: Vec<&str> = image["RepoDigests"]
        .as_array()
        .expect("RepoDigests")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let name = registry.reference("hello");
    assert!(
        repo_digests.contains(&format!("{name}@{arm64}").as_str()),
        "{repo_digests:?}"
    );
    assert!(
        !repo_digests.contains(&format!("{name}@{amd64}").as_str()),
        "{repo_digests:?}"
    );
    // The manifest podman stored is the arm64 one, byte for byte.
    let stored = capture(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("containers-storage:{reference}"))
            .env("CONTAINERS_STORAGE_CONF", podman.storage_conf()),
    );
    stored.assert_success();
    assert_eq!(sha256_digest(stored.stdout.as_bytes()), arm64);
}

#[test]
#[ignore = "heavy: builds fixture images; needs skopeo"]
fn building_both_platforms_from_two_directories_gives_the_same_index_digest() {
    let first = hello_multi();
    let target = fresh_target_dir();
    let second = build(
        Project::copy("hello"),
        Some(target.path()),
        &["--platform", BOTH, "--message-format", "json"],
    );
    assert_ne!(first.project.root, second.project.root);
    assert_eq!(
        built_triples(target.path()).len(),
        2,
        "the second build did not compile both platforms"
    );
    let (a, b) = (first.run.json(), second.run.json());
    // Per platform first: a difference shows which layer (`what`) differs.
    assert_eq!(
        a["manifests"], b["manifests"],
        "the two builds' manifests differ (first, then second)"
    );
    assert_eq!(a["digest"], b["digest"]);
    assert_eq!(
        skopeo_manifest_bytes(&first.layout.reference()),
        skopeo_manifest_bytes(&second.layout.reference())
    );
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn metadata_platforms_build_the_same_index_as_the_platform_flag() {
    let project = Project::copy("hello");
    project.append_manifest(
        "[package.metadata.containerize]\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n",
    );
    let from_metadata = build(
        project,
        Some(&shared_target_dir("hello")),
        &["--message-format", "json"],
    );
    let json = from_metadata.run.json();
    assert_eq!(json["platform"], "linux/amd64,linux/arm64", "{json}");
    assert_eq!(json["digest"], hello_multi().run.json()["digest"]);
}

#[test]
fn help_lists_the_supported_platforms() {
    let project = Project::copy("hello");
    let run = capture(tool(&project.root).args(["build", "--help"]));
    run.assert_success();
    assert!(run.stdout.contains("linux/amd64"), "{run}");
    assert!(run.stdout.contains("linux/arm64"), "{run}");
}

#[test]
fn unknown_platform_is_a_one_line_error_listing_the_supported_platforms() {
    let project = Project::copy("hello");
    let target = fresh_target_dir();
    let (run, layout, _out) = try_build(
        &project,
        Some(target.path()),
        &["--platform", "linux/s390x"],
    );
    assert_error(&run, 1, &["linux/s390x", "linux/amd64", "linux/arm64"]);
    assert!(!layout.dir.exists(), "wrote {:?}", layout.dir);
    assert_eq!(built_triples(target.path()), Vec::<String>::new());
}

#[test]
fn docker_archive_of_two_platforms_without_load_platform_fails_before_building() {
    let project = Project::copy("hello");
    let target = fresh_target_dir();
    let out = tempdir();
    let archive = out.path().join("x.tar");
    let run = capture(
        tool(&project.root)
            .args(["build", "--locked", "--platform", BOTH, "--target-dir"])
            .arg(target.path())
            .arg("--output")
            .arg(format!("docker-archive:{}", archive.display())),
    );
    assert_error(&run, 1, &["--load-platform", "linux/amd64", "linux/arm64"]);
    assert_refused_before_building(&run, out.path(), target.path());
}

#[test]
#[ignore = "heavy: needs podman"]
fn load_of_two_platforms_without_load_platform_fails_before_building() {
    let project = Project::copy("hello");
    let target = fresh_target_dir();
    let podman = Podman::new();
    let mut cmd = tool(&project.root);
    cmd.args(["build", "--locked", "--platform", BOTH, "--load", "podman"])
        .arg("--target-dir")
        .arg(target.path());
    podman.apply(&mut cmd);
    let run = capture(&mut cmd);
    assert_error(&run, 1, &["--load-platform", "linux/amd64", "linux/arm64"]);
    assert_eq!(built_triples(target.path()), Vec::<String>::new(), "{run}");
    assert_eq!(podman.image_names(), Vec::<String>::new());
}

#[test]
fn load_platform_that_is_not_built_is_refused_naming_both() {
    let project = Project::copy("hello");
    let target = fresh_target_dir();
    let out = tempdir();
    let archive = out.path().join("x.tar");
    let run = capture(
        tool(&project.root)
            .args(["build", "--locked", "--platform", "linux/amd64"])
            .args(["--load-platform", "linux/arm64", "--target-dir"])
            .arg(target.path())
            .arg("--output")
            .arg(format!("docker-archive:{}", archive.display())),
    );
    assert_error(&run, 1, &["linux/arm64", "linux/amd64"]);
    assert!(!archive.exists());
    assert_refused_before_building(&run, out.path(), target.path());
}

#[test]
#[ignore = "heavy: builds fixture images; needs skopeo"]
fn docker_archive_with_load_platform_arm64_holds_the_arm64_image() {
    let reference = hello_multi();
    let project = Project::copy("hello");
    let out = tempdir();
    let archive = out.path().join("x.tar");
    let spec = format!("docker-archive:{}", archive.display());
    let run = capture(
        tool(&project.root)
            .args(["build", "--locked", "--platform", BOTH])
            .args(["--load-platform", "linux/arm64", "--target-dir"])
            .arg(shared_target_dir("hello"))
            .args(["--output", &spec]),
    );
    run.assert_success();
    let summary = skopeo_inspect(&spec);
    assert_eq!(summary["Architecture"], "arm64", "{summary}");
    assert_eq!(summary["Os"], "linux", "{summary}");
    // Its config is the arm64 image's config from the index, byte for byte.
    let (_, index) = index_of(&reference.layout);
    let manifest = blob_json(
        &reference.layout,
        str_of(&descriptor_for(&index, "arm64")["digest"], "digest"),
    );
    let config = capture(Command::new("skopeo").args(["inspect", "--config", "--raw", &spec]));
    config.assert_success();
    assert_eq!(
        sha256_digest(config.stdout.as_bytes()),
        str_of(&manifest["config"]["digest"], "config digest")
    );
}

/// `--binary FILE --platform PLATFORM` of a prebuilt file, into a fresh layout.
fn package_binary(binary: &Path, platform: &str) -> (Run, Layout, tempfile::TempDir) {
    let project = Project::copy("hello");
    let (run, layout, out) = try_build(
        &project,
        Some(&shared_target_dir("hello")),
        &[
            "--binary",
            binary.to_str().expect("utf-8 path"),
            "--platform",
            platform,
        ],
    );
    (run, layout, out)
}

/// The binary of `platform` ("linux/arm64") from the shared two-platform hello image.
fn hello_binary(platform: &str) -> PathBuf {
    let built = hello_multi();
    let json = built.run.json();
    let digest = str_of(&reported_manifest(&json, platform)["digest"], "digest");
    let dir = tempdir().keep();
    binary_from_image(&built.layout, digest, &dir)
}

/// Packing the `built` platform's binary as `asked` fails, naming both architectures, and
/// writes nothing.
fn assert_refused_naming_both_architectures(built: &str, asked: &str) {
    let binary = hello_binary(built);
    let (run, layout, _out) = package_binary(&binary, asked);
    assert_error(&run, 1, &[]);
    let line = error_line(&run).to_lowercase();
    assert!(line.contains("aarch64") || line.contains("arm64"), "{run}");
    assert!(line.contains("x86_64") || line.contains("amd64"), "{run}");
    assert!(!layout.dir.exists());
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn aarch64_binary_is_refused_for_linux_amd64_naming_both_architectures() {
    assert_refused_naming_both_architectures("linux/arm64", "linux/amd64");
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn x86_64_binary_is_refused_for_linux_arm64_naming_both_architectures() {
    assert_refused_naming_both_architectures("linux/amd64", "linux/arm64");
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn prebuilt_aarch64_binary_for_linux_arm64_makes_the_same_manifest_as_the_built_one() {
    let arm = hello_binary("linux/arm64");
    let (run, layout, _out) = package_binary(&arm, "linux/arm64");
    run.assert_success();
    assert_eq!(layout.config()["architecture"], "arm64");
    let json = hello_multi().run.json();
    assert_eq!(
        run.digest(),
        str_of(&reported_manifest(&json, "linux/arm64")["digest"], "digest")
    );
}
