//! The binary's own dependency list, embedded at link time in cargo-auditable's format, so that
//! scanners (syft, trivy, grype, `cargo audit bin`) enumerate the crates from the binary itself.
//!
//! From the target's [`DepGraph`] comes a `VersionInfo` (auditable-serde's types: packages
//! sorted by name, version and source, the root flagged, dependencies as indices, proc-macros
//! and build-dependencies marked `build`), serialized as JSON and zlib-compressed. It goes into
//! a relocatable ELF object (written with the `object` crate) as a non-allocated `.dep-v0`
//! section holding a symbol, `AUDITABLE_VERSION_INFO`; the binary's link gets the object and an
//! undefined reference to that symbol, so no `--gc-sections` can drop it. This is what
//! cargo-auditable's rustc wrapper does, without the user installing it.
//!
//! The object is stored content-addressed (its name is the sha256 of its bytes) under
//! `<target-dir>/containerize/auditable/<triple>/`: cargo fingerprints the `cargo rustc`
//! arguments that name it, so the binary is relinked exactly when the list changes.

use crate::metadata::graph::{DepGraph, Kind, Source};
use crate::platform::Platform;
use anyhow::{Context, Result};
use auditable_serde::{DependencyKind, Package, VersionInfo};
use object::write::{Object, Symbol, SymbolSection};
use object::{
    Architecture, BinaryFormat, Endianness, SectionFlags, SectionKind, SymbolFlags, SymbolKind,
    SymbolScope,
};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The section scanners read the list from.
pub const SECTION: &str = ".dep-v0";
/// The symbol in [`SECTION`] the link is told to keep.
pub const SYMBOL: &str = "AUDITABLE_VERSION_INFO";

/// The list in auditable-serde's types, from the graph of one target.
pub fn version_info(graph: &DepGraph) -> Result<VersionInfo> {
    // The format lists packages in a stable order (cargo-auditable sorts by name, then
    // version, then source); the graph has the root first, so the indices are remapped.
    let mut order: Vec<usize> = (0..graph.packages.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&graph.packages[a], &graph.packages[b]);
        (&a.name, semver(&a.version).ok(), &a.source).cmp(&(
            &b.name,
            semver(&b.version).ok(),
            &b.source,
        ))
    });
    let mut new_index = vec![0; order.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new;
    }
    let packages = order
        .iter()
        .map(|&old| {
            let p = &graph.packages[old];
            let mut dependencies: Vec<usize> = p.deps.iter().map(|d| new_index[d.index]).collect();
            dependencies.sort_unstable();
            dependencies.dedup();
            Ok(Package {
                name: p.name.clone(),
                version: semver(&p.version)
                    .with_context(|| format!("version {} of {}", p.version, p.name))?,
                // A path dependency is "local": no path of the build machine goes in.
                source: match p.source {
                    Source::CratesIo => auditable_serde::Source::CratesIo,
                    Source::Registry { .. } => auditable_serde::Source::Registry,
                    Source::Git { .. } => auditable_serde::Source::Git,
                    Source::Path { .. } => auditable_serde::Source::Local,
                },
                kind: match p.kind {
                    Kind::Runtime => DependencyKind::Runtime,
                    Kind::Build => DependencyKind::Build,
                },
                dependencies,
                root: old == 0,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // Format 1: proc-macros and what they use recorded as build-time dependencies.
    Ok(VersionInfo {
        packages,
        format: 1,
    })
}

fn semver(v: &str) -> Result<cargo_metadata::semver::Version> {
    Ok(v.parse()?)
}

/// The section's content: the list as JSON, zlib-compressed.
pub fn compressed(info: &VersionInfo) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(info)?;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&json)?;
    Ok(z.finish()?)
}

/// A relocatable ELF object for `platform` whose `.dep-v0` section holds `data`.
pub fn object_file(platform: Platform, data: &[u8]) -> Result<Vec<u8>> {
    let arch = match platform {
        Platform::Amd64 => Architecture::X86_64,
        Platform::Arm64 => Architecture::Aarch64,
    };
    let mut obj = Object::new(BinaryFormat::Elf, arch, Endianness::Little);
    let section = obj.add_section(Vec::new(), SECTION.as_bytes().to_vec(), SectionKind::Other);
    // Not allocated: the list is in the file for readers, never loaded into memory (as rustc's
    // own metadata sections and cargo-auditable's).
    obj.section_mut(section).flags = SectionFlags::Elf {
        sh_type: object::elf::SHT_PROGBITS,
        sh_flags: object::elf::SectionFlags(0),
    };
    let offset = obj.append_section_data(section, data, 1);
    obj.add_symbol(Symbol {
        name: SYMBOL.as_bytes().to_vec(),
        value: offset,
        size: data.len() as u64,
        kind: SymbolKind::Data,
        // Global for the link (so `-u` finds it), never exported from the executable.
        scope: SymbolScope::Linkage,
        weak: false,
        section: SymbolSection::Section(section),
        flags: SymbolFlags::None,
    });
    obj.write()
        .map_err(|e| anyhow::anyhow!("writing the {SECTION} object: {e}"))
}

/// Where the object with these bytes lives: `<dir>/<sha256>.o`.
fn stored_path(dir: &Path, bytes: &[u8]) -> PathBuf {
    let digest = crate::util::digest::Digest::sha256_of(bytes);
    dir.join(format!("{}.o", digest.hex()))
}

/// Stores `bytes` content-addressed in `dir` (kept when a file of that name already holds
/// exactly them, rewritten atomically otherwise) and returns its path.
fn store(dir: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let path = stored_path(dir, bytes);
    if std::fs::read(&path).is_ok_and(|have| have == bytes) {
        return Ok(path);
    }
    crate::util::atomic::write_file(&path, |w| Ok(w.write_all(bytes)?))
        .with_context(|| format!("writing the dependency list object {}", path.display()))?;
    Ok(path)
}

/// How the linker of a build takes its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkerFlavor {
    /// A C compiler driver (cc, musl-gcc, zig cc): linker options go through `-Wl,`.
    Cc,
    /// The linker itself (rust-lld, ld.lld, ld): options as they are.
    Bare,
}

impl LinkerFlavor {
    /// The flavour rustc infers from a linker's file name.
    pub fn of(linker: Option<&std::ffi::OsStr>) -> LinkerFlavor {
        let name = linker
            .and_then(|l| Path::new(l).file_stem())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // As rustc infers it from the file stem (`ld.lld`'s stem is `ld`); any other name
        // (cc, musl-gcc, cargo-zigbuild's zig wrapper) gets the musl targets' default, a cc.
        if name == "rust-lld" || name == "ld" || name.ends_with("-ld") {
            LinkerFlavor::Bare
        } else {
            LinkerFlavor::Cc
        }
    }
}

/// The rustc arguments that link the dependency list of `graph` into the binary: the object
/// (written under `<target_dir>/containerize/auditable/<triple>/` when not already there) and
/// the undefined reference that keeps its section.
pub fn link_args(graph: &DepGraph, target_dir: &Path, flavor: LinkerFlavor) -> Result<Vec<String>> {
    let platform = Platform::ALL
        .iter()
        .copied()
        .find(|p| p.musl_triple() == graph.triple)
        .with_context(|| format!("no platform builds {}", graph.triple))?;
    let data = compressed(&version_info(graph)?)?;
    let bytes = object_file(platform, &data)?;
    let dir = target_dir
        .join("containerize")
        .join("auditable")
        .join(&graph.triple);
    let path = store(&dir, &bytes)?;
    // `-Wl,-u,SYM` rather than `-Wl,--undefined=SYM`: zig cc takes only the POSIX form.
    let undefined = match flavor {
        LinkerFlavor::Cc => vec![format!("-Clink-arg=-Wl,-u,{SYMBOL}")],
        LinkerFlavor::Bare => vec![format!("-Clink-arg=--undefined={SYMBOL}")],
    };
    let mut args = vec![format!("-Clink-arg={}", path.display())];
    args.extend(undefined);
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::graph::{Dep, GraphPackage};

    fn package(
        name: &str,
        version: &str,
        source: Source,
        kind: Kind,
        deps: &[usize],
    ) -> GraphPackage {
        GraphPackage {
            name: name.into(),
            version: version.into(),
            source,
            license: None,
            license_file: None,
            checksum: None,
            kind,
            features: vec![],
            deps: deps.iter().map(|&index| Dep { index, kind }).collect(),
            description: None,
            repository: None,
            homepage: None,
            authors: vec![],
        }
    }

    /// A root `zapp` (sorts last) using a path crate, serde (crates.io) and a proc-macro.
    fn graph() -> DepGraph {
        DepGraph {
            triple: Platform::Amd64.musl_triple().into(),
            packages: vec![
                package(
                    "zapp",
                    "0.1.0",
                    Source::Path { path: ".".into() },
                    Kind::Runtime,
                    &[1, 2, 3],
                ),
                package(
                    "greet",
                    "0.2.0",
                    Source::Path {
                        path: "/abs/greet".into(),
                    },
                    Kind::Runtime,
                    &[],
                ),
                package("serde", "1.0.215", Source::CratesIo, Kind::Runtime, &[3]),
                package(
                    "serde_derive",
                    "1.0.215",
                    Source::CratesIo,
                    Kind::Build,
                    &[],
                ),
            ],
        }
    }

    #[test]
    fn the_list_is_sorted_with_the_root_flagged_and_indices_remapped() {
        let info = version_info(&graph()).unwrap();
        let names: Vec<_> = info.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["greet", "serde", "serde_derive", "zapp"]);
        let root = &info.packages[3];
        assert!(root.root && info.packages.iter().filter(|p| p.root).count() == 1);
        assert_eq!(root.dependencies, [0, 1, 2]);
        assert_eq!(info.packages[1].dependencies, [2]);
        assert_eq!(info.packages[2].kind, DependencyKind::Build);
        assert_eq!(info.packages[0].source, auditable_serde::Source::Local);
        let json = String::from_utf8(serde_json::to_vec(&info).unwrap()).unwrap();
        assert!(!json.contains("/abs"), "no build-machine path: {json}");
    }

    #[test]
    fn the_object_decodes_back_to_the_graph_with_auditable_info() {
        let g = graph();
        let bytes = object_file(
            Platform::Amd64,
            &compressed(&version_info(&g).unwrap()).unwrap(),
        )
        .unwrap();
        let decoded = auditable_info::audit_info_from_slice(&bytes, 1 << 20)
            .expect("auditable-info reads it");
        assert_eq!(decoded, version_info(&g).unwrap());
        let mut names: Vec<_> = decoded
            .packages
            .iter()
            .map(|p| (p.name.clone(), p.version.to_string()))
            .collect();
        names.sort();
        let mut want: Vec<_> = g
            .packages
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect();
        want.sort();
        assert_eq!(names, want);
    }

    #[test]
    fn objects_are_stored_by_their_digest_and_rewritten_when_tampered_with() {
        let dir = tempfile::tempdir().unwrap();
        let a = link_args(&graph(), dir.path(), LinkerFlavor::Cc).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[1], format!("-Clink-arg=-Wl,-u,{SYMBOL}"));
        let path = PathBuf::from(a[0].strip_prefix("-Clink-arg=").unwrap());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(path, stored_path(path.parent().unwrap(), &bytes));
        // Same graph, same object; a tampered file is replaced with the right bytes.
        std::fs::write(&path, b"not an object").unwrap();
        let b = link_args(&graph(), dir.path(), LinkerFlavor::Bare).unwrap();
        assert_eq!(a[0], b[0]);
        assert_eq!(b[1], format!("-Clink-arg=--undefined={SYMBOL}"));
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        // Another graph, another name.
        let mut other = graph();
        other.packages[2].version = "1.0.216".into();
        let c = link_args(&other, dir.path(), LinkerFlavor::Cc).unwrap();
        assert_ne!(a[0], c[0]);
    }

    #[test]
    fn the_linker_name_gives_the_flavor() {
        let f = |s: &str| LinkerFlavor::of(Some(std::ffi::OsStr::new(s)));
        assert_eq!(f("rust-lld"), LinkerFlavor::Bare);
        assert_eq!(f("/usr/bin/ld.lld"), LinkerFlavor::Bare);
        assert_eq!(f("aarch64-linux-musl-gcc"), LinkerFlavor::Cc);
        assert_eq!(f("/usr/bin/musl-gcc"), LinkerFlavor::Cc);
        assert_eq!(LinkerFlavor::of(None), LinkerFlavor::Cc);
    }
}
