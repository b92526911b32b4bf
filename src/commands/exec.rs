//! `devinst exec -- CMD...` and `devinst shell`; every shim comes through here.

use crate::cli::{ExecArgs, ShellArgs};
use crate::engine::exec::{ExecSpec, Output};
use crate::engine::{is_missing_or_stopped, is_version_too_old, Engine};
use crate::instance::Instance;
use crate::support::{output, terminal};
use crate::Context;
use anyhow::Result;
use std::path::Path;

pub async fn run(ctx: &Context, args: ExecArgs) -> Result<i32> {
    let target = args.worktree.as_deref().unwrap_or(&ctx.cwd);
    let instance = Instance::find(target)?;
    let tty = terminal::wants_tty();
    let spec = exec_spec(&instance, &ctx.cwd, args.command, tty);
    run_in(ctx, &instance, &spec).await
}

pub async fn shell(ctx: &Context, args: ShellArgs) -> Result<i32> {
    let target = args.worktree.as_deref().unwrap_or(&ctx.cwd);
    let instance = Instance::find(target)?;
    let tty = terminal::wants_tty();
    // A login shell: bash where the image has it, else sh.
    let argv = [
        "sh",
        "-c",
        "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi",
    ]
    .map(String::from)
    .to_vec();
    let spec = exec_spec(&instance, &ctx.cwd, argv, tty);
    run_in(ctx, &instance, &spec).await
}

/// Runs `spec` in the instance, starting the instance first if it is stopped
/// or not created yet, and returns the command's exit code.
async fn run_in(ctx: &Context, instance: &Instance, spec: &ExecSpec) -> Result<i32> {
    let mut engine = Engine::connect_lazy(&ctx.engine_choice(Some(&instance.settings)))?;
    if spec.tty {
        // Interactive: worth a round trip to learn whether the engine takes
        // the terminal size at creation.
        engine.renegotiate().await?;
    }
    let container = &instance.record.container;
    // The exec is created while the container is inspected, so checking that
    // the container is this worktree's costs no extra round trip; an exec that
    // is never started is harmless.
    let (created, inspected) = tokio::join!(
        engine.create_exec(container, spec),
        engine.docker.inspect_container(container, None)
    );
    // When the inspect fails (no such container, say) the create's answer
    // tells what to do.
    let ours = match &inspected {
        Ok(info) => crate::instance::ownership::belongs_to(info, instance),
        Err(_) => true,
    };
    let id = match created {
        // Someone else's container by this name: `ensure_running` refuses it
        // with the reason, or recreates it if this worktree moved.
        Ok(_) if !ours => {
            crate::instance::lifecycle::ensure_running(&engine, instance, false).await?;
            create_or_start(&engine, instance, spec).await?
        }
        Ok(id) => id,
        Err(err) if is_version_too_old(&err) => {
            engine.renegotiate().await?;
            create_or_start(&engine, instance, spec).await?
        }
        Err(err) if is_missing_or_stopped(&err) => {
            start_then_create(&engine, instance, spec).await?
        }
        Err(err) => return Err(engine.explain(err)),
    };
    let code = engine
        .run_exec(container, &id, spec, Output::Passthrough)
        .await?;
    Ok(exit_code(code))
}

async fn create_or_start(engine: &Engine, instance: &Instance, spec: &ExecSpec) -> Result<String> {
    match engine.create_exec(&instance.record.container, spec).await {
        Ok(id) => Ok(id),
        Err(err) if is_missing_or_stopped(&err) => start_then_create(engine, instance, spec).await,
        Err(err) => Err(engine.explain(err)),
    }
}

async fn start_then_create(
    engine: &Engine,
    instance: &Instance,
    spec: &ExecSpec,
) -> Result<String> {
    output::note(format!(
        "instance `{}` is not running; starting it",
        instance.record.name
    ));
    crate::instance::lifecycle::ensure_running(engine, instance, false).await?;
    engine
        .create_exec(&instance.record.container, spec)
        .await
        .map_err(|err| engine.explain(err))
}

fn exec_spec(instance: &Instance, cwd: &Path, argv: Vec<String>, tty: bool) -> ExecSpec {
    let s = &instance.settings;
    let mut env: Vec<String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| s.passes_env(k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
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

/// Exit codes outside 0-255 cannot be an exit status; keep them in range the
/// way a shell would.
fn exit_code(code: i64) -> i32 {
    (code & 0xff) as i32
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
