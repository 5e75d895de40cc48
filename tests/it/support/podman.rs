//! Podman in a sandbox of its own: private storage (vfs) in a temporary directory, cgroupfs,
//! file events, and an OCI runtime wrapper that drops `process.rlimits` before handing over to
//! runc (this sandbox lacks CAP_SYS_RESOURCE; podman always asks for rlimits).
//!
//! Configured only through `CONTAINERS_STORAGE_CONF` and `CONTAINERS_CONF`, so that a plain
//! `podman load` run by the tool (see [`Podman::apply`]) and the test's own podman commands
//! (see [`Podman::cmd`]) share the same storage and runtime.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use crate::common::{Run, capture, unique_name};

/// The runtime wrapper podman calls instead of runc.
const RUNC_WRAPPER: &str = r#"#!/bin/sh
# Strip process.rlimits from the bundle's config.json, then run runc with the same args.
bundle=.
prev=
for arg in "$@"; do
  case "$prev" in --bundle|-b) bundle=$arg ;; esac
  case "$arg" in --bundle=*) bundle=${arg#--bundle=} ;; esac
  prev=$arg
done
if [ -f "$bundle/config.json" ]; then
  jq 'del(.process.rlimits)' "$bundle/config.json" >"$bundle/config.json.norlimits" &&
    mv "$bundle/config.json.norlimits" "$bundle/config.json"
fi
exec runc "$@"
"#;

pub struct Podman {
    dir: TempDir,
}

impl Podman {
    pub fn new() -> Podman {
        // podman refuses a runroot longer than 50 characters: stay short, in /tmp.
        let dir = tempfile::Builder::new()
            .prefix("cct-pm-")
            .tempdir_in("/tmp")
            .expect("podman tempdir");
        let d = dir.path();
        let wrapper = d.join("runc-wrapper");
        fs::write(&wrapper, RUNC_WRAPPER).expect("write wrapper");
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod wrapper");
        fs::write(
            d.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                d.join("root").display(),
                d.join("run").display()
            ),
        )
        .expect("write storage.conf");
        fs::write(
            d.join("containers.conf"),
            format!(
                "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 events_logfile_path = \"{events}\"\ntmp_dir = \"{tmp}\"\n\
                 runtime = \"cctwrap\"\n\n[engine.runtimes]\ncctwrap = [\"{wrapper}\"]\n",
                events = d.join("events.log").display(),
                tmp = d.join("tmp").display(),
                wrapper = wrapper.display()
            ),
        )
        .expect("write containers.conf");
        Podman { dir }
    }

    /// Points `cmd` (podman, or the tool that runs podman) at this storage and runtime.
    pub fn apply<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env("CONTAINERS_STORAGE_CONF", self.storage_conf())
            .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
    }

    pub fn storage_conf(&self) -> PathBuf {
        self.dir.path().join("storage.conf")
    }

    /// `podman --log-level=error` in this sandbox; add arguments, then [`capture`].
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new("podman");
        self.apply(&mut cmd).arg("--log-level=error");
        cmd
    }

    /// `podman --log-level=error ARGS...` in this sandbox, to completion.
    pub fn podman(&self, args: &[&str]) -> Run {
        capture(self.cmd().args(args))
    }

    /// `podman run --rm --network=none IMAGE ARGS...` to completion.
    pub fn run(&self, image: &str, args: &[&str]) -> Run {
        let mut cmd = self.cmd();
        cmd.args(["run", "--rm", "--network=none", "--name"])
            .arg(unique_name("cct"))
            .arg(image)
            .args(args);
        capture(&mut cmd)
    }

    /// `podman load -i ARCHIVE`; returns the names podman reports as loaded.
    pub fn load(&self, archive: &Path) -> Vec<String> {
        let run = capture(self.cmd().arg("load").arg("-i").arg(archive));
        run.assert_success();
        run.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("Loaded image:"))
            .flat_map(|names| names.split(','))
            .map(|n| n.trim().to_string())
            .collect()
    }

    /// `podman image inspect IMAGE` (the first element).
    pub fn inspect(&self, image: &str) -> Value {
        let run = capture(self.cmd().args(["image", "inspect", image]));
        run.assert_success();
        let all: Value = serde_json::from_str(&run.stdout).expect("inspect json");
        all[0].clone()
    }

    /// Names (`repo:tag`) of every image in the storage.
    pub fn image_names(&self) -> Vec<String> {
        let run = self.podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        run.assert_success();
        run.stdout.lines().map(|l| l.trim().to_string()).collect()
    }
}

impl Default for Podman {
    fn default() -> Self {
        Podman::new()
    }
}
