//! The URL scrubber (src/util/public_url.rs): every URL that leaves the machine goes through
//! it, so it must never panic, must be a fixed point, and what it returns must hold no
//! userinfo and no secret-looking parameter.

#![no_main]

use cargo_containerize::util::public_url::{is_secret_param, scrub, scrub_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(given) = std::str::from_utf8(data) else {
        return;
    };
    let once = scrub(given);
    let twice = scrub(&once);
    assert_eq!(twice, once, "not a fixed point: {given:?}");
    if let Ok(u) = url::Url::parse(&once)
        && u.has_host()
    {
        assert!(
            u.username().is_empty() && u.password().is_none(),
            "userinfo kept: {given:?} → {once:?}"
        );
        for (k, v) in u.query_pairs() {
            assert!(
                !is_secret_param(&k, &v),
                "secret parameter {k}={v} kept: {given:?} → {once:?}"
            );
        }
    }
    // Free text: never panics, and a URL alone is scrubbed as the URL is.
    let text = scrub_text(given);
    if given.contains("://")
        && !given.contains(|c: char| c.is_whitespace() || "\"'`<>()[]{}|\\^".contains(c))
        && given
            .split("://")
            .next()
            .is_some_and(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c)))
        && given.matches("://").count() == 1
    {
        assert_eq!(text, once, "text and URL differ: {given:?}");
    }
});
