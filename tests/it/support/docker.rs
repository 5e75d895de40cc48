//! The machine's Docker Engine, as the tests use it: a daemon that is already running (the
//! project's machines and CI have one; nothing can be pulled, so it starts with no images).
//!
//! [`Docker::connect`] answers None, having said why on stderr, where no daemon answers, so a
//! docker test skips there instead of failing. Every image name a test makes goes through
//! [`Docker::name`] and every container through [`Docker::run_detached`]; dropping the
//! `Docker` removes exactly those (never anything else the engine holds).

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use crate::common::{Run, capture, capture_within, unique_name};

/// The longest any single docker command of a test may take.
pub const DOCKER_LIMIT: Duration = Duration::from_secs(300);

pub struct Docker {
    /// `major.minor` of the daemon.
    pub server_version: (u32, u32),
    images: Mutex<Vec<String>>,
    containers: Mutex<Vec<String>>,
}

/// `docker ARGS...` with a bound on how long it may take.
pub fn docker(args: &[&str]) -> Run {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    capture_within(&mut cmd, DOCKER_LIMIT).0
}

impl Docker {
    /// The daemon, if one answers within 20 s; else None, after saying so on stderr.
    pub fn connect() -> Option<Docker> {
        let mut cmd = Command::new("timeout");
        cmd.args([
            "--kill-after=5",
            "20",
            "docker",
            "version",
            "--format",
            "{{.Server.Version}}",
        ]);
        let run = capture(&mut cmd);
        if !run.status.success() {
            let why = format!(
                "no docker daemon answers (`docker version` said: {})",
                run.stderr.trim()
            );
            skip_or_fail_in_ci(&why);
            return None;
        }
        let v = run.stdout.trim();
        let mut parts = v
            .split(['.', '+', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let server_version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        Some(Docker {
            server_version,
            images: Mutex::new(Vec::new()),
            containers: Mutex::new(Vec::new()),
        })
    }

    /// A fresh image name (`cct-test/<prefix>-<unique>:<tag>`) that is removed on drop.
    pub fn name(&self, prefix: &str, tag: &str) -> String {
        let name = format!("cct-test/{}:{tag}", unique_name(prefix));
        self.adopt(&name);
        name
    }

    /// Removes `name` on drop too (an image a load named).
    pub fn adopt(&self, name: &str) {
        self.images.lock().expect("images").push(name.to_string());
    }

    /// Whether the daemon keeps images in containerd's store (Docker 24+ with the
    /// containerd snapshotter), which holds multi-platform images.
    pub fn containerd_store(&self) -> bool {
        let run = docker(&["info", "--format", "{{json .DriverStatus}}"]);
        run.assert_success();
        run.stdout.contains("io.containerd.snapshotter")
    }

    /// `docker image inspect NAME` (the first element).
    pub fn inspect(&self, name: &str) -> Value {
        let run = docker(&["image", "inspect", name]);
        run.assert_success();
        let all: Value = serde_json::from_str(&run.stdout).expect("inspect json");
        all[0].clone()
    }

    /// `docker load -i ARCHIVE`.
    pub fn load(&self, archive: &std::path::Path) -> Run {
        docker(&["load", "-i", archive.to_str().expect("utf-8 path")])
    }

    /// `docker run --rm --network=none ARGS... IMAGE CMD...` to completion.
    pub fn run(&self, args: &[&str], image: &str, cmd: &[&str]) -> Run {
        let name = unique_name("cct");
        let mut all = vec!["run", "--rm", "--network=none", "--name", &name];
        all.extend(args);
        all.push(image);
        all.extend(cmd);
        docker(&all)
    }

    /// `docker run -d ARGS... IMAGE`; returns the container's name, removed on drop.
    pub fn run_detached(&self, args: &[&str], image: &str) -> String {
        let name = unique_name("cct");
        self.containers
            .lock()
            .expect("containers")
            .push(name.clone());
        let mut all = vec!["run", "-d", "--name", &name];
        all.extend(args);
        all.push(image);
        docker(&all).assert_success();
        name
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let containers = std::mem::take(&mut *self.containers.lock().expect("containers"));
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(containers.iter().map(String::as_str));
            let _ = docker(&args);
        }
        // Not forced: a name is untagged (the image goes with its last name), and an image id
        // that another test's name still refers to stays for that test to remove.
        for image in std::mem::take(&mut *self.images.lock().expect("images")) {
            let _ = docker(&["rmi", &image]);
        }
    }
}

/// A docker client that builds with BuildKit, and how: `docker buildx build --load` where the
/// buildx plugin is installed; else a client from before Docker 23 (such as Debian 12's
/// docker.io 20.10), whose `docker build` has BuildKit built in (`DOCKER_BUILDKIT=1`). Newer
/// clients without buildx fall back to the legacy builder, which has no cache mounts. None,
/// after saying so, where there is neither.
pub fn buildkit_client() -> Option<(std::path::PathBuf, Vec<&'static str>)> {
    let clients: Vec<std::path::PathBuf> = which::which_all("docker")
        .map(|all| all.collect())
        .unwrap_or_default();
    for client in &clients {
        let buildx = capture(Command::new(client).args(["buildx", "version"]));
        if buildx.status.success() {
            return Some((client.clone(), vec!["buildx", "build", "--load"]));
        }
    }
    for client in &clients {
        let version =
            capture(Command::new(client).args(["version", "--format", "{{.Client.Version}}"]));
        let major: u32 = version
            .stdout
            .trim()
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(u32::MAX);
        if major < 23 {
            return Some((client.clone(), vec!["build"]));
        }
    }
    skip_or_fail_in_ci(&format!(
        "no docker client here builds with BuildKit (no buildx plugin, and every client on PATH is Docker 23 or later: {clients:?})"
    ));
    None
}

/// A docker test skips where the machine lacks what it needs, saying why; in CI (`CI` set, as
/// `.ci/run` runs), whose machines always have a daemon and a BuildKit client, that is a
/// failure, so a broken machine cannot pass the docker tests by skipping them.
fn skip_or_fail_in_ci(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{why}; CI machines have docker, so this is a failure there"
    );
    eprintln!("skipping: {why}");
}
