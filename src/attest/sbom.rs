//! SBOMs in the attest stage: one document per format and platform manifest (SPDX 2.3 and
//! CycloneDX 1.6, see [`super::spdx`] and [`super::cyclonedx`]), attached as referrers;
//! `--sbom-dir` also writes them to disk; `cargo containerize sbom` prints one without building.

use super::contents::{self, SbomInput};
use super::{Document, Facts};
use crate::image::{Image, PlatformImage};
pub use crate::metadata::values::{SbomFormat, SbomFormats};
use crate::platform::Platform;
use crate::util::atomic;
use anyhow::{Context, Result, bail};
use oci_spec::image::MediaType;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// One SBOM format: what makes its document and how the tool attaches, names and recognises
/// it. Each format's file defines one as `GENERATOR`; [`GENERATORS`] lists them (as
/// `outputs::KINDS` lists the outputs).
pub struct Generator {
    pub format: SbomFormat,
    /// The document's media type (the artifact manifest's one layer).
    pub media_type: &'static str,
    /// The referrer's artifactType, when it is not the media type.
    pub artifact_type: Option<&'static str>,
    /// What ends the name of the file `--sbom-dir` writes: `spdx.json` for
    /// `<bin>-<arch>.spdx.json`.
    pub extension: &'static str,
    /// The document about `input`.
    pub generate: fn(&SbomInput) -> Result<Vec<u8>>,
    /// Whether a JSON document names this tool as its author, where this format says who
    /// wrote it: `--sbom-dir` replaces only such files.
    pub written_by_us: fn(&serde_json::Value) -> bool,
}

/// Every SBOM format the tool writes, one entry each.
pub const GENERATORS: &[Generator] = &[super::spdx::GENERATOR, super::cyclonedx::GENERATOR];

/// The generator of `format`.
pub fn generator(format: SbomFormat) -> &'static Generator {
    GENERATORS
        .iter()
        .find(|g| g.format == format)
        .expect("GENERATORS has every SbomFormat (a unit test checks)")
}

impl Generator {
    /// The referrer's artifactType.
    pub fn artifact_type(&self) -> &'static str {
        self.artifact_type.unwrap_or(self.media_type)
    }
}

/// The document's media type.
pub fn media_type(format: SbomFormat) -> &'static str {
    generator(format).media_type
}

/// The document in `format`.
pub fn bytes(format: SbomFormat, input: &SbomInput) -> Result<Vec<u8>> {
    (generator(format).generate)(input)
}

/// The SBOM in `format` about one platform manifest of `image`.
pub fn document(
    format: SbomFormat,
    facts: &Facts,
    _image: &Image,
    platform: &PlatformImage,
    shell: &crate::util::shell::Shell,
) -> Result<Document> {
    let input = contents::for_image(facts, platform, shell)?;
    let generator = generator(format);
    Ok(Document {
        artifact_type: MediaType::from(generator.artifact_type()),
        media_type: MediaType::from(generator.media_type),
        bytes: (generator.generate)(&input)?,
        annotations: BTreeMap::from([(
            "org.opencontainers.image.created".to_string(),
            facts.spec.created(),
        )]),
    })
}

/// The file `--sbom-dir` writes a document to: `<bin>-<arch>.spdx.json`, `<bin>-<arch>.cdx.json`.
pub fn file_name(bin: &str, platform: Platform, format: SbomFormat) -> String {
    format!("{bin}-{}.{}", platform.arch(), generator(format).extension)
}

/// Whether `bytes` is an SBOM this tool wrote, in any of its formats (the format's creator or
/// tool names this tool).
fn written_by_us(bytes: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return false;
    };
    GENERATORS.iter().any(|g| (g.written_by_us)(&v))
}

/// Checked before anything is built: `dir` can be written, and no file it would replace was
/// written by anything but this tool.
pub fn check_dir(
    dir: &Path,
    bin: &str,
    platforms: &[Platform],
    formats: &[SbomFormat],
) -> Result<()> {
    atomic::check_writable(dir, true, "--sbom-dir")?;
    for p in platforms {
        for f in formats {
            let target = dir.join(file_name(bin, *p, *f));
            if target.is_dir() {
                bail!(
                    "--sbom-dir: {} is a directory; remove it or choose another --sbom-dir",
                    target.display()
                );
            }
            if target.exists() {
                let bytes = std::fs::read(&target)
                    .with_context(|| format!("--sbom-dir: cannot read {}", target.display()))?;
                if !written_by_us(&bytes) {
                    bail!(
                        "--sbom-dir: {} exists and is not an SBOM written by {}; move it away or choose another --sbom-dir",
                        target.display(),
                        super::TOOL_NAME
                    );
                }
            }
        }
    }
    Ok(())
}

/// Writes each document to `dir/<file_name>`, each whole (temp file renamed into place).
pub fn write_dir(dir: &Path, files: &[(String, &[u8])]) -> Result<()> {
    for (name, bytes) in files {
        let target = dir.join(name);
        atomic::write_file(&target, |w| Ok(w.write_all(bytes)?))
            .with_context(|| format!("--sbom-dir: writing {}", target.display()))?;
    }
    Ok(())
}

/// `cargo containerize sbom`: the SBOM of the crate's binary for `platform` (default: the first
/// of the image's platforms), from the metadata and dependency graph alone; nothing is built.
pub fn of_crate(
    project: &crate::metadata::Project,
    spec: &crate::metadata::ImageSpec,
    platform: Option<Platform>,
    format: SbomFormat,
) -> Result<Vec<u8>> {
    let platform = match platform.or_else(|| spec.build.platforms.first().copied()) {
        Some(p) => p,
        None => bail!("no platform to describe; give one with --platform linux/amd64"),
    };
    bytes(format, &contents::for_crate(project, spec, platform)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_has_one_generator() {
        for format in SbomFormat::ALL {
            assert_eq!(
                GENERATORS.iter().filter(|g| g.format == format).count(),
                1,
                "{format}"
            );
        }
        assert_eq!(GENERATORS.len(), SbomFormat::ALL.len());
    }

    #[test]
    fn file_names_say_binary_platform_and_format() {
        assert_eq!(
            file_name("app", Platform::Arm64, SbomFormat::CycloneDx),
            "app-arm64.cdx.json"
        );
        assert_eq!(
            file_name("app", Platform::Amd64, SbomFormat::Spdx),
            "app-amd64.spdx.json"
        );
    }

    #[test]
    fn the_dir_check_refuses_to_replace_a_file_it_did_not_write() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("app-amd64.spdx.json");
        let g = super::contents::tests::graph();
        let doc = bytes(SbomFormat::Spdx, &super::contents::tests::input(&g, true)).unwrap();
        std::fs::write(&ours, &doc).unwrap();
        let cdx = bytes(
            SbomFormat::CycloneDx,
            &super::contents::tests::input(&g, true),
        )
        .unwrap();
        std::fs::write(dir.path().join("app-amd64.cdx.json"), &cdx).unwrap();
        check_dir(dir.path(), "app", &[Platform::Amd64], &SbomFormat::ALL).unwrap();
        std::fs::write(dir.path().join("app-amd64.cdx.json"), b"{\"mine\": true}").unwrap();
        let e = check_dir(dir.path(), "app", &[Platform::Amd64], &SbomFormat::ALL)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("app-amd64.cdx.json") && e.contains("move it away"),
            "{e}"
        );
    }
}
