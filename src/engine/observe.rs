//! Watching containers: what the engine is, a container's output, its cpu
//! and memory.

use super::Engine;
use crate::support::error::SilentExit;
use anyhow::{anyhow, Context, Result};
use bollard::container::LogOutput;
use bollard::models::{ContainerCpuStats, ContainerMemoryStats, ContainerStatsResponse};
use bollard::query_parameters::{LogsOptions, StatsOptions};
use futures_util::StreamExt;
use std::time::Duration;

/// The engine as it describes itself.
#[derive(Debug, Clone, Default)]
pub struct Description {
    pub server_version: Option<String>,
    /// The API version this client speaks with it.
    pub api_version: String,
    pub min_api_version: Option<String>,
    pub max_api_version: Option<String>,
}

/// Its OCI runtimes.
#[derive(Debug, Clone, Default)]
pub struct Runtimes {
    /// Sorted by name.
    pub names: Vec<String>,
    pub default: Option<String>,
}

/// A container's use of cpu and memory, as `docker stats` shows it.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// Percent of one cpu: 200 is two cpus busy.
    pub cpu_percent: f64,
    /// Bytes in use, page cache that can be reclaimed left out.
    pub memory_usage: u64,
    /// Bytes the container may use: its limit, or the host's memory.
    pub memory_limit: u64,
    pub pids: Option<u64>,
}

impl Engine {
    pub async fn describe(&self) -> Result<Description> {
        let v = self.docker.version().await.map_err(|e| self.explain(e))?;
        Ok(Description {
            server_version: v.version,
            api_version: self.docker.client_version().to_string(),
            min_api_version: v.min_api_version,
            max_api_version: v.api_version,
        })
    }

    pub async fn runtimes(&self) -> Result<Runtimes> {
        let info = self.docker.info().await.map_err(|e| self.explain(e))?;
        let mut names: Vec<String> = info.runtimes.unwrap_or_default().into_keys().collect();
        names.sort();
        Ok(Runtimes {
            names,
            default: info.default_runtime,
        })
    }

    /// Copies a container's output to stdout and stderr, the last `tail`
    /// lines (all with `None`), and with `follow` until it stops. Ctrl-C ends
    /// it with 130, as a shell reports a command ended that way.
    pub async fn copy_logs(&self, name: &str, tail: Option<u64>, follow: bool) -> Result<()> {
        let copy = async {
            let mut stream = self.docker.logs(name, Some(logs_options(tail, follow)));
            while let Some(frame) = stream.next().await {
                match frame.map_err(|e| self.explain(e))? {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        super::exec::write_fd(1, &message)?
                    }
                    LogOutput::StdErr { message } => super::exec::write_fd(2, &message)?,
                    LogOutput::StdIn { .. } => {}
                }
            }
            anyhow::Ok(())
        };
        tokio::select! {
            result = copy => result,
            _ = tokio::signal::ctrl_c() => Err(SilentExit { code: 130 }.into()),
        }
    }

    /// A container's output as it comes, both streams together: the last
    /// `tail` lines (all with `None`), and with `follow` until it stops.
    pub fn log_stream(
        &self,
        name: &str,
        tail: Option<u64>,
        follow: bool,
    ) -> impl futures_util::Stream<Item = Result<bytes::Bytes>> + Send + 'static {
        self.docker
            .logs(name, Some(logs_options(tail, follow)))
            .filter_map(move |frame| {
                let item = match frame {
                    Ok(LogOutput::StdIn { .. }) => None,
                    Ok(LogOutput::StdOut { message })
                    | Ok(LogOutput::StdErr { message })
                    | Ok(LogOutput::Console { message }) => Some(Ok(message)),
                    Err(err) => Some(Err(anyhow!("the engine's log stream broke off: {err}"))),
                };
                std::future::ready(item)
            })
    }

    /// A running container's cpu and memory use now.
    pub async fn usage(&self, name: &str) -> Result<Usage> {
        let (before, now) = two_samples(self, name).await?;
        let memory = now.memory_stats.unwrap_or_default();
        Ok(Usage {
            cpu_percent: cpu_percent(&now.cpu_stats.unwrap_or_default(), &before),
            memory_usage: memory_in_use(&memory),
            memory_limit: memory.limit.unwrap_or(0),
            pids: now.pids_stats.and_then(|p| p.current),
        })
    }
}

fn logs_options(tail: Option<u64>, follow: bool) -> LogsOptions {
    LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        tail: tail.map_or_else(|| "all".to_owned(), |n| n.to_string()),
        ..Default::default()
    }
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
