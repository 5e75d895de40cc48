//! Reliability: what is published from the user's input (issue 20, the smaller items): a
//! default image reference the user did not write is valid whatever the package is called; a
//! profile name carries no shell syntax into a generated file; every label derived from
//! Cargo.toml follows one rule for line breaks; the image has one time, however it arrives.

use crate::common::*;
use crate::support::podman::Podman;

use std::fs;
use std::process::Command;

/// Usage errors (bad flag values): exit 2, one `error: ` line naming `keyword`, no panic,
/// nothing on stdout.
#[track_caller]
fn assert_usage_error(run: &Run, keyword: &str) {
    assert_eq!(run.code(), Some(2), "usage errors exit 2: {run}");
    assert!(!run.stderr.contains("panicked"), "{run}");
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error"))
        .collect();
    assert_eq!(errors.len(), 1, "{run}");
    assert!(errors[0].starts_with("error: "), "{run}");
    assert!(errors[0].contains(keyword), "no {keyword:?}: {run}");
    assert!(run.stdout.is_empty(), "printed on stdout: {run}");
}

#[test]
fn a_profile_name_with_shell_syntax_is_refused_by_every_command_that_takes_one() {
    let project = Project::copy("hello");
    let before = snapshot(&project.root);
    for command in ["build", "dockerfile", "workflow", "sbom"] {
        let run = capture(tool(&project.root).args([command, "--profile", "x'$(id)'"]));
        assert_usage_error(&run, "profile");
        assert!(error_line(&run).contains("letters, digits"), "{run}");
    }
    assert_eq!(snapshot(&project.root), before, "something was written");
    // A name cargo takes is taken, and reaches the Dockerfile as written.
    let run = capture(tool(&project.root).args(["dockerfile", "--profile", "dist_2-lto"]));
    run.assert_success();
    assert!(run.stdout.contains("--profile dist_2-lto"), "{run}");
}

/// hello renamed `MyApp` (its Cargo.lock too, so `--locked` holds).
fn my_app() -> Project {
    let project = Project::copy("hello");
    for file in ["Cargo.toml", "Cargo.lock"] {
        let path = project.root.join(file);
        let text = fs::read_to_string(&path).expect("read");
        fs::write(&path, text.replace("name = \"hello\"", "name = \"MyApp\"")).expect("write");
    }
    project
}

#[test]
#[ignore = "heavy: needs podman"]
fn a_package_named_in_capitals_gets_a_valid_default_reference_in_archives_and_load() {
    let project = my_app();
    let podman = Podman::new();
    let out = tempdir();
    let archive = out.path().join("app.tar");
    let mut cmd = tool(&project.root);
    cmd.args(["build", "--locked", "--target-dir"])
        .arg(shared_target_dir("MyApp"))
        .arg("--output")
        .arg(format!("docker-archive:{}", archive.display()))
        .args(["--load", "podman"]);
    podman.apply(&mut cmd);
    let run = capture(&mut cmd);
    run.assert_success();
    let listed = capture(
        Command::new("tar")
            .arg("-xOf")
            .arg(&archive)
            .arg("manifest.json"),
    );
    listed.assert_success();
    let manifest: serde_json::Value = serde_json::from_str(&listed.stdout).expect("manifest.json");
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["myapp:0.3.1"]));
    let names = podman.image_names();
    assert!(
        names.iter().any(|n| n == "localhost/myapp:0.3.1"),
        "loaded as {names:?}: {run}"
    );

    // A reference the user wrote is theirs: checked as written, not changed.
    let bad = out.path().join("bad.tar");
    let run = capture(
        tool(&project.root)
            .args(["build", "--locked", "--output"])
            .arg(format!("docker-archive:{}:MyApp:1", bad.display())),
    );
    assert_error(&run, 1, &["MyApp:1", "not valid"]);
    assert!(!bad.exists());
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn an_author_with_a_line_break_is_folded_as_a_description_is_in_the_dockerfile_and_the_image() {
    let project = Project::copy("hello");
    let path = project.manifest();
    let text = fs::read_to_string(&path).expect("read");
    let text = text
        .replace(
            "authors = [\"Fixture Author <fixture@example.com>\"]",
            "authors = [\"Jane\\nDoe <jane@example.com>\", \"Fixture Author <fixture@example.com>\"]",
        )
        .replace(
            "description = \"Fixture for cargo-containerize: prints a greeting and its uid\"",
            "description = \"Prints a greeting\\nand its uid\"",
        );
    fs::write(&path, text).expect("write");
    let authors = "Jane Doe <jane@example.com>, Fixture Author <fixture@example.com>";

    let run = capture(tool(&project.root).arg("dockerfile"));
    run.assert_success();
    for expected in [authors, "Prints a greeting and its uid"] {
        assert!(run.stdout.contains(&format!("\"{expected}\"")), "{run}");
    }
    // `build` makes the image the Dockerfile describes: the same labels.
    let target = tempdir();
    let built = build(project, Some(target.path()), &[]);
    let labels = &built.layout.config()["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.authors"], authors);
    assert_eq!(
        labels["org.opencontainers.image.description"],
        "Prints a greeting and its uid"
    );
}

#[test]
fn source_date_epoch_set_to_the_commit_time_gives_the_digest_leaving_it_unset_gives() {
    let project = Project::copy("hello");
    commit_all(&project.root);
    let target = tempdir();
    let build_with = |epoch: Option<u64>| {
        let out = tempdir();
        let layout = Layout::new(out.path().join("image"), "test");
        let mut cmd = tool(&project.root);
        cmd.args(["build", "--locked", "--target-dir"])
            .arg(target.path())
            .args(["--output", &layout.reference()]);
        if let Some(e) = epoch {
            cmd.env("SOURCE_DATE_EPOCH", e.to_string());
        }
        let run = capture(&mut cmd);
        run.assert_success();
        (run.digest(), layout, out)
    };
    let (unset, layout, _out) = build_with(None);
    let (set, _, _out2) = build_with(Some(COMMIT_TIME));
    assert_eq!(
        set, unset,
        "SOURCE_DATE_EPOCH=HEAD's time gave another image"
    );
    // The binary's layer carries that time, as `created` does.
    let binary_layer = layout
        .layer_digests()
        .into_iter()
        .map(|d| layout.layer_entries(&d))
        .find(|entries| entries.iter().any(|e| e.path.ends_with("bin/hello")))
        .expect("a layer holds the binary");
    for e in &binary_layer {
        assert_eq!(e.mtime, COMMIT_TIME, "{}", e.path);
    }
}
