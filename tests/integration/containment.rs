//! A repository cannot reach the host through `.sky-dev/`, through files
//! planted above it, through a copied `.instance` or through its setup
//! inputs: each hole reproduced, and refused.

use crate::support::*;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;
use std::process::Command;

const RANGE: &str = "[ports]\nhost_range = [47850, 47899]\n";

/// A git repository whose recipe runs `steps` (TOML strings) on busybox.
fn repo_with_steps(env: &TestEnv, rel: &str, steps: &str, extra: &str) -> std::path::PathBuf {
    let repo = env.repo(rel);
    write(
        &repo.join("devinst.toml"),
        &format!(
            "[container]\nimage = \"{BUSYBOX}\"\n{RANGE}[setup]\ncommands = [{steps}]\n{extra}"
        ),
    );
    repo
}

fn owner(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().uid()
}

fn chown(owner: &str, path: &Path) {
    let status = Command::new("chown")
        .args(["-R", owner])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn chmod(mode: &str, path: &Path) {
    let status = Command::new("chmod").arg(mode).arg(path).status().unwrap();
    assert!(status.success());
}

/// Runs devinst in `dir` as the ordinary user `uid` (no engine access), with
/// a home and data directory of their own there.
fn as_user(uid: u32, dir: &Path, args: &[&str]) -> Run {
    let out = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .arg(env!("CARGO_BIN_EXE_devinst"))
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("DEVINST_DATA_DIR", dir.join(".devinst-data"))
        .output()
        .unwrap();
    Run::from(out)
}

#[test]
fn a_committed_state_link_is_refused_until_untracked_and_removed() {
    let env = TestEnv::new();
    let repo = env.busybox_repo("contain-link", RANGE);
    let outside = env.tmp.path().join("host-dir");
    std::fs::create_dir(&outside).unwrap();
    std::fs::create_dir(repo.join(".sky-dev")).unwrap();
    symlink(&outside, repo.join(".sky-dev/state")).unwrap();
    git(&repo, &["add", "-f", ".sky-dev"]);
    git(&repo, &["commit", "-q", "-m", "plant"]);

    let run = env
        .run(&repo, &["setup"])
        .fails_with(1, "git tracks `.sky-dev/state`");
    assert!(
        run.stderr
            .contains("hint: untrack it with `git rm -r --cached .sky-dev`"),
        "{run}"
    );
    git(&repo, &["rm", "-q", "-r", "--cached", ".sky-dev"]);
    git(&repo, &["commit", "-q", "-m", "untrack"]);
    // Untracked, the link is still refused: devinst follows none in its own directory.
    let run = env
        .run(&repo, &["setup"])
        .fails_with(1, ".sky-dev/state` is a symbolic link");
    assert!(run.stderr.contains("hint: remove the link"), "{run}");
    assert!(!repo.join(".sky-dev/.instance").exists(), "nothing set up");

    std::fs::remove_file(repo.join(".sky-dev/state")).unwrap();
    env.run(&repo, &["setup"]).ok();
    env.sh(&repo, "echo x > /root/.sky/written").ok();
    assert!(repo.join(".sky-dev/state/written").is_file());
    let left: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
    assert!(left.is_empty(), "nothing written outside: {left:?}");
}

#[test]
fn a_planted_bin_file_is_refused_committed_and_gone_after_setup() {
    let env = TestEnv::new();
    let repo = env.busybox_repo("contain-bin", RANGE);
    write(&repo.join(".sky-dev/bin/ls"), "#!/bin/sh\necho planted\n");
    git(&repo, &["add", "-f", ".sky-dev/bin/ls"]);
    git(&repo, &["commit", "-q", "-m", "plant"]);
    env.run(&repo, &["setup"])
        .fails_with(1, "git tracks `.sky-dev/bin/ls`");
    assert!(repo.join(".sky-dev/bin/ls").exists());

    // Untracked (but still on disk), it does not survive a setup.
    git(&repo, &["rm", "-q", "--cached", ".sky-dev/bin/ls"]);
    git(&repo, &["commit", "-q", "-m", "untrack"]);
    env.run(&repo, &["setup"]).ok();
    assert!(
        !repo.join(".sky-dev/bin/ls").exists(),
        "planted `ls` removed"
    );
    assert!(repo.join(".sky-dev/bin/activate").is_file());
    // Planted again after setup: the next setup removes it too.
    write(&repo.join(".sky-dev/bin/ls"), "#!/bin/sh\necho planted\n");
    env.run(&repo, &["setup"]).ok();
    assert!(
        !repo.join(".sky-dev/bin/ls").exists(),
        "planted `ls` removed"
    );
}

#[test]
fn user_host_start_never_chowns_through_a_state_link() {
    let env = TestEnv::new();
    let repo = repo_with_steps(&env, "contain-chown", "", "");
    let toml = std::fs::read_to_string(repo.join("devinst.toml")).unwrap();
    let toml = toml.replacen("[container]\n", "[container]\nuser = \"host\"\n", 1);
    write(&repo.join("devinst.toml"), &toml);
    // As in engines.rs: the worktree belongs to 1234, devinst runs as root.
    chown("1234:1234", &repo);
    let devinst = |args: &[&str]| env.run_on_others_worktree(&repo, args);
    devinst(&["setup"]).ok();
    // Root's directory, linked in where the state directory goes.
    let target = env.tmp.path().join("roots-dir");
    std::fs::create_dir(&target).unwrap();
    std::fs::remove_dir(repo.join(".sky-dev/state")).unwrap();
    symlink(&target, repo.join(".sky-dev/state")).unwrap();

    devinst(&["start"]).fails_with(1, ".sky-dev/state` is a symbolic link");
    assert_eq!(owner(&target), 0, "the link's target was not given away");
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    assert!(!container_exists(&container), "nothing was started");
}

#[test]
fn a_sky_dev_planted_above_by_another_user_is_never_used() {
    let env = TestEnv::new();
    // Another user's directory above the victim's, shared (mode 1777) as
    // /tmp is, holding a recipe and an instance of their own.
    let planted = env.tmp.path().join("planted");
    write(
        &planted.join("devinst.toml"),
        &format!("[container]\nimage = \"{BUSYBOX}\"\n{RANGE}[setup]\ncommands = [\"touch /app/pwned\"]\n"),
    );
    env.run(&planted, &["setup"]).ok();
    chown("4321:4321", &planted);
    chmod("1777", &planted);
    chmod("755", env.tmp.path());

    // The victim's own repository below it: the search stops at its root.
    let victim = env.repo("planted/victim");
    env.run(&victim, &["start"])
        .fails_with(1, "no devinst instance here");
    // A plain directory of root's below it: another user's files.
    let plain = planted.join("plain");
    std::fs::create_dir(&plain).unwrap();
    env.run(&plain, &["start"])
        .fails_with(1, "belongs to another user (uid 4321)");
    // An ordinary user (4322) in a directory of their own below it.
    let own = planted.join("own");
    std::fs::create_dir(&own).unwrap();
    chown("4322:4322", &own);
    as_user(4322, &own, &["exec", "--", "true"])
        .fails_with(125, "belongs to another user (uid 4321)");
    assert!(
        !planted.join("pwned").exists(),
        "the planted steps never ran"
    );
}

#[test]
fn a_recipe_root_owns_is_used_by_the_worktree_owner() {
    let env = TestEnv::new();
    // The user's own repository, with a recipe an administrator put there.
    let repo = env.busybox_repo("contain-root-recipe", RANGE);
    chown("4322:4322", &repo);
    chown("0:0", &repo.join("devinst.toml"));
    chmod("755", env.tmp.path());
    as_user(4322, &repo, &["setup"]).ok();
    assert_eq!(owner(&repo.join(".sky-dev/.instance")), 4322);
}

#[test]
fn a_copied_instance_file_neither_execs_in_nor_destroys_the_other_container() {
    let env = TestEnv::new();
    let a = env.busybox_repo("contain-copy-a", RANGE);
    env.run(&a, &["setup"]).ok();
    env.run(&a, &["start"]).ok();
    let container = instance_value(&a, "DEVINST_CONTAINER").unwrap();
    let b = env.busybox_repo("contain-copy-b", RANGE);
    std::fs::create_dir(b.join(".sky-dev")).unwrap();
    for file in [".instance", ".port"] {
        std::fs::copy(a.join(".sky-dev").join(file), b.join(".sky-dev").join(file)).unwrap();
    }

    let run = env
        .run(&b, &["exec", "--", "touch", "/app/from-b"])
        .fails_with(125, "was written for the worktree");
    assert!(run.stderr.contains("hint: run `devinst setup`"), "{run}");
    assert!(!a.join("from-b").exists(), "nothing ran in a's container");
    env.run(&b, &["destroy", "--yes"])
        .fails_with(1, "was written for the worktree");
    assert_eq!(inspect(&container, "{{.State.Running}}"), "true");

    // The hint's way out: b's own instance, a's left as it was.
    env.run(&b, &["setup"]).ok();
    let name = instance_value(&b, "DEVINST_NAME").unwrap();
    assert!(
        name.starts_with("contain-copy-b"),
        "b's own name, not a's: {name}"
    );
    env.run(&b, &["exec", "--", "touch", "/app/from-b"]).ok();
    assert!(b.join("from-b").exists() && !a.join("from-b").exists());
}

#[test]
fn a_container_from_another_data_directory_is_not_ours() {
    let env = TestEnv::new();
    let repo = env.busybox_repo("contain-owner", RANGE);
    env.run(&repo, &["setup"]).ok();
    let name = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    // Labelled for this very worktree, but made from another data directory.
    let worktree = format!("devinst.worktree={}", repo.display());
    let _other = Foreign::new(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "devinst.managed-by=devinst",
        "--label",
        &worktree,
        "--label",
        "devinst.data-dir=someone-else",
        BUSYBOX,
        "sleep",
        "3600",
    ]);
    env.run(&repo, &["exec", "--", "touch", "/tmp/ran"])
        .fails_with(125, "does not belong to this worktree");
    let probe = Command::new("docker")
        .args(["exec", &name, "test", "-e", "/tmp/ran"])
        .status()
        .unwrap();
    assert!(!probe.success(), "nothing ran in the other container");
    env.run(&repo, &["destroy", "--yes"]).ok();
    assert!(
        container_exists(&name),
        "the other's container is left alone"
    );
}

#[test]
fn setup_inputs_outside_the_worktree_are_refused_at_config_time() {
    let env = TestEnv::new();
    for (input, line) in [("/dev/zero", 7), ("../../etc/shadow", 7)] {
        let repo = repo_with_steps(
            &env,
            &format!("contain-input-{line}-{}", input.len()),
            "\"true\"",
            &format!("inputs = [{input:?}]\n"),
        );
        let run = env
            .run(&repo, &["setup"])
            .fails_with(1, "not a path inside the worktree");
        for needle in ["devinst.toml", &format!("line {line}"), "setup.inputs"] {
            assert!(run.stderr.contains(needle), "{needle}\n{run}");
        }
    }
}

#[test]
fn a_setup_input_linked_out_of_the_worktree_is_not_read() {
    let env = TestEnv::new();
    let secret = env.tmp.path().join("secret");
    std::fs::write(&secret, "host secret\n").unwrap();
    let repo = repo_with_steps(
        &env,
        "contain-input-link",
        "\"true\"",
        "inputs = [\"requirements.txt\"]\n",
    );
    symlink(&secret, repo.join("requirements.txt")).unwrap();
    env.run(&repo, &["setup"]).ok();
    let run = env
        .run(&repo, &["start"])
        .fails_with(1, "`requirements.txt` leads outside the worktree");
    assert!(run.stderr.contains("hint: list regular files"), "{run}");
}
