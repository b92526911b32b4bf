//! An instance as `status`, `list` (and their `--json`) show it.

use super::image::ImageChoice;
use super::ownership::is_ours;
use super::spec::{LABEL_INSTANCE, LABEL_NODE, LABEL_PORTS, LABEL_SERVICE, LABEL_WORKTREE};
use super::Instance;
use crate::engine::{Container, Engine, Published};
use crate::state::layout::path_text;
use crate::state::registry::Registry;
use crate::support::output;
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;

/// The `--json` shape of one instance. Fields are only ever added.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InstanceView {
    pub name: String,
    pub worktree: String,
    pub worktree_exists: bool,
    pub container: String,
    /// `running`, `exited`, `created`, ..., `missing` (no container), or
    /// `unknown` (engine unreachable).
    pub state: String,
    pub port: u16,
    /// Each published port as `ip:host -> inside`, a named one followed by
    /// ` (name)`; services' ports too in `list`.
    pub ports: Vec<String>,
    /// The host port of each `[ports.extra]` port, by name.
    pub extra_ports: BTreeMap<String, u16>,
    pub image: Option<String>,
    pub runtime: Option<String>,
    pub created: String,
    /// The setup steps: `done`, `incomplete` (failed or interrupted; the
    /// next `start` runs them again), `pending` (not run in this container
    /// with these inputs yet), `none` (the recipe has none); empty in `list`.
    pub setup: String,
    /// The services beside the instance; empty in `list`.
    pub services: Vec<crate::instance::services::ServiceView>,
    /// A `[cluster]`'s nodes, the head first; empty for an instance of one
    /// node, and in `list`.
    pub nodes: Vec<crate::instance::nodes::NodeView>,
}

/// This instance, with its container and services as the engine has them.
pub async fn status(engine: &Engine, instance: &Instance) -> Result<InstanceView> {
    let r = &instance.record;
    let info = engine.inspect(&r.container).await?;
    let mut view = InstanceView {
        name: r.name.clone(),
        worktree: path_text(&r.worktree),
        worktree_exists: true,
        container: r.container.clone(),
        state: "missing".into(),
        port: r.port,
        ports: Vec::new(),
        extra_ports: r.extra_ports.clone(),
        // A recipe that cannot be read still shows its configured image.
        image: Some(ImageChoice::of(instance).map_or_else(
            |_| instance.settings.image.clone(),
            |c| c.reference().to_owned(),
        )),
        runtime: None,
        created: r.created.clone(),
        setup: super::setup_steps::progress(instance, info.as_ref().map(|i| i.id.as_str()))
            .to_owned(),
        services: super::services::views(engine, instance).await?,
        nodes: super::nodes::views(engine, instance).await?,
    };
    if let Some(info) = info {
        if !is_ours(&info.labels, instance) {
            output::warn(format!(
                "the container `{}` was not made for this worktree; `devinst start` says more",
                r.container
            ));
        } else if !info.bindings.iter().any(|b| b.host_port == r.port)
            && instance.settings.network.as_deref() != Some("host")
        {
            output::warn(format!(
                "container `{}` does not publish the instance's port {}; `devinst start` recreates it on that port (state is kept)",
                r.container, r.port
            ));
        }
        from_container(&mut view, &info);
    }
    Ok(view)
}

/// What the engine says of the container, alike in `status` and `list`.
fn from_container(view: &mut InstanceView, info: &Container) {
    view.state = info.status.clone();
    view.image = info.image.clone().or(view.image.take());
    view.runtime = info.runtime.clone();
    view.ports = instance_ports(info);
    if view.port == 0 {
        view.port = info.bindings.first().map_or(0, |p| p.host_port);
    }
    if view.created.is_empty() {
        view.created = info.created.clone().unwrap_or_default();
    }
}

/// Every instance on this host, from the registry and from the engine's
/// labels (so containers whose worktree is gone show up too), ordered by
/// worktree. Without an engine, states are `unknown`.
pub async fn list(engine: Option<&Engine>) -> Result<Vec<InstanceView>> {
    let mut views: BTreeMap<String, InstanceView> = BTreeMap::new();
    for entry in Registry::read_unlocked()? {
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
                extra_ports: entry.extra,
                image: None,
                runtime: None,
                created: entry.created,
                setup: String::new(),
                services: Vec::new(),
                nodes: Vec::new(),
            },
        );
    }
    if let Some(engine) = engine {
        merge_containers(engine, &mut views).await?;
    }
    let mut views: Vec<InstanceView> = views.into_values().collect();
    views.sort_by(|a, b| (&a.worktree, &a.name).cmp(&(&b.worktree, &b.name)));
    Ok(views)
}

async fn merge_containers(
    engine: &Engine,
    views: &mut BTreeMap<String, InstanceView>,
) -> Result<()> {
    let listed = super::managed_containers(engine).await?;
    // Inspected, as `status` does, so both show the same values.
    let inspected =
        futures_util::future::join_all(listed.iter().map(|c| engine.inspect(&c.name))).await;
    for (c, info) in listed.iter().zip(inspected) {
        let Some(info) = info? else {
            continue; // removed in between
        };
        let name = c.name.clone();
        let labels = &c.labels;
        // A service's ports show with its instance, not as an instance; a
        // cluster's node (which publishes none) is part of its instance.
        let part = labels
            .get(LABEL_SERVICE)
            .cloned()
            .or_else(|| labels.get(LABEL_NODE).map(|rank| format!("node-{rank}")));
        let parent = part
            .and_then(|part| name.strip_suffix(&format!("-{part}")).map(str::to_owned))
            .filter(|parent| views.contains_key(parent));
        if let Some(parent) = parent {
            let view = views.get_mut(&parent).expect("checked above");
            view.ports.extend(published(&info.bindings));
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
                extra_ports: BTreeMap::new(),
                image: None,
                runtime: None,
                created: String::new(),
                setup: String::new(),
                services: Vec::new(),
                nodes: Vec::new(),
            }
        });
        let service_ports = std::mem::take(&mut view.ports);
        from_container(view, &info);
        view.ports.extend(service_ports);
    }
    for view in views.values_mut().filter(|v| v.state == "unknown") {
        view.state = "missing".into();
    }
    Ok(())
}

/// The instance container's published ports as `ip:host -> inside`, the
/// port inside as the recipe names it (with the agent, the engine publishes
/// the agent's relay instead) and a named port's name after it.
fn instance_ports(info: &Container) -> Vec<String> {
    let Some(label) = info.label(LABEL_PORTS) else {
        return published(&info.bindings);
    };
    let named = super::spec::parse_ports_label(label);
    info.bindings
        .iter()
        .map(|p| {
            let (inside, name) = match named.get(&p.host_port) {
                Some((inside, name)) => (*inside, name.as_deref()),
                None => (p.container_port, None),
            };
            let name = name.map(|n| format!(" ({n})")).unwrap_or_default();
            format!("{}:{} -> {inside}{name}", p.host_ip, p.host_port)
        })
        .collect()
}

/// A container's published ports as `ip:host -> inside`.
pub fn published(bindings: &[Published]) -> Vec<String> {
    bindings
        .iter()
        .map(|p| format!("{}:{} -> {}", p.host_ip, p.host_port, p.container_port))
        .collect()
}
