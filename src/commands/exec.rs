//! `devinst exec -- CMD...` and `devinst shell`; every shim comes through here.

use super::Invocation;
use crate::cli::{ExecArgs, ShellArgs};
use crate::engine::Engine;
use crate::instance::exec::{exec_spec, run_in};
use crate::instance::Instance;
use crate::support::terminal;
use anyhow::Result;

pub async fn exec(ctx: &Invocation, args: ExecArgs) -> Result<i32> {
    let target = args.worktree.as_deref().unwrap_or(&ctx.cwd);
    let instance = Instance::find(target)?;
    let tty = terminal::wants_tty();
    let spec = exec_spec(&instance, &ctx.cwd, args.command, tty);
    run(ctx, &instance, spec).await
}

pub async fn shell(ctx: &Invocation, args: ShellArgs) -> Result<i32> {
    let target = args.worktree.as_deref().unwrap_or(&ctx.cwd);
    let instance = Instance::find(target)?;
    let tty = terminal::wants_tty();
    // Bash where the image has it, else sh, started after a login shell read
    // the profile, which resets PATH: the venv goes back in front of it.
    let argv = [
        "sh",
        "-c",
        r#"if command -v bash >/dev/null 2>&1; then s=bash; else s=sh; fi
exec "$s" -l -c 'if [ -n "$VIRTUAL_ENV" ]; then PATH="$VIRTUAL_ENV/bin:$PATH"; export PATH; fi; exec "$0"' "$s""#,
    ]
    .map(String::from)
    .to_vec();
    let spec = exec_spec(&instance, &ctx.cwd, argv, tty);
    run(ctx, &instance, spec).await
}

async fn run(
    ctx: &Invocation,
    instance: &Instance,
    spec: crate::engine::exec::ExecSpec,
) -> Result<i32> {
    let engine = Engine::connect_lazy(&ctx.engine_choice(Some(&instance.settings)))?;
    let code = run_in(engine, instance, &spec).await?;
    Ok(exit_code(code))
}

/// Exit codes outside 0-255 cannot be an exit status; keep them in range the
/// way a shell would.
fn exit_code(code: i64) -> i32 {
    (code & 0xff) as i32
}
