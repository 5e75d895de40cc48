//! CycloneDX 1.6 JSON (<https://cyclonedx.org/docs/1.6/json/>): the image as the BOM's
//! subject (`metadata.component`, type `container`), the binary (`application`), the crates
//! (`library`), the CA bundle and time zone database (`data`) and the other files (`file`);
//! `dependencies` says image → what it holds, binary → its crates, crate → crate.
//!
//! Typed serde structs written here rather than `cyclonedx-bom`'s model: its newest release
//! (0.8) writes CycloneDX 1.3–1.5 only, not 1.6; the document's shape is checked by
//! cyclonedx-python-lib's strict 1.6 JSON schema validator in the tests.
//!
//! Crates linked into the binary have scope `required`; build-time crates (build scripts'
//! dependencies, proc-macros) stay listed with scope `excluded` — CycloneDX's word for a
//! component that is not part of the runtime — and the property
//! `cargo-containerize:dependency-kind` says which is which.

use super::contents::{self, BaseFacts, ImageFacts, Item, ItemKind, License, SbomInput};
use super::sbom::{Generator, SbomFormat};
use crate::metadata::graph::{GraphPackage, Kind};
use crate::util::public_url::PublicUrl;
use anyhow::Result;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The document's media type, and the referrer's artifactType.
pub const MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";

pub const GENERATOR: Generator = Generator {
    format: SbomFormat::CycloneDx,
    media_type: MEDIA_TYPE,
    artifact_type: None,
    extension: "cdx.json",
    generate: cyclonedx,
    written_by_us,
};

/// Whether the BOM's tools name this tool.
fn written_by_us(v: &serde_json::Value) -> bool {
    v["metadata"]["tools"]["components"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["name"] == super::TOOL_NAME))
}

const PROPERTY_PREFIX: &str = "cargo-containerize:";

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Bom {
    #[serde(rename = "$schema")]
    schema: &'static str,
    bom_format: &'static str,
    spec_version: &'static str,
    serial_number: String,
    version: u32,
    metadata: Metadata,
    components: Vec<Component>,
    dependencies: Vec<Dependency>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    timestamp: String,
    tools: Tools,
    component: Component,
    properties: Vec<Property>,
}

#[derive(Debug, Serialize)]
struct Tools {
    components: Vec<Component>,
}

#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Component {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "bom-ref", skip_serializing_if = "Option::is_none")]
    bom_ref: Option<String>,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hashes: Vec<Hash>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    licenses: Vec<LicenseChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purl: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    external_references: Vec<ExternalReference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    properties: Vec<Property>,
}

#[derive(Debug, Serialize)]
struct Hash {
    alg: &'static str,
    content: String,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum LicenseChoice {
    Expression { expression: String },
    Named { license: NamedLicense },
}

#[derive(Debug, Serialize)]
struct NamedLicense {
    name: String,
}

#[derive(Debug, Serialize)]
struct ExternalReference {
    #[serde(rename = "type")]
    kind: &'static str,
    url: PublicUrl,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
}

#[derive(Debug, Serialize)]
struct Property {
    name: String,
    value: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Dependency {
    #[serde(rename = "ref")]
    reference: String,
    depends_on: Vec<String>,
}

fn property(name: &str, value: impl Into<String>) -> Property {
    Property {
        name: format!("{PROPERTY_PREFIX}{name}"),
        value: value.into(),
    }
}

/// The `hashes` of a component whose sha256 is `hex`.
fn hashes(hex: Option<&str>) -> Vec<Hash> {
    hex.map(|h| Hash {
        alg: "SHA-256",
        content: h.to_string(),
    })
    .into_iter()
    .collect()
}

/// The licenses entry and, for a license file, a property naming it.
fn licenses(l: License) -> (Vec<LicenseChoice>, Option<Property>) {
    match l {
        License::Expression(expression) => (vec![LicenseChoice::Expression { expression }], None),
        License::Text(name) => (
            vec![LicenseChoice::Named {
                license: NamedLicense { name },
            }],
            None,
        ),
        License::File(f) => (vec![], Some(property("license-file", f))),
        License::None => (vec![], None),
    }
}

/// What each component depends on (or holds), by bom-ref.
type Dependencies = BTreeMap<String, BTreeSet<String>>;

/// The CycloneDX 1.6 JSON document for `input`, pretty-printed with a final newline.
pub fn cyclonedx(input: &SbomInput) -> Result<Vec<u8>> {
    let mut deps = Dependencies::new();
    let binary_ref = format!("binary:{}", input.bin);
    let binary = binary_component(input, &binary_ref);
    deps.entry(binary_ref.clone()).or_default();
    let mut components = crate_components(input, &binary_ref, &mut deps);
    // The image: the BOM's subject, holding the binary and everything else.
    let subject = match &input.image {
        Some(img) => {
            let image_ref = format!("image:{}@{}", img.name, img.manifest_digest);
            components.insert(0, binary);
            let mut holds = BTreeSet::from([binary_ref]);
            for item in &img.contents {
                let r = format!(
                    "{}:{}",
                    item_kind(item),
                    item.key.trim_start_matches("file:")
                );
                holds.insert(r.clone());
                deps.entry(r.clone()).or_default();
                components.push(item_component(item, r));
            }
            if let Some(base) = &img.base {
                let r = format!("base:{}@{}", base.name, base.digest);
                holds.insert(r.clone());
                deps.entry(r.clone()).or_default();
                components.push(base_component(base, r));
            }
            deps.insert(image_ref.clone(), holds);
            image_component(input, img, image_ref)
        }
        None => binary,
    };
    let bom = Bom {
        schema: "http://cyclonedx.org/schema/bom-1.6.schema.json",
        bom_format: "CycloneDX",
        spec_version: "1.6",
        serial_number: format!("urn:uuid:{}", input.uuid("cyclonedx")),
        version: 1,
        metadata: metadata(input, subject),
        components,
        dependencies: deps
            .into_iter()
            .map(|(reference, on)| Dependency {
                reference,
                depends_on: on.into_iter().collect(),
            })
            .collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&bom)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The BOM's metadata: its time, this tool, and its subject.
fn metadata(input: &SbomInput, subject: Component) -> Metadata {
    Metadata {
        timestamp: input.created(),
        tools: Tools {
            components: vec![Component {
                kind: "application",
                name: super::TOOL_NAME.to_string(),
                version: Some(super::TOOL_VERSION.to_string()),
                ..Component::default()
            }],
        },
        component: subject,
        properties: vec![property("platform", input.platform.to_string())],
    }
}

/// The binary: the root package compiled for the platform.
fn binary_component(input: &SbomInput, binary_ref: &str) -> Component {
    let root = input.graph.map(|g| g.root());
    let (lic, lic_prop) = root.map_or((vec![], None), |r| licenses(contents::license(r)));
    let mut binary_props = vec![property("kind", "binary")];
    if let Some(img) = &input.image {
        binary_props.push(property("path", img.binary_path.clone()));
    }
    match (root, input.graph) {
        (Some(r), Some(g)) => {
            binary_props.push(property("target", g.triple.clone()));
            binary_props.push(property("source", contents::source_words(r)));
        }
        _ => binary_props.push(property(
            "source",
            "a prebuilt binary (--binary): the crates it was built from are not known",
        )),
    }
    binary_props.extend(lic_prop);
    Component {
        kind: "application",
        bom_ref: Some(binary_ref.to_string()),
        name: input.bin.clone(),
        version: Some(input.version.clone()),
        description: root.and_then(|r| r.description.clone()),
        hashes: hashes(input.binary_sha256.as_deref()),
        licenses: lic,
        purl: root.map(|r| r.purl()),
        properties: binary_props,
        ..Component::default()
    }
}

/// The crates, and the graph's edges into `deps` (the root is the binary).
fn crate_components(
    input: &SbomInput,
    binary_ref: &str,
    deps: &mut Dependencies,
) -> Vec<Component> {
    let mut components = Vec::new();
    let mut refs: BTreeMap<usize, String> = BTreeMap::from([(0, binary_ref.to_string())]);
    let mut taken: BTreeSet<String> = BTreeSet::from([binary_ref.to_string()]);
    for (i, p) in input.crates() {
        let mut r = p.purl();
        if !taken.insert(r.clone()) {
            r = format!("{r}#{i}");
            taken.insert(r.clone());
        }
        refs.insert(i, r.clone());
        deps.entry(r.clone()).or_default();
        components.push(crate_component(p, r));
    }
    if let Some(g) = input.graph {
        for (i, p) in g.packages.iter().enumerate() {
            let Some(from) = refs.get(&i) else { continue };
            for d in &p.deps {
                if let Some(to) = refs.get(&d.index) {
                    deps.entry(from.clone()).or_default().insert(to.clone());
                }
            }
        }
    }
    components
}

/// One crate of the graph, as the component `bom_ref`.
fn crate_component(p: &GraphPackage, bom_ref: String) -> Component {
    let (lic, lic_prop) = licenses(contents::license(p));
    let mut external_references = Vec::new();
    match &p.source {
        crate::metadata::graph::Source::Git { url, rev } => {
            external_references.push(ExternalReference {
                kind: "vcs",
                url: url.clone(),
                comment: Some(format!("commit {rev}")),
            })
        }
        _ => {
            if let Some(url) = contents::download_location(p) {
                external_references.push(ExternalReference {
                    kind: "distribution",
                    url,
                    comment: None,
                });
            }
        }
    }
    let mut properties = vec![
        property(
            "dependency-kind",
            match p.kind {
                Kind::Runtime => "runtime",
                Kind::Build => "build",
            },
        ),
        property("source", contents::source_words(p)),
    ];
    properties.extend(lic_prop);
    Component {
        kind: "library",
        bom_ref: Some(bom_ref),
        name: p.name.clone(),
        version: Some(p.version.clone()),
        description: p.description.clone(),
        scope: Some(match p.kind {
            Kind::Runtime => "required",
            Kind::Build => "excluded",
        }),
        hashes: hashes(p.checksum.as_deref()),
        licenses: lic,
        purl: Some(p.purl()),
        external_references,
        properties,
    }
}

/// An item's component type.
fn item_kind(item: &Item) -> &'static str {
    match item.kind {
        ItemKind::Data => "data",
        ItemKind::File => "file",
    }
}

/// One thing the image holds besides the binary, as the component `bom_ref`.
fn item_component(item: &Item, bom_ref: String) -> Component {
    let mut properties = vec![
        property("path", item.path.clone()),
        property("source", item.origin.clone()),
    ];
    if item.sha256.is_some() {
        properties.push(property("digest-of", item.digest_of));
    }
    Component {
        kind: item_kind(item),
        bom_ref: Some(bom_ref),
        name: item.name.clone(),
        version: item.version.clone(),
        hashes: hashes(item.sha256.as_deref()),
        external_references: item
            .download
            .iter()
            .map(|url| ExternalReference {
                kind: "distribution",
                url: url.clone(),
                comment: None,
            })
            .collect(),
        properties,
        ..Component::default()
    }
}

/// The base image the image is built on (`from`), as the component `bom_ref`.
fn base_component(base: &BaseFacts, bom_ref: String) -> Component {
    Component {
        kind: "container",
        bom_ref: Some(bom_ref),
        name: base.name.clone(),
        version: Some(base.digest.clone()),
        hashes: hashes(base.digest.strip_prefix("sha256:")),
        purl: Some(base.purl()),
        properties: vec![
            property("digest-of", "the base image's manifest"),
            property("role", "base image"),
        ],
        ..Component::default()
    }
}

/// The image itself, the BOM's subject, as the component `image_ref`.
fn image_component(input: &SbomInput, img: &ImageFacts, image_ref: String) -> Component {
    Component {
        kind: "container",
        bom_ref: Some(image_ref),
        name: img.name.clone(),
        version: Some(img.tag.clone()),
        hashes: hashes(img.manifest_digest.strip_prefix("sha256:")),
        purl: input.image_purl(),
        properties: vec![property("digest-of", "the image manifest")],
        ..Component::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::contents::tests::{graph, input};
    use super::*;

    fn doc(with_image: bool) -> serde_json::Value {
        let g = graph();
        serde_json::from_slice(&cyclonedx(&input(&g, with_image)).unwrap()).unwrap()
    }

    fn component<'a>(d: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
        d["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no component {name}"))
    }

    fn depends(d: &serde_json::Value, from: &str, to: &str) -> bool {
        d["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["ref"] == from && x["dependsOn"].as_array().unwrap().iter().any(|t| t == to))
    }

    #[test]
    fn crates_carry_purl_license_hash_and_scope() {
        let d = doc(true);
        let serde = component(&d, "serde");
        assert_eq!(serde["purl"], "pkg:cargo/serde@1.0.0");
        assert_eq!(serde["licenses"][0]["expression"], "MIT OR Apache-2.0");
        assert_eq!(serde["hashes"][0]["alg"], "SHA-256");
        assert_eq!(serde["scope"], "required");
        assert_eq!(component(&d, "serde_derive")["scope"], "excluded");
        let git = component(&d, "gitdep");
        assert_eq!(git["externalReferences"][0]["type"], "vcs");
        assert!(git["licenses"][0]["license"]["name"].is_string());
        let local = component(&d, "local");
        assert!(local.get("hashes").is_none() && local.get("licenses").is_none());
    }

    #[test]
    fn the_image_holds_the_binary_which_depends_on_its_crates() {
        let d = doc(true);
        let image = &d["metadata"]["component"];
        assert_eq!(image["type"], "container");
        let image_ref = image["bom-ref"].as_str().unwrap();
        let bin_ref = component(&d, "app")["bom-ref"].as_str().unwrap();
        assert!(depends(&d, image_ref, bin_ref));
        assert!(depends(&d, image_ref, "data:ca-certificates"));
        assert!(depends(&d, bin_ref, "pkg:cargo/serde@1.0.0"));
        assert!(depends(
            &d,
            "pkg:cargo/serde@1.0.0",
            "pkg:cargo/serde_derive@1.0.0"
        ));
        assert!(d["serialNumber"].as_str().unwrap().starts_with("urn:uuid:"));
    }

    #[test]
    fn without_an_image_the_binary_is_the_subject() {
        let d = doc(false);
        assert_eq!(d["metadata"]["component"]["type"], "application");
        assert_eq!(d["metadata"]["component"]["name"], "app");
        assert!(
            d["components"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["type"] == "library")
        );
    }
}
