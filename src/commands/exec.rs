//! `devinst exec -- CMD...` and `devinst shell`; every shim comes through here.

use super::Invocation;
use crate::cli::{ExecArgs, ShellArgs};
use crate::engine::Engine;
use crate::instance::agent::run_through_agent;
use crate::instance::exec::{exec_spec, run_in, run_on, run_on_every_node};
use crate::instance::{consent, nodes, Instance};
use crate::support::terminal;
use anyhow::Result;

pub fn exec(ctx: &Invocation, args: ExecArgs) -> Result<i32> {
    let target = args.worktree.as_deref().unwrap_or(&ctx.cwd);
    let instance = Instance::find(target)?;
    let tty = terminal::wants_tty() && !args.all;
    let spec = exec_spec(&instance, &ctx.cwd, args.command, tty);
    match (args.all, args.node.unwrap_or(0)) {
        (true, _) => run_on_nodes(ctx, &instance, spec, None),
        (false, 0) => run(ctx, &instance, spec),
        (false, rank) => run_on_nodes(ctx, &instance, spec, Some(rank)),
    }
}

pub fn shell(ctx: &Invocation, args: ShellArgs) -> Result<i32> {
    let target = args.worktree.as_deref().unwrap_or(&ctx.cwd);
    let instance = Instance::find(target)?;
    let tty = terminal::wants_tty();
    // A login shell: bash where the image has it, else sh. Its profile
    // resets PATH, so the venv is put back in front afterwards: by bash's
    // PROMPT_COMMAND (interactive) and BASH_ENV (not), and by the file in
    // ENV that an interactive sh reads after the profile.
    let argv = ["sh", "-c", LOGIN_SHELL].map(String::from).to_vec();
    let spec = exec_spec(&instance, &ctx.cwd, argv, tty);
    match args.node.unwrap_or(0) {
        0 => run(ctx, &instance, spec),
        rank => run_on_nodes(ctx, &instance, spec, Some(rank)),
    }
}

/// The script `devinst shell` runs inside.
const LOGIN_SHELL: &str = r#"if [ -n "$VIRTUAL_ENV" ]; then
    fix='case ":$PATH:" in *":$VIRTUAL_ENV/bin:"*) ;; *) PATH="$VIRTUAL_ENV/bin:$PATH"; export PATH ;; esac'
    PROMPT_COMMAND=$fix; export PROMPT_COMMAND
    if f=$(mktemp 2>/dev/null) && printf '%s\n' "$fix" >"$f"; then
        ENV=$f BASH_ENV=$f; export ENV BASH_ENV
    fi
fi
if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi"#;

/// Through the instance's agent when it can take the command (decided
/// before any runtime exists: the shim's fast path), else the engine.
fn run(ctx: &Invocation, instance: &Instance, spec: crate::engine::exec::ExecSpec) -> Result<i32> {
    // Every exec passes variables, and may create the container.
    let choice = ctx.engine_choice(Some(&instance.settings));
    consent::require(&instance.layout.root, &instance.settings, &choice)?;
    if let Some(code) = run_through_agent(instance, &spec, &choice)? {
        return Ok(exit_code(code));
    }
    super::block_on(async {
        let engine = Engine::connect_lazy(&choice)?;
        let code = run_in(engine, instance, &spec).await?;
        Ok(exit_code(code))
    })
}

/// On one node other than the head (`Some(rank)`), or on every node: the
/// engine's way, as the agent serves the head alone.
fn run_on_nodes(
    ctx: &Invocation,
    instance: &Instance,
    spec: crate::engine::exec::ExecSpec,
    rank: Option<u16>,
) -> Result<i32> {
    if let Some(rank) = rank {
        nodes::check_rank(instance, rank)?;
    }
    let choice = ctx.engine_choice(Some(&instance.settings));
    consent::require(&instance.layout.root, &instance.settings, &choice)?;
    super::block_on(async {
        let engine = Engine::connect_lazy(&choice)?;
        let code = match rank {
            Some(rank) => run_on(engine, instance, rank, &spec).await?,
            None => run_on_every_node(engine, instance, &spec).await?,
        };
        Ok(exit_code(code))
    })
}

/// Exit codes outside 0-255 cannot be an exit status; keep them in range the
/// way a shell would.
fn exit_code(code: i64) -> i32 {
    (code & 0xff) as i32
}
