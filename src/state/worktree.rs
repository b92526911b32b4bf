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
    /// The `info/exclude` file that applies to this worktree.
    pub exclude_file: PathBuf,
}

impl Worktree {
    /// Finds the worktree containing `dir` by asking git; outside a repository
    /// (or without git) the directory itself is the root.
    pub fn discover(dir: &Path) -> Result<Worktree> {
        let dir = canonical(dir)?;
        let outside = |dir: PathBuf| {
            Ok(Worktree {
                root: dir,
                git: None,
            })
        };
        // One question per call: a path may contain a newline, so answers
        // can't share one output split into lines.
        let Some(root) = rev_parse(&dir, &["--show-toplevel"])? else {
            return outside(dir);
        };
        if root.as_os_str().is_empty() {
            // Inside a `.git` directory or a bare repository: no work tree.
            return outside(dir);
        }
        let exclude_file = rev_parse(&dir, &["--git-path", "info/exclude"])?
            .context("git found no exclude file")?;
        Ok(Worktree {
            root: canonical(&root)?,
            git: Some(GitDirs { exclude_file }),
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
            crate::support::fs::create_dir_all(dir)?;
        }
        crate::support::fs::write_atomic(path, text.as_bytes(), 0o644)
    }
}

/// The repository's common git directory when it lies outside the worktree
/// at `root` (a linked worktree's), which must then be mounted for git to
/// work inside. A `.git` directory means a main worktree: no git call needed.
pub fn outside_common_dir(root: &Path) -> Result<Option<PathBuf>> {
    if root.join(".git").is_dir() || !root.join(".git").exists() {
        return Ok(None);
    }
    let Some(common) = rev_parse(root, &["--git-common-dir"])? else {
        return Ok(None);
    };
    let common = canonical(&common)?;
    Ok(Some(common).filter(|c| !c.starts_with(root)))
}

/// The repository's common git directory, wherever it is: the same for a
/// main worktree and all its linked ones. `None` outside git.
pub fn common_dir(root: &Path) -> Result<Option<PathBuf>> {
    match rev_parse(root, &["--git-common-dir"])? {
        Some(common) => Ok(Some(canonical(&common)?)),
        None => Ok(None),
    }
}

/// The files git tracks under `rel` in the worktree at `root`, as git names
/// them. None outside git, without git, or when git refuses the repository
/// (another user's, without `safe.directory`).
pub fn tracked(root: &Path, rel: &str) -> Result<Vec<String>> {
    let output = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["ls-files", "-z", "--", rel])
        .output();
    let output = match output {
        Ok(output) if output.status.success() => output,
        _ => return Ok(Vec::new()),
    };
    output
        .stdout
        .split(|b| *b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| String::from_utf8(name.to_vec()).context("git printed a non-UTF-8 path"))
        .collect()
}

/// Asks `git rev-parse` one question about `dir`; `None` outside a repository
/// or without git. Only the one newline git ends its answer with is removed.
fn rev_parse(dir: &Path, args: &[&str]) -> Result<Option<PathBuf>> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--path-format=absolute"])
        .args(args)
        .output();
    let output = match output {
        Ok(output) if output.status.success() => output,
        _ => return Ok(None),
    };
    let mut bytes = output.stdout;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    let text = String::from_utf8(bytes).context("git printed a non-UTF-8 path")?;
    Ok(Some(PathBuf::from(text)))
}

fn canonical(path: &Path) -> Result<PathBuf> {
    path.canonicalize()
        .with_context(|| format!("cannot resolve `{}`", path.display()))
}
