//! `devinst setup [NAME]`: make this worktree an instance, or refresh it.

use crate::cli::SetupArgs;
use crate::engine::{summary_name, Engine};
use crate::instance::spec::LABEL_WORKTREE;
use crate::recipe::settings::Settings;
use crate::state::layout::{path_text, Layout, Record, DIR_NAME};
use crate::state::ports;
use crate::state::registry::{Entry, Registry};
use crate::state::scripts;
use crate::state::worktree::Worktree;
use crate::support::error::WithHint;
use crate::support::{names as name, output};
use crate::Context;
use anyhow::{anyhow, bail, Context as _, Result};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub fn run(ctx: &Context, args: SetupArgs) -> Result<i32> {
    let worktree = Worktree::discover(&ctx.cwd)?;
    let root = worktree.root.clone();
    if root.to_str().is_none() {
        bail!("the worktree path `{}` is not valid UTF-8", root.display());
    }
    let settings = Settings::load(&root)?;
    let layout = Layout::new(&root);
    let previous = layout.read_record().ok();
    if let Some(explicit) = &args.name {
        name::validate(explicit).hint("pick a name like `feature-x`")?;
    }
    // What the engine holds (published ports, containers' worktrees),
    // gathered before taking the lock; an engine that is down holds nothing.
    let tier = args
        .tier
        .or_else(|| previous.as_ref().and_then(|p| p.tier.clone()));
    settings.limits_for(tier.as_deref()).hint(
        "name a tier from `[tiers.NAME]` in devinst.toml with `devinst setup --tier NAME`, or add that table",
    )?;
    let held = super::block_on_value(engine_holdings(ctx.engine_choice(Some(&settings))));

    let mut registry = Registry::lock()?;
    let name = choose_name(
        &registry,
        &root,
        &worktree,
        args.name.as_deref(),
        previous.as_ref(),
        &|name| held.live_owner(&name::container_name(&settings.name_prefix, name), &root),
    )?;
    let container = name::container_name(&settings.name_prefix, &name);
    let port = choose_port(
        &registry,
        &settings,
        &name,
        &root,
        previous.as_ref(),
        &held.ports,
    )?;
    let service_ports = choose_service_ports(
        &registry,
        &settings,
        &name,
        &root,
        previous.as_ref(),
        port,
        &held.ports,
    )?;
    let created = previous
        .as_ref()
        .filter(|p| p.name == name)
        .map(|p| p.created.clone())
        .unwrap_or_else(crate::support::time::now_utc);
    let record = Record {
        name: name.clone(),
        worktree: root.clone(),
        port,
        container: container.clone(),
        created: created.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        tier,
        service_ports: service_ports.clone(),
    };
    // Drop a stale entry for this worktree under another name (a rename).
    let renamed: Vec<String> = registry
        .entries()
        .filter(|e| e.worktree == root && e.name != name)
        .map(|e| e.name.clone())
        .collect();
    for old in &renamed {
        registry.remove(old);
    }
    registry.insert(Entry {
        name: name.clone(),
        worktree: root.clone(),
        container: container.clone(),
        port,
        created,
        services: service_ports,
    });
    // The registry is saved first: a setup killed after this point finds its
    // own reservation next time and completes.
    registry.save()?;

    layout.create_dirs()?;
    scripts::write_scripts(&layout, &settings, &record)?;
    layout.write_record(&record)?;
    // Held until `.instance` names the entry just saved: `devinst gc` judges
    // entries against their worktree under this lock, and must never see a
    // half-made (or half-renamed) instance of a setup still running.
    drop(registry);
    worktree.exclude(&format!("/{DIR_NAME}/"))?;

    for old in renamed {
        output::warn(format!("this worktree's instance was renamed from `{old}`; its old container is left for `devinst gc`"));
    }
    print_next_steps(&layout, &settings, &record, previous.is_some());
    Ok(0)
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
        (None, Some(prev)) if name::validate(&prev.name).is_ok() => prev.name.clone(),
        (None, _) => name::from_dir_name(&worktree.dir_name()),
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

/// What the engine already holds that setup must not hand out again.
#[derive(Default)]
struct EngineHoldings {
    /// Host ports containers publish.
    ports: BTreeSet<u16>,
    /// devinst containers by name, with the worktree each was made for.
    worktrees: BTreeMap<String, PathBuf>,
}

impl EngineHoldings {
    /// The other live worktree whose instance owns `container`, if any. A
    /// worktree that is gone (or moved away) owns nothing any more.
    fn live_owner(&self, container: &str, root: &Path) -> Option<PathBuf> {
        self.worktrees
            .get(container)
            .filter(|w| w.as_path() != root && w.join(DIR_NAME).is_dir())
            .cloned()
    }
}

async fn engine_holdings(choice: crate::engine::Choice) -> Result<EngineHoldings> {
    let engine = Engine::connect_lazy(&choice)?;
    let options = bollard::query_parameters::ListContainersOptions {
        all: true,
        ..Default::default()
    };
    let list = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        engine.docker.list_containers(Some(options)),
    )
    .await
    .context("the engine did not answer in time")??;
    let mut held = EngineHoldings::default();
    for c in list {
        held.ports
            .extend(c.ports.iter().flatten().filter_map(|p| p.public_port));
        let worktree = c.labels.as_ref().and_then(|l| l.get(LABEL_WORKTREE));
        if let (Some(name), Some(worktree)) = (summary_name(&c), worktree) {
            held.worktrees.insert(name, PathBuf::from(worktree));
        }
    }
    Ok(held)
}

fn print_next_steps(layout: &Layout, settings: &Settings, record: &Record, refreshed: bool) {
    let verb = if refreshed { "refreshed" } else { "set up" };
    output::note(format!(
        "instance `{}` {verb}: container `{}`, port {}:{} -> {}",
        record.name, record.container, settings.bind, record.port, settings.container_port
    ));
    for (service, port) in &record.service_ports {
        output::note(format!(
            "service `{service}`: port {}:{port} -> {}",
            settings.bind,
            settings
                .services
                .get(service)
                .and_then(|s| s.port)
                .unwrap_or(0)
        ));
    }
    let shims: Vec<&str> = settings.shims.keys().map(String::as_str).collect();
    output::note(format!(
        "next:\n    source {}\n    start-container\n    {}",
        crate::support::shell::quote(&path_text(&layout.bin_dir().join("activate"))),
        shims
            .first()
            .map_or("devinst exec -- CMD".to_owned(), |s| format!("{s} --help"))
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixed_names_are_valid_and_stable() {
        let a = suffixed_name("feature", Path::new("/a/feature"));
        assert_eq!(a, suffixed_name("feature", Path::new("/a/feature")));
        assert_ne!(a, suffixed_name("feature", Path::new("/b/feature")));
        name::validate(&a).unwrap();
        name::validate(&suffixed_name(&"x".repeat(48), Path::new("/x"))).unwrap();
    }
}
