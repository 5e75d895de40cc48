//! `cargo containerize init`: a commented `[package.metadata.containerize]` in Cargo.toml, and
//! the generated files asked for.

use crate::init::InitOptions;
use crate::metadata::CargoArgs;
use crate::util::shell::Shell;
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub cargo: CargoArgs,
    /// Also write a Dockerfile in the package and .dockerignore at the workspace root
    #[arg(long)]
    pub dockerfile: bool,
    /// Also write the release workflow .github/workflows/container.yml at the workspace root
    #[arg(long)]
    pub workflow: bool,
    /// With --workflow: one job per platform on its own runner, merged into one index
    #[arg(long)]
    pub split_platforms: bool,
    /// Platforms the generated files build, comma separated [default: the metadata's, else linux/amd64,linux/arm64]
    #[arg(long, value_name = "PLATFORMS", value_delimiter = ',')]
    pub platform: Vec<String>,
    /// Overwrite generated files that exist with other contents
    #[arg(long)]
    pub force: bool,
}

/// `cargo containerize init`.
pub fn exec(args: &InitArgs, shell: &Shell) -> Result<ExitCode> {
    let options = InitOptions {
        cargo: args.cargo.clone(),
        dockerfile: args.dockerfile,
        workflow: args.workflow,
        split_platforms: args.split_platforms,
        platform: args.platform.clone(),
        force: args.force,
    };
    crate::init::run(&options, shell)
}
