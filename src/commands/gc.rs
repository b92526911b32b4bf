//! `devinst gc [--dry-run] [--all]`: remove what no live worktree stands
//! behind, among what this data directory made (`--all`: every devinst
//! container on the engine).
//!
//! An instance whose worktree exists and names its container is never
//! touched, even when this registry does not know it: another user of the
//! engine (another data directory) may own it. Neither is one whose
//! worktree cannot be seen.

use super::Invocation;
use crate::cli::GcArgs;
use crate::engine::Engine;
use crate::instance::{services, stale};
use crate::state::registry::{identity, Entry, Registry};
use crate::support::output;
use anyhow::Result;

pub async fn run(ctx: &Invocation, args: GcArgs) -> Result<i32> {
    let engine = Engine::connect(&ctx.engine_choice(None)).await?;
    // Held throughout, so no setup registers or renames an instance while
    // its worktree is being judged.
    let mut registry = Registry::lock()?;
    let entries: Vec<Entry> = registry.entries().cloned().collect();
    let scope = if args.all {
        stale::Scope::All
    } else {
        stale::Scope::DataDir(identity()?)
    };
    let plan = stale::find(&engine, &entries, &scope).await?;

    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for (container, why) in &plan.containers {
        if !args.dry_run {
            engine.remove(container).await?;
        }
        output::data(format!("{verb} container `{container}`: {why}"));
    }
    if !args.dry_run {
        // An instance with services had a private network named after its
        // container; with the instance and its services gone, so is it.
        for (container, _) in &plan.containers {
            services::remove_private_network(&engine, container).await?;
        }
    }
    for (volume, why) in &plan.volumes {
        if !args.dry_run {
            // One still in use (by a container gc left alone) stays.
            if let Err(err) = engine.remove_volume(volume).await {
                output::warn(format!("{err:#}"));
                continue;
            }
        }
        output::data(format!("{verb} volume `{volume}`: {why}"));
    }
    for (entry, why) in &plan.entries {
        if !args.dry_run {
            registry.remove(&entry.name);
        }
        output::data(format!(
            "{verb} instance `{}` (port {}): {why}",
            entry.name, entry.port
        ));
    }
    if !args.dry_run && !plan.entries.is_empty() {
        registry.save()?;
    }
    for note in &plan.kept {
        output::note(note);
    }
    if plan.containers.is_empty() && plan.volumes.is_empty() && plan.entries.is_empty() {
        output::note("nothing to clean up");
    }
    Ok(0)
}
