//! The subcommands, one file each (cargo's `src/bin/cargo/commands/` is the model): each
//! holds its clap arguments and `exec`, the glue from the command line to the stages, which do
//! the work. This sits at the top with [`crate::cli`]: it may import any stage; no stage
//! imports it.

pub mod build;
pub mod dockerfile;
pub mod doctor;
pub mod generate_key_pair;
pub mod init;
pub mod sbom;
pub mod verify;
pub mod verify_signature;
pub mod workflow;

use crate::util::shell::Shell;
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the image (the default)
    Build(Box<build::BuildArgs>),
    /// Report whether binaries are static and for which platform; exit 1 if one is not static
    Verify(verify::VerifyArgs),
    /// Write a Dockerfile that builds the same image with docker or podman
    Dockerfile(Box<dockerfile::DockerfileArgs>),
    /// Write a GitHub Actions workflow that pushes the image on every v* tag
    Workflow(Box<workflow::WorkflowArgs>),
    /// Add a commented [package.metadata.containerize] to Cargo.toml (and the generated files)
    Init(Box<init::InitArgs>),
    /// Check without building: targets, C compiler, what happens to each C dependency
    Doctor(Box<doctor::DoctorArgs>),
    /// Print the SBOM of the crate's binary (SPDX 2.3 or CycloneDX 1.6 JSON) without building
    Sbom(Box<sbom::SbomArgs>),
    /// Write a signing key pair in cosign's format: cosign.key (encrypted) and cosign.pub
    GenerateKeyPair(generate_key_pair::GenerateKeyPairArgs),
    /// Check an image's cosign signatures and attestations at its registry with a public key
    VerifySignature(Box<verify_signature::VerifySignatureArgs>),
}

impl Command {
    /// Runs the subcommand.
    pub fn exec(self, shell: &Shell) -> Result<ExitCode> {
        match self {
            Command::Build(args) => build::exec(*args, shell),
            Command::Verify(args) => verify::exec(&args, shell),
            Command::Dockerfile(args) => dockerfile::exec(&args, shell),
            Command::Workflow(args) => workflow::exec(&args, shell),
            Command::Init(args) => init::exec(&args, shell),
            Command::Doctor(args) => doctor::exec(&args, shell),
            Command::Sbom(args) => sbom::exec(&args, shell),
            Command::GenerateKeyPair(args) => generate_key_pair::exec(&args, shell),
            Command::VerifySignature(args) => verify_signature::exec(&args, shell),
        }
    }
}

/// Command-line options every rendering command takes.
#[derive(Debug, Clone, Args)]
pub struct RenderArgs {
    /// Write to FILE instead of stdout
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Overwrite FILE (and the files written beside it) when it exists with other contents
    #[arg(long)]
    pub force: bool,
    /// Render this minijinja template instead of the built-in one, with the same context
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// Platforms to build, comma separated [default: the metadata's, else linux/amd64,linux/arm64]
    #[arg(long, value_name = "PLATFORMS", value_delimiter = ',')]
    pub platform: Vec<String>,
}
