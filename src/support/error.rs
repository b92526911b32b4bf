//! Error conventions: hints travel inside the error chain, and a few errors are
//! not errors at all but exit codes (a command's own, passed through).

use std::fmt;

/// The next thing for the user to try. Attached with [`WithHint::hint`] as a
/// layer of context that displays as `hint: ...`; the reporter lifts those
/// layers out of the chain and prints them after the error.
#[derive(Debug)]
pub struct Hint(pub String);

pub const HINT_PREFIX: &str = "hint: ";

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{HINT_PREFIX}{}", self.0)
    }
}

/// An error chain's messages, outermost first, and its hints apart.
pub fn messages_and_hints(err: &anyhow::Error) -> (Vec<String>, Vec<String>) {
    let mut hints = Vec::new();
    let mut messages = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        match text.strip_prefix(HINT_PREFIX) {
            Some(hint) => hints.push(hint.to_owned()),
            None => messages.push(text),
        }
    }
    (messages, hints)
}

pub trait WithHint<T> {
    fn hint(self, hint: impl Into<String>) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> WithHint<T> for Result<T, E> {
    fn hint(self, hint: impl Into<String>) -> anyhow::Result<T> {
        self.map_err(|err| err.into().context(Hint(hint.into())))
    }
}

/// Ends the process with `code` and prints nothing: the message, if any, was
/// already shown (a command run by `exec` says its own errors).
#[derive(Debug)]
pub struct SilentExit {
    pub code: i32,
}

impl fmt::Display for SilentExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit {}", self.code)
    }
}

impl std::error::Error for SilentExit {}

/// Exit codes devinst itself uses (a command's own codes pass through `exec`).
pub mod code {
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    /// `exec` and shims: devinst failed around the command (Docker uses the same).
    pub const EXEC_FAILED: i32 = 125;
}
