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

#[test]
fn a_snapshot_without_a_name_is_named_by_the_time_and_listed_in_text() {
    let env = TestEnv::new();
    let name = format!("snapdef-{}", std::process::id());
    let repo = env.busybox_repo(&name, "[ports]\nhost_range = [47751, 47760]\n");
    let _images = SnapshotImages(name.clone());
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    let before = utc_stamp();
    let saved = env.run(&repo, &["snapshot", "save"]).ok();
    let after = utc_stamp();
    // `20261123-143005`: the UTC time of the save, sortable.
    let snapshot = saved.stdout.trim().to_owned();
    assert!(
        snapshot.len() == 15
            && snapshot.as_bytes()[8] == b'-'
            && snapshot
                .replace('-', "")
                .bytes()
                .all(|b| b.is_ascii_digit()),
        "{saved}"
    );
    assert!(
        before <= snapshot && snapshot <= after,
        "{before} <= {snapshot} <= {after}"
    );
    assert!(image_exists(&format!("devinst-snapshot/{name}:{snapshot}")));

    // The text listing: a header, then the snapshot with its date and size.
    let list = env.run(&repo, &["snapshot", "list"]).ok();
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "CREATED", "SIZE"], "{list}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[0], snapshot, "{list}");
    assert!(row[1].ends_with('Z') && row[1].contains('T'), "{list}");
    assert!(
        ["B", "KiB", "MiB", "GiB"].contains(&row[3]),
        "a size with its unit: {list}"
    );
}

/// The current UTC time as `YYYYMMDD-HHMMSS`, from `date`.
fn utc_stamp() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y%m%d-%H%M%S"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
