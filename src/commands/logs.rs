//! `devinst logs [-f] [--tail N] [--node K]`: the container's own output (a
//! cluster node's with `--node`), its stdout to stdout and its stderr to
//! stderr.

use super::Invocation;
use crate::cli::LogsArgs;
use crate::engine::Engine;
use crate::instance::{nodes, Instance};
use crate::support::error::WithHint;
use anyhow::{anyhow, Result};

pub async fn run(ctx: &Invocation, args: LogsArgs) -> Result<i32> {
    let instance = Instance::find(&ctx.cwd)?;
    let engine = Engine::connect(&ctx.engine_choice(Some(&instance.settings))).await?;
    let name = &nodes::container_of(&instance, args.node.unwrap_or(0))?;
    if engine.inspect(name).await?.is_none() {
        return Err(anyhow!(
            "container `{name}` does not exist, so it has no logs"
        ))
        .hint("create and start it with `devinst start`");
    }
    // With `-f` the stream ends when the container stops; Ctrl-C ends it
    // sooner, and that is how the user means to leave, not a failure.
    engine.copy_logs(name, args.tail, args.follow).await?;
    Ok(0)
}
