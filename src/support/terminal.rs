//! The user's terminal during a TTY exec: raw mode, restored on every way out,
//! and its size; a yes-or-no question when someone is there to answer.

use rustix::termios::{self, OptionalActions, Termios};
use std::io::IsTerminal;

/// Whether a command should get a TTY: only when both ends are terminals, so
/// piped output stays byte-exact and stderr stays apart.
pub fn wants_tty() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// Whether stdin is `/dev/null`: then there is nothing to stream, and the
/// command gets the same empty input without the engine attaching one.
pub fn stdin_is_null() -> bool {
    use rustix::fs::{fstat, stat, FileType};
    let (Ok(ours), Ok(null)) = (fstat(std::io::stdin()), stat("/dev/null")) else {
        return false;
    };
    FileType::from_raw_mode(ours.st_mode) == FileType::CharacterDevice
        && ours.st_rdev == null.st_rdev
}

/// Whether someone is there to answer a question: stdin and stderr are
/// both terminals.
pub fn can_ask() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Asks `question` on stderr and reads one line of answer from stdin: yes
/// only for `y` or `yes`. Always printed, even with `-q`: it waits for the user.
pub fn ask_yes(question: &str) -> std::io::Result<bool> {
    use std::io::{BufRead, Write};
    let mut err = std::io::stderr().lock();
    write!(err, "{question} [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// The terminal's size as (rows, columns), if stdout is one.
pub fn size() -> Option<(u16, u16)> {
    let size = termios::tcgetwinsize(std::io::stdout()).ok()?;
    (size.ws_row > 0 && size.ws_col > 0).then_some((size.ws_row, size.ws_col))
}

/// Raw mode for as long as this lives. Dropping it restores the terminal: on
/// return, on error, and while a panic unwinds. Signals that would end the
/// process are caught by the exec loop, which returns normally.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    pub fn enter() -> std::io::Result<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(&stdin, OptionalActions::Now, &raw)?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}
