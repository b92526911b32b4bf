//! Snapshots: save an instance, change it, put it back.

use crate::support::*;
use std::process::{Command, Stdio};

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
    assert!(image_present(&format!("devinst-snapshot/{name}:s1")));
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
    assert!(!image_present(&format!("devinst-snapshot/{name}:s1")));
    assert!(!repo.join(".sky-dev/snapshots/s1").exists());

    // Purging the instance takes its snapshots along.
    env.run(&repo, &["destroy", "--purge", "--yes"]).ok();
    assert!(!image_present(&format!("devinst-snapshot/{name}:s2")));
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
    assert!(image_present(&format!(
        "devinst-snapshot/{name}:{snapshot}"
    )));

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

/// 256 files of 256 KiB under `dir`, each filled with its own number.
fn fill(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..256u32 {
        let byte = (i % 251) as u8;
        std::fs::write(dir.join(format!("f{i}")), vec![byte; 256 << 10]).unwrap();
    }
}

/// Whether `dir` holds exactly what [`fill`] wrote.
fn filled(dir: &std::path::Path) -> bool {
    (0..256u32).all(|i| {
        let byte = (i % 251) as u8;
        std::fs::read(dir.join(format!("f{i}")))
            .is_ok_and(|b| b.len() == 256 << 10 && b.iter().all(|x| *x == byte))
    }) && std::fs::read_dir(dir).unwrap().count() == 256
}

#[test]
fn a_restore_killed_at_any_point_is_finished_or_rolled_back_by_the_next_command() {
    use std::time::{Duration, Instant};
    let name = format!("snapkill-{}", std::process::id());
    // Before the env: dropped after it, once the container using them is gone.
    let _images = SnapshotImages(name.clone());
    let env = TestEnv::new();
    let repo = env.busybox_repo(&name, "[ports]\nhost_range = [47751, 47760]\n");
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    let state = repo.join(".sky-dev/state");
    fill(&state.join("big"));
    let marker = state.join("marker");
    std::fs::write(&marker, "saved").unwrap();
    env.run(&repo, &["snapshot", "save", "s1"]).ok();

    std::fs::write(&marker, "live").unwrap();
    let started = Instant::now();
    env.run(&repo, &["snapshot", "restore", "s1"]).ok();
    let span = started.elapsed();
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "saved");

    let kills = 8;
    let (mut landed, mut cut_short, mut rolled_back) = (0, 0, 0);
    for i in 0..kills {
        let live = format!("live-{i}");
        std::fs::write(&marker, &live).unwrap();
        let delay = span.mul_f64(f64::from(i) / f64::from(kills)) + Duration::from_millis(5);
        let mut child = env
            .cmd(&repo)
            .args(["snapshot", "restore", "s1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        landed += u32::from(child.try_wait().unwrap().is_none());
        child.kill().unwrap();
        child.wait().unwrap();
        let journal = repo.join(".sky-dev/.restore/journal");
        cut_short += u32::from(repo.join(".sky-dev/.restore").exists() && !journal.exists());

        // The next command finds the instance whole: `setup` (which makes
        // missing directories) half of the time, then `start`.
        let context = format!("restore killed after {delay:?}");
        if i % 2 == 0 {
            env.run(&repo, &["setup"]).ok();
        }
        env.run(&repo, &["start"]).ok();
        let now = std::fs::read_to_string(&marker).unwrap_or_default();
        assert!(now == "saved" || now == live, "{now:?}: {context}");
        rolled_back += u32::from(now == live);
        assert!(filled(&state.join("big")), "{context}");
        let left: Vec<String> = std::fs::read_dir(repo.join(".sky-dev"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".old-") || n.contains(".restore"))
            .collect();
        assert!(left.is_empty(), "{left:?} left: {context}");
        let inside = env.sh(&repo, "cat /root/.sky/marker").ok();
        assert_eq!(inside.stdout, now, "{context}");
    }
    eprintln!(
        "{landed} of {kills} kills landed while restore ran ({span:?} in all); \
         {cut_short} mid-copy, {rolled_back} rolled back"
    );
}

#[test]
fn a_snapshot_copies_the_state_of_one_moment() {
    let name = format!("snapstill-{}", std::process::id());
    // Before the env: dropped after it, once the container using them is gone.
    let _images = SnapshotImages(name.clone());
    let env = TestEnv::new();
    let repo = env.busybox_repo(&name, "[ports]\nhost_range = [47761, 47770]\n");
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    // Large files to make the copy take a while, and small ones among them
    // that a process inside rewrites with a new generation, over and over.
    let mix = repo.join(".sky-dev/state/mix");
    fill(&mix);
    for i in 0..32 {
        std::fs::write(mix.join(format!("g{i}")), "0\n").unwrap();
    }
    let names: Vec<String> = (0..32).map(|i| format!("g{i}")).collect();
    let writer = format!(
        "cd /root/.sky/mix; g=0; while :; do g=$((g+1)); for f in {}; do echo $g > $f; done; done",
        names.join(" ")
    );
    let mut child = env
        .cmd(&repo)
        .args(["exec", "--", "sh", "-c", &writer])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let saved = env.run(&repo, &["snapshot", "save", "s1"]);
    let _ = child.kill();
    let _ = child.wait();
    saved.ok();
    let copy = repo.join(".sky-dev/snapshots/s1/state/mix");
    let read: Vec<String> = names
        .iter()
        .map(|f| std::fs::read_to_string(copy.join(f)).unwrap())
        .collect();
    // Held still: the writer was stopped at one point of its loop, so the
    // copy holds two generations at most (and the one file it had just
    // truncated, if it was stopped right there).
    let generations: std::collections::BTreeSet<&String> =
        read.iter().filter(|g| !g.is_empty()).collect();
    assert!(generations.len() <= 2, "{read:?}");
    assert!(
        read.iter().filter(|g| g.is_empty()).count() <= 1,
        "{read:?}"
    );
    assert!(
        !read.contains(&"0\n".to_owned()),
        "the writer ran: {read:?}"
    );
    // And it runs on afterwards.
    assert_eq!(
        inspect(&format!("skypilot-dev-{name}"), "{{.State.Status}}"),
        "running"
    );
}
