//! What git knows about the source: the commit (for the revision label) and its time (for a
//! reproducible `created`). The git CLI is used because it is what the user's checkout was made
//! with; when git or the repository is missing, the labels are simply left out.
//!
//! A build asks in the background ([`spawn`]): the answer is needed only once the image config
//! is written, and git takes milliseconds a no-op rerun should not wait for.

use crate::util::shell::Shell;
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

/// `git -C dir ARGS`, reading nothing from stdin.
fn git(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        // Read-only: never refresh the index behind the user's back (or race their git). The
        // variable, unlike the --no-optional-locks flag, is ignored by a git too old for it.
        .env("GIT_OPTIONAL_LOCKS", "0")
        .args(args)
        .stdin(Stdio::null());
    cmd
}

fn start(dir: &Path, args: &[&str]) -> Option<Child> {
    git(dir, args)
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

fn is_hash(s: &str) -> bool {
    s.len() >= 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// HEAD and whether tracked files differ from it, from one `git status` (porcelain v2 names
/// the commit in its `# branch.oid` header; any other line is a change). A git older than
/// 2.17, which rejects the options, gets the two-command way.
///
/// This runs while cargo builds. A build script that rewrites tracked files could race it;
/// git answers in milliseconds, long before cargo gets to run a build script.
fn head_and_dirty(dir: &Path) -> Option<(String, bool)> {
    let out = git(
        dir,
        &[
            "status",
            "--porcelain=v2",
            "--branch",
            "--no-ahead-behind",
            "--untracked-files=no",
        ],
    )
    .output()
    .ok()?;
    if out.status.success() {
        let status = String::from_utf8_lossy(&out.stdout);
        let sha = status
            .lines()
            .find_map(|l| l.strip_prefix("# branch.oid "))
            .filter(|s| is_hash(s))?
            .to_string();
        let dirty = status.lines().any(|l| !l.starts_with('#'));
        return Some((sha, dirty));
    }
    // A git too old for `--porcelain=v2`, or no repository (then rev-parse fails as well and
    // the answer is None): asked the old way, whatever git's message said.
    let sha =
        finish(start(dir, &["rev-parse", "--verify", "-q", "HEAD"])).filter(|s| is_hash(s))?;
    let dirty = finish(start(
        dir,
        &["status", "--porcelain", "--untracked-files=no"],
    ))
    .is_some_and(|s| !s.is_empty());
    Some((sha, dirty))
}

/// A commit's committer time. A commit never changes, so the answer is remembered by its hash
/// and a rerun needs one git process, not two.
fn commit_time(dir: &Path, sha: &str, shell: &Shell) -> Option<u64> {
    let key = crate::memo::key(&[b"commit time", sha.as_bytes()]);
    if let Some(t) = crate::memo::get::<u64>("git", &key, shell) {
        return Some(t);
    }
    let t: u64 = finish(start(dir, &["log", "-1", "--format=%ct", sha]))?
        .parse()
        .ok()?;
    crate::memo::put("git", &key, &t, &[], shell);
    Some(t)
}

/// Asks git.
pub fn inspect(dir: &Path, shell: &Shell) -> GitInfo {
    let Some((sha, dirty)) = head_and_dirty(dir) else {
        return GitInfo::default();
    };
    GitInfo {
        revision: Some(if dirty {
            format!("{sha}-dirty")
        } else {
            sha.clone()
        }),
        commit_time: commit_time(dir, &sha, shell),
        sha: Some(sha),
    }
}

/// [`inspect`] on another thread; [`Pending::wait`] collects the answer.
pub struct Pending(std::thread::JoinHandle<GitInfo>);

pub fn spawn(dir: PathBuf, shell: Shell) -> Pending {
    Pending(std::thread::spawn(move || inspect(&dir, &shell)))
}

impl Pending {
    pub fn wait(self) -> GitInfo {
        // A panic there is a bug, but the labels it would give are optional.
        self.0.join().unwrap_or_default()
    }
}
