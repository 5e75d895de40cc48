//! The image's root files (users and groups, nsswitch.conf, CA bundle, tzdata, /etc/localtime)
//! as a directory in the Docker build context.
//!
//! A Dockerfile cannot embed a 200 KiB CA bundle or 600 zone files, and fetching them from a
//! distribution at build time would give other bytes than `build` does. So `cargo containerize
//! dockerfile` writes exactly the entries `build` puts into its layers (the same functions make
//! them) into `.containerize/<package>/rootfs`, and the Dockerfile copies that directory; only
//! modes, owners and empty directories, which git does not keep, are fixed in the Dockerfile.

use crate::files::LayerKind;
use crate::layers::{self, Entry, EntryKind, LayerContent, Source};
use crate::metadata::ImageSpec;
use crate::util::atomic;
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// The build-context-relative directory of a package's root files.
pub fn dir_for(package: &str) -> String {
    format!(".containerize/{package}/rootfs")
}

/// What `build` puts in the image apart from the binary and the `include`s (which the
/// Dockerfile COPYs from the build context itself).
///
/// On a base (`from`), the users and groups, nsswitch.conf, /tmp and the homes are the
/// base's: the Dockerfile cannot look into the base to leave out only the files it has (as
/// `build` does), and copying ours over its own would replace its users; the image runs as
/// the numeric `user` (or the base's USER), which needs no passwd entry.
fn contents(spec: &ImageSpec) -> Result<Vec<LayerContent>> {
    let mut out = layers::shared_contents(spec)?;
    if !spec.layers.from.is_scratch() {
        out.retain(|c| c.what != LayerKind::BaseFiles);
    }
    let generated = layers::generated_entries(spec)?;
    if !generated.is_empty() {
        let mut what = Vec::new();
        if spec.layers.timezone.is_some() {
            what.push("/etc/localtime");
        }
        if generated
            .iter()
            .any(|e| Some(e.path.as_str()) == spec.config.workdir.as_deref())
        {
            what.push("the working directory");
        }
        out.push(LayerContent {
            what: crate::files::LayerKind::Other(what.join(", ")),
            entries: generated,
            mtime: 0,
        });
    }
    Ok(out)
}

fn describe(what: &LayerKind) -> String {
    match what {
        LayerKind::BaseFiles => "users and groups, nsswitch.conf".into(),
        LayerKind::CaCerts => "the CA bundle".into(),
        LayerKind::Tzdata => "the time zone database".into(),
        other => other.to_string(),
    }
}

/// The files every image gets, besides the binary and `include`: users and groups,
/// nsswitch.conf, the CA bundle, the time zone database and /etc/localtime.
#[derive(Debug, Clone, Serialize)]
pub struct RootfsContext {
    /// Context-relative directory that `cargo containerize dockerfile` fills with these files
    /// (the same bytes `build` puts in its layers): `.containerize/<package>/rootfs`.
    pub dir: String,
    /// Directories git cannot carry (they are empty) or that need a special mode or owner,
    /// e.g. `/tmp` (1777), `/root` (0700), `/home/nonroot` (0700, 65532:65532).
    pub dirs: Vec<PathMode>,
    /// What the Dockerfile sets after making every directory 0755 and every file 0644, root's:
    /// `dirs`, files of other modes or owners, and executable `include` files.
    pub fixups: Vec<PathMode>,
    /// What the files hold, for comments: e.g. `["users and groups", "CA certificates"]`.
    pub holds: Vec<String>,
}

/// A path in the image with its mode (octal text) and owner.
#[derive(Debug, Clone, Serialize)]
pub struct PathMode {
    pub path: String,
    pub mode: String,
    pub uid: u64,
    pub gid: u64,
}

pub(crate) fn octal(mode: u32) -> String {
    format!("{mode:04o}")
}

/// What templates need to know about the root files.
pub fn context(spec: &ImageSpec, package: &str) -> Result<RootfsContext> {
    let contents = contents(spec)?;
    let entries: Vec<&Entry> = contents.iter().flat_map(|c| &c.entries).collect();
    let has_children = |dir: &str| {
        let prefix = format!("{dir}/");
        entries.iter().any(|e| e.path.starts_with(&prefix))
    };
    let mut dirs = Vec::new();
    let mut fixups = Vec::new();
    for e in &entries {
        let pm = PathMode {
            path: e.path.clone(),
            mode: octal(e.mode),
            uid: e.uid,
            gid: e.gid,
        };
        match e.kind {
            EntryKind::Dir => {
                if e.mode != 0o755 || e.uid != 0 || e.gid != 0 || !has_children(&e.path) {
                    dirs.push(pm.clone());
                    fixups.push(pm);
                }
            }
            EntryKind::File(_) | EntryKind::Hardlink(_) => {
                if e.mode != 0o644 || e.uid != 0 || e.gid != 0 {
                    fixups.push(pm);
                }
            }
            EntryKind::Symlink(_) => {}
        }
    }
    for inc in spec.layers.includes.iter().filter(|i| i.is_dir) {
        dirs.push(PathMode {
            path: inc.dest.clone(),
            mode: octal(inc.mode),
            uid: 0,
            gid: 0,
        });
    }
    for inc in spec
        .layers
        .includes
        .iter()
        .filter(|i| !i.is_dir && i.mode != 0o644)
    {
        fixups.push(PathMode {
            path: inc.dest.clone(),
            mode: octal(inc.mode),
            uid: 0,
            gid: 0,
        });
    }
    dirs.sort_by(|a, b| a.path.cmp(&b.path));
    dirs.dedup_by(|a, b| a.path == b.path);
    fixups.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(RootfsContext {
        dir: dir_for(package),
        dirs,
        fixups,
        holds: contents.iter().map(|c| describe(&c.what)).collect(),
    })
}

/// What a path in the tree is, for comparing an existing directory with the wanted one.
#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    /// A FIFO, socket or device found there (never read: a FIFO would block); never wanted.
    Other,
}

fn source_bytes(s: &Source) -> Result<Vec<u8>> {
    Ok(match s {
        Source::Static(b) => b.to_vec(),
        Source::Owned(b) => b.clone(),
        Source::Path(p) => fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
    })
}

/// The wanted tree: relative path → node. Hard links become files with the target's bytes.
fn wanted(spec: &ImageSpec) -> Result<BTreeMap<String, Node>> {
    let mut tree = BTreeMap::new();
    for content in contents(spec)? {
        for e in &content.entries {
            let rel = e.path.trim_start_matches('/').to_string();
            let parts: Vec<&str> = rel.split('/').collect();
            for i in 1..parts.len() {
                tree.entry(parts[..i].join("/")).or_insert(Node::Dir);
            }
            let node = match &e.kind {
                EntryKind::Dir => Node::Dir,
                EntryKind::File(src) => Node::File(source_bytes(src)?),
                EntryKind::Symlink(t) => Node::Symlink(t.clone()),
                EntryKind::Hardlink(t) => match tree.get(t.trim_start_matches('/')) {
                    Some(Node::File(b)) => Node::File(b.clone()),
                    _ => anyhow::bail!("hard link {} to {t}, which is not a file", e.path),
                },
            };
            tree.insert(rel, node);
        }
    }
    Ok(tree)
}

fn read_tree(base: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) -> Result<()> {
    for item in walkdir::WalkDir::new(dir).min_depth(1) {
        let item = item.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = item.path();
        let rel = path
            .strip_prefix(base)
            .expect("below base")
            .display()
            .to_string();
        let kind = item.file_type();
        let node = if kind.is_symlink() {
            Node::Symlink(fs::read_link(path)?.display().to_string())
        } else if kind.is_dir() {
            Node::Dir
        } else if kind.is_file() {
            Node::File(fs::read(path)?)
        } else {
            Node::Other
        };
        out.insert(rel, node);
    }
    Ok(())
}

/// The name of the list of what the tool wrote into a rootfs directory, beside it
/// (`.containerize/<package>/rootfs.written.json`; not inside it, which the Dockerfile copies).
const WRITTEN: &str = "rootfs.written.json";

/// What the list records of each path: "dir", "file <sha256>" or "symlink <target>".
fn record(node: &Node) -> String {
    match node {
        Node::Dir => "dir".into(),
        Node::File(bytes) => format!(
            "file {}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
        ),
        Node::Symlink(t) => format!("symlink {t}"),
        Node::Other => "other".into(),
    }
}

/// The root files checked against what is at their directory, ready to be written.
pub struct Planned {
    target: std::path::PathBuf,
    written: std::path::PathBuf,
    tree: BTreeMap<String, Node>,
    /// The directory already holds exactly these files.
    unchanged: bool,
}

/// Checks that `target` (below the workspace `ws`) may receive the root files: no link on the
/// way from `ws` (`.containerize`, `.containerize/<package>`, `rootfs`: the tool never writes
/// or deletes through one, not even with `--force`), and every file already in it either one
/// the tool wrote there (its list beside the directory says so, with the same bytes) or one it
/// would write now. Anything else (a file the user put there, or changed) is refused with
/// one line naming it and `--force`, which replaces the directory whole. Writes nothing.
pub fn plan(spec: &ImageSpec, ws: &Path, target: &Path, force: bool) -> Result<Planned> {
    use crate::util::owned;
    let tree = wanted(spec)?;
    let parent = target
        .parent()
        .context("the rootfs directory has a parent")?;
    let written = parent.join(WRITTEN);
    // The directories on the way: real ones, or none yet.
    let mut p = ws.to_path_buf();
    for part in target.strip_prefix(ws).unwrap_or(target).components() {
        p.push(part);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => anyhow::bail!("{}", owned::link_refused(&p)),
            Ok(m) if !m.is_dir() => anyhow::bail!(
                "{} is {}, where cargo-containerize writes the image's root files into a directory; move it away",
                p.display(),
                crate::util::fs::kind_name(m.file_type())
            ),
            _ => {}
        }
    }
    if fs::symlink_metadata(&written).is_ok_and(|m| !m.is_file()) {
        anyhow::bail!(
            "{} is not a regular file; cargo-containerize keeps its list of the root files it wrote there: move it away",
            written.display()
        );
    }
    let mut planned = Planned {
        target: target.to_path_buf(),
        written,
        tree,
        unchanged: false,
    };
    if !target.exists() {
        return Ok(planned);
    }
    let mut have = BTreeMap::new();
    read_tree(target, target, &mut have)?;
    if have == planned.tree {
        planned.unchanged = true;
        return Ok(planned);
    }
    if force {
        return Ok(planned);
    }
    let recorded: BTreeMap<String, String> = fs::read(&planned.written)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let foreign: Vec<&String> = have
        .iter()
        .filter(|(rel, node)| {
            planned.tree.get(*rel) != Some(*node)
                && recorded.get(*rel).map(String::as_str) != Some(record(node).as_str())
        })
        .map(|(rel, _)| rel)
        .collect();
    if let Some(first) = foreign.first() {
        anyhow::bail!(
            "{} was not written by cargo-containerize (or was changed since){}; the root files are generated there: move it out of {}, or pass --force to replace that directory with the generated files",
            target.join(first).display(),
            match foreign.len() - 1 {
                0 => String::new(),
                n => format!(", nor {n} more beside it"),
            },
            target.display()
        );
    }
    Ok(planned)
}

/// Writes the planned root files (replacing what [`plan`] found there, all at once) and the
/// list of what was written beside them. Returns false, and touches nothing but a missing
/// list, when the directory already holds exactly these files.
pub fn write(planned: &Planned) -> Result<bool> {
    let list: BTreeMap<&String, String> = planned
        .tree
        .iter()
        .map(|(rel, node)| (rel, record(node)))
        .collect();
    let list = serde_json::to_vec_pretty(&list)?;
    let write_list = || {
        if fs::read(&planned.written).is_ok_and(|old| old == list) {
            return Ok(());
        }
        atomic::write_file(&planned.written, |w| {
            use std::io::Write;
            Ok(w.write_all(&list)?)
        })
    };
    if planned.unchanged {
        write_list()?;
        return Ok(false);
    }
    let tree = &planned.tree;
    atomic::write_dir(&planned.target, |tmp| {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(tmp, fs::Permissions::from_mode(0o755))?;
        for (rel, node) in tree {
            let path = tmp.join(rel);
            match node {
                Node::Dir => fs::create_dir_all(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
                Node::File(bytes) => {
                    fs::write(&path, bytes)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
                }
                Node::Symlink(t) => std::os::unix::fs::symlink(t, &path)
                    .with_context(|| format!("cannot create the symlink {}", path.display()))?,
                Node::Other => {}
            }
        }
        Ok(())
    })?;
    write_list()?;
    Ok(true)
}
