//! `devinst stop`: stop the container, keep everything.

use super::Invocation;
use crate::engine::Engine;
use crate::instance::{lifecycle, Instance};
use anyhow::Result;

pub async fn run(ctx: &Invocation) -> Result<i32> {
    let instance = Instance::find(&ctx.cwd)?;
    let engine = Engine::connect(&ctx.engine_choice(Some(&instance.settings))).await?;
    let name = &instance.record.container;
    lifecycle::stop(&engine, name).await?;
    crate::instance::nodes::stop_all(&engine, &instance).await?;
    // After the instance, which may still be talking to them.
    crate::instance::services::stop_all(&engine, &instance).await?;
    Ok(0)
}
