//! `.sky-dev/` is devinst's own directory, and a repository cannot reach the
//! host through it: devinst refuses it when it, or anything directly in it
//! (or a service's data directory), is a symbolic link or tracked by git, and
//! it uses no `.sky-dev/` or `devinst.toml` that belongs to another user.
//! What devinst makes in it, it makes without following links.

use super::layout::{Layout, DIR_NAME};
use crate::recipe::config::FILE_NAME;
use crate::support::error::WithHint;
use crate::support::shell::quote;
use anyhow::{anyhow, bail, Context, Result};
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Whose `.sky-dev/` and `devinst.toml` devinst uses: the effective user's,
/// and root's (who can change any file anyway, and may have set the
/// worktree up). Run as root, also those of the owner of the directory
/// devinst was started in: root acting on a user's worktree (`user = "host"`)
/// uses that user's files, but never a third user's planted above it.
#[derive(Debug, Clone, Copy)]
pub struct Owners {
    me: u32,
    acting_for: Option<u32>,
}

impl Owners {
    /// The owners for a devinst started in `start`.
    pub fn of(start: &Path) -> Owners {
        let me = rustix::process::geteuid().as_raw();
        let acting_for = match me {
            0 => std::fs::metadata(start).ok().map(|m| m.uid()),
            _ => None,
        };
        Owners { me, acting_for }
    }

    fn trusts(&self, uid: u32) -> bool {
        uid == self.me || uid == 0 || Some(uid) == self.acting_for
    }

    /// Refuses `path` when another user owns it; a missing path is fine.
    pub fn check(&self, path: &Path) -> Result<()> {
        let Some(meta) = lstat(path)? else {
            return Ok(());
        };
        if self.trusts(meta.uid()) {
            return Ok(());
        }
        Err(anyhow!(
            "`{}` belongs to another user (uid {}); devinst never uses another user's files",
            path.display(),
            meta.uid()
        ))
        .hint("run devinst in a worktree of your own (`devinst setup` there), or as that user")
    }
}

/// Checks the instance directory before it is used: not a link, nothing in it
/// a link, not another user's, and `devinst.toml` not another user's either.
/// A worktree without `.sky-dev/` yet passes (`setup` makes it).
pub fn check(layout: &Layout, owners: &Owners) -> Result<()> {
    owners.check(&layout.root.join(FILE_NAME))?;
    let dir = layout.dir();
    let Some(meta) = lstat(&dir)? else {
        return Ok(());
    };
    if meta.file_type().is_symlink() {
        return Err(link_error(&dir));
    }
    if !meta.is_dir() {
        bail!("`{}` is not a directory", dir.display());
    }
    owners.check(&dir)?;
    owners.check(&layout.instance_file())?;
    no_links_in(&dir)?;
    no_links_in(&layout.dir().join("services"))
}

/// Refuses a symbolic link directly in `dir` (which may be missing).
fn no_links_in(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if matches!(err.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return Ok(())
        }
        Err(err) => return Err(err).with_context(|| format!("cannot list `{}`", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list `{}`", dir.display()))?;
        if entry.file_type()?.is_symlink() {
            return Err(link_error(&entry.path()));
        }
    }
    Ok(())
}

fn link_error(path: &Path) -> anyhow::Error {
    anyhow!(
        "`{}` is a symbolic link; `{DIR_NAME}/` is devinst's own directory and devinst follows no link in it",
        path.display()
    )
    .context(crate::support::error::Hint(format!(
        "remove the link (`rm {}`) and run `devinst setup`",
        quote(&path.to_string_lossy())
    )))
}

/// Refuses a `.sky-dev/` that git tracks any part of: a repository's
/// committed files are not devinst's to run or mount. Outside git (or when
/// git refuses another user's repository) nothing is tracked.
pub fn check_untracked(root: &Path) -> Result<()> {
    let tracked = super::worktree::tracked(root, DIR_NAME)?;
    let Some(first) = tracked.first() else {
        return Ok(());
    };
    Err(anyhow!(
        "git tracks `{first}`{}, but `{DIR_NAME}/` is devinst's own directory and no part of it may come from the repository",
        match tracked.len() {
            1 => String::new(),
            n => format!(" and {} more file(s)", n - 1),
        }
    ))
    .hint(format!(
        "untrack it with `git rm -r --cached {DIR_NAME}` (and commit), remove any link in it, then run `devinst setup`"
    ))
}

/// Fails unless every directory from `root` down to `rel`'s parent is a real
/// directory: no link, nothing else. A path that passes is really under
/// `root`, whatever a repository (or an archive) planted on the way.
pub fn real_dirs_up_to(root: &Path, rel: &Path) -> Result<()> {
    let mut at = root.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for part in parent.components() {
        at.push(part);
        match lstat(&at)? {
            Some(meta) if meta.is_dir() => {}
            Some(_) => bail!(
                "`{}` is not a directory (a link, or a file): nothing is read or written through it",
                at.display()
            ),
            None => bail!("`{}` does not exist", at.display()),
        }
    }
    Ok(())
}

/// Makes the directory `path` inside the worktree `layout.root`, creating
/// each missing directory on the way and following no link: one that is
/// there already must be a real directory.
pub fn make_dir(layout: &Layout, path: &Path) -> Result<()> {
    let rel = path
        .strip_prefix(&layout.root)
        .with_context(|| format!("`{}` is outside the worktree", path.display()))?;
    let mut at = layout.root.clone();
    for part in rel.components() {
        at.push(part);
        match lstat(&at)? {
            Some(meta) if meta.is_dir() => {}
            Some(meta) if meta.file_type().is_symlink() => return Err(link_error(&at)),
            Some(_) => bail!("`{}` is not a directory", at.display()),
            None => match std::fs::create_dir(&at) {
                Ok(()) => {}
                // Made by another devinst at the same moment: judged again.
                Err(err) if err.kind() == ErrorKind::AlreadyExists => {
                    return make_dir(layout, path)
                }
                Err(err) => {
                    return Err(err).with_context(|| format!("cannot create `{}`", at.display()))
                }
            },
        }
    }
    Ok(())
}

/// The path's own metadata (a link's, not its target's); `None` if missing.
fn lstat(path: &Path) -> Result<Option<std::fs::Metadata>> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot stat `{}`", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn layout() -> (tempfile::TempDir, Layout) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(&dir.path().canonicalize().unwrap());
        (dir, layout)
    }

    fn mine() -> Owners {
        Owners {
            me: rustix::process::geteuid().as_raw(),
            acting_for: None,
        }
    }

    #[test]
    fn a_link_in_the_instance_directory_is_refused_and_named() {
        let (_tmp, layout) = layout();
        check(&layout, &mine()).unwrap();
        make_dir(&layout, &layout.logs_dir()).unwrap();
        check(&layout, &mine()).unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), layout.state_dir()).unwrap();
        let err = format!("{:#}", check(&layout, &mine()).unwrap_err());
        assert!(err.contains(".sky-dev/state` is a symbolic link"), "{err}");
        assert!(err.contains("hint: remove the link"), "{err}");
        let err = make_dir(&layout, &layout.state_dir().join("x")).unwrap_err();
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        assert!(
            !outside.path().join("x").exists(),
            "nothing made through it"
        );
    }

    #[test]
    fn a_linked_instance_directory_or_service_directory_is_refused() {
        let (_tmp, layout) = layout();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), layout.dir()).unwrap();
        assert!(check(&layout, &mine()).is_err());
        assert!(make_dir(&layout, &layout.state_dir()).is_err());
        std::fs::remove_file(layout.dir()).unwrap();
        make_dir(&layout, &layout.dir().join("services")).unwrap();
        symlink(outside.path(), layout.service_data_dir("db")).unwrap();
        let err = format!("{:#}", check(&layout, &mine()).unwrap_err());
        assert!(err.contains("services/db` is a symbolic link"), "{err}");
    }

    #[test]
    fn another_users_files_are_refused_roots_are_not() {
        let (_tmp, layout) = layout();
        make_dir(&layout, &layout.state_dir()).unwrap();
        // Owned by someone other than root, whoever runs the test.
        let mut owner = rustix::process::geteuid().as_raw();
        if owner == 0 {
            owner = 4321;
            std::os::unix::fs::lchown(layout.dir(), Some(owner), None).unwrap();
        }
        let stranger = Owners {
            me: owner + 1,
            acting_for: None,
        };
        let err = format!("{:#}", check(&layout, &stranger).unwrap_err());
        assert!(err.contains("belongs to another user"), "{err}");
        let acting = Owners {
            me: 0,
            acting_for: Some(owner),
        };
        check(&layout, &acting).unwrap();
        assert!(stranger.trusts(0), "root's files are everyone's to use");
    }
}
