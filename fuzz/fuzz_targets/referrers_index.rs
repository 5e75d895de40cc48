//! The referrers tag schema's index (src/outputs/registry/referrers.rs): any bytes as the
//! document a registry serves under `sha256-<digest>`, parsed as the push parses it, then
//! merged with this push's referrers as the push merges them.

#![no_main]

use cargo_containerize::image::canonical_json;
use cargo_containerize::outputs::registry::referrers::{
    IndexError, is_descriptor, merge, parse_index,
};
use cargo_containerize_fuzz::assert_printable;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fn ours() -> Vec<Value> {
    let d = |hex: &str| {
        json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.in-toto+json",
            "digest": format!("sha256:{}", hex.repeat(32)),
            "size": 1234,
        })
    };
    vec![d("ab"), d("cd")]
}

fuzz_target!(|data: &[u8]| {
    let listed = match parse_index(data) {
        Ok(listed) => listed,
        Err(IndexError::NotJson(m) | IndexError::NotAnIndex(m)) => {
            assert_printable("the index error", &m);
            return;
        }
    };
    // What is kept is descriptors only, and only what was dropped is missing.
    assert!(listed.manifests.iter().all(is_descriptor));
    let entries = serde_json::from_slice::<Value>(data).unwrap()["manifests"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(listed.manifests.len() + listed.dropped, entries);

    let ours = ours();
    match merge(&listed.manifests, &ours) {
        None => {
            for d in &ours {
                assert!(listed.manifests.iter().any(|m| m["digest"] == d["digest"]));
            }
        }
        Some(merged) => {
            // Everything listed stays, in order, ahead of what was added.
            assert_eq!(merged[..listed.manifests.len()], listed.manifests[..]);
            for d in &ours {
                assert!(merged.iter().any(|m| m["digest"] == d["digest"]));
            }
            for m in &merged[listed.manifests.len()..] {
                assert!(ours.contains(m));
            }
            // Merging again adds nothing; the index written is valid JSON that parses back.
            assert_eq!(merge(&merged, &ours), None);
            let index = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": merged,
            });
            let bytes = canonical_json(&index).unwrap();
            let again = parse_index(&bytes).unwrap();
            assert_eq!(again.dropped, 0);
            assert_eq!(again.manifests, merged);
        }
    }
});
