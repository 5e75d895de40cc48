//! The one place that prints to stderr (cargo's `core/shell.rs` is the model): cargo-style
//! right-aligned status lines, warnings, errors, `-v` detail and timings, and the verbosity and
//! colour they obey. Every stage says what it does through these functions, never through
//! `eprintln!`, so `-q`, `-v`, `--message-format json`, `CARGO_TERM_COLOR` / `NO_COLOR` and
//! `CARGO_CONTAINERIZE_TIMINGS` mean the same everywhere.
//!
//! The state is process-wide (set once by the command line, read from any thread: the push's
//! upload workers and the layer thread print too); a library caller that never sets it gets
//! the normal verbosity without colour.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// `-q` (or JSON on stdout): errors and warnings only.
    Quiet = 0,
    Normal = 1,
    /// `-v`: also the cargo command line, cache hits and misses, registry requests.
    Verbose = 2,
}

/// `--color`-like choice, from `CARGO_TERM_COLOR` (cargo's variable, so one setting covers
/// cargo's output and ours) and `NO_COLOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorChoice {
    Always,
    Never,
    /// Colour when stderr is a terminal.
    Auto,
}

impl ColorChoice {
    /// From the environment: `NO_COLOR` (any value) turns colour off; else `CARGO_TERM_COLOR`
    /// = always | never | auto; else auto.
    pub fn from_env() -> ColorChoice {
        if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            return ColorChoice::Never;
        }
        match std::env::var("CARGO_TERM_COLOR").as_deref() {
            Ok("always") => ColorChoice::Always,
            Ok("never") => ColorChoice::Never,
            _ => ColorChoice::Auto,
        }
    }
}

static VERBOSITY: AtomicU8 = AtomicU8::new(Verbosity::Normal as u8);
static COLOR: AtomicBool = AtomicBool::new(false);
static TIMINGS: OnceLock<Option<Instant>> = OnceLock::new();
/// One line at a time: lines from several threads never interleave.
static LOCK: Mutex<()> = Mutex::new(());

/// Sets the verbosity and colour for the rest of the process (the command line calls it once
/// per command).
pub fn configure(verbosity: Verbosity, color: ColorChoice) {
    VERBOSITY.store(verbosity as u8, Ordering::Relaxed);
    let on = match color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => std::io::stderr().is_terminal(),
    };
    COLOR.store(on, Ordering::Relaxed);
}

pub fn verbosity() -> Verbosity {
    match VERBOSITY.load(Ordering::Relaxed) {
        0 => Verbosity::Quiet,
        1 => Verbosity::Normal,
        _ => Verbosity::Verbose,
    }
}

pub fn is_quiet() -> bool {
    verbosity() == Verbosity::Quiet
}

pub fn is_verbose() -> bool {
    verbosity() == Verbosity::Verbose
}

/// Whether status lines are coloured (for a progress bar's own style).
pub fn color() -> bool {
    COLOR.load(Ordering::Relaxed)
}

const GREEN: &str = "\x1b[1;32m";
const CYAN: &str = "\x1b[1;36m";
const YELLOW: &str = "\x1b[1;33m";
const RED: &str = "\x1b[1;31m";
const RESET: &str = "\x1b[0m";

fn paint(code: &str, text: &str) -> String {
    if color() {
        format!("{code}{text}{RESET}")
    } else {
        text.to_string()
    }
}

/// A status line as printed: the verb right-aligned in 12 columns, then the message.
pub fn status_line(verb: &str, message: &str) -> String {
    format!("{} {message}", paint(GREEN, &format!("{verb:>12}")))
}

/// Every line the tool writes on stderr: URLs in it lose their credentials
/// ([`super::public_url::scrub_text`]), whoever composed the message.
fn print(line: &str) {
    let line = super::public_url::scrub_text(line);
    let _guard = LOCK.lock();
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// `   Verb message`, unless quiet.
pub fn status(verb: &str, message: impl AsRef<str>) {
    if !is_quiet() {
        print(&status_line(verb, message.as_ref()));
    }
}

/// A status line shown at every verbosity: a wait on something outside the process, which
/// must say what it waits for even with -q.
pub fn notice(verb: &str, message: impl AsRef<str>) {
    print(&status_line(verb, message.as_ref()));
}

/// A status line handed to `sink` instead of stderr (a progress bar prints it above its
/// bars), unless quiet.
pub fn status_to(verb: &str, message: &str, sink: impl FnOnce(String)) {
    if !is_quiet() {
        let line = status_line(verb, message);
        sink(super::public_url::scrub_text(&line).into_owned());
    }
}

/// Detail shown with `-v` only: `   Verb message` in another colour.
pub fn verbose(verb: &str, message: impl AsRef<str>) {
    if is_verbose() {
        print(&format!(
            "{} {}",
            paint(CYAN, &format!("{verb:>12}")),
            message.as_ref()
        ));
    }
}

/// `warning: message`, at every verbosity (a warning says something was repaired or passed
/// over; -q hides progress, not that).
pub fn warn(message: impl AsRef<str>) {
    print(&format!(
        "{}: {}",
        paint(YELLOW, "warning"),
        message.as_ref()
    ));
}

/// `error: message`, always; the one line a failed run ends with.
pub fn error(message: impl AsRef<str>) {
    print(&format!("{}: {}", paint(RED, "error"), message.as_ref()));
}

/// Another program's own output (cargo's), as it wrote it but for the credentials in its URLs
/// ([`super::public_url::scrub_text`]; cargo prints a git dependency's URL as written), at
/// every verbosity. Give it whole lines: a URL cut in two is not recognised.
pub fn passthrough(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let text = super::public_url::scrub_text(&text);
    let _guard = LOCK.lock();
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// With `CARGO_CONTAINERIZE_TIMINGS` set: `Timing STAGE at N ms` since the first call.
pub fn timing(stage: &str) {
    let start = TIMINGS
        .get_or_init(|| std::env::var_os("CARGO_CONTAINERIZE_TIMINGS").map(|_| Instant::now()));
    if let Some(start) = start {
        print(&status_line(
            "Timing",
            &format!(
                "{stage} at {:.1} ms",
                start.elapsed().as_secs_f64() * 1000.0
            ),
        ));
    }
}

/// Starts the timings clock (the first stage's time counts from here).
pub fn start_timings() {
    TIMINGS.get_or_init(|| std::env::var_os("CARGO_CONTAINERIZE_TIMINGS").map(|_| Instant::now()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_right_aligned_and_plain_without_colour() {
        assert_eq!(status_line("Wrote", "x"), "       Wrote x");
        assert_eq!(status_line("Downloading", "y"), " Downloading y");
    }
}
