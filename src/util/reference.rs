//! Image references as docker reads them: `[HOST[:PORT]/]NAME[:TAG][@DIGEST]`, with Docker Hub
//! (`docker.io`, `library/` for one-word names) as the default.
//!
//! Hand-written on the distribution grammar: oci-spec's parser compiles a large regular
//! expression on every run (about 35 ms, half the time of an unchanged re-push).

use super::digest::Digest;
use anyhow::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io`, `ghcr.io`, `127.0.0.1:5000`, …
    pub registry: String,
    /// `library/app`, `owner/app`, …
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(&b[0]) || !alnum(&b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(&b[i]) {
            i += 1;
            continue;
        }
        let sep_start = i;
        while i < b.len() && !alnum(&b[i]) {
            i += 1;
        }
        let sep = &c[sep_start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn tag_ok(t: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    t.len() <= 128 && t.starts_with(word) && t.chars().all(|c| word(c) || c == '.' || c == '-')
}

/// `name[:port]` or `[ipv6][:port]`, with a port from 1 to 65535; else why not.
fn check_host(h: &str) -> Result<(), &'static str> {
    let (name, port) = match h.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, "")) => (ip, None),
            // After `]` comes a port or nothing.
            Some((ip, after)) if after.starts_with(':') => (ip, after.strip_prefix(':')),
            _ => return Err("the registry host is malformed"),
        },
        None => match h.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (h, None),
        },
    };
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
        && (h.starts_with('[') || !name.contains(':'));
    if !name_ok {
        return Err("the registry host is malformed");
    }
    let port_ok = port.is_none_or(|p| {
        p.chars().all(|c| c.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0)
    });
    if !port_ok {
        return Err("the registry port must be a number from 1 to 65535");
    }
    Ok(())
}

impl Reference {
    pub fn parse(given: &str) -> Result<Reference> {
        let bad = |why: &str| {
            anyhow::anyhow!(
                "image reference `{given}` is not valid ({why}); write it as [REGISTRY/]NAME[:TAG], e.g. ghcr.io/owner/app:1.0.0"
            )
        };
        let (rest, digest) = match given.split_once('@') {
            Some((r, d)) => match d.parse::<Digest>() {
                Ok(d) => (r, Some(d)),
                // Only sha256 is read: it is every digest this tool makes and checks.
                Err(_) => return Err(bad("the digest is not sha256:<64 lowercase hex digits>")),
            },
            None => (given, None),
        };
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest, None),
        };
        if let Some(t) = &tag
            && !tag_ok(t)
        {
            return Err(bad(
                "the tag may hold letters, digits, `_`, `.` and `-`, up to 128",
            ));
        }
        let mut parts: Vec<&str> = name.split('/').collect();
        let first = parts[0];
        let registry = if parts.len() > 1 && (first.contains(['.', ':']) || first == "localhost") {
            check_host(first).map_err(bad)?;
            parts.remove(0);
            first.to_string()
        } else {
            "docker.io".to_string()
        };
        let registry = if registry == "index.docker.io" {
            "docker.io".to_string()
        } else {
            registry
        };
        if parts.iter().any(|c| !component_ok(c)) {
            return Err(bad(
                "names are lowercase letters and digits, separated by `.`, `_`, `__`, `-` or `/`",
            ));
        }
        let mut repository = parts.join("/");
        if registry == "docker.io" && parts.len() == 1 {
            repository = format!("library/{repository}");
        }
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

/// `reference` with `suffix` added to its tag (`latest` when it has none): `app:1` →
/// `app:1-debug`, `ghcr.io/o/app` → `ghcr.io/o/app:latest-debug`. A reference by digest
/// is returned as it is (a digest names one image).
pub fn with_tag_suffix(reference: &str, suffix: &str) -> String {
    if reference.contains('@') {
        return reference.to_string();
    }
    let name_start = reference.rfind('/').map_or(0, |i| i + 1);
    if reference[name_start..].contains(':') {
        format!("{reference}{suffix}")
    } else {
        format!("{reference}:latest{suffix}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_suffix_goes_on_the_tag() {
        assert_eq!(with_tag_suffix("app:1", "-debug"), "app:1-debug");
        assert_eq!(
            with_tag_suffix("127.0.0.1:5000/o/app", "-debug"),
            "127.0.0.1:5000/o/app:latest-debug"
        );
        let d = format!("app@sha256:{}", "a".repeat(64));
        assert_eq!(with_tag_suffix(&d, "-debug"), d);
    }

    use super::*;

    fn p(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r = Reference::parse(s).unwrap();
        (r.registry, r.repository, r.tag, r.digest.map(String::from))
    }

    #[test]
    fn docker_defaults() {
        assert_eq!(
            p("app"),
            ("docker.io".into(), "library/app".into(), None, None)
        );
        assert_eq!(
            p("owner/app:1.2"),
            (
                "docker.io".into(),
                "owner/app".into(),
                Some("1.2".into()),
                None
            )
        );
        assert_eq!(p("index.docker.io/app").1, "library/app");
        assert_eq!(
            p("test.com:5000").1,
            "library/test.com",
            "a port without a slash is a tag"
        );
    }

    #[test]
    fn registries_tags_and_digests() {
        assert_eq!(
            p("127.0.0.1:5000/team/hello:multi"),
            (
                "127.0.0.1:5000".into(),
                "team/hello".into(),
                Some("multi".into()),
                None
            )
        );
        assert_eq!(p("localhost/app").0, "localhost");
        assert_eq!(p("localhost:65535/app").0, "localhost:65535");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(p(&format!("ghcr.io/o/a@{d}")).3, Some(d.clone()));
        assert_eq!(p(&format!("ghcr.io/o/a:v1@{d}")).2, Some("v1".into()));
        assert_eq!(p("ghcr.io/o/a_b.c-d__e:x").1, "o/a_b.c-d__e");
        // Only sha256 is read, parsed here once into a `Digest`.
        assert!(Reference::parse(&format!("a@sha512:{}", "a".repeat(128))).is_err());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "App",
            "a//b",
            "a:",
            "-a",
            "a_",
            "ghcr.io/o/a@sha256:zz",
            "a:-x",
            "a/b:t/c",
            "a:b:c/app",
            "host:port/app",
            "localhost:99999/app",
            "127.0.0.1:0/app",
            "127.0.0.1:/app",
            "[::1]:65536/app",
            // Found by fuzz/fuzz_targets/reference.rs: text after `]` that is not a port.
            "[::1]x/app",
            "[:]1::5\0\u{15}0/app:lteAst",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
