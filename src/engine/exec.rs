//! Running a command in a container, attached: stdin streamed in, stdout and
//! stderr kept apart, the exit code read back. This is every shim's path, so it
//! does one create, one attach and one inspect, and nothing else.

use super::Engine;
use anyhow::{Context, Result};
use bollard::container::LogOutput;
use bollard::errors::Error as ApiError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;
use std::io::{Read, Write};
use tokio::io::AsyncWriteExt;

#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    pub workdir: Option<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub tty: bool,
    pub stdin: bool,
}

/// Where the command's output goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Output {
    /// stdout to stdout, stderr to stderr, byte for byte.
    Passthrough,
    /// Both to stderr: setup steps, whose output is progress, not data.
    Stderr,
}

impl Engine {
    /// Creates the exec. Errors are returned raw so callers can react to a
    /// stopped (409) or missing (404) container.
    pub async fn create_exec(&self, container: &str, spec: &ExecSpec) -> Result<String, ApiError> {
        let options = CreateExecOptions {
            attach_stdin: Some(spec.stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(spec.tty),
            env: Some(spec.env.clone()),
            cmd: Some(spec.argv.clone()),
            user: spec.user.clone(),
            working_dir: spec.workdir.clone(),
            ..Default::default()
        };
        Ok(self.docker.create_exec(container, options).await?.id)
    }

    /// Starts a created exec, streams it to its end and returns its exit code.
    pub async fn run_exec(&self, id: &str, spec: &ExecSpec, output: Output) -> Result<i64> {
        let start = StartExecOptions {
            detach: false,
            tty: spec.tty,
            output_capacity: Some(64 * 1024),
        };
        let started = self
            .docker
            .start_exec(id, Some(start))
            .await
            .map_err(|e| self.explain(e))?;
        let StartExecResults::Attached {
            output: mut stream,
            mut input,
        } = started
        else {
            anyhow::bail!("the engine did not attach to the command");
        };
        if spec.stdin {
            tokio::spawn(async move {
                let mut chunks = stdin_chunks();
                while let Some(chunk) = chunks.recv().await {
                    if input.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                // End of stdin reaches the command as end of its input.
                let _ = input.shutdown().await;
            });
        } else {
            drop(input);
        }
        let sink = Sink { mode: output };
        while let Some(frame) = stream.next().await {
            match frame.map_err(|e| self.explain(e))? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    sink.out(&message)?
                }
                LogOutput::StdErr { message } => sink.err(&message)?,
                LogOutput::StdIn { .. } => {}
            }
        }
        self.exit_code(id).await
    }

    /// The exit code, once the engine has recorded it: right after the stream
    /// ends some engines still report the exec as running for a moment.
    async fn exit_code(&self, id: &str) -> Result<i64> {
        for _ in 0..200 {
            let info = self
                .docker
                .inspect_exec(id)
                .await
                .map_err(|e| self.explain(e))?;
            if info.running != Some(true) {
                if let Some(code) = info.exit_code {
                    return Ok(code);
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        anyhow::bail!("the engine did not report the command's exit code")
    }

    /// Runs `argv` to its end with the given output handling: the plain form
    /// used by setup steps and checks.
    pub async fn exec_simple(
        &self,
        container: &str,
        spec: &ExecSpec,
        output: Output,
    ) -> Result<i64> {
        let id = self
            .create_exec(container, spec)
            .await
            .map_err(|e| self.explain(e))
            .with_context(|| format!("cannot run a command in `{container}`"))?;
        self.run_exec(&id, spec, output).await
    }
}

/// Reads stdin on a thread of its own (a blocking read that may never end,
/// e.g. on a terminal, must not hold up the runtime) and hands chunks over.
fn stdin_chunks() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

struct Sink {
    mode: Output,
}

impl Sink {
    fn out(&self, bytes: &[u8]) -> Result<()> {
        match self.mode {
            Output::Passthrough => write_fd(1, bytes),
            Output::Stderr => write_fd(2, bytes),
        }
    }

    fn err(&self, bytes: &[u8]) -> Result<()> {
        write_fd(2, bytes)
    }
}

/// Writes straight to a file descriptor: no line buffering between the
/// command and the user, and no copy through std's buffers.
pub fn write_fd(fd: i32, bytes: &[u8]) -> Result<()> {
    use std::os::fd::FromRawFd;
    // SAFETY: fds 1 and 2 are open for the life of the process; ManuallyDrop
    // keeps the File from closing them.
    let mut file = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
    match file.write_all(bytes) {
        Ok(()) => Ok(()),
        // The reader went away (`sky logs | head`): stop quietly, as a local
        // command would.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {
            Err(crate::error::SilentExit { code: 0 }.into())
        }
        Err(err) => Err(err).context("cannot write the command's output"),
    }
}
