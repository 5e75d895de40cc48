//! `cargo containerize verify-signature`: an image's cosign signatures and attestations,
//! checked with a public key. Every manifest of the image (the index and each platform's
//! manifest) must carry a signature under its `.sig` tag that verifies with the key and whose
//! payload names that manifest's digest. Attestations found under a `.att` tag are checked
//! too (the DSSE signature, and that the statement is about that manifest): a `.att` tag of
//! which none verifies fails the manifest; others' attestations beside a verified one (signed
//! with another key, or keyless) are reported, not failed — as with signatures, where one
//! verified signature is enough.

use super::cosign_tags::{att_tag, read_blob, read_manifest, sig_tag};
use super::key::PublicKey;
use super::{dsse, payload};
use crate::registry::client::{Client, ManifestRef};
use crate::registry::pull::ACCEPTED;
use crate::registry::transport::{MANIFEST_BODY_LIMIT, read_capped};
use crate::util::digest::Digest;
use anyhow::{Result, anyhow, bail};
use base64::Engine as _;
use serde_json::Value;

/// One manifest of the image and what was found about it.
#[derive(Debug, Clone)]
pub struct Checked {
    pub digest: Digest,
    /// "index", or the platform ("linux/amd64") of a platform manifest, or "manifest".
    pub what: String,
    /// How many signatures verified, or why none did.
    pub signature: Result<usize, String>,
    /// The predicate types of the attestations that verified.
    pub attested: Vec<String>,
    /// Attestations that did not verify, each with why (a failure only when none verified).
    pub rejected: Vec<String>,
}

impl Checked {
    pub fn ok(&self) -> bool {
        self.signature.is_ok() && (self.rejected.is_empty() || !self.attested.is_empty())
    }
}

/// Checks the image `reference` names in `c`'s repository with `key`.
pub fn verify(c: &Client, reference: ManifestRef<'_>, key: &PublicKey) -> Result<Vec<Checked>> {
    let r = c.get_manifest(reqwest::Method::GET, reference, &ACCEPTED.join(", "))?;
    let length = r.content_length();
    let what = format!("manifest {reference}");
    let bytes = read_capped(r, length, MANIFEST_BODY_LIMIT, &what, &c.registry)?;
    let top = Digest::sha256_of(&bytes);
    if let ManifestRef::Digest(asked) = reference
        && *asked != top
    {
        bail!(
            "registry {} served {what} with the digest {top}; refusing it",
            c.registry
        );
    }
    let doc: Value = serde_json::from_slice(&bytes).map_err(|_| {
        anyhow!(
            "registry {} serves {what} as something that is not JSON",
            c.registry
        )
    })?;
    let mut subjects = vec![];
    match doc.get("manifests").and_then(Value::as_array) {
        Some(manifests) => {
            subjects.push((top, "index".to_string()));
            for m in manifests {
                let digest: Digest = m
                    .get("digest")
                    .and_then(Value::as_str)
                    .and_then(|d| d.parse().ok())
                    .ok_or_else(|| {
                        anyhow!("the index {reference} lists a manifest without a sha256 digest")
                    })?;
                let platform = m.get("platform").map_or("manifest".to_string(), |p| {
                    let field = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
                    [field("os"), field("architecture"), field("variant")]
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join("/")
                });
                subjects.push((digest, crate::escape_controls(&platform)));
            }
        }
        None => subjects.push((top, "manifest".to_string())),
    }
    subjects
        .into_iter()
        .map(|(digest, what)| {
            let signature = signatures(c, &digest, key)?;
            let (attested, rejected) = attestations(c, &digest, key)?;
            Ok(Checked {
                digest,
                what,
                signature,
                attested,
                rejected,
            })
        })
        .collect()
}

/// How many of `subject`'s signatures verify with `key`, or why none does.
fn signatures(c: &Client, subject: &Digest, key: &PublicKey) -> Result<Result<usize, String>> {
    let tag = sig_tag(subject);
    let Some(manifest) = read_manifest(c, &tag)? else {
        return Ok(Err(format!("not signed (no tag {tag})")));
    };
    let mut verified = 0;
    let mut why = Vec::new();
    for layer in listed(&manifest) {
        if layer.get("mediaType").and_then(Value::as_str) != Some(payload::MEDIA_TYPE) {
            continue;
        }
        match check_signature(c, layer, subject, key) {
            Ok(()) => verified += 1,
            Err(e) => why.push(format!("{e:#}")),
        }
    }
    Ok(match (verified, why.is_empty()) {
        (0, true) => Err(format!("{tag} holds no simple-signing layer")),
        (0, false) => Err(format!(
            "no signature verifies with the key {}: {}",
            key.fingerprint(),
            why.join("; ")
        )),
        (n, _) => Ok(n),
    })
}

fn listed(manifest: &Value) -> impl Iterator<Item = &Value> {
    manifest
        .get("layers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn layer_digest(layer: &Value) -> Result<Digest> {
    layer
        .get("digest")
        .and_then(Value::as_str)
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| anyhow!("a layer without a sha256 digest"))
}

fn check_signature(c: &Client, layer: &Value, subject: &Digest, key: &PublicKey) -> Result<()> {
    let digest = layer_digest(layer)?;
    let signature = layer
        .get("annotations")
        .and_then(|a| a.get(super::SIGNATURE_ANNOTATION))
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("layer {} has no signature annotation", digest.short()))?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|_| anyhow!("layer {}'s signature is not base64", digest.short()))?;
    let bytes = read_blob(c, &digest)?;
    if !key.verifies(&bytes, &signature) {
        bail!("layer {}: the signature does not verify", digest.short());
    }
    payload::check(&bytes, subject).map_err(|e| anyhow!("layer {}: {e}", digest.short()))?;
    Ok(())
}

/// The predicate types of `subject`'s attestations that verify, and the ones that do not.
fn attestations(
    c: &Client,
    subject: &Digest,
    key: &PublicKey,
) -> Result<(Vec<String>, Vec<String>)> {
    let Some(manifest) = read_manifest(c, &att_tag(subject))? else {
        return Ok((vec![], vec![]));
    };
    let (mut attested, mut rejected) = (vec![], vec![]);
    for layer in listed(&manifest) {
        if layer.get("mediaType").and_then(Value::as_str) != Some(dsse::MEDIA_TYPE) {
            continue;
        }
        match check_attestation(c, layer, subject, key) {
            Ok(predicate_type) => attested.push(predicate_type),
            Err(e) => rejected.push(format!("{e:#}")),
        }
    }
    Ok((attested, rejected))
}

fn check_attestation(
    c: &Client,
    layer: &Value,
    subject: &Digest,
    key: &PublicKey,
) -> Result<String> {
    let digest = layer_digest(layer)?;
    let bytes = read_blob(c, &digest)?;
    let short = digest.short();
    let envelope: dsse::Envelope = serde_json::from_slice(&bytes)
        .map_err(|_| anyhow!("attestation {short} is no DSSE envelope"))?;
    if envelope.payload_type != dsse::IN_TOTO {
        bail!(
            "attestation {short} carries {}, not an in-toto statement",
            crate::escape_controls(&envelope.payload_type)
        );
    }
    let statement = envelope
        .verify(key)
        .map_err(|e| anyhow!("attestation {short}: {e}"))?;
    let statement: Value = serde_json::from_slice(&statement)
        .map_err(|_| anyhow!("attestation {short}'s statement is not JSON"))?;
    let about = statement
        .get("subject")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|s| s.pointer("/digest/sha256").and_then(Value::as_str) == Some(subject.hex()));
    if !about {
        bail!("attestation {short}'s statement is not about {subject}");
    }
    Ok(statement
        .get("predicateType")
        .and_then(Value::as_str)
        .map_or("(no predicate type)".to_string(), crate::escape_controls))
}
