//! `cargo containerize workflow`: a GitHub Actions workflow that pushes the image on every v*
//! tag.

use super::RenderArgs;
use crate::metadata::CargoArgs;
use crate::render;
use crate::util::shell::Shell;
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Clone, Args)]
pub struct WorkflowArgs {
    #[command(flatten)]
    pub cargo: CargoArgs,
    #[command(flatten)]
    pub render: RenderArgs,
    /// One job per platform on its own runner, and a final job merging them into one index
    #[arg(long)]
    pub split_platforms: bool,
    /// Where the workflow installs cargo-containerize from, pinned: crates.io:NAME@X.Y.Z, or
    /// git:https://HOST/PATH#<full commit hash> [default: crates.io:<this package>@<this version>]
    #[arg(long, value_name = "SOURCE", value_parser = render::tool_source::ToolSourceParser)]
    pub tool_source: Option<render::tool_source::ToolSource>,
}

/// `cargo containerize workflow`.
pub fn exec(args: &WorkflowArgs, shell: &Shell) -> Result<ExitCode> {
    let r = &args.render;
    let (project, spec) = render::load(&args.cargo, &r.platform, shell)?;
    let text = render::render_workflow(
        &project,
        &spec,
        &args.cargo,
        &r.platform,
        args.split_platforms,
        args.tool_source.as_ref(),
        r.template.as_deref(),
        r.output.as_deref(),
    )?;
    match &r.output {
        Some(path) => {
            let planned = render::plan(path, text, r.force)?;
            render::commit(&planned, shell)?;
        }
        None => {
            shell.out_bytes(text.as_bytes())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
