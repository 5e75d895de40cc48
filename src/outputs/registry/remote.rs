//! Everything a registry sends is hostile until bounded: bodies are read through a cap (a
//! registry answering a 400 MB error page must not cost 400 MB), and any text of theirs that
//! reaches the terminal is stripped of control characters and cut short first.

use anyhow::{Result, bail};
use std::io::Read;

/// Error bodies: a registry's JSON error is a few hundred bytes.
pub const ERROR_BODY_LIMIT: u64 = 64 << 10;
/// Token responses: a JWT with its claims, a few KiB; 1 MiB is generous.
pub const TOKEN_BODY_LIMIT: u64 = 1 << 20;
/// Manifests: the distribution spec lets registries refuse manifests over 4 MiB.
pub const MANIFEST_BODY_LIMIT: u64 = 4 << 20;
/// Characters of remote text that reach a message.
const TEXT_LIMIT: usize = 200;

/// `limit` in the units a message shows (64 KiB, 4 MiB).
pub fn human_limit(limit: u64) -> String {
    if limit >= 1 << 20 && limit % (1 << 20) == 0 {
        format!("{} MiB", limit >> 20)
    } else if limit >= 1 << 10 && limit % (1 << 10) == 0 {
        format!("{} KiB", limit >> 10)
    } else {
        format!("{limit} bytes")
    }
}

/// Reads a body of at most `limit` bytes; a longer one (by its Content-Length or by what
/// arrives) is an error naming `what`, the host and the limit, and is never read past the
/// limit: the connection is dropped instead.
pub fn read_capped(
    mut body: impl Read,
    content_length: Option<u64>,
    limit: u64,
    what: &str,
    host: &str,
) -> Result<Vec<u8>> {
    let too_big = || {
        anyhow::anyhow!(
            "{what} from {host} is larger than {}, the most this tool reads; the registry (or a proxy in front of it) is misbehaving, check its address and logs",
            human_limit(limit)
        )
    };
    if content_length.is_some_and(|n| n > limit) {
        return Err(too_big());
    }
    let mut buf = Vec::new();
    (&mut body)
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| anyhow::anyhow!("reading {what} from {host}: {e}"))?;
    if buf.len() as u64 > limit {
        bail!(too_big());
    }
    Ok(buf)
}

/// Reads at most `limit` bytes of a body and keeps what fits: for error bodies, whose text
/// only explains a failure already known.
pub fn read_prefix(body: impl Read, limit: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = body.take(limit).read_to_end(&mut buf);
    buf
}

/// Remote text made safe to print: control characters (ANSI escapes, newlines, carriage
/// returns, C1 controls) and bidirectional overrides become spaces, runs of spaces collapse,
/// and the result is cut to 200 characters with an ellipsis.
pub fn sanitize(text: &str) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut last_space = true;
    for c in text.chars() {
        let c = if c.is_control() || is_bidi_control(c) {
            ' '
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        if count == TEXT_LIMIT {
            out.push('…');
            return out.trim_end().to_string();
        }
        last_space = c == ' ';
        out.push(c);
        count += 1;
    }
    out.trim_end().to_string()
}

/// Characters that reorder what a terminal shows (Trojan Source style).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_strips_escapes_newlines_and_caps() {
        let s = sanitize("\x1b[31mred\x1b[0m\nsecond\r\u{202E}line\u{9b}");
        assert!(!s.contains('\x1b') && !s.contains('\n') && !s.contains('\r'));
        assert!(!s.contains('\u{202E}') && !s.contains('\u{9b}'));
        assert_eq!(s, "[31mred [0m second line");
        let long = sanitize(&"x".repeat(10_000));
        assert!(long.chars().count() <= TEXT_LIMIT + 1 && long.ends_with('…'));
    }

    #[test]
    fn capped_reads_stop_at_the_limit() {
        let big = std::io::repeat(b'a').take(10 << 20);
        let e = read_capped(big, None, 1 << 20, "a token", "h:1").unwrap_err();
        assert!(e.to_string().contains("1 MiB"), "{e}");
        let e = read_capped(&b""[..], Some(5 << 20), 4 << 20, "a manifest", "h").unwrap_err();
        assert!(e.to_string().contains("4 MiB"), "{e}");
        assert_eq!(read_capped(&b"abc"[..], None, 3, "x", "h").unwrap(), b"abc");
        assert_eq!(read_prefix(std::io::repeat(b'a'), 10).len(), 10);
        assert_eq!(human_limit(64 << 10), "64 KiB");
    }
}
