//! `devinst snapshot save|list|restore|reset|rm`.

use super::Invocation;
use crate::cli::SnapshotCommand;
use crate::engine::Engine;
use crate::instance::snapshot::{list, remove, reset, restore, save};
use crate::instance::Instance;
use anyhow::Result;

pub async fn run(ctx: &Invocation, action: SnapshotCommand) -> Result<i32> {
    let instance = Instance::find(&ctx.cwd)?;
    let engine = Engine::connect(&ctx.engine_choice(Some(&instance.settings))).await?;
    match action {
        SnapshotCommand::Save { name } => save(&engine, &instance, name).await,
        SnapshotCommand::List(args) => list(&engine, &instance, args).await,
        SnapshotCommand::Restore { name } => restore(&engine, &instance, &name).await,
        SnapshotCommand::Reset => reset(&engine, &instance).await,
        SnapshotCommand::Rm { name } => remove(&engine, &instance, &name).await,
    }
}
