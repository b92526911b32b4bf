//! What the askama templates of devinst's scripts (`templates/*.sh`) need:
//! the escaper that shell-quotes every value, in one place, and checked
//! variable names, the one thing written unquoted.

use crate::support::shell::quote;
use anyhow::{bail, Result};
use std::fmt;

/// askama's escaper for `templates/*.sh` (see `askama.toml`): every
/// `{{ value }}` in a script becomes one shell word through [`quote`].
///
/// askama hands a value over in the pieces its `Display` writes; each piece
/// is quoted on its own, and quoted pieces side by side are still one word.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shell;

impl askama::filters::Escaper for Shell {
    fn write_escaped_str<W: fmt::Write>(&self, mut dest: W, string: &str) -> fmt::Result {
        dest.write_str(&quote(string))
    }
}

/// A shell variable name, checked when made: the one thing a script
/// template writes unquoted, as `{{ var.unquoted() }}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarName(String);

impl VarName {
    pub fn new(name: String) -> Result<VarName> {
        if !is_identifier(&name) {
            bail!("`{name}` is not a shell variable name");
        }
        Ok(VarName(name))
    }

    /// The name as it is, past the quoting escaper.
    pub fn unquoted(&self) -> askama::filters::Safe<&str> {
        askama::filters::Safe(&self.0)
    }
}

fn is_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use askama::Template;

    #[derive(Template)]
    #[template(
        source = "{{ a }} {% for w in words %}{{ w }},{% endfor %} {{ n }} {{ v.unquoted() }}",
        ext = "sh"
    )]
    struct Probe<'a> {
        a: &'a str,
        words: &'a [&'a str],
        n: u32,
        v: VarName,
    }

    #[test]
    fn every_value_is_one_quoted_word_and_names_are_bare() {
        let probe = Probe {
            a: "x'y $(z)",
            words: &["", "1 2", "a\nb"],
            n: 46501,
            v: VarName::new("DEVINST_SERVICE_DB_PORT".into()).unwrap(),
        };
        assert_eq!(
            probe.render().unwrap(),
            "'x'\\''y $(z)' '','1 2','a\nb', '46501' DEVINST_SERVICE_DB_PORT"
        );
    }

    #[test]
    fn variable_names_are_checked() {
        for bad in ["", "1A", "A-B", "A B", "A;rm", "Ä"] {
            assert!(VarName::new(bad.into()).is_err(), "{bad:?}");
        }
        for good in ["A", "_a1", "DEVINST_SERVICE_OBJECT_STORE_PORT"] {
            VarName::new(good.into()).unwrap();
        }
    }
}
