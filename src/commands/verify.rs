//! `cargo containerize verify FILE…`: whether each binary is static, and for which platform.

use crate::platform::Platform;
use crate::util::shell::Shell;
use crate::verify;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Files to check
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Also require this platform's machine (e.g. linux/arm64)
    #[arg(long)]
    pub platform: Option<String>,
}

pub fn exec(args: &VerifyArgs, shell: &Shell) -> Result<ExitCode> {
    let want = args.platform.as_deref().map(Platform::parse).transpose()?;
    let mut all_ok = true;
    for f in &args.files {
        match verify::inspect(f) {
            Ok(report) => {
                let wrong_arch = want.is_some_and(|p| report.platform != Some(p));
                all_ok &= report.is_static() && !wrong_arch;
                if wrong_arch {
                    shell.out_line(format!(
                        "{report}; wrong platform, want {}",
                        want.map(|p| p.to_string()).unwrap_or_default()
                    ));
                } else {
                    shell.out_line(report.to_string());
                }
                if let Some(note) = report.allocator_note() {
                    shell.status("Note", note);
                }
            }
            Err(e) => {
                all_ok = false;
                shell.error(crate::error_line(&e));
            }
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
