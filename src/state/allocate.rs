//! Handing out names and host ports under the registry's lock: never one
//! another instance holds, another live worktree's container uses, or
//! another program listens on.

use super::layout::{path_text, Record};
use super::ports::{self, EnginePorts};
use super::registry::{Entry, Registry};
use super::worktree::Worktree;
use crate::recipe::settings::Settings;
use crate::support::error::WithHint;
use crate::support::{names, output};
use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
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
    /// The user gave the port up (deleted `.sky-dev/.port`): choose another.
    pub new_port: bool,
}

/// Chooses the instance's name and ports and enters them in the registry
/// (not yet saved), dropping this worktree's entries under other names.
/// `engine` are the host ports the engine's containers hold (`None` when no
/// engine could be asked); `live_owner` names the other live worktree whose
/// container has a given name. Returns the record to write and the names the
/// worktree was renamed from.
pub fn reserve(
    registry: &mut Registry,
    request: &Request,
    engine: Option<&EnginePorts>,
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
    let port = choose_port(registry, request, &name, engine)?;
    let (extra_ports, service_ports) = choose_named_ports(registry, request, &name, port, engine)?;
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
        extra_ports,
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
    registry.insert(Entry::of(&record));
    Ok((record, renamed))
}

/// Holds a set-up instance's ports in the registry before its container is
/// made again: after `destroy`, `.sky-dev/` keeps the port while the registry
/// entry is gone, and another `setup` may have been given it since. Refuses,
/// saying who holds it, when another instance or another container (`engine`
/// minus `own`, the instance's containers) holds one of its ports now.
/// Returns whether the registry changed (the caller saves it).
pub fn hold(
    registry: &mut Registry,
    record: &Record,
    engine: &EnginePorts,
    own: &[String],
) -> Result<bool> {
    let setup_hint =
        "run `devinst setup` to move this instance to a free port, then `devinst start`";
    if let Some(other) = registry
        .get(&record.name)
        .filter(|e| e.worktree != record.worktree)
    {
        return Err(anyhow!(
            "the instance name `{}` is now taken by the worktree `{}`",
            record.name,
            other.worktree.display()
        ))
        .hint("run `devinst setup` to give this worktree an instance of its own again");
    }
    let held = others_ports(registry, &record.name);
    let entry = Entry::of(record);
    for port in entry.ports() {
        let holder = held.get(&port).cloned().or_else(|| {
            ports::other_holder(engine, port, own).map(|h| format!("container `{}`", h.container))
        });
        if let Some(holder) = holder {
            return Err(anyhow!(
                "host port {port} of instance `{}` is now held by {holder}",
                record.name
            ))
            .hint(setup_hint);
        }
    }
    let same = registry.get(&record.name).is_some_and(|e| {
        e.port == entry.port
            && e.services == entry.services
            && e.extra == entry.extra
            && e.container == entry.container
    });
    if !same {
        registry.insert(entry);
    }
    Ok(!same)
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
                extra: BTreeMap::new(),
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
    request: &Request,
    name: &str,
    engine: Option<&EnginePorts>,
) -> Result<u16> {
    let (settings, root) = (request.settings, &request.worktree.root);
    let mut held = others_ports(registry, name);
    // The port this instance already has: the registry's, else `.instance`'s
    // (after `destroy`, the entry is gone while `.sky-dev/` stays).
    let own = registry
        .get(name)
        .filter(|e| &e.worktree == root)
        .map(|e| e.port)
        .or(request.previous.map(|p| p.port));
    let Some(port) = own else {
        return choose_new_port(settings, held, engine);
    };
    let why = if request.new_port {
        Some("was given up (`.sky-dev/.port` was deleted)".to_owned())
    } else {
        let own_containers = own_containers(settings, name);
        why_not_keep(
            port,
            settings,
            &held,
            engine,
            &own_containers,
            ports::is_free_on_host,
        )
    };
    let Some(why) = why else {
        return Ok(port);
    };
    held.insert(port, format!("instance `{name}`, which cannot keep it"));
    let new = choose_new_port(settings, held, engine)?;
    output::note(format!(
        "host port {port} {why}; instance `{name}` moves to port {new} \
         (`devinst start` makes its container publish the new port, keeping its state)"
    ));
    Ok(new)
}

/// The containers of instance `name`: its own and its services'.
fn own_containers(settings: &Settings, name: &str) -> Vec<String> {
    let container = names::container_name(&settings.name_prefix, name);
    let services = settings.services.keys().map(|s| format!("{container}-{s}"));
    services.chain([container.clone()]).collect()
}

/// Why an instance cannot keep `port`, or `None` when it can: another
/// instance holds it, it left the range, a container that is not the
/// instance's holds it, or (when the engine could be asked, and so knows
/// whether the instance's own container is what listens) another program
/// listens on it.
fn why_not_keep(
    port: u16,
    settings: &Settings,
    held: &ports::Holders,
    engine: Option<&EnginePorts>,
    own: &[String],
    is_free: impl Fn(u16) -> bool,
) -> Option<String> {
    if !settings.host_range.contains(&port) {
        let (first, last) = (settings.host_range.start(), settings.host_range.end());
        return Some(format!("is outside `[ports] host_range` ({first}-{last})"));
    }
    if let Some(holder) = held.get(&port) {
        return Some(format!("is held by {holder}"));
    }
    let engine = engine?;
    if let Some(other) = ports::other_holder(engine, port, own) {
        return Some(format!("is held by container `{}`", other.container));
    }
    let ours_listens = engine
        .get(&port)
        .is_some_and(|holders| holders.iter().any(|h| h.running));
    (!ours_listens && !is_free(port)).then(|| "is in use by another program".to_owned())
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
    engine: Option<&EnginePorts>,
) -> Result<u16> {
    for (port, holders) in engine.into_iter().flatten() {
        if let Some(holder) = holders.first() {
            held.entry(*port)
                .or_insert_with(|| format!("container `{}`", holder.container));
        }
    }
    ports::choose(settings.host_range.clone(), &held, ports::is_free_on_host)
        .hint("free a port (`devinst list` shows instances; `devinst gc` removes stale ones), or widen `[ports] host_range` in devinst.toml")
}

/// Host ports for the instance's named ports and its services' ports, from
/// the same range and under the same lock as the instance's own port.
fn choose_named_ports(
    registry: &Registry,
    request: &Request,
    name: &str,
    instance_port: u16,
    engine: Option<&EnginePorts>,
) -> Result<(BTreeMap<String, u16>, BTreeMap<String, u16>)> {
    let (settings, root) = (request.settings, &request.worktree.root);
    let mut held = others_ports(registry, name);
    held.insert(instance_port, format!("instance `{name}`"));
    // What the instance had: the registry's, else `.instance`'s.
    let had = registry
        .get(name)
        .filter(|e| &e.worktree == root)
        .map(|e| (e.extra.clone(), e.services.clone()))
        .or_else(|| {
            request
                .previous
                .map(|p| (p.extra_ports.clone(), p.service_ports.clone()))
        })
        .unwrap_or_default();
    let chooser = NamedPorts {
        settings,
        engine,
        own_containers: own_containers(settings, name),
        instance: name,
    };
    let extra = chooser.choose(&mut held, settings.extra_ports.keys(), &had.0, "port")?;
    let services = settings
        .services
        .values()
        .filter(|s| s.port.is_some())
        .map(|s| &s.name);
    let services = chooser.choose(&mut held, services, &had.1, "service")?;
    Ok((extra, services))
}

/// Chooses host ports for named things of one instance.
struct NamedPorts<'a> {
    settings: &'a Settings,
    engine: Option<&'a EnginePorts>,
    own_containers: Vec<String>,
    instance: &'a str,
}

impl NamedPorts<'_> {
    /// A host port for each of `names`, each keeping the one it `had` unless
    /// it cannot, as for the instance's own; `kind` says what the names are
    /// in messages. Each chosen port goes into `held`.
    fn choose<'n>(
        &self,
        held: &mut ports::Holders,
        names: impl Iterator<Item = &'n String>,
        had: &BTreeMap<String, u16>,
        kind: &str,
    ) -> Result<BTreeMap<String, u16>> {
        let mut chosen = BTreeMap::new();
        for name in names {
            let kept = had.get(name).copied().filter(|p| {
                let why = why_not_keep(
                    *p,
                    self.settings,
                    held,
                    self.engine,
                    &self.own_containers,
                    ports::is_free_on_host,
                );
                why.is_none()
            });
            let port = match kept {
                Some(port) => port,
                None => choose_new_port(self.settings, held.clone(), self.engine)
                    .with_context(|| format!("cannot choose a host port for {kind} `{name}`"))?,
            };
            held.insert(
                port,
                format!("{kind} `{name}` of instance `{}`", self.instance),
            );
            chosen.insert(name.clone(), port);
        }
        Ok(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(container: &str, running: bool) -> Vec<ports::HeldBy> {
        vec![ports::HeldBy {
            container: container.into(),
            running,
        }]
    }

    #[test]
    fn a_port_is_kept_only_while_nothing_else_holds_it() {
        let settings = Settings::resolve(Default::default()).unwrap();
        let own = ["skypilot-dev-a".to_owned()];
        let none = ports::Holders::new();
        let engine = EnginePorts::from([
            (46501, held_by("skypilot-dev-a", true)),
            (46502, held_by("skypilot-dev-a", false)),
            (46503, held_by("someone-else", false)),
        ]);
        let why = |port, held: &ports::Holders, engine, free: bool| {
            why_not_keep(port, &settings, held, engine, &own, |_| free)
        };
        // Its own running container is what listens: kept.
        assert_eq!(why(46501, &none, Some(&engine), false), None);
        // Its own container is stopped: whoever listens is someone else.
        assert_eq!(why(46502, &none, Some(&engine), true), None);
        assert!(why(46502, &none, Some(&engine), false)
            .unwrap()
            .contains("another program"));
        assert!(why(46503, &none, Some(&engine), true)
            .unwrap()
            .contains("`someone-else`"));
        let held = ports::Holders::from([(46504, "instance `b`".to_owned())]);
        assert!(why(46504, &held, Some(&engine), true)
            .unwrap()
            .contains("instance `b`"));
        assert!(why(9, &none, Some(&engine), true)
            .unwrap()
            .contains("host_range"));
        // No engine to ask: a listener may be its own container; kept.
        assert_eq!(why(46505, &none, None, false), None);
    }

    #[test]
    fn suffixed_names_are_valid_and_stable() {
        let a = suffixed_name("feature", Path::new("/a/feature"));
        assert_eq!(a, suffixed_name("feature", Path::new("/a/feature")));
        assert_ne!(a, suffixed_name("feature", Path::new("/b/feature")));
        names::validate(&a).unwrap();
        names::validate(&suffixed_name(&"x".repeat(48), Path::new("/x"))).unwrap();
    }
}
