//! URLs that leave the machine: the one place that takes secrets out of them.
//!
//! A URL a user wrote may carry a credential: `git = "https://alice:ghp_…@host/o/r"`, a
//! `repository` with `?token=…`, a registry index behind a signed link. Everything the tool
//! publishes (SBOMs, provenance, labels, annotations, generated files) and everything it says
//! (its messages, cargo's output it passes on) goes through [`PublicUrl`] / [`scrub`] /
//! [`scrub_text`], so a feature that adds a URL later gets the same rule.
//!
//! The rule:
//! - the userinfo (user and password) is dropped: `https://alice:tok@host/p` → `https://host/p`,
//!   also when the text has no scheme (`alice:tok@host/p` → `host/p`);
//! - a query or fragment parameter is dropped when its name (case-insensitive, percent-decoded)
//!   starts with `x-amz-` or `x-goog-` (signed cloud-storage links), or has a word (split at
//!   anything but letters and digits) that is one of [`SECRET_WORDS`], or contains one of
//!   [`SECRET_PARTS`] (`access_token`, `private-token`, `apiKey`, `sig`, `X-Amz-Signature`,
//!   `password`, `client_secret`, `AWSAccessKeyId`…), or when its value starts with a known
//!   token prefix ([`TOKEN_PREFIXES`]: `ghp_`, `github_pat_`, `glpat-`…);
//! - a kept parameter whose value is itself a URL (a purl's `vcs_url`, a `redirect=`) has that
//!   URL scrubbed by the same rule;
//! - everything else is kept byte for byte, and a URL with nothing to drop is returned exactly
//!   as given (so digests of documents without secrets do not change).
//!
//! `url::Url` parses URLs that have a host; the rest (scp-like `git@host:o/r`, `host/path`
//! without a scheme, `pkg:` purls) go through the same rule on their text, since no crate
//! parses those forms. Query strings are filtered on their text rather than re-encoded by
//! `url`, so the parameters that stay are unchanged.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

/// Words that make a parameter name secret when the name has them as a whole word.
pub const SECRET_WORDS: &[&str] = &[
    "auth", "bearer", "code", "jwt", "key", "pass", "pat", "pwd", "session", "sig", "sid",
];
/// Parts that make a parameter name secret wherever they appear in it.
pub const SECRET_PARTS: &[&str] = &[
    "token",
    "secret",
    "passw",
    "signature",
    "credential",
    "apikey",
    "api_key",
    "accesskey",
    "privatekey",
    "sessionid",
    "authorization",
];
/// Prefixes of well-known token formats: a parameter whose value starts with one is dropped
/// whatever its name.
pub const TOKEN_PREFIXES: &[&str] = &[
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "npm_",
    "pypi-",
];

/// A URL with its secrets taken out by [`scrub`]: the only kind of URL a document, label,
/// annotation or generated file takes. It can only be made through the rule (also when read
/// back from a cache), so holding one is the proof.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicUrl(String);

impl PublicUrl {
    pub fn new(given: &str) -> PublicUrl {
        PublicUrl(scrub(given).into_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL in a wider form, e.g. `git+URL@COMMIT`: `prefix` and `suffix` are the caller's
    /// syntax and a commit, not text that carries credentials. Not parsed again: `URL@COMMIT`
    /// read as a URL could take the host for a user name.
    pub fn wrapped(&self, prefix: &str, suffix: &str) -> PublicUrl {
        PublicUrl(format!("{prefix}{}{suffix}", self.0))
    }
}

impl fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for PublicUrl {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for PublicUrl {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for PublicUrl {
    fn from(given: &str) -> PublicUrl {
        PublicUrl::new(given)
    }
}

impl From<PublicUrl> for String {
    fn from(u: PublicUrl) -> String {
        u.0
    }
}

impl Serialize for PublicUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PublicUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PublicUrl, D::Error> {
        Ok(PublicUrl::new(&String::deserialize(d)?))
    }
}

/// How deep a URL inside a parameter of a URL is followed.
const MAX_DEPTH: usize = 3;

/// `given` without its userinfo and secret-looking parameters (the rule in the module's
/// documentation); `given` itself when there is nothing to drop.
pub fn scrub(given: &str) -> Cow<'_, str> {
    scrub_at(given, 0)
}

/// How many times a URL is parsed again after a change (see [`scrub_at`]).
const MAX_PASSES: usize = 4;

/// The rule, applied until nothing changes (at most [`MAX_PASSES`] times): parsing the result
/// of one pass may give meaning to what the text hid, so the result is a fixed point.
fn scrub_at(given: &str, depth: usize) -> Cow<'_, str> {
    let Cow::Owned(mut out) = scrub_pass(given, depth) else {
        return Cow::Borrowed(given);
    };
    for _ in 0..MAX_PASSES {
        match scrub_pass(&out, depth) {
            Cow::Borrowed(_) => break,
            Cow::Owned(again) => out = again,
        }
    }
    Cow::Owned(out)
}

/// One pass of the rule.
fn scrub_pass(given: &str, depth: usize) -> Cow<'_, str> {
    if let Ok(mut u) = url::Url::parse(given)
        && u.has_host()
    {
        let mut changed = false;
        if !u.username().is_empty() || u.password().is_some() {
            // Cannot fail on a URL with a host.
            let _ = u.set_username("");
            let _ = u.set_password(None);
            changed = true;
        }
        if let Some(q) = u.query()
            && let Cow::Owned(kept) = filter_params(q, Bare::Name, depth)
        {
            u.set_query((!kept.is_empty()).then_some(kept.as_str()));
            changed = true;
        }
        if let Some(f) = u.fragment()
            && let Cow::Owned(kept) = filter_params(f, Bare::Value, depth)
        {
            u.set_fragment((!kept.is_empty()).then_some(kept.as_str()));
            changed = true;
        }
        return if changed {
            Cow::Owned(String::from(u))
        } else {
            Cow::Borrowed(given)
        };
    }
    scrub_text_form(given, depth)
}

/// The rule on text `url::Url` does not take as a URL with a host.
fn scrub_text_form(given: &str, depth: usize) -> Cow<'_, str> {
    // Split off `#fragment` and `?query`; the rest is `[scheme://]authority[/path]`.
    let (rest, fragment) = match given.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (given, None),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (scheme, after) = match rest.find("://") {
        Some(i) => rest.split_at(i + 3),
        None => ("", rest),
    };
    let authority_end = after.find('/').unwrap_or(after.len());
    let mut changed = false;
    let mut out = String::with_capacity(given.len());
    out.push_str(scheme);
    match after[..authority_end].rfind('@') {
        Some(at) => {
            out.push_str(&after[at + 1..]);
            changed = true;
        }
        None => out.push_str(after),
    }
    for (sep, part, bare) in [('?', query, Bare::Name), ('#', fragment, Bare::Value)] {
        let Some(part) = part else { continue };
        let kept = filter_params(part, bare, depth);
        if let Cow::Owned(_) = kept {
            changed = true;
        }
        if !kept.is_empty() {
            out.push(sep);
            out.push_str(&kept);
        }
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(given)
    }
}

/// What a part without `=` is.
#[derive(Clone, Copy)]
enum Bare {
    /// In a query, a name with an empty value (`?token` is `token=`, as `url` reads it).
    Name,
    /// In a fragment, a value: a git commit, cargo's `name@version`, secret only by prefix.
    Value,
}

/// `a=1&token=x&b=2` → `a=1&b=2`: the `&`-separated parameters that are not secret, each as
/// written (a nested URL in a kept value scrubbed).
fn filter_params(params: &str, bare: Bare, depth: usize) -> Cow<'_, str> {
    let mut changed = false;
    let mut kept: Vec<Cow<'_, str>> = Vec::new();
    for part in params.split('&') {
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => match bare {
                Bare::Name => (decode(part), String::new()),
                Bare::Value => (String::new(), decode(part)),
            },
        };
        if is_secret_param(&key, &value) {
            changed = true;
            continue;
        }
        if depth < MAX_DEPTH
            && value.contains("://")
            && let Cow::Owned(clean) = scrub_at(&value, depth + 1)
        {
            let raw_key = part.split_once('=').map_or(part, |(k, _)| k);
            let encoded: String = url::form_urlencoded::byte_serialize(clean.as_bytes()).collect();
            kept.push(Cow::Owned(format!("{raw_key}={encoded}")));
            changed = true;
            continue;
        }
        kept.push(Cow::Borrowed(part));
    }
    if changed {
        Cow::Owned(kept.join("&"))
    } else {
        Cow::Borrowed(params)
    }
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Whether a parameter `key=value` looks like it carries a secret (the rule in the module's
/// documentation).
pub fn is_secret_param(key: &str, value: &str) -> bool {
    let key = key.to_lowercase();
    if key.starts_with("x-amz-") || key.starts_with("x-goog-") {
        return true;
    }
    if key
        .split(|c: char| !c.is_alphanumeric())
        .any(|w| SECRET_WORDS.contains(&w))
    {
        return true;
    }
    if SECRET_PARTS.iter().any(|p| key.contains(p)) {
        return true;
    }
    TOKEN_PREFIXES.iter().any(|p| value.starts_with(p))
}

/// Free text (a message, cargo's output) with every `scheme://…` URL in it scrubbed. A URL
/// runs from its scheme to the first whitespace, quote, bracket or backtick.
pub fn scrub_text(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let start = rest[..i]
            .char_indices()
            .rev()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || "+.-".contains(c)))
            .map_or(0, |(p, c)| p + c.len_utf8());
        let end = rest[i..]
            .find(|c: char| c.is_whitespace() || "\"'`<>()[]{}|\\^".contains(c))
            .map_or(rest.len(), |e| i + e);
        out.push_str(&rest[..start]);
        let url = &rest[start..end];
        let clean = scrub(url);
        if let Cow::Owned(_) = clean {
            changed = true;
        }
        out.push_str(&clean);
        rest = &rest[end..];
    }
    out.push_str(rest);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn same(given: &str) {
        assert!(
            matches!(scrub(given), Cow::Borrowed(_)),
            "{given:?} changed"
        );
    }

    #[test]
    fn userinfo_is_dropped() {
        assert_eq!(
            scrub("https://alice:ghp_TOKEN@git.example.com/o/gitdep"),
            "https://git.example.com/o/gitdep"
        );
        assert_eq!(
            scrub("git+https://alice:ghp_TOKEN@git.example.com/o/gitdep?branch=main#0123abc"),
            "git+https://git.example.com/o/gitdep?branch=main#0123abc"
        );
        assert_eq!(
            scrub("ssh://git@github.com/o/r.git"),
            "ssh://github.com/o/r.git"
        );
        assert_eq!(
            scrub("sparse+https://u:p@crates.example.com/index/"),
            "sparse+https://crates.example.com/index/"
        );
        // No scheme, or a form `url` does not parse with a host.
        assert_eq!(scrub("alice:tok@github.com/o/r"), "github.com/o/r");
        assert_eq!(scrub("git@github.com:o/r.git"), "github.com:o/r.git");
    }

    #[test]
    fn secret_parameters_are_dropped_and_others_kept_as_written() {
        assert_eq!(
            scrub("https://github.com/o/r?token=abc&tab=readme"),
            "https://github.com/o/r?tab=readme"
        );
        assert_eq!(
            scrub(
                "https://h/p?a=%2F1&private_token=x&access_token=y&X-Amz-Signature=z&sig=q&apiKey=k"
            ),
            "https://h/p?a=%2F1"
        );
        assert_eq!(scrub("https://h/p?token=1"), "https://h/p");
        assert_eq!(scrub("https://h/p#access_token=1"), "https://h/p");
        assert_eq!(scrub("https://h/p?ref=ghp_abc"), "https://h/p");
        assert_eq!(
            scrub("https://h/x?X-Goog-Credential=a&X-Goog-Date=b&keep=1"),
            "https://h/x?keep=1"
        );
        assert_eq!(scrub("host/p?password=1&x=2"), "host/p?x=2");
        // A bare query part is a name (found by fuzzing: `?x-amz-o/rin` was kept); a bare
        // fragment part is a value (a commit, cargo's `key@0.1.0`) and stays.
        assert_eq!(
            scrub("git+https://u:p@h/o/r?x-amz-o/rin#0123abc"),
            "git+https://h/o/r#0123abc"
        );
        assert_eq!(scrub("https://h/p?token&a=1"), "https://h/p?a=1");
        same("git+https://h/o/r#key@0.1.0");
    }

    #[test]
    fn a_url_inside_a_parameter_is_scrubbed() {
        let purl = "pkg:cargo/gitdep@0.1.0?vcs_url=git%2Bhttps://alice:ghp_T%40git.example.com/o/gitdep%40abc";
        let out = scrub(purl);
        assert!(!out.contains("ghp_T"), "{out}");
        assert!(out.starts_with("pkg:cargo/gitdep@0.1.0?vcs_url="), "{out}");
    }

    #[test]
    fn urls_without_secrets_are_returned_as_given() {
        for u in [
            "https://github.com/rust-lang/crates.io-index",
            "https://github.com/o/r",
            "HTTPS://GitHub.com/o/r/",
            "git+https://github.com/o/r?branch=main#0123456789abcdef",
            "pkg:cargo/serde@1.0.0",
            "pkg:cargo/x@1?vcs_url=git%2Bhttps://github.com/o/r%40abc",
            "pkg:oci/app@sha256%3Aab?arch=amd64&repository_url=ghcr.io/o/app&tag=1.0.0",
            "https://example.com/?keyboard=1&monkey=2",
            "github.com/o/r",
            "not a url at all",
            "",
        ] {
            same(u);
        }
    }

    #[test]
    fn text_has_every_url_scrubbed() {
        let line = "   Compiling gitdep v0.1.0 (https://alice:ghp_T@git.example.com/o/gitdep?branch=main#01234567)";
        assert_eq!(
            scrub_text(line),
            "   Compiling gitdep v0.1.0 (https://git.example.com/o/gitdep?branch=main#01234567)"
        );
        assert_eq!(
            scrub_text("see `https://a:b@h/x` and 'http://h/y?token=1'."),
            "see `https://h/x` and 'http://h/y'."
        );
        // A scheme right after a multi-byte character (found by fuzzing: it panicked).
        assert_eq!(scrub_text("gi獪t+ittps://u:p@h/x"), "gi獪t+ittps://h/x");
        assert!(matches!(
            scrub_text("no urls: a@b, x=1, https://h/p ok"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn deserializing_scrubs() {
        let u: PublicUrl = serde_json::from_str(r#""https://u:p@h/x?token=1""#).unwrap();
        assert_eq!(u.as_str(), "https://h/x");
        assert_eq!(serde_json::to_string(&u).unwrap(), r#""https://h/x""#);
    }

    /// The property the fuzz target checks, over generated credentials: no user, password or
    /// secret parameter survives, and scrubbing is a fixed point.
    #[test]
    fn no_generated_secret_survives() {
        let users = ["alice", "x-access-token", "oauth2", "", "a%40b"];
        let secrets = [
            "ghp_Tok3n",
            "p%3Ass",
            "glpat-XYZ",
            "s3cr3t!",
            "pw:with:colons",
        ];
        let hosts = ["git.example.com", "127.0.0.1:8080", "[::1]:5000", "h"];
        let keys = [
            "token",
            "Private-Token",
            "access_token",
            "X-Amz-Security-Token",
            "sig",
            "client_secret",
            "password",
        ];
        for scheme in ["https://", "git+https://", "ssh://", "sparse+https://", ""] {
            for u in users {
                for s in secrets {
                    for h in hosts {
                        for k in keys {
                            let url = format!("{scheme}{u}:{s}@{h}/o/r?a=1&{k}={s}SECRET&b=2#c");
                            let out = scrub(&url);
                            assert!(!out.contains(s), "{url} → {out}");
                            assert!(!out.contains("SECRET"), "{url} → {out}");
                            if !u.is_empty() {
                                assert!(!out.contains(&format!("{u}:")), "{url} → {out}");
                            }
                            assert!(out.contains("a=1") && out.contains("b=2"), "{url} → {out}");
                            assert_eq!(scrub(&out), out, "not a fixed point: {url}");
                        }
                    }
                }
            }
        }
    }
}
