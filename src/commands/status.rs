//! `devinst status`: this worktree's instance, as text or JSON.

use crate::cli::JsonArgs;
use crate::engine::Engine;
use crate::instance::Instance;
use crate::state::layout::path_text;
use crate::support::output;
use crate::Context;
use anyhow::Result;
use serde::Serialize;

/// The `--json` shape of one instance. Fields are only ever added.
#[derive(Debug, Serialize)]
pub struct InstanceView {
    pub name: String,
    pub worktree: String,
    pub worktree_exists: bool,
    pub container: String,
    /// `running`, `exited`, `created`, ..., `missing` (no container), or
    /// `unknown` (engine unreachable).
    pub state: String,
    pub port: u16,
    pub ports: Vec<String>,
    pub image: Option<String>,
    pub runtime: Option<String>,
    pub created: String,
    /// The services beside the instance; empty in `list`.
    pub services: Vec<crate::instance::services::ServiceView>,
}

pub async fn run(ctx: &Context, args: JsonArgs) -> Result<i32> {
    let instance = Instance::find(&ctx.cwd)?;
    let engine = Engine::connect(&ctx.engine_choice(Some(&instance.settings))).await?;
    let r = &instance.record;
    let info = engine.inspect(&r.container).await?;
    let mut view = InstanceView {
        name: r.name.clone(),
        worktree: path_text(&r.worktree),
        worktree_exists: true,
        container: r.container.clone(),
        state: "missing".into(),
        port: r.port,
        ports: vec![format!(
            "{}:{} -> {}",
            instance.settings.bind, r.port, instance.settings.container_port
        )],
        // A recipe that cannot be read still shows its configured image.
        image: Some(
            crate::instance::image::intended_image(&instance)
                .unwrap_or_else(|_| instance.settings.image.clone()),
        ),
        runtime: None,
        created: r.created.clone(),
        services: crate::instance::services::views(&engine, &instance).await?,
    };
    if let Some(info) = info {
        if !crate::instance::ownership::belongs_to(&info, &instance) {
            output::warn(format!(
                "the container `{}` was not made for this worktree; `devinst start` says more",
                r.container
            ));
        }
        view.state = info
            .state
            .and_then(|s| s.status)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into());
        view.image = info.config.and_then(|c| c.image).or(view.image);
        view.runtime = info.host_config.and_then(|h| h.runtime);
    }
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
