//! Running a command in the instance: the host's directory mapped to the
//! same place inside, the environment the recipe passes, the container
//! started first when it is not running.

use super::environment;
use super::lifecycle::ensure_running;
use super::ownership::is_ours;
use super::Instance;
use crate::engine::exec::{ExecError, ExecSpec, Output, RunFailure};
use crate::engine::Engine;
use crate::support::error::Hint;
use crate::support::{output, terminal};
use anyhow::{anyhow, Context, Result};
use std::path::Path;

/// Runs `spec` in the instance, starting the instance first if it is stopped
/// or not created yet, and returns the command's exit code.
/// The engine is connected lazily (no round trip yet): this is every shim's
/// path.
pub async fn run_in(engine: Engine, instance: &Instance, spec: &ExecSpec) -> Result<i64> {
    run_on(engine, instance, 0, spec).await
}

/// [`run_in`] on node `rank` of the instance's cluster (0 is the head).
pub async fn run_on(
    mut engine: Engine,
    instance: &Instance,
    rank: u16,
    spec: &ExecSpec,
) -> Result<i64> {
    if spec.tty {
        // Interactive: worth a round trip to learn whether the engine takes
        // the terminal size at creation.
        engine.renegotiate().await?;
    }
    let container = &super::nodes::container_of(instance, rank)?;
    // The exec is created while the container is inspected, so checking that
    // the container is this worktree's costs no extra round trip; an exec that
    // is never started is harmless.
    let (created, inspected) = tokio::join!(
        engine.create_exec(container, spec),
        engine.inspect(container)
    );
    // When the inspect fails (no such container, say) the create's answer
    // tells what to do.
    let ours = match &inspected {
        Ok(Some(info)) => is_ours(&info.labels, instance),
        _ => true,
    };
    if let (true, Ok(Some(info))) = (ours, &inspected) {
        let agent = info.label(super::agent::LABEL);
        super::agent::hint_if_made_before(instance, agent, &engine.endpoint.uri);
    }
    let id = match created {
        // Someone else's container by this name: `ensure_running` refuses it
        // with the reason, or recreates it if this worktree moved.
        Ok(_) if !ours => {
            ensure_running(&engine, instance, false).await?;
            create_or_start(&engine, instance, container, &refreshed(spec, instance)).await?
        }
        Ok(id) => {
            super::setup_steps::warn_if_incomplete(instance);
            id
        }
        Err(ExecError::VersionTooOld) => {
            engine.renegotiate().await?;
            create_or_start(&engine, instance, container, spec).await?
        }
        Err(ExecError::NotRunning) => start_then_create(&engine, instance, container, spec).await?,
        Err(err) => return Err(err.into()),
    };
    super::behind::notice(instance);
    let ran = engine
        .run_exec(container, &id, spec, Output::Passthrough)
        .await;
    ran.map_err(|err| {
        let hint = match err.downcast_ref::<RunFailure>() {
            Some(RunFailure::NoDirectory { .. }) => format!(
                "run it from a directory that exists inside: the worktree is at `{}`, \
                 and directories outside it map to that",
                instance.settings.workdir
            ),
            Some(RunFailure::StoppedBeforeStart { .. }) => {
                "run it again: a stopped instance is started first".to_owned()
            }
            Some(RunFailure::StoppedWhileRunning { .. }) => {
                "run `devinst start` (or the command again: a stopped instance is started first)"
                    .to_owned()
            }
            Some(RunFailure::Refused { .. }) => {
                "run it again; if it fails the same way, `devinst start --recreate` makes the container anew"
                    .to_owned()
            }
            None => return err,
        };
        err.context(Hint(hint))
    })
}

async fn create_or_start(
    engine: &Engine,
    instance: &Instance,
    container: &str,
    spec: &ExecSpec,
) -> Result<String> {
    match engine.create_exec(container, spec).await {
        Ok(id) => Ok(id),
        Err(ExecError::NotRunning) => start_then_create(engine, instance, container, spec).await,
        Err(err) => Err(err.into()),
    }
}

async fn start_then_create(
    engine: &Engine,
    instance: &Instance,
    container: &str,
    spec: &ExecSpec,
) -> Result<String> {
    output::note(format!(
        "instance `{}` is not running; starting it",
        instance.record.name
    ));
    ensure_running(engine, instance, false).await?;
    let spec = refreshed(spec, instance);
    engine
        .create_exec(container, &spec)
        .await
        .map_err(|err| match err {
            ExecError::NotRunning => {
                anyhow!("container `{container}` stopped again as soon as it was started (`devinst stop` or the engine)")
            }
            err => err.into(),
        })
}

/// Runs `spec` on every node of the instance's cluster at once (all brought
/// up first), each output line behind `[node K] `; without stdin or a
/// terminal, which cannot be shared. The exit code is 0 when every node's
/// was, else the first failing node's (by rank), which is named.
pub async fn run_on_every_node(
    engine: Engine,
    instance: &Instance,
    spec: &ExecSpec,
) -> Result<i64> {
    let mut spec = ExecSpec {
        tty: false,
        stdin: false,
        ..spec.clone()
    };
    if !every_node_running(&engine, instance).await? {
        output::note(format!(
            "instance `{}` is not running on every node; starting it",
            instance.record.name
        ));
        ensure_running(&engine, instance, false).await?;
        spec = refreshed(&spec, instance);
    }
    super::setup_steps::warn_if_incomplete(instance);
    let ranks = super::nodes::ranks(instance);
    let runs = ranks.clone().map(|rank| {
        let container = instance.record.node_container(rank);
        let (engine, spec) = (&engine, &spec);
        async move {
            let prefix = format!("[node {rank}] ");
            engine.exec_prefixed(&container, spec, &prefix).await
        }
    });
    let results = futures_util::future::join_all(runs).await;
    let mut failed = None;
    for (rank, result) in ranks.zip(results) {
        let code = result.with_context(|| format!("node {rank} could not run the command"))?;
        if code != 0 && failed.is_none() {
            failed = Some((rank, code));
        }
    }
    match failed {
        None => Ok(0),
        Some((rank, code)) => {
            output::warn(format!(
                "node {rank} (container `{}`) exited with code {code}",
                instance.record.node_container(rank)
            ));
            Ok(code)
        }
    }
}

async fn every_node_running(engine: &Engine, instance: &Instance) -> Result<bool> {
    for rank in super::nodes::ranks(instance) {
        let running = engine
            .inspect(&instance.record.node_container(rank))
            .await?
            .is_some_and(|info| info.running && !info.paused);
        if !running {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `spec` with the variables `start` may just have written (the venv made
/// by the setup steps it ran).
fn refreshed(spec: &ExecSpec, instance: &Instance) -> ExecSpec {
    let mut spec = spec.clone();
    environment::with_vars(&mut spec.env, &environment::exec_vars(instance));
    spec
}

pub fn exec_spec(instance: &Instance, cwd: &Path, argv: Vec<String>, tty: bool) -> ExecSpec {
    let s = &instance.settings;
    let mut env: Vec<String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| s.passes_env(k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    environment::with_vars(&mut env, &environment::exec_vars(instance));
    if tty {
        env.push(format!(
            "TERM={}",
            std::env::var("TERM").unwrap_or_else(|_| "xterm".into())
        ));
    }
    ExecSpec {
        argv,
        workdir: Some(container_dir(cwd, &instance.layout.root, &s.workdir)),
        env,
        user: s.user.for_exec(),
        tty,
        stdin: !terminal::stdin_is_null(),
        marker: None,
    }
    .forwarding_signals()
}

/// The container directory for the host's `cwd`: the same place under the
/// mount when inside the worktree, else the container's work directory.
pub fn container_dir(cwd: &Path, root: &Path, workdir: &str) -> String {
    let cwd = cwd.canonicalize().unwrap_or_else(|_| cwd.to_path_buf());
    match cwd.strip_prefix(root) {
        Ok(rel) if rel.as_os_str().is_empty() => workdir.to_owned(),
        Ok(rel) => format!(
            "{}/{}",
            workdir.trim_end_matches('/'),
            rel.to_string_lossy()
        ),
        Err(_) => workdir.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cwd_maps_under_the_mount() {
        let root = Path::new("/nonexistent/w");
        assert_eq!(container_dir(root, root, "/app"), "/app");
        assert_eq!(
            container_dir(&root.join("a/b c"), root, "/app"),
            "/app/a/b c"
        );
        assert_eq!(container_dir(Path::new("/elsewhere"), root, "/app"), "/app");
        assert_eq!(
            container_dir(Path::new("/nonexistent/wx"), root, "/app"),
            "/app"
        );
    }
}
