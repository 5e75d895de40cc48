use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A bug must still end in one line that says what happened, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        // The last resort: written straight to stderr, since the panic may have happened while
        // the shell's lock was held. Scrubbed like every line the shell writes.
        let line = format!(
            "error: internal error in cargo-containerize ({}{at}); please report it with the command you ran",
            msg.replace('\n', " ")
        );
        eprintln!(
            "{}",
            cargo_containerize::util::public_url::scrub_text(&line)
        );
    }));
    // cargo runs `cargo-containerize containerize ARGS…`; accept being run directly too.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "containerize") {
        args.remove(1);
    }
    let cli = cargo_containerize::cli::Cli::parse_from(args);
    let shell = std::sync::Arc::new(cli.global.shell());
    cargo_containerize::util::atomic::install_interrupt_cleanup(shell.clone());
    match cargo_containerize::cli::run(cli, &shell) {
        Ok(code) => code,
        Err(e) => {
            shell.error(cargo_containerize::error_line(&e));
            ExitCode::FAILURE
        }
    }
}
