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
//!   → attest  (provenance, SBOMs about each manifest → the Image's attachments)
//!   → outputs (oci:, oci-archive:, docker-archive: … → one `Output` trait)
//! ```
//! [`pipeline`] runs them in that order; [`cli`] is the command line and [`commands`] its
//! subcommands, one file each. [`sign`] signs what the push output pushed (cosign's formats). Below every stage:
//! [`files`] (the image's file entries and base files), [`util`] (CA roots, references,
//! bounded helper programs, safe file opening) and [`registry`] (registry access: transport,
//! auth, retries, the push's primitives and pull). A stage imports earlier stages and these,
//! never a later stage (`scripts/import-graph` checks; ARCHITECTURE.md has the map).

// No function in the stages over 80 lines (clippy.toml) unless it is flat data and says so.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod attest;
pub mod blobs;
pub mod build;
pub mod cli;
pub mod commands;
pub mod doctor;
pub mod files;
pub mod image;
pub mod init;
pub mod layers;
pub mod machine_message;
pub mod memo;
pub mod metadata;
pub mod outputs;
pub mod pipeline;
pub mod platform;
pub mod registry;
pub mod render;
pub mod sign;
pub mod util;
pub mod verify;

/// An error as the tool prints it: one line, the cause chain outermost first. Messages quote
/// what the user or a server gave (a reference, a key, a registry's text), so line breaks become
/// spaces and other control characters (NUL, terminal escapes) are printed escaped.
pub fn error_line(e: &anyhow::Error) -> String {
    escape_controls(&format!("{e:#}").replace(['\n', '\r', '\t'], " "))
}

/// `text` with its control characters escaped (`\u{1b}`, `\r`): for quoting text that came
/// from a file or a server where it is shown to a terminal.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzz/fuzz_targets/reference.rs: a reference (from -t or Cargo.toml) quoted in
    /// an error reached the terminal with its control characters.
    #[test]
    fn printed_errors_carry_no_control_characters() {
        let e = util::reference::Reference::parse("a:b:c/\0\x1b[31mapp\r").unwrap_err();
        let line = error_line(&e.context("pushing\nto the registry"));
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.starts_with("pushing to the registry: "), "{line}");
        assert!(line.contains(r"\u{0}\u{1b}[31mapp"), "{line}");
    }
}
