//! cosign's simple-signing payload: the document a `.sig` layer carries and its signature
//! signs. It names the signed manifest by digest and the repository it was pushed to;
//! `optional` is null, as `cosign sign` writes it without `-a`.

use crate::util::digest::Digest;
use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, Serialize};

/// The layer media type of a `.sig` manifest's payloads.
pub const MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// `critical.type`.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimpleSigning {
    pub critical: Critical,
    /// Free-form claims; cosign writes null when none are given (and so does this tool).
    pub optional: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Critical {
    pub identity: Identity,
    pub image: ImageRef,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

/// The payload signing `digest` as pushed to `repository` (`registry/name`, no tag: what
/// cosign writes as `docker-reference`). Its bytes are cosign's: the fields in its order,
/// compact JSON.
pub fn payload(repository: &str, digest: &Digest) -> Result<Vec<u8>> {
    let doc = SimpleSigning {
        critical: Critical {
            identity: Identity {
                docker_reference: repository.to_string(),
            },
            image: ImageRef {
                docker_manifest_digest: digest.to_string(),
            },
            kind: SIGNATURE_TYPE.to_string(),
        },
        optional: None,
    };
    Ok(serde_json::to_vec(&doc)?)
}

/// Reads a payload and checks that it is a cosign signature of `digest`.
pub fn check(bytes: &[u8], digest: &Digest) -> Result<SimpleSigning> {
    let doc: SimpleSigning = serde_json::from_slice(bytes)
        .map_err(|e| anyhow!("the payload is no cosign simple-signing document ({e})"))?;
    if doc.critical.kind != SIGNATURE_TYPE {
        bail!(
            "the payload's critical.type is `{}`, not `{SIGNATURE_TYPE}`",
            crate::escape_controls(&doc.critical.kind)
        );
    }
    if doc.critical.image.docker_manifest_digest != digest.as_str() {
        bail!(
            "the payload signs {}, not {digest}",
            crate::escape_controls(&doc.critical.image.docker_manifest_digest)
        );
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_cosigns() {
        let d: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let bytes = payload("127.0.0.1:5000/app", &d).unwrap();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"127.0.0.1:5000/app"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature"}},"optional":null}}"#
            )
        );
        assert!(check(&bytes, &d).is_ok());
        let other: Digest = format!("sha256:{}", "cd".repeat(32)).parse().unwrap();
        assert!(
            check(&bytes, &other)
                .unwrap_err()
                .to_string()
                .contains("not sha256:cdcd")
        );
    }
}
