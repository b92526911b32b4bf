//! The test harness: worktrees in a temp dir, the real `devinst` binary, the
//! real engine. Every container a test makes is removed when it ends, passed
//! or failed. The `docker` CLI used for checks and clean-up follows
//! `DOCKER_HOST`, as devinst does, so the same tests run against Podman.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const BUSYBOX: &str = "devinst-test/busybox:1";
pub const PYTHON_IMAGE: &str = "ubuntu:22.04";

/// Fails the test with instructions when the engine or test images are absent.
pub fn require_engine() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECKED.get_or_init(|| {
        let version = Command::new("docker")
            .args(["version", "--format", "{{.Server.APIVersion}}"])
            .output();
        match version {
            Ok(out) if out.status.success() => {}
            _ => {
                return Err("no container engine answers (`docker version` failed).\n\
                     Start one with `bash scripts/test-env.sh` (installs and starts Docker, \
                     builds the test images), then run the tests again. For Podman: \
                     `bash scripts/test-env.sh --podman`, then run the tests with \
                     DOCKER_HOST=unix:///run/podman/podman.sock."
                    .into())
            }
        }
        for image in [BUSYBOX, PYTHON_IMAGE] {
            let ok = Command::new("docker")
                .args(["image", "inspect", image])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(format!(
                    "the test image `{image}` is missing: run `bash scripts/test-env.sh` to build it"
                ));
            }
        }
        Ok(())
    });
    if let Err(message) = result {
        panic!("{message}");
    }
}

/// Held by tests that leave a worktree gone while its container lives, and
/// by those that run `gc` (which removes exactly such things), so that one
/// never judges the other's half-finished scene.
static GONE_WORKTREES: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn gone_worktrees_lock() -> std::sync::MutexGuard<'static, ()> {
    GONE_WORKTREES.lock().unwrap_or_else(|e| e.into_inner())
}

/// The registry all tests of this run share, as instances on one host do.
pub fn data_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        remove_dead_runs(base);
        let dir = base.join(format!("devinst-it-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// Registries of earlier test runs whose process is gone.
fn remove_dead_runs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("devinst-it-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Runs each named test (a `fn NAME(env: TestEnv)`) twice: once with every
/// exec through the instance's agent, once through the engine.
macro_rules! on_both_exec_paths {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn through_the_agent() {
                super::$name(crate::support::TestEnv::through("agent"))
            }
            #[test]
            fn through_the_engine() {
                super::$name(crate::support::TestEnv::through("engine"))
            }
        }
    )*};
}

pub struct TestEnv {
    pub tmp: tempfile::TempDir,
    pub home: PathBuf,
    /// `DEVINST_EXEC` for every devinst this test runs, when set.
    exec_path: Option<&'static str>,
    containers: std::cell::RefCell<Vec<String>>,
    networks: std::cell::RefCell<Vec<String>>,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        require_engine();
        let tmp = tempfile::Builder::new()
            .prefix("devinst-it")
            .tempdir()
            .unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        TestEnv {
            tmp,
            home,
            exec_path: None,
            containers: Default::default(),
            networks: Default::default(),
        }
    }

    /// A test whose execs all take one path: `agent` (failing where the
    /// agent cannot take one) or `engine`.
    pub fn through(path: &'static str) -> TestEnv {
        let mut env = TestEnv::new();
        env.exec_path = Some(path);
        env
    }

    /// A new git repository (one commit) at `tmp/<rel>`, returned canonical.
    pub fn repo(&self, rel: &str) -> PathBuf {
        let dir = self.tmp.path().join(rel);
        std::fs::create_dir_all(&dir).unwrap();
        git(&dir, &["init", "-q", "-b", "main"]);
        std::fs::write(dir.join("README"), "test\n").unwrap();
        git(&dir, &["add", "README"]);
        git(&dir, &["commit", "-q", "-m", "init"]);
        dir.canonicalize().unwrap()
    }

    /// A repository whose recipe uses the small busybox image and no setup.
    pub fn busybox_repo(&self, rel: &str, extra_toml: &str) -> PathBuf {
        let dir = self.repo(rel);
        write(
            &dir.join("devinst.toml"),
            &format!("[container]\nimage = \"{BUSYBOX}\"\n[setup]\ncommands = []\n{extra_toml}"),
        );
        dir
    }

    pub fn cmd(&self, dir: &Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_devinst"));
        cmd.current_dir(dir).stdin(Stdio::null());
        self.isolate(&mut cmd);
        cmd
    }

    /// The test's own HOME, data directory and user config (under HOME), and
    /// no consent but what the test gives.
    pub fn isolate(&self, cmd: &mut Command) {
        cmd.env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("DEVINST_DATA_DIR", data_dir())
            .env_remove("DEVINST_INSTANCE")
            .env_remove("DEVINST_TRUST");
        match self.exec_path {
            Some(path) => cmd.env("DEVINST_EXEC", path),
            None => cmd.env_remove("DEVINST_EXEC"),
        };
    }

    /// Writes the user's own config file (`~/.config/devinst/config.toml`).
    pub fn user_config(&self, text: &str) {
        write(&self.home.join(".config/devinst/config.toml"), text);
    }

    /// Agrees to what the recipe of `dir` asks for beyond the defaults, as
    /// a user would with `devinst trust`.
    pub fn trust(&self, dir: &Path) -> Run {
        self.run(dir, &["trust"]).ok()
    }

    /// Runs devinst in `dir`; remembers the instance so it is cleaned up.
    pub fn run(&self, dir: &Path, args: &[&str]) -> Run {
        self.run_cmd(dir, self.cmd(dir).args(args))
    }

    /// Runs a command made with [`TestEnv::cmd`] and changed by the test
    /// (environment, flags); remembers the instance of `dir`.
    pub fn run_cmd(&self, dir: &Path, cmd: &mut Command) -> Run {
        let out = output_within(cmd, None);
        self.track(dir);
        Run::from(out)
    }

    /// Runs devinst (as root) in `dir`, a worktree another uid owns, with git
    /// trusting it as that user's own git would.
    pub fn run_on_others_worktree(&self, dir: &Path, args: &[&str]) -> Run {
        let mut cmd = self.cmd(dir);
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "safe.directory")
            .env("GIT_CONFIG_VALUE_0", "*");
        self.run_cmd(dir, cmd.args(args))
    }

    /// Runs `script` with `sh -c` inside the instance of `dir`.
    pub fn sh(&self, dir: &Path, script: &str) -> Run {
        self.run(dir, &["exec", "--", "sh", "-c", script])
    }

    pub fn run_with_stdin(&self, dir: &Path, args: &[&str], stdin: &[u8]) -> Run {
        let out = output_within(self.cmd(dir).args(args), Some(stdin.to_vec()));
        self.track(dir);
        Run::from(out)
    }

    /// Runs `devinst COMMAND` in every dir at the same moment; all must succeed.
    pub fn run_all_at_once(&self, dirs: &[PathBuf], command: &str) {
        let runs: Vec<_> = dirs
            .iter()
            .map(|dir| {
                let mut cmd = self.cmd(dir);
                cmd.arg(command);
                std::thread::spawn(move || Run::from(output_within(&mut cmd, None)))
            })
            .collect();
        for (dir, run) in dirs.iter().zip(runs) {
            let run = run.join().unwrap();
            assert_eq!(
                run.code,
                0,
                "a concurrent `{command}` failed in `{}`\n{run}",
                dir.display()
            );
        }
        dirs.iter().for_each(|dir| self.track(dir));
    }

    /// Runs a script (a shim, start-container, ...) with the test's env.
    pub fn script(&self, dir: &Path, program: &Path, args: &[&str]) -> Run {
        let mut cmd = Command::new(program);
        cmd.args(args).current_dir(dir).stdin(Stdio::null());
        self.isolate(&mut cmd);
        let out = output_within(&mut cmd, None);
        self.track(dir);
        Run::from(out)
    }

    /// A network name unique to this test run, removed when the test ends
    /// (devinst itself never removes networks).
    pub fn network(&self, name: &str) -> String {
        let unique = format!("{name}-{}", std::process::id());
        self.networks.borrow_mut().push(unique.clone());
        unique
    }

    /// Records the container of the instance that owns `dir`, if any.
    pub fn track(&self, dir: &Path) {
        remember_container(&self.containers, dir);
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for container in self.containers.borrow().iter() {
            quiet_docker(&["rm", "-f", "-v", container]);
        }
        // After the containers: a network in use cannot be removed.
        for network in self.networks.borrow().iter() {
            quiet_docker(&["network", "rm", network]);
        }
    }
}

/// How long one command of a test may take before the test fails: generous,
/// so a loaded machine never trips it, but a hung command ends the test with
/// what it printed instead of stalling the whole suite.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(300);

/// Runs `cmd` to its end, feeding it `stdin` when given (else whatever the
/// command was set up with), and panics with everything it printed so far if
/// it runs longer than [`COMMAND_LIMIT`].
pub fn output_within(cmd: &mut Command, stdin: Option<Vec<u8>>) -> Output {
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let (Some(data), Some(mut input)) = (stdin, child.stdin.take()) {
        std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
    }
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > COMMAND_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            let text = |buf: &Arc<Mutex<Vec<u8>>>| {
                String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
            };
            panic!(
                "{cmd:?} ran over {} s and was killed\n--- stdout\n{}\n--- stderr\n{}",
                COMMAND_LIMIT.as_secs(),
                text(&stdout.0),
                text(&stderr.0)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: stdout.finish(),
        stderr: stderr.finish(),
    }
}

/// A pipe read to its end on a thread of its own, what it gave so far
/// readable at any time.
struct Drain(Arc<Mutex<Vec<u8>>>, std::thread::JoinHandle<()>);

impl Drain {
    fn finish(self) -> Vec<u8> {
        self.1.join().unwrap();
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> Drain {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = buffer.clone();
    let reader = std::thread::spawn(move || {
        let mut chunk = [0u8; 64 * 1024];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    Drain(buffer, reader)
}

pub fn quiet_docker(args: &[&str]) {
    let _ = Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A value from a worktree's `.sky-dev/.instance`, read by `sh` itself.
pub fn instance_value(root: &Path, key: &str) -> Option<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(". ./.sky-dev/.instance && printf %s \"${key}\""))
        .current_dir(root)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub raw_stdout: Vec<u8>,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            raw_stdout: out.stdout,
        }
    }
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "expected success\n{self}");
        self
    }

    #[track_caller]
    pub fn fails_with(self, code: i32, needle: &str) -> Run {
        assert_eq!(self.code, code, "expected exit {code}\n{self}");
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{self}"
        );
        assert!(!self.stderr.contains("panicked"), "panic\n{self}");
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// A container made behind devinst's back (`docker ARGS`, naming it with
/// `--name`); removed when dropped, pass or fail.
pub struct Foreign(pub String);

impl Foreign {
    pub fn new(args: &[&str]) -> Foreign {
        let out = Command::new("docker").args(args).output().unwrap();
        let name = args
            .iter()
            .position(|a| *a == "--name")
            .map(|i| args[i + 1].to_owned())
            .expect("the container is named with --name");
        let guard = Foreign(name);
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        guard
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        quiet_docker(&["rm", "-f", "-v", &self.0]);
    }
}

/// Whether the engine has a container by this name.
pub fn container_exists(name: &str) -> bool {
    Command::new("docker")
        .args(["container", "inspect", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// `docker inspect -f FORMAT NAME`, trimmed.
pub fn inspect(container: &str, format: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "-f", format, container])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker inspect {container}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[derive(Debug, serde::Deserialize)]
pub struct PtyRun {
    pub output: String,
    pub code: i32,
    pub restored: bool,
}

/// Runs devinst on a real pseudo-terminal of `rows` x `cols`, scripted.
pub fn on_pty(env: &TestEnv, dir: &Path, size: (u16, u16), steps: &str, args: &[&str]) -> PtyRun {
    let mut argv = vec![env!("CARGO_BIN_EXE_devinst")];
    argv.extend_from_slice(args);
    on_pty_argv(env, dir, size, steps, &argv)
}

/// Runs `argv` on a real pseudo-terminal, with the test's environment.
pub fn on_pty_argv(
    env: &TestEnv,
    dir: &Path,
    size: (u16, u16),
    steps: &str,
    argv: &[&str],
) -> PtyRun {
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/pty_driver.py");
    let mut cmd = Command::new("python3");
    cmd.arg(driver)
        .args([
            size.0.to_string(),
            size.1.to_string(),
            steps.to_owned(),
            "--".to_owned(),
        ])
        .args(argv)
        .current_dir(dir)
        .env("HOME", &env.home)
        .env("TERM", "xterm-256color");
    for (key, value) in env.cmd(dir).get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    let out = output_within(&mut cmd, None);
    env.track(dir);
    assert!(
        out.status.success(),
        "pty driver: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Whether the engine has `image` (by the `docker` CLI, which follows
/// `DOCKER_HOST` as devinst does).
pub fn image_present(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Adds the container of the instance that owns `dir` (the nearest
/// `.sky-dev/.instance` up), if any, to `list`, once: what a test made, to
/// remove when it ends.
pub fn remember_container(list: &std::cell::RefCell<Vec<String>>, dir: &Path) {
    let Some(root) = dir
        .ancestors()
        .find(|d| d.join(".sky-dev/.instance").is_file())
    else {
        return;
    };
    if let Some(container) = instance_value(root, "DEVINST_CONTAINER") {
        let mut list = list.borrow_mut();
        if !list.contains(&container) {
            list.push(container);
        }
    }
}
