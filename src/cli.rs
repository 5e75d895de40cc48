//! The command line: `cargo containerize [build]`, `verify`.

use crate::commands::{Command, build::BuildArgs};
use crate::util::shell::{ColorChoice, Shell, Verbosity};
use anyhow::Result;
use clap::{Args, Parser};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "cargo-containerize",
    bin_name = "cargo containerize",
    version,
    about = "Build a minimal OCI image of a crate's binary: static musl build, verified, on scratch, no daemon",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub build: BuildArgs,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// What every subcommand takes: how much the shell says and whether in colour.
#[derive(Debug, Clone, Args, Default)]
pub struct GlobalArgs {
    /// Print nothing on stderr but warnings and errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also show the cargo command line, layer cache hits and misses, and registry requests
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Colour on stderr: auto, always or never [default: CARGO_TERM_COLOR, else auto]
    #[arg(long, value_name = "WHEN", value_enum, global = true)]
    pub color: Option<ColorChoice>,
}

impl GlobalArgs {
    /// The run's shell, on the process's stdout and stderr.
    pub fn shell(&self) -> Shell {
        Shell::new(
            Verbosity::of_flags(self.quiet, self.verbose),
            ColorChoice::resolve(self.color),
        )
    }
}

/// Runs the command line's subcommand (the build when none is named).
pub fn run(cli: Cli, shell: &Shell) -> Result<ExitCode> {
    match cli.command {
        Some(command) => command.exec(shell),
        None => crate::commands::build::exec(cli.build, shell),
    }
}
