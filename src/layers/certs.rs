//! The CA bundle at /etc/ssl/certs/ca-certificates.crt, where rustls-native-certs, openssl-probe
//! and Go look first (and SSL_CERT_FILE points). By default Mozilla's roots from the
//! webpki-root-certs crate, so the image never depends on the build machine.

use super::{Entry, LayerContent, Source};
use crate::metadata::spec::{CA_BUNDLE_PATH, CaCerts};
use anyhow::{Context, Result, bail};
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

pub fn content(choice: &CaCerts) -> Result<Option<LayerContent>> {
    let pem = match choice {
        CaCerts::None => return Ok(None),
        CaCerts::Webpki => webpki_pem(),
        CaCerts::File(p) => {
            let bytes = std::fs::read(p)
                .with_context(|| format!("cannot read CA bundle {}", p.display()))?;
            certificates_only(p, &bytes)?
        }
    };
    Ok(Some(LayerContent {
        what: "ca certificates".into(),
        entries: vec![Entry::file(CA_BUNDLE_PATH, Source::Owned(pem), 0o644)],
        mtime: 0,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn webpki_bundle_has_every_root() {
        let pem = String::from_utf8(super::webpki_pem()).unwrap();
        let n = pem.matches("-----BEGIN CERTIFICATE-----").count();
        assert_eq!(n, webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
        assert!(n > 100, "{n}");
    }

    #[test]
    fn only_certificates_pass_and_keys_are_named_not_shown() {
        use std::path::Path;
        let pem = super::webpki_pem();
        let p = Path::new("b.pem");
        assert_eq!(super::certificates_only(p, &pem).unwrap(), pem);
        let mut noisy = b"# comment\r\n".to_vec();
        noisy.extend(&pem);
        noisy.extend(b"trailing text\n");
        assert_eq!(super::certificates_only(p, &noisy).unwrap(), pem);
        let mut keyed = pem.clone();
        keyed.extend(
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0\n-----END OPENSSH PRIVATE KEY-----\n",
        );
        let err = super::certificates_only(p, &keyed).unwrap_err().to_string();
        assert!(
            err.contains("b.pem") && err.contains("OPENSSH PRIVATE KEY"),
            "{err}"
        );
        assert!(
            err.contains("remove the key") && !err.contains("c2VjcmV0"),
            "{err}"
        );
        let err = super::certificates_only(p, b"nothing")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
    }
}
