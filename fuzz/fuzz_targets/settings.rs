//! The settings parser: `[package.metadata.containerize]` (and the workspace's table) as cargo
//! hands it over, through `Settings::from_value`, `merge` and `ImageSpec::resolve`
//! (src/metadata/settings.rs, spec.rs).
//!
//! The input is a Cargo.toml (its package.metadata.containerize and
//! workspace.metadata.containerize tables), or a bare containerize table, in TOML or JSON.

#![no_main]

use cargo_containerize::metadata::git::GitInfo;
use cargo_containerize::metadata::{ImageSpec, Project, Settings};
use cargo_containerize_fuzz::{assert_printable, printed};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use std::sync::OnceLock;

/// A package like tests/fixtures/hello, rooted in a directory that holds a few files for
/// `include` and `ca-certs` to find.
fn project() -> &'static Project {
    static PROJECT: OnceLock<(tempfile::TempDir, Project)> = OnceLock::new();
    &PROJECT
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let root = &dir.path().canonicalize().unwrap();
            std::fs::create_dir_all(root.join("static/css")).unwrap();
            std::fs::write(root.join("static/index.html"), "<p>hi</p>\n").unwrap();
            std::fs::write(root.join("static/css/a.css"), "p{}\n").unwrap();
            std::fs::write(root.join("certs.pem"), "").unwrap();
            std::fs::write(root.join("Cargo.toml"), "").unwrap();
            let manifest = root.join("Cargo.toml");
            let package = json!({
                "name": "hello", "version": "0.3.1", "id": "path+file:///fuzz/hello#0.3.1",
                "license": "MIT OR Apache-2.0", "license_file": null,
                "description": "Fixture for cargo-containerize", "source": null,
                "dependencies": [],
                "targets": [{"kind": ["bin"], "crate_types": ["bin"], "name": "hello",
                    "src_path": root.join("src/main.rs"), "edition": "2021", "doc": true,
                    "doctest": false, "test": true}],
                "features": {}, "manifest_path": manifest, "metadata": null, "publish": null,
                "authors": ["Fixture Author <fixture@example.com>"], "categories": [],
                "keywords": [], "readme": null, "repository": "https://example.com/hello",
                "homepage": null, "documentation": null, "edition": "2021", "links": null,
                "default_run": null, "rust_version": null
            });
            let project = serde_json::from_value(json!({
                "package": package,
                "workspace_root": root,
                "package_root": root,
                "target_dir": root.join("target"),
                "bin": "hello",
                "bins": ["hello"],
                "settings": {},
                "compiles_c": false,
            }))
            .unwrap();
            (dir, project)
        })
        .1
}

/// The workspace's and the package's tables, as `cargo metadata` would hand them over.
fn tables(text: &str) -> Option<(Value, Value)> {
    let doc: Value = toml::from_str(text)
        .ok()
        .or_else(|| serde_json::from_str(text).ok())?;
    let pick = |section: &str| {
        doc.get(section)
            .and_then(|s| s.get("metadata"))
            .and_then(|m| m.get("containerize"))
            .cloned()
    };
    match (pick("workspace"), pick("package")) {
        (None, None) => Some((Value::Null, doc)),
        (ws, pkg) => Some((ws.unwrap_or(Value::Null), pkg.unwrap_or(Value::Null))),
    }
}

fn parse(value: &Value, origin: &str) -> Option<Settings> {
    match Settings::from_value(value, origin) {
        Ok(s) => {
            // What the metadata cache stores parses back to the same settings.
            let stored = serde_json::to_value(&s).unwrap();
            let back = Settings::from_value(&stored, origin)
                .unwrap_or_else(|e| panic!("{stored} does not parse back: {e:#}"));
            assert_eq!(back, s, "{stored}");
            Some(s)
        }
        Err(e) => {
            let msg = printed(&e);
            assert_printable("settings", &msg);
            assert!(msg.contains(origin), "the error names no origin: {msg}");
            None
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some((ws, pkg)) = tables(text) else {
        return;
    };
    let (Some(ws), Some(pkg)) = (
        parse(&ws, "[workspace.metadata.containerize]"),
        parse(&pkg, "[package.metadata.containerize]"),
    ) else {
        return;
    };
    let settings = ws.merge(pkg);
    let mut project = project().clone();
    project.settings = settings;
    let spec = match ImageSpec::resolve(&project, &GitInfo::default()) {
        Ok(spec) => spec,
        Err(e) => {
            assert_printable("resolve", &printed(&e));
            return;
        }
    };
    assert!(!spec.entrypoint.is_empty(), "an empty entrypoint resolved");
    assert!(spec.binary_path.starts_with('/'), "{}", spec.binary_path);
    for p in &spec.ports {
        let (num, proto) = p.split_once('/').expect("ports are NUM/PROTO");
        assert!(num.parse::<u16>().is_ok(), "port {p}");
        assert!(["tcp", "udp", "sctp"].contains(&proto), "port {p}");
    }
    let mut user = spec.user.split(':');
    assert!(
        user.next().is_some_and(|u| u.parse::<u32>().is_ok()),
        "user {}",
        spec.user
    );
    assert!(user.all(|g| g.parse::<u32>().is_ok()), "user {}", spec.user);
    assert!(!spec.platforms.is_empty());
    for inc in &spec.includes {
        assert!(
            inc.src.starts_with(&project.package_root),
            "{}",
            inc.src.display()
        );
        assert!(inc.dest.starts_with('/') && !inc.dest.split('/').any(|c| c == ".."));
    }
    // The resolved image renders to JSON, as the templates and `plan` see it.
    serde_json::to_string(&spec).unwrap();
});
