//! OCI 1.1 referrers at a registry. Each attachment's manifest is PUT by digest once its
//! subject is in the repository under every tag; a registry with the referrers API indexes it
//! itself and says so with `OCI-Subject`. One that does not (docker distribution 2.8, GHCR)
//! gets the referrers tag schema of the distribution spec instead: the image index under the
//! tag `sha256-<hex of the subject>` lists the subject's referrers. What other tools listed
//! there (signatures, their own SBOMs) stays; ours are added once.

use super::client::{Client, Failure};
use super::push::put_manifest;
use super::remote::{MANIFEST_BODY_LIMIT, read_capped, sanitize};
use crate::image::{Attachment, INDEX_MEDIA_TYPE, Image, canonical_json};
use anyhow::{Result, anyhow};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The tag the referrers tag schema keeps `subject`'s referrers under: `sha256-<hex>`.
pub fn fallback_tag(subject: &str) -> String {
    subject.replacen(':', "-", 1)
}

/// What [`push`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Referred {
    /// Referrer manifests PUT.
    pub manifests: usize,
    /// Fallback tags written (the registry has no referrers API).
    pub tags: Vec<String>,
}

/// PUTs every attachment's manifest (its blobs are already in), in the image's order, each
/// after its subject; then, for each subject the registry did not index itself, updates the
/// fallback tag. Call it only once the image is pushed.
pub fn push(c: &Client, image: &Image) -> Result<Referred> {
    let mut unindexed: BTreeMap<&str, Vec<&Attachment>> = BTreeMap::new();
    let mut done = Referred::default();
    for a in &image.attachments {
        let answer = put_manifest(
            c,
            &a.manifest.digest,
            &a.manifest.bytes,
            a.manifest.media_type,
            &a.manifest.digest,
        )?;
        done.manifests += 1;
        if answer.oci_subject.as_deref() != Some(a.subject.as_str()) {
            unindexed.entry(&a.subject).or_default().push(a);
        }
    }
    for (subject, attachments) in unindexed {
        let tag = fallback_tag(subject);
        let ours: Vec<Value> = attachments.iter().map(|a| a.descriptor()).collect();
        if update_fallback(c, &tag, ours)? {
            crate::util::shell::verbose(
                "Referrers",
                format!(
                    "{}/{}:{tag} lists the referrers of {subject} (the registry has no referrers API)",
                    c.registry, c.repo
                ),
            );
        }
        done.tags.push(tag);
    }
    Ok(done)
}

/// The index under `tag`, if there is one: its `manifests`.
fn read_fallback(c: &Client, tag: &str) -> Result<Vec<Value>> {
    let what = format!("the referrers index {}:{tag}", c.repo);
    let r = c.retrying("read the referrers index", || {
        c.send(|h, _| {
            h.get(c.url(&format!("manifests/{tag}")))
                .header(reqwest::header::ACCEPT, INDEX_MEDIA_TYPE)
        })
        .and_then(|r| match r.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(r),
            _ => Err(Failure::Fatal(c.refused(r, &format!("reading {what}")))),
        })
    })?;
    if r.status() == StatusCode::NOT_FOUND {
        return Ok(vec![]);
    }
    let length = r.content_length();
    let body = read_capped(r, length, MANIFEST_BODY_LIMIT, &what, &c.registry)?;
    let index: Value = serde_json::from_slice(&body).map_err(|e| {
        anyhow!(
            "registry {} serves {what} as something that is not JSON ({}); delete that tag (it belongs to the referrers tag schema) and push again",
            c.registry,
            sanitize(&e.to_string())
        )
    })?;
    let media_type = index.get("mediaType").and_then(Value::as_str);
    match index.get("manifests").and_then(Value::as_array) {
        Some(m) if media_type.is_none_or(|t| t == INDEX_MEDIA_TYPE) => Ok(m.clone()),
        _ => Err(anyhow!(
            "registry {} holds {what}, but it is a {}, not an image index; that tag belongs to the referrers tag schema: delete it, then push again",
            c.registry,
            sanitize(media_type.unwrap_or("document without manifests"))
        )),
    }
}

/// Adds `ours` to the index under `tag` (made when missing), keeping every other entry; PUTs
/// it only if something was added. Returns whether it did.
fn update_fallback(c: &Client, tag: &str, ours: Vec<Value>) -> Result<bool> {
    let mut manifests = read_fallback(c, tag)?;
    let before = manifests.len();
    for d in ours {
        if !manifests.iter().any(|m| m.get("digest") == d.get("digest")) {
            manifests.push(d);
        }
    }
    if manifests.len() == before {
        return Ok(false);
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": manifests,
    });
    let bytes = canonical_json(&index)?;
    let digest = crate::blobs::digest_of(&bytes);
    put_manifest(c, tag, &bytes, INDEX_MEDIA_TYPE, &digest)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_schema_names_the_subject() {
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(fallback_tag(&d), format!("sha256-{}", "ab".repeat(32)));
    }
}
