//! SPDX 2.3 JSON (<https://spdx.github.io/spdx-spec/v2.3/>): the image as the described
//! package, containing the binary and every other file it holds; the binary depending on the
//! crates of its graph.
//!
//! Typed serde structs written here rather than a crate's model: `spdx-rs`, the one Rust model
//! of SPDX 2.x, has had no release since 2023 and pulls in a large dependency tree for the
//! dozen fields used here; the document's shape is checked by `pyspdxtools` in the tests.
//!
//! Crates linked into the binary are `binary DEPENDS_ON crate` (and the same between crates,
//! following the graph's edges); build-time crates (build scripts' dependencies and
//! proc-macros) stay in the document, each `BUILD_DEPENDENCY_OF` the crate that uses it and
//! commented as build-time only, so a reader sees what ran during the build without mistaking
//! it for code in the image. (Both relationship types are SPDX 2.3's own; pyspdxtools accepts
//! them and syft/trivy read every package whatever its relationships.)

use super::contents::{self, BaseFacts, ImageFacts, Item, ItemKind, License, SbomInput};
use super::sbom::{Generator, SbomFormat};
use crate::metadata::graph::{GraphPackage, Kind};
use crate::util::public_url::PublicUrl;
use anyhow::Result;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The document's media type, and the referrer's artifactType.
pub const MEDIA_TYPE: &str = "application/spdx+json";

pub const GENERATOR: Generator = Generator {
    format: SbomFormat::Spdx,
    media_type: MEDIA_TYPE,
    artifact_type: None,
    extension: "spdx.json",
    generate: spdx,
    written_by_us,
};

/// Whether the document's creators name this tool (`Tool: cargo-containerize-<version>`).
fn written_by_us(v: &serde_json::Value) -> bool {
    v["creationInfo"]["creators"].as_array().is_some_and(|c| {
        c.iter().any(|c| {
            c.as_str()
                .is_some_and(|c| c.starts_with(&format!("Tool: {}-", super::TOOL_NAME)))
        })
    })
}

const NOASSERTION: &str = "NOASSERTION";

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    spdx_version: &'static str,
    data_license: &'static str,
    #[serde(rename = "SPDXID")]
    spdx_id: &'static str,
    name: String,
    document_namespace: String,
    creation_info: CreationInfo,
    packages: Vec<Package>,
    relationships: Vec<Relationship>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CreationInfo {
    created: String,
    creators: Vec<String>,
    comment: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Package {
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_info: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    package_file_name: Option<String>,
    download_location: PublicUrl,
    files_analyzed: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checksums: Vec<Checksum>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_info: Option<String>,
    license_concluded: &'static str,
    license_declared: String,
    copyright_text: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    external_refs: Vec<ExternalRef>,
    primary_package_purpose: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Checksum {
    algorithm: &'static str,
    checksum_value: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ExternalRef {
    reference_category: &'static str,
    reference_type: &'static str,
    reference_locator: String,
}

#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
struct Relationship {
    spdx_element_id: String,
    relationship_type: &'static str,
    related_spdx_element: String,
}

/// The `checksums` of a package whose sha256 is `hex`.
fn checksums(hex: Option<&str>) -> Vec<Checksum> {
    hex.map(|h| Checksum {
        algorithm: "SHA256",
        checksum_value: h.to_string(),
    })
    .into_iter()
    .collect()
}

fn purl(locator: String) -> ExternalRef {
    ExternalRef {
        reference_category: "PACKAGE-MANAGER",
        reference_type: "purl",
        reference_locator: locator,
    }
}

/// An SPDX identifier: `SPDXRef-` and letters, digits, `.` and `-` only.
fn id(kind: &str, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{kind}-{}", clean.trim_matches('-'))
}

/// The declared license and, when it cannot be stated as SPDX, a comment saying what it is.
fn declared(l: License) -> (String, Option<String>) {
    match l {
        License::Expression(e) => (e, None),
        License::Text(t) => (
            NOASSERTION.into(),
            Some(format!(
                "Declared license (not an SPDX expression of listed licenses): {t}"
            )),
        ),
        License::File(f) => (
            NOASSERTION.into(),
            Some(format!("License in the package's file {f}")),
        ),
        License::None => (NOASSERTION.into(), None),
    }
}

fn join(parts: impl IntoIterator<Item = Option<String>>) -> Option<String> {
    let parts: Vec<String> = parts.into_iter().flatten().collect();
    (!parts.is_empty()).then(|| parts.join(". "))
}

/// The document's relationships, each once, in a fixed order.
type Relationships = BTreeSet<Relationship>;

fn relate(rels: &mut Relationships, a: &str, t: &'static str, b: &str) {
    rels.insert(Relationship {
        spdx_element_id: a.to_string(),
        relationship_type: t,
        related_spdx_element: b.to_string(),
    });
}

/// The SPDX 2.3 JSON document for `input`, pretty-printed with a final newline.
pub fn spdx(input: &SbomInput) -> Result<Vec<u8>> {
    let mut relationships = Relationships::new();
    let binary_id = id("Binary", &input.bin);
    let mut packages = vec![binary_package(input, &binary_id)];
    packages.extend(crate_packages(input, &binary_id, &mut relationships));
    // The image, containing the binary and everything else it holds.
    let described = match &input.image {
        Some(img) => {
            let image_id = id("Image", &input.document_name());
            packages.push(image_package(input, img, &image_id));
            relate(&mut relationships, &image_id, "CONTAINS", &binary_id);
            if let Some(base) = &img.base {
                let base = base_package(base);
                relate(
                    &mut relationships,
                    &image_id,
                    "DESCENDANT_OF",
                    &base.spdx_id,
                );
                packages.push(base);
            }
            for item in &img.contents {
                let item = item_package(item);
                relate(&mut relationships, &image_id, "CONTAINS", &item.spdx_id);
                packages.push(item);
            }
            image_id
        }
        None => binary_id,
    };
    relate(
        &mut relationships,
        "SPDXRef-DOCUMENT",
        "DESCRIBES",
        &described,
    );
    let doc = Document {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: "SPDXRef-DOCUMENT",
        name: input.document_name(),
        document_namespace: format!(
            "https://spdx.org/spdxdocs/{}-{}",
            input.document_name(),
            input.uuid("spdx")
        ),
        creation_info: creation_info(input),
        packages,
        relationships: relationships.into_iter().collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&doc)?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn creation_info(input: &SbomInput) -> CreationInfo {
    CreationInfo {
        created: input.created(),
        creators: vec![format!(
            "Tool: {}-{}",
            super::TOOL_NAME,
            super::TOOL_VERSION
        )],
        comment: format!(
            "The time is the image's epoch (SOURCE_DATE_EPOCH or the commit's time), so the same source gives the same document; platform {}",
            input.platform
        ),
    }
}

/// The binary: the root package compiled for the platform.
fn binary_package(input: &SbomInput, binary_id: &str) -> Package {
    let root = input.graph.map(|g| g.root());
    let (license, license_comment) = root.map_or((NOASSERTION.into(), None), |r| {
        declared(contents::license(r))
    });
    Package {
        spdx_id: binary_id.to_string(),
        name: input.bin.clone(),
        version_info: Some(input.version.clone()),
        package_file_name: input.image.as_ref().map(|i| i.binary_path.clone()),
        download_location: NOASSERTION.into(),
        files_analyzed: false,
        checksums: checksums(input.binary_sha256.as_deref()),
        source_info: Some(match (root, input.graph) {
            (Some(r), Some(g)) => format!(
                "built for {} from {} {} in {}",
                g.triple,
                r.name,
                r.version,
                contents::source_words(r)
            ),
            _ => "a prebuilt binary (--binary): the crates it was built from are not known"
                .to_string(),
        }),
        license_concluded: NOASSERTION,
        license_declared: license,
        copyright_text: NOASSERTION,
        description: root.and_then(|r| r.description.clone()),
        comment: join([
            Some(format!(
                "The executable{}",
                if input.binary_sha256.is_some() {
                    "; its checksum is the sha256 of the file"
                } else {
                    " (not built: no checksum)"
                }
            )),
            license_comment,
        ]),
        external_refs: root.map(|r| purl(r.purl())).into_iter().collect(),
        primary_package_purpose: "APPLICATION",
    }
}

/// The crates, and the graph's edges between them into `rels` (the root is the binary).
fn crate_packages(input: &SbomInput, binary_id: &str, rels: &mut Relationships) -> Vec<Package> {
    let mut packages = Vec::new();
    let mut ids: BTreeMap<usize, String> = BTreeMap::from([(0, binary_id.to_string())]);
    let mut taken: BTreeSet<String> = BTreeSet::from([binary_id.to_string()]);
    for (i, p) in input.crates() {
        let mut pid = id("Package-cargo", &format!("{}-{}", p.name, p.version));
        if !taken.insert(pid.clone()) {
            pid = format!("{pid}-{i}");
            taken.insert(pid.clone());
        }
        ids.insert(i, pid.clone());
        packages.push(crate_package(p, pid));
    }
    if let Some(g) = input.graph {
        for (i, p) in g.packages.iter().enumerate() {
            for d in &p.deps {
                let (Some(from), Some(to)) = (ids.get(&i), ids.get(&d.index)) else {
                    continue;
                };
                match d.kind {
                    Kind::Runtime => relate(rels, from, "DEPENDS_ON", to),
                    Kind::Build => relate(rels, to, "BUILD_DEPENDENCY_OF", from),
                }
            }
        }
    }
    packages
}

/// One crate of the graph, as the package `spdx_id`.
fn crate_package(p: &GraphPackage, spdx_id: String) -> Package {
    let (license, license_comment) = declared(contents::license(p));
    let build_only = (p.kind == Kind::Build).then(|| {
        "Build-time only (a build script's dependency or a proc-macro): runs on the build machine, not linked into the binary".to_string()
    });
    Package {
        spdx_id,
        name: p.name.clone(),
        version_info: Some(p.version.clone()),
        package_file_name: None,
        download_location: contents::download_location(p).unwrap_or_else(|| NOASSERTION.into()),
        files_analyzed: false,
        checksums: checksums(p.checksum.as_deref()),
        source_info: Some(format!("from {}", contents::source_words(p))),
        license_concluded: NOASSERTION,
        license_declared: license,
        copyright_text: NOASSERTION,
        description: p.description.clone(),
        comment: join([build_only, license_comment]),
        external_refs: vec![purl(p.purl())],
        primary_package_purpose: "LIBRARY",
    }
}

/// The image itself, as the package `image_id`.
fn image_package(input: &SbomInput, img: &ImageFacts, image_id: &str) -> Package {
    Package {
        spdx_id: image_id.to_string(),
        name: img.name.clone(),
        version_info: Some(img.tag.clone()),
        package_file_name: None,
        download_location: NOASSERTION.into(),
        files_analyzed: false,
        checksums: checksums(img.manifest_digest.strip_prefix("sha256:")),
        source_info: None,
        license_concluded: NOASSERTION,
        license_declared: NOASSERTION.into(),
        copyright_text: NOASSERTION,
        description: None,
        comment: Some(format!(
            "The OCI image for {}; its checksum is its manifest's digest",
            input.platform
        )),
        external_refs: input.image_purl().map(purl).into_iter().collect(),
        primary_package_purpose: "CONTAINER",
    }
}

/// The base image the image is built on (`from`).
fn base_package(base: &BaseFacts) -> Package {
    Package {
        spdx_id: id("BaseImage", &base.name),
        name: base.name.clone(),
        version_info: Some(base.digest.clone()),
        package_file_name: None,
        download_location: NOASSERTION.into(),
        files_analyzed: false,
        checksums: checksums(base.digest.strip_prefix("sha256:")),
        source_info: None,
        license_concluded: NOASSERTION,
        license_declared: NOASSERTION.into(),
        copyright_text: NOASSERTION,
        description: None,
        comment: Some("The base image (`from`); its checksum is its manifest's digest".into()),
        external_refs: vec![purl(base.purl())],
        primary_package_purpose: "CONTAINER",
    }
}

/// One thing the image holds besides the binary.
fn item_package(item: &Item) -> Package {
    let kind = match item.kind {
        ItemKind::Data => "Data",
        ItemKind::File => "File",
    };
    Package {
        spdx_id: id(kind, item.key.trim_start_matches("file:")),
        name: item.name.clone(),
        version_info: item.version.clone(),
        package_file_name: Some(item.path.clone()),
        download_location: item.download.clone().unwrap_or_else(|| NOASSERTION.into()),
        files_analyzed: false,
        checksums: checksums(item.sha256.as_deref()),
        source_info: Some(item.origin.clone()),
        license_concluded: NOASSERTION,
        license_declared: NOASSERTION.into(),
        copyright_text: NOASSERTION,
        description: None,
        comment: item
            .sha256
            .as_ref()
            .map(|_| format!("The checksum is the sha256 of {}", item.digest_of)),
        external_refs: vec![],
        primary_package_purpose: match item.kind {
            ItemKind::Data => "OTHER",
            ItemKind::File => "FILE",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::contents::tests::{graph, input};
    use super::*;

    fn doc(with_image: bool) -> serde_json::Value {
        let g = graph();
        serde_json::from_slice(&spdx(&input(&g, with_image)).unwrap()).unwrap()
    }

    fn package<'a>(d: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
        d["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no package {name}"))
    }

    fn has(d: &serde_json::Value, a: &str, t: &str, b: &str) -> bool {
        d["relationships"].as_array().unwrap().iter().any(|r| {
            r["spdxElementId"] == a && r["relationshipType"] == t && r["relatedSpdxElement"] == b
        })
    }

    #[test]
    fn crates_carry_purl_license_checksum_and_location() {
        let d = doc(true);
        let serde = package(&d, "serde");
        assert_eq!(
            serde["externalRefs"][0]["referenceLocator"],
            "pkg:cargo/serde@1.0.0"
        );
        assert_eq!(serde["licenseDeclared"], "MIT OR Apache-2.0");
        assert_eq!(serde["checksums"][0]["algorithm"], "SHA256");
        assert_eq!(
            serde["downloadLocation"],
            "https://crates.io/api/v1/crates/serde/1.0.0/download"
        );
        let local = package(&d, "local");
        assert_eq!(local["downloadLocation"], "NOASSERTION");
        assert_eq!(local["licenseDeclared"], "NOASSERTION");
        assert!(local["comment"].as_str().unwrap().contains("LICENSE.txt"));
        assert!(local.get("checksums").is_none());
        let git = package(&d, "gitdep");
        assert_eq!(
            git["downloadLocation"],
            "git+https://github.com/o/r@0123456789abcdef"
        );
        assert_eq!(git["licenseDeclared"], "NOASSERTION");
    }

    #[test]
    fn relationships_follow_the_image_and_the_graph() {
        let d = doc(true);
        let image = d["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["relationshipType"] == "DESCRIBES")
            .unwrap()["relatedSpdxElement"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(package(&d, "ghcr.io/o/app")["SPDXID"], image.as_str());
        let id_of = |n: &str| package(&d, n)["SPDXID"].as_str().unwrap().to_string();
        assert!(has(&d, &image, "CONTAINS", &id_of("app")));
        assert!(has(&d, &image, "CONTAINS", &id_of("ca-certificates")));
        assert!(has(&d, &image, "CONTAINS", &id_of("/etc/passwd")));
        assert!(has(&d, &id_of("app"), "DEPENDS_ON", &id_of("serde")));
        assert!(has(
            &d,
            &id_of("serde_derive"),
            "BUILD_DEPENDENCY_OF",
            &id_of("serde")
        ));
        assert!(
            package(&d, "serde_derive")["comment"]
                .as_str()
                .unwrap()
                .contains("Build-time only")
        );
    }

    #[test]
    fn without_an_image_the_binary_is_described() {
        let d = doc(false);
        assert!(has(
            &d,
            "SPDXRef-DOCUMENT",
            "DESCRIBES",
            package(&d, "app")["SPDXID"].as_str().unwrap()
        ));
        assert!(
            d["packages"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["primaryPackagePurpose"] != "CONTAINER")
        );
    }

    #[test]
    fn the_same_input_gives_the_same_bytes() {
        let g = graph();
        assert_eq!(
            spdx(&input(&g, true)).unwrap(),
            spdx(&input(&g, true)).unwrap()
        );
        let d = doc(true);
        assert_eq!(d["creationInfo"]["created"], "2024-01-01T00:00:00Z");
    }
}
