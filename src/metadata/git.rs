//! What git knows about the source: the commit (for the revision label) and its time (for a
//! reproducible `created`). The git CLI is used because it is what the user's checkout was made
//! with; when git or the repository is missing, the labels are simply left out.
//!
//! A build asks in the background ([`spawn`]): the answer is needed only once the image config
//! is written, and git takes milliseconds a no-op rerun should not wait for.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitInfo {
    /// HEAD's full hash, with `-dirty` when tracked files differ from HEAD.
    pub revision: Option<String>,
    /// HEAD's full hash, clean.
    pub sha: Option<String>,
    /// HEAD's committer time, seconds since the epoch.
    pub commit_time: Option<u64>,
}

fn start(dir: &Path, args: &[&str]) -> Option<Child> {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        // Read-only: never refresh the index behind the user's back (or race their git).
        .arg("--no-optional-locks")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

fn finish(child: Option<Child>) -> Option<String> {
    let out = child?.wait_with_output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Asks git, running its two questions side by side.
pub fn inspect(dir: &Path) -> GitInfo {
    let head = start(dir, &["log", "-1", "--format=%H %ct", "HEAD"]);
    let status = start(dir, &["status", "--porcelain", "--untracked-files=no"]);
    let head = finish(head);
    let dirty = finish(status).is_some_and(|s| !s.is_empty());
    let Some((sha, time)) = head.as_deref().and_then(|h| h.split_once(' ')) else {
        return GitInfo::default();
    };
    if sha.len() < 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return GitInfo::default();
    }
    GitInfo {
        revision: Some(if dirty {
            format!("{sha}-dirty")
        } else {
            sha.to_string()
        }),
        sha: Some(sha.to_string()),
        commit_time: time.parse().ok(),
    }
}

/// [`inspect`] on another thread; [`Pending::wait`] collects the answer.
pub struct Pending(std::thread::JoinHandle<GitInfo>);

pub fn spawn(dir: PathBuf) -> Pending {
    Pending(std::thread::spawn(move || inspect(&dir)))
}

impl Pending {
    pub fn wait(self) -> GitInfo {
        // A panic there is a bug, but the labels it would give are optional.
        self.0.join().unwrap_or_default()
    }
}
