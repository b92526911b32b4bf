//! `devinst snapshot save|list|restore|reset|rm`.

use super::Invocation;
use crate::cli::{JsonArgs, SnapshotCommand};
use crate::engine::Engine;
use crate::instance::snapshot::{self, SnapshotView};
use crate::instance::{consent, Instance};
use crate::support::table::Table;
use crate::support::{output, units};
use anyhow::Result;

pub async fn run(ctx: &Invocation, action: SnapshotCommand) -> Result<i32> {
    let instance = Instance::find(&ctx.cwd)?;
    let choice = ctx.engine_choice(Some(&instance.settings));
    if matches!(
        action,
        SnapshotCommand::Restore { .. } | SnapshotCommand::Reset
    ) {
        // Both make the container anew.
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
    }
    Ok(0)
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
