//! Where an exec's output goes, and what the engine's own words in it mean:
//! a command the runtime could not start is reported as if it were output.

use super::{write_fd, Output};
use anyhow::Result;
use bollard::container::LogOutput;

/// Why the engine could not run a command it had accepted. Callers add the
/// hint; these are devinst's failures around the command, not the command's.
#[derive(Debug, PartialEq)]
pub enum RunFailure {
    /// The working directory does not exist in the container.
    NoDirectory { container: String, dir: String },
    /// The container stopped between the exec's creation and its start.
    StoppedBeforeStart { container: String },
    /// The container stopped while the command ran, taking its exit code.
    StoppedWhileRunning { container: String },
    /// The runtime refused to start the command, for a reason of its own.
    Refused { container: String, reason: String },
}

impl std::fmt::Display for RunFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunFailure::NoDirectory { container, dir } => write!(
                f,
                "the directory `{dir}` does not exist in container `{container}`, so the command was not run"
            ),
            RunFailure::StoppedBeforeStart { container } => write!(
                f,
                "container `{container}` stopped before the command could start, so it was not run"
            ),
            RunFailure::StoppedWhileRunning { container } => write!(
                f,
                "container `{container}` stopped while the command ran; its exit code is lost"
            ),
            RunFailure::Refused { container, reason } => write!(
                f,
                "the container runtime could not start the command in container `{container}`: {reason}"
            ),
        }
    }
}

impl std::error::Error for RunFailure {}

pub(super) struct Sink {
    mode: Output,
    /// What a captured exec wrote, both streams in order.
    pub captured: Vec<u8>,
    /// Frames held back since the first one looked like the engine's own
    /// message: whether they are depends on the exit code.
    held: Vec<(i32, Vec<u8>)>,
    seen_output: bool,
    /// For [`Output::Prefixed`]: the prefix, and each stream's unfinished line.
    prefix: Vec<u8>,
    partial: [Vec<u8>; 2],
    /// When set, whole lines go to it rather than to a descriptor.
    on_line: Option<LineHandler>,
}

/// Takes each whole line of an exec's output (both streams), newline
/// included but for an unfinished last one.
pub type LineHandler = Box<dyn FnMut(&[u8]) + Send>;

impl Sink {
    pub fn new(mode: Output) -> Sink {
        Sink {
            mode,
            captured: Vec::new(),
            held: Vec::new(),
            seen_output: false,
            prefix: Vec::new(),
            partial: Default::default(),
            on_line: None,
        }
    }

    /// Each whole line to `handler`.
    pub fn lines(handler: LineHandler) -> Sink {
        Sink {
            on_line: Some(handler),
            ..Sink::new(Output::Prefixed)
        }
    }

    pub fn prefixed(prefix: &str) -> Sink {
        Sink {
            prefix: prefix.as_bytes().to_vec(),
            ..Sink::new(Output::Prefixed)
        }
    }

    /// Writes what is left of an unfinished line, ended.
    pub fn flush(&mut self) -> Result<()> {
        for fd in [1, 2] {
            let rest = std::mem::take(&mut self.partial[fd as usize - 1]);
            if !rest.is_empty() {
                self.write_line(fd, &rest, true)?;
            }
        }
        Ok(())
    }

    /// Every whole line of `bytes` (with what came before it) behind the
    /// prefix; the unfinished end is kept for later.
    fn write_lines(&mut self, fd: i32, bytes: &[u8]) -> Result<()> {
        let index = if fd == 1 { 0 } else { 1 };
        for line in whole_lines(&mut self.partial[index], bytes) {
            self.write_line(fd, &line, false)?;
        }
        Ok(())
    }

    fn write_line(&mut self, fd: i32, line: &[u8], end_it: bool) -> Result<()> {
        if let Some(handler) = &mut self.on_line {
            handler(line);
            return Ok(());
        }
        let mut out = Vec::with_capacity(self.prefix.len() + line.len() + 1);
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(line);
        if end_it {
            out.push(b'\n');
        }
        write_fd(fd, &out)
    }

    pub fn frame(&mut self, frame: LogOutput) -> Result<()> {
        let (fd, message) = match frame {
            LogOutput::StdOut { message } | LogOutput::Console { message } => (1, message),
            LogOutput::StdErr { message } => (2, message),
            LogOutput::StdIn { .. } => return Ok(()),
        };
        let first = !std::mem::replace(&mut self.seen_output, true);
        if (first && is_engine_message(&message)) || !self.held.is_empty() {
            self.held.push((fd, message.to_vec()));
            return Ok(());
        }
        self.write(fd, &message)
    }

    fn write(&mut self, fd: i32, bytes: &[u8]) -> Result<()> {
        match self.mode {
            Output::Passthrough => write_fd(fd, bytes),
            Output::Stderr => write_fd(2, bytes),
            Output::Captured => {
                self.captured.extend_from_slice(bytes);
                Ok(())
            }
            Output::Prefixed => self.write_lines(fd, bytes),
        }
    }

    /// How the exec ended: its exit code, or why the command never ran.
    /// Docker gives 126 for any command its runtime cannot start (Podman
    /// 127), and says why as if it were output.
    pub fn ending(&mut self, code: i64, container: &str, workdir: Option<&str>) -> Result<Ending> {
        let held = std::mem::take(&mut self.held);
        let Some((_, first)) = held.first().cloned() else {
            return Ok(Ending::Code(code));
        };
        if !matches!(code, 126 | 127) {
            // The command's own output after all.
            for (fd, bytes) in held {
                self.write(fd, &bytes)?;
            }
            return Ok(Ending::Code(code));
        }
        let text = String::from_utf8_lossy(&first);
        let container = container.to_owned();
        if text.contains("chdir to cwd") {
            let dir = workdir.unwrap_or("?").to_owned();
            return Err(RunFailure::NoDirectory { container, dir }.into());
        }
        if means_stopped(&text) {
            return Err(RunFailure::StoppedBeforeStart { container }.into());
        }
        Ok(Ending::Refused {
            message: first,
            code,
        })
    }

    /// Shows the runtime's refusal once (Podman adds a line about its attach
    /// socket), as an error: on stderr. A shell says 127 when the command
    /// was not found, and so does devinst.
    pub fn refused(&mut self, message: &[u8], code: i64) -> Result<i64> {
        self.write(2, message)?;
        Ok(if command_not_found(message) {
            127
        } else {
            code
        })
    }
}

/// `bytes` added to `partial`: the whole lines now there (each with its
/// newline), taken out of it.
fn whole_lines(partial: &mut Vec<u8>, bytes: &[u8]) -> Vec<Vec<u8>> {
    partial.extend_from_slice(bytes);
    let mut lines = Vec::new();
    while let Some(end) = partial.iter().position(|&b| b == b'\n') {
        lines.push(partial.drain(..=end).collect());
    }
    lines
}

/// The runtime's words for a container that stopped under the exec (the
/// last: containerd's task is gone).
fn means_stopped(text: &str) -> bool {
    ["stopped", "not running", "deleted state"]
        .iter()
        .any(|s| text.contains(s))
        || (text.starts_with("task ") && text.contains("not found"))
}

/// The runtime refused because of the command itself (missing, or not
/// executable): the command's failure, with Docker's 126 or 127. runc says
/// `exec: "CMD": ...`, crun `executable file `CMD` not found`.
pub fn is_about_the_command(message: &[u8]) -> bool {
    let text = String::from_utf8_lossy(message);
    text.contains("exec: \"") || text.contains("executable file")
}

fn command_not_found(message: &[u8]) -> bool {
    let text = String::from_utf8_lossy(message);
    text.contains("not found") || text.contains("no such file")
}

/// The runtime's reason without its layers of prefixes: `unable to start
/// container process: read init-p: connection reset by peer`.
pub fn reason(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    let text = text.trim();
    let text = text.strip_suffix(": unknown").unwrap_or(text);
    [
        "OCI runtime exec failed: ",
        "exec failed: ",
        "Error: runc: ",
        "Error: crun: ",
    ]
    .iter()
    .fold(text, |t, prefix| t.strip_prefix(prefix).unwrap_or(t))
    .to_owned()
}

/// How an exec ended.
#[derive(Debug, PartialEq)]
pub enum Ending {
    Code(i64),
    /// The runtime refused to start the command, in these words.
    Refused {
        message: Vec<u8>,
        code: i64,
    },
}

/// What Docker (as output) and Podman (on stderr) say when the runtime
/// cannot start an exec's process.
fn is_engine_message(message: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&message[..message.len().min(64)]);
    [
        "OCI runtime exec failed",
        "cannot exec in a ",
        "container is not running",
        "Error: runc: ",
        "Error: crun: ",
        "Error: OCI runtime",
        "No such exec instance",
        "task ",
    ]
    .iter()
    .any(|start| text.starts_with(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_into_whole_lines_whatever_the_chunks() {
        let mut partial = Vec::new();
        assert!(whole_lines(&mut partial, b"hal").is_empty());
        assert_eq!(
            whole_lines(&mut partial, b"f\nwhole\nnext"),
            [b"half\n".to_vec(), b"whole\n".to_vec()]
        );
        assert_eq!(partial, b"next");
        assert_eq!(whole_lines(&mut partial, b"\n"), [b"next\n".to_vec()]);
        assert!(partial.is_empty());
    }
    use bytes::Bytes;

    fn out(text: &str) -> LogOutput {
        LogOutput::StdOut {
            message: Bytes::from(text.to_owned()),
        }
    }

    fn err(text: &str) -> LogOutput {
        LogOutput::StdErr {
            message: Bytes::from(text.to_owned()),
        }
    }

    /// How an exec that wrote `frames` and ended with `code` ended, and
    /// what reached the user (a refusal is shown, as for a running container).
    fn outcome(frames: Vec<LogOutput>, code: i64) -> (Result<i64>, String) {
        let mut sink = Sink::new(Output::Captured);
        for frame in frames {
            sink.frame(frame).unwrap();
        }
        let result = match sink.ending(code, "c", Some("/app/x")) {
            Ok(Ending::Code(code)) => Ok(code),
            Ok(Ending::Refused { message, code }) => sink.refused(&message, code),
            Err(err) => Err(err),
        };
        (result, String::from_utf8_lossy(&sink.captured).into_owned())
    }

    #[test]
    fn a_missing_directory_is_a_failure_on_docker_and_podman() {
        let docker = "OCI runtime exec failed: exec failed: unable to start container process: \
                      chdir to cwd (\"/app/x\") set in config.json failed: no such file or directory: unknown";
        let podman = "Error: runc: exec failed: unable to start container process: chdir to cwd \
                      (\"/app/x\") set in config.json failed: no such file or directory: OCI runtime \
                      attempted to invoke a command that was not found";
        for (frames, code) in [
            (vec![out(docker)], 126),
            (
                vec![
                    err(podman),
                    err("Error: read unixpacket: connection reset by peer"),
                ],
                127,
            ),
        ] {
            let failure = outcome(frames, code).0.unwrap_err();
            let failure = failure.downcast_ref::<RunFailure>().unwrap();
            assert_eq!(
                failure,
                &RunFailure::NoDirectory {
                    container: "c".into(),
                    dir: "/app/x".into()
                }
            );
        }
    }

    #[test]
    fn a_stopping_container_is_a_failure() {
        for text in [
            "cannot exec in a stopped state: unknown",
            "OCI runtime exec failed: exec failed: cannot exec in a stopped container: unknown",
            "container is not running",
            "task d45e7b91 not found: not found",
        ] {
            let failure = outcome(vec![out(text)], 126).0.unwrap_err();
            assert!(failure.downcast_ref::<RunFailure>().is_some(), "{text}");
        }
    }

    #[test]
    fn a_refusal_keeps_only_its_reason() {
        let text = b"OCI runtime exec failed: exec failed: unable to start container process: \
                     read init-p: connection reset by peer: unknown\n";
        assert_eq!(
            reason(text),
            "unable to start container process: read init-p: connection reset by peer"
        );
        assert!(!is_about_the_command(text));
        let gone = b"OCI runtime exec failed: exec failed: unable to create new parent process: \
                     namespace path: lstat /proc/13986/ns/ipc: no such file or directory: unknown";
        assert!(!is_about_the_command(gone));
        assert!(is_about_the_command(
            b"exec: \"x\": executable file not found in $PATH"
        ));
    }

    #[test]
    fn a_missing_command_is_127_and_output_that_only_looks_alike_passes() {
        let text = "OCI runtime exec failed: exec failed: unable to start container process: \
                    exec: \"nosuch\": executable file not found in $PATH: unknown";
        let (code, shown) = outcome(vec![out(text), err("Error: read unixpacket")], 126);
        assert_eq!((code.unwrap(), shown.as_str()), (127, text));
        let (code, shown) = outcome(vec![out("container is not running\n"), out("more\n")], 0);
        assert_eq!(code.unwrap(), 0);
        assert_eq!(shown, "container is not running\nmore\n");
    }
}
