//! What the engine already holds that `setup` must not hand out again: host
//! ports any container publishes (and those stopped devinst containers
//! publish when started, whichever data directory made them), and the names
//! of other worktrees' containers.

use super::spec::{LABEL_MANAGED_BY, LABEL_WORKTREE};
use crate::engine::{Choice, Engine};
use crate::state::layout::is_gone;
use crate::state::ports::{EnginePorts, HeldBy};
use crate::support::error::WithHint;
use crate::support::output;
use anyhow::{anyhow, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long `setup` waits for the engine's answer, round by round: a busy
/// engine is given time, a hung one an error rather than a wrong answer.
const PATIENCE: [Duration; 3] = [
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];

/// What the engine already holds that setup must not hand out again.
#[derive(Default)]
pub struct EngineHoldings {
    /// Host ports containers hold, with who holds each.
    pub ports: EnginePorts,
    /// devinst containers by name, with the worktree each was made for.
    worktrees: BTreeMap<String, PathBuf>,
}

impl EngineHoldings {
    /// The other live worktree whose instance owns `container`, if any. A
    /// worktree that is gone (or moved away) owns nothing any more.
    pub fn live_owner(&self, container: &str, root: &Path) -> Option<PathBuf> {
        self.worktrees
            .get(container)
            .filter(|w| w.as_path() != root && !is_gone(w))
            .cloned()
    }
}

/// What the engine holds, for `setup`; `None` when no engine runs (nothing
/// listens on its socket), which holds nothing. An engine that does not
/// answer is waited for, round by round, and then an error: its answer
/// is what keeps two data directories from handing out one port.
pub async fn engine_holdings(choice: Choice) -> Result<Option<EngineHoldings>> {
    let Ok(engine) = Engine::connect_lazy(&choice) else {
        return Ok(None);
    };
    let patience: Duration = PATIENCE.iter().sum();
    for (round, limit) in PATIENCE.iter().enumerate() {
        let ask = async {
            match engine.answers().await? {
                true => gather(&engine).await.map(Some),
                false => Ok(None),
            }
        };
        if let Ok(answer) = tokio::time::timeout(*limit, ask).await {
            return answer;
        }
        if round == 0 {
            output::warn(format!(
                "the engine at {} has not answered in {} s; waiting up to {} s",
                engine.endpoint.uri,
                limit.as_secs(),
                patience.as_secs()
            ));
        }
    }
    Err(anyhow!(
        "the engine at {} did not answer within {} s, so the host ports its containers hold are unknown",
        engine.endpoint.uri,
        patience.as_secs()
    ))
    .hint("check the engine (`devinst doctor`), then run `devinst setup` again")
}

/// Every container's published ports, the ports stopped devinst containers
/// are made to publish, and devinst containers' worktrees.
pub async fn gather(engine: &Engine) -> Result<EngineHoldings> {
    let mut held = EngineHoldings::default();
    let mut ours = Vec::new();
    for c in engine.list(None).await? {
        let running = c.state == "running" || c.state == "paused";
        if c.label(LABEL_MANAGED_BY) == Some("devinst") {
            ours.push(c.name.clone());
        } else {
            for p in &c.ports {
                hold(&mut held.ports, p.host_port, &c.name, running);
            }
        }
        if let Some(worktree) = c.label(LABEL_WORKTREE) {
            held.worktrees
                .insert(c.name.clone(), PathBuf::from(worktree));
        }
    }
    // devinst's own containers are inspected: listings show the ports of
    // running containers only (a stopped one takes its ports back when it
    // starts), and Podman 4.3 lists consecutive ports published to
    // consecutive ports inside, as an instance's named ports and their
    // relays are, by the first one alone.
    let inspected = futures_util::future::join_all(ours.iter().map(|n| engine.inspect(n))).await;
    for (name, info) in ours.iter().zip(inspected) {
        if let Some(info) = info? {
            for p in &info.bindings {
                hold(&mut held.ports, p.host_port, name, info.running);
            }
        }
    }
    Ok(held)
}

fn hold(ports: &mut EnginePorts, port: u16, container: &str, running: bool) {
    let holders = ports.entry(port).or_default();
    if !holders.iter().any(|h| h.container == container) {
        holders.push(HeldBy {
            container: container.to_owned(),
            running,
        });
    }
}
