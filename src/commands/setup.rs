//! `devinst setup [NAME]`: make this worktree an instance, or refresh it.

use super::Invocation;
use crate::cli::SetupArgs;
use crate::instance::consent;
use crate::instance::holdings::engine_holdings;
use crate::recipe::settings::Settings;
use crate::state::allocate::{self, Request};
use crate::state::contained::{self, Owners};
use crate::state::layout::{path_text, Layout, Record, DIR_NAME};
use crate::state::registry::Registry;
use crate::state::scripts;
use crate::state::worktree::Worktree;
use crate::support::error::WithHint;
use crate::support::{names, output};
use anyhow::{bail, Result};

pub fn run(ctx: &Invocation, args: SetupArgs) -> Result<i32> {
    let worktree = Worktree::discover(&ctx.cwd)?;
    let root = worktree.root.clone();
    if root.to_str().is_none() {
        bail!("the worktree path `{}` is not valid UTF-8", root.display());
    }
    let layout = Layout::new(&root);
    contained::check_untracked(&root)?;
    contained::check(&layout, &Owners::of(&ctx.cwd))?;
    let settings = Settings::load(&root)?;
    // Before anything is written or any engine asked: the shims, the
    // endpoint and the rest are the recipe's word until the user agrees.
    consent::require(&root, &settings, &ctx.engine_choice(Some(&settings)))?;
    settings.overridden.iter().for_each(output::warn);
    // A record written for a worktree that is still there was copied here:
    // it is that worktree's, not this one's. One whose worktree is gone came
    // along with a move.
    let previous = layout
        .read_record()
        .ok()
        .filter(|p| p.worktree == root || !p.worktree.join(DIR_NAME).is_dir());
    if let Some(explicit) = &args.name {
        names::validate(explicit).hint("pick a name like `feature-x`")?;
    }
    let tier = args
        .tier
        .or_else(|| previous.as_ref().and_then(|p| p.tier.clone()));
    settings.limits_for(tier.as_deref()).hint(
        "name a tier from `[tiers.NAME]` in devinst.toml with `devinst setup --tier NAME`, or add that table",
    )?;
    // What the engine holds (ports, containers' worktrees), gathered before
    // taking the lock; an engine that is down holds nothing.
    let held = super::block_on(engine_holdings(ctx.engine_choice(Some(&settings))))?;
    // Deleting `.port` asks for a new one (the hint when a port is taken).
    let new_port = previous.is_some() && !layout.port_file().exists();

    let mut registry = Registry::lock()?;
    let request = Request {
        worktree: &worktree,
        settings: &settings,
        explicit: args.name.as_deref(),
        previous: previous.as_ref(),
        tier,
        new_port,
    };
    let live_owner = |container: &str| {
        held.as_ref()
            .and_then(|held| held.live_owner(container, &root))
    };
    let engine_ports = held.as_ref().map(|held| &held.ports);
    let (record, renamed) = allocate::reserve(&mut registry, &request, engine_ports, &live_owner)?;
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

    for old in renamed {
        output::warn(format!("this worktree's instance was renamed from `{old}`; its old container is left for `devinst gc`"));
    }
    print_next_steps(&layout, &settings, &record, previous.is_some());
    Ok(0)
}

fn print_next_steps(layout: &Layout, settings: &Settings, record: &Record, refreshed: bool) {
    let verb = if refreshed { "refreshed" } else { "set up" };
    output::note(format!(
        "instance `{}` {verb}: container `{}`, port {}:{} -> {}",
        record.name, record.container, settings.bind, record.port, settings.container_port
    ));
    for (service, port) in &record.service_ports {
        output::note(format!(
            "service `{service}`: port {}:{port} -> {}",
            settings.bind,
            settings
                .services
                .get(service)
                .and_then(|s| s.port)
                .unwrap_or(0)
        ));
    }
    let shims: Vec<&str> = settings.shims.keys().map(String::as_str).collect();
    output::note(format!(
        "next:\n    source {}\n    start-container\n    {}",
        crate::support::shell::quote(&path_text(&layout.bin_dir().join("activate"))),
        shims
            .first()
            .map_or("devinst exec -- CMD".to_owned(), |s| format!("{s} --help"))
    ));
}
