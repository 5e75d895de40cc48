//! The image-reference parser (src/outputs/reference.rs): `-t`, `repository`/`tags` and
//! docker-archive: references.

#![no_main]

use cargo_containerize::util::reference::Reference;
use cargo_containerize_fuzz::{assert_printable, printed};
use libfuzzer_sys::fuzz_target;

/// The reference written out in full, as `docker` would show it.
fn full(r: &Reference) -> String {
    let mut s = format!("{}/{}", r.registry, r.repository);
    if let Some(t) = &r.tag {
        s += &format!(":{t}");
    }
    if let Some(d) = &r.digest {
        s += &format!("@{d}");
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let Ok(given) = std::str::from_utf8(data) else {
        return;
    };
    let r = match Reference::parse(given) {
        Ok(r) => r,
        Err(e) => {
            assert_printable("error", &printed(&e));
            return;
        }
    };
    // The grammar has no room for whitespace, control characters or non-ASCII.
    assert!(
        given.chars().all(|c| c.is_ascii_graphic()),
        "accepted {given:?}"
    );
    assert!(!r.registry.is_empty() && !r.registry.contains(['/', '@']));
    assert!(!r.repository.is_empty() && !r.repository.starts_with('/'));
    assert!(
        r.repository
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c)),
        "repository {:?}",
        r.repository
    );
    if r.registry == "docker.io" {
        assert!(
            r.repository.contains('/'),
            "a Docker Hub name without library/"
        );
    }
    if let Some(t) = &r.tag {
        assert!(!t.is_empty() && t.len() <= 128, "tag {t:?}");
    }
    if let Some(d) = &r.digest {
        assert!(d.contains(':'), "digest {d:?}");
    }
    // Written out in full, it parses to the same reference.
    let again = full(&r);
    let back = Reference::parse(&again).unwrap_or_else(|e| panic!("{again:?}: {e:#}"));
    assert_eq!(back, r, "{given:?} → {again:?}");
});
