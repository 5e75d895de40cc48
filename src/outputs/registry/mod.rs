//! `--push`: the image to one or more registry references.

pub mod progress;
pub mod push;
pub mod referrers;

use super::{Output, Pushed, Written};
use crate::blobs::BlobStore;
use crate::image::Image;
use crate::registry::RegistryOptions;
use crate::registry::client::{Access, Client, ManifestRef};
use crate::registry::{auth, transport};
use crate::util::digest::Digest;
use crate::util::reference::Reference;
use crate::util::shell::Shell;
use anyhow::{Context, Result, anyhow, bail};
use push::{BlobJob, Check, Survey};

/// One reference to push to.
#[derive(Debug, Clone)]
pub struct Target {
    /// As the user wrote it, for the result line.
    pub given: String,
    pub registry: String,
    pub repository: String,
    /// The tag, or None when the reference names a digest.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
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
    /// `--sign`: the key the pushed image is signed with (`crate::sign`), once it is in.
    pub signing_key: Option<std::sync::Arc<crate::sign::key::SigningKey>>,
    /// The HTTP client, being built on another thread since [`Output::preflight`] (while the
    /// build runs), for [`Output::write`] to take.
    http: Prepared,
}

/// A value being made on another thread, taken once.
#[derive(Default)]
struct Prepared(
    std::sync::Mutex<Option<std::thread::JoinHandle<Result<reqwest::blocking::Client>>>>,
);

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared")
    }
}

impl Clone for Prepared {
    /// A clone builds its own client.
    fn clone(&self) -> Prepared {
        Prepared::default()
    }
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
        Ok(RegistryOutput {
            targets,
            options,
            signing_key: None,
            http: Prepared::default(),
        })
    }
}

impl RegistryOutput {
    /// Puts the image's top manifest (or index) under `t` and reads it back, unless the survey
    /// found it there already.
    fn push_top(
        &self,
        client: &Client,
        t: &Target,
        top: &crate::image::Blob,
        survey: &Survey,
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
        let reference = match &t.tag {
            Some(tag) => ManifestRef::Tag(tag),
            None => ManifestRef::Digest(&top.digest),
        };
        let there = match reference {
            ManifestRef::Tag(tag) => survey.tags.get(tag) == Some(&top.digest),
            ManifestRef::Digest(d) => survey.manifests.contains(d),
        };
        if !there {
            client.put_manifest(reference, &top.bytes, &top.media_type, &top.digest)?;
            client.verify_manifest(reference, &top.media_type, &top.digest)?;
        }
        let pushed = Pushed {
            reference: t.given.split('@').next().unwrap_or(&t.given).to_string(),
            digest: top.digest.clone(),
        };
        progress.line("Pushed", &pushed.to_string());
        Ok(pushed)
    }
}

impl RegistryOutput {
    /// The repositories to push to, each once, in the order the references name them.
    fn repositories(&self) -> Vec<(&str, &str)> {
        let mut repos: Vec<(&str, &str)> = Vec::new();
        for t in &self.targets {
            if !repos.contains(&(t.registry.as_str(), t.repository.as_str())) {
                repos.push((&t.registry, &t.repository));
            }
        }
        repos
    }

    /// A session with `registry`/`repo`, with the command line's credentials or, without
    /// them, what docker's and podman's stores hold for the registry.
    fn connect(
        &self,
        http: &reqwest::blocking::Client,
        registry: &str,
        repo: &str,
        mount_from: &[String],
        shell: &Shell,
    ) -> Result<Client> {
        let credential = match &self.options.credential {
            Some(c) => c.clone(),
            None => auth::lookup(registry, self.options.timeout)?,
        };
        let access = Access::Push { mount_from };
        Client::connect(
            http,
            &self.options,
            registry,
            repo,
            credential,
            &access,
            shell,
        )
        .with_context(|| format!("pushing to {registry}/{repo}"))
        .map_err(|e| anyhow::anyhow!("{e:#}"))
    }

    /// What the repository already holds of `image`: one round of concurrent HEADs for every
    /// blob, every manifest (attachments' too, once a push of them here is remembered: see
    /// [`referrers::to_survey`]), every tag of this repository, and the tag schema's
    /// tags [`referrers::push`] needs to prove the referrers listed.
    /// `own` is [`own_digests`] of the image.
    fn survey(
        &self,
        client: &Client,
        image: &Image,
        blobs: &[BlobJob],
        own: &std::collections::HashSet<&Digest>,
    ) -> Result<Survey> {
        let tags: Vec<&str> = self
            .targets
            .iter()
            .filter(|t| t.registry == client.registry && t.repository == client.repo)
            .filter_map(|t| t.tag.as_deref())
            .collect();
        let wanted = referrers::to_survey(client, image);
        // A blob of the image's own is asked after even if an attachment shares it.
        let unasked = |d: &Digest| wanted.unasked.contains(d) && !own.contains(d);
        let checks: Vec<Check> = blobs
            .iter()
            .filter(|b| !unasked(&b.digest))
            .map(|b| Check::Blob(&b.digest))
            .chain(
                push::manifests(image)
                    .filter(|b| !unasked(b.digest))
                    .map(|b| Check::Manifest(b.digest)),
            )
            .chain(tags.into_iter().map(Check::Tag))
            .chain(wanted.tags.iter().map(|t| Check::Tag(t)))
            .collect();
        push::survey(client, &checks, push::survey_jobs(self.options.upload_jobs))
    }

    /// The image's own blobs (`own`), then its manifests under every tag of this repository.
    #[allow(clippy::too_many_arguments)]
    fn push_image(
        &self,
        client: &Client,
        image: &Image,
        own: &[BlobJob],
        mount_from: Option<&str>,
        survey: &Survey,
        slots: &push::Slots,
        progress: &progress::Progress,
        written: &mut Written,
    ) -> Result<()> {
        let stats = push::push_blobs(client, own, mount_from, &survey.blobs, slots, progress)?;
        count(written, &stats);
        client.shell().timing("push: blobs");
        self.push_manifests(client, image, survey, progress, written)?;
        client.shell().timing("push: manifests");
        Ok(())
    }

    /// The top manifest under every tag of this repository, the platforms' by digest, each
    /// after what it references (attachments are left to [`RegistryOutput::push_referrers`]);
    /// what the survey found in place is not sent again.
    fn push_manifests(
        &self,
        client: &Client,
        image: &Image,
        survey: &Survey,
        progress: &progress::Progress,
        written: &mut Written,
    ) -> Result<()> {
        let top = image.top();
        for b in push::manifests(image).filter(|b| !b.is_attachment()) {
            let doc = image
                .document(b.digest)
                .context("every manifest of an image is one of its documents")?;
            if *b.digest != top.digest {
                if survey.manifests.contains(b.digest) {
                    continue;
                }
                client.put_manifest(
                    ManifestRef::Digest(b.digest),
                    &doc.bytes,
                    &doc.media_type,
                    b.digest,
                )?;
                continue;
            }
            for t in self
                .targets
                .iter()
                .filter(|t| t.registry == client.registry && t.repository == client.repo)
            {
                written
                    .pushed
                    .push(self.push_top(client, t, top, survey, progress)?);
            }
        }
        Ok(())
    }
}

/// [`super::PartlyWritten`] after the image went in under `written.pushed[first..]` and what
/// followed it did not: "the image is pushed (REF@sha256:…), but WHAT". The report still
/// names what is pushed (--message-format json prints it beside the error).
fn pushed_but(written: Written, first: usize, what: String) -> anyhow::Error {
    let pushed: Vec<String> = written.pushed[first..]
        .iter()
        .map(ToString::to_string)
        .collect();
    let error = anyhow::anyhow!("the image is pushed ({}), but {what}", pushed.join(", "));
    super::PartlyWritten { written, error }.into()
}

/// Blob counts of one push into what the run reports.
fn count(written: &mut Written, stats: &push::BlobStats) {
    written.bytes_uploaded += stats.bytes;
    written.blobs_uploaded += stats.uploaded;
    written.blobs_skipped += stats.skipped;
    written.blobs_mounted += stats.mounted;
}

/// The attachments (referrers): the blobs only they reference (`theirs`), then their
/// manifests and, on a registry without the referrers API, the tag schema's index.
fn push_attachments(
    client: &Client,
    image: &Image,
    theirs: &[BlobJob],
    mount_from: Option<&str>,
    survey: &Survey,
    slots: &push::Slots,
    progress: &progress::Progress,
) -> Result<(push::BlobStats, referrers::Referred)> {
    let stats = push::push_blobs(client, theirs, mount_from, &survey.blobs, slots, progress)?;
    let done = referrers::push(client, image, survey)?;
    Ok((stats, done))
}

/// The digests of the image's own blobs and manifests (not its attachments').
fn own_digests(image: &Image) -> std::collections::HashSet<&Digest> {
    image
        .blobs()
        .filter(|b| !b.is_attachment())
        .map(|b| b.digest)
        .collect()
}

/// Whether an attachment references a blob of the image's own (`own`, one the image's push
/// uploads): then its manifest must wait for the image's blobs.
fn attachments_share_blobs(image: &Image, own: &std::collections::HashSet<&Digest>) -> bool {
    image
        .attachments
        .iter()
        .any(|a| own.contains(&a.config.digest) || a.blobs.iter().any(|b| own.contains(&b.digest)))
}

/// What [`push_attachments`] did, said and counted. A failure is [`super::PartlyWritten`]:
/// the image itself is pushed, under `written.pushed[first..]`.
fn report_referrers(
    client: &Client,
    pushed: Result<(push::BlobStats, referrers::Referred)>,
    progress: &progress::Progress,
    mut written: Written,
    first: usize,
) -> Result<Written> {
    let done = match pushed {
        Ok((stats, done)) => {
            count(&mut written, &stats);
            done
        }
        // What is pushed is reported (--message-format json prints it) with the error.
        Err(e) => {
            let error = format!("not its referrers (provenance, SBOMs): {e:#}");
            return Err(pushed_but(written, first, error));
        }
    };
    let count = done.manifests + done.proven;
    progress.line(
        "Attached",
        &format!(
            "{count} referrer{} to {}/{}{}{}",
            if count == 1 { "" } else { "s" },
            client.registry,
            client.repo,
            if done.tags.is_empty() {
                ""
            } else {
                " (no referrers API: listed under the sha256-<subject> tag)"
            },
            if done.manifests == 0 {
                " (already there)"
            } else {
                ""
            }
        ),
    );
    Ok(written)
}

/// Signs the pushed image and attests its documents ([`crate::sign::sign_pushed`]). A failure
/// is [`super::PartlyWritten`]: the image is pushed, under `written.pushed[first..]`.
fn push_signatures(
    client: &Client,
    image: &Image,
    store: &BlobStore,
    key: &crate::sign::key::SigningKey,
    progress: &progress::Progress,
    written: Written,
    first: usize,
) -> Result<Written> {
    match crate::sign::sign_pushed(client, image, store, key) {
        Ok(signed) => {
            progress.line(
                "Signed",
                &format!(
                    "{}/{} with the key {}: {} manifest(s) signed, {} already; {} attestation(s) added, {} already (cosign's .sig/.att tags)",
                    client.registry,
                    client.repo,
                    key.public().fingerprint(),
                    signed.signatures,
                    signed.already_signed,
                    signed.attestations,
                    signed.already_attested
                ),
            );
            Ok(written)
        }
        Err(e) => {
            let error = format!(
                "not signed: {e:#}; sign it again with the same command, or `cosign sign --key` that digest"
            );
            Err(pushed_but(written, first, error))
        }
    }
}

impl Output for RegistryOutput {
    fn describe(&self) -> String {
        let refs: Vec<&str> = self.targets.iter().map(|t| t.given.as_str()).collect();
        format!("registry {}", refs.join(", "))
    }

    /// Starts building the HTTP client (its CA roots parsed) on another thread.
    fn preflight(&self) -> Result<()> {
        let options = self.options.clone();
        let handle = std::thread::spawn(move || transport::http_client(&options));
        *self.http.0.lock().expect("http client") = Some(handle);
        Ok(())
    }

    /// Each repository in turn: its blobs (mounted from one pushed before in this run, on
    /// the same registry, where possible), its manifests, then the referrers.
    fn write(&self, image: &Image, store: &BlobStore, shell: &Shell) -> Result<Written> {
        transport::announce_trust(shell);
        let prepared = self.http.0.lock().expect("http client").take();
        let http = match prepared.map(std::thread::JoinHandle::join) {
            Some(Ok(built)) => built?,
            // Not started, or its thread panicked: built here.
            _ => transport::http_client(&self.options)?,
        };
        let progress = progress::Progress::new(shell);
        let blobs = push::blob_jobs(image, store);
        let own_blobs = own_digests(image);
        let mut written = Written {
            output: self.describe(),
            ..Written::default()
        };
        // Repositories already holding every blob, by registry: mount sources for the next.
        let mut done: Vec<(&str, &str)> = Vec::new();
        for (registry, repo) in self.repositories() {
            let mount_from: Option<String> = done
                .iter()
                .find(|(r, _)| *r == registry)
                .map(|(_, repo)| (*repo).to_string());
            let mut sources: Vec<String> = mount_from.iter().cloned().collect();
            sources.extend(push::base_repositories(&blobs, registry, repo));
            shell.timing("push: start");
            let client = self.connect(&http, registry, repo, &sources, shell)?;
            shell.timing("push: connected");
            let survey = self.survey(&client, image, &blobs, &own_blobs)?;
            shell.timing("push: surveyed");
            let first = written.pushed.len();
            let (own, theirs): (Vec<BlobJob>, Vec<BlobJob>) =
                blobs.iter().cloned().partition(|b| !b.attachment);
            let mount = mount_from.as_deref();
            // `--upload-jobs` bounds the image's uploads and the referrers' together.
            let slots = push::Slots::new(self.options.upload_jobs);
            let attachments = |client: &Client| {
                push_attachments(client, image, &theirs, mount, &survey, &slots, &progress)
            };
            // The referrers go in beside the image, not after it: the distribution spec has a
            // registry accept a manifest whose subject is not in yet ("in either order"), so
            // their uploads and the tag schema's read, PUT and settle overlap the image's
            // uploads. Only attachments that reference a blob of the image's own wait for it.
            let beside =
                !image.attachments.is_empty() && !attachments_share_blobs(image, &own_blobs);
            let (image_pushed, referred) = std::thread::scope(|s| {
                let referrers = beside.then(|| s.spawn(|| attachments(&client)));
                let image_pushed = self.push_image(
                    &client,
                    image,
                    &own,
                    mount,
                    &survey,
                    &slots,
                    &progress,
                    &mut written,
                );
                let referred = referrers.map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("the referrers' push thread stopped")))
                });
                (image_pushed, referred)
            });
            image_pushed?;
            // Attachments that share the image's blobs go in now, after them.
            let referred =
                referred.or_else(|| (!image.attachments.is_empty()).then(|| attachments(&client)));
            if let Some(r) = referred {
                written = report_referrers(&client, r, &progress, written, first)?;
                shell.timing("push: referrers");
            }
            if let Some(key) = &self.signing_key {
                written = push_signatures(&client, image, store, key, &progress, written, first)?;
            }
            done.push((registry, repo));
        }
        Ok(written)
    }
}
