//! The generated Dockerfile, built for real: podman builds it for the hello fixture (with
//! settings that touch every part of the image config), the image runs, and its config and
//! files match the image `cargo containerize build` makes for the same crate.
//!
//! No image can be pulled here, so the test makes the builder image the Dockerfile's ARGs name
//! (`docker.io/library/rust:<version>-slim-bookworm`) with `podman import`: a skeleton root
//! file system whose /usr, Rust toolchain (RUSTUP_HOME) and cargo proxies are this machine's,
//! lent read-only to the RUN steps with `podman build -v`, as in the official image's layout
//! (RUSTUP_HOME=/usr/local/rustup, CARGO_HOME=/usr/local/cargo). The arm64 image is built from
//! the same amd64 builder by cross-compiling, as on a real amd64 build machine.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::*;
use crate::support::podman::Podman;
use serde_json::Value;
use tempfile::TempDir;

/// Every image config field the Dockerfile sets, with values that need quoting.
const SETTINGS: &str = r#"
[package.metadata.containerize]
binary-path = "/opt/hello bin/hi"
entrypoint = ["/opt/hello bin/hi", "--from-entrypoint"]
args = ["first", "it's \"quoted\""]
env = { GREETING = "namaste $HOME \"x\" \\y", EMPTY = "" }
user = "1000:2000"
workdir = "/srv/app"
ports = ["8080/tcp", 9090, "5353/udp"]
stop-signal = "SIGINT"
labels = { "com.example.team" = "infra \"core\"" }
timezone = "Asia/Kolkata"
zones = ["Asia/Kolkata", "UTC"]
include = [
  { src = "assets/greeting.txt", dest = "/etc/hello/greeting.txt" },
  { src = "assets/bin", dest = "/opt/tools" },
]
"#;

const TAG: &str = "localhost/hello-dockerfile";

struct Setup {
    project: Project,
    /// The image `cargo containerize build` made.
    reference: Layout,
    _reference_dir: TempDir,
    podman: Podman,
    /// TMPDIR for podman build (buildah keeps its cache mounts there).
    tmp: TempDir,
    /// The build arguments carrying the labels that change with every commit.
    build_args: Vec<String>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let project = Project::copy("hello");
        project.append_manifest(SETTINGS);
        project.write("assets/greeting.txt", "namaste from an include\n");
        let script = project.write("assets/bin/tool.sh", "#!/bin/sh\necho tool\n");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
        project.write("assets/bin/README", "tools\n");
        git_commit(&project.root);

        let (run, reference, reference_dir) = try_build(
            &project,
            Some(&shared_target_dir("hello-dockerfile")),
            &["--platform", "linux/amd64"],
        );
        run.assert_success();

        capture(tool(&project.root).args(["dockerfile", "-o", "Dockerfile", "--dockerignore"]))
            .assert_success();

        let podman = Podman::new();
        import_builder_image(&podman, &project.root.join("Dockerfile"));

        let labels = &reference.config()["config"]["Labels"];
        let build_args = [
            ("CREATED", "org.opencontainers.image.created"),
            ("REVISION", "org.opencontainers.image.revision"),
        ]
        .iter()
        .map(|(arg, label)| format!("{arg}={}", labels[label].as_str().unwrap_or_default()))
        .collect();
        Setup {
            project,
            reference,
            _reference_dir: reference_dir,
            podman,
            tmp: tempdir(),
            build_args,
        }
    })
}

/// Makes the copy a git repository of its own with one commit, so that `build` labels the
/// image with a revision wherever the test's scratch directory is.
fn git_commit(dir: &Path) {
    let git = |args: &[&str]| {
        capture(
            Command::new("git")
                .arg("-C")
                .arg(dir)
                .args([
                    "-c",
                    "user.name=test",
                    "-c",
                    "user.email=test@example.invalid",
                ])
                .args(args),
        )
        .assert_success();
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "fixture"]);
}

/// `ARG NAME=default` of the Dockerfile.
pub(crate) fn arg_default(dockerfile: &str, name: &str) -> String {
    dockerfile
        .lines()
        .find_map(|l| l.strip_prefix(&format!("ARG {name}=")))
        .unwrap_or_else(|| panic!("no ARG {name}= in the Dockerfile:\n{dockerfile}"))
        .trim()
        .to_string()
}

/// The builder image the Dockerfile names, with its ARGs' defaults filled in.
pub(crate) fn builder_reference(dockerfile: &str) -> String {
    let from = dockerfile
        .lines()
        .find(|l| l.starts_with("FROM ") && l.ends_with(" AS builder"))
        .unwrap_or_else(|| panic!("no builder stage:\n{dockerfile}"));
    let image = from
        .split_whitespace()
        .skip(1)
        .find(|w| !w.starts_with("--"))
        .expect("image after FROM");
    image
        .replace("${RUST_IMAGE}", &arg_default(dockerfile, "RUST_IMAGE"))
        .replace("${RUST_VERSION}", &arg_default(dockerfile, "RUST_VERSION"))
}

/// Host directories lent read-only to the RUN steps, and where.
fn lent_dirs() -> Vec<(PathBuf, String)> {
    let home = std::env::home_dir().expect("home");
    let rustup =
        std::env::var_os("RUSTUP_HOME").map_or_else(|| home.join(".rustup"), PathBuf::from);
    // rustup's proxies (cargo, rustc -> rustup): the directory of the `cargo` on PATH. That is
    // CARGO_HOME/bin on a default install, but CI points CARGO_HOME at an empty cache and
    // keeps the proxies on PATH.
    let proxies = std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .find(|dir| dir.join("cargo").is_file() && dir.join("rustup").is_file())
        })
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_HOME")
                .map_or_else(|| home.join(".cargo"), PathBuf::from)
                .join("bin")
        });
    let mut dirs: Vec<(PathBuf, String)> = [
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "usr/lib64",
        "usr/libexec",
        "etc/ssl",
        // cc (which build scripts link with) is /usr/bin/cc -> /etc/alternatives/cc here.
        "etc/alternatives",
    ]
    .iter()
    .map(|d| (Path::new("/").join(d), format!("/{d}")))
    .collect();
    for d in ["bin", "sbin", "lib", "lib64"] {
        let host = Path::new("/").join(d);
        if host.is_dir() && !host.is_symlink() {
            dirs.push((host, format!("/{d}")));
        }
    }
    dirs.push((rustup, "/usr/local/rustup".into()));
    dirs.push((proxies, "/usr/local/cargo/bin".into()));
    dirs.retain(|(host, _)| host.exists());
    dirs
}

/// `podman import` of a skeleton root file system under the builder image's name.
fn import_builder_image(podman: &Podman, dockerfile: &Path) {
    let text = fs::read_to_string(dockerfile).expect("read Dockerfile");
    let name = builder_reference(&text);
    let dir = tempdir();
    let root = dir.path().join("rootfs");
    for (_, inside) in lent_dirs() {
        fs::create_dir_all(root.join(inside.trim_start_matches('/'))).expect("mkdir");
    }
    for d in ["bin", "sbin", "lib", "lib64"] {
        let host = Path::new("/").join(d);
        if let Ok(target) = fs::read_link(&host) {
            std::os::unix::fs::symlink(target, root.join(d)).expect("symlink");
        }
    }
    for d in ["tmp", "root", "build", "usr/local/cargo/registry"] {
        fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod");
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    fs::write(root.join("etc/group"), "root:x:0:\n").expect("group");
    let tar = dir.path().join("rootfs.tar");
    capture(
        Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    )
    .assert_success();
    capture(
        podman
            .cmd()
            .arg("import")
            .args([
                "--change",
                "ENV=PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change",
                "ENV=RUSTUP_HOME=/usr/local/rustup",
                "--change",
                "ENV=CARGO_HOME=/usr/local/cargo",
            ])
            .arg(&tar)
            .arg(&name),
    )
    .assert_success();
}

/// `podman build` of the generated Dockerfile for `platform`; returns the image's name.
fn podman_build(s: &Setup, platform: &str) -> String {
    podman_build_in(s, &s.project.root, TAG, platform, &s.build_args)
}

/// `podman build` of the Dockerfile in `root` for `platform`, named `name:<arch>`.
fn podman_build_in(
    s: &Setup,
    root: &Path,
    name: &str,
    platform: &str,
    build_args: &[String],
) -> String {
    let arch = platform.rsplit('/').next().expect("arch");
    let tag = format!("{name}:{arch}");
    let mut cmd = s.podman.cmd();
    cmd.env("TMPDIR", s.tmp.path()).arg("build").args([
        "--network",
        "host",
        "--platform",
        platform,
        "-f",
        "Dockerfile",
        "-t",
        &tag,
    ]);
    // podman 4 sets BUILDPLATFORM to the target platform; name the build machine's.
    cmd.args(["--build-arg", "BUILDPLATFORM=linux/amd64"]);
    for arg in build_args {
        cmd.args(["--build-arg", arg]);
    }
    for (host, inside) in lent_dirs() {
        cmd.arg("-v").arg(format!("{}:{inside}:ro", host.display()));
    }
    cmd.arg(".").current_dir(root);
    let mut timed = Command::new("timeout");
    timed
        .args(["--kill-after=10", "600"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            timed.env(k, v);
        }
    }
    timed.current_dir(root);
    capture(&mut timed).assert_success();
    tag
}

/// The saved image: its config, its files and their bytes.
pub(crate) struct Saved {
    pub(crate) config: Value,
    pub(crate) files: BTreeMap<String, FileFacts>,
    pub(crate) contents: BTreeMap<String, Vec<u8>>,
}

/// What is compared per path: kind, mode, owner, and the bytes' digest (files only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileFacts {
    kind: &'static str,
    mode: u32,
    uid: u64,
    gid: u64,
    digest: Option<String>,
    link: Option<String>,
}

fn normalize(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_end_matches('/')
        .to_string()
}

/// Applies layers' entries in order; hard links become files with their target's bytes.
pub(crate) fn add_entries(
    files: &mut BTreeMap<String, FileFacts>,
    contents: &mut BTreeMap<String, Vec<u8>>,
    entries: Vec<TarEntry>,
) {
    for e in entries {
        let path = normalize(&e.path);
        if path.is_empty() {
            continue;
        }
        let facts = match e.kind {
            tar::EntryType::Directory => FileFacts {
                kind: "dir",
                mode: e.mode & 0o7777,
                uid: e.uid,
                gid: e.gid,
                digest: None,
                link: None,
            },
            tar::EntryType::Symlink => FileFacts {
                kind: "symlink",
                mode: 0,
                uid: e.uid,
                gid: e.gid,
                digest: None,
                link: e.link.clone(),
            },
            tar::EntryType::Link => {
                let target = normalize(e.link.as_deref().expect("hard link target"));
                let mut facts = files
                    .get(&target)
                    .unwrap_or_else(|| panic!("hard link {path} to missing {target}"))
                    .clone();
                facts.mode = e.mode & 0o7777;
                facts
            }
            _ => {
                let digest = sha256_digest(&e.data);
                contents.insert(path.clone(), e.data);
                FileFacts {
                    kind: "file",
                    mode: e.mode & 0o7777,
                    uid: e.uid,
                    gid: e.gid,
                    digest: Some(digest),
                    link: None,
                }
            }
        };
        files.insert(path, facts);
    }
}

fn reference_image(s: &Setup) -> Saved {
    let (mut files, mut contents) = (BTreeMap::new(), BTreeMap::new());
    for d in s.reference.layer_digests() {
        add_entries(&mut files, &mut contents, s.reference.layer_entries(&d));
    }
    Saved {
        config: s.reference.config(),
        files,
        contents,
    }
}

fn save(s: &Setup, image: &str) -> Saved {
    let dir = tempdir();
    let out = dir.path().join("oci");
    capture(
        s.podman
            .cmd()
            .args(["save", "--format", "oci-dir", "-o"])
            .arg(&out)
            .arg(image),
    )
    .assert_success();
    let read = |digest: &str| {
        let hex = digest.strip_prefix("sha256:").expect("sha256");
        fs::read(out.join("blobs/sha256").join(hex)).expect("blob")
    };
    let index: Value = serde_json::from_slice(&fs::read(out.join("index.json")).expect("index"))
        .expect("index json");
    let manifest: Value = serde_json::from_slice(&read(
        index["manifests"][0]["digest"].as_str().expect("digest"),
    ))
    .expect("manifest json");
    let config: Value = serde_json::from_slice(&read(
        manifest["config"]["digest"].as_str().expect("config"),
    ))
    .expect("config json");
    let (mut files, mut contents) = (BTreeMap::new(), BTreeMap::new());
    for layer in manifest["layers"].as_array().expect("layers") {
        let bytes = read(layer["digest"].as_str().expect("layer digest"));
        let gzip = layer["mediaType"]
            .as_str()
            .unwrap_or_default()
            .ends_with("gzip");
        let entries = if gzip {
            tar_entries(flate2::read::MultiGzDecoder::new(bytes.as_slice()))
        } else {
            tar_entries(bytes.as_slice())
        };
        add_entries(&mut files, &mut contents, entries);
    }
    Saved {
        config,
        files,
        contents,
    }
}

/// The config fields both images must agree on. Labels lose podman's own `io.buildah.version`.
pub(crate) fn comparable_config(config: &Value) -> Value {
    let c = &config["config"];
    let mut labels = c["Labels"].clone();
    if let Some(m) = labels.as_object_mut() {
        m.remove("io.buildah.version");
    }
    serde_json::json!({
        "User": c["User"],
        "Entrypoint": c["Entrypoint"],
        "Cmd": c["Cmd"],
        "Env": c["Env"],
        "WorkingDir": c["WorkingDir"],
        "ExposedPorts": c["ExposedPorts"],
        "StopSignal": c["StopSignal"],
        "Labels": labels,
    })
}

/// The image a Dockerfile built is the one `build` made: the same config (but for what a
/// builder may set differently, see [`comparable_config`]), amd64, and the same files.
/// Returns the binary's path (the entrypoint).
pub(crate) fn assert_same_amd64_image(built: &Saved, reference: &Saved) -> String {
    assert_eq!(
        comparable_config(&built.config),
        comparable_config(&reference.config),
        "image configs differ"
    );
    assert_eq!(built.config["architecture"], "amd64");
    let binary = reference.config["config"]["Entrypoint"][0]
        .as_str()
        .expect("entrypoint")
        .to_string();
    assert_same_files(built, reference, &binary);
    binary
}

/// Same paths, kinds, modes and owners, and the same bytes everywhere but the binary, which
/// callers compare themselves (the podman builds here embed the dependency list with
/// cargo-auditable, `build` with its own object; `docker_build` compares the bytes).
pub(crate) fn assert_same_files(built: &Saved, reference: &Saved, binary: &str) {
    let binary = binary.trim_start_matches('/');
    let strip = |files: &BTreeMap<String, FileFacts>| -> BTreeMap<String, FileFacts> {
        files
            .iter()
            .map(|(p, f)| {
                let mut f = f.clone();
                if p == binary {
                    f.digest = None;
                }
                (p.clone(), f)
            })
            .collect()
    };
    let (a, b) = (strip(&built.files), strip(&reference.files));
    let only_built: Vec<&String> = a.keys().filter(|k| !b.contains_key(*k)).collect();
    let only_reference: Vec<&String> = b.keys().filter(|k| !a.contains_key(*k)).collect();
    assert!(
        only_built.is_empty() && only_reference.is_empty(),
        "file lists differ: only in the Dockerfile's image {only_built:?}, only in build's {only_reference:?}"
    );
    let differing: Vec<String> = a
        .iter()
        .filter(|(p, f)| b[*p] != **f)
        .map(|(p, f)| format!("{p}: dockerfile {f:?} vs build {:?}", b[p]))
        .collect();
    assert!(
        differing.is_empty(),
        "files differ:\n{}",
        differing.join("\n")
    );
}

#[test]
#[ignore = "heavy: needs umoci, runc, podman"]
fn the_dockerfile_builds_the_image_build_makes_and_it_runs() {
    let s = setup();
    let image = podman_build(s, "linux/amd64");
    let built = save(s, &image);
    let reference = reference_image(s);

    let binary = assert_same_amd64_image(&built, &reference);
    // cargo-auditable in the builder embeds the dependency list `build` links in.
    let list = |saved: &Saved| {
        auditable_info::audit_info_from_slice(
            &saved.contents[binary.trim_start_matches('/')],
            1 << 20,
        )
        .expect("a dependency list")
    };
    assert_eq!(list(&built), list(&reference));
    assert!(
        built
            .files
            .contains_key("etc/ssl/certs/ca-certificates.crt")
            && built.files.contains_key("usr/share/zoneinfo/Asia/Kolkata")
            && built.files["etc/localtime"].kind == "symlink",
        "the image lacks the CA bundle or tzdata: {:?}",
        built.files.keys().collect::<Vec<_>>()
    );

    // Both images run the program the same way: user, arguments, environment, time zone.
    let podman_run = s.podman.run(&image, &[]);
    podman_run.assert_success();
    let bundle = s.reference.unpack();
    let runc_run = bundle.run();
    runc_run.assert_success();
    assert_eq!(
        podman_run.stdout.lines().next(),
        Some("hello from cargo-containerize"),
        "{podman_run}"
    );
    for key in ["uid", "gid", "args", "cwd"] {
        assert_eq!(
            stdout_value(&podman_run, key),
            stdout_value(&runc_run, key),
            "{key} differs\n{podman_run}\n{runc_run}"
        );
    }
    for var in ["GREETING", "EMPTY", "TZ", "SSL_CERT_FILE", "PATH"] {
        assert_eq!(
            stdout_env(&podman_run, var),
            stdout_env(&runc_run, var),
            "{var} differs\n{podman_run}\n{runc_run}"
        );
    }
    assert_eq!(
        stdout_value(&podman_run, "uid"),
        Some("1000"),
        "{podman_run}"
    );
}

#[test]
#[ignore = "heavy: needs podman"]
fn the_arm64_image_holds_a_static_arm64_binary() {
    let s = setup();
    let image = podman_build(s, "linux/arm64");
    let built = save(s, &image);
    let reference = reference_image(s);
    assert_eq!(built.config["architecture"], "arm64");
    assert_eq!(
        comparable_config(&built.config),
        comparable_config(&reference.config)
    );
    let binary = reference.config["config"]["Entrypoint"][0]
        .as_str()
        .expect("entrypoint")
        .to_string();
    assert_same_files(&built, &reference, &binary);

    // Take the binary out and ask the tool itself whether it is a static arm64 executable.
    let dir = tempdir();
    let out = dir.path().join("hi");
    fs::write(&out, &built.contents[binary.trim_start_matches('/')]).expect("write binary");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&out, fs::Permissions::from_mode(0o755)).expect("chmod");
    let verify = capture(
        Command::new(tool_path())
            .args(["containerize", "verify", "--platform", "linux/arm64"])
            .arg(&out),
    );
    verify.assert_success();

    // And it runs, under qemu, as the amd64 one does.
    let run = capture(Command::new("qemu-aarch64-static").arg(&out));
    run.assert_success();
    assert_eq!(
        run.stdout.lines().next(),
        Some("hello from cargo-containerize"),
        "{run}"
    );
}

/// A build script that stamps the build time (the `stamp` fixture) sees the commit's time
/// through the Dockerfile's SOURCE_DATE_EPOCH argument, given as its header says, and so
/// embeds what the image `cargo containerize build` makes of the same commit embeds.
#[test]
#[ignore = "heavy: needs umoci, runc, podman"]
fn the_dockerfile_hands_the_commit_time_to_build_scripts() {
    let s = setup();
    let project = Project::copy("stamp");
    commit_all(&project.root);
    capture(tool(&project.root).args(["dockerfile", "-o", "Dockerfile"])).assert_success();
    let dockerfile = fs::read_to_string(project.root.join("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains("git log -1 --format=%ct"),
        "the build command no longer derives the epoch from the commit:\n{dockerfile}"
    );
    let epoch = git(&project.root, &["log", "-1", "--format=%ct"]);
    let image = podman_build_in(
        s,
        &project.root,
        "localhost/stamp-dockerfile",
        "linux/amd64",
        &[format!("SOURCE_DATE_EPOCH={epoch}")],
    );
    let podman_run = s.podman.run(&image, &[]);
    podman_run.assert_success();
    assert_eq!(
        podman_run.stdout.trim(),
        format!("built=epoch {COMMIT_TIME}"),
        "{podman_run}"
    );

    let (run, layout, _out) = try_build(&project, None, &[]);
    run.assert_success();
    let runc_run = layout.unpack().run();
    runc_run.assert_success();
    assert_eq!(runc_run.stdout.trim(), podman_run.stdout.trim());
}
