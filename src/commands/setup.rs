//! `devinst setup [NAME]`: make this worktree an instance, or refresh it.

use super::Invocation;
use crate::cli::SetupArgs;
use crate::instance::provision::{self, SetupRequest};
use crate::recipe::settings::Settings;
use crate::state::layout::{path_text, Layout, Record};
use crate::support::output;
use anyhow::Result;

pub fn run(ctx: &Invocation, args: SetupArgs) -> Result<i32> {
    let request = SetupRequest {
        dir: &ctx.cwd,
        name: args.name.as_deref(),
        tier: args.tier,
    };
    let choose = |settings: &Settings| ctx.engine_choice(Some(settings));
    let done = super::block_on(provision::setup(request, &choose))?;
    done.settings.overridden.iter().for_each(output::warn);
    for old in &done.renamed {
        output::warn(format!("this worktree's instance was renamed from `{old}`; its old container is left for `devinst gc`"));
    }
    print_next_steps(&done.layout, &done.settings, &done.record, done.refreshed);
    Ok(0)
}

fn print_next_steps(layout: &Layout, settings: &Settings, record: &Record, refreshed: bool) {
    let verb = if refreshed { "refreshed" } else { "set up" };
    output::note(format!(
        "instance `{}` {verb}: container `{}`, port {}:{} -> {}",
        record.name, record.container, settings.bind, record.port, settings.container_port
    ));
    for (name, port) in &record.extra_ports {
        output::note(format!(
            "port `{name}`: {}:{port} -> {}",
            settings.bind,
            settings.extra_ports.get(name).copied().unwrap_or(0)
        ));
    }
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
