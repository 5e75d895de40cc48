//! `from` (image/base.rs) end to end with the tool's own images as bases: an `oci:` layout
//! base is put below the crate's layers with its files respected; a registry base (Debian's
//! docker-registry on loopback) is resolved to a printed digest, built again from the cache
//! with the registry stopped, refetched when a cached blob is damaged, and mounted, not
//! uploaded, when the image is pushed to the same registry. (The busybox and distroless-style
//! bases, runc/qemu runs and syft live in `base_images.rs`.)

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;
use crate::support::registry::Registry;
use serde_json::Value;

/// A run of the tool in `project` with its own user cache (the remembered resolutions) and
/// no credentials of the machine.
fn tool_with(project: &Project, cache: &Path, target: &Path) -> std::process::Command {
    let mut cmd = tool(&project.root);
    cmd.args(["build", "--locked", "--target-dir"])
        .arg(target)
        .env("CARGO_CONTAINERIZE_CACHE", cache)
        .env("DOCKER_CONFIG", cache.join("no-docker-config"))
        .env_remove("REGISTRY_AUTH_FILE");
    cmd
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("JSON")
}

/// The image a layout's tag names: its manifest and config, read from the blobs.
fn layout_image(dir: &Path, tag: &str) -> (Value, Value) {
    let index = read_json(&dir.join("index.json"));
    let digest = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .and_then(|m| m["digest"].as_str())
        .expect("the tag's entry")
        .to_string();
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest = read_json(&blob(&digest));
    let config = read_json(&blob(
        manifest["config"]["digest"].as_str().expect("config"),
    ));
    (manifest, config)
}

fn layer_digests(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect()
}

/// The hello image on scratch, written to `dir:base`: a base with every base file, the CA
/// bundle, tzdata and /usr/local/bin/hello.
fn scratch_base(dir: &Path, cache: &Path) {
    let project = Project::copy("hello");
    let mut cmd = tool_with(&project, cache, &shared_target_dir("hello"));
    cmd.arg("--output")
        .arg(format!("oci:{}:base", dir.display()));
    capture(&mut cmd).assert_success();
}

#[test]
#[ignore = "heavy: builds the hello fixture twice"]
fn a_layout_base_lies_below_the_crate_layers_and_keeps_its_files() {
    let work = tempdir();
    let cache = work.path().join("cache");
    let base_dir = work.path().join("base");
    scratch_base(&base_dir, &cache);
    let (base_manifest, _) = layout_image(&base_dir, "base");
    let from = format!("oci:{}:base", base_dir.display());
    let project = Project::copy("hello");

    // The binary's path is the base's: an error naming both, before any build.
    let mut cmd = tool_with(&project, &cache, &shared_target_dir("hello"));
    cmd.args(["--from", &from, "--output"])
        .arg(format!("oci:{}:x", work.path().join("out").display()));
    let run = capture(&mut cmd);
    assert_one_line_error(&run, &["binary-path", "/usr/local/bin/hello", "base image"]);

    // --debug without debug-from: a one-line error before any build.
    let mut cmd = tool_with(&project, &cache, &shared_target_dir("hello"));
    cmd.args(["--from", &from, "--debug"]);
    assert_one_line_error(&capture(&mut cmd), &["--debug", "debug-from"]);

    // Elsewhere, with the base's certificates and zones: only the binary layer is ours; the
    // debug variant (here on the same base) goes under v1-debug in the same layout.
    let out = work.path().join("out");
    let mut cmd = tool_with(&project, &cache, &shared_target_dir("hello"));
    cmd.args(["--from", &from, "--ca-certs", "base", "--tzdata", "base"])
        .args(["--debug", "--debug-from", &from])
        .arg("--output")
        .arg(format!("oci:{}:v1", out.display()));
    project.append_manifest("\n[package.metadata.containerize]\nbinary-path = \"/app/hello\"\n");
    let run = capture(&mut cmd);
    run.assert_success();
    // Named without the local path, in the status line and the annotation.
    assert!(
        run.stderr.contains("Base oci:base:base@sha256:"),
        "{}",
        run.stderr
    );
    let (manifest, config) = layout_image(&out, "v1");
    let base_layers = layer_digests(&base_manifest);
    let layers = layer_digests(&manifest);
    assert_eq!(&layers[..base_layers.len()], base_layers.as_slice());
    assert_eq!(
        layers.len(),
        base_layers.len() + 1,
        "only the binary is ours"
    );
    let a = &manifest["annotations"];
    assert_eq!(a["org.opencontainers.image.base.name"], "oci:base:base");
    let base_index = read_json(&base_dir.join("index.json"));
    assert_eq!(
        a["org.opencontainers.image.base.digest"],
        base_index["manifests"][0]["digest"]
    );
    let (debug_manifest, _) = layout_image(&out, "v1-debug");
    assert_eq!(
        debug_manifest["annotations"]["org.opencontainers.image.base.name"],
        "oci:base:base"
    );
    assert_eq!(layer_digests(&debug_manifest).last(), layers.last());
    assert_eq!(config["config"]["Entrypoint"][0], "/app/hello");
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["history"].as_array().expect("history").len(),
        base_layers.len() + 1
    );

    // A damaged layer in the base's layout is refused, naming it, and nothing is written
    // (its binary layer: the others are the tool's own shared layers, which a fresh run
    // makes itself, correctly).
    let damaged = work.path().join("damaged");
    copy_tree(&base_dir, &damaged);
    let layer = base_layers.last().expect("a layer");
    fs::write(
        damaged
            .join("blobs/sha256")
            .join(layer.trim_start_matches("sha256:")),
        b"damaged",
    )
    .expect("damage a layer");
    let fresh_target = work.path().join("fresh-target");
    let mut cmd = tool_with(&project, &cache, &fresh_target);
    cmd.args(["--from", &format!("oci:{}:base", damaged.display())])
        .arg("--output")
        .arg(format!("oci:{}:v1", work.path().join("never").display()));
    assert_one_line_error(&capture(&mut cmd), &["does not match its digest", layer]);
    assert!(!work.path().join("never").exists());
}

/// Where the tool's blob store keeps blob `digest` under `target`.
fn cached_blob(target: &Path, digest: &str) -> PathBuf {
    target
        .join("containerize/cache/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

#[test]
#[ignore = "heavy: docker-registry, builds the hello fixture three times"]
fn a_registry_base_is_pinned_remembered_refetched_and_mounted() {
    let work = tempdir();
    let cache = work.path().join("cache");
    let target = work.path().join("target");
    let registry = Registry::plain();
    let base_ref = registry.reference("base/hello:v1");
    // The base: hello on scratch, pushed by the tool.
    let base_project = Project::copy("hello");
    let mut cmd = tool_with(&base_project, &cache, &shared_target_dir("hello"));
    cmd.args(["--push", "-t", &base_ref]);
    capture(&mut cmd).assert_success();
    let base_digest = sha256_digest(&registry.manifest_bytes("base/hello:v1"));

    let project = Project::copy("hello");
    project.append_manifest(&format!(
        "\n[package.metadata.containerize]\nbinary-path = \"/app/hello\"\nfrom = \"{base_ref}\"\n"
    ));
    let build = |extra: &[&str]| {
        let mut cmd = tool_with(&project, &cache, &target);
        cmd.args(extra);
        capture(&mut cmd)
    };
    let first = build(&[
        "--output",
        &format!("oci:{}:v1", work.path().join("a").display()),
    ]);
    first.assert_success();
    assert!(
        first
            .stderr
            .contains(&format!("Base {base_ref}@{base_digest}")),
        "{}",
        first.stderr
    );

    // A damaged cached base layer is fetched again, never used.
    let base_manifest = registry.manifest("base/hello:v1");
    let layer = base_manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer");
    fs::write(cached_blob(&target, layer), b"damaged").expect("damage the cached blob");
    let again = build(&[
        "--output",
        &format!("oci:{}:v1", work.path().join("b").display()),
    ]);
    again.assert_success();
    assert_eq!(again.digest(), first.digest(), "{}", again.stderr);
    assert!(
        again.stderr.contains(layer.trim_start_matches("sha256:")),
        "{}",
        again.stderr
    );

    // The push to the same registry mounts the base's layers from its repository.
    let app_ref = registry.reference("app/hello:v1");
    let push = build(&["--push", "-t", &app_ref]);
    push.assert_success();
    let requests = registry.requests();
    for l in base_manifest["layers"].as_array().expect("layers") {
        let hex = l["digest"].as_str().expect("digest").replace(':', "%3A");
        assert!(
            requests.iter().any(|r| r.method == "POST"
                && r.uri.contains(&format!("mount={hex}"))
                && r.status == 201),
            "{requests:?}"
        );
    }
    assert!(
        !requests.iter().any(|r| r.method == "PUT"
            && r.uri.starts_with("/v2/app/hello/blobs/uploads/")
            && r.uri.contains(&layer.replace(':', "%3A"))),
        "a base layer was uploaded: {requests:?}"
    );

    // With the registry gone, the remembered resolution and the cache build the same image.
    drop(registry);
    let offline = build(&[
        "--output",
        &format!("oci:{}:v1", work.path().join("c").display()),
    ]);
    offline.assert_success();
    assert_eq!(offline.digest(), first.digest());
    assert!(
        offline.stderr.contains("as resolved at"),
        "{}",
        offline.stderr
    );
    let flagged = build(&[
        "--offline",
        "--output",
        &format!("oci:{}:v1", work.path().join("d").display()),
    ]);
    flagged.assert_success();
    assert_eq!(flagged.digest(), first.digest());
    // Pinned by digest, with its blobs in the cache: no request, no warning; the annotations
    // name the reference as given and the same base digest.
    let pinned_ref = format!("{base_ref}@{base_digest}");
    let pinned_out = work.path().join("e");
    let pinned = build(&[
        "--from",
        &pinned_ref,
        "--output",
        &format!("oci:{}:v1", pinned_out.display()),
    ]);
    pinned.assert_success();
    assert!(
        !pinned.stderr.contains("cannot be reached") && !pinned.stderr.contains("as resolved at"),
        "{}",
        pinned.stderr
    );
    let (manifest, _) = layout_image(&pinned_out, "v1");
    let a = &manifest["annotations"];
    assert_eq!(a["org.opencontainers.image.base.name"], pinned_ref.as_str());
    assert_eq!(
        a["org.opencontainers.image.base.digest"],
        base_digest.as_str()
    );
    // Built again on the same pinned base: the same image.
    let again = build(&[
        "--from",
        &pinned_ref,
        "--output",
        &format!("oci:{}:v1", work.path().join("f").display()),
    ]);
    assert_eq!(again.digest(), pinned.digest());
}

#[test]
#[ignore = "heavy: two docker-registry instances, builds the hello fixture twice"]
fn the_push_credential_goes_only_to_the_registry_pushed_to_and_the_base_gets_its_own() {
    use crate::support::registry::{Credentials, Options};
    let work = tempdir();
    let cache = work.path().join("cache");
    let base_credentials = Credentials::new("cct-base", "base-Pa55-not-in-output");
    let push_credentials = Credentials::new("cct-push", "push-Pa55-not-in-output");
    let base_registry = Registry::start(Options {
        auth: Some(base_credentials.clone()),
        ..Options::default()
    });
    let push_registry = Registry::start(Options {
        auth: Some(push_credentials.clone()),
        ..Options::default()
    });
    // docker's config holds the base registry's credential only.
    let config_dir = work.path().join("docker");
    fs::create_dir_all(&config_dir).expect("docker config dir");
    let config = serde_json::json!({"auths": {base_registry.host(): {"auth": base_credentials.basic_auth()}}});
    fs::write(config_dir.join("config.json"), config.to_string()).expect("config.json");
    let base_ref = base_registry.reference("base/hello:v1");
    let base_project = Project::copy("hello");
    let mut cmd = tool_with(&base_project, &cache, &shared_target_dir("hello"));
    cmd.args(["--push", "-t", &base_ref])
        .env("DOCKER_CONFIG", &config_dir);
    capture(&mut cmd).assert_success();

    let project = Project::copy("hello");
    project.append_manifest("\n[package.metadata.containerize]\nbinary-path = \"/app/hello\"\n");
    let app_ref = push_registry.reference("app/hello:v1");
    let push = |with_config: bool| {
        let mut cmd = tool_with(&project, &cache, &work.path().join("target"));
        cmd.args(["--from", &base_ref, "--push", "-t", &app_ref])
            .args(["--username", &push_credentials.username, "--password-stdin"]);
        if with_config {
            cmd.env("DOCKER_CONFIG", &config_dir);
        }
        capture_with_stdin(&mut cmd, &push_credentials.password)
    };
    // The flag's credential is the push registry's: sent to the base's registry, it would
    // be refused there; the base gets docker's for its own registry.
    let run = push(true);
    run.assert_success();
    let base_digest = sha256_digest(&base_registry.manifest_bytes("base/hello:v1"));
    assert!(
        run.stderr
            .contains(&format!("Base {base_ref}@{base_digest}")),
        "{run}"
    );
    // Without docker's credential for it, the base's registry refuses: one line naming it,
    // and neither password anywhere.
    let run = push(false);
    assert_one_line_error(&run, &[&base_registry.host()]);
    for secret in [&base_credentials.password, &push_credentials.password] {
        assert!(
            !run.stderr.contains(secret.as_str()) && !run.stdout.contains(secret.as_str()),
            "{run}"
        );
    }
}

/// `oci:DIR` without a tag takes a layout's only image; with two it is a one-line error
/// listing the tags. A manifest the tool does not read (Docker schema 1, an unknown media
/// type), hand-written into the layout, is refused with a one-line error naming it, before
/// any build.
#[test]
#[ignore = "heavy: builds the hello fixture twice"]
fn a_layout_without_a_tag_needs_one_image_and_unreadable_manifests_are_refused() {
    let work = tempdir();
    let cache = work.path().join("cache");
    let dir = work.path().join("base");
    scratch_base(&dir, &cache);
    let project = Project::copy("hello");
    project.append_manifest("\n[package.metadata.containerize]\nbinary-path = \"/app/hello\"\n");
    let from = format!("oci:{}", dir.display());
    let build = |from: &str| {
        let mut cmd = tool_with(&project, &cache, &shared_target_dir("hello"));
        cmd.args(["--from", from, "--output"])
            .arg(format!("oci:{}:v1", work.path().join("out").display()));
        capture(&mut cmd)
    };

    // One image in the layout: no tag needed, and it is the base.
    build(&from).assert_success();
    let (base_manifest, _) = layout_image(&dir, "base");
    let (manifest, _) = layout_image(&work.path().join("out"), "v1");
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.digest"],
        sha256_digest(&serde_json::to_vec(&base_manifest).expect("JSON")).as_str(),
        "{manifest}"
    );
    assert_eq!(
        layer_digests(&manifest)[..layer_digests(&base_manifest).len()],
        layer_digests(&base_manifest)[..]
    );

    // Three more entries: the same image as `other`, and two hand-written manifests.
    let index_path = dir.join("index.json");
    let mut index = read_json(&index_path);
    let entries = index["manifests"].as_array_mut().expect("manifests");
    let mut other = entries[0].clone();
    other["annotations"]["org.opencontainers.image.ref.name"] = "other".into();
    entries.push(other);
    let schema1 = br#"{"schemaVersion":1,"name":"o/base","tag":"1","architecture":"amd64","fsLayers":[],"history":[]}"#;
    let odd = br#"{"schemaVersion":2,"mediaType":"application/vnd.example.thing.v1+json"}"#;
    for (tag, media_type, bytes) in [
        (
            "schema1",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            &schema1[..],
        ),
        ("odd", "application/vnd.example.thing.v1+json", &odd[..]),
    ] {
        let digest = sha256_digest(bytes);
        fs::write(
            dir.join("blobs/sha256").join(&digest["sha256:".len()..]),
            bytes,
        )
        .expect("write blob");
        entries.push(serde_json::json!({
            "mediaType": media_type,
            "digest": digest,
            "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
    }
    fs::write(&index_path, serde_json::to_vec(&index).expect("JSON")).expect("write index");

    assert_one_line_error(
        &build(&from),
        &["4 images", ":TAG", "base, other, schema1, odd"],
    );
    assert_one_line_error(&build(&format!("{from}:schema1")), &["schema 1"]);
    assert_one_line_error(
        &build(&format!("{from}:odd")),
        &[
            "application/vnd.example.thing.v1+json",
            "not an image manifest",
        ],
    );
}

/// `init` lists `from` and `debug-from` (commented), and `doctor` says what each base
/// resolves to, or that it does not (then it fails, naming the key).
#[test]
#[ignore = "heavy: builds the hello fixture once"]
fn init_lists_the_base_settings_and_doctor_resolves_each_base() {
    let work = tempdir();
    let cache = work.path().join("cache");
    let dir = work.path().join("base");
    scratch_base(&dir, &cache);

    let project = Project::copy("hello");
    capture(tool(&project.root).arg("init")).assert_success();
    let manifest = fs::read_to_string(project.manifest()).expect("read Cargo.toml");
    for key in ["from", "debug-from"] {
        assert!(
            manifest
                .lines()
                .any(|l| l.starts_with(&format!("# {key} = "))),
            "init does not list {key}:\n{manifest}"
        );
    }

    let project = Project::copy("hello");
    let missing = work.path().join("missing");
    project.append_manifest(&format!(
        "\n[package.metadata.containerize]\nfrom = \"oci:{}:base\"\ndebug-from = \"oci:{}\"\n",
        dir.display(),
        missing.display()
    ));
    let run = capture(tool(&project.root).args(["doctor", "--locked"]));
    assert_eq!(run.code(), Some(1), "{run}");
    let line = |key: &str| doctor_line(&run, key);
    let entry = read_json(&dir.join("index.json"))["manifests"][0]["digest"]
        .as_str()
        .expect("the base's digest")
        .to_string();
    let from = line("from");
    assert!(from.ends_with(&format!(":base@{entry}")), "{from}");
    let debug = line("debug-from");
    assert!(
        debug.contains("DOES NOT RESOLVE") && debug.contains("index.json"),
        "{debug}"
    );
}

/// `doctor` asks a base's registry with the TLS settings `build` takes: a registry with a
/// private CA does not resolve without `--registry-ca` (the line says why) and resolves to the
/// digest it serves with it.
#[test]
#[ignore = "heavy: a docker-registry with TLS, the busybox base fixture"]
fn doctor_checks_a_base_with_the_registry_ca_given() {
    use crate::support::bases;
    use crate::support::registry::Options;
    let registry = Registry::start(Options {
        tls: true,
        ..Options::default()
    });
    let served = bases::busybox().push(&registry, "base/busybox:1");
    let project = Project::copy("hello");
    project.append_manifest(&format!(
        "\n[package.metadata.containerize]\nfrom = \"{}\"\n",
        served.reference
    ));
    let from_line = |run: &Run| doctor_line(run, "from");
    let without = capture(tool(&project.root).args(["doctor", "--locked"]));
    assert_eq!(without.code(), Some(1), "{without}");
    assert!(
        from_line(&without).contains("DOES NOT RESOLVE"),
        "{without}"
    );
    let with = capture(
        tool(&project.root)
            .args(["doctor", "--locked", "--registry-ca"])
            .arg(registry.ca_file()),
    );
    with.assert_success();
    let line = from_line(&with);
    assert!(
        line.ends_with(&format!("@{}", served.index_digest)),
        "{with}"
    );
}

/// The line `doctor` prints for the setting `key` (`from`, `debug-from`).
fn doctor_line(run: &Run, key: &str) -> String {
    run.stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .unwrap_or_else(|| panic!("doctor says nothing of {key}: {run}"))
        .to_string()
}
