//! `cargo containerize doctor`: the checks a build makes before compiling, without building.

use crate::metadata::CargoArgs;
use crate::util::shell::Shell;
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub cargo: CargoArgs,
    /// Target platforms, comma separated [default: the `platforms` setting, else the host's]
    #[arg(long, value_name = "PLATFORMS", value_delimiter = ',')]
    pub platform: Vec<String>,
}

/// `cargo containerize doctor`.
pub fn exec(args: &DoctorArgs, shell: &Shell) -> Result<ExitCode> {
    crate::doctor::run(&args.cargo, &args.platform, shell)
}
