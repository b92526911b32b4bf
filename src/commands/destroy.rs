//! `devinst destroy [NAME] [--purge]`: remove the container, release the
//! port, and with `--purge` the instance directory, its services' data and
//! volumes too. With NAME, the instance this host's registry knows by that
//! name, from anywhere, also when its worktree is gone.

use super::Invocation;
use crate::cli::DestroyArgs;
use crate::engine::Engine;
use crate::instance::{teardown, Instance, Named};
use crate::state::registry::Entry;
use crate::support::error::WithHint;
use crate::support::output;
use anyhow::{anyhow, Result};
use std::io::{BufRead, IsTerminal, Write};

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
    teardown::destroy(&engine, &instance, &extras, args.purge).await?;
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
    teardown::release(entry)?;
    Ok(0)
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
