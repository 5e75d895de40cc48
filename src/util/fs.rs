//! Reading files safely: only regular files are opened, so a FIFO or a device named where a
//! file belongs fails at once instead of blocking or reading without end. The settings check
//! `include`s with it, the layer writer and the ELF check open files through it.

use crate::util::digest::Digest;
use anyhow::{Context, Result};
use std::fs::File;
use std::path::Path;

/// The sha256 of a file's bytes in hex ([`Digest::sha256_of_file`]'s hex digits).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    Ok(Digest::sha256_of_file(path)?.hex().to_string())
}

/// What kind of file this is, for messages about files that are not regular.
pub fn kind_name(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_file() {
        "a regular file"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// O_NONBLOCK | O_NOCTTY where the flags are at hand (nix is a Linux-only dependency); elsewhere
/// the stat before the open is the guard.
#[cfg(target_os = "linux")]
const NONBLOCKING: i32 = nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY;
#[cfg(not(target_os = "linux"))]
const NONBLOCKING: i32 = 0;

/// Opens `path` for reading with O_NONBLOCK | O_NOCTTY (Linux): a FIFO or a terminal swapped
/// in for the file after its type was read cannot block the open. Callers check the type on
/// the descriptor.
pub fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(NONBLOCKING)
        .open(path)
}

/// Opens a regular file for reading, refusing anything else before it is opened: opening a FIFO
/// blocks until a writer comes, and a device reads as whatever it gives. The type is checked
/// without opening (stat), then the file is opened with O_NONBLOCK (so that a file swapped for
/// a FIFO in between cannot block either) and checked again on the open descriptor.
pub fn open_regular(path: &Path) -> Result<File> {
    let not_regular = |ft: std::fs::FileType| {
        anyhow::anyhow!(
            "{} is {}, not a regular file; give the path of a regular file",
            path.display(),
            kind_name(ft)
        )
    };
    let meta = std::fs::metadata(path).with_context(|| {
        format!(
            "cannot read {}; check the path and its permissions",
            path.display()
        )
    })?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    let file = open_nonblocking(path).with_context(|| {
        format!(
            "cannot read {}; check the path and its permissions",
            path.display()
        )
    })?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        return Err(not_regular(meta.file_type()));
    }
    Ok(file)
}
