//! `devinst status`: this worktree's instance, as text or JSON.

use crate::cli::JsonArgs;
use crate::engine::Engine;
use crate::instance::Instance;
use crate::state::layout::path_text;
use crate::support::output;
use crate::support::table::{self, Table};
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
        output::data(text(&view));
    }
    Ok(0)
}

/// One labelled line per field, then one per service, the services' own
/// fields lined up among themselves.
fn text(view: &InstanceView) -> String {
    let mut services = Table::headless();
    for service in &view.services {
        services.row([
            service.name.clone(),
            format!("({})", service.container),
            service.state.clone(),
            service.ports.join(", "),
        ]);
    }
    let services = services.to_string();
    let mut lines = vec![
        ("name", view.name.clone()),
        ("worktree", view.worktree.clone()),
        ("container", view.container.clone()),
        ("state", view.state.clone()),
        ("image", view.image.clone().unwrap_or_else(|| "-".into())),
        ("ports", view.ports.join(", ")),
        (
            "runtime",
            view.runtime.clone().unwrap_or_else(|| "default".into()),
        ),
        ("created", view.created.clone()),
    ];
    lines.extend(services.lines().map(|line| ("service", line.to_owned())));
    table::pairs(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::services::ServiceView;

    fn service(name: &str, state: &str, ports: &[&str]) -> ServiceView {
        ServiceView {
            name: name.into(),
            container: format!("skypilot-dev-feat-{name}"),
            image: "img".into(),
            state: state.into(),
            host_port: None,
            port: None,
            ports: ports.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn text_lines_up_the_fields_and_the_services() {
        let view = InstanceView {
            name: "feat".into(),
            worktree: "/w/feat".into(),
            worktree_exists: true,
            container: "skypilot-dev-feat".into(),
            state: "running".into(),
            port: 46580,
            ports: vec!["127.0.0.1:46580 -> 8080".into()],
            image: None,
            runtime: None,
            created: "2026-11-23T14:30:05Z".into(),
            services: vec![
                service("db", "running", &["127.0.0.1:46581 -> 5432"]),
                service("cache", "missing", &[]),
            ],
        };
        assert_eq!(
            text(&view),
            "name:      feat\n\
             worktree:  /w/feat\n\
             container: skypilot-dev-feat\n\
             state:     running\n\
             image:     -\n\
             ports:     127.0.0.1:46580 -> 8080\n\
             runtime:   default\n\
             created:   2026-11-23T14:30:05Z\n\
             service:   db     (skypilot-dev-feat-db)     running  127.0.0.1:46581 -> 5432\n\
             service:   cache  (skypilot-dev-feat-cache)  missing"
        );
    }
}
