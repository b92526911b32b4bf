//! The developer's side of an instance: one who is not root owns what the
//! instance makes and uses git inside; the project's venv and the host's git
//! identity are the environment inside; a shim says when the instance is
//! behind its worktree.

use crate::core::copy_fixture;
use crate::support::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Ports of these tests' own: instances of other data directories on the
/// engine (other users', CI jobs) may hold the default ones. Each developer
/// below has a registry, and so a range, of their own.
const RANGE: &str = "[ports]\nhost_range = [47800, 47809]\n";

/// A package pip installs with no index and no build isolation.
pub fn write_offline_package(repo: &Path) {
    write(
        &repo.join("extra/setup.py"),
        "from setuptools import setup\nsetup(name=\"extra\", version=\"1.0\", py_modules=[\"extra\"])\n",
    );
    write(&repo.join("extra/extra.py"), "WORD = \"extra-ok\"\n");
}

pub const PIP_INSTALL_EXTRA: &str =
    "pip install -q --no-index --no-build-isolation ./extra && python -c 'import extra; print(extra.WORD)'";

#[test]
fn the_venv_is_active_in_exec_shell_and_shims_and_a_changed_input_is_noticed_once() {
    let env = TestEnv::new();
    let repo = env.repo("venvproj");
    copy_fixture(Path::new("tests/fixtures/skypkg"), &repo);
    write_offline_package(&repo);
    write(&repo.join("devinst.toml"), RANGE);
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();

    let run = env
        .sh(
            &repo,
            "command -v python; command -v pip; echo $VIRTUAL_ENV",
        )
        .ok();
    assert_eq!(
        run.stdout,
        "/app/.sky-dev/venv/bin/python\n/app/.sky-dev/venv/bin/pip\n/app/.sky-dev/venv\n"
    );
    assert_eq!(env.sh(&repo, PIP_INSTALL_EXTRA).ok().stdout, "extra-ok\n");
    let shell = env
        .run_with_stdin(&repo, &["shell"], b"command -v python\n")
        .ok();
    assert_eq!(shell.stdout, "/app/.sky-dev/venv/bin/python\n", "{shell}");

    // A changed input: the next shim says so, once.
    let sky = repo.join(".sky-dev/bin/sky");
    assert!(!env.script(&repo, &sky, &[]).ok().stderr.contains("behind"));
    let pyproject = repo.join("pyproject.toml");
    let text = std::fs::read_to_string(&pyproject).unwrap();
    write(&pyproject, &text.replace("0.1.0", "0.2.0"));
    let first = env.script(&repo, &sky, &["x"]).ok();
    assert_eq!(first.stdout.trim(), r#"skypkg sky ["x"]"#);
    assert!(
        first.stderr.contains("behind")
            && first.stderr.contains("`pyproject.toml`")
            && first.stderr.contains("`devinst start`"),
        "{first}"
    );
    let second = env.script(&repo, &sky, &[]).ok();
    assert!(!second.stderr.contains("behind"), "{second}");
    // `start` brings it up to date; the next change is noticed again.
    let start = env.run(&repo, &["start"]).ok();
    assert!(start.stderr.contains("setup step"), "{start}");
    assert!(!env.script(&repo, &sky, &[]).ok().stderr.contains("behind"));
    write(&pyproject, &text.replace("0.1.0", "0.3.0"));
    assert!(env.script(&repo, &sky, &[]).ok().stderr.contains("behind"));
}

#[test]
fn a_commit_inside_uses_the_hosts_git_identity() {
    let env = TestEnv::new();
    let repo = env.repo("identity");
    write(
        &repo.join("devinst.toml"),
        &format!("[container]\nimage = \"{PYTHON_IMAGE}\"\n[setup]\ncommands = []\n{RANGE}"),
    );
    write(
        &env.home.join(".gitconfig"),
        "[user]\n\tname = Ada Host\n\temail = ada@example.com\n",
    );
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    env.run(&repo, &["exec", "--", "git", "add", "devinst.toml"])
        .ok();
    env.run(
        &repo,
        &["exec", "--", "git", "commit", "-q", "-m", "inside"],
    )
    .ok();
    assert_eq!(
        git(&repo, &["log", "-1", "--format=%an <%ae> %s"]),
        "Ada Host <ada@example.com> inside\n"
    );
}

#[test]
fn a_shim_added_to_or_dropped_from_the_recipe_says_to_run_setup_once() {
    let env = TestEnv::new();
    let repo = env.busybox_repo(
        "shimnotice",
        &format!("{RANGE}[shims]\nhello = [\"echo\", \"hello\"]\n"),
    );
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    let toml = repo.join("devinst.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let hello = repo.join(".sky-dev/bin/hello");
    assert!(!env
        .script(&repo, &hello, &[])
        .ok()
        .stderr
        .contains("warning"));

    write(&toml, &format!("{text}bye = [\"echo\", \"bye\"]\n"));
    let run = env.script(&repo, &hello, &[]).ok();
    assert_eq!(run.stdout, "hello\n");
    assert!(
        run.stderr.contains("(`bye`)") && run.stderr.contains("run `devinst setup`"),
        "{run}"
    );
    let again = env.script(&repo, &hello, &[]).ok();
    assert!(!again.stderr.contains("warning"), "once: {again}");

    write(
        &toml,
        &text.replace("hello = [\"echo\", \"hello\"]", "bye = [\"echo\", \"bye\"]"),
    );
    let run = env.script(&repo, &hello, &[]).ok();
    assert!(
        run.stderr.contains("no longer names these shims (`hello`)")
            && run.stderr.contains("run `devinst setup`"),
        "{run}"
    );
    env.run(&repo, &["setup"]).ok();
    assert!(!hello.exists());
    let bye = env.script(&repo, &repo.join(".sky-dev/bin/bye"), &[]).ok();
    assert_eq!(bye.stdout, "bye\n");
    assert!(!bye.stderr.contains("warning"), "{bye}");
}

/// The developer's uid and gid: nobody's on the test machine.
const UID: u32 = 4321;

/// An ordinary user in the engine's group (`setpriv`, as ENGINE.md has it),
/// with a HOME, a data directory and a git identity of their own.
struct Developer<'a> {
    env: &'a TestEnv,
    home: PathBuf,
}

impl<'a> Developer<'a> {
    fn new(env: &'a TestEnv) -> Developer<'a> {
        // The test's temp dir is root's and private: let the user through.
        chmod(env.tmp.path(), 0o755);
        let home = env.tmp.path().join("devhome");
        write(
            &home.join(".gitconfig"),
            "[user]\n\tname = Dev Eloper\n\temail = dev@example.com\n",
        );
        let dev = Developer { env, home };
        dev.own(&dev.home);
        dev
    }

    /// Hands `path` (and all under it) to the developer.
    fn own(&self, path: &Path) {
        let ok = Command::new("chown")
            .arg("-R")
            .arg(format!("{UID}:{UID}"))
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown {}", path.display());
    }

    /// `program` run by the developer in `dir`.
    fn cmd(&self, dir: &Path, program: &Path) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={UID}"))
            .arg(format!("--regid={UID}"))
            .arg(format!("--groups={}", engine_socket_gid()))
            .arg("env")
            .arg(format!("HOME={}", self.home.display()))
            .arg(format!(
                "DEVINST_DATA_DIR={}",
                self.home.join("data").display()
            ))
            .arg(program)
            .current_dir(dir)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, dir: &Path, program: &str, args: &[&str]) -> Run {
        let out = self
            .cmd(dir, Path::new(program))
            .args(args)
            .output()
            .unwrap();
        self.env.track(dir);
        Run::from(out)
    }

    fn devinst(&self, dir: &Path, args: &[&str]) -> Run {
        self.run(dir, env!("CARGO_BIN_EXE_devinst"), args)
    }

    fn sh(&self, dir: &Path, script: &str) -> Run {
        self.devinst(dir, &["exec", "--", "sh", "-c", script])
    }

    /// git on the host, as the developer.
    fn git(&self, dir: &Path, args: &[&str]) -> String {
        self.run(dir, "git", args).ok().stdout
    }
}

/// The group of the engine's socket, which lets its members use it.
fn engine_socket_gid() -> u32 {
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|host| host.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"));
    std::fs::metadata(socket).unwrap().gid()
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every path under `root` (itself included, links not followed) that is not
/// the developer's.
fn not_theirs(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let meta = std::fs::symlink_metadata(root).unwrap();
    if meta.uid() != UID || meta.gid() != UID {
        found.push(root.to_owned());
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(root).unwrap() {
            found.extend(not_theirs(&entry.unwrap().path()));
        }
    }
    found
}

#[test]
fn a_developer_who_is_not_root_owns_what_the_instance_makes_and_git_works_inside() {
    let env = TestEnv::new();
    let dev = Developer::new(&env);
    let repo = env.repo("devproj");
    copy_fixture(Path::new("tests/fixtures/skypkg"), &repo);
    write_offline_package(&repo);
    write(
        &repo.join("devinst.toml"),
        "[ports]\nhost_range = [47810, 47819]\n",
    );
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "project"]);
    dev.own(&repo);

    // The default recipe: root's image, the default setup steps.
    dev.devinst(&repo, &["setup"]).ok();
    dev.devinst(&repo, &["start"]).ok();
    let sky = dev
        .run(
            &repo,
            repo.join(".sky-dev/bin/sky").to_str().unwrap(),
            &["hi"],
        )
        .ok();
    assert_eq!(sky.stdout.trim(), r#"skypkg sky ["hi"]"#);
    let run = dev.sh(&repo, "touch made-by-exec && id -u").ok();
    assert_eq!(
        run.stdout,
        format!("{UID}\n"),
        "commands run as the developer"
    );
    let run = dev.sh(&repo, PIP_INSTALL_EXTRA).ok();
    assert_eq!(
        run.stdout, "extra-ok\n",
        "the venv is theirs to install into"
    );
    for made in [
        ".sky-dev/venv/bin/pip",
        "__pycache__",
        "skypkg/__pycache__",
        "extra/extra.egg-info",
        "made-by-exec",
    ] {
        assert!(repo.join(made).exists(), "{made}");
    }
    assert_eq!(not_theirs(&repo), Vec::<PathBuf>::new());

    // git inside, with their identity; the commit is seen from the host.
    let exec_git = |args: &[&str]| {
        let mut all = vec!["exec", "--", "git"];
        all.extend_from_slice(args);
        dev.devinst(&repo, &all).ok().stdout
    };
    assert_eq!(exec_git(&["status", "--short"]), "?? made-by-exec\n");
    exec_git(&["add", "made-by-exec"]);
    exec_git(&["commit", "-q", "-m", "from inside"]);
    assert_eq!(
        exec_git(&["log", "-1", "--format=%an <%ae> %s"]),
        "Dev Eloper <dev@example.com> from inside\n"
    );
    assert_eq!(
        dev.git(&repo, &["log", "-1", "--format=%an <%ae> %s"]),
        "Dev Eloper <dev@example.com> from inside\n"
    );
    assert_eq!(not_theirs(&repo), Vec::<PathBuf>::new());

    // What the instance made, they can delete.
    dev.run(
        &repo,
        "rm",
        &["-r", ".sky-dev/venv", "__pycache__", "skypkg/__pycache__"],
    )
    .ok();
}

#[test]
fn a_developer_who_is_not_root_sets_up_as_root_and_uses_git_in_main_and_linked_worktrees() {
    let env = TestEnv::new();
    let dev = Developer::new(&env);
    let main = env.repo("devmain");
    write(
        &main.join("devinst.toml"),
        &format!(
            "[container]\nimage = \"{PYTHON_IMAGE}\"\n[ports]\nhost_range = [47820, 47829]\n\
             [setup]\ncommands = [\"id -u > made-by-setup\", \"mkdir -p build/cache && touch build/cache/x\"]\n"
        ),
    );
    git(&main, &["add", "devinst.toml"]);
    git(&main, &["commit", "-q", "-m", "recipe"]);
    let linked = env.tmp.path().join("devlinked");
    let linked_arg = linked.to_str().unwrap();
    git(
        &main,
        &["worktree", "add", "-q", "-b", "feature", linked_arg],
    );
    let linked = linked.canonicalize().unwrap();
    dev.own(&main);
    dev.own(&linked);

    for (dir, branch) in [(&linked, "feature"), (&main, "main")] {
        dev.devinst(dir, &["setup"]).ok();
        dev.devinst(dir, &["start"]).ok();
        // The steps ran as root; what they made is the developer's.
        let by_setup = std::fs::read_to_string(dir.join("made-by-setup")).unwrap();
        assert_eq!(by_setup, "0\n", "{branch}");
        assert!(dir.join("build/cache/x").exists());
        assert_eq!(dev.sh(dir, "id -u").ok().stdout, format!("{UID}\n"));

        dev.sh(dir, "echo changed >> README").ok();
        let exec_git = |args: &[&str]| {
            let mut all = vec!["exec", "--", "git"];
            all.extend_from_slice(args);
            dev.devinst(dir, &all).ok().stdout
        };
        assert!(
            exec_git(&["status", "--short"]).contains(" M README"),
            "{branch}"
        );
        assert_eq!(
            exec_git(&["rev-parse", "--abbrev-ref", "HEAD"]).trim(),
            branch
        );
        exec_git(&["commit", "-q", "-am", &format!("inside {branch}")]);
        assert_eq!(
            exec_git(&["log", "-1", "--format=%s"]).trim(),
            format!("inside {branch}")
        );
        assert_eq!(
            dev.git(dir, &["log", "-1", "--format=%an %s"]).trim(),
            format!("Dev Eloper inside {branch}")
        );
        assert_eq!(not_theirs(dir), Vec::<PathBuf>::new(), "{branch}");
    }
    assert_eq!(not_theirs(&main.join(".git")), Vec::<PathBuf>::new());
}

#[test]
fn a_developer_who_is_not_root_owns_what_every_node_of_a_cluster_makes() {
    let env = TestEnv::new();
    let dev = Developer::new(&env);
    // A range of its own: the tests above hold theirs at the same time.
    let range = "[ports]\nhost_range = [47810, 47819]\n";
    let repo = env.busybox_repo("devcluster", &format!("{range}[cluster]\nnodes = 2\n"));
    dev.own(&repo);
    dev.devinst(&repo, &["setup"]).ok();
    let _cleanup = crate::cluster::Cleanup::new(&repo);
    dev.devinst(&repo, &["start"]).ok();
    let made = dev
        .devinst(
            &repo,
            &[
                "exec",
                "--all",
                "--",
                "sh",
                "-c",
                "touch /app/made-on-$DEVINST_NODE_RANK \"$HOME/.sky-state-$DEVINST_NODE_RANK\" && id -u",
            ],
        )
        .ok();
    let mut lines: Vec<&str> = made.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [format!("[node 0] {UID}"), format!("[node 1] {UID}")]
    );
    assert!(repo.join("made-on-1").exists());
    assert!(repo.join(".sky-dev/nodes/1/home/.sky-state-1").exists());
    assert_eq!(not_theirs(&repo), Vec::<PathBuf>::new());
    dev.devinst(&repo, &["destroy", "--purge", "--yes"]).ok();
}

#[test]
fn a_developer_who_is_not_root_starts_a_linked_worktree_warm_and_owns_the_copy() {
    let env = TestEnv::new();
    let dev = Developer::new(&env);
    let main = env.repo("devwarm");
    write(
        &main.join("devinst.toml"),
        &format!(
            "[container]\nimage = \"{BUSYBOX}\"\n[ports]\nhost_range = [47830, 47839]\n\
             [setup]\ncommands = [\"mkdir -p build && echo {} > build/out\"]\noutputs = [\"build/out\"]\n",
            std::process::id()
        ),
    );
    git(&main, &["add", "devinst.toml"]);
    git(&main, &["commit", "-q", "-m", "recipe"]);
    let linked = env.tmp.path().join("devwarm-linked");
    git(&main, &["worktree", "add", "-q", linked.to_str().unwrap()]);
    let linked = linked.canonicalize().unwrap();
    dev.own(&main);
    dev.own(&linked);
    for dir in [&main, &linked] {
        dev.devinst(dir, &["setup"]).ok();
    }
    dev.devinst(&main, &["start"]).ok();
    let warm = dev.devinst(&linked, &["start"]).ok();
    assert!(warm.stderr.contains("started warm"), "{warm}");
    assert!(linked.join("build/out").exists());
    assert_eq!(not_theirs(&linked), Vec::<PathBuf>::new());
    let fingerprint = std::fs::read_to_string(main.join(".sky-dev/.warm")).unwrap();
    let fingerprint: serde_json::Value = serde_json::from_str(&fingerprint).unwrap();
    let image = format!(
        "devinst-warm/{}:1",
        fingerprint["fingerprint"].as_str().unwrap()
    );
    for dir in [&linked, &main] {
        dev.devinst(dir, &["destroy", "--yes"]).ok();
    }
    quiet_docker(&["rmi", &image]);
}
