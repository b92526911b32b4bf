//! An instance's cpu and memory use, every node's (`devinst stats`, and the
//! API's `stats`), computed the way `docker stats` computes them.

use super::Instance;
use crate::engine::Engine;
use crate::support::error::WithHint;
use anyhow::{anyhow, Result};
use serde::Serialize;

/// The `--json` shape. Fields are only ever added.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatsView {
    pub name: String,
    /// The head's container, whose use the fields beside it are.
    pub container: String,
    #[serde(flatten)]
    pub usage: Use,
    /// A `[cluster]`'s nodes, the head first; empty for an instance of one
    /// node.
    pub nodes: Vec<NodeStats>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeStats {
    pub rank: u16,
    pub container: String,
    #[serde(flatten)]
    pub usage: Use,
}

/// One container's use.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Use {
    /// Percent of one cpu, as `docker stats` shows it: 200 is two cpus busy.
    pub cpu_percent: f64,
    /// Bytes in use, page cache that can be reclaimed left out.
    pub memory_usage: u64,
    /// Bytes the container may use: its limit, or the host's memory.
    pub memory_limit: u64,
    pub memory_percent: f64,
    pub pids: Option<u64>,
}

/// Every node's use, the head's first; refused when one is not running.
pub async fn stats(engine: &Engine, instance: &Instance) -> Result<StatsView> {
    let mut nodes = Vec::new();
    for rank in super::nodes::ranks(instance) {
        nodes.push(node_stats(engine, instance, rank).await?);
    }
    let head = &nodes[0];
    Ok(StatsView {
        name: instance.record.name.clone(),
        container: head.container.clone(),
        usage: head.usage.clone(),
        nodes: if nodes.len() > 1 { nodes } else { Vec::new() },
    })
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

fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole * 100.0
    } else {
        0.0
    }
}
