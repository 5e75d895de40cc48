//! The one place that writes what the tool says (cargo's `core/shell.rs` is the model): on
//! stderr cargo-style right-aligned status lines, warnings, errors, `-v` detail, timings and
//! cargo's passed-on output; on stdout the results (the digest lines, a generated file, the
//! `--message-format json` object). A [`Shell`] is a value the run owns and lends as `&Shell`
//! (it locks inside, so the push's upload workers and the progress lines share it), so `-q`,
//! `-v`, `--color`, `--message-format json` and `CARGO_CONTAINERIZE_TIMINGS` mean the same
//! everywhere, and a test captures everything a run writes with [`Shell::from_write`].
//!
//! Colour is anstream's: styles are written as ANSI and [`anstream::AutoStream`] strips them
//! when colour is off, so one code path serves both.

use anstream::AutoStream;
use anstyle::{AnsiColor, Style};
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// `-q`: errors and warnings only.
    Quiet = 0,
    Normal = 1,
    /// `-v`: also the cargo command line, cache hits and misses, registry requests.
    Verbose = 2,
}

impl Verbosity {
    /// The verbosity of `-q` / `-v` (clap makes them exclusive).
    pub fn of_flags(quiet: bool, verbose: bool) -> Verbosity {
        if quiet {
            Verbosity::Quiet
        } else if verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        }
    }
}

/// `--color`'s values, cargo's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when stderr is a terminal (and the environment does not say otherwise).
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// The choice in force: the `--color` flag when given; else `NO_COLOR` (any non-empty
    /// value) turns colour off; else `CARGO_TERM_COLOR` = always | never (cargo's variable, so
    /// one setting covers cargo's output and ours); else anstream's rules for auto
    /// (`CLICOLOR_FORCE`, `CLICOLOR`, whether stderr is a terminal).
    pub fn resolve(flag: Option<ColorChoice>) -> anstream::ColorChoice {
        Self::resolve_with(flag, &|name| std::env::var(name).ok())
    }

    fn resolve_with(
        flag: Option<ColorChoice>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anstream::ColorChoice {
        let chosen = flag.unwrap_or_else(|| {
            if env("NO_COLOR").is_some_and(|v| !v.is_empty()) {
                return ColorChoice::Never;
            }
            match env("CARGO_TERM_COLOR").as_deref() {
                Some("always") => ColorChoice::Always,
                Some("never") => ColorChoice::Never,
                _ => ColorChoice::Auto,
            }
        });
        match chosen {
            ColorChoice::Auto => anstream::ColorChoice::Auto,
            ColorChoice::Always => anstream::ColorChoice::Always,
            ColorChoice::Never => anstream::ColorChoice::Never,
        }
    }
}

type Sink = Box<dyn Write + Send>;

/// What the tool writes, and the verbosity and colour it obeys. Lent as `&Shell`; a clone is
/// the same shell (same streams and locks), for a thread that outlives the borrow (the
/// background git query, the interrupt handler).
#[derive(Clone)]
pub struct Shell(std::sync::Arc<Inner>);

struct Inner {
    verbosity: Verbosity,
    /// Whether stderr gets colour (decided once, from the choice and the stream).
    color: bool,
    /// Whether stderr is a terminal (progress bars draw only there).
    err_terminal: bool,
    /// One line at a time on each stream: lines from several threads never interleave.
    err: Mutex<AutoStream<Sink>>,
    out: Mutex<Sink>,
    timings: OnceLock<Option<Instant>>,
    /// The keys of the warnings said once per run ([`Shell::warn_once`]).
    warned: Mutex<std::collections::BTreeSet<&'static str>>,
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell")
            .field("verbosity", &self.0.verbosity)
            .field("color", &self.0.color)
            .finish_non_exhaustive()
    }
}

const STATUS: Style = AnsiColor::Green.on_default().bold();
const DETAIL: Style = AnsiColor::Cyan.on_default().bold();
const WARNING: Style = AnsiColor::Yellow.on_default().bold();
const ERROR: Style = AnsiColor::Red.on_default().bold();

impl Shell {
    /// The process's stdout and stderr.
    pub fn new(verbosity: Verbosity, color: anstream::ColorChoice) -> Shell {
        let terminal = std::io::stderr().is_terminal();
        Shell::with_streams(
            Box::new(std::io::stdout()),
            Box::new(std::io::stderr()),
            verbosity,
            color,
            terminal,
        )
    }

    /// A shell writing to `out` (stdout's part) and `err` (stderr's part): a test captures a
    /// run's whole output this way. `Auto` colour is off for a sink that is not a terminal.
    pub fn from_write(
        out: Sink,
        err: Sink,
        verbosity: Verbosity,
        color: anstream::ColorChoice,
    ) -> Shell {
        Shell::with_streams(out, err, verbosity, color, false)
    }

    fn with_streams(
        out: Sink,
        err: Sink,
        verbosity: Verbosity,
        color: anstream::ColorChoice,
        err_terminal: bool,
    ) -> Shell {
        let err = AutoStream::new(err, color);
        Shell(std::sync::Arc::new(Inner {
            verbosity,
            color: err.current_choice() != anstream::ColorChoice::Never,
            err_terminal,
            err: Mutex::new(err),
            out: Mutex::new(out),
            timings: OnceLock::new(),
            warned: Mutex::new(std::collections::BTreeSet::new()),
        }))
    }

    /// A shell that writes nothing anywhere (a unit test whose code under test prints).
    pub fn discard() -> Shell {
        Shell::from_write(
            Box::new(std::io::sink()),
            Box::new(std::io::sink()),
            Verbosity::Normal,
            anstream::ColorChoice::Never,
        )
    }

    pub fn verbosity(&self) -> Verbosity {
        self.0.verbosity
    }

    pub fn is_quiet(&self) -> bool {
        self.0.verbosity == Verbosity::Quiet
    }

    pub fn is_verbose(&self) -> bool {
        self.0.verbosity == Verbosity::Verbose
    }

    /// Whether stderr is coloured (cargo is then asked for colour, and progress bars style).
    pub fn color(&self) -> bool {
        self.0.color
    }

    /// Whether stderr is a terminal, where progress bars may draw.
    pub fn err_is_terminal(&self) -> bool {
        self.0.err_terminal
    }

    /// A status line as printed: the verb right-aligned in 12 columns, then the message
    /// (styled; the stream strips the style when colour is off).
    pub fn status_line(&self, verb: &str, message: &str) -> String {
        format!("{STATUS}{verb:>12}{STATUS:#} {message}")
    }

    /// Every line the tool writes on stderr: URLs in it lose their credentials
    /// ([`super::public_url::scrub_text`]), whoever composed the message.
    fn print(&self, line: &str) {
        let line = super::public_url::scrub_text(line);
        if let Ok(mut err) = self.0.err.lock() {
            let _ = writeln!(err, "{line}");
        }
    }

    /// `   Verb message`, unless quiet.
    pub fn status(&self, verb: &str, message: impl AsRef<str>) {
        if !self.is_quiet() {
            self.print(&self.status_line(verb, message.as_ref()));
        }
    }

    /// A status line shown at every verbosity: a wait on something outside the process, which
    /// must say what it waits for even with -q.
    pub fn notice(&self, verb: &str, message: impl AsRef<str>) {
        self.print(&self.status_line(verb, message.as_ref()));
    }

    /// A status line handed to `sink` instead of stderr (a progress bar prints it above its
    /// bars), unless quiet; scrubbed, and plain when colour is off.
    pub fn status_to(&self, verb: &str, message: &str, sink: impl FnOnce(String)) {
        if !self.is_quiet() {
            let line = if self.0.color {
                self.status_line(verb, message)
            } else {
                format!("{verb:>12} {message}")
            };
            sink(super::public_url::scrub_text(&line).into_owned());
        }
    }

    /// Detail shown with `-v` only: `   Verb message` in another colour.
    pub fn verbose(&self, verb: &str, message: impl AsRef<str>) {
        if self.is_verbose() {
            self.print(&format!(
                "{DETAIL}{verb:>12}{DETAIL:#} {}",
                message.as_ref()
            ));
        }
    }

    /// `warning: message`, at every verbosity (a warning says something was repaired or passed
    /// over; -q hides progress, not that).
    pub fn warn(&self, message: impl AsRef<str>) {
        self.print(&format!(
            "{WARNING}warning{WARNING:#}: {}",
            message.as_ref()
        ));
    }

    /// A warning said once per run whatever asks for it again: the first call with `key` says
    /// it, later ones do nothing.
    pub fn warn_once(&self, key: &'static str, message: impl FnOnce() -> String) {
        let first = self
            .0
            .warned
            .lock()
            .map(|mut w| w.insert(key))
            .unwrap_or(false);
        if first {
            self.warn(message());
        }
    }

    /// `error: message`, always; the one line a failed run ends with.
    pub fn error(&self, message: impl AsRef<str>) {
        self.print(&format!("{ERROR}error{ERROR:#}: {}", message.as_ref()));
    }

    /// Another program's own output (cargo's), as it wrote it but for the credentials in its
    /// URLs ([`super::public_url::scrub_text`]; cargo prints a git dependency's URL as written),
    /// at every verbosity, under the same lock as the tool's own lines. Give it whole lines: a
    /// URL cut in two is not recognised. Its colour codes pass only when colour is on.
    pub fn passthrough(&self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let text = super::public_url::scrub_text(&text);
        if let Ok(mut err) = self.0.err.lock() {
            let _ = err.write_all(text.as_bytes());
            let _ = err.flush();
        }
    }

    /// A result line on stdout (a digest, a pushed reference, the JSON object), as given.
    pub fn out_line(&self, line: impl AsRef<str>) {
        if let Ok(mut out) = self.0.out.lock() {
            let _ = writeln!(out, "{}", line.as_ref());
            let _ = out.flush();
        }
    }

    /// Bytes on stdout as given (an SBOM, a generated file); a failed write is the caller's
    /// error, since the bytes are the command's answer.
    pub fn out_bytes(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut out = self
            .0
            .out
            .lock()
            .map_err(|_| std::io::Error::other("stdout lock poisoned"))?;
        out.write_all(bytes)?;
        out.flush()
    }

    /// With `CARGO_CONTAINERIZE_TIMINGS` set: `Timing STAGE at N ms` since the first call.
    pub fn timing(&self, stage: &str) {
        if let Some(start) = self.timings_start() {
            self.print(&self.status_line(
                "Timing",
                &format!(
                    "{stage} at {:.1} ms",
                    start.elapsed().as_secs_f64() * 1000.0
                ),
            ));
        }
    }

    /// Starts the timings clock (the first stage's time counts from here).
    pub fn start_timings(&self) {
        self.timings_start();
    }

    fn timings_start(&self) -> Option<Instant> {
        *self
            .0
            .timings
            .get_or_init(|| std::env::var_os("CARGO_CONTAINERIZE_TIMINGS").map(|_| Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A sink a test reads back.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// A shell writing into two captures: (shell, stdout, stderr).
    fn captured(verbosity: Verbosity, color: anstream::ColorChoice) -> (Shell, Capture, Capture) {
        let (out, err) = (Capture::default(), Capture::default());
        let shell = Shell::from_write(
            Box::new(out.clone()),
            Box::new(err.clone()),
            verbosity,
            color,
        );
        (shell, out, err)
    }

    /// One of each kind of line, at `verbosity`.
    fn every_kind(verbosity: Verbosity) -> String {
        let (shell, _, err) = captured(verbosity, anstream::ColorChoice::Never);
        shell.status("Wrote", "oci:target/containerize/app:0.1.0");
        shell.status("Downloading", "crates");
        shell.verbose("Running", "`cargo build --release`");
        shell.notice(
            "Waiting",
            "for the lock on DIR held by another run (at most 10m)",
        );
        shell.warn("cache file X is damaged; removed it");
        shell.error("no binary target; add a [[bin]]");
        shell.passthrough(b"   Compiling app v0.1.0\n");
        err.text()
    }

    #[test]
    fn status_lines_are_right_aligned_and_plain_without_colour() {
        insta::assert_snapshot!("normal", every_kind(Verbosity::Normal));
    }

    #[test]
    fn quiet_keeps_warnings_errors_and_waits_but_drops_status() {
        insta::assert_snapshot!("quiet", every_kind(Verbosity::Quiet));
    }

    #[test]
    fn verbose_adds_detail() {
        insta::assert_snapshot!("verbose", every_kind(Verbosity::Verbose));
    }

    #[test]
    fn colour_is_on_by_choice_and_stripped_otherwise() {
        let (shell, _, err) = captured(Verbosity::Normal, anstream::ColorChoice::Always);
        assert!(shell.color());
        shell.status("Wrote", "x");
        shell.warn("w");
        assert_eq!(
            err.text(),
            "\u{1b}[1m\u{1b}[32m       Wrote\u{1b}[0m x\n\u{1b}[1m\u{1b}[33mwarning\u{1b}[0m: w\n"
        );
        let (shell, _, err) = captured(Verbosity::Normal, anstream::ColorChoice::Never);
        assert!(!shell.color());
        shell.status("Wrote", "x");
        // Cargo's own colour codes are stripped too when colour is off.
        shell.passthrough(b"\x1b[1m\x1b[32m   Compiling\x1b[0m app\n");
        assert_eq!(err.text(), "       Wrote x\n   Compiling app\n");
    }

    #[test]
    fn colour_choice_follows_flag_then_environment() {
        use anstream::ColorChoice as C;
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let none = env(&[]);
        assert_eq!(ColorChoice::resolve_with(None, &none), C::Auto);
        let always = env(&[("CARGO_TERM_COLOR", "always")]);
        assert_eq!(ColorChoice::resolve_with(None, &always), C::Always);
        let never = env(&[("CARGO_TERM_COLOR", "never")]);
        assert_eq!(ColorChoice::resolve_with(None, &never), C::Never);
        // NO_COLOR wins over CARGO_TERM_COLOR; an explicit --color wins over both.
        let both = env(&[("CARGO_TERM_COLOR", "always"), ("NO_COLOR", "1")]);
        assert_eq!(ColorChoice::resolve_with(None, &both), C::Never);
        let flag = Some(ColorChoice::Always);
        assert_eq!(ColorChoice::resolve_with(flag, &both), C::Always);
        let flag = Some(ColorChoice::Never);
        assert_eq!(ColorChoice::resolve_with(flag, &always), C::Never);
        // An empty NO_COLOR is unset.
        let empty = env(&[("NO_COLOR", ""), ("CARGO_TERM_COLOR", "always")]);
        assert_eq!(ColorChoice::resolve_with(None, &empty), C::Always);
    }

    #[test]
    fn auto_colour_is_off_for_a_captured_stream() {
        // anstream's auto: a sink that is not a terminal gets no colour unless CLICOLOR_FORCE.
        if std::env::var_os("CLICOLOR_FORCE").is_none() {
            let (shell, _, _) = captured(Verbosity::Normal, anstream::ColorChoice::Auto);
            assert!(!shell.color());
        }
    }

    #[test]
    fn credentials_are_scrubbed_from_every_stderr_line() {
        let (shell, _, err) = captured(Verbosity::Verbose, anstream::ColorChoice::Never);
        shell.status(
            "Updating",
            "git repository `https://user:hunter2@example.com/a.git`",
        );
        shell.verbose("Request", "GET https://tok@registry.example/v2/");
        shell.warn("https://u:p@example.com/x failed");
        shell.passthrough(b"error: https://u:secret@example.com/r.git\n");
        let mut progress = String::new();
        shell.status_to("Pushing", "https://u:p@example.com/x", |l| progress = l);
        let text = err.text() + &progress;
        for secret in ["hunter2", "tok@", "u:p@", "secret"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("example.com/a.git"), "{text}");
    }

    #[test]
    fn results_go_to_stdout_and_progress_to_stderr() {
        let (shell, out, err) = captured(Verbosity::Normal, anstream::ColorChoice::Never);
        shell.status("Wrote", "oci:x");
        shell.out_line(r#"{"success":true,"digest":"sha256:00"}"#);
        shell.out_bytes(b"{}\n").unwrap();
        assert_eq!(
            out.text(),
            "{\"success\":true,\"digest\":\"sha256:00\"}\n{}\n"
        );
        assert_eq!(err.text(), "       Wrote oci:x\n");
    }

    #[test]
    fn the_shell_is_shared_between_threads() {
        fn shared<T: Sync + Send>() {}
        shared::<Shell>();
        let (shell, _, err) = captured(Verbosity::Normal, anstream::ColorChoice::Never);
        std::thread::scope(|s| {
            for i in 0..4 {
                let shell = &shell;
                s.spawn(move || shell.status("Pushing", format!("blob {i}")));
            }
        });
        assert_eq!(err.text().lines().count(), 4);
    }
}
