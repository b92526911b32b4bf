//! Warm starts: a new worktree's instance starts from a sibling's finished
//! setup steps (same repository, image, steps and inputs) instead of
//! running them again.

use crate::core::copy_fixture;
use crate::support::{git, quiet_docker, write, TestEnv, BUSYBOX};
use std::path::{Path, PathBuf};

/// Ports of this module's own instances.
const RANGE: &str = "[ports]\nhost_range = [47970, 47999]\n";

/// Steps that leave a mark in the container's own filesystem, a "venv" in
/// the worktree, and a count of their runs in this worktree's `.sky-dev/`.
fn recipe(tag: &str, extra_step: &str) -> String {
    // The test's tag in the first step: each test's steps, and so its warm
    // image, are its own.
    format!(
        "[container]\nimage = \"{BUSYBOX}\"\n{RANGE}[setup]\ncommands = [\
         \"echo ran >> /app/.sky-dev/runs # {tag}\", \
         \"mkdir -p /opt/tool && cat /app/deps.txt > /opt/tool/version\", \
         \"mkdir -p /app/.sky-dev/venv/bin && echo venv > /app/.sky-dev/venv/bin/python{extra_step}\"]\n\
         inputs = [\"deps.txt\"]\noutputs = [\".sky-dev/venv/bin/python\"]\n"
    )
}

/// A repository (committed) and `n` linked worktrees of it, all set up.
fn family(env: &TestEnv, what: &str, toml: &str, linked: usize) -> Vec<PathBuf> {
    let main = env.repo(&format!("{what}-{}", std::process::id()));
    write(&main.join("devinst.toml"), toml);
    write(&main.join("deps.txt"), "v1\n");
    git(&main, &["add", "."]);
    git(&main, &["commit", "-q", "-m", "recipe"]);
    let mut all = vec![main.clone()];
    for i in 0..linked {
        let dir = main.with_file_name(format!(
            "{}-wt{i}",
            main.file_name().unwrap().to_string_lossy()
        ));
        git(&main, &["worktree", "add", "-q", dir.to_str().unwrap()]);
        all.push(dir.canonicalize().unwrap());
    }
    for dir in &all {
        env.run(dir, &["setup"]).ok();
    }
    all
}

fn runs(worktree: &Path) -> usize {
    std::fs::read_to_string(worktree.join(".sky-dev/runs"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Removes the warm image made from a worktree's steps when the test ends
/// (held before the TestEnv, so after its containers go): only this test's,
/// never another test's or user's.
struct WarmImage(Option<PathBuf>);

impl WarmImage {
    fn of(&mut self, worktree: &Path) {
        self.0 = Some(worktree.to_owned());
    }
}

impl Drop for WarmImage {
    fn drop(&mut self) {
        let Some(worktree) = &self.0 else { return };
        let Ok(text) = std::fs::read_to_string(worktree.join(".sky-dev/.warm")) else {
            return;
        };
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        if let Some(fingerprint) = value["fingerprint"].as_str() {
            quiet_docker(&["rmi", &format!("devinst-warm/{fingerprint}:1")]);
        }
    }
}

#[test]
fn a_new_worktree_starts_warm_with_the_siblings_results_as_its_own() {
    let mut image = WarmImage(None);
    let env = TestEnv::new();
    let trees = family(&env, "warm", &recipe("warm", ""), 1);
    image.of(&trees[0]);
    let (a, b) = (&trees[0], &trees[1]);
    let cold = env.run(a, &["start"]).ok();
    assert!(cold.stderr.contains("setup step 3/3"), "{cold}");
    assert_eq!(runs(a), 1);

    let warm = env.run(b, &["start"]).ok();
    assert!(
        warm.stderr.contains(&format!(
            "started warm from instance `{}`",
            a.file_name().unwrap().to_string_lossy()
        )),
        "{warm}"
    );
    assert!(!warm.stderr.contains("setup step 1/3"), "{warm}");
    assert_eq!(runs(b), 0, "the steps did not run in the new worktree");
    // What the steps changed in the container and the worktree came along.
    assert_eq!(env.sh(b, "cat /opt/tool/version").ok().stdout, "v1\n");
    assert_eq!(
        std::fs::read_to_string(b.join(".sky-dev/venv/bin/python")).unwrap(),
        "venv\n"
    );
    // The clone is the new worktree's own.
    env.sh(
        b,
        "echo changed > /app/.sky-dev/venv/bin/python && echo b > /opt/tool/version",
    )
    .ok();
    assert_eq!(
        std::fs::read_to_string(a.join(".sky-dev/venv/bin/python")).unwrap(),
        "venv\n"
    );
    assert_eq!(env.sh(a, "cat /opt/tool/version").ok().stdout, "v1\n");
    // Later starts see a container made from the recipe: no warning, no steps.
    let again = env.run(b, &["start"]).ok();
    assert!(
        !again.stderr.contains("different recipe") && !again.stderr.contains("setup step 1/3"),
        "{again}"
    );
    assert!(std::fs::read_dir(b.join(".sky-dev")).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".warm-")));
}

#[test]
fn a_changed_input_or_step_or_cold_start_runs_the_steps() {
    let mut image = WarmImage(None);
    let env = TestEnv::new();
    let trees = family(&env, "warmdiff", &recipe("warmdiff", ""), 3);
    image.of(&trees[0]);
    env.run(&trees[0], &["start"]).ok();

    // Another input: the full setup.
    write(&trees[1].join("deps.txt"), "v2\n");
    let changed = env.run(&trees[1], &["start"]).ok();
    assert!(
        changed.stderr.contains("setup step 1/3") && !changed.stderr.contains("started warm"),
        "{changed}"
    );
    assert_eq!(
        env.sh(&trees[1], "cat /opt/tool/version").ok().stdout,
        "v2\n"
    );

    // Another step: the full setup.
    write(
        &trees[2].join("devinst.toml"),
        &recipe("warmdiff", " && true"),
    );
    let other = env.run(&trees[2], &["start"]).ok();
    assert!(
        other.stderr.contains("setup step 3/3") && !other.stderr.contains("started warm"),
        "{other}"
    );

    // --cold: the full setup though a sibling matches.
    let cold = env.run(&trees[3], &["start", "--cold"]).ok();
    assert!(
        cold.stderr.contains("setup step 3/3") && !cold.stderr.contains("started warm"),
        "{cold}"
    );
    assert_eq!(runs(&trees[3]), 1);
}

#[test]
fn warm_false_runs_the_steps_and_a_cut_short_clone_is_completed() {
    let mut image = WarmImage(None);
    let env = TestEnv::new();
    let off = format!("{}warm = false\n", recipe("warmoff", ""));
    let trees = family(&env, "warmoff", &off, 1);
    env.run(&trees[0], &["start"]).ok();
    let run = env.run(&trees[1], &["start"]).ok();
    assert!(run.stderr.contains("setup step 3/3"), "{run}");

    // A copy a killed start left behind is removed, and the start is warm.
    let trees = family(&env, "warmcut", &recipe("warmcut", ""), 1);
    image.of(&trees[0]);
    env.run(&trees[0], &["start"]).ok();
    let left = trees[1].join(".sky-dev/venv.warm-999999/bin");
    std::fs::create_dir_all(&left).unwrap();
    std::fs::write(left.join("python"), "half").unwrap();
    let warm = env.run(&trees[1], &["start"]).ok();
    assert!(warm.stderr.contains("started warm"), "{warm}");
    assert!(!trees[1].join(".sky-dev/venv.warm-999999").exists());
    assert_eq!(
        std::fs::read_to_string(trees[1].join(".sky-dev/venv/bin/python")).unwrap(),
        "venv\n"
    );
}

#[test]
fn a_real_python_project_starts_warm_and_runs_its_own_code() {
    let mut image = WarmImage(None);
    let env = TestEnv::new();
    let main = env.repo(&format!("warmpy-{}", std::process::id()));
    image.of(&main);
    copy_fixture(Path::new("tests/fixtures/skypkg"), &main);
    write(&main.join("devinst.toml"), RANGE);
    git(&main, &["add", "."]);
    git(&main, &["commit", "-q", "-m", "project"]);
    let linked = main.with_file_name(format!("{}-b", main.file_name().unwrap().to_string_lossy()));
    git(&main, &["worktree", "add", "-q", linked.to_str().unwrap()]);
    let linked = linked.canonicalize().unwrap();
    for dir in [&main, &linked] {
        env.run(dir, &["setup"]).ok();
    }
    env.run(&main, &["start"]).ok();
    let warm = env.run(&linked, &["start"]).ok();
    assert!(warm.stderr.contains("started warm"), "{warm}");
    // The console script runs, and imports the new worktree's own code.
    let cli = linked.join("skypkg/cli.py");
    let text = std::fs::read_to_string(&cli).unwrap();
    write(&cli, &text.replace("\"skypkg sky \"", "\"skypkg-b sky \""));
    let sky = env
        .script(&linked, &linked.join(".sky-dev/bin/sky"), &["hi"])
        .ok();
    assert_eq!(sky.stdout.trim(), r#"skypkg-b sky ["hi"]"#);
    let sky = env
        .script(&main, &main.join(".sky-dev/bin/sky"), &["hi"])
        .ok();
    assert_eq!(sky.stdout.trim(), r#"skypkg sky ["hi"]"#);
}

#[test]
fn a_link_a_container_planted_never_carries_a_host_file_into_a_warm_start() {
    let mut image = WarmImage(None);
    let env = TestEnv::new();
    let outside = env.tmp.path().join("host-secrets");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("out"), "secret\n").unwrap();
    // The step makes `build` a link to a host directory: seen from the host,
    // the sibling's `build/out` is the host's file.
    let toml = format!(
        "[container]\nimage = \"{BUSYBOX}\"\n{RANGE}[setup]\ncommands = [\"ln -sfn {} /app/build\"]\n\
         outputs = [\"build/out\"]\n",
        outside.display()
    );
    let trees = family(&env, "warmlink", &toml, 1);
    image.of(&trees[0]);
    env.run(&trees[0], &["start"]).ok();
    let second = env.run(&trees[1], &["start"]).ok();
    assert!(!second.stderr.contains("started warm"), "{second}");
    let copied = std::fs::symlink_metadata(trees[1].join("build")).unwrap();
    assert!(
        copied.file_type().is_symlink(),
        "its own step's link, no copy of the host's file"
    );
}
