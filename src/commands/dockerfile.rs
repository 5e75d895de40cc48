//! `cargo containerize dockerfile`: a Dockerfile that builds the same image with docker or
//! podman.

use super::RenderArgs;
use crate::metadata::CargoArgs;
use crate::render;
use crate::util::shell::Shell;
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Clone, Args)]
pub struct DockerfileArgs {
    #[command(flatten)]
    pub cargo: CargoArgs,
    #[command(flatten)]
    pub render: RenderArgs,
    /// Also write .dockerignore at the workspace root, the build context
    #[arg(long)]
    pub dockerignore: bool,
    /// Leave out the `# syntax=docker/dockerfile:1` line, so BuildKit uses its built-in
    /// frontend instead of pulling the newest one (for machines that cannot pull)
    #[arg(long)]
    pub no_syntax_line: bool,
}

/// `cargo containerize dockerfile`.
pub fn exec(args: &DockerfileArgs, shell: &Shell) -> Result<ExitCode> {
    let r = &args.render;
    let (project, spec) = render::load(&args.cargo, &r.platform, shell)?;
    let files = render::plan_dockerfile(
        &project,
        &spec,
        &args.cargo,
        &r.platform,
        r.output.as_deref(),
        r.template.as_deref(),
        args.dockerignore,
        r.force,
        !args.no_syntax_line,
    )?;
    render::write_dockerfile(&files, shell)?;
    Ok(ExitCode::SUCCESS)
}
