//! Making a worktree an instance, or refreshing it (`devinst setup`, and
//! `POST /v1/instances` of `devinst serve`): its name and ports reserved in
//! the registry, `.sky-dev/` written. Nothing is created on the engine.

use super::consent;
use super::holdings::engine_holdings;
use crate::engine::Choice;
use crate::recipe::settings::Settings;
use crate::state::allocate::{self, Request};
use crate::state::contained::{self, Owners};
use crate::state::layout::{Layout, Record, DIR_NAME};
use crate::state::registry::Registry;
use crate::state::scripts;
use crate::state::worktree::Worktree;
use crate::support::error::WithHint;
use crate::support::names;
use anyhow::{bail, Result};
use std::path::Path;

/// What `setup` is asked for.
pub struct SetupRequest<'a> {
    /// A directory in the worktree.
    pub dir: &'a Path,
    /// The name asked for; by default the worktree's directory name.
    pub name: Option<&'a str>,
    /// `--tier`; by default the one chosen before.
    pub tier: Option<String>,
}

/// A worktree set up.
pub struct SetUp {
    pub layout: Layout,
    pub settings: Settings,
    pub record: Record,
    /// Whether it was an instance already.
    pub refreshed: bool,
    /// Names this worktree's instance had before it was renamed.
    pub renamed: Vec<String>,
}

/// Sets up the worktree containing `request.dir`. `choose` names the engines
/// to ask (the CLI's `--host`, the user's config, the recipe's).
pub async fn setup(
    request: SetupRequest<'_>,
    choose: &(dyn Fn(&Settings) -> Choice + Sync),
) -> Result<SetUp> {
    let worktree = Worktree::discover(request.dir)?;
    let root = worktree.root.clone();
    if root.to_str().is_none() {
        bail!("the worktree path `{}` is not valid UTF-8", root.display());
    }
    let layout = Layout::new(&root);
    contained::check_untracked(&root)?;
    contained::check(&layout, &Owners::of(request.dir))?;
    let settings = Settings::load(&root)?;
    // Before anything is written or any engine asked: the shims, the
    // endpoint and the rest are the recipe's word until the user agrees.
    consent::require(&root, &settings, &choose(&settings))?;
    // A record written for a worktree that is still there was copied here:
    // it is that worktree's, not this one's. One whose worktree is gone came
    // along with a move.
    let previous = layout
        .read_record()
        .ok()
        .filter(|p| p.worktree == root || !p.worktree.join(DIR_NAME).is_dir());
    if let Some(explicit) = request.name {
        names::validate(explicit).hint("pick a name like `feature-x`")?;
    }
    let tier = request
        .tier
        .or_else(|| previous.as_ref().and_then(|p| p.tier.clone()));
    settings.limits_for(tier.as_deref()).hint(
        "name a tier from `[tiers.NAME]` in devinst.toml with `devinst setup --tier NAME`, or add that table",
    )?;
    // What the engine holds (ports, containers' worktrees), gathered before
    // taking the lock; an engine that is down holds nothing.
    let held = engine_holdings(choose(&settings)).await?;
    // Deleting `.port` asks for a new one (the hint when a port is taken).
    let new_port = previous.is_some() && !layout.port_file().exists();

    let mut registry = Registry::lock()?;
    let allocation = Request {
        worktree: &worktree,
        settings: &settings,
        explicit: request.name,
        previous: previous.as_ref(),
        tier,
        new_port,
    };
    let live_owner = |container: &str| {
        held.as_ref()
            .and_then(|held| held.live_owner(container, &root))
    };
    let engine_ports = held.as_ref().map(|held| &held.ports);
    let (record, renamed) =
        allocate::reserve(&mut registry, &allocation, engine_ports, &live_owner)?;
    // The registry is saved first: a setup killed after this point finds its
    // own reservation next time and completes.
    registry.save()?;

    // Before `state/` is made anew: a restore cut short may have moved it.
    crate::state::restore::recover(&layout)?;
    layout.create_dirs()?;
    scripts::write_scripts(&layout, &settings, &record)?;
    layout.write_record(&record)?;
    // Held until `.instance` names the entry just saved: `devinst gc` judges
    // entries against their worktree under this lock, and must never see a
    // half-made (or half-renamed) instance of a setup still running.
    drop(registry);
    worktree.exclude(&format!("/{DIR_NAME}/"))?;
    Ok(SetUp {
        layout,
        settings,
        record,
        refreshed: previous.is_some(),
        renamed,
    })
}
