//! What git knows about the source: the commit (for the revision label) and its time (for a
//! reproducible `created`). The git CLI is used because it is what the user's checkout was made
//! with; when git or the repository is missing, the labels are simply left out.

use std::path::Path;
use std::process::Command;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitInfo {
    /// HEAD's full hash, with `-dirty` when tracked files differ from HEAD.
    pub revision: Option<String>,
    /// HEAD's full hash, clean.
    pub sha: Option<String>,
    /// HEAD's committer time, seconds since the epoch.
    pub commit_time: Option<u64>,
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn inspect(dir: &Path) -> GitInfo {
    let Some(sha) = git(dir, &["rev-parse", "--verify", "-q", "HEAD"]) else {
        return GitInfo::default();
    };
    let dirty =
        git(dir, &["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let commit_time = git(dir, &["log", "-1", "--format=%ct", "HEAD"]).and_then(|t| t.parse().ok());
    GitInfo {
        revision: Some(if dirty {
            format!("{sha}-dirty")
        } else {
            sha.clone()
        }),
        sha: Some(sha),
        commit_time,
    }
}
