//! `devinst stats [--json]`: the container's cpu and memory use (every
//! node's, for a cluster), computed the way `docker stats` computes them.

use super::Invocation;
use crate::cli::JsonArgs;
use crate::engine::Engine;
use crate::instance::usage::{self, Use};
use crate::instance::Instance;
use crate::support::table::{self, Table};
use crate::support::{output, units};
use anyhow::Result;

pub async fn run(ctx: &Invocation, args: JsonArgs) -> Result<i32> {
    let instance = Instance::find(&ctx.cwd)?;
    let engine = Engine::connect(&ctx.engine_choice(Some(&instance.settings))).await?;
    let view = usage::stats(&engine, &instance).await?;
    if args.json {
        output::json(&view);
    } else if view.nodes.is_empty() {
        let usage = &view.usage;
        output::data(table::pairs([
            ("cpu", format!("{:.1}%", usage.cpu_percent)),
            ("memory", memory_text(usage)),
            ("pids", pids_text(usage.pids)),
        ]));
    } else {
        let mut rows = Table::new(["NODE", "CONTAINER", "CPU", "MEMORY", "PIDS"]);
        for node in &view.nodes {
            rows.row([
                node.rank.to_string(),
                node.container.clone(),
                format!("{:.1}%", node.usage.cpu_percent),
                memory_text(&node.usage),
                pids_text(node.usage.pids),
            ]);
        }
        output::data(rows.to_string());
    }
    Ok(0)
}

fn memory_text(usage: &Use) -> String {
    format!(
        "{} / {} ({:.1}%)",
        units::bytes(usage.memory_usage),
        units::bytes(usage.memory_limit),
        usage.memory_percent
    )
}

fn pids_text(pids: Option<u64>) -> String {
    pids.map_or("-".to_owned(), |p| p.to_string())
}
