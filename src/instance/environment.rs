//! What a command in the instance gets on top of the container's own
//! environment: the project's venv active, as after `source venv/bin/activate`,
//! and git configured with the host's identity. `start` works it out (a git
//! process, the container's `PATH`) and keeps it in `.sky-dev/`, so a shim
//! only reads a file.

use super::Instance;
use crate::engine::Container;
use crate::state::layout::path_text;
use crate::support::{fs, shell};
use anyhow::{Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};

/// Docker's `PATH` for a container whose image sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The variables an exec adds, in the order given: the ones `start` wrote,
/// or none before the first `start`. One read: this is every shim's path.
pub fn exec_vars(instance: &Instance) -> Vec<(String, String)> {
    std::fs::read_to_string(instance.layout.exec_env_file())
        .ok()
        .and_then(|text| shell::parse_assignments(&text).ok())
        .unwrap_or_default()
}

/// `env` with `vars` set: an earlier entry of the same name (passed from the
/// host, or from an older read of the file) gives way.
pub fn with_vars(env: &mut Vec<String>, vars: &[(String, String)]) {
    env.retain(|entry| {
        let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
        !vars.iter().any(|(k, _)| k == key)
    });
    env.extend(vars.iter().map(|(k, v)| format!("{k}={v}")));
}

/// The environment the setup steps get: git's config (the venv is theirs to
/// make, and the default steps name it by its path).
pub fn setup_env(instance: &Instance) -> Vec<String> {
    let (key, value) = git_config_var(instance);
    vec![format!("{key}={value}")]
}

/// Writes `.sky-dev/gitconfig` from the host's git identity, before the
/// setup steps run (they may need git, for a version, say).
pub fn write_git_config(instance: &Instance) -> Result<()> {
    let root = &instance.layout.root;
    let text = git_config_text(
        host_git_value(root, "user.name").as_deref(),
        host_git_value(root, "user.email").as_deref(),
    );
    write_if_changed(&instance.layout.gitconfig(), &text)
}

/// Writes what every exec adds, once the setup steps are done: the venv,
/// when they made one, in front of the container's `PATH`, and `cluster`
/// (a cluster's addresses, the same on every node).
pub fn write_exec_env(
    instance: &Instance,
    container: &Container,
    cluster: &[(String, String)],
) -> Result<()> {
    let venv = instance.layout.venv_dir();
    let venv = venv
        .join("bin/activate")
        .is_file()
        .then(|| inside(instance, &venv));
    let path = container
        .env
        .iter()
        .find_map(|entry| entry.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let mut vars = activated(git_config_var(instance), venv.as_deref(), path);
    vars.extend_from_slice(cluster);
    let text = shell::assignments(vars.iter().map(|(k, v)| (k.as_str(), v.clone())));
    write_if_changed(&instance.layout.exec_env_file(), &text)
}

/// The variables of an exec in an instance whose venv (if any) is at `venv`
/// inside, the container's own `PATH` being `path`.
fn activated(
    git_config: (String, String),
    venv: Option<&str>,
    path: &str,
) -> Vec<(String, String)> {
    let mut vars = vec![git_config];
    if let Some(venv) = venv {
        vars.push(("VIRTUAL_ENV".to_owned(), venv.to_owned()));
        vars.push(("PATH".to_owned(), format!("{venv}/bin:{path}")));
    }
    vars
}

fn git_config_var(instance: &Instance) -> (String, String) {
    (
        "GIT_CONFIG_GLOBAL".to_owned(),
        inside(instance, &instance.layout.gitconfig()),
    )
}

/// Where a path under the worktree appears in the container.
fn inside(instance: &Instance, host: &Path) -> String {
    let rel = host.strip_prefix(&instance.layout.root).unwrap_or(host);
    format!(
        "{}/{}",
        instance.settings.workdir.trim_end_matches('/'),
        path_text(rel)
    )
}

/// One value of the host's git config as git resolves it in the worktree,
/// or `None` when it is unset (or git is missing).
fn host_git_value(root: &Path, key: &str) -> Option<String> {
    let out = Command::new("git")
        .args(["config", "--get", key])
        .current_dir(root)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())?;
    let value = String::from_utf8(out.stdout).ok()?;
    Some(value.trim_end_matches('\n').to_owned()).filter(|v| !v.is_empty())
}

/// The global git config inside: the host's identity; every directory safe
/// (the container holds this worktree only, and the setup steps may run as
/// root in a worktree someone else owns); then the container user's own.
fn git_config_text(name: Option<&str>, email: Option<&str>) -> String {
    let mut text = String::from(
        "# Written by devinst at `start` from the host's git config; rewritten each time.\n\
         # Settings of your own belong in ~/.gitconfig inside, which is read last.\n",
    );
    if name.is_some() || email.is_some() {
        text.push_str("[user]\n");
        for (key, value) in [("name", name), ("email", email)] {
            if let Some(value) = value {
                text.push_str(&format!("\t{key} = {}\n", git_quote(value)));
            }
        }
    }
    text.push_str("[safe]\n\tdirectory = *\n[include]\n\tpath = ~/.gitconfig\n");
    text
}

/// A git config value in double quotes, read back exactly.
fn git_quote(value: &str) -> String {
    let mut out = String::from("\"");
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            ch => out.push(ch),
        }
    }
    out.push('"');
    out
}

fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    fs::write_atomic(path, text.as_bytes(), 0o644)
        .with_context(|| format!("cannot write `{}`", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git_var() -> (String, String) {
        ("GIT_CONFIG_GLOBAL".into(), "/app/.sky-dev/gitconfig".into())
    }

    #[test]
    fn a_venv_goes_in_front_of_the_containers_path() {
        let vars = activated(git_var(), Some("/app/.sky-dev/venv"), "/usr/bin:/bin");
        assert_eq!(
            vars,
            [
                git_var(),
                ("VIRTUAL_ENV".into(), "/app/.sky-dev/venv".into()),
                ("PATH".into(), "/app/.sky-dev/venv/bin:/usr/bin:/bin".into()),
            ]
        );
        assert_eq!(activated(git_var(), None, "/usr/bin"), [git_var()]);
    }

    #[test]
    fn the_instances_vars_replace_passed_ones() {
        let mut env = vec!["GIT_CONFIG_GLOBAL=/host/path".into(), "A=1".into()];
        with_vars(&mut env, &[git_var()]);
        assert_eq!(env, ["A=1", "GIT_CONFIG_GLOBAL=/app/.sky-dev/gitconfig"]);
    }

    /// `git config --file` reading `text` back.
    fn git_reads(text: &str, key: &str) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gitconfig");
        std::fs::write(&file, text).unwrap();
        let out = Command::new("git")
            .args(["config", "--file"])
            .arg(&file)
            .args(["--get", key])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap())
    }

    #[test]
    fn git_reads_the_identity_back_exactly() {
        let name = "Ada \"A\" L\\ove\tlace; # not a comment";
        let text = git_config_text(Some(name), Some("ada@example.com"));
        assert_eq!(git_reads(&text, "user.name"), Some(format!("{name}\n")));
        assert_eq!(
            git_reads(&text, "user.email").as_deref(),
            Some("ada@example.com\n")
        );
        assert_eq!(git_reads(&text, "safe.directory").as_deref(), Some("*\n"));
        let text = git_config_text(None, None);
        assert_eq!(git_reads(&text, "user.name"), None);
        assert_eq!(git_reads(&text, "safe.directory").as_deref(), Some("*\n"));
    }
}
