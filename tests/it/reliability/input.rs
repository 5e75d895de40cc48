//! Reliability: input. Hostile or mistaken settings and files are refused where they enter, in
//! one `error: ` line that names the setting (or file) and the remedy, with a non-zero exit and
//! nothing written; special files never block a run; the image carries only what was meant.

use crate::common::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Long enough for a cold build of the hello fixture on a busy machine; a run that blocks on a
/// FIFO never ends, so the bound is what makes such a test fail instead of hang.
/// CONTAINERIZE_TEST_RUN_BOUND (seconds) shortens it, e.g. to see a hang fail quickly.
fn run_bound() -> Duration {
    let secs = std::env::var("CONTAINERIZE_TEST_RUN_BOUND")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    Duration::from_secs(secs)
}

/// Runs a command with stdin closed, waiting at most `bound`; a run still going then is killed
/// and the test fails, saying so.
fn capture_bounded(cmd: &mut Command, bound: Duration) -> Run {
    capture_within(cmd, bound).0
}

/// Every file below `dir`, recursively (no symlinks followed).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let t = e.file_type().expect("file type");
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

/// The tool's build of `project` into a fresh OCI layout, with the fixture's shared target dir
/// (or `target_dir`), bounded in time.
fn run_build(
    project: &Project,
    target_dir: Option<&Path>,
    extra: &[&str],
) -> (Run, Layout, tempfile::TempDir) {
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "test");
    let target = target_dir.map_or_else(|| shared_target_dir("hello"), Path::to_path_buf);
    let mut cmd = tool(&project.root);
    cmd.args(["build", "--locked", "--output", &layout.reference()])
        .arg("--target-dir")
        .arg(target)
        .args(extra);
    (capture_bounded(&mut cmd, run_bound()), layout, out)
}

/// The tool refuses `project` (with `extra` flags): one `error: ` line naming every keyword,
/// exit 1, no output written, the project's files untouched.
fn refused(project: &Project, extra: &[&str], keywords: &[&str]) -> Run {
    let before = snapshot(&project.root);
    let (run, _layout, out) = run_build(project, None, extra);
    assert_error(&run, 1, keywords);
    let left = snapshot(out.path());
    assert!(
        left.is_empty(),
        "written despite the error: {left:?}\n{run}"
    );
    assert_eq!(
        snapshot(&project.root),
        before,
        "the project changed: {run}"
    );
    run
}

/// hello with `toml` as its `[package.metadata.containerize]` table.
fn with_settings(toml: &str) -> Project {
    let project = Project::copy("hello");
    project.append_manifest(&format!("[package.metadata.containerize]\n{toml}\n"));
    project
}

/// A self-signed CA certificate and its private key, PEM, made by openssl.
fn cert_and_key(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    capture(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=cargo-containerize input test"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    )
    .assert_success();
    (
        fs::read_to_string(cert).expect("cert"),
        fs::read_to_string(key).expect("key"),
    )
}

// --- 1. secrets into the image -------------------------------------------------------------

#[test]
#[ignore = "heavy: builds OpenSSL"]
fn ca_certs_holding_a_private_key_is_refused_and_the_key_goes_nowhere() {
    let scratch = tempdir();
    let (cert, key) = cert_and_key(scratch.path());
    // The key's base64 lines: none may appear anywhere the tool writes or prints.
    let secret: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!secret.is_empty());
    let body = key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("\n");
    for label in [
        "PRIVATE KEY",
        "EC PRIVATE KEY",
        "RSA PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
    ] {
        let project = with_settings("ca-certs = \"bundle.pem\"");
        project.write(
            "bundle.pem",
            format!("{cert}-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"),
        );
        // A target dir of its own, to look for the key in everything the run wrote.
        let target = project.parent().join("target");
        let (run, _layout, out) = run_build(&project, Some(&target), &[]);
        assert_error(&run, 1, &["bundle.pem", label, "remove the key"]);
        assert!(snapshot(out.path()).is_empty(), "{run}");
        for line in &secret {
            assert!(
                !run.stderr.contains(line) && !run.stdout.contains(line),
                "the key is printed: {run}"
            );
        }
        for file in files_under(&target)
            .into_iter()
            .chain(files_under(out.path()))
        {
            let bytes = fs::read(&file).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !secret.iter().any(|l| text.contains(l)),
                "the key was written to {file:?}"
            );
        }
    }
}

#[test]
#[ignore = "heavy: builds OpenSSL; needs umoci, runc"]
fn ca_certs_bundle_contributes_only_its_certificates() {
    let project = Project::copy("hello");
    project.append_manifest("[package.metadata.containerize]\nca-certs = \"bundle.pem\"\n");
    let (cert, _key) = cert_and_key(project.parent());
    // Text outside the blocks (as `openssl x509 -text` or a careless paste leaves) is not a
    // certificate and stays out of the image.
    project.write(
        "bundle.pem",
        format!("# password=hunter2\nBag Attributes: x\n{cert}\ntrailing hunter2 note\n"),
    );
    let built = build(project, Some(&shared_target_dir("hello")), &[]);
    let bundle = fs::read(built.bundle().file(CA_BUNDLE)).expect("CA bundle");
    assert_eq!(pem_cert_count(&bundle), 1);
    let text = String::from_utf8_lossy(&bundle);
    assert!(
        !text.contains("hunter2"),
        "text outside the blocks shipped: {text}"
    );
    let der_lines: Vec<&str> = cert.lines().filter(|l| !l.starts_with("-----")).collect();
    assert_eq!(
        text.lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>(),
        der_lines.concat(),
        "the certificate changed"
    );
}

#[test]
#[ignore = "heavy: builds OpenSSL"]
fn ca_certs_without_a_certificate_is_refused() {
    let scratch = tempdir();
    let (_cert, key) = cert_and_key(scratch.path());
    let project = with_settings("ca-certs = \"key-only.pem\"");
    project.write("key-only.pem", &key);
    let run = refused(&project, &[], &["key-only.pem", "PRIVATE KEY"]);
    for line in key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!run.stderr.contains(line), "{run}");
    }
}

// --- 2. image paths ------------------------------------------------------------------------

#[test]
fn include_dest_with_a_whiteout_name_is_refused() {
    let project = with_settings("include = [{ src = \"a.txt\", dest = \"/etc/.wh.passwd\" }]");
    project.write("a.txt", "a\n");
    refused(&project, &[], &["include[0].dest", ".wh.", "rename"]);
    let project = with_settings("include = [{ src = \"d\", dest = \"/srv\" }]");
    project.write("d/.wh..wh..opq", "");
    refused(&project, &[], &["include[0]", ".wh."]);
}

#[test]
fn binary_path_over_a_base_directory_is_refused() {
    let project = with_settings("binary-path = \"/etc\"");
    refused(&project, &[], &["binary-path", "/etc", "choose"]);
    let project = with_settings("binary-path = \"/etc/passwd/x\"");
    refused(&project, &[], &["binary-path", "/etc/passwd"]);
}

#[test]
fn include_over_base_files_is_refused() {
    for (dest, keyword) in [
        ("/tmp", "/tmp"),
        ("/etc/passwd", "/etc/passwd"),
        ("/etc/ssl/certs/ca-certificates.crt", "ca-certs"),
        ("/usr/share/zoneinfo/UTC", "tzdata"),
        ("/usr/share", "/usr/share"),
    ] {
        let project = with_settings(&format!(
            "include = [{{ src = \"a.txt\", dest = \"{dest}\" }}]"
        ));
        project.write("a.txt", "a\n");
        refused(&project, &[], &["include[0].dest", keyword, "another dest"]);
    }
    // /etc/localtime is the image's once `timezone` is set.
    let project = with_settings(
        "timezone = \"UTC\"\ninclude = [{ src = \"a.txt\", dest = \"/etc/localtime\" }]",
    );
    project.write("a.txt", "a\n");
    refused(&project, &[], &["include[0].dest", "timezone"]);
}

#[test]
fn include_and_binary_at_the_same_path_are_refused() {
    let project = with_settings(
        "binary-path = \"/app/hello\"\ninclude = [{ src = \"a.txt\", dest = \"/app/hello\" }]",
    );
    project.write("a.txt", "a\n");
    refused(
        &project,
        &[],
        &["binary-path", "include[0].dest", "/app/hello"],
    );
    let project = with_settings(
        "binary-path = \"/app\"\ninclude = [{ src = \"a.txt\", dest = \"/app/a.txt\" }]",
    );
    project.write("a.txt", "a\n");
    refused(&project, &[], &["binary-path", "/app"]);
}

#[test]
fn image_paths_that_are_not_normalised_are_refused_naming_the_normal_form() {
    for (toml, key, normal) in [
        ("binary-path = \"/app//hello\"", "binary-path", "/app/hello"),
        (
            "binary-path = \"/app/./hello\"",
            "binary-path",
            "/app/hello",
        ),
        ("workdir = \"/srv/\"", "workdir", "/srv"),
        ("workdir = \"/srv/\\u0000x\"", "workdir", "NUL"),
        ("binary-path = \"/a/../etc\"", "binary-path", ".."),
    ] {
        let project = with_settings(toml);
        refused(&project, &[], &[key, normal]);
    }
}

// --- 3. special files ------------------------------------------------------------------------

fn mkfifo(path: &Path) {
    capture(Command::new("mkfifo").arg(path)).assert_success();
}

#[test]
fn fifo_as_binary_is_refused_without_blocking() {
    let project = Project::copy("hello");
    let fifo = project.parent().join("binary.fifo");
    mkfifo(&fifo);
    let fifo_s = fifo.to_str().expect("utf-8");
    refused(&project, &["--binary", fifo_s], &["binary.fifo", "FIFO"]);
    // `verify` takes the same path.
    let run = capture_bounded(
        Command::new(tool_path()).args(["containerize", "verify", fifo_s]),
        run_bound(),
    );
    assert_one_line_error(&run, &["binary.fifo", "FIFO"]);
}

#[test]
fn fifo_in_an_include_is_refused_without_blocking() {
    let project = with_settings("include = [{ src = \"pipe\", dest = \"/srv/pipe\" }]");
    mkfifo(&project.root.join("pipe"));
    refused(&project, &[], &["pipe", "FIFO", "include"]);
    // Inside an included directory too.
    let project = with_settings("include = [{ src = \"assets\", dest = \"/srv/assets\" }]");
    project.write("assets/a.txt", "a\n");
    mkfifo(&project.root.join("assets/pipe"));
    refused(&project, &[], &["assets/pipe", "FIFO"]);
}

#[test]
fn device_in_an_include_is_refused_not_packed_empty() {
    let project = with_settings("include = [{ src = \"assets\", dest = \"/srv/assets\" }]");
    project.write("assets/a.txt", "a\n");
    let dev = project.root.join("assets/null");
    // Root may make device nodes; the fixture copy is the place (includes stay in the package).
    capture(Command::new("mknod").arg(&dev).args(["c", "1", "3"])).assert_success();
    refused(&project, &[], &["assets/null", "character device"]);
}

// --- 4. images that cannot start ---------------------------------------------------------------

#[test]
fn entrypoint_with_an_empty_program_is_refused() {
    refused(
        &with_settings("entrypoint = [\"\"]"),
        &[],
        &["entrypoint", "program"],
    );
    refused(
        &with_settings("entrypoint = [\" \", \"x\"]"),
        &[],
        &["entrypoint"],
    );
}

#[test]
fn nul_bytes_in_config_strings_are_refused_naming_the_key() {
    for (toml, key) in [
        ("env = { \"A\\u0000B\" = \"1\" }", "env"),
        ("env = { A = \"x\\u0000y\" }", "env.A"),
        ("args = [\"ok\", \"a\\u0000b\"]", "args[1]"),
        (
            "entrypoint = [\"/usr/local/bin/hello\", \"\\u0000\"]",
            "entrypoint",
        ),
    ] {
        refused(&with_settings(toml), &[], &[key, "NUL"]);
    }
    // An empty argument is a legitimate value.
    let project = with_settings("args = [\"\"]\nenv = { EMPTY = \"\" }");
    let (run, layout, _out) = run_build(&project, None, &[]);
    run.assert_success();
    assert_eq!(layout.config()["config"]["Cmd"], serde_json::json!([""]));
}

#[test]
fn bad_env_names_from_the_command_line_are_refused() {
    let project = Project::copy("hello");
    refused(
        &project,
        &["--env", "=1"],
        &["--env", "not a valid environment variable name"],
    );
}

// --- 5. user, ports, stop-signal -----------------------------------------------------------

#[test]
fn users_that_are_not_plain_ids_are_refused() {
    for user in ["+0", "4294967295", "0:4294967295", "-1"] {
        refused(
            &with_settings(&format!("user = \"{user}\"")),
            &[],
            &["user", user, "UID[:GID]"],
        );
    }
    refused(
        &Project::copy("hello"),
        &["--user", "+0"],
        &["--user", "+0"],
    );
}

#[test]
fn ports_out_of_range_or_malformed_are_refused_naming_the_range() {
    for (value, shown) in [
        ("0", "0"),
        ("70000", "70000"),
        ("\"+80/tcp\"", "+80/tcp"),
        ("\"80/xyz\"", "80/xyz"),
        ("-1", "-1"),
    ] {
        let run = refused(
            &with_settings(&format!("ports = [8080, {value}]")),
            &[],
            &["ports[1]", shown, "1 to 65535"],
        );
        assert!(!run.stderr.contains("untagged"), "{run}");
    }
}

#[test]
fn unknown_stop_signals_are_refused_with_examples() {
    for signal in ["SIGFOO", "0", "65", "TERMINATE"] {
        refused(
            &with_settings(&format!("stop-signal = \"{signal}\"")),
            &[],
            &["stop-signal", signal, "SIGTERM"],
        );
    }
}

#[test]
fn standard_stop_signals_are_accepted_in_runc_spellings() {
    let project = with_settings("stop-signal = \"quit\"");
    let (run, layout, _out) = run_build(&project, None, &[]);
    run.assert_success();
    assert_eq!(layout.config()["config"]["StopSignal"], "SIGQUIT");
}

// --- 6. Cargo.toml syntax errors -----------------------------------------------------------

#[test]
fn cargo_toml_syntax_error_keeps_the_file_and_line() {
    let project = Project::copy("hello");
    let text = fs::read_to_string(project.manifest()).expect("Cargo.toml");
    // append_manifest adds a newline, then this: the broken line is the file's last.
    project.append_manifest("[package.metadata.containerize]\nuser = \"1000\n");
    let line = text.lines().count() + 3;
    let run = refused(&project, &[], &["Cargo.toml", &format!(":{line}:")]);
    assert!(run.stderr.contains(&format!(":{line}:")), "{run}");
}

#[test]
fn zone_names_that_lead_out_of_the_zone_database_are_refused() {
    // With the host's database, the name is joined to /usr/share/zoneinfo on the host.
    for toml in [
        "tzdata = \"host\"\ntimezone = \"../../../etc/passwd\"",
        "tzdata = \"host\"\nzones = [\"UTC\", \"../../../etc/passwd\"]",
    ] {
        let key = if toml.contains("timezone") {
            "timezone"
        } else {
            "zones[1]"
        };
        refused(&with_settings(toml), &[], &[key, "IANA"]);
    }
    refused(
        &Project::copy("hello"),
        &["--timezone", "/etc/passwd"],
        &["--timezone", "IANA"],
    );
}
