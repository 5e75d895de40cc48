//! Docker Engine as a target, for real: `--load` into the machine's docker daemon, `docker run`
//! of the loaded image with the settings users use (environment, user, working directory, a
//! port published on loopback with `-p`, a read-only root file system, `docker stop` and the
//! image's stop signal), the `--load` engine pick when docker and podman both answer, and
//! `docker load -i` of the archives the tool writes.
//!
//! Every test skips, saying so, where no docker daemon answers (see
//! `support::docker::Docker::connect`); the project's machines and CI always have one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::docker::{Docker, docker};
use crate::support::podman::Podman;

const GREETING: &str = "hello from cargo-containerize";

/// Settings a user sets, each of which `docker run` must honour.
const HELLO_SETTINGS: &str = r#"
[package.metadata.containerize]
env = { GREETING = "namaste from docker" }
user = "1000:2000"
workdir = "/srv/app"
args = ["--from-image"]
"#;

/// The `serve` fixture as a server image: a port, and the stop signal it ends on.
const SERVE_SETTINGS: &str = r#"
[package.metadata.containerize]
env = { GREETING = "served" }
user = "1000:2000"
workdir = "/srv"
ports = [8080]
stop-signal = "SIGINT"
"#;

/// `cargo containerize build --locked --target-dir <shared> ARGS...` in `project`, with
/// `DOCKER_CONFIG` pointing nowhere (no credentials are needed to load).
fn tool_in(project: &Project, target: &Path) -> Command {
    let mut cmd = tool(&project.root);
    cmd.args(["build", "--locked", "--target-dir"])
        .arg(target)
        .env("DOCKER_CONFIG", tempdir().keep());
    cmd
}

/// Builds `project` and loads it into docker as `name` with `extra` arguments.
fn load(project: &Project, target: &Path, name: &str, extra: &[&str]) -> Run {
    let mut cmd = tool_in(project, target);
    cmd.args(["--load", "docker", "-t", name]).args(extra);
    let (run, _) = capture_within(&mut cmd, Duration::from_secs(900));
    run
}

#[test]
#[ignore = "heavy: needs docker"]
fn load_into_docker_then_run_honours_env_user_workdir_and_args() {
    let Some(d) = Docker::connect() else { return };
    let project = Project::copy("hello");
    project.append_manifest(HELLO_SETTINGS);
    let name = d.name("hello", "loaded");
    load(&project, &shared_target_dir("hello"), &name, &[]).assert_success();

    let config = &d.inspect(&name)["Config"];
    assert_eq!(config["User"], "1000:2000", "{config}");
    assert_eq!(config["WorkingDir"], "/srv/app", "{config}");

    // The image's own settings, on a read-only root file system.
    let run = d.run(&["--read-only"], &name, &[]);
    run.assert_success();
    assert_eq!(run.stdout.lines().next(), Some(GREETING), "{run}");
    assert_eq!(stdout_value(&run, "uid"), Some("1000"), "{run}");
    assert_eq!(stdout_value(&run, "gid"), Some("2000"), "{run}");
    assert_eq!(stdout_value(&run, "cwd"), Some("/srv/app"), "{run}");
    assert_eq!(stdout_value(&run, "args"), Some("--from-image"), "{run}");
    assert_eq!(
        stdout_env(&run, "GREETING"),
        Some("namaste from docker"),
        "{run}"
    );
    assert_eq!(
        stdout_env(&run, "SSL_CERT_FILE"),
        Some("/etc/ssl/certs/ca-certificates.crt"),
        "{run}"
    );

    // What `docker run` flags lay over them reaches the program the same way.
    let run = d.run(
        &[
            "-e",
            "GREETING=from the flag",
            "-u",
            "65532:65532",
            "-w",
            "/tmp",
        ],
        &name,
        &["one", "two"],
    );
    run.assert_success();
    assert_eq!(stdout_value(&run, "uid"), Some("65532"), "{run}");
    assert_eq!(stdout_value(&run, "cwd"), Some("/tmp"), "{run}");
    assert_eq!(stdout_value(&run, "args"), Some("one two"), "{run}");
    assert_eq!(stdout_env(&run, "GREETING"), Some("from the flag"), "{run}");
}

/// The serve fixture's image, loaded into docker with `settings`, once per settings.
fn serve_image(d: &Docker, settings: &str, tag: &str) -> String {
    let project = Project::copy("serve");
    project.append_manifest(settings);
    let name = d.name("serve", tag);
    load(&project, &shared_target_dir("serve"), &name, &[]).assert_success();
    name
}

/// The host port docker published for the container's 8080/tcp (`-p 127.0.0.1::8080`).
fn published_port(container: &str) -> u16 {
    let run = docker(&["port", container, "8080/tcp"]);
    run.assert_success();
    let line = run.stdout.lines().next().unwrap_or_default().trim();
    let port = line.rsplit(':').next().unwrap_or_default();
    port.parse()
        .unwrap_or_else(|_| panic!("no published port for 8080/tcp: {run}"))
}

/// Connects to 127.0.0.1:`port` until the server answers (it may still be starting), for at
/// most 30 s; returns its answer.
fn ask(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer =
            TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5))
                .and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(10)))?;
                    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
                    let mut text = String::new();
                    s.read_to_string(&mut text)?;
                    Ok(text)
                });
        match answer {
            Ok(text) if text.contains("uid=") => return text,
            other if Instant::now() > deadline => {
                panic!("no answer on 127.0.0.1:{port} within 30 s: {other:?}")
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn container_state(container: &str, field: &str) -> String {
    let run = docker(&[
        "inspect",
        "-f",
        &format!("{{{{.State.{field}}}}}"),
        container,
    ]);
    run.assert_success();
    run.stdout.trim().to_string()
}

/// `docker stop -t TIMEOUT`; returns how long it took.
fn stop(container: &str, timeout: u32) -> Duration {
    let started = Instant::now();
    docker(&["stop", "-t", &timeout.to_string(), container]).assert_success();
    started.elapsed()
}

#[test]
#[ignore = "heavy: needs docker"]
fn a_loaded_server_answers_through_p_on_loopback_and_docker_stop_ends_it_by_its_stop_signal() {
    let Some(d) = Docker::connect() else { return };
    let image = serve_image(&d, SERVE_SETTINGS, "sigint");
    let config = &d.inspect(&image)["Config"];
    assert_eq!(config["StopSignal"], "SIGINT", "{config}");
    assert!(config["ExposedPorts"].get("8080/tcp").is_some(), "{config}");

    // Read-only root file system with a tmpfs /tmp, the port published on loopback only.
    let container = d.run_detached(
        &["--read-only", "--tmpfs", "/tmp", "-p", "127.0.0.1::8080"],
        &image,
    );
    let answer = ask(published_port(&container));
    for line in [
        "uid=1000",
        "cwd=/srv",
        "env GREETING=served",
        "root_writable=no",
        "tmp_writable=yes",
    ] {
        assert!(
            answer.lines().any(|l| l == line),
            "the server's answer lacks {line:?}:\n{answer}"
        );
    }

    // `docker stop` sends the image's stop signal (SIGINT), which the server ends on: it is
    // gone long before the 30 s stop timeout, and exited by itself (0), not killed (137).
    let took = stop(&container, 30);
    eprintln!("docker stop with stop-signal SIGINT took {took:?}");
    assert!(took < Duration::from_secs(15), "docker stop took {took:?}");
    assert_eq!(container_state(&container, "ExitCode"), "0");
    let logs = docker(&["logs", &container]);
    assert!(
        logs.stdout.contains("stopping on SIGINT"),
        "the server did not see SIGINT: {logs}"
    );
}

/// The contrast: the same server without `stop-signal` gets docker's default SIGTERM, which
/// it (as PID 1, with no handler) never sees, so `docker stop` waits out its timeout and kills
/// it. This is what the setting is for.
#[test]
#[ignore = "heavy: needs docker"]
fn without_stop_signal_docker_stop_waits_out_its_timeout_and_kills_the_server() {
    let Some(d) = Docker::connect() else { return };
    let settings = SERVE_SETTINGS.replace("stop-signal = \"SIGINT\"\n", "");
    let image = serve_image(&d, &settings, "sigterm");
    let config = &d.inspect(&image)["Config"];
    assert!(
        config["StopSignal"].as_str().is_none_or(|s| s == "SIGTERM"),
        "{config}"
    );
    let container = d.run_detached(&["-p", "127.0.0.1::8080"], &image);
    ask(published_port(&container));
    let took = stop(&container, 3);
    eprintln!("docker stop without stop-signal took {took:?}");
    assert!(took >= Duration::from_secs(3), "docker stop took {took:?}");
    assert_eq!(container_state(&container, "ExitCode"), "137");
}

/// With both engines answering, `--load` (no engine named) loads into docker, and says so.
#[test]
#[ignore = "heavy: needs podman, docker"]
fn load_without_an_engine_name_picks_docker_when_its_daemon_answers_even_with_podman_present() {
    let Some(d) = Docker::connect() else { return };
    let podman = Podman::new();
    let project = Project::copy("hello");
    let name = d.name("hello", "auto");
    let mut cmd = tool_in(&project, &shared_target_dir("hello"));
    podman.apply(&mut cmd).args(["--load", "-t", &name]);
    let (run, _) = capture_within(&mut cmd, Duration::from_secs(900));
    run.assert_success();
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("into docker") && l.contains("daemon answers")),
        "it did not say it picked docker, and why: {run}"
    );
    let ran = d.run(&[], &name, &[]);
    ran.assert_success();
    assert_eq!(ran.stdout.lines().next(), Some(GREETING), "{ran}");
    let in_podman = podman.image_names();
    assert!(
        !in_podman.iter().any(|n| n.contains(&name)),
        "podman got the image too: {in_podman:?}"
    );
}

/// hello written as a docker archive, an oci archive, and an oci archive whose index lists
/// the SBOMs and provenance (`--layout-referrers`), in one run.
struct Archives {
    docker: PathBuf,
    oci: PathBuf,
    oci_referrers: PathBuf,
    _dir: tempfile::TempDir,
}

const ARCHIVE_REF: &str = "cct-test/hello-archive:docker";

fn archives() -> &'static Archives {
    static ARCHIVES: OnceLock<Archives> = OnceLock::new();
    ARCHIVES.get_or_init(|| {
        let dir = tempdir();
        let docker = dir.path().join("docker.tar");
        let oci = dir.path().join("oci.tar");
        let oci_referrers = dir.path().join("oci-referrers.tar");
        let project = Project::copy("hello");
        let mut cmd = tool_in(&project, &shared_target_dir("hello"));
        cmd.arg("--output")
            .arg(format!("docker-archive:{}:{ARCHIVE_REF}", docker.display()))
            .arg("--output")
            .arg(format!("oci-archive:{}:oci", oci.display()));
        capture(&mut cmd).assert_success();
        // A second run, with the referrers listed in the index.
        let mut cmd = tool_in(&project, &shared_target_dir("hello"));
        cmd.arg("--layout-referrers")
            .arg("--output")
            .arg(format!("oci-archive:{}:referrers", oci_referrers.display()));
        capture(&mut cmd).assert_success();
        Archives {
            docker,
            oci,
            oci_referrers,
            _dir: dir,
        }
    })
}

/// The image `docker load` reports: a name (`Loaded image: NAME`) or an id
/// (`Loaded image ID: sha256:…`).
fn loaded(run: &Run) -> String {
    run.stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("Loaded image ID: ")
                .or_else(|| l.strip_prefix("Loaded image: "))
        })
        .unwrap_or_else(|| panic!("docker load reported nothing loaded: {run}"))
        .trim()
        .to_string()
}

/// `docker load -i` of each archive, in one test: all three hold the same image (one image
/// id), so they load and are removed one after another.
#[test]
#[ignore = "heavy: needs docker"]
fn docker_load_reads_the_docker_archive_the_oci_archive_and_one_listing_referrers() {
    let Some(d) = Docker::connect() else { return };
    let a = archives();
    d.adopt(ARCHIVE_REF);
    for (what, archive) in [
        ("docker-archive", &a.docker),
        ("oci-archive", &a.oci),
        ("oci-archive with referrers", &a.oci_referrers),
    ] {
        let run = d.load(archive);
        assert!(run.status.success(), "docker load -i of the {what}: {run}");
        let image = loaded(&run);
        if what == "docker-archive" {
            assert_eq!(image, ARCHIVE_REF, "{run}");
        } else {
            d.adopt(&image);
        }
        let ran = d.run(&[], &image, &[]);
        ran.assert_success();
        assert_eq!(
            ran.stdout.lines().next(),
            Some(GREETING),
            "the {what}'s image: {ran}"
        );
    }
}

/// Two platforms into docker. An engine with the containerd image store takes both in one
/// `--load` (an OCI archive streamed into `docker load`) and runs the amd64 one. An engine
/// without it (Docker's graph-driver store, as here) holds one platform per name, so `--load`
/// needs `--load-platform`, refused before any build without it; with it, docker gets that
/// platform's image (arm64, from an amd64 host).
#[test]
#[ignore = "heavy: needs docker"]
fn load_of_two_platforms_into_docker_takes_both_or_the_load_platform() {
    let Some(d) = Docker::connect() else { return };
    let containerd_store = d.containerd_store();
    eprintln!(
        "docker {}.{}, containerd image store: {containerd_store}",
        d.server_version.0, d.server_version.1,
    );
    let project = Project::copy("hello");
    let name = d.name("hello", "two");
    let mut cmd = tool_in(&project, &shared_target_dir("hello"));
    cmd.args([
        "--platform",
        "linux/amd64,linux/arm64",
        "--load",
        "docker",
        "-t",
        &name,
    ]);
    let run = capture(&mut cmd);
    if containerd_store {
        run.assert_success();
        let ran = d.run(&["--platform", "linux/amd64"], &name, &[]);
        ran.assert_success();
        assert_eq!(ran.stdout.lines().next(), Some(GREETING), "{ran}");
        return;
    }
    eprintln!("this engine has no containerd image store: checking --load-platform instead");
    assert_one_line_error(&run, &["--load-platform", "containerd image store"]);
    assert!(
        !run.stderr.contains("Compiling"),
        "it built before refusing: {run}"
    );

    let run = load(
        &project,
        &shared_target_dir("hello"),
        &name,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "--load-platform",
            "linux/arm64",
        ],
    );
    run.assert_success();
    let image = d.inspect(&name);
    assert_eq!(image["Architecture"], "arm64", "{image}");
    assert_eq!(image["Os"], "linux", "{image}");
}

/// The `manifest.json` that lets Docker before 25 load an oci-archive names one image with
/// gzip layers; a zstd archive (which that loader cannot read) or a multi-platform one has
/// none, and both still list their images in `index.json` for Docker 25+ and podman.
#[test]
#[ignore = "heavy: builds fixture images for amd64 and arm64"]
fn only_single_platform_gzip_oci_archives_carry_a_docker_manifest() {
    let dir = tempdir();
    let zstd = dir.path().join("zstd.tar");
    let multi = dir.path().join("multi.tar");
    let project = Project::copy("hello");
    let mut cmd = tool_in(&project, &shared_target_dir("hello"));
    cmd.args(["--compression", "zstd", "--output"])
        .arg(format!("oci-archive:{}:z", zstd.display()));
    capture(&mut cmd).assert_success();
    let mut cmd = tool_in(&project, &shared_target_dir("hello"));
    cmd.args(["--platform", "linux/amd64,linux/arm64", "--output"])
        .arg(format!("oci-archive:{}:m", multi.display()));
    capture(&mut cmd).assert_success();
    for archive in [&zstd, &multi] {
        let paths: Vec<String> = tar_entries(std::fs::File::open(archive).expect("open"))
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert!(paths.iter().any(|p| p == "index.json"), "{paths:?}");
        assert!(
            !paths.iter().any(|p| p == "manifest.json"),
            "{}: {paths:?}",
            archive.display()
        );
    }
    let oci = tar_entries(std::fs::File::open(&archives().oci).expect("open"));
    let manifest = oci
        .iter()
        .find(|e| e.path == "manifest.json")
        .expect("the single-platform gzip archive has a manifest.json");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.data).expect("json");
    assert_eq!(manifest.as_array().map(Vec::len), Some(1), "{manifest}");
}

/// What `--load` streams into a docker whose `docker info` reports the containerd image store,
/// for a two-platform build without `--load-platform`: an OCI archive holding both platforms,
/// each reference named the way containerd's importer reads it. The engine is a script that
/// answers as such a docker does and keeps what `docker load` gets (this machine's docker has
/// no containerd store; the test above loads into a real one where there is one); skopeo
/// reads the result and copies every platform, checking every blob's digest.
#[test]
#[ignore = "heavy: needs skopeo"]
fn load_into_a_containerd_store_docker_streams_every_platform_as_an_oci_archive() {
    let dir = tempdir();
    let captured = dir.path().join("loaded.tar");
    let engine = dir.path().join("bin");
    std::fs::create_dir_all(&engine).expect("mkdir");
    let script = engine.join("docker");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  version) echo 27.0.0 ;;\n  info) echo '[[\"driver-type\",\"io.containerd.snapshotter.v1\"]]' ;;\n  load) cat >'{}' && echo 'Loaded image: x' ;;\n  *) exit 1 ;;\nesac\n",
            captured.display()
        ),
    )
    .expect("write script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        engine.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let project = Project::copy("hello");
    let mut cmd = tool_in(&project, &shared_target_dir("hello"));
    cmd.env("PATH", path).args([
        "--platform",
        "linux/amd64,linux/arm64",
        "--load",
        "docker",
        "-t",
        "cct.test/hello:one",
        "-t",
        "cct.test/hello:two",
    ]);
    capture(&mut cmd).assert_success();

    let entries = tar_entries(std::fs::File::open(&captured).expect("captured load"));
    let index = entries
        .iter()
        .find(|e| e.path == "index.json")
        .expect("an OCI archive");
    let index: serde_json::Value = serde_json::from_slice(&index.data).expect("index.json");
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|m| m["annotations"]["io.containerd.image.name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["cct.test/hello:one", "cct.test/hello:two"],
        "{index}"
    );
    for tag in ["one", "two"] {
        let reference = format!("oci-archive:{}:{tag}", captured.display());
        let top = skopeo_manifest(&reference);
        let mut platforms: Vec<&str> = top["manifests"]
            .as_array()
            .unwrap_or_else(|| panic!("{tag} is not an index: {top}"))
            .iter()
            .filter_map(|m| m["platform"]["architecture"].as_str())
            .collect();
        platforms.sort();
        assert_eq!(platforms, ["amd64", "arm64"], "{top}");
    }
    let copy = dir.path().join("copy");
    capture(
        Command::new("skopeo")
            .args(["copy", "--all", "-q"])
            .arg(format!("oci-archive:{}:one", captured.display()))
            .arg(format!("oci:{}:one", copy.display())),
    )
    .assert_success();
}
