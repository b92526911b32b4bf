//! The services beside an instance (`[services.NAME]`): their containers and
//! the network they share with the instance.

use super::image::ImageChoice;
use super::lifecycle::{create, port_pairs, start, Start};
use super::ownership::is_ours;
use super::spec::{self, LABEL_MANAGED_BY, LABEL_SERVICE, LABEL_SPEC, LABEL_WORKTREE};
use super::Instance;
use crate::engine::{Container, ContainerSpec, Engine, Listed};
use crate::recipe::settings::{is_engine_network_mode, Service};
use crate::state::layout::path_text;
use crate::state::registry::Registry;
use crate::support::error::WithHint;
use crate::support::output;
use anyhow::{anyhow, Result};
use serde::Serialize;
use std::path::Path;

/// Creates (or recreates) and starts every service, before the instance, so
/// the instance's setup steps can already use them. Services dropped from
/// the recipe are removed.
pub async fn ensure_running(engine: &Engine, instance: &Instance, recreate: bool) -> Result<()> {
    remove_dropped(engine, instance).await?;
    let settings = &instance.settings;
    if settings.services.is_empty() {
        return Ok(());
    }
    if let Some(network) = spec::instance_network(settings, &instance.record) {
        ensure_network(engine, &network).await?;
    }
    for service in settings.services.values() {
        ensure_service(engine, instance, service, recreate).await?;
    }
    Ok(())
}

/// Makes sure the network `name` exists, labelled as devinst's when devinst
/// makes it. Docker (API 1.41) does not refuse a second network of the same
/// name, so two instances starting at once would each make one: the create
/// happens under devinst's host-wide lock.
pub async fn ensure_network(engine: &Engine, name: &str) -> Result<()> {
    if is_engine_network_mode(name) || engine.network_exists(name).await? {
        return Ok(());
    }
    let _lock = Registry::lock()?;
    let labels = [(LABEL_MANAGED_BY.to_owned(), "devinst".to_owned())];
    engine.ensure_network(name, &labels).await
}

async fn ensure_service(
    engine: &Engine,
    instance: &Instance,
    service: &Service,
    recreate: bool,
) -> Result<()> {
    let record = &instance.record;
    let name = record.service_container(&service.name);
    if service.port.is_some() && record.service_port(&service.name).is_none() {
        output::warn(format!(
            "service `{}` has no host port yet, so it is reachable from the instance only; \
             run `devinst setup`, then `devinst start --recreate`, to publish it",
            service.name
        ));
    }
    if service.data.is_some() {
        let layout = &instance.layout;
        crate::state::contained::make_dir(layout, &layout.service_data_dir(&service.name))?;
    }
    let image = ImageChoice::Pulled(service.image.clone());
    image.ensure_present(engine).await?;
    let declared = engine.image_volumes(&service.image).await?;
    let wanted = spec::service_spec(
        &instance.settings,
        record,
        &instance.layout,
        service,
        &declared,
    );
    super::volumes::ensure(engine, instance, &service.name, &wanted.volumes).await?;
    let info = match engine.inspect(&name).await? {
        Some(info) if !is_ours(&info.labels, instance) => {
            return Err(anyhow!(
                "a container named `{name}` exists but is not service `{}` of this worktree",
                service.name
            ))
            .hint(format!(
                "remove it (`docker rm -f {name}`) or rename the service in devinst.toml"
            ));
        }
        Some(info)
            if info.label(LABEL_SPEC) == wanted.labels.get(LABEL_SPEC).map(String::as_str) =>
        {
            info
        }
        Some(old) if recreate => {
            output::note(format!("removing container `{name}` to recreate it"));
            engine.remove_keeping_volumes(&name).await?;
            note_left_volumes(&old, &wanted);
            create(engine, &name, &wanted, &image).await?
        }
        // `setup` moved its port: the container follows.
        Some(info)
            if wanted.network.as_deref() != Some("host")
                && port_pairs(&info.bindings) != port_pairs(&wanted.published) =>
        {
            output::note(format!(
                "service `{}` publishes another host port than the instance's record; recreating it (its data directory is kept)",
                service.name
            ));
            engine.remove(&name).await?;
            create(engine, &name, &wanted, &image).await?
        }
        Some(info) => {
            output::warn(format!(
                "service `{}` was created from a different recipe; it keeps running as it was. \
                 Run `devinst start --recreate` to apply the changes (its data directory and volumes are kept)",
                service.name
            ));
            info
        }
        None => create(engine, &name, &wanted, &image).await?,
    };
    if !info.running {
        let port = record.service_port(&service.name).unwrap_or(0);
        let what = Start::Service {
            name: &service.name,
            port,
        };
        start(engine, &name, &what).await?;
    }
    Ok(())
}

/// Says which volumes of a replaced container the new one does not mount
/// (anonymous ones, from before devinst named them): kept, not lost.
fn note_left_volumes(old: &Container, wanted: &ContainerSpec) {
    for volume in &old.volumes {
        if wanted.volumes.iter().any(|v| v.name == volume.name) {
            continue;
        }
        output::warn(format!(
            "volume `{}` (at `{}`) of the old container is kept but no longer mounted; \
             copy what you need from it, then `docker volume rm {}`",
            volume.name, volume.target, volume.name
        ));
    }
}

/// This worktree's service containers, by their labels: those the recipe
/// names now and those it no longer does.
pub async fn containers(engine: &Engine, instance: &Instance) -> Result<Vec<Listed>> {
    containers_of(
        engine,
        &instance.record.worktree,
        &instance.record.container,
    )
    .await
}

/// The service containers of the instance container `container` made for
/// `worktree`.
pub async fn containers_of(
    engine: &Engine,
    worktree: &Path,
    container: &str,
) -> Result<Vec<Listed>> {
    let worktree = path_text(worktree);
    let prefix = format!("{container}-");
    Ok(super::managed_containers(engine)
        .await?
        .into_iter()
        .filter(|c| {
            c.label(LABEL_WORKTREE) == Some(worktree.as_str())
                && c.label(LABEL_SERVICE).is_some()
                && c.name.starts_with(&prefix)
        })
        .collect())
}

fn service_label(c: &Listed) -> String {
    c.label(LABEL_SERVICE).unwrap_or_default().to_owned()
}

async fn remove_dropped(engine: &Engine, instance: &Instance) -> Result<()> {
    for c in containers(engine, instance).await? {
        let service = service_label(&c);
        if instance.settings.services.contains_key(&service) {
            continue;
        }
        output::note(format!(
            "removing service `{service}` (container `{}`): it is no longer in devinst.toml; \
             its data directory and volumes are kept until `devinst destroy --purge`",
            c.name
        ));
        engine.remove_keeping_volumes(&c.name).await?;
    }
    Ok(())
}

/// Stops every service container of this worktree.
pub async fn stop_all(engine: &Engine, instance: &Instance) -> Result<()> {
    for c in containers(engine, instance).await? {
        if c.state == "running" && engine.stop(&c.name, 10).await? {
            output::note(format!("stopped service `{}`", service_label(&c)));
        }
    }
    Ok(())
}

/// Removes every service container of this worktree, then the instance's
/// private network (never a network the recipe names: others may use it).
/// Their data directories and named volumes stay; `with_volumes` takes the
/// containers' anonymous volumes along (`destroy --purge`).
pub async fn remove_all(engine: &Engine, instance: &Instance, with_volumes: bool) -> Result<()> {
    let r = &instance.record;
    remove_containers(engine, &r.worktree, &r.container, with_volumes).await?;
    let network = instance.record.private_network();
    if instance.settings.network.as_deref() != Some(network) {
        remove_private_network(engine, network).await?;
    }
    Ok(())
}

/// Removes the service containers of the instance container `container`
/// made for `worktree`.
pub async fn remove_containers(
    engine: &Engine,
    worktree: &Path,
    container: &str,
    with_volumes: bool,
) -> Result<()> {
    for c in containers_of(engine, worktree, container).await? {
        if with_volumes {
            engine.remove(&c.name).await?;
        } else {
            engine.remove_keeping_volumes(&c.name).await?;
        }
        output::note(format!(
            "removed service `{}` (container `{}`)",
            service_label(&c),
            c.name
        ));
    }
    Ok(())
}

/// Removes the network `name` if devinst made it (by its label).
pub async fn remove_private_network(engine: &Engine, name: &str) -> Result<()> {
    if !engine
        .network_has_label(name, LABEL_MANAGED_BY, "devinst")
        .await?
    {
        return Ok(());
    }
    match engine.remove_network(name).await {
        Ok(true) => output::note(format!("removed network `{name}`")),
        Ok(false) => {}
        Err(err) => output::warn(format!("network `{name}` was not removed: {err:#}")),
    }
    Ok(())
}

/// One service in `status --json`. Fields are only ever added.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceView {
    pub name: String,
    pub container: String,
    pub image: String,
    /// As the instance's `state`: `running`, `exited`, ..., `missing`.
    pub state: String,
    /// The host port it is published on, if it has a `port`.
    pub host_port: Option<u16>,
    /// The port it listens on inside.
    pub port: Option<u16>,
    pub ports: Vec<String>,
}

/// The recipe's services as the engine has them.
pub async fn views(engine: &Engine, instance: &Instance) -> Result<Vec<ServiceView>> {
    let s = &instance.settings;
    let r = &instance.record;
    let mut views = Vec::new();
    for service in s.services.values() {
        let container = r.service_container(&service.name);
        let host_port = r.service_port(&service.name);
        // What the container publishes, which may not be the record's yet.
        let (state, ports) = match engine.inspect(&container).await? {
            Some(info) => (info.status, super::view::published(&info.bindings)),
            None => ("missing".into(), Vec::new()),
        };
        views.push(ServiceView {
            name: service.name.clone(),
            container,
            image: service.image.clone(),
            state,
            host_port,
            port: service.port,
            ports,
        });
    }
    Ok(views)
}
