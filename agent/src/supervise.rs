//! Signals and exit statuses: what the agent passes on to its children and
//! what it reports of them.

use crate::tty::Relay;
use devinst_agent::proto::{self, Message};
use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};

/// The signals the agent passes on to the keep-alive command.
const FORWARDED: [i32; 6] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Blocks the forwarded signals in the calling thread (and the threads it
/// starts after), to be taken by [`forward_signals`].
pub fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a local, initialised sigset.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        for signal in FORWARDED {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Makes `command`'s process start with no signal blocked: it would
/// otherwise inherit the agent's mask (std leaves it alone).
pub fn unblocked(mut command: Command) -> Command {
    // SAFETY: sigemptyset and sigprocmask are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let mut set = std::mem::zeroed::<libc::sigset_t>();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    command
}

/// Takes each blocked signal and passes it to `pid`; with no child, a
/// signal that would end a process ends the agent.
pub fn forward_signals(set: libc::sigset_t, pid: Option<i32>) {
    loop {
        let mut signal = 0;
        // SAFETY: `set` is initialised; sigwait writes the signal number.
        if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
            continue;
        }
        match pid {
            // SAFETY: kill has no memory effects.
            Some(pid) => unsafe {
                libc::kill(pid, signal);
            },
            None if signal != libc::SIGUSR1 && signal != libc::SIGUSR2 => {
                std::process::exit(128 + signal)
            }
            None => {}
        }
    }
}

/// A shell's code for a status: the exit code, or 128 plus the signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}

/// Sends `signal` to the process group led by `pid`, or to `pid` alone
/// when it leads none.
pub fn signal_group(pid: i32, signal: i32) {
    // SAFETY: kill has no memory effects.
    unsafe {
        if libc::kill(-pid, signal) != 0 {
            libc::kill(pid, signal);
        }
    }
}

/// Kills every process whose environment holds `entry` (`KEY=VALUE`): what
/// a command started in the background must not outlive it.
pub fn kill_marked(entry: &[u8]) {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for process in dir.flatten() {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(process.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|e| e == entry) {
            // SAFETY: kill has no memory effects.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// How an exec session ended.
pub struct Outcome {
    pub code: i32,
    /// The client sent a signal that may have ended the command.
    pub signalled: bool,
    /// The client is still there to be told.
    pub client: bool,
    /// The user pressed Ctrl-C three times within a second: the command was
    /// killed, and reports as interrupted (130).
    pub gave_up: bool,
}

/// Waits for `child`, taking the client's signals and window sizes and
/// relaying the terminal, until the child ends.
pub fn session(
    stream: &UnixStream,
    mut child: Child,
    mut relay: Option<Relay>,
) -> io::Result<Outcome> {
    let pid = child.id() as i32;
    let (exited_r, exited_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = rustix::io::write(&exited_w, &[1]);
        status
    });
    let mut outcome = Outcome {
        code: 0,
        signalled: false,
        client: true,
        gave_up: false,
    };
    loop {
        let (exited, from_client, relay_events) =
            wait_for_events(&exited_r, stream, &outcome, relay.as_ref())?;
        if let Some(relay) = relay.as_mut() {
            relay.pump(&relay_events);
            if relay.gave_up() && !outcome.gave_up {
                outcome.gave_up = true;
                outcome.signalled = true;
                signal_group(pid, libc::SIGKILL);
            }
        }
        if from_client {
            match proto::read_message(&mut proto::FdStream::of(stream)) {
                Ok(Some(Message::Signal { number })) => {
                    outcome.signalled = true;
                    signal_group(pid, number);
                }
                Ok(Some(Message::Resize { rows, cols })) => {
                    if let Some(relay) = &relay {
                        relay.resize(rows, cols);
                    }
                }
                Ok(Some(_)) => {}
                // The client is gone: hang up, as a closed terminal would.
                Ok(None) | Err(_) => {
                    outcome.client = false;
                    signal_group(pid, libc::SIGHUP);
                }
            }
        }
        if exited {
            break;
        }
    }
    if let Some(relay) = relay.as_mut() {
        relay.drain();
    }
    let status = waiter
        .join()
        .map_err(|_| io::Error::other("the waiter panicked"))??;
    outcome.code = match outcome.gave_up {
        true => 128 + libc::SIGINT,
        false => exit_code(status),
    };
    Ok(outcome)
}

/// Polls the exit pipe, the client (while it is there) and the relay;
/// says which are ready.
fn wait_for_events(
    exited: &OwnedFd,
    stream: &UnixStream,
    outcome: &Outcome,
    relay: Option<&Relay>,
) -> io::Result<(bool, bool, Vec<PollFlags>)> {
    let mut fds = vec![PollFd::new(exited, PollFlags::IN)];
    if outcome.client {
        fds.push(PollFd::new(stream, PollFlags::IN));
    }
    let base = fds.len();
    if let Some(relay) = relay {
        relay.poll_fds(&mut fds);
    }
    loop {
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => break,
            Err(Errno::INTR) => {}
            Err(err) => return Err(err.into()),
        }
    }
    let exited = !fds[0].revents().is_empty();
    let from_client = outcome.client && !fds[1].revents().is_empty();
    let relay_events = fds[base..].iter().map(|fd| fd.revents()).collect();
    Ok((exited, from_client, relay_events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn children_start_with_no_signal_blocked() {
        let _set = block_signals();
        let mut grep = Command::new("grep");
        grep.args(["SigBlk", "/proc/self/status"]);
        let out = unblocked(grep).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "SigBlk:\t0000000000000000\n"
        );
    }

    #[test]
    fn codes_follow_the_shell() {
        let code =
            |script: &str| exit_code(Command::new("sh").args(["-c", script]).status().unwrap());
        assert_eq!(code("exit 3"), 3);
        assert_eq!(code("kill -9 $$"), 137);
        assert_eq!(code("kill -TERM $$"), 143);
    }

    #[test]
    fn marked_processes_are_killed_and_others_left() {
        let marker = format!("DEVINST_TEST_MARK={}", std::process::id());
        let (key, value) = marker.split_once('=').unwrap();
        let mut marked = Command::new("sleep")
            .arg("30")
            .env(key, value)
            .spawn()
            .unwrap();
        let mut other = Command::new("sleep").arg("30").spawn().unwrap();
        kill_marked(marker.as_bytes());
        assert_eq!(marked.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert_eq!(other.try_wait().unwrap(), None);
        other.kill().unwrap();
        other.wait().unwrap();
    }
}
