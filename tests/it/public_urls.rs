//! No credential in a URL is published (issue 20, item 1). The `gitsecret` fixture has a git
//! dependency whose URL carries `alice:ghp_GITTOKEN@` (resolved offline from `vendor/`), a
//! `repository` with `carol:ghp_REPOTOKEN@` and `?token=QUERYTOKEN`, a `homepage` with
//! `?access_token=HOMETOKEN`, and the dependency's own `repository` with
//! `bob:glpat-DEPTOKEN@` and `?private_token=DEPQUERY`. None of these may reach a document, a
//! label, an annotation, a generated file or a message; the URLs themselves, without them, do.

use crate::common::*;
use crate::support::registry::Registry;
use std::fs;
use std::path::{Path, PathBuf};

/// Every secret the fixture's URLs carry (user names included: the rule drops userinfo).
const SECRETS: &[&str] = &[
    "ghp_GITTOKEN",
    "ghp_REPOTOKEN",
    "QUERYTOKEN",
    "HOMETOKEN",
    "glpat-DEPTOKEN",
    "DEPQUERY",
    "alice",
    "carol",
    "bob:",
];

/// The git dependency's URL without its userinfo: what the documents must name.
const GIT_URL: &str = "https://git.example.com/o/gitdep";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[track_caller]
fn assert_no_secret(what: &str, bytes: &[u8]) {
    for s in SECRETS {
        assert!(
            !find(bytes, s.as_bytes()),
            "{what} holds `{s}`:\n{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
        let e = e.expect("entry");
        let t = e.file_type().expect("type");
        if t.is_dir() {
            out.extend(files_under(&e.path()));
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    out
}

#[test]
#[ignore = "heavy: needs docker-registry"]
fn a_token_in_a_url_reaches_no_document_label_annotation_or_message() {
    let project = Project::copy("gitsecret");
    let registry = Registry::plain();
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "test");
    let run = capture(
        tool(&project.root)
            .args(["build", "--locked", "--layout-referrers", "-v"])
            .args(["--sbom", "spdx,cyclonedx", "--output", &layout.reference()])
            .arg("--target-dir")
            .arg(shared_target_dir("gitsecret"))
            .args(["--push", "-t", &registry.reference("gitsecret:1")])
            .env("DOCKER_CONFIG", tempdir().keep()),
    );
    run.assert_success();
    assert_no_secret("stdout", run.stdout.as_bytes());
    assert_no_secret("stderr", run.stderr.as_bytes());

    // Every JSON document of the layout: index, manifests, configs, SBOMs, provenance.
    let mut documents = Vec::new();
    for f in files_under(&layout.dir) {
        let bytes = fs::read(&f).expect("read");
        if bytes.first() == Some(&b'{') {
            assert_no_secret(&f.display().to_string(), &bytes);
            documents.push(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    // Every file the registry stored (blobs, manifests, the referrers' tag).
    let stored = files_under(&registry.data_dir());
    assert!(!stored.is_empty(), "the registry stored nothing");
    for f in stored {
        assert_no_secret(&f.display().to_string(), &fs::read(&f).expect("read"));
    }

    // The URLs are there, without their credentials: the SBOMs' download location and
    // purl, the provenance's dependency and source, the labels.
    let all = documents.join("\n");
    for expected in [
        format!("git+{GIT_URL}@{COMMIT}"),
        format!("vcs_url=git+{GIT_URL}%40{COMMIT}"),
        format!("\"uri\":\"git+{GIT_URL}\""),
        format!("git+{GIT_URL}?branch=main#{COMMIT}"),
    ] {
        assert!(all.contains(&expected), "no document holds {expected}");
    }
    let labels = &layout.config()["config"]["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.source"],
        "https://github.com/o/gitsecret?tab=readme"
    );
    assert_eq!(
        labels["org.opencontainers.image.url"],
        "https://gitsecret.example.com/"
    );
    // cargo's own `Compiling gitdep v0.1.0 (URL)` line was passed on, scrubbed.
    assert!(
        run.stderr.contains(&format!("({GIT_URL}?branch=main#")),
        "{run}"
    );
}

#[test]
fn the_sbom_command_and_the_generated_files_carry_no_token() {
    let project = Project::copy("gitsecret");
    for format in ["spdx", "cyclonedx"] {
        let run = capture(tool(&project.root).args(["sbom", "--locked", "--format", format]));
        run.assert_success();
        assert_no_secret(&format!("sbom --format {format}"), run.stdout.as_bytes());
        assert_no_secret("stderr", run.stderr.as_bytes());
        assert!(run.stdout.contains(GIT_URL), "{run}");
    }
    for command in ["dockerfile", "workflow"] {
        let run = capture(tool(&project.root).args([command, "--locked"]));
        run.assert_success();
        assert_no_secret(command, run.stdout.as_bytes());
        assert_no_secret("stderr", run.stderr.as_bytes());
    }
    let run = capture(tool(&project.root).args(["dockerfile", "--locked"]));
    assert!(
        run.stdout
            .contains("\"https://github.com/o/gitsecret?tab=readme\""),
        "{run}"
    );
}
