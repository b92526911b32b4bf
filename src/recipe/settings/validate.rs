//! The checks on resolved settings that span the whole file: paths, names,
//! limits and how the network and the services fit together.

use super::limits::validate_limits;
use super::service::{service_hint, validate_service};
use super::{Settings, User};
use crate::recipe::validate::validate_env_name;
use crate::support::error::WithHint;
use anyhow::{bail, Context, Result};

/// Names under `.sky-dev/bin/` that devinst writes itself.
const RESERVED_SHIMS: &[&str] = &["activate", "start-container", "stop-container"];

impl Settings {
    /// Refuses what no instance could run with, naming the key at fault.
    pub(super) fn validate(&self) -> Result<()> {
        self.validate_host_range()?;
        super::ports::validate_extra_ports(&self.extra_ports, self.container_port)
            .hint("fix `[ports.extra]` in devinst.toml: each line is `name = port inside`, e.g. `web = 3000`")?;
        self.validate_paths()?;
        self.validate_container()?;
        for (name, argv) in &self.shims {
            validate_shim(name, argv)?;
        }
        for key in self.env_set.keys() {
            validate_env_name(key).with_context(|| format!("`[env] set` key `{key}`"))?;
        }
        validate_limits(&self.limits).context("`[container]`")?;
        for (tier, limits) in &self.tiers {
            validate_limits(limits).with_context(|| format!("`[tiers.{tier}]`"))?;
        }
        for service in self.services.values() {
            validate_service(service).hint(service_hint(&service.name))?;
        }
        self.validate_network()
    }

    fn validate_host_range(&self) -> Result<()> {
        let (first, last) = (*self.host_range.start(), *self.host_range.end());
        if first == 0 || first > last {
            bail!("`[ports] host_range` must be [first, last] with 0 < first <= last, not [{first}, {last}]");
        }
        Ok(())
    }

    fn validate_paths(&self) -> Result<()> {
        for (key, path) in [
            ("[container] workdir", &self.workdir),
            ("[mounts] state", &self.state_mount),
            ("[mounts] logs", &self.logs_mount),
            ("[credentials] home", &self.credential_home),
        ] {
            if !path.starts_with('/') {
                bail!("`{key}` must be an absolute path inside the container, not `{path}`");
            }
        }
        Ok(())
    }

    fn validate_container(&self) -> Result<()> {
        if self.image.trim().is_empty() {
            bail!("`[container] image` is empty");
        }
        if self.user == User::Named(String::new()) {
            bail!("`[container] user` is empty; leave it out for the image's user, or use `host`");
        }
        if self.command.is_empty() {
            bail!("`[container] command` is empty; it is the process that keeps the container running");
        }
        crate::support::names::validate_prefix(&self.name_prefix)
            .context("`[container] name_prefix`")
    }

    /// Services and nodes are found by name, which only a network of their
    /// own gives.
    fn validate_network(&self) -> Result<()> {
        let carried = match (self.services.is_empty(), self.nodes > 1) {
            (_, true) => "the nodes of a `[cluster]`",
            (false, false) => "services",
            (true, false) => return Ok(()),
        };
        let Some(network) = &self.network else {
            return Ok(());
        };
        if is_engine_network_mode(network) {
            bail!(
                "`[container] network = \"{network}\"` cannot carry {carried}: they are found by name only on a network of their own; \
                 name one (`network = \"team-net\"`) or leave `network` out for the instance's private network"
            );
        }
        Ok(())
    }
}

/// Network modes the engine provides itself (Docker's and Podman's): an
/// instance joins them as they are, and devinst never creates them.
pub fn is_engine_network_mode(mode: &str) -> bool {
    matches!(
        mode,
        "default" | "bridge" | "host" | "none" | "private" | "slirp4netns" | "pasta"
    ) || mode.starts_with("container:")
        || mode.starts_with("ns:")
}

fn validate_shim(name: &str, argv: &[String]) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!("`[shims] {name}`: a shim name is a file name of letters, digits, `-`, `_` and `.`");
    }
    if RESERVED_SHIMS.contains(&name) {
        bail!("`[shims] {name}`: that name is devinst's own script");
    }
    if argv.is_empty() || argv[0].is_empty() {
        bail!("`[shims] {name}` names no command");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_network_modes_are_known() {
        for mode in [
            "bridge",
            "host",
            "none",
            "default",
            "pasta",
            "container:db",
            "ns:/x",
        ] {
            assert!(is_engine_network_mode(mode), "{mode}");
        }
        assert!(!is_engine_network_mode("team-net"));
    }
}
