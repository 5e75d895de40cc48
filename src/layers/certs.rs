//! The CA bundle at /etc/ssl/certs/ca-certificates.crt, where rustls-native-certs, openssl-probe
//! and Go look first (and SSL_CERT_FILE points). By default Mozilla's roots from the
//! webpki-root-certs crate, so the image never depends on the build machine.

use super::{Entry, LayerContent, Source};
use crate::metadata::spec::{CA_BUNDLE_PATH, CaCerts};
use anyhow::{Context, Result, bail};
use base64::Engine as _;

/// The embedded roots as one PEM bundle.
pub fn webpki_pem() -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = String::new();
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let text = b64.encode(cert.as_ref());
        for line in text.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out.into_bytes()
}

pub fn content(choice: &CaCerts) -> Result<Option<LayerContent>> {
    let pem = match choice {
        CaCerts::None => return Ok(None),
        CaCerts::Webpki => webpki_pem(),
        CaCerts::File(p) => {
            let bytes = std::fs::read(p)
                .with_context(|| format!("cannot read CA bundle {}", p.display()))?;
            if !bytes
                .windows(27)
                .any(|w| w == b"-----BEGIN CERTIFICATE-----")
            {
                bail!(
                    "{} holds no PEM certificate; give ca-certs a PEM bundle, or use \"webpki\"",
                    p.display()
                );
            }
            bytes
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
}
