//! `cargo containerize [build]`, the default command: the image, built from the flags.

use crate::metadata::settings::SettingsFlags;

use crate::metadata::{CargoArgs, Settings};
use crate::outputs::OutputSpec;
use crate::outputs::load::LoadEngine;
use crate::pipeline::{self, BuildRequest};
use crate::platform::Platform;
use crate::registry::RegistryOptions;
use crate::registry::auth::{Credential, Secret};
use crate::util::shell::Shell;
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum MessageFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, Args, Default)]
pub struct BuildArgs {
    #[command(flatten)]
    pub cargo: CargoArgs,

    /// Where to write the image: oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:REF]
    /// (repeatable) [default: oci:<target-dir>/containerize/<bin>:<version>]
    #[arg(short = 'o', long = "output", value_name = "TRANSPORT", value_parser = crate::outputs::OutputSpec::parse_arg)]
    pub outputs: Vec<OutputSpec>,
    /// Package this prebuilt binary instead of building (it is still verified)
    #[arg(long, value_name = "FILE")]
    pub binary: Option<PathBuf>,
    /// Run `rustup target add` when the musl target is missing
    #[arg(long)]
    pub install_target: bool,
    /// Output format on stdout
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    pub message_format: MessageFormat,

    #[command(flatten)]
    pub settings: SettingsFlags,
    /// Also write the SBOMs to this directory: <bin>-<arch>.spdx.json, <bin>-<arch>.cdx.json
    #[arg(long, value_name = "DIR", help_heading = "Image options")]
    pub sbom_dir: Option<PathBuf>,
    /// Also write the image on `debug-from` (a base with a shell), tagged <tag>-debug
    #[arg(long, help_heading = "Image options")]
    pub debug: bool,

    /// Push the image to every -t reference (or `repository` with `tags` from the metadata)
    #[arg(long, help_heading = "Registry options")]
    pub push: bool,
    /// Image reference, e.g. ghcr.io/owner/app:{version} (repeatable; placeholders {version},
    /// {git_sha}, {git_short_sha}, {bin})
    #[arg(
        short = 't',
        long = "tag",
        value_name = "REF",
        help_heading = "Registry options"
    )]
    pub tags: Vec<String>,
    /// Allow plain HTTP to this registry (loopback registries always may)
    #[arg(long, value_name = "HOST[:PORT]", help_heading = "Registry options")]
    pub insecure_registry: Vec<String>,
    /// Trust this PEM CA certificate for registry TLS (verification stays on)
    #[arg(long, value_name = "FILE", help_heading = "Registry options")]
    pub registry_ca: Option<PathBuf>,
    /// Registry user name (with --password-stdin)
    #[arg(long, requires = "password_stdin", help_heading = "Registry options")]
    pub username: Option<String>,
    /// Read the registry password or token from standard input
    #[arg(long, requires = "username", help_heading = "Registry options")]
    pub password_stdin: bool,
    /// Retries of a failed registry request, after its first try
    #[arg(long, value_name = "N", default_value_t = crate::registry::DEFAULT_RETRIES, value_parser = clap::value_parser!(u32).range(0..=100), help_heading = "Registry options")]
    pub retries: u32,
    /// Blobs uploaded at once (`--jobs` is an old name for it)
    #[arg(long, alias = "jobs", value_name = "N", default_value_t = crate::registry::DEFAULT_UPLOAD_JOBS as u64, value_parser = clap::value_parser!(u64).range(1..=64), help_heading = "Registry options")]
    pub upload_jobs: u64,
    /// Seconds to wait for a registry, token service or credential helper to answer
    #[arg(long, value_name = "SECONDS", env = "CARGO_CONTAINERIZE_REGISTRY_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600), help_heading = "Registry options")]
    pub registry_timeout: u64,
    /// Load the image into docker or podman (whichever is found, unless named)
    #[arg(long, value_name = "ENGINE", value_enum, num_args = 0..=1, default_missing_value = "auto", help_heading = "Registry options")]
    pub load: Option<LoadEngine>,
    /// With several platforms: the one --load and docker-archive outputs take
    #[arg(long, value_name = "PLATFORM", help_heading = "Registry options")]
    pub load_platform: Option<String>,
}

impl BuildArgs {
    /// The settings given on the command line; they win over Cargo.toml's.
    pub fn settings(&self) -> Result<Settings> {
        self.settings.settings()
    }
}

/// A build; with `--message-format json`, a failure also prints one JSON object on stdout, so
/// a program reading stdout always gets an answer (the error line still ends stderr): the
/// report of what was written, with `"success":false` and `error`, when part was written (an
/// image pushed without its referrers), else `{"success":false,"error":"<the error line>"}`.
pub fn exec(args: BuildArgs, shell: &Shell) -> Result<ExitCode> {
    let json = args.message_format == MessageFormat::Json;
    build(args, shell).inspect_err(|e| {
        if !json {
            return;
        }
        let partial = e
            .downcast_ref::<pipeline::Incomplete>()
            .and_then(|incomplete| serde_json::to_value(&incomplete.report).ok());
        let object = match partial {
            Some(serde_json::Value::Object(mut report)) => {
                report.insert("success".into(), false.into());
                serde_json::Value::Object(report)
            }
            _ => serde_json::json!({ "success": false, "error": crate::error_line(e) }),
        };
        shell.out_line(object.to_string());
    })
}

fn build(args: BuildArgs, shell: &Shell) -> Result<ExitCode> {
    if !args.tags.is_empty() && !args.push && args.load.is_none() {
        bail!(
            "-t {} names an image to push or load, but neither --push nor --load was given; add --push (or --load), or drop -t",
            args.tags[0]
        );
    }
    let credential = if args.password_stdin {
        let mut password = String::new();
        std::io::stdin()
            .read_line(&mut password)
            .context("reading the password from standard input")?;
        let password = password.trim_end_matches(['\n', '\r']);
        if password.is_empty() {
            bail!(
                "--password-stdin read an empty password; pipe the password or token in, e.g. `echo $TOKEN | cargo containerize --password-stdin …`"
            );
        }
        Some(Credential::Basic {
            username: args.username.clone().unwrap_or_default(),
            password: Secret::new(password),
        })
    } else {
        None
    };
    let request = BuildRequest {
        overrides: args.settings()?,
        cargo: args.cargo.clone().absolutized()?,
        outputs: args.outputs.clone(),
        binary: args.binary.clone(),
        install_target: args.install_target,
        tags: args.tags.clone(),
        push: args.push,
        load: args.load,
        load_platform: args
            .load_platform
            .as_deref()
            .map(Platform::parse)
            .transpose()?,
        registry: RegistryOptions {
            insecure: args.insecure_registry.clone(),
            ca_file: args.registry_ca.clone(),
            credential,
            retries: args.retries,
            upload_jobs: args.upload_jobs as usize,
            timeout: std::time::Duration::from_secs(args.registry_timeout),
        },
        sbom_dir: args.sbom_dir.clone(),
        debug: args.debug,
    };
    // A failure after part was written (an image pushed without its referrers) is a
    // `pipeline::Incomplete`, whose report `run_build` prints.
    let report = pipeline::run(&request, shell)?;
    match args.message_format {
        MessageFormat::Json => shell.out_line(serde_json::to_string(&report)?),
        MessageFormat::Human => {
            shell.out_line(&report.digest);
            for line in &report.pushed {
                shell.out_line(line.to_string());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
