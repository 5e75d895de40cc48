//! Faults and hostile input (see RELIABILITY.md): every case drives the real binary against
//! real parts — a tmpfs for ENOSPC, a real SIGKILL, a real registry behind the fault proxy —
//! and proves the tool loses no foreign file, ships no blob that does not match its digest,
//! and never waits without bound.
//!
//! One module per kind of fault (`cargo test --test it reliability::`); the helpers are the
//! crate's `common` and `support`.

mod cache;
mod input;
mod layout;
mod network;
mod ownership;
mod published;
