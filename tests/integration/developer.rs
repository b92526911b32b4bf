//! The developer's side of an instance: the project's venv and the host's
//! git identity are the environment inside; a shim says when the instance is
//! behind its worktree.

use crate::core::copy_fixture;
use crate::support::*;
use std::path::Path;

/// Ports of these tests' own: instances of other data directories on the
/// engine (other users', CI jobs) may hold the default ones.
const RANGE: &str = "[ports]\nhost_range = [47800, 47849]\n";

/// A package pip installs with no index and no build isolation.
fn write_offline_package(repo: &Path) {
    write(
        &repo.join("extra/setup.py"),
        "from setuptools import setup\nsetup(name=\"extra\", version=\"1.0\", py_modules=[\"extra\"])\n",
    );
    write(&repo.join("extra/extra.py"), "WORD = \"extra-ok\"\n");
}

const PIP_INSTALL_EXTRA: &str =
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
