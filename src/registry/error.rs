//! A registry's refusal, typed (after go-containerregistry's `transport/error.go`): the HTTP
//! status and the first entry of the distribution spec's `{"errors": [{"code", "message"}]}`
//! body, with the spec's error codes as [`ErrorCode`]; and the one message a refused request
//! becomes, naming the server, the repository, what was refused and the remedy.

use super::transport::{ERROR_BODY_LIMIT, read_prefix, sanitize};
use anyhow::anyhow;
use reqwest::StatusCode;
use reqwest::blocking::Response;
use std::fmt;

/// The error codes of the OCI distribution spec (and Docker's `TOOMANYREQUESTS`); any other
/// code a registry sends is kept, sanitized, as `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    Other(String),
}

/// Each known code and its spelling on the wire.
const CODES: [(ErrorCode, &str); 14] = [
    (ErrorCode::BlobUnknown, "BLOB_UNKNOWN"),
    (ErrorCode::BlobUploadInvalid, "BLOB_UPLOAD_INVALID"),
    (ErrorCode::BlobUploadUnknown, "BLOB_UPLOAD_UNKNOWN"),
    (ErrorCode::DigestInvalid, "DIGEST_INVALID"),
    (ErrorCode::ManifestBlobUnknown, "MANIFEST_BLOB_UNKNOWN"),
    (ErrorCode::ManifestInvalid, "MANIFEST_INVALID"),
    (ErrorCode::ManifestUnknown, "MANIFEST_UNKNOWN"),
    (ErrorCode::NameInvalid, "NAME_INVALID"),
    (ErrorCode::NameUnknown, "NAME_UNKNOWN"),
    (ErrorCode::SizeInvalid, "SIZE_INVALID"),
    (ErrorCode::Unauthorized, "UNAUTHORIZED"),
    (ErrorCode::Denied, "DENIED"),
    (ErrorCode::Unsupported, "UNSUPPORTED"),
    (ErrorCode::TooManyRequests, "TOOMANYREQUESTS"),
];

impl ErrorCode {
    /// The code a registry sent (already sanitized).
    pub fn parse(code: &str) -> ErrorCode {
        CODES
            .iter()
            .find(|(_, wire)| *wire == code)
            .map_or_else(|| ErrorCode::Other(code.to_string()), |(c, _)| c.clone())
    }

    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Other(s) => s,
            known => CODES
                .iter()
                .find(|(c, _)| c == known)
                .map_or("", |(_, wire)| wire),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A registry's refusal, typed: the status, and the `errors[0]` code and message of its JSON
/// body (read up to 64 KiB; remote text sanitized).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct RegistryError {
    pub status: StatusCode,
    pub code: Option<ErrorCode>,
    pub message: Option<String>,
}

impl RegistryError {
    /// Reads the refusal from an answer (its body up to 64 KiB).
    pub fn read(resp: Response) -> RegistryError {
        let status = resp.status();
        RegistryError::parse(status, &read_prefix(resp, ERROR_BODY_LIMIT))
    }

    /// The refusal a `status` answer with `body` makes. A body that is not the spec's JSON
    /// leaves code and message empty.
    pub fn parse(status: StatusCode, body: &[u8]) -> RegistryError {
        let first = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("errors")?.get(0).cloned());
        let field = |k: &str| {
            first
                .as_ref()
                .and_then(|e| e.get(k)?.as_str().map(sanitize))
                .filter(|s| !s.is_empty())
        };
        RegistryError {
            status,
            code: field("code").map(|c| ErrorCode::parse(&c)),
            message: field("message"),
        }
    }

    /// 408, 429 and 5xx: the registry may answer otherwise on another try.
    pub fn retryable(&self) -> bool {
        retryable_status(self.status)
    }

    /// `STATUS[: CODE MESSAGE]`, as messages quote it.
    fn describe(&self) -> String {
        let detail: Vec<&str> = self
            .code
            .iter()
            .map(ErrorCode::as_str)
            .chain(self.message.as_deref())
            .collect();
        if detail.is_empty() {
            self.status.to_string()
        } else {
            format!("{}: {}", self.status, detail.join(" "))
        }
    }
}

/// 408, 429 and 5xx: the registry may answer otherwise on another try. Any other status is
/// the caller's to judge.
pub fn retryable_status(s: StatusCode) -> bool {
    s == StatusCode::REQUEST_TIMEOUT || s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error()
}

/// What a refused request was for, to name it and give the remedy.
pub struct Refusal<'a> {
    /// The registry as the user named it.
    pub registry: &'a str,
    pub repo: &'a str,
    /// Which credentials were sent ([`super::auth::Credential::describe`]).
    pub credential: &'a str,
    /// Whether the request was a push (else a pull): the remedy for a 403 differs.
    pub push: bool,
    /// Whether the answer came from the registry's own origin (else from where it sent the
    /// request: an upload Location, a redirect, its token service).
    pub from_registry: bool,
}

impl Refusal<'_> {
    /// The error for a refused request: registry, repository, what, and the remedy.
    pub fn error(&self, resp: Response, what: &str) -> anyhow::Error {
        let who = if self.from_registry {
            format!("registry {}", self.registry)
        } else {
            format!(
                "{}, where registry {} sent the request,",
                resp.url().origin().ascii_serialization(),
                self.registry
            )
        };
        let reason = RegistryError::read(resp);
        let (reg, repo) = (self.registry, self.repo);
        let remedy = match reason.status {
            StatusCode::UNAUTHORIZED => format!(
                "log in with `docker login {reg}` (or `podman login {reg}`), or pass --username and --password-stdin ({} were used)",
                self.credential
            ),
            StatusCode::FORBIDDEN if self.push => format!(
                "the credentials may not push to {repo}; check the repository name and that the token may write packages"
            ),
            StatusCode::FORBIDDEN => format!(
                "the credentials may not pull from {repo}; check the repository name and that the token may read packages"
            ),
            StatusCode::NOT_FOUND => {
                format!("check that the repository {repo} exists and its name is right")
            }
            _ => "check the image reference and the registry's logs".to_string(),
        };
        anyhow!("{who} refused {what} for repository {repo} ({reason}); {remedy}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_specs_error_body() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}},{"code":"DENIED"}]}"#;
        let e = RegistryError::parse(StatusCode::NOT_FOUND, body);
        assert_eq!(e.code, Some(ErrorCode::ManifestUnknown));
        assert_eq!(e.message.as_deref(), Some("manifest unknown"));
        assert_eq!(
            e.to_string(),
            "404 Not Found: MANIFEST_UNKNOWN manifest unknown"
        );
        assert!(!e.retryable());
    }

    #[test]
    fn unknown_codes_are_kept_and_remote_text_is_sanitized() {
        let body = "{\"errors\":[{\"code\":\"WEIRD\\u001b[31m\",\"message\":\"a\\nb\"}]}";
        let e = RegistryError::parse(StatusCode::TOO_MANY_REQUESTS, body.as_bytes());
        assert_eq!(e.code, Some(ErrorCode::Other("WEIRD [31m".into())));
        assert_eq!(e.message.as_deref(), Some("a b"));
        assert!(e.retryable());
        for (code, wire) in &CODES {
            assert_eq!(ErrorCode::parse(wire), *code);
            assert_eq!(code.as_str(), *wire);
        }
    }

    #[test]
    fn a_body_that_is_not_the_specs_json_is_the_status_alone() {
        for body in [
            &b"<html>502</html>"[..],
            b"",
            br#"{"errors":[]}"#,
            br#"{"errors":[{"code":""}]}"#,
        ] {
            let e = RegistryError::parse(StatusCode::BAD_GATEWAY, body);
            assert_eq!((e.code.clone(), e.message.clone()), (None, None));
            assert_eq!(e.to_string(), "502 Bad Gateway");
            assert!(e.retryable());
        }
    }
}
