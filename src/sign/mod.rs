//! Signing: the pushed image signed, and its provenance and SBOMs attested, in cosign's
//! formats, so `cosign verify`, `cosign verify-attestation` and the policy engines that read
//! cosign's layout (Kyverno, Sigstore policy-controller, Connaisseur, Ratify) check them.
//!
//! - [`key`]: the private key (cosign's encrypted key file or a PKCS#8 P-256 PEM) and the
//!   public key; `generate-key-pair` writes cosign's pair.
//! - [`payload`]: the simple-signing payload a signature signs (the manifest's digest and the
//!   repository).
//! - [`dsse`]: the DSSE envelope an attestation is (an in-toto statement, signed over PAE).
//! - [`cosign_tags`]: where they go at the registry — cosign's tag schema: the signatures of
//!   manifest `sha256:<hex>` are the layers of the manifest under the tag `sha256-<hex>.sig`,
//!   its attestations those under `sha256-<hex>.att` — read, merged and written through the
//!   `registry` layer's client (same credentials, retries and bounds as the push).
//! - [`verify`]: `cargo containerize verify-signature`.
//!
//! Signing happens once the image is pushed ([`sign_pushed`], called by the push output);
//! it adds manifests beside the image and never changes it, so the image's digest is the
//! same signed or not. With a key, nothing reaches a transparency log: a verifier trusts the
//! key itself (`cosign verify --key cosign.pub --insecure-ignore-tlog`).

pub mod cosign_tags;
pub mod dsse;
pub mod key;
pub mod payload;
pub mod verify;

use crate::blobs::BlobStore;
use crate::image::Image;
use crate::registry::client::Client;
use crate::util::digest::Digest;
use anyhow::{Context, Result};
use cosign_tags::Layer;
use key::SigningKey;
use serde::Serialize;
use std::collections::BTreeMap;

/// The annotation of a `.sig` layer holding its signature (base64 of the DER ECDSA
/// signature of the payload); on a `.att` layer it is empty, as cosign writes it.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The annotation of a `.att` layer naming its statement's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";

/// The predicate type of an SPDX SBOM attestation (`cosign attest --type spdxjson`).
pub const SPDX_PREDICATE: &str = "https://spdx.dev/Document";
/// The predicate type of a CycloneDX SBOM attestation (`cosign attest --type cyclonedx`).
pub const CYCLONEDX_PREDICATE: &str = "https://cyclonedx.org/bom";

/// What [`sign_pushed`] did in one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signed {
    /// Manifests signed now.
    pub signatures: usize,
    /// Manifests whose `.sig` already held this key's signature (nothing added).
    pub already_signed: usize,
    /// Attestations added.
    pub attestations: usize,
    /// Attestations already there.
    pub already_attested: usize,
}

/// Signs the pushed `image` in `c`'s repository with `key`: the index (if any) and each
/// platform manifest get a signature under their `.sig` tag, and each platform manifest's
/// provenance and SBOMs an attestation under its `.att` tag. What the tags already hold
/// (other signers' layers) stays; ours is added only when not there yet. Call it only once
/// the image is pushed.
pub fn sign_pushed(
    c: &Client,
    image: &Image,
    store: &BlobStore,
    key: &SigningKey,
) -> Result<Signed> {
    let repository = docker_reference(&c.registry, &c.repo);
    let mut done = Signed::default();
    let subjects = image
        .index
        .iter()
        .chain(image.platforms.iter().map(|p| &p.manifest));
    for subject in subjects {
        let payload = payload::payload(&repository, &subject.digest)?;
        let signature = base64_of(&key.sign(&payload));
        let layer = Layer {
            media_type: payload::MEDIA_TYPE,
            bytes: payload,
            annotations: BTreeMap::from([(SIGNATURE_ANNOTATION.to_string(), signature)]),
        };
        let public = key.public();
        let added = cosign_tags::add_layers(
            c,
            store,
            &cosign_tags::sig_tag(&subject.digest),
            vec![layer],
            |existing, ours| cosign_tags::same_signature(existing, ours, &public),
        )
        .with_context(|| format!("signing {}", subject.digest))?;
        if added > 0 {
            done.signatures += 1;
        } else {
            done.already_signed += 1;
        }
    }
    for p in &image.platforms {
        let layers = attestations(image, store, &repository, &p.manifest.digest, key)?;
        if layers.is_empty() {
            continue;
        }
        let count = layers.len();
        let added = cosign_tags::add_layers(
            c,
            store,
            &cosign_tags::att_tag(&p.manifest.digest),
            layers,
            cosign_tags::same_digest,
        )
        .with_context(|| format!("attesting {}", p.manifest.digest))?;
        done.attestations += added;
        done.already_attested += count - added;
    }
    Ok(done)
}

/// The repository as cosign names it in `critical.identity.docker-reference`
/// (go-containerregistry's `Repository.Name()`): Docker Hub is `index.docker.io`.
pub fn docker_reference(registry: &str, repo: &str) -> String {
    let registry = if registry == "docker.io" {
        "index.docker.io"
    } else {
        registry
    };
    format!("{registry}/{repo}")
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// An in-toto Statement v1 around an SBOM (the provenance is one already).
#[derive(Serialize)]
struct Statement<'a> {
    #[serde(rename = "_type")]
    statement_type: &'static str,
    subject: [Subject<'a>; 1],
    #[serde(rename = "predicateType")]
    predicate_type: &'static str,
    predicate: serde_json::Value,
}

#[derive(Serialize)]
struct Subject<'a> {
    name: &'a str,
    digest: BTreeMap<&'static str, &'a str>,
}

/// The `.att` layers of platform manifest `subject`: a DSSE envelope per document attached to
/// it (the provenance statement as it is; each SBOM inside an in-toto statement, as `cosign
/// attest --type spdxjson|cyclonedx` wraps it), each signed with `key`.
fn attestations(
    image: &Image,
    store: &BlobStore,
    repository: &str,
    subject: &Digest,
    key: &SigningKey,
) -> Result<Vec<Layer>> {
    let mut layers = Vec::new();
    for a in image.attachments.iter().filter(|a| a.subject == *subject) {
        let Some(blob) = a.blobs.first() else {
            continue;
        };
        let bytes = read_blob(store, &blob.digest, blob.size)?;
        let (statement, predicate_type) = match a.artifact_type.as_ref() {
            crate::attest::provenance::MEDIA_TYPE => {
                let predicate_type = serde_json::from_slice::<serde_json::Value>(&bytes)?
                    .get("predicateType")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or(crate::attest::provenance::PREDICATE_TYPE)
                    .to_string();
                (bytes, predicate_type)
            }
            t => {
                let predicate_type = match t {
                    crate::attest::spdx::MEDIA_TYPE => SPDX_PREDICATE,
                    crate::attest::cyclonedx::MEDIA_TYPE => CYCLONEDX_PREDICATE,
                    _ => continue,
                };
                let statement = Statement {
                    statement_type: crate::attest::provenance::STATEMENT_TYPE,
                    subject: [Subject {
                        name: repository,
                        digest: BTreeMap::from([("sha256", subject.hex())]),
                    }],
                    predicate_type,
                    predicate: serde_json::from_slice(&bytes)
                        .context("an SBOM attached to the image is not JSON")?,
                };
                (serde_json::to_vec(&statement)?, predicate_type.to_string())
            }
        };
        let envelope = dsse::Envelope::sign(&statement, key);
        layers.push(Layer {
            media_type: dsse::MEDIA_TYPE,
            bytes: serde_json::to_vec(&envelope)?,
            annotations: BTreeMap::from([
                (SIGNATURE_ANNOTATION.to_string(), String::new()),
                (PREDICATE_TYPE_ANNOTATION.to_string(), predicate_type),
            ]),
        });
    }
    Ok(layers)
}

/// A document of the image from the store, its digest checked.
fn read_blob(store: &BlobStore, digest: &Digest, size: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    store
        .open_proven(digest, size)?
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {digest} from the blob store"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_is_named_as_cosign_names_it() {
        assert_eq!(
            docker_reference("docker.io", "library/app"),
            "index.docker.io/library/app"
        );
        assert_eq!(
            docker_reference("127.0.0.1:5000", "team/app"),
            "127.0.0.1:5000/team/app"
        );
    }
}
