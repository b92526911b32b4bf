//! `devinst stats [--json]`: the container's cpu and memory use (every
//! node's, for a cluster), computed the way `docker stats` computes them.

use super::Invocation;
use crate::cli::JsonArgs;
use crate::engine::Engine;
use crate::instance::Instance;
use crate::support::error::WithHint;
use crate::support::table::{self, Table};
use crate::support::{output, units};
use anyhow::{anyhow, Result};
use serde::Serialize;

/// The `--json` shape. Fields are only ever added.
#[derive(Debug, Serialize)]
struct StatsView {
    name: String,
    /// The head's container, whose use the fields beside it are.
    container: String,
    #[serde(flatten)]
    usage: Use,
    /// A `[cluster]`'s nodes, the head first; empty for an instance of one
    /// node.
    nodes: Vec<NodeStats>,
}

#[derive(Debug, Serialize)]
struct NodeStats {
    rank: u16,
    container: String,
    #[serde(flatten)]
    usage: Use,
}

/// One container's use.
#[derive(Debug, Clone, Serialize)]
struct Use {
    /// Percent of one cpu, as `docker stats` shows it: 200 is two cpus busy.
    cpu_percent: f64,
    /// Bytes in use, page cache that can be reclaimed left out.
    memory_usage: u64,
    /// Bytes the container may use: its limit, or the host's memory.
    memory_limit: u64,
    memory_percent: f64,
    pids: Option<u64>,
}

pub async fn run(ctx: &Invocation, args: JsonArgs) -> Result<i32> {
    let instance = Instance::find(&ctx.cwd)?;
    let engine = Engine::connect(&ctx.engine_choice(Some(&instance.settings))).await?;
    let mut nodes = Vec::new();
    for rank in crate::instance::nodes::ranks(&instance) {
        nodes.push(node_stats(&engine, &instance, rank).await?);
    }
    let head = &nodes[0];
    let view = StatsView {
        name: instance.record.name.clone(),
        container: head.container.clone(),
        usage: head.usage.clone(),
        nodes: if nodes.len() > 1 { nodes } else { Vec::new() },
    };
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

/// One node's use (the head's is rank 0), refused when it is not running.
async fn node_stats(engine: &Engine, instance: &Instance, rank: u16) -> Result<NodeStats> {
    let name = instance.record.node_container(rank);
    let running = engine.inspect(&name).await?.is_some_and(|c| c.running);
    if !running {
        return Err(anyhow!("container `{name}` is not running"))
            .hint("start it with `devinst start`");
    }
    let usage = engine.usage(&name).await?;
    Ok(NodeStats {
        rank,
        container: name,
        usage: Use {
            cpu_percent: usage.cpu_percent,
            memory_usage: usage.memory_usage,
            memory_limit: usage.memory_limit,
            memory_percent: percent(usage.memory_usage as f64, usage.memory_limit as f64),
            pids: usage.pids,
        },
    })
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

fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole * 100.0
    } else {
        0.0
    }
}
