//! `devinst status`: this worktree's instance, as text or JSON.

use super::Invocation;
use crate::cli::JsonArgs;
use crate::engine::Engine;
use crate::instance::view::InstanceView;
use crate::instance::Instance;
use crate::support::output;
use crate::support::table::{self, Table};
use anyhow::Result;

pub async fn run(ctx: &Invocation, args: JsonArgs) -> Result<i32> {
    let instance = Instance::find(&ctx.cwd)?;
    let engine = Engine::connect(&ctx.engine_choice(Some(&instance.settings))).await?;
    let view = crate::instance::view::status(&engine, &instance).await?;
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
        ("setup", setup_text(&view.setup)),
    ];
    lines.extend(services.lines().map(|line| ("service", line.to_owned())));
    let mut nodes = Table::headless();
    for node in &view.nodes {
        nodes.row([
            node.rank.to_string(),
            format!("({})", node.container),
            node.state.clone(),
            node.address.clone().unwrap_or_default(),
        ]);
    }
    lines.extend(
        nodes
            .to_string()
            .lines()
            .map(|line| ("node", line.to_owned())),
    );
    table::pairs(lines)
}

/// The setup steps' progress, with what to do about it.
fn setup_text(progress: &str) -> String {
    match progress {
        "incomplete" => {
            "incomplete (a step failed or was interrupted; `devinst start` runs them again)".into()
        }
        "pending" => "pending (`devinst start` runs them)".into(),
        "none" => "none (the recipe has no setup steps)".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::nodes::NodeView;
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
            extra_ports: Default::default(),
            image: None,
            runtime: None,
            created: "2026-11-23T14:30:05Z".into(),
            setup: "incomplete".into(),
            services: vec![
                service("db", "running", &["127.0.0.1:46581 -> 5432"]),
                service("cache", "missing", &[]),
            ],
            nodes: vec![
                NodeView {
                    rank: 0,
                    container: "skypilot-dev-feat".into(),
                    state: "running".into(),
                    address: Some("172.18.0.2".into()),
                },
                NodeView {
                    rank: 1,
                    container: "skypilot-dev-feat-node-1".into(),
                    state: "exited".into(),
                    address: None,
                },
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
             setup:     incomplete (a step failed or was interrupted; `devinst start` runs them again)\n\
             service:   db     (skypilot-dev-feat-db)     running  127.0.0.1:46581 -> 5432\n\
             service:   cache  (skypilot-dev-feat-cache)  missing\n\
             node:      0  (skypilot-dev-feat)         running  172.18.0.2\n\
             node:      1  (skypilot-dev-feat-node-1)  exited"
        );
    }
}
