//! Bringing an instance's containers to "running and set up": create each
//! from its spec (its image pulled or built first), start it, stop it,
//! remove it. The instance and its services go through the same functions.

use super::host::{host_facts, prepare_owner_dirs};
use super::image::ImageChoice;
use super::ownership::{ownership_of, Ownership};
use super::setup_steps::{run_setup_steps, SetupTarget};
use super::spec::{self, LABEL_SPEC};
use super::{behind, environment, Instance};
use crate::engine::{Container, ContainerSpec, CreateError, Engine, StartError};
use crate::state::allocate;
use crate::state::registry::identity;
use crate::state::registry::Registry;
use crate::support::error::WithHint;
use crate::support::output;
use anyhow::{anyhow, Context, Result};

/// Limits the engine would take and drop (rootless Podman on cgroup v1)
/// are refused before anything is made: an instance believed limited must be.
async fn refuse_ignored_limits(engine: &Engine, instance: &Instance) -> Result<()> {
    let limits = instance
        .settings
        .limits_for(instance.record.tier.as_deref())?;
    if limits == Default::default() || !engine.ignores_limits().await? {
        return Ok(());
    }
    Err(anyhow!(
        "the engine at {} is rootless Podman on cgroup v1, which ignores resource limits; \
         devinst.toml asks for {}",
        engine.endpoint.uri,
        limits_text(&limits)
    ))
    .hint(
        "remove `cpus`, `memory` and `pids` (and the tier's) from devinst.toml, or use an engine that \
         applies them: rootful, or rootless on cgroup v2 with the controllers delegated to the user",
    )
}

fn limits_text(limits: &crate::recipe::config::Limits) -> String {
    let mut parts = Vec::new();
    if let Some(cpus) = limits.cpus {
        parts.push(format!("`cpus = {cpus}`"));
    }
    if let Some(memory) = &limits.memory {
        parts.push(format!("`memory = \"{memory}\"`"));
    }
    if let Some(pids) = limits.pids {
        parts.push(format!("`pids = {pids}`"));
    }
    parts.join(", ")
}

/// Brings the instance to "running and set up", doing only what is missing.
pub async fn ensure_running(engine: &Engine, instance: &Instance, recreate: bool) -> Result<()> {
    let image = ImageChoice::of(instance)?;
    ensure_running_with(engine, instance, recreate, &image, false).await
}

/// [`ensure_running`] with the image already chosen (and its recipe's files
/// checked) before the engine was asked anything.
pub async fn ensure_running_with(
    engine: &Engine,
    instance: &Instance,
    recreate: bool,
    image: &ImageChoice,
    cold: bool,
) -> Result<()> {
    let _lock = instance.layout.lock()?;
    let record = &instance.record;
    crate::state::contained::check_untracked(&instance.layout.root)?;
    let owner = if instance.settings.user.is_owner() {
        Some(prepare_owner_dirs(engine, instance).await?)
    } else {
        None
    };
    refuse_ignored_limits(engine, instance).await?;
    if registry_lacks(instance) {
        // Before the services too: they publish ports of their own.
        hold_ports(engine, instance).await?;
    }
    super::services::ensure_running(engine, instance, recreate).await?;
    warn_unpublished_ports(instance);
    let mut facts = host_facts(instance, owner, image.reference())?;
    facts.agent = super::agent::install(instance, &engine.endpoint.uri)?;
    let wanted = spec::container_spec(&instance.settings, record, &instance.layout, &facts);
    // A container about to be made may start from a sibling's finished
    // setup steps: its image is the sibling's container, the spec's digest
    // the recipe's, so later starts see it as the recipe's container.
    let may_warm =
        !cold && instance.settings.setup_warm && !instance.settings.setup_outputs.is_empty();
    let warm = match may_warm && engine.inspect(&record.container).await?.is_none() {
        true => super::warm::prepare(engine, instance, image).await?,
        false => None,
    };
    let mut info = match &warm {
        Some(warm) => {
            let from = ContainerSpec {
                image: warm.image.clone(),
                ..wanted.clone()
            };
            let image = ImageChoice::Snapshot(warm.image.clone());
            ensure_created(engine, instance, &from, &image, recreate).await?
        }
        None => ensure_created(engine, instance, &wanted, image, recreate).await?,
    };
    if info.paused {
        output::note(format!("unpausing container `{}`", record.container));
        engine.unpause(&record.container).await?;
    } else if !info.running {
        let port = Start::Instance(record.port);
        let started = start(engine, &record.container, &port).await;
        if started.as_ref().is_err_and(|err| err.is::<ContainerGone>()) {
            // A removal a killed devinst asked for (`snapshot restore`)
            // finished after the container was looked at: make it anew.
            output::note(format!(
                "container `{}` was removed meanwhile; making it anew",
                record.container
            ));
            info = ensure_created(engine, instance, &wanted, image, recreate).await?;
            start(engine, &record.container, &port).await?;
        } else {
            started?;
        }
        if facts.agent.as_ref().is_some_and(|a| a.exec_socket) {
            super::agent::wait_until_serving(instance).await;
        }
    }
    let head_current = info.label(LABEL_SPEC) == wanted.labels.get(LABEL_SPEC).map(String::as_str);
    super::nodes::ensure_running(engine, instance, &facts, image, recreate, head_current).await?;
    let cluster = match super::nodes::addresses(engine, instance, &info.env).await? {
        Some(ips) => spec::cluster_address_env(&ips),
        None => Vec::new(),
    };
    environment::write_git_config(instance)?;
    let inputs = behind::inputs_now(instance);
    if let Some(warm) = &warm {
        super::setup_steps::mark_done(instance, &SetupTarget::head(instance, &info.id))?;
        output::note(format!(
            "started warm from instance `{}`: its setup steps' results were copied, not run again \
             (`devinst start --cold` runs them)",
            warm.sibling
        ));
    }
    for target in setup_targets(engine, instance, &info).await? {
        run_setup_steps(engine, instance, &target, &cluster).await?;
    }
    behind::record(instance, &inputs)?;
    // Only where a sibling could start from it: steps that declare outputs.
    if !instance.settings.setup_outputs.is_empty() {
        if let Some(image_id) = engine.image_id(image.reference()).await? {
            super::warm::record(instance, &info.id, &image_id)?;
        }
    }
    environment::write_exec_env(instance, &info, &cluster)
}

/// Where the setup steps run: the head, and with `[cluster] setup = "all"`
/// every other node after it, one at a time (they share the worktree, and
/// so the venv the default steps make).
async fn setup_targets(
    engine: &Engine,
    instance: &Instance,
    head: &Container,
) -> Result<Vec<SetupTarget>> {
    let mut targets = vec![SetupTarget::head(instance, &head.id)];
    if !instance.settings.setup_on_every_node {
        return Ok(targets);
    }
    for rank in super::nodes::ranks(instance).skip(1) {
        let container = instance.record.node_container(rank);
        let info = engine.inspect(&container).await?.ok_or_else(|| {
            anyhow!("container `{container}` (node {rank}) vanished while starting")
        })?;
        targets.push(SetupTarget {
            container,
            id: info.id,
            stamp: instance.layout.node_setup_stamp(rank),
        });
    }
    Ok(targets)
}

/// The instance's container as `wanted` says, made when missing, remade when
/// asked to, when it was made for the worktree before it moved, when it
/// publishes other ports than the instance's (after `setup` moved them), or
/// when a host directory it mounts is gone. Its ports are held in the
/// registry before it is made.
async fn ensure_created(
    engine: &Engine,
    instance: &Instance,
    wanted: &ContainerSpec,
    image: &ImageChoice,
    recreate: bool,
) -> Result<Container> {
    let name = &instance.record.container;
    let mut found = engine.inspect(name).await?;
    if found.as_ref().is_some_and(|info| info.status == "removing") {
        // A removal a killed devinst asked for (`snapshot restore`,
        // `--recreate`) is still under way: let it finish, then make anew.
        engine.wait_removed(name).await?;
        found = engine.inspect(name).await?;
    }
    let Some(info) = found else {
        hold_ports(engine, instance).await?;
        return create(engine, name, wanted, image).await;
    };
    let remake = match ownership_of(&info.labels, instance) {
        Ownership::Foreign => {
            return Err(anyhow!(
                "a container named `{name}` exists but does not belong to this worktree"
            ))
            .hint(format!(
                "remove it (`docker rm -f {name}`) or choose another name: `devinst setup OTHER-NAME`"
            ))
        }
        // Its mounts name the old path; state, logs and venv moved along
        // in `.sky-dev/`, so a new container loses nothing.
        Ownership::MovedHere { from } => Some(format!(
            "container `{name}` was made for `{from}`, which no longer exists (the worktree moved); recreating it here"
        )),
        Ownership::Ours if recreate => Some(format!("removing container `{name}` to recreate it")),
        Ownership::Ours => why_remake(&info, wanted, instance),
    };
    if let Some(reason) = remake {
        output::note(reason);
        hold_ports(engine, instance).await?;
        return replace(engine, name, wanted, image).await;
    }
    if info.label(LABEL_SPEC) != wanted.labels.get(LABEL_SPEC).map(String::as_str) {
        output::warn(format!(
            "container `{name}` was created from a different recipe (devinst.toml, image, mounts or limits changed); \
             it keeps running as it was. Run `devinst start --recreate` to apply the changes (state, logs and venv are kept)"
        ));
    }
    Ok(info)
}

/// Why a container of this instance must be made anew even though the
/// recipe did not ask: it publishes other host ports than `.sky-dev/.port`
/// says, or (stopped) it mounts a host directory that is gone, which the
/// engine would refuse to start.
fn why_remake(info: &Container, wanted: &ContainerSpec, instance: &Instance) -> Option<String> {
    let name = &instance.record.container;
    let has = port_pairs(&info.bindings);
    // On the host's network nothing is published (Podman drops the bindings).
    let host_network = wanted.network.as_deref() == Some("host");
    if !host_network && has != port_pairs(&wanted.published) {
        let hosts = |pairs: &[(u16, u16)]| {
            let ports: Vec<String> = pairs.iter().map(|(host, _)| host.to_string()).collect();
            crate::support::text::list_or_none(
                &ports.iter().map(String::as_str).collect::<Vec<_>>(),
            )
        };
        return Some(format!(
            "container `{name}` publishes host ports {} but the instance's are {} (`.sky-dev/.instance`); \
             recreating it (state, logs and venv are kept)",
            hosts(&has),
            hosts(&port_pairs(&wanted.published)),
        ));
    }
    if info.running {
        return None;
    }
    let gone = info.bind_sources.iter().find(|source| {
        !std::path::Path::new(source).exists()
            && !wanted.mounts.iter().any(|m| &m.source == *source)
    })?;
    Some(format!(
        "`{gone}`, which container `{name}` mounts, no longer exists; recreating the container without it (state, logs and venv are kept)"
    ))
}

/// Host and container port of each binding, sorted.
pub fn port_pairs(published: &[crate::engine::Published]) -> Vec<(u16, u16)> {
    let mut pairs: Vec<(u16, u16)> = published
        .iter()
        .map(|p| (p.host_port, p.container_port))
        .collect();
    pairs.sort();
    pairs
}

/// Holds the instance's ports in the registry (and checks that no other
/// container holds them) before anything of it is made: `destroy` gives
/// them up while `.sky-dev/` keeps them.
async fn hold_ports(engine: &Engine, instance: &Instance) -> Result<()> {
    let record = &instance.record;
    let mut own: Vec<String> = instance
        .settings
        .services
        .keys()
        .map(|s| record.service_container(s))
        .collect();
    own.push(record.container.clone());
    let mut registry = Registry::lock()?;
    let held = super::holdings::gather(engine).await?;
    if allocate::hold(&mut registry, record, &held.ports, &own)? {
        registry.save()?;
        output::note(format!(
            "holding port {} for instance `{}` again",
            record.port, record.name
        ));
    }
    Ok(())
}

/// `[ports.extra]` names added since `setup` have no host port yet.
fn warn_unpublished_ports(instance: &Instance) {
    let record = &instance.record;
    for name in instance.settings.extra_ports.keys() {
        if !record.extra_ports.contains_key(name) {
            output::warn(format!(
                "port `{name}` of `[ports.extra]` has no host port yet, so it is not published; \
                 run `devinst setup`, then `devinst start`, to publish it"
            ));
        }
    }
}

/// Whether the registry lacks this instance's ports (after `destroy`).
fn registry_lacks(instance: &Instance) -> bool {
    let record = &instance.record;
    !Registry::read_unlocked().is_ok_and(|entries| {
        entries.iter().any(|e| {
            e.name == record.name
                && e.worktree == record.worktree
                && e.port == record.port
                && e.services == record.service_ports
                && e.extra == record.extra_ports
        })
    })
}

/// Removes the container and makes it anew. The image comes first: a build
/// that fails leaves the old container in place.
async fn replace(
    engine: &Engine,
    name: &str,
    wanted: &ContainerSpec,
    image: &ImageChoice,
) -> Result<Container> {
    image.ensure_present(engine).await?;
    engine.remove(name).await?;
    create(engine, name, wanted, image).await
}

/// Creates a container from `spec` (checking its runtime, making its network
/// and image present first) and returns it as the engine has it. When
/// another devinst creates the same container at the same moment, that one
/// is used.
pub async fn create(
    engine: &Engine,
    name: &str,
    spec: &ContainerSpec,
    image: &ImageChoice,
) -> Result<Container> {
    if let Some(runtime) = &spec.runtime {
        engine
            .require_runtime(runtime)
            .await
            .with_context(|| format!("cannot create container `{name}`"))?;
    }
    if let Some(network) = &spec.network {
        super::services::ensure_network(engine, network).await?;
    }
    image.ensure_present(engine).await?;
    let spec = &spec::from_data_dir(spec, &identity()?);
    output::note(format!("creating container `{name}` from `{}`", spec.image));
    let mut result = engine.create(name, spec).await;
    if matches!(result, Err(CreateError::NoInitBinary)) {
        output::warn(
            "the engine has no init binary for `[container] init` (Podman looks for `catatonit`); \
             the container runs without one. Install `catatonit`, or set `init = false` under `[container]` in devinst.toml",
        );
        result = engine.create(name, &without_init(spec)).await;
    }
    match result {
        Ok(()) => {}
        Err(CreateError::NameTaken) => {
            // Another devinst is creating it right now: use that one.
            return engine.wait_for(name).await.hint(format!(
                "run `devinst start` again; if it persists, `docker rm -f {name}`"
            ));
        }
        Err(CreateError::NoInitBinary) => {
            return Err(anyhow!("the engine has no init binary"))
                .with_context(|| format!("cannot create container `{name}`"))
        }
        Err(CreateError::Refused(err)) => {
            let runtime_trouble = format!("{err:#}").contains("runtime");
            let err = err.context(format!("cannot create container `{name}`"));
            if runtime_trouble {
                return Err(err).hint("check `[container] runtime` in devinst.toml against the engine's runtimes (`devinst doctor`)");
            }
            return Err(err);
        }
    }
    engine
        .inspect(name)
        .await?
        .ok_or_else(|| anyhow!("container `{name}` vanished right after it was created"))
}

/// The same container without the init process. The spec label keeps the
/// recipe's digest: the recipe did not change, the engine could not honour it.
fn without_init(spec: &ContainerSpec) -> ContainerSpec {
    ContainerSpec {
        init: Some(false),
        ..spec.clone()
    }
}

/// Whose container is being started, for the hint when its port is taken.
pub enum Start<'a> {
    /// The instance's own, published on this host port.
    Instance(u16),
    /// A service's, published on this host port (0 for none).
    Service { name: &'a str, port: u16 },
}

/// Starts a container (one already running is fine), saying what to do
/// when a port it publishes is taken.
pub async fn start(engine: &Engine, container: &str, what: &Start<'_>) -> Result<()> {
    let (subject, port_hint) = match what {
        Start::Instance(port) => (
            format!("container `{container}`"),
            format!("host port {port} is taken by another program; run `devinst setup` after freeing it, or delete `.sky-dev/.port` and re-run `devinst setup` for a new port"),
        ),
        Start::Service { name, port } => (
            format!("service `{name}` (container `{container}`)"),
            format!("host port {port} is taken by another program; free it, or run `devinst setup` for new ports after it is freed"),
        ),
    };
    match what {
        Start::Instance(_) => output::note(format!("starting container `{container}`")),
        Start::Service { name, .. } => output::note(format!("starting service `{name}`")),
    }
    match engine.start(container).await {
        Ok(()) => Ok(()),
        Err(StartError::PortInUse(err)) => Err(err)
            .context(format!("cannot start {subject}"))
            .hint(port_hint),
        Err(StartError::Gone(err)) => Err(err
            .context(ContainerGone(container.to_owned()))
            .context(format!("cannot start {subject}"))),
        Err(StartError::Refused(err)) if format!("{err:#}").contains("could not select device driver") => {
            Err(err.context(format!("cannot start {subject}: the engine has no GPU runtime")))
                .hint("install the NVIDIA Container Toolkit and configure the engine with it (`nvidia-ctk runtime configure`, then restart it), or remove `gpus` from `[container]` in devinst.toml")
        }
        Err(StartError::Refused(err)) => Err(err.context(format!("cannot start {subject}"))),
    }
}

/// A container that was there when looked at and gone when started.
#[derive(Debug)]
pub struct ContainerGone(pub String);

impl std::fmt::Display for ContainerGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "container `{}` no longer exists", self.0)
    }
}

/// Stops the instance's container, saying what it found.
pub async fn stop(engine: &Engine, name: &str) -> Result<()> {
    // Asked first: Docker 20.10 and Podman both answer a stop of a stopped
    // container as a success, so the answer cannot tell the user which it was.
    match engine.inspect(name).await? {
        None => output::note(format!("container `{name}` does not exist yet")),
        Some(info) if !info.running => output::note(format!("container `{name}` is not running")),
        Some(_) if engine.stop(name, 10).await? => {
            output::note(format!("stopped container `{name}`"))
        }
        Some(_) => output::note(format!("container `{name}` is not running")),
    }
    Ok(())
}

/// Removes the instance's container, but only when it is this worktree's:
/// container names are shared by everyone using the engine, and one made for
/// another worktree (by another user's devinst) is not ours to delete.
pub async fn remove_if_ours(engine: &Engine, instance: &Instance) -> Result<()> {
    let name = &instance.record.container;
    let Some(info) = engine.inspect(name).await? else {
        output::note(format!("container `{name}` does not exist"));
        return Ok(());
    };
    if ownership_of(&info.labels, instance) == Ownership::Foreign {
        output::warn(format!(
            "container `{name}` belongs to the worktree `{}`, not this one; left alone",
            info.label(super::spec::LABEL_WORKTREE).unwrap_or("unknown")
        ));
        return Ok(());
    }
    engine.remove(name).await?;
    output::note(format!("removed container `{name}`"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_without_init_keeps_its_spec_label() {
        let spec = ContainerSpec {
            init: Some(true),
            labels: [(LABEL_SPEC.to_owned(), "abc".to_owned())].into(),
            ..Default::default()
        };
        let plain = without_init(&spec);
        assert_eq!(plain.init, Some(false));
        assert_eq!(plain.labels, spec.labels);
    }
}
