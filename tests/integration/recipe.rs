//! `[container.build]`: image recipes built by the real engine, once per
//! content hash, and the errors that must come before or instead of a build.

use crate::support::*;
use std::cell::RefCell;
use std::path::Path;
use std::process::{Command, Stdio};

/// Removes the images a test built, after its `TestEnv` removed the
/// containers using them (declare it first: locals drop in reverse).
#[derive(Default)]
struct Images(RefCell<Vec<String>>);

impl Images {
    /// Remembers every `devinst-build/...` tag a run's stderr names.
    fn track(&self, run: &Run) {
        for tag in built_tags(&run.stderr) {
            let mut list = self.0.borrow_mut();
            if !list.contains(&tag) {
                list.push(tag);
            }
        }
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        for tag in self.0.borrow().iter() {
            let _ = Command::new("docker")
                .args(["rmi", tag])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The tags of images devinst said it builds, in order.
fn built_tags(stderr: &str) -> Vec<String> {
    stderr
        .split('`')
        .filter(|word| word.starts_with("devinst-build/"))
        .map(str::to_owned)
        .collect()
}

fn image_exists(tag: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const RECIPE: &str = r#"
[container.build]
base = "ubuntu:22.04"
apt = ["jq"]
pip = ["six==1.16.0"]
env = { FOO = "bar", TRICKY = "a \"b\" $HOME 'c' \\d" }
include = [
  { source = "tools/hello.sh", target = "/opt/hello.sh" },
  { source = "tools", target = "/opt/all tools/" },
]
[setup]
commands = []
"#;

fn recipe_repo(env: &TestEnv, rel: &str, build: &str, range: [u16; 2]) -> std::path::PathBuf {
    let dir = env.repo(rel);
    write(
        &dir.join("devinst.toml"),
        &format!(
            "{build}\n[ports]\nhost_range = [{}, {}]\n",
            range[0], range[1]
        ),
    );
    dir
}

fn exec(env: &TestEnv, repo: &Path, script: &str) -> String {
    env.run(repo, &["exec", "--", "sh", "-c", script])
        .ok()
        .stdout
}

#[test]
fn recipe_is_built_once_and_rebuilt_when_an_included_file_changes() {
    let images = Images::default();
    let env = TestEnv::new();
    let repo = recipe_repo(&env, "recipe", RECIPE, [47500, 47509]);
    write(&repo.join("tools/hello.sh"), "echo hello from the recipe\n");
    env.run(&repo, &["setup"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    // Before there is a container, status names the image start will build.
    let status = env.run(&repo, &["status", "--json"]).ok();
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let planned = status["image"].as_str().unwrap().to_owned();
    assert!(planned.starts_with("devinst-build/"), "{planned}");

    let started = std::time::Instant::now();
    let first = env.run(&repo, &["start"]);
    images.track(&first);
    let first = first.ok();
    eprintln!("first start, with the build: {:?}", started.elapsed());
    let tags = built_tags(&first.stderr);
    let tag = tags
        .first()
        .expect("start names the image it builds")
        .clone();
    assert_eq!(planned, tag, "status named the image start built");
    assert!(first.stderr.contains("building image"), "{first}");
    // Docker says `Step 1/8 :`, Podman `STEP 1/8:`.
    assert!(
        first.stderr.to_lowercase().contains("step 1/"),
        "build progress\n{first}"
    );
    assert_image(&container, &tag);

    // Everything the recipe asked for is in the container.
    assert!(exec(&env, &repo, "jq --version").starts_with("jq-"));
    assert_eq!(
        exec(
            &env,
            &repo,
            "python3 -c 'import six; print(six.__version__)'"
        ),
        "1.16.0\n"
    );
    assert_eq!(
        exec(&env, &repo, r#"printf '%s|%s' "$FOO" "$TRICKY""#),
        r#"bar|a "b" $HOME 'c' \d"#
    );
    assert_eq!(
        exec(&env, &repo, "cat /opt/hello.sh"),
        "echo hello from the recipe\n"
    );
    assert_eq!(
        exec(&env, &repo, "cat '/opt/all tools/hello.sh'"),
        "echo hello from the recipe\n"
    );

    // Built once: neither `start` nor `build` builds it again.
    let again = env.run(&repo, &["start"]).ok();
    assert!(!again.stderr.contains("building image"), "{again}");
    assert!(!again.stderr.contains("Step "), "{again}");
    assert!(!again.stderr.contains("different recipe"), "{again}");
    let build = env.run(&repo, &["build"]).ok();
    assert_eq!(build.stdout.trim(), tag);
    assert!(build.stderr.contains("cached"), "{build}");
    assert!(!build.stderr.contains("Step "), "{build}");

    // A changed byte in an included file is a new recipe: `start` says so
    // and keeps the container; `--recreate` builds and uses the new image.
    write(&repo.join("tools/hello.sh"), "echo hello again\n");
    let changed = env.run(&repo, &["start"]).ok();
    assert!(changed.stderr.contains("different recipe"), "{changed}");
    assert!(!changed.stderr.contains("building image"), "{changed}");
    assert_image(&container, &tag);

    let started = std::time::Instant::now();
    let recreated = env.run(&repo, &["start", "--recreate"]);
    images.track(&recreated);
    let recreated = recreated.ok();
    eprintln!("rebuild after an include changed: {:?}", started.elapsed());
    let new_tag = built_tags(&recreated.stderr)
        .into_iter()
        .next()
        .expect("the new recipe is built");
    assert_ne!(new_tag, tag);
    assert_image(&container, &new_tag);
    assert_eq!(exec(&env, &repo, "cat /opt/hello.sh"), "echo hello again\n");
    let build = env.run(&repo, &["build"]).ok();
    assert_eq!(build.stdout.trim(), new_tag);
}

#[test]
fn missing_apt_package_fails_start_with_the_builds_error_and_no_tag() {
    let images = Images::default();
    let env = TestEnv::new();
    let recipe = "[container.build]\nbase = \"ubuntu:22.04\"\n\
                  apt = [\"devinst-no-such-package\"]\n[setup]\ncommands = []\n";
    let repo = recipe_repo(&env, "badapt", recipe, [47510, 47519]);
    env.run(&repo, &["setup"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();

    let run = env.run(&repo, &["start"]);
    images.track(&run);
    let run = run.fails_with(1, "the `[container.build] apt` step exited with code 100");
    assert!(
        run.stderr
            .contains("E: Unable to locate package devinst-no-such-package"),
        "{run}"
    );
    assert!(
        run.stderr.contains("hint: fix `[container.build]`"),
        "{run}"
    );
    let tag = built_tags(&run.stderr).into_iter().next().unwrap();
    assert!(!image_exists(&tag), "a failed build leaves no `{tag}`");
    let created = Command::new("docker")
        .args(["inspect", &container])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!created.success(), "no container without its image");

    // With -q the build's output is not shown, so the error carries its end.
    let quiet = env.run(&repo, &["-q", "build"]);
    images.track(&quiet);
    let quiet = quiet.fails_with(1, "last lines of its output");
    assert!(quiet.stderr.contains("Unable to locate package"), "{quiet}");
    assert!(!quiet.stderr.contains("Step 1/"), "{quiet}");
    assert!(!image_exists(&tag));
}

#[test]
fn bad_recipes_are_refused_before_any_engine_call() {
    let env = TestEnv::new();
    let repo = env.repo("badrecipe");
    write(&repo.join("tools/x"), "x\n");
    let toml = repo.join("devinst.toml");
    // No engine answers here: an error about the recipe proves it came first.
    let no_engine = |args: &[&str]| {
        let out = env
            .cmd(&repo)
            .args(args)
            .env("DOCKER_HOST", "unix:///nonexistent/devinst.sock")
            .output()
            .unwrap();
        Run::from(out)
    };
    for (build, needles) in [
        (
            "apt = [\"jq; rm -rf /\"]",
            &[
                "`[container.build] apt` entry `jq; rm -rf /`",
                "devinst.toml",
            ][..],
        ),
        (
            "pip = [\"--index-url=http://x\"]",
            &["`[container.build] pip` entry `--index-url=http://x`"][..],
        ),
        (
            "env = { \"A-B\" = \"1\" }",
            &["`[container.build] env` key `A-B`"][..],
        ),
        (
            "include = [{ source = \"../outside\", target = \"/x\" }]",
            &["`[container.build] include` source `../outside`"][..],
        ),
        (
            "include = [{ source = \"tools/x\", target = \"relative\" }]",
            &["`[container.build] include` target `relative`"][..],
        ),
        (
            "include = [{ source = \"tools/missing\", target = \"/x\" }]",
            &["`tools/missing` does not exist in the worktree", "hint:"][..],
        ),
    ] {
        write(
            &toml,
            &format!("[container.build]\nbase = \"ubuntu:22.04\"\n{build}\n"),
        );
        let run = no_engine(&["build"]);
        for needle in needles {
            assert!(run.stderr.contains(needle), "{build}: {needle:?}\n{run}");
        }
        let run = run.fails_with(1, "invalid `");
        assert!(!run.stderr.contains("container engine"), "{run}");
    }

    write(
        &toml,
        "[container]\nimage = \"ubuntu:22.04\"\n[container.build]\nbase = \"ubuntu:22.04\"\n",
    );
    env.run(&repo, &["setup"]).fails_with(
        1,
        "`[container] image` and `[container.build]` are both set",
    );

    // No recipe: nothing to build, and that is not an error.
    write(&toml, "[container]\nimage = \"ubuntu:22.04\"\n");
    let run = no_engine(&["build"]).ok();
    assert!(run.stderr.contains("nothing to build"), "{run}");
}

/// The container runs `tag`; Podman reports it with its registry in front
/// (`docker.io/devinst-build/...`).
fn assert_image(container: &str, tag: &str) {
    let image = inspect(container, "{{.Config.Image}}");
    assert!(
        image == tag || image.ends_with(&format!("/{tag}")),
        "{image} is not {tag}"
    );
}
