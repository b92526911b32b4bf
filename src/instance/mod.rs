//! Layer 5: the instance as a thing: find it, prove a container is ours,
//! choose its image, build its container spec, bring it up, its services.

pub mod consent;
pub mod exec;
pub mod holdings;
pub mod host;
pub mod image;
pub mod lifecycle;
pub mod ownership;
pub mod services;
pub mod setup_steps;
pub mod snapshot;
pub mod spec;
pub mod stale;
pub mod view;

use crate::engine::{Engine, Listed};
use crate::recipe::settings::Settings;
use crate::state::contained::{self, Owners};
use crate::state::layout::{Layout, Record};
use crate::state::registry;
use crate::support::error::WithHint;
use anyhow::{anyhow, Context, Result};
use std::path::Path;

/// A set-up instance: its directory, its `.instance` record and its recipe.
pub struct Instance {
    pub layout: Layout,
    pub record: Record,
    pub settings: Settings,
    /// This data directory's identity, which every container made from it
    /// carries (see [`ownership`]).
    pub identity: String,
}

impl Instance {
    /// Finds the instance of the worktree containing `dir`: the nearest
    /// `.sky-dev/.instance` up to the worktree's root, in a `.sky-dev/` that
    /// is contained (no links, not another user's) and set up for this very
    /// place, by its real path.
    pub fn find(dir: &Path) -> Result<Instance> {
        let start = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve `{}`", dir.display()))?;
        let layout = Layout::find(&start)
            .ok_or_else(|| {
                anyhow!(
                    "no devinst instance here (`{}` and its parents up to the worktree's root have no `.sky-dev/.instance`)",
                    dir.display()
                )
            })
            .hint("run `devinst setup` in the worktree first")?;
        contained::check(&layout, &Owners::of(&start))?;
        let record = layout
            .read_record()
            .hint("run `devinst setup` again to rewrite it")?;
        if record.worktree != layout.root {
            return Err(anyhow!(
                "`{}` was written for the worktree `{}`, not this one (it was copied here, or the worktree moved)",
                layout.instance_file().display(),
                record.worktree.display()
            ))
            .hint("run `devinst setup` to give this worktree its own instance");
        }
        let settings = Settings::load(&layout.root)?;
        Ok(Instance {
            layout,
            record,
            settings,
            identity: registry::identity()?,
        })
    }
}

/// Every container devinst made on this engine, running or not, found by
/// its label.
pub async fn managed_containers(engine: &Engine) -> Result<Vec<Listed>> {
    let label = format!("{}=devinst", spec::LABEL_MANAGED_BY);
    engine.list(Some(&label)).await
}
