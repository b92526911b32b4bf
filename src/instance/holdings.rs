//! What the engine already holds that `setup` must not hand out again: host
//! ports any container publishes, and the names of other worktrees'
//! containers.

use super::spec::LABEL_WORKTREE;
use crate::engine::{Choice, Engine};
use crate::state::layout::is_gone;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What the engine already holds that setup must not hand out again.
#[derive(Default)]
pub struct EngineHoldings {
    /// Host ports containers publish.
    pub ports: BTreeSet<u16>,
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

/// Every container's published ports, and devinst containers' worktrees.
pub async fn engine_holdings(choice: Choice) -> Result<EngineHoldings> {
    let engine = Engine::connect_lazy(&choice)?;
    let list = tokio::time::timeout(std::time::Duration::from_secs(3), engine.list(None))
        .await
        .context("the engine did not answer in time")??;
    let mut held = EngineHoldings::default();
    for c in list {
        held.ports.extend(c.ports.iter().map(|p| p.host_port));
        if let Some(worktree) = c.label(LABEL_WORKTREE) {
            held.worktrees
                .insert(c.name.clone(), PathBuf::from(worktree));
        }
    }
    Ok(held)
}
