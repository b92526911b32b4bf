//! POSIX shell quoting, and reading back the `KEY='value'` files devinst writes.
//!
//! Every value that reaches a script devinst renders goes through [`quote`], so
//! no path, name or variable can break out of the script, whatever it contains.

use anyhow::{bail, Result};

/// Quotes `value` for any POSIX shell: single quotes, with `'` written as `'\''`.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for ch in value.chars() {
        if ch == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(ch);
        }
    }
    out.push('\'');
    out
}

/// Renders `KEY='value'` lines, one per pair.
pub fn assignments<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> String {
    pairs
        .into_iter()
        .map(|(key, value)| format!("{key}={}\n", quote(&value)))
        .collect()
}

/// Parses what [`assignments`] wrote. Only that exact form is accepted: the file
/// is ours, and guessing at other shell syntax would be a way to misread it.
pub fn parse_assignments(text: &str) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('\n') {
            rest = after;
            continue;
        }
        if rest.starts_with('#') {
            rest = rest.split_once('\n').map_or("", |(_, after)| after);
            continue;
        }
        let Some((key, after)) = rest.split_once('=') else {
            bail!("expected KEY='value', found {:?}", first_line(rest));
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("invalid variable name {key:?}");
        }
        let (value, after) = parse_quoted(after)?;
        pairs.push((key.to_owned(), value));
        rest = after;
    }
    Ok(pairs)
}

/// Reads `'...'` segments joined by `\'` up to the end of the line.
fn parse_quoted(mut rest: &str) -> Result<(String, &str)> {
    let mut value = String::new();
    loop {
        if let Some(after) = rest.strip_prefix('\'') {
            let Some(end) = after.find('\'') else {
                bail!("unterminated quote");
            };
            value.push_str(&after[..end]);
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix("\\'") {
            value.push('\'');
            rest = after;
        } else if rest.is_empty() || rest.starts_with('\n') {
            return Ok((value, rest));
        } else {
            bail!("unexpected text after value: {:?}", first_line(rest));
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &[&str] = &[
        "",
        "plain",
        "with space",
        "it's",
        "''",
        "$(touch pwned)",
        "`id`",
        "a\nb",
        "back\\slash",
        "\"double\"",
        "ünïcödé",
        "'\\''",
    ];

    #[test]
    fn quoted_values_round_trip_through_parse() {
        for value in HOSTILE {
            let text = assignments([("KEY", value.to_string())]);
            let parsed = parse_assignments(&text).unwrap();
            assert_eq!(
                parsed,
                vec![("KEY".to_owned(), value.to_string())],
                "{text}"
            );
        }
    }

    #[test]
    fn quoted_values_round_trip_through_sh() {
        for value in HOSTILE {
            let script = format!("printf %s {}", quote(value));
            let out = std::process::Command::new("sh")
                .args(["-c", &script])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), *value);
        }
    }

    #[test]
    fn parse_rejects_foreign_syntax() {
        assert!(parse_assignments("KEY=unquoted\n").is_err());
        assert!(parse_assignments("KEY='open\n").is_err());
        assert!(parse_assignments("BAD-KEY='x'\n").is_err());
        assert!(parse_assignments("# comment\n\nA='1'\n").is_ok());
    }
}
