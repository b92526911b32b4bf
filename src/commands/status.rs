//! `devinst status`: this worktree's instance, as text or JSON.

use super::Invocation;
use crate::cli::JsonArgs;
use crate::engine::Engine;
use crate::instance::Instance;
use crate::support::output;
use anyhow::Result;

pub async fn run(ctx: &Invocation, args: JsonArgs) -> Result<i32> {
    let instance = Instance::find(&ctx.cwd)?;
    let engine = Engine::connect(&ctx.engine_choice(Some(&instance.settings))).await?;
    let view = crate::instance::view::status(&engine, &instance).await?;
    if args.json {
        output::json(&view);
    } else {
        output::data(format!(
            "name:      {}\nworktree:  {}\ncontainer: {}\nstate:     {}\nimage:     {}\nports:     {}\nruntime:   {}\ncreated:   {}",
            view.name,
            view.worktree,
            view.container,
            view.state,
            view.image.as_deref().unwrap_or("-"),
            view.ports.join(", "),
            view.runtime.as_deref().unwrap_or("default"),
            view.created
        ));
        for service in &view.services {
            output::data(format!(
                "service:   {} ({}) {} {}",
                service.name,
                service.container,
                service.state,
                service.ports.join(", ")
            ));
        }
    }
    Ok(0)
}
