//! Stage 7 — outputs: where the image goes. Every kind implements [`Output`]; `--output`
//! takes the transport names skopeo and podman use.

pub mod docker_archive;
pub mod load;
pub mod oci_index;
pub mod oci_layout;
pub mod registry;

use crate::blobs::BlobStore;
use crate::image::Image;
use crate::platform::Platform;
use crate::util::shell::Shell;
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
    /// Every reference pushed.
    pub pushed: Vec<Pushed>,
    /// Blob bytes sent to registries.
    pub bytes_uploaded: u64,
    pub blobs_uploaded: usize,
    /// Blobs the registry already had.
    pub blobs_skipped: usize,
    /// Blobs mounted from another repository of the same registry.
    pub blobs_mounted: usize,
}

/// An output that wrote part of what it was asked and then failed: `write` returns it as its
/// error so that the run can still report what is written (`pipeline::Incomplete`). It
/// prints as the error alone.
#[derive(Debug, thiserror::Error)]
#[error("{error:#}")]
pub struct PartlyWritten {
    pub written: Written,
    pub error: anyhow::Error,
}

/// A reference a registry now serves the image under. Shown (and serialized) as
/// `REF@sha256:…`: the reference as given, without any digest it named, then the digest pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The reference as the user gave it, less any `@digest`.
    pub reference: String,
    /// The digest of the manifest or index it serves.
    pub digest: crate::util::digest::Digest,
}

impl std::fmt::Display for Pushed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.reference, self.digest)
    }
}

impl Serialize for Pushed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A destination for a finished image.
pub trait Output {
    /// The reference as given, for logs.
    fn describe(&self) -> String;
    /// Fails before any build work when the destination cannot be written.
    fn preflight(&self) -> Result<()>;
    /// Writes the image; all or nothing.
    fn write(&self, image: &Image, store: &BlobStore, shell: &Shell) -> Result<Written>;
    /// The file or directory this output writes on this machine, if any.
    fn destination(&self) -> Option<Destination> {
        None
    }
    /// Whether it holds only one platform of an image (docker archives, --load): a
    /// multi-platform build then needs --load-platform (see [`check_platforms`]).
    fn single_platform(&self) -> bool {
        false
    }
    /// Whether it carries the image's referrers (SBOMs, provenance). One that does not gets
    /// the image without them (see `pipeline::run`), so it writes exactly the image.
    fn carries_referrers(&self) -> bool {
        true
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
    pub platform: Option<Platform>,
    /// Whether `oci:` layouts and `oci-archive:` files list the referrers (`layout-referrers`).
    pub layout_referrers: bool,
}

impl Defaults {
    /// The reference a docker archive and `--load` get when the user names none:
    /// `<name>:<tag>` made valid, since the user wrote nothing to correct. The name is
    /// lower-cased (a docker name has no capitals: a package `MyApp` gives `myapp`), keeps
    /// only letters, digits, `.`, `_` and `-`, with no run of more than two `_` and no
    /// separator at either end; the tag's `+` (semver build metadata, `1.0.0+abc`) becomes
    /// `_`. A reference the user wrote is checked as written, never changed.
    pub fn docker_reference(&self) -> String {
        let mut name = String::new();
        for c in self.name.chars().flat_map(char::to_lowercase) {
            if !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
                continue;
            }
            if c == '_' && name.ends_with("__") {
                continue;
            }
            name.push(c);
        }
        let name = name.trim_matches(|c: char| !c.is_ascii_alphanumeric());
        let name = if name.is_empty() { "image" } else { name };
        format!("{name}:{}", self.tag.replace('+', "_"))
    }
}

/// An `--output` transport and how its values become an [`Output`]. A new kind of output is
/// one file (its `Output` impl and its `Kind`) and one line in [`KINDS`].
pub struct Kind {
    pub transport: &'static str,
    /// How `--output` spells it, for messages: e.g. `oci:DIR[:TAG]`.
    pub syntax: &'static str,
    /// The output for `PATH` and the reference after it, if any: the kind checks and
    /// normalizes its own tags and references.
    pub make: Make,
}

/// A [`Kind`]'s constructor: the path, the reference after it, the defaults.
pub type Make = fn(PathBuf, Option<&str>, &Defaults) -> Result<Box<dyn Output>>;

/// Every `--output` transport.
pub const KINDS: &[Kind] = &[
    oci_layout::OCI,
    oci_layout::OCI_ARCHIVE,
    docker_archive::KIND,
];

/// The transports, for messages: `oci:DIR[:TAG], oci-archive:FILE[:TAG], …`.
fn transports() -> String {
    KINDS
        .iter()
        .map(|k| k.syntax)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Splits `TRANSPORT:PATH[:REF]`, checking the transport is known and the parts not empty.
fn split(spec: &str) -> Result<(&'static Kind, &str, Option<&str>)> {
    let Some((transport, rest)) = spec.split_once(':') else {
        bail!(
            "--output `{spec}` has no transport; use one of {}",
            transports()
        );
    };
    let Some(kind) = KINDS.iter().find(|k| k.transport == transport) else {
        bail!(
            "--output transport `{transport}` is not supported; use one of {}",
            transports()
        );
    };
    let (path, reference) = match rest.split_once(':') {
        Some((p, r)) => (p, Some(r)),
        None => (rest, None),
    };
    if path.is_empty() {
        bail!("--output `{spec}` has no path; use one of {}", transports());
    }
    if reference == Some("") {
        bail!("--output `{spec}` ends with `:` but names no tag; drop the colon or add a tag");
    }
    Ok((kind, path, reference))
}

/// An `--output` value, parsed once where it enters (clap's value parser): its kind, its path
/// and the reference after the path, if any. [`OutputSpec::make`] hands them to the kind's
/// constructor, which checks the reference and fills in the defaults.
#[derive(Clone)]
pub struct OutputSpec {
    pub kind: &'static Kind,
    pub path: PathBuf,
    pub reference: Option<String>,
}

impl std::fmt::Debug for OutputSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputSpec")
            .field("transport", &self.kind.transport)
            .field("path", &self.path)
            .field("reference", &self.reference)
            .finish()
    }
}

impl OutputSpec {
    /// `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker-archive:FILE[:REF]`.
    pub fn parse(spec: &str) -> Result<OutputSpec> {
        let (kind, path, reference) = split(spec)?;
        Ok(OutputSpec {
            kind,
            path: PathBuf::from(path),
            reference: reference.map(String::from),
        })
    }

    /// [`OutputSpec::parse`] for clap (a malformed value is a usage error).
    pub fn parse_arg(spec: &str) -> std::result::Result<OutputSpec, String> {
        OutputSpec::parse(spec).map_err(|e| e.to_string())
    }

    /// The same output for a variant of the image (the debug one): its tag, or a docker
    /// archive's reference, with `suffix`; an archive goes to a file beside the main one's
    /// (`app.tar` → `app-debug.tar`). A layout directory keeps both tags.
    pub fn variant(&self, suffix: &str) -> OutputSpec {
        let file = self.kind.transport != "oci";
        let path = match (file, self.path.file_stem(), self.path.extension()) {
            (true, Some(stem), ext) => {
                let mut name = stem.to_os_string();
                name.push(suffix);
                if let Some(ext) = ext {
                    name.push(".");
                    name.push(ext);
                }
                self.path.with_file_name(name)
            }
            _ => self.path.clone(),
        };
        let reference = self.reference.as_ref().map(|r| {
            if self.kind.transport == "docker-archive" {
                crate::util::reference::with_tag_suffix(r, suffix)
            } else {
                format!("{r}{suffix}")
            }
        });
        OutputSpec {
            kind: self.kind,
            path,
            reference,
        }
    }

    /// The output, from the kind's constructor.
    pub fn make(&self, defaults: &Defaults) -> Result<Box<dyn Output>> {
        (self.kind.make)(self.path.clone(), self.reference.as_deref(), defaults)
    }
}

/// Parses an `--output` value into its output.
pub fn parse(spec: &str, defaults: &Defaults) -> Result<Box<dyn Output>> {
    OutputSpec::parse(spec)?.make(defaults)
}

/// Refuses, before any work, outputs that cannot hold what is built: a `--load-platform`
/// that is not built, or an output that holds one platform (see
/// [`Output::single_platform`]) when several are built and none is chosen.
pub fn check_platforms(
    outputs: &[Box<dyn Output>],
    built: &[Platform],
    chosen: Option<Platform>,
) -> Result<()> {
    let list = built
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    match chosen {
        Some(p) if !built.contains(&p) => bail!(
            "--load-platform {p} is not among the platforms built ({list}); choose one of them"
        ),
        None if built.len() > 1 && outputs.iter().any(|o| o.single_platform()) => bail!(
            "docker archives and --load hold one platform but {list} were asked for; choose one with --load-platform (--load takes every platform only into docker with the containerd image store)"
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod variant_tests {
    use super::OutputSpec;

    #[test]
    fn a_variant_suffixes_the_tag_and_puts_an_archive_beside_the_main_one() {
        let v = |s: &str| {
            let o = OutputSpec::parse(s).unwrap().variant("-debug");
            (o.path.display().to_string(), o.reference)
        };
        assert_eq!(v("oci:out:v1"), ("out".into(), Some("v1-debug".into())));
        assert_eq!(v("oci:out"), ("out".into(), None));
        assert_eq!(
            v("oci-archive:dir/app.tar:v1"),
            ("dir/app-debug.tar".into(), Some("v1-debug".into()))
        );
        assert_eq!(
            v("docker-archive:app.tar:app"),
            ("app-debug.tar".into(), Some("app:latest-debug".into()))
        );
        assert_eq!(
            v("docker-archive:app.tar:app:1"),
            ("app-debug.tar".into(), Some("app:1-debug".into()))
        );
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
            layout_referrers: false,
        }
    }

    #[test]
    fn the_default_docker_reference_is_valid_whatever_the_package_is_named() {
        let named = |name: &str, tag: &str| {
            Defaults {
                name: name.into(),
                tag: tag.into(),
                ..d()
            }
            .docker_reference()
        };
        assert_eq!(named("hello", "1.0.0"), "hello:1.0.0");
        assert_eq!(named("MyApp", "0.1.0"), "myapp:0.1.0");
        assert_eq!(named("My_App-2", "1.0.0+build.5"), "my_app-2:1.0.0_build.5");
        assert_eq!(named("_x___y-", "1.0.0"), "x__y:1.0.0");
        for (n, t) in [("MyApp", "0.1.0"), ("a___b", "1.0.0+x"), ("__", "1.0.0")] {
            let r = named(n, t);
            crate::util::reference::Reference::parse(&r).unwrap_or_else(|e| panic!("{r}: {e}"));
        }
        // A reference the user wrote is checked as written.
        let mine = parse("docker-archive:a.tar:MyApp:1", &d()).map(|o| o.describe());
        assert!(mine.is_err(), "{mine:?}");
        assert_eq!(
            parse(
                "docker-archive:a.tar",
                &Defaults {
                    name: "MyApp".into(),
                    ..d()
                }
            )
            .unwrap()
            .describe(),
            "docker-archive:a.tar:myapp:1.0.0"
        );
        let load = load::Load::new(
            load::LoadEngine::Docker,
            &[],
            &Defaults {
                name: "MyApp".into(),
                ..d()
            },
            &crate::util::shell::Shell::discard(),
        );
        assert!(load.is_ok(), "--load: {:?}", load.err());
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

    /// An attachment reaches every output that has a place for it: layouts list it in
    /// index.json and hold its blobs (and drop it with its subject), archives carry it,
    /// registries get its blobs with the others and its manifest beside its subject's; docker
    /// archives (and --load, which streams one) have no place for it and leave it out.
    #[test]
    fn attachments_reach_every_output() {
        use crate::image::testing;
        use crate::platform::Platform;
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(
            &dir.path().join("cache"),
            &crate::util::shell::Shell::discard(),
        )
        .unwrap();
        let plain = testing::image(&store, &[Platform::Amd64]);
        let mut image = plain.clone();
        let sbom = testing::sbom(&store, &image);
        image.attach(sbom.clone()).unwrap();
        image.store_documents(&store).unwrap();
        let sbom_blob = &sbom.blobs[0].digest;
        let hex = |d: &crate::util::digest::Digest| d.hex().to_string();
        let index_of = |p: &Path| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(p.join("index.json")).unwrap()).unwrap()
        };
        let listed = |index: &serde_json::Value| {
            index["manifests"].as_array().unwrap().iter().any(|m| {
                m["digest"] == sbom.manifest.digest.as_str()
                    && m["artifactType"] == "application/spdx+json"
            })
        };

        // oci: listed in index.json, its blobs written.
        let layout = dir.path().join("layout");
        let out = |tag: &str, archive: bool, path: &Path| oci_layout::OciLayout {
            path: path.to_path_buf(),
            tag: tag.into(),
            archive,
            referrers: true,
        };
        out("1", false, &layout)
            .write(&image, &store, &crate::util::shell::Shell::discard())
            .unwrap();
        assert!(listed(&index_of(&layout)));
        for d in [sbom_blob, &sbom.manifest.digest, &sbom.config.digest] {
            assert!(layout.join("blobs/sha256").join(hex(d)).is_file(), "{d}");
        }
        // A second tag of the same image keeps one entry for it; retagging "1" to an image
        // without it keeps it while "2" still holds its subject.
        out("2", false, &layout)
            .write(&image, &store, &crate::util::shell::Shell::discard())
            .unwrap();
        let n = |i: &serde_json::Value| {
            i["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["digest"] == sbom.manifest.digest.as_str())
                .count()
        };
        assert_eq!(n(&index_of(&layout)), 1);
        // Its subject gone from every tag, it goes, and its blobs with it.
        let other = {
            let mut spec = testing::spec();
            spec.config.user = "0:0".parse().unwrap();
            let layers = plain.platforms[0].layers.clone();
            let p = crate::image::assemble(
                &spec,
                Platform::Amd64,
                &crate::image::Base::scratch(),
                layers,
            )
            .unwrap();
            let img = crate::image::finish(&spec, vec![p]).unwrap();
            img.store_documents(&store).unwrap();
            img
        };
        out("1", false, &layout)
            .write(&other, &store, &crate::util::shell::Shell::discard())
            .unwrap();
        assert_eq!(n(&index_of(&layout)), 1, "tag 2 still holds the subject");
        out("2", false, &layout)
            .write(&other, &store, &crate::util::shell::Shell::discard())
            .unwrap();
        assert_eq!(n(&index_of(&layout)), 0);
        assert!(!layout.join("blobs/sha256").join(hex(sbom_blob)).exists());

        // oci-archive: listed and carried.
        let archive = dir.path().join("a.tar");
        out("1", true, &archive)
            .write(&image, &store, &crate::util::shell::Shell::discard())
            .unwrap();
        let unpacked = dir.path().join("unpacked");
        tar::Archive::new(std::fs::File::open(&archive).unwrap())
            .unpack(&unpacked)
            .unwrap();
        assert!(listed(&index_of(&unpacked)));
        assert!(unpacked.join("blobs/sha256").join(hex(sbom_blob)).is_file());

        // Registries: its blobs with the others, its manifest after the top one.
        let jobs = registry::push::blob_jobs(&image, &store);
        assert!(jobs.iter().any(|j| &j.digest == sbom_blob));
        assert!(jobs.iter().any(|j| j.digest == sbom.config.digest));
        let order: Vec<&crate::util::digest::Digest> = registry::push::manifests(&image)
            .map(|b| b.digest)
            .collect();
        assert_eq!(order, vec![image.digest(), &sbom.manifest.digest]);

        // Docker archives: the same bytes as without it.
        let with = dir.path().join("d1.tar");
        let without = dir.path().join("d2.tar");
        let docker = |p: &Path| docker_archive::DockerArchive {
            path: p.to_path_buf(),
            references: vec!["app:1".into()],
            platform: None,
        };
        docker(&with)
            .write(&image, &store, &crate::util::shell::Shell::discard())
            .unwrap();
        docker(&without)
            .write(&plain, &store, &crate::util::shell::Shell::discard())
            .unwrap();
        assert_eq!(
            std::fs::read(&with).unwrap(),
            std::fs::read(&without).unwrap()
        );
    }

    #[test]
    fn one_platform_outputs_need_a_chosen_platform() {
        use crate::platform::Platform::{Amd64, Arm64};
        let docker: Vec<Box<dyn Output>> = vec![parse("docker-archive:a.tar", &d()).unwrap()];
        let oci: Vec<Box<dyn Output>> = vec![parse("oci:dir", &d()).unwrap()];
        assert!(check_platforms(&docker, &[Amd64, Arm64], None).is_err());
        assert!(check_platforms(&docker, &[Amd64, Arm64], Some(Arm64)).is_ok());
        assert!(check_platforms(&docker, &[Amd64], None).is_ok());
        assert!(check_platforms(&oci, &[Amd64, Arm64], None).is_ok());
        let e = check_platforms(&oci, &[Amd64], Some(Arm64)).unwrap_err();
        assert!(
            e.to_string().contains("not among the platforms built"),
            "{e}"
        );
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
