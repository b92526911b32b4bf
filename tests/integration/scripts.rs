//! The scripts `setup` writes (shims, start/stop-container, activate) and where
//! it writes them: hostile worktree paths, bash and zsh, shellcheck, re-runs,
//! git's view of the worktree, and worktrees outside git.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A worktree directory name that breaks any script that does not quote.
const HOSTILE: &str = "we ird/it's $(touch PWNED) `x`\nnl";
/// The same without the newline.
const HOSTILE_ONE_LINE: &str = "we ird/it's $(touch PWNED) `x`";

/// A shim that prints each argument it receives followed by `|`.
const ECHOARGS: &str =
    "[shims]\nechoargs = [\"sh\", \"-c\", \"printf '%s|' \\\"$@\\\"\", \"sh\"]\n";

/// What `busybox_repo` writes, for tests that rewrite the recipe.
fn busybox_recipe(extra: &str) -> String {
    format!("[container]\nimage = \"{BUSYBOX}\"\n[setup]\ncommands = []\n{extra}")
}

fn text(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Every path named `name` under `dir`, symlinks not followed.
fn find_named(dir: &Path, name: &str, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name() == name {
            found.push(path.clone());
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            find_named(&path, name, found);
        }
    }
}

/// `sh` sources `.sky-dev/.instance` and prints `key`, byte for byte.
fn sourced_value(root: &Path, key: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(". ./.sky-dev/.instance; printf %s \"${key}\""))
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sourcing .instance failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// setup, start-container, a shim with hostile arguments, stop-container, all
/// in the worktree `root`, whose path is hostile; nothing may be executed
/// from the path.
fn hostile_flow(env: &TestEnv, root: &Path) {
    env.run(root, &["setup"]).ok();
    assert_eq!(
        sourced_value(root, "DEVINST_WORKTREE"),
        text(root),
        "`.instance` records the exact path"
    );
    let bin = root.join(".sky-dev/bin");
    env.script(root, &bin.join("start-container"), &[]).ok();
    let container = instance_value(root, "DEVINST_CONTAINER").unwrap();
    assert_eq!(inspect(&container, "{{.State.Running}}"), "true");
    assert_eq!(
        inspect(&container, "{{index .Config.Labels \"devinst.worktree\"}}"),
        text(root),
        "the container is labelled with the exact path"
    );

    let run = env
        .script(
            root,
            &bin.join("echoargs"),
            &["a b", "$HOME", "it's", "\"q\"", "", "*"],
        )
        .ok();
    assert_eq!(run.stdout, "a b|$HOME|it's|\"q\"||*|", "{run}");
    // The worktree is mounted: the container sees the same files.
    let run = env.run(root, &["exec", "--", "cat", "/app/README"]).ok();
    assert_eq!(run.stdout, "test\n");

    env.script(root, &bin.join("stop-container"), &[]).ok();
    assert_eq!(inspect(&container, "{{.State.Running}}"), "false");

    let mut pwned = Vec::new();
    find_named(env.tmp.path(), "PWNED", &mut pwned);
    find_named(&env.home, "PWNED", &mut pwned);
    let cwd = std::env::current_dir().unwrap().join("PWNED");
    if cwd.exists() {
        pwned.push(cwd);
    }
    assert!(pwned.is_empty(), "a path was executed as code: {pwned:?}");
}

#[test]
fn a_hostile_git_worktree_path_is_never_code() {
    let env = TestEnv::new();
    let root = env.busybox_repo(HOSTILE, ECHOARGS);
    hostile_flow(&env, &root);
}

#[test]
fn a_hostile_git_worktree_path_without_a_newline_is_never_code() {
    let env = TestEnv::new();
    let root = env.busybox_repo(HOSTILE_ONE_LINE, ECHOARGS);
    hostile_flow(&env, &root);
}

#[test]
fn a_hostile_worktree_path_outside_git_is_never_code() {
    let env = TestEnv::new();
    let root = env.tmp.path().join(HOSTILE);
    write(&root.join("devinst.toml"), &busybox_recipe(ECHOARGS));
    write(&root.join("README"), "test\n");
    let root = root.canonicalize().unwrap();
    hostile_flow(&env, &root);
}

/// Sources `activate` in `shell` and checks what it sets, then that sourcing
/// it twice and `deactivate` leave the shell exactly as it was.
fn check_activate(env: &TestEnv, root: &Path, shell: &[&str]) {
    let activate = root.join(".sky-dev/bin/activate");
    let bin = root.join(".sky-dev/bin");
    let name = instance_value(root, "DEVINST_NAME").unwrap();
    let port = instance_value(root, "DEVINST_PORT").unwrap();
    let run_shell = |script: &str| -> Run {
        let out = Command::new(shell[0])
            .args(&shell[1..])
            .arg(script)
            .arg(shell[0])
            .arg(&activate)
            .current_dir(root)
            .env("HOME", &env.home)
            .env_remove("DEVINST_NO_PROMPT")
            .output()
            .unwrap();
        Run::from(out)
    };
    let prelude = "PATH=/usr/bin:/bin; export PATH; PS1='orig$ '; ";

    let run = run_shell(&format!(
        "{prelude}source \"$1\"; \
         printf '%s\\n' \"$PATH\" \"$DEVINST_INSTANCE\" \"$DEVINST_PORT\" \
         \"$SKYPILOT_DEV_INSTANCE\" \"$SKYPILOT_DEV_PORT\" \"$PS1\"; type deactivate"
    ))
    .ok();
    assert_eq!(run.stderr, "", "{shell:?}: {run}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines.len() >= 7, "{shell:?}: {run}");
    assert_eq!(
        lines[0],
        format!("{}:/usr/bin:/bin", text(&bin)),
        "{shell:?}: bin first on PATH"
    );
    assert_eq!(lines[1], name, "{shell:?}: DEVINST_INSTANCE");
    assert_eq!(lines[2], port, "{shell:?}: DEVINST_PORT");
    assert_eq!(lines[3], name, "{shell:?}: SKYPILOT_DEV_INSTANCE");
    assert_eq!(lines[4], port, "{shell:?}: SKYPILOT_DEV_PORT");
    assert_eq!(lines[5], format!("({name}) orig$ "), "{shell:?}: PS1");
    assert!(
        lines[6..].join("\n").contains("function"),
        "{shell:?}: deactivate is a function\n{run}"
    );

    let run = run_shell(&format!(
        "{prelude}old_path=$PATH; old_ps1=$PS1; \
         source \"$1\"; source \"$1\"; \
         printf 'twice PATH=%s\\n' \"$PATH\"; printf 'twice PS1=%s\\n' \"$PS1\"; \
         deactivate; \
         [ \"$PATH\" = \"$old_path\" ] || printf 'PATH not restored: %s\\n' \"$PATH\"; \
         [ \"$PS1\" = \"$old_ps1\" ] || printf 'PS1 not restored: %s\\n' \"$PS1\"; \
         for v in DEVINST_INSTANCE DEVINST_PORT DEVINST_WORKTREE DEVINST_CONTAINER \
                  SKYPILOT_DEV_INSTANCE SKYPILOT_DEV_PORT _DEVINST_OLD_PATH _DEVINST_OLD_PS1; do \
             eval \"[ -n \\\"\\${{$v+x}}\\\" ]\" && printf 'still set: %s\\n' \"$v\"; \
         done; \
         command -v deactivate >/dev/null 2>&1 && echo 'deactivate still defined'; \
         command -v _devinst_deactivate >/dev/null 2>&1 && echo '_devinst_deactivate still defined'; \
         echo end"
    ))
    .ok();
    assert_eq!(run.stderr, "", "{shell:?}: {run}");
    assert_eq!(
        run.stdout,
        format!(
            "twice PATH={}:/usr/bin:/bin\ntwice PS1=({name}) orig$ \nend\n",
            text(&bin)
        ),
        "{shell:?}: sourcing twice stacks nothing; deactivate restores all\n{run}"
    );
}

#[test]
fn activate_and_deactivate_in_bash_and_zsh() {
    let env = TestEnv::new();
    let root = env.busybox_repo("activate me/it's", "");
    env.run(&root, &["setup"]).ok();
    check_activate(&env, &root, &["bash", "--norc", "--noprofile", "-c"]);
    check_activate(&env, &root, &["zsh", "-f", "-c"]);
}

fn shellcheck(root: &Path) {
    let bin = root.join(".sky-dev/bin");
    let mut failures = Vec::new();
    for (file, dialect) in [
        ("echoargs", "sh"),
        ("start-container", "sh"),
        ("stop-container", "sh"),
        ("activate", "bash"),
    ] {
        let out = Command::new("shellcheck")
            .args(["-s", dialect])
            .arg(bin.join(file))
            .output()
            .expect("shellcheck is installed");
        if !out.status.success() {
            failures.push(format!(
                "{file} (-s {dialect}):\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "shellcheck:\n{}", failures.join("\n"));
}

#[test]
fn rendered_scripts_pass_shellcheck() {
    let env = TestEnv::new();
    let root = env.busybox_repo("lint", ECHOARGS);
    env.run(&root, &["setup"]).ok();
    shellcheck(&root);
}

#[test]
fn rendered_scripts_pass_shellcheck_for_a_hostile_path() {
    let env = TestEnv::new();
    // Outside git, so the path may hold a newline too (see the git test above).
    let root = env.tmp.path().join(HOSTILE);
    write(&root.join("devinst.toml"), &busybox_recipe(ECHOARGS));
    let root = root.canonicalize().unwrap();
    env.run(&root, &["setup"]).ok();
    shellcheck(&root);
}

#[test]
fn setup_again_keeps_port_and_state_and_rewrites_scripts_and_shims() {
    let env = TestEnv::new();
    let root = env.busybox_repo("idem", "[shims]\nalpha = [\"echo\", \"a\"]\n");
    env.run(&root, &["setup"]).ok();
    let dev = root.join(".sky-dev");
    let port = std::fs::read_to_string(dev.join(".port")).unwrap();
    write(&dev.join("state/keep.txt"), "kept\n");
    let stop = std::fs::read_to_string(dev.join("bin/stop-container")).unwrap();
    std::fs::remove_file(dev.join("bin/start-container")).unwrap();
    write(&dev.join("bin/stop-container"), "#!/bin/sh\nexit 99\n");
    assert!(dev.join("bin/alpha").is_file());

    write(
        &root.join("devinst.toml"),
        &busybox_recipe("[shims]\nbeta = [\"echo\", \"b\"]\n"),
    );
    env.run(&root, &["setup"]).ok();

    assert_eq!(std::fs::read_to_string(dev.join(".port")).unwrap(), port);
    assert_eq!(
        instance_value(&root, "DEVINST_PORT").unwrap(),
        port.trim(),
        ".instance agrees with .port"
    );
    assert_eq!(
        std::fs::read_to_string(dev.join("state/keep.txt")).unwrap(),
        "kept\n"
    );
    let start = dev.join("bin/start-container");
    assert!(start.is_file(), "start-container is written again");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&start).unwrap().permissions().mode() & 0o111,
        0o111,
        "start-container is executable"
    );
    assert_eq!(
        std::fs::read_to_string(dev.join("bin/stop-container")).unwrap(),
        stop,
        "a damaged script is rewritten"
    );
    assert!(!dev.join("bin/alpha").exists(), "a dropped shim disappears");
    assert!(dev.join("bin/beta").is_file(), "a new shim appears");
    assert!(dev.join("bin/activate").is_file());
}

fn exclude_file(dir: &Path) -> PathBuf {
    let path = git(dir, &["rev-parse", "--git-path", "info/exclude"]);
    dir.join(path.trim_end_matches('\n'))
}

#[test]
fn setup_leaves_git_status_clean_in_main_and_linked_worktrees() {
    let env = TestEnv::new();
    let main = env.busybox_repo("gmain", "");
    git(&main, &["add", "devinst.toml"]);
    git(&main, &["commit", "-q", "-m", "recipe"]);

    env.run(&main, &["setup"]).ok();
    assert!(main.join(".sky-dev/.instance").is_file());
    assert_eq!(git(&main, &["status", "--porcelain"]), "");
    let exclude = std::fs::read_to_string(exclude_file(&main)).unwrap();
    assert!(
        exclude.lines().any(|l| l == "/.sky-dev/"),
        "exclude file:\n{exclude}"
    );
    env.run(&main, &["setup"]).ok();
    let exclude = std::fs::read_to_string(exclude_file(&main)).unwrap();
    assert_eq!(
        exclude.lines().filter(|l| *l == "/.sky-dev/").count(),
        1,
        "added once, not per run:\n{exclude}"
    );

    let linked = env.tmp.path().join("glinked");
    git(&main, &["worktree", "add", "-q", text(&linked)]);
    let linked = linked.canonicalize().unwrap();
    let sub = linked.join("sub/dir");
    std::fs::create_dir_all(&sub).unwrap();
    env.run(&sub, &["setup"]).ok();
    assert!(
        linked.join(".sky-dev/.instance").is_file(),
        ".sky-dev at the linked worktree's root"
    );
    assert!(!sub.join(".sky-dev").exists(), "not in the subdirectory");
    assert!(!linked.join("sub/.sky-dev").exists());
    assert_eq!(sourced_value(&linked, "DEVINST_WORKTREE"), text(&linked));
    assert_eq!(git(&linked, &["status", "--porcelain"]), "");
    let exclude = std::fs::read_to_string(exclude_file(&linked)).unwrap();
    assert!(
        exclude.lines().any(|l| l == "/.sky-dev/"),
        "linked worktree's exclude file:\n{exclude}"
    );
    assert_eq!(
        git(&main, &["status", "--porcelain"]),
        "",
        "still clean in main"
    );
}

#[test]
fn outside_git_the_directory_itself_is_the_worktree() {
    let env = TestEnv::new();
    let name = format!("plain-{}", std::process::id());
    let dir = env.tmp.path().join(&name);
    write(&dir.join("devinst.toml"), &busybox_recipe(""));
    let dir = dir.canonicalize().unwrap();
    let in_git = Command::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!in_git.status.success(), "precondition: not inside git");

    env.run(&dir, &["setup"]).ok();
    assert!(dir.join(".sky-dev/.instance").is_file());
    assert!(dir.join(".sky-dev/bin/start-container").is_file());
    assert_eq!(sourced_value(&dir, "DEVINST_WORKTREE"), text(&dir));
    assert_eq!(instance_value(&dir, "DEVINST_NAME").unwrap(), name);
    assert!(!dir.join(".git").exists(), "no repository was made");
}
