//! The instance's agent: devinst's own small program in the container (the
//! `agent/` crate, built static and embedded at compile time). It is the
//! keep-alive process, serves execs that take the caller's descriptors
//! (`route`, `session`), and relays published ports to loopback.
//!
//! Here: putting it in place for `start`, and choosing for each exec
//! between it and the engine.

mod route;
mod session;

pub use route::{run_through_agent, ExecMode};

use super::spec::{AgentFacts, LABEL_AGENT};
use super::Instance;
use crate::state::layout::AGENT_SOCKET_NAME;
use crate::support::{fs, output};
use anyhow::{Context, Result};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The agent, static, for this host's architecture; empty where devinst
/// was built without it (not Linux, or `DEVINST_NO_AGENT`).
static EMBEDDED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/devinst-agent"));

/// Runtimes whose containers can take descriptors from the host: the
/// default (none named) and the usual native ones. gVisor cannot.
const DESCRIPTOR_RUNTIMES: &[&str] = &["runc", "crun"];

pub fn embedded() -> bool {
    !EMBEDDED.is_empty()
}

/// Whether execs may go through the agent with this runtime.
pub fn runtime_takes_descriptors(runtime: Option<&str>) -> bool {
    runtime.is_none_or(|r| DESCRIPTOR_RUNTIMES.contains(&r))
}

/// Puts the agent in `.sky-dev/agent/` for a container about to be created
/// or started, on an engine at `engine_uri`. `None` when the container runs
/// without it: devinst has none, or the engine is not on this machine (its
/// mounts would name paths of another).
pub fn install(instance: &Instance, engine_uri: &str) -> Result<Option<AgentFacts>> {
    if !embedded() || !engine_uri.starts_with("unix://") {
        return Ok(None);
    }
    let layout = &instance.layout;
    let dir = layout.agent_dir();
    fs::create_dir_all(&dir)?;
    private_to_owner(&dir, &layout.root)?;
    let binary = layout.agent_binary();
    // Replaced, never written over: a running container keeps the file it
    // mounted until it restarts.
    let current = std::fs::symlink_metadata(&binary).is_ok_and(|m| m.file_type().is_file())
        && std::fs::read(&binary).is_ok_and(|bytes| bytes == EMBEDDED);
    if !current {
        fs::write_atomic(&binary, EMBEDDED, 0o755)?;
    }
    Ok(Some(AgentFacts {
        binary,
        exec_socket: runtime_takes_descriptors(instance.settings.runtime.as_deref()),
    }))
}

/// Waits briefly for a just-started agent to serve its socket, so the
/// commands that follow `start` take the fast path from the first.
pub async fn wait_until_serving(instance: &Instance) {
    let socket = instance.layout.agent_dir().join(AGENT_SOCKET_NAME);
    for _ in 0..200 {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tracing::debug!("the agent did not serve `{}` within 2 s", socket.display());
}

/// Makes `dir` 0700 and the worktree owner's (when devinst runs as root on
/// someone else's worktree): the socket in it is theirs alone.
fn private_to_owner(dir: &Path, root: &Path) -> Result<()> {
    let owner =
        std::fs::metadata(root).with_context(|| format!("cannot stat `{}`", root.display()))?;
    let meta = std::fs::symlink_metadata(dir)
        .with_context(|| format!("cannot stat `{}`", dir.display()))?;
    if meta.uid() != owner.uid() || meta.gid() != owner.gid() {
        std::os::unix::fs::lchown(dir, Some(owner.uid()), Some(owner.gid()))
            .with_context(|| format!("cannot give `{}` to the worktree's owner", dir.display()))?;
    }
    if meta.mode() & 0o777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make `{}` private", dir.display()))?;
    }
    Ok(())
}

/// Says once per instance, when its container predates the agent, that
/// recreating it gives its shims the fast path.
pub fn hint_if_made_before(instance: &Instance, labels_agent: Option<&str>, engine_uri: &str) {
    let s = &instance.settings;
    if labels_agent.is_some()
        || !embedded()
        || !engine_uri.starts_with("unix://")
        || ExecMode::from_env() != ExecMode::Auto
        || !runtime_takes_descriptors(s.runtime.as_deref())
    {
        return;
    }
    let marker = instance.layout.agent_hint_file();
    if marker.exists() {
        return;
    }
    output::note(format!(
        "instance `{}` was made before devinst's agent, so its commands go through the engine; \
         `devinst start --recreate` gives them the fast path (state, logs and venv are kept)",
        instance.record.name
    ));
    let _ = fs::write_atomic(&marker, b"", 0o644);
}

/// The label that marks a container made with the agent.
pub const LABEL: &str = LABEL_AGENT;
