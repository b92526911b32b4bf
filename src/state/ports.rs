//! Host port choice: the first port in the range that no other instance holds,
//! the engine has not published and nothing on the host listens on.

use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::ops::RangeInclusive;

/// Who holds a port, for the error when the range is exhausted.
pub type Holders = BTreeMap<u16, String>;

/// Host ports the engine's containers hold, by port: published by a running
/// container, or bound by a stopped one that publishes it when started.
pub type EnginePorts = BTreeMap<u16, Vec<HeldBy>>;

/// A container that holds a host port.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldBy {
    pub container: String,
    /// Whether it publishes the port now (else it will when started).
    pub running: bool,
}

/// The first container in `held` that holds `port` and is not one of `own`.
pub fn other_holder<'a>(held: &'a EnginePorts, port: u16, own: &[String]) -> Option<&'a HeldBy> {
    held.get(&port)?
        .iter()
        .find(|h| !own.contains(&h.container))
}

/// Picks a port. `held` are ports other instances own (with their names),
/// `is_free` asks the host whether a port can be bound.
pub fn choose(
    range: RangeInclusive<u16>,
    held: &Holders,
    is_free: impl Fn(u16) -> bool,
) -> Result<u16> {
    let (first, last) = (*range.start(), *range.end());
    for port in range {
        if !held.contains_key(&port) && is_free(port) {
            return Ok(port);
        }
    }
    let mut who: Vec<String> = held
        .iter()
        .filter(|(port, _)| (first..=last).contains(*port))
        .map(|(port, name)| format!("{port} ({name})"))
        .collect();
    let others = (last - first + 1) as usize - who.len();
    if others > 0 {
        who.push(format!("{others} in use by other programs"));
    }
    bail!("no free host port in {first}-{last}: {}", who.join(", "))
}

/// Whether nothing on the host listens on `port`, on any address.
pub fn is_free_on_host(port: u16) -> bool {
    portpicker::is_free_tcp(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_first_unheld_free_port() {
        let held = Holders::from([(46501, "a".into())]);
        assert_eq!(choose(46501..=46599, &held, |_| true).unwrap(), 46502);
        assert_eq!(choose(46501..=46599, &held, |p| p != 46502).unwrap(), 46503);
    }

    #[test]
    fn exhausted_range_names_the_holders() {
        let held = Holders::from([(46501, "a".into()), (46502, "b".into())]);
        let err = choose(46501..=46503, &held, |p| p != 46503).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("46501 (a)"), "{text}");
        assert!(text.contains("46502 (b)"), "{text}");
        assert!(text.contains("1 in use by other programs"), "{text}");
    }
}
