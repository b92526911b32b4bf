//! `devinst logs [-f] [--tail N]`: the container's own output, its stdout to
//! stdout and its stderr to stderr.

use crate::cli::LogsArgs;
use crate::engine::exec::write_fd;
use crate::engine::Engine;
use crate::instance::Instance;
use crate::support::error::{SilentExit, WithHint};
use crate::Context;
use anyhow::{anyhow, Result};
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;

/// What a shell reports for a command ended by Ctrl-C.
const INTERRUPTED: i32 = 130;

pub async fn run(ctx: &Context, args: LogsArgs) -> Result<i32> {
    let instance = Instance::find(&ctx.cwd)?;
    let engine = Engine::connect(&ctx.engine_choice(Some(&instance.settings))).await?;
    let name = &instance.record.container;
    if engine.inspect(name).await?.is_none() {
        return Err(anyhow!(
            "container `{name}` does not exist, so it has no logs"
        ))
        .hint("create and start it with `devinst start`");
    }
    let options = LogsOptions {
        follow: args.follow,
        stdout: true,
        stderr: true,
        tail: args
            .tail
            .map_or_else(|| "all".to_owned(), |n| n.to_string()),
        ..Default::default()
    };
    let copy = async {
        let mut stream = engine.docker.logs(name, Some(options));
        while let Some(frame) = stream.next().await {
            match frame.map_err(|e| engine.explain(e))? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    write_fd(1, &message)?
                }
                LogOutput::StdErr { message } => write_fd(2, &message)?,
                LogOutput::StdIn { .. } => {}
            }
        }
        anyhow::Ok(0)
    };
    // With `-f` the stream ends when the container stops; Ctrl-C ends it
    // sooner, and that is how the user means to leave, not a failure.
    tokio::select! {
        result = copy => result,
        _ = tokio::signal::ctrl_c() => Err(SilentExit { code: INTERRUPTED }.into()),
    }
}
