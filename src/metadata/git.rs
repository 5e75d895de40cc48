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
    let key = commit_time_key(sha);
    if let Some(t) = crate::memo::get::<u64>("git", &key, shell) {
        return Some(t);
    }
    let t: u64 = finish(start(dir, &["log", "-1", "--format=%ct", sha]))?
        .parse()
        .ok()?;
    crate::memo::put("git", &key, &t, &[], shell);
    Some(t)
}

/// The repository directory of the checkout holding `dir`, as git finds it: the nearest
/// `.git` directory, or the one a `.git` file (a linked worktree, a submodule) names.
fn git_dir(dir: &Path) -> Option<PathBuf> {
    // GIT_CEILING_DIRECTORIES: git looks in none of these (nor above them).
    let ceilings: Vec<PathBuf> = std::env::var_os("GIT_CEILING_DIRECTORIES")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| p.is_absolute())
                .flat_map(|p| [p.canonicalize().ok(), Some(p)])
                .flatten()
                .collect()
        })
        .unwrap_or_default();
    use std::os::unix::fs::MetadataExt;
    let device = std::fs::metadata(dir).ok()?.dev();
    for d in dir.ancestors() {
        if d != dir && ceilings.iter().any(|c| c == d) {
            return None;
        }
        // git stops at a file system boundary; then git is asked.
        if std::fs::metadata(d).ok()?.dev() != device {
            return None;
        }
        let dot = d.join(".git");
        let meta = std::fs::metadata(&dot).ok();
        match meta {
            Some(m) if m.is_dir() => return Some(dot),
            Some(m) if m.is_file() => {
                let text = std::fs::read_to_string(&dot).ok()?;
                let named = text.strip_prefix("gitdir:")?.trim();
                return Some(d.join(named));
            }
            _ => {}
        }
    }
    None
}

/// Whether git surely finds no repository for `dir`: no `GIT_*` variable that names one, and
/// neither `dir` nor any directory above it holds a `.git` or looks like a bare repository
/// (`HEAD`, `objects`, `refs`). Looks in every ancestor, past any ceiling or file system
/// boundary where git would stop, so it errs only towards asking git.
pub fn outside_any_repository(dir: &Path) -> bool {
    const NAMES_A_REPOSITORY: [&str; 3] = ["GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR"];
    if NAMES_A_REPOSITORY
        .iter()
        .any(|v| std::env::var_os(v).is_some())
    {
        return false;
    }
    let Ok(dir) = std::path::absolute(dir) else {
        return false;
    };
    dir.ancestors().all(|d| {
        std::fs::symlink_metadata(d.join(".git")).is_err()
            && !(d.join("HEAD").exists() && d.join("objects").is_dir() && d.join("refs").is_dir())
    })
}

/// HEAD's commit, read from the repository's files without starting git, when they say it
/// plainly: HEAD names a commit, or a branch whose loose or packed ref does. None whenever
/// git might answer otherwise, so that git is asked instead: a `GIT_*` variable that moves
/// the repository, a repository of another user (git refuses it as of "dubious ownership"),
/// the reftable format, a symbolic ref, anything unexpected.
///
/// Hand-written: reading two small files is what this needs, and a git library would start
/// far slower than the few milliseconds it saves (see [`quick`]).
pub fn head_from_files(dir: &Path) -> Option<String> {
    const MOVES_THE_REPOSITORY: [&str; 4] = [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_COMMON_DIR",
        "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    ];
    if MOVES_THE_REPOSITORY
        .iter()
        .any(|v| std::env::var_os(v).is_some())
    {
        return None;
    }
    let gitdir = git_dir(dir)?;
    let common = match std::fs::read_to_string(gitdir.join("commondir")) {
        Ok(c) => gitdir.join(c.trim()),
        Err(_) => gitdir.clone(),
    };
    {
        use std::os::unix::fs::MetadataExt;
        let me = crate::util::owned::nix_euid();
        for d in [&gitdir, &common] {
            if std::fs::metadata(d).ok()?.uid() != me {
                return None;
            }
        }
    }
    if common.join("reftable").exists() {
        return None;
    }
    let head = std::fs::read_to_string(gitdir.join("HEAD")).ok()?;
    let head = head.trim_end();
    if is_hash(head) {
        return Some(head.to_string());
    }
    let name = head.strip_prefix("ref: ")?;
    if !name.starts_with("refs/") || name.split('/').any(|c| c.is_empty() || c == "..") {
        return None;
    }
    for d in [&gitdir, &common] {
        if let Ok(text) = std::fs::read_to_string(d.join(name)) {
            return Some(text.trim_end().to_string()).filter(|s| is_hash(s));
        }
    }
    let packed = std::fs::read_to_string(common.join("packed-refs")).ok()?;
    packed.lines().find_map(|l| {
        let (sha, refname) = l.split_once(' ')?;
        (refname == name && is_hash(sha)).then(|| sha.to_string())
    })
}

/// HEAD's commit and its time without starting git: HEAD read from the repository's files
/// ([`head_from_files`]) and the time git gave for that commit before (remembered by
/// [`commit_time`]). None on a first run in a checkout, or when the files say nothing plain;
/// then only git answers. Whether the checkout is dirty still takes `git status` ([`spawn`]),
/// which a build can collect after cargo, as nothing before the image config needs it.
pub fn quick(dir: &Path, shell: &Shell) -> Option<(String, u64)> {
    let sha = head_from_files(dir)?;
    let time = crate::memo::get::<u64>("git", &commit_time_key(&sha), shell)?;
    Some((sha, time))
}

fn commit_time_key(sha: &str) -> String {
    crate::memo::key(&[b"commit time", sha.as_bytes()])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run_git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// A directory is outside any repository exactly when git finds none for it, a bare one
    /// included.
    #[test]
    fn outside_any_repository_only_when_git_finds_none() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let deep = repo.join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        // The temp dir itself may sit in a checkout; then both answers are false.
        let git_finds = |d: &Path| {
            Command::new("git")
                .arg("-C")
                .arg(d)
                .args(["rev-parse", "--git-dir"])
                .output()
                .unwrap()
                .status
                .success()
        };
        assert_eq!(outside_any_repository(&deep), !git_finds(&deep));
        run_git(&repo, &["init", "-q"]);
        assert!(git_finds(&deep));
        assert!(!outside_any_repository(&deep));
        let bare = tmp.path().join("bare.git");
        run_git(tmp.path(), &["init", "-q", "--bare", "bare.git"]);
        assert!(!outside_any_repository(&bare.join("refs")));
    }

    /// What the files say is what git says, through a branch's loose ref, its packed ref, a
    /// detached HEAD and a linked worktree; and nothing where git finds no commit.
    #[test]
    fn head_from_files_agrees_with_git() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        run_git(&repo, &["init", "-q", "-b", "main"]);
        let sub = repo.join("crate/src");
        std::fs::create_dir_all(&sub).unwrap();
        assert_eq!(
            head_from_files(&sub),
            None,
            "an unborn branch has no commit"
        );
        std::fs::write(repo.join("crate/Cargo.toml"), "[package]").unwrap();
        run_git(&repo, &["add", "."]);
        run_git(&repo, &["commit", "-q", "-m", "one"]);
        let head = || Some(run_git(&repo, &["rev-parse", "HEAD"]));
        assert_eq!(head_from_files(&sub), head(), "loose ref");
        run_git(&repo, &["pack-refs", "--all"]);
        assert!(!repo.join(".git/refs/heads/main").exists());
        assert_eq!(head_from_files(&sub), head(), "packed ref");
        run_git(&repo, &["commit", "-q", "--allow-empty", "-m", "two"]);
        assert_eq!(head_from_files(&sub), head(), "loose ref over a packed one");
        run_git(&repo, &["checkout", "-q", "--detach", "HEAD~1"]);
        assert_eq!(head_from_files(&sub), head(), "detached HEAD");
        let linked = dir.path().join("linked");
        run_git(
            &repo,
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                "side",
                linked.to_str().unwrap(),
                "main",
            ],
        );
        assert_eq!(
            head_from_files(&linked),
            Some(run_git(&linked, &["rev-parse", "HEAD"])),
            "linked worktree"
        );
        assert_ne!(head_from_files(&linked), head());
    }
}
