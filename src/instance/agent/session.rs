//! One exec through the agent, from devinst's side: the request goes with
//! our own stdin, stdout and stderr attached, so the command reads and
//! writes them directly; then signals and window sizes are passed on until
//! the agent reports the exit code. With a terminal, ours is put in raw
//! mode and the agent relays it to a terminal of the command's own.

use crate::engine::exec::{ExecSpec, MARKER_VAR};
use crate::support::error::WithHint;
use crate::support::output;
use crate::support::terminal::{self, RawMode};
use anyhow::{anyhow, bail, Context, Result};
use devinst_agent::proto::{self, ExecRequest, Message};
use rustix::event::{PollFd, PollFlags};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// How an exec through the agent ended.
pub enum Ended {
    /// The command ran (or could not, as a shell would say): its code.
    Code(i64),
    /// Nothing ran: the engine must take it, for this reason.
    Refused(String),
}

pub fn run(stream: UnixStream, spec: &ExecSpec) -> Result<Ended> {
    let request = request(spec);
    let stdio = match stdio() {
        Ok(stdio) => stdio,
        Err(err) => return Ok(Ended::Refused(format!("cannot share stdio: {err}"))),
    };
    let signals = Signals::block(spec).context("cannot listen for signals")?;
    let borrowed: Vec<BorrowedFd<'_>> = stdio.iter().map(AsFd::as_fd).collect();
    let sent = proto::send_with_fds(stream.as_fd(), &Message::Exec(request), &borrowed);
    drop(borrowed);
    drop(stdio);
    if let Err(err) = sent {
        return Ok(Ended::Refused(format!(
            "cannot hand the command over ({err})"
        )));
    }
    match proto::read_message(&mut proto::FdStream(stream.as_fd())) {
        Ok(Some(Message::Started)) => {}
        Ok(Some(Message::Refused { reason })) => return Ok(Ended::Refused(reason)),
        Ok(Some(Message::Failed { code, message })) => {
            let failed = Err::<(), _>(anyhow!(message));
            let failed = match code {
                // The command never ran: devinst's own failure.
                125 => failed.hint(
                    "run it from a directory that exists inside: the worktree's, \
                     or one outside it (which maps to the container's work directory)",
                ),
                _ => failed,
            };
            if let Err(err) = failed {
                output::report(&err);
            }
            return Ok(Ended::Code(code.into()));
        }
        // Hung up without an answer: the container is stopping under us.
        // Whether the command began is unknown, so it is not run again.
        Ok(None) => bail!(
            "the instance's agent went away before the command started (was the container stopped?)"
        ),
        Ok(Some(other)) => bail!("the agent answered the command with {other:?}"),
        Err(err) => bail!(
            "the instance's agent did not answer the command ({err}): was the container stopped?"
        ),
    }
    let _raw = match spec.tty {
        true => Some(RawMode::enter().context("cannot put the terminal in raw mode")?),
        false => None,
    };
    let code = wait(&stream, &signals)?;
    // Signals still on their way would end devinst before it reports.
    std::mem::forget(signals);
    Ok(Ended::Code(code))
}

fn request(spec: &ExecSpec) -> ExecRequest {
    let bytes = |items: &[String]| items.iter().map(|s| s.as_bytes().to_vec()).collect();
    ExecRequest {
        argv: bytes(&spec.argv),
        env: bytes(&spec.env),
        workdir: spec.workdir.as_ref().map(|w| w.as_bytes().to_vec()),
        user: spec.user.as_ref().map(|u| u.as_bytes().to_vec()),
        // Sized before the command starts: a command that asks at once
        // sees the real size.
        tty: spec.tty.then(|| terminal::size().unwrap_or((24, 80))),
        marker: spec
            .marker
            .as_ref()
            .map(|m| format!("{MARKER_VAR}={m}").into_bytes()),
    }
}

/// Copies of our stdin, stdout and stderr; `/dev/null` for one not open.
fn stdio() -> std::io::Result<Vec<OwnedFd>> {
    (0..3)
        .map(|fd| {
            // SAFETY: only borrowed for the duplication; checked open by it.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            match rustix::io::fcntl_dupfd_cloexec(borrowed, 3) {
                Ok(copy) => Ok(copy),
                Err(rustix::io::Errno::BADF) => std::fs::File::options()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                    .map(OwnedFd::from),
                Err(err) => Err(err.into()),
            }
        })
        .collect()
}

/// Until the agent reports the exit code: signals passed on, window sizes
/// followed. A third Ctrl-C that the command ignores ends devinst (and the
/// command), as on the engine's path.
fn wait(stream: &UnixStream, signals: &Signals) -> Result<i64> {
    let mut interrupts = 0;
    loop {
        let mut fds = [
            PollFd::new(stream, PollFlags::IN),
            PollFd::new(&signals.fd, PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(err) => return Err(err).context("cannot wait for the agent"),
        }
        let (from_agent, signalled) = (!fds[0].revents().is_empty(), !fds[1].revents().is_empty());
        if signalled {
            for number in signals.take() {
                let message = match number {
                    libc::SIGWINCH => match terminal::size() {
                        Some((rows, cols)) => Message::Resize { rows, cols },
                        None => continue,
                    },
                    libc::SIGINT if interrupts == 2 => {
                        send(
                            stream,
                            Message::Signal {
                                number: libc::SIGKILL,
                            },
                        );
                        return Ok(128 + i64::from(libc::SIGINT));
                    }
                    libc::SIGINT => {
                        interrupts += 1;
                        Message::Signal { number }
                    }
                    number => Message::Signal { number },
                };
                send(stream, message);
            }
        }
        if from_agent {
            match proto::read_message(&mut proto::FdStream(stream.as_fd())) {
                Ok(Some(Message::Exited { code })) => return Ok(code.into()),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => bail!(
                    "the instance's agent went away before the command ended (was the container stopped?)"
                ),
            }
        }
    }
}

fn send(stream: &UnixStream, message: Message) {
    let _ = proto::write_message(&mut proto::FdStream(stream.as_fd()), &message);
}

/// The signals an exec passes on, taken from a signalfd while blocked.
/// Dropping it unblocks them.
struct Signals {
    fd: OwnedFd,
    old: libc::sigset_t,
}

impl Signals {
    fn block(spec: &ExecSpec) -> std::io::Result<Signals> {
        let mut wanted = Vec::new();
        if spec.marker.is_some() {
            wanted.extend([libc::SIGINT, libc::SIGTERM, libc::SIGHUP]);
        }
        if spec.tty {
            wanted.push(libc::SIGWINCH);
        }
        // SAFETY: libc calls on initialised local sigsets; the descriptor
        // signalfd returns is ours alone.
        unsafe {
            let mut set = std::mem::zeroed::<libc::sigset_t>();
            let mut old = std::mem::zeroed::<libc::sigset_t>();
            libc::sigemptyset(&mut set);
            for signal in wanted {
                libc::sigaddset(&mut set, signal);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                let err = std::io::Error::last_os_error();
                libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
                return Err(err);
            }
            Ok(Signals {
                fd: OwnedFd::from_raw_fd(fd),
                old,
            })
        }
    }

    /// The signals that arrived since the last call.
    fn take(&self) -> Vec<i32> {
        let mut numbers = Vec::new();
        let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
        while let Ok(n) = rustix::io::read(&self.fd, &mut info) {
            if n < info.len() {
                break;
            }
            // The first field of signalfd_siginfo is the signal number.
            numbers.push(u32::from_ne_bytes(info[..4].try_into().unwrap()) as i32);
        }
        numbers
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `block`.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ExecSpec {
        ExecSpec {
            argv: vec!["true".into()],
            workdir: None,
            env: Vec::new(),
            user: None,
            tty: false,
            stdin: false,
            marker: None,
        }
    }

    /// The agent takes the request and is gone before it answers, as when
    /// the container is stopped at that moment.
    fn agent_that_hangs_up(agent: UnixStream) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let got = proto::recv_with_fds(agent.as_fd()).unwrap();
            assert!(matches!(got.message, Some(Message::Exec(_))));
        })
    }

    #[test]
    fn an_agent_gone_before_answering_is_reported_as_a_stopped_container() {
        let (ours, agent) = UnixStream::pair().unwrap();
        let agent = agent_that_hangs_up(agent);
        let err = run(ours, &spec()).err().expect("no code without an answer");
        agent.join().unwrap();
        let message = format!("{err:#}");
        assert!(
            message.contains("went away before the command started"),
            "{message}"
        );
        assert!(message.contains("stopped"), "{message}");
    }
}
