//! File writes that never leave a half-written file behind.

use anyhow::{Context, Result};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `contents` to `path` through a temporary file in the same directory,
/// synced and then renamed over the target, so a reader (or a crash) sees the
/// old file or the new one, never a mix.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().context("path has no parent directory")?;
    let name = path.file_name().context("path has no file name")?;
    sweep_abandoned(dir, &name.to_string_lossy());
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(contents)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write()
        .inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
        .with_context(|| format!("cannot write `{}`", path.display()))
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

/// Removes the temporary files of earlier writers of `name` that were killed
/// before their rename: their process is gone, so nothing else ever will.
/// Liveness comes from `/proc`; without it nothing is removed.
fn sweep_abandoned(dir: &Path, name: &str) {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let prefix = format!(".{name}.tmp.");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !proc.join(pid).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
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

    #[test]
    fn a_killed_writers_temporary_file_is_swept_a_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(".f.tmp.4294967295");
        let live = dir.path().join(".f.tmp.1");
        let other = dir.path().join(".g.tmp.4294967295");
        for path in [&dead, &live, &other] {
            fs::write(path, "half").unwrap();
        }
        write_atomic(&dir.path().join("f"), b"whole", 0o644).unwrap();
        assert_eq!(fs::read_to_string(dir.path().join("f")).unwrap(), "whole");
        assert!(!dead.exists(), "its writer is gone");
        assert!(live.exists(), "pid 1 is alive");
        assert!(other.exists(), "another file's");
    }
}
