//! `devinst destroy [NAME] [--purge]`: remove the container, release the
//! port, and with `--purge` the instance directory, its services' data and
//! volumes too. With NAME, the instance this host's registry knows by that
//! name, from anywhere, also when its worktree is gone.

use super::Invocation;
use crate::cli::DestroyArgs;
use crate::engine::Engine;
use crate::instance::{lifecycle, nodes, services, snapshot, teardown, Instance, Named};
use crate::state::registry::{Entry, Registry};
use crate::support::error::WithHint;
use crate::support::output;
use anyhow::{anyhow, Result};
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

pub async fn run(ctx: &Invocation, args: DestroyArgs) -> Result<i32> {
    let instance = match args.target() {
        None => Instance::find(&ctx.cwd)?,
        Some(name) => match Instance::named(name)? {
            Named::Here(instance) => *instance,
            Named::Gone { entry, why } => return gone(ctx, &entry, &why, &args).await,
        },
    };
    let r = &instance.record;
    let engine = Engine::connect(&ctx.engine_choice(Some(&instance.settings)))
        .await
        .hint("the container can only be removed through the engine")?;
    let extras = match args.purge {
        true => teardown::purge_extras(&engine, &instance).await?,
        false => Default::default(),
    };
    let what = if args.purge {
        format!(
            "container `{}` and `{}` (state, logs, venv, snapshots)",
            r.container,
            instance.layout.dir().display()
        )
    } else {
        format!(
            "container `{}` (state, logs and service data in `.sky-dev/` are kept)",
            r.container
        )
    };
    if !confirm(&format!("remove {what}"), &extras.lines(), &args)? {
        output::note("nothing removed");
        return Ok(0);
    }
    if args.purge {
        // Found by their data in `.sky-dev/snapshots/`, so before it goes.
        let images = snapshot::remove_images(&engine, &instance).await?;
        if images > 0 {
            output::note(format!("removed {images} snapshot image(s)"));
        }
        teardown::clear_dir(&engine, &instance).await?;
    }
    lifecycle::remove_if_ours(&engine, &instance).await?;
    nodes::remove_all(&engine, &r.worktree, &r.container).await?;
    // After the instance: its network can only go once nothing is on it.
    services::remove_all(&engine, &instance, args.purge).await?;
    teardown::remove_volumes(&engine, &extras.volumes).await?;
    release(&r.name, &instance.layout.root, r.port, &r.service_ports)?;
    if args.purge {
        teardown::remove_dir(&instance.layout)?;
        output::note(format!("removed `{}`", instance.layout.dir().display()));
    }
    Ok(0)
}

/// `destroy NAME` for an instance only the registry and the engine still
/// know: there is no `.sky-dev/` to remove.
async fn gone(ctx: &Invocation, entry: &Entry, why: &str, args: &DestroyArgs) -> Result<i32> {
    let engine = Engine::connect(&ctx.engine_choice(None))
        .await
        .hint("the container can only be removed through the engine")?;
    let volumes = match args.purge {
        true => teardown::gone_volumes(&engine, entry).await?,
        false => Vec::new(),
    };
    let lines: Vec<String> = volumes.iter().map(|v| format!("  volume `{v}`")).collect();
    let question = format!(
        "remove instance `{}` ({why}): container `{}` and its services",
        entry.name, entry.container
    );
    if !confirm(&question, &lines, args)? {
        output::note("nothing removed");
        return Ok(0);
    }
    teardown::remove_gone(&engine, entry, args.purge).await?;
    teardown::remove_volumes(&engine, &volumes).await?;
    release(&entry.name, &entry.worktree, entry.port, &entry.services)?;
    Ok(0)
}

/// Drops the registry entry, if it is still this worktree's.
fn release(name: &str, worktree: &Path, port: u16, services: &BTreeMap<String, u16>) -> Result<()> {
    let mut registry = Registry::lock()?;
    if registry.get(name).is_some_and(|e| e.worktree == worktree) {
        registry.remove(name);
        registry.save()?;
        output::note(format!("released port {port}"));
        for (service, port) in services {
            output::note(format!("released port {port} (service `{service}`)"));
        }
    }
    Ok(())
}

/// Asks on the terminal, with `details` (one line each) under the question.
/// Without one (scripts, CI) there is no one to ask: a plain destroy goes
/// ahead, but `--purge` deletes data and needs `--yes`.
fn confirm(question: &str, details: &[String], args: &DestroyArgs) -> Result<bool> {
    if args.yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        if !args.purge {
            return Ok(true);
        }
        return Err(anyhow!(
            "`destroy --purge` deletes the instance's data, and there is no terminal to ask on"
        ))
        .hint("to delete without asking, add `--yes`: `devinst destroy --purge --yes`");
    }
    let mut text = question.to_owned();
    for line in details {
        text.push('\n');
        text.push_str(line);
    }
    eprint!("{text}\n? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
