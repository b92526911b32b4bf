//! Layer 5: the instance as a thing: find it, prove a container is ours,
//! choose its image, build its container spec, bring it up, its services.

pub mod behind;
pub mod environment;
pub mod exec;
pub mod holdings;
pub mod host;
pub mod image;
pub mod lifecycle;
pub mod owner;
pub mod ownership;
pub mod services;
pub mod setup_steps;
pub mod snapshot;
pub mod spec;
pub mod stale;
pub mod view;

use crate::engine::{Engine, Listed};
use crate::recipe::settings::Settings;
use crate::state::layout::{Layout, Record};
use crate::support::error::WithHint;
use anyhow::{anyhow, Result};
use std::path::Path;

/// A set-up instance: its directory, its `.instance` record and its recipe.
pub struct Instance {
    pub layout: Layout,
    pub record: Record,
    pub settings: Settings,
}

impl Instance {
    /// Finds the instance of the worktree containing `dir`.
    pub fn find(dir: &Path) -> Result<Instance> {
        let layout = Layout::find(dir)
            .ok_or_else(|| {
                anyhow!(
                    "no devinst instance here (`{}` and its parents have no `.sky-dev/.instance`)",
                    dir.display()
                )
            })
            .hint("run `devinst setup` in the worktree first")?;
        let record = layout
            .read_record()
            .hint("run `devinst setup` again to rewrite it")?;
        let settings = Settings::load(&layout.root)?;
        Ok(Instance {
            layout,
            record,
            settings,
        })
    }
}

/// Every container devinst made on this engine, running or not, found by
/// its label.
pub async fn managed_containers(engine: &Engine) -> Result<Vec<Listed>> {
    let label = format!("{}=devinst", spec::LABEL_MANAGED_BY);
    engine.list(Some(&label)).await
}
