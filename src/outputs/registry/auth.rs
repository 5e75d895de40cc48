//! Registry credentials and the token dance.
//!
//! Credentials come from the command line, then docker's config.json (auths, credHelpers,
//! credsStore — read by the docker_credential crate), then podman's auth.json. The
//! `WWW-Authenticate` challenge decides what is sent: Basic credentials as they are, or a
//! Bearer token from the realm (with an identity token exchanged through the OAuth2
//! refresh_token grant). No secret is ever formatted into a message: [`Secret`] prints as
//! `<redacted>`.

use anyhow::{Result, bail};
use std::collections::BTreeMap;
use std::fmt;

/// A string that never shows itself in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Anonymous,
    Basic {
        username: String,
        password: Secret,
    },
    /// A docker identity token (a refresh token for the realm's OAuth2 endpoint).
    IdentityToken(Secret),
}

impl Credential {
    /// Where it came from, for messages (never the secret itself).
    pub fn describe(&self) -> &'static str {
        match self {
            Credential::Anonymous => "no credentials",
            Credential::Basic { .. } => "username and password",
            Credential::IdentityToken(_) => "an identity token",
        }
    }
}

/// The config.json keys docker uses for Docker Hub.
fn server_keys(registry: &str) -> Vec<String> {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
        ],
        other => vec![
            other.into(),
            format!("https://{other}"),
            format!("http://{other}"),
        ],
    }
}

/// Looks the registry up in docker's and podman's credential stores.
pub fn lookup(registry: &str) -> Result<Credential> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    for key in server_keys(registry) {
        for source in [
            docker_credential::get_credential,
            docker_credential::get_podman_credential,
        ] {
            match source(&key) {
                Ok(DockerCredential::UsernamePassword(username, password)) => {
                    return Ok(Credential::Basic {
                        username,
                        password: Secret::new(password),
                    });
                }
                Ok(DockerCredential::IdentityToken(t)) => {
                    return Ok(Credential::IdentityToken(Secret::new(t)));
                }
                Err(E::HelperFailure { helper, .. }) => {
                    // The helper's own output may hold secrets: name the helper only.
                    bail!(
                        "the credential helper docker-credential-{helper} failed for {registry}; run `docker-credential-{helper} list` to check it, or log in again"
                    )
                }
                Err(E::HelperCommunicationError) => bail!(
                    "a credential helper configured for {registry} could not be run; install it or remove it from your docker config.json"
                ),
                Err(E::CredentialDecodingError | E::MalformedHelperResponse) => bail!(
                    "the stored credentials for {registry} cannot be decoded; log in again with `docker login {registry}`"
                ),
                Err(_) => {} // nothing configured here: try the next source
            }
        }
    }
    Ok(Credential::Anonymous)
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.remove("realm")?,
            service: params.remove("service"),
            scope: params.remove("scope"),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:o/a:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://ghcr.io/token".into(),
                service: Some("ghcr.io".into()),
                scope: Some("repository:o/a:pull,push".into()),
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
    }

    #[test]
    fn secrets_never_print() {
        let c = Credential::Basic {
            username: "u".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
