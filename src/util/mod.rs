//! Infrastructure below every stage: what several stages use and none owns. Nothing here
//! imports a stage (metadata, build, verify, layers, image, outputs, render).

pub mod atomic;
pub mod ca;
pub mod digest;
pub mod fs;
pub mod lease;
pub mod owned;
pub mod process;
pub mod public_url;
pub mod reference;
pub mod shell;

/// The environment variable that moves the user's cache (see `memo`).
pub const CACHE_VAR: &str = "CARGO_CONTAINERIZE_CACHE";

/// A duration from the environment variable `var` (whole seconds, or e.g. `90s`, `5m`), else
/// `default`; a value that is not a duration is an error naming the variable.
pub fn env_duration(
    var: &str,
    default: std::time::Duration,
) -> anyhow::Result<std::time::Duration> {
    match std::env::var_os(var) {
        None => Ok(default),
        Some(raw) => parse_duration(var, &raw.to_string_lossy()),
    }
}

/// `text`, the value of `var`: whole seconds, or a duration such as `90s` or `2m`.
pub fn parse_duration(var: &str, text: &str) -> anyhow::Result<std::time::Duration> {
    let text = text.trim();
    text.parse::<u64>()
        .map(std::time::Duration::from_secs)
        .or_else(|_| humantime::parse_duration(text))
        .map_err(|_| {
            anyhow::anyhow!(
                "{var}={text} is not a duration; give seconds (e.g. 600) or a duration such as 10m"
            )
        })
}
