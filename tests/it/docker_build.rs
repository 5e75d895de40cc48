//! The generated Dockerfile, built by Docker Engine's BuildKit: rendered with
//! `--no-syntax-line` (nothing can be pulled here, so BuildKit cannot fetch the
//! `docker/dockerfile:1` frontend; its built-in one handles the cache mounts), built with the
//! builder image made locally, and checked against the image `cargo containerize build` makes
//! of the same commit: the same config, the same files, the same binary, and it runs. A second build after a one-line edit reuses the target directory's cache mount: cargo
//! compiles only the edited crate, not its path dependency (the build log shows it, and the
//! test log gives both builds' times).
//!
//! The builder image the Dockerfile names (`docker.io/library/rust:<version>-slim-bookworm`)
//! is made with `docker import` of a root file system holding what the RUN steps use: this
//! machine's Rust toolchain (host and x86_64-musl standard libraries, rust-lld; no docs) under
//! RUSTUP_HOME=/usr/local/rustup, rustup's proxies in /usr/local/cargo/bin, the shell tools
//! the steps call and the shared libraries they load. The crate is built with
//! `auditable = false`, since installing cargo-auditable in the builder would reach crates.io.
//!
//! The binary is byte-identical to `build`'s: both link pure Rust with the toolchain's
//! rust-lld, build in `/build` (`build` remaps its paths there) and use the same rustc.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::podman_build::{Saved, add_entries, assert_same_amd64_image, builder_reference};
use crate::support::docker::{Docker, buildkit_client, docker};
use std::collections::BTreeMap;

const SETTINGS: &str = r#"
[package.metadata.containerize]
auditable = false
env = { GREETING = "namaste $HOME \"x\"" }
user = "1000:2000"
workdir = "/srv/app"
ports = [8080]
stop-signal = "SIGINT"
labels = { "com.example.team" = "infra \"core\"" }
timezone = "Asia/Kolkata"
zones = ["Asia/Kolkata", "UTC"]
"#;

/// The toolchain directory rustc runs from (the link `1.95.0-…` → `stable-…` resolved).
fn toolchain_dir() -> PathBuf {
    let run = capture(Command::new("rustup").args(["which", "rustc"]));
    run.assert_success();
    let rustc = PathBuf::from(run.stdout.trim());
    rustc
        .parent()
        .and_then(Path::parent)
        .expect("toolchain dir")
        .canonicalize()
        .expect("canonical toolchain dir")
}

/// The shared libraries `ldd` lists for `binary` (absolute paths as the loader finds them).
fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let run = capture(Command::new("ldd").arg(binary));
    run.stdout
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

/// Copies `from` (symlinks followed) to `root` + `inside`, with its mode.
fn put(root: &Path, inside: &Path, from: &Path) {
    // /lib, /lib64 and /bin are links into /usr here (and in the image).
    let inside = inside.strip_prefix("/").expect("absolute");
    let inside = match inside.components().next().map(|c| c.as_os_str().to_str()) {
        Some(Some("lib" | "lib64" | "bin" | "sbin")) => Path::new("usr").join(inside),
        _ => inside.to_path_buf(),
    };
    let to = root.join(inside);
    fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
    fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {from:?}: {e}"));
}

/// The builder's root file system as a tar for `docker import`.
fn builder_tar(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    let toolchain = toolchain_dir();
    let name = toolchain
        .file_name()
        .and_then(|n| n.to_str())
        .expect("toolchain name")
        .to_string();
    for d in [
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "usr/lib64",
        "usr/local/cargo/bin",
        "usr/local/cargo/registry",
        "usr/local/rustup/toolchains",
        "etc",
        "tmp",
        "root",
        "build",
    ] {
        fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    use std::os::unix::fs::{PermissionsExt, symlink};
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod");
    for d in ["bin", "sbin", "lib", "lib64"] {
        symlink(format!("usr/{d}"), root.join(d)).expect("symlink");
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    fs::write(root.join("etc/group"), "root:x:0:\n").expect("group");

    // The programs the RUN steps call, and what every binary that runs loads.
    let mut binaries: Vec<PathBuf> = Vec::new();
    for program in [
        "sh", "install", "readelf", "grep", "mkdir", "find", "chmod", "chown", "cat", "ls", "rm",
        "cp", "env",
    ] {
        let path = which::which(program).unwrap_or_else(|_| panic!("{program} on PATH"));
        put(&root, &Path::new("/usr/bin").join(program), &path);
        binaries.push(path);
    }
    let rustup = which::which("rustup").expect("rustup on PATH");
    put(&root, Path::new("/usr/local/cargo/bin/rustup"), &rustup);
    for proxy in ["cargo", "rustc"] {
        symlink("rustup", root.join("usr/local/cargo/bin").join(proxy)).expect("symlink");
    }
    binaries.push(rustup);
    binaries.extend([
        toolchain.join("bin/cargo"),
        toolchain.join("bin/rustc"),
        toolchain.join("lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld"),
    ]);
    binaries.extend(
        fs::read_dir(toolchain.join("lib"))
            .expect("toolchain lib")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains(".so")),
    );
    for binary in &binaries {
        for lib in shared_libraries(binary) {
            if !lib.starts_with(&toolchain) && lib.exists() {
                put(&root, &lib, &lib);
            }
        }
    }
    let host_settings = std::env::var_os("RUSTUP_HOME")
        .map_or_else(
            || std::env::home_dir().expect("home").join(".rustup"),
            PathBuf::from,
        )
        .join("settings.toml");
    let version_line = fs::read_to_string(host_settings)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("version"))
                .map(String::from)
        })
        .unwrap_or_else(|| "version = \"12\"".into());
    fs::write(
        root.join("usr/local/rustup/settings.toml"),
        format!(
            "{version_line}\ndefault_toolchain = \"{name}\"\nprofile = \"minimal\"\nauto_self_update = \"disable\"\n"
        ),
    )
    .expect("settings.toml");

    // The toolchain, without its docs, sources and other targets, relocated into RUSTUP_HOME.
    let tar = dir.join("builder.tar");
    let toolchains = toolchain.parent().expect("toolchains dir");
    let mut cmd = Command::new("tar");
    cmd.arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&root)
        .arg(".")
        .arg("-C")
        .arg(toolchains);
    for excluded in [
        "share",
        "libexec",
        "lib/rustlib/src",
        "lib/rustlib/aarch64-unknown-linux-musl",
    ] {
        cmd.arg(format!("--exclude={name}/{excluded}"));
    }
    cmd.arg(format!(
        "--transform=s,^{name},usr/local/rustup/toolchains/{name},rh"
    ))
    .arg(&name);
    capture(&mut cmd).assert_success();
    tar
}

/// `docker import` of the builder's root file system under `name`.
fn import_builder(d: &Docker, name: &str) {
    let dir = tempdir();
    let tar = builder_tar(dir.path());
    let size = fs::metadata(&tar).map(|m| m.len()).unwrap_or(0);
    let started = Instant::now();
    docker(&[
        "import",
        "--change",
        "ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--change",
        "ENV RUSTUP_HOME=/usr/local/rustup",
        "--change",
        "ENV CARGO_HOME=/usr/local/cargo",
        tar.to_str().expect("utf-8"),
        name,
    ])
    .assert_success();
    d.adopt(name);
    eprintln!(
        "docker import of the builder ({} MiB) took {:?}",
        size >> 20,
        started.elapsed()
    );
}

/// BuildKit builds the Dockerfile in `root` as `tag`; returns the build's log and time.
fn buildkit_build(root: &Path, tag: &str, build_args: &[String]) -> (Run, Duration) {
    let (client, words) = buildkit_client().expect("checked by the caller");
    let mut cmd = Command::new("timeout");
    cmd.args(["--kill-after=10", "900"])
        .arg(client)
        .args(words)
        .args(["--progress=plain", "-f", "Dockerfile", "-t", tag])
        .env("DOCKER_BUILDKIT", "1")
        .current_dir(root);
    for arg in build_args {
        cmd.args(["--build-arg", arg]);
    }
    cmd.arg(".");
    let started = Instant::now();
    let run = capture(&mut cmd);
    (run, started.elapsed())
}

/// `docker save` of `image`: its config, files and bytes.
fn docker_save(image: &str) -> Saved {
    let dir = tempdir();
    let archive = dir.path().join("saved.tar");
    docker(&["save", "-o", archive.to_str().expect("utf-8"), image]).assert_success();
    let entries = tar_entries(fs::File::open(&archive).expect("open"));
    let by_path: BTreeMap<&str, &[u8]> = entries
        .iter()
        .map(|e| (e.path.trim_start_matches("./"), e.data.as_slice()))
        .collect();
    let manifest: serde_json::Value =
        serde_json::from_slice(by_path["manifest.json"]).expect("manifest.json");
    let config_path = manifest[0]["Config"].as_str().expect("Config");
    let config: serde_json::Value =
        serde_json::from_slice(by_path[config_path]).expect("config json");
    let (mut files, mut contents) = (BTreeMap::new(), BTreeMap::new());
    for layer in manifest[0]["Layers"].as_array().expect("Layers") {
        let bytes = by_path[layer.as_str().expect("layer path")];
        add_entries(&mut files, &mut contents, tar_entries(bytes));
    }
    Saved {
        config,
        files,
        contents,
    }
}

fn layout_image(layout: &Layout) -> Saved {
    let (mut files, mut contents) = (BTreeMap::new(), BTreeMap::new());
    for d in layout.layer_digests() {
        add_entries(&mut files, &mut contents, layout.layer_entries(&d));
    }
    Saved {
        config: layout.config(),
        files,
        contents,
    }
}

#[test]
#[ignore = "heavy: needs docker"]
fn docker_buildkit_builds_the_dockerfile_without_the_syntax_line_and_a_rebuild_reuses_the_cache() {
    let Some(d) = Docker::connect() else { return };
    if buildkit_client().is_none() {
        return;
    }
    // hello with a path dependency that the one-line edit leaves alone.
    let project = Project::copy("hello");
    project.append_manifest("helper = { path = \"helper\" }\n");
    project.append_manifest(SETTINGS);
    project.write(
        "helper/Cargo.toml",
        "[package]\nname = \"helper\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    project.write("helper/src/lib.rs", "pub fn help() -> u32 {\n    42\n}\n");
    capture(
        Command::new("cargo")
            .args(["generate-lockfile", "--offline", "--manifest-path"])
            .arg(project.manifest()),
    )
    .assert_success();
    commit_all(&project.root);

    let (run, reference, _reference_dir) = try_build(
        &project,
        Some(&shared_target_dir("hello-docker-build")),
        &["--platform", "linux/amd64"],
    );
    run.assert_success();
    capture(tool(&project.root).args([
        "dockerfile",
        "-o",
        "Dockerfile",
        "--dockerignore",
        "--no-syntax-line",
    ]))
    .assert_success();
    let dockerfile = fs::read_to_string(project.root.join("Dockerfile")).expect("Dockerfile");
    assert!(!dockerfile.contains("# syntax="), "{dockerfile}");
    import_builder(&d, &builder_reference(&dockerfile));

    let labels = &reference.config()["config"]["Labels"];
    let build_args: Vec<String> = [
        ("CREATED", "org.opencontainers.image.created"),
        ("REVISION", "org.opencontainers.image.revision"),
    ]
    .iter()
    .map(|(arg, label)| format!("{arg}={}", labels[label].as_str().unwrap_or_default()))
    .collect();

    let tag = d.name("hello-dockerfile", "amd64");
    let (first, first_took) = buildkit_build(&project.root, &tag, &build_args);
    first.assert_success();
    eprintln!("first docker build took {first_took:?}");

    let built = docker_save(&tag);
    let reference = layout_image(&reference);
    let binary = assert_same_amd64_image(&built, &reference);
    let key = binary.trim_start_matches('/');
    assert!(
        built.contents[key] == reference.contents[key],
        "the Dockerfile's binary ({} bytes) is not the one `cargo containerize build` made of the same commit ({} bytes)",
        built.contents[key].len(),
        reference.contents[key].len()
    );

    let ran = d.run(&["--read-only"], &tag, &[]);
    ran.assert_success();
    assert_eq!(
        ran.stdout.lines().next(),
        Some("hello from cargo-containerize"),
        "{ran}"
    );
    assert_eq!(stdout_value(&ran, "uid"), Some("1000"), "{ran}");
    assert_eq!(stdout_value(&ran, "cwd"), Some("/srv/app"), "{ran}");
    assert_eq!(stdout_env(&ran, "TZ"), Some("Asia/Kolkata"), "{ran}");

    // A one-line edit: only hello is compiled again; helper comes from the cache mount.
    let main = project.root.join("src/main.rs");
    let text = fs::read_to_string(&main).expect("main.rs");
    fs::write(
        &main,
        text.replace(
            "let greeting = \"hello from cargo-containerize\";",
            "let greeting = \"hello again from cargo-containerize\";",
        ),
    )
    .expect("edit");
    // A tag of its own, so the first image stays named (and is removed) rather than dangling.
    let tag = d.name("hello-dockerfile", "edited");
    let (second, second_took) = buildkit_build(&project.root, &tag, &build_args);
    second.assert_success();
    eprintln!("second docker build, after a one-line edit, took {second_took:?}");
    let compiled: Vec<&str> = second
        .stderr
        .lines()
        .filter(|l| l.contains("Compiling "))
        .collect();
    eprintln!("the second build compiled: {compiled:?}");
    assert!(
        compiled.iter().any(|l| l.contains("Compiling hello ")),
        "the edit was not compiled: {second}"
    );
    assert!(
        !compiled.iter().any(|l| l.contains("Compiling helper ")),
        "the dependency was compiled again: the target directory's cache mount was not reused: {second}"
    );
    let ran = d.run(&[], &tag, &[]);
    ran.assert_success();
    assert_eq!(
        ran.stdout.lines().next(),
        Some("hello again from cargo-containerize"),
        "{ran}"
    );
}
