//! Stage 6 — outputs: where the image goes. Every kind implements [`Output`]; `--output`
//! takes the transport names skopeo and podman use.

pub mod atomic;
pub mod docker_archive;
pub mod load;
pub mod oci_layout;
pub mod registry;

use crate::blobs::BlobStore;
use crate::image::Image;
use anyhow::{Result, bail};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What an output reports once written.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Written {
    /// The transport reference, e.g. `oci:/abs/dir:1.0.0`.
    pub output: String,
    /// Bytes written (archives) or added (layouts).
    pub bytes: u64,
    /// `REF@sha256:…` for every reference pushed.
    pub pushed: Vec<String>,
    /// Blob bytes sent to registries.
    pub bytes_uploaded: u64,
    pub blobs_uploaded: usize,
    /// Blobs the registry already had.
    pub blobs_skipped: usize,
    /// Blobs mounted from another repository of the same registry.
    pub blobs_mounted: usize,
}

/// A destination for a finished image.
pub trait Output {
    /// The reference as given, for logs.
    fn describe(&self) -> String;
    /// Fails before any build work when the destination cannot be written.
    fn preflight(&self) -> Result<()>;
    /// Writes the image; all or nothing.
    fn write(&self, image: &Image, store: &BlobStore) -> Result<Written>;
    /// The file or directory this output writes on this machine, if any.
    fn destination(&self) -> Option<Destination> {
        None
    }
}

/// Where an output writes: a file it replaces whole, or a tag in a layout directory (which
/// holds many tags).
#[derive(Debug, Clone)]
pub struct Destination {
    pub path: PathBuf,
    /// The tag, for an `oci:` directory; None for a file.
    pub tag: Option<String>,
}

/// `path` made absolute with every symbolic link and `..` resolved as far as it exists (the
/// rest, not yet made, is taken as written), so two spellings of one place compare equal.
fn canonical(path: &Path) -> PathBuf {
    use std::path::Component;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out = std::fs::canonicalize(out.join("..")).unwrap_or_else(|_| {
                    out.pop();
                    out
                });
            }
            other => {
                out.push(other);
                if let Ok(real) = std::fs::canonicalize(&out) {
                    out = real;
                }
            }
        }
    }
    out
}

/// Refuses, before any work, two outputs of one run that would write the same file, or the
/// same tag of the same layout: the second would silently replace the first.
pub fn check_distinct(outputs: &[Box<dyn Output>]) -> Result<()> {
    let mut seen: Vec<(PathBuf, Option<String>, String)> = Vec::new();
    for o in outputs {
        let Some(d) = o.destination() else { continue };
        let path = canonical(&d.path);
        for (p, tag, other) in &seen {
            if *p != path {
                continue;
            }
            match (tag, &d.tag) {
                (Some(a), Some(b)) if a != b => {}
                (Some(_), Some(_)) => bail!(
                    "--output {other} and --output {} write the same tag into {}; give each its own tag or directory",
                    o.describe(),
                    path.display()
                ),
                _ => bail!(
                    "--output {other} and --output {} both write {}; give each output its own path",
                    o.describe(),
                    path.display()
                ),
            }
        }
        seen.push((path, d.tag, o.describe()));
    }
    Ok(())
}

/// Names used when an output gives no tag or reference of its own.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub tag: String,
    pub name: String,
    /// The platform docker archives take from a multi-platform image (--load-platform).
    pub platform: Option<crate::platform::Platform>,
}

const TRANSPORTS: &str = "oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:REF]";

/// Splits `TRANSPORT:PATH[:REF]`, checking the transport is known and the parts not empty.
fn split(spec: &str) -> Result<(&str, &str, Option<&str>)> {
    let Some((transport, rest)) = spec.split_once(':') else {
        bail!("--output `{spec}` has no transport; use one of {TRANSPORTS}");
    };
    if !matches!(transport, "oci" | "oci-archive" | "docker-archive") {
        bail!("--output transport `{transport}` is not supported; use one of {TRANSPORTS}");
    }
    let (path, reference) = match rest.split_once(':') {
        Some((p, r)) => (p, Some(r)),
        None => (rest, None),
    };
    if path.is_empty() {
        bail!("--output `{spec}` has no path; use one of {TRANSPORTS}");
    }
    if reference == Some("") {
        bail!("--output `{spec}` ends with `:` but names no tag; drop the colon or add a tag");
    }
    Ok((transport, path, reference))
}

/// The command line's check of an `--output` value (a malformed one is a usage error).
pub fn check_syntax(spec: &str) -> std::result::Result<String, String> {
    split(spec)
        .map(|_| spec.to_string())
        .map_err(|e| e.to_string())
}

/// Parses `--output` values: `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker-archive:FILE[:REF]`.
pub fn parse(spec: &str, defaults: &Defaults) -> Result<Box<dyn Output>> {
    let (transport, path, reference) = split(spec)?;
    let path = PathBuf::from(path);
    match transport {
        "oci" | "oci-archive" => {
            let tag = reference.unwrap_or(&defaults.tag).to_string();
            oci_layout::check_tag(&tag)?;
            Ok(Box::new(oci_layout::OciLayout {
                path,
                tag,
                archive: transport == "oci-archive",
            }))
        }
        "docker-archive" => {
            let reference = docker_archive::normalize_ref(
                reference
                    .map(String::from)
                    .unwrap_or_else(|| format!("{}:{}", defaults.name, defaults.tag)),
            )?;
            Ok(Box::new(docker_archive::DockerArchive {
                path,
                references: vec![reference],
                platform: defaults.platform,
            }))
        }
        other => bail!("--output transport `{other}` is not supported; use one of {TRANSPORTS}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Defaults {
        Defaults {
            tag: "1.0.0".into(),
            name: "hello".into(),
            platform: None,
        }
    }

    #[test]
    fn parses_transports() {
        assert_eq!(parse("oci:out", &d()).unwrap().describe(), "oci:out:1.0.0");
        assert_eq!(
            parse("oci-archive:a.tar:v2", &d()).unwrap().describe(),
            "oci-archive:a.tar:v2"
        );
        assert_eq!(
            parse("docker-archive:a.tar", &d()).unwrap().describe(),
            "docker-archive:a.tar:hello:1.0.0"
        );
        assert_eq!(
            parse("docker-archive:a.tar:ghcr.io/o/app:1", &d())
                .unwrap()
                .describe(),
            "docker-archive:a.tar:ghcr.io/o/app:1"
        );
    }

    #[test]
    fn one_place_spelled_two_ways_is_one_place() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let want = canonical(&real.join("a.tar"));
        for spelled in [
            "link/a.tar",
            "real/./a.tar",
            "real/new/../a.tar",
            "link/../real/a.tar",
        ] {
            assert_eq!(canonical(&dir.path().join(spelled)), want, "{spelled}");
        }
        let outputs = |specs: &[String]| -> Vec<Box<dyn Output>> {
            specs.iter().map(|s| parse(s, &d()).unwrap()).collect()
        };
        let at = |rel: &str| dir.path().join(rel).display().to_string();
        let clash = outputs(&[
            format!("oci-archive:{}", at("real/a.tar")),
            format!("docker-archive:{}", at("link/a.tar")),
        ]);
        let e = check_distinct(&clash).unwrap_err().to_string();
        assert!(e.contains("both write") && !e.contains('\n'), "{e}");
        let same_tag = outputs(&[format!("oci:{}:1", at("l")), format!("oci:{}:1", at("l/."))]);
        assert!(check_distinct(&same_tag).is_err());
        let two_tags = outputs(&[format!("oci:{}:1", at("l")), format!("oci:{}:2", at("l"))]);
        assert!(check_distinct(&two_tags).is_ok());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "bogus:foo",
            "oci:",
            "oci",
            "oci:dir:",
            "oci:dir:bad tag",
            "docker-archive:a.tar:UPPER",
        ] {
            let e = parse(bad, &d())
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"))
                .to_string();
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
