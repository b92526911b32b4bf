//! Instance names: they become container names and host names, so they follow
//! the stricter of the two rules.

use anyhow::{bail, Result};

const MAX_LEN: usize = 48;

/// Checks a name the user gave: lowercase letters, digits, `-`, `_` and `.`,
/// starting with a letter or digit, at most 48 characters.
pub fn validate(name: &str) -> Result<()> {
    if name.is_empty() {
        bail!("the instance name is empty");
    }
    if name.len() > MAX_LEN {
        bail!("the instance name `{name}` is longer than {MAX_LEN} characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        bail!("the instance name `{name}` must start with a lowercase letter or a digit");
    }
    if let Some(bad) = name.chars().find(|c| !is_allowed(*c)) {
        bail!("the instance name `{name}` contains {bad:?}; use lowercase letters, digits, `-`, `_` and `.`");
    }
    Ok(())
}

/// Turns a directory name into a valid instance name: lowercased, runs of
/// other characters folded into one `-`, trimmed to the allowed length.
pub fn from_dir_name(dir: &str) -> String {
    let mut name = String::new();
    for ch in dir.chars().flat_map(char::to_lowercase) {
        if is_allowed(ch) {
            name.push(ch);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    let name = name.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    let mut name: String = name.chars().take(MAX_LEN).collect();
    while name.ends_with(['-', '.', '_']) {
        name.pop();
    }
    if name.is_empty() {
        "instance".to_owned()
    } else {
        name
    }
}

/// A host name (RFC 1123 label) for the container: `_` and `.` become `-`.
pub fn hostname(name: &str) -> String {
    let label: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    label.trim_matches('-').to_owned()
}

fn is_allowed(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
}

/// A container name prefix: the same characters as a name, and it may be empty.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    validate(prefix).map_err(|_| {
        anyhow::anyhow!("`{prefix}` must be lowercase letters, digits, `-`, `_` and `.`, starting with a letter or digit")
    })
}

/// The container for instance `name`: `<prefix>-<name>`.
pub fn container_name(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}-{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_docker_safe_names() {
        for name in ["main", "feature-x", "a.b_c", "1st"] {
            validate(name).unwrap();
        }
    }

    #[test]
    fn rejects_unsafe_names() {
        for name in [
            "",
            "-lead",
            "Upper",
            "sp ace",
            "semi;colon",
            "$(x)",
            &"a".repeat(49),
        ] {
            assert!(validate(name).is_err(), "{name:?} accepted");
        }
    }

    #[test]
    fn directory_names_become_valid_names() {
        assert_eq!(from_dir_name("My Feature Branch"), "my-feature-branch");
        assert_eq!(from_dir_name("--x$(y)z"), "x-y-z");
        assert_eq!(from_dir_name("ünï"), "n");
        assert_eq!(from_dir_name("!!!"), "instance");
        assert_eq!(from_dir_name(&"a".repeat(80)).len(), MAX_LEN);
        for dir in ["My Feature Branch", "--x$(y)z", "ünï", "!!!", "a'b\nc"] {
            validate(&from_dir_name(dir)).unwrap();
        }
    }

    #[test]
    fn hostnames_are_rfc1123_labels() {
        assert_eq!(hostname("skypilot-dev-a_b.c"), "skypilot-dev-a-b-c");
    }
}
