//! The HTTP layer under every registry request (after go-containerregistry's
//! `transport.go` and `schemer.go`): one reqwest client with the embedded CA roots and
//! `--registry-ca`, the timeouts and the redirect policy; which hosts may be plain HTTP; how a
//! request that got no answer is sorted ([`NetError`]); and the body limits.
//!
//! Everything a registry sends is hostile until bounded: bodies are read through a cap (a
//! registry answering a 400 MB error page must not cost 400 MB), and any text of theirs that
//! reaches the terminal is stripped of control characters and cut short first.

use super::RegistryOptions;
use crate::util::shell::Shell;
use anyhow::{Context, Result, bail};
use reqwest::blocking::Client as Http;
use std::io::Read;
use std::net::IpAddr;
use std::time::Duration;

/// Error bodies: a registry's JSON error is a few hundred bytes.
pub const ERROR_BODY_LIMIT: u64 = 64 << 10;
/// Token responses: a JWT with its claims, a few KiB; 1 MiB is generous.
pub const TOKEN_BODY_LIMIT: u64 = 1 << 20;
/// Manifests: the distribution spec lets registries refuse manifests over 4 MiB.
pub const MANIFEST_BODY_LIMIT: u64 = 4 << 20;
/// Characters of remote text that reach a message.
const TEXT_LIMIT: usize = 200;

/// `limit` in the units a message shows (64 KiB, 4 MiB).
pub fn human_limit(limit: u64) -> String {
    if limit >= 1 << 20 && limit % (1 << 20) == 0 {
        format!("{} MiB", limit >> 20)
    } else if limit >= 1 << 10 && limit % (1 << 10) == 0 {
        format!("{} KiB", limit >> 10)
    } else {
        format!("{limit} bytes")
    }
}

/// Reads a body of at most `limit` bytes; a longer one (by its Content-Length or by what
/// arrives) is an error naming `what`, the host and the limit, and is never read past the
/// limit: the connection is dropped instead.
pub fn read_capped(
    mut body: impl Read,
    content_length: Option<u64>,
    limit: u64,
    what: &str,
    host: &str,
) -> Result<Vec<u8>> {
    let too_big = || {
        anyhow::anyhow!(
            "{what} from {host} is larger than {}, the most this tool reads; the registry (or a proxy in front of it) is misbehaving, check its address and logs",
            human_limit(limit)
        )
    };
    if content_length.is_some_and(|n| n > limit) {
        return Err(too_big());
    }
    let mut buf = Vec::new();
    (&mut body)
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| anyhow::anyhow!("reading {what} from {host}: {e}"))?;
    if buf.len() as u64 > limit {
        bail!(too_big());
    }
    Ok(buf)
}

/// Reads at most `limit` bytes of a body and keeps what fits: for error bodies, whose text
/// only explains a failure already known.
pub fn read_prefix(body: impl Read, limit: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = body.take(limit).read_to_end(&mut buf);
    buf
}

/// Remote text made safe to print: control characters (ANSI escapes, newlines, carriage
/// returns, C1 controls) and bidirectional overrides become spaces, runs of spaces collapse,
/// and the result is cut to 200 characters with an ellipsis.
pub fn sanitize(text: &str) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut last_space = true;
    for c in text.chars() {
        let c = if c.is_control() || is_bidi_control(c) {
            ' '
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        if count == TEXT_LIMIT {
            out.push('…');
            return out.trim_end().to_string();
        }
        last_space = c == ' ';
        out.push(c);
        count += 1;
    }
    out.trim_end().to_string()
}

/// Characters that reorder what a terminal shows (Trojan Source style).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A failed request, sorted by the error's type (never by its text): what the tool should
/// do about it depends on which of these it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// TLS verification refused the server's certificate (or the server refused ours).
    #[error("certificate: {0}")]
    Certificate(String),
    /// Nothing listens at the address.
    #[error("connection refused")]
    Refused,
    /// No connection or no answer within the timeout.
    #[error("no answer in time")]
    Timeout,
    /// Anything else on the way (reset, closed early, DNS): worth another try.
    #[error("{0}")]
    Other(String),
}

impl NetError {
    pub fn of(e: &reqwest::Error) -> NetError {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cur {
            for candidate in wrapped(err) {
                if let Some(tls) = candidate.downcast_ref::<rustls::Error>() {
                    use rustls::AlertDescription as A;
                    match tls {
                        rustls::Error::InvalidCertificate(_)
                        | rustls::Error::NoCertificatesPresented
                        | rustls::Error::AlertReceived(
                            A::BadCertificate
                            | A::UnknownCA
                            | A::CertificateUnknown
                            | A::CertificateExpired
                            | A::CertificateRequired
                            | A::UnsupportedCertificate,
                        ) => return NetError::Certificate(tls.to_string()),
                        _ => {}
                    }
                }
                if let Some(io) = candidate.downcast_ref::<std::io::Error>() {
                    match io.kind() {
                        std::io::ErrorKind::ConnectionRefused => return NetError::Refused,
                        std::io::ErrorKind::TimedOut => return NetError::Timeout,
                        _ => {}
                    }
                }
            }
            cur = err.source();
        }
        if e.is_timeout() {
            NetError::Timeout
        } else if e.is_body() {
            // reqwest's blocking client reports a connection the kernel dropped mid-body (see
            // tcp_user_timeout in transport::http) as a closed channel, losing the cause.
            NetError::Other("the connection broke while the body was sent or read".into())
        } else {
            // The URL is left out: the caller names the request, and an upload URL's query
            // is a long state token.
            let mut text = e.to_string();
            if let Some(url) = e.url() {
                text = text.replace(&format!(" for url ({url})"), "");
            }
            let mut cur = std::error::Error::source(e);
            while let Some(s) = cur {
                let t = s.to_string();
                if !text.contains(&t) {
                    text = format!("{text}: {t}");
                }
                cur = s.source();
            }
            NetError::Other(text)
        }
    }
}

/// `err` and the errors it wraps that `source()` skips: an io::Error reports its inner
/// error's source, not the inner error itself, and the connector nests io::Errors around
/// rustls's error.
fn wrapped<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = vec![err];
    let mut i = 0;
    while i < out.len() && out.len() < 16 {
        let e = out[i];
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            out.push(inner as &(dyn std::error::Error + 'static));
        }
        i += 1;
    }
    out
}

/// `METHOD scheme://host/path` of a request, for messages (no query: upload state tokens).
pub fn describe_request(method: &reqwest::Method, url: &reqwest::Url) -> String {
    format!(
        "{method} {}{}",
        url.origin().ascii_serialization(),
        url.path()
    )
}

/// True for hosts that may be reached over plain HTTP without being named insecure.
pub fn is_loopback(host: &str) -> bool {
    let name = host_name(host);
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

pub fn http_allowed(opts: &RegistryOptions, host: &str) -> bool {
    is_loopback(host)
        || opts
            .insecure
            .iter()
            .any(|i| i == host || i == host_name(host))
}

/// The host that serves the API for a registry name (Docker Hub's differs from its name).
pub fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

/// The HTTP client every registry request goes through: the embedded CA roots plus
/// `--registry-ca`, the timeouts, and the redirect policy.
pub fn http(opts: &RegistryOptions, shell: &Shell) -> Result<Http> {
    announce_trust(shell);
    http_client(opts)
}

/// Says which variables replace the system's CA store for registry TLS (the client trusts
/// that store besides its own roots): a variable set for something else then decides whom a
/// push trusts.
pub fn announce_trust(shell: &Shell) {
    // Besides these roots, reqwest's platform verifier trusts the system's store, which
    // SSL_CERT_FILE / SSL_CERT_DIR replace (rustls-native-certs).
    for var in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
        if let Some(v) = std::env::var_os(var) {
            shell.status(
                "Trusting",
                format!(
                    "{var}={} for registry TLS (from the environment, in place of the system's CA store)",
                    std::path::Path::new(&v).display()
                ),
            );
        }
    }
}

/// [`http`] without a word on the shell: what a push can build on another thread ahead of
/// time (parsing the CA roots takes milliseconds).
pub fn http_client(opts: &RegistryOptions) -> Result<Http> {
    // ring, not aws-lc: no cmake or large C build for users compiling this tool. Installing
    // twice is harmless (the second call reports the first provider).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = reqwest::Certificate::from_pem_bundle(&crate::util::ca::webpki_pem())
        .context("loading the embedded CA roots")?;
    if let Some(ca) = &opts.ca_file {
        let pem = std::fs::read(ca).with_context(|| {
            format!(
                "cannot read --registry-ca {}; give the path of a PEM CA certificate",
                ca.display()
            )
        })?;
        let extra = reqwest::Certificate::from_pem_bundle(&pem).ok().filter(|v| !v.is_empty()).with_context(|| {
            format!("--registry-ca {} holds no PEM certificate; give the registry's CA certificate in PEM form", ca.display())
        })?;
        roots.extend(extra);
    }
    let builder = Http::builder();
    // An upload into a registry that stopped reading (or vanished) leaves data unacknowledged
    // or the window shut: the kernel drops such a connection after the timeout, so a stall
    // mid-upload ends long before the upload's size-based limit.
    #[cfg(target_os = "linux")]
    let builder = builder.tcp_user_timeout(opts.timeout);
    builder
        .user_agent(concat!("cargo-containerize/", env!("CARGO_PKG_VERSION")))
        .tls_certs_merge(roots)
        .connect_timeout(opts.timeout)
        // Per request: the answer's head must come within the timeout, and then each read of
        // its body. A registry that stops answering is a retryable failure, not a hang.
        // Uploads get a limit of their own that grows with their size (see client::Client::upload_blob).
        .timeout(opts.timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .redirect(redirects())
        .build()
        .context("setting up the HTTP client")
}

/// Which redirects a request follows: at most 10, and none from https to plain http (the
/// request's body, a manifest, would go out in the clear). reqwest drops Authorization (and
/// cookies) on a hop to another origin — scheme, host or port — itself; where the last hop
/// asks for credentials, [`super::auth::Home`] refuses to answer.
fn redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.url().scheme() == "http"
            && attempt.previous().iter().any(|u| u.scheme() == "https");
        if downgrade {
            let to = attempt.url().origin().ascii_serialization();
            attempt.error(format!(
            "redirected from https to {to}, which is plain HTTP; refusing to send the request in the clear"
        ))
        } else if attempt.previous().len() > 10 {
            attempt.error("more than 10 redirects")
        } else {
            attempt.follow()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_strips_escapes_newlines_and_caps() {
        let s = sanitize("\x1b[31mred\x1b[0m\nsecond\r\u{202E}line\u{9b}");
        assert!(!s.contains('\x1b') && !s.contains('\n') && !s.contains('\r'));
        assert!(!s.contains('\u{202E}') && !s.contains('\u{9b}'));
        assert_eq!(s, "[31mred [0m second line");
        let long = sanitize(&"x".repeat(10_000));
        assert!(long.chars().count() <= TEXT_LIMIT + 1 && long.ends_with('…'));
    }

    #[test]
    fn capped_reads_stop_at_the_limit() {
        let big = std::io::repeat(b'a').take(10 << 20);
        let e = read_capped(big, None, 1 << 20, "a token", "h:1").unwrap_err();
        assert!(e.to_string().contains("1 MiB"), "{e}");
        let e = read_capped(&b""[..], Some(5 << 20), 4 << 20, "a manifest", "h").unwrap_err();
        assert!(e.to_string().contains("4 MiB"), "{e}");
        assert_eq!(read_capped(&b"abc"[..], None, 3, "x", "h").unwrap(), b"abc");
        assert_eq!(read_prefix(std::io::repeat(b'a'), 10).len(), 10);
        assert_eq!(human_limit(64 << 10), "64 KiB");
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:5000",
            "localhost",
            "localhost:80",
            "[::1]:5000",
            "127.1.2.3",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["ghcr.io", "10.0.0.1:5000", "registry.local:5000"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
