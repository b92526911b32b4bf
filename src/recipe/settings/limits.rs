//! Resource limits: `[container]`'s, each tier's over them, and Docker's
//! memory notation.

use super::Settings;
use crate::recipe::config::Limits;
use crate::support::text::list_or_none;
use anyhow::{bail, Context, Result};

impl Settings {
    /// The resource limits in force: the tier's where one is chosen, each
    /// over the `[container]` value.
    pub fn limits_for(&self, tier: Option<&str>) -> Result<Limits> {
        let Some(tier) = tier else {
            return Ok(self.limits.clone());
        };
        let Some(t) = self.tiers.get(tier) else {
            let known: Vec<&str> = self.tiers.keys().map(String::as_str).collect();
            bail!(
                "unknown tier `{tier}`; `devinst.toml` defines: {}",
                list_or_none(&known)
            );
        };
        Ok(Limits {
            cpus: t.cpus.or(self.limits.cpus),
            memory: t.memory.clone().or_else(|| self.limits.memory.clone()),
            pids: t.pids.or(self.limits.pids),
        })
    }
}

pub(super) fn validate_limits(limits: &Limits) -> Result<()> {
    if let Some(cpus) = limits.cpus {
        if !(cpus > 0.0 && cpus.is_finite()) {
            bail!("`cpus` must be a positive number, not {cpus}");
        }
    }
    if let Some(memory) = &limits.memory {
        parse_memory(memory).context("`memory`")?;
    }
    if let Some(pids) = limits.pids {
        if pids <= 0 {
            bail!("`pids` must be positive, not {pids}");
        }
    }
    Ok(())
}

/// Parses Docker's memory notation: a number of bytes, or with `k`, `m`, `g`
/// (optionally followed by `b`), case-insensitive.
pub fn parse_memory(text: &str) -> Result<i64> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (number, scale) = match lower.char_indices().last() {
        Some((i, 'k')) => (&lower[..i], 1i64 << 10),
        Some((i, 'm')) => (&lower[..i], 1 << 20),
        Some((i, 'g')) => (&lower[..i], 1 << 30),
        Some((i, 't')) => (&lower[..i], 1 << 40),
        _ => (lower, 1),
    };
    let value: f64 = number
        .parse()
        .ok()
        .filter(|v: &f64| *v > 0.0 && v.is_finite())
        .with_context(|| format!("`{text}` is not a size like `512m` or `2g`"))?;
    Ok((value * scale as f64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::settings::tests::resolve;

    #[test]
    fn memory_sizes_parse_like_docker() {
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("2g").unwrap(), 2 << 30);
        assert_eq!(parse_memory("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_memory("1024").unwrap(), 1024);
        assert!(parse_memory("-1g").is_err());
    }

    #[test]
    fn tiers_override_container_limits() {
        let s = resolve("[container]\ncpus = 2.0\nmemory = \"4g\"\n[tiers.small]\ncpus = 0.5\n")
            .unwrap();
        let limits = s.limits_for(Some("small")).unwrap();
        assert_eq!(limits.cpus, Some(0.5));
        assert_eq!(limits.memory.as_deref(), Some("4g"));
        assert!(s
            .limits_for(Some("huge"))
            .unwrap_err()
            .to_string()
            .contains("small"));
    }
}
