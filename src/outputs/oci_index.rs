//! An OCI layout's `index.json`, read and edited as a typed value (go-containerregistry's
//! `layout/write.go` does the same with its `v1.IndexManifest`), without losing what other
//! tools wrote into it.
//!
//! oci-spec's `ImageIndex` and `Descriptor` drop every field they do not know (another tool's
//! top-level fields, a descriptor's extra keys, unknown keys of its platform) and refuse an
//! entry that is not a descriptor at all. So an entry is taken as a [`Descriptor`] only when
//! oci-spec gives back exactly the JSON it read; any other entry is kept as the JSON it was
//! ([`Entry::Foreign`]), and the index's fields besides `manifests` are kept as read, with
//! `schemaVersion` and `mediaType` set as this tool writes them.

use crate::util::digest::Digest;
use anyhow::Result;
use oci_spec::image::Descriptor;
use serde_json::{Map, Value};

/// The annotation that names a tag in a layout.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One entry of `manifests`.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A descriptor oci-spec reads whole (what this tool writes, and most tools).
    Oci(Box<Descriptor>),
    /// Anything else, kept byte for byte as JSON: a descriptor with fields oci-spec does not
    /// know, or a value that is not a descriptor.
    Foreign(Value),
}

impl Entry {
    /// The entry `value` is: a [`Descriptor`] when oci-spec keeps all of it, else as it is.
    pub fn from_value(value: Value) -> Entry {
        match serde_json::from_value::<Descriptor>(value.clone()) {
            Ok(d) if serde_json::to_value(&d).ok().as_ref() == Some(&value) => {
                Entry::Oci(Box::new(d))
            }
            _ => Entry::Foreign(value),
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            // A Descriptor's fields are strings, numbers, lists and maps: it always serializes.
            Entry::Oci(d) => serde_json::to_value(d).unwrap_or_default(),
            Entry::Foreign(v) => v.clone(),
        }
    }

    /// The sha256 digest it names; None for another algorithm or no digest.
    pub fn digest(&self) -> Option<Digest> {
        match self {
            Entry::Oci(d) => Digest::try_from(d.digest()).ok(),
            Entry::Foreign(v) => v.get("digest")?.as_str()?.parse().ok(),
        }
    }

    /// The tag it carries (`org.opencontainers.image.ref.name`).
    pub fn tag(&self) -> Option<&str> {
        match self {
            Entry::Oci(d) => d.annotations().as_ref()?.get(REF_NAME).map(String::as_str),
            Entry::Foreign(v) => v.get("annotations")?.get(REF_NAME)?.as_str(),
        }
    }

    /// Whether it names an artifact (it has an `artifactType`): a referrer, maybe.
    pub fn is_artifact(&self) -> bool {
        match self {
            Entry::Oci(d) => d.artifact_type().is_some(),
            Entry::Foreign(v) => v.get("artifactType").is_some(),
        }
    }
}

/// index.json: its entries and its other fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Index {
    pub manifests: Vec<Entry>,
    /// Every field besides `manifests`, as read (none for a new index).
    pub other: Map<String, Value>,
}

impl Index {
    /// The index in `value`; None when it has no `manifests` list (not an image index).
    pub fn from_value(value: Value) -> Option<Index> {
        let Value::Object(mut other) = value else {
            return None;
        };
        let Some(Value::Array(manifests)) = other.remove("manifests") else {
            return None;
        };
        Some(Index {
            manifests: manifests.into_iter().map(Entry::from_value).collect(),
            other,
        })
    }

    /// The same fields with `manifests` in place of the entries.
    pub fn with_manifests(&self, manifests: Vec<Entry>) -> Index {
        Index {
            manifests,
            other: self.other.clone(),
        }
    }

    /// The bytes of index.json: canonical JSON (keys sorted, no whitespace), with
    /// `schemaVersion` 2 and the index media type, the fields other tools wrote kept.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let ours = oci_spec::image::ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(oci_spec::image::MediaType::ImageIndex)
            .manifests(Vec::new())
            .build()?;
        let Value::Object(mut index) = serde_json::to_value(ours)? else {
            anyhow::bail!("an image index did not serialize as a JSON object");
        };
        for (k, v) in &self.other {
            index.entry(k.clone()).or_insert_with(|| v.clone());
        }
        index.insert(
            "manifests".into(),
            Value::Array(self.manifests.iter().map(Entry::to_value).collect()),
        );
        crate::image::canonical_json(&Value::Object(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(c: char) -> String {
        c.to_string().repeat(64)
    }

    #[test]
    fn foreign_fields_and_entries_survive_a_rewrite() {
        let read = serde_json::json!({
            "schemaVersion": 2,
            "annotations": { "com.example.made-by": "another tool" },
            "com.example.field": [1, 2],
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{}", hex('a')),
                    "size": 10,
                    "annotations": { REF_NAME: "v1" },
                },
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{}", hex('b')),
                    "size": 11,
                    "com.example.extra": true,
                },
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{}", hex('c')),
                    "size": 12,
                    "platform": { "architecture": "amd64", "os": "linux", "com.example.cpu": "x" },
                },
                "not a descriptor",
            ],
        });
        let index = Index::from_value(read.clone()).unwrap();
        assert!(matches!(index.manifests[0], Entry::Oci(_)));
        assert!(
            index.manifests[1..]
                .iter()
                .all(|e| matches!(e, Entry::Foreign(_))),
            "an entry oci-spec would shorten must stay as it was: {:?}",
            index.manifests
        );
        assert_eq!(index.manifests[0].tag(), Some("v1"));
        assert_eq!(
            index.manifests[1].digest().unwrap().as_str(),
            format!("sha256:{}", hex('b'))
        );
        assert_eq!(index.manifests[3].digest(), None);
        let written: Value = serde_json::from_slice(&index.to_json().unwrap()).unwrap();
        let mut want = read;
        want["mediaType"] = oci_spec::image::MediaType::ImageIndex.as_ref().into();
        assert_eq!(written, want);
    }

    #[test]
    fn our_entries_keep_their_bytes() {
        // What index.json held before it was typed: the same entry, written as JSON.
        let digest = format!("sha256:{}", hex('d'));
        let bytes = format!(
            r#"{{"manifests":[{{"annotations":{{"{REF_NAME}":"1.0.0"}},"digest":"{digest}","mediaType":"application/vnd.oci.image.manifest.v1+json","platform":{{"architecture":"amd64","os":"linux"}},"size":402}},{{"annotations":{{"org.opencontainers.image.created":"1970-01-01T00:00:00Z"}},"artifactType":"application/spdx+json","digest":"{digest}","mediaType":"application/vnd.oci.image.manifest.v1+json","size":600}}],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}}"#
        );
        let index = Index::from_value(serde_json::from_str(&bytes).unwrap()).unwrap();
        assert!(index.manifests.iter().all(|e| matches!(e, Entry::Oci(_))));
        assert!(index.manifests[1].is_artifact() && !index.manifests[0].is_artifact());
        assert_eq!(String::from_utf8(index.to_json().unwrap()).unwrap(), bytes);
        assert!(Index::from_value(serde_json::json!({ "manifests": {} })).is_none());
    }
}
