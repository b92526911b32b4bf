//! Which worktree a command is about: git's top level (linked worktrees
//! included), or the directory itself outside git.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
pub struct Worktree {
    pub root: PathBuf,
    pub git: Option<GitDirs>,
}

#[derive(Debug, Clone)]
pub struct GitDirs {
    /// The repository's shared git directory (the main worktree's `.git`).
    pub common_dir: PathBuf,
    /// The `info/exclude` file that applies to this worktree.
    pub exclude_file: PathBuf,
}

impl Worktree {
    /// Finds the worktree containing `dir` by asking git; outside a repository
    /// (or without git) the directory itself is the root.
    pub fn discover(dir: &Path) -> Result<Worktree> {
        let dir = canonical(dir)?;
        let output = Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args([
                "rev-parse",
                "--path-format=absolute",
                "--show-toplevel",
                "--git-common-dir",
                "--git-path",
                "info/exclude",
            ])
            .output();
        let output = match output {
            Ok(output) if output.status.success() => output,
            _ => {
                return Ok(Worktree {
                    root: dir,
                    git: None,
                })
            }
        };
        let text = String::from_utf8(output.stdout).context("git printed a non-UTF-8 path")?;
        let mut lines = text.lines();
        let (Some(root), Some(common), Some(exclude)) = (lines.next(), lines.next(), lines.next())
        else {
            // A bare repository or a `.git` directory itself: no work tree.
            return Ok(Worktree {
                root: dir,
                git: None,
            });
        };
        Ok(Worktree {
            root: canonical(Path::new(root))?,
            git: Some(GitDirs {
                common_dir: canonical(Path::new(common))?,
                exclude_file: PathBuf::from(exclude),
            }),
        })
    }

    /// The name an instance gets when none is given: the root directory's.
    pub fn dir_name(&self) -> String {
        self.root
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Adds `pattern` to git's exclude file, once, so the instance directory
    /// never shows in `git status` and no committed file changes.
    pub fn exclude(&self, pattern: &str) -> Result<()> {
        let Some(git) = &self.git else { return Ok(()) };
        let path = &git.exclude_file;
        let existing = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(err) => {
                return Err(err).with_context(|| format!("cannot read `{}`", path.display()))
            }
        };
        if existing.lines().any(|line| line.trim() == pattern) {
            return Ok(());
        }
        let mut text = existing;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(pattern);
        text.push('\n');
        if let Some(dir) = path.parent() {
            crate::fsutil::create_dir_all(dir)?;
        }
        crate::fsutil::write_atomic(path, text.as_bytes(), 0o644)
    }
}

fn canonical(path: &Path) -> Result<PathBuf> {
    path.canonicalize()
        .with_context(|| format!("cannot resolve `{}`", path.display()))
}
