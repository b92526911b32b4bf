//! File writes that never leave a half-written file behind, and file locks.

use anyhow::{Context, Result};
use atomic_write_file::unix::OpenOptionsExt as _;
use atomic_write_file::AtomicWriteFile;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `contents` to `path` with permissions `mode` (exactly, not masked),
/// so that a reader, a crash or a kill sees the old file or the new one,
/// never a mix. atomic-write-file writes a temporary file in the same
/// directory (on Linux an unnamed one, so a killed writer leaves nothing
/// behind), syncs it, renames it over `path` and syncs the directory.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let write = || -> std::io::Result<()> {
        let mut file = AtomicWriteFile::options()
            .preserve_mode(false)
            .preserve_owner(false)
            .open(path)?;
        file.write_all(contents)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.commit()
    };
    write().with_context(|| format!("cannot write `{}`", path.display()))
}

/// Opens (creating) `path` and takes an exclusive lock on it, waiting for
/// other holders; the lock lasts until the file is dropped.
pub fn lock_file(path: &Path) -> Result<fs::File> {
    let file = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open `{}`", path.display()))?;
    file.lock()
        .with_context(|| format!("cannot lock `{}`", path.display()))?;
    Ok(file)
}

/// Copies the directory `from` to `to` (which must not exist): files with
/// their permissions, directories, and symlinks as symlinks.
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir(to).with_context(|| format!("cannot create `{}`", to.display()))?;
    let permissions = fs::metadata(from)
        .with_context(|| format!("cannot read `{}`", from.display()))?
        .permissions();
    for entry in fs::read_dir(from).with_context(|| format!("cannot list `{}`", from.display()))? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&source, &target)?;
        } else if kind.is_symlink() {
            let link = fs::read_link(&source)?;
            std::os::unix::fs::symlink(&link, &target)
                .with_context(|| format!("cannot create `{}`", target.display()))?;
        } else {
            fs::copy(&source, &target)
                .with_context(|| format!("cannot copy `{}`", source.display()))?;
        }
    }
    fs::set_permissions(to, permissions)
        .with_context(|| format!("cannot set permissions on `{}`", to.display()))
}

pub fn create_dir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path).with_context(|| format!("cannot create `{}`", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_write_leaves_only_the_target_with_the_asked_mode() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        write_atomic(&target, b"first", 0o755).unwrap();
        assert_eq!(mode_of(&target), 0o755);
        // Replacing takes the new mode, not the old file's.
        write_atomic(&target, b"whole", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "whole");
        assert_eq!(mode_of(&target), 0o600);
        assert_eq!(names(dir.path()), ["f"]);
    }

    #[test]
    fn a_failed_write_leaves_the_directory_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir").join("f");
        assert!(write_atomic(&missing, b"x", 0o644).is_err());
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn a_held_lock_keeps_others_out_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = lock_file(&path).unwrap();
        let other = fs::File::open(&path).unwrap();
        assert!(matches!(
            other.try_lock(),
            Err(fs::TryLockError::WouldBlock)
        ));

        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let second = lock_file(&path).unwrap();
            tx.send(()).unwrap();
            drop(second);
        });
        let waited = rx.recv_timeout(Duration::from_millis(200));
        assert!(waited.is_err(), "a second lock_file must wait");
        drop(held);
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the second lock_file goes on once the first is dropped");
        waiter.join().unwrap();
        other.try_lock().unwrap();
    }
}
