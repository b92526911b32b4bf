//! devinst: one isolated container instance per git worktree.

mod api;
mod cli;
mod commands;
mod engine;
mod instance;
mod recipe;
mod state;
mod support;

#[cfg(test)]
mod layering;

use anyhow::Context;
use clap::Parser;
use support::error::{code, SilentExit};
use support::output;

/// Parses the command line, runs the command and returns the exit code. The
/// one place that prints an error.
pub fn main() -> i32 {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { code::USAGE } else { 0 };
        }
    };
    output::set_verbosity(if cli.quiet { 0 } else { 1 + cli.verbose });
    init_tracing(cli.quiet, cli.verbose);
    let failure = cli.command.failure_code();
    match run(cli) {
        Ok(code) => code,
        Err(err) => match err.downcast_ref::<SilentExit>() {
            Some(exit) => exit.code,
            None => {
                output::report(&err);
                failure
            }
        },
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<i32> {
    // `-C DIR` is the directory a `cd DIR` would give: a path without `..`
    // or symlinks, as the current directory always is, so the worktree
    // found from it compares equal to the paths devinst records.
    let cwd = match &cli.dir {
        Some(dir) => std::fs::canonicalize(dir)
            .with_context(|| format!("cannot run in `{}`", dir.display()))?,
        None => std::path::absolute(std::env::current_dir()?)?,
    };
    let host = cli.host.filter(|h| !h.is_empty());
    commands::dispatch(cli.command, &commands::Invocation { cwd, host })
}

fn init_tracing(quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => return,
        (_, 0) => return,
        (_, 1) => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

impl cli::Command {
    /// `exec` and `shell` stand in for the command they run, so their own
    /// failures use Docker's 125 rather than a code the command could return.
    fn failure_code(&self) -> i32 {
        match self {
            cli::Command::Exec(_) | cli::Command::Shell(_) => code::EXEC_FAILED,
            _ => code::FAILURE,
        }
    }
}
