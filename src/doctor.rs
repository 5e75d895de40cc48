//! `cargo containerize doctor`: the checks a build makes before compiling, without building.
//! For each platform: the musl target, the C compiler, and the preflight's verdict on every
//! crate that links C code. Exits 1 when a build would stop on one of them.

use crate::build;
use crate::build::preflight::{self, Verdict};
use crate::metadata::{self, CargoArgs, ImageSpec, Settings};
use crate::platform::Platform;
use crate::util::shell::Shell;
use anyhow::Result;
use std::process::ExitCode;

/// The report for `cargo` (the cargo flags) and `platforms` (none: the settings' own); a
/// base image on a registry is asked for with `registry`'s TLS and plain-HTTP settings.
pub fn run(
    cargo: &CargoArgs,
    platforms: &[String],
    registry: &crate::registry::RegistryOptions,
    shell: &Shell,
) -> Result<ExitCode> {
    let cargo = cargo.clone().absolutized()?;
    let mut project = metadata::load(&cargo, true, shell)?;
    if !platforms.is_empty() {
        project.settings = project.settings.clone().merge(Settings {
            platforms: Some(platforms.to_vec()),
            ..Settings::default()
        });
    }
    let spec = ImageSpec::resolve(&project, &Default::default())?;
    let mut problems = 0;
    shell.out_line(format!(
        "package {} {} (bin {})",
        project.package.name, project.package.version, project.bin
    ));
    for (key, from) in [
        ("from", Some(&spec.layers.from)),
        ("debug-from", spec.layers.debug_from.as_ref()),
    ] {
        let Some(from) = from else { continue };
        match crate::image::base::check(from, &project.package_root, registry, shell) {
            Ok(said) => shell.out_line(format!("{key:<13} {said}")),
            Err(e) => {
                problems += 1;
                shell.out_line(format!(
                    "{key:<13} {from} DOES NOT RESOLVE: {}",
                    crate::error_line(&e)
                ));
            }
        }
    }
    for &platform in &spec.build.platforms {
        problems += platform_report(&project, platform, shell)?;
    }
    if problems == 0 {
        shell.out_line("ok: nothing stops a build");
        Ok(ExitCode::SUCCESS)
    } else {
        shell.out_line(format!(
            "{problems} problem(s) would stop a build; each line above names its fix"
        ));
        Ok(ExitCode::from(1))
    }
}

fn platform_report(
    project: &metadata::Project,
    platform: Platform,
    shell: &Shell,
) -> Result<usize> {
    let triple = platform.musl_triple();
    let mut problems = 0;
    shell.out_line(format!("{platform} ({triple})"));
    let tc = build::toolchain(project, platform, shell)?;
    if tc.target_installed {
        shell.out_line("  rust target   installed");
    } else {
        problems += 1;
        shell.out_line(format!(
            "  rust target   MISSING: run `rustup target add {triple}` (or build with --install-target)"
        ));
    }
    match &tc.c_compiler {
        Ok(cc) => shell.out_line(format!("  C compiler    {cc}")),
        Err(e) => {
            problems += 1;
            shell.out_line(format!("  C compiler    MISSING: {e}"));
        }
    }
    let report = preflight::run(project, triple, shell);
    if report.findings.is_empty() {
        shell.out_line("  C libraries   none");
    }
    for f in &report.findings {
        let what = match &f.verdict {
            Verdict::Source(how) => format!("built from source: {how}"),
            Verdict::Tool(how) => format!("handled by the tool: {how}"),
            Verdict::User(how) => format!("yours: {how}"),
            Verdict::Refused(why) => {
                problems += 1;
                format!("REFUSED: {why}")
            }
            Verdict::Unknown => "unknown to the tool: the build will tell".to_string(),
        };
        shell.out_line(format!("  {} {}  {what}", f.name, f.version));
    }
    Ok(problems)
}
