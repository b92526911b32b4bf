//! `devinst destroy [--purge]`: remove the container, release the port, and
//! with `--purge` the instance directory too.

use super::Instance;
use crate::cli::DestroyArgs;
use crate::engine::Engine;
use crate::error::WithHint;
use crate::registry::Registry;
use crate::{output, Context};
use anyhow::{bail, Context as _, Result};
use std::io::{BufRead, IsTerminal, Write};

pub async fn run(ctx: &Context, args: DestroyArgs) -> Result<i32> {
    let instance = Instance::find(&ctx.cwd)?;
    let r = &instance.record;
    let what = if args.purge {
        format!(
            "container `{}` and `{}` (state, logs, venv)",
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
    super::start::remove(&engine, &r.container).await?;
    output::note(format!("removed container `{}`", r.container));
    let mut registry = Registry::lock()?;
    if registry
        .get(&r.name)
        .is_some_and(|e| e.worktree == instance.layout.root)
    {
        registry.remove(&r.name);
        registry.save()?;
        output::note(format!("released port {}", r.port));
    }
    drop(registry);
    if args.purge {
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
