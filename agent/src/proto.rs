//! The agent's protocol: length-prefixed frames over a unix stream socket.
//!
//! A session: the agent speaks first with [`Message::Hello`] (its protocol
//! version and the container it runs in). The client checks both and only
//! then sends [`Message::Exec`], with its stdin, stdout and stderr attached
//! (`SCM_RIGHTS`). The agent answers [`Message::Started`], or
//! [`Message::Refused`] (nothing ran: use the engine) or [`Message::Failed`]
//! (the command cannot run: 126 or 127). While it runs the client may send
//! [`Message::Signal`] and [`Message::Resize`]; the agent ends with
//! [`Message::Exited`].
//!
//! A frame is a little-endian `u32` length, a kind byte and the payload.
//! The hello's first fields (magic, version) never change, so any two
//! versions can tell each other apart.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Bumped on any change to a frame after the hello's version field.
pub const VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"DVAGENT\0";
/// Larger frames are refused: argv and environment fit well within it.
pub const MAX_FRAME: usize = 8 << 20;
/// The descriptors an exec hands over: stdin, stdout, stderr.
pub const EXEC_FDS: usize = 3;

/// What to run, and how.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecRequest {
    pub argv: Vec<Vec<u8>>,
    /// `KEY=VALUE` entries laid over the container's environment.
    pub env: Vec<Vec<u8>>,
    pub workdir: Option<Vec<u8>>,
    /// `user`, `uid`, `user:group` or `uid:gid`; `None` for the container's.
    pub user: Option<Vec<u8>>,
    /// A terminal of (rows, columns) opened inside, or none.
    pub tty: Option<(u16, u16)>,
    /// The value of the exec's marker variable: after a signal ended the
    /// command, every process carrying it is killed.
    pub marker: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Hello { version: u32, container: String },
    Exec(ExecRequest),
    Started,
    Refused { reason: String },
    Failed { code: i32, message: String },
    Signal { number: i32 },
    Resize { rows: u16, cols: u16 },
    Exited { code: i32 },
}

mod kind {
    pub const HELLO: u8 = 1;
    pub const EXEC: u8 = 2;
    pub const STARTED: u8 = 3;
    pub const REFUSED: u8 = 4;
    pub const FAILED: u8 = 5;
    pub const SIGNAL: u8 = 6;
    pub const RESIZE: u8 = 7;
    pub const EXITED: u8 = 8;
}

impl Message {
    /// The whole frame: length, kind, payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Encoder(vec![0; 4]);
        match self {
            Message::Hello { version, container } => {
                out.u8(kind::HELLO);
                out.0.extend_from_slice(MAGIC);
                out.u32(*version);
                out.bytes(container.as_bytes());
            }
            Message::Exec(req) => {
                out.u8(kind::EXEC);
                out.list(&req.argv);
                out.list(&req.env);
                out.option(req.workdir.as_deref());
                out.option(req.user.as_deref());
                match req.tty {
                    Some((rows, cols)) => {
                        out.u8(1);
                        out.u16(rows);
                        out.u16(cols);
                    }
                    None => out.u8(0),
                }
                out.option(req.marker.as_deref());
            }
            Message::Started => out.u8(kind::STARTED),
            Message::Refused { reason } => {
                out.u8(kind::REFUSED);
                out.bytes(reason.as_bytes());
            }
            Message::Failed { code, message } => {
                out.u8(kind::FAILED);
                out.u32(*code as u32);
                out.bytes(message.as_bytes());
            }
            Message::Signal { number } => {
                out.u8(kind::SIGNAL);
                out.u32(*number as u32);
            }
            Message::Resize { rows, cols } => {
                out.u8(kind::RESIZE);
                out.u16(*rows);
                out.u16(*cols);
            }
            Message::Exited { code } => {
                out.u8(kind::EXITED);
                out.u32(*code as u32);
            }
        }
        let len = (out.0.len() - 4) as u32;
        out.0[..4].copy_from_slice(&len.to_le_bytes());
        out.0
    }

    /// A frame's body (kind and payload, without the length).
    pub fn decode(body: &[u8]) -> io::Result<Message> {
        let mut d = Decoder(body);
        let message = match d.u8()? {
            kind::HELLO => {
                if d.take(MAGIC.len())? != MAGIC {
                    return Err(invalid("not a devinst agent"));
                }
                let version = d.u32()?;
                if version != VERSION {
                    // Another version: only the number is known to mean the same.
                    return Ok(Message::Hello {
                        version,
                        container: String::new(),
                    });
                }
                Message::Hello {
                    version,
                    container: d.string()?,
                }
            }
            kind::EXEC => Message::Exec(ExecRequest {
                argv: d.list()?,
                env: d.list()?,
                workdir: d.option()?,
                user: d.option()?,
                tty: match d.u8()? {
                    0 => None,
                    _ => Some((d.u16()?, d.u16()?)),
                },
                marker: d.option()?,
            }),
            kind::STARTED => Message::Started,
            kind::REFUSED => Message::Refused {
                reason: d.string()?,
            },
            kind::FAILED => Message::Failed {
                code: d.u32()? as i32,
                message: d.string()?,
            },
            kind::SIGNAL => Message::Signal {
                number: d.u32()? as i32,
            },
            kind::RESIZE => Message::Resize {
                rows: d.u16()?,
                cols: d.u16()?,
            },
            kind::EXITED => Message::Exited {
                code: d.u32()? as i32,
            },
            other => return Err(invalid(&format!("unknown frame kind {other}"))),
        };
        if !d.0.is_empty() {
            return Err(invalid("trailing bytes in a frame"));
        }
        Ok(message)
    }
}

/// Writes one message.
pub fn write_message(out: &mut impl Write, message: &Message) -> io::Result<()> {
    out.write_all(&message.encode())
}

/// Reads one message; `Ok(None)` at a clean end of the stream.
pub fn read_message(input: &mut impl Read) -> io::Result<Option<Message>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err),
    }
    let len = frame_len(len)?;
    let mut body = vec![0u8; len];
    input.read_exact(&mut body)?;
    Message::decode(&body).map(Some)
}

fn frame_len(len: [u8; 4]) -> io::Result<usize> {
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(invalid("frame length out of range"));
    }
    Ok(len)
}

/// Sends `message` with `fds` attached to its first byte.
pub fn send_with_fds(
    socket: BorrowedFd<'_>,
    message: &Message,
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let frame = message.encode();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(EXEC_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(invalid("too many descriptors"));
    }
    let sent = sendmsg(
        socket,
        &[IoSlice::new(&frame)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    let mut stream = FdStream(socket);
    stream.write_all(&frame[sent..])
}

/// A received message, the descriptors that came with it, and whether the
/// kernel dropped some (a full buffer, or a security module refusing them).
pub struct WithFds {
    pub message: Option<Message>,
    pub fds: Vec<OwnedFd>,
    pub truncated: bool,
}

/// Reads one message, keeping any descriptors that arrive with it.
pub fn recv_with_fds(socket: BorrowedFd<'_>) -> io::Result<WithFds> {
    let mut got = WithFds {
        message: None,
        fds: Vec::new(),
        truncated: false,
    };
    let mut len = [0u8; 4];
    if !recv_exact(socket, &mut len, &mut got)? {
        return Ok(got);
    }
    let mut body = vec![0u8; frame_len(len)?];
    if !recv_exact(socket, &mut body, &mut got)? {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    got.message = Some(Message::decode(&body)?);
    Ok(got)
}

/// Fills `buf` with `recvmsg`; false at an end of stream before any byte.
fn recv_exact(socket: BorrowedFd<'_>, buf: &mut [u8], got: &mut WithFds) -> io::Result<bool> {
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags};
    let mut filled = 0;
    while filled < buf.len() {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(EXEC_FDS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(&mut buf[filled..])];
        let received = match recvmsg(socket, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
            Ok(received) => received,
            Err(rustix::io::Errno::INTR) => continue,
            Err(err) => return Err(err.into()),
        };
        got.truncated |= received.flags.contains(ReturnFlags::CTRUNC);
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                got.fds.extend(fds);
            }
        }
        if received.bytes == 0 {
            if filled == 0 {
                return Ok(false);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        filled += received.bytes;
    }
    Ok(true)
}

/// A borrowed socket as `Read` and `Write`.
pub struct FdStream<'a>(pub BorrowedFd<'a>);

impl Read for FdStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(rustix::io::read(self.0, buf)?)
    }
}

impl Write for FdStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use rustix::net::{send, SendFlags};
        Ok(send(self.0, buf, SendFlags::NOSIGNAL)?)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> FdStream<'a> {
    pub fn of(fd: &'a impl AsFd) -> FdStream<'a> {
        FdStream(fd.as_fd())
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

struct Encoder(Vec<u8>);

impl Encoder {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    fn list(&mut self, items: &[Vec<u8>]) {
        self.u32(items.len() as u32);
        items.iter().for_each(|item| self.bytes(item));
    }
    fn option(&mut self, v: Option<&[u8]>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.bytes(v);
            }
            None => self.u8(0),
        }
    }
}

struct Decoder<'a>(&'a [u8]);

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(invalid("frame too short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> io::Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn bytes(&mut self) -> io::Result<Vec<u8>> {
        let len = self.u32()? as usize;
        Ok(self.take(len)?.to_vec())
    }
    fn string(&mut self) -> io::Result<String> {
        String::from_utf8(self.bytes()?).map_err(|_| invalid("text is not UTF-8"))
    }
    fn list(&mut self) -> io::Result<Vec<Vec<u8>>> {
        let count = self.u32()? as usize;
        if count > self.0.len() / 4 {
            return Err(invalid("list longer than its frame"));
        }
        (0..count).map(|_| self.bytes()).collect()
    }
    fn option(&mut self) -> io::Result<Option<Vec<u8>>> {
        match self.u8()? {
            0 => Ok(None),
            _ => self.bytes().map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn all_messages() -> Vec<Message> {
        vec![
            Message::Hello {
                version: VERSION,
                container: "skypilot-dev-feat".into(),
            },
            Message::Exec(ExecRequest {
                argv: vec![b"sh".to_vec(), b"-c".to_vec(), b"echo \xff $x".to_vec()],
                env: vec![b"A=1".to_vec(), b"EMPTY=".to_vec()],
                workdir: Some(b"/app/a b".to_vec()),
                user: None,
                tty: Some((30, 100)),
                marker: Some(b"0123abcd".to_vec()),
            }),
            Message::Exec(ExecRequest::default()),
            Message::Started,
            Message::Refused {
                reason: "no".into(),
            },
            Message::Failed {
                code: 127,
                message: "`x`: not found".into(),
            },
            Message::Signal { number: 15 },
            Message::Resize {
                rows: 41,
                cols: 123,
            },
            Message::Exited { code: -1 },
        ]
    }

    #[test]
    fn every_message_survives_a_round_trip() {
        for message in all_messages() {
            let frame = message.encode();
            let read = read_message(&mut &frame[..]).unwrap();
            assert_eq!(read, Some(message));
        }
        assert_eq!(read_message(&mut &[][..]).unwrap(), None);
    }

    #[test]
    fn another_version_is_recognised_and_garbage_refused() {
        let mut frame = Message::Hello {
            version: VERSION,
            container: "c".into(),
        }
        .encode();
        frame[13] = 99; // the version's low byte
        let read = read_message(&mut &frame[..]).unwrap().unwrap();
        assert_eq!(
            read,
            Message::Hello {
                version: 99,
                container: String::new()
            }
        );
        for bad in [
            &b"\x05\0\0\0\x01GARBAGE!"[..],
            &b"\0\0\0\0"[..],
            &b"\xff\xff\xff\x7f\x01"[..],
            &b"\x02\0\0\0\x63\0"[..],
            &b"\x05\0\0\0\x02\xff\xff\xff\xff"[..],
        ] {
            assert!(read_message(&mut &bad[..]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn descriptors_travel_with_the_exec() {
        let (a, b) = UnixStream::pair().unwrap();
        let (r, w) = rustix::pipe::pipe().unwrap();
        let exec = Message::Exec(ExecRequest {
            argv: vec![vec![b'x'; 100_000]],
            ..Default::default()
        });
        let sender = std::thread::spawn(move || {
            send_with_fds(a.as_fd(), &exec, &[r.as_fd(), w.as_fd(), w.as_fd()]).unwrap();
            exec
        });
        let got = recv_with_fds(b.as_fd()).unwrap();
        let exec = sender.join().unwrap();
        assert_eq!(got.message, Some(exec));
        assert_eq!(got.fds.len(), 3);
        assert!(!got.truncated);
        // The received write end feeds the original read end.
        let mut out = std::fs::File::from(got.fds[1].try_clone().unwrap());
        out.write_all(b"hi").unwrap();
        let mut back = [0u8; 2];
        std::fs::File::from(got.fds[0].try_clone().unwrap())
            .read_exact(&mut back)
            .unwrap();
        assert_eq!(&back, b"hi");
    }
}
