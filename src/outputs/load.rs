//! `--load`: the image into the local docker or podman, by streaming a docker archive into
//! `<engine> load` (or, for every platform of an image, an OCI archive into a docker that uses
//! the containerd image store). Nothing touches the disk on the way.

use super::docker_archive::{note_referrers_left_out, pick_platform, write_tar};
use super::{Output, Written};
use crate::blobs::BlobStore;
use crate::image::Image;
use crate::platform::Platform;
use crate::registry::transport::sanitize;
use crate::util::process::{Outcome, Watchdog, run_bounded};
use crate::util::shell::Shell;
use anyhow::{Context, Result, bail};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// `--load`'s engine: the one named, or whichever answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadEngine {
    /// docker if its daemon answers, else podman.
    Auto,
    Docker,
    Podman,
}

impl LoadEngine {
    /// The program's name; None for `Auto`.
    fn program(self) -> Option<&'static str> {
        match self {
            LoadEngine::Auto => None,
            LoadEngine::Docker => Some("docker"),
            LoadEngine::Podman => Some("podman"),
        }
    }
}

pub struct Load {
    pub engine: LoadEngine,
    /// Normalized references with tags.
    pub references: Vec<String>,
    pub platform: Option<Platform>,
    /// The engine picked, once (preflight and write both need it; probing costs a process).
    picked: OnceLock<Result<(String, PathBuf), String>>,
    /// Whether the picked engine holds multi-platform images, once.
    multi: OnceLock<bool>,
    /// Where the pick is said (it is made at preflight, before the write).
    shell: Shell,
}

/// The environment variable that bounds how long `<engine> load` may make no progress
/// (seconds, or e.g. `5m`).
pub const LOAD_TIMEOUT_VAR: &str = "CARGO_CONTAINERIZE_LOAD_TIMEOUT";

/// How long `<engine> load` may make no progress: [`LOAD_TIMEOUT_VAR`], else 5 minutes (an
/// engine importing a large image can be quiet for a while after the stream ends).
fn load_timeout() -> Result<Duration> {
    crate::util::env_duration(LOAD_TIMEOUT_VAR, Duration::from_secs(300))
}

/// The longest wait for `docker version` to say whether a daemon answers.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether the docker CLI at `path` reaches a daemon: `docker version` asks the daemon for
/// its version and fails (at once, or after its own connection timeout) when none answers.
/// None when it answers; else the last line it printed, sanitized.
fn docker_daemon_silent(path: &Path) -> Option<String> {
    let mut cmd = Command::new(path);
    cmd.args(["version", "--format", "{{.Server.Version}}"]);
    match run_bounded(&mut cmd, b"", PROBE_TIMEOUT) {
        Ok(Outcome::Finished(f)) if f.status.success() => None,
        Ok(Outcome::Finished(f)) => Some(
            String::from_utf8_lossy(&f.stderr)
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(sanitize)
                .unwrap_or_else(|| "no message".into()),
        ),
        Ok(Outcome::TimedOut) => Some(format!(
            "no answer within {}",
            humantime::format_duration(PROBE_TIMEOUT)
        )),
        Err(e) => Some(format!("{e:#}")),
    }
}

/// Whether the docker daemon at `path` keeps images in containerd's image store (Docker 24+
/// with the containerd snapshotter), which holds every platform of an image under one name:
/// `docker info` lists its driver type as `io.containerd.snapshotter.v1`. False when it does
/// not say so within [`PROBE_TIMEOUT`].
fn docker_containerd_store(path: &Path) -> bool {
    let mut cmd = Command::new(path);
    cmd.args(["info", "--format", "{{json .DriverStatus}}"]);
    matches!(
        run_bounded(&mut cmd, b"", PROBE_TIMEOUT),
        Ok(Outcome::Finished(f)) if f.status.success()
            && String::from_utf8_lossy(&f.stdout).contains("io.containerd.snapshotter")
    )
}

impl Load {
    /// `--load` into `engine` (None: whichever answers) under `tags` (already expanded; none
    /// gives `<bin>:<version>` made valid, [`super::Defaults::docker_reference`]), each checked
    /// and given `:latest` if it has no tag.
    pub fn new(
        engine: LoadEngine,
        tags: &[String],
        defaults: &super::Defaults,
        shell: &Shell,
    ) -> Result<Load> {
        let references = if tags.is_empty() {
            vec![defaults.docker_reference()]
        } else {
            tags.to_vec()
        };
        Ok(Load {
            engine,
            references: references
                .into_iter()
                .map(super::docker_archive::normalize_ref)
                .collect::<Result<_>>()?,
            platform: defaults.platform,
            picked: OnceLock::new(),
            multi: OnceLock::new(),
            shell: shell.clone(),
        })
    }

    /// Whether the engine takes every platform of an image in one load: docker with the
    /// containerd image store. Asked only of a multi-platform build without --load-platform.
    fn multi_platform(&self) -> bool {
        *self.multi.get_or_init(|| match self.engine() {
            Ok((name, path)) if name == "docker" => docker_containerd_store(&path),
            _ => false,
        })
    }

    fn engine(&self) -> Result<(String, PathBuf)> {
        self.picked
            .get_or_init(|| self.pick().map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(anyhow::Error::msg)
    }

    /// The engine named, or else the one that answers: docker if its daemon does, else podman
    /// (which needs no daemon), saying why when docker is installed but passed over.
    fn pick(&self) -> Result<(String, PathBuf)> {
        if let Some(e) = self.engine.program() {
            return which::which(e).map(|p| (e.to_string(), p)).map_err(|_| {
                anyhow::anyhow!(
                    "--load {e}: {e} was not found on PATH; install it, or write an archive with --output docker-archive:FILE"
                )
            });
        }
        let docker = which::which("docker").ok();
        let podman = which::which("podman").ok();
        let Some(docker) = docker else {
            return match podman {
                Some(p) => Ok(("podman".into(), p)),
                None => bail!(
                    "--load: neither docker nor podman is on PATH; install one, or write an archive with --output docker-archive:FILE"
                ),
            };
        };
        let Some(why) = docker_daemon_silent(&docker) else {
            self.shell.status(
                "Loading",
                if podman.is_some() {
                    "into docker (its daemon answers; `--load podman` loads into podman instead)"
                } else {
                    "into docker (its daemon answers)"
                },
            );
            return Ok(("docker".into(), docker));
        };
        match podman {
            Some(p) => {
                self.shell.status(
                    "Loading",
                    format!(
                        "into podman (docker is installed but its daemon does not answer: {why})"
                    ),
                );
                Ok(("podman".into(), p))
            }
            None => bail!(
                "--load: docker is installed but its daemon does not answer ({why}); start the docker daemon, install podman, or write an archive with --output docker-archive:FILE"
            ),
        }
    }
}

impl Output for Load {
    fn describe(&self) -> String {
        format!(
            "{} load {}",
            self.engine.program().unwrap_or("docker/podman"),
            self.references[0]
        )
    }

    fn preflight(&self) -> Result<()> {
        load_timeout()?;
        self.engine().map(drop)
    }

    fn single_platform(&self) -> bool {
        !self.multi_platform()
    }

    fn write(&self, image: &Image, store: &BlobStore, shell: &Shell) -> Result<Written> {
        // Every platform, as an OCI archive, into an engine that holds them all (checked by
        // `check_platforms` through `single_platform`); else one platform's docker archive.
        let all_platforms = image.platforms.len() > 1 && self.platform.is_none();
        let img = if all_platforms {
            None
        } else {
            Some(pick_platform(image, self.platform)?)
        };
        note_referrers_left_out(image, "--load", shell);
        let (name, path) = self.engine()?;
        let idle = load_timeout()?;
        let mut cmd = Command::new(&path);
        cmd.arg("load")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot run {}", path.display()))?;
        let stdin = child.stdin.take().context("engine stdin")?;
        // Drain stdout and stderr while streaming so a chatty engine never blocks on a full
        // pipe (at most 1 MiB of each is kept).
        let drain = |from: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut s = Vec::new();
                if let Some(mut from) = from {
                    let _ = (&mut from).take(1 << 20).read_to_end(&mut s);
                    let _ = std::io::copy(&mut from, &mut std::io::sink());
                }
                String::from_utf8_lossy(&s).into_owned()
            })
        };
        let outs = drain(child.stdout.take().map(|o| Box::new(o) as _));
        let errs = drain(child.stderr.take().map(|e| Box::new(e) as _));
        // The engine must keep reading, and exit once the stream ends: no progress for `idle`
        // and it is stopped.
        let dog = Watchdog::start(child.id(), idle);
        let sent = match img {
            Some(img) => write_tar(dog.writer(stdin), img, store, &self.references),
            None => {
                let image = image.without_attachments();
                super::oci_layout::named_entries(&image, &self.references).and_then(|entries| {
                    super::oci_layout::write_tar(dog.writer(stdin), &image, store, entries, None)
                })
            }
        };
        dog.poke();
        let status = child.wait().context("waiting for the engine")?;
        let stalled = dog.finish();
        let _ = outs.join();
        let err_text = errs.join().unwrap_or_default();
        if stalled {
            bail!(
                "`{name} load` made no progress for {} (it stopped reading the image, or did not finish after it) and was stopped; check that {name} works (`{name} info`), or raise {LOAD_TIMEOUT_VAR}",
                humantime::format_duration(idle)
            );
        }
        // Our own failure (a blob missing, say) explains a failed load better than the engine's
        // "unexpected EOF"; a broken pipe means the engine stopped first, so it has the reason.
        if let Err(e) = &sent {
            let broken_pipe = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if !broken_pipe {
                bail!("streaming the image into `{name} load` failed: {e:#}");
            }
        }
        if !status.success() {
            let last = err_text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message");
            bail!(
                "`{name} load` failed: {}; check that {name} works (`{name} info`)",
                sanitize(last)
            );
        }
        let bytes = sent.with_context(|| format!("streaming the image into `{name} load`"))?;
        Ok(Written {
            output: format!("{name}:{}", self.references[0]),
            bytes,
            ..Default::default()
        })
    }
}
