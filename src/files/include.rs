//! An `include` setting's files: the walk from its source in the package to the entries it
//! puts into the image, each confined to the package root. The settings check calls it once,
//! and the layers, the Dockerfile and the SBOM read what it found.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::{Component, Path, PathBuf};

/// One file or directory to copy into the image, already confined to the package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncludeFile {
    /// Absolute path on the host, inside the package root.
    pub src: PathBuf,
    /// Absolute path in the image.
    pub dest: String,
    pub is_dir: bool,
    /// 0755 for directories and executables, else 0644: the host's umask never leaks in.
    pub mode: u32,
}

/// A directory's entries with their paths in the image, sorted by name. (Hand-written, not
/// walkdir: the include walk confines and checks each entry on its own, following symbolic
/// links with a loop check and messages that name the include.)
fn children(dir: &Path, dest: &str) -> Result<Vec<(PathBuf, String)>> {
    let mut children: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .collect::<std::io::Result<Vec<_>>>()?;
    children.sort_by_key(|c| c.file_name());
    Ok(children
        .into_iter()
        .map(|c| {
            let name = c.file_name().to_string_lossy().to_string();
            (c.path(), format!("{dest}/{name}"))
        })
        .collect())
}

/// 0755 for an executable file, else 0644: the host's umask never leaks in.
fn file_mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

/// Expands one `include` into files and directories, each confined to the package root.
///
/// `check_dest` checks each path in the image the walk makes (the rules of an image path,
/// which the settings own: `ImagePath`), so a file name that cannot go into the image is
/// refused here, naming the include.
pub fn expand(
    root: &Path,
    src: &str,
    dest: &str,
    check_dest: impl Fn(&str) -> Result<(), String>,
) -> Result<Vec<IncludeFile>> {
    let real_root = root.canonicalize().context("resolving the package root")?;
    let top = confine(root, src)?;
    let mut out = Vec::new();
    // "/" (the image root) is the empty prefix of its children's paths.
    let mut stack = vec![(top, dest.trim_end_matches('/').to_string())];
    let mut visited = std::collections::BTreeSet::new();
    while let Some((path, dest)) = stack.pop() {
        // The paths of a directory's files come from their names: the same rules as a `dest`.
        if !dest.is_empty()
            && let Err(e) = check_dest(&dest)
        {
            bail!(
                "include `{src}` holds {}, which cannot go into the image: {e}",
                path.display()
            );
        }
        let real = path
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", path.display()))?;
        if !real.starts_with(&real_root) {
            bail!(
                "include `{src}` contains {} which leads outside the package (to {}); copy the file into the package instead",
                path.display(),
                real.display()
            );
        }
        let meta =
            std::fs::metadata(&real).with_context(|| format!("cannot read {}", real.display()))?;
        if meta.is_dir() {
            if !visited.insert(real.clone()) {
                bail!(
                    "include `{src}` loops: {} leads back to {}; remove the symlink or include the directories separately",
                    path.display(),
                    real.display()
                );
            }
            // dest "/" is the image root, which exists already.
            if !dest.is_empty() {
                out.push(IncludeFile {
                    src: real.clone(),
                    dest: dest.clone(),
                    is_dir: true,
                    mode: 0o755,
                });
            }
            // Reversed onto the stack: taken off in name order.
            stack.extend(children(&path, &dest)?.into_iter().rev());
        } else if !meta.is_file() {
            // Never opened: opening a FIFO blocks until a writer comes, and a device would be
            // packed as whatever reading it gives.
            bail!(
                "include `{src}` holds {}, which is {}: only regular files and directories can be included; remove it from the package or point `src` elsewhere",
                path.display(),
                crate::util::fs::kind_name(meta.file_type())
            );
        } else {
            // Only a directory can go at "/" (the image root, which exists already).
            if dest.is_empty() {
                let name = real.file_name().unwrap_or_default().to_string_lossy();
                bail!(
                    "include `{src}` is a file, so its dest cannot be the image root `/`; give its path in the image, e.g. dest = \"/{name}\""
                );
            }
            out.push(IncludeFile {
                src: real,
                dest,
                is_dir: false,
                mode: file_mode(&meta),
            });
        }
    }
    Ok(out)
}

/// Confines an include's source to the package root: no `..`, no absolute path, and no
/// symlink that leads outside.
fn confine(root: &Path, src: &str) -> Result<PathBuf> {
    let rel = Path::new(src);
    if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
        bail!(
            "include src `{src}` escapes the package; give a path inside {} without `..`",
            root.display()
        );
    }
    let joined = root.join(rel);
    let real = joined.canonicalize().with_context(|| {
        format!("include src `{src}` does not exist in {}; fix the path in [package.metadata.containerize]", root.display())
    })?;
    let real_root = root.canonicalize().context("resolving the package root")?;
    if !real.starts_with(&real_root) {
        bail!(
            "include src `{src}` leads outside the package (to {}) through a symlink; copy the file into the package instead",
            real.display()
        );
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Caught by the checks of fuzz/fuzz_targets/settings.rs (on a hand-written input; the
    /// fuzzer had not reached it in 3 minutes): `include = [{ src = "FILE", dest = "/" }]`
    /// resolved to a file with an empty image path, refused only later by the layer writer
    /// with a message that named neither the include nor the fix.
    #[test]
    fn a_file_included_at_the_image_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.toml"), "").unwrap();
        let check = |_: &str| Ok(());
        let err = expand(dir.path(), "app.toml", "/", check)
            .unwrap_err()
            .to_string();
        assert!(err.contains("dest = \"/app.toml\""), "{err}");
        let ok = expand(dir.path(), "app.toml", "/etc/app.toml", check).unwrap();
        assert_eq!(ok[0].dest, "/etc/app.toml");
    }
}
