//! `devinst destroy [--purge]`: remove the container, release the port, and
//! with `--purge` the instance directory too.

use crate::cli::DestroyArgs;
use crate::engine::Engine;
use crate::instance::spec::LABEL_WORKTREE;
use crate::instance::Instance;
use crate::state::layout::path_text;
use crate::state::registry::Registry;
use crate::support::error::WithHint;
use crate::support::output;
use crate::Context;
use anyhow::{bail, Context as _, Result};
use std::io::{BufRead, IsTerminal, Write};

pub async fn run(ctx: &Context, args: DestroyArgs) -> Result<i32> {
    let instance = Instance::find(&ctx.cwd)?;
    let r = &instance.record;
    let what = if args.purge {
        format!(
            "container `{}` and `{}` (state, logs, venv, snapshots)",
            r.container,
            instance.layout.dir().display()
        )
    } else {
        format!(
            "container `{}` (state and logs in `.sky-dev/` are kept)",
            r.container
        )
    };
    if !args.yes && !confirm(&format!("remove {what}?"))? {
        bail!("nothing removed");
    }
    let engine = Engine::connect(&ctx.engine_choice(Some(&instance.settings)))
        .await
        .hint("the container can only be removed through the engine")?;
    remove_if_ours(&engine, &instance).await?;
    // After the instance: its network can only go once nothing is on it.
    crate::instance::services::remove_all(&engine, &instance).await?;
    let mut registry = Registry::lock()?;
    if registry
        .get(&r.name)
        .is_some_and(|e| e.worktree == instance.layout.root)
    {
        registry.remove(&r.name);
        registry.save()?;
        output::note(format!("released port {}", r.port));
        for (service, port) in &r.service_ports {
            output::note(format!("released port {port} (service `{service}`)"));
        }
    }
    drop(registry);
    if args.purge {
        let images = crate::instance::snapshot::remove_images(&engine, &instance).await?;
        if images > 0 {
            output::note(format!("removed {images} snapshot image(s)"));
        }
        let dir = instance.layout.dir();
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove `{}`", dir.display()))?;
        output::note(format!("removed `{}`", dir.display()));
    }
    Ok(0)
}

/// Removes the instance's container, but only when it is this worktree's:
/// container names are shared by everyone using the engine, and one made for
/// another worktree (by another user's devinst) is not ours to delete.
async fn remove_if_ours(engine: &Engine, instance: &Instance) -> Result<()> {
    let name = &instance.record.container;
    let Some(info) = engine.inspect(name).await? else {
        output::note(format!("container `{name}` does not exist"));
        return Ok(());
    };
    let owner = info
        .config
        .and_then(|c| c.labels)
        .and_then(|labels| labels.get(LABEL_WORKTREE).cloned());
    let ours = owner.as_deref() == Some(&path_text(&instance.record.worktree))
        || crate::instance::ownership::moved_here(owner.as_deref(), instance);
    if !ours {
        output::warn(format!(
            "container `{name}` belongs to the worktree `{}`, not this one; left alone",
            owner.as_deref().unwrap_or("unknown")
        ));
        return Ok(());
    }
    crate::instance::lifecycle::remove(engine, name).await?;
    output::note(format!("removed container `{name}`"));
    Ok(())
}

/// Asks on the terminal; without one (scripts, CI) there is no one to ask,
/// and the command goes ahead.
fn confirm(question: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(true);
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
