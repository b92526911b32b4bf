//! The services beside an instance (`[services.NAME]`): their containers and
//! the network they share with the instance. `start`, `stop`, `destroy` and
//! `status` call in here; the container specs are `engine::spec`'s.

use super::Instance;
use crate::engine::{status, Engine};
use crate::instance::spec::{self, LABEL_MANAGED_BY, LABEL_SERVICE, LABEL_SPEC, LABEL_WORKTREE};
use crate::recipe::settings::{Service, Settings};
use crate::state::layout::path_text;
use crate::support::error::WithHint;
use crate::support::{fs as fsutil, output};
use anyhow::{anyhow, Result};
use bollard::models::ContainerSummary;
use bollard::query_parameters::StopContainerOptions;
use serde::Serialize;

/// Creates (or recreates) and starts every service, before the instance, so
/// the instance's setup steps can already use them. Services dropped from
/// the recipe are removed.
pub async fn ensure_running(
    engine: &Engine,
    instance: &Instance,
    settings: &Settings,
    recreate: bool,
) -> Result<()> {
    remove_dropped(engine, instance, settings).await?;
    if settings.services.is_empty() {
        return Ok(());
    }
    if let Some(network) = spec::instance_network(settings, &instance.record) {
        engine.ensure_network(&network).await?;
    }
    for service in settings.services.values() {
        ensure_service(engine, instance, settings, service, recreate).await?;
    }
    Ok(())
}

async fn ensure_service(
    engine: &Engine,
    instance: &Instance,
    settings: &Settings,
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
        fsutil::create_dir_all(&instance.layout.service_data_dir(&service.name))?;
    }
    let body = spec::service_body(settings, record, &instance.layout, service);
    let wanted = body
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_SPEC))
        .cloned();
    let info = match engine.inspect(&name).await? {
        Some(info) if !crate::instance::ownership::belongs_to(&info, instance) => {
            return Err(anyhow!(
                "a container named `{name}` exists but is not service `{}` of this worktree",
                service.name
            ))
            .hint(format!(
                "remove it (`docker rm -f {name}`) or rename the service in devinst.toml"
            ));
        }
        Some(_) if recreate => {
            output::note(format!("removing container `{name}` to recreate it"));
            crate::instance::lifecycle::remove(engine, &name).await?;
            crate::instance::lifecycle::create(engine, &name, body, None).await?
        }
        Some(info) => {
            let labels = info.config.as_ref().and_then(|c| c.labels.as_ref());
            if labels.and_then(|l| l.get(LABEL_SPEC)) != wanted.as_ref() {
                output::warn(format!(
                    "service `{}` was created from a different recipe; it keeps running as it was. \
                     Run `devinst start --recreate` to apply the changes (its data directory is kept)",
                    service.name
                ));
            }
            info
        }
        None => crate::instance::lifecycle::create(engine, &name, body, None).await?,
    };
    let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
    if !running {
        start_service(engine, instance, service, &name).await?;
    }
    Ok(())
}

async fn start_service(
    engine: &Engine,
    instance: &Instance,
    service: &Service,
    name: &str,
) -> Result<()> {
    output::note(format!("starting service `{}`", service.name));
    match engine.docker.start_container(name, None).await {
        Ok(()) => Ok(()),
        Err(err) if status(&err) == Some(304) => Ok(()),
        Err(err) => {
            let text = crate::engine::message(&err).to_owned();
            let err = engine.explain(err).context(format!(
                "cannot start service `{}` (container `{name}`)",
                service.name
            ));
            if text.contains("port is already allocated") || text.contains("address already in use")
            {
                let port = instance.record.service_port(&service.name).unwrap_or(0);
                return Err(err).hint(format!(
                    "host port {port} is taken by another program; free it, or run `devinst setup` for new ports after it is freed"
                ));
            }
            Err(err)
        }
    }
}

/// This worktree's service containers, by their labels: those the recipe
/// names now and those it no longer does.
pub async fn containers(engine: &Engine, instance: &Instance) -> Result<Vec<ContainerSummary>> {
    let worktree = path_text(&instance.record.worktree);
    let prefix = format!("{}-", instance.record.container);
    Ok(engine
        .managed_containers()
        .await?
        .into_iter()
        .filter(|c| {
            let labels = c.labels.as_ref();
            let service = labels.and_then(|l| l.get(LABEL_SERVICE));
            labels.and_then(|l| l.get(LABEL_WORKTREE)) == Some(&worktree)
                && service.is_some()
                && crate::engine::summary_name(c).is_some_and(|n| n.starts_with(&prefix))
        })
        .collect())
}

fn service_label(c: &ContainerSummary) -> String {
    c.labels
        .as_ref()
        .and_then(|l| l.get(LABEL_SERVICE))
        .cloned()
        .unwrap_or_default()
}

async fn remove_dropped(engine: &Engine, instance: &Instance, settings: &Settings) -> Result<()> {
    for c in containers(engine, instance).await? {
        let service = service_label(&c);
        if settings.services.contains_key(&service) {
            continue;
        }
        if let Some(name) = crate::engine::summary_name(&c) {
            output::note(format!(
                "removing service `{service}` (container `{name}`): it is no longer in devinst.toml"
            ));
            crate::instance::lifecycle::remove(engine, &name).await?;
        }
    }
    Ok(())
}

/// Stops every service container of this worktree.
pub async fn stop_all(engine: &Engine, instance: &Instance) -> Result<()> {
    for c in containers(engine, instance).await? {
        let Some(name) = crate::engine::summary_name(&c) else {
            continue;
        };
        if c.state.as_ref().map(|s| s.to_string()).as_deref() != Some("running") {
            continue;
        }
        let options = StopContainerOptions {
            t: Some(10),
            ..Default::default()
        };
        match engine.docker.stop_container(&name, Some(options)).await {
            Ok(()) => output::note(format!("stopped service `{}`", service_label(&c))),
            Err(err) if matches!(status(&err), Some(304 | 404)) => {}
            Err(err) => {
                return Err(engine
                    .explain(err)
                    .context(format!("cannot stop container `{name}`")))
            }
        }
    }
    Ok(())
}

/// Removes every service container of this worktree, then the instance's
/// private network (never a network the recipe names: others may use it).
pub async fn remove_all(engine: &Engine, instance: &Instance) -> Result<()> {
    for c in containers(engine, instance).await? {
        if let Some(name) = crate::engine::summary_name(&c) {
            crate::instance::lifecycle::remove(engine, &name).await?;
            output::note(format!(
                "removed service `{}` (container `{name}`)",
                service_label(&c)
            ));
        }
    }
    let network = instance.record.private_network();
    if instance.settings.network.as_deref() != Some(network) {
        remove_private_network(engine, network).await?;
    }
    Ok(())
}

/// Removes the network `name` if devinst made it (by its label).
pub async fn remove_private_network(engine: &Engine, name: &str) -> Result<()> {
    let info = match engine.docker.inspect_network(name, None).await {
        Ok(info) => info,
        Err(err) if status(&err) == Some(404) => return Ok(()),
        Err(err) => return Err(engine.explain(err)),
    };
    let ours = info
        .labels
        .as_ref()
        .is_some_and(|l| l.get(LABEL_MANAGED_BY).map(String::as_str) == Some("devinst"));
    if !ours {
        return Ok(());
    }
    match engine.docker.remove_network(name).await {
        Ok(()) => output::note(format!("removed network `{name}`")),
        Err(err) if status(&err) == Some(404) => {}
        Err(err) => output::warn(format!(
            "network `{name}` was not removed: {}",
            engine.explain(err)
        )),
    }
    Ok(())
}

/// One service in `status --json`. Fields are only ever added.
#[derive(Debug, Serialize)]
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
        let state = match engine.inspect(&container).await? {
            Some(info) => info
                .state
                .and_then(|s| s.status)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".into()),
            None => "missing".into(),
        };
        let ports = match (host_port, service.port) {
            (Some(host), Some(inside)) => vec![format!("{}:{host} -> {inside}", s.bind)],
            _ => Vec::new(),
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
