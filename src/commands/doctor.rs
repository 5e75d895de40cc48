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
    /// Allow plain HTTP to this registry when checking a base image (loopback registries
    /// always may), as `build` does
    #[arg(long, value_name = "HOST[:PORT]", help_heading = "Registry options")]
    pub insecure_registry: Vec<String>,
    /// Trust this PEM CA certificate for registry TLS when checking a base image (verification
    /// stays on), as `build` does
    #[arg(long, value_name = "FILE", help_heading = "Registry options")]
    pub registry_ca: Option<std::path::PathBuf>,
}

/// `cargo containerize doctor`.
pub fn exec(args: &DoctorArgs, shell: &Shell) -> Result<ExitCode> {
    let registry = crate::registry::RegistryOptions {
        insecure: args.insecure_registry.clone(),
        ca_file: args.registry_ca.clone(),
        ..Default::default()
    };
    crate::doctor::run(&args.cargo, &args.platform, &registry, shell)
}
