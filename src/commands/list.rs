//! `devinst list`: every instance on this host, from the registry and from the
//! engine's labels (so containers whose worktree is gone show up too).

use super::status::InstanceView;
use crate::cli::JsonArgs;
use crate::engine::{summary_name, Engine};
use crate::instance::spec::{LABEL_INSTANCE, LABEL_SERVICE, LABEL_WORKTREE};
use crate::state::layout::path_text;
use crate::state::registry::Registry;
use crate::support::output;
use crate::support::table::Table;
use crate::Context;
use anyhow::Result;
use std::collections::BTreeMap;

pub async fn run(ctx: &Context, args: JsonArgs) -> Result<i32> {
    let mut views: BTreeMap<String, InstanceView> = BTreeMap::new();
    for entry in Registry::snapshot()? {
        views.insert(
            entry.container.clone(),
            InstanceView {
                worktree_exists: entry.worktree_exists(),
                name: entry.name,
                worktree: path_text(&entry.worktree),
                container: entry.container,
                state: "unknown".into(),
                port: entry.port,
                ports: Vec::new(),
                image: None,
                runtime: None,
                created: entry.created,
                services: Vec::new(),
            },
        );
    }
    match Engine::connect(&ctx.engine_choice(None)).await {
        Ok(engine) => merge_containers(&engine, &mut views).await?,
        // The first layer of the chain is the hint; the root says what failed.
        Err(err) => output::warn(format!("container states unknown: {}", err.root_cause())),
    }
    let views: Vec<InstanceView> = views.into_values().collect();
    if args.json {
        output::json(&views);
        return Ok(0);
    }
    let mut table = Table::new(["NAME", "STATE", "PORT", "CONTAINER", "WORKTREE"]);
    for v in &views {
        let gone = if v.worktree_exists { "" } else { " (gone)" };
        table.row([
            v.name.clone(),
            v.state.clone(),
            v.port.to_string(),
            v.container.clone(),
            format!("{}{gone}", v.worktree),
        ]);
    }
    output::data(table);
    Ok(0)
}

async fn merge_containers(
    engine: &Engine,
    views: &mut BTreeMap<String, InstanceView>,
) -> Result<()> {
    let containers = engine.managed_containers().await?;
    for c in containers {
        let Some(name) = summary_name(&c) else {
            continue;
        };
        let labels = c.labels.clone().unwrap_or_default();
        // A service's ports show with its instance, not as an instance.
        let parent = labels
            .get(LABEL_SERVICE)
            .and_then(|s| name.strip_suffix(&format!("-{s}")))
            .filter(|parent| views.contains_key(*parent))
            .map(str::to_owned);
        if let Some(parent) = parent {
            let view = views.get_mut(&parent).expect("checked above");
            view.ports.extend(published(&c));
            continue;
        }
        let view = views.entry(name.clone()).or_insert_with(|| {
            let worktree = labels.get(LABEL_WORKTREE).cloned().unwrap_or_default();
            InstanceView {
                name: labels.get(LABEL_INSTANCE).cloned().unwrap_or_default(),
                worktree_exists: std::path::Path::new(&worktree)
                    .join(crate::state::layout::DIR_NAME)
                    .is_dir(),
                worktree,
                container: name.clone(),
                state: String::new(),
                port: 0,
                ports: Vec::new(),
                image: None,
                runtime: None,
                created: String::new(),
                services: Vec::new(),
            }
        });
        view.state = c
            .state
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into());
        view.image = c.image.clone();
        if view.port == 0 {
            view.port = c
                .ports
                .iter()
                .flatten()
                .find_map(|p| p.public_port)
                .unwrap_or(0);
        }
        view.ports.extend(published(&c));
    }
    for view in views.values_mut().filter(|v| v.state == "unknown") {
        view.state = "missing".into();
    }
    Ok(())
}

/// A container's published ports as `ip:host -> inside`.
fn published(c: &bollard::models::ContainerSummary) -> Vec<String> {
    c.ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let public = p.public_port?;
            Some(format!(
                "{}:{public} -> {}",
                p.ip.clone().unwrap_or_default(),
                p.private_port
            ))
        })
        .collect()
}
