//! Progress that shows work: on a terminal, bars for a pull's layers, a
//! recipe build's steps and the setup steps (drawn with escape codes);
//! through a pipe, plain lines and never an escape code; under `-q`,
//! nothing but warnings and errors.
//!
//! Host ports stay within 48320-48339.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// An image only this test has, in the local registry, absent from the
/// engine until `start` pulls it; removed from both ends when dropped.
struct RegistryImage(String);

impl RegistryImage {
    /// The busybox image with a layer of this run's own (so a pull has bytes
    /// to download), pushed, then removed here.
    fn push(what: &str) -> RegistryImage {
        let image = format!(
            "127.0.0.1:5000/devinst-test/progress-{what}-{}:1",
            std::process::id()
        );
        let dockerfile = format!(
            "FROM {BUSYBOX}\nRUN head -c 3000000 /dev/urandom > /noise && echo {what} > /marker\n"
        );
        let mut build = Command::new("docker");
        build
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "-q", "-t", &image, "-"]);
        let out = output_within(&mut build, Some(dockerfile.into_bytes()));
        assert!(
            out.status.success(),
            "docker build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for args in [vec!["push", image.as_str()], vec!["rmi", image.as_str()]] {
            let out = Command::new("docker").args(&args).output().unwrap();
            assert!(
                out.status.success(),
                "docker {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        RegistryImage(image)
    }
}

impl Drop for RegistryImage {
    fn drop(&mut self) {
        // The local copy `start` pulled (the registry keeps its tag: a plain
        // registry deletes nothing without its delete API turned on).
        let _ = Command::new("docker").args(["rmi", &self.0]).output();
    }
}

const STEP: &str = "echo first-line; sleep 1; echo last-line";

fn pulling_repo(env: &TestEnv, rel: &str, image: &str, range: u16) -> PathBuf {
    let repo = env.repo(&format!("{rel}-{}", std::process::id()));
    write(
        &repo.join("devinst.toml"),
        &format!(
            "[container]\nimage = \"{image}\"\n[setup]\ncommands = [\"{STEP}\"]\n\
             [ports]\nhost_range = [{range}, {}]\n",
            range + 4
        ),
    );
    repo
}

/// A recipe built from the busybox image with a file of this run's own, so
/// the build is new.
fn building_repo(env: &TestEnv, rel: &str, range: u16) -> PathBuf {
    let repo = env.repo(&format!("{rel}-{}", std::process::id()));
    write(
        &repo.join("tools/marker"),
        &format!("{rel} {}\n", std::process::id()),
    );
    write(
        &repo.join("devinst.toml"),
        &format!(
            "[container.build]\nbase = \"{BUSYBOX}\"\n\
             include = [{{ source = \"tools/marker\", target = \"/opt/marker\" }}]\n\
             [setup]\ncommands = []\n[ports]\nhost_range = [{range}, {}]\n",
            range + 4
        ),
    );
    repo
}

/// The image a recipe build made, by its tag in devinst's output.
fn built_tag(output: &str) -> String {
    output
        .split('`')
        .find(|word| word.starts_with("devinst-build/"))
        .unwrap_or_else(|| panic!("no build tag in: {output}"))
        .to_owned()
}

fn remove_image(tag: &str) {
    let out = Command::new("docker").args(["rmi", tag]).output().unwrap();
    assert!(out.status.success(), "docker rmi {tag}");
}

fn setup(env: &TestEnv, repo: &Path) {
    env.run(repo, &["setup"]).ok();
}

#[test]
fn on_a_terminal_pulls_builds_and_setup_steps_draw_progress() {
    let env = TestEnv::new();
    let image = RegistryImage::push("pty");
    let repo = pulling_repo(&env, "progress-pty", &image.0, 48320);
    setup(&env, &repo);
    let run = on_pty(&env, &repo, (30, 120), "[]", &["start"]);
    assert_eq!(run.code, 0, "{}", run.output);
    let out = &run.output;
    // Drawn: escape codes that move the cursor and clear lines.
    assert!(out.contains("\u{1b}["), "no drawing: {out:?}");
    assert!(
        out.contains(&format!("pulling {}", image.0)),
        "no overall line: {out:?}"
    );
    // A bar for the new layer, with bytes done of its total.
    assert!(
        out.contains("Downloading  [") && out.contains(" / 2.86 MiB"),
        "no layer bar: {out:?}"
    );
    let pulled = format!("pulled `{}`: ", image.0);
    let summary = out.split(&pulled).nth(1).and_then(|s| s.lines().next());
    assert!(
        summary.is_some_and(|s| s.ends_with(" layers, 2.9 MiB of 2.9 MiB")),
        "{out:?}"
    );
    // The step's bar: its label, elapsed time, and its last output line.
    assert!(out.contains("setup step 1/1: echo first-line"), "{out:?}");
    assert!(
        out.contains("] last-line"),
        "no last line on the bar: {out:?}"
    );
    // The output itself stays, above the bar (indicatif pads each line to
    // the terminal's width rather than ending it).
    assert!(
        out.contains("\u{1b}[2Kfirst-line   "),
        "output not kept: {out:?}"
    );

    let built = building_repo(&env, "progress-pty-build", 48325);
    setup(&env, &built);
    let run = on_pty(&env, &built, (30, 120), "[]", &["start"]);
    assert_eq!(run.code, 0, "{}", run.output);
    assert!(run.output.contains("\u{1b}["), "{:?}", run.output);
    assert!(
        run.output.contains("building: step 1/"),
        "no build step bar: {:?}",
        run.output
    );
    env.run(&built, &["destroy", "--yes"]).ok();
    remove_image(&built_tag(&run.output));
}

#[test]
fn through_a_pipe_progress_is_plain_lines_and_quiet_shows_none() {
    let env = TestEnv::new();
    let image = RegistryImage::push("pipe");
    let repo = pulling_repo(&env, "progress-pipe", &image.0, 48330);
    setup(&env, &repo);
    let run = env.run(&repo, &["start"]).ok();
    assert!(!run.stderr.contains('\u{1b}'), "escape codes: {run}");
    // One line per layer and status change.
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("  ") && l.contains(": ")),
        "{run}"
    );
    assert!(
        run.stderr.contains("setup step 1/1: echo first-line")
            && run.stderr.contains("first-line\nlast-line\n"),
        "{run}"
    );

    let built = building_repo(&env, "progress-pipe-build", 48335);
    setup(&env, &built);
    let run = env.run(&built, &["start"]).ok();
    assert!(!run.stderr.contains('\u{1b}'), "escape codes: {run}");
    assert!(run.stderr.contains("  Step 1/"), "{run}");
    let tag = built_tag(&run.stderr);
    env.run(&built, &["destroy", "--yes"]).ok();
    remove_image(&tag);

    // `-q` on a terminal: no bars, no notes, the data only.
    env.run(&repo, &["destroy", "--yes"]).ok();
    remove_image(&image.0);
    let run = on_pty(&env, &repo, (30, 120), "[]", &["-q", "start"]);
    assert_eq!(run.code, 0, "{}", run.output);
    let port = instance_value(&repo, "DEVINST_PORT").unwrap();
    assert_eq!(run.output, format!("127.0.0.1:{port} -> 46580\r\n"));
}
