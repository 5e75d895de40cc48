//! CA roots: Mozilla's, embedded (webpki-root-certs), and the certificates of a PEM bundle.
//! The image's CA layer and the registry client's TLS both trust these.

use anyhow::{Result, bail};
use base64::Engine as _;
use std::path::Path;

/// The embedded roots as one PEM bundle.
pub fn webpki_pem() -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = String::new();
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        push_pem(&mut out, &b64.encode(cert.as_ref()));
    }
    out.into_bytes()
}

/// The certificates of a PEM bundle, encoded again as PEM: only CERTIFICATE blocks go into the
/// image, so nothing else the file holds (a private key, above all) can be published. Any other
/// block is an error naming the file and the block's kind (never its text), and so is a file
/// without a certificate.
pub fn certificates_only(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    // rustls-pki-types decodes the blocks but skips kinds it does not know (e.g. "ENCRYPTED
    // PRIVATE KEY", "OPENSSH PRIVATE KEY"): this scan of the BEGIN lines names every block
    // that is not a certificate, whatever its kind.
    for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = line.trim_ascii();
        let Some(label) = line
            .strip_prefix(b"-----BEGIN ")
            .and_then(|l| l.strip_suffix(b"-----"))
        else {
            continue;
        };
        if label == b"CERTIFICATE" {
            continue;
        }
        let label = String::from_utf8_lossy(label);
        let label: String = label.chars().filter(|c| !c.is_control()).take(40).collect();
        let remedy = if label.contains("PRIVATE KEY") {
            "remove the key from the file (a private key must never go into an image)"
        } else {
            "remove that block; a CA bundle holds only CERTIFICATE blocks"
        };
        bail!(
            "ca-certs file {} holds a {label} block at line {}; {remedy}",
            path.display(),
            n + 1
        );
    }
    let mut out = String::new();
    let b64 = base64::engine::general_purpose::STANDARD;
    for cert in CertificateDer::pem_slice_iter(bytes) {
        // The parser's message could quote the file: say what is wrong in our words.
        let cert = cert.map_err(|_| {
            anyhow::anyhow!(
                "ca-certs file {} is not a valid PEM bundle (a CERTIFICATE block is damaged or unterminated); fix or replace the file, or use \"webpki\"",
                path.display()
            )
        })?;
        push_pem(&mut out, &b64.encode(cert.as_ref()));
    }
    if out.is_empty() {
        bail!(
            "ca-certs file {} holds no PEM certificate; give ca-certs a PEM bundle, or use \"webpki\"",
            path.display()
        );
    }
    Ok(out.into_bytes())
}

/// Appends one CERTIFICATE block of base64 text, in lines of 64 characters.
fn push_pem(out: &mut String, b64: &str) {
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
}
