//! The signals an exec passes on, and when the user has had enough: three
//! SIGINTs in a row without a terminal, or Ctrl-C three times within a
//! second on one.

use super::ExecSpec;
use anyhow::{Context, Result};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGINTs (or Ctrl-Cs) that end the wait for a command ignoring them.
pub const GIVE_UP_AFTER: usize = 3;

/// The signals an exec listens for. Without a TTY, Ctrl-C arrives here as
/// SIGINT and is passed on; with one, it travels through the TTY itself.
pub(super) struct Signals {
    streams: Vec<(SignalKind, Signal)>,
    interrupts: usize,
}

impl Signals {
    pub fn listen(spec: &ExecSpec) -> Result<Signals> {
        let mut kinds = Vec::new();
        if spec.marker.is_some() {
            kinds.extend([
                SignalKind::interrupt(),
                SignalKind::terminate(),
                SignalKind::hangup(),
            ]);
        }
        if spec.tty {
            kinds.push(SignalKind::window_change());
        }
        let streams = kinds
            .into_iter()
            .map(|kind| Ok((kind, signal(kind)?)))
            .collect::<std::io::Result<_>>()
            .context("cannot listen for signals")?;
        Ok(Signals {
            streams,
            interrupts: 0,
        })
    }

    pub async fn next(&mut self) -> Option<SignalKind> {
        if self.streams.is_empty() {
            return std::future::pending().await;
        }
        let waits = self
            .streams
            .iter_mut()
            .map(|(kind, stream)| Box::pin(async move { stream.recv().await.map(|()| *kind) }));
        futures_util::future::select_all(waits).await.0
    }

    /// Whether this SIGINT is the one that gives up on the command.
    pub fn gives_up(&mut self, kind: SignalKind) -> bool {
        if kind == SignalKind::interrupt() {
            self.interrupts += 1;
        }
        self.interrupts >= GIVE_UP_AFTER
    }
}

pub(super) fn signal_name(kind: SignalKind) -> &'static str {
    match kind.as_raw_value() {
        1 => "HUP",
        2 => "INT",
        _ => "TERM",
    }
}

/// Ctrl-C typed on a terminal in raw mode: bytes on stdin, not signals.
#[derive(Default)]
pub(super) struct CtrlC {
    recent: Vec<Instant>,
}

impl CtrlC {
    /// Whether `input`, read at `now`, brings the Ctrl-Cs of the last second
    /// to [`GIVE_UP_AFTER`].
    pub fn gives_up(&mut self, input: &[u8], now: Instant) -> bool {
        for _ in input.iter().filter(|b| **b == 0x03) {
            self.recent.push(now);
        }
        self.recent
            .retain(|t| now.duration_since(*t) < Duration::from_secs(1));
        self.recent.len() >= GIVE_UP_AFTER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_ctrl_cs_within_a_second_give_up() {
        let start = Instant::now();
        let mut c = CtrlC::default();
        assert!(!c.gives_up(b"\x03", start));
        assert!(!c.gives_up(b"abc", start + Duration::from_millis(100)));
        assert!(!c.gives_up(b"\x03", start + Duration::from_millis(300)));
        assert!(c.gives_up(b"\x03", start + Duration::from_millis(600)));

        let mut slow = CtrlC::default();
        assert!(!slow.gives_up(b"\x03", start));
        assert!(!slow.gives_up(b"\x03", start + Duration::from_millis(700)));
        assert!(!slow.gives_up(b"\x03", start + Duration::from_millis(1400)));
        assert!(CtrlC::default().gives_up(b"\x03\x03\x03", start));
    }
}
