//! Upload progress: a bar per blob on a terminal (indicatif), plain lines otherwise, nothing
//! with -q.

use super::push::{BlobJob, Observer, Upload};
use crate::registry::client;
use crate::util::shell::Shell;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Arc;

pub struct Progress {
    bars: Option<MultiProgress>,
    shell: Shell,
}

/// One blob's upload.
#[derive(Clone)]
pub struct Transfer {
    bar: Option<ProgressBar>,
}

fn short(d: &str) -> &str {
    &d[..d.len().min(19)]
}

impl Progress {
    /// Bars on a terminal unless the shell is quiet; the shell decides what the lines show.
    pub fn new(shell: &Shell) -> Progress {
        let bars = (!shell.is_quiet() && shell.err_is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress {
            bars,
            shell: shell.clone(),
        }
    }

    pub fn line(&self, verb: &str, text: &str) {
        match &self.bars {
            Some(m) => self.shell.status_to(verb, text, |line| {
                let _ = m.println(line);
            }),
            None => self.shell.status(verb, text),
        }
    }

    pub fn note(&self, verb: &str, job: &BlobJob) {
        self.line(verb, &format!("{} {}", short(&job.digest), job.what));
    }

    pub fn start(&self, job: &BlobJob) -> Transfer {
        match &self.bars {
            Some(m) => {
                let bar = m.add(ProgressBar::new(job.size));
                bar.set_style(
                    ProgressStyle::with_template("{prefix:>12.cyan.bold} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                        .expect("static template")
                        .progress_chars("=> "),
                );
                bar.set_prefix("Pushing");
                bar.set_message(format!("{} {}", short(&job.digest), job.what));
                Transfer { bar: Some(bar) }
            }
            None => {
                self.line(
                    "Pushing",
                    &format!("{} {} ({} bytes)", short(&job.digest), job.what, job.size),
                );
                Transfer { bar: None }
            }
        }
    }
}

impl client::Transfer for Transfer {
    fn sent(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
    fn restarted(&self) {
        if let Some(b) = &self.bar {
            b.set_position(0);
        }
    }
}

impl Upload for Transfer {
    fn finished(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Push's events become lines and bars.
impl Observer for Progress {
    fn exists(&self, blob: &BlobJob) {
        self.note("Exists", blob);
    }
    fn mounted(&self, blob: &BlobJob) {
        self.note("Mounted", blob);
    }
    fn uploading(&self, blob: &BlobJob) -> Arc<dyn Upload> {
        Arc::new(self.start(blob))
    }
}
