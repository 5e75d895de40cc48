//! The base files every image gets, the minimum distroless/static provides: users and groups
//! (root, nonroot 65532, nobody 65534), their home directories, a world-writable /tmp and an
//! nsswitch.conf so that name lookups consult /etc/hosts before DNS.

use super::{Entry, EntryKind, LayerContent};

const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n\
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";

const GROUP: &str = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n";

const NSSWITCH: &str = "hosts: files dns\n";

/// The directory entry the base layer has at `path`, if any.
pub fn directory(path: &str) -> Option<Entry> {
    content()
        .entries
        .into_iter()
        .find(|e| e.path == path && matches!(e.kind, EntryKind::Dir))
}

pub fn content() -> LayerContent {
    LayerContent {
        what: super::LayerKind::BaseFiles,
        entries: vec![
            Entry::bytes("/etc/passwd", PASSWD.as_bytes(), 0o644),
            Entry::bytes("/etc/group", GROUP.as_bytes(), 0o644),
            Entry::bytes("/etc/nsswitch.conf", NSSWITCH.as_bytes(), 0o644),
            Entry::dir("/root", 0o700),
            Entry::dir("/home/nonroot", 0o700).owned(65532, 65532),
            Entry::dir("/tmp", 0o1777),
        ],
        mtime: 0,
    }
}
