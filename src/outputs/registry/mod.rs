//! `--push`: the image to one or more registry references.

pub mod auth;
pub mod client;
pub mod progress;
pub mod push;
pub mod referrers;
pub mod remote;

use super::{Output, Pushed, Written};
use crate::blobs::BlobStore;
use crate::image::Image;
use crate::util::reference::Reference;
use crate::util::shell::Shell;
use anyhow::{Context, Result, bail};
use auth::Credential;
use client::Client;
use std::path::PathBuf;

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Hosts (`host` or `host:port`) that may be reached over plain HTTP.
    pub insecure: Vec<String>,
    /// An extra CA to trust for TLS.
    pub ca_file: Option<PathBuf>,
    /// Credentials from the command line, used for every registry of this run.
    pub credential: Option<Credential>,
    /// Retries per request after its first try (`--retries`).
    pub retries: u32,
    /// Blobs uploaded at once (`--upload-jobs`).
    pub upload_jobs: usize,
    /// The longest wait for a registry, token service or credential helper to answer (for a
    /// connection, the next bytes of an answer, or a helper's reply).
    pub timeout: std::time::Duration,
}

/// `--retries`' default: five tries in all.
pub const DEFAULT_RETRIES: u32 = 4;

/// `--upload-jobs`' default.
pub const DEFAULT_UPLOAD_JOBS: usize = 4;

/// `--registry-timeout`'s default.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: vec![],
            ca_file: None,
            credential: None,
            retries: DEFAULT_RETRIES,
            upload_jobs: DEFAULT_UPLOAD_JOBS,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// One reference to push to.
#[derive(Debug, Clone)]
pub struct Target {
    /// As the user wrote it, for the result line.
    pub given: String,
    pub registry: String,
    pub repository: String,
    /// The tag, or None when the reference names a digest.
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Target {
    pub fn parse(given: &str) -> Result<Target> {
        let r = Reference::parse(given)?;
        Ok(Target {
            given: given.to_string(),
            registry: r.registry,
            repository: r.repository,
            tag: r.tag,
            digest: r.digest,
        })
    }
}

pub struct RegistryOutput {
    pub targets: Vec<Target>,
    pub options: RegistryOptions,
}

impl RegistryOutput {
    pub fn new(refs: &[String], options: RegistryOptions) -> Result<RegistryOutput> {
        if refs.is_empty() {
            bail!(
                "--push needs somewhere to push; give -t REGISTRY/NAME:TAG or set repository in [package.metadata.containerize]"
            );
        }
        if let Some(ca) = &options.ca_file
            && !ca.is_file()
        {
            bail!(
                "--registry-ca {} does not exist; give the path of the registry's PEM CA certificate",
                ca.display()
            );
        }
        let targets: Vec<Target> = refs
            .iter()
            .map(|r| Target::parse(r))
            .collect::<Result<_>>()?;
        if options.credential.is_some() {
            let mut registries: Vec<&str> = targets.iter().map(|t| t.registry.as_str()).collect();
            registries.sort();
            registries.dedup();
            if registries.len() > 1 {
                bail!(
                    "--username/--password-stdin would send one credential to {}; push to one registry per run, or log in to each (docker login) and drop --username",
                    registries.join(" and ")
                );
            }
        }
        Ok(RegistryOutput { targets, options })
    }
}

impl RegistryOutput {
    /// Puts the image's top manifest (or index) under `t` and reads it back.
    fn push_top(
        &self,
        client: &Client,
        t: &Target,
        top: &crate::image::Blob,
        progress: &progress::Progress,
    ) -> Result<Pushed> {
        if let Some(d) = &t.digest
            && d != &top.digest
        {
            bail!(
                "{} names digest {d}, but the image built is {}; push by tag instead",
                t.given,
                top.digest
            );
        }
        let reference = t.tag.clone().unwrap_or_else(|| top.digest.to_string());
        push::put_manifest(client, &reference, &top.bytes, top.media_type, &top.digest)?;
        push::verify_manifest(client, &reference, top.media_type, &top.digest)?;
        let pushed = Pushed {
            reference: t.given.split('@').next().unwrap_or(&t.given).to_string(),
            digest: top.digest.clone(),
        };
        progress.line("Pushed", &pushed.to_string());
        Ok(pushed)
    }
}

impl Output for RegistryOutput {
    fn describe(&self) -> String {
        let refs: Vec<&str> = self.targets.iter().map(|t| t.given.as_str()).collect();
        format!("registry {}", refs.join(", "))
    }

    fn preflight(&self) -> Result<()> {
        Ok(())
    }

    #[allow(clippy::too_many_lines, reason = "older than the lint")]
    fn write(&self, image: &Image, store: &BlobStore, shell: &Shell) -> Result<Written> {
        let http = Client::http(&self.options, shell)?;
        let progress = progress::Progress::new(shell);
        let blobs = push::blob_jobs(image, store);
        let top = image.top();
        let mut written = Written {
            output: self.describe(),
            ..Written::default()
        };
        // Repositories already holding every blob, by registry: mount sources for the next.
        let mut done: Vec<(String, String)> = Vec::new();
        let mut repos: Vec<(&str, &str)> = Vec::new();
        for t in &self.targets {
            if !repos.contains(&(t.registry.as_str(), t.repository.as_str())) {
                repos.push((&t.registry, &t.repository));
            }
        }
        for (registry, repo) in repos {
            let mount_from = done
                .iter()
                .find(|(r, _)| r == registry)
                .map(|(_, repo)| repo.clone());
            let credential = match &self.options.credential {
                Some(c) => c.clone(),
                None => auth::lookup(registry, self.options.timeout)?,
            };
            let client = Client::connect(
                &http,
                &self.options,
                registry,
                repo,
                credential,
                mount_from.as_slice(),
                shell,
            )
            .with_context(|| format!("pushing to {registry}/{repo}"))
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
            let stats = push::push_blobs(
                &client,
                &blobs,
                mount_from.as_deref(),
                self.options.upload_jobs,
                &progress,
            )?;
            written.bytes_uploaded += stats.bytes;
            written.blobs_uploaded += stats.uploaded;
            written.blobs_skipped += stats.skipped;
            written.blobs_mounted += stats.mounted;
            // The top manifest under every tag, the platforms' by digest, each after what it
            // references; then the attachments (referrers), once their subject is in under
            // every tag.
            let first_pushed = written.pushed.len();
            for b in push::manifests(image) {
                if b.is_attachment() {
                    continue;
                }
                let doc = image
                    .document(b.digest)
                    .context("every manifest of an image is one of its documents")?;
                if b.digest != top.digest {
                    push::put_manifest(&client, b.digest, &doc.bytes, doc.media_type, b.digest)?;
                    continue;
                }
                for t in self
                    .targets
                    .iter()
                    .filter(|t| t.registry == registry && t.repository == repo)
                {
                    written
                        .pushed
                        .push(self.push_top(&client, t, top, &progress)?);
                }
            }
            if !image.attachments.is_empty() {
                let pushed: Vec<String> = written.pushed[first_pushed..]
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                let done = match referrers::push(&client, image) {
                    Ok(done) => done,
                    // What is pushed is reported (--message-format json prints it) with the error.
                    Err(e) => {
                        return Err(super::PartlyWritten {
                            written,
                            error: anyhow::anyhow!(
                                "the image is pushed ({}), but not its referrers (provenance, SBOMs): {e:#}",
                                pushed.join(", ")
                            ),
                        }
                        .into());
                    }
                };
                progress.line(
                    "Attached",
                    &format!(
                        "{} referrer{} to {registry}/{repo}{}",
                        done.manifests,
                        if done.manifests == 1 { "" } else { "s" },
                        if done.tags.is_empty() {
                            ""
                        } else {
                            " (no referrers API: listed under the sha256-<subject> tag)"
                        }
                    ),
                );
            }
            done.push((registry.to_string(), repo.to_string()));
        }
        Ok(written)
    }
}
