//! `devinst start`: create the container if missing, start it, run the setup
//! steps when their inputs changed, print the port mapping. Idempotent.

use super::Instance;
use crate::cli::StartArgs;
use crate::engine::exec::{ExecSpec, Output};
use crate::engine::spec::{self, HostFacts, Owner, LABEL_SPEC, LABEL_WORKTREE};
use crate::engine::{is_name_conflict, status, Engine};
use crate::error::WithHint;
use crate::instance::{path_text, DIR_NAME};
use crate::recipe::BuildContext;
use crate::registry::Registry;
use crate::settings::User;
use crate::{fsutil, output, Context};
use anyhow::{anyhow, Context as _, Result};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};
use sha2::{Digest, Sha256};
use std::path::Path;

pub async fn run(ctx: &Context, args: StartArgs) -> Result<i32> {
    let instance = Instance::find(&ctx.cwd)?;
    // An image recipe's files are found and checked before the engine is
    // asked anything.
    let build = prepare_build(&instance)?;
    let engine = Engine::connect(&ctx.engine_choice(Some(&instance.settings))).await?;
    ensure_running_with(&engine, &instance, args.recreate, build).await?;
    let s = &instance.settings;
    output::data(format!(
        "{}:{} -> {}",
        s.bind, instance.record.port, s.container_port
    ));
    for service in s.services.values() {
        if let (Some(inside), Some(host)) =
            (service.port, instance.record.service_port(&service.name))
        {
            output::note(format!(
                "service `{}`: {}:{host} -> {inside}",
                service.name, s.bind
            ));
        }
    }
    Ok(0)
}

/// Brings the instance to "running and set up", doing only what is missing.
pub async fn ensure_running(engine: &Engine, instance: &Instance, recreate: bool) -> Result<()> {
    let build = prepare_build(instance)?;
    ensure_running_with(engine, instance, recreate, build).await
}

/// The build context of the instance's `[container.build]`, if it has one:
/// its tag says which image the container should run.
pub fn prepare_build(instance: &Instance) -> Result<Option<BuildContext>> {
    let Some(recipe) = &instance.settings.build else {
        return Ok(None);
    };
    BuildContext::collect(recipe, &instance.layout.root)
        .map(Some)
        .with_context(|| {
            format!(
                "invalid `{}`",
                instance
                    .layout
                    .root
                    .join(crate::config::FILE_NAME)
                    .display()
            )
        })
}

async fn ensure_running_with(
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
    super::services::ensure_running(engine, instance, &settings, recreate).await?;
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

/// Whether the container was this instance's before its worktree moved: the
/// path it was made for holds no instance any more, and the registry (updated
/// by `setup` in the new place) says the name now lives here.
pub fn moved_here(owner: Option<&str>, instance: &Instance) -> bool {
    let Some(old) = owner else { return false };
    if Path::new(old).join(DIR_NAME).is_dir() {
        return false;
    }
    Registry::snapshot().is_ok_and(|entries| {
        entries
            .iter()
            .any(|e| e.name == instance.record.name && e.worktree == instance.layout.root)
    })
}

/// The recipe, but with the image of the snapshot last restored, if any.
/// The image the instance's container should run: a restored snapshot's,
/// else the one built from `[container.build]`, else `[container] image`.
/// `start` makes the same choice while it builds the container's spec.
pub fn intended_image(instance: &Instance) -> Result<String> {
    if let Some(snapshot) = instance.layout.active_snapshot() {
        return Ok(super::snapshot::image_ref(&instance.record.name, &snapshot));
    }
    Ok(match prepare_build(instance)? {
        Some(build) => build.tag,
        None => instance.settings.image.clone(),
    })
}

fn with_snapshot_image(instance: &Instance) -> crate::settings::Settings {
    let mut settings = instance.settings.clone();
    if let Some(snapshot) = instance.layout.active_snapshot() {
        settings.image = super::snapshot::image_ref(&instance.record.name, &snapshot);
    }
    settings
}

/// Whether the container was made for this instance's worktree (by its label).
pub fn belongs_to(info: &bollard::models::ContainerInspectResponse, instance: &Instance) -> bool {
    let owner = info
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .and_then(|l| l.get(LABEL_WORKTREE));
    owner.map(String::as_str) == Some(&path_text(&instance.record.worktree))
}

pub(super) async fn create(
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

/// For `user = "host"`: finds the worktree's owner, and makes the host
/// directories mounted for them (HOME, state, logs) theirs, for when devinst
/// itself runs as root on someone else's worktree.
async fn prepare_owner_dirs(engine: &Engine, instance: &Instance) -> Result<Owner> {
    use std::os::unix::fs::MetadataExt;
    let layout = &instance.layout;
    let meta = std::fs::metadata(&layout.root)
        .with_context(|| format!("cannot stat `{}`", layout.root.display()))?;
    let (uid, gid) = (meta.uid(), meta.gid());
    fsutil::create_dir_all(&layout.home_dir())?;
    for dir in [
        layout.dir(),
        layout.home_dir(),
        layout.state_dir(),
        layout.logs_dir(),
    ] {
        let owned = std::fs::metadata(&dir).is_ok_and(|m| m.uid() == uid && m.gid() == gid);
        if !owned {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .with_context(|| {
                    format!(
                        "cannot give `{}` to the worktree's owner ({uid}:{gid})",
                        dir.display()
                    )
                })
                .hint("run devinst as the worktree's owner, or as root")?;
        }
    }
    Ok(Owner {
        uid,
        gid,
        mapping: engine.user_mapping().await?,
    })
}

fn host_facts(
    instance: &Instance,
    owner: Option<Owner>,
    build: Option<&BuildContext>,
) -> Result<HostFacts> {
    let s = &instance.settings;
    let home = directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf());
    let credentials = match &home {
        Some(home) => s
            .credential_paths
            .iter()
            .map(|entry| spec::credential_paths(entry, home, &s.credential_home))
            .filter(|(host, _)| host.exists())
            .collect(),
        None => Vec::new(),
    };
    let git_common_dir = crate::worktree::outside_common_dir(&instance.layout.root)?;
    let host_ca = s.host_ca.then(host_ca_bundle).flatten();
    if s.host_ca && host_ca.is_none() {
        output::warn("`host_ca` is on but no CA bundle was found on the host");
    }
    Ok(HostFacts {
        credentials,
        git_common_dir,
        host_ca,
        limits: s.limits_for(instance.record.tier.as_deref())?,
        owner,
        built_image: build.map(|b| b.tag.clone()),
    })
}

fn host_ca_bundle() -> Option<std::path::PathBuf> {
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ]
    .into_iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.is_file())
}

/// Runs the recipe's setup steps unless they already ran, with the same
/// inputs, in this very container, and what they made is still there.
async fn run_setup_steps(engine: &Engine, instance: &Instance, container_id: &str) -> Result<()> {
    let s = &instance.settings;
    if s.setup_commands.is_empty() {
        return Ok(());
    }
    let stamp = setup_stamp(instance, container_id);
    let stamp_file = instance.layout.setup_stamp();
    let done = std::fs::read_to_string(&stamp_file).is_ok_and(|old| old.trim() == stamp);
    let outputs_present = s
        .setup_outputs
        .iter()
        .all(|p| instance.layout.root.join(p).exists());
    if done && outputs_present {
        return Ok(());
    }
    let total = s.setup_commands.len();
    for (i, command) in s.setup_commands.iter().enumerate() {
        output::note(format!("setup step {}/{total}: {command}", i + 1));
        let spec = ExecSpec {
            argv: vec!["sh".into(), "-c".into(), command.clone()],
            workdir: Some(s.workdir.clone()),
            user: s.user.for_exec(),
            ..Default::default()
        };
        let code = engine
            .exec_simple(&instance.record.container, &spec, Output::Stderr)
            .await?;
        if code != 0 {
            let _ = std::fs::remove_file(&stamp_file);
            return Err(anyhow!(
                "setup step {}/{total} failed with exit code {}: {command}",
                i + 1,
                code
            ))
            .hint("fix the step (its output is above) and run `devinst start` again");
        }
    }
    fsutil::write_atomic(&stamp_file, format!("{stamp}\n").as_bytes(), 0o644)
}

fn setup_stamp(instance: &Instance, container_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(container_id.as_bytes());
    for command in &instance.settings.setup_commands {
        hasher.update(b"\0cmd\0");
        hasher.update(command.as_bytes());
    }
    for input in &instance.settings.setup_inputs {
        hasher.update(b"\0input\0");
        hasher.update(input.as_bytes());
        if let Ok(bytes) = std::fs::read(instance.layout.root.join(input)) {
            hasher.update(&bytes);
        }
    }
    hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
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
