//! `devinst stats [--json]`: the container's cpu and memory use, computed the
//! way `docker stats` computes them.

use crate::cli::JsonArgs;
use crate::engine::Engine;
use crate::instance::Instance;
use crate::support::error::WithHint;
use crate::support::{output, table, units};
use crate::Context;
use anyhow::{anyhow, Context as _, Result};
use bollard::models::{ContainerCpuStats, ContainerMemoryStats, ContainerStatsResponse};
use bollard::query_parameters::StatsOptions;
use futures_util::StreamExt;
use serde::Serialize;
use std::time::Duration;

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

pub async fn run(ctx: &Context, args: JsonArgs) -> Result<i32> {
    let instance = Instance::find(&ctx.cwd)?;
    let engine = Engine::connect(&ctx.engine_choice(Some(&instance.settings))).await?;
    let name = &instance.record.container;
    let running = engine
        .inspect(name)
        .await?
        .and_then(|info| info.state)
        .and_then(|state| state.running)
        .unwrap_or(false);
    if !running {
        return Err(anyhow!("container `{name}` is not running"))
            .hint("start it with `devinst start`");
    }
    let (before, now) = two_samples(&engine, name).await?;
    let memory = now.memory_stats.unwrap_or_default();
    let memory_usage = memory_in_use(&memory);
    let memory_limit = memory.limit.unwrap_or(0);
    let view = StatsView {
        name: instance.record.name.clone(),
        container: name.clone(),
        cpu_percent: cpu_percent(&now.cpu_stats.unwrap_or_default(), &before),
        memory_usage,
        memory_limit,
        memory_percent: percent(memory_usage as f64, memory_limit as f64),
        pids: now.pids_stats.and_then(|p| p.current),
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

/// The latest sample and the cpu counters to measure it against. Docker fills
/// `precpu_stats` when asked for a non-streamed sample; engines that leave it
/// empty get a second sample a moment later.
async fn two_samples(
    engine: &Engine,
    name: &str,
) -> Result<(ContainerCpuStats, ContainerStatsResponse)> {
    let first = sample(engine, name).await?;
    let pre = first.precpu_stats.clone().unwrap_or_default();
    if pre.system_cpu_usage.unwrap_or(0) > 0 {
        return Ok((pre, first));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = sample(engine, name).await?;
    Ok((first.cpu_stats.unwrap_or_default(), second))
}

async fn sample(engine: &Engine, name: &str) -> Result<ContainerStatsResponse> {
    let options = StatsOptions {
        stream: false,
        one_shot: false,
    };
    engine
        .docker
        .stats(name, Some(options))
        .next()
        .await
        .ok_or_else(|| anyhow!("the engine sent no statistics"))?
        .map_err(|err| engine.explain(err))
        .with_context(|| format!("cannot read the statistics of `{name}`"))
}

/// Docker's formula: the container's share of the host's cpu time between
/// two samples, scaled by the number of cpus.
fn cpu_percent(now: &ContainerCpuStats, before: &ContainerCpuStats) -> f64 {
    let total = |s: &ContainerCpuStats| s.cpu_usage.as_ref().and_then(|u| u.total_usage);
    let cpu_delta = total(now)
        .unwrap_or(0)
        .saturating_sub(total(before).unwrap_or(0));
    let system_delta = now
        .system_cpu_usage
        .unwrap_or(0)
        .saturating_sub(before.system_cpu_usage.unwrap_or(0));
    let cpus = now
        .online_cpus
        .filter(|n| *n > 0)
        .map(u64::from)
        .or_else(|| {
            now.cpu_usage
                .as_ref()
                .and_then(|u| u.percpu_usage.as_ref())
                .map(|v| v.len() as u64)
        });
    match cpus {
        Some(cpus) if system_delta > 0 => {
            cpu_delta as f64 / system_delta as f64 * cpus as f64 * 100.0
        }
        _ => 0.0,
    }
}

/// Usage without the inactive page cache, as `docker stats` shows it
/// (`total_inactive_file` under cgroup v1, `inactive_file` under v2).
fn memory_in_use(memory: &ContainerMemoryStats) -> u64 {
    let usage = memory.usage.unwrap_or(0);
    let stats = memory.stats.as_ref();
    let cache = stats
        .and_then(|s| {
            s.get("total_inactive_file")
                .or_else(|| s.get("inactive_file"))
        })
        .copied()
        .unwrap_or(0);
    if cache < usage {
        usage - cache
    } else {
        usage
    }
}

fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole * 100.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::ContainerCpuUsage;
    use std::collections::HashMap;

    fn cpu(total: u64, system: u64, online: Option<u32>, percpu: usize) -> ContainerCpuStats {
        ContainerCpuStats {
            cpu_usage: Some(ContainerCpuUsage {
                total_usage: Some(total),
                percpu_usage: Some(vec![0; percpu]),
                ..Default::default()
            }),
            system_cpu_usage: Some(system),
            online_cpus: online,
            ..Default::default()
        }
    }

    #[test]
    fn cpu_percent_is_dockers() {
        // Half of all host cpu time on a 2-cpu host: one cpu busy, 100%.
        let before = cpu(1_000, 10_000, Some(2), 0);
        assert_eq!(cpu_percent(&cpu(3_000, 14_000, Some(2), 0), &before), 100.0);
        // No online count: the per-cpu list gives it.
        assert_eq!(cpu_percent(&cpu(2_000, 14_000, None, 4), &before), 100.0);
        // No time passed, or counters went backwards: nothing to report.
        assert_eq!(cpu_percent(&cpu(3_000, 10_000, Some(2), 0), &before), 0.0);
        assert_eq!(cpu_percent(&cpu(500, 14_000, Some(2), 0), &before), 0.0);
        assert_eq!(cpu_percent(&before, &ContainerCpuStats::default()), 20.0);
    }

    #[test]
    fn memory_leaves_out_inactive_cache() {
        let v2 = ContainerMemoryStats {
            usage: Some(100),
            stats: Some(HashMap::from([("inactive_file".to_owned(), 30)])),
            ..Default::default()
        };
        assert_eq!(memory_in_use(&v2), 70);
        let v1 = ContainerMemoryStats {
            usage: Some(100),
            stats: Some(HashMap::from([("total_inactive_file".to_owned(), 130)])),
            ..Default::default()
        };
        assert_eq!(memory_in_use(&v1), 100);
    }
}
