//! The one place that writes for humans. Data goes to stdout; notes, progress
//! and errors go to stderr, and `-q` silences notes.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

static VERBOSITY: AtomicU8 = AtomicU8::new(1);

pub fn set_verbosity(level: u8) {
    VERBOSITY.store(level, Ordering::Relaxed);
}

pub fn quiet() -> bool {
    VERBOSITY.load(Ordering::Relaxed) == 0
}

/// A status line for the user, on stderr.
pub fn note(message: impl std::fmt::Display) {
    if !quiet() {
        eprintln!("{message}");
    }
}

pub fn warn(message: impl std::fmt::Display) {
    eprintln!("warning: {message}");
}

/// Set once stdout can take no more (its reader went away).
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Data for stdout. A closed pipe (`devinst gc | head -1`) is not an error:
/// the reader has what it wanted, so the rest of the data is dropped quietly
/// while the command still finishes its work and exits as it would have.
pub fn data(text: impl std::fmt::Display) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(err) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        if err.kind() != std::io::ErrorKind::BrokenPipe {
            warn(format!(
                "cannot write to stdout ({err}); the rest of the output is dropped"
            ));
        }
    }
}

pub fn json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => data(text),
        Err(err) => report(&anyhow::Error::from(err)),
    }
}

/// Prints an error chain as `error:` / `Caused by:` / `hint:`.
pub fn report(err: &anyhow::Error) {
    let (messages, hints) = crate::support::error::messages_and_hints(err);
    let mut text = String::new();
    let mut messages = messages.into_iter();
    if let Some(first) = messages.next() {
        text.push_str(&format!("error: {first}\n"));
    }
    for cause in messages {
        text.push_str(&format!("  Caused by: {cause}\n"));
    }
    for hint in hints {
        text.push_str(&format!("hint: {hint}\n"));
    }
    let _ = std::io::stderr().write_all(text.as_bytes());
}
