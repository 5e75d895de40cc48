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

/// The commented body of the section: every key (as `metadata::settings` declares it), with
/// this crate's default where it has one, else an example.
pub fn commented_defaults(spec: &ImageSpec) -> String {
    use crate::metadata::settings::{DECLARED, Example};
    let example = Example {
        bin: &spec.build.bin,
        package: &spec.build.package,
    };
    let mut o = String::from(
        "# Settings of `cargo containerize` (also read by its dockerfile and workflow commands).\n\
         # Every key is optional: uncomment one to change it. Values shown are the defaults,\n\
         # or examples where there is none.\n",
    );
    for setting in DECLARED {
        let key_value = format!("{} = {}", setting.key, (setting.example)(&example));
        line(&mut o, &key_value, setting.note);
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
