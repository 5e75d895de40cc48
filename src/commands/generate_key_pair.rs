//! `cargo containerize generate-key-pair`: a signing key pair in cosign's format, as `cosign
//! generate-key-pair` writes it: PREFIX.key (the private key, encrypted with the password
//! from COSIGN_PASSWORD or the terminal) and PREFIX.pub. Existing files are never replaced.

use crate::sign::key::{self, SigningKey};
use crate::util::shell::Shell;
use anyhow::{Result, bail};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Clone, Args)]
pub struct GenerateKeyPairArgs {
    /// Write PREFIX.key and PREFIX.pub (cosign's flag)
    #[arg(long, value_name = "PREFIX", default_value = "cosign")]
    pub output_key_prefix: PathBuf,
}

/// `PREFIX` + `extension`.
fn with_suffix(prefix: &Path, extension: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(extension);
    PathBuf::from(name)
}

pub fn exec(args: &GenerateKeyPairArgs, shell: &Shell) -> Result<ExitCode> {
    let private = with_suffix(&args.output_key_prefix, ".key");
    let public = with_suffix(&args.output_key_prefix, ".pub");
    for path in [&private, &public] {
        if path.symlink_metadata().is_ok() {
            bail!(
                "{} exists; a key is never replaced: move it away, or give another --output-key-prefix",
                path.display()
            );
        }
    }
    let password = key::new_password(&private)?;
    let key = SigningKey::generate()?;
    let sealed = key.to_encrypted_pem(password.as_bytes())?;
    let public_pem = key.public().to_pem()?;
    // Written whole (a temp file beside it, renamed into place); the key readable by its owner
    // only, set before a byte of it is written.
    crate::util::atomic::write_file(&private, |w| {
        use std::os::unix::fs::PermissionsExt;
        w.get_ref()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(w.write_all(sealed.as_bytes())?)
    })?;
    crate::util::atomic::write_file(&public, |w| Ok(w.write_all(public_pem.as_bytes())?))?;
    shell.status(
        "Wrote",
        format!(
            "{} (private, encrypted) and {} (public, {})",
            private.display(),
            public.display(),
            key.public().fingerprint()
        ),
    );
    Ok(ExitCode::SUCCESS)
}
