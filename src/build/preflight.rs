//! The preflight: before anything compiles, what happens to each package of the resolved graph
//! that links a C library (or needs a host program to build), for one musl target. Built from
//! source by its own build script, handled by the tool (OpenSSL), provided by the user, or not
//! static-linkable as configured: then the build stops before it starts, with the fix.
//!
//! It also stops a build that Cargo.lock alone shows will fail: a locked version that no
//! longer compiles with this Rust ([`BROKEN`]), or a package whose `rust-version` is newer than
//! the toolchain.
//!
//! [`RULES`] is the one table of what the tool knows about C libraries, [`BROKEN`] the one
//! table of known incompatibilities; `cargo containerize doctor` prints the verdicts per crate,
//! and README.md's "C dependencies" section is these tables in words.

use crate::build::openssl::{self, Decision};
use crate::metadata::{NativeDep, Project};
use anyhow::{Result, bail};
use std::ffi::OsString;

/// What the tool knows about one crate.
struct Rule {
    name: &'static str,
    /// What it links, for messages.
    library: &'static str,
    /// Features that build the library from source and link it statically.
    source_features: &'static [&'static str],
    /// Without one of those: whether it builds from source anyway (pkg-config refuses to
    /// cross-compile to musl, and the crate then builds its bundled copy) or needs a system
    /// library, which a musl build cannot link.
    source_by_default: bool,
    /// Features that make it link a system library whatever else is on.
    system_features: &'static [&'static str],
    /// A variable the tool sets for the build so that the crate builds its bundled copy and
    /// links it statically, even where pkg-config would answer.
    force_env: Option<(&'static str, &'static str)>,
    /// Host programs it needs: (feature that needs it, or "" for always; program; Debian package).
    needs: &'static [(&'static str, &'static str, &'static str)],
    /// The first version that needs them (older ones bundled them), or "" for all.
    needs_from: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        name: "libsqlite3-sys",
        library: "SQLite",
        source_features: &[
            "bundled",
            "bundled-sqlcipher",
            "bundled-sqlcipher-vendored-openssl",
        ],
        source_by_default: false,
        system_features: &[],
        force_env: None,
        needs: &[],
        needs_from: "",
    },
    Rule {
        name: "pq-sys",
        library: "libpq",
        source_features: &["bundled", "bundled_without_openssl"],
        source_by_default: false,
        system_features: &[],
        force_env: None,
        needs: &[],
        needs_from: "",
    },
    Rule {
        name: "mysqlclient-sys",
        library: "MySQL client library",
        source_features: &["bundled"],
        source_by_default: false,
        system_features: &[],
        force_env: None,
        needs: &[("bundled", "cmake", "cmake")],
        needs_from: "",
    },
    Rule {
        name: "libz-sys",
        library: "zlib",
        source_features: &["static", "zlib-ng"],
        source_by_default: true,
        system_features: &[],
        force_env: Some(("LIBZ_SYS_STATIC", "1")),
        needs: &[("zlib-ng", "cmake", "cmake")],
        needs_from: "",
    },
    Rule {
        name: "curl-sys",
        library: "libcurl",
        source_features: &["static-curl"],
        source_by_default: true,
        system_features: &[],
        // Without `static-curl` it asks pkg-config first, which may answer with the build
        // machine's glibc libcurl; pkg-config-rs skips a library named in <LIB>_NO_PKG_CONFIG.
        force_env: Some(("LIBCURL_NO_PKG_CONFIG", "1")),
        needs: &[],
        needs_from: "",
    },
    Rule {
        name: "libssh2-sys",
        library: "libssh2",
        source_features: &[],
        source_by_default: true,
        system_features: &[],
        force_env: None,
        needs: &[],
        needs_from: "",
    },
    Rule {
        name: "zstd-sys",
        library: "zstd",
        source_features: &[],
        source_by_default: true,
        system_features: &["pkg-config"],
        force_env: None,
        needs: &[],
        needs_from: "",
    },
    Rule {
        name: "bzip2-sys",
        library: "bzip2",
        source_features: &["static"],
        source_by_default: true,
        system_features: &[],
        force_env: Some(("BZIP2_NO_PKG_CONFIG", "1")),
        needs: &[],
        needs_from: "",
    },
    Rule {
        name: "lzma-sys",
        library: "liblzma",
        source_features: &["static"],
        source_by_default: true,
        system_features: &[],
        force_env: Some(("LZMA_API_STATIC", "1")),
        needs: &[],
        needs_from: "",
    },
    Rule {
        name: "aws-lc-sys",
        library: "AWS-LC",
        source_features: &[],
        source_by_default: true,
        system_features: &[],
        force_env: None,
        needs: &[],
        needs_from: "",
    },
    Rule {
        name: "aws-lc-fips-sys",
        library: "AWS-LC (FIPS)",
        source_features: &[],
        source_by_default: true,
        system_features: &[],
        force_env: None,
        needs: &[("", "cmake", "cmake"), ("", "go", "golang-go")],
        needs_from: "",
    },
    Rule {
        name: "rdkafka-sys",
        library: "librdkafka",
        source_features: &["cmake-build"],
        source_by_default: true,
        system_features: &["dynamic-linking"],
        force_env: None,
        needs: &[("cmake-build", "cmake", "cmake"), ("", "make", "make")],
        needs_from: "",
    },
    Rule {
        name: "libmimalloc-sys",
        library: "mimalloc",
        source_features: &[],
        source_by_default: true,
        system_features: &[],
        force_env: None,
        needs: &[],
        needs_from: "",
    },
    Rule {
        name: "libgit2-sys",
        library: "libgit2",
        // Without `vendored` it asks pkg-config first, which refuses to answer for a musl
        // target, and then builds its bundled libgit2.
        source_features: &["vendored"],
        source_by_default: true,
        system_features: &[],
        force_env: None,
        needs: &[],
        needs_from: "",
    },
    Rule {
        name: "prost-build",
        library: "(none: it runs protoc at build time)",
        source_features: &[],
        source_by_default: true,
        system_features: &[],
        force_env: None,
        needs: &[("", "protoc", "protobuf-compiler")],
        // prost-build shipped protoc binaries before 0.11.
        needs_from: "0.11.0",
    },
];

/// What happens to one crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its build script builds the C library from source and links it statically.
    Source(String),
    /// The tool provides it (OpenSSL).
    Tool(String),
    /// The user provides it (a variable points at their own build).
    User(String),
    /// It cannot be linked statically as configured: the one-line error, with the fix.
    Refused(String),
    /// A -sys crate the tool knows nothing about: the build will tell.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub name: String,
    pub version: String,
    pub verdict: Verdict,
}

/// The preflight's answer for one target.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// Variables for the build (those that make crates build their bundled copy).
    pub env: Vec<(String, OsString)>,
}

impl Report {
    /// The first refusal as the error that stops the build, naming how many more there are.
    pub fn check(&self) -> Result<()> {
        let refused: Vec<&String> = self
            .findings
            .iter()
            .filter_map(|f| match &f.verdict {
                Verdict::Refused(why) => Some(why),
                _ => None,
            })
            .collect();
        match refused.as_slice() {
            [] => Ok(()),
            [one] => bail!("{one}"),
            [first, rest @ ..] => bail!(
                "{first} (and {} more problem(s); `cargo containerize doctor` lists them)",
                rest.len()
            ),
        }
    }
}

fn on(dep: &NativeDep, feature: &str) -> bool {
    dep.features.iter().any(|f| f == feature)
}

/// `cargo add` for a crate with a feature, at a requirement compatible with the version in the
/// graph (cargo unifies the feature into the one the graph already has).
fn cargo_add(dep: &NativeDep, feature: &str) -> String {
    format!(
        "`cargo add {}@{} --features {feature}`",
        dep.name, dep.version
    )
}

/// How to turn on one of `features` of `dep`, least intrusive first: a feature of the package
/// being built that already turns it on (diesel_cli's `sqlite-bundled`), else cargo's
/// `--features DEP/FEATURE` for the direct dependency that has one turning it on (rusqlite's
/// `bundled`) or when `dep` is itself a direct dependency, else an edit (`cargo add`).
fn feature_remedy(project: &Project, dep: &NativeDep, features: &[&str]) -> String {
    let package = &project.package;
    let wants = |value: &str| {
        features
            .iter()
            .any(|f| value == format!("{}/{f}", dep.name) || value == format!("{}?/{f}", dep.name))
    };
    // Each of the package's features with everything it turns on, the smallest first (the
    // most direct way to the dependency's feature).
    let mut own: Vec<(usize, &String)> = package
        .features
        .keys()
        .filter_map(|name| {
            let mut todo = vec![name];
            let mut seen = std::collections::BTreeSet::new();
            let mut hit = false;
            while let Some(f) = todo.pop() {
                if !seen.insert(f.clone()) {
                    continue;
                }
                for v in package.features.get(f).into_iter().flatten() {
                    hit |= wants(v);
                    if package.features.contains_key(v) {
                        todo.push(v);
                    }
                }
            }
            hit.then_some((seen.len(), name))
        })
        .collect();
    own.sort();
    let feature = features.first().copied().unwrap_or("bundled");
    if let Some((_, name)) = own.first() {
        return format!(
            "package `{}`'s own feature `{name}` turns on {}'s `{feature}`: add `--features {name}` to the cargo containerize command",
            package.name, dep.name
        );
    }
    // A feature of a direct dependency that turns it on (rusqlite's `bundled`), named the
    // same as the feature first.
    let via = dep
        .enabled_via
        .iter()
        .filter(|(_, _, f)| features.contains(&f.as_str()))
        .min_by_key(|(_, their, f)| their != f);
    if let Some((direct, their, _)) = via {
        return format!(
            "its feature `{feature}` is turned on by {direct}'s feature `{their}`: add `--features {direct}/{their}` to the cargo containerize command"
        );
    }
    let direct = package
        .dependencies
        .iter()
        .find(|d| d.name == dep.name && d.kind != cargo_metadata::DependencyKind::Development);
    if let Some(d) = direct {
        return format!(
            "add `--features {}/{feature}` to the cargo containerize command",
            d.rename.as_deref().unwrap_or(&d.name)
        );
    }
    cargo_add(dep, feature)
}

/// Whether version `v` is older than `from` (both `X.Y.Z`; false when `from` is empty).
fn older(v: &str, from: &str) -> bool {
    let parse = |s: &str| -> Vec<u64> {
        s.split(['-', '+'])
            .next()
            .unwrap_or_default()
            .split('.')
            .filter_map(|n| n.parse().ok())
            .collect()
    };
    !from.is_empty() && parse(v) < parse(from)
}

fn has_program(program: &str) -> bool {
    which::which(program).is_ok()
}

fn verdict(project: &Project, dep: &NativeDep, triple: &str) -> Verdict {
    if dep.name == openssl::OPENSSL_SYS {
        return match openssl::decide(project, triple) {
            Decision::Absent => Verdict::Unknown,
            Decision::Vendored => match openssl::check_tools() {
                Ok(()) => Verdict::Source("its `vendored` feature builds OpenSSL".into()),
                Err(e) => Verdict::Refused(format!("openssl-sys (feature `vendored`): {e}")),
            },
            Decision::OtherBackend(f) => Verdict::Source(format!(
                "feature `{f}` binds a library its own crate builds, not OpenSSL"
            )),
            Decision::UserDir(var) => Verdict::User(format!("OpenSSL from ${var}")),
            Decision::Off => Verdict::Refused(format!(
                "openssl-sys {} needs OpenSSL for {triple}, and openssl = \"off\" with no OPENSSL_DIR set; remove openssl = \"off\" (the tool then builds a static OpenSSL), or {}, or set {}_OPENSSL_DIR to a static OpenSSL built for {triple}",
                dep.version,
                cargo_add(dep, "vendored"),
                triple.replace('-', "_").to_uppercase()
            )),
            // perl and make are checked when OpenSSL is built (not when it is cached), still
            // before anything of the crate compiles.
            Decision::Build { .. } => {
                Verdict::Tool("static OpenSSL built by cargo-containerize (once per target)".into())
            }
        };
    }
    let Some(rule) = RULES.iter().find(|r| r.name == dep.name) else {
        return unknown_crate(dep, triple);
    };
    if let Some(f) = rule.system_features.iter().find(|f| on(dep, f)) {
        return Verdict::Refused(format!(
            "{} {} links the system's {} (feature `{f}` is on), which cannot be linked statically for {triple}; turn off the `{f}` feature (in the Cargo.toml line of the crate that enables it)",
            dep.name, dep.version, rule.library
        ));
    }
    let source = rule.source_features.iter().find(|f| on(dep, f));
    if source.is_none() && !rule.source_by_default {
        return Verdict::Refused(format!(
            "{} {} links the system's {}, which cannot be linked statically for {triple}; build it from source: {}",
            dep.name,
            dep.version,
            rule.library,
            feature_remedy(project, dep, rule.source_features)
        ));
    }
    let needs = if older(&dep.version, rule.needs_from) {
        &[][..]
    } else {
        rule.needs
    };
    for (feature, program, package) in needs {
        if (feature.is_empty() || on(dep, feature)) && !has_program(program) {
            if *program == "protoc" && std::env::var_os("PROTOC").is_some() {
                continue;
            }
            return Verdict::Refused(format!(
                "{} {} needs `{program}` on the build machine{}, and it is not on PATH; install it (`apt-get install {package}`)",
                dep.name,
                dep.version,
                if feature.is_empty() {
                    String::new()
                } else {
                    format!(" (feature `{feature}`)")
                }
            ));
        }
    }
    Verdict::Source(match source {
        Some(f) => format!("feature `{f}` builds {} from source", rule.library),
        None if rule.name == "prost-build" => "protoc found".into(),
        None => format!("builds its bundled {}", rule.library),
    })
}

/// Build-dependencies that compile C or C++ sources a crate carries.
const BUILDERS: &[&str] = &["cc", "cmake", "autotools", "cxx-build", "nasm-rs"];
/// Build-dependencies that look for a library installed on the build machine.
const PROBES: &[&str] = &["pkg-config", "system-deps", "vcpkg", "pkgconf"];

fn builds_c(dep: &NativeDep) -> bool {
    dep.build_deps
        .iter()
        .any(|d| BUILDERS.contains(&d.as_str()) || d.ends_with("-src"))
}

fn probes(dep: &NativeDep) -> bool {
    dep.build_deps.iter().any(|d| PROBES.contains(&d.as_str()))
}

/// Whether the preflight (and `doctor`) has anything to say about a package with a build
/// script: one the tables know, or one that declares a native library or whose build script
/// can compile or look for one. (A build script that only sets cfg flags, as dirs-sys's and
/// serde's do, links nothing.)
pub fn concerns(dep: &NativeDep) -> bool {
    RULES.iter().any(|r| r.name == dep.name)
        || dep.name == openssl::OPENSSL_SYS
        || crate::metadata::HOST_TOOL_CRATES.contains(&dep.name.as_str())
        || dep.links.is_some()
        || builds_c(dep)
        || probes(dep)
}

/// The variable pkg-config-rs reads for `triple` only: set, it points pkg-config at the user's
/// libraries built for that target.
fn pkg_config_path_var(triple: &str) -> String {
    format!("PKG_CONFIG_PATH_{}", triple.replace('-', "_"))
}

/// A crate the table does not know, judged by its build script's build-dependencies.
fn unknown_crate(dep: &NativeDep, triple: &str) -> Verdict {
    let lib = match &dep.links {
        Some(l) => format!("the C library `{l}`"),
        None => "its C library".to_string(),
    };
    if probes(dep) && !builds_c(dep) {
        // It can only find a library that is installed, and the build machine's are built
        // for glibc: only a library the user built for the target can be linked.
        let var = pkg_config_path_var(triple);
        if std::env::var_os(&var).is_some() {
            return Verdict::User(format!("{lib} through pkg-config, from ${var}"));
        }
        return Verdict::Refused(format!(
            "{} {} looks for {lib} on the build machine (its build script uses {}) and has no way to build it from source, and the build machine's libraries are not built for {triple}; build that library as a static library for {triple} (e.g. with musl-gcc) and set {var} to the directory of its .pc file",
            dep.name,
            dep.version,
            dep.build_deps
                .iter()
                .find(|d| PROBES.contains(&d.as_str()))
                .map(String::as_str)
                .unwrap_or("pkg-config"),
        ));
    }
    if builds_c(dep) && !probes(dep) && dep.links.is_none() {
        return Verdict::Source("its build script compiles the C code it carries".into());
    }
    Verdict::Unknown
}

/// A version known not to compile with a Rust release and later, and the version that fixed it.
struct Broken {
    name: &'static str,
    /// Versions older than this one are broken.
    fixed_in: &'static str,
    /// From this rustc release on.
    rust_from: &'static str,
    /// The features that compile the broken code: each inner list is "one of these", and
    /// every list must hold (empty: always).
    features: &'static [&'static [&'static str]],
    why: &'static str,
}

/// Known incompatibilities Cargo.lock shows before anything compiles. (`diagnose` still
/// recognises them in cargo's output, for a toolchain the tool could not ask.)
const BROKEN: &[Broken] = &[Broken {
    name: "time",
    fixed_in: "0.3.35",
    rust_from: "1.80.0",
    // format_description::parse (`collect::<Result<Box<_>, _>>()`), compiled with `alloc`
    // and `formatting` or `parsing`.
    features: &[&["alloc"], &["formatting", "parsing"]],
    why: "type inference, error E0282",
}];

/// The release of `rustc -vV` (`release: 1.95.0`).
pub fn rustc_release(version_output: &str) -> Option<String> {
    version_output
        .lines()
        .find_map(|l| l.strip_prefix("release: "))
        .map(|r| r.trim().to_string())
}

/// The preflight's findings from Cargo.lock alone, for the packages built for `triple`.
fn lock_findings(project: &Project, triple: &str, rustc: &str) -> Vec<Finding> {
    let built: Vec<&crate::metadata::LockedPackage> = project
        .locked
        .iter()
        .filter(|p| p.host || p.targets.iter().any(|t| t == triple))
        .collect();
    let mut findings = Vec::new();
    for p in &built {
        for b in BROKEN.iter().filter(|b| b.name == p.name) {
            let compiled = b
                .features
                .iter()
                .all(|any| any.iter().any(|f| p.features.iter().any(|on| on == f)));
            if compiled && older(&p.version, b.fixed_in) && !older(rustc, b.rust_from) {
                findings.push(Finding {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    verdict: Verdict::Refused(format!(
                        "{} {} (locked in Cargo.lock) does not compile with rustc {} and later ({}; fixed in {} {}), and this toolchain is rustc {rustc}; run `cargo update -p {}` to lock a fixed version, then run cargo containerize again",
                        p.name,
                        p.version,
                        b.rust_from.trim_end_matches(".0"),
                        b.why,
                        p.name,
                        b.fixed_in,
                        p.name
                    )),
                });
            }
        }
    }
    let too_new: Vec<&&crate::metadata::LockedPackage> = built
        .iter()
        .filter(|p| p.rust_version.as_deref().is_some_and(|rv| older(rustc, rv)))
        .collect();
    let updatable: Vec<&str> = too_new
        .iter()
        .filter(|p| p.registry)
        .map(|p| p.name.as_str())
        .collect();
    for p in &too_new {
        let rv = p.rust_version.as_deref().unwrap_or_default();
        let older_versions = if p.registry {
            format!(
                ", or lock versions that support rustc {rustc}: run `CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS=fallback cargo update {}` (cargo then picks the newest version of each that this toolchain can build)",
                updatable.join(" ")
            )
        } else {
            String::new()
        };
        findings.push(Finding {
            name: p.name.clone(),
            version: p.version.clone(),
            verdict: Verdict::Refused(format!(
                "{} {} needs rustc {rv} or newer (its rust-version) and this toolchain is rustc {rustc}; build with a newer toolchain (`rustup update`, or a rust-toolchain.toml naming {rv}){older_versions}",
                p.name, p.version
            )),
        });
    }
    findings
}

/// The verdict on every crate of the graph that builds or links native code, and on what
/// Cargo.lock shows, for `triple`, with the toolchain that builds in the package.
pub fn run(project: &Project, triple: &str, shell: &crate::util::shell::Shell) -> Report {
    let rustc = super::invocation::rustc_version(&project.package_root, shell)
        .ok()
        .and_then(|v| rustc_release(&v));
    run_with(project, triple, rustc.as_deref())
}

/// [`run`] with the toolchain's release given (None: the lock checks are left to cargo).
pub fn run_with(project: &Project, triple: &str, rustc: Option<&str>) -> Report {
    let mut report = Report::default();
    for dep in project.native.iter().filter(|d| concerns(d)) {
        // A library matters where it is linked; a host program wherever it runs.
        let linked = dep.targets.iter().any(|t| t == triple);
        let runs_here = dep.host && crate::metadata::HOST_TOOL_CRATES.contains(&dep.name.as_str());
        if !(linked || runs_here) {
            continue;
        }
        let verdict = verdict(project, dep, triple);
        if matches!(verdict, Verdict::Source(_))
            && let Some(rule) = RULES.iter().find(|r| r.name == dep.name)
            && let Some((var, value)) = rule.force_env
            && std::env::var_os(var).is_none()
            && !report.env.iter().any(|(k, _)| k == var)
        {
            report.env.push((var.to_string(), value.into()));
        }
        // The user's libraries for this target: pkg-config-rs refuses to answer for another
        // target unless told it may.
        let allow = format!("PKG_CONFIG_ALLOW_CROSS_{}", triple.replace('-', "_"));
        if matches!(&verdict, Verdict::User(how) if how.contains("pkg-config"))
            && std::env::var_os(&allow).is_none()
            && !report.env.iter().any(|(k, _)| *k == allow)
        {
            report.env.push((allow, "1".into()));
        }
        report.findings.push(Finding {
            name: dep.name.clone(),
            version: dep.version.clone(),
            verdict,
        });
    }
    if let Some(rustc) = rustc {
        report
            .findings
            .extend(lock_findings(project, triple, rustc));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMD64: &str = "x86_64-unknown-linux-musl";

    fn dep(name: &str, version: &str, features: &[&str]) -> NativeDep {
        NativeDep {
            name: name.into(),
            version: version.into(),
            features: features.iter().map(|f| f.to_string()).collect(),
            deps: vec![],
            targets: vec![AMD64.into()],
            host: false,
            links: None,
            build_deps: vec!["cc".into()],
            enabled_via: vec![],
        }
    }

    fn verdicts(deps: Vec<NativeDep>) -> Report {
        run_with(&Project::for_test(deps), AMD64, None)
    }

    #[test]
    fn the_table_decides_per_feature() {
        let r = verdicts(vec![
            dep("bzip2-sys", "0.1.13", &[]),
            dep("curl-sys", "0.4.80", &[]),
            dep("libsqlite3-sys", "0.35.0", &["bundled"]),
            dep("libz-sys", "1.1.22", &[]),
            dep("zstd-sys", "2.0.15", &["pkg-config"]),
            dep("rdkafka-sys", "4.9.0", &["dynamic-linking"]),
            {
                let mut d = dep("mystery-sys", "1.0.0", &[]);
                d.links = Some("mystery".into());
                d
            },
        ]);
        let by = |name: &str| {
            r.findings
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.verdict.clone())
                .unwrap()
        };
        assert!(matches!(by("bzip2-sys"), Verdict::Source(_)));
        assert!(matches!(by("curl-sys"), Verdict::Source(_)));
        assert!(matches!(by("libsqlite3-sys"), Verdict::Source(how) if how.contains("bundled")));
        assert!(matches!(by("libz-sys"), Verdict::Source(_)));
        assert!(
            matches!(by("zstd-sys"), Verdict::Refused(why) if why.contains("`pkg-config` feature"))
        );
        assert!(
            matches!(by("rdkafka-sys"), Verdict::Refused(why) if why.contains("`dynamic-linking`"))
        );
        assert_eq!(by("mystery-sys"), Verdict::Unknown);
        let env: Vec<&str> = r.env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            env,
            [
                "BZIP2_NO_PKG_CONFIG",
                "LIBCURL_NO_PKG_CONFIG",
                "LIBZ_SYS_STATIC"
            ]
        );
        let err = r.check().unwrap_err().to_string();
        assert!(
            err.contains("and 1 more problem(s)") && err.contains("doctor"),
            "{err}"
        );
    }

    #[test]
    fn a_library_of_another_target_is_not_judged_for_this_one() {
        let mut d = dep("libsqlite3-sys", "0.35.0", &[]);
        d.targets = vec!["aarch64-unknown-linux-musl".into()];
        assert!(verdicts(vec![d]).findings.is_empty());
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(older("0.10.4", "0.11.0"));
        assert!(!older("0.11.0", "0.11.0"));
        assert!(!older("0.13.5", "0.11.0"));
        assert!(!older("0.1.0", ""));
    }

    #[test]
    fn every_rule_has_a_remedy_feature_when_it_can_refuse() {
        for r in RULES {
            assert!(
                r.source_by_default || !r.source_features.is_empty(),
                "{}: refuses without a feature to name",
                r.name
            );
        }
    }

    #[test]
    fn every_crate_of_the_table_is_listed_whatever_its_build_script_uses() {
        for rule in RULES {
            let mut d = dep(rule.name, "1.0.0", &[]);
            d.build_deps.clear();
            assert!(concerns(&d), "{} is in RULES but not listed", rule.name);
        }
    }

    #[test]
    fn mimalloc_and_libgit2_are_known_and_built_from_source() {
        let r = verdicts(vec![
            dep("libmimalloc-sys", "0.1.43", &[]),
            dep("libgit2-sys", "0.18.2+1.9.1", &[]),
        ]);
        for f in &r.findings {
            assert!(
                matches!(&f.verdict, Verdict::Source(how) if how.contains("bundled")),
                "{f:?}"
            );
        }
        assert_eq!(r.findings.len(), 2);
    }

    #[test]
    fn a_build_script_that_links_nothing_is_not_listed() {
        // dirs-sys, inotify-sys: bindings with no build script of consequence.
        let mut d = dep("dirs-sys", "0.5.0", &[]);
        d.build_deps.clear();
        assert!(verdicts(vec![d]).findings.is_empty());
    }

    #[test]
    fn an_unknown_crate_is_judged_by_its_build_dependencies() {
        let mut builds = dep("ring", "0.17.14", &[]);
        builds.build_deps = vec!["cc".into()];
        let mut probes = dep("libxml", "0.3.9", &[]);
        probes.build_deps = vec!["pkg-config".into(), "bindgen".into()];
        probes.links = Some("xml2".into());
        let mut both = dep("foo-sys", "1.0.0", &[]);
        both.build_deps = vec!["cc".into(), "pkg-config".into()];
        let r = verdicts(vec![builds, probes, both]);
        let by = |name: &str| {
            r.findings
                .iter()
                .find(|f| f.name == name)
                .unwrap()
                .verdict
                .clone()
        };
        assert!(matches!(by("ring"), Verdict::Source(_)));
        assert!(
            matches!(by("libxml"), Verdict::Refused(why)
                if why.starts_with("libxml 0.3.9 looks for the C library `xml2`")
                    && why.contains("PKG_CONFIG_PATH_x86_64_unknown_linux_musl")),
            "{:?}",
            by("libxml")
        );
        assert_eq!(by("foo-sys"), Verdict::Unknown);
    }

    fn locked(
        name: &str,
        version: &str,
        rust_version: Option<&str>,
    ) -> crate::metadata::LockedPackage {
        crate::metadata::LockedPackage {
            name: name.into(),
            version: version.into(),
            rust_version: rust_version.map(String::from),
            features: ["alloc", "std", "formatting"].map(String::from).to_vec(),
            registry: true,
            targets: vec![AMD64.into()],
            host: false,
        }
    }

    #[test]
    fn the_lock_shows_a_time_that_no_longer_compiles() {
        let mut p = Project::for_test(vec![]);
        p.locked = vec![locked("time", "0.3.29", Some("1.67.0"))];
        let err = run_with(&p, AMD64, Some("1.95.0"))
            .check()
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("time 0.3.29 (locked in Cargo.lock) does not compile with rustc 1.80")
                && err.contains("`cargo update -p time`"),
            "{err}"
        );
        // Rust before 1.80 compiles it; so does this one without the code that breaks.
        assert!(run_with(&p, AMD64, Some("1.79.0")).check().is_ok());
        p.locked[0].features = ["alloc", "std"].map(String::from).to_vec();
        assert!(run_with(&p, AMD64, Some("1.95.0")).check().is_ok());
        // A fixed version passes.
        p.locked = vec![locked("time", "0.3.35", None)];
        assert!(run_with(&p, AMD64, Some("1.95.0")).check().is_ok());
    }

    #[test]
    fn a_rust_version_newer_than_the_toolchain_names_both_ways_out() {
        let mut p = Project::for_test(vec![]);
        p.locked = vec![
            locked("a", "1.0.0", Some("1.96")),
            locked("b", "2.0.0", Some("1.97.1")),
            locked("c", "1.0.0", Some("1.95")),
        ];
        let r = run_with(&p, AMD64, Some("1.95.0"));
        assert_eq!(r.findings.len(), 2, "{:?}", r.findings);
        let err = r.check().unwrap_err().to_string();
        assert!(
            err.starts_with("a 1.0.0 needs rustc 1.96 or newer")
                && err.contains("rustup update")
                && err.contains(
                    "`CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS=fallback cargo update a b`"
                )
                && err.contains("and 1 more problem(s)"),
            "{err}"
        );
    }

    #[test]
    fn rustc_release_is_read_from_rustc_vv() {
        let vv = "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\nrelease: 1.95.0\nLLVM version: 20.1.8\n";
        assert_eq!(rustc_release(vv).as_deref(), Some("1.95.0"));
    }
}
