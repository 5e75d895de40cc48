//! Stage 1 — metadata: what to build and how the image should look.
//!
//! Reads the crate with `cargo metadata`, picks the package and binary the way cargo does,
//! merges `[workspace.metadata.containerize]` and `[package.metadata.containerize]`, and
//! resolves everything into an [`ImageSpec`] that the later stages (and the templates) share.

pub mod cache;
pub mod git;
pub mod graph;
pub mod settings;
pub mod spec;
pub mod values;

pub use settings::Settings;
pub use spec::ImageSpec;

use crate::util::shell::Shell;
use anyhow::{Context, Result, bail};
use cargo_metadata::{CargoOpt, Metadata, MetadataCommand, Package, TargetKind, cargo_platform};
use std::path::PathBuf;

/// Cargo's own flags, honoured as cargo honours them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CargoArgs {
    /// Path to Cargo.toml
    #[arg(long, value_name = "PATH", help_heading = "Cargo options")]
    pub manifest_path: Option<PathBuf>,
    /// Package to containerize
    #[arg(short = 'p', long, value_name = "SPEC", help_heading = "Cargo options")]
    pub package: Option<String>,
    /// Binary target to containerize
    #[arg(long, value_name = "NAME", help_heading = "Cargo options")]
    pub bin: Option<String>,
    /// Space or comma separated list of features to activate
    #[arg(
        short = 'F',
        long,
        value_name = "FEATURES",
        help_heading = "Cargo options"
    )]
    pub features: Vec<String>,
    /// Activate all available features
    #[arg(long, help_heading = "Cargo options")]
    pub all_features: bool,
    /// Do not activate the `default` feature
    #[arg(long, help_heading = "Cargo options")]
    pub no_default_features: bool,
    /// Build with the given profile
    #[arg(
        long,
        value_name = "PROFILE-NAME",
        default_value = "release",
        help_heading = "Cargo options"
    )]
    pub profile: values::ProfileName,
    /// Assert that Cargo.lock will remain unchanged
    #[arg(long, help_heading = "Cargo options")]
    pub locked: bool,
    /// Equivalent to specifying both --locked and --offline
    #[arg(long, help_heading = "Cargo options")]
    pub frozen: bool,
    /// Run without accessing the network
    #[arg(long, help_heading = "Cargo options")]
    pub offline: bool,
    /// Directory for all generated artifacts
    #[arg(long, value_name = "DIRECTORY", help_heading = "Cargo options")]
    pub target_dir: Option<PathBuf>,
}

impl CargoArgs {
    /// Makes the paths absolute: cargo runs in the package root, not where the user stood.
    pub fn absolutized(mut self) -> Result<CargoArgs> {
        if let Some(p) = &self.manifest_path {
            self.manifest_path = Some(std::path::absolute(p).context("resolving --manifest-path")?);
        }
        if let Some(d) = &self.target_dir {
            self.target_dir = Some(std::path::absolute(d).context("resolving --target-dir")?);
        }
        Ok(self)
    }

    /// `--locked`, `--frozen`, `--offline` as given.
    fn lock_flags(&self) -> Vec<String> {
        [
            (self.locked, "--locked"),
            (self.frozen, "--frozen"),
            (self.offline, "--offline"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, flag)| flag.to_string())
        .collect()
    }

    /// The features named with --features, split as cargo splits them.
    pub fn features(&self) -> Vec<String> {
        self.features
            .iter()
            .flat_map(|f| f.split([' ', ',']))
            .filter(|f| !f.is_empty())
            .map(String::from)
            .collect()
    }

    /// The flags passed on to every cargo invocation (metadata and build).
    pub fn common_flags(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(p) = &self.manifest_path {
            v.push("--manifest-path".into());
            v.push(p.display().to_string());
        }
        v.extend(self.lock_flags());
        v
    }

    pub fn feature_flags(&self) -> Vec<String> {
        let mut v = Vec::new();
        let features = self.features();
        if !features.is_empty() {
            v.push("--features".into());
            v.push(features.join(","));
        }
        if self.all_features {
            v.push("--all-features".into());
        }
        if self.no_default_features {
            v.push("--no-default-features".into());
        }
        v
    }
}

/// The crate as the later stages need it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Project {
    pub package: Package,
    pub workspace_root: PathBuf,
    pub package_root: PathBuf,
    pub target_dir: PathBuf,
    /// The binary target to build.
    pub bin: String,
    /// Every binary target of the package.
    pub bins: Vec<String>,
    /// The binaries cargo would not build with the features on (their `required-features`),
    /// each with the features it lacks.
    pub bins_off: Vec<(String, Vec<String>)>,
    pub settings: Settings,
    /// Whether anything in the build graph compiles C code through cc-rs.
    pub compiles_c: bool,
    /// The packages of the resolved graph that link or build native code, or need a host tool
    /// to build (see [`crate::build::preflight`]): every `*-sys` package and the others the preflight
    /// knows, sorted by name.
    pub native: Vec<NativeDep>,
    /// The resolved dependency graph of the binary for each platform (empty without a
    /// resolve): what the supply-chain documents describe.
    pub graphs: Vec<graph::DepGraph>,
    /// Every package of the resolved graph that a build of the binary compiles, for one musl
    /// target or the build machine, as locked (empty without a resolve): what the preflight
    /// checks against known incompatibilities and the toolchain's version.
    pub locked: Vec<LockedPackage>,
    /// The package's own features that are on for this build (as cargo resolves them, or
    /// from its `[features]` table and the feature flags without a resolve).
    pub features: Vec<String>,
}

/// A package of the resolved graph, as Cargo.lock and its manifest give it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    /// Its manifest's `rust-version`, when it has one.
    pub rust_version: Option<String>,
    /// Its features as resolved for this build.
    pub features: Vec<String>,
    /// Whether it comes from a registry (`cargo update` can change its version); path and git
    /// packages cannot be updated that way.
    pub registry: bool,
    /// The musl triples whose binary links it.
    pub targets: Vec<String>,
    /// Whether it is built for the build machine (a build-dependency, a proc macro).
    pub host: bool,
}

impl Project {
    /// The dependency graph of the binary for `platform`, when the metadata was resolved.
    pub fn graph(&self, platform: crate::platform::Platform) -> Option<&graph::DepGraph> {
        self.graphs
            .iter()
            .find(|g| g.triple == platform.musl_triple())
    }
}

/// A package of the resolved graph that the preflight looks at.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NativeDep {
    pub name: String,
    pub version: String,
    /// Its features as resolved for this build.
    pub features: Vec<String>,
    /// Its (optional or not) dependencies' names and version requirements with their features,
    /// e.g. openssl-sys's `openssl-src` requirement, which the tool builds OpenSSL with.
    pub deps: Vec<(String, String, Vec<String>)>,
    /// The musl triples whose binary links it (it is reached through normal dependencies whose
    /// `[target.'cfg(…)']` conditions hold for the triple).
    pub targets: Vec<String>,
    /// Whether it is built for the build machine (reached through a build-dependency).
    pub host: bool,
    /// Its manifest's `links` key: the native library it declares it links.
    pub links: Option<String>,
    /// The names of its build-dependencies as resolved (those its build script can use:
    /// `cc`, `cmake`, `pkg-config`, …).
    pub build_deps: Vec<String>,
    /// The features of the package's direct dependencies that turn on one of this crate's
    /// features (rusqlite's `bundled` turns on libsqlite3-sys's `bundled`): (the dependency as
    /// the package names it, its feature, this crate's feature), the most direct first.
    pub enabled_via: Vec<(String, String, String)>,
}

#[cfg(test)]
impl Project {
    /// A package `app` (bin `app`) in /app whose graph holds `native`.
    pub(crate) fn for_test(native: Vec<NativeDep>) -> Project {
        let manifest = r#"{"name":"app","version":"0.1.0","id":"path+file:///app#0.1.0","source":null,
            "dependencies":[],"targets":[],"features":{},"manifest_path":"/app/Cargo.toml",
            "edition":"2021","metadata":null,"publish":null,"authors":[],"categories":[],
            "keywords":[],"readme":null,"repository":null,"homepage":null,"documentation":null,
            "license":null,"license_file":null,"description":null,"links":null,"default_run":null,
            "rust_version":null}"#;
        Project {
            package: serde_json::from_str(manifest).expect("package"),
            workspace_root: "/app".into(),
            package_root: "/app".into(),
            target_dir: "/app/target".into(),
            bin: "app".into(),
            bins: vec!["app".into()],
            bins_off: Vec::new(),
            settings: Default::default(),
            compiles_c: !native.is_empty(),
            native,
            graphs: Vec::new(),
            locked: Vec::new(),
            features: Vec::new(),
        }
    }
}

/// The remembered answer, when nothing it depends on has changed.
pub fn load_cached(args: &CargoArgs, resolve: bool, shell: &Shell) -> Option<Project> {
    cache::get(args, resolve, shell).map(|mut p| {
        public_links(&mut p.package);
        p
    })
}

/// The package's `repository`, `homepage` and `documentation` without credentials
/// ([`crate::util::public_url`]): they become labels, annotations, provenance and lines of
/// generated files, so they are scrubbed where they enter, once, for every reader.
fn public_links(package: &mut Package) {
    use crate::util::public_url::PublicUrl;
    for link in [
        &mut package.repository,
        &mut package.homepage,
        &mut package.documentation,
    ] {
        if let Some(url) = link.as_mut() {
            *url = PublicUrl::new(url).into();
        }
    }
}

/// Selects the package and binary: from the cache when nothing changed, else by running
/// `cargo metadata`.
///
/// `resolve` asks for the dependency graph, which only a build needs (to know whether C code is
/// compiled); without it cargo answers faster and `compiles_c` is false.
pub fn load(args: &CargoArgs, resolve: bool, shell: &Shell) -> Result<Project> {
    match load_cached(args, resolve, shell) {
        Some(project) => Ok(project),
        None => load_fresh(args, resolve, shell),
    }
}

/// Runs `cargo metadata` (and remembers the answer), whatever the cache holds.
pub fn load_fresh(args: &CargoArgs, resolve: bool, shell: &Shell) -> Result<Project> {
    let metadata = run_cargo_metadata(args, resolve)?;
    let project = from_metadata(&metadata, args)?;
    let path_manifests: Vec<PathBuf> = metadata
        .packages
        .iter()
        .filter(|p| p.source.is_none())
        .map(|p| p.manifest_path.clone().into_std_path_buf())
        .collect();
    cache::put(
        args,
        resolve,
        &project,
        &cache::watched_paths(&project, &path_manifests),
        shell,
    );
    Ok(project)
}

fn from_metadata(metadata: &Metadata, args: &CargoArgs) -> Result<Project> {
    let mut package = select_package(metadata, args.package.as_deref())?.clone();
    public_links(&mut package);
    let settings = settings_of(metadata, &package)?;
    let features = enabled_features(metadata, &package, args);
    let (bins, bins_off) = bins_of(&package, &features);
    let bin = select_bin(
        &package,
        &bins,
        &bins_off,
        args.bin.as_deref(),
        settings.bin.as_deref(),
    )?;

    let compiles_c = compiles_c(metadata);

    let (native, locked) = walk_graph(metadata, &package.id);
    let graphs = crate::platform::Platform::ALL
        .iter()
        .filter_map(|p| graph::resolve(metadata, &package.id, *p))
        .collect();

    let target_dir = match &args.target_dir {
        Some(d) => std::path::absolute(d).context("resolving --target-dir")?,
        None => metadata.target_directory.clone().into_std_path_buf(),
    };
    let package_root = package
        .manifest_path
        .parent()
        .context("manifest path has no parent")?
        .to_path_buf()
        .into_std_path_buf();
    Ok(Project {
        workspace_root: metadata.workspace_root.clone().into_std_path_buf(),
        package_root,
        target_dir,
        bin,
        bins,
        bins_off,
        settings,
        compiles_c,
        native,
        graphs,
        locked,
        features,
        package,
    })
}

/// The workspace's `[workspace.metadata.containerize]` with the package's table laid over it.
fn settings_of(metadata: &Metadata, package: &Package) -> Result<Settings> {
    let origin_ws = format!(
        "[workspace.metadata.containerize] of {}/Cargo.toml",
        metadata.workspace_root
    );
    let origin_pkg = format!(
        "[package.metadata.containerize] of {}",
        package.manifest_path
    );
    let ws = Settings::from_value(
        metadata
            .workspace_metadata
            .get("containerize")
            .unwrap_or(&serde_json::Value::Null),
        &origin_ws,
    )?;
    let pkg = Settings::from_value(
        package
            .metadata
            .get("containerize")
            .unwrap_or(&serde_json::Value::Null),
        &origin_pkg,
    )?;
    Ok(ws.merge(pkg))
}

/// The package's binaries, and those whose `required-features` are not all on (cargo skips
/// them; a requirement on a dependency's feature, `dep/feat`, is taken as met: cargo checks
/// it), each with the features it misses.
fn bins_of(package: &Package, features: &[String]) -> (Vec<String>, Vec<(String, Vec<String>)>) {
    let bin_targets = || {
        package
            .targets
            .iter()
            .filter(|t| t.kind.contains(&TargetKind::Bin))
    };
    let bins = bin_targets().map(|t| t.name.clone()).collect();
    let bins_off = bin_targets()
        .filter_map(|t| {
            let missing: Vec<String> = t
                .required_features
                .iter()
                .filter(|r| !r.contains('/') && !features.contains(r))
                .cloned()
                .collect();
            (!missing.is_empty()).then(|| (t.name.clone(), missing))
        })
        .collect();
    (bins, bins_off)
}

/// Whether the resolved graph holds the `cc` crate (something compiles C).
fn compiles_c(metadata: &Metadata) -> bool {
    metadata
        .resolve
        .as_ref()
        .map(|r| {
            r.nodes.iter().any(|n| {
                metadata
                    .packages
                    .iter()
                    .any(|p| p.id == n.id && p.name.as_str() == "cc")
            })
        })
        .unwrap_or(false)
}

/// The cfg values of a musl target, as `[target.'cfg(…)'.dependencies]` test them.
fn musl_cfgs(platform: crate::platform::Platform) -> Vec<cargo_platform::Cfg> {
    let arch = platform.musl_triple().split('-').next().unwrap_or_default();
    [
        "unix".to_string(),
        "target_os=\"linux\"".into(),
        "target_family=\"unix\"".into(),
        "target_env=\"musl\"".into(),
        "target_vendor=\"unknown\"".into(),
        "target_pointer_width=\"64\"".into(),
        "target_endian=\"little\"".into(),
        format!("target_arch=\"{arch}\""),
    ]
    .iter()
    .filter_map(|c| c.parse().ok())
    .collect()
}

/// Crates that need a host program to build, whatever their build script looks like (the
/// preflight checks for the program).
pub const HOST_TOOL_CRATES: &[&str] = &["prost-build"];

/// Whether a package is one the preflight looks at: it declares a native library (`links`), has
/// a build script (which may compile or look for one: the preflight reads its
/// build-dependencies to tell), or its build needs a host program.
pub fn is_native(package: &Package) -> bool {
    package.links.is_some()
        || package
            .targets
            .iter()
            .any(|t| t.kind.contains(&TargetKind::CustomBuild))
        || HOST_TOOL_CRATES.contains(&package.name.as_str())
}

/// The packages of the resolved graph a build compiles, with the targets that link them, and
/// the subset the preflight looks at: cargo's graph holds every platform's dependencies, so
/// the root's dependencies are walked the way cargo builds them for each musl target (normal
/// dependencies whose conditions hold for it link into the binary; build-dependencies and
/// everything below them run on the build machine; dev-dependencies are not built).
fn walk_graph(
    metadata: &Metadata,
    root: &cargo_metadata::PackageId,
) -> (Vec<NativeDep>, Vec<LockedPackage>) {
    use std::collections::HashMap;
    let Some(resolve) = &metadata.resolve else {
        return (Vec::new(), Vec::new());
    };
    let nodes: HashMap<&cargo_metadata::PackageId, &cargo_metadata::Node> =
        resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    let seen = reached(&nodes, root);
    let packages: HashMap<&cargo_metadata::PackageId, &Package> =
        metadata.packages.iter().map(|p| (&p.id, p)).collect();
    let via = features_via_direct_deps(&packages, &nodes, root);
    let mut native = Vec::new();
    let mut locked = Vec::new();
    for n in &resolve.nodes {
        let Some(p) = packages.get(&n.id) else {
            continue;
        };
        let targets: Vec<String> = seen
            .iter()
            .filter(|(id, ctx)| **id == n.id && ctx.is_some())
            .filter_map(|(_, ctx)| ctx.map(String::from))
            .collect();
        let host = seen.contains(&(&n.id, None));
        if targets.is_empty() && !host {
            continue;
        }
        locked.push(LockedPackage {
            name: p.name.to_string(),
            version: p.version.to_string(),
            rust_version: p.rust_version.as_ref().map(|v| v.to_string()),
            features: n.features.iter().map(|f| f.to_string()).collect(),
            registry: p
                .source
                .as_ref()
                .is_some_and(|s| s.repr.starts_with("registry+") || s.repr.starts_with("sparse+")),
            targets: targets.clone(),
            host,
        });
        if !is_native(p) {
            continue;
        }
        native.push(native_dep(p, n, &packages, targets, host, &via));
    }
    native.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    locked.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    (native, locked)
}

/// Every (package, context) the build compiles, walked from `root` for each musl target:
/// the context is `Some(triple)` for a package linked into that target's binary, `None` for
/// one that runs on the build machine.
fn reached<'a>(
    nodes: &std::collections::HashMap<&'a cargo_metadata::PackageId, &'a cargo_metadata::Node>,
    root: &'a cargo_metadata::PackageId,
) -> std::collections::BTreeSet<(&'a cargo_metadata::PackageId, Option<&'static str>)> {
    use cargo_metadata::DependencyKind;
    use std::collections::BTreeSet;
    // (package, None for the build machine or Some(triple))
    let mut seen: BTreeSet<(&cargo_metadata::PackageId, Option<&str>)> = BTreeSet::new();
    for platform in crate::platform::Platform::ALL {
        let triple = platform.musl_triple();
        let cfgs = musl_cfgs(platform);
        let mut stack = vec![(root, Some(triple))];
        while let Some((id, ctx)) = stack.pop() {
            if !seen.insert((id, ctx)) {
                continue;
            }
            let Some(node) = nodes.get(id) else { continue };
            for dep in &node.deps {
                for kind in &dep.dep_kinds {
                    let next = match (kind.kind, ctx) {
                        (DependencyKind::Development, _) => continue,
                        (DependencyKind::Build, _) | (_, None) => None,
                        (_, Some(t)) => {
                            if kind.target.as_ref().is_some_and(|p| !p.matches(t, &cfgs)) {
                                continue;
                            }
                            Some(t)
                        }
                    };
                    stack.push((&dep.pkg, next));
                }
            }
        }
    }
    seen
}

/// A package the preflight looks at, as `walk_graph` found it.
fn native_dep(
    p: &Package,
    n: &cargo_metadata::Node,
    packages: &std::collections::HashMap<&cargo_metadata::PackageId, &Package>,
    targets: Vec<String>,
    host: bool,
    via: &std::collections::HashMap<String, Vec<(String, String, String)>>,
) -> NativeDep {
    use cargo_metadata::DependencyKind;
    NativeDep {
        name: p.name.to_string(),
        version: p.version.to_string(),
        features: n.features.iter().map(|f| f.to_string()).collect(),
        deps: p
            .dependencies
            .iter()
            .map(|d| (d.name.clone(), d.req.to_string(), d.features.clone()))
            .collect(),
        targets,
        host,
        links: p.links.clone(),
        build_deps: n
            .deps
            .iter()
            .filter(|d| d.dep_kinds.iter().any(|k| k.kind == DependencyKind::Build))
            .filter_map(|d| packages.get(&d.pkg).map(|p| p.name.to_string()))
            .collect(),
        enabled_via: via.get(p.name.as_str()).cloned().unwrap_or_default(),
    }
}

/// For each crate, the features of the root's direct (non-dev) dependencies that turn on one
/// of its features, with that feature: cargo can turn those on from the command line
/// (`--features DEP/FEATURE`). Sorted by how much else each turns on, least first.
fn features_via_direct_deps(
    packages: &std::collections::HashMap<&cargo_metadata::PackageId, &Package>,
    nodes: &std::collections::HashMap<&cargo_metadata::PackageId, &cargo_metadata::Node>,
    root: &cargo_metadata::PackageId,
) -> std::collections::HashMap<String, Vec<(String, String, String)>> {
    let mut found: std::collections::HashMap<String, Vec<(usize, String, String, String)>> =
        Default::default();
    let (Some(root_pkg), Some(root_node)) = (packages.get(root), nodes.get(root)) else {
        return Default::default();
    };
    for dep in &root_node.deps {
        if dep
            .dep_kinds
            .iter()
            .all(|k| k.kind == cargo_metadata::DependencyKind::Development)
        {
            continue;
        }
        let Some(pkg) = packages.get(&dep.pkg) else {
            continue;
        };
        // As the root's Cargo.toml names it (a rename, or the package's name).
        let named = root_pkg
            .dependencies
            .iter()
            .find(|d| d.name == pkg.name.as_str())
            .map(|d| d.rename.clone().unwrap_or_else(|| d.name.clone()))
            .unwrap_or_else(|| pkg.name.to_string());
        for feature in pkg.features.keys() {
            let mut todo = vec![feature];
            let mut seen = std::collections::BTreeSet::new();
            let mut turns_on = Vec::new();
            while let Some(f) = todo.pop() {
                if !seen.insert(f) {
                    continue;
                }
                for v in pkg.features.get(f).into_iter().flatten() {
                    if pkg.features.contains_key(v) {
                        todo.push(v);
                    } else if let Some((krate, feat)) = v.split_once('/') {
                        turns_on.push((krate.trim_end_matches('?').to_string(), feat.to_string()));
                    }
                }
            }
            for (krate, feat) in turns_on {
                found.entry(krate).or_default().push((
                    seen.len(),
                    named.clone(),
                    feature.clone(),
                    feat,
                ));
            }
        }
    }
    found
        .into_iter()
        .map(|(k, mut v)| {
            v.sort();
            (k, v.into_iter().map(|(_, d, f, t)| (d, f, t)).collect())
        })
        .collect()
}

/// The root package's features that are on: cargo's answer with a resolve; else the closure
/// of `default` (unless `--no-default-features`) and the named features over its
/// `[features]` table, as cargo computes it.
fn enabled_features(metadata: &Metadata, package: &Package, args: &CargoArgs) -> Vec<String> {
    if let Some(node) = metadata
        .resolve
        .as_ref()
        .and_then(|r| r.nodes.iter().find(|n| n.id == package.id))
    {
        return node.features.iter().map(|f| f.to_string()).collect();
    }
    let mut todo: Vec<String> = if args.all_features {
        package.features.keys().cloned().collect()
    } else {
        args.features()
    };
    if !args.no_default_features && package.features.contains_key("default") {
        todo.push("default".into());
    }
    let mut on = std::collections::BTreeSet::new();
    while let Some(f) = todo.pop() {
        if package.features.contains_key(&f) && on.insert(f.clone()) {
            todo.extend(package.features[&f].iter().cloned());
        }
    }
    on.into_iter().collect()
}

fn run_cargo_metadata(args: &CargoArgs, resolve: bool) -> Result<Metadata> {
    let mut cmd = MetadataCommand::new();
    if let Some(p) = &args.manifest_path {
        if !p.exists() {
            bail!(
                "manifest {} does not exist; pass --manifest-path the path of a Cargo.toml",
                p.display()
            );
        }
        cmd.manifest_path(p);
    }
    if args.all_features {
        cmd.features(CargoOpt::AllFeatures);
    }
    if args.no_default_features {
        cmd.features(CargoOpt::NoDefaultFeatures);
    }
    let feats = args.features();
    if !feats.is_empty() {
        cmd.features(CargoOpt::SomeFeatures(feats));
    }
    let other = args.lock_flags();
    cmd.other_options(other);
    if !resolve {
        cmd.no_deps();
    }
    cmd.exec().map_err(|e| {
        let (text, at) = match e {
            cargo_metadata::Error::CargoMetadata { stderr } => cargo_error(&stderr),
            other => (other.to_string(), None),
        };
        match at {
            // cargo names the file relative to the directory it ran in, which is ours.
            Some(at) => {
                let mut parts = at.rsplitn(3, ':');
                let (col, line, file) = (parts.next(), parts.next(), parts.next());
                let at = match (file.map(std::fs::canonicalize), line, col) {
                    (Some(Ok(file)), Some(line), Some(col)) => {
                        format!("{}:{line}:{col}", file.display())
                    }
                    _ => at,
                };
                anyhow::anyhow!("cargo metadata failed: {text} at {at}; fix the manifest there")
            }
            None => anyhow::anyhow!("cargo metadata failed: {text}{}", metadata_remedy(&text)),
        }
    })
}

/// Cargo's error as one line, keeping where it is: cargo prints a manifest's syntax error over
/// several lines, the file and line:column on one (` --> Cargo.toml:3:9`, or `failed to parse
/// manifest at `PATH`` and `TOML parse error at line 3, column 9` in older versions), the
/// message on another. Gives the message and, for such an error, FILE:LINE:COLUMN.
fn cargo_error(stderr: &str) -> (String, Option<String>) {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    // A line of a quoted source snippet: `3 | name = "x`, `|`, `^`.
    let snippet = |l: &str| {
        l.starts_with('|')
            || l.starts_with('^')
            || l.split_once('|')
                .is_some_and(|(n, _)| n.trim().chars().all(|c| c.is_ascii_digit()))
    };
    let Some(first) = lines.iter().position(|l| l.starts_with("error")) else {
        let first = lines.first().map_or("cargo metadata failed", |l| l);
        return (first.to_string(), None);
    };
    let mut message = lines[first].trim_start_matches("error:").trim().to_string();
    let rest = &lines[first + 1..];
    let arrow = rest
        .iter()
        .position(|l| l.starts_with("--> "))
        .map(|i| (i, rest[i].trim_start_matches("--> ").trim().to_string()));
    if let Some((i, at)) = arrow {
        // ` --> FILE:LINE:COL` (cargo ≥ 1.80): lines between the error and the arrow add to it.
        for extra in &rest[..i] {
            message.push_str(": ");
            message.push_str(extra);
        }
        return (message, Some(at));
    }
    let toml = rest
        .iter()
        .position(|l| l.starts_with("TOML parse error at line "));
    if let Some(i) = toml {
        let manifest = message
            .split_once('`')
            .and_then(|(_, r)| r.rsplit_once('`'))
            .map(|(p, _)| p.to_string());
        let pos = rest[i]
            .trim_start_matches("TOML parse error at line ")
            .split_once(", column ")
            .map(|(l, c)| format!("{}:{}", l.trim(), c.trim()));
        let what: Vec<&str> = rest[i + 1..]
            .iter()
            .copied()
            .filter(|l| !snippet(l))
            .collect();
        if let (Some(manifest), Some(pos)) = (manifest, pos) {
            let what = if what.is_empty() {
                "syntax error".to_string()
            } else {
                what.join(": ")
            };
            return (what, Some(format!("{manifest}:{pos}")));
        }
    }
    // Other errors: every line cargo gave (its reasons, the candidates it saw, its own
    // `help:`), on one line.
    for line in rest
        .iter()
        .filter(|l| **l != "Caused by:" && !snippet(l) && !l.starts_with("warning:"))
    {
        message.push_str(": ");
        message.push_str(line.trim_start_matches("error:").trim());
    }
    (message, None)
}

/// What to do about a `cargo metadata` failure that is not in a manifest, when cargo's words
/// (`text`) show a cause the tool knows; nothing when cargo's own lines are the whole story.
fn metadata_remedy(text: &str) -> String {
    if text.contains("could not find `Cargo.toml`") {
        return "; run this inside a Cargo project or pass --manifest-path".into();
    }
    // `failed to select a version for the requirement `NAME = "^1.0.10"` (locked to 1.0.11)`:
    // Cargo.lock names a version the registry's index does not have (yanked, or an index
    // that is older than the lock).
    if let Some(rest) = text
        .split("failed to select a version for the requirement `")
        .nth(1)
        && text.contains("(locked to ")
        && let Some(name) = rest.split([' ', '=', '`']).next().filter(|n| !n.is_empty())
    {
        return format!(
            "; Cargo.lock names a version of {name} that the registry does not have: run `cargo update -p {name}` (it picks one the registry has), then run cargo containerize again"
        );
    }
    if text.contains("does not contain this feature") || text.contains("does not have the feature")
    {
        return "; check the names given with --features against the package's [features] table and its optional dependencies".into();
    }
    String::new()
}

fn select_package<'a>(metadata: &'a Metadata, spec: Option<&str>) -> Result<&'a Package> {
    let members: Vec<&Package> = metadata.workspace_packages();
    if let Some(spec) = spec {
        let name = spec.split(['@', ':']).next().unwrap_or(spec);
        return members
            .iter()
            .copied()
            .find(|p| p.name.as_str() == name)
            .with_context(|| {
                format!(
                    "package `{spec}` is not a member of the workspace; members: {}",
                    members
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
    }
    if let Some(root) = metadata.root_package() {
        return Ok(root);
    }
    let with_bins: Vec<&Package> = members
        .iter()
        .copied()
        .filter(|p| p.targets.iter().any(|t| t.kind.contains(&TargetKind::Bin)))
        .collect();
    match with_bins.as_slice() {
        [one] => Ok(one),
        [] => {
            bail!("no package in this workspace has a binary target; add a [[bin]] or src/main.rs")
        }
        many => bail!(
            "this workspace has several packages with binaries ({}); choose one with -p/--package",
            many.iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn select_bin(
    package: &Package,
    bins: &[String],
    bins_off: &[(String, Vec<String>)],
    cli: Option<&str>,
    setting: Option<&str>,
) -> Result<String> {
    let list = || bins.join(", ");
    let needs = |bin: &str| {
        bins_off
            .iter()
            .find(|(b, _)| b == bin)
            .map(|(_, missing)| missing.join(","))
    };
    if let Some(want) = cli.or(setting) {
        if bins.iter().any(|b| b == want) {
            if let Some(missing) = needs(want) {
                bail!(
                    "bin `{want}` of package `{}` needs feature(s) `{missing}` (its required-features), which are off; add `--features {missing}`",
                    package.name
                );
            }
            return Ok(want.to_string());
        }
        if bins.is_empty() {
            bail!(
                "no bin target named `{want}`: package `{}` has no binary targets; add src/main.rs or a [[bin]]",
                package.name
            );
        }
        bail!(
            "no bin target named `{want}` in package `{}`; available bins: {}",
            package.name,
            list()
        );
    }
    // What cargo would build with these features.
    let buildable: Vec<&String> = bins.iter().filter(|b| needs(b).is_none()).collect();
    match (bins, buildable.as_slice()) {
        ([], _) => bail!(
            "package `{}` has no binary target; add src/main.rs or a [[bin]] section",
            package.name
        ),
        (_, []) => {
            let (bin, missing) = &bins_off[0];
            bail!(
                "no binary of package `{}` can be built with the features on (each needs features that are off: {}); add `--features {missing}` to build bin `{bin}`",
                package.name,
                bins_off
                    .iter()
                    .map(|(b, m)| format!("bin `{b}` needs `{}`", m.join(",")))
                    .collect::<Vec<_>>()
                    .join("; "),
                missing = missing.join(",")
            )
        }
        (_, [one]) => Ok((*one).clone()),
        (_, many) => {
            if let Some(d) = &package.default_run
                && many.contains(&d)
            {
                return Ok(d.clone());
            }
            // Several can be built: the one named like the package is its main program.
            if let Some(b) = many.iter().find(|b| ***b == *package.name) {
                return Ok((*b).clone());
            }
            bail!(
                "package `{}` has several binaries ({}); choose one with --bin NAME or `bin = \"NAME\"` in [package.metadata.containerize]",
                package.name,
                list()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{cargo_error, metadata_remedy};

    #[test]
    fn a_lock_naming_a_missing_version_keeps_cargos_lines_and_names_cargo_update() {
        // cargo 1.95 on tealdeer 1.9.1, whose lock names webpki-roots 1.0.11.
        let stderr = "error: failed to select a version for the requirement `webpki-roots = \"^1.0.10\"` (locked to 1.0.11)\ncandidate versions found which didn't match: 1.0.10, 1.0.9\nlocation searched: crates.io index\nrequired by package `ureq v3.1.2`\n    ... which satisfies dependency `ureq = \"^3\"` of package `tealdeer v1.9.1`\n";
        let (text, at) = cargo_error(stderr);
        assert_eq!(at, None);
        assert!(
            text.starts_with("failed to select a version for the requirement `webpki-roots")
                && text.contains("candidate versions found which didn't match: 1.0.10, 1.0.9")
                && text.contains("of package `tealdeer v1.9.1`")
                && !text.contains('\n'),
            "{text}"
        );
        let remedy = metadata_remedy(&text);
        assert!(
            remedy.contains("`cargo update -p webpki-roots`"),
            "{remedy}"
        );
        assert!(!remedy.contains("--manifest-path"), "{remedy}");
        assert!(
            metadata_remedy("could not find `Cargo.toml` in `/x` or any parent directory")
                .contains("--manifest-path")
        );
        assert_eq!(metadata_remedy("something cargo explains itself"), "");
    }

    #[test]
    fn manifest_syntax_errors_keep_file_line_and_column() {
        // cargo 1.95
        let new = "error: invalid basic string, expected `\"`\n --> app/Cargo.toml:6:13\n  |\n6 | user = \"1000\n  |             ^\n";
        assert_eq!(
            cargo_error(new),
            (
                "invalid basic string, expected `\"`".into(),
                Some("app/Cargo.toml:6:13".into())
            )
        );
        // cargo before 1.80
        let old = "error: failed to parse manifest at `/p/Cargo.toml`\n\nCaused by:\n  TOML parse error at line 6, column 13\n    |\n  6 | user = \"1000\n    |             ^\n  invalid basic string\n";
        assert_eq!(
            cargo_error(old),
            (
                "invalid basic string".into(),
                Some("/p/Cargo.toml:6:13".into())
            )
        );
        let other = "error: could not find `Cargo.toml` in `/x` or any parent directory\n";
        assert_eq!(
            cargo_error(other),
            (
                "could not find `Cargo.toml` in `/x` or any parent directory".into(),
                None
            )
        );
    }
}
