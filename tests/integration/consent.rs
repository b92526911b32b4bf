//! A repository is not the user: what a recipe asks for beyond the defaults
//! (credentials, the engine, host networking, a wide bind, every variable,
//! shims that shadow host commands) waits for the user's consent, and the
//! user's own config and environment beat the recipe.

use crate::support::*;
use std::path::{Path, PathBuf};

/// Host ports for this module, apart from other modules'.
const RANGE: &str = "[ports]\nhost_range = [47800, 47899]\n";

/// The engine this run uses, as the `docker` CLI of the checks sees it.
fn engine_uri() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
}

/// A repository whose recipe is exactly `toml` (plus this module's ports).
fn repo_with_recipe(env: &TestEnv, rel: &str, toml: &str) -> PathBuf {
    let repo = env.repo(rel);
    write(&repo.join("devinst.toml"), &format!("{RANGE}{toml}"));
    repo
}

/// The busybox recipe: `extra` first (so a bare key lands in `[ports]`),
/// `extra_container` under `[container]`.
fn busybox(extra_container: &str, extra: &str) -> String {
    format!("{extra}[container]\nimage = \"{BUSYBOX}\"\n{extra_container}[setup]\ncommands = []\n")
}

/// A directory outside the test's HOME, with one file in it.
fn outside_home(env: &TestEnv) -> PathBuf {
    let dir = env.tmp.path().join("outside");
    write(&dir.join("secret"), "s3cret\n");
    dir.canonicalize().unwrap()
}

#[track_caller]
fn refused(run: Run, code: i32, needles: &[&str]) -> Run {
    let run = run.fails_with(code, "`devinst trust`");
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "stderr lacks {needle:?}\n{run}"
        );
    }
    run
}

#[test]
fn credential_paths_beyond_the_defaults_wait_for_trust_then_mount_read_only() {
    let env = TestEnv::new();
    let outside = outside_home(&env);
    let o = outside.display();
    let paths = format!("[credentials]\npaths = [\"/var/run/docker.sock\", \"{o}\"]\n");
    let repo = repo_with_recipe(&env, "consent-creds", &busybox("", &paths));

    // No terminal, no consent: refused, naming each path, what it is and
    // the command that agrees; nothing is written.
    let run = refused(
        env.run(&repo, &["setup"]),
        1,
        &[
            "`[credentials] paths` = `/var/run/docker.sock`",
            "the engine's socket",
            &format!("`[credentials] paths` = `{o}`"),
            "outside your home",
        ],
    );
    assert!(run.stderr.contains("no terminal"), "{run}");
    assert!(!repo.join(".sky-dev").exists(), "nothing written");

    // Set up with this run's consent only: `start` still waits.
    let mut cmd = env.cmd(&repo);
    env.run_cmd(&repo, cmd.env("DEVINST_TRUST", "1").arg("setup"))
        .ok();
    refused(env.run(&repo, &["start"]), 1, &["/var/run/docker.sock"]);
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    assert!(!container_exists(&container), "no container made");

    // `devinst trust` works without a terminal and says what it agreed to.
    let run = env.trust(&repo);
    assert!(run.stdout.contains("/var/run/docker.sock"), "{run}");
    assert!(run.stdout.contains(&o.to_string()), "{run}");
    env.run(&repo, &["start"]).ok();
    let run = env
        .sh(
            &repo,
            &format!(
                "test -S /var/run/docker.sock && cat '{o}/secret' && \
                 if touch '{o}/planted' 2>/dev/null; then echo writable; else echo read-only; fi"
            ),
        )
        .ok();
    assert_eq!(run.stdout, "s3cret\nread-only\n");
    let mounts = inspect(&container, "{{range .Mounts}}{{.Source}}:{{.RW}} {{end}}");
    assert!(mounts.contains("/var/run/docker.sock:false"), "{mounts}");
    assert!(mounts.contains(&format!("{o}:false")), "{mounts}");

    // A change to what the recipe asks needs the user's word again, for
    // every command that would use it (a shim goes through `exec`).
    let wider = format!("[credentials]\npaths = [\"/var/run/docker.sock\", \"{o}\", \"/etc\"]\n");
    write(
        &repo.join("devinst.toml"),
        &format!("{RANGE}{}", busybox("", &wider)),
    );
    refused(
        env.run(&repo, &["exec", "--", "true"]),
        125,
        &["`[credentials] paths` = `/etc`"],
    );
    refused(env.run(&repo, &["start"]), 1, &["/etc"]);
    refused(env.run(&repo, &["setup"]), 1, &["/etc"]);
    // Asking for less than was agreed to needs no new word.
    let narrower = "[credentials]\npaths = [\"/var/run/docker.sock\"]\n";
    write(
        &repo.join("devinst.toml"),
        &format!("{RANGE}{}", busybox("", narrower)),
    );
    env.run(&repo, &["exec", "--", "true"]).ok();
}

#[test]
fn the_recipes_engine_host_loses_to_docker_host_and_the_users_config() {
    let env = TestEnv::new();
    let recipe = busybox("", "[engine]\nhost = \"tcp://127.0.0.1:1\"\n");
    let repo = repo_with_recipe(&env, "consent-engine", &recipe);
    let engine = engine_uri();
    let devinst = |docker_host: Option<&str>, args: &[&str]| {
        let mut cmd = env.cmd(&repo);
        cmd.env_remove("DOCKER_CONTEXT");
        match docker_host {
            Some(uri) => cmd.env("DOCKER_HOST", uri),
            None => cmd.env_remove("DOCKER_HOST"),
        };
        env.run_cmd(&repo, cmd.args(args))
    };

    // DOCKER_HOST is the user's word: the recipe's endpoint is not used, so
    // nothing needs consent.
    devinst(Some(&engine), &["setup"]).ok();
    devinst(Some(&engine), &["start"]).ok();
    let run = devinst(Some(&engine), &["exec", "--", "echo", "here"]).ok();
    assert_eq!(run.stdout, "here\n");

    // So is the user's own config.
    env.user_config(&format!("[engine]\nhost = \"{engine}\"\n"));
    let run = devinst(None, &["exec", "--", "echo", "mine"]).ok();
    assert_eq!(run.stdout, "mine\n");
    std::fs::remove_file(env.home.join(".config/devinst/config.toml")).unwrap();

    // With neither, the recipe's endpoint would be used: that waits for
    // consent, and only then is it tried.
    refused(
        devinst(None, &["start"]),
        1,
        &["`[engine] host` = `tcp://127.0.0.1:1`"],
    );
    env.trust(&repo);
    let run = devinst(None, &["start"]).fails_with(1, "cannot reach a container engine");
    assert!(
        run.stderr
            .contains("tcp://127.0.0.1:1 ([engine] host in devinst.toml)"),
        "{run}"
    );
}

#[test]
fn each_widening_key_is_refused_without_consent() {
    let env = TestEnv::new();
    for (rel, recipe, needles) in [
        (
            "consent-net",
            busybox("network = \"host\"\n", ""),
            &["`[container] network` = `host`", "the host's own network"][..],
        ),
        (
            "consent-bind",
            busybox("", "bind = \"0.0.0.0\"\n"),
            &["`[ports] bind` = `0.0.0.0`", "other machines"][..],
        ),
        (
            "consent-pass",
            busybox("", "[env]\npass = [\"*\"]\n"),
            &["`[env] pass` = `*`", "EVERY variable"][..],
        ),
        (
            "consent-sudo",
            busybox("", "[shims]\nsudo = [\"sh\", \"-c\", \"read p\"]\n"),
            &["`[shims] sudo`", "passwords"][..],
        ),
        (
            "consent-ls",
            busybox("", "[shims]\nls = [\"ls\", \"-l\"]\n"),
            &["`[shims] ls` = `ls -l`", "shadows `", "on your PATH"][..],
        ),
        (
            "consent-devinst",
            busybox("", "[shims]\ndevinst = \"true\"\n"),
            &["`[shims] devinst`", "devinst itself"][..],
        ),
    ] {
        let repo = repo_with_recipe(&env, rel, &recipe);
        refused(env.run(&repo, &["setup"]), 1, needles);
        assert!(!repo.join(".sky-dev").exists(), "{rel}: nothing written");
    }

    // DEVINST_TRUST=1 consents for one run (CI), and the key then applies.
    let repo = repo_with_recipe(&env, "consent-ci", &busybox("", "bind = \"0.0.0.0\"\n"));
    let ci = |args: &[&str]| {
        let mut cmd = env.cmd(&repo);
        env.run_cmd(&repo, cmd.env("DEVINST_TRUST", "1").args(args))
    };
    ci(&["setup"]).ok();
    ci(&["start"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    let binding = inspect(&container, "{{json .HostConfig.PortBindings}}");
    assert!(binding.contains(r#""HostIp":"0.0.0.0""#), "{binding}");
    // It recorded nothing: without it, the next run asks again.
    refused(env.run(&repo, &["exec", "--", "true"]), 125, &["0.0.0.0"]);
}

/// An executable `name` in a new directory, for PATH.
fn host_command(env: &TestEnv, name: &str) -> PathBuf {
    let dir = env.tmp.path().join("host-bin");
    write(&dir.join(name), "#!/bin/sh\necho host\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn path_with(dir: &Path) -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(&path));
    std::env::join_paths(dirs).unwrap()
}

#[test]
fn the_skypilot_defaults_and_a_plain_recipe_need_no_consent() {
    let env = TestEnv::new();
    // The SkyPilot defaults, on a machine where `sky` is installed: the
    // default shim shadows it, and that is what the user came for.
    let repo = env.repo("consent-defaults");
    let path = path_with(&host_command(&env, "sky"));
    let mut cmd = env.cmd(&repo);
    env.run_cmd(&repo, cmd.env("PATH", &path).arg("setup")).ok();
    assert!(repo.join(".sky-dev/bin/sky").is_file());
    let mut cmd = env.cmd(&repo);
    let run = env.run_cmd(&repo, cmd.env("PATH", &path).arg("trust")).ok();
    assert!(run.stderr.contains("nothing to trust"), "{run}");
    assert_eq!(run.stdout, "");

    // A plain recipe with a shim that shadows nothing: the whole flow, no
    // terminal, no trust.
    let recipe = busybox(
        "cpus = 0.5\n",
        "[shims]\nhello-consent = [\"echo\", \"hi\"]\n",
    );
    let repo = repo_with_recipe(&env, "consent-plain", &recipe);
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    let run = env
        .script(&repo, &repo.join(".sky-dev/bin/hello-consent"), &[])
        .ok();
    assert_eq!(run.stdout, "hi\n");
}

#[test]
fn on_a_terminal_the_asks_are_shown_and_asked_once() {
    let env = TestEnv::new();
    let repo = repo_with_recipe(&env, "consent-pty", &busybox("", "[env]\npass = [\"*\"]\n"));
    let no = r#"[["expect","allow this for this worktree?"],["send","n\n"]]"#;
    let run = on_pty(&env, &repo, (24, 200), no, &["setup"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.output.contains("`[env] pass` = `*`"), "{run:?}");
    assert!(run.output.contains("EVERY variable"), "{run:?}");
    assert!(run.output.contains("not allowed"), "{run:?}");
    assert!(!repo.join(".sky-dev").exists(), "nothing written");

    let yes = r#"[["expect","allow this for this worktree?"],["send","y\n"]]"#;
    let run = on_pty(&env, &repo, (24, 200), yes, &["setup"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.output.matches("allow this").count(), 1, "{run:?}");
    // Asked once: the answer is kept for this recipe.
    let run = on_pty(&env, &repo, (24, 200), "[]", &["start"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.output.contains("allow this"), "{run:?}");
    let mut cmd = env.cmd(&repo);
    let run = env
        .run_cmd(
            &repo,
            cmd.env("DEVINST_IT_VAR", "passed").args([
                "exec",
                "--",
                "sh",
                "-c",
                "echo $DEVINST_IT_VAR",
            ]),
        )
        .ok();
    assert_eq!(run.stdout, "passed\n");
}

#[test]
fn the_users_required_runtime_and_own_credentials_beat_the_recipe() {
    let env = TestEnv::new();
    let outside = outside_home(&env);
    let o = outside.display();
    env.user_config(&format!(
        "[container]\nruntime = \"runsc\"\n[credentials]\npaths = [\"{o}\"]\n[env]\npass = [\"MY_TOKEN\"]\n"
    ));
    // The recipe asks for another runtime, and for the user's own path and
    // variable (theirs to give: no consent needed).
    let recipe = busybox(
        "runtime = \"runc\"\n",
        &format!("[credentials]\npaths = [\"{o}\"]\n[env]\npass = [\"MY_TOKEN\"]\n"),
    );
    let repo = repo_with_recipe(&env, "consent-runtime", &recipe);
    let run = env.run(&repo, &["setup"]).ok();
    assert!(
        run.stderr
            .contains("`[container] runtime = \"runc\"` in devinst.toml is ignored"),
        "{run}"
    );
    env.run(&repo, &["start"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    assert_eq!(inspect(&container, "{{.HostConfig.Runtime}}"), "runsc");
    let mut cmd = env.cmd(&repo);
    let run = env
        .run_cmd(
            &repo,
            cmd.env("MY_TOKEN", "t0k").args([
                "exec",
                "--",
                "sh",
                "-c",
                &format!("uname -r; echo $MY_TOKEN; cat '{o}/secret'"),
            ]),
        )
        .ok();
    assert_eq!(run.stdout, "4.4.0\nt0k\ns3cret\n");

    // A recipe that says nothing of runtimes runs in the user's too.
    let recipe = busybox("", "");
    let plain = repo_with_recipe(&env, "consent-runtime-plain", &recipe);
    env.run(&plain, &["setup"]).ok();
    env.run(&plain, &["start"]).ok();
    let container = instance_value(&plain, "DEVINST_CONTAINER").unwrap();
    assert_eq!(inspect(&container, "{{.HostConfig.Runtime}}"), "runsc");
}
