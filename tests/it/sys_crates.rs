//! Crates that link C libraries: OpenSSL through openssl-sys with zero configuration (the tool
//! builds a static OpenSSL once and caches it), and the preflight that stops a build whose
//! -sys crates cannot link statically, before anything compiles, with the fix.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use crate::common::*;
use serde_json::Value;

/// The tool's cache for these tests: the OpenSSL build is shared by every test of a run (the
/// tool's lock makes concurrent runs wait for one build), and a reused machine keeps it.
fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("containerize-sys-crates-cache")
}

fn tool_with_cache(cwd: &Path) -> Command {
    let mut cmd = tool(cwd);
    cmd.env("CARGO_CONTAINERIZE_CACHE", cache_dir());
    cmd
}

/// A CA and a `localhost` server certificate it signed, made with the openssl CLI.
struct Pki {
    _dir: tempfile::TempDir,
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

fn openssl(dir: &Path, args: &[&str]) {
    capture(Command::new("openssl").current_dir(dir).args(args)).assert_success();
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempdir();
        let d = dir.path();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        openssl(
            d,
            &[
                &["req", "-x509", "-nodes", "-days", "2"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-subj",
                    "/CN=cargo-containerize test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign",
                ],
            ]
            .concat(),
        );
        openssl(
            d,
            &[
                &["req", "-nodes"][..],
                &ec,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=localhost",
                ],
            ]
            .concat(),
        );
        fs::write(
            d.join("ext.cnf"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
                "-out",
                "server.pem",
            ],
        );
        Pki {
            ca_pem: fs::read(d.join("ca.pem")).unwrap(),
            cert_pem: fs::read(d.join("server.pem")).unwrap(),
            key_pem: fs::read(d.join("server.key")).unwrap(),
            _dir: dir,
        }
    })
}

const BODY: &str = "hello over TLS from the loopback server";

/// A TLS server on 127.0.0.1 with the PKI's certificate, answering every connection with
/// [`BODY`]; its address.
fn tls_server() -> String {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let pki = pki();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pki.cert_pem)
        .collect::<Result<_, _>>()
        .expect("server cert");
    let key = PrivateKeyDer::from_pem_slice(&pki.key_pem).expect("server key");
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config"),
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).expect("connection");
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = write!(
                    tls,
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{BODY}",
                    BODY.len()
                );
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    addr
}

/// A copy of the tls fixture that trusts only the test CA; nothing else configured.
fn tls_project() -> Project {
    let project = Project::copy("tls");
    project.write("test-ca.pem", &pki().ca_pem);
    project.append_manifest("[package.metadata.containerize]\nca-certs = \"test-ca.pem\"\n");
    project
}

/// The tls fixture's image, built once per test run.
fn tls_image() -> &'static Built {
    static IMAGE: OnceLock<Built> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let project = tls_project();
        let out = tempdir();
        let layout = Layout::new(out.path().join("image"), "test");
        let run = capture(
            tool_with_cache(&project.root)
                .args(["build", "--locked", "--output", &layout.reference()])
                .arg("--target-dir")
                .arg(shared_target_dir("tls")),
        );
        run.assert_success();
        Built::new(project, out, layout, run)
    })
}

/// Runs the image's binary against `addr` with runc, in the host's network namespace (so it
/// reaches the loopback server).
fn run_against(built: &Built, addr: &str) -> Run {
    let bundle = built.bundle();
    let path = bundle.path.join("config.json");
    let mut config: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let args = config["process"]["args"].as_array_mut().expect("args");
    args.truncate(1);
    args.push(Value::String(addr.to_string()));
    config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .retain(|ns| ns["type"] != "network");
    fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    bundle.run()
}

#[test]
#[ignore = "heavy: builds OpenSSL; needs umoci, runc"]
fn openssl_crate_builds_static_with_zero_config_and_talks_tls() {
    let built = tls_image();
    let stderr = &built.run.stderr;
    assert!(
        stderr.contains("OpenSSL 3.") && stderr.contains("for x86_64-unknown-linux-musl"),
        "no OpenSSL status line: {}",
        built.run
    );
    assert!(stderr.contains("is static"), "{}", built.run);
    let addr = tls_server();
    let run = run_against(built, &addr);
    run.assert_success();
    assert!(
        run.stdout.contains("HTTP/1.0 200 OK") && run.stdout.contains(BODY),
        "no response from the TLS server: {run}"
    );
}

#[test]
#[ignore = "heavy: builds OpenSSL"]
fn openssl_is_built_once_and_two_directories_give_one_digest() {
    let first = tls_image();
    // What a killed OpenSSL build leaves: a temporary directory beside its cache entry, named
    // by its owner (a process that has exited).
    let openssl_cache = cache_dir().join("openssl");
    let entry = fs::read_dir(&openssl_cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("x86_64-unknown-linux-musl-") && !n.ends_with(".lock"))
        .expect("the amd64 OpenSSL cache entry");
    let dead = {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    let leftover = openssl_cache.join(format!(".{entry}.tmp-{dead}-5-killed"));
    fs::create_dir_all(leftover.join("lib")).unwrap();
    fs::write(leftover.join("lib/libssl.a"), "half").unwrap();
    let again = tls_project();
    let (run, _layout, _out) = {
        let out = tempdir();
        let layout = Layout::new(out.path().join("image"), "test");
        let run = capture(
            tool_with_cache(&again.root)
                .args(["build", "--locked", "--output", &layout.reference()])
                .arg("--target-dir")
                .arg(shared_target_dir("tls")),
        );
        (run, layout, out)
    };
    run.assert_success();
    assert!(
        run.stderr
            .lines()
            .any(|l| l.trim_start().starts_with("Cached OpenSSL 3.")),
        "the second build did not reuse the cached OpenSSL: {run}"
    );
    assert!(
        !run.stderr.contains("Building OpenSSL"),
        "OpenSSL was built again: {run}"
    );
    assert_eq!(
        run.digest(),
        first.run.digest(),
        "two copies of the project gave different images"
    );
    assert!(
        !leftover.exists(),
        "a killed build's temporary directory was left: {run}"
    );
}

/// The command between the backticks of an error line's `cargo add …`.
fn cargo_add_remedy(line: &str) -> Vec<String> {
    let start = line.find("`cargo add ").expect("a `cargo add` remedy") + 1;
    let end = start + line[start..].find('`').expect("closing backtick");
    line[start..end]
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Builds a copy of `fixture`, which the preflight must refuse before compiling anything with
/// a one-line error holding `keywords` and a remedy (`cargo add …`, or `--features …` for the
/// tool's command); then follows that remedy word for word, builds again (statically) and runs
/// the image: its stdout must contain `expect`.
fn refused_then_remedied(fixture: &str, keywords: &[&str], expect: &str) {
    let project = Project::copy(fixture);
    let target = tempdir();
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "test");
    let run = capture(
        tool_with_cache(&project.root)
            .args(["build", "--locked", "--output", &layout.reference()])
            .arg("--target-dir")
            .arg(target.path()),
    );
    assert_one_line_error(&run, keywords);
    assert!(
        !run.stderr.contains("Compiling"),
        "cargo compiled before the refusal: {run}"
    );
    assert!(
        !target.path().join(MUSL_TARGET).exists(),
        "the build started before the refusal: {run}"
    );
    assert!(snapshot(out.path()).is_empty(), "an output was written");

    // The remedy is an edit (`cargo add …`, run here) or flags for the tool's command.
    let line = error_line(&run);
    let mut flags = Vec::new();
    if line.contains("`cargo add ") {
        let args = cargo_add_remedy(line);
        capture(
            Command::new("cargo")
                .args(&args[1..])
                .current_dir(&project.root),
        )
        .assert_success();
    } else {
        let start = line.find("`--features ").expect("a remedy") + 1;
        let end = start + line[start..].find('`').expect("closing backtick");
        flags.extend(line[start..end].split_whitespace().map(String::from));
    }
    let remedied = format!("{fixture}-remedied");
    let run = capture(
        tool_with_cache(&project.root)
            .args(["build", "--locked", "--output", &layout.reference()])
            .arg("--target-dir")
            .arg(shared_target_dir(&remedied))
            .args(&flags),
    );
    run.assert_success();
    assert!(run.stderr.contains("is static"), "{run}");
    let built = Built::new(project, out, layout, run);
    let ran = built.bundle().run();
    ran.assert_success();
    assert!(ran.stdout.contains(expect), "{ran}");
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn sqlite_without_bundled_fails_before_compiling_and_the_remedy_works() {
    refused_then_remedied(
        "sqlite",
        &[
            "libsqlite3-sys 0.40.0",
            "statically",
            // rusqlite, a direct dependency, has the feature that turns it on.
            "turned on by rusqlite's feature `bundled`: add `--features rusqlite/bundled`",
        ],
        "40 + 2 = 42",
    );
}

#[test]
#[ignore = "heavy: builds OpenSSL; needs umoci, runc"]
fn libpq_without_bundled_fails_before_compiling_and_the_remedy_works() {
    refused_then_remedied(
        "libpq",
        &[
            "pq-sys 0.7.8",
            "statically",
            // A direct dependency: cargo turns its feature on from the command line.
            "add `--features pq-sys/bundled` to the cargo containerize command",
        ],
        "libpq 1",
    );
}

fn doctor(project: &Project, extra: &[&str]) -> Run {
    capture(
        tool_with_cache(&project.root)
            .args(["doctor", "--locked"])
            .args(extra),
    )
}

#[test]
#[ignore = "heavy: builds OpenSSL"]
fn doctor_reports_each_c_dependency_and_fails_on_a_refused_one() {
    let run = doctor(&Project::copy("sqlite"), &[]);
    assert_eq!(run.code(), Some(1), "{run}");
    assert!(
        run.stdout.contains("rust target   installed")
            && run.stdout.contains("C compiler    ")
            && run.stdout.contains(
                "libsqlite3-sys 0.40.0  REFUSED: libsqlite3-sys 0.40.0 links the system's SQLite"
            )
            && run.stdout.contains("`--features rusqlite/bundled`"),
        "{run}"
    );

    let run = doctor(&Project::copy("tls"), &[]);
    assert_eq!(run.code(), Some(0), "{run}");
    assert!(
        run.stdout
            .contains("openssl-sys 0.9.118  handled by the tool: static OpenSSL"),
        "{run}"
    );
    assert!(
        !run.stdout.contains("security-framework-sys") && !run.stdout.contains("windows-sys"),
        "dependencies of other platforms are listed: {run}"
    );

    // An OpenSSL of the user's is theirs to give: the tool builds none.
    let run = capture(
        tool_with_cache(&Project::copy("tls").root)
            .args(["doctor", "--locked"])
            .env("X86_64_UNKNOWN_LINUX_MUSL_OPENSSL_DIR", "/opt/openssl-musl"),
    );
    assert_eq!(run.code(), Some(0), "{run}");
    assert!(
        run.stdout.contains(
            "openssl-sys 0.9.118  yours: OpenSSL from $X86_64_UNKNOWN_LINUX_MUSL_OPENSSL_DIR"
        ),
        "{run}"
    );

    // openssl = "off" with no OpenSSL of the user's: refused, with the ways out.
    let off = Project::copy("tls");
    off.append_manifest("[package.metadata.containerize]\nopenssl = \"off\"\n");
    let run = doctor(&off, &[]);
    assert_eq!(run.code(), Some(1), "{run}");
    assert!(
        run.stdout.contains("openssl = \"off\"")
            && run
                .stdout
                .contains("`cargo add openssl-sys@0.9.118 --features vendored`"),
        "{run}"
    );
}

#[test]
fn a_c_dependency_of_another_os_is_not_refused() {
    let project = Project::copy("sqlite");
    let manifest = fs::read_to_string(project.manifest()).unwrap();
    fs::write(
        project.manifest(),
        manifest.replace("[dependencies]\n", "[target.'cfg(windows)'.dependencies]\n"),
    )
    .unwrap();
    let run = doctor(&project, &[]);
    assert_eq!(run.code(), Some(0), "{run}");
    assert!(!run.stdout.contains("libsqlite3-sys"), "{run}");
}

#[test]
#[ignore = "heavy: builds a fixture's C dependency"]
fn a_failed_build_ends_with_the_cause_and_the_fix() {
    // The user's own C compiler for the target does not exist: cc-rs fails in cdep's build
    // script, and the tool's last line says so in the user's terms.
    let project = Project::copy("cdep");
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "test");
    let run = capture(
        tool_with_cache(&project.root)
            .args(["build", "--locked", "--output", &layout.reference()])
            .arg("--target-dir")
            .arg(shared_target_dir("cdep"))
            .env(
                "CC_x86_64_unknown_linux_musl",
                "/nonexistent/x86_64-linux-musl-gcc",
            ),
    );
    assert_eq!(run.code(), Some(1), "{run}");
    assert!(
        run.stderr
            .contains("failed to run custom build command for `cdep"),
        "cargo's own output is not shown: {run}"
    );
    let last = run
        .stderr
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default();
    assert!(
        last.starts_with("error: cargo build for linux/amd64 failed: cdep 0.1.0 needs a C compiler for x86_64-unknown-linux-musl")
            && last.contains("/nonexistent/x86_64-linux-musl-gcc")
            && last.contains("apt-get install musl-tools")
            && last.contains("CC_x86_64_unknown_linux_musl"),
        "{run}"
    );
    assert!(snapshot(out.path()).is_empty(), "an output was written");
}

/// Where scripts/setup-cross-tools puts cargo-zigbuild and zig.
fn cross_tools_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("CONTAINERIZE_TOOLS_BIN") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    Path::new(&home).join(".cache/cargo-containerize/venv/bin")
}

#[test]
#[ignore = "heavy: builds OpenSSL; needs umoci, runc"]
fn openssl_crate_builds_for_arm64_with_zig_and_talks_tls_under_qemu() {
    let tools = cross_tools_bin();
    assert!(
        tools.join("cargo-zigbuild").is_file()
            && (tools.join("zig").is_file() || tools.join("python-zig").is_file()),
        "cargo-zigbuild and zig are not in {}: run scripts/setup-cross-tools (or point \
         CONTAINERIZE_TOOLS_BIN at a directory holding them)",
        tools.display()
    );
    let mut path = vec![tools];
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let project = tls_project();
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "test");
    let run = capture(
        tool_with_cache(&project.root)
            .args(["build", "--locked", "--platform", "linux/arm64", "--output"])
            .arg(layout.reference())
            .arg("--target-dir")
            .arg(shared_target_dir("tls-arm64"))
            .env("PATH", std::env::join_paths(path).unwrap())
            .env_remove("CC_aarch64_unknown_linux_musl")
            .env_remove("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER"),
    );
    run.assert_success();
    assert!(
        run.stderr.contains("OpenSSL 3.")
            && run.stderr.contains("for aarch64-unknown-linux-musl")
            && run.stderr.contains("cargo-zigbuild"),
        "{run}"
    );
    let built = Built::new(project, out, layout, run);
    let binary = built.bundle().file("usr/local/bin/tls");
    let bytes = fs::read(&binary).unwrap();
    let elf = goblin::elf::Elf::parse(&bytes).unwrap();
    assert_eq!(elf.header.e_machine, goblin::elf::header::EM_AARCH64);
    assert!(
        elf.interpreter.is_none() && elf.libraries.is_empty(),
        "not static"
    );
    // Outside the container the image's CA bundle is named with SSL_CERT_FILE, which OpenSSL
    // reads as the container's would.
    let addr = tls_server();
    let ran = capture(
        Command::new("timeout")
            .args(["--kill-after=10", "120", "qemu-aarch64-static"])
            .arg(&binary)
            .arg(&addr)
            .env("SSL_CERT_FILE", built.bundle().file(CA_BUNDLE))
            .env_remove("SSL_CERT_DIR"),
    );
    ran.assert_success();
    assert!(ran.stdout.contains(BODY), "{ran}");
}

#[test]
#[ignore = "heavy: builds OpenSSL"]
fn without_perl_the_openssl_build_is_refused_first_with_the_install_line() {
    // A PATH with cargo, rustup's proxies and musl-gcc, but no perl and no make; and a cache
    // without OpenSSL, so the tool would have to build it.
    let bin = tempdir();
    let cargo = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .find(|d| d.join("cargo").is_file())
        .expect("cargo on PATH");
    for tool in ["musl-gcc", "git"] {
        std::os::unix::fs::symlink(Path::new("/usr/bin").join(tool), bin.path().join(tool))
            .unwrap();
    }
    let cache = tempdir();
    let project = Project::copy("tls");
    let target = tempdir();
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "test");
    let run = capture(
        tool(&project.root)
            .args(["build", "--locked", "--output", &layout.reference()])
            .arg("--target-dir")
            .arg(target.path())
            .env("CARGO_CONTAINERIZE_CACHE", cache.path())
            .env(
                "PATH",
                std::env::join_paths([cargo, bin.path().to_path_buf()]).unwrap(),
            ),
    );
    assert_one_line_error(
        &run,
        &[
            "needs perl and make",
            "`apt-get install perl make`",
            "openssl = \"off\"",
        ],
    );
    assert!(
        !target.path().join(MUSL_TARGET).exists(),
        "the crate's build started: {run}"
    );
    assert!(snapshot(out.path()).is_empty(), "an output was written");
}
