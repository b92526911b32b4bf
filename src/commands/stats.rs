//! `devinst stats [--json]`: the container's cpu and memory use, computed the
//! way `docker stats` computes them.

use super::Invocation;
use crate::cli::JsonArgs;
use crate::engine::Engine;
use crate::instance::Instance;
use crate::support::error::WithHint;
use crate::support::{output, table, units};
use anyhow::{anyhow, Result};
use serde::Serialize;

/// The `--json` shape. Fields are only ever added.
#[derive(Debug, Serialize)]
struct StatsView {
    name: String,
    container: String,
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
    let name = &instance.record.container;
    let running = engine.inspect(name).await?.is_some_and(|c| c.running);
    if !running {
        return Err(anyhow!("container `{name}` is not running"))
            .hint("start it with `devinst start`");
    }
    let usage = engine.usage(name).await?;
    let view = StatsView {
        name: instance.record.name.clone(),
        container: name.clone(),
        cpu_percent: usage.cpu_percent,
        memory_usage: usage.memory_usage,
        memory_limit: usage.memory_limit,
        memory_percent: percent(usage.memory_usage as f64, usage.memory_limit as f64),
        pids: usage.pids,
    };
    if args.json {
        output::json(&view);
    } else {
        output::data(table::pairs([
            ("cpu", format!("{:.1}%", view.cpu_percent)),
            (
                "memory",
                format!(
                    "{} / {} ({:.1}%)",
                    units::bytes(view.memory_usage),
                    units::bytes(view.memory_limit),
                    view.memory_percent,
                ),
            ),
            ("pids", view.pids.map_or("-".to_owned(), |p| p.to_string())),
        ]));
    }
    Ok(0)
}

fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole * 100.0
    } else {
        0.0
    }
}
