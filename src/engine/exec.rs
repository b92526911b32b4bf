//! Running a command in a container, attached: stdin streamed in, stdout and
//! stderr kept apart (or one TTY), signals and window sizes passed on, the exit
//! code read back. This is every shim's path: one create, one attach, one
//! inspect, and nothing else unless a signal arrives.

mod signals;
mod sink;

pub use sink::{LineHandler, RunFailure};

use super::{http_status, Engine};
use crate::support::terminal::{self, RawMode};
use anyhow::{Context, Result};
use bollard::container::LogOutput;
use bollard::errors::Error as ApiError;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::Docker;
use futures_util::StreamExt;
use signals::{signal_name, CtrlC, Signals};
use sink::{Ending, Sink};
use std::io::{Read, Write};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::SignalKind;

/// How long the engine may take to record an exec's exit code after its
/// output ended.
const EXIT_CODE_PATIENCE: Duration = Duration::from_secs(60);

/// The variable that marks every process an exec starts, so a signal can be
/// delivered to all of them (the command and its children) from outside.
pub const MARKER_VAR: &str = "DEVINST_EXEC";

#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    pub workdir: Option<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub tty: bool,
    pub stdin: bool,
    /// Set to pass SIGINT, SIGTERM and SIGHUP on to the command.
    pub marker: Option<String>,
}

impl ExecSpec {
    /// Marks the exec so signals can follow it in.
    pub fn forwarding_signals(mut self) -> ExecSpec {
        let marker = unique_marker();
        self.env.push(format!("{MARKER_VAR}={marker}"));
        self.marker = Some(marker);
        self
    }
}

/// Where the command's output goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Output {
    /// stdout to stdout, stderr to stderr, byte for byte.
    Passthrough,
    /// Both to stderr: setup steps, whose output is progress, not data.
    Stderr,
    /// Both kept, in order, for the caller to show or not.
    Captured,
    /// stdout to stdout and stderr to stderr, each line behind a prefix
    /// (the prefix is given to [`Engine::exec_prefixed`]).
    Prefixed,
}

/// Why an exec could not be created.
#[derive(Debug)]
pub enum ExecError {
    /// The container is missing or not running.
    NotRunning,
    /// The engine refused the client's API version as too old.
    VersionTooOld,
    Refused(anyhow::Error),
}

impl From<ExecError> for anyhow::Error {
    fn from(err: ExecError) -> anyhow::Error {
        match err {
            ExecError::NotRunning => anyhow::anyhow!("the container is not running"),
            ExecError::VersionTooOld => anyhow::anyhow!("the engine refused the API version"),
            ExecError::Refused(err) => err,
        }
    }
}

impl Engine {
    /// Creates the exec, telling a missing or stopped container apart so the
    /// caller can start it and try again.
    pub async fn create_exec(&self, container: &str, spec: &ExecSpec) -> Result<String, ExecError> {
        self.try_create_exec(container, spec)
            .await
            .map_err(|err| match err {
                err if super::is_version_too_old(&err) => ExecError::VersionTooOld,
                err if super::is_missing_or_stopped(&err) => ExecError::NotRunning,
                err => ExecError::Refused(self.explain(err)),
            })
    }

    async fn try_create_exec(&self, container: &str, spec: &ExecSpec) -> Result<String, ApiError> {
        let config = ExecConfig {
            attach_stdin: Some(spec.stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(spec.tty),
            console_size: self.console_size(spec),
            env: Some(spec.env.clone()),
            cmd: Some(spec.argv.clone()),
            user: spec.user.clone(),
            working_dir: spec.workdir.clone(),
            ..Default::default()
        };
        Ok(self.docker.create_exec(container, config).await?.id)
    }

    /// The TTY's first size, for engines that take it at creation (API 1.42
    /// and later); older ones get it by a resize right after start.
    fn console_size(&self, spec: &ExecSpec) -> Option<Vec<usize>> {
        let version = self.docker.client_version();
        let supported = (version.major_version, version.minor_version) >= (1, 42);
        let (rows, cols) = terminal::size().filter(|_| spec.tty && supported)?;
        Some(vec![rows.into(), cols.into()])
    }

    /// Starts a created exec, streams it to its end and returns its exit code.
    pub async fn run_exec(
        &self,
        container: &str,
        id: &str,
        spec: &ExecSpec,
        output: Output,
    ) -> Result<i64> {
        self.stream_exec(container, id, spec, &mut Sink::new(output))
            .await
    }

    async fn stream_exec(
        &self,
        container: &str,
        id: &str,
        spec: &ExecSpec,
        sink: &mut Sink,
    ) -> Result<i64> {
        let started_at = std::time::Instant::now();
        let (mut stream, input) = self.attach(container, id, spec).await?;
        // Raw mode only once the command runs, so an error before leaves the
        // terminal as it was; the guard restores it on every way out of here.
        let _raw = match spec.tty {
            true => Some(RawMode::enter().context("cannot put the terminal in raw mode")?),
            false => None,
        };
        if spec.tty {
            resize(&self.docker, id, true).await;
        }
        let (ctrl_c_tx, mut ctrl_c) = tokio::sync::mpsc::channel(1);
        match spec.stdin {
            true => forward_stdin(input, spec.tty.then_some(ctrl_c_tx)),
            false => drop(input),
        }
        let mut signals = Signals::listen(spec)?;
        let mut signalled = false;
        loop {
            tokio::select! {
                frame = stream.next() => match frame {
                    Some(frame) => sink.frame(frame.map_err(|e| self.explain(e))?)?,
                    None => break,
                },
                // Ctrl-C typed three times within a second on the terminal.
                Some(()) = ctrl_c.recv() => return Ok(self.give_up(container, spec, 2).await),
                Some(kind) = signals.next() => {
                    if kind == SignalKind::window_change() {
                        resize(&self.docker, id, false).await;
                    } else if let Some(marker) = &spec.marker {
                        if signals.gives_up(kind) {
                            return Ok(self.give_up(container, spec, kind.as_raw_value()).await);
                        }
                        signalled = true;
                        self.pass_signal(container, marker, kind);
                    }
                }
            }
        }
        tracing::debug!("exec output ended after {:?}", started_at.elapsed());
        if let (true, Some(marker)) = (signalled, &spec.marker) {
            // Ended by a signal: what it started in the background (which a
            // shell shields from SIGINT) must not outlive it.
            signal_marked(&self.docker, container, marker, "KILL").await;
        }
        let code = self.exit_code(container, id).await?;
        tracing::debug!("exec exit code read after {:?}", started_at.elapsed());
        self.finish(container, spec, sink, code).await
    }

    /// The exit code to report, or why the runtime never ran the command.
    async fn finish(
        &self,
        container: &str,
        spec: &ExecSpec,
        sink: &mut Sink,
        code: i64,
    ) -> Result<i64> {
        match sink.ending(code, container, spec.workdir.as_deref())? {
            Ending::Code(code) => Ok(code),
            Ending::Refused { message, code } if sink::is_about_the_command(&message) => {
                sink.refused(&message, code)
            }
            Ending::Refused { message, .. } => Err(self.refusal(container, &message).await),
        }
    }

    /// Why the runtime would not start a command: the container was
    /// stopping (its words for that vary: "read init-p", "error writing
    /// config to pipe", ...), or the reason it gives.
    async fn refusal(&self, container: &str, message: &[u8]) -> anyhow::Error {
        let container = container.to_owned();
        for _ in 0..20 {
            match self.inspect(&container).await {
                Ok(Some(info)) if info.running => {}
                Ok(_) => return RunFailure::StoppedBeforeStart { container }.into(),
                Err(err) => return err,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let reason = sink::reason(message);
        RunFailure::Refused { container, reason }.into()
    }

    /// The user gave up on a command that ignores the interrupt: it ends,
    /// with everything it started, and so does the wait.
    async fn give_up(&self, container: &str, spec: &ExecSpec, signal: i32) -> i64 {
        if let Some(marker) = &spec.marker {
            signal_marked(&self.docker, container, marker, "KILL").await;
        }
        128 + i64::from(signal)
    }

    /// Starts the exec attached: its output stream and its stdin. A
    /// container stopped since the exec was made has taken the exec along
    /// (Docker answers 404, Podman 409).
    async fn attach(
        &self,
        container: &str,
        id: &str,
        spec: &ExecSpec,
    ) -> Result<(OutputStream, ExecInput)> {
        let start = StartExecOptions {
            detach: false,
            tty: spec.tty,
            output_capacity: Some(64 * 1024),
        };
        let started = match self.docker.start_exec(id, Some(start)).await {
            Ok(started) => started,
            Err(err) if exec_gone(&err) || super::is_missing_or_stopped(&err) => {
                tracing::debug!("exec start refused: {err}");
                let container = container.to_owned();
                return Err(RunFailure::StoppedBeforeStart { container }.into());
            }
            Err(err) => return Err(self.explain(err)),
        };
        match started {
            StartExecResults::Attached { output, input } => Ok((output, input)),
            StartExecResults::Detached => {
                anyhow::bail!("the engine did not attach to the command")
            }
        }
    }

    /// Sends `kind` to every process the exec marked, without waiting.
    fn pass_signal(&self, container: &str, marker: &str, kind: SignalKind) {
        let docker = self.docker.clone();
        let (container, marker) = (container.to_owned(), marker.to_owned());
        tokio::spawn(async move {
            signal_marked(&docker, &container, &marker, signal_name(kind)).await
        });
    }

    /// The exit code, once the engine has recorded it: right after the stream
    /// ends some engines still report the exec as running for a moment; a
    /// busy engine takes longer, which must never turn into a wrong answer,
    /// so this waits (with a growing pause) up to [`EXIT_CODE_PATIENCE`]
    /// before it gives up. A container that stopped meanwhile took the exec
    /// along (Docker's 404).
    async fn exit_code(&self, container: &str, id: &str) -> Result<i64> {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            let info = match self.docker.inspect_exec(id).await {
                Ok(info) => info,
                Err(err) if exec_gone(&err) => {
                    let container = container.to_owned();
                    return Err(RunFailure::StoppedWhileRunning { container }.into());
                }
                Err(err) => return Err(self.explain(err)),
            };
            if info.running != Some(true) {
                if let Some(code) = info.exit_code {
                    return Ok(code);
                }
            }
            if started.elapsed() >= EXIT_CODE_PATIENCE {
                anyhow::bail!(
                    "the engine did not report the command's exit code within {} s",
                    EXIT_CODE_PATIENCE.as_secs()
                );
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// [`Engine::create_exec`] for a caller that does not start the
    /// container when it is not running.
    async fn create_exec_or_say(&self, container: &str, spec: &ExecSpec) -> Result<String> {
        self.create_exec(container, spec)
            .await
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cannot run a command in `{container}`"))
    }

    /// Runs `spec` to its end: the plain form used by setup steps.
    pub async fn exec_simple(
        &self,
        container: &str,
        spec: &ExecSpec,
        output: Output,
    ) -> Result<i64> {
        let id = self.create_exec_or_say(container, spec).await?;
        self.run_exec(container, &id, spec, output).await
    }

    /// Runs `spec` to its end with each line of its output behind `prefix`
    /// (one write per line, so commands run at once keep their lines whole);
    /// the exit code.
    pub async fn exec_prefixed(
        &self,
        container: &str,
        spec: &ExecSpec,
        prefix: &str,
    ) -> Result<i64> {
        let id = self.create_exec_or_say(container, spec).await?;
        let mut sink = Sink::prefixed(prefix);
        let code = self.stream_exec(container, &id, spec, &mut sink).await;
        sink.flush()?;
        code
    }

    /// Runs `spec` to its end with each whole line of its output (both
    /// streams) handed to `handler`; the exit code.
    pub async fn exec_lines(
        &self,
        container: &str,
        spec: &ExecSpec,
        handler: LineHandler,
    ) -> Result<i64> {
        let id = self.create_exec_or_say(container, spec).await?;
        let mut sink = Sink::lines(handler);
        let code = self.stream_exec(container, &id, spec, &mut sink).await;
        sink.flush()?;
        code
    }

    /// Runs `spec` to its end with its output kept rather than shown, and
    /// returns the exit code and the output (both streams, in order).
    pub async fn exec_captured(&self, container: &str, spec: &ExecSpec) -> Result<(i64, Vec<u8>)> {
        let id = self.create_exec_or_say(container, spec).await?;
        let mut sink = Sink::new(Output::Captured);
        let code = self.stream_exec(container, &id, spec, &mut sink).await?;
        Ok((code, sink.captured))
    }
}

type OutputStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<LogOutput, ApiError>> + Send>>;
type ExecInput = std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

/// The exec is gone, taken along by a container that stopped: Docker
/// answers 404, Podman 500 "no such exec session".
fn exec_gone(err: &ApiError) -> bool {
    http_status(err) == Some(404) || super::message(err).contains("no such exec session")
}

/// Copies our stdin into the exec; its end reaches the command as the end of
/// its input. On a terminal (`ctrl_c` given), says when Ctrl-C was typed
/// three times within a second.
fn forward_stdin(mut input: ExecInput, ctrl_c: Option<tokio::sync::mpsc::Sender<()>>) {
    tokio::spawn(async move {
        let mut chunks = stdin_chunks();
        let mut typed = CtrlC::default();
        while let Some(chunk) = chunks.recv().await {
            if let Some(tx) = &ctrl_c {
                if typed.gives_up(&chunk, std::time::Instant::now()) {
                    let _ = tx.try_send(());
                }
            }
            if input.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = input.shutdown().await;
    });
}

/// Sets the exec's TTY to the terminal's size. Right after start the engine
/// may not have the TTY yet, so the first attempt is retried briefly.
async fn resize(docker: &Docker, id: &str, first: bool) {
    let Some((rows, cols)) = terminal::size() else {
        return;
    };
    let options = ResizeExecOptions {
        height: rows,
        width: cols,
    };
    for attempt in 0..10 {
        match docker.resize_exec(id, options).await {
            Ok(()) => return,
            Err(err) if !first || attempt == 9 => {
                tracing::debug!("resize failed: {err}");
                return;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Sends `signal` to every process inside that carries the exec's marker,
/// and waits until that is done. They are found first and signalled at once,
/// oldest first: a shell signalled after its child has had time to go on
/// with its script.
async fn signal_marked(docker: &Docker, container: &str, marker: &str, signal: &str) {
    let script = format!(
        "pids=; for d in /proc/[0-9]*; do \
           if tr '\\0' '\\n' < \"$d/environ\" 2>/dev/null | grep -qx '{MARKER_VAR}={marker}'; then \
             pids=\"$pids ${{d#/proc/}}\"; \
           fi; \
         done; \
         [ -z \"$pids\" ] || kill -s {signal} \
           $(printf '%s\\n' $pids | sort -n 2>/dev/null || echo $pids) 2>/dev/null"
    );
    let options = CreateExecOptions {
        cmd: Some(vec!["sh".to_owned(), "-c".to_owned(), script]),
        user: Some("0".to_owned()),
        attach_stdout: Some(true),
        ..Default::default()
    };
    let result = async {
        let id = docker.create_exec(container, options).await?.id;
        if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&id, None).await? {
            while output.next().await.is_some() {}
        }
        Ok::<_, ApiError>(())
    };
    if let Err(err) = result.await {
        tracing::debug!("could not send {signal} to the command: {err}");
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
            Err(crate::support::error::SilentExit { code: 0 }.into())
        }
        Err(err) => Err(err).context("cannot write the command's output"),
    }
}

/// A value no other exec on this host shares: time, pid and std's random
/// hasher keys, hashed.
fn unique_marker() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}
