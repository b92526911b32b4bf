//! The recipe's setup steps, run in the container when their inputs changed.
//!
//! `.sky-dev/.setup-stamp` says how far they got: `incomplete` from the moment
//! a run begins until every step has finished, then a digest of what they ran
//! with. A run that fails, is interrupted or killed leaves `incomplete`, so
//! the next `start` runs every step again, and shims warn until it has.

use super::Instance;
use crate::engine::exec::{ExecSpec, Output};
use crate::engine::Engine;
use crate::support::error::WithHint;
use crate::support::{fs, output, progress};
use anyhow::{anyhow, Context, Result};
use futures_util::FutureExt;
use rustix::fs::OFlags;
use sha2::{Digest, Sha256};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The stamp's text while a run has not finished.
const INCOMPLETE: &str = "incomplete";

/// A container the setup steps run in, and the stamp that says how far they
/// got there.
pub struct SetupTarget {
    pub container: String,
    pub id: String,
    pub stamp: std::path::PathBuf,
}

impl SetupTarget {
    /// The instance's own container (a cluster's head).
    pub fn head(instance: &Instance, id: &str) -> SetupTarget {
        SetupTarget {
            container: instance.record.container.clone(),
            id: id.to_owned(),
            stamp: instance.layout.setup_stamp(),
        }
    }
}

/// Runs the recipe's setup steps in `target` unless they already ran there,
/// with the same inputs, in this very container, and what they made is
/// still there. `extra_env` is added to what every step gets (a cluster's
/// addresses).
pub async fn run_setup_steps(
    engine: &Engine,
    instance: &Instance,
    target: &SetupTarget,
    extra_env: &[(String, String)],
) -> Result<()> {
    let s = &instance.settings;
    if s.setup_commands.is_empty() {
        return Ok(());
    }
    let stamp = setup_stamp(instance, &target.id)?;
    let stamp_file = &target.stamp;
    let done = std::fs::read_to_string(stamp_file).is_ok_and(|old| old.trim() == stamp);
    let outputs_present = s
        .setup_outputs
        .iter()
        .all(|p| instance.layout.root.join(p).exists());
    if done && outputs_present {
        return Ok(());
    }
    fs::write_atomic(stamp_file, format!("{INCOMPLETE}\n").as_bytes(), 0o644)?;
    let mut env = super::environment::setup_env(instance);
    super::environment::with_vars(&mut env, extra_env);
    let mut interrupts = Interrupts::listen()?;
    let total = s.setup_commands.len();
    let bar = StepsBar(progress::drawn().then(|| progress::StepBar::new("setup steps")));
    for (i, command) in s.setup_commands.iter().enumerate() {
        let label = format!("setup step {}/{total}: {command}", i + 1);
        match &bar.0 {
            Some(bar) => {
                bar.println(&label);
                bar.step(&label);
            }
            None => output::note(&label),
        }
        let spec = ExecSpec {
            argv: vec!["sh".into(), "-c".into(), command.clone()],
            workdir: Some(s.workdir.clone()),
            env: env.clone(),
            user: s.user.for_setup(),
            ..Default::default()
        }
        // Ctrl-C or SIGTERM ends the step inside too, not only devinst.
        .forwarding_signals();
        let mut code = run_step(engine, &target.container, &spec, bar.0.as_ref()).await?;
        if let Some(signal) = interrupts.arrived() {
            // Even a step that shrugged the signal off ends the run.
            code = 128 + i64::from(signal);
        }
        if code != 0 {
            drop(bar);
            super::owner::hand_back(engine, instance).await;
            let how = match code {
                130 | 143 | 129 => format!("was interrupted (exit code {code})"),
                _ => format!("failed with exit code {code}"),
            };
            return Err(anyhow!("setup step {}/{total} {how}: {command}", i + 1)).hint(
                "fix the step (its output is above) and run `devinst start` again; it runs every step again",
            );
        }
    }
    drop(bar);
    super::owner::hand_back(engine, instance).await;
    fs::write_atomic(stamp_file, format!("{stamp}\n").as_bytes(), 0o644)
}

/// The setup steps' bar on a terminal, taken away however the run ends.
struct StepsBar(Option<progress::StepBar>);

impl Drop for StepsBar {
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish();
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP, noticed while the steps run.
struct Interrupts(Vec<(i32, Signal)>);

impl Interrupts {
    fn listen() -> Result<Interrupts> {
        let kinds = [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ];
        let mut streams = Vec::new();
        for kind in kinds {
            streams.push((
                kind.as_raw_value(),
                signal(kind).context("cannot listen for signals")?,
            ));
        }
        Ok(Interrupts(streams))
    }

    /// The signal that arrived since the last look, if any.
    fn arrived(&mut self) -> Option<i32> {
        let mut arrived = None;
        for (number, stream) in &mut self.0 {
            if stream.recv().now_or_never().flatten().is_some() {
                arrived = Some(*number);
            }
        }
        arrived
    }
}

/// Runs one step, its output on stderr (above the bar, when drawn); under
/// `-q` its output shows only when it fails.
async fn run_step(
    engine: &Engine,
    container: &str,
    spec: &ExecSpec,
    bar: Option<&progress::StepBar>,
) -> Result<i64> {
    if let Some(bar) = bar {
        let bar = bar.clone();
        let show = move |line: &[u8]| bar.line(String::from_utf8_lossy(line).trim_end());
        return engine.exec_lines(container, spec, Box::new(show)).await;
    }
    if !output::quiet() {
        return engine.exec_simple(container, spec, Output::Stderr).await;
    }
    let (code, text) = engine.exec_captured(container, spec).await?;
    if code != 0 {
        crate::engine::exec::write_fd(2, &text)?;
    }
    Ok(code)
}

/// Where the setup steps stand, for `status`: `none` (the recipe has none),
/// `incomplete` (a run failed or was interrupted), `done` (they ran in the
/// container `container_id` with today's inputs) or `pending`.
pub fn progress(instance: &Instance, container_id: Option<&str>) -> &'static str {
    if instance.settings.setup_commands.is_empty() {
        return "none";
    }
    let stamp = std::fs::read_to_string(instance.layout.setup_stamp()).unwrap_or_default();
    match (stamp.trim(), container_id) {
        (INCOMPLETE, _) => "incomplete",
        (old, Some(id)) if setup_stamp(instance, id).is_ok_and(|now| now == old) => "done",
        _ => "pending",
    }
}

/// Whether a run of the setup steps began and never finished: one read of
/// a small file, for every shim.
pub fn incomplete(instance: &Instance) -> bool {
    std::fs::read(instance.layout.setup_stamp())
        .is_ok_and(|text| text.trim_ascii() == INCOMPLETE.as_bytes())
}

/// Says on stderr when a run of the setup steps never finished: for every
/// exec of a running instance, whichever way it goes in.
pub fn warn_if_incomplete(instance: &Instance) {
    if incomplete(instance) {
        output::warn(format!(
            "the setup steps of instance `{}` did not finish (one failed or was interrupted); \
             run `devinst start` to finish them",
            instance.record.name
        ));
    }
}

fn setup_stamp(instance: &Instance, container_id: &str) -> Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(container_id.as_bytes());
    hash_steps(&mut hasher, instance)?;
    Ok(short_hex(hasher))
}

/// What the setup steps' results depend on but the container: the image
/// they ran on (by id), where and as whom, the steps, and their inputs'
/// contents. Two instances with the same fingerprint got the same results.
pub fn fingerprint(instance: &Instance, image_id: &str) -> Result<String> {
    let s = &instance.settings;
    let mut hasher = Sha256::new();
    for part in [image_id, &s.workdir, &format!("{:?}", s.user)] {
        hasher.update(part.as_bytes());
        hasher.update(b"\0");
    }
    hash_steps(&mut hasher, instance)?;
    Ok(short_hex(hasher))
}

fn hash_steps(hasher: &mut Sha256, instance: &Instance) -> Result<()> {
    for command in &instance.settings.setup_commands {
        hasher.update(b"\0cmd\0");
        hasher.update(command.as_bytes());
    }
    for input in &instance.settings.setup_inputs {
        hasher.update(b"\0input\0");
        hasher.update(input.as_bytes());
        if let Some(bytes) = read_input(&instance.layout.root, input)? {
            hasher.update(&bytes);
        }
    }
    Ok(())
}

fn short_hex(hasher: Sha256) -> String {
    hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Records the setup steps as done in `target`'s container: their results
/// came from elsewhere (a warm start).
pub fn mark_done(instance: &Instance, target: &SetupTarget) -> Result<()> {
    let stamp = setup_stamp(instance, &target.id)?;
    fs::write_atomic(&target.stamp, format!("{stamp}\n").as_bytes(), 0o644)
}

/// The most of one input that is read: a lock file is far smaller.
const INPUT_CAP: u64 = 16 << 20;

/// The content of setup input `input` (a path relative to the worktree
/// `root`, which is canonical), or `None` when it does not exist. Only a
/// regular file inside the worktree is read, and only up to [`INPUT_CAP`]:
/// a link out of the worktree, a device or a pipe is refused, never read.
fn read_input(root: &Path, input: &str) -> Result<Option<Vec<u8>>> {
    let refuse = |why: String| {
        Err(anyhow!("`[setup] inputs` entry `{input}` {why}"))
            .hint("list regular files inside the worktree in `[setup] inputs`")
    };
    let real = match root.join(input).canonicalize() {
        Ok(real) => real,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(err).with_context(|| format!("cannot resolve setup input `{input}`"))
        }
    };
    if !real.starts_with(root) {
        return refuse(format!(
            "leads outside the worktree, to `{}`",
            real.display()
        ));
    }
    // Opened without blocking (a pipe) and judged by what was opened.
    let file = std::fs::File::options()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
        .open(&real)
        .with_context(|| format!("cannot open setup input `{input}`"))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return refuse("is not a regular file".to_owned());
    }
    let mut bytes = Vec::new();
    file.take(INPUT_CAP + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read setup input `{input}`"))?;
    if bytes.len() as u64 > INPUT_CAP {
        return refuse(format!("is larger than {} MiB", INPUT_CAP >> 20));
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn only_regular_files_inside_the_worktree_are_read_and_only_so_much() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("wt");
        std::fs::create_dir(&root).unwrap();
        let root = root.canonicalize().unwrap();
        std::fs::write(root.join("req.txt"), "a==1\n").unwrap();
        symlink("req.txt", root.join("alias.txt")).unwrap();
        assert_eq!(read_input(&root, "req.txt").unwrap().unwrap(), b"a==1\n");
        assert_eq!(read_input(&root, "alias.txt").unwrap().unwrap(), b"a==1\n");
        assert!(read_input(&root, "missing.txt").unwrap().is_none());

        std::fs::write(tmp.path().join("secret"), "s").unwrap();
        symlink(tmp.path().join("secret"), root.join("out")).unwrap();
        symlink("/dev/zero", root.join("zero")).unwrap();
        for input in ["out", "zero"] {
            let err = format!("{:#}", read_input(&root, input).unwrap_err());
            assert!(err.contains("leads outside the worktree"), "{err}");
        }
        rustix::fs::mkfifoat(rustix::fs::CWD, root.join("pipe"), 0o644.into()).unwrap();
        let err = format!("{:#}", read_input(&root, "pipe").unwrap_err());
        assert!(err.contains("`pipe` is not a regular file"), "{err}");
        let big = std::fs::File::create(root.join("big")).unwrap();
        big.set_len(INPUT_CAP + 1).unwrap();
        let err = format!("{:#}", read_input(&root, "big").unwrap_err());
        assert!(err.contains("`big` is larger than 16 MiB"), "{err}");
    }
}
