//! `cargo containerize verify-signature REF --key cosign.pub`: checks the cosign signatures
//! (and attestations) of an image at a registry with a public key, offline — no
//! transparency log is consulted. Exits 1 naming each manifest whose check failed.

use crate::registry::RegistryOptions;
use crate::registry::auth;
use crate::registry::client::{Access, Client, ManifestRef};
use crate::registry::transport;
use crate::sign::key::PublicKey;
use crate::sign::verify::{self, Checked};
use crate::util::reference::Reference;
use crate::util::shell::Shell;
use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Args)]
pub struct VerifySignatureArgs {
    /// The image: REGISTRY/NAME:TAG or REGISTRY/NAME@sha256:…
    #[arg(value_name = "REF")]
    pub reference: String,
    /// The public key (cosign.pub) the signatures must verify with
    #[arg(long, value_name = "PATH")]
    pub key: PathBuf,
    /// Allow plain HTTP to this registry (loopback registries always may)
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Trust this PEM CA certificate for registry TLS (verification stays on)
    #[arg(long, value_name = "FILE")]
    pub registry_ca: Option<PathBuf>,
    /// Seconds to wait for a registry, token service or credential helper to answer
    #[arg(long, value_name = "SECONDS", env = "CARGO_CONTAINERIZE_REGISTRY_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub registry_timeout: u64,
}

pub fn exec(args: &VerifySignatureArgs, shell: &Shell) -> Result<ExitCode> {
    let key = PublicKey::load(&args.key)?;
    let r = Reference::parse(&args.reference)?;
    let options = RegistryOptions {
        insecure: args.insecure_registry.clone(),
        ca_file: args.registry_ca.clone(),
        timeout: std::time::Duration::from_secs(args.registry_timeout),
        ..RegistryOptions::default()
    };
    let http = transport::http(&options, shell)?;
    let credential = auth::lookup(&r.registry, options.timeout)?;
    let client = Client::connect(
        &http,
        &options,
        &r.registry,
        &r.repository,
        credential,
        &Access::Pull,
        shell,
    )
    .with_context(|| format!("reading from {}/{}", r.registry, r.repository))?;
    let digest: Option<crate::util::digest::Digest> = r
        .digest
        .as_deref()
        .map(|d| d.parse().map_err(anyhow::Error::msg))
        .transpose()?;
    let reference = match (&digest, &r.tag) {
        (Some(d), _) => ManifestRef::Digest(d),
        (None, Some(t)) => ManifestRef::Tag(t),
        (None, None) => ManifestRef::Tag("latest"),
    };
    let checked = verify::verify(&client, reference, &key)?;
    let name = format!("{}/{}", r.registry, r.repository);
    report(&checked, &name, &key, shell)
}

/// One line per manifest on stdout; the failures as the error.
fn report(checked: &[Checked], name: &str, key: &PublicKey, shell: &Shell) -> Result<ExitCode> {
    let mut failed = Vec::new();
    for c in checked {
        let attested = if c.attested.is_empty() {
            String::new()
        } else {
            format!("; attestations verified: {}", c.attested.join(", "))
        };
        match &c.signature {
            Ok(n) => shell.out_line(format!(
                "{name}@{} ({}): {n} signature{} verified{attested}",
                c.digest,
                c.what,
                if *n == 1 { "" } else { "s" }
            )),
            Err(why) => failed.push(format!("{} ({}): {why}", c.digest.short(), c.what)),
        }
        for why in &c.rejected {
            let line = format!("{} ({}): {why}", c.digest.short(), c.what);
            if c.attested.is_empty() {
                failed.push(line);
            } else {
                shell.warn(format!("an attestation beside the verified ones: {line}"));
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "{name}: {} of {} manifests failed verification with the key {}: {}",
            checked.iter().filter(|c| !c.ok()).count(),
            checked.len(),
            key.fingerprint(),
            failed.join("; ")
        );
    }
    shell.status(
        "Verified",
        format!(
            "{name}: every manifest is signed with the key {}",
            key.fingerprint()
        ),
    );
    Ok(ExitCode::SUCCESS)
}
