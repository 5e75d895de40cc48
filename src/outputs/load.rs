//! `--load`: the image into the local docker or podman, by streaming a docker archive into
//! `<engine> load`. Nothing touches the disk on the way.

use super::docker_archive::{pick_platform, write_tar};
use super::{Output, Written};
use crate::blobs::BlobStore;
use crate::image::Image;
use crate::platform::Platform;
use anyhow::{Context, Result, bail};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub struct Load {
    /// "docker", "podman", or None for whichever is found.
    pub engine: Option<String>,
    /// Normalized references with tags.
    pub references: Vec<String>,
    pub platform: Option<Platform>,
}

impl Load {
    fn engine(&self) -> Result<(String, PathBuf)> {
        let names: Vec<&str> = match self.engine.as_deref() {
            Some(e @ ("docker" | "podman")) => vec![e],
            Some(other) => bail!("--load {other}: choose docker or podman"),
            None => vec!["docker", "podman"],
        };
        for n in &names {
            if let Ok(p) = which::which(n) {
                return Ok((n.to_string(), p));
            }
        }
        bail!(
            "--load: {} was not found on PATH; install it, or write an archive with --output docker-archive:FILE",
            names.join(" nor ")
        )
    }
}

impl Output for Load {
    fn describe(&self) -> String {
        format!(
            "{} load {}",
            self.engine.as_deref().unwrap_or("docker/podman"),
            self.references[0]
        )
    }

    fn preflight(&self) -> Result<()> {
        self.engine().map(drop)
    }

    fn write(&self, image: &Image, store: &BlobStore) -> Result<Written> {
        let img = pick_platform(image, self.platform)?;
        let (name, path) = self.engine()?;
        let mut child = Command::new(&path)
            .arg("load")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", path.display()))?;
        let stdin = child.stdin.take().context("engine stdin")?;
        // Drain stderr while streaming so a chatty engine never blocks on a full pipe.
        let mut stderr = child.stderr.take().context("engine stderr")?;
        let errs = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let sent = write_tar(stdin, img, store, &self.references);
        let out = child.wait_with_output().context("waiting for the engine")?;
        let err_text = errs.join().unwrap_or_default();
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
        if !out.status.success() {
            let last = err_text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message");
            bail!(
                "`{name} load` failed: {}; check that {name} works (`{name} info`)",
                last.trim()
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
