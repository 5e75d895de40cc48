//! `cargo containerize sbom`: the crate's SBOM on stdout, without building.

use crate::metadata::CargoArgs;
use crate::metadata::values::SbomFormat;
use crate::platform::Platform;
use crate::util::shell::Shell;
use anyhow::{Context, Result};
use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Clone, Args)]
pub struct SbomArgs {
    #[command(flatten)]
    pub cargo: CargoArgs,
    /// Document format
    #[arg(long, value_name = "FORMAT", default_value = "spdx", value_parser = parse_sbom_format)]
    pub format: SbomFormat,
    /// The platform whose dependency graph to describe [default: the image's first platform]
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    pub platform: Option<Platform>,
}

fn parse_sbom_format(s: &str) -> std::result::Result<SbomFormat, String> {
    s.trim().parse()
}

fn parse_platform(s: &str) -> std::result::Result<Platform, String> {
    Platform::parse(s).map_err(|e| e.to_string())
}

/// `cargo containerize sbom`: metadata and the dependency graph only; nothing is built.
pub fn exec(args: &SbomArgs, shell: &Shell) -> Result<ExitCode> {
    let project = crate::metadata::load(&args.cargo.clone().absolutized()?, true, shell)?;
    let git = crate::metadata::git::inspect(&project.package_root, shell);
    let mut spec = crate::metadata::ImageSpec::resolve(&project, &git)?;
    spec.apply_git(&git, &project.settings);
    let bytes = crate::attest::sbom::of_crate(&project, &spec, args.platform, args.format)?;
    shell
        .out_bytes(&bytes)
        .context("writing the SBOM to standard output")?;
    Ok(ExitCode::SUCCESS)
}
