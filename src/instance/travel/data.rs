//! A snapshot's data (`state/`, `sky_logs/`, `nodes/`) as one tar: packed
//! in a fixed order so the same snapshot always gives the same bytes (and so
//! the same key), unpacked so an archive from elsewhere writes nowhere but
//! into its own directory.

use super::store::hex;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path};

/// Packs `dir` into `archive`; its sha256 and size.
pub fn pack(dir: &Path, archive: &Path) -> Result<(String, u64)> {
    let file = std::fs::File::create(archive)
        .with_context(|| format!("cannot create `{}`", archive.display()))?;
    let mut builder = tar::Builder::new(Hashing::new(file));
    builder.follow_symlinks(false);
    add_tree(&mut builder, dir, Path::new(""))?;
    let hashing = builder.into_inner()?;
    let size = hashing.size;
    Ok((hex(&hashing.hasher.finalize()), size))
}

fn add_tree(builder: &mut tar::Builder<Hashing>, root: &Path, rel: &Path) -> Result<()> {
    let dir = root.join(rel);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list `{}`", dir.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let rel = rel.join(entry.file_name());
        let meta = entry.metadata()?;
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
        // Deterministic mode zeroes the time; a snapshot keeps its files' own.
        header.set_mtime(meta.mtime().max(0) as u64);
        if meta.is_dir() {
            builder.append_data(&mut header, &rel, std::io::empty())?;
            add_tree(builder, root, &rel)?;
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            builder.append_link(&mut header, &rel, target)?;
        } else if meta.is_file() {
            let file = std::fs::File::open(entry.path())?;
            builder.append_data(&mut header, &rel, file)?;
        }
        // Sockets and pipes a process left behind are not data.
    }
    Ok(())
}

/// A writer that hashes and counts what passes.
struct Hashing {
    file: std::fs::File,
    hasher: Sha256,
    size: u64,
}

impl Hashing {
    fn new(file: std::fs::File) -> Hashing {
        Hashing {
            file,
            hasher: Sha256::new(),
            size: 0,
        }
    }
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.file.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Unpacks `archive` into `dir` (made anew). Only directories, regular
/// files and links are taken, each at a plain relative path, never written
/// through a link an earlier entry made: an archive from a store is someone
/// else's bytes.
pub fn unpack(archive: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let file = std::fs::File::open(archive)?;
    let mut tar = tar::Archive::new(file);
    for entry in tar.entries()? {
        let mut entry = entry?;
        let rel = entry.path()?.into_owned();
        if rel.as_os_str().is_empty()
            || !rel.components().all(|c| matches!(c, Component::Normal(_)))
        {
            bail!(
                "the snapshot's archive holds a path outside it: `{}`",
                rel.display()
            );
        }
        crate::state::contained::real_dirs_up_to(dir, &rel)
            .context("the snapshot's archive cannot be unpacked")?;
        let target = dir.join(&rel);
        let mode = entry.header().mode()? & 0o7777;
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::create_dir(&target)
                    .with_context(|| format!("cannot create `{}`", target.display()))?;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode | 0o700))?;
            }
            tar::EntryType::Regular => {
                let mut out = std::fs::File::options()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(mode & 0o777)
                    .open(&target)
                    .with_context(|| format!("cannot create `{}`", target.display()))?;
                std::io::copy(&mut (&mut entry).take(u64::MAX), &mut out)?;
                let mtime = entry.header().mtime()?;
                let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
                out.set_modified(time)?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()?
                    .context("a link in the snapshot's archive names no target")?;
                std::os::unix::fs::symlink(link, &target)
                    .with_context(|| format!("cannot create `{}`", target.display()))?;
            }
            other => bail!(
                "the snapshot's archive holds `{}` of a kind devinst does not restore ({other:?})",
                rel.display()
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_directory_packs_to_the_same_bytes_and_unpacks_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let saved = tmp.path().join("saved");
        std::fs::create_dir_all(saved.join("state/sub")).unwrap();
        std::fs::create_dir_all(saved.join("sky_logs")).unwrap();
        std::fs::write(saved.join("state/sub/a"), "alpha").unwrap();
        std::fs::write(saved.join("sky_logs/log"), "beta").unwrap();
        std::os::unix::fs::symlink("sub/a", saved.join("state/link")).unwrap();
        let (one, size) = pack(&saved, &tmp.path().join("1.tar")).unwrap();
        let (two, _) = pack(&saved, &tmp.path().join("2.tar")).unwrap();
        assert_eq!(one, two);
        assert_eq!(
            size,
            std::fs::metadata(tmp.path().join("1.tar")).unwrap().len()
        );
        let out = tmp.path().join("out");
        unpack(&tmp.path().join("1.tar"), &out).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("state/sub/a")).unwrap(),
            "alpha"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("state/link")).unwrap(),
            "alpha"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("sky_logs/log")).unwrap(),
            "beta"
        );
    }

    #[test]
    fn an_archive_cannot_write_outside_or_through_its_own_links() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        // A link to a directory outside, then a file "inside" it.
        let archive = tmp.path().join("evil.tar");
        let mut builder = tar::Builder::new(std::fs::File::create(&archive).unwrap());
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        link.set_mode(0o777);
        builder.append_link(&mut link, "state", &outside).unwrap();
        let mut file = tar::Header::new_gnu();
        file.set_size(4);
        file.set_mode(0o644);
        builder
            .append_data(&mut file, "state/planted", &b"evil"[..])
            .unwrap();
        builder.into_inner().unwrap();
        let err = format!(
            "{:#}",
            unpack(&archive, &tmp.path().join("out")).unwrap_err()
        );
        assert!(err.contains("not a directory"), "{err}");
        assert!(!outside.join("planted").exists());
    }
}
