//! DSSE (Dead Simple Signing Envelope, secure-systems-lab/dsse v1): the envelope `cosign
//! attest` puts an in-toto statement in. The signature is over the pre-authentication
//! encoding (PAE) of the payload type and the payload, never the payload alone, so a signed
//! statement cannot be passed off as another type of document.

use super::key::{PublicKey, SigningKey};
use anyhow::{Result, anyhow};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// The layer media type of an attestation in a `.att` manifest.
pub const MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The payload type of an in-toto statement.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII
/// decimal (the DSSE v1 protocol). Hand-written: it is one line, and the crates that have it
/// (sigstore-rs, in-toto) would bring a whole signing stack.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub payload_type: String,
    /// The statement, base64.
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// Empty, as cosign writes it for a key.
    #[serde(default)]
    pub keyid: String,
    /// The DER ECDSA signature of the PAE, base64.
    pub sig: String,
}

impl Envelope {
    /// `statement` (an in-toto statement's JSON) signed with `key`.
    pub fn sign(statement: &[u8], key: &SigningKey) -> Envelope {
        Envelope {
            payload_type: IN_TOTO.to_string(),
            payload: B64.encode(statement),
            signatures: vec![EnvelopeSignature {
                keyid: String::new(),
                sig: B64.encode(key.sign(&pae(IN_TOTO, statement))),
            }],
        }
    }

    /// The statement, if one of the signatures verifies with `key`.
    pub fn verify(&self, key: &PublicKey) -> Result<Vec<u8>> {
        let body = B64
            .decode(&self.payload)
            .map_err(|_| anyhow!("the envelope's payload is not base64"))?;
        let message = pae(&self.payload_type, &body);
        let verified = self.signatures.iter().any(|s| {
            B64.decode(&s.sig)
                .is_ok_and(|sig| key.verifies(&message, &sig))
        });
        if !verified {
            return Err(anyhow!(
                "none of the envelope's {} signature(s) verifies with the key {}",
                self.signatures.len(),
                key.fingerprint()
            ));
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the DSSE v1 protocol document.
    #[test]
    fn pae_is_the_protocols() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn an_envelope_verifies_only_with_its_key_and_payload() {
        let key = SigningKey::generate().unwrap();
        let envelope = Envelope::sign(br#"{"_type":"x"}"#, &key);
        assert_eq!(envelope.verify(&key.public()).unwrap(), br#"{"_type":"x"}"#);
        let other = SigningKey::generate().unwrap();
        assert!(envelope.verify(&other.public()).is_err());
        let mut tampered = envelope.clone();
        tampered.payload = B64.encode(br#"{"_type":"y"}"#);
        assert!(tampered.verify(&key.public()).is_err());
        let mut retyped = envelope;
        retyped.payload_type = "text/plain".into();
        assert!(retyped.verify(&key.public()).is_err());
    }
}
