//! The resolved dependency graph of the binary, per musl target: exactly the packages cargo
//! compiles for it, as the supply-chain documents (the binary's embedded dependency list,
//! the SBOMs, the provenance) describe it.
//!
//! `cargo metadata` resolves for every platform at once and lists dev-dependencies too, so the
//! graph is walked from the root the way cargo builds it for one target: normal dependencies
//! whose `[target.'cfg(…)']` conditions hold for the musl triple link into the binary
//! ([`Kind::Runtime`]); build-dependencies, proc-macros and everything below them run on the
//! build machine ([`Kind::Build`], conditions tested against the host); dev-dependencies are
//! not built. Checksums come from Cargo.lock, which `cargo metadata` does not report.

use super::musl_cfgs;
use crate::platform::Platform;
use crate::util::public_url::PublicUrl;
use cargo_metadata::{DependencyKind, Metadata, PackageId, TargetKind, cargo_platform};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The graph for one target. `packages[0]` is the root (the package whose binary is built);
/// the others are sorted by name, version and source, so the same resolve gives the same graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepGraph {
    /// The musl triple the graph was resolved for.
    pub triple: String,
    pub packages: Vec<GraphPackage>,
}

/// One package of the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphPackage {
    pub name: String,
    pub version: String,
    pub source: Source,
    /// The declared license, an SPDX expression as the manifest gives it (old `MIT/Apache-2.0`
    /// spellings normalised to `MIT OR Apache-2.0`).
    pub license: Option<String>,
    /// `license-file` when no `license` is given: the path inside the package.
    pub license_file: Option<String>,
    /// The sha256 of the package's `.crate` file (hex), from Cargo.lock; registry packages only.
    pub checksum: Option<String>,
    pub kind: Kind,
    /// Its features as resolved for this build.
    pub features: Vec<String>,
    /// What it depends on in this graph: indices into [`DepGraph::packages`], sorted.
    pub deps: Vec<Dep>,
    pub description: Option<String>,
    /// `repository` and `homepage`, without credentials: they go into documents.
    pub repository: Option<PublicUrl>,
    pub homepage: Option<PublicUrl>,
    pub authors: Vec<String>,
}

/// An edge of the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dep {
    pub index: usize,
    /// `Build` for a build-dependency (and for any edge below one); `Runtime` otherwise.
    pub kind: Kind,
}

/// Whether a package ends up in the binary or only runs while building it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// Compiled for the target and linked into the binary.
    Runtime,
    /// Compiled for and run on the build machine only: build scripts' dependencies,
    /// proc-macros.
    Build,
}

/// Where a package comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Source {
    /// crates.io (`registry+https://github.com/rust-lang/crates.io-index` or its sparse form).
    CratesIo,
    /// Another registry: its index URL (without the `registry+`/`sparse+` prefix), without
    /// credentials.
    Registry { index: PublicUrl },
    /// A git repository at a commit; the URL without credentials.
    Git { url: PublicUrl, rev: String },
    /// A directory of the workspace (or elsewhere on disk): its path relative to the workspace
    /// root when it is inside, else absolute. Never published anywhere.
    Path { path: String },
}

impl Source {
    pub fn parse(source: Option<&str>, manifest: &Path, workspace_root: &Path) -> Source {
        let Some(s) = source else {
            let dir = manifest.parent().unwrap_or(manifest);
            let path = match dir.strip_prefix(workspace_root) {
                Ok(rel) if rel.as_os_str().is_empty() => ".".to_string(),
                Ok(rel) => rel.display().to_string(),
                Err(_) => dir.display().to_string(),
            };
            return Source::Path { path };
        };
        if s == "registry+https://github.com/rust-lang/crates.io-index"
            || s == "sparse+https://index.crates.io/"
        {
            return Source::CratesIo;
        }
        if let Some(index) = s
            .strip_prefix("registry+")
            .or_else(|| s.strip_prefix("sparse+"))
        {
            return Source::Registry {
                index: PublicUrl::new(index),
            };
        }
        if let Some(git) = s.strip_prefix("git+") {
            let (url, rev) = git.split_once('#').unwrap_or((git, ""));
            // `?branch=…`/`?tag=…`/`?rev=…` say how it was asked for; the commit is what counts.
            let url = url.split_once('?').map_or(url, |(u, _)| u);
            return Source::Git {
                url: PublicUrl::new(url),
                rev: rev.to_string(),
            };
        }
        Source::Registry {
            index: PublicUrl::new(s),
        }
    }

    /// Whether the package was downloaded from a registry (crates.io or another).
    pub fn is_registry(&self) -> bool {
        matches!(self, Source::CratesIo | Source::Registry { .. })
    }
}

impl DepGraph {
    pub fn root(&self) -> &GraphPackage {
        &self.packages[0]
    }

    /// The packages linked into the binary (the root among them).
    pub fn runtime(&self) -> impl Iterator<Item = &GraphPackage> {
        self.packages.iter().filter(|p| p.kind == Kind::Runtime)
    }
}

impl GraphPackage {
    /// The package URL (`pkg:cargo/NAME@VERSION`), as scanners and SBOM tools name crates.
    pub fn purl(&self) -> String {
        let base = format!("pkg:cargo/{}@{}", self.name, self.version);
        match &self.source {
            Source::CratesIo => base,
            Source::Registry { index } => {
                format!("{base}?repository_url={}", purl_escape(index.as_str()))
            }
            Source::Git { url, rev } => format!(
                "{base}?vcs_url={}",
                purl_escape(&format!("git+{url}@{rev}"))
            ),
            Source::Path { .. } => base,
        }
    }
}

/// Percent-encodes a purl qualifier value (the characters the purl spec reserves).
pub(crate) fn purl_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'/'
            | b':'
            | b'+' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `MIT/Apache-2.0` (the spelling crates used before SPDX expressions) as `MIT OR Apache-2.0`.
fn normalise_license(l: &str) -> String {
    if l.contains('/') && !l.contains(" OR ") && !l.contains(" AND ") {
        l.split('/')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" OR ")
    } else {
        l.trim().to_string()
    }
}

/// One `[[package]]` of Cargo.lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockEntry {
    pub name: String,
    pub version: String,
    /// As cargo writes it (`registry+…`, `sparse+…`, `git+URL?branch=x#COMMIT`) without
    /// credentials; None for the workspace's own (path) packages.
    pub source: Option<PublicUrl>,
    /// The sha256 of the `.crate` file, hex; registry packages only.
    pub checksum: Option<String>,
}

/// Every package pinned in the workspace's Cargo.lock: the one reader of that file (cargo
/// metadata does not report checksums). No lock file gives none (a prebuilt `--binary` in a
/// crate never built); one that cannot be read or parsed is an error naming the remedy.
pub fn lock_entries(workspace_root: &Path) -> anyhow::Result<Vec<LockEntry>> {
    use anyhow::Context;
    let path = workspace_root.join("Cargo.lock");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let doc: toml_edit::DocumentMut = text.parse().with_context(|| {
        format!(
            "{} is not valid TOML; run `cargo generate-lockfile`",
            path.display()
        )
    })?;
    let packages = doc
        .get("package")
        .and_then(|p| p.as_array_of_tables())
        .into_iter()
        .flatten();
    Ok(packages
        .filter_map(|p| {
            let field = |k: &str| p.get(k).and_then(|v| v.as_str()).map(String::from);
            Some(LockEntry {
                name: field("name")?,
                version: field("version")?,
                source: field("source").as_deref().map(PublicUrl::new),
                checksum: field("checksum"),
            })
        })
        .collect())
}

/// The `checksum` of every registry package in Cargo.lock, by (name, version, source). The
/// graph is built right after `cargo metadata` wrote the lock file; should it be unreadable
/// after all, the graph just lacks checksums.
fn lock_checksums(workspace_root: &Path) -> HashMap<(String, String, String), String> {
    lock_entries(workspace_root)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| Some(((e.name, e.version, e.source?.into()), e.checksum?)))
        .collect()
}

/// The host's cfg values, for the build-machine side of the graph: the host's architecture
/// with glibc (what build scripts and proc-macros are compiled for on Linux).
fn host_cfgs() -> Vec<cargo_platform::Cfg> {
    let platform = Platform::host().unwrap_or(Platform::Amd64);
    musl_cfgs(platform)
        .into_iter()
        .map(|c| match c {
            cargo_platform::Cfg::KeyPair(ref k, _) if k == "target_env" => {
                cargo_platform::Cfg::KeyPair(k.clone(), "gnu".into())
            }
            other => other,
        })
        .collect()
}

fn host_triple() -> String {
    let arch = Platform::host()
        .unwrap_or(Platform::Amd64)
        .musl_triple()
        .split('-')
        .next()
        .unwrap_or_default()
        .to_string();
    format!("{arch}-unknown-linux-gnu")
}

/// The graph of `root`'s binary for `platform`. None when `metadata` has no resolve.
pub fn resolve(metadata: &Metadata, root: &PackageId, platform: Platform) -> Option<DepGraph> {
    let resolve = metadata.resolve.as_ref()?;
    let nodes: HashMap<&PackageId, &cargo_metadata::Node> =
        resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    let packages: HashMap<&PackageId, &cargo_metadata::Package> =
        metadata.packages.iter().map(|p| (&p.id, p)).collect();
    let (kind_of, edges) = walk(&nodes, &packages, root, platform);

    let checksums = lock_checksums(metadata.workspace_root.as_std_path());
    let mut ids: Vec<&PackageId> = kind_of.keys().copied().filter(|id| *id != root).collect();
    ids.sort_by_key(|id| {
        let p = packages[id];
        (
            p.name.to_string(),
            p.version.clone(),
            p.source.as_ref().map(|s| s.repr.clone()),
        )
    });
    ids.insert(0, root);
    let index: HashMap<&PackageId, usize> =
        ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let out = ids
        .iter()
        .map(|id| {
            let mut deps: Vec<Dep> = edges
                .iter()
                .filter(|((from, _), _)| from == id)
                .map(|((_, to), kind)| Dep {
                    index: index[to],
                    kind: *kind,
                })
                .collect();
            deps.sort();
            deps.dedup_by_key(|d| d.index);
            let features = nodes
                .get(id)
                .map(|n| n.features.iter().map(|f| f.to_string()).collect())
                .unwrap_or_default();
            graph_package(
                metadata,
                packages[id],
                &checksums,
                kind_of[id],
                features,
                deps,
            )
        })
        .collect();
    Some(DepGraph {
        triple: platform.musl_triple().to_string(),
        packages: out,
    })
}

/// The edges between packages (the kind an edge carries) and each package's kind, found by
/// walking (package, context) from `root`. Runtime context tests conditions against the
/// target; build context (below a build-dependency or a proc-macro) against the host.
#[allow(
    clippy::type_complexity,
    reason = "two maps the caller takes apart at once"
)]
fn walk<'a>(
    nodes: &HashMap<&'a PackageId, &'a cargo_metadata::Node>,
    packages: &HashMap<&'a PackageId, &'a cargo_metadata::Package>,
    root: &'a PackageId,
    platform: Platform,
) -> (
    BTreeMap<&'a PackageId, Kind>,
    BTreeMap<(&'a PackageId, &'a PackageId), Kind>,
) {
    let is_proc_macro = |id: &PackageId| {
        packages.get(id).is_some_and(|p| {
            p.targets
                .iter()
                .any(|t| t.kind.contains(&TargetKind::ProcMacro))
        })
    };
    let triple = platform.musl_triple();
    let target_cfgs = musl_cfgs(platform);
    let host_cfgs = host_cfgs();
    let host = host_triple();
    let mut kind_of: BTreeMap<&PackageId, Kind> = BTreeMap::new();
    let mut edges: BTreeMap<(&PackageId, &PackageId), Kind> = BTreeMap::new();
    let mut seen: std::collections::HashSet<(&PackageId, Kind)> = Default::default();
    let mut stack = vec![(root, Kind::Runtime)];
    while let Some((id, ctx)) = stack.pop() {
        if !seen.insert((id, ctx)) {
            continue;
        }
        let k = kind_of.entry(id).or_insert(ctx);
        *k = (*k).min(ctx); // Runtime wins
        let Some(node) = nodes.get(id) else { continue };
        for dep in &node.deps {
            for dk in &dep.dep_kinds {
                let next = match (dk.kind, ctx) {
                    (DependencyKind::Development, _) => continue,
                    (DependencyKind::Build, _) | (_, Kind::Build) => Kind::Build,
                    _ => Kind::Runtime,
                };
                let (t, cfgs) = if ctx == Kind::Runtime && dk.kind != DependencyKind::Build {
                    (triple, &target_cfgs)
                } else {
                    (host.as_str(), &host_cfgs)
                };
                if dk.target.as_ref().is_some_and(|p| !p.matches(t, cfgs)) {
                    continue;
                }
                let next = if is_proc_macro(&dep.pkg) {
                    Kind::Build
                } else {
                    next
                };
                let e = edges.entry((id, &dep.pkg)).or_insert(next);
                *e = (*e).min(next);
                stack.push((&dep.pkg, next));
            }
        }
    }
    (kind_of, edges)
}

/// One package of the graph, as the SBOMs describe it.
fn graph_package(
    metadata: &Metadata,
    p: &cargo_metadata::Package,
    checksums: &HashMap<(String, String, String), String>,
    kind: Kind,
    features: Vec<String>,
    deps: Vec<Dep>,
) -> GraphPackage {
    let source_repr = p.source.as_ref().map(|s| s.repr.as_str());
    let license = p.license.as_deref().map(normalise_license);
    GraphPackage {
        name: p.name.to_string(),
        version: p.version.to_string(),
        source: Source::parse(
            source_repr,
            p.manifest_path.as_std_path(),
            metadata.workspace_root.as_std_path(),
        ),
        license_file: match license {
            Some(_) => None,
            None => p.license_file.as_ref().map(|f| {
                let dir = p.manifest_path.parent().map(|d| d.as_std_path());
                let f = f.as_std_path();
                dir.and_then(|d| f.strip_prefix(d).ok())
                    .unwrap_or(f)
                    .display()
                    .to_string()
            }),
        },
        license,
        checksum: source_repr.and_then(|s| {
            checksums
                .get(&(
                    p.name.to_string(),
                    p.version.to_string(),
                    PublicUrl::new(s).into(),
                ))
                .cloned()
        }),
        kind,
        features,
        deps,
        description: p.description.clone(),
        repository: p.repository.as_deref().map(PublicUrl::new),
        homepage: p.homepage.as_deref().map(PublicUrl::new),
        authors: p.authors.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_as_cargo_writes_them() {
        let ws = Path::new("/ws");
        let m = Path::new("/ws/crates/a/Cargo.toml");
        assert_eq!(
            Source::parse(
                Some("registry+https://github.com/rust-lang/crates.io-index"),
                m,
                ws
            ),
            Source::CratesIo
        );
        assert_eq!(
            Source::parse(Some("sparse+https://index.crates.io/"), m, ws),
            Source::CratesIo
        );
        assert_eq!(
            Source::parse(
                Some("git+https://github.com/o/r?branch=main#0123abc"),
                m,
                ws
            ),
            Source::Git {
                url: "https://github.com/o/r".into(),
                rev: "0123abc".into()
            }
        );
        assert_eq!(
            Source::parse(None, m, ws),
            Source::Path {
                path: "crates/a".into()
            }
        );
        assert_eq!(
            Source::parse(None, Path::new("/ws/Cargo.toml"), ws),
            Source::Path { path: ".".into() }
        );
        assert_eq!(
            Source::parse(Some("sparse+https://my.reg/index/"), m, ws),
            Source::Registry {
                index: "https://my.reg/index/".into()
            }
        );
        // Credentials in a source never reach the graph.
        assert_eq!(
            Source::parse(
                Some("git+https://alice:ghp_T@git.example.com/o/r?branch=main#0123abc"),
                m,
                ws
            ),
            Source::Git {
                url: "https://git.example.com/o/r".into(),
                rev: "0123abc".into()
            }
        );
        assert_eq!(
            Source::parse(Some("sparse+https://u:p@my.reg/index/?token=1"), m, ws),
            Source::Registry {
                index: "https://my.reg/index/".into()
            }
        );
    }

    #[test]
    fn old_license_spellings_become_expressions() {
        assert_eq!(normalise_license("MIT/Apache-2.0"), "MIT OR Apache-2.0");
        assert_eq!(normalise_license("MIT OR Apache-2.0"), "MIT OR Apache-2.0");
        assert_eq!(normalise_license(" Zlib "), "Zlib");
    }

    #[test]
    fn purls_name_where_a_crate_came_from() {
        let mut p = GraphPackage {
            name: "serde".into(),
            version: "1.0.0".into(),
            source: Source::CratesIo,
            license: None,
            license_file: None,
            checksum: None,
            kind: Kind::Runtime,
            features: vec![],
            deps: vec![],
            description: None,
            repository: None,
            homepage: None,
            authors: vec![],
        };
        assert_eq!(p.purl(), "pkg:cargo/serde@1.0.0");
        p.source = Source::Git {
            url: "https://github.com/o/r".into(),
            rev: "abc".into(),
        };
        assert_eq!(
            p.purl(),
            "pkg:cargo/serde@1.0.0?vcs_url=git+https://github.com/o/r%40abc"
        );
    }
}

#[cfg(test)]
mod on_this_crate {
    use super::*;

    /// This crate's own graph: it has a Linux-only dependency (nix), a dev-dependency (insta),
    /// Windows-only crates deep down, and proc-macros (serde_derive).
    fn graph() -> DepGraph {
        let metadata = cargo_metadata::MetadataCommand::new()
            .manifest_path(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            // Not `--offline`: `cargo metadata` reads the crates of every platform (Windows-only
            // ones included) while building this crate downloads only the host's, so on a fresh
            // machine they are not in the cache yet. `scripts/test` fetches them first; a plain
            // `cargo test` downloads them here, as its own build did the rest.
            .other_options(vec!["--locked".into()])
            .exec()
            .expect("cargo metadata of this crate");
        let root = metadata.root_package().expect("root").id.clone();
        resolve(&metadata, &root, Platform::Amd64).expect("resolved")
    }

    #[test]
    fn the_graph_is_what_cargo_builds_for_the_target() {
        let g = graph();
        assert_eq!(g.root().name, "cargo-containerize");
        assert_eq!(g.root().source, Source::Path { path: ".".into() });
        let find = |n: &str| g.packages.iter().find(|p| p.name == n);
        assert_eq!(find("nix").map(|p| p.kind), Some(Kind::Runtime));
        assert!(find("insta").is_none(), "dev-dependencies are not built");
        assert!(
            find("windows-sys").is_none(),
            "windows-only dependencies are not built for musl"
        );
        assert_eq!(find("serde_derive").map(|p| p.kind), Some(Kind::Build));
        let serde = find("serde").expect("serde");
        assert_eq!(serde.kind, Kind::Runtime);
        assert_eq!(serde.source, Source::CratesIo);
        assert_eq!(serde.checksum.as_ref().map(|c| c.len()), Some(64));
        assert!(serde.license.as_deref().is_some_and(|l| l.contains("MIT")));
        // Every edge points inside the graph, and the root reaches serde.
        assert!(
            g.packages
                .iter()
                .flat_map(|p| &p.deps)
                .all(|d| d.index < g.packages.len())
        );
        let serde_at = g.packages.iter().position(|p| p.name == "serde").unwrap();
        assert!(
            g.root()
                .deps
                .iter()
                .any(|d| d.index == serde_at && d.kind == Kind::Runtime)
        );
        // Sorted after the root, so the same resolve gives the same graph.
        let names: Vec<_> = g.packages[1..]
            .iter()
            .map(|p| (&p.name, &p.version))
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }
}
