//! What the image's file system holds, before any of it is a layer: entries with explicit
//! path, kind, mode and owner, and the base files every image has. Plain values below the
//! stages: the settings check which paths the base files take, the layers stage writes them
//! as tars, the Dockerfile renderer writes them into the build context.

pub mod base;
pub mod include;

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub enum Source {
    Static(&'static [u8]),
    Owned(Vec<u8>),
    Path(PathBuf),
}

#[derive(Debug, Clone)]
pub enum EntryKind {
    File(Source),
    Dir,
    Symlink(String),
    /// A hard link to an earlier entry of the same layer (an absolute image path).
    Hardlink(String),
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// Absolute path in the image.
    pub path: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
}

impl Entry {
    pub fn file(path: &str, source: Source, mode: u32) -> Entry {
        Entry::new(path, EntryKind::File(source), mode)
    }
    pub fn bytes(path: &str, bytes: &'static [u8], mode: u32) -> Entry {
        Entry::file(path, Source::Static(bytes), mode)
    }
    pub fn dir(path: &str, mode: u32) -> Entry {
        Entry::new(path, EntryKind::Dir, mode)
    }
    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry::new(path, EntryKind::Symlink(target.into()), 0o777)
    }
    pub fn hardlink(path: &str, target: &str, mode: u32) -> Entry {
        Entry::new(path, EntryKind::Hardlink(target.into()), mode)
    }
    pub fn owned(mut self, uid: u64, gid: u64) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }
    fn new(path: &str, kind: EntryKind, mode: u32) -> Entry {
        Entry {
            path: path.trim_end_matches('/').to_string(),
            kind,
            mode,
            uid: 0,
            gid: 0,
        }
    }
    /// The name inside the tar: relative, directories with a trailing slash.
    pub(crate) fn tar_name(&self) -> String {
        let rel = self.path.trim_start_matches('/');
        match self.kind {
            EntryKind::Dir => format!("{rel}/"),
            _ => rel.to_string(),
        }
    }
}

/// What a layer holds. Shown (and serialized, in the JSON output, the layer cache and the
/// history comment) as the text it always had: "base files", "ca certificates", …
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LayerKind {
    BaseFiles,
    CaCerts,
    Tzdata,
    /// `include` files and the generated /etc/localtime and working directory.
    Files,
    Binary,
    /// Anything else, by its description (the Dockerfile's generated files, a base image's).
    Other(String),
}

impl LayerKind {
    pub fn as_str(&self) -> &str {
        match self {
            LayerKind::BaseFiles => "base files",
            LayerKind::CaCerts => "ca certificates",
            LayerKind::Tzdata => "tzdata",
            LayerKind::Files => "files",
            LayerKind::Binary => "binary",
            LayerKind::Other(s) => s,
        }
    }
}

impl From<&str> for LayerKind {
    fn from(s: &str) -> LayerKind {
        [
            LayerKind::BaseFiles,
            LayerKind::CaCerts,
            LayerKind::Tzdata,
            LayerKind::Files,
            LayerKind::Binary,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .unwrap_or_else(|| LayerKind::Other(s.to_string()))
    }
}

impl std::fmt::Display for LayerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for LayerKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for LayerKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<LayerKind, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(LayerKind::from(&*s))
    }
}

/// What goes into one layer.
#[derive(Debug, Clone)]
pub struct LayerContent {
    pub what: LayerKind,
    pub entries: Vec<Entry>,
    /// The mtime of every entry.
    pub mtime: u64,
}
