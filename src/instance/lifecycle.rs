//! Bringing an instance's container to "running and set up": create it from
//! its spec (with its image pulled or built), start it, remove it.

use super::host::{host_facts, prepare_owner_dirs};
use super::image::{prepare_build, with_snapshot_image};
use super::ownership::{belongs_to, moved_here};
use super::setup_steps::run_setup_steps;
use super::Instance;
use crate::engine::{is_name_conflict, status, Engine};
use crate::instance::spec::{self, LABEL_SPEC, LABEL_WORKTREE};
use crate::recipe::image::BuildContext;
use crate::recipe::settings::User;
use crate::support::error::WithHint;
use crate::support::output;
use anyhow::{anyhow, Context as _, Result};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};

/// Brings the instance to "running and set up", doing only what is missing.
pub async fn ensure_running(engine: &Engine, instance: &Instance, recreate: bool) -> Result<()> {
    let build = prepare_build(instance)?;
    ensure_running_with(engine, instance, recreate, build).await
}

pub async fn ensure_running_with(
    engine: &Engine,
    instance: &Instance,
    recreate: bool,
    build: Option<BuildContext>,
) -> Result<()> {
    let _lock = instance.layout.lock()?;
    let record = &instance.record;
    let name = &record.container;
    if record.worktree != instance.layout.root {
        return Err(anyhow!(
            "this instance was set up at `{}`, not here",
            record.worktree.display()
        ))
        .hint("run `devinst setup` to move it to this worktree");
    }
    let owner = match instance.settings.user {
        User::Host => Some(prepare_owner_dirs(engine, instance).await?),
        _ => None,
    };
    let settings = with_snapshot_image(instance);
    // A restored snapshot's image stands in for the recipe's, built or not.
    let build = build.filter(|_| instance.layout.active_snapshot().is_none());
    crate::instance::services::ensure_running(engine, instance, &settings, recreate).await?;
    let body = spec::container_body(
        &settings,
        record,
        &instance.layout,
        &host_facts(instance, owner, build.as_ref())?,
    );
    let wanted_spec = body
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_SPEC))
        .cloned();
    let existing = engine.inspect(name).await?;
    let info = match existing {
        Some(info) => {
            let labels = info
                .config
                .as_ref()
                .and_then(|c| c.labels.clone())
                .unwrap_or_default();
            let owner = labels.get(LABEL_WORKTREE).map(String::as_str);
            if !belongs_to(&info, instance) {
                if !moved_here(owner, instance) {
                    return Err(anyhow!("a container named `{name}` exists but does not belong to this worktree"))
                        .hint(format!("remove it (`docker rm -f {name}`) or choose another name: `devinst setup OTHER-NAME`"));
                }
                // Its mounts name the old path; state, logs and venv moved
                // along in `.sky-dev/`, so a new container loses nothing.
                output::note(format!(
                    "container `{name}` was made for `{}`, which no longer exists (the worktree moved); recreating it here",
                    owner.unwrap_or_default()
                ));
                ensure_image(engine, &body, build.as_ref()).await?;
                remove(engine, name).await?;
                create(engine, name, body, build.as_ref()).await?
            } else if recreate {
                // The new image first: a build that fails leaves the old
                // container in place.
                ensure_image(engine, &body, build.as_ref()).await?;
                output::note(format!("removing container `{name}` to recreate it"));
                remove(engine, name).await?;
                create(engine, name, body, build.as_ref()).await?
            } else {
                if labels.get(LABEL_SPEC) != wanted_spec.as_ref() {
                    output::warn(format!(
                        "container `{name}` was created from a different recipe (devinst.toml, image, mounts or limits changed); \
                         it keeps running as it was. Run `devinst start --recreate` to apply the changes (state, logs and venv are kept)"
                    ));
                }
                info
            }
        }
        None => create(engine, name, body, build.as_ref()).await?,
    };
    let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
    if !running {
        start_container(engine, instance).await?;
    }
    let id = info.id.unwrap_or_default();
    run_setup_steps(engine, instance, &id).await
}

pub async fn create(
    engine: &Engine,
    name: &str,
    body: bollard::models::ContainerCreateBody,
    build: Option<&BuildContext>,
) -> Result<bollard::models::ContainerInspectResponse> {
    let image = body.image.clone().unwrap_or_default();
    if let Some(runtime) = body.host_config.as_ref().and_then(|h| h.runtime.as_deref()) {
        engine
            .require_runtime(runtime)
            .await
            .with_context(|| format!("cannot create container `{name}`"))?;
    }
    if let Some(network) = body
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.as_deref())
    {
        engine.ensure_network(network).await?;
    }
    ensure_image(engine, &body, build).await?;
    output::note(format!("creating container `{name}` from `{image}`"));
    let options = CreateContainerOptions {
        name: Some(name.to_owned()),
        ..Default::default()
    };
    let mut result = engine
        .docker
        .create_container(Some(options.clone()), body.clone())
        .await;
    if result.as_ref().is_err_and(lacks_init_binary) {
        output::warn(
            "the engine has no init binary for `[container] init` (Podman looks for `catatonit`); \
             the container runs without one. Install `catatonit`, or set `init = false` under `[container]` in devinst.toml",
        );
        result = engine
            .docker
            .create_container(Some(options), without_init(body))
            .await;
    }
    match result {
        Ok(_) => {}
        // Another devinst is creating it right now: use that one.
        Err(err) if is_name_conflict(&err) => return created_by_another(engine, name).await,
        Err(err) => {
            let text = crate::engine::message(&err).to_owned();
            let err = engine
                .explain(err)
                .context(format!("cannot create container `{name}`"));
            if text.contains("runtime") {
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

/// The container another devinst is creating. Docker reserves the name
/// before the container can be inspected, so the loser of the race may find
/// nothing for a moment.
async fn created_by_another(
    engine: &Engine,
    name: &str,
) -> Result<bollard::models::ContainerInspectResponse> {
    for _ in 0..200 {
        if let Some(info) = engine.inspect(name).await? {
            return Ok(info);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(anyhow!(
        "the name `{name}` is taken, but no container by that name appeared within 10 s"
    ))
    .hint(format!(
        "run `devinst start` again; if it persists, `docker rm -f {name}`"
    ))
}

/// Podman answers a create with `init` this way when its init binary
/// (catatonit) is not installed; Docker ships its own.
fn lacks_init_binary(err: &bollard::errors::Error) -> bool {
    crate::engine::message(err).contains("container-init binary not found")
}

/// The same container without the init process. The spec label keeps the
/// recipe's hash: the recipe did not change, the engine could not honour it.
fn without_init(
    mut body: bollard::models::ContainerCreateBody,
) -> bollard::models::ContainerCreateBody {
    if let Some(host) = body.host_config.as_mut() {
        host.init = Some(false);
    }
    body
}

/// Builds the recipe's image, or pulls the configured one, when absent.
async fn ensure_image(
    engine: &Engine,
    body: &bollard::models::ContainerCreateBody,
    build: Option<&BuildContext>,
) -> Result<()> {
    match build {
        Some(context) => engine.ensure_built(context).await.map(drop),
        None => {
            engine
                .ensure_image(body.image.as_deref().unwrap_or_default())
                .await
        }
    }
}

async fn start_container(engine: &Engine, instance: &Instance) -> Result<()> {
    let name = &instance.record.container;
    output::note(format!("starting container `{name}`"));
    match engine.docker.start_container(name, None).await {
        Ok(()) => Ok(()),
        Err(err) if status(&err) == Some(304) => Ok(()),
        Err(err) => {
            let text = crate::engine::message(&err).to_owned();
            let err = engine
                .explain(err)
                .context(format!("cannot start container `{name}`"));
            if text.contains("port is already allocated") || text.contains("address already in use")
            {
                return Err(err).hint(format!(
                    "host port {} is taken by another program; run `devinst setup` after freeing it, or delete `.sky-dev/.port` and re-run `devinst setup` for a new port",
                    instance.record.port
                ));
            }
            Err(err)
        }
    }
}

pub async fn remove(engine: &Engine, name: &str) -> Result<()> {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match engine.docker.remove_container(name, Some(options)).await {
        Ok(()) => Ok(()),
        Err(err) if status(&err) == Some(404) => Ok(()),
        Err(err) => Err(engine
            .explain(err)
            .context(format!("cannot remove container `{name}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podmans_missing_init_is_recognised_and_dropped() {
        let err = bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            // Podman 4.3.1 without catatonit, verbatim.
            message: "container create: container-init binary not found on the host: \
                      stat /usr/libexec/podman/catatonit: no such file or directory"
                .to_owned(),
        };
        assert!(lacks_init_binary(&err));
        let body = bollard::models::ContainerCreateBody {
            host_config: Some(bollard::models::HostConfig {
                init: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(without_init(body).host_config.unwrap().init, Some(false));
    }
}
