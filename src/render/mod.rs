//! Generated files: a Dockerfile, a GitHub Actions release workflow and a .dockerignore,
//! rendered with minijinja from the templates in `templates/` (embedded at compile time) or
//! from a user's own template, always with one context ([`TemplateContext`]) built from the
//! same [`ImageSpec`] that `build` uses.

pub mod context;
pub mod rootfs;
pub mod tool_source;

pub use context::{RenderOptions, TemplateContext};

use crate::metadata::{self, CargoArgs, ImageSpec, Project, Settings, git};
use crate::util::atomic;
use crate::util::shell::Shell;
use anyhow::{Context as _, Result, bail};
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The builder image's repository and the variant its tag ends with (Debian 12, slim).
pub const RUST_IMAGE: &str = "docker.io/library/rust";
pub const RUST_IMAGE_VARIANT: &str = "slim-bookworm";

/// The built-in templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    Dockerfile,
    Workflow,
    DockerIgnore,
}

impl Template {
    pub fn name(self) -> &'static str {
        match self {
            Template::Dockerfile => "Dockerfile.j2",
            Template::Workflow => "github-workflow.yml.j2",
            Template::DockerIgnore => "dockerignore.j2",
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            Template::Dockerfile => include_str!("../../templates/Dockerfile.j2"),
            Template::Workflow => include_str!("../../templates/github-workflow.yml.j2"),
            Template::DockerIgnore => include_str!("../../templates/dockerignore.j2"),
        }
    }
}

/// Shell word: as is when safe, else single-quoted.
fn filter_sh(s: String) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b));
    if safe {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A Dockerfile double-quoted string (ENV, LABEL values): `\`, `"` and `$` escaped.
fn filter_dq(s: String) -> Result<String, Error> {
    if s.contains(['\n', '\r']) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("{s:?} holds a line break, which a Dockerfile cannot express"),
        ));
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '\\' | '"' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

/// A name Dockerfile ENV accepts unquoted.
fn filter_env_name(s: String) -> Result<String, Error> {
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| !c.is_whitespace() && !matches!(c, '=' | '"' | '\'' | '$' | '\\'));
    if ok {
        Ok(s)
    } else {
        Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("env name {s:?} cannot be written in a Dockerfile; use letters, digits and _"),
        ))
    }
}

/// JSON text: exec-form ENTRYPOINT/CMD, and double-quoted YAML scalars.
fn filter_json(v: Value) -> Result<String, Error> {
    // Through serde_json's Value, whose maps are sorted: the text does not depend on the
    // order a template built a map in.
    serde_json::to_value(&v)
        .and_then(|j| serde_json::to_string(&j))
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
}

/// The environment every template renders in: the built-in templates, strict undefined
/// values (a typo in a template is an error, not an empty string), `trim_blocks` and
/// `lstrip_blocks`, the trailing newline kept, and the filters `sh`, `dq`, `env_name`, `json`.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .expect("default delimiters are valid"),
    );
    env.add_filter("sh", filter_sh);
    env.add_filter("dq", filter_dq);
    env.add_filter("env_name", filter_env_name);
    env.add_filter("json", filter_json);
    for t in [
        Template::Dockerfile,
        Template::Workflow,
        Template::DockerIgnore,
    ] {
        env.add_template(t.name(), t.source())
            .expect("built-in templates parse");
    }
    env
}

/// One line describing a template error, with where it happened.
fn describe_error(e: &Error) -> String {
    let mut text = e
        .detail()
        .map_or_else(|| e.kind().to_string(), str::to_string);
    if let (Some(name), Some(line)) = (e.name(), e.line()) {
        text.push_str(&format!(" (at {name} line {line})"));
    }
    text
}

/// Renders a built-in template, or the user's file when `user` is given.
pub fn render(template: Template, user: Option<&Path>, ctx: &TemplateContext) -> Result<String> {
    let mut env = environment();
    let value = ctx.to_value()?;
    let (name, what) = match user {
        Some(path) => {
            let source = std::fs::read_to_string(path).with_context(|| {
                format!(
                    "cannot read template {}; give --template an existing UTF-8 file",
                    path.display()
                )
            })?;
            let name = path.display().to_string();
            env.add_template_owned(name.clone(), source).map_err(|e| {
                anyhow::anyhow!(
                    "template {name} does not parse: {}; fix its syntax (minijinja, Jinja2-like)",
                    describe_error(&e)
                )
            })?;
            (name, "your template")
        }
        None => (template.name().to_string(), "the built-in template"),
    };
    let tmpl = env.get_template(&name).expect("template was added");
    tmpl.render(value).map_err(|e| {
        anyhow::anyhow!(
            "rendering {what} {name} failed: {}; the template context is documented on cargo_containerize::render::TemplateContext",
            describe_error(&e)
        )
    })
}

/// The project and image spec, with `--platform` laid over the metadata's `platforms`. With
/// neither, every supported platform rather than the host's: generated files describe release
/// builds, which serve every platform (and must not depend on the machine that rendered them).
pub fn load(
    cargo: &CargoArgs,
    platforms: &[String],
    shell: &Shell,
) -> Result<(Project, ImageSpec)> {
    let mut project = metadata::load(cargo, true, shell)?;
    let platforms = if platforms.is_empty() && project.settings.platforms.is_none() {
        crate::platform::Platform::ALL
            .iter()
            .map(|p| p.to_string())
            .collect()
    } else {
        platforms.to_vec()
    };
    let overrides = Settings {
        platforms: (!platforms.is_empty()).then_some(platforms),
        ..Settings::default()
    };
    project.settings = project.settings.clone().merge(overrides);
    let git = git::inspect(&project.package_root, shell);
    let spec = ImageSpec::resolve(&project, &git)?;
    Ok((project, spec))
}

/// A file to write, checked before anything is written.
#[derive(Debug)]
pub struct Planned {
    pub path: PathBuf,
    pub text: String,
    /// The file exists with exactly this text.
    pub unchanged: bool,
}

/// Checks that `path` may receive `text`: a new file, the same text, or `--force`.
pub fn plan(path: &Path, text: String, force: bool) -> Result<Planned> {
    if path.is_dir() {
        bail!(
            "{} is a directory; give -o a file name, e.g. {}/Dockerfile",
            path.display(),
            path.display()
        );
    }
    let unchanged = match std::fs::read(path) {
        Ok(old) => {
            if old == text.as_bytes() {
                true
            } else if !force {
                bail!(
                    "{} exists and differs from the generated text; pass --force to overwrite it",
                    path.display()
                );
            } else {
                false
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => bail!(
            "cannot read {} ({e}); check its permissions",
            path.display()
        ),
    };
    if !unchanged {
        atomic::check_writable(path, false, "output")?;
    }
    Ok(Planned {
        path: path.to_path_buf(),
        text,
        unchanged,
    })
}

/// Writes `text` to `path`, all or nothing, keeping the mode of the file it replaces (a new
/// file is 0644, not the 0600 of the temporary file it starts as).
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    atomic::write_file(path, |w| {
        w.write_all(text.as_bytes())?;
        w.get_ref()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
        Ok(())
    })
}

/// Writes a planned file (all or nothing) and says so on stderr.
pub fn commit(p: &Planned, shell: &Shell) -> Result<()> {
    if !p.unchanged {
        write_text(&p.path, &p.text)?;
    }
    shell.status(
        if p.unchanged { "Unchanged" } else { "Wrote" },
        p.path.display().to_string(),
    );
    Ok(())
}

/// `path` as the build context (the workspace root) sees it: relative when inside it.
fn context_path(path: &Path, workspace_root: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // Resolve the deepest directory that exists (the file and its new parents may not yet).
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => break,
        }
    }
    let (Ok(base), Ok(ws)) = (existing.canonicalize(), workspace_root.canonicalize()) else {
        return abs.display().to_string();
    };
    let full = rest.iter().rev().fold(base, |p, n| p.join(n));
    match full.strip_prefix(&ws) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => abs.display().to_string(),
    }
}

/// `cargo containerize <command> …` with the options that shaped the file, to render it again
/// from the workspace root.
fn regenerate_command(
    command: &str,
    cargo: &CargoArgs,
    platforms: &[String],
    extra: &[&str],
    output: &str,
) -> String {
    let mut words: Vec<String> = vec!["cargo".into(), "containerize".into(), command.into()];
    if let Some(p) = &cargo.package {
        words.extend(["-p".into(), p.clone()]);
    }
    if let Some(b) = &cargo.bin {
        words.extend(["--bin".into(), b.clone()]);
    }
    if cargo.profile.as_str() != "release" {
        words.extend(["--profile".into(), cargo.profile.to_string()]);
    }
    let features = cargo.feature_flags();
    words.extend(features);
    if !platforms.is_empty() {
        words.extend(["--platform".into(), platforms.join(",")]);
    }
    words.extend(extra.iter().map(|s| s.to_string()));
    words.extend(["-o".into(), output.into(), "--force".into()]);
    words
        .into_iter()
        .map(filter_sh)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The Dockerfile's text and everything it needs written beside it.
pub struct DockerfileFiles {
    pub dockerfile: Planned,
    pub dockerignore: Option<Planned>,
    /// Absolute path of the root-files directory.
    pub rootfs_dir: PathBuf,
    /// The root files to write there, checked against what is there (see [`rootfs::plan`]).
    pub rootfs: rootfs::Planned,
}

/// Renders and checks (writes nothing) a Dockerfile for `project`; `output` is where it will
/// go (stdout when none).
#[allow(clippy::too_many_arguments)]
pub fn plan_dockerfile(
    project: &Project,
    spec: &ImageSpec,
    cargo: &CargoArgs,
    platforms: &[String],
    output: Option<&Path>,
    template: Option<&Path>,
    dockerignore: bool,
    force: bool,
    syntax_line: bool,
) -> Result<DockerfileFiles> {
    let ws = &project.workspace_root;
    let dockerfile = output.map_or_else(|| "Dockerfile".into(), |o| context_path(o, ws));
    let extra: &[&str] = if syntax_line {
        &[]
    } else {
        &["--no-syntax-line"]
    };
    let options = RenderOptions {
        split_platforms: false,
        regenerate: regenerate_command("dockerfile", cargo, platforms, extra, &dockerfile),
        dockerfile,
        tool: tool_source::ToolSource::default().context(true),
        syntax_line,
    };
    let ctx = TemplateContext::new(project, spec, cargo, options)?;
    let text = render(Template::Dockerfile, template, &ctx)?;
    let dockerfile = match output {
        Some(path) => plan(path, text, force)?,
        None => Planned {
            path: PathBuf::from("-"),
            text,
            unchanged: false,
        },
    };
    let dockerignore = if dockerignore {
        let text = render(Template::DockerIgnore, None, &ctx)?;
        Some(plan(&ws.join(".dockerignore"), text, force)?)
    } else {
        None
    };
    let rootfs_dir = ws.join(&ctx.rootfs.dir);
    let rootfs = rootfs::plan(spec, ws, &rootfs_dir, force)?;
    Ok(DockerfileFiles {
        dockerfile,
        dockerignore,
        rootfs_dir,
        rootfs,
    })
}

/// Writes the root files, then the Dockerfile (or prints it) and .dockerignore.
pub fn write_dockerfile(files: &DockerfileFiles, shell: &Shell) -> Result<()> {
    let changed = rootfs::write(&files.rootfs)?;
    shell.status(
        if changed { "Wrote" } else { "Unchanged" },
        format!(
            "{} (the image's root files, which the Dockerfile copies)",
            files.rootfs_dir.display()
        ),
    );
    if files.dockerfile.path == Path::new("-") {
        shell.out_bytes(files.dockerfile.text.as_bytes())?;
    } else {
        commit(&files.dockerfile, shell)?;
    }
    if let Some(d) = &files.dockerignore {
        commit(d, shell)?;
    }
    Ok(())
}

/// The workflow's usual place, context-relative.
pub const WORKFLOW_PATH: &str = ".github/workflows/container.yml";

/// Renders the workflow for `project`; `output` is where it will go (stdout when none).
#[allow(clippy::too_many_arguments)]
pub fn render_workflow(
    project: &Project,
    spec: &ImageSpec,
    cargo: &CargoArgs,
    platforms: &[String],
    split_platforms: bool,
    tool_source: Option<&tool_source::ToolSource>,
    template: Option<&Path>,
    output: Option<&Path>,
) -> Result<String> {
    let path = output.map_or_else(
        || WORKFLOW_PATH.into(),
        |o| context_path(o, &project.workspace_root),
    );
    let mut extra: Vec<String> = Vec::new();
    if split_platforms {
        extra.push("--split-platforms".into());
    }
    if let Some(t) = tool_source {
        extra.extend(["--tool-source".into(), t.to_string()]);
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let tool = match tool_source {
        Some(t) => t.context(false),
        None => tool_source::ToolSource::default().context(true),
    };
    let options = RenderOptions {
        split_platforms,
        dockerfile: "Dockerfile".into(),
        regenerate: regenerate_command("workflow", cargo, platforms, &extra, &path),
        tool,
        syntax_line: true,
    };
    let ctx = TemplateContext::new(project, spec, cargo, options)?;
    render(Template::Workflow, template, &ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(filter_sh("--features".into()), "--features");
        assert_eq!(filter_sh("a,b".into()), "a,b");
        assert_eq!(filter_sh("it's".into()), r"'it'\''s'");
        assert_eq!(filter_sh(String::new()), "''");
    }

    #[test]
    fn dockerfile_strings() {
        assert_eq!(
            filter_dq(r#"a "b" $c \d"#.into()).unwrap(),
            r#""a \"b\" \$c \\d""#
        );
        assert!(filter_dq("a\nb".into()).is_err());
        assert!(filter_env_name("A B".into()).is_err());
    }

    #[test]
    fn json_of_lists() {
        let v = Value::from(vec!["/bin/x", "a \"b\""]);
        assert_eq!(filter_json(v).unwrap(), r#"["/bin/x","a \"b\""]"#);
    }

    #[test]
    fn builtin_templates_parse() {
        let env = environment();
        for t in [
            Template::Dockerfile,
            Template::Workflow,
            Template::DockerIgnore,
        ] {
            env.get_template(t.name()).unwrap();
        }
    }
}
