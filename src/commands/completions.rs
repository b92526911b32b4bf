//! `devinst completions SHELL`: a completion script, generated from the same
//! clap definitions the parser uses, so it never falls behind.

use crate::cli::{Cli, CompletionsArgs};
use crate::support::output;
use anyhow::Result;
use clap::CommandFactory;

pub fn run(args: CompletionsArgs) -> Result<i32> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "devinst", &mut script);
    // Through the one printer: a closed pipe ends quietly there.
    output::data(String::from_utf8_lossy(&script).trim_end());
    Ok(0)
}
