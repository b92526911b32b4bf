//! Which way an exec goes: through the instance's agent when its socket is
//! this user's, answers, and names this instance's container in a hello of
//! devinst's own protocol version; through the engine otherwise, without a
//! word unless `-v` (or `DEVINST_EXEC=agent`) asks why.
//!
//! Blocking calls only: this runs before any async runtime exists.

use super::session::{self, Ended};
use crate::engine::exec::ExecSpec;
use crate::engine::{Choice, Engine};
use crate::instance::Instance;
use crate::state::layout::AGENT_SOCKET_NAME;
use crate::support::error::WithHint;
use anyhow::{anyhow, Result};
use devinst_agent::proto::{self, Message};
use rustix::fs::{FileType, Mode, OFlags};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// `DEVINST_EXEC`: `engine` sends every exec through the engine, `agent`
/// fails when the agent cannot take it; unset (or `auto`) chooses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExecMode {
    Auto,
    Engine,
    Agent,
}

pub const MODE_VAR: &str = "DEVINST_EXEC";

impl ExecMode {
    pub fn from_env() -> ExecMode {
        match std::env::var(MODE_VAR).as_deref() {
            Ok("engine") => ExecMode::Engine,
            Ok("agent") => ExecMode::Agent,
            _ => ExecMode::Auto,
        }
    }
}

/// How long the agent has to say hello: a paused container never does.
const HELLO_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs `spec` through the instance's agent and returns its exit code, or
/// `None` when it must go through the engine (nothing has run then).
pub fn run_through_agent(
    instance: &Instance,
    spec: &ExecSpec,
    engine: &Choice,
) -> Result<Option<i64>> {
    let mode = ExecMode::from_env();
    let outcome = match connect(instance, mode, engine) {
        Ok(stream) => {
            // Said before the command's own output, as on the engine's path.
            super::super::behind::notice(instance);
            super::super::setup_steps::warn_if_incomplete(instance);
            session::run(stream, spec)?
        }
        Err(reason) => Ended::Refused(reason),
    };
    match outcome {
        Ended::Code(code) => {
            tracing::debug!("exec went through the agent");
            Ok(Some(code))
        }
        Ended::Refused(reason) if mode == ExecMode::Agent => Err(anyhow!(
            "the instance's agent cannot run the command: {reason}"
        ))
        .hint(format!("unset {MODE_VAR} to let the engine run it")),
        Ended::Refused(reason) => {
            tracing::debug!("exec goes through the engine: {reason}");
            Ok(None)
        }
    }
}

/// A connection to this instance's agent, after its hello; or why not.
fn connect(instance: &Instance, mode: ExecMode, engine: &Choice) -> Result<UnixStream, String> {
    if mode == ExecMode::Engine {
        return Err(format!("{MODE_VAR}=engine"));
    }
    // The engine the user chose must be one on this machine that is there:
    // sockets do not cross to a remote one, and a mistaken choice is for
    // the engine's path to report.
    match Engine::pick_lazy(engine) {
        Ok(endpoint) if endpoint.uri.starts_with("unix://") => {}
        Ok(endpoint) => return Err(format!("the engine at {} is not local", endpoint.uri)),
        Err(err) => return Err(format!("{err:#}")),
    }
    if !super::embedded() {
        return Err("this devinst was built without the agent".into());
    }
    let runtime = instance.settings.runtime.as_deref();
    if !super::runtime_takes_descriptors(runtime) {
        return Err(format!(
            "runtime `{}` cannot take the host's descriptors",
            runtime.unwrap_or_default()
        ));
    }
    let dir = open_own_dir(&instance.layout.agent_dir())?;
    let stream = connect_socket(&dir)?;
    let hello = read_hello(&stream)?;
    let container = &instance.record.container;
    match hello {
        Message::Hello { version, .. } if version != proto::VERSION => Err(format!(
            "the agent speaks protocol {version}, this devinst {}; `devinst start --recreate` updates it",
            proto::VERSION
        )),
        Message::Hello { container: named, .. } if &named != container => Err(format!(
            "the socket's agent serves container `{named}`, not `{container}`"
        )),
        Message::Hello { .. } => Ok(stream),
        _ => Err("the agent did not say hello".into()),
    }
}

/// The agent's directory, opened without following a link, and only when
/// it is this user's and no one else's.
fn open_own_dir(path: &std::path::Path) -> Result<OwnedFd, String> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let dir = rustix::fs::open(path, flags, Mode::empty())
        .map_err(|err| format!("no agent directory `{}` ({err})", path.display()))?;
    let stat = rustix::fs::fstat(&dir).map_err(|err| format!("cannot stat it: {err}"))?;
    if stat.st_uid != rustix::process::geteuid().as_raw() || stat.st_mode & 0o077 != 0 {
        return Err(format!(
            "`{}` is not this user's alone (owner {}, mode {:o})",
            path.display(),
            stat.st_uid,
            stat.st_mode & 0o777
        ));
    }
    Ok(dir)
}

/// Connects to the socket in `dir` (through the descriptor, so a long path
/// is no obstacle), only if it is a socket of this user's.
fn connect_socket(dir: &OwnedFd) -> Result<UnixStream, String> {
    let stat = rustix::fs::statat(
        dir,
        AGENT_SOCKET_NAME,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|err| format!("no agent socket ({err})"))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Socket
        || stat.st_uid != rustix::process::geteuid().as_raw()
    {
        return Err("the agent socket is not a socket of this user's".into());
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(dir);
    UnixStream::connect(format!("/proc/self/fd/{fd}/{AGENT_SOCKET_NAME}"))
        .map_err(|err| format!("no agent answers ({err}): the container is not running"))
}

fn read_hello(stream: &UnixStream) -> Result<Message, String> {
    let _ = stream.set_read_timeout(Some(HELLO_TIMEOUT));
    let hello = proto::read_message(&mut proto::FdStream(stream.as_fd()))
        .map_err(|err| format!("no hello from the agent ({err})"))?
        .ok_or("the agent closed the connection")?;
    let _ = stream.set_read_timeout(None);
    Ok(hello)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_a_private_directory_of_this_users_is_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("agent");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(open_own_dir(&dir).is_ok());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        assert!(open_own_dir(&dir)
            .unwrap_err()
            .contains("not this user's alone"));
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(open_own_dir(&link).is_err(), "a link is never followed");
    }

    #[test]
    fn a_socket_that_is_a_file_or_has_no_listener_is_not_used() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("agent");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let fd = open_own_dir(&dir).unwrap();
        std::fs::write(dir.join(AGENT_SOCKET_NAME), "").unwrap();
        assert!(connect_socket(&fd).unwrap_err().contains("not a socket"));
        std::fs::remove_file(dir.join(AGENT_SOCKET_NAME)).unwrap();
        drop(std::os::unix::net::UnixListener::bind(dir.join(AGENT_SOCKET_NAME)).unwrap());
        assert!(connect_socket(&fd).unwrap_err().contains("not running"));
    }
}
