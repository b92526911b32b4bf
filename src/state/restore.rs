//! The file half of `snapshot restore`, safe against a kill at any point.
//!
//! The snapshot's directories are first copied beside the live ones, into
//! `.sky-dev/.restore/new/`. Writing the journal `.sky-dev/.restore/journal`
//! (the snapshot's name) commits the restore; the live directories are then
//! swapped for the copies. Whoever finds `.restore/` next ([`recover`])
//! finishes a committed restore and rolls back one that was not (its copies
//! are deleted, the live directories were never touched), so no command ever
//! sees `state/` missing, and nothing is left behind.

use super::layout::{Layout, NODES_DIR_NAME};
use crate::support::fs::{copy_tree, create_dir_all, write_atomic};
use anyhow::{Context, Result};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The directories a snapshot keeps, by their name under `.sky-dev/`:
/// the head's state and logs, and every other node's (`nodes/`, which an
/// instance of one node does not have).
pub const SAVED_DIRS: [&str; 3] = ["state", "sky_logs", NODES_DIR_NAME];

fn restore_dir(layout: &Layout) -> PathBuf {
    layout.dir().join(".restore")
}

fn journal(layout: &Layout) -> PathBuf {
    restore_dir(layout).join("journal")
}

/// Finishes or rolls back a restore that was cut short, if there is one.
/// Cheap when there is none (one `stat`): every command's path.
pub fn recover(layout: &Layout) -> Result<()> {
    if !exists(&restore_dir(layout))? {
        return Ok(());
    }
    // The restore itself holds this lock while it runs.
    let _lock = layout.lock()?;
    recover_locked(layout)
}

/// [`recover`] for a caller that holds the instance's lock.
pub fn recover_locked(layout: &Layout) -> Result<()> {
    let dir = restore_dir(layout);
    match std::fs::read_to_string(journal(layout)) {
        Ok(snapshot) => finish(layout, snapshot.trim()),
        Err(err) if err.kind() == ErrorKind::NotFound => remove_all(&dir),
        Err(err) => {
            Err(err).with_context(|| format!("cannot read `{}`", journal(layout).display()))
        }
    }
}

/// Copies the snapshot's directories in `saved` beside the live ones. A
/// kill here leaves only copies, which the next command deletes.
pub fn stage(layout: &Layout, saved: &Path) -> Result<()> {
    recover_locked(layout)?;
    let new = restore_dir(layout).join("new");
    create_dir_all(&new)?;
    for dir in SAVED_DIRS {
        match exists(&saved.join(dir))? {
            true => copy_tree(&saved.join(dir), &new.join(dir))?,
            // Saved without it (a snapshot of one node): restored empty.
            false => create_dir_all(&new.join(dir))?,
        }
    }
    Ok(())
}

/// Commits the staged restore of `snapshot` and swaps it in.
pub fn commit(layout: &Layout, snapshot: &str) -> Result<()> {
    write_atomic(&journal(layout), format!("{snapshot}\n").as_bytes(), 0o644)?;
    finish(layout, snapshot)
}

/// Swaps each staged directory in, the live one moved aside; each step can
/// be run again after a kill, so a committed restore always completes.
fn finish(layout: &Layout, snapshot: &str) -> Result<()> {
    let base = restore_dir(layout);
    create_dir_all(&base.join("old"))?;
    for dir in SAVED_DIRS {
        let staged = base.join("new").join(dir);
        let live = layout.dir().join(dir);
        let old = base.join("old").join(dir);
        if !exists(&staged)? {
            continue; // swapped in already
        }
        if exists(&live)? {
            if exists(&old)? {
                // Made after the live one was moved aside (`setup` makes
                // missing directories): nothing of the instance's.
                remove_all(&live)?;
            } else {
                rename(&live, &old)?;
            }
        }
        rename(&staged, &live)?;
    }
    write_atomic(
        &layout.snapshot_file(),
        format!("{snapshot}\n").as_bytes(),
        0o644,
    )?;
    // The new container runs the setup steps afresh.
    match std::fs::remove_file(layout.setup_stamp()) {
        Err(err) if err.kind() != ErrorKind::NotFound => {
            return Err(err)
                .with_context(|| format!("cannot remove `{}`", layout.setup_stamp().display()))
        }
        _ => {}
    }
    // Done: without the journal, what is left is deleted as a rollback
    // would, and only old copies are left.
    std::fs::remove_file(journal(layout))
        .with_context(|| format!("cannot remove `{}`", journal(layout).display()))?;
    remove_all(&base)
}

/// Directories an earlier devinst left beside the live ones when a restore
/// was killed: `state.restore-PID` (a partial copy of a snapshot, which is
/// still in `snapshots/`) is deleted; `state.old-PID` may hold the only copy
/// of the instance's state, so it is put back where `state/` is missing (the
/// newest, if several) and otherwise kept. Returns those kept.
pub fn clean_legacy(layout: &Layout) -> Result<Vec<PathBuf>> {
    let mut kept = Vec::new();
    for dir in SAVED_DIRS {
        let mut olds = Vec::new();
        for entry in std::fs::read_dir(layout.dir())?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(&format!("{dir}.")) else {
                continue;
            };
            if rest.starts_with("restore-") {
                remove_all(&entry.path())?;
            } else if rest.starts_with("old-") {
                let modified = entry.metadata().and_then(|m| m.modified()).ok();
                olds.push((modified, entry.path()));
            }
        }
        olds.sort();
        let live = layout.dir().join(dir);
        if !exists(&live)? {
            if let Some((_, newest)) = olds.pop() {
                rename(&newest, &live)?;
            }
        }
        kept.extend(olds.into_iter().map(|(_, path)| path));
    }
    Ok(kept)
}

fn exists(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err).with_context(|| format!("cannot stat `{}`", path.display())),
    }
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to)
        .with_context(|| format!("cannot move `{}` to `{}`", from.display(), to.display()))
}

fn remove_all(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(err) if err.kind() != ErrorKind::NotFound => {
            Err(err).with_context(|| format!("cannot remove `{}`", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Layout, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        let saved = tmp.path().join("saved");
        for dir in SAVED_DIRS {
            std::fs::create_dir_all(layout.dir().join(dir)).unwrap();
            std::fs::write(layout.dir().join(dir).join("f"), "live").unwrap();
            std::fs::create_dir_all(saved.join(dir)).unwrap();
            std::fs::write(saved.join(dir).join("f"), "saved").unwrap();
        }
        std::fs::write(layout.setup_stamp(), "x").unwrap();
        (tmp, layout, saved)
    }

    fn content(layout: &Layout, dir: &str) -> String {
        std::fs::read_to_string(layout.dir().join(dir).join("f")).unwrap()
    }

    fn left(layout: &Layout) -> bool {
        restore_dir(layout).exists()
    }

    #[test]
    fn a_restore_cut_short_before_its_journal_is_rolled_back() {
        let (_tmp, layout, saved) = setup();
        stage(&layout, &saved).unwrap();
        recover(&layout).unwrap();
        assert_eq!(content(&layout, "state"), "live");
        assert!(!left(&layout));
        assert!(layout.active_snapshot().is_none());
        assert!(layout.setup_stamp().exists());
    }

    #[test]
    fn a_snapshot_of_one_node_restores_an_empty_nodes_directory() {
        let (_tmp, layout, saved) = setup();
        std::fs::remove_dir_all(saved.join(NODES_DIR_NAME)).unwrap();
        stage(&layout, &saved).unwrap();
        commit(&layout, "s1").unwrap();
        assert_eq!(content(&layout, "state"), "saved");
        let nodes = layout.dir().join(NODES_DIR_NAME);
        assert_eq!(std::fs::read_dir(nodes).unwrap().count(), 0);
        assert!(!left(&layout));
    }

    #[test]
    fn a_committed_restore_is_finished_from_any_step() {
        // Each step of the swap, cut short after it: all finish the same.
        for steps in 0..=SAVED_DIRS.len() * 2 {
            let (_tmp, layout, saved) = setup();
            stage(&layout, &saved).unwrap();
            write_atomic(&journal(&layout), b"s1\n", 0o644).unwrap();
            let base = restore_dir(&layout);
            std::fs::create_dir_all(base.join("old")).unwrap();
            for step in 0..steps {
                let dir = SAVED_DIRS[step / 2];
                let live = layout.dir().join(dir);
                if step % 2 == 0 {
                    std::fs::rename(&live, base.join("old").join(dir)).unwrap();
                } else {
                    std::fs::rename(base.join("new").join(dir), &live).unwrap();
                }
            }
            // `setup` made an empty `state/` where the live one had gone.
            if steps == 1 {
                std::fs::create_dir_all(layout.dir().join("state")).unwrap();
            }
            recover(&layout).unwrap();
            for dir in SAVED_DIRS {
                assert_eq!(content(&layout, dir), "saved", "after {steps} steps");
            }
            assert!(!left(&layout));
            assert_eq!(layout.active_snapshot().as_deref(), Some("s1"));
            assert!(!layout.setup_stamp().exists());
        }
    }

    #[test]
    fn leftovers_of_earlier_restores_are_cleaned_and_lost_state_put_back() {
        let (_tmp, layout, _saved) = setup();
        let dir = layout.dir();
        std::fs::rename(dir.join("state"), dir.join("state.old-12")).unwrap();
        std::fs::create_dir_all(dir.join("state.restore-12")).unwrap();
        std::fs::create_dir_all(dir.join("sky_logs.old-7")).unwrap();
        let kept = clean_legacy(&layout).unwrap();
        assert_eq!(content(&layout, "state"), "live");
        assert_eq!(content(&layout, "sky_logs"), "live");
        // Beside a live one, an old one may be the real state: kept.
        assert_eq!(kept, [dir.join("sky_logs.old-7")]);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ".setup-stamp",
                "nodes",
                "sky_logs",
                "sky_logs.old-7",
                "state"
            ]
        );
    }
}
