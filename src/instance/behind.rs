//! Whether the instance is behind its worktree: the setup steps' inputs
//! changed since the steps last completed, or `[shims]` names shims `setup`
//! has not written (or it wrote shims the recipe no longer names). A shim
//! says so once per change, from a few reads: no engine, no git.

use super::Instance;
use crate::state::scripts::shims_out_of_date;
use crate::support::{fs, output};
use anyhow::Result;
use sha2::{Digest, Sha256};

/// How the setup commands appear among the inputs.
const COMMANDS: &str = "`[setup] commands`";

/// The setup steps' inputs as they are now: a line `DIGEST NAME` for the
/// commands and each input file (a missing file has a digest too).
pub fn inputs_now(instance: &Instance) -> String {
    let s = &instance.settings;
    let mut text = format!("{} {COMMANDS}\n", digest(s.setup_commands.join("\n")));
    for input in &s.setup_inputs {
        let bytes = std::fs::read(instance.layout.root.join(input));
        let hash = match bytes {
            Ok(bytes) => digest(bytes),
            Err(_) => "absent".to_owned(),
        };
        text.push_str(&format!("{hash} `{input}`\n"));
    }
    text
}

/// Records `inputs` (from [`inputs_now`] before the steps ran) as what the
/// setup steps completed with.
pub fn record(instance: &Instance, inputs: &str) -> Result<()> {
    let file = instance.layout.setup_inputs_file();
    if std::fs::read_to_string(&file).is_ok_and(|old| old == inputs) {
        return Ok(());
    }
    fs::write_atomic(&file, inputs.as_bytes(), 0o644)
}

/// Warns, once per change, that the instance is behind and what brings it up
/// to date. Before the steps ever completed there is nothing to be behind.
pub fn notice(instance: &Instance) {
    let mut lines = Vec::new();
    let mut key = String::new();
    if !instance.settings.setup_commands.is_empty() {
        if let Ok(done) = std::fs::read_to_string(instance.layout.setup_inputs_file()) {
            let now = inputs_now(instance);
            let changed = changed_inputs(&done, &now);
            if !changed.is_empty() {
                lines.push(format!(
                    "the instance is behind: {} changed since its setup steps last ran; \
                     run `devinst start` to bring it up to date",
                    changed.join(", ")
                ));
                key.push_str(&now);
            }
        }
    }
    let (missing, stale) = shims_out_of_date(&instance.layout, &instance.settings);
    lines.extend(shim_lines(&missing, &stale));
    if lines.is_empty() {
        return;
    }
    key.push_str(&lines.join("\n"));
    let key = digest(key);
    let file = instance.layout.noticed_file();
    if std::fs::read_to_string(&file).is_ok_and(|old| old.trim() == key) {
        return;
    }
    for line in &lines {
        output::warn(line);
    }
    let _ = fs::write_atomic(&file, format!("{key}\n").as_bytes(), 0o644);
}

/// The names whose line in `now` is not in `done`.
fn changed_inputs<'a>(done: &str, now: &'a str) -> Vec<&'a str> {
    now.lines()
        .filter(|line| !done.lines().any(|old| old == *line))
        .filter_map(|line| line.split_once(' ').map(|(_, name)| name))
        .collect()
}

fn shim_lines(missing: &[String], stale: &[String]) -> Vec<String> {
    let names = |list: &[String]| {
        list.iter()
            .map(|name| format!("`{name}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut lines = Vec::new();
    if !missing.is_empty() {
        lines.push(format!(
            "devinst.toml names shims that are not on PATH yet ({}); run `devinst setup` to add them",
            names(missing)
        ));
    }
    if !stale.is_empty() {
        lines.push(format!(
            "devinst.toml no longer names these shims ({}); run `devinst setup` to remove them",
            names(stale)
        ));
    }
    lines
}

fn digest(bytes: impl AsRef<[u8]>) -> String {
    Sha256::digest(bytes)
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_changed_is_named() {
        let done = "aa `[setup] commands`\nbb `pyproject.toml`\nabsent `setup.py`\n";
        assert!(changed_inputs(done, done).is_empty());
        let now = "aa `[setup] commands`\ncc `pyproject.toml`\ndd `setup.py`\n";
        assert_eq!(
            changed_inputs(done, now),
            ["`pyproject.toml`", "`setup.py`"]
        );
    }

    #[test]
    fn shims_to_add_and_to_remove_each_say_to_run_setup() {
        assert!(shim_lines(&[], &[]).is_empty());
        let lines = shim_lines(&["new".into()], &["old".into(), "older".into()]);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("(`new`)") && lines[0].contains("`devinst setup`"));
        assert!(lines[1].contains("(`old`, `older`)") && lines[1].contains("remove"));
    }
}
