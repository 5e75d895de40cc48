//! Running a helper program (a credential helper, `docker version`) with a bounded wait: a
//! program that never answers is stopped, with everything it started, instead of hanging the
//! run.
//!
//! Hand-written on std: the wait is a `try_wait` poll every 10 ms (std has no wait with a
//! timeout, and a thread blocked in `wait` could not be told to stop), and the program runs in
//! a process group of its own so that a shell script's children (`sleep`, a keychain prompt)
//! die with it and release the pipes.

use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Most bytes kept of a helper's stdout or stderr.
const OUTPUT_LIMIT: u64 = 1 << 20;

/// How long a helper that exited may leave its pipes open (through a child it started)
/// before its process group is stopped.
const PIPE_GRACE: Duration = Duration::from_secs(1);

/// What a helper printed and how it ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// How a bounded run ended.
#[derive(Debug)]
pub enum Outcome {
    Finished(Finished),
    /// No exit within the timeout: the program (and its process group) was killed.
    TimedOut,
}

fn reader(mut from: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut from).take(OUTPUT_LIMIT).read_to_end(&mut buf);
        // Drain the rest so the program never blocks on a full pipe.
        let _ = std::io::copy(&mut from, &mut std::io::sink());
        let _ = tx.send(buf);
    });
    rx
}

fn kill(child: &mut Child) {
    kill_group(child.id());
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `cmd` with `input` on its stdin, waiting at most `timeout` for it to exit and close
/// its output. Fails only if it cannot be started.
pub fn run_bounded(cmd: &mut Command, input: &[u8], timeout: Duration) -> Result<Outcome> {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", cmd.get_program().to_string_lossy()))?;
    let deadline = Instant::now() + timeout;
    let stdout = reader(child.stdout.take().context("child stdout")?);
    let stderr = reader(child.stderr.take().context("child stderr")?);
    if let Some(mut stdin) = child.stdin.take() {
        // A few bytes into an empty pipe never block; a program that exited early is fine.
        let _ = stdin.write_all(input);
    }
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                kill(&mut child);
                return Ok(Outcome::TimedOut);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(e).context("waiting for a helper program"),
        }
    };
    // It exited; what it started may still hold the pipes open. Give them a moment, then
    // stop the process group (which closes them) and keep what the helper itself printed: an
    // answer is not thrown away because a child it left behind lingers.
    let grace = deadline
        .saturating_duration_since(Instant::now())
        .min(PIPE_GRACE);
    let mut out = stdout.recv_timeout(grace);
    let mut err = stderr.recv_timeout(grace.saturating_sub(Duration::from_millis(1)));
    if out.is_err() || err.is_err() {
        kill(&mut child);
        if out.is_err() {
            out = stdout.recv_timeout(PIPE_GRACE);
        }
        if err.is_err() {
            err = stderr.recv_timeout(PIPE_GRACE);
        }
    }
    match (out, err) {
        (Ok(stdout), Ok(stderr)) => Ok(Outcome::Finished(Finished {
            status,
            stdout,
            stderr,
        })),
        _ => {
            kill(&mut child);
            Ok(Outcome::TimedOut)
        }
    }
}

/// A bound on a long-running helper that streams (`docker load`): the helper is killed, with
/// its process group, when no progress is reported for `idle` (a helper that stopped reading
/// its input, or that does not exit after its input ended). Progress is reported by the
/// writer returned from [`Watchdog::writer`] (every accepted write) and by [`Watchdog::poke`].
pub struct Watchdog {
    shared: std::sync::Arc<WatchShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct WatchShared {
    start: Instant,
    /// Milliseconds since `start` of the last progress.
    last: std::sync::atomic::AtomicU64,
    done: std::sync::atomic::AtomicBool,
    fired: std::sync::atomic::AtomicBool,
}

impl WatchShared {
    fn poke(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last.store(now, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Watchdog {
    /// Watches the process `pid` (the leader of its own process group, see
    /// `CommandExt::process_group`).
    pub fn start(pid: u32, idle: Duration) -> Watchdog {
        use std::sync::atomic::Ordering;
        let shared = std::sync::Arc::new(WatchShared {
            start: Instant::now(),
            last: 0.into(),
            done: false.into(),
            fired: false.into(),
        });
        let watched = shared.clone();
        let thread = std::thread::spawn(move || {
            while !watched.done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
                let since = (watched.start.elapsed().as_millis() as u64)
                    .saturating_sub(watched.last.load(Ordering::Relaxed));
                if Duration::from_millis(since) > idle && !watched.done.load(Ordering::Relaxed) {
                    watched.fired.store(true, Ordering::Relaxed);
                    kill_group(pid);
                    return;
                }
            }
        });
        Watchdog {
            shared,
            thread: Some(thread),
        }
    }

    /// Counts as progress: the helper did something (its input ended, say).
    pub fn poke(&self) {
        self.shared.poke();
    }

    /// `w`, reporting each accepted write as progress.
    pub fn writer<W: Write>(&self, w: W) -> impl Write + use<W> {
        struct Watched<W> {
            inner: W,
            shared: std::sync::Arc<WatchShared>,
        }
        impl<W: Write> Write for Watched<W> {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let n = self.inner.write(buf)?;
                self.shared.poke();
                Ok(n)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                self.inner.flush()
            }
        }
        Watched {
            inner: w,
            shared: self.shared.clone(),
        }
    }

    /// Stops watching; true if the helper was killed for making no progress.
    pub fn finish(mut self) -> bool {
        self.shared
            .done
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shared.fired.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared
            .done
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn kill_group(pid: u32) {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::signal::{Signal, killpg};
        use nix::unistd::Pid;
        if let Ok(pid) = i32::try_from(pid) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_kept_when_a_child_left_behind_holds_the_pipes() {
        let started = Instant::now();
        let out = run_bounded(
            Command::new("sh").args(["-c", "echo answer; sleep 30 &"]),
            b"",
            Duration::from_secs(20),
        )
        .unwrap();
        match out {
            Outcome::Finished(f) => {
                assert!(f.status.success());
                assert_eq!(f.stdout, b"answer\n");
            }
            Outcome::TimedOut => panic!("the answer was thrown away"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_helper_that_stops_reading_is_killed_by_the_watchdog() {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("sleep")
            .arg("30")
            .process_group(0)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let dog = Watchdog::start(child.id(), Duration::from_millis(300));
        let mut w = dog.writer(child.stdin.take().unwrap());
        let started = Instant::now();
        // `sleep` never reads: the pipe fills, the write blocks until the watchdog kills it.
        let chunk = vec![0u8; 1 << 16];
        while w.write_all(&chunk).is_ok() {}
        let _ = child.wait();
        assert!(dog.finish(), "the watchdog did not fire");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_program_that_never_exits_is_stopped() {
        let started = Instant::now();
        let out = run_bounded(
            Command::new("sh").args(["-c", "sleep 30; echo late"]),
            b"",
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(matches!(out, Outcome::TimedOut));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn output_and_status_come_back() {
        let out = run_bounded(
            Command::new("sh").args(["-c", "read x; echo got $x; exit 3"]),
            b"in\n",
            Duration::from_secs(10),
        )
        .unwrap();
        let Outcome::Finished(f) = out else {
            panic!("timed out")
        };
        assert_eq!(f.stdout, b"got in\n");
        assert_eq!(f.status.code(), Some(3));
    }
}
