//! Checks more than one part of the recipe makes, kept here so `settings`
//! and `image` share them without reaching into each other.

use anyhow::{bail, Result};

/// A shell variable name: letters, digits and `_`, not starting with a digit.
pub fn validate_env_name(name: &str) -> Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        bail!("not a valid environment variable name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_shell_variable_names() {
        for good in ["A", "_x", "SKY_DEV_1"] {
            validate_env_name(good).unwrap();
        }
        for bad in ["", "1A", "A-B", "A B", "$A", "A\n"] {
            assert!(validate_env_name(bad).is_err(), "{bad:?}");
        }
    }
}
