//! The user's consent where a recipe asks for more than the defaults
//! (`recipe::consent` says what): recorded by `devinst trust`, given for one
//! run by `DEVINST_TRUST=1`, or asked once on a terminal; without a terminal,
//! the command stops and says what to do.

use crate::engine::{discover, Choice};
use crate::recipe::config::FILE_NAME;
use crate::recipe::consent::{self, Ask, HostFacts};
use crate::recipe::settings::Settings;
use crate::state::trust;
use crate::support::error::WithHint;
use crate::support::{output, terminal};
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// `DEVINST_TRUST=1` consents for this run only (CI), recording nothing.
pub const TRUST_ENV: &str = "DEVINST_TRUST";

/// What the recipe asks for beyond the defaults, judged on this host: the
/// engine's endpoint only when nothing of the user's beats it, unless
/// `everything` (what `devinst trust` records).
pub fn asks_here(settings: &Settings, engine: &Choice, everything: bool) -> Vec<Ask> {
    let env = discover::Env::from_process();
    let facts = HostFacts {
        home: directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf()),
        sockets: discover::known_sockets(&env),
        recipe_engine_used: everything || discover::recipe_endpoint_used(engine, &env),
        on_path: shadowed(
            &consent::shims_to_look_up(settings),
            &std::env::var_os("PATH").unwrap_or_default(),
        ),
    };
    consent::asks(settings, &facts)
}

/// Records the user's consent to `asks` for the worktree at `root`.
pub fn record(root: &Path, asks: &[Ask]) -> Result<PathBuf> {
    let digests: Vec<String> = asks.iter().map(Ask::digest).collect();
    trust::record(root, &digests)
}

/// Goes on only with the user's consent to what the recipe at `root` asks
/// for beyond the defaults. Safe recipes (the defaults among them) pass at
/// once.
pub fn require(root: &Path, settings: &Settings, engine: &Choice) -> Result<()> {
    let asks = asks_here(settings, engine, false);
    if asks.is_empty() || std::env::var(TRUST_ENV).is_ok_and(|v| v == "1") {
        return Ok(());
    }
    let digests: Vec<String> = asks.iter().map(Ask::digest).collect();
    if trust::is_trusted(root, &digests)? {
        return Ok(());
    }
    let recipe = root.join(FILE_NAME);
    let listing: String = asks.iter().map(|ask| format!("\n    {ask}")).collect();
    let trust_hint = format!(
        "read them, then run `devinst trust` in `{}` to agree (or set {TRUST_ENV}=1 for one run, as CI may)",
        root.display()
    );
    if !terminal::can_ask() {
        return Err(anyhow!(
            "`{}` asks for more than the defaults, and there is no terminal to ask you:{listing}",
            recipe.display()
        ))
        .hint(trust_hint);
    }
    let question = format!(
        "`{}` asks for more than the defaults:{listing}\nallow this for this worktree?",
        recipe.display()
    );
    if !terminal::ask_yes(&question)? {
        bail!("not allowed: nothing was done; {trust_hint}");
    }
    let file = trust::record(root, &digests)?;
    output::note(format!(
        "allowed; recorded in `{}` (a change to these keys asks again)",
        file.display()
    ));
    Ok(())
}

/// The commands on `path` (as in PATH) that shims of these names would
/// shadow once `activate` puts `.sky-dev/bin` first. devinst's own shim
/// directories are not the host's commands.
fn shadowed(names: &[&str], path: &OsStr) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    if names.is_empty() {
        return found;
    }
    let dirs: Vec<PathBuf> = std::env::split_paths(path)
        .filter(|dir| !dir.ends_with(".sky-dev/bin"))
        .collect();
    for name in names {
        if let Some(command) = dirs.iter().map(|d| d.join(name)).find(|p| is_command(p)) {
            found.insert((*name).to_owned(), command);
        }
    }
    found
}

fn is_command(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn shims_shadow_commands_on_the_path_but_not_other_shims() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        let shims = tmp.path().join("w/.sky-dev/bin");
        for dir in [&bin, &shims] {
            std::fs::create_dir_all(dir).unwrap();
        }
        for file in [bin.join("tool"), shims.join("mine")] {
            std::fs::write(&file, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(bin.join("data"), "not a command").unwrap();
        let path = std::env::join_paths([&shims, &bin]).unwrap();
        let found = shadowed(&["tool", "mine", "data", "bin", "none"], &path);
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            [("tool".to_owned(), bin.join("tool"))]
        );
        assert!(shadowed(&[], &path).is_empty());
    }
}
