//! Layer 5: the instance as a thing: find it, prove a container is ours,
//! choose its image, build its container spec, bring it up, its services.

pub mod agent;
pub mod behind;
pub mod consent;
pub mod environment;
pub mod exec;
pub mod holdings;
pub mod host;
pub mod image;
pub mod lifecycle;
pub mod nodes;
pub mod owner;
pub mod ownership;
pub mod provision;
pub mod services;
pub mod setup_steps;
pub mod snapshot;
pub mod spec;
pub mod stale;
pub mod teardown;
pub mod travel;
pub mod usage;
pub mod view;
pub mod volumes;
pub mod warm;

use crate::engine::{Engine, Listed};
use crate::recipe::settings::Settings;
use crate::state::contained::{self, Owners};
use crate::state::layout::{Layout, Record};
use crate::state::registry::{self, Entry, Registry};
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
        Instance::load(layout)
    }

    /// The instance set up in `layout`, with a snapshot restore that was
    /// cut short finished or rolled back first.
    fn load(layout: Layout) -> Result<Instance> {
        crate::state::restore::recover(&layout)?;
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

    /// The instance this data directory's registry knows as `name`,
    /// wherever it is: in its worktree, or gone from it.
    pub fn named(name: &str) -> Result<Named> {
        let entry = Registry::read_unlocked()?
            .into_iter()
            .find(|e| e.name == name)
            .ok_or_else(|| anyhow!("no instance `{name}` in this host's registry"))
            .hint("`devinst list` shows the instances")?;
        let layout = Layout::new(&entry.worktree);
        let shown = entry.worktree.display().to_string();
        match std::fs::symlink_metadata(layout.instance_file()) {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let why = format!("its worktree `{shown}` is gone");
                return Ok(Named::Gone { entry, why });
            }
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("cannot see the worktree `{shown}` of `{name}`"))
            }
        }
        contained::check(&layout, &Owners::of(&entry.worktree))?;
        let instance = Instance::load(layout)?;
        if instance.record.name != name {
            let why = format!(
                "its worktree `{shown}` is now instance `{}`",
                instance.record.name
            );
            return Ok(Named::Gone { entry, why });
        }
        Ok(Named::Here(Box::new(instance)))
    }
}

/// An instance found by its name.
pub enum Named {
    /// Set up in its worktree, as the registry says.
    Here(Box<Instance>),
    /// Only the registry and the engine still know it.
    Gone { entry: Entry, why: String },
}

/// The engines named: `flag` (`--host`), the user's config, the recipe's
/// `[engine] host` (see `engine::discover` for the whole order).
pub fn engine_choice(flag: Option<String>, settings: Option<&Settings>) -> crate::engine::Choice {
    let user = match settings {
        Some(s) => s.user_config.engine.host.clone(),
        None => {
            crate::recipe::user_config::UserConfig::load()
                .unwrap_or_else(|err| {
                    crate::support::output::warn(format!("{err:#}; going on without it"));
                    Default::default()
                })
                .engine
                .host
        }
    };
    crate::engine::Choice {
        flag,
        user,
        config: settings.and_then(|s| s.engine_host.clone()),
    }
}

/// Every container devinst made on this engine, running or not, found by
/// its label.
pub async fn managed_containers(engine: &Engine) -> Result<Vec<Listed>> {
    let label = format!("{}=devinst", spec::LABEL_MANAGED_BY);
    engine.list(Some(&label)).await
}
