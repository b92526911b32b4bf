//! Snapshots: save an instance, change it, put it back.

use crate::support::*;
use std::process::Command;

/// Removes an instance's snapshot images however the test ends.
struct SnapshotImages(String);

impl Drop for SnapshotImages {
    fn drop(&mut self) {
        let out = Command::new("docker")
            .args(["images", "-q", &format!("devinst-snapshot/{}", self.0)])
            .output()
            .unwrap();
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("docker").args(["rmi", "-f", id]).output();
        }
    }
}

fn image_exists(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn a_snapshot_brings_back_the_filesystem_state_and_logs() {
    let env = TestEnv::new();
    let name = format!("snap-{}", std::process::id());
    let repo = env.busybox_repo(&name, "[ports]\nhost_range = [47700, 47750]\n");
    let _images = SnapshotImages(name.clone());
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["snapshot", "save", "early"])
        .fails_with(1, "devinst start");
    env.run(&repo, &["start"]).ok();
    let sh = |script: &str| env.sh(&repo, script).ok().stdout;
    sh("echo one > /root/.sky/a; echo log1 > /root/sky_logs/l; echo fs > /etc/marker");

    let saved = env.run(&repo, &["snapshot", "save", "s1"]).ok();
    assert_eq!(saved.stdout, "s1\n");
    assert!(image_exists(&format!("devinst-snapshot/{name}:s1")));
    env.run(&repo, &["snapshot", "save", "s1"])
        .fails_with(1, "exists already");
    env.run(&repo, &["snapshot", "save", "Bad Name"])
        .fails_with(1, "invalid snapshot name");

    sh("echo two > /root/.sky/a; echo log2 > /root/sky_logs/l; rm /etc/marker; touch /root/.sky/new");
    for action in ["restore", "rm"] {
        env.run(&repo, &["snapshot", action, "../state"])
            .fails_with(1, "invalid snapshot name");
    }
    assert!(
        repo.join(".sky-dev/state/a").is_file(),
        "nothing outside snapshots/ touched"
    );
    env.run(&repo, &["snapshot", "restore", "nope"])
        .fails_with(1, "snapshot list");
    env.run(&repo, &["snapshot", "restore", "s1"]).ok();
    assert_eq!(
        sh("cat /root/.sky/a /root/sky_logs/l /etc/marker; ls /root/.sky"),
        "one\nlog1\nfs\na\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join(".sky-dev/state/a")).unwrap(),
        "one\n"
    );

    #[derive(serde::Deserialize)]
    struct View {
        name: String,
        active: bool,
    }
    let list = env.run(&repo, &["snapshot", "list", "--json"]).ok();
    let views: Vec<View> = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].name, "s1");
    assert!(views[0].active);
    // Starting again keeps the restored container: no recipe warning.
    let run = env.run(&repo, &["start"]).ok();
    assert!(!run.stderr.contains("--recreate"), "{run}");

    env.run(&repo, &["snapshot", "rm", "s1"])
        .fails_with(1, "snapshot reset");
    env.run(&repo, &["snapshot", "reset"]).ok();
    assert_eq!(
        sh("cat /root/.sky/a; test -e /etc/marker && echo kept || echo gone"),
        "one\ngone\n"
    );
    env.run(&repo, &["snapshot", "save", "s2"]).ok();
    env.run(&repo, &["snapshot", "rm", "s1"]).ok();
    assert!(!image_exists(&format!("devinst-snapshot/{name}:s1")));
    assert!(!repo.join(".sky-dev/snapshots/s1").exists());

    // Purging the instance takes its snapshots along.
    env.run(&repo, &["destroy", "--purge", "--yes"]).ok();
    assert!(!image_exists(&format!("devinst-snapshot/{name}:s2")));
}
