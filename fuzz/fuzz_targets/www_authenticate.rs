//! The WWW-Authenticate parser (src/outputs/registry/auth.rs), fed what a registry's 401 can
//! carry: the header's bytes, through the same `HeaderValue::to_str` the client uses.

#![no_main]

use cargo_containerize::outputs::registry::auth::{Challenge, parse_challenge};
use libfuzzer_sys::fuzz_target;

/// A challenge written back as a header, every parameter a quoted-string (RFC 9110 §5.6.4).
fn header(c: &Challenge) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    match c {
        Challenge::Basic => "Basic realm=\"r\"".to_string(),
        Challenge::Bearer {
            realm,
            service,
            scope,
        } => {
            let mut h = format!("Bearer realm={}", quote(realm));
            if let Some(s) = service {
                h += &format!(",service={}", quote(s));
            }
            if let Some(s) = scope {
                h += &format!(",scope={}", quote(s));
            }
            h
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Any text, as the parser is public; then what the client really passes it.
    if let Ok(text) = std::str::from_utf8(data) {
        check(text);
    }
    if let Ok(value) = http::HeaderValue::from_bytes(data)
        && let Ok(text) = value.to_str()
    {
        check(text);
    }
});

fn check(text: &str) {
    let Some(challenge) = parse_challenge(text) else {
        return;
    };
    let scheme = text
        .trim()
        .split(' ')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match &challenge {
        Challenge::Basic => assert_eq!(scheme, "basic"),
        Challenge::Bearer { .. } => assert_eq!(scheme, "bearer"),
    }
    // Written back as a header, it parses to the same challenge.
    let again = header(&challenge);
    assert_eq!(
        parse_challenge(&again).as_ref(),
        Some(&challenge),
        "{again:?} does not parse back"
    );
}
