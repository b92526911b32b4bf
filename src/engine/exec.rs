//! Running a command in a container, attached: stdin streamed in, stdout and
//! stderr kept apart (or one TTY), signals and window sizes passed on, the exit
//! code read back. This is every shim's path: one create, one attach, one
//! inspect, and nothing else unless a signal arrives.

use super::Engine;
use crate::support::terminal::{self, RawMode};
use anyhow::{Context, Result};
use bollard::container::LogOutput;
use bollard::errors::Error as ApiError;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::Docker;
use futures_util::StreamExt;
use std::io::{Read, Write};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{signal, Signal, SignalKind};

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
        let started_at = std::time::Instant::now();
        let (mut stream, input) = self.attach(id, spec).await?;
        // Raw mode only once the command runs, so an error before leaves the
        // terminal as it was; the guard restores it on every way out of here.
        let _raw = match spec.tty {
            true => Some(RawMode::enter().context("cannot put the terminal in raw mode")?),
            false => None,
        };
        if spec.tty {
            resize(&self.docker, id, true).await;
        }
        match spec.stdin {
            true => forward_stdin(input),
            false => drop(input),
        }
        let mut signals = Signals::listen(spec)?;
        let mut sink = Sink {
            mode: output,
            not_found: false,
        };
        let mut signalled = false;
        loop {
            tokio::select! {
                frame = stream.next() => match frame {
                    Some(frame) => sink.frame(frame.map_err(|e| self.explain(e))?)?,
                    None => break,
                },
                Some(kind) = signals.next() => {
                    if kind == SignalKind::window_change() {
                        resize(&self.docker, id, false).await;
                    } else if let Some(marker) = &spec.marker {
                        if signals.count_interrupts(kind) >= 3 {
                            // The command ignores it; the user wants out.
                            return Ok(128 + kind.as_raw_value() as i64);
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
        let code = self.exit_code(id).await?;
        tracing::debug!("exec exit code read after {:?}", started_at.elapsed());
        Ok(sink.shell_code(code))
    }

    /// Starts the exec attached: its output stream and its stdin.
    async fn attach(&self, id: &str, spec: &ExecSpec) -> Result<(OutputStream, ExecInput)> {
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
    /// ends some engines still report the exec as running for a moment.
    /// The exec's exit code, once the engine has it. The output stream ends
    /// a moment before the engine records the code; a busy engine takes
    /// longer, which must never turn into a wrong answer, so this waits (with
    /// a growing pause) up to [`EXIT_CODE_PATIENCE`] before it gives up.
    async fn exit_code(&self, id: &str) -> Result<i64> {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
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

    /// Runs `spec` to its end: the plain form used by setup steps.
    pub async fn exec_simple(
        &self,
        container: &str,
        spec: &ExecSpec,
        output: Output,
    ) -> Result<i64> {
        let id = self
            .create_exec(container, spec)
            .await
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cannot run a command in `{container}`"))?;
        self.run_exec(container, &id, spec, output).await
    }
}

type OutputStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<LogOutput, ApiError>> + Send>>;
type ExecInput = std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

/// Copies our stdin into the exec; its end reaches the command as the end of
/// its input.
fn forward_stdin(mut input: ExecInput) {
    tokio::spawn(async move {
        let mut chunks = stdin_chunks();
        while let Some(chunk) = chunks.recv().await {
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
/// and waits until that is done.
async fn signal_marked(docker: &Docker, container: &str, marker: &str, signal: &str) {
    let script = format!(
        "for d in /proc/[0-9]*; do \
           if tr '\\0' '\\n' < \"$d/environ\" 2>/dev/null | grep -qx '{MARKER_VAR}={marker}'; then \
             kill -s {signal} \"${{d#/proc/}}\" 2>/dev/null; \
           fi; \
         done"
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

fn signal_name(kind: SignalKind) -> &'static str {
    match kind.as_raw_value() {
        1 => "HUP",
        2 => "INT",
        _ => "TERM",
    }
}

/// The signals an exec listens for. Without a TTY, Ctrl-C arrives here as
/// SIGINT and is passed on; with one, it travels through the TTY itself.
struct Signals {
    streams: Vec<(SignalKind, Signal)>,
    interrupts: u32,
}

impl Signals {
    fn listen(spec: &ExecSpec) -> Result<Signals> {
        let mut kinds = Vec::new();
        if spec.marker.is_some() {
            kinds.extend([
                SignalKind::interrupt(),
                SignalKind::terminate(),
                SignalKind::hangup(),
            ]);
        }
        if spec.tty {
            kinds.push(SignalKind::window_change());
        }
        let streams = kinds
            .into_iter()
            .map(|kind| Ok((kind, signal(kind)?)))
            .collect::<std::io::Result<_>>()
            .context("cannot listen for signals")?;
        Ok(Signals {
            streams,
            interrupts: 0,
        })
    }

    async fn next(&mut self) -> Option<SignalKind> {
        if self.streams.is_empty() {
            return std::future::pending().await;
        }
        let waits = self
            .streams
            .iter_mut()
            .map(|(kind, stream)| Box::pin(async move { stream.recv().await.map(|()| *kind) }));
        futures_util::future::select_all(waits).await.0
    }

    fn count_interrupts(&mut self, kind: SignalKind) -> u32 {
        if kind == SignalKind::interrupt() {
            self.interrupts += 1;
        }
        self.interrupts
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
    /// The runtime could not start the command because it does not exist.
    not_found: bool,
}

impl Sink {
    fn frame(&mut self, frame: LogOutput) -> Result<()> {
        match frame {
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                // Docker reports a command it cannot start as output; that
                // message is an error, so it belongs on stderr.
                if message.starts_with(b"OCI runtime exec failed") {
                    let text = String::from_utf8_lossy(&message);
                    self.not_found = text.contains("not found") || text.contains("no such file");
                    return write_fd(2, &message);
                }
                match self.mode {
                    Output::Passthrough => write_fd(1, &message),
                    Output::Stderr => write_fd(2, &message),
                }
            }
            LogOutput::StdErr { message } => write_fd(2, &message),
            LogOutput::StdIn { .. } => Ok(()),
        }
    }

    /// Docker gives 126 for any command its runtime cannot start; a shell
    /// says 127 when the command was not found, and so does devinst.
    fn shell_code(&self, code: i64) -> i64 {
        if self.not_found && code == 126 {
            return 127;
        }
        code
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
