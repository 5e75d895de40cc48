//! The CA bundle at /etc/ssl/certs/ca-certificates.crt, where rustls-native-certs, openssl-probe
//! and Go look first (and SSL_CERT_FILE points). By default Mozilla's roots from the
//! webpki-root-certs crate, so the image never depends on the build machine.

use crate::files::{Entry, LayerContent, Source};
use crate::metadata::spec::{CA_BUNDLE_PATH, CaCerts};
use crate::util::ca::{certificates_only, webpki_pem};
use anyhow::{Context, Result};

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
        what: crate::files::LayerKind::CaCerts,
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
