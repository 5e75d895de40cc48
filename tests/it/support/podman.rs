//! Podman configured only through `CONTAINERS_STORAGE_CONF` and `CONTAINERS_CONF`, so that a
//! plain `podman load` run by the tool and the test's own `podman run` share private storage
//! (vfs, in a temporary directory) and the OCI runtime wrapper that drops
//! `process.rlimits` (the sandbox lacks CAP_SYS_RESOURCE) before handing over to runc.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

use crate::common::{RUNC_WRAPPER, Run, capture, unique_name};

pub struct PodmanEnv {
    dir: TempDir,
}

impl PodmanEnv {
    pub fn new() -> PodmanEnv {
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
        PodmanEnv { dir }
    }

    /// Points `cmd` (podman, or the tool that runs podman) at this storage and runtime.
    pub fn apply<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env("CONTAINERS_STORAGE_CONF", self.storage_conf())
            .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
    }

    pub fn storage_conf(&self) -> PathBuf {
        self.dir.path().join("storage.conf")
    }

    /// `podman --log-level=error ARGS...` in this environment.
    pub fn podman(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new("podman");
        self.apply(&mut cmd).arg("--log-level=error").args(args);
        capture(&mut cmd)
    }

    /// `podman run --rm --network=none IMAGE` to completion.
    pub fn run(&self, image: &str) -> Run {
        let name = unique_name("cct-reg");
        self.podman(&["run", "--rm", "--network=none", "--name", &name, image])
    }

    /// Names (`repo:tag`) of every image in the storage.
    pub fn image_names(&self) -> Vec<String> {
        let run = self.podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        run.assert_success();
        run.stdout.lines().map(|l| l.trim().to_string()).collect()
    }
}

impl Default for PodmanEnv {
    fn default() -> Self {
        PodmanEnv::new()
    }
}
