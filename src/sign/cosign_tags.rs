//! cosign's tag schema at a registry: the signatures of manifest `sha256:<hex>` are the
//! layers of the image manifest under the tag `sha256-<hex>.sig`, its attestations those under
//! `sha256-<hex>.att` (cosign's `ociremote`). That is where `cosign verify`, `cosign
//! verify-attestation`, sigstore-rs and the admission controllers look by default, on every
//! registry (no referrers API needed).
//!
//! A tag's manifest is read, our layers are added to the ones it lists (another signer's stay,
//! in order), and it is PUT back with a config listing every layer, as cosign writes it. A
//! layer of ours that is there already is not added again, so signing an unchanged image twice
//! leaves the tag as it was. Like cosign, there is no compare-and-swap: two signers writing one
//! tag at the same moment may drop the other's layer.

use crate::blobs::BlobStore;
use crate::image::canonical_json;
use crate::registry::client::{Client, ManifestRef, Transfer};
use crate::registry::retry::Failure;
use crate::registry::transport::{MANIFEST_BODY_LIMIT, read_capped};
use crate::util::digest::Digest;
use anyhow::{Result, anyhow, bail};
use oci_spec::image::MediaType;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The largest signature or attestation layer read back (an SBOM attestation of a large
/// dependency tree is a few MiB).
pub const LAYER_LIMIT: u64 = 64 * 1024 * 1024;

/// The tag of `digest`'s signatures.
pub fn sig_tag(digest: &Digest) -> String {
    format!("sha256-{}.sig", digest.hex())
}

/// The tag of `digest`'s attestations.
pub fn att_tag(digest: &Digest) -> String {
    format!("sha256-{}.att", digest.hex())
}

/// A layer to add: its bytes, media type and annotations.
#[derive(Debug, Clone)]
pub struct Layer {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

impl Layer {
    pub fn digest(&self) -> Digest {
        Digest::sha256_of(&self.bytes)
    }

    fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "size": self.bytes.len(),
            "digest": self.digest(),
            "annotations": self.annotations,
        })
    }
}

/// Whether `existing` (a listed layer) is `ours` already: the same payload, with a signature
/// that verifies with `key` (a signer's own signature of one payload may differ in bytes).
pub fn same_signature(existing: &Value, ours: &Layer, key: &super::key::PublicKey) -> bool {
    use base64::Engine as _;
    same_digest(existing, ours)
        && existing
            .pointer(&format!(
                "/annotations/{}",
                super::SIGNATURE_ANNOTATION
                    .replace('~', "~0")
                    .replace('/', "~1")
            ))
            .and_then(Value::as_str)
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .is_some_and(|sig| key.verifies(&ours.bytes, &sig))
}

/// Whether `existing` lists the same bytes as `ours`.
pub fn same_digest(existing: &Value, ours: &Layer) -> bool {
    existing.get("digest").and_then(Value::as_str) == Some(ours.digest().as_str())
}

/// Adds to the manifest under `tag` each of `ours` that `present` finds in none of its
/// layers, uploading their blobs and a new config first; returns how many it added (0: the
/// tag is left as it was).
pub fn add_layers(
    c: &Client,
    store: &BlobStore,
    tag: &str,
    ours: Vec<Layer>,
    present: impl Fn(&Value, &Layer) -> bool,
) -> Result<usize> {
    let mut layers = match read_manifest(c, tag)? {
        Some(m) => m
            .get("layers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        None => vec![],
    };
    let mut added = 0;
    for layer in ours {
        if layers.iter().any(|l| present(l, &layer)) {
            continue;
        }
        put_blob(c, store, &layer.bytes)?;
        layers.push(layer.descriptor());
        added += 1;
    }
    if added == 0 {
        return Ok(0);
    }
    let config = config_of(&layers)?;
    put_blob(c, store, &config)?;
    let manifest = canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageManifest,
        "config": {
            "mediaType": MediaType::ImageConfig,
            "size": config.len(),
            "digest": Digest::sha256_of(&config),
        },
        "layers": layers,
    }))?;
    let digest = Digest::sha256_of(&manifest);
    c.put_manifest(
        ManifestRef::Tag(tag),
        &manifest,
        &MediaType::ImageManifest,
        &digest,
    )?;
    c.verify_manifest(ManifestRef::Tag(tag), &MediaType::ImageManifest, &digest)?;
    Ok(added)
}

/// The config cosign writes for a signature image (go-containerregistry's `empty.Image` with
/// the layers appended): every layer's digest as its diff_id, zero times.
fn config_of(layers: &[Value]) -> Result<Vec<u8>> {
    let diff_ids: Vec<&Value> = layers.iter().filter_map(|l| l.get("digest")).collect();
    let history: Vec<Value> = layers
        .iter()
        .map(|_| json!({"created": "0001-01-01T00:00:00Z"}))
        .collect();
    canonical_json(&json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": history,
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {},
    }))
}

/// Reads the manifest under `tag`; None when there is none (404).
pub fn read_manifest(c: &Client, tag: &str) -> Result<Option<Value>> {
    let what = format!("{}:{tag}", c.repo);
    let accept = [
        MediaType::ImageManifest.as_ref(),
        crate::registry::pull::DOCKER_MANIFEST,
    ]
    .join(", ");
    let r = c.retrying("read a signature manifest", || {
        c.send(|h, _| {
            h.get(c.url(&format!("manifests/{tag}")))
                .header(reqwest::header::ACCEPT, &accept)
        })
        .and_then(|r| match r.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(r),
            _ => Err(Failure::Fatal(c.refused(r, &format!("reading {what}")))),
        })
    })?;
    if r.status() == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let length = r.content_length();
    let body = read_capped(r, length, MANIFEST_BODY_LIMIT, &what, &c.registry)?;
    let doc: Value = serde_json::from_slice(&body).map_err(|_| {
        anyhow!(
            "registry {} serves {what} as something that is not JSON; that tag is cosign's (signatures, attestations): delete it and sign again",
            c.registry
        )
    })?;
    if !doc.get("layers").is_some_and(Value::is_array) {
        bail!(
            "registry {} holds {what}, but it is no image manifest; that tag is cosign's (signatures, attestations): delete it and sign again",
            c.registry
        );
    }
    Ok(Some(doc))
}

/// GETs blob `digest` (at most [`LAYER_LIMIT`] bytes), its digest checked.
pub fn read_blob(c: &Client, digest: &Digest) -> Result<Vec<u8>> {
    let what = format!("blob {digest}");
    let r = c.retrying("fetch a blob", || {
        let r = c.get_blob(digest)?;
        if !r.status().is_success() {
            return Err(Failure::Fatal(c.refused(r, &what)));
        }
        Ok(r)
    })?;
    let length = r.content_length();
    let bytes = read_capped(r, length, LAYER_LIMIT, &what, &c.registry)?;
    let got = Digest::sha256_of(&bytes);
    if got != *digest {
        bail!(
            "registry {} served {what} of {} with the digest {got}; refusing it",
            c.registry,
            c.repo
        );
    }
    Ok(bytes)
}

/// Puts `bytes` in the repository as a blob unless it has it: through the blob store, from
/// which the client streams uploads.
fn put_blob(c: &Client, store: &BlobStore, bytes: &[u8]) -> Result<()> {
    let (digest, size) = store.put(bytes)?;
    if c.blob_exists(&digest)? {
        return Ok(());
    }
    c.upload_blob(&digest, size, &store.path(&digest), &Arc::new(Quiet), None)
}

/// An upload nobody watches (signature blobs are a few hundred bytes).
struct Quiet;

impl Transfer for Quiet {
    fn sent(&self, _: u64) {}
    fn restarted(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::key::SigningKey;

    fn signed(key: &SigningKey, payload: &[u8]) -> Layer {
        use base64::Engine as _;
        Layer {
            media_type: crate::sign::payload::MEDIA_TYPE,
            bytes: payload.to_vec(),
            annotations: BTreeMap::from([(
                crate::sign::SIGNATURE_ANNOTATION.to_string(),
                base64::engine::general_purpose::STANDARD.encode(key.sign(payload)),
            )]),
        }
    }

    #[test]
    fn the_tags_are_cosigns() {
        let d: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        assert_eq!(sig_tag(&d), format!("sha256-{}.sig", "ab".repeat(32)));
        assert_eq!(att_tag(&d), format!("sha256-{}.att", "ab".repeat(32)));
    }

    /// A listed layer is ours when it holds the same payload with a signature our key made;
    /// another key's signature of the same payload is someone else's.
    #[test]
    fn a_signature_is_ours_only_with_our_key() {
        let (ours, theirs) = (
            SigningKey::generate().unwrap(),
            SigningKey::generate().unwrap(),
        );
        let mine = signed(&ours, b"payload");
        let listed = mine.descriptor();
        assert!(same_signature(&listed, &mine, &ours.public()));
        assert!(!same_signature(
            &signed(&theirs, b"payload").descriptor(),
            &mine,
            &ours.public()
        ));
        assert!(!same_signature(
            &listed,
            &signed(&ours, b"other"),
            &ours.public()
        ));
    }

    #[test]
    fn the_config_lists_every_layer_as_cosign_does() {
        let key = SigningKey::generate().unwrap();
        let layers = [
            signed(&key, b"a").descriptor(),
            signed(&key, b"b").descriptor(),
        ];
        let config: Value = serde_json::from_slice(&config_of(&layers).unwrap()).unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"],
            json!([layers[0]["digest"], layers[1]["digest"]])
        );
        assert_eq!(config["history"].as_array().unwrap().len(), 2);
    }
}
