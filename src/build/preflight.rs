//! The preflight: before anything compiles, what happens to each package of the resolved graph
//! that links a C library (or needs a host program to build), for one musl target. Built from
//! source by its own build script, handled by the tool (OpenSSL), provided by the user, or not
//! static-linkable as configured: then the build stops before it starts, with the fix.
//!
//! [`RULES`] is the one table of what the tool knows; `cargo containerize doctor` prints it per
//! crate, and README.md's "C dependencies" section is this table in words.

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
        library: "the MySQL client library",
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
                "{first} (and {} more crate(s) cannot link statically; `cargo containerize doctor` lists them)",
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
        return Verdict::Unknown;
    };
    if let Some(f) = rule.system_features.iter().find(|f| on(dep, f)) {
        return Verdict::Refused(format!(
            "{} {} links the system's {} (feature `{f}` is on), which cannot be linked statically for {triple}; turn off the `{f}` feature (in the Cargo.toml line of the crate that enables it)",
            dep.name, dep.version, rule.library
        ));
    }
    let source = rule.source_features.iter().find(|f| on(dep, f));
    if source.is_none() && !rule.source_by_default {
        let feature = rule.source_features.first().copied().unwrap_or("bundled");
        return Verdict::Refused(format!(
            "{} {} links the system's {}, which cannot be linked statically for {triple}; build it from source with {}",
            dep.name,
            dep.version,
            rule.library,
            cargo_add(dep, feature)
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

/// The verdict on every known or `*-sys` crate of the graph, for `triple`.
pub fn run(project: &Project, triple: &str) -> Report {
    let mut report = Report::default();
    for dep in &project.native {
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
        report.findings.push(Finding {
            name: dep.name.clone(),
            version: dep.version.clone(),
            verdict,
        });
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
        }
    }

    fn verdicts(deps: Vec<NativeDep>) -> Report {
        run(&Project::for_test(deps), AMD64)
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
            dep("mystery-sys", "1.0.0", &[]),
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
            err.contains("and 1 more crate(s)") && err.contains("doctor"),
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
    fn every_crate_of_the_table_is_one_the_graph_walk_records() {
        for rule in RULES {
            assert!(
                crate::metadata::is_native(rule.name),
                "{} is in RULES but metadata::is_native leaves it out of Project.native",
                rule.name
            );
        }
    }
}
