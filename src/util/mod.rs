//! Infrastructure below every stage: what several stages use and none owns. Nothing here
//! imports a stage (metadata, build, verify, layers, image, outputs, render).

pub mod atomic;
pub mod ca;
pub mod digest;
pub mod fs;
pub mod lease;
pub mod process;
pub mod reference;
pub mod shell;

/// A duration from the environment variable `var` (whole seconds, or e.g. `90s`, `5m`), else
/// `default`; a value that is not a duration is an error naming the variable.
pub fn env_duration(
    var: &str,
    default: std::time::Duration,
) -> anyhow::Result<std::time::Duration> {
    let Some(raw) = std::env::var_os(var) else {
        return Ok(default);
    };
    let text = raw.to_string_lossy();
    let text = text.trim();
    text.parse::<u64>()
        .map(std::time::Duration::from_secs)
        .or_else(|_| humantime::parse_duration(text))
        .map_err(|_| {
            anyhow::anyhow!(
                "{var}={text} is not a duration; give seconds (e.g. {}) or a duration such as 5m",
                default.as_secs()
            )
        })
}
