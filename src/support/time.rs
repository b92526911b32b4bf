//! Timestamps as devinst writes them: RFC 3339, UTC, whole seconds
//! (`2025-11-23T14:30:05Z`).

use jiff::Timestamp;

/// The current time as RFC 3339 UTC. A clock jiff cannot represent reads as
/// the epoch rather than panicking.
pub fn now_utc() -> String {
    let now = Timestamp::try_from(std::time::SystemTime::now()).unwrap_or(Timestamp::UNIX_EPOCH);
    format(now)
}

/// Seconds since the epoch as RFC 3339 UTC; past year 9999 reads as the
/// last moment jiff knows.
pub fn utc_from_secs(secs: u64) -> String {
    let ts = i64::try_from(secs)
        .ok()
        .and_then(|s| Timestamp::from_second(s).ok())
        .unwrap_or(Timestamp::MAX);
    format(ts)
}

/// Precision 0: the fraction of a second is cut, never rounded.
fn format(ts: Timestamp) -> String {
    format!("{ts:.0}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_format_as_rfc3339_utc() {
        assert_eq!(utc_from_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_from_secs(1_763_908_205), "2025-11-23T14:30:05Z");
        // 2024-02-29, a leap day, one second before midnight.
        assert_eq!(utc_from_secs(1_709_251_199), "2024-02-29T23:59:59Z");
        // Past what jiff holds: its last moment, not a panic.
        assert_eq!(utc_from_secs(u64::MAX), "9999-12-30T22:00:00Z");
    }

    #[test]
    fn now_has_whole_seconds() {
        let now = now_utc();
        assert_eq!(now.len(), "2025-11-23T14:30:05Z".len(), "{now}");
        assert!(now.ends_with('Z') && !now.contains('.'), "{now}");
    }
}
