//! The registry tests' harness (tests/it/support), proved with skopeo alone: when a push of the
//! tool fails in tests/it/registry.rs, these show the registry, TLS, auth and proxy themselves
//! work with a well-known client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;

use crate::common::*;
use crate::support::proxy::{Fault, Proxy, Rule};
use crate::support::registry::{Credentials, Registry, base64};
use crate::support::token::TokenServer;

/// hello, built by the tool once into an OCI layout that skopeo pushes.
fn image() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| build_fixture("hello", &[]))
}

fn manifest_digest(layout: &Layout) -> String {
    sha256_digest(&skopeo_manifest_bytes(&layout.reference()))
}

#[test]
fn base64_matches_rfc4648_vectors() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    assert_eq!(
        Credentials::new("user", "pa:ss").basic_auth(),
        "dXNlcjpwYTpzcw=="
    );
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry, skopeo"]
fn plain_registry_takes_a_skopeo_push_and_logs_requests() {
    let registry = Registry::plain();
    registry.skopeo_push(&image().layout.reference(), "hello:1");
    let pushed = sha256_digest(&registry.manifest_bytes("hello:1"));
    assert_eq!(pushed, manifest_digest(&image().layout));
    let requests = registry.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.method == "PUT" && r.uri.contains("/manifests/1") && r.status == 201),
        "no manifest PUT in the registry log: {requests:?}"
    );
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry, skopeo"]
fn tls_registry_with_htpasswd_takes_a_skopeo_push_and_refuses_anonymous_reads() {
    let registry = Registry::secure(Credentials::new("cct", "harness-secret"));
    registry.skopeo_push(&image().layout.reference(), "hello:1");
    let copy = tempdir();
    registry
        .copy_to_layout("hello:1", &copy.path().join("oci"), "t")
        .expect("copy back with CA and credentials");
    // Without credentials the registry says 401; without the CA, TLS verification fails.
    let anonymous = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("--cert-dir={}", registry.certs_dir().display()))
        .arg(format!("docker://{}", registry.reference("hello:1")))
        .output()
        .expect("skopeo");
    assert!(!anonymous.status.success());
    let stderr = String::from_utf8_lossy(&anonymous.stderr).to_lowercase();
    assert!(
        stderr.contains("unauthorized") || stderr.contains("authentication required"),
        "{stderr}"
    );
    let untrusted = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--creds=cct:harness-secret"])
        .arg(format!("docker://{}", registry.reference("hello:1")))
        .output()
        .expect("skopeo");
    assert!(!untrusted.status.success());
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry, skopeo"]
fn proxy_relays_a_skopeo_push_and_injects_its_faults() {
    let registry = Registry::plain();
    // skopeo does not retry a failed request by itself: only faults it survives here are
    // the ones on requests it makes more than once. Clean relaying is the point.
    let proxy = Proxy::start(
        registry.addr(),
        vec![Rule::new("GET", "/v2/hello/tags/list").then(Fault::status(500))],
    );
    let target = format!("docker://{}/hello:1", proxy.host());
    let run = capture(
        std::process::Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .arg(image().layout.reference())
            .arg(&target),
    );
    run.assert_success();
    assert_eq!(
        sha256_digest(&registry.manifest_bytes("hello:1")),
        manifest_digest(&image().layout)
    );
    let exchanges = proxy.exchanges();
    assert!(
        exchanges
            .iter()
            .any(|e| (e.method == "PATCH" || e.method == "PUT") && e.body_bytes > 0),
        "no upload went through the proxy: {exchanges:?}"
    );
    assert!(exchanges.iter().all(|e| e.status.is_some()));

    // The fault fires on the first matching request, then requests pass again.
    assert_eq!(
        http_status(&proxy.host(), "GET", "/v2/hello/tags/list"),
        500
    );
    assert_eq!(
        http_status(&proxy.host(), "GET", "/v2/hello/tags/list"),
        200
    );
    assert!(proxy.unfired().is_empty());
}

/// The status of a bodiless request, with a bare HTTP/1.1 client.
fn http_status(host: &str, method: &str, path: &str) -> u16 {
    let mut stream = TcpStream::connect(host).expect("connect");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read reply");
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {reply:?}"))
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry, skopeo"]
fn proxy_drops_an_upload_mid_body() {
    let registry = Registry::plain();
    let proxy = Proxy::start(
        registry.addr(),
        vec![
            Rule::new("PUT|PATCH", "/blobs/uploads/")
                .with_body()
                .then(Fault::DropMidBody),
        ],
    );
    let run = capture(
        std::process::Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .arg(image().layout.reference())
            .arg(format!("docker://{}/hello:1", proxy.host())),
    );
    assert!(
        !run.status.success(),
        "skopeo survived a dropped upload: {run}"
    );
    assert!(proxy.unfired().is_empty());
    let dropped: Vec<_> = proxy
        .exchanges()
        .into_iter()
        .filter(|e| e.fault.is_some())
        .collect();
    assert_eq!(dropped.len(), 1);
    assert!(dropped[0].status.is_none() && dropped[0].body_bytes > 0);
    // Nothing was tagged.
    assert!(registry.skopeo_inspect("hello:1", true).is_err());
}

#[test]
#[ignore = "heavy: builds fixture images; needs docker-registry, skopeo"]
fn token_server_and_registry_do_the_bearer_flow_with_skopeo() {
    let credentials = Credentials::new("cct", "token-harness-secret");
    let tokens = TokenServer::start(credentials.clone());
    let registry = Registry::with_token(tokens.registry_auth(), credentials);
    registry.skopeo_push(&image().layout.reference(), "hello:1");
    assert_eq!(
        sha256_digest(&registry.manifest_bytes("hello:1")),
        manifest_digest(&image().layout)
    );
    let requests = tokens.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.authenticated && r.scopes.iter().any(|s| s == "repository:hello:pull,push")),
        "{requests:?}"
    );
    // Without a token the registry refuses, with a challenge naming the token server.
    let anonymous = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}", registry.reference("hello:1")))
        .output()
        .expect("skopeo");
    assert!(!anonymous.status.success());
    assert!(tokens.requests().iter().any(|r| r.status == 401));
}
