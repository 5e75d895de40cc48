//! The C compiler a plan builds the target's C code with, as the helpers that compile C for
//! the target (OpenSSL, mimalloc) and `doctor` see it.

use std::ffi::OsString;

/// How the build compiles C for the target.
#[derive(Debug, Clone)]
pub struct CCompiler {
    /// cargo-zigbuild drives the build (zig is the compiler).
    pub zig: bool,
    /// Variables the build sets for it (`CC_<triple>`…).
    pub env: Vec<(String, OsString)>,
    /// What identifies it: its path and `--version`.
    pub identity: String,
}
