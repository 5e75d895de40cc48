//! The generated Dockerfile, .dockerignore and GitHub Actions workflow: lint-clean with
//! hadolint and actionlint (shellcheck included) for several fixture crates and option
//! combinations, reviewed through insta snapshots, and the commands' contract (stdout or `-o`,
//! `--force`, `--template`, one-line errors, nothing half-written).
//!
//! The linters come from `scripts/setup-template-tools`; a missing one fails the test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// Runs hadolint with the strictest threshold: any finding, even a style note, fails.
fn assert_hadolint_clean(dockerfile: &Path) {
    let run = capture(
        Command::new(setup_tool("hadolint"))
            .args(["--failure-threshold", "style", "--no-color"])
            .arg(dockerfile),
    );
    assert!(
        run.status.success() && run.stdout.trim().is_empty(),
        "hadolint reports on {}:\n{run}\n--- Dockerfile ---\n{}",
        dockerfile.display(),
        fs::read_to_string(dockerfile).unwrap_or_default()
    );
}

/// Runs actionlint, with shellcheck on every `run:` script.
fn assert_actionlint_clean(workflow: &Path) {
    let run = capture(
        Command::new(setup_tool("actionlint"))
            .arg("-no-color")
            .arg(format!(
                "-shellcheck={}",
                setup_tool("shellcheck").display()
            ))
            .arg(workflow),
    );
    assert!(
        run.status.success() && run.stdout.trim().is_empty(),
        "actionlint reports on {}:\n{run}\n--- workflow ---\n{}",
        workflow.display(),
        fs::read_to_string(workflow).unwrap_or_default()
    );
}

/// Settings with nearly every key changed, and values that need quoting.
const SINK: &str = r#"
[package.metadata.containerize]
binary-path = "/opt/hello bin/hi"
entrypoint = ["/opt/hello bin/hi", "--from-entrypoint"]
args = ["first", "it's \"quoted\""]
env = { GREETING = "namaste $HOME \"x\" \\y", EMPTY = "" }
user = "1000:2000"
workdir = "/srv/app"
ports = ["8080/tcp", 9090, "5353/udp"]
stop-signal = "SIGINT"
labels = { "com.example.team" = "infra \"core\"", "org.opencontainers.image.vendor" = "Example $5" }
strip = false
timezone = "Asia/Kolkata"
zones = ["Asia/Kolkata", "UTC"]
include = [
  { src = "assets/greeting.txt", dest = "/etc/hello/greeting.txt" },
  { src = "assets/bin", dest = "/opt/tools" },
]
"#;

/// The same, without CA bundle or tzdata (so /etc/localtime is a copied file), nor the
/// dependency list (a plain `cargo build`, no cargo-auditable).
const BARE: &str = r#"
[package.metadata.containerize]
ca-certs = "none"
tzdata = "none"
auditable = false
timezone = "Europe/Berlin"
ports = [53]
"#;

fn sink_project(settings: &str) -> Project {
    let project = Project::copy("hello");
    project.append_manifest(settings);
    project.write("assets/greeting.txt", "namaste\n");
    let tool = project.write("assets/bin/tool.sh", "#!/bin/sh\necho tool\n");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).expect("chmod");
    project.write("assets/bin/README", "tools\n");
    project
}

/// One crate and the arguments a case renders it with.
struct Case {
    name: &'static str,
    project: Project,
    /// The directory the tool runs in.
    cwd: PathBuf,
    args: Vec<&'static str>,
}

impl Case {
    fn new(name: &'static str, project: Project, args: &[&'static str]) -> Case {
        Case {
            name,
            cwd: project.root.clone(),
            project,
            args: args.to_vec(),
        }
    }
}

fn dockerfile_cases() -> Vec<Case> {
    let toolchain = Project::copy("tz");
    toolchain.write(
        "rust-toolchain.toml",
        "[toolchain]\nchannel = \"1.82.0\"\ncomponents = [\"clippy\"]\n",
    );
    let msrv = Project::copy("certs");
    let text = fs::read_to_string(msrv.manifest()).expect("read");
    fs::write(
        msrv.manifest(),
        text.replacen(
            "edition = \"2021\"",
            "edition = \"2021\"\nrust-version = \"1.80\"",
            1,
        ),
    )
    .expect("write");
    let root = Project::copy("hello");
    root.append_manifest("[package.metadata.containerize]\nuser = \"root\"\n");
    vec![
        Case::new("hello", Project::copy("hello"), &[]),
        Case::new("sink", sink_project(SINK), &[]),
        Case::new("bare", sink_project(BARE), &[]),
        Case::new("root_user", root, &[]),
        Case::new(
            "dev_profile_features",
            Project::copy("hello"),
            &["--profile", "dev", "-F", "shout"],
        ),
        Case::new("cdep", Project::copy("cdep"), &[]),
        Case::new(
            "workspace_alpha",
            Project::copy("workspace"),
            &["-p", "app", "--bin", "alpha"],
        ),
        Case::new("toolchain_file", toolchain, &[]),
        Case::new("rust_version", msrv, &[]),
    ]
}

fn render(case: &Case, command: &str, out: &str, extra: &[&str]) -> (Run, PathBuf) {
    let path = case.cwd.join(out);
    let run = capture(
        tool(&case.cwd)
            .arg(command)
            .args(&case.args)
            .args(extra)
            .arg("-o")
            .arg(&path),
    );
    run.assert_success();
    (run, path)
}

#[test]
#[ignore = "heavy: needs the setup-template-tools checkers"]
fn dockerfiles_pass_hadolint_and_match_their_snapshots() {
    for case in dockerfile_cases() {
        let (_, path) = render(&case, "dockerfile", "Dockerfile", &["--dockerignore"]);
        assert_hadolint_clean(&path);
        let text = fs::read_to_string(&path).expect("read Dockerfile");
        insta::assert_snapshot!(format!("dockerfile_{}", case.name), text);
        // The directory the Dockerfile copies exists, in the build context.
        let rootfs = case.project.root.join(format!(
            ".containerize/{}/rootfs/etc/passwd",
            package_name(&case)
        ));
        assert!(
            rootfs.is_file(),
            "{case_name}: no {rootfs:?}",
            case_name = case.name
        );
    }
}

fn package_name(case: &Case) -> &'static str {
    match case.name {
        "workspace_alpha" => "app",
        "cdep" => "cdep",
        "toolchain_file" => "tz",
        "rust_version" => "certs",
        _ => "hello",
    }
}

#[test]
fn dockerignore_keeps_the_root_files_and_drops_target_and_git() {
    let case = Case::new("hello", Project::copy("hello"), &[]);
    render(&case, "dockerfile", "Dockerfile", &["--dockerignore"]);
    let text = fs::read_to_string(case.project.root.join(".dockerignore")).expect("read");
    let patterns: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    for want in ["target", ".git"] {
        assert!(patterns.contains(&want), "{want} not ignored:\n{text}");
    }
    assert!(
        !patterns
            .iter()
            .any(|p| ".containerize".starts_with(p.trim_end_matches('*'))),
        "the root files would be left out of the context:\n{text}"
    );
    insta::assert_snapshot!("dockerignore", text);
}

#[test]
#[ignore = "heavy: needs the setup-template-tools checkers"]
fn workflows_pass_actionlint_and_match_their_snapshots() {
    let with_repo = Project::copy("hello");
    with_repo.append_manifest(
        "[package.metadata.containerize]\nrepository = \"docker.io/example/hello\"\n",
    );
    let toolchain = Project::copy("tz");
    toolchain.write("rust-toolchain.toml", "[toolchain]\nchannel = \"1.82.0\"\n");
    let cases = vec![
        Case::new("hello", Project::copy("hello"), &[]),
        Case::new(
            "hello_split",
            Project::copy("hello"),
            &["--split-platforms"],
        ),
        Case::new("cdep", Project::copy("cdep"), &[]),
        Case::new("cdep_split", Project::copy("cdep"), &["--split-platforms"]),
        Case::new("repository", with_repo, &[]),
        Case::new(
            "workspace_alpha_arm64",
            Project::copy("workspace"),
            &["-p", "app", "--bin", "alpha", "--platform", "linux/arm64"],
        ),
        Case::new("toolchain_file", toolchain, &[]),
        Case::new(
            "features",
            Project::copy("hello"),
            &["-F", "shout", "--profile", "dev"],
        ),
    ];
    for case in &cases {
        let (_, path) = render(case, "workflow", "container.yml", &[]);
        assert_actionlint_clean(&path);
        let text = fs::read_to_string(&path).expect("read workflow");
        insta::assert_snapshot!(format!("workflow_{}", case.name), text);
    }
}

#[test]
fn without_output_the_text_goes_to_stdout() {
    let project = Project::copy("hello");
    let run = capture(tool(&project.root).args(["dockerfile", "-q"]));
    run.assert_success();
    let other = Case::new("x", Project::copy("hello"), &[]);
    let (_, path) = render(&other, "dockerfile", "Dockerfile", &[]);
    // The comment names the file; stdout's says "Dockerfile" too.
    assert_eq!(run.stdout, fs::read_to_string(&path).expect("read"));
    assert!(run.stderr.is_empty(), "-q printed: {run}");

    let run = capture(tool(&project.root).arg("workflow"));
    run.assert_success();
    assert!(
        run.stdout.starts_with("# Generated by cargo-containerize"),
        "{run}"
    );
    assert!(!project.root.join(".github").exists());
}

#[test]
fn an_existing_file_needs_force_unless_it_is_unchanged() {
    let project = Project::copy("hello");
    let path = project.root.join("Dockerfile");
    fs::write(&path, "FROM scratch\n").expect("write");
    let run = capture(tool(&project.root).args(["dockerfile", "-o", "Dockerfile"]));
    assert_error(&run, 1, &["Dockerfile", "--force"]);
    assert_eq!(fs::read_to_string(&path).expect("read"), "FROM scratch\n");
    assert!(
        !project.root.join(".containerize").exists(),
        "a failed run wrote the root files"
    );

    let run = capture(tool(&project.root).args(["dockerfile", "-o", "Dockerfile", "--force"]));
    run.assert_success();
    let text = fs::read_to_string(&path).expect("read");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o644, "the replaced file's mode changed");
    let fresh = project.root.join("new/Dockerfile");
    capture(tool(&project.root).args(["dockerfile", "-o", "new/Dockerfile"])).assert_success();
    assert_eq!(mode(&fresh), 0o644, "a new file is not 0644");
    assert!(text.starts_with("# syntax=docker/dockerfile:1"), "{text}");

    // The same text again: nothing to overwrite, so no --force needed, and nothing rewritten.
    let before = fs::metadata(&path)
        .expect("meta")
        .modified()
        .expect("mtime");
    let rootfs = project.root.join(".containerize/hello/rootfs/etc/passwd");
    let rootfs_before = fs::metadata(&rootfs)
        .expect("meta")
        .modified()
        .expect("mtime");
    let run = capture(tool(&project.root).args(["dockerfile", "-o", "Dockerfile"]));
    run.assert_success();
    assert!(run.stderr.contains("Unchanged"), "{run}");
    assert_eq!(
        fs::metadata(&path)
            .expect("meta")
            .modified()
            .expect("mtime"),
        before
    );
    assert_eq!(
        fs::metadata(&rootfs)
            .expect("meta")
            .modified()
            .expect("mtime"),
        rootfs_before
    );

    // The workflow follows the same rule; no temp files are left next to it.
    let wf = project.root.join("wf.yml");
    fs::write(&wf, "name: mine\n").expect("write");
    let run = capture(tool(&project.root).args(["workflow", "-o", "wf.yml"]));
    assert_error(&run, 1, &["wf.yml", "--force"]);
    assert_eq!(fs::read_to_string(&wf).expect("read"), "name: mine\n");
    capture(tool(&project.root).args(["workflow", "-o", "wf.yml", "--force"])).assert_success();
    let left: Vec<String> = snapshot(&project.root)
        .into_iter()
        .filter(|p| p.contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
}

#[test]
fn a_users_template_renders_with_the_same_context() {
    let project = Project::copy("hello");
    project.append_manifest(
        "[package.metadata.containerize]\nenv = { GREETING = \"hi\" }\nports = [8080]\n",
    );
    let template = project.write(
        "my.j2",
        "{{ package }} {{ version }} {{ bin }} {{ user }} {{ entrypoint | json }}\n\
         {{ ports | join(\",\") }} {{ rust.version }} {{ platforms | map(attribute=\"triple\") | join(\",\") }}\n\
         {{ labels | selectattr(\"name\", \"eq\", \"org.opencontainers.image.title\") | map(attribute=\"value\") | first }}\n\
         {% for e in env %}{{ e.name }}={{ e.value }};{% endfor %}",
    );
    let meta = project.package_metadata();
    let run = capture(
        tool(&project.root)
            .args(["dockerfile", "--template"])
            .arg(&template),
    );
    run.assert_success();
    let name = meta["name"].as_str().expect("name");
    let version = meta["version"].as_str().expect("version");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("{name} {version} {name} 65532:65532 [\"/usr/local/bin/{name}\"]"),
        "{run}"
    );
    assert_eq!(
        lines[1], "8080/tcp 1 x86_64-unknown-linux-musl,aarch64-unknown-linux-musl",
        "{run}"
    );
    assert_eq!(lines[2], name, "{run}");
    // In the image config's order: PATH, SSL_CERT_FILE, then the crate's own.
    assert!(
        lines[3].starts_with("PATH=/usr/local/sbin:")
            && lines[3].ends_with(";SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt;GREETING=hi;"),
        "{run}"
    );

    // The workflow command takes a template too, and `-o` writes it.
    let out = project.root.join("out.txt");
    capture(
        tool(&project.root)
            .args(["workflow", "--template"])
            .arg(&template)
            .arg("-o")
            .arg(&out),
    )
    .assert_success();
    assert_eq!(fs::read_to_string(&out).expect("read"), run.stdout);
}

#[test]
fn template_errors_are_one_line_and_write_nothing() {
    let project = Project::copy("hello");
    let cases: [(&str, &str, &[&str]); 3] = [
        ("syntax.j2", "FROM {% if %}\n", &["syntax.j2", "line 1"]),
        (
            "undefined.j2",
            "\n\n{{ no_such_field }}\n",
            &["undefined", "line 3"],
        ),
        (
            "filter.j2",
            "{{ bin | no_such_filter }}\n",
            &["filter.j2", "no_such_filter"],
        ),
    ];
    for (name, text, keywords) in cases {
        let template = project.write(name, text);
        let before = snapshot(&project.root);
        let run = capture(
            tool(&project.root)
                .args(["dockerfile", "-o", "Dockerfile", "--template"])
                .arg(&template),
        );
        assert_error(&run, 1, keywords);
        assert_eq!(snapshot(&project.root), before, "{run}");
    }
    let run = capture(tool(&project.root).args(["workflow", "--template", "missing.j2"]));
    assert_error(&run, 1, &["missing.j2", "--template"]);
}

#[test]
fn values_a_dockerfile_cannot_hold_are_refused() {
    let project = Project::copy("hello");
    project.append_manifest("[package.metadata.containerize]\nenv = { A = \"one\\ntwo\" }\n");
    let before = snapshot(&project.root);
    let run = capture(tool(&project.root).args(["dockerfile", "-o", "Dockerfile"]));
    assert_error(&run, 1, &["line break"]);
    assert_eq!(snapshot(&project.root), before, "{run}");
}

#[test]
fn output_into_a_directory_is_refused() {
    let project = Project::copy("hello");
    fs::create_dir_all(project.root.join("docker")).expect("mkdir");
    let run = capture(tool(&project.root).args(["dockerfile", "-o", "docker"]));
    assert_error(&run, 1, &["docker", "directory"]);
    let run = capture(tool(&project.root).args(["workflow", "-o", "docker"]));
    assert_error(&run, 1, &["docker", "directory"]);
}

#[test]
fn an_include_outside_the_build_context_is_refused() {
    // The include lies in the package (so `build` accepts it) but the Dockerfile is rendered
    // for a package whose workspace root is the package itself: everything is inside. A
    // symlinked include that leads out of the package is refused by the shared resolution.
    let project = Project::copy("hello");
    fs::write(project.parent().join("outside.txt"), "x\n").expect("write");
    std::os::unix::fs::symlink(
        project.parent().join("outside.txt"),
        project.root.join("link.txt"),
    )
    .expect("symlink");
    project.append_manifest(
        "[package.metadata.containerize]\ninclude = [{ src = \"link.txt\", dest = \"/x\" }]\n",
    );
    let run = capture(tool(&project.root).args(["dockerfile", "-o", "Dockerfile"]));
    assert_error(&run, 1, &["link.txt", "outside"]);
    assert!(!project.root.join("Dockerfile").exists());
}

const TOOL_COMMIT: &str = "3f2a9c1e5b7d4f6a8c0e2b4d6f8a0c2e4b6d8f0a";

/// The steps of the job that installs the tool, as text: the install command and the cache.
fn install_lines(workflow: &str) -> Vec<&str> {
    workflow
        .lines()
        .filter(|l| l.contains("cargo install") || l.contains("key: cargo-containerize-bin-"))
        .map(str::trim)
        .collect()
}

/// The workflow installs cargo-containerize from one explicit, pinned source (a crate at one
/// exact version, or a repository at one full commit), with `--locked`, and caches the
/// installed binary under a key that names that source and version, skipping the install on
/// a hit. By default the source is this build's own package and version from crates.io, and a
/// comment says so. (Before: `cargo install cargo-containerize --locked --version 0.1.0`, which
/// takes any release semver-compatible with 0.1.0 from whoever owns the name.)
#[test]
#[ignore = "heavy: needs the setup-template-tools checkers"]
fn the_workflow_installs_a_pinned_tool_from_an_explicit_source_and_caches_it() {
    let version = env!("CARGO_PKG_VERSION");
    let package = env!("CARGO_PKG_NAME");
    let sources: [(&str, Vec<String>, String, String); 3] = [
        (
            "default",
            vec![],
            format!(
                "cargo install --locked --root ~/.cargo-containerize-tool --bin cargo-containerize {package} --version ={version}"
            ),
            format!("crates.io-{package}-{version}"),
        ),
        (
            "crate",
            vec![
                "--tool-source".into(),
                "crates.io:containerize-cli@2.3.4".into(),
            ],
            "cargo install --locked --root ~/.cargo-containerize-tool --bin cargo-containerize containerize-cli --version =2.3.4".into(),
            "crates.io-containerize-cli-2.3.4".into(),
        ),
        (
            "git",
            vec![
                "--tool-source".into(),
                format!("git:https://github.com/example/cargo-containerize#{TOOL_COMMIT}"),
            ],
            format!(
                "cargo install --locked --root ~/.cargo-containerize-tool --bin cargo-containerize --git https://github.com/example/cargo-containerize --rev {TOOL_COMMIT}"
            ),
            format!("git-{TOOL_COMMIT}"),
        ),
    ];
    for split in [false, true] {
        for (name, args, install, key) in &sources {
            let case = Case::new("hello", Project::copy("hello"), &[]);
            let mut extra: Vec<&str> = args.iter().map(String::as_str).collect();
            if split {
                extra.push("--split-platforms");
            }
            let (_, path) = render(&case, "workflow", "container.yml", &extra);
            assert_actionlint_clean(&path);
            let text = fs::read_to_string(&path).expect("read workflow");
            let lines = install_lines(&text);
            let what = format!("{name} source, split {split}:\n{text}");
            assert!(
                lines.iter().any(|l| l.ends_with(install.as_str())),
                "no `{install}` in the {what}"
            );
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with("key: cargo-containerize-bin-")
                        && l.ends_with(key.as_str())),
                "the binary's cache key does not name {key}: {what}"
            );
            assert!(
                lines
                    .iter()
                    .filter(|l| l.contains("cargo install"))
                    .all(|l| {
                        l.contains("--locked")
                            && (l.contains(" --version =") || l.contains(" --rev "))
                    }),
                "an unpinned install in the {what}"
            );
            assert!(
                text.contains("if: steps.tool-cache.outputs.cache-hit != 'true'"),
                "the install does not skip on a cache hit: {what}"
            );
            assert!(
                text.contains("path: ~/.cache/cargo-containerize"),
                "the tool's own cache is not cached: {what}"
            );
            if *name == "default" {
                assert!(
                    text.contains(
                        "package and version of the cargo-containerize that wrote this file"
                    ),
                    "the default source is not explained: {what}"
                );
            } else {
                // Regenerating keeps the source.
                assert!(
                    text.lines().any(|l| l.contains("# Regenerate")
                        && l.contains("--tool-source")
                        && l.contains(args[1].as_str())),
                    "the regenerate command drops --tool-source: {what}"
                );
            }
        }
    }
}

/// The split workflow says the arm64 runner may be missing and what to do then; every action
/// is at its current major version.
#[test]
fn the_split_workflow_documents_the_arm_runner_fallback_and_actions_are_current() {
    let case = Case::new("hello", Project::copy("hello"), &["--split-platforms"]);
    let (_, path) = render(&case, "workflow", "container.yml", &[]);
    let text = fs::read_to_string(&path).expect("read workflow");
    assert!(
        text.contains("ubuntu-24.04-arm") && text.contains("private repository"),
        "{text}"
    );
    assert!(
        text.contains("render\n# without --split-platforms"),
        "{text}"
    );
    for action in [
        "actions/checkout@v7",
        "docker/login-action@v4",
        "docker/metadata-action@v6",
        "actions/attest-build-provenance@v4",
        "actions/upload-artifact@v7",
        "actions/download-artifact@v8",
        "actions/cache@v5",
        "docker/setup-buildx-action@v4",
        "sigstore/cosign-installer@v3",
    ] {
        assert!(text.contains(action), "no {action}:\n{text}");
    }
}

/// A source that could come to name other code, or would publish a credential, is refused in
/// one line naming the fix; the token is never repeated, and nothing is written.
#[test]
fn tool_sources_that_are_not_pinned_or_hold_a_credential_are_refused() {
    let project = Project::copy("hello");
    let token = "ghp_0123456789abcdefSECRET";
    let cases: Vec<(String, &[&str])> = vec![
        (
            "crates.io:cargo-containerize@^0.1".into(),
            &["--tool-source", "exact version"],
        ),
        (
            "crates.io:cargo-containerize".into(),
            &["--tool-source", "no version"],
        ),
        (
            "git:https://github.com/o/r#main".into(),
            &["--tool-source", "full commit"],
        ),
        (
            format!("git:https://github.com/o/r#{}", &TOOL_COMMIT[..7]),
            &["--tool-source", "full commit"],
        ),
        (
            format!("git:http://github.com/o/r#{TOOL_COMMIT}"),
            &["--tool-source", "https"],
        ),
        (
            format!("git:https://x-access-token:{token}@github.com/o/r#{TOOL_COMMIT}"),
            &["--tool-source", "user information"],
        ),
        (
            "ghcr.io/o/tool:1.0".into(),
            &["--tool-source", "crates.io:NAME@X.Y.Z"],
        ),
    ];
    for (value, keywords) in cases {
        let before = snapshot(&project.root);
        let run = capture(tool(&project.root).args([
            "workflow",
            "-o",
            "wf.yml",
            "--tool-source",
            &value,
        ]));
        assert_error(&run, 2, keywords);
        assert!(
            !run.stderr.contains(token) && !run.stdout.contains(token),
            "the token was repeated: {run}"
        );
        assert_eq!(snapshot(&project.root), before, "{run}");
    }
}

/// `dockerfile --no-syntax-line` leaves out `# syntax=docker/dockerfile:1` (BuildKit then uses
/// its built-in frontend, which needs no pull) and nothing else; by default it is the first
/// line. Both pass hadolint, and the regenerate command keeps the choice.
#[test]
#[ignore = "heavy: needs the setup-template-tools checkers"]
fn the_syntax_line_is_first_by_default_and_left_out_on_request() {
    let case = Case::new("hello", Project::copy("hello"), &[]);
    let (_, with) = render(&case, "dockerfile", "Dockerfile", &[]);
    let (_, without) = render(
        &case,
        "dockerfile",
        "Dockerfile.nosyntax",
        &["--no-syntax-line"],
    );
    assert_hadolint_clean(&with);
    assert_hadolint_clean(&without);
    let with = fs::read_to_string(&with).expect("read");
    let without = fs::read_to_string(&without).expect("read");
    assert_eq!(with.lines().next(), Some("# syntax=docker/dockerfile:1"));
    assert!(!without.contains("# syntax="), "{without}");
    assert!(
        without.contains("built-in Dockerfile frontend"),
        "the render does not say what builds it without the line:\n{without}"
    );
    let strip = |t: &str| -> String {
        t.lines()
            .filter(|l| {
                !l.contains("syntax")
                    && !l.contains("cargo containerize dockerfile")
                    && !l.contains(" -f Dockerfile")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        strip(&with),
        strip(&without),
        "the renders differ beyond that line"
    );
    assert!(
        without.contains("--no-syntax-line -o Dockerfile.nosyntax --force"),
        "the regenerate command drops --no-syntax-line:\n{without}"
    );
}

/// The `run:` script of the step named `step` in a generated workflow (a block scalar, read
/// by its indentation).
fn step_script(workflow: &str, step: &str) -> String {
    let mut lines = workflow
        .lines()
        .skip_while(|l| l.trim() != format!("- name: {step}"));
    lines
        .next()
        .unwrap_or_else(|| panic!("no step {step:?}:\n{workflow}"));
    let mut lines = lines.skip_while(|l| l.trim() != "run: |");
    let run = lines
        .next()
        .unwrap_or_else(|| panic!("step {step:?} has no run: |"));
    let indent = run.len() - run.trim_start().len() + 2;
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The workflow's "Build and push" step, run here by bash as the runner would (the tags
/// metadata-action would give, `GITHUB_OUTPUT`, cargo finding `cargo-containerize` on PATH),
/// pushing to a registry on loopback: the index it reports as `digest` is under every tag,
/// with both platforms.
#[test]
#[ignore = "heavy: needs docker-registry, skopeo"]
fn the_workflows_build_step_pushes_both_platforms_to_a_loopback_registry() {
    let registry = crate::support::registry::Registry::plain();
    let project = Project::copy("hello");
    commit_all(&project.root);
    let case = Case::new("hello", project, &[]);
    let (_, path) = render(&case, "workflow", "container.yml", &[]);
    let script = step_script(&fs::read_to_string(&path).expect("read"), "Build and push");
    assert!(script.contains("cargo containerize"), "{script}");

    let tags: Vec<String> = ["1.2.3", "1.2", "sha-0123abc"]
        .iter()
        .map(|t| format!("{}/example/hello:{t}", registry.host()))
        .collect();
    let out = tempdir();
    let github_output = out.path().join("github_output");
    let bin_dir = tool_path().parent().expect("bin dir");
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", &script])
        .current_dir(&case.cwd)
        .env("PATH", path)
        .env("TAGS", tags.join("\n") + "\n")
        .env("SOURCE", "https://github.com/example/hello")
        .env("GITHUB_OUTPUT", &github_output)
        .env("CARGO_TARGET_DIR", shared_target_dir("hello"))
        .env("DOCKER_CONFIG", out.path())
        .env("CARGO_TERM_COLOR", "never")
        .env("GIT_CEILING_DIRECTORIES", scratch_root())
        .env_remove("SOURCE_DATE_EPOCH");
    let (run, took) = capture_within(&mut cmd, std::time::Duration::from_secs(1200));
    run.assert_success();
    eprintln!("the workflow's build step took {took:?}");
    let output = fs::read_to_string(&github_output).expect("GITHUB_OUTPUT");
    let digest = output
        .lines()
        .find_map(|l| l.strip_prefix("digest="))
        .unwrap_or_else(|| panic!("no digest= in GITHUB_OUTPUT: {output:?}\n{run}"));
    assert!(is_sha256_digest(digest), "{output}");
    for tag in ["1.2.3", "1.2", "sha-0123abc"] {
        let raw = registry
            .skopeo_inspect(&format!("example/hello:{tag}"), true)
            .unwrap_or_else(|e| panic!("{tag} is not in the registry: {e}"));
        assert_eq!(sha256_digest(&raw), digest, "{tag} names another manifest");
        let index: serde_json::Value = serde_json::from_slice(&raw).expect("index json");
        let mut platforms: Vec<&str> = index["manifests"]
            .as_array()
            .expect("an index")
            .iter()
            .filter_map(|m| m["platform"]["architecture"].as_str())
            .collect();
        platforms.sort();
        assert_eq!(platforms, ["amd64", "arm64"], "{index}");
    }
}

/// On a base (`from`), the Dockerfile leaves the users and groups to the base: the rootfs
/// stage copies no passwd, group or home of ours over the base's, USER is the numeric user,
/// and the Dockerfile stays hadolint-clean, also when nothing of ours is left to copy
/// (`ca-certs = "base"`, `tzdata = "base"`).
#[test]
#[ignore = "heavy: needs the setup-template-tools checkers"]
fn a_dockerfile_on_a_base_keeps_the_bases_users() {
    let pinned = format!("127.0.0.1:5999/base/static@sha256:{}", "a".repeat(64));
    for (name, extra) in [
        ("certs", ""),
        ("none", "ca-certs = \"base\"\ntzdata = \"base\"\n"),
    ] {
        let project = Project::copy("hello");
        project.append_manifest(&format!(
            "[package.metadata.containerize]\nfrom = \"{pinned}\"\nuser = \"nonroot\"\n{extra}"
        ));
        let case = Case::new("on_base", project, &[]);
        let (_, path) = render(&case, "dockerfile", "Dockerfile", &[]);
        assert_hadolint_clean(&path);
        let text = fs::read_to_string(&path).expect("read Dockerfile");
        assert!(
            text.contains(&format!("FROM {pinned}\n")),
            "{name}:\n{text}"
        );
        assert!(text.contains("\nUSER 65532:65532\n"), "{name}:\n{text}");
        for ours in ["/home/nonroot", "/rootfs/tmp", "/rootfs/etc/passwd"] {
            assert!(!text.contains(ours), "{name}: {ours} in\n{text}");
        }
        let rootfs = case.project.root.join(".containerize/hello/rootfs");
        for file in [
            "etc/passwd",
            "etc/group",
            "etc/nsswitch.conf",
            "home/nonroot",
        ] {
            assert!(!rootfs.join(file).exists(), "{name}: {file} written");
        }
        // Every `mkdir -p` has an operand, and nothing is copied from a directory not written.
        assert!(
            !text.contains("mkdir -p \\") && !text.contains("mkdir -p\n"),
            "{text}"
        );
        assert_eq!(
            text.contains(".containerize/hello/rootfs/"),
            fs::read_dir(&rootfs).is_ok_and(|mut d| d.next().is_some()),
            "{name}:\n{text}"
        );
    }
}
