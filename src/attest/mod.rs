//! Stage 6 — attest: documents about the image, attached as OCI 1.1 referrers.
//!
//! For each platform manifest, [`documents`] makes the files that describe it (a provenance
//! statement today; an SBOM per format plugs in as one line each); [`attach`] stores each in
//! the blob store, wraps it in an artifact manifest whose `subject` is that platform's
//! manifest, and attaches it to the [`Image`], so every output writes or pushes it through
//! the image's one list of blobs. Deterministic: no clock, no randomness; every time comes
//! from the image's epoch and no local path goes in, so two checkouts give the same bytes.

pub mod contents;
pub mod cyclonedx;
pub mod provenance;
pub mod sbom;
pub mod spdx;

use crate::blobs::BlobStore;
use crate::image::{AttachedBlob, Attachment, Image, PlatformImage};
use crate::metadata::git::GitInfo;
use crate::metadata::{CargoArgs, ImageSpec, Project};
use crate::platform::Platform;
use crate::util::digest::Digest;
use anyhow::Result;
use oci_spec::image::MediaType;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// This tool, as documents name their producer.
pub const TOOL_NAME: &str = env!("CARGO_PKG_NAME");
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// One file attached to one platform manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The referrer's `artifactType` (what a client filters on), e.g. `application/spdx+json`.
    pub artifact_type: MediaType,
    /// The media type of the file itself (the artifact manifest's one layer).
    pub media_type: MediaType,
    pub bytes: Vec<u8>,
    /// The artifact manifest's annotations.
    pub annotations: BTreeMap<String, String>,
}

/// One binary the build produced (or `--binary` gave).
#[derive(Debug, Clone)]
pub struct BinaryFact {
    pub platform: Platform,
    /// Where it was built, on this machine (never written into a document: it differs between
    /// checkouts).
    pub path: PathBuf,
    /// Its sha256 digest.
    pub digest: Digest,
    /// The arguments of the cargo run that built it (local paths as `$WORKSPACE`, … see
    /// [`crate::build::invocation::cargo_argv`]); None for a prebuilt `--binary`.
    pub cargo_argv: Option<Vec<String>>,
}

/// Everything a document may need, borrowed from the run. The image itself is handed to
/// [`documents`] beside it (attaching mutates the image, so the facts cannot borrow it).
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub project: &'a Project,
    pub spec: &'a ImageSpec,
    pub cargo: &'a CargoArgs,
    /// One per platform of the image.
    pub binaries: &'a [BinaryFact],
    /// What git said about the package's checkout (all None outside git).
    pub git: &'a GitInfo,
    /// `rustc -vV` of the toolchain that built the binaries; None for a prebuilt `--binary`.
    pub rustc: Option<&'a str>,
    /// The base files (`/etc/passwd`, …) left out of the tool's layer because the base image
    /// has its own: the documents list the base, not these.
    pub base_has: &'a [String],
}

impl Facts<'_> {
    /// The binary of `platform`.
    pub fn binary(&self, platform: Platform) -> Option<&BinaryFact> {
        self.binaries.iter().find(|b| b.platform == platform)
    }

    /// The image's epoch (SOURCE_DATE_EPOCH, else HEAD's commit time, else 0).
    pub fn epoch(&self) -> u64 {
        self.spec.epoch.seconds()
    }
}

/// Which documents to attach. Each kind adds its own field; all on by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestOptions {
    /// An in-toto statement with a SLSA provenance v1 predicate.
    pub provenance: bool,
    /// An SBOM in each of these formats (sorted, each once).
    pub sbom: Vec<sbom::SbomFormat>,
    /// Where `--sbom-dir` also writes the SBOMs (checked by [`sbom::check_dir`] before the
    /// build).
    pub sbom_dir: Option<PathBuf>,
}

impl Default for AttestOptions {
    fn default() -> Self {
        AttestOptions {
            provenance: true,
            sbom: sbom::SbomFormats::default().formats().to_vec(),
            sbom_dir: None,
        }
    }
}

impl AttestOptions {
    /// Whether any document is asked for.
    pub fn any(&self) -> bool {
        self.provenance || !self.sbom.is_empty()
    }
}

/// A referrer attached by [`attach`], as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attached {
    /// The referrer's manifest digest.
    pub digest: Digest,
    pub artifact_type: MediaType,
    /// The manifest it refers to.
    pub subject: Digest,
    pub platform: String,
}

/// The documents about one platform's manifest, in a fixed order.
pub fn documents(
    facts: &Facts,
    image: &Image,
    platform: &PlatformImage,
    opts: &AttestOptions,
    shell: &crate::util::shell::Shell,
) -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    if opts.provenance {
        docs.push(provenance::document(facts, image, platform)?);
    }
    for format in &opts.sbom {
        docs.push(sbom::document(*format, facts, image, platform, shell)?);
    }
    Ok(docs)
}

/// A document made by an earlier run, as remembered (in the user's cache, see
/// [`crate::memo`]) by the platform manifest it describes and every input of the documents:
/// where its bytes are in the blob store, not the bytes. Used only once the store proves the
/// blob matches its digest ([`BlobStore::proven`]); otherwise the documents are made again.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Remembered {
    artifact_type: String,
    media_type: String,
    digest: Digest,
    size: u64,
    annotations: BTreeMap<String, String>,
}

/// The documents of one platform manifest, in the blob store; `bytes` only when this run made
/// them.
struct Stored {
    doc: Remembered,
    bytes: Option<Vec<u8>>,
}

/// The key of everything [`documents`] reads, but the platform: the image (every manifest,
/// which names its config and layers, so the files in them), the facts and the options. The
/// run's local paths go in too (a checkout elsewhere makes its documents once more). None when
/// something cannot be serialised: then nothing is remembered.
fn inputs_key(facts: &Facts, image: &Image, opts: &AttestOptions) -> Option<String> {
    let spec = serde_json::to_vec(facts.spec).ok()?;
    let project = serde_json::to_vec(facts.project).ok()?;
    let rest = format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        facts.cargo,
        facts.git,
        facts.rustc,
        facts.base_has,
        facts
            .binaries
            .iter()
            .map(|b| (b.platform, &b.digest, &b.cargo_argv))
            .collect::<Vec<_>>(),
        image
            .platforms
            .iter()
            .map(|p| (p.platform, &p.manifest.digest))
            .collect::<Vec<_>>(),
        image.index.as_ref().map(|i| &i.digest),
        (opts.provenance, &opts.sbom),
    );
    Some(crate::memo::key(&[
        b"attest documents 1",
        &spec,
        &project,
        rest.as_bytes(),
    ]))
}

/// The documents of `platform`, remembered when an earlier run made them from the same inputs
/// and the store still proves their blobs; else made and stored (and remembered).
fn stored_documents(
    facts: &Facts,
    image: &Image,
    platform: &PlatformImage,
    opts: &AttestOptions,
    store: &BlobStore,
    inputs: Option<&str>,
) -> Result<Vec<Stored>> {
    let key = inputs
        .map(|k| crate::memo::key(&[k.as_bytes(), platform.manifest.digest.as_ref().as_bytes()]));
    if let Some(key) = &key {
        let found: Option<Vec<Remembered>> = crate::memo::get("documents", key, store.shell());
        if let Some(found) = found
            && found.iter().all(|d| store.proven(&d.digest, d.size))
        {
            for d in &found {
                store.keep(&d.digest);
            }
            return Ok(found
                .into_iter()
                .map(|doc| Stored { doc, bytes: None })
                .collect());
        }
    }
    let mut made = Vec::new();
    for doc in documents(facts, image, platform, opts, store.shell())? {
        let (digest, size) = store.put(&doc.bytes)?;
        made.push(Stored {
            doc: Remembered {
                artifact_type: doc.artifact_type.to_string(),
                media_type: doc.media_type.to_string(),
                digest,
                size,
                annotations: doc.annotations,
            },
            bytes: Some(doc.bytes),
        });
    }
    if let Some(key) = &key {
        let docs: Vec<&Remembered> = made.iter().map(|s| &s.doc).collect();
        crate::memo::put("documents", key, &docs, &[], store.shell());
    }
    Ok(made)
}

/// Attaches the documents of every platform manifest to `image` (their blobs into `store`),
/// and returns what it attached, in the image's platform order.
pub fn attach(
    image: &mut Image,
    store: &BlobStore,
    facts: &Facts,
    opts: &AttestOptions,
) -> Result<Vec<Attached>> {
    let mut made = Vec::new();
    let mut sbom_files = Vec::new();
    let inputs = inputs_key(facts, image, opts);
    for p in &image.platforms {
        for stored in stored_documents(facts, image, p, opts, store, inputs.as_deref())? {
            let doc = stored.doc;
            let artifact_type = MediaType::from(doc.artifact_type.as_str());
            if opts.sbom_dir.is_some()
                && let Some(format) = opts
                    .sbom
                    .iter()
                    .find(|f| artifact_type == MediaType::from(sbom::media_type(**f)))
            {
                let bytes = match stored.bytes {
                    Some(b) => b,
                    None => {
                        let mut b = Vec::new();
                        std::io::Read::read_to_end(
                            &mut store.open_proven(&doc.digest, doc.size)?,
                            &mut b,
                        )?;
                        b
                    }
                };
                sbom_files.push((
                    sbom::file_name(&facts.spec.build.bin, p.platform, *format),
                    bytes,
                ));
            }
            let attachment = Attachment::new(
                artifact_type,
                &p.manifest,
                vec![AttachedBlob {
                    digest: doc.digest,
                    size: doc.size,
                    media_type: MediaType::from(doc.media_type.as_str()),
                }],
                &doc.annotations,
            )?;
            made.push((p.platform, attachment));
        }
    }
    let mut attached = Vec::new();
    for (platform, a) in made {
        attached.push(Attached {
            digest: a.manifest.digest.clone(),
            artifact_type: a.artifact_type.clone(),
            subject: a.subject.clone(),
            platform: platform.to_string(),
        });
        image.attach(a)?;
    }
    // The artifact manifests and their empty configs, beside the image's own documents.
    image.store_documents(store)?;
    if let Some(dir) = &opts.sbom_dir {
        let files: Vec<(String, &[u8])> = sbom_files
            .iter()
            .map(|(n, b)| (n.clone(), b.as_slice()))
            .collect();
        sbom::write_dir(dir, &files)?;
    }
    Ok(attached)
}
