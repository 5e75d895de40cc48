//! Registry access, a layer below the stages (after go-containerregistry's
//! `pkg/v1/remote`): the push output (`outputs/registry/`) and, later, a base image's pull
//! use it; it imports only `util`, `blobs` and `platform`.
//!
//! From the bottom up: [`transport`] (the HTTP client: CA roots and `--registry-ca`, plain
//! HTTP for loopback and `--insecure-registry` hosts, timeouts, body limits, redirects),
//! [`error`] (a registry's refusal, typed by the distribution spec's error codes), [`retry`]
//! (which failures are tried again, with backoff, bounded), [`auth`] (where credentials go,
//! where they come from, Basic and Bearer), [`client`] (a session with one repository and the
//! API's blob and manifest primitives), and [`pull`] (a reference resolved, its manifests
//! and blobs fetched into the `BlobStore`, each checked against its digest).

pub mod auth;
pub mod client;
pub mod error;
pub mod pull;
pub mod retry;
pub mod transport;

use auth::Credential;
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
