//! Handing out names and host ports under the registry's lock: never one
//! another instance holds, another live worktree's container uses, or
//! another program listens on.

use super::layout::{path_text, Record};
use super::ports;
use super::registry::{Entry, Registry};
use super::worktree::Worktree;
use crate::recipe::settings::Settings;
use crate::support::error::WithHint;
use crate::support::{names, output};
use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What a `setup` asks for.
pub struct Request<'a> {
    pub worktree: &'a Worktree,
    pub settings: &'a Settings,
    /// `devinst setup NAME`.
    pub explicit: Option<&'a str>,
    /// The instance this worktree had, from its `.instance`.
    pub previous: Option<&'a Record>,
    pub tier: Option<String>,
}

/// Chooses the instance's name and ports and enters them in the registry
/// (not yet saved), dropping this worktree's entries under other names.
/// `published` are host ports the engine's containers publish; `live_owner`
/// names the other live worktree whose container has a given name. Returns
/// the record to write and the names the worktree was renamed from.
pub fn reserve(
    registry: &mut Registry,
    request: &Request,
    published: &BTreeSet<u16>,
    live_owner: &dyn Fn(&str) -> Option<PathBuf>,
) -> Result<(Record, Vec<String>)> {
    let (settings, previous) = (request.settings, request.previous);
    let root = &request.worktree.root;
    let prefix = &settings.name_prefix;
    let in_engine = |name: &str| live_owner(&names::container_name(prefix, name));
    let name = choose_name(
        registry,
        root,
        request.worktree,
        request.explicit,
        previous,
        &in_engine,
    )?;
    let port = choose_port(registry, settings, &name, root, previous, published)?;
    let service_ports =
        choose_service_ports(registry, settings, &name, root, previous, port, published)?;
    let created = previous
        .filter(|p| p.name == name)
        .map(|p| p.created.clone())
        .unwrap_or_else(crate::support::time::now_utc);
    let record = Record {
        name: name.clone(),
        worktree: root.clone(),
        port,
        container: names::container_name(prefix, &name),
        created,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        tier: request.tier.clone(),
        service_ports,
    };
    // Drop a stale entry for this worktree under another name (a rename).
    let renamed: Vec<String> = registry
        .entries()
        .filter(|e| &e.worktree == root && e.name != name)
        .map(|e| e.name.clone())
        .collect();
    for old in &renamed {
        registry.remove(old);
    }
    registry.insert(Entry {
        name,
        worktree: root.clone(),
        container: record.container.clone(),
        port,
        created: record.created.clone(),
        services: record.service_ports.clone(),
    });
    Ok((record, renamed))
}

/// The name: the one asked for, else the one this worktree already has, else
/// the directory's. Two worktrees never share a name: a default name that is
/// taken gets a suffix from the worktree path; an explicit one is refused.
/// Taken means by another worktree in the registry, or by another live
/// worktree's container on the engine (`in_engine`): container names are
/// shared by every user of the engine, registered here or not.
fn choose_name(
    registry: &Registry,
    root: &Path,
    worktree: &Worktree,
    explicit: Option<&str>,
    previous: Option<&Record>,
    in_engine: &dyn Fn(&str) -> Option<PathBuf>,
) -> Result<String> {
    let wanted = match (explicit, previous) {
        (Some(name), _) => name.to_owned(),
        (None, Some(prev)) if names::validate(&prev.name).is_ok() => prev.name.clone(),
        (None, _) => names::from_dir_name(&worktree.dir_name()),
    };
    let holder = match registry.get(&wanted) {
        Some(entry) => entry.clone(),
        None => match in_engine(&wanted) {
            None => return Ok(wanted),
            Some(other) => Entry {
                name: wanted.clone(),
                worktree: other,
                container: String::new(),
                port: 0,
                created: String::new(),
                services: BTreeMap::new(),
            },
        },
    };
    if holder.worktree == root {
        return Ok(wanted);
    }
    // A worktree that moved (`git worktree move`) carries its `.instance`
    // along; its old path is gone, so it takes its entry back.
    let moved_here = previous.is_some_and(|p| p.name == wanted && p.worktree == holder.worktree);
    if moved_here && !holder.worktree_exists() {
        output::note(format!(
            "worktree moved from `{}`; updating the instance",
            holder.worktree.display()
        ));
        return Ok(wanted);
    }
    if explicit.is_some() {
        return Err(anyhow!(
            "the instance name `{wanted}` is taken by the worktree `{}`",
            holder.worktree.display()
        ))
        .hint("pick another name: `devinst setup OTHER-NAME`");
    }
    let suffixed = suffixed_name(&wanted, root);
    let other = registry
        .get(&suffixed)
        .map(|e| e.worktree.clone())
        .or_else(|| in_engine(&suffixed))
        .filter(|w| w != root);
    if let Some(other) = other {
        bail!(
            "cannot find a free instance name: `{suffixed}` is taken by `{}`",
            other.display()
        );
    }
    output::note(format!(
        "the name `{wanted}` is taken by `{}`; this instance is `{suffixed}`",
        holder.worktree.display()
    ));
    Ok(suffixed)
}

/// `name-xxxxxx`, the suffix from the worktree path: stable across re-runs.
fn suffixed_name(name: &str, root: &Path) -> String {
    let digest = Sha256::digest(path_text(root).as_bytes());
    let suffix: String = digest.iter().take(3).map(|b| format!("{b:02x}")).collect();
    let base: String = name.chars().take(48 - 7).collect();
    format!("{}-{suffix}", base.trim_end_matches(['-', '.', '_']))
}

fn choose_port(
    registry: &Registry,
    settings: &Settings,
    name: &str,
    root: &Path,
    previous: Option<&Record>,
    published: &BTreeSet<u16>,
) -> Result<u16> {
    let held = others_ports(registry, name);
    // Keep the port this instance already has, unless another instance took it.
    let own = registry
        .get(name)
        .filter(|e| e.worktree == root)
        .map(|e| e.port)
        .or(previous.map(|p| p.port));
    if let Some(port) = own.filter(|p| !held.contains_key(p) && settings.host_range.contains(p)) {
        return Ok(port);
    }
    choose_new_port(settings, held, published)
}

/// Ports every other instance holds, its services' included.
fn others_ports(registry: &Registry, name: &str) -> ports::Holders {
    let mut held = ports::Holders::new();
    for entry in registry.entries().filter(|e| e.name != name) {
        for port in entry.ports() {
            held.insert(port, format!("instance `{}`", entry.name));
        }
    }
    held
}

fn choose_new_port(
    settings: &Settings,
    mut held: ports::Holders,
    published: &BTreeSet<u16>,
) -> Result<u16> {
    for port in published {
        held.entry(*port)
            .or_insert_with(|| "a container".to_owned());
    }
    ports::choose(settings.host_range.clone(), &held, ports::is_free_on_host)
        .hint("free a port (`devinst list` shows instances; `devinst gc` removes stale ones), or widen `[ports] host_range` in devinst.toml")
}

/// A host port for each service that publishes one, from the same range and
/// under the same lock as the instance's own; each keeps the port it had.
fn choose_service_ports(
    registry: &Registry,
    settings: &Settings,
    name: &str,
    root: &Path,
    previous: Option<&Record>,
    instance_port: u16,
    published: &BTreeSet<u16>,
) -> Result<BTreeMap<String, u16>> {
    let mut held = others_ports(registry, name);
    held.insert(instance_port, format!("instance `{name}`"));
    let own = registry
        .get(name)
        .filter(|e| e.worktree == root)
        .map(|e| e.services.clone())
        .or_else(|| previous.map(|p| p.service_ports.clone()))
        .unwrap_or_default();
    let mut chosen = BTreeMap::new();
    for service in settings.services.values().filter(|s| s.port.is_some()) {
        let kept = own
            .get(&service.name)
            .copied()
            .filter(|p| !held.contains_key(p) && settings.host_range.contains(p));
        let port = match kept {
            Some(port) => port,
            None => choose_new_port(settings, held.clone(), published).with_context(|| {
                format!("cannot choose a host port for service `{}`", service.name)
            })?,
        };
        held.insert(
            port,
            format!("service `{}` of instance `{name}`", service.name),
        );
        chosen.insert(service.name.clone(), port);
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixed_names_are_valid_and_stable() {
        let a = suffixed_name("feature", Path::new("/a/feature"));
        assert_eq!(a, suffixed_name("feature", Path::new("/a/feature")));
        assert_ne!(a, suffixed_name("feature", Path::new("/b/feature")));
        names::validate(&a).unwrap();
        names::validate(&suffixed_name(&"x".repeat(48), Path::new("/x"))).unwrap();
    }
}
