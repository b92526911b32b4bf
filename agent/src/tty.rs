//! A terminal inside: a pty sized before the command starts, made its
//! controlling terminal, and relayed to the caller's terminal.

use crate::exec::{self, failed, Failure};
use devinst_agent::proto::EXEC_FDS;
use rustix::event::{PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// The pty's master and the caller's terminal, copied between.
pub struct Relay {
    master: OwnedFd,
    input: OwnedFd,
    output: OwnedFd,
    /// Read from the caller, not yet taken by the pty.
    pending: Vec<u8>,
    input_open: bool,
    master_open: bool,
    /// When the caller last typed Ctrl-C, the latest three.
    interrupts: std::collections::VecDeque<std::time::Instant>,
}

/// Ctrl-C typed this many times within [`GIVE_UP_WINDOW`] ends the command
/// whatever it does with SIGINT: the user wants the prompt back.
const GIVE_UP_PRESSES: usize = 3;
const GIVE_UP_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

/// Starts `command` on a new pty of `(rows, cols)`.
pub fn spawn(
    command: Result<Command, Failure>,
    [input, output, _stderr]: [OwnedFd; EXEC_FDS],
    (rows, cols): (u16, u16),
) -> Result<(Child, Option<Relay>), Failure> {
    let mut command = command?;
    let (master, slave) = open_pty(rows, cols).map_err(|err| {
        failed(
            126,
            format!("cannot open a terminal in the instance: {err}"),
        )
    })?;
    let copy = |fd: &OwnedFd| fd.try_clone().map(Stdio::from);
    let (Ok(i), Ok(o)) = (copy(&slave), copy(&slave)) else {
        return Err(failed(126, "cannot share the terminal".into()));
    };
    command.stdin(i).stdout(o).stderr(Stdio::from(slave));
    // SAFETY: setsid and the ioctl are plain system calls, safe after fork.
    unsafe {
        command.pre_exec(|| {
            rustix::process::setsid()?;
            rustix::process::ioctl_tiocsctty(BorrowedFd::borrow_raw(0))?;
            Ok(())
        });
    }
    let child = exec::spawn(command)?;
    let relay = Relay {
        master,
        input,
        output,
        pending: Vec::new(),
        input_open: true,
        master_open: true,
        interrupts: Default::default(),
    };
    Ok((child, Some(relay)))
}

fn open_pty(rows: u16, cols: u16) -> rustix::io::Result<(OwnedFd, OwnedFd)> {
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    resize(&master, rows, cols);
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::io::fcntl_setfd(&master, rustix::io::FdFlags::CLOEXEC)?;
    let flags = rustix::fs::fcntl_getfl(&master)?;
    rustix::fs::fcntl_setfl(&master, flags | OFlags::NONBLOCK)?;
    Ok((master, slave))
}

fn resize(master: &impl AsFd, rows: u16, cols: u16) {
    let size = Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let _ = rustix::termios::tcsetwinsize(master, size);
}

impl Relay {
    pub fn resize(&self, rows: u16, cols: u16) {
        resize(&self.master, rows, cols);
    }

    /// The descriptors to wait on, after the caller's `base` ones.
    pub fn poll_fds<'a>(&'a self, fds: &mut Vec<PollFd<'a>>) {
        if self.input_open && self.pending.is_empty() {
            fds.push(PollFd::new(&self.input, PollFlags::IN));
        }
        if self.master_open {
            let mut flags = PollFlags::IN;
            if !self.pending.is_empty() {
                flags |= PollFlags::OUT;
            }
            fds.push(PollFd::new(&self.master, flags));
        }
    }

    /// Moves what is ready, given the events poll saw on [`Self::poll_fds`]'s
    /// descriptors, in order.
    pub fn pump(&mut self, events: &[PollFlags]) {
        let mut events = events.iter();
        if self.input_open && self.pending.is_empty() {
            if let Some(ev) = events.next() {
                if !ev.is_empty() {
                    self.read_input();
                }
            }
        }
        if let Some(ev) = events.next() {
            if ev.contains(PollFlags::OUT) {
                self.write_pending();
            }
            if ev.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
                self.read_master();
            }
        }
    }

    fn read_input(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        match rustix::io::read(&self.input, &mut buf) {
            Ok(0) | Err(Errno::IO) | Err(Errno::BADF) => self.input_open = false,
            Ok(n) => {
                self.count_interrupts(&buf[..n]);
                self.pending.extend_from_slice(&buf[..n]);
            }
            Err(_) => {}
        }
    }

    fn count_interrupts(&mut self, typed: &[u8]) {
        for _ in typed.iter().filter(|b| **b == 0x03) {
            if self.interrupts.len() == GIVE_UP_PRESSES {
                self.interrupts.pop_front();
            }
            self.interrupts.push_back(std::time::Instant::now());
        }
    }

    /// Whether the caller pressed Ctrl-C three times within a second.
    pub fn gave_up(&self) -> bool {
        self.interrupts.len() == GIVE_UP_PRESSES
            && self.interrupts[GIVE_UP_PRESSES - 1].duration_since(self.interrupts[0])
                <= GIVE_UP_WINDOW
    }

    fn write_pending(&mut self) {
        match rustix::io::write(&self.master, &self.pending) {
            Ok(n) => {
                self.pending.drain(..n);
            }
            Err(Errno::AGAIN | Errno::INTR) => {}
            Err(_) => self.pending.clear(),
        }
    }

    /// Copies what the command wrote to the caller; false once nothing more
    /// is there for now.
    fn read_master(&mut self) -> bool {
        let mut buf = [0u8; 64 * 1024];
        match rustix::io::read(&self.master, &mut buf) {
            Ok(0) | Err(Errno::IO) => {
                self.master_open = false;
                false
            }
            Ok(n) => {
                write_all(&self.output, &buf[..n]);
                true
            }
            Err(_) => false,
        }
    }

    /// After the command ended: what it (or what it left holding the
    /// terminal) still writes within a moment.
    pub fn drain(&mut self) {
        let timeout = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        while self.master_open {
            let mut fds = [PollFd::new(&self.master, PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(0) => return,
                Ok(_) => {
                    if !self.read_master() && self.master_open {
                        return;
                    }
                }
                Err(Errno::INTR) => {}
                Err(_) => return,
            }
        }
    }
}

/// Writes all of `buf` to the caller's terminal, waiting while it is full.
fn write_all(fd: &OwnedFd, mut buf: &[u8]) {
    while !buf.is_empty() {
        match rustix::io::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                let mut fds = [PollFd::new(fd, PollFlags::OUT)];
                let _ = rustix::event::poll(&mut fds, None);
            }
            Err(_) => return,
        }
    }
}
