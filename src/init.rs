//! `cargo containerize init`: a commented `[package.metadata.containerize]` section in
//! Cargo.toml (edited with toml_edit, so the file's formatting and comments stay as they are),
//! and with `--dockerfile`/`--workflow` the generated files too. Running it again changes
//! nothing: a present section is left alone, and files with the same text are not rewritten.

use crate::metadata::CargoArgs;
use crate::metadata::spec::ImageSpec;
use crate::render::{self, Planned};
use crate::util::atomic;
use crate::util::shell::Shell;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::ExitCode;
use toml_edit::{DocumentMut, Item, Table};

/// What `cargo containerize init` is asked to write (its flags, `commands::init::InitArgs`).
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub cargo: CargoArgs,
    pub dockerfile: bool,
    pub workflow: bool,
    pub split_platforms: bool,
    pub platform: Vec<String>,
    pub force: bool,
}

/// Formats a commented `key = value` line, the comment aligned.
fn line(out: &mut String, key_value: &str, note: &str) {
    if note.is_empty() {
        out.push_str(&format!("# {key_value}\n"));
    } else {
        out.push_str(&format!("# {key_value:<40} # {note}\n"));
    }
}

fn toml_str(s: &str) -> String {
    toml_edit::Value::from(s).to_string().trim().to_string()
}

/// The commented body of the section: every key, with this crate's default where it has one.
#[allow(clippy::too_many_lines, reason = "older than the lint")]
pub fn commented_defaults(spec: &ImageSpec) -> String {
    use crate::metadata::spec::{CaSource, Compression, TzData};
    let default_path = format!("/usr/local/bin/{}", spec.bin);
    // The defaults shown are the settings' own (each defined once, on its type).
    let compression = Compression::default();
    let lines: Vec<(String, &str)> = vec![
        (
            format!("bin = {}", toml_str(&spec.bin)),
            "the binary target, when the package has several",
        ),
        (
            format!("binary-path = {}", toml_str(&default_path)),
            "where the binary goes in the image",
        ),
        (
            format!("entrypoint = [{}]", toml_str(&default_path)),
            "exec form",
        ),
        ("args = []".into(), "the image's Cmd"),
        (
            "env = { RUST_LOG = \"info\" }".into(),
            "added to PATH, SSL_CERT_FILE and TZ",
        ),
        (
            format!("user = {}", toml_str(crate::metadata::spec::DEFAULT_USER)),
            "numeric UID:GID (65532 is nonroot)",
        ),
        ("workdir = \"/\"".into(), ""),
        ("ports = [8080, \"53/udp\"]".into(), "exposed ports"),
        ("stop-signal = \"SIGTERM\"".into(), ""),
        (
            "labels = { \"org.opencontainers.image.vendor\" = \"Example\" }".into(),
            "",
        ),
        (
            format!("ca-certs = {}", toml_str(&CaSource::default().to_string())),
            "embedded Mozilla roots; \"host\", \"none\" or a PEM file",
        ),
        (
            format!("tzdata = {}", toml_str(TzData::default().name())),
            "embedded IANA data; \"host\" or \"none\"",
        ),
        (
            "zones = [\"UTC\", \"Europe/Berlin\"]".into(),
            "only these zones (default: all)",
        ),
        ("timezone = \"UTC\"".into(), "sets TZ and /etc/localtime"),
        (
            "include = [{ src = \"config/app.toml\", dest = \"/etc/app/app.toml\" }]".into(),
            "",
        ),
        ("strip = true".into(), "strip symbols and debug info"),
        (
            "auditable = true".into(),
            "embed the dependency list scanners read (syft, trivy)",
        ),
        (
            "layout-referrers = false".into(),
            "list SBOMs and provenance in oci: layouts' index.json too",
        ),
        (
            "openssl = \"build\"".into(),
            "static OpenSSL for openssl-sys, built once per target; or \"off\"",
        ),
        (
            "provenance = true".into(),
            "attach a SLSA provenance statement to each platform manifest",
        ),
        (
            format!(
                "allocator = {}",
                toml_str(crate::metadata::values::Allocator::default().as_str())
            ),
            "musl's own malloc; \"mimalloc\" is faster for allocation-heavy programs",
        ),
        (
            "sbom = [\"spdx\", \"cyclonedx\"]".into(),
            "SBOMs attached to each platform manifest; or false",
        ),
        (
            "platforms = [\"linux/amd64\", \"linux/arm64\"]".into(),
            "default: the host's",
        ),
        (
            format!("compression = {}", toml_str(compression.name())),
            "or \"zstd\"",
        ),
        (
            format!("compression-level = {}", compression.default_level()),
            "gzip 1-12 (default 5), zstd 1-19 (default 7)",
        ),
        (
            format!(
                "repository = {}",
                toml_str(&format!("ghcr.io/owner/{}", spec.package))
            ),
            "where --push goes",
        ),
        (
            "tags = [\"{version}\", \"latest\"]".into(),
            "also {git_sha}, {git_short_sha}",
        ),
    ];
    let mut o = String::from(
        "# Settings of `cargo containerize` (also read by its dockerfile and workflow commands).\n\
         # Every key is optional: uncomment one to change it. Values shown are the defaults,\n\
         # or examples where there is none.\n",
    );
    for (key_value, note) in &lines {
        line(&mut o, key_value, note);
    }
    o
}

/// What init does to Cargo.toml.
#[derive(Debug, PartialEq, Eq)]
pub enum ManifestEdit {
    /// The section exists; the file stays as it is.
    Present,
    /// The new text of the file.
    Add(String),
}

/// Adds `[package.metadata.containerize]` with the commented defaults at the end of the
/// manifest, leaving everything else byte for byte.
pub fn add_section(manifest: &str, origin: &Path, body: &str) -> Result<ManifestEdit> {
    let mut doc: DocumentMut = manifest.parse().map_err(|e: toml_edit::TomlError| {
        anyhow::anyhow!(
            "{} is not valid TOML ({}); fix it, then run init again",
            origin.display(),
            e.message().trim()
        )
    })?;
    let old_trailing = doc.trailing().as_str().unwrap_or_default().to_string();
    let Some(package) = doc.get_mut("package").and_then(Item::as_table_like_mut) else {
        bail!(
            "{} has no [package] table; run init in a package, or choose one with -p",
            origin.display()
        );
    };
    let metadata = package.entry("metadata").or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    if metadata
        .as_table_like()
        .is_some_and(|m| m.contains_key("containerize"))
    {
        return Ok(ManifestEdit::Present);
    }
    let Some(metadata) = metadata.as_table_mut() else {
        bail!(
            "package.metadata in {} is not a [table] (an inline table or a value); write it as [package.metadata.<name>] tables, then run init again",
            origin.display()
        );
    };
    let mut table = Table::new();
    // The new table goes last, so the commented keys (the document's trailing text) follow its
    // header; what used to trail the document moves in front of it.
    let mut prefix = old_trailing;
    if !prefix.is_empty() && !prefix.ends_with('\n') {
        prefix.push('\n');
    }
    prefix.push('\n');
    table.decor_mut().set_prefix(prefix);
    table.set_position(Some(isize::MAX));
    metadata.insert("containerize", Item::Table(table));
    doc.set_trailing(body);
    let mut text = doc.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    // The result must still parse, with the section in place.
    let check: DocumentMut = text.parse().context("the edited manifest does not parse")?;
    if check
        .get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("containerize"))
        .is_none()
    {
        bail!(
            "adding the section to {} failed; add it by hand",
            origin.display()
        );
    }
    Ok(ManifestEdit::Add(text))
}

/// `cargo containerize init`.
pub fn run(args: &InitOptions, shell: &Shell) -> Result<ExitCode> {
    let (project, spec) = render::load(&args.cargo, &args.platform, shell)?;
    let manifest_path = project.package.manifest_path.clone().into_std_path_buf();
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let edit = add_section(&text, &manifest_path, &commented_defaults(&spec))?;

    // Check every file before writing any.
    let dockerfile = if args.dockerfile {
        Some(render::plan_dockerfile(
            &project,
            &spec,
            &args.cargo,
            &args.platform,
            Some(&project.package_root.join("Dockerfile")),
            None,
            true,
            args.force,
            true,
        )?)
    } else {
        None
    };
    let workflow: Option<Planned> = if args.workflow {
        let path = project.workspace_root.join(render::WORKFLOW_PATH);
        let text = render::render_workflow(
            &project,
            &spec,
            &args.cargo,
            &args.platform,
            args.split_platforms,
            None,
            None,
            Some(&path),
        )?;
        Some(render::plan(&path, text, args.force)?)
    } else {
        None
    };
    if let ManifestEdit::Add(_) = edit {
        atomic::check_writable(&manifest_path, false, "Cargo.toml")?;
    }

    match &edit {
        ManifestEdit::Add(new) => {
            render::write_text(&manifest_path, new)?;
            shell.status(
                "Added",
                format!(
                    "[package.metadata.containerize] to {}",
                    manifest_path.display()
                ),
            );
        }
        ManifestEdit::Present => shell.status(
            "Unchanged",
            format!(
                "{} (it has [package.metadata.containerize])",
                manifest_path.display()
            ),
        ),
    }
    if let Some(files) = &dockerfile {
        render::write_dockerfile(files, shell)?;
    }
    if let Some(w) = &workflow {
        render::commit(w, shell)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::settings::KEYS;

    const BODY: &str = "# a = 1\n";

    fn add(text: &str) -> String {
        match add_section(text, Path::new("Cargo.toml"), BODY).unwrap() {
            ManifestEdit::Add(t) => t,
            ManifestEdit::Present => panic!("section reported present"),
        }
    }

    #[test]
    fn appends_after_everything_and_keeps_the_rest() {
        let text = "# top\n[package]\nname = \"x\" # the name\nversion = \"0.1.0\"\n\n[dependencies]\nserde = \"1\" # why\n# last words\n";
        let out = add(text);
        assert!(out.starts_with(text), "{out}");
        assert!(
            out.ends_with("\n[package.metadata.containerize]\n# a = 1\n"),
            "{out}"
        );
    }

    #[test]
    fn existing_section_is_left_alone() {
        let text = "[package]\nname = \"x\"\n\n[package.metadata.containerize]\nuser = \"1:1\"\n";
        assert_eq!(
            add_section(text, Path::new("Cargo.toml"), BODY).unwrap(),
            ManifestEdit::Present
        );
    }

    #[test]
    fn second_run_finds_the_first_runs_section() {
        let once = add("[package]\nname = \"x\"\n");
        assert_eq!(
            add_section(&once, Path::new("Cargo.toml"), BODY).unwrap(),
            ManifestEdit::Present
        );
    }

    #[test]
    fn other_metadata_tables_stay() {
        let text = "[package]\nname = \"x\"\n\n[package.metadata.docs.rs]\nall-features = true\n";
        let out = add(text);
        assert!(out.starts_with(text), "{out}");
    }

    #[test]
    fn virtual_manifest_is_an_error() {
        let e = add_section("[workspace]\nmembers = []\n", Path::new("Cargo.toml"), BODY)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no [package] table"), "{e}");
    }

    #[test]
    fn every_documented_key_is_shown() {
        let project_free = commented_defaults_for_test();
        for key in KEYS {
            assert!(
                project_free
                    .lines()
                    .any(|l| l.starts_with(&format!("# {key} = "))),
                "{key} missing from init's section:\n{project_free}"
            );
        }
    }

    fn commented_defaults_for_test() -> String {
        commented_defaults(&ImageSpec::example())
    }
}
