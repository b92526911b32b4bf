//! One exec session: the hello, the request with the caller's descriptors,
//! the command started with them (or on a terminal of its own), and its
//! status sent back.

use crate::{supervise, tty, user};
use devinst_agent::proto::{self, ExecRequest, Message, EXEC_FDS};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// Serves one client to the end; errors only mean the client went away.
pub fn serve(stream: UnixStream, container: &str) {
    if let Err(err) = session(&stream, container) {
        if err.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("devinst-agent: exec session: {err}");
        }
    }
}

fn session(stream: &UnixStream, container: &str) -> io::Result<()> {
    let hello = Message::Hello {
        version: proto::VERSION,
        container: container.to_owned(),
    };
    proto::write_message(&mut proto::FdStream::of(stream), &hello)?;
    let got = proto::recv_with_fds(stream.as_fd())?;
    // No request: the client did not trust this agent and went elsewhere.
    let Some(Message::Exec(request)) = got.message else {
        return Ok(());
    };
    let fds: [OwnedFd; EXEC_FDS] = match got.fds.try_into() {
        Ok(fds) if !got.truncated => fds,
        _ => {
            return reply(
                stream,
                Message::Refused {
                    reason: "the descriptors did not arrive (a security module may refuse them)"
                        .into(),
                },
            )
        }
    };
    if let Some(reason) = user_refusal(&request) {
        return reply(stream, Message::Refused { reason });
    }
    let started = match request.tty {
        Some(size) => tty::spawn(command(&request), fds, size),
        None => spawn_plain(command(&request), fds),
    };
    let (child, relay) = match started {
        Ok(started) => started,
        Err(Failure { code, message }) => return reply(stream, Message::Failed { code, message }),
    };
    reply(stream, Message::Started)?;
    supervise_session(stream, child, relay, request.marker)
}

fn reply(stream: &UnixStream, message: Message) -> io::Result<()> {
    proto::write_message(&mut proto::FdStream::of(stream), &message)
}

/// Why this agent cannot run the command as the user asked for: it runs
/// as one user and switches to no other (the engine can).
fn user_refusal(request: &ExecRequest) -> Option<String> {
    let wanted = String::from_utf8_lossy(request.user.as_deref()?).into_owned();
    let me = (
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    );
    match user::resolve_here(&wanted) {
        Some(ids) if ids == me => None,
        _ => Some(format!(
            "the agent runs as {}:{}, not as `{wanted}`",
            me.0, me.1
        )),
    }
}

/// The command as the engine's exec would run it: the container's
/// environment with the request's laid over it, in the request's directory.
fn command(request: &ExecRequest) -> Result<Command, Failure> {
    let Some((program, args)) = request.argv.split_first() else {
        return Err(failed(126, "no command given".into()));
    };
    let mut command = Command::new(OsStr::from_bytes(program));
    command.args(args.iter().map(|a| OsStr::from_bytes(a)));
    command.env_clear().envs(environment(request));
    if let Some(dir) = &request.workdir {
        let dir = OsStr::from_bytes(dir);
        if !std::path::Path::new(dir).is_dir() {
            // devinst chose the directory (the host's, mapped), so this is
            // devinst's failure (125), as on the engine's path.
            return Err(failed(
                125,
                format!(
                    "the directory `{}` does not exist in container",
                    dir.to_string_lossy()
                ),
            ));
        }
        command.current_dir(dir);
    }
    Ok(command)
}

fn environment(request: &ExecRequest) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    for entry in &request.env {
        let (key, value) = match entry.iter().position(|b| *b == b'=') {
            Some(at) => (&entry[..at], &entry[at + 1..]),
            None => (&entry[..], &b""[..]),
        };
        let (key, value) = (OsStr::from_bytes(key), OsStr::from_bytes(value));
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_owned(),
            None => env.push((key.to_owned(), value.to_owned())),
        }
    }
    env
}

fn spawn_plain(
    command: Result<Command, Failure>,
    [stdin, stdout, stderr]: [OwnedFd; EXEC_FDS],
) -> Result<(Child, Option<tty::Relay>), Failure> {
    let mut command = command?;
    command
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .process_group(0);
    // Dropping the command closes the agent's copies of the descriptors.
    let child = spawn(command)?;
    Ok((child, None))
}

/// Starts `command`, turning a failure into the shell's code for it.
pub fn spawn(command: Command) -> Result<Child, Failure> {
    let mut command = supervise::unblocked(command);
    command.spawn().map_err(|err| {
        let program = command.get_program().to_string_lossy().into_owned();
        let message = match err.kind() {
            io::ErrorKind::NotFound => format!("`{program}`: command not found in the instance"),
            io::ErrorKind::PermissionDenied => format!("`{program}`: permission denied"),
            _ => format!("cannot run `{program}`: {err}"),
        };
        failed(spawn_failure_code(&err), message)
    })
}

/// 127 for a command that is not there, 126 for one that cannot run.
pub fn spawn_failure_code(err: &io::Error) -> i32 {
    match err.kind() {
        io::ErrorKind::NotFound => 127,
        _ => 126,
    }
}

/// A command that could not start: the shell's code for it, and why.
pub struct Failure {
    pub code: i32,
    pub message: String,
}

pub fn failed(code: i32, message: String) -> Failure {
    Failure { code, message }
}

/// Waits for the command while taking the client's signals and window
/// sizes (and relaying its terminal); sends its status at the end.
fn supervise_session(
    stream: &UnixStream,
    child: Child,
    relay: Option<tty::Relay>,
    marker: Option<Vec<u8>>,
) -> io::Result<()> {
    let pid = child.id() as i32;
    let outcome = supervise::session(stream, child, relay)?;
    if outcome.signalled {
        // Ended after a signal: what it started in the background goes too.
        supervise::signal_group(pid, libc::SIGKILL);
        if let Some(marker) = &marker {
            supervise::kill_marked(marker);
        }
    }
    match outcome.client {
        true => reply(stream, Message::Exited { code: outcome.code }),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requests_environment_is_laid_over_the_containers() {
        std::env::set_var("DEVINST_AGENT_TEST_BASE", "base");
        let request = ExecRequest {
            env: vec![
                b"DEVINST_AGENT_TEST_BASE=over".to_vec(),
                b"DEVINST_AGENT_TEST_NEW=a=b".to_vec(),
            ],
            ..Default::default()
        };
        let env = environment(&request);
        let get = |key: &str| {
            env.iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.to_str().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("DEVINST_AGENT_TEST_BASE"), ["over"]);
        assert_eq!(get("DEVINST_AGENT_TEST_NEW"), ["a=b"]);
        assert!(!get("PATH").is_empty());
    }

    #[test]
    fn a_missing_command_is_127_and_an_unrunnable_one_126() {
        let code = |argv: &[&str]| {
            let request = ExecRequest {
                argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
                workdir: Some(b"/".to_vec()),
                ..Default::default()
            };
            match command(&request).and_then(spawn) {
                Err(Failure { code, .. }) => code,
                Ok(mut child) => child.wait().map(|_| 0).unwrap(),
            }
        };
        assert_eq!(code(&["devinst-no-such-program"]), 127);
        assert_eq!(code(&["/etc/passwd"]), 126);
        assert_eq!(code(&["true"]), 0);
        let request = ExecRequest {
            argv: vec![b"true".to_vec()],
            workdir: Some(b"/nonexistent-dir".to_vec()),
            ..Default::default()
        };
        assert!(matches!(command(&request), Err(Failure { code: 125, .. })));
    }
}
