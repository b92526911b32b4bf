//! `devinst serve [--listen ADDR:PORT]`: the HTTP API and the dashboard, until
//! Ctrl-C or SIGTERM.

use super::Invocation;
use crate::cli::ServeArgs;
use anyhow::Result;

pub fn run(ctx: &Invocation, args: ServeArgs) -> Result<i32> {
    // Several threads: a request waiting on an instance's lock (a `start`
    // from the CLI, say) must not hold up the others.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    runtime.block_on(crate::api::serve(args.listen, ctx.host.clone()))?;
    Ok(0)
}
