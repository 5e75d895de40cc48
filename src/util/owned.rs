//! The one place where the tool removes, replaces or trusts files it keeps: every
//! `remove_file`, `remove_dir_all` and rename over an existing path in `src/` goes through
//! here (a unit test greps `src/` for strays).
//!
//! The rule: the tool deletes or replaces only what it wrote, by the names it gives them
//! ([`Name`]: digests and cache keys, its own temp prefixes, paths it made this run), and
//! finds them without following symbolic links. Below a `base` (a directory the user chose:
//! a target dir, a cache root, the workspace), every directory on the way to the file must be
//! a real directory: each is opened with `O_NOFOLLOW` from the one above it and the file is
//! unlinked relative to that descriptor, so a link planted anywhere below `base` (say
//! `cache/stat -> /home/me/photos`) makes the removal fail instead of reaching through it,
//! even when the link appears between a check and the removal. `base` itself is followed: a
//! target directory on another disk through a link is the user's choice.
//!
//! Hand-written over `openat`/`unlinkat` (nix) rather than a crate: cap-std does the same
//! with a sandbox of its own, a large dependency for four calls.
//!
//! The second half: a directory of the user's cache is trusted only when the user owns it and
//! no one else can write it ([`check_private`]), as ssh's StrictModes and git's
//! safe.directory judge theirs.

use anyhow::{Result, bail};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// How the tool named what it removes. A name of another shape is left alone.
#[derive(Debug, Clone, Copy)]
pub enum Name<'a> {
    /// A content address or cache key: hex digits (at least 16), optionally after a fixed
    /// word and a dash (`blob-<hex>`).
    Digest,
    /// One of the tool's temps: the name starts with this prefix (see [`super::lease`]).
    Temp(&'a str),
    /// A path this run made itself and tracks (a temp it registered, a blob it added to a
    /// layout under that layout's lock, a file its own manifest lists).
    Made,
}

impl Name<'_> {
    fn fits(&self, name: &str) -> bool {
        match self {
            Name::Digest => {
                let hex = name.rsplit_once('-').map_or(name, |(_, h)| h);
                hex.len() >= 16 && hex.bytes().all(|b| b.is_ascii_hexdigit())
            }
            Name::Temp(prefix) => name.starts_with(prefix) && name.len() > prefix.len(),
            Name::Made => true,
        }
    }
}

/// The parts of `path` below `base` (none when `path` is `base`), or None when `path` is not
/// below `base` or holds `..`.
fn below<'p>(base: &Path, path: &'p Path) -> Option<Vec<&'p std::ffi::OsStr>> {
    let rest = path.strip_prefix(base).ok()?;
    rest.components()
        .map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect()
}

/// `base` and the parts of `path` below it; a path not below `base` is judged from its own
/// parent (nothing on the way is then checked: the caller named that directory itself).
fn split<'p>(base: &'p Path, path: &'p Path) -> io::Result<(&'p Path, Vec<&'p std::ffi::OsStr>)> {
    if let Some(parts) = below(base, path).filter(|p| !p.is_empty()) {
        return Ok((base, parts));
    }
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((parent, vec![name]))
}

#[cfg(target_os = "linux")]
mod at {
    //! The descriptor walk: each directory opened from the one above it, never through a link.
    use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat};
    use nix::sys::stat::{FileStat, Mode, SFlag, fstatat};
    use std::ffi::OsStr;
    use std::io;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::path::{Path, PathBuf};

    fn dir_flags() -> OFlag {
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC
    }

    /// Opens `base` (followed), then each of `parts` below it with O_NOFOLLOW: a link on the
    /// way fails with ELOOP or ENOTDIR.
    pub fn open_dir(base: &Path, parts: &[&OsStr]) -> io::Result<OwnedFd> {
        let mut fd = openat(AT_FDCWD, base, dir_flags(), Mode::empty())?;
        for part in parts {
            fd = openat(&fd, *part, dir_flags() | OFlag::O_NOFOLLOW, Mode::empty())?;
        }
        Ok(fd)
    }

    /// What `name` in `dir` is, the entry itself (a link is not followed).
    pub fn stat(dir: &OwnedFd, name: &OsStr) -> io::Result<FileStat> {
        Ok(fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?)
    }

    /// The open directory holding `name` (reached from `base` through `parts`, never a link)
    /// and what `name` is there; None when the directory or the entry does not exist.
    pub fn entry(
        base: &Path,
        parts: &[&OsStr],
        name: &OsStr,
    ) -> io::Result<Option<(OwnedFd, FileStat)>> {
        let dir = match open_dir(base, parts) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            other => other?,
        };
        match stat(&dir, name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
            Ok(st) => Ok(Some((dir, st))),
        }
    }

    pub fn is(st: &FileStat, kind: SFlag) -> bool {
        SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == kind
    }

    pub fn unlink(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
        Ok(nix::unistd::unlinkat(
            dir,
            name,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        )?)
    }

    /// A path that reaches the open directory `dir` itself (not whatever its name leads to
    /// now), for std calls that take paths: `/proc/self/fd/N`.
    pub fn via(dir: &OwnedFd) -> Option<PathBuf> {
        let p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        p.is_dir().then_some(p)
    }
}

/// Removes the file `path` (a regular file, or a link itself, never what it leads to) when
/// its name is one the tool gives (`name`) and no directory between `base` and it is a
/// link. Ok(false) when there is nothing to remove or it is not the tool's to remove; an
/// error when the way to it goes through a link.
pub fn remove_file(base: &Path, path: &Path, name: Name) -> io::Result<bool> {
    let (root, parts) = split(base, path)?;
    let (file, dirs) = parts.split_last().expect("split gives at least one part");
    if !file.to_str().is_some_and(|f| name.fits(f)) {
        return Ok(false);
    }
    #[cfg(target_os = "linux")]
    {
        use nix::sys::stat::SFlag;
        let Some((dir, st)) = at::entry(root, dirs, file)? else {
            return Ok(false);
        };
        if !(at::is(&st, SFlag::S_IFREG) || at::is(&st, SFlag::S_IFLNK)) {
            return Ok(false);
        }
        match at::unlink(&dir, file) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            other => other.map(|()| true),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        check_real_dirs(root, dirs)?;
        let path = root.join(dirs.iter().collect::<PathBuf>()).join(file);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() || m.file_type().is_symlink() => {
                fs::remove_file(&path).map(|()| true)
            }
            _ => Ok(false),
        }
    }
}

/// Removes the directory `path` and everything in it (or a file or link there, itself) when
/// its name is one the tool gives and no directory between `base` and it is a link. Inside,
/// links are removed, never followed (std's `remove_dir_all` opens each level with
/// O_NOFOLLOW).
pub fn remove_tree(base: &Path, path: &Path, name: Name) -> io::Result<bool> {
    let (root, parts) = split(base, path)?;
    let (last, dirs) = parts.split_last().expect("split gives at least one part");
    if !last.to_str().is_some_and(|f| name.fits(f)) {
        return Ok(false);
    }
    #[cfg(target_os = "linux")]
    {
        use nix::sys::stat::SFlag;
        let Some((dir, st)) = at::entry(root, dirs, last)? else {
            return Ok(false);
        };
        if !at::is(&st, SFlag::S_IFDIR) {
            return remove_file(base, path, name);
        }
        // Through the open descriptor of its parent, so a link swapped in above it since the
        // walk is not followed; without /proc, through the path just checked.
        let target = match at::via(&dir) {
            Some(p) => p.join(last),
            None => root.join(dirs.iter().collect::<PathBuf>()).join(last),
        };
        fs::remove_dir_all(target).map(|()| true)
    }
    #[cfg(not(target_os = "linux"))]
    {
        check_real_dirs(root, dirs)?;
        let path = root.join(dirs.iter().collect::<PathBuf>()).join(last);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&path).map(|()| true),
            Ok(_) => remove_file(base, &path, name),
            Err(_) => Ok(false),
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn check_real_dirs(root: &Path, dirs: &[&std::ffi::OsStr]) -> io::Result<()> {
    let mut p = root.to_path_buf();
    for d in dirs {
        p.push(d);
        if !fs::symlink_metadata(&p)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", p.display()),
            ));
        }
    }
    Ok(())
}

/// An entry of a directory listed by [`list`]: its path and what it is itself (a link is
/// not followed).
pub struct Listed {
    pub path: PathBuf,
    pub name: String,
    pub meta: fs::Metadata,
}

/// The entries of the directory `dir` below `base`, when it and every directory between
/// `base` and it is a real directory (not a link); empty otherwise. Each entry's metadata is
/// its own (`symlink_metadata`).
pub fn list(base: &Path, dir: &Path) -> Vec<Listed> {
    let Some(parts) = below(base, dir) else {
        return Vec::new();
    };
    #[cfg(target_os = "linux")]
    let (read_from, _fd) = {
        let Ok(fd) = at::open_dir(base, &parts) else {
            return Vec::new();
        };
        match at::via(&fd) {
            Some(p) => (p, Some(fd)),
            None => (dir.to_path_buf(), Some(fd)),
        }
    };
    #[cfg(not(target_os = "linux"))]
    let read_from = {
        if check_real_dirs(base, &parts).is_err() {
            return Vec::new();
        }
        dir.to_path_buf()
    };
    let Ok(entries) = fs::read_dir(&read_from) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let meta = fs::symlink_metadata(read_from.join(&name)).ok()?;
            Some(Listed {
                path: dir.join(&name),
                name,
                meta,
            })
        })
        .collect()
}

/// Makes the directory `dir` below `base` (and those between), or checks the one there: each
/// must be a real directory, not a link. The error names the link and the remedy.
pub fn make_dir(base: &Path, dir: &Path) -> Result<()> {
    let Some(parts) = below(base, dir) else {
        bail!(
            "{} is not inside {}; report this at the tool's issue tracker",
            dir.display(),
            base.display()
        );
    };
    // The base is the user's choice (followed, made when missing).
    fs::create_dir_all(base)
        .map_err(|e| anyhow::Error::new(e).context(format!("cannot create {}", base.display())))?;
    let mut p = base.to_path_buf();
    for part in parts {
        p.push(part);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => bail!("{}", link_refused(&p)),
            Ok(m) => bail!(
                "{} is {}, where cargo-containerize keeps a directory of its own; move it away",
                p.display(),
                super::fs::kind_name(m.file_type())
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Err(e) = fs::create_dir(&p)
                    && !fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir())
                {
                    return Err(
                        anyhow::Error::new(e).context(format!("cannot create {}", p.display()))
                    );
                }
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("cannot read {}", p.display())));
            }
        }
    }
    Ok(())
}

/// The one-line refusal for a link where the tool keeps a directory of its own.
pub fn link_refused(p: &Path) -> String {
    format!(
        "{} is a symbolic link, where cargo-containerize keeps a directory of its own; it never writes or deletes through a link: remove the link (what it points to is left alone)",
        p.display()
    )
}

/// Renames `from` to `to`, replacing what is at `to` (a file the tool wrote before, or a link
/// there, itself: rename never follows the last part). For temps the tool made beside `to`.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)
}

/// Persists a temp file (made by [`super::lease`] or tempfile) at `to`, replacing what is
/// there (see [`rename`]).
pub fn persist(tmp: tempfile::NamedTempFile, to: &Path) -> io::Result<fs::File> {
    tmp.persist(to).map_err(|e| e.error)
}

/// Renames `from` to `to` unless `to` exists; false if it does.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
        match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => return Ok(true),
            Err(nix::errno::Errno::EEXIST) => return Ok(false),
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Without RENAME_NOREPLACE: a directory renamed onto a non-empty one fails anyway; onto an
    // empty one made meanwhile it replaces nothing of value.
    if fs::symlink_metadata(to).is_ok() {
        return Ok(false);
    }
    match fs::rename(from, to) {
        Ok(()) => Ok(true),
        Err(_) if fs::symlink_metadata(to).is_ok() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Swaps `new` and `target` in one step where the system can (Linux `renameat2`). Returns
/// false when the caller must fall back.
pub fn exchange(new: &Path, target: &Path) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
        if fs::symlink_metadata(target).is_err() {
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
            Err(e) => Err(e.into()),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (new, target);
        Ok(false)
    }
}

// ---------------------------------------------------------------------------------------------
// Trust: a directory of the user's cache is used only when no one else can write it.

/// Why a path is not private to the user, if it is not.
fn not_private(p: &Path, meta: &fs::Metadata) -> Option<String> {
    let me = nix_euid();
    if meta.file_type().is_symlink() {
        return Some("a symbolic link".into());
    }
    if meta.uid() != me {
        return Some(format!(
            "owned by uid {}, not by you (uid {me})",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o002 != 0 {
        return Some(format!("writable by everyone (mode {mode:04o})"));
    }
    if mode & 0o020 != 0 && !group_is_private(meta.gid()) {
        return Some(format!(
            "writable by its group {} (mode {mode:04o})",
            meta.gid()
        ));
    }
    let _ = p;
    None
}

/// Whether the group `gid` is the user's own private group (their primary group, with no
/// other listed members): where the umask is 002 (Debian and Ubuntu give every user such a
/// group), everything cargo and the tool make is group-writable, and no one else is in it.
/// Other users whose primary group it is cannot be listed without reading every account;
/// systems that share a primary group between users are rare.
fn group_is_private(gid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        use nix::unistd::{Gid, Group, User, getegid, geteuid};
        if getegid().as_raw() != gid {
            return false;
        }
        let me = User::from_uid(geteuid()).ok().flatten().map(|u| u.name);
        match Group::from_gid(Gid::from_raw(gid)) {
            Ok(Some(g)) => g.mem.iter().all(|m| Some(m) == me.as_ref()),
            _ => false,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = gid;
        false
    }
}

pub(crate) fn nix_euid() -> u32 {
    #[cfg(target_os = "linux")]
    {
        nix::unistd::geteuid().as_raw()
    }
    #[cfg(not(target_os = "linux"))]
    {
        fs::metadata(std::env::temp_dir()).map_or(0, |m| m.uid())
    }
}

/// Checks that `root` (the cache root) and every directory and file from it down to `path`
/// is owned by the user and writable by no one else, none a link: what another local user
/// could have planted or can still change is not trusted. The error names the first path
/// that fails, why, and the fix. A path that does not exist yet passes (it will be made by
/// this user).
pub fn check_private(root: &Path, path: &Path) -> Result<()> {
    let parts = below(root, path).unwrap_or_default();
    let mut p = root.to_path_buf();
    let check = |p: &Path| -> Result<bool> {
        let meta = match fs::symlink_metadata(p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("cannot read {}", p.display())));
            }
        };
        if let Some(why) = not_private(p, &meta) {
            bail!(
                "refusing to use the cache at {}: {} is {why}, so another user could plant what the build runs or ships; make it yours and private (chown $(id -u) and chmod go-w it), or set {} to a directory only you can write",
                root.display(),
                p.display(),
                super::CACHE_VAR
            );
        }
        Ok(true)
    };
    if !check(&p)? {
        return Ok(());
    }
    for part in parts {
        p.push(part);
        if !check(&p)? {
            return Ok(());
        }
    }
    Ok(())
}

/// [`check_private`] for `path` and, when it is a directory, everything in it (links are
/// not followed: a link inside is judged itself). For a cache entry or a helper crate, where
/// a file another user left from a time the cache was open to them must not be used.
pub fn check_private_tree(root: &Path, path: &Path) -> Result<()> {
    check_private(root, path)?;
    if !fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    for entry in walkdir::WalkDir::new(path).min_depth(1) {
        let entry = entry.map_err(|e| anyhow::anyhow!("cannot list {}: {e}", path.display()))?;
        let meta = entry
            .metadata()
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", entry.path().display()))?;
        // A link's own mode says nothing (it is 0777 everywhere): its owner does.
        let foreign = if meta.file_type().is_symlink() {
            (meta.uid() != nix_euid())
                .then(|| format!("a symbolic link owned by uid {}", meta.uid()))
        } else {
            not_private(entry.path(), &meta)
        };
        if let Some(why) = foreign {
            bail!(
                "refusing to use the cache at {}: {} is {why}, so another user could plant what the build runs or ships; make it yours and private (chown -R $(id -u) and chmod -R go-w {}), or set {} to a directory only you can write",
                root.display(),
                entry.path().display(),
                path.display(),
                super::CACHE_VAR
            );
        }
    }
    Ok(())
}

/// Makes `dir` (and those between `root` and it), each private to the user (mode 0700 when
/// made here), then checks the whole way with [`check_private`].
pub fn make_private_dir(root: &Path, dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    // What is there already is judged before anything is made inside it.
    check_private(root, dir)?;
    if !fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| super::atomic::disk_full_remedy(e.into(), dir))
            .map_err(|e| e.context(format!("cannot create {}", dir.display())))?;
    }
    check_private(root, dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn names_the_tool_does_not_give_are_left_alone() {
        assert!(Name::Digest.fits(&"a".repeat(64)));
        assert!(Name::Digest.fits(&format!("blob-{}", "0f".repeat(32))));
        assert!(!Name::Digest.fits("notes.txt"));
        assert!(!Name::Digest.fits("abc"));
        assert!(Name::Temp(".x.tmp-").fits(".x.tmp-1-2-abc"));
        assert!(!Name::Temp(".x.tmp-").fits("x.tmp-1"));
        let dir = tempfile::tempdir().unwrap();
        let notes = dir.path().join("notes.txt");
        fs::write(&notes, "mine").unwrap();
        assert!(!remove_file(dir.path(), &notes, Name::Digest).unwrap());
        assert!(notes.exists());
    }

    #[test]
    fn nothing_is_removed_through_a_linked_directory() {
        let base = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let victim = elsewhere.path().join("a".repeat(64));
        fs::write(&victim, "theirs").unwrap();
        fs::create_dir(elsewhere.path().join("b".repeat(64))).unwrap();
        fs::write(elsewhere.path().join("b".repeat(64)).join("f"), "x").unwrap();
        symlink(elsewhere.path(), base.path().join("stat")).unwrap();
        let through = base.path().join("stat").join("a".repeat(64));
        assert!(remove_file(base.path(), &through, Name::Digest).is_err());
        let tree = base.path().join("stat").join("b".repeat(64));
        assert!(remove_tree(base.path(), &tree, Name::Digest).is_err());
        assert!(list(base.path(), &base.path().join("stat")).is_empty());
        assert_eq!(fs::read(&victim).unwrap(), b"theirs");
        assert!(elsewhere.path().join("b".repeat(64)).join("f").exists());
        // The link itself, named as the tool names its files, is removed; its target stays.
        let link = base.path().join("c".repeat(64));
        symlink(&victim, &link).unwrap();
        assert!(remove_file(base.path(), &link, Name::Digest).unwrap());
        assert!(fs::symlink_metadata(&link).is_err() && victim.exists());
        // A real directory on the way: removed.
        fs::create_dir(base.path().join("real")).unwrap();
        let ours = base.path().join("real").join("d".repeat(64));
        fs::write(&ours, "ours").unwrap();
        assert_eq!(list(base.path(), &base.path().join("real")).len(), 1);
        assert!(remove_file(base.path(), &ours, Name::Digest).unwrap());
        assert!(!ours.exists());
    }

    #[test]
    fn make_dir_refuses_a_link_on_the_way() {
        let base = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        symlink(elsewhere.path(), base.path().join("cache")).unwrap();
        let e = make_dir(base.path(), &base.path().join("cache/stat"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is a symbolic link") && e.contains("remove the link"),
            "{e}"
        );
        assert!(!elsewhere.path().join("stat").exists());
        make_dir(base.path(), &base.path().join("real/stat")).unwrap();
        assert!(base.path().join("real/stat").is_dir());
    }

    #[test]
    fn a_cache_others_can_write_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let entry = root.path().join("mimalloc/x");
        make_private_dir(root.path(), &entry).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root.path().join("mimalloc")), 0o700);
        fs::set_permissions(
            root.path().join("mimalloc"),
            fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        let e = check_private(root.path(), &entry).unwrap_err().to_string();
        assert!(
            e.contains("mimalloc is writable by everyone (mode 0777)")
                && e.contains("chmod go-w")
                && e.contains("CARGO_CONTAINERIZE_CACHE"),
            "{e}"
        );
    }

    #[test]
    fn a_group_writable_directory_is_trusted_only_for_the_users_private_group() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("openssl");
        make_private_dir(root.path(), &dir).unwrap();
        // umask 002 with a group of one's own: what cargo makes is group-writable.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o775)).unwrap();
        let mine = nix::unistd::getegid().as_raw();
        std::os::unix::fs::chown(&dir, None, Some(mine)).unwrap();
        if group_is_private(mine) {
            check_private(root.path(), &dir).unwrap();
        }
        // A group others are in (or that is not the user's): not trusted.
        let other = if mine == 65534 { 0 } else { 65534 };
        std::os::unix::fs::chown(&dir, None, Some(other)).unwrap();
        let e = check_private(root.path(), &dir).unwrap_err().to_string();
        assert!(e.contains(&format!("writable by its group {other}")), "{e}");
    }

    /// Every removal and rename over a path in src/ goes through this module: no other file
    /// calls std's removal or rename functions outside its tests.
    #[test]
    fn no_removal_outside_this_module() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let forbidden = [
            "fs::remove_file(",
            "fs::remove_dir_all(",
            "fs::remove_dir(",
            "fs::rename(",
            "renameat2(",
            ".persist(",
            "persist_noclobber(",
        ];
        let mut strays = Vec::new();
        for entry in walkdir::WalkDir::new(&src) {
            let entry = entry.unwrap();
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("util/owned.rs") {
                continue;
            }
            let text = fs::read_to_string(path).unwrap();
            // Tests may make and break what they like.
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            for (n, line) in code.lines().enumerate() {
                let line = line.trim_start();
                if line.starts_with("//") {
                    continue;
                }
                for f in forbidden {
                    if line.contains(f) {
                        strays.push(format!("{}:{}: {line}", path.display(), n + 1));
                    }
                }
            }
        }
        assert!(
            strays.is_empty(),
            "remove or replace through util::owned:\n{}",
            strays.join("\n")
        );
    }
}
