//! OCI 1.1 referrers at a registry. Each attachment's manifest is PUT by digest once its own
//! blobs are in, beside the image rather than after it: the distribution spec has a registry
//! accept a manifest whose subject is not in yet ("in either order"), so a cold push pays for
//! its referrers while the image's layers upload (a push whose image fails may leave them in,
//! naming a subject that a retry puts there). A registry with the referrers API indexes each
//! itself and says so with `OCI-Subject`. One that does not (docker distribution 2.8, GHCR)
//! gets the referrers tag schema of the distribution spec instead: the image index under the
//! tag `sha256-<hex of the subject>` lists the subject's referrers. What other tools listed
//! there (signatures, their own SBOMs) stays; ours are added once; entries that are not
//! descriptors are dropped, with a warning.
//!
//! The tag schema has no compare-and-swap (docker distribution ignores `If-Match`): two pushes
//! that read the index at once each PUT their own version, and the later one drops the
//! other's entries. So the index is read back after its PUT, once the other writer has had
//! time to PUT too (twice as long as our own read and PUT took), and merged again while ours
//! are missing — a bounded number of rounds.

use super::push::Survey;
use crate::image::{Attachment, Image, canonical_json};
use crate::registry::client::{Client, ManifestRef};
use crate::registry::error::RegistryError;
use crate::registry::retry::Failure;
use crate::registry::transport::{MANIFEST_BODY_LIMIT, read_capped, sanitize};
use crate::util::digest::Digest;
use anyhow::{Result, anyhow, bail};
use oci_spec::image::MediaType;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Rounds of read, merge, PUT and read back before a push gives up on the index.
const ROUNDS: u32 = 5;
/// The shortest and longest wait between a PUT of the index and its read-back.
/// The floor matters only where our own read and PUT are fast (a registry on the same host
/// or network), and so are a writer's there; anywhere else twice our own time is longer.
const SETTLE_MIN: Duration = Duration::from_millis(25);
const SETTLE_MAX: Duration = Duration::from_secs(2);

/// The tag the referrers tag schema keeps `subject`'s referrers under: `sha256-<hex>`.
pub fn fallback_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

/// What [`push`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Referred {
    /// Referrer manifests PUT.
    pub manifests: usize,
    /// Referrers found in place (and listed) by the survey, so not sent again.
    pub proven: usize,
    /// Fallback tags written or proven (the registry has no referrers API).
    pub tags: Vec<String>,
}

/// How a subject's referrers were found listed the last time this user pushed them to a
/// repository, remembered (in the user's cache, see [`crate::memo`]) by the registry, the
/// repository, the subject and the referrers: the registry indexes them itself (it has the
/// referrers API), or the tag schema's index with this digest lists them all. A claim a
/// survey checks, never trusted alone: the index is proven only while its tag still serves
/// that digest, which names its bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Listing {
    Api,
    Tag(Digest),
}

/// The attachments of `image`, by subject, in the image's order.
fn by_subject(image: &Image) -> BTreeMap<&Digest, Vec<&Attachment>> {
    let mut groups: BTreeMap<&Digest, Vec<&Attachment>> = BTreeMap::new();
    for a in &image.attachments {
        groups.entry(&a.subject).or_default().push(a);
    }
    groups
}

fn listing_key(c: &Client, subject: &Digest, ours: &[&Attachment]) -> String {
    let mut parts: Vec<&[u8]> = vec![
        b"referrers listed v1",
        c.registry.as_bytes(),
        c.repo.as_bytes(),
        subject.as_bytes(),
    ];
    parts.extend(ours.iter().map(|a| a.manifest.digest.as_bytes()));
    crate::memo::key(&parts)
}

fn remembered(c: &Client, subject: &Digest, ours: &[&Attachment]) -> Option<Listing> {
    crate::memo::get("referrers", &listing_key(c, subject, ours), c.shell())
}

/// What a survey asks about the image's referrers, from what this machine remembers of
/// pushing them to this repository (one look per subject):
/// - `tags`: the tag schema's tag of each subject whose referrers were last found listed
///   there, which [`push`] needs read to prove them listed;
/// - `unasked`: the manifests and blobs of the attachments no push here is remembered for.
///   On a first push, asking after each costs a round trip (and the registry a lookup) for an
///   answer that is almost surely "no", so the survey leaves them out and they are sent as
///   they are (sending what is there already changes nothing: content-addressed). Once a push
///   is remembered they are asked after, and an unchanged re-push sends nothing.
pub struct ToSurvey<'a> {
    pub tags: Vec<String>,
    pub unasked: std::collections::HashSet<&'a Digest>,
}

pub fn to_survey<'a>(c: &Client, image: &'a Image) -> ToSurvey<'a> {
    let mut wanted = ToSurvey {
        tags: Vec::new(),
        unasked: std::collections::HashSet::new(),
    };
    for (subject, ours) in by_subject(image) {
        match remembered(c, subject, &ours) {
            Some(Listing::Tag(_)) => wanted.tags.push(fallback_tag(subject)),
            Some(Listing::Api) => {}
            None => {
                for a in ours {
                    wanted.unasked.insert(&a.manifest.digest);
                    wanted.unasked.insert(&a.config.digest);
                    wanted.unasked.extend(a.blobs.iter().map(|b| &b.digest));
                }
            }
        }
    }
    wanted
}

/// Whether `survey` proves every one of `ours` in the repository and listed as a referrer of
/// `subject`: each manifest is there (by digest), and the registry indexes referrers itself,
/// or the subject's tag still serves the index that listed them all.
/// `listing` is what [`remembered`] says of them.
fn proven(
    subject: &Digest,
    ours: &[&Attachment],
    listing: Option<&Listing>,
    survey: &Survey,
) -> bool {
    ours.iter()
        .all(|a| survey.manifests.contains(&a.manifest.digest))
        && match listing {
            Some(Listing::Api) => true,
            Some(Listing::Tag(index)) => survey.tags.get(&fallback_tag(subject)) == Some(index),
            None => false,
        }
}

/// PUTs every attachment's manifest (its blobs are already in), all at once per subject;
/// then, for each subject the registry did not index itself, updates the
/// fallback tag. A subject whose referrers `survey` proves in place and listed is left alone
/// (an unchanged re-push sends nothing). It need not wait for the image: see the module's
/// words on order.
pub fn push(c: &Client, image: &Image, survey: &Survey) -> Result<Referred> {
    let mut done = Referred::default();
    let mut unindexed: BTreeMap<&Digest, Vec<&Attachment>> = BTreeMap::new();
    let mut indexed: Vec<(&Digest, Vec<&Attachment>)> = Vec::new();
    for (subject, ours) in by_subject(image) {
        let listing = remembered(c, subject, &ours);
        if proven(subject, &ours, listing.as_ref(), survey) {
            done.proven += ours.len();
            if survey.tags.contains_key(&fallback_tag(subject)) {
                done.tags.push(fallback_tag(subject));
            }
            continue;
        }
        // A registry last seen without the referrers API need not be told again of a
        // manifest it has: only its index needs ours back.
        let known_tag = matches!(listing, Some(Listing::Tag(_)));
        let (there, to_put): (Vec<&Attachment>, Vec<&Attachment>) = ours
            .iter()
            .partition(|a| known_tag && survey.manifests.contains(&a.manifest.digest));
        done.proven += there.len();
        // Independent of one another once their subject is in: PUT at once.
        let answers = std::thread::scope(|scope| {
            let puts: Vec<_> = to_put
                .iter()
                .map(|a| {
                    scope.spawn(move || {
                        c.put_manifest(
                            ManifestRef::Digest(&a.manifest.digest),
                            &a.manifest.bytes,
                            &a.manifest.media_type,
                            &a.manifest.digest,
                        )
                    })
                })
                .collect();
            puts.into_iter()
                .map(|p| {
                    p.join()
                        .unwrap_or_else(|_| Err(anyhow!("a referrer's upload thread stopped")))
                })
                .collect::<Vec<_>>()
        });
        let mut api = !known_tag;
        for (a, answer) in to_put.iter().zip(answers) {
            let answer = answer?;
            done.manifests += 1;
            if answer.oci_subject.as_ref() != Some(&a.subject) {
                api = false;
            }
        }
        if api {
            indexed.push((subject, ours));
        } else {
            unindexed.insert(subject, ours);
        }
    }
    for (subject, ours) in indexed {
        let key = listing_key(c, subject, &ours);
        crate::memo::put("referrers", &key, &Listing::Api, &[], c.shell());
    }
    for (subject, attachments) in unindexed {
        let tag = fallback_tag(subject);
        let ours = attachments
            .iter()
            .map(|a| a.descriptor())
            .collect::<Result<Vec<Value>>>()?;
        let (wrote, index) = update_fallback(c, &tag, ours)?;
        if wrote {
            c.shell().verbose(
                "Referrers",
                format!(
                    "{}/{}:{tag} lists the referrers of {subject} (the registry has no referrers API)",
                    c.registry, c.repo
                ),
            );
        }
        let key = listing_key(c, subject, &attachments);
        crate::memo::put("referrers", &key, &Listing::Tag(index), &[], c.shell());
        done.tags.push(tag);
    }
    Ok(done)
}

/// The index under `tag`, if there is one: its descriptors, and the digest of its bytes.
fn read_fallback(c: &Client, tag: &str) -> Result<(Listed, Option<Digest>)> {
    let what = format!("the referrers index {}:{tag}", c.repo);
    let r = c.retrying("read the referrers index", || {
        c.send(|h, _| {
            h.get(c.url(&format!("manifests/{tag}")))
                .header(reqwest::header::ACCEPT, MediaType::ImageIndex.as_ref())
        })
        .and_then(|r| match r.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(r),
            _ => Err(Failure::Fatal(c.refused(r, &format!("reading {what}")))),
        })
    })?;
    if r.status() == StatusCode::NOT_FOUND {
        return Ok((Listed::default(), None));
    }
    let length = r.content_length();
    let body = read_capped(r, length, MANIFEST_BODY_LIMIT, &what, &c.registry)?;
    let digest = Digest::sha256_of(&body);
    let listed = parse_index(&body).map_err(|e| match e {
        IndexError::NotJson(detail) => anyhow!(
            "registry {} serves {what} as something that is not JSON ({detail}); delete that tag (it belongs to the referrers tag schema) and push again",
            c.registry
        ),
        IndexError::NotAnIndex(kind) => anyhow!(
            "registry {} holds {what}, but it is a {kind}, not an image index; that tag belongs to the referrers tag schema: delete it, then push again",
            c.registry
        ),
    })?;
    Ok((listed, Some(digest)))
}

/// The entries of a referrers index, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listed {
    /// Its descriptors, in order.
    pub manifests: Vec<Value>,
    /// Entries that are not descriptors (dropped).
    pub dropped: usize,
}

/// Why a `sha256-…` tag's document is no referrers index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexError {
    /// Not JSON (the parser's message, sanitized).
    NotJson(String),
    /// JSON, but no image index: what it is (sanitized).
    NotAnIndex(String),
}

/// Parses the document under a `sha256-…` tag: an image index (a `manifests` array, and an
/// index `mediaType` if any). Entries that are not descriptors are counted and left out.
pub fn parse_index(body: &[u8]) -> Result<Listed, IndexError> {
    let index: Value =
        serde_json::from_slice(body).map_err(|e| IndexError::NotJson(sanitize(&e.to_string())))?;
    let media_type = index.get("mediaType").and_then(Value::as_str);
    match index.get("manifests").and_then(Value::as_array) {
        Some(m) if media_type.is_none_or(|t| MediaType::from(t) == MediaType::ImageIndex) => {
            let manifests: Vec<Value> = m.iter().filter(|d| is_descriptor(d)).cloned().collect();
            Ok(Listed {
                dropped: m.len() - manifests.len(),
                manifests,
            })
        }
        _ => Err(IndexError::NotAnIndex(sanitize(
            media_type.unwrap_or("document without manifests"),
        ))),
    }
}

/// An OCI descriptor, as far as an index entry must be one to be kept: an object with a
/// string `mediaType`, a `digest` of the form `algorithm:encoded` (the image spec's grammar)
/// and a non-negative integer `size`.
pub fn is_descriptor(v: &Value) -> bool {
    let digest_ok = v.get("digest").and_then(Value::as_str).is_some_and(|d| {
        let Some((algorithm, encoded)) = d.split_once(':') else {
            return false;
        };
        let component = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        algorithm.split(['+', '.', '_', '-']).all(component)
            && !encoded.is_empty()
            && encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
    });
    v.is_object()
        && digest_ok
        && v.get("mediaType").is_some_and(Value::is_string)
        && v.get("size").is_some_and(Value::is_u64)
}

/// `listed` with each of `ours` whose digest it lacks appended, in order; everything listed
/// stays. Returns None when nothing of ours is missing.
pub fn merge(listed: &[Value], ours: &[Value]) -> Option<Vec<Value>> {
    let mut merged = listed.to_vec();
    for d in ours {
        if !merged.iter().any(|m| m.get("digest") == d.get("digest")) {
            merged.push(d.clone());
        }
    }
    (merged.len() > listed.len()).then_some(merged)
}

/// Adds `ours` to the index under `tag` (made when missing), keeping every other descriptor;
/// PUTs it only if something of ours was missing, then reads it back after a while and
/// merges again while something is (another push may have PUT its own version meanwhile),
/// at most [`ROUNDS`] times. Returns whether it PUT the index, and the digest of the index
/// last read, which lists every one of `ours`.
fn update_fallback(c: &Client, tag: &str, ours: Vec<Value>) -> Result<(bool, Digest)> {
    let mut wrote = false;
    let mut warned = false;
    for round in 1..=ROUNDS {
        let started = Instant::now();
        let (listed, digest) = read_fallback(c, tag)?;
        let manifests = match (merge(&listed.manifests, &ours), digest) {
            (None, Some(digest)) => return Ok((wrote, digest)),
            (Some(merged), _) => merged,
            // No index, yet nothing of ours missing: only when `ours` is empty.
            (None, None) => listed.manifests.clone(),
        };
        if listed.dropped > 0 && !warned {
            warned = true;
            c.shell().warn(format!(
                "registry {} lists {} under {}:{tag} (the referrers tag schema); dropping {} from the index pushed back",
                c.registry,
                if listed.dropped == 1 {
                    "1 entry that is not a descriptor".to_string()
                } else {
                    format!("{} entries that are not descriptors", listed.dropped)
                },
                c.repo,
                if listed.dropped == 1 { "it" } else { "them" },
            ));
        }
        if round > 1 {
            c.shell().verbose(
                "Referrers",
                format!(
                    "{}/{}:{tag} lost referrers of this push to another writer; merging again (round {round} of {ROUNDS})",
                    c.registry, c.repo
                ),
            );
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": MediaType::ImageIndex,
            "manifests": manifests,
        });
        let bytes = canonical_json(&index)?;
        let digest = crate::util::digest::Digest::sha256_of(&bytes);
        c.put_manifest_or(ManifestRef::Tag(tag), &bytes, &MediaType::ImageIndex, &digest, |r| {
            if r.status() == StatusCode::FORBIDDEN {
                // The image went in with these credentials: what is refused is the tag.
                let reason = RegistryError::read(r);
                anyhow!(
                    "registry {} refused the tag {tag} in {} ({reason}), which lists the image's referrers for registries without the referrers API; the repository may not allow that tag (immutable tags, or a tag-name rule): allow tags matching sha256-*, or push to a registry with the referrers API",
                    c.registry,
                    c.repo
                )
            } else {
                c.refused(r, &format!("the referrers index {tag}"))
            }
        })?;
        wrote = true;
        // A push that read the index before this PUT PUTs its own version about as long
        // after its read as ours took: wait that long twice before reading back.
        std::thread::sleep((started.elapsed() * 2).clamp(SETTLE_MIN, SETTLE_MAX));
    }
    let (listed, digest) = read_fallback(c, tag)?;
    if let (None, Some(digest)) = (merge(&listed.manifests, &ours), digest) {
        return Ok((wrote, digest));
    }
    bail!(
        "registry {} lost referrers of this push from {}:{tag} {ROUNDS} times (another push of the same image keeps rewriting that index); push again once the other push is done",
        c.registry,
        c.repo
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_schema_names_the_subject() {
        let d: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        assert_eq!(fallback_tag(&d), format!("sha256-{}", "ab".repeat(32)));
    }

    #[test]
    fn junk_entries_are_dropped_and_descriptors_kept() {
        let d = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", "ab".repeat(32)), "size": 5});
        let body = json!({"schemaVersion": 2, "manifests": [1, "x", null, {"digest": 5}, {"digest": "nocolon", "mediaType": "m", "size": 1}, {"digest": "sha256:ab", "mediaType": "m", "size": -1}, d.clone()]});
        let listed = parse_index(body.to_string().as_bytes()).unwrap();
        assert_eq!(listed.manifests, vec![d.clone()]);
        assert_eq!(listed.dropped, 6);
        assert!(matches!(
            parse_index(b"[1]"),
            Err(IndexError::NotAnIndex(_))
        ));
        assert!(matches!(parse_index(b"{"), Err(IndexError::NotJson(_))));
    }

    #[test]
    fn merge_adds_only_what_is_missing() {
        let a = json!({"mediaType": "m", "digest": "sha256:aa", "size": 1});
        let b = json!({"mediaType": "m", "digest": "sha256:bb", "size": 2});
        assert_eq!(
            merge(std::slice::from_ref(&a), std::slice::from_ref(&a)),
            None
        );
        assert_eq!(
            merge(std::slice::from_ref(&a), &[a.clone(), b.clone()]),
            Some(vec![a.clone(), b.clone()])
        );
        assert_eq!(merge(&[], std::slice::from_ref(&b)), Some(vec![b]));
    }
}
