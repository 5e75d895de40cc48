//! After a failed cargo build: the common causes recognised in cargo's output, as one line
//! naming the crate, the cause and the fix, instead of "fix them".
//!
//! The build's stderr is streamed to the user as it comes and kept (its last few MiB) for this.

use crate::build::openssl::{self, Decision};
use crate::metadata::Project;

/// The crate whose build failed, as cargo names it: the last `failed to run custom build
/// command for `NAME vX`` or `could not compile `NAME``.
fn failing_crate(text: &str) -> Option<(String, Option<String>)> {
    let mut found = None;
    for line in text.lines() {
        if let Some(rest) = line
            .split("failed to run custom build command for `")
            .nth(1)
            && let Some(spec) = rest.split('`').next()
        {
            let mut parts = spec.split_whitespace();
            let name = parts.next().unwrap_or_default().to_string();
            let version = parts.next().map(|v| v.trim_start_matches('v').to_string());
            found = Some((name, version));
        } else if let Some(rest) = line.split("could not compile `").nth(1)
            && let Some(name) = rest.split('`').next()
        {
            found = Some((name.to_string(), None));
        }
    }
    found
}

/// Drops ANSI escape sequences (cargo colours its output on a terminal).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else if c == '\r' {
            out.push('\n');
        } else {
            out.push(c);
        }
    }
    out
}

/// A version written `X.Y.Z` as a comparable triple.
fn version(v: &str) -> Option<(u64, u64, u64)> {
    let mut p = v.split(['.', '-', '+']).map(|n| n.parse::<u64>().ok());
    Some((p.next()??, p.next()??, p.next()??))
}

/// One line for a failed build of `triple`, when its output shows a known cause.
pub fn diagnose(project: &Project, output: &str, triple: &str) -> Option<String> {
    diagnose_with(project, output, triple, &openssl::decide(project, triple))
}

/// What to do when openssl-sys found no OpenSSL for `triple`, given what was decided for it.
fn openssl_remedy(decision: &Decision, triple: &str) -> String {
    let upper = triple.replace('-', "_").to_uppercase();
    match decision {
        Decision::Off => format!(
            "remove openssl = \"off\" from [package.metadata.containerize] (the tool then builds a static OpenSSL), or enable openssl-sys's `vendored` feature, or set {upper}_OPENSSL_DIR to a static OpenSSL built for {triple}"
        ),
        Decision::UserDir(var) => format!(
            "{var} is set, so openssl-sys looks only there: point {upper}_OPENSSL_DIR at a static OpenSSL built for {triple} (not the build machine's glibc one), or unset {var} (the tool then builds a static OpenSSL), or enable openssl-sys's `vendored` feature"
        ),
        Decision::Build { .. } => format!(
            "the static OpenSSL the tool built was handed to it through {upper}_OPENSSL_DIR; enable openssl-sys's `vendored` feature instead, and report this at the tool's issue tracker"
        ),
        Decision::Absent | Decision::Vendored | Decision::OtherBackend(_) => format!(
            "enable openssl-sys's `vendored` feature, or set {upper}_OPENSSL_DIR to a static OpenSSL built for {triple}"
        ),
    }
}

/// [`diagnose`] with the OpenSSL decision for `triple` given (it shapes the remedy when
/// openssl-sys finds no OpenSSL).
fn diagnose_with(
    project: &Project,
    output: &str,
    triple: &str,
    openssl: &Decision,
) -> Option<String> {
    let text = strip_ansi(output);
    let failing = failing_crate(&text);
    let who = |fallback: &str| match &failing {
        Some((name, Some(v))) => format!("{name} {v}"),
        Some((name, None)) => name.clone(),
        None => fallback.to_string(),
    };

    // `time` before 0.3.35 no longer compiles on Rust 1.80 and later (type inference, E0282).
    if text.contains("E0282") && failing.as_ref().is_some_and(|(n, _)| n == "time") {
        let which = old_time_version(&text)
            .map(|v| format!("time {v}"))
            .unwrap_or_else(|| "the locked `time` crate (older than 0.3.35)".into());
        return Some(format!(
            "{which} does not compile with this Rust (error E0282, fixed in time 0.3.35); run `cargo update -p time` and build again"
        ));
    }
    if text.contains("Could not find directory of OpenSSL installation")
        || text.contains("Could not find openssl via pkg-config")
        || text.contains("OpenSSL include directory does not exist")
        || text.contains("OpenSSL library directory does not exist")
    {
        return Some(format!(
            "{} found no OpenSSL for {triple}; {}",
            who("openssl-sys"),
            openssl_remedy(openssl, triple)
        ));
    }
    if text.contains("pkg-config has not been configured to support cross-compilation") {
        return Some(format!(
            "{} looks for a system library with pkg-config, which has none built for {triple}; enable the crate's feature that builds the library from source if it has one (often `bundled`, `static` or `vendored`; `cargo containerize doctor` knows the common ones), else build the library as a static library for {triple} and set PKG_CONFIG_PATH_{} to the directory of its .pc file",
            who("a -sys crate"),
            triple.replace('-', "_")
        ));
    }
    if let Some(why) = missing_tool(&text, triple, &who) {
        return Some(why);
    }
    link_failure(project, &text, triple)
}

/// A build script that found no program (cmake, protoc, perl, make) or no C compiler.
fn missing_tool(text: &str, triple: &str, who: &dyn Fn(&str) -> String) -> Option<String> {
    for (needle, program, package) in [
        ("is `cmake` not installed?", "cmake", "cmake"),
        ("Could not find `protoc`", "protoc", "protobuf-compiler"),
        ("Is perl installed?", "perl", "perl"),
        ("Command 'perl' not found", "perl", "perl"),
        (
            "failed to execute command: No such file or directory (os error 2)\nis `make`",
            "make",
            "make",
        ),
    ] {
        if text.contains(needle) {
            return Some(format!(
                "{} needs `{program}` on the build machine and it is not installed; install it (`apt-get install {package}`) and build again",
                who("a build script")
            ));
        }
    }
    if let Some(tool) = text
        .lines()
        .find_map(|l| l.split("failed to find tool \"").nth(1))
        .and_then(|r| r.split('"').next())
        .or_else(|| {
            text.lines()
                .find_map(|l| l.split("Failed to find tool. Is `").nth(1))
                .and_then(|r| r.split('`').next())
        })
    {
        return Some(format!(
            "{} needs a C compiler for {triple} and `{tool}` was not found; install musl-tools (`apt-get install musl-tools`) for the host's architecture, or cargo-zigbuild and zig (`pip install cargo-zigbuild ziglang`), or set CC_{} to a musl C compiler",
            who("a build script"),
            triple.replace('-', "_")
        ));
    }
    None
}

/// A link that took a glibc library of the build machine, or found no static library.
fn link_failure(project: &Project, text: &str, triple: &str) -> Option<String> {
    // A library of the build machine's glibc (pkg-config or pg_config pointed there).
    if let Some(path) = text.lines().find_map(|l| {
        l.split_whitespace()
            .map(|w| w.trim_matches(|c: char| c == ':' || c == '\'' || c == '`'))
            .find(|w| w.starts_with("/usr/lib/") && w.contains("-linux-gnu/lib"))
            .map(|w| w.split('(').next().unwrap_or(w).to_string())
    }) {
        return Some(format!(
            "linking {} picked the build machine's glibc library {path}, which cannot go into a static binary for {triple}; enable the feature of the -sys crate that links it that builds it from source (often `bundled` or `static`; `cargo containerize doctor` names it for the common crates)",
            project.bin
        ));
    }
    let lib = text.lines().find_map(|l| {
        l.split("cannot find -l")
            .nth(1)
            .or_else(|| l.split("unable to find library -l").nth(1))
            .map(|r| {
                r.split(|c: char| c.is_whitespace() || c == ':' || c == '\'')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
    });
    if let Some(lib) = lib.filter(|l| !l.is_empty()) {
        let sys = project
            .native
            .iter()
            .filter(|d| d.targets.iter().any(|t| t == triple) && super::preflight::concerns(d))
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>();
        return Some(format!(
            "linking {} needs lib{lib}, which this machine has no static build of for {triple}; enable the feature of the -sys crate that links it that builds it from source (often `bundled` or `static`){}",
            project.bin,
            if sys.is_empty() {
                String::new()
            } else {
                format!(" — C dependencies in the graph: {}", sys.join(", "))
            }
        ));
    }
    None
}

/// The `time` version cargo compiled (`Compiling time vX.Y.Z`), when older than 0.3.35.
fn old_time_version(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("Compiling time v"))
        .filter_map(|r| r.split_whitespace().next())
        .find(|v| version(v).is_some_and(|t| t < (0, 3, 35)))
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> Project {
        Project::for_test(vec![])
    }

    const AMD64: &str = "x86_64-unknown-linux-musl";
    const ARM64: &str = "aarch64-unknown-linux-musl";

    /// Real cargo output, captured from builds that failed (tests/fixtures/cargo-output).
    fn sample(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cargo-output")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn says(sample_name: &str, triple: &str, words: &[&str]) {
        let line = diagnose(&project(), &sample(sample_name), triple)
            .unwrap_or_else(|| panic!("{sample_name}: not recognised"));
        assert!(!line.contains('\n'), "{line}");
        for w in words {
            assert!(
                line.contains(w),
                "{sample_name}: {w:?} missing from: {line}"
            );
        }
    }

    #[test]
    fn known_failures_become_one_line_with_the_fix() {
        says(
            "openssl-not-found.txt",
            AMD64,
            &[
                "openssl-sys 0.9.118",
                "found no OpenSSL",
                "X86_64_UNKNOWN_LINUX_MUSL_OPENSSL_DIR",
                "`vendored`",
            ],
        );
        says(
            "cmake-missing.txt",
            AMD64,
            &["needcmake 0.1.0", "`cmake`", "apt-get install cmake"],
        );
        says(
            "no-c-compiler.txt",
            AMD64,
            &[
                "cdep 0.1.0",
                "C compiler",
                "/nonexistent/x86_64-linux-musl-gcc",
                "musl-tools",
                "CC_x86_64_unknown_linux_musl",
            ],
        );
        says(
            "time-e0282.txt",
            AMD64,
            &["time 0.3.34", "E0282", "`cargo update -p time`"],
        );
        says(
            "glibc-libpq.txt",
            AMD64,
            &["/usr/lib/x86_64-linux-gnu/libpq.a", "glibc", "from source"],
        );
        says(
            "missing-lib-sqlite3.txt",
            ARM64,
            &["libsqlite3", "aarch64-unknown-linux-musl", "from source"],
        );
    }

    #[test]
    fn no_openssl_found_gets_the_remedy_for_what_was_decided() {
        let out = sample("openssl-not-found.txt");
        let line = |d: Decision| diagnose_with(&project(), &out, AMD64, &d).unwrap();
        let off = line(Decision::Off);
        assert!(off.contains("remove openssl = \"off\""), "{off}");
        // The user pointed openssl-sys at an OpenSSL of their own and never set `openssl`.
        let user = line(Decision::UserDir("OPENSSL_DIR".into()));
        assert!(!user.contains("openssl = \"off\""), "{user}");
        assert!(
            user.contains("OPENSSL_DIR is set")
                && user.contains("unset OPENSSL_DIR")
                && user.contains("not the build machine's glibc one"),
            "{user}"
        );
        let other = line(Decision::Absent);
        assert!(!other.contains("openssl = \"off\""), "{other}");
        assert!(other.contains("`vendored`"), "{other}");
        for l in [&off, &user, &other] {
            assert!(!l.contains('\n') && l.starts_with("openssl-sys 0.9.118 found no OpenSSL"));
        }
        // openssl-sys's words when the directory a variable names is not there.
        let missing = "error: failed to run custom build command for `openssl-sys v0.9.118`\n\
            OpenSSL include directory does not exist: /opt/ssl/include\n";
        let l = diagnose_with(
            &project(),
            missing,
            AMD64,
            &Decision::UserDir("X86_64_UNKNOWN_LINUX_MUSL_OPENSSL_DIR".into()),
        )
        .unwrap();
        assert!(
            l.contains("unset X86_64_UNKNOWN_LINUX_MUSL_OPENSSL_DIR"),
            "{l}"
        );
    }

    #[test]
    fn pkg_config_refusing_to_cross_compile_is_recognised() {
        // pkg-config-rs's message (not captured from a real build here: on this machine the
        // crates that hit it fall back to other ways of finding the library).
        let out = "error: failed to run custom build command for `foo-sys v1.2.3`\n\n\
            pkg-config has not been configured to support cross-compilation.\n";
        let line = diagnose(&project(), out, ARM64).unwrap();
        assert!(
            line.starts_with("foo-sys 1.2.3 looks for a system library with pkg-config"),
            "{line}"
        );
    }

    #[test]
    fn an_ordinary_compile_error_is_left_alone() {
        let out = "error[E0425]: cannot find value `x` in this scope\n --> src/main.rs:1:13\n\nerror: could not compile `app` (bin \"app\") due to 1 previous error\n";
        assert_eq!(diagnose(&project(), out, AMD64), None);
    }

    #[test]
    fn colours_and_carriage_returns_do_not_hide_a_cause() {
        let out = "\u{1b}[1m\u{1b}[31merror\u{1b}[0m: failed to run custom build command for `x-sys v1.0.0`\r  is `cmake` not installed?\n";
        let line = diagnose(&project(), out, AMD64).unwrap();
        assert!(line.starts_with("x-sys 1.0.0 needs `cmake`"), "{line}");
    }
}
