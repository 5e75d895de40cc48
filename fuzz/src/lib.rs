//! Checks shared by the fuzz targets.

/// An error as the tool prints it (src/main.rs prints `error: ` and this).
pub fn printed(e: &anyhow::Error) -> String {
    cargo_containerize::error_line(e)
}

/// What the tool prints must not carry control characters (terminal escapes, carriage
/// returns, NUL) from the input it quotes.
pub fn assert_printable(what: &str, msg: &str) {
    assert!(
        !msg.chars().any(char::is_control),
        "{what}: the message holds a control character: {msg:?}"
    );
}
