//! A cluster's nodes beside the head (`[cluster] nodes`): containers of the
//! head's image and limits on the instance's network, each with the worktree
//! live and state of its own. The head is the instance's own container and
//! goes through `lifecycle` as always; this module brings up, stops, lists
//! and removes the others, and tells every node where the others are.

use super::image::ImageChoice;
use super::ownership::{ownership_of, Ownership};
use super::spec::{self, HostFacts, NodeDirs, LABEL_NODE, LABEL_SPEC, LABEL_WORKTREE};
use super::Instance;
use crate::engine::{Container, Engine, Listed};
use crate::state::contained;
use crate::state::layout::{path_text, NODES_DIR_NAME};
use crate::support::error::WithHint;
use crate::support::output;
use anyhow::{anyhow, Context, Result};
use futures_util::future::try_join_all;
use serde::Serialize;
use std::path::Path;

/// Every node's rank, the head's (0) first.
pub fn ranks(instance: &Instance) -> std::ops::Range<u16> {
    0..instance.settings.nodes
}

/// Refuses a rank the instance does not have.
pub fn check_rank(instance: &Instance, rank: u16) -> Result<()> {
    let nodes = instance.settings.nodes;
    if rank >= nodes {
        return Err(anyhow!(
            "instance `{}` has no node {rank}: it has {nodes} node(s), ranks 0 to {}",
            instance.record.name,
            nodes - 1
        ))
        .hint("`[cluster] nodes` in devinst.toml sets how many; 0 is the head");
    }
    Ok(())
}

/// Brings every node but the head to running, in parallel, the head being
/// up already. When the head was kept from an older recipe (`head_current`
/// false), nodes are only started, never made or removed: the recipe's
/// count applies with `start --recreate`, all nodes at once.
pub async fn ensure_running(
    engine: &Engine,
    instance: &Instance,
    facts: &HostFacts,
    image: &ImageChoice,
    recreate: bool,
    head_current: bool,
) -> Result<()> {
    if !head_current {
        return start_existing(engine, instance).await;
    }
    remove_beyond(engine, instance).await?;
    let ranks = ranks(instance).skip(1);
    try_join_all(ranks.map(|rank| ensure_node(engine, instance, facts, image, recreate, rank)))
        .await?;
    Ok(())
}

async fn ensure_node(
    engine: &Engine,
    instance: &Instance,
    facts: &HostFacts,
    image: &ImageChoice,
    recreate: bool,
    rank: u16,
) -> Result<()> {
    let name = instance.record.node_container(rank);
    make_dirs(instance, facts, rank)?;
    let own_image = image.for_node(engine, instance, rank).await?;
    let image = own_image.as_ref().unwrap_or(image);
    let facts = &HostFacts {
        image: Some(image.reference().to_owned()),
        ..facts.clone()
    };
    let wanted = spec::node_spec(
        &instance.settings,
        &instance.record,
        &instance.layout,
        facts,
        rank,
    );
    let info = match engine.inspect(&name).await? {
        None => super::lifecycle::create(engine, &name, &wanted, image).await?,
        Some(info) => match ownership_of(&info.labels, instance) {
            Ownership::Foreign => {
                return Err(anyhow!(
                    "a container named `{name}` exists but does not belong to this worktree"
                ))
                .hint(format!(
                    "remove it (`docker rm -f {name}`), then run `devinst start` again"
                ))
            }
            Ownership::MovedHere { .. } => replace(engine, &name, &wanted, image).await?,
            Ownership::Ours if recreate => replace(engine, &name, &wanted, image).await?,
            Ownership::Ours => {
                if info.label(LABEL_SPEC) != wanted.labels.get(LABEL_SPEC).map(String::as_str) {
                    output::warn(format!(
                        "container `{name}` (node {rank}) was created from a different recipe; \
                         run `devinst start --recreate` to apply the changes"
                    ));
                }
                info
            }
        },
    };
    start_node(engine, &name, &info).await
}

async fn replace(
    engine: &Engine,
    name: &str,
    wanted: &crate::engine::ContainerSpec,
    image: &ImageChoice,
) -> Result<Container> {
    output::note(format!("removing container `{name}` to recreate it"));
    image.ensure_present(engine).await?;
    engine.remove(name).await?;
    super::lifecycle::create(engine, name, wanted, image).await
}

async fn start_node(engine: &Engine, name: &str, info: &Container) -> Result<()> {
    if info.paused {
        output::note(format!("unpausing container `{name}`"));
        return engine.unpause(name).await;
    }
    if !info.running {
        output::note(format!("starting container `{name}`"));
        engine
            .start(name)
            .await
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cannot start container `{name}`"))?;
    }
    Ok(())
}

/// Starts the node containers this worktree has, whatever their count.
async fn start_existing(engine: &Engine, instance: &Instance) -> Result<()> {
    let found = containers(
        engine,
        &instance.record.worktree,
        &instance.record.container,
    )
    .await?;
    try_join_all(found.iter().map(|node| async move {
        match engine.inspect(&node.listed.name).await? {
            Some(info) => start_node(engine, &node.listed.name, &info).await,
            None => Ok(()),
        }
    }))
    .await?;
    Ok(())
}

/// Makes the node's own directories (following no link), theirs when the
/// instance runs as the worktree's owner, before the engine would make them
/// as root.
fn make_dirs(instance: &Instance, facts: &HostFacts, rank: u16) -> Result<()> {
    let layout = &instance.layout;
    let mut dirs = vec![layout.dir().join(NODES_DIR_NAME), layout.node_dir(rank)];
    dirs.extend(NodeDirs::of(layout, rank).all(&instance.settings));
    for dir in &dirs {
        contained::make_dir(layout, dir)?;
    }
    if let Some(owner) = facts.owner {
        super::host::give_to_owner(&dirs, owner.uid, owner.gid)?;
    }
    Ok(())
}

/// Removes the nodes beyond the recipe's count (after `nodes` went down).
/// Their directories under `.sky-dev/nodes/` stay, like a dropped service's
/// data, until `destroy --purge`.
async fn remove_beyond(engine: &Engine, instance: &Instance) -> Result<()> {
    let r = &instance.record;
    for node in containers(engine, &r.worktree, &r.container).await? {
        if node.rank < instance.settings.nodes {
            continue;
        }
        engine.remove(&node.listed.name).await?;
        output::note(format!(
            "removed container `{}` (node {}): `[cluster] nodes` is {} now",
            node.listed.name, node.rank, instance.settings.nodes
        ));
    }
    Ok(())
}

/// A node container the engine has, by its labels.
pub struct Node {
    pub rank: u16,
    pub listed: Listed,
}

/// The node containers (not the head) of the instance container `container`
/// made for `worktree`, those the recipe no longer counts too, by rank.
pub async fn containers(engine: &Engine, worktree: &Path, container: &str) -> Result<Vec<Node>> {
    let worktree = path_text(worktree);
    let prefix = format!("{container}-node-");
    let mut nodes: Vec<Node> = super::managed_containers(engine)
        .await?
        .into_iter()
        .filter(|c| {
            c.label(LABEL_WORKTREE) == Some(worktree.as_str()) && c.name.starts_with(&prefix)
        })
        .filter_map(|listed| {
            let rank = listed.label(LABEL_NODE)?.parse().ok()?;
            Some(Node { rank, listed })
        })
        .collect();
    nodes.sort_by_key(|n| n.rank);
    Ok(nodes)
}

/// Every node's address on the instance's network, in rank order, asked of
/// the engine once all are running: as many nodes as the head was made to
/// count (`head_env`, its environment), which is the recipe's unless the
/// head was kept from an older one. `None` for an instance of one node.
pub async fn addresses(
    engine: &Engine,
    instance: &Instance,
    head_env: &[String],
) -> Result<Option<Vec<String>>> {
    let count: u16 = head_env
        .iter()
        .find_map(|e| e.strip_prefix("DEVINST_NUM_NODES="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    if count < 2 {
        return Ok(None);
    }
    let network = instance.record.private_network().to_owned();
    let network = instance.settings.network.clone().unwrap_or(network);
    let inspected = try_join_all((0..count).map(|rank| {
        let name = instance.record.node_container(rank);
        async move { Ok::<_, anyhow::Error>((engine.inspect(&name).await?, name)) }
    }))
    .await?;
    let mut ips = Vec::new();
    for (info, name) in inspected {
        let ip = info
            .and_then(|i| i.addresses.get(&network).cloned())
            .ok_or_else(|| anyhow!("container `{name}` has no address on network `{network}`"))
            .hint("run `devinst start --recreate` to make every node anew")?;
        ips.push(ip);
    }
    Ok(Some(ips))
}

/// Stops every node but the head, in parallel.
pub async fn stop_all(engine: &Engine, instance: &Instance) -> Result<()> {
    let r = &instance.record;
    let found = containers(engine, &r.worktree, &r.container).await?;
    try_join_all(found.iter().map(|node| async move {
        if node.listed.state == "running" && engine.stop(&node.listed.name, 10).await? {
            output::note(format!(
                "stopped container `{}` (node {})",
                node.listed.name, node.rank
            ));
        }
        Ok::<_, anyhow::Error>(())
    }))
    .await?;
    Ok(())
}

/// Removes every node but the head of the instance container `container`
/// made for `worktree` (`destroy`, and `gc` of a worktree that is gone).
pub async fn remove_all(engine: &Engine, worktree: &Path, container: &str) -> Result<()> {
    for node in containers(engine, worktree, container).await? {
        engine.remove(&node.listed.name).await?;
        output::note(format!(
            "removed container `{}` (node {})",
            node.listed.name, node.rank
        ));
    }
    Ok(())
}

/// The container a command goes to: the head's, or node `rank`'s once
/// checked against the recipe.
pub fn container_of(instance: &Instance, rank: u16) -> Result<String> {
    check_rank(instance, rank)?;
    Ok(instance.record.node_container(rank))
}

/// One node in `status --json`. Fields are only ever added.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    pub rank: u16,
    pub container: String,
    /// As the instance's `state`: `running`, `exited`, ..., `missing`.
    pub state: String,
    /// Its address on the instance's network, while it runs.
    pub address: Option<String>,
}

/// Every node the recipe counts, the head first, as the engine has them;
/// empty for an instance of one node.
pub async fn views(engine: &Engine, instance: &Instance) -> Result<Vec<NodeView>> {
    if instance.settings.nodes < 2 {
        return Ok(Vec::new());
    }
    let network = spec::instance_network(&instance.settings, &instance.record).unwrap_or_default();
    let mut views = Vec::new();
    for rank in ranks(instance) {
        let container = instance.record.node_container(rank);
        let (state, address) = match engine.inspect(&container).await? {
            Some(info) => (info.status, info.addresses.get(&network).cloned()),
            None => ("missing".to_owned(), None),
        };
        views.push(NodeView {
            rank,
            container,
            state,
            address,
        });
    }
    Ok(views)
}
