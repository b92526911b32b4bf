//! The user's consent to worktrees' recipes (`devinst trust`), kept in the
//! data directory beside the registry: one file per worktree, named by a
//! hash of its path, holding the digests of what the user agreed to. A
//! repository cannot write there, so it cannot consent for the user.

use crate::state::registry::data_dir;
use crate::support::fs::{create_dir_all, write_atomic};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, Serialize, Deserialize)]
struct TrustFile {
    worktree: PathBuf,
    /// The digests of the asks agreed to (`recipe::consent::Ask::digest`).
    asks: Vec<String>,
    trusted: String,
}

/// Whether the user agreed to every one of `digests` for the worktree at
/// `root`. What was agreed to may be more: a recipe that asks for less needs
/// no new word.
pub fn is_trusted(root: &Path, digests: &[String]) -> Result<bool> {
    is_trusted_in(&data_dir()?, &real(root), digests)
}

/// Records the user's consent to `digests` for the worktree at `root`,
/// replacing what was recorded before; returns the file written.
pub fn record(root: &Path, digests: &[String]) -> Result<PathBuf> {
    record_in(&data_dir()?, &real(root), digests)
}

/// The worktree's real path: the same worktree reached through a symlink
/// is the same worktree.
fn real(root: &Path) -> PathBuf {
    root.canonicalize().unwrap_or_else(|_| root.to_path_buf())
}

/// The file under the data directory `data` that holds a worktree's consent.
fn trust_file(data: &Path, root: &Path) -> PathBuf {
    let digest: String = Sha256::digest(root.as_os_str().as_encoded_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    data.join("trust").join(format!("{digest}.json"))
}

fn is_trusted_in(data: &Path, root: &Path, digests: &[String]) -> Result<bool> {
    let path = trust_file(data, root);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(err).with_context(|| format!("cannot read `{}`", path.display())),
    };
    // A file that does not parse holds no consent; `devinst trust` rewrites it.
    let Ok(file) = serde_json::from_str::<TrustFile>(&text) else {
        return Ok(false);
    };
    Ok(file.worktree == root && digests.iter().all(|d| file.asks.contains(d)))
}

fn record_in(data: &Path, root: &Path, digests: &[String]) -> Result<PathBuf> {
    let path = trust_file(data, root);
    if let Some(dir) = path.parent() {
        create_dir_all(dir)?;
    }
    let file = TrustFile {
        worktree: root.to_path_buf(),
        asks: digests.to_vec(),
        trusted: crate::support::time::now_utc(),
    };
    write_atomic(
        &path,
        serde_json::to_string_pretty(&file)?.as_bytes(),
        0o600,
    )?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn consent_covers_what_was_agreed_to_for_that_worktree_only() {
        let data = tempfile::tempdir().unwrap();
        let (a, b) = (Path::new("/w/a"), Path::new("/w/b"));
        assert!(!is_trusted_in(data.path(), a, &strings(&["x"])).unwrap());
        record_in(data.path(), a, &strings(&["x", "y"])).unwrap();
        assert!(is_trusted_in(data.path(), a, &strings(&["x", "y"])).unwrap());
        assert!(is_trusted_in(data.path(), a, &strings(&["y"])).unwrap());
        assert!(!is_trusted_in(data.path(), a, &strings(&["x", "z"])).unwrap());
        assert!(!is_trusted_in(data.path(), b, &strings(&["x"])).unwrap());
        // Recording again replaces: consent is to the recipe as it is now.
        record_in(data.path(), a, &strings(&["z"])).unwrap();
        assert!(!is_trusted_in(data.path(), a, &strings(&["x"])).unwrap());
        assert!(is_trusted_in(data.path(), a, &strings(&["z"])).unwrap());
        // A damaged file holds no consent, and is rewritten.
        std::fs::write(trust_file(data.path(), a), "{").unwrap();
        assert!(!is_trusted_in(data.path(), a, &strings(&["z"])).unwrap());
        record_in(data.path(), a, &strings(&["z"])).unwrap();
        assert!(is_trusted_in(data.path(), a, &strings(&["z"])).unwrap());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(trust_file(data.path(), a))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
