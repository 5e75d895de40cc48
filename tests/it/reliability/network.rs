//! Reliability: network. A registry that hangs, a credential helper that never answers,
//! bodies of hundreds of megabytes, a manifest "stored" that is not, hostile error text, a
//! refused port, an untrusted token service, a docker CLI without a daemon: every wait is
//! bounded and says what it waited for, every body read is capped, remote text is printed
//! sanitized, and each failure is one line naming the cause and the remedy.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::podman::Podman;
use crate::support::proxy::{Fault, Proxy, Rule, Silent};
use crate::support::registry::{Credentials, Registry, free_port};

/// Longest a failing run of these tests may take: a hang is a failure, not a stuck suite.
const LIMIT: Duration = Duration::from_secs(120);

/// The hello fixture built once, so that the runs below spend their time on the network.
fn warm() {
    static WARM: OnceLock<()> = OnceLock::new();
    WARM.get_or_init(|| {
        build_fixture("hello", &[]);
    });
}

/// An empty `DOCKER_CONFIG`: no credentials of the machine leak into a test.
fn no_credentials() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| tempdir().keep())
}

/// `cargo containerize build --locked --target-dir <shared> ARGS` in a fresh copy of hello,
/// with no credentials, timeout or trust settings from the environment.
fn hello(args: &[&str]) -> (Project, Command) {
    warm();
    let project = Project::copy("hello");
    let mut cmd = tool(&project.root);
    cmd.args(["build", "--locked", "--target-dir"])
        .arg(shared_target_dir("hello"))
        .args(args)
        .env("DOCKER_CONFIG", no_credentials())
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("CARGO_CONTAINERIZE_REGISTRY_TIMEOUT")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    (project, cmd)
}

/// A `DOCKER_CONFIG` directory whose config.json is `json`.
fn docker_config(json: &str) -> PathBuf {
    let dir = tempdir().keep();
    fs::write(dir.join("config.json"), json).expect("write config.json");
    dir
}

/// An executable shell script `name` in a fresh directory; returns the directory.
fn script_dir(name: &str, body: &str) -> PathBuf {
    let dir = tempdir().keep();
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write script");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod script");
    dir
}

/// PATH with `dir` first.
fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// True while the process `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        !s.lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
    })
}

/// `{"errors":[…]}` answers are the registry's; this is the test's registry-side lie for
/// GET /v2/: a Bearer challenge pointing at `realm`.
fn bearer_challenge(realm: &str) -> Fault {
    Fault::Respond {
        status: 401,
        headers: vec![(
            "WWW-Authenticate".into(),
            format!(r#"Bearer realm="{realm}",service="cct-registry""#),
        )],
    }
}

// ---------------------------------------------------------------------------------------
// Hangs

#[test]
#[ignore = "heavy: builds fixture images"]
fn a_registry_that_accepts_and_never_answers_fails_within_the_timeout_naming_the_request() {
    let silent = Silent::start();
    let reference = format!("{}/hello:hang", silent.host());
    let (_project, mut cmd) = hello(&["--push", "--retries", "1", "-t", &reference]);
    cmd.env("CARGO_CONTAINERIZE_REGISTRY_TIMEOUT", "1");
    let (run, took) = capture_within(&mut cmd, LIMIT);
    assert_one_line_error(
        &run,
        &[
            &silent.host(),
            "did not answer",
            "GET http://",
            "/v2/",
            "--registry-timeout",
        ],
    );
    assert!(silent.accepted() > 0, "the tool never connected: {run}");
    // It said what it was waiting for while it waited, not only at the end.
    assert!(
        run.stderr
            .lines()
            .any(|l| l.trim_start().starts_with("Retrying") && l.contains("did not answer")),
        "no status line while retrying: {run}"
    );
    // 2 tries of (a TLS probe + a plain GET) at 1 s each, plus a backoff and the build.
    assert!(took < Duration::from_secs(60), "took {took:?}: {run}");
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry, skopeo"]
fn a_credential_helper_that_never_answers_is_stopped_and_named() {
    let registry = Registry::plain();
    let pids = tempdir().keep();
    let bin = script_dir(
        "docker-credential-cct-hang",
        &format!(
            "echo $$ > {dir}/helper.pid\nsleep 300 &\necho $! > {dir}/sleep.pid\nwait\n",
            dir = pids.display()
        ),
    );
    let config = docker_config(&format!(
        r#"{{"credHelpers": {{"{}": "cct-hang"}}}}"#,
        registry.host()
    ));
    let reference = registry.reference("hello:helper-hang");
    let (_project, mut cmd) = hello(&["--push", "-t", &reference]);
    cmd.env("DOCKER_CONFIG", &config)
        .env("PATH", path_with(&bin))
        // Time for the script to start and write its pids on a loaded machine.
        .env("CARGO_CONTAINERIZE_REGISTRY_TIMEOUT", "3");
    let (run, took) = capture_within(&mut cmd, LIMIT);
    assert_one_line_error(
        &run,
        &[
            "docker-credential-cct-hang",
            "did not answer",
            &registry.host(),
            "--registry-timeout",
        ],
    );
    assert!(took < Duration::from_secs(60), "took {took:?}: {run}");
    // The helper and what it started were stopped, not left behind.
    // (A pid file not written means the script was stopped before it got there.)
    let helper = fs::read_to_string(pids.join("helper.pid"))
        .unwrap_or_else(|e| panic!("the helper never ran: {e}: {run}"));
    let mut written = vec![("helper.pid", helper)];
    if let Ok(sleep) = fs::read_to_string(pids.join("sleep.pid")) {
        written.push(("sleep.pid", sleep));
    }
    for (file, text) in written {
        let pid: u32 = text.trim().parse().expect("pid");
        assert!(!alive(pid), "{file} {pid} still runs after the tool ended");
    }
    assert!(registry.skopeo_inspect("hello:helper-hang", true).is_err());
}

// ---------------------------------------------------------------------------------------
// Unbounded memory

const HUGE: u64 = 400 << 20;
/// What the proxy may get out before the client stops reading: the cap plus socket buffers.
const READ_AT_MOST: u64 = 32 << 20;

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry"]
fn a_400_mb_token_response_is_refused_at_1_mib_without_reading_it() {
    let registry = Registry::plain();
    let proxy = Proxy::start(registry.addr(), vec![]);
    let realm = format!("http://{}/token", proxy.host());
    proxy.add_rule(Rule::new("GET", "/v2/").then(bearer_challenge(&realm)));
    proxy.add_rule(Rule::new("GET", "/token").then(Fault::HugeBody {
        status: 200,
        headers: vec![],
        bytes: HUGE,
    }));
    let reference = format!("{}/hello:huge-token", proxy.host());
    let (_project, mut cmd) = hello(&["--push", "-t", &reference]);
    let (run, _) = capture_within(&mut cmd, LIMIT);
    assert_one_line_error(&run, &["token", &proxy.host(), "1 MiB"]);
    let token = proxy
        .exchanges()
        .into_iter()
        .find(|e| e.target.starts_with("/token"))
        .expect("the token request");
    assert!(
        token.response_bytes < READ_AT_MOST,
        "the tool read {} bytes of the token response: {run}",
        token.response_bytes
    );
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry"]
fn a_400_mb_error_body_is_read_only_up_to_its_cap() {
    let registry = Registry::plain();
    let proxy = Proxy::start(
        registry.addr(),
        vec![Rule::new("PUT", "/manifests/").then(Fault::HugeBody {
            status: 400,
            headers: vec![],
            bytes: HUGE,
        })],
    );
    let reference = format!("{}/hello:huge-error", proxy.host());
    let (_project, mut cmd) = hello(&["--push", "-t", &reference]);
    let (run, _) = capture_within(&mut cmd, LIMIT);
    assert_one_line_error(&run, &[&proxy.host(), "400", "manifest"]);
    let put = proxy
        .exchanges()
        .into_iter()
        .find(|e| e.fault.is_some())
        .expect("the faulted manifest PUT");
    assert!(
        put.response_bytes < READ_AT_MOST,
        "the tool read {} bytes of an error body: {run}",
        put.response_bytes
    );
}

// ---------------------------------------------------------------------------------------
// A manifest "stored" that is not

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry, skopeo"]
fn a_manifest_put_answered_201_but_not_stored_is_an_error() {
    let registry = Registry::plain();
    let proxy = Proxy::start(
        registry.addr(),
        vec![Rule::new("PUT", "/manifests/").then(Fault::status(201))],
    );
    let reference = format!("{}/hello:lost", proxy.host());
    let (_project, mut cmd) = hello(&["--push", "-t", &reference]);
    let (run, _) = capture_within(&mut cmd, LIMIT);
    assert_one_line_error(&run, &[&proxy.host(), "hello", "lost", "does not serve it"]);
    assert!(proxy.unfired().is_empty(), "the fault never fired: {run}");
    assert!(registry.skopeo_inspect("hello:lost", true).is_err());
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry"]
fn a_manifest_read_back_is_capped_at_4_mib() {
    let registry = Registry::plain();
    // The HEAD answers without a Docker-Content-Digest, so the manifest itself is read.
    let proxy = Proxy::start(
        registry.addr(),
        vec![
            Rule::new("HEAD", "/manifests/").then(Fault::status(200)),
            Rule::new("GET", "/manifests/").then(Fault::HugeBody {
                status: 200,
                headers: vec![],
                bytes: HUGE,
            }),
        ],
    );
    let reference = format!("{}/hello:huge-manifest", proxy.host());
    let (_project, mut cmd) = hello(&["--push", "-t", &reference]);
    let (run, _) = capture_within(&mut cmd, LIMIT);
    assert_one_line_error(&run, &[&proxy.host(), "manifest", "4 MiB"]);
    assert!(proxy.unfired().is_empty(), "faults never fired: {run}");
}

// ---------------------------------------------------------------------------------------
// Hostile text

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry"]
fn registry_error_text_is_printed_without_escapes_or_newlines() {
    let registry = Registry::plain();
    let body = r#"{"errors":[{"code":"MANIFEST_INVALID","message":"\u001b[31mred alert\u001b[0m\nsecond line\r\u009b2J"}]}"#;
    let proxy = Proxy::start(
        registry.addr(),
        vec![Rule::new("PUT", "/manifests/").then(Fault::RespondBody {
            status: 400,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        })],
    );
    let reference = format!("{}/hello:hostile", proxy.host());
    let (_project, mut cmd) = hello(&["--push", "-t", &reference]);
    let (run, _) = capture_within(&mut cmd, LIMIT);
    assert!(
        !run.stderr.contains('\x1b') && !run.stderr.contains('\u{9b}'),
        "an escape sequence reached the terminal: {run:?}"
    );
    assert!(!run.stderr.contains('\r'), "a carriage return: {run:?}");
    assert_one_line_error(
        &run,
        &[
            &proxy.host(),
            "MANIFEST_INVALID",
            "red alert",
            "second line",
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Bad addresses

#[test]
#[ignore = "heavy: builds fixture images"]
fn a_port_out_of_range_is_refused_before_any_build() {
    let (_project, mut cmd) = hello(&["--push", "-t", "localhost:99999/app:1"]);
    let (run, _) = capture_within(&mut cmd, LIMIT);
    assert_one_line_error(&run, &["localhost:99999/app:1", "65535"]);
    assert!(!run.stderr.contains("Retrying"), "it was retried: {run}");
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn a_loopback_port_nothing_listens_on_fails_at_once_without_retries() {
    let port = free_port();
    let reference = format!("127.0.0.1:{port}/hello:refused");
    let (_project, mut cmd) = hello(&["--push", "-t", &reference]);
    let (run, _) = capture_within(&mut cmd, LIMIT);
    assert_one_line_error(
        &run,
        &[&format!("127.0.0.1:{port}"), "nothing listens", "refused"],
    );
    assert!(
        !run.stderr.contains("Retrying") && !run.stderr.contains("tries"),
        "a refused loopback port was retried: {run}"
    );
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn a_tag_without_push_or_load_is_an_error_and_writes_nothing() {
    let out = tempdir();
    let layout = out.path().join("image");
    let (_project, mut cmd) = hello(&[
        "--output",
        &format!("oci:{}:t", layout.display()),
        "-t",
        "ghcr.io/owner/app:1",
    ]);
    let (run, _) = capture_within(&mut cmd, LIMIT);
    assert_one_line_error(&run, &["-t", "--push", "--load"]);
    assert!(!layout.exists(), "an output was written: {run}");
}

// ---------------------------------------------------------------------------------------
// TLS

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry"]
fn an_untrusted_token_service_names_registry_ca() {
    // A TLS server whose CA the tool is not given: a secure registry's port serves as the
    // token realm of a plain registry behind the proxy.
    let untrusted = Registry::secure(Credentials::new("cct", "cct-Pa55w0rd"));
    let registry = Registry::plain();
    let proxy = Proxy::start(registry.addr(), vec![]);
    let realm = format!("https://{}/token", untrusted.host());
    proxy.add_rule(Rule::new("GET", "/v2/").then(bearer_challenge(&realm)));
    let reference = format!("{}/hello:untrusted-realm", proxy.host());
    let (_project, mut cmd) = hello(&["--push", "-t", &reference]);
    let (run, took) = capture_within(&mut cmd, LIMIT);
    assert_one_line_error(
        &run,
        &[
            "token service",
            &untrusted.host(),
            "--registry-ca",
            "certificate",
        ],
    );
    assert!(
        !run.stderr.contains("Retrying"),
        "a certificate error was retried: {run}"
    );
    assert!(took < Duration::from_secs(60), "took {took:?}: {run}");
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry"]
fn ssl_cert_file_is_announced_as_a_trust_source() {
    let registry = Registry::plain();
    let bundle = tempdir().keep().join("bundle.pem");
    fs::write(&bundle, webpki_pem()).expect("write bundle");
    let reference = registry.reference("hello:ssl-cert-file");
    let (_project, mut cmd) = hello(&["--push", "-t", &reference]);
    cmd.env("SSL_CERT_FILE", &bundle);
    let (run, _) = capture_within(&mut cmd, LIMIT);
    run.assert_success();
    assert!(
        run.stderr
            .lines()
            .any(|l| l.trim_start().starts_with("Trusting")
                && l.contains(&format!("SSL_CERT_FILE={}", bundle.display()))),
        "SSL_CERT_FILE was trusted silently: {run}"
    );
    // -q still means nothing on stderr.
    let (_project, mut cmd) = hello(&["--push", "-q", "-t", &reference]);
    cmd.env("SSL_CERT_FILE", &bundle);
    let (run, _) = capture_within(&mut cmd, LIMIT);
    run.assert_success();
    assert!(run.stderr.trim().is_empty(), "{run}");
}

/// Mozilla's roots as PEM (any valid bundle will do).
fn webpki_pem() -> String {
    use std::fmt::Write as _;
    let mut pem = String::new();
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        let b64 = crate::support::registry::base64(cert.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            let _ = writeln!(pem, "{}", std::str::from_utf8(line).expect("base64"));
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

// ---------------------------------------------------------------------------------------
// --load

/// A directory whose `docker` fails the way the docker CLI does with no daemon, unless the
/// real docker here already has no daemon (then None: the real one is used).
fn docker_without_daemon() -> Option<PathBuf> {
    let real_fails = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| !s.success());
    (!real_fails).then(|| {
        script_dir(
            "docker",
            "echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' >&2\nexit 1\n",
        )
    })
}

#[test]
#[ignore = "heavy: builds fixture images; needs podman"]
fn load_without_an_engine_name_picks_podman_when_the_docker_daemon_does_not_answer() {
    let podman = Podman::new();
    let (_project, mut cmd) = hello(&["--load"]);
    podman.apply(&mut cmd);
    if let Some(fake) = docker_without_daemon() {
        cmd.env("PATH", path_with(&fake));
    }
    let (run, _) = capture_within(&mut cmd, LIMIT);
    run.assert_success();
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("into podman") && l.contains("daemon does not answer")),
        "it did not say why podman was picked: {run}"
    );
    let names = podman.image_names();
    assert!(
        names.iter().any(|n| n == "localhost/hello:0.3.1"),
        "loaded as {names:?}: {run}"
    );
}

/// hello with 64 MiB of incompressible bytes appended: still a static ELF, with a binary layer
/// too big for the socket buffers between the tool and a proxy that stops reading.
fn huge_binary() -> &'static Path {
    static BIG: OnceLock<PathBuf> = OnceLock::new();
    BIG.get_or_init(|| {
        let mut bytes = fs::read(cargo_build_musl("hello", "hello")).expect("read hello");
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..(64 << 20) / 8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        let path = tempdir().keep().join("huge-hello");
        fs::write(&path, bytes).expect("write huge binary");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    })
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry, skopeo"]
fn an_upload_the_registry_stops_reading_fails_within_the_timeout() {
    let registry = Registry::plain();
    // Stops reading any request body past 1 MiB: only the binary layer gets there. Without
    // an idle bound, the upload's own limit grows with its size (over 15 minutes here).
    let proxy = Proxy::stalling(registry.addr(), 1 << 20);
    let reference = format!("{}/huge:stall", proxy.host());
    let binary = huge_binary();
    let (_project, mut cmd) = hello(&["--push", "--retries", "0", "-t", &reference]);
    cmd.arg("--binary")
        .arg(binary)
        .env("CARGO_CONTAINERIZE_REGISTRY_TIMEOUT", "1");
    let (run, stalled_at) = std::thread::scope(|scope| {
        let stall = scope.spawn(|| proxy.wait_stalled(LIMIT).then(Instant::now));
        let (run, _) = capture_within(&mut cmd, LIMIT);
        (run, stall.join().expect("stall watcher"))
    });
    let ended = Instant::now();
    let stalled_at = stalled_at.unwrap_or_else(|| panic!("no upload stalled: {run}"));
    assert_one_line_error(&run, &[&proxy.host(), "PUT", "/blobs/uploads/", "huge"]);
    // One try, a 1 s timeout: the tool gives up a few seconds after the registry stopped
    // reading (the kernel's probes back off), not after the upload's size-based limit.
    let after_stall = ended - stalled_at;
    assert!(
        after_stall < Duration::from_secs(12),
        "ended {after_stall:?} after the stall: {run}"
    );
    assert!(registry.skopeo_inspect("huge:stall", true).is_err());
}

// ---------------------------------------------------------------------------------------
// An engine that stops reading

/// `docker load` that never reads the image (a wedged daemon): the tool stops it once it
/// makes no progress for CARGO_CONTAINERIZE_LOAD_TIMEOUT, and says so in one line.
#[test]
#[ignore = "heavy: builds fixture images"]
fn a_load_the_engine_stops_reading_is_stopped_and_named() {
    let engine = script_dir("docker", "exec sleep 600\n");
    let (_project, mut cmd) = hello(&["--load", "docker"]);
    cmd.env("PATH", path_with(&engine))
        .env("CARGO_CONTAINERIZE_LOAD_TIMEOUT", "1");
    let (run, took) = capture_within(&mut cmd, LIMIT);
    assert_one_line_error(
        &run,
        &[
            "docker load",
            "no progress",
            "CARGO_CONTAINERIZE_LOAD_TIMEOUT",
        ],
    );
    assert!(took < Duration::from_secs(60), "took {took:?}: {run}");
}
