//! The scripts `setup` writes, rendered from `templates/`. Every value is
//! shell-quoted here, in one place; templates never see a raw value.

use crate::support::shell::quote;
use std::collections::BTreeMap;

pub const ACTIVATE: &str = include_str!("../../templates/activate");
pub const SHIM: &str = include_str!("../../templates/shim");
pub const START_CONTAINER: &str = include_str!("../../templates/start-container");
pub const STOP_CONTAINER: &str = include_str!("../../templates/stop-container");

/// Values for the templates, quoted once on the way in.
#[derive(Debug, Default)]
pub struct Vars(BTreeMap<&'static str, String>);

impl Vars {
    /// Adds `value`, quoted as one shell word.
    pub fn word(mut self, key: &'static str, value: &str) -> Vars {
        self.0.insert(key, quote(value));
        self
    }

    /// Adds `values`, each quoted, separated by spaces.
    pub fn words(mut self, key: &'static str, values: &[String]) -> Vars {
        let quoted: Vec<String> = values.iter().map(|v| quote(v)).collect();
        self.0.insert(key, quoted.join(" "));
        self
    }
}

impl Vars {
    /// Adds `NAME='value'` lines with an `export NAME` each. Names are
    /// devinst's own (checked to be identifiers), values are quoted.
    pub fn exports(mut self, key: &'static str, pairs: &[(String, String)]) -> Vars {
        let lines: Vec<String> = pairs
            .iter()
            .map(|(name, value)| {
                assert!(is_identifier(name), "not a variable name: {name}");
                format!("{name}={}\nexport {name}\n", quote(value))
            })
            .collect();
        self.0.insert(key, lines.concat());
        self
    }

    /// Adds the names of `pairs`, space-separated, for `unset`.
    pub fn names(mut self, key: &'static str, pairs: &[(String, String)]) -> Vars {
        let names: Vec<&str> = pairs
            .iter()
            .map(|(name, _)| {
                assert!(is_identifier(name), "not a variable name: {name}");
                name.as_str()
            })
            .collect();
        self.0.insert(key, names.join(" "));
        self
    }
}

fn is_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces each `{{key}}` in `template`. A placeholder with no value is a
/// bug in devinst, caught by the tests that render every template.
pub fn render(template: &str, vars: &Vars) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .expect("unclosed placeholder in a template");
        let key = after[..end].trim();
        let value = vars
            .0
            .get(key)
            .unwrap_or_else(|| panic!("no value for `{{{{{key}}}}}`"));
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_words() {
        let vars = Vars::default()
            .word("a", "x'y")
            .words("b", &["1 2".into(), "$3".into()]);
        assert_eq!(render("{{a}} {{ b }}", &vars), r#"'x'\''y' '1 2' '$3'"#);
    }

    #[test]
    fn exports_quote_values() {
        let pairs = vec![("A_PORT".to_owned(), "1 $(x)".to_owned())];
        let vars = Vars::default().exports("e", &pairs).names("n", &pairs);
        assert_eq!(render("{{e}}", &vars), "A_PORT='1 $(x)'\nexport A_PORT\n");
        assert_eq!(render("unset {{n}}", &vars), "unset A_PORT");
    }

    #[test]
    #[should_panic(expected = "no value")]
    fn missing_values_are_caught() {
        render("{{nope}}", &Vars::default());
    }
}
