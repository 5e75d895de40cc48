//! The integration tests: one test binary (`cargo test --test it`), one module per area, as
//! cargo-chef does. The helpers in `common` (fixtures, running the tool, inspecting images)
//! and `support` (registry, fault proxy, token server, podman sandbox) compile once for all
//! of them instead of once per binary.
//!
//! Every module runs in this one process, in parallel with the others, so a module must not
//! mutate process-wide state: no `std::env::set_var` (set variables on the `Command` instead,
//! as `common::tool` and `common::hermetic` do), no `set_current_dir`. Per-module statics
//! (images built once behind a `OnceLock`) are private to their module; everything a test
//! writes goes below `common::scratch_root()` or a `common::tempdir()`.
//!
//! Under `cargo test` (`scripts/test` too) every module runs in one process; under cargo-nextest
//! every test runs in a process of its own, so nothing may rely on another test having run
//! first in the same process.
//!
//! Tiers: a test that needs a program outside Rust (runc, skopeo, podman, docker,
//! docker-registry...), builds OpenSSL, mimalloc, arm64 or in two directories, or takes more
//! than a few seconds, carries `#[ignore = "heavy: <what it needs>"]`: a plain `cargo test`
//! lists it as ignored, `scripts/test` runs it (ARCHITECTURE.md, "Tests").
//!
//! A new area is a file `tests/it/NAME.rs` (starting with `use crate::common::*;` and, for
//! the registry harness, `use crate::support::...;`) and one line `mod NAME;` below. Its
//! insta snapshots are `tests/it/snapshots/it__NAME__SNAPSHOT.snap`.

mod common;
mod support;

mod allocator;
mod auditable;
mod bad_input;
mod base_images;
mod base_pull;
mod build_run;
mod docker;
mod docker_build;
mod init;
mod metadata;
mod multiplatform;
mod outputs;
mod podman_build;
mod public_urls;
mod real_crates;
mod referrers;
mod registry;
mod registry_harness;
mod registry_pull;
mod reliability;
mod reproducible;
mod sbom;
mod signing;
mod sys_crates;
mod templates;
mod verify;
