//! Pulling (after go-containerregistry's `remote.Get` and `remote.Layer`): a reference (tag or
//! digest) resolved to a descriptor; a manifest or index fetched with the OCI and Docker v2
//! schema 2 media types accepted (schema 1 is refused); a blob fetched into the
//! [`BlobStore`], checked against its digest and size while it streams, so bytes that do not
//! match are never kept. The same credentials, TLS options, timeouts, retries and body limits
//! as the push: it is the same [`Client`].

use super::RegistryOptions;
use super::auth::{self, Credential};
use super::client::{Access, Client, ManifestRef};
use super::retry::Failure;
use super::transport::{self, MANIFEST_BODY_LIMIT, read_capped, sanitize};
use crate::blobs::{BlobStore, Unexpected};
use crate::util::digest::Digest;
use crate::util::shell::Shell;
use anyhow::{Context, Result, anyhow, bail};
use oci_spec::image::MediaType;
use std::io::{Read, Write};

/// A Docker v2 schema 2 manifest (oci-spec has no variant for Docker's types: read, they are
/// [`MediaType::Other`] with this name).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// A Docker v2 schema 2 manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The media types a pull accepts, as its Accept header lists them.
pub const ACCEPTED: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
];

/// Docker's schema 1 manifests (signed or not): refused.
pub const SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// What a reference names: a manifest or index, by media type, digest and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: MediaType,
    pub digest: Digest,
    pub size: u64,
}

/// A manifest or index as the registry served it (its digest checked).
#[derive(Debug, Clone)]
pub struct Manifest {
    pub descriptor: Descriptor,
    pub bytes: Vec<u8>,
}

impl Manifest {
    /// Whether it is an index (OCI) or a manifest list (Docker).
    pub fn is_index(&self) -> bool {
        let t = &self.descriptor.media_type;
        *t == MediaType::ImageIndex || t.as_ref() == DOCKER_MANIFEST_LIST
    }

    /// What it references: an index's manifests; an image manifest's config, then its layers.
    pub fn references(&self) -> Result<Vec<Descriptor>> {
        let doc: serde_json::Value = serde_json::from_slice(&self.bytes)
            .with_context(|| format!("manifest {} is not JSON", self.descriptor.digest))?;
        let listed: Vec<&serde_json::Value> = if self.is_index() {
            list(&doc, "manifests").collect()
        } else {
            doc.get("config")
                .into_iter()
                .chain(list(&doc, "layers"))
                .collect()
        };
        listed
            .into_iter()
            .map(|d| descriptor_of(d, &self.descriptor.digest))
            .collect()
    }
}

fn list<'a>(doc: &'a serde_json::Value, key: &str) -> impl Iterator<Item = &'a serde_json::Value> {
    doc.get(key)
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
}

/// A descriptor in manifest `within`.
fn descriptor_of(d: &serde_json::Value, within: &Digest) -> Result<Descriptor> {
    let bad = |what: &str| anyhow!("manifest {within} has a descriptor with {what}");
    let digest = d
        .get("digest")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| bad("no digest"))?;
    Ok(Descriptor {
        media_type: MediaType::from(
            d.get("mediaType")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| bad("no mediaType"))?,
        ),
        digest: Digest::try_from(digest.to_string())
            .map_err(|_| bad(&format!("an invalid digest ({})", sanitize(digest))))?,
        size: d
            .get("size")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad("no size"))?,
    })
}

/// A session that pulls from one repository.
pub struct Puller {
    client: Client,
}

impl Puller {
    /// Connects to `registry`/`repo` for pulling, with `opts.credential` or, without one, what
    /// docker's and podman's credential stores hold for the registry.
    pub fn connect(
        opts: &RegistryOptions,
        registry: &str,
        repo: &str,
        shell: &Shell,
    ) -> Result<Puller> {
        let credential: Credential = match &opts.credential {
            Some(c) => c.clone(),
            None => auth::lookup(registry, opts.timeout)?,
        };
        let http = transport::http(opts, shell)?;
        let client = Client::connect(
            &http,
            opts,
            registry,
            repo,
            credential,
            &Access::Pull,
            shell,
        )
        .with_context(|| format!("pulling from {registry}/{repo}"))
        .map_err(|e| anyhow!("{e:#}"))?;
        Ok(Puller { client })
    }

    /// The descriptor `reference` (a tag or a digest) names, from a HEAD; when the registry
    /// sends no digest, the manifest itself is fetched and hashed.
    pub fn resolve(&self, reference: ManifestRef<'_>) -> Result<Descriptor> {
        let c = &self.client;
        let r = c.get_manifest(reqwest::Method::HEAD, reference, &ACCEPTED.join(", "))?;
        let media_type = media_type_of(&r);
        // The header itself: reqwest's content_length() is that of the (empty) HEAD body.
        let size = r
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|h| h.to_str().ok()?.parse::<u64>().ok());
        if let Some(size) = size
            && check_media_type(c, reference, &media_type).is_ok()
            && let Some(digest) = c.content_digest(&r, reference)?
        {
            if let ManifestRef::Digest(asked) = reference
                && digest != *asked
            {
                bail!(
                    "registry {} answered for {reference} with the digest {digest}; it serves another manifest than the one asked for",
                    c.registry
                );
            }
            return Ok(Descriptor {
                media_type,
                digest,
                size,
            });
        }
        Ok(self.manifest(reference)?.descriptor)
    }

    /// The manifest or index `reference` (a tag or a digest) names, read up to 4 MiB. Its
    /// digest is that of the bytes served, and must be the reference when that is a digest
    /// (and the registry's `Docker-Content-Digest` when it sends one).
    pub fn manifest(&self, reference: ManifestRef<'_>) -> Result<Manifest> {
        let c = &self.client;
        let r = c.get_manifest(reqwest::Method::GET, reference, &ACCEPTED.join(", "))?;
        // Checked here, reported after the body's own checks (as before it was typed).
        let claimed = c.content_digest(&r, reference);
        let header_type = media_type_of(&r);
        let length = r.content_length();
        let bytes = read_capped(
            r,
            length,
            MANIFEST_BODY_LIMIT,
            &format!("manifest {reference}"),
            &c.registry,
        )?;
        let media_type = media_type_of_body(header_type, &bytes);
        check_media_type(c, reference, &media_type)?;
        let digest = Digest::sha256_of(&bytes);
        let expected = match reference {
            ManifestRef::Digest(asked) => Some(asked.clone()),
            ManifestRef::Tag(_) => claimed?,
        };
        if let Some(expected) = expected
            && digest != expected
        {
            bail!(
                "registry {} served manifest {reference} of {} with the digest {digest}, not {expected}; refusing it (the registry or a proxy altered it)",
                c.registry,
                c.repo
            );
        }
        Ok(Manifest {
            descriptor: Descriptor {
                media_type,
                digest,
                size: bytes.len() as u64,
            },
            bytes,
        })
    }

    /// Fetches blob `digest` of `size` bytes into `store` (nothing to do when the store holds
    /// it, proven). Its bytes are counted as they arrive and hashed once, by the store's
    /// writer; a blob of another size or digest is an error naming the digest, and nothing of
    /// it is kept ([`BlobStore::commit_expected`]). A connection that breaks is tried again,
    /// from the start.
    pub fn blob(&self, store: &BlobStore, digest: &Digest, size: u64) -> Result<()> {
        if store.proven(digest, size) {
            return Ok(());
        }
        let c = &self.client;
        let writer = c.retrying("fetch a blob", || {
            let r = c.get_blob(digest)?;
            if !r.status().is_success() {
                return Err(Failure::Fatal(c.refused(r, &format!("blob {digest}"))));
            }
            if r.content_length().is_some_and(|n| n != size) {
                return Err(Failure::Fatal(self.mismatch(
                    digest,
                    size,
                    "a Content-Length of another size",
                )));
            }
            let writer = store.writer().map_err(Failure::Fatal)?;
            copy_counted(r, writer, digest, size, |what| {
                self.mismatch(digest, size, what)
            })
        })?;
        store.commit_expected(writer, digest, size).map_err(|e| {
            match e.downcast_ref::<Unexpected>() {
                Some(u) => {
                    self.mismatch(digest, size, &format!("bytes whose digest is {}", u.digest))
                }
                None => e,
            }
        })
    }

    fn mismatch(&self, digest: &Digest, size: u64, what: &str) -> anyhow::Error {
        anyhow!(
            "registry {} served blob {digest} of {} ({size} bytes) with {what}; refusing it, nothing of it is kept (the registry's storage or a proxy altered it)",
            self.client.registry,
            self.client.repo
        )
    }
}

/// Streams `body` into `writer`, counting: more than `size` bytes or fewer is fatal
/// (`mismatch` names what); a read that fails is worth another try. The writer (which hashes
/// what it is given) is returned only when the count matched; dropped, it leaves nothing
/// behind.
fn copy_counted<W: Write>(
    mut body: impl Read,
    mut writer: W,
    digest: &Digest,
    size: u64,
    mismatch: impl Fn(&str) -> anyhow::Error,
) -> Result<W, Failure> {
    let mut got: u64 = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Failure::Retry {
                    reason: format!("reading blob {digest}: {}", sanitize(&e.to_string())),
                    after: None,
                });
            }
        };
        got += n as u64;
        if got > size {
            return Err(Failure::Fatal(mismatch("more bytes than that")));
        }
        writer
            .write_all(&buf[..n])
            .context("writing a blob into the cache")?;
    }
    if got < size {
        return Err(Failure::Fatal(mismatch(&format!("only {got} bytes"))));
    }
    Ok(writer)
}

/// The answer's Content-Type without parameters (empty when it has none): where a served
/// media type enters.
fn media_type_of(r: &reqwest::blocking::Response) -> MediaType {
    MediaType::from(
        r.headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|h| h.to_str().ok())
            .map_or("", |t| t.split(';').next().unwrap_or(t).trim()),
    )
}

/// The media type of a manifest: the Content-Type when it is a manifest's, else the
/// document's own `mediaType` (or, for a document with `schemaVersion` 1, schema 1's).
fn media_type_of_body(header: MediaType, bytes: &[u8]) -> MediaType {
    let named = header.as_ref();
    if ACCEPTED.contains(&named) || SCHEMA1.contains(&named) {
        return header;
    }
    let doc: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    if let Some(t) = doc.get("mediaType").and_then(serde_json::Value::as_str) {
        return MediaType::from(t);
    }
    if doc.get("schemaVersion").and_then(serde_json::Value::as_u64) == Some(1) {
        return MediaType::from(SCHEMA1[0]);
    }
    header
}

/// Schema 1 and anything that is not a manifest are refused, with what to do.
fn check_media_type(c: &Client, reference: ManifestRef<'_>, media_type: &MediaType) -> Result<()> {
    let media_type = media_type.as_ref();
    if SCHEMA1.contains(&media_type) {
        bail!(
            "{}/{}:{reference} is a Docker schema 1 manifest, which this tool does not read (deprecated since 2017); push the image again with a current docker, podman or skopeo",
            c.registry,
            c.repo
        );
    }
    if !ACCEPTED.contains(&media_type) {
        bail!(
            "{}/{}:{reference} is not an image manifest or index (its media type is `{}`); name an image",
            c.registry,
            c.repo,
            sanitize(media_type)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(body: &[u8], size: u64) -> Result<Vec<u8>, String> {
        let digest = Digest::sha256_of(b"hello");
        copy_counted(body, Vec::new(), &digest, size, |what| anyhow!("{what}")).map_err(|f| match f
        {
            Failure::Fatal(e) => e.to_string(),
            Failure::Retry { reason, .. } => format!("retry: {reason}"),
        })
    }

    #[test]
    fn a_blob_of_another_size_is_refused_as_it_streams() {
        assert_eq!(count(b"hello", 5).unwrap(), b"hello");
        assert_eq!(count(b"hello!", 5).unwrap_err(), "more bytes than that");
        assert_eq!(count(b"hell", 5).unwrap_err(), "only 4 bytes");
        // The digest is the store's to check (`BlobStore::commit_expected`).
        assert_eq!(count(b"jello", 5).unwrap(), b"jello");
    }

    #[test]
    fn the_media_type_comes_from_the_header_else_the_document() {
        let t = |s: &str| MediaType::from(s);
        assert_eq!(
            media_type_of_body(MediaType::ImageIndex, b"{}"),
            MediaType::ImageIndex
        );
        let doc = format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}"}}"#);
        assert_eq!(
            media_type_of_body(t("application/json"), doc.as_bytes()),
            t(DOCKER_MANIFEST)
        );
        assert_eq!(
            media_type_of_body(t("text/plain"), br#"{"schemaVersion":1,"fsLayers":[]}"#),
            t(SCHEMA1[0])
        );
        assert_eq!(media_type_of_body(t(""), b"not json"), t(""));
    }
}
