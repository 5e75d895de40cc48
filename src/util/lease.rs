//! Leases: temp files and directories that say who owns them, so that what a killed run left
//! behind (SIGKILL, a crash, power loss) is removed by a later run, and nothing else ever is.
//! Every temp the tool makes outside the system's temp directory is made here: outputs
//! ([`crate::util::atomic`]), the blob store's `cache/tmp` ([`crate::blobs`]) and the
//! remembered answers ([`crate::memo`]).
//!
//! The rule:
//!
//! - **A temp's name says who owns it**: `{prefix}{PID}-{START}-{random}` ([`prefix`]), where
//!   START is the owner's start time (field 22 of `/proc/PID/stat`, clock ticks since boot),
//!   which a later process reusing the PID does not share.
//! - **Its owner holds an exclusive flock on it while alive** ([`hold`]; a directory's lock is
//!   on a descriptor of the directory). The kernel drops the lock when the process ends,
//!   however it ends.
//! - **A sweep ([`sweep`]) removes an entry only when all of these hold**: its name has
//!   exactly that shape for the prefix asked for; it is a regular file or a directory (nothing
//!   else is even opened: opening a FIFO would block, a symlink leads elsewhere); the owner
//!   named is gone (no such PID, a zombie, or the PID now belongs to a process started at
//!   another time); its lock can be taken; and, with the lock held, the name still leads to
//!   the entry that was locked (same device and inode). Anything else is never touched.
//!
//! Both checks are needed. The PID and start time cover a temp between its creation and its
//! lock (a run that has just made its temp is alive), and a file system that has no flock.
//! The lock covers what the PID cannot tell: a run in another PID namespace (a container
//! sharing the directory), whose PID means nothing here or names some other process. So a
//! live run's temp, even one of a run stopped with SIGSTOP, is never removed: its owner is
//! alive and holds the lock. The creator checks, once it holds the lock, that the name still
//! leads to what it created, and makes another temp if a sweep from another namespace took it
//! first.
//!
//! Without `/proc` (not Linux) no owner is ever judged gone, so nothing is swept.
//!
//! The flock is fs4's, not nix's: fs4 is already a dependency (the output directory locks) and
//! works beyond Linux; std's `File::try_lock` needs Rust 1.89, past our MSRV.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// How many names [`temp_file_in`] and [`temp_dir_in`] try before giving up, each lost to a
/// sweep from another PID namespace that took its lock first.
const ATTEMPTS: usize = 16;

/// The start of a temp name owned by this process: `{prefix}{PID}-{START}-`; the caller (or
/// `tempfile`) appends something random. [`sweep`] with the same `prefix` removes such names
/// once their owner has exited.
pub fn prefix(prefix: &str) -> String {
    let (pid, start) = me().unwrap_or((std::process::id(), 0));
    format!("{prefix}{pid}-{start}-")
}

/// A new temp file in `dir`, named by [`prefix`]`(prefix)` and held ([`hold`]) for as long as
/// it is open. Created with mode 0666 less the umask, like any output (not tempfile's
/// owner-only 0600), since it becomes one by a rename.
pub fn temp_file_in(dir: &Path, prefix: &str) -> io::Result<tempfile::NamedTempFile> {
    made_held(dir, prefix, 0o666, |made| {
        let tmp = made.tempfile_in(dir)?;
        Ok(held_at(tmp.as_file(), tmp.path()).then_some(tmp))
    })
}

/// A temp directory made by [`temp_dir_in`]: removed with what it holds on drop, unless
/// [kept](TempDir::keep); held ([`hold`]) until then.
pub struct TempDir {
    dir: tempfile::TempDir,
    /// A descriptor of the directory, which carries the lock.
    _lease: fs::File,
}

impl TempDir {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Leaves the directory where it is (it was renamed away, say) and lets the lock go.
    pub fn keep(self) -> PathBuf {
        self.dir.keep()
    }
}

/// A new temp directory in `dir`, named by [`prefix`]`(prefix)` and held until it is dropped.
/// Mode 0777 less the umask, like any directory the tool makes.
pub fn temp_dir_in(dir: &Path, prefix: &str) -> io::Result<TempDir> {
    made_held(dir, prefix, 0o777, |made| {
        let tmp = made.tempdir_in(dir)?;
        // Opening a directory read-only is allowed, and flock works on it.
        let lease = fs::File::open(tmp.path())?;
        Ok(held_at(&lease, tmp.path()).then_some(TempDir {
            dir: tmp,
            _lease: lease,
        }))
    })
}

/// Makes a temp through `make` (given a builder that names it by [`prefix`] with `mode`) until
/// one is held (`make` gives None when a sweep took it first; see [`held_at`]).
fn made_held<T>(
    dir: &Path,
    prefix: &str,
    mode: u32,
    make: impl Fn(&tempfile::Builder) -> io::Result<Option<T>>,
) -> io::Result<T> {
    let name = self::prefix(prefix);
    let mut builder = tempfile::Builder::new();
    builder
        .prefix(&name)
        .permissions(fs::Permissions::from_mode(mode));
    for _ in 0..ATTEMPTS {
        if let Some(held) = make(&builder)? {
            return Ok(held);
        }
    }
    Err(lost(dir))
}

fn lost(dir: &Path) -> io::Error {
    io::Error::other(format!(
        "every temp name tried in {} was taken by another run's sweep",
        dir.display()
    ))
}

/// Takes the lock on a temp this process has just created at `path`, and checks that the
/// name still leads to it. False when a sweep from another PID namespace took the lock first
/// or removed the temp meanwhile: the caller makes another. A file system without flock
/// leaves the temp unlocked, but still ours: the PID and start time in its name protect it.
fn held_at(file: &fs::File, path: &Path) -> bool {
    !matches!(try_lock(file), Ok(false)) && same_entry(file, path)
}

/// Whether `path` itself (not what a symlink there leads to) is the file `file` has open.
fn same_entry(file: &fs::File, path: &Path) -> bool {
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// Takes an exclusive flock on `file` if free: Ok(false) when another holder has it.
/// (Called through fs4's trait by name: newer std has a `File::try_lock` of its own.)
pub fn try_lock(file: &fs::File) -> io::Result<bool> {
    match fs4::FileExt::try_lock(file) {
        Ok(()) => Ok(true),
        Err(fs4::TryLockError::WouldBlock) => Ok(false),
        Err(fs4::TryLockError::Error(e)) => Err(e),
    }
}

/// Marks a temp file or directory as owned by a live run for as long as `file` stays open
/// (see the module's notes). Best effort: on a file system without flock, the name alone
/// protects the temp.
pub fn hold(file: &fs::File) {
    let _ = try_lock(file);
}

/// Removes the entries of `dir` named `{prefix}{PID}-{START}-…` (see [`prefix`]) whose owner
/// has exited and holds no lock on them; files and directories alike. Entries named
/// otherwise, and those of live runs, are left alone (see the module's notes). Returns how
/// many were removed.
pub fn sweep(dir: &Path, prefix: &str) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|entry| {
            let owner = entry.file_name().to_str().and_then(|n| owner_of(n, prefix));
            owner.is_some_and(|(pid, start)| is_gone(pid, start))
                // Never open anything but a file or a directory: a FIFO would block.
                && entry.file_type().is_ok_and(|t| t.is_file() || t.is_dir())
                && remove_orphan(&entry.path())
        })
        .count()
}

/// Removes the file or directory at `path` if its lock is free, holding the lock until it is
/// gone. Nothing is removed unless the locked descriptor is the entry named `path`.
fn remove_orphan(path: &Path) -> bool {
    let Ok(file) = open_entry(path) else {
        return false;
    };
    let Ok(meta) = file.metadata() else {
        return false;
    };
    if !(meta.is_file() || meta.is_dir())
        || !matches!(try_lock(&file), Ok(true))
        || !same_entry(&file, path)
    {
        return false;
    }
    // Named by its owner's prefix (checked by the caller); never through a link.
    super::owned::remove_tree(path, path, super::owned::Name::Made).is_ok_and(|r| r)
}

/// Opens an entry to lock it. On Linux without blocking: should the entry have been replaced
/// by a FIFO since its type was read, the open returns at once (and the type check after it
/// refuses it).
fn open_entry(path: &Path) -> io::Result<fs::File> {
    super::fs::open_nonblocking(path)
}

/// This process as `(PID, START)`. None where there is no /proc (then no temp is ever judged
/// dead).
fn me() -> Option<(u32, u64)> {
    static ME: OnceLock<Option<(u32, u64)>> = OnceLock::new();
    *ME.get_or_init(|| {
        let pid = std::process::id();
        proc_stat(pid).map(|(_, start)| (pid, start))
    })
}

/// `(state, start time)` of a process from `/proc/PID/stat`; None if there is no such process
/// (or no /proc). Hand-parsed: two fields of one line, not worth a crate.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `PID (COMM) STATE PPID …`: COMM may hold spaces and parentheses, so split after the last `)`.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The owner written into a temp name by [`prefix`], if `name` is one of `prefix`'s.
fn owner_of(name: &str, prefix: &str) -> Option<(u32, u64)> {
    let mut parts = name.strip_prefix(prefix)?.splitn(3, '-');
    let pid = parts.next()?;
    let start = parts.next()?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(start) || parts.next().is_none_or(str::is_empty) {
        return None;
    }
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// Whether the process `(pid, start)` has certainly exited: no such PID, a zombie, or the PID
/// now names a process started at another time.
fn is_gone(pid: u32, start: u64) -> bool {
    if me().is_none() || me() == Some((pid, start)) {
        return false;
    }
    match proc_stat(pid) {
        None => !Path::new(&format!("/proc/{pid}")).exists(),
        Some((state, started)) => matches!(state, 'Z' | 'X') || started != start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_carry_their_owner() {
        let prefix = prefix(".app.tar.tmp-");
        let (pid, start) = me().expect("/proc");
        assert_eq!(prefix, format!(".app.tar.tmp-{pid}-{start}-"));
        assert_eq!(
            owner_of(&format!("{prefix}Xy12"), ".app.tar.tmp-"),
            Some((pid, start))
        );
        for (name, owner) in [
            (".blob.tmp-1-2-a", (1, 2)),
            (".blob.tmp-123-4-xYz012", (123, 4)),
        ] {
            assert_eq!(owner_of(name, ".blob.tmp-"), Some(owner), "{name}");
        }
        for foreign in [
            ".app.tar.tmp-notes",
            ".app.tar.tmp-1-2",
            ".app.tar.tmp-1-2-",
            ".app.tar.tmp--2-x",
            ".app.tar.tmp-1x-2-x",
            ".other.tmp-1-2-x",
            ".tmpAbCdEf",
        ] {
            assert_eq!(owner_of(foreign, ".app.tar.tmp-"), None, "{foreign}");
        }
        assert!(!is_gone(pid, start), "this process is alive");
        assert!(is_gone(pid, start + 1), "same PID, another start: reused");
    }

    /// The PID of a process that has exited (and been reaped).
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        dead
    }

    #[test]
    fn sweeping_removes_only_dead_owners_temps() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dead_pid();
        let live = dir.path().join(format!("{}abc", prefix(".o.tmp-")));
        let gone = dir.path().join(format!(".o.tmp-{dead}-5-abc"));
        let gone_dir = dir.path().join(format!(".o.tmp-{dead}-5-dir"));
        let other = dir.path().join(format!(".p.tmp-{dead}-5-abc"));
        let plain = dir.path().join(".o.tmp-abcdef");
        for f in [&live, &gone, &other, &plain] {
            fs::write(f, b"x").unwrap();
        }
        fs::create_dir_all(gone_dir.join("blobs")).unwrap();
        assert_eq!(sweep(dir.path(), ".o.tmp-"), 2);
        assert!(live.exists() && other.exists() && plain.exists());
        assert!(!gone.exists() && !gone_dir.exists());
    }

    #[test]
    fn a_locked_temp_of_an_unknown_pid_is_kept() {
        // What a run in another PID namespace looks like: a PID we cannot see, a lock held.
        let dir = tempfile::tempdir().unwrap();
        let held = dir.path().join(format!(".o.tmp-{}-5-abc", dead_pid()));
        fs::write(&held, b"x").unwrap();
        let f = fs::File::open(&held).unwrap();
        hold(&f);
        assert_eq!(sweep(dir.path(), ".o.tmp-"), 0);
        drop(f);
        assert_eq!(sweep(dir.path(), ".o.tmp-"), 1);
    }

    #[test]
    fn temps_made_here_are_held_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let file = temp_file_in(dir.path(), ".f.tmp-").unwrap();
        let tmp_dir = temp_dir_in(dir.path(), ".d.tmp-").unwrap();
        for (path, prefix) in [(file.path(), ".f.tmp-"), (tmp_dir.path(), ".d.tmp-")] {
            let name = path.file_name().unwrap().to_str().unwrap();
            assert!(name.starts_with(&self::prefix(prefix)), "{name}");
            // Another open file description conflicts with the holder's lock.
            assert!(!try_lock(&fs::File::open(path).unwrap()).unwrap());
        }
        let (file_path, dir_path) = (file.path().to_path_buf(), tmp_dir.path().to_path_buf());
        drop((file, tmp_dir));
        assert!(!file_path.exists() && !dir_path.exists());
    }

    #[test]
    fn a_temp_a_sweep_took_first_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{}abc", prefix(".o.tmp-")));
        fs::write(&path, b"").unwrap();
        let mine = fs::File::open(&path).unwrap();
        // A sweep (from another PID namespace) holds the lock: the creator makes another.
        let sweeper = fs::File::open(&path).unwrap();
        hold(&sweeper);
        assert!(!held_at(&mine, &path));
        // It removed the temp and let go: the lock is free, but the name leads nowhere.
        fs::remove_file(&path).unwrap();
        drop(sweeper);
        assert!(!held_at(&mine, &path));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn only_files_and_directories_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dead_pid();
        let fifo = dir.path().join(format!(".o.tmp-{dead}-5-fifo"));
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let target = dir.path().join("not-a-temp");
        fs::write(&target, b"mine").unwrap();
        let link = dir.path().join(format!(".o.tmp-{dead}-5-link"));
        std::os::unix::fs::symlink(&target, &link).unwrap();
        // Would block forever on the FIFO if it were opened.
        assert_eq!(sweep(dir.path(), ".o.tmp-"), 0);
        assert!(fifo.exists() && link.exists());
        assert_eq!(fs::read(&target).unwrap(), b"mine");
        // And an entry swapped for a FIFO after its type was read is refused, not waited on.
        assert!(!remove_orphan(&fifo));
        assert!(fifo.exists());
    }
}
