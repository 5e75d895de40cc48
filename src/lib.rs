//! cargo-containerize: a crate's binary as a minimal OCI image, with no daemon.
//!
//! The pipeline, one module per stage, each handing a plain value to the next:
//!
//! ```text
//! metadata  (Cargo.toml → Project, ImageSpec)
//!   → build   (cargo build --target <arch>-unknown-linux-musl → Built)
//!   → verify  (goblin: static, right machine → VerifiedBinary)
//!   → layers  (deterministic tar + compression → Layer blobs)
//!   → image   (OCI config, manifest, index → Image)
//!   → outputs (oci:, oci-archive:, docker-archive: … → one `Output` trait)
//! ```
//! [`pipeline`] runs them in that order; [`cli`] is the command line.

pub mod blobs;
pub mod build;
pub mod cli;
pub mod diagnose;
pub mod doctor;
pub mod image;
pub mod init;
pub mod layers;
pub mod memo;
pub mod metadata;
pub mod openssl;
pub mod outputs;
pub mod pipeline;
pub mod platform;
pub mod preflight;
pub mod render;
pub mod verify;
