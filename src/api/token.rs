//! The API's bearer token: made on first use, kept beside the registry,
//! readable by its owner alone, and compared in constant time.

use crate::state::registry::data_dir;
use crate::support::error::WithHint;
use anyhow::{bail, Context, Result};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use subtle::ConstantTimeEq;

pub fn token_file() -> Result<PathBuf> {
    Ok(data_dir()?.join("api-token"))
}

/// The token, made (32 random bytes, as hex) when there is none yet.
pub fn load_or_create() -> Result<String> {
    let path = token_file()?;
    if let Some(parent) = path.parent() {
        crate::support::fs::create_dir_all(parent)?;
    }
    let mut token = [0u8; 32];
    getrandom::fill(&mut token).map_err(|err| anyhow::anyhow!("no randomness: {err}"))?;
    let token: String = token.iter().map(|b| format!("{b:02x}")).collect();
    // Made with its final mode, never replacing one that is there.
    match std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            file.write_all(format!("{token}\n").as_bytes())
                .with_context(|| format!("cannot write `{}`", path.display()))?;
            return Ok(token);
        }
        Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err).with_context(|| format!("cannot create `{}`", path.display())),
    }
    read_own(&path)
}

/// The token in `path`, which must be a regular file of ours that no one
/// else may read or change: a token someone else chose is no secret.
fn read_own(path: &PathBuf) -> Result<String> {
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let me = rustix::process::geteuid().as_raw();
    let fix = format!(
        "remove `{}`; the next `devinst serve` makes a new token",
        path.display()
    );
    if !meta.is_file() || meta.uid() != me || meta.mode() & 0o077 != 0 {
        return Err(anyhow::anyhow!(
            "`{}` is not a file only you can read (a link, another user's, or readable by others)",
            path.display()
        ))
        .hint(fix);
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let token = text.trim().to_owned();
    if token.len() < 32 {
        bail!("`{}` holds no token: {fix}", path.display());
    }
    Ok(token)
}

/// Whether `given` is the token, in time that does not depend on where they
/// differ.
pub fn matches(token: &str, given: &str) -> bool {
    token.as_bytes().ct_eq(given.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_whole_token_matches() {
        assert!(matches("abcd", "abcd"));
        assert!(!matches("abcd", "abce"));
        assert!(!matches("abcd", "abc"));
        assert!(!matches("abcd", ""));
    }

    #[test]
    fn a_token_file_others_can_read_or_that_is_a_link_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("api-token");
        std::fs::write(&path, "0123456789abcdef0123456789abcdef\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_own(&path).unwrap(), "0123456789abcdef0123456789abcdef");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(format!("{:#}", read_own(&path).unwrap_err()).contains("only you can read"));
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(read_own(&link).is_err());
    }
}
