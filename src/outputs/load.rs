//! `--load`: the image into the local docker or podman, by streaming a docker archive into
//! `<engine> load`. Nothing touches the disk on the way.

use super::docker_archive::{note_referrers_left_out, pick_platform, write_tar};
use super::registry::remote::sanitize;
use super::{Output, Written};
use crate::blobs::BlobStore;
use crate::image::Image;
use crate::platform::Platform;
use crate::util::process::{Outcome, Watchdog, run_bounded};
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

impl Load {
    /// `--load` into `engine` (None: whichever answers) under `tags` (already expanded; none
    /// gives `<bin>:<version>` made valid, [`super::Defaults::docker_reference`]), each checked
    /// and given `:latest` if it has no tag.
    pub fn new(engine: LoadEngine, tags: &[String], defaults: &super::Defaults) -> Result<Load> {
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
            return Ok(("docker".into(), docker));
        };
        match podman {
            Some(p) => {
                crate::util::shell::status(
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
        true
    }

    fn write(&self, image: &Image, store: &BlobStore) -> Result<Written> {
        let img = pick_platform(image, self.platform)?;
        note_referrers_left_out(image, "--load");
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
        let sent = write_tar(dog.writer(stdin), img, store, &self.references);
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
