//! The command line: `cargo containerize [build]`, `verify`.

use crate::metadata::settings::SettingsFlags;
use crate::metadata::values::SbomFormat;
use crate::metadata::{CargoArgs, Settings};
use crate::outputs::OutputSpec;
use crate::outputs::load::LoadEngine;
use crate::outputs::registry::RegistryOptions;
use crate::outputs::registry::auth::{Credential, Secret};
use crate::pipeline::{self, BuildRequest};
use crate::platform::Platform;
use crate::verify;
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
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
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the image (the default)
    Build(Box<BuildArgs>),
    /// Report whether binaries are static and for which platform; exit 1 if one is not static
    Verify(VerifyArgs),
    /// Write a Dockerfile that builds the same image with docker or podman
    Dockerfile(Box<crate::render::DockerfileArgs>),
    /// Write a GitHub Actions workflow that pushes the image on every v* tag
    Workflow(Box<crate::render::WorkflowArgs>),
    /// Add a commented [package.metadata.containerize] to Cargo.toml (and the generated files)
    Init(Box<crate::init::InitArgs>),
    /// Check without building: targets, C compiler, what happens to each C dependency
    Doctor(Box<crate::doctor::DoctorArgs>),
    /// Print the SBOM of the crate's binary (SPDX 2.3 or CycloneDX 1.6 JSON) without building
    Sbom(Box<SbomArgs>),
}

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
    /// Print nothing on stderr but errors
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also show the cargo command line, layer cache hits and misses, and registry requests
    #[arg(short, long)]
    pub verbose: bool,

    #[command(flatten)]
    pub settings: SettingsFlags,
    /// Also write the SBOMs to this directory: <bin>-<arch>.spdx.json, <bin>-<arch>.cdx.json
    #[arg(long, value_name = "DIR", help_heading = "Image options")]
    pub sbom_dir: Option<PathBuf>,

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
    #[arg(long, value_name = "N", default_value_t = crate::outputs::registry::DEFAULT_RETRIES, value_parser = clap::value_parser!(u32).range(0..=100), help_heading = "Registry options")]
    pub retries: u32,
    /// Blobs uploaded at once (`--jobs` is an old name for it)
    #[arg(long, alias = "jobs", value_name = "N", default_value_t = crate::outputs::registry::DEFAULT_UPLOAD_JOBS as u64, value_parser = clap::value_parser!(u64).range(1..=64), help_heading = "Registry options")]
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
    s.parse()
}

fn parse_platform(s: &str) -> std::result::Result<Platform, String> {
    Platform::parse(s).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Files to check
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Also require this platform's machine (e.g. linux/arm64)
    #[arg(long)]
    pub platform: Option<String>,
}

impl BuildArgs {
    /// The settings given on the command line; they win over Cargo.toml's.
    pub fn settings(&self) -> Result<Settings> {
        self.settings.settings()
    }
}

/// The shell's verbosity for a command's `-q`/`-v` (colour from the environment).
fn configure_shell(quiet: bool, verbose: bool) {
    use crate::util::shell::{self, ColorChoice, Verbosity};
    let verbosity = if quiet {
        Verbosity::Quiet
    } else if verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    shell::configure(verbosity, ColorChoice::from_env());
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        // As cargo does, `--message-format json` puts JSON on stdout and keeps the human
        // progress on stderr.
        Some(Command::Build(b)) => configure_shell(b.quiet, b.verbose),
        Some(Command::Dockerfile(a)) => configure_shell(a.render.quiet, false),
        Some(Command::Workflow(a)) => configure_shell(a.render.quiet, false),
        Some(Command::Init(a)) => configure_shell(a.quiet, false),
        Some(Command::Verify(_)) | Some(Command::Doctor(_)) | Some(Command::Sbom(_)) => {
            configure_shell(false, false)
        }
        None => configure_shell(cli.build.quiet, cli.build.verbose),
    }
    match cli.command {
        Some(Command::Verify(v)) => run_verify(&v),
        Some(Command::Dockerfile(a)) => crate::render::run_dockerfile(&a),
        Some(Command::Workflow(a)) => crate::render::run_workflow(&a),
        Some(Command::Init(a)) => crate::init::run(&a),
        Some(Command::Doctor(a)) => crate::doctor::run(&a),
        Some(Command::Sbom(a)) => run_sbom(&a),
        Some(Command::Build(b)) => run_build(*b),
        None => run_build(cli.build),
    }
}

/// A build; with `--message-format json`, a failure also prints one JSON object on stdout, so
/// a program reading stdout always gets an answer (the error line still ends stderr): the
/// report of what was written, with `"success":false` and `error`, when part was written (an
/// image pushed without its referrers), else `{"success":false,"error":"<the error line>"}`.
fn run_build(args: BuildArgs) -> Result<ExitCode> {
    let json = args.message_format == MessageFormat::Json;
    build(args).inspect_err(|e| {
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
        println!("{object}");
    })
}

fn build(args: BuildArgs) -> Result<ExitCode> {
    let quiet = args.quiet;
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
        quiet,
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
    };
    // A failure after part was written (an image pushed without its referrers) is a
    // `pipeline::Incomplete`, whose report `run_build` prints.
    let report = pipeline::run(&request)?;
    match args.message_format {
        MessageFormat::Json => println!("{}", serde_json::to_string(&report)?),
        MessageFormat::Human => {
            println!("{}", report.digest);
            for line in &report.pushed {
                println!("{line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cargo containerize sbom`: metadata and the dependency graph only; nothing is built.
fn run_sbom(args: &SbomArgs) -> Result<ExitCode> {
    use std::io::Write;
    let project = crate::metadata::load(&args.cargo.clone().absolutized()?, true)?;
    let git = crate::metadata::git::inspect(&project.package_root);
    let mut spec = crate::metadata::ImageSpec::resolve(&project, &git)?;
    spec.apply_git(&git, &project.settings);
    let bytes = crate::attest::sbom::of_crate(&project, &spec, args.platform, args.format)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)
        .and_then(|()| out.flush())
        .context("writing the SBOM to standard output")?;
    Ok(ExitCode::SUCCESS)
}

fn run_verify(args: &VerifyArgs) -> Result<ExitCode> {
    let want = args.platform.as_deref().map(Platform::parse).transpose()?;
    let mut all_ok = true;
    for f in &args.files {
        match verify::inspect(f) {
            Ok(report) => {
                let wrong_arch = want.is_some_and(|p| report.platform != Some(p));
                all_ok &= report.is_static() && !wrong_arch;
                if wrong_arch {
                    println!(
                        "{report}; wrong platform, want {}",
                        want.map(|p| p.to_string()).unwrap_or_default()
                    );
                } else {
                    println!("{report}");
                }
                if let Some(note) = report.allocator_note() {
                    crate::util::shell::status("Note", note);
                }
            }
            Err(e) => {
                all_ok = false;
                crate::util::shell::error(crate::error_line(&e));
            }
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
