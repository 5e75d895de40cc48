//! Which failures are tried again, and how (after go-containerregistry's
//! `transport/retry.go`): connection trouble, timeouts, 408, 429 and 5xx are [`Failure::Retry`];
//! anything else is the caller's to judge. [`retry`] runs an operation a bounded number of
//! times, waiting as the server asked (`Retry-After`) or with exponential backoff, and says so
//! on stderr.

use super::RegistryOptions;
use super::error::{RegistryError, retryable_status};
use super::transport::{NetError, is_loopback, sanitize};
use crate::util::shell::Shell;
use anyhow::{Result, anyhow, bail};
use reqwest::blocking::Response;
use reqwest::header::RETRY_AFTER;
use std::time::Duration;

/// Why one attempt failed.
pub enum Failure {
    /// Worth another try (connection trouble, a timeout, 408, 429, 5xx), after `after` if the
    /// server said.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Fatal(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Fatal(e)
    }
}

/// How many tries and how long to wait for an answer.
#[derive(Debug, Clone)]
pub struct Policy {
    pub tries: u32,
    /// The longest wait for a connection or for the next bytes of an answer.
    pub timeout: Duration,
    /// Where a session says what it does: each request with -v, each retry and its wait.
    pub shell: Shell,
}

impl Policy {
    pub fn of(opts: &RegistryOptions, shell: &Shell) -> Policy {
        Policy {
            tries: opts.retries.saturating_add(1),
            timeout: opts.timeout,
            shell: shell.clone(),
        }
    }
}

/// What to do about a request that got no answer. `who` names the server ("registry
/// 127.0.0.1:5000", "the token service … of registry …").
pub fn net_failure(e: &reqwest::Error, who: &str, request: &str, policy: &Policy) -> Failure {
    let host = e.url().and_then(|u| {
        u.host_str()
            .map(|h| format!("{h}:{}", u.port_or_known_default().unwrap_or(0)))
    });
    if e.is_redirect() {
        // The redirect policy refused: asking again gets the same redirect.
        return Failure::Fatal(anyhow!(
            "{who} answered {request} with a redirect this tool does not follow ({}); check the registry's address and proxy settings",
            sanitize(&NetError::of(e).to_string())
        ));
    }
    match NetError::of(e) {
        NetError::Certificate(detail) => Failure::Fatal(anyhow!(
            "the TLS certificate of {who} is not trusted ({detail}); pass --registry-ca FILE with the CA that signed it"
        )),
        // A loopback address that refuses has no registry on that port: retrying with backoff
        // only delays the answer.
        NetError::Refused if host.as_deref().is_some_and(is_loopback) => Failure::Fatal(anyhow!(
            "nothing listens at {} ({who}: {request} was refused); check the port in the image reference, or start the registry",
            host.unwrap_or_default()
        )),
        NetError::Refused => Failure::Retry {
            reason: format!("{who} refused the connection for {request}"),
            after: None,
        },
        NetError::Timeout => Failure::Retry {
            reason: format!(
                "{who} did not answer {request} within {} (--registry-timeout)",
                humantime::format_duration(policy.timeout)
            ),
            after: None,
        },
        NetError::Other(text) => Failure::Retry {
            reason: format!("{request}: {}", sanitize(&text)),
            after: None,
        },
    }
}

/// The wait before try `attempt + 1`: 250 ms, doubling, at most 10 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((250u64 << attempt.min(6).saturating_sub(1)).min(10_000))
}

/// The wait a `Retry-After` header asks for, in seconds (at most a minute); an HTTP date
/// is ignored (backoff applies).
fn retry_after(resp: &Response) -> Option<Duration> {
    parse_retry_after(resp.headers().get(RETRY_AFTER)?.to_str().ok()?)
}

fn parse_retry_after(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(60)))
}

/// Sorts a response into success, retry or "the caller decides" (other 4xx).
pub fn classify(resp: Response) -> Result<Response, Failure> {
    if retryable_status(resp.status()) {
        let after = retry_after(&resp);
        let reason = RegistryError::read(resp);
        debug_assert!(reason.retryable());
        return Err(Failure::Retry {
            after,
            reason: reason.to_string(),
        });
    }
    Ok(resp)
}

/// Runs `op` up to `policy.tries` times, sleeping between tries as the server asked or with
/// exponential backoff, and saying so on stderr (unless quiet): a push that waits is never
/// silent.
pub fn retry<T>(
    policy: &Policy,
    registry: &str,
    repo: &str,
    what: &str,
    mut op: impl FnMut() -> Result<T, Failure>,
) -> Result<T> {
    let tries = policy.tries;
    let mut last = String::new();
    for attempt in 1..=tries {
        match op() {
            Ok(v) => return Ok(v),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry { reason, after }) => {
                last = reason;
                if attempt < tries {
                    let wait = after.unwrap_or_else(|| backoff(attempt));
                    policy.shell.status(
                        "Retrying",
                        format!(
                            "to {what} (try {} of {tries}, in {}): {last}",
                            attempt + 1,
                            humantime::format_duration(wait)
                        ),
                    );
                    std::thread::sleep(wait);
                }
            }
        }
    }
    bail!(
        "could not {what} for repository {repo} at registry {registry} after {tries} tries (last: {last}); check the registry is up, or raise --retries or --registry-timeout"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use std::cell::Cell;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert!(backoff(20) <= Duration::from_secs(10));
    }

    #[test]
    fn only_timeouts_throttling_and_server_errors_are_retried() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [200, 201, 202, 301, 400, 401, 403, 404, 405, 409, 413, 416] {
            assert!(!retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[test]
    fn retry_after_is_seconds_capped_at_a_minute() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("86400"), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    fn policy(tries: u32) -> Policy {
        Policy {
            tries,
            timeout: Duration::from_secs(1),
            shell: Shell::discard(),
        }
    }

    #[test]
    fn retry_stops_at_success_at_a_fatal_error_and_after_the_tries() {
        let calls = Cell::new(0);
        let again = || Failure::Retry {
            reason: "503".into(),
            after: Some(Duration::ZERO),
        };
        let v = retry(&policy(5), "r", "p", "do it", || {
            calls.set(calls.get() + 1);
            if calls.get() < 3 { Err(again()) } else { Ok(7) }
        });
        assert_eq!((v.unwrap(), calls.get()), (7, 3));

        calls.set(0);
        let e = retry(&policy(5), "r", "p", "do it", || -> Result<(), Failure> {
            calls.set(calls.get() + 1);
            Err(Failure::Fatal(anyhow!("no")))
        });
        assert_eq!((e.unwrap_err().to_string(), calls.get()), ("no".into(), 1));

        calls.set(0);
        let e = retry(
            &policy(3),
            "reg",
            "repo",
            "do it",
            || -> Result<(), Failure> {
                calls.set(calls.get() + 1);
                Err(again())
            },
        )
        .unwrap_err()
        .to_string();
        assert_eq!(calls.get(), 3);
        assert!(
            e.starts_with(
                "could not do it for repository repo at registry reg after 3 tries (last: 503)"
            ),
            "{e}"
        );
    }
}
