//! Quantities written for people.

/// A byte count in binary units, one decimal, as `docker stats` writes
/// them: `512 B`, `256.0 MiB`, `1.5 GiB`.
pub fn bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_like_docker() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(256 << 20), "256.0 MiB");
        assert_eq!(bytes(64 << 20), "64.0 MiB");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
        // Rounded after the unit is chosen: just under 1 GiB reads 1024.0 MiB.
        assert_eq!(bytes((1 << 30) - 1), "1024.0 MiB");
        assert_eq!(bytes(5 << 40), "5.0 TiB");
        // Past the largest unit, the number grows instead.
        assert_eq!(bytes(2048 << 40), "2048.0 TiB");
        assert_eq!(bytes(u64::MAX), "16777216.0 TiB");
    }
}
