//! Outputs appear whole or not at all: everything is written under a temp name beside the
//! target and renamed into place only on success. A failed or interrupted run leaves the old
//! output untouched (the temp name is removed on drop; a killed process leaves a dot-file
//! that the next run of the same output ignores).

use anyhow::{Context, Result, bail};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Temp paths being written right now, removed by the interrupt handler.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Registers a temp path for removal on interrupt while the guard lives.
struct Pending(PathBuf);

impl Pending {
    fn new(p: &Path) -> Pending {
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

/// On Ctrl-C or SIGTERM: remove every temp output, say so, exit 130. Finished outputs and the
/// previous versions of unfinished ones are left as they were.
pub fn install_interrupt_cleanup() {
    let _ = ctrlc::set_handler(|| {
        if let Ok(v) = PENDING.lock() {
            for p in v.iter() {
                let _ = fs::remove_dir_all(p).or_else(|_| fs::remove_file(p));
            }
        }
        eprintln!(
            "error: interrupted; unfinished outputs were removed and existing ones left as they were"
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

/// The mode an output is created with: what any new file gets (the umask applies), not the
/// owner-only mode of a temp file.
pub fn readable(mode: u32) -> fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    fs::Permissions::from_mode(mode)
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

/// Writes a file through `fill`, then renames it to `target`.
pub fn write_file(
    target: &Path,
    fill: impl FnOnce(&mut BufWriter<&mut fs::File>) -> Result<()>,
) -> Result<()> {
    let parent = parent_of(target);
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&temp_prefix(target))
        .permissions(readable(0o666))
        .tempfile_in(&parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    let _pending = Pending::new(tmp.path());
    {
        let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        fill(&mut w)?;
        w.flush()?;
    }
    tmp.as_file().sync_all().ok();
    tmp.persist(target)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot rename the finished output to {}", target.display()))?;
    Ok(())
}

/// Builds a directory through `fill` (given the temp directory), then swaps it in for `target`.
pub fn write_dir(target: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = parent_of(target);
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(&temp_prefix(target))
        .permissions(readable(0o777))
        .tempdir_in(&parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    let _pending = Pending::new(tmp.path());
    fill(tmp.path())?;
    if exchange(tmp.path(), target)? {
        // tmp now holds the previous output; dropping it removes it.
        return Ok(());
    }
    if target.exists() {
        // Move the old directory aside first, so there is never a moment with a mix of both.
        let old = tempfile::Builder::new()
            .prefix(&temp_prefix(target))
            .tempdir_in(&parent)?;
        let old_path = old.path().join("old");
        fs::rename(target, &old_path)
            .with_context(|| format!("cannot replace {}", target.display()))?;
        if let Err(e) = fs::rename(tmp.path(), target) {
            let _ = fs::rename(&old_path, target);
            return Err(e).with_context(|| {
                format!("cannot rename the finished output to {}", target.display())
            });
        }
        drop(old); // removes the previous output
    } else {
        fs::rename(tmp.path(), target).with_context(|| {
            format!("cannot rename the finished output to {}", target.display())
        })?;
    }
    // The temp dir was renamed away; forget it without trying to remove it.
    let _ = tmp.keep();
    Ok(())
}

/// Swaps `new` and `target` in one step where the system can (Linux `renameat2`), so there is
/// no moment without a complete output. Returns false when the caller must fall back.
#[cfg(target_os = "linux")]
fn exchange(new: &Path, target: &Path) -> Result<bool> {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    if !target.exists() {
        return Ok(false);
    }
    match renameat2(
        AT_FDCWD,
        new,
        AT_FDCWD,
        target,
        RenameFlags::RENAME_EXCHANGE,
    ) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot replace {}", target.display())),
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_new: &Path, _target: &Path) -> Result<bool> {
    Ok(false)
}

/// Puts a copy of `src` at `dst`: a hard link when both are on one file system, else a copy.
pub fn link_or_copy(src: &Path, dst: &Path) -> Result<()> {
    if fs::hard_link(src, dst).is_ok() {
        return Ok(());
    }
    fs::copy(src, dst)
        .map(drop)
        .with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))
}
