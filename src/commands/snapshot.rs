//! `devinst snapshot save|list|restore|reset|rm|push|pull`.

use super::Invocation;
use crate::cli::{JsonArgs, SnapshotCommand};
use crate::engine::Engine;
use crate::instance::snapshot::{self, SnapshotView};
use crate::instance::travel::{self, store::Store, store::StoreUrl};
use crate::instance::{consent, Instance};
use crate::support::error::WithHint;
use crate::support::table::Table;
use crate::support::{output, units};
use anyhow::{anyhow, Result};

pub async fn run(ctx: &Invocation, action: SnapshotCommand) -> Result<i32> {
    let instance = Instance::find(&ctx.cwd)?;
    let choice = ctx.engine_choice(Some(&instance.settings));
    if matches!(
        action,
        SnapshotCommand::Restore { .. }
            | SnapshotCommand::Reset
            | SnapshotCommand::Push { .. }
            | SnapshotCommand::Pull { .. }
    ) {
        // Restore and reset make the container anew; push and pull may use
        // the recipe's store.
        consent::require(&instance.layout.root, &instance.settings, &choice)?;
    }
    let engine = Engine::connect(&choice).await?;
    match action {
        SnapshotCommand::Save { name } => {
            output::data(snapshot::save(&engine, &instance, name).await?)
        }
        SnapshotCommand::List(args) => print(&snapshot::list(&engine, &instance).await?, &args),
        SnapshotCommand::Restore { name } => snapshot::restore(&engine, &instance, &name).await?,
        SnapshotCommand::Reset => snapshot::reset(&engine, &instance).await?,
        SnapshotCommand::Rm { name } => snapshot::remove(&engine, &instance, &name).await?,
        SnapshotCommand::Push { name, to } => {
            let store = open_store(ctx, &instance, to)?;
            travel::push(&engine, &instance, &name, &store).await?
        }
        SnapshotCommand::Pull { name, from } => {
            let store = open_store(ctx, &instance, from)?;
            travel::pull(&engine, &instance, &name, &store).await?
        }
    }
    Ok(0)
}

/// The store named on the command line, else by `[snapshots] store`.
fn open_store(ctx: &Invocation, instance: &Instance, given: Option<String>) -> Result<Store> {
    let settings = &instance.settings;
    let url = given
        .or_else(|| settings.snapshot_store.clone())
        .ok_or_else(|| anyhow!("no snapshot store named"))
        .hint("give one with `--to`/`--from` (`s3://BUCKET/PREFIX` or a directory), or set `[snapshots] store`")?;
    let url = StoreUrl::parse(&url, &ctx.cwd)?;
    Store::open(&url, settings.snapshot_endpoint.as_deref())
}

fn print(views: &[SnapshotView], args: &JsonArgs) {
    if args.json {
        output::json(&views);
        return;
    }
    let mut table = Table::new(["NAME", "CREATED", "SIZE"]);
    for v in views {
        table.row([
            v.name.clone(),
            v.created.clone(),
            units::bytes(u64::try_from(v.size_bytes).unwrap_or(0)),
            if v.active { "(restored)" } else { "" }.to_owned(),
        ]);
    }
    output::data(table);
}
