//! Outputs appear whole or not at all: everything is written under a temp name beside the
//! target and renamed into place only on success. A failed or interrupted run leaves the old
//! output untouched (the temp name is removed on drop or on Ctrl-C).
//!
//! A temp name says who owns it (`.NAME.tmp-PID-START-XXXXXX`) and its owner holds an advisory
//! lock on it while alive ([`crate::util::lease`]), so the next write of the same output removes what
//! a killed run (SIGKILL, power loss) left behind, and never a live run's temp.

use crate::util::lease;
use crate::util::shell::Shell;
use anyhow::{Context, Result, bail};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Temp paths being written right now, removed by the interrupt handler.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Registers a path (a temp, or a file no finished output uses yet) for removal on interrupt
/// while the guard lives.
pub struct Pending(PathBuf);

impl Pending {
    /// Creates a temp through `make` and registers its path as one step with respect to the
    /// interrupt handler (the [`PENDING`] lock is held across both), so a Ctrl-C or SIGTERM
    /// that lands right after the file appears still finds it registered and removes it.
    /// Registering after creating left that window open: a signal between the two left the
    /// temp behind (seen under load by
    /// `reliability::layout::sigterm_while_writing_leaves_the_previous_output_and_no_temp`).
    fn made<T>(
        make: impl FnOnce() -> Result<T>,
        path: impl Fn(&T) -> &Path,
    ) -> Result<(T, Pending)> {
        let mut registered = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        let made = make()?;
        let p = path(&made).to_path_buf();
        registered.push(p.clone());
        Ok((made, Pending(p)))
    }

    pub fn new(p: &Path) -> Pending {
        if let Ok(mut v) = PENDING.lock() {
            v.push(p.to_path_buf());
        }
        Pending(p.to_path_buf())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Ok(mut v) = PENDING.lock() {
            v.retain(|p| p != &self.0);
        }
    }
}

/// Runs `persist` (the step that makes `release` part of a finished output, e.g. renaming the
/// index that references them into place) and unregisters `release`, as one step with respect
/// to the interrupt handler: the [`PENDING`] lock is held across both. A Ctrl-C that lands
/// meanwhile waits, then finds either everything still registered and nothing persisted (it
/// removes the lot) or the output persisted and none of `release` registered (it keeps them).
/// Without this, a Ctrl-C between the rename and the unregistering would remove blobs the new
/// index references. On error, `release` is dropped, unregistered as usual.
///
/// `persist` must not register or drop a [`Pending`] itself (that takes the same lock).
pub fn commit<T>(release: Vec<Pending>, persist: impl FnOnce() -> Result<T>) -> Result<T> {
    let mut registered = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    let out = persist()?;
    registered.retain(|p| !release.iter().any(|r| &r.0 == p));
    drop(registered);
    drop(release); // already unregistered: their drops find nothing to remove
    Ok(out)
}

/// On Ctrl-C or SIGTERM: remove every temp output, say so, exit 130. Finished outputs and the
/// previous versions of unfinished ones are left as they were.
pub fn install_interrupt_cleanup(shell: std::sync::Arc<super::shell::Shell>) {
    let _ = ctrlc::set_handler(move || {
        if let Ok(v) = PENDING.lock() {
            for p in v.iter() {
                // Only temps this run made and registered; never through a link.
                let _ = super::owned::remove_tree(p, p, super::owned::Name::Made);
            }
        }
        shell.error(
            "interrupted; unfinished outputs were removed and existing ones left as they were",
        );
        std::process::exit(130);
    });
}

fn parent_of(target: &Path) -> PathBuf {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn temp_prefix(target: &Path) -> String {
    format!(
        ".{}.tmp-",
        target
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    )
}

/// Fails early when `target` cannot be written: its nearest existing ancestor must be a
/// directory we can create files in.
pub fn check_writable(target: &Path, want_dir: bool, what: &str) -> Result<()> {
    if target.exists() {
        let is_dir = target.is_dir();
        if want_dir && !is_dir {
            bail!(
                "{what}: {} exists and is not a directory; remove it or choose another path",
                target.display()
            );
        }
        if !want_dir && is_dir {
            bail!(
                "{what}: {} is a directory; give a file name",
                target.display()
            );
        }
    }
    let mut dir = parent_of(target);
    while !dir.exists() {
        let up = parent_of(&dir);
        if up == dir {
            bail!(
                "{what}: {} does not exist (was the current directory removed?); give an absolute output path",
                dir.display()
            );
        }
        dir = up;
    }
    if !dir.is_dir() {
        bail!(
            "{what}: {} is not a directory; choose another output path",
            dir.display()
        );
    }
    tempfile::Builder::new()
        .prefix(".cargo-containerize-probe-")
        .tempfile_in(&dir)
        .map(drop)
        .map_err(|e| {
            anyhow::anyhow!(
                "{what}: cannot write in {} ({}); choose a writable output path",
                dir.display(),
                e.kind()
            )
        })
}

/// Writes a file through `fill`, then renames it to `target`. Temps of dead runs that wrote
/// `target` are removed first; a full disk is reported as [`DiskFull`].
pub fn write_file(
    target: &Path,
    fill: impl FnOnce(&mut BufWriter<&mut fs::File>) -> Result<()>,
) -> Result<()> {
    write_file_releasing(target, Vec::new(), fill)
}

/// [`write_file`], whose final rename also unregisters `release` ([`commit`]): for a file
/// (a layout's index.json) that makes what `release` guards part of a finished output.
pub fn write_file_releasing(
    target: &Path,
    release: Vec<Pending>,
    fill: impl FnOnce(&mut BufWriter<&mut fs::File>) -> Result<()>,
) -> Result<()> {
    write_file_inner(target, release, fill).map_err(|e| disk_full_remedy(e, target))
}

fn write_file_inner(
    target: &Path,
    mut release: Vec<Pending>,
    fill: impl FnOnce(&mut BufWriter<&mut fs::File>) -> Result<()>,
) -> Result<()> {
    let parent = parent_of(target);
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    lease::sweep(&parent, &temp_prefix(target));
    let (mut tmp, pending) = Pending::made(
        || {
            lease::temp_file_in(&parent, &temp_prefix(target))
                .with_context(|| format!("cannot write in {}", parent.display()))
        },
        |t| t.path(),
    )?;
    // Released by the rename below: the temp name is gone once it is the target.
    release.push(pending);
    {
        let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        fill(&mut w)?;
        w.flush()?;
    }
    if let Err(e) = tmp.as_file().sync_all() {
        // Data the disk had no room for shows up here on some file systems; other fsync
        // failures (a file system without it) do not make the written bytes wrong.
        if full_kind(&e).is_some() {
            return Err(e.into());
        }
    }
    commit(release, || {
        super::owned::persist(tmp, target)
            .with_context(|| format!("cannot rename the finished output to {}", target.display()))
    })?;
    Ok(())
}

/// Removes what dead runs left beside `target` while writing it (see [`lease::sweep`]).
pub fn sweep_beside(target: &Path) -> usize {
    lease::sweep(&parent_of(target), &temp_prefix(target))
}

/// Removes what dead runs left in `dir` while writing any file there ([`write_file`]'s temps,
/// `.NAME.tmp-…`), whichever NAME they were writing: [`sweep_beside`] for each NAME found.
pub fn sweep_dir(dir: &Path) -> usize {
    let targets: std::collections::BTreeSet<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_str()?.to_string();
                    let end = name.find(".tmp-")?;
                    name.get(1..end)
                        .filter(|t| name.starts_with('.') && !t.is_empty())
                        .map(String::from)
                })
                .collect()
        })
        .unwrap_or_default();
    targets.iter().map(|t| sweep_beside(&dir.join(t))).sum()
}

/// A temp directory beside `target`, named and held as this run's (see [`lease`]), after
/// removing those of dead runs; registered for the interrupt handler as it is made.
fn temp_dir_for(target: &Path) -> Result<(lease::TempDir, Pending)> {
    let parent = parent_of(target);
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    lease::sweep(&parent, &temp_prefix(target));
    Pending::made(
        || {
            lease::temp_dir_in(&parent, &temp_prefix(target))
                .with_context(|| format!("cannot write in {}", parent.display()))
        },
        |t| t.path(),
    )
}

/// Builds a new directory through `fill` (given the temp directory) and renames it to
/// `target` if nothing is there. Returns false, and leaves what is there alone, when `target`
/// exists (made by another run meanwhile); the caller then updates it in place.
pub fn create_dir(target: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<bool> {
    let created = || -> Result<bool> {
        let (tmp, _pending) = temp_dir_for(target)?;
        fill(tmp.path())?;
        if !rename_noreplace(tmp.path(), target)? {
            return Ok(false); // tmp is removed on drop
        }
        // The temp dir was renamed away; forget it without trying to remove it.
        let _ = tmp.keep();
        Ok(true)
    };
    created().map_err(|e| disk_full_remedy(e, target))
}

/// Renames `from` to `to` unless `to` exists; false if it does.
fn rename_noreplace(from: &Path, to: &Path) -> Result<bool> {
    super::owned::rename_noreplace(from, to)
        .with_context(|| format!("cannot rename the finished output to {}", to.display()))
}

/// Builds a directory through `fill` (given the temp directory), then swaps it in for `target`,
/// replacing all of it (for directories the tool owns whole, like a rendered root).
pub fn write_dir(target: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    write_dir_inner(target, fill).map_err(|e| disk_full_remedy(e, target))
}

fn write_dir_inner(target: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = parent_of(target);
    let (tmp, _pending) = temp_dir_for(target)?;
    fill(tmp.path())?;
    if exchange(tmp.path(), target)? {
        // tmp now holds the previous output; dropping it removes it.
        return Ok(());
    }
    if target.exists() {
        // Move the old directory aside first, so there is never a moment with a mix of both.
        let old = lease::temp_dir_in(&parent, &temp_prefix(target))?;
        let old_path = old.path().join("old");
        super::owned::rename(target, &old_path)
            .with_context(|| format!("cannot replace {}", target.display()))?;
        if let Err(e) = super::owned::rename(tmp.path(), target) {
            let _ = super::owned::rename(&old_path, target);
            return Err(e).with_context(|| {
                format!("cannot rename the finished output to {}", target.display())
            });
        }
        drop(old); // removes the previous output
    } else {
        super::owned::rename(tmp.path(), target).with_context(|| {
            format!("cannot rename the finished output to {}", target.display())
        })?;
    }
    // The temp dir was renamed away; forget it without trying to remove it.
    let _ = tmp.keep();
    Ok(())
}

/// Swaps `new` and `target` in one step where the system can (Linux `renameat2`), so there is
/// no moment without a complete output. Returns false when the caller must fall back.
fn exchange(new: &Path, target: &Path) -> Result<bool> {
    super::owned::exchange(new, target)
        .with_context(|| format!("cannot replace {}", target.display()))
}

// ---------------------------------------------------------------------------------------------
// Locks: writers of one output directory take turns.

/// The advisory lock file inside an output directory. A dot-file: skopeo and umoci ignore it.
pub const LOCK_NAME: &str = ".cargo-containerize.lock";

/// The environment variable that bounds the wait for a lock (seconds, or e.g. `2m`).
pub const LOCK_TIMEOUT_VAR: &str = "CARGO_CONTAINERIZE_LOCK_TIMEOUT";

/// How long to wait for a lock: [`LOCK_TIMEOUT_VAR`], else 10 minutes.
pub fn lock_timeout() -> Result<Duration> {
    super::env_duration(LOCK_TIMEOUT_VAR, Duration::from_secs(600))
}

/// An exclusive advisory lock (flock) on a lock file, released on drop.
#[derive(Debug)]
pub struct DirLock {
    _file: fs::File,
}

/// Takes the lock of the output directory `dir` (which must exist), waiting for another run
/// that holds it for at most [`lock_timeout`], and saying so while it waits.
pub fn lock_dir(dir: &Path, shell: &Shell) -> Result<DirLock> {
    lock_file(
        &dir.join(LOCK_NAME),
        &format!("the lock on {} held by another run", dir.display()),
        None,
        shell,
    )
}

/// O_NOFOLLOW | O_NONBLOCK where the flags are at hand (nix is a Linux-only dependency).
#[cfg(target_os = "linux")]
const LOCK_FLAGS: i32 = nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK;
#[cfg(not(target_os = "linux"))]
const LOCK_FLAGS: i32 = 0;

/// Opens (or creates) a lock file without following a link at its name, so a link planted
/// there (by another user of a shared directory) makes the tool neither create nor lock the
/// file it points to; and without blocking, so a FIFO there cannot hang it. Only a regular
/// file is used.
fn open_lock(path: &Path) -> Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let refused = |what: &str| {
        anyhow::anyhow!(
            "the lock file {} is {what}; cargo-containerize locks only a regular file of its own: remove it and run again",
            path.display()
        )
    };
    let file = match fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(LOCK_FLAGS)
        .open(path)
    {
        Ok(f) => f,
        Err(_) if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) => {
            return Err(refused("a symbolic link"));
        }
        Err(e) => {
            return Err(disk_full_remedy(e.into(), path))
                .with_context(|| format!("cannot create the lock file {}", path.display()));
        }
    };
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read the lock file {}", path.display()))?;
    if !meta.is_file() {
        return Err(refused(super::fs::kind_name(meta.file_type())));
    }
    Ok(file)
}

/// Takes an exclusive lock on the lock file `path` (created if missing; its directory must
/// exist). When another run holds it, says so ("Waiting for WHAT (at most …)") and waits for at
/// most `timeout`, or [`lock_timeout`] when None; then fails naming `what` and the remedy.
/// `what` names the lock and its holder, e.g. "the lock on DIR held by another run".
pub fn lock_file(
    path: &Path,
    what: &str,
    timeout: Option<Duration>,
    shell: &Shell,
) -> Result<DirLock> {
    let file = open_lock(path)?;
    let take = |f: &fs::File| {
        lease::try_lock(f).with_context(|| format!("cannot lock {}", path.display()))
    };
    if take(&file)? {
        return Ok(DirLock { _file: file });
    }
    let timeout = match timeout {
        Some(t) => t,
        None => lock_timeout()?,
    };
    shell.notice(
        "Waiting",
        format!(
            "for {what} (at most {})",
            humantime::format_duration(timeout)
        ),
    );
    // Polled, not a blocking flock: a blocking one cannot be given a deadline without a
    // signal or a second thread.
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if take(&file)? {
            return Ok(DirLock { _file: file });
        }
        let now = Instant::now();
        if now >= deadline {
            bail!(
                "timed out after {} waiting for {what}; let that run finish, or raise {LOCK_TIMEOUT_VAR}",
                humantime::format_duration(timeout),
            );
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------------
// A full disk: say so, name the output, and the remedy.

/// A write that failed because the disk (or the user's quota) is full.
#[derive(Debug)]
pub struct DiskFull {
    pub path: PathBuf,
    pub quota: bool,
    /// What to do besides freeing space, e.g. "choose another output path".
    pub remedy: &'static str,
}

impl std::fmt::Display for DiskFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot write {}: the disk is full ({}); free some space there or {}",
            self.path.display(),
            if self.quota {
                "disk quota exceeded"
            } else {
                "no space left on device"
            },
            self.remedy
        )
    }
}

impl std::error::Error for DiskFull {}

/// The bytes free for this user on the file system holding `path` (its nearest existing
/// ancestor), if the system says.
pub fn free_bytes(path: &Path) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let mut p = path;
        while !p.exists() {
            p = p.parent()?;
        }
        let st = nix::sys::statvfs::statvfs(p).ok()?;
        Some(st.blocks_available() as u64 * st.fragment_size() as u64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
    }
}

/// Whether an I/O error is ENOSPC or EDQUOT, as `Some(quota)`.
fn full_kind(e: &std::io::Error) -> Option<bool> {
    use std::io::ErrorKind;
    match (e.raw_os_error(), e.kind()) {
        (Some(28), _) | (_, ErrorKind::StorageFull) => Some(false),
        (Some(122), _) | (_, ErrorKind::QuotaExceeded) => Some(true),
        _ => {
            // Wrappers (the tar crate's errors) keep the kind but may hide the code.
            let inner = e.get_ref()?.source()?.downcast_ref::<std::io::Error>()?;
            full_kind(inner)
        }
    }
}

/// Turns an error caused by a full disk (anywhere in its chain) into [`DiskFull`] naming
/// `path`, the output being written; other errors pass through unchanged.
pub fn disk_full_remedy(e: anyhow::Error, path: &Path) -> anyhow::Error {
    disk_full_remedy_with(e, path, "choose another output path")
}

/// [`disk_full_remedy`] for what is not an output (a cache, say), with its own `remedy`
/// (e.g. "pass another --target-dir").
pub fn disk_full_remedy_with(e: anyhow::Error, path: &Path, remedy: &'static str) -> anyhow::Error {
    let quota = e.chain().find_map(|cause| {
        if let Some(full) = cause.downcast_ref::<DiskFull>() {
            return Some(full.quota);
        }
        full_kind(cause.downcast_ref::<std::io::Error>()?)
    });
    match quota {
        Some(quota) => DiskFull {
            path: path.to_path_buf(),
            quota,
            remedy,
        }
        .into(),
        None => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(p: &Path) -> bool {
        PENDING.lock().unwrap().iter().any(|q| q == p)
    }

    /// The race itself (a signal between the rename and the unregistering) cannot be hit
    /// deterministically; what makes it harmless can be checked: the handler's lock is held
    /// while `persist` runs, and the paths are unregistered before it is released.
    #[test]
    fn commit_persists_and_unregisters_under_the_handlers_lock() {
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blob");
        let release = vec![Pending::new(&blob)];
        assert!(registered(&blob));
        let out = commit(release, || {
            // The interrupt handler would block here, not see a half-done state.
            assert!(PENDING.try_lock().is_err(), "the handler's lock is free");
            Ok(7)
        })
        .unwrap();
        assert_eq!(out, 7);
        assert!(!registered(&blob), "still registered after the commit");

        // write_file_releasing: the target written, its temp and the released paths gone.
        let index = dir.path().join("index.json");
        let guarded = dir.path().join("new-blob");
        write_file_releasing(&index, vec![Pending::new(&guarded)], |w| {
            Ok(w.write_all(b"{}")?)
        })
        .unwrap();
        assert_eq!(fs::read(&index).unwrap(), b"{}");
        assert!(!registered(&guarded));
        assert!(
            PENDING
                .lock()
                .unwrap()
                .iter()
                .all(|p| !p.starts_with(dir.path()))
        );
    }

    #[test]
    fn sweep_dir_removes_dead_runs_temps_of_any_target_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        // PID 4194304 is above any pid_max: its owner is gone.
        let dead = dir.path().join(".0a1b.tmp-4194304-1-AbCdEf");
        let dead_other = dir.path().join(".index.json.tmp-4194304-1-XyZaBc");
        let foreign = dir.path().join(".notes.tmp");
        for f in [&dead, &dead_other, &foreign] {
            fs::write(f, b"x").unwrap();
        }
        let live = lease::temp_file_in(dir.path(), &temp_prefix(&dir.path().join("0a1b"))).unwrap();
        assert_eq!(sweep_dir(dir.path()), 2);
        assert!(!dead.exists() && !dead_other.exists());
        assert!(
            foreign.exists(),
            "a file the tool did not write was removed"
        );
        assert!(live.path().exists(), "a live run's temp was removed");
    }

    #[test]
    fn a_full_disk_is_recognised_through_wrappers() {
        let enospc = std::io::Error::from_raw_os_error(28);
        let e = disk_full_remedy(
            anyhow::Error::from(enospc).context("writing layer"),
            Path::new("/out/img.tar"),
        );
        let text = format!("{e:#}");
        assert!(
            text.starts_with("cannot write /out/img.tar: the disk is full"),
            "{text}"
        );
        assert!(text.contains("free some space"), "{text}");
        // The tar crate wraps the error, keeping its kind.
        let wrapped = std::io::Error::new(std::io::ErrorKind::StorageFull, "failed to write entry");
        assert!(disk_full_remedy(wrapped.into(), Path::new("x")).is::<DiskFull>());
        let quota = std::io::Error::from_raw_os_error(122);
        let text = disk_full_remedy(quota.into(), Path::new("x")).to_string();
        assert!(text.contains("disk quota exceeded"), "{text}");
        let other = std::io::Error::from_raw_os_error(13);
        assert!(!disk_full_remedy(other.into(), Path::new("x")).is::<DiskFull>());
    }

    #[test]
    fn lock_timeouts_are_seconds_or_durations() {
        assert_eq!(
            super::super::parse_duration(LOCK_TIMEOUT_VAR, "30").unwrap(),
            Duration::from_secs(30)
        );
        assert_eq!(
            super::super::parse_duration(LOCK_TIMEOUT_VAR, "2m").unwrap(),
            Duration::from_secs(120)
        );
        let e = super::super::parse_duration(LOCK_TIMEOUT_VAR, "soon")
            .unwrap_err()
            .to_string();
        assert!(e.contains(LOCK_TIMEOUT_VAR) && !e.contains('\n'), "{e}");
    }

    #[test]
    fn the_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_dir(dir.path(), &Shell::discard()).unwrap();
        // Another open file description of the same lock file: flock conflicts with it.
        let other = fs::File::open(dir.path().join(LOCK_NAME)).unwrap();
        assert!(!lease::try_lock(&other).unwrap());
        drop(first);
        assert!(lease::try_lock(&other).unwrap());
    }

    /// A link planted at a lock file's name (another user of a shared cache) must not make
    /// the tool create or lock the file it points to.
    #[test]
    fn a_lock_file_planted_as_a_link_is_refused_and_its_target_not_made() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim");
        let lock = dir.path().join("entry.lock");
        std::os::unix::fs::symlink(&target, &lock).unwrap();
        let e = lock_file(
            &lock,
            "the lock on entry",
            Some(Duration::from_millis(10)),
            &Shell::discard(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("is a symbolic link") && e.contains("remove it"),
            "{e}"
        );
        assert!(!target.exists(), "the link's target was created");
        // A link to an existing file: refused too, the file untouched.
        fs::write(&target, b"theirs").unwrap();
        assert!(
            lock_file(
                &lock,
                "the lock on entry",
                Some(Duration::from_millis(10)),
                &Shell::discard()
            )
            .is_err()
        );
        assert_eq!(fs::read(&target).unwrap(), b"theirs");
    }

    #[test]
    fn a_lock_held_elsewhere_times_out_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        fs::write(&path, b"").unwrap();
        // Another open file description holds it, as another run would.
        let holder = fs::File::open(&path).unwrap();
        assert!(lease::try_lock(&holder).unwrap());
        let what = "the lock on x.lock held by another run building X";
        let e = lock_file(
            &path,
            what,
            Some(Duration::from_millis(50)),
            &Shell::discard(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("timed out after 50ms waiting for"), "{e}");
        assert!(
            e.contains(what) && e.contains(LOCK_TIMEOUT_VAR) && !e.contains('\n'),
            "{e}"
        );
        drop(holder);
        lock_file(
            &path,
            what,
            Some(Duration::from_millis(50)),
            &Shell::discard(),
        )
        .unwrap();
    }
}
