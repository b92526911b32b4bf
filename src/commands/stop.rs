//! `devinst stop`: stop the container, keep everything.

use crate::engine::{status, Engine};
use crate::instance::Instance;
use crate::support::output;
use crate::Context;
use anyhow::Result;
use bollard::query_parameters::StopContainerOptions;

pub async fn run(ctx: &Context) -> Result<i32> {
    let instance = Instance::find(&ctx.cwd)?;
    let engine = Engine::connect(&ctx.engine_choice(Some(&instance.settings))).await?;
    let name = &instance.record.container;
    stop_instance(&engine, name).await?;
    // After the instance, which may still be talking to them.
    crate::instance::services::stop_all(&engine, &instance).await?;
    Ok(0)
}

async fn stop_instance(engine: &Engine, name: &str) -> Result<()> {
    // Asked first: Docker 20.10 and Podman both answer a stop of a stopped
    // container as a success, so the answer cannot tell the user which it was.
    match engine.inspect(name).await? {
        None => {
            output::note(format!("container `{name}` does not exist yet"));
            return Ok(());
        }
        Some(info) if !info.state.as_ref().and_then(|s| s.running).unwrap_or(false) => {
            output::note(format!("container `{name}` is not running"));
            return Ok(());
        }
        Some(_) => {}
    }
    let options = StopContainerOptions {
        t: Some(10),
        ..Default::default()
    };
    match engine.docker.stop_container(name, Some(options)).await {
        Ok(()) => output::note(format!("stopped container `{name}`")),
        Err(err) if status(&err) == Some(304) => {
            output::note(format!("container `{name}` is not running"))
        }
        Err(err) if status(&err) == Some(404) => {
            output::note(format!("container `{name}` does not exist yet"))
        }
        Err(err) => {
            return Err(engine
                .explain(err)
                .context(format!("cannot stop container `{name}`")))
        }
    }
    Ok(())
}
