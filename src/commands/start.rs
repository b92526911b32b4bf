//! `devinst start`: create the container if missing, start it, run the setup
//! steps when their inputs changed, print the port mapping. Idempotent.

use super::Invocation;
use crate::cli::StartArgs;
use crate::engine::Engine;
use crate::instance::image::ImageChoice;
use crate::instance::{consent, lifecycle, Instance};
use crate::support::output;
use anyhow::Result;

pub async fn run(ctx: &Invocation, args: StartArgs) -> Result<i32> {
    let instance = Instance::find(&ctx.cwd)?;
    let choice = ctx.engine_choice(Some(&instance.settings));
    consent::require(&instance.layout.root, &instance.settings, &choice)?;
    instance.settings.overridden.iter().for_each(output::warn);
    // An image recipe's files are found and checked before the engine is
    // asked anything.
    let image = ImageChoice::of(&instance)?;
    let engine = Engine::connect(&choice).await?;
    lifecycle::ensure_running_with(&engine, &instance, args.recreate, &image, args.cold).await?;
    let s = &instance.settings;
    output::data(format!(
        "{}:{} -> {}",
        s.bind, instance.record.port, s.container_port
    ));
    for (name, inside) in &s.extra_ports {
        if let Some(host) = instance.record.extra_ports.get(name) {
            output::data(format!("{}:{host} -> {inside} ({name})", s.bind));
        }
    }
    for service in s.services.values() {
        if let (Some(inside), Some(host)) =
            (service.port, instance.record.service_port(&service.name))
        {
            output::note(format!(
                "service `{}`: {}:{host} -> {inside}",
                service.name, s.bind
            ));
        }
    }
    Ok(0)
}
