//! The developer's side of an instance: the project's venv and the host's
//! git identity are the environment inside.

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
fn the_venv_is_active_in_exec_shell_and_shims() {
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
