//! `devinst destroy [--purge]`: remove the container, release the port, and
//! with `--purge` the instance directory too.

use super::Invocation;
use crate::cli::DestroyArgs;
use crate::engine::Engine;
use crate::instance::{lifecycle, Instance};
use crate::state::registry::Registry;
use crate::support::error::WithHint;
use crate::support::output;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, IsTerminal, Write};

pub async fn run(ctx: &Invocation, args: DestroyArgs) -> Result<i32> {
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
    lifecycle::remove_if_ours(&engine, &instance).await?;
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
