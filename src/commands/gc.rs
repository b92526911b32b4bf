//! `devinst gc [--dry-run]`: remove what no live worktree stands behind:
//! registry entries whose worktree is gone (or now holds another instance),
//! and containers devinst made that no entry owns and no worktree claims.
//!
//! An instance whose worktree exists and names its container is never
//! touched, even when this registry does not know it: another user of the
//! engine (another data directory) may own it.

use crate::cli::GcArgs;
use crate::engine::{summary_name, Engine};
use crate::instance::spec::{LABEL_SERVICE, LABEL_WORKTREE};
use crate::state::layout::{Layout, DIR_NAME};
use crate::state::registry::{Entry, Registry};
use crate::support::output;
use crate::Context;
use anyhow::Result;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub async fn run(ctx: &Context, args: GcArgs) -> Result<i32> {
    let engine = Engine::connect(&ctx.engine_choice(None)).await?;
    // Held throughout, so no setup registers or renames an instance while
    // its worktree is being judged.
    let mut registry = Registry::lock()?;
    let containers: Vec<Managed> = engine
        .managed_containers()
        .await?
        .iter()
        .filter_map(|c| {
            let labels = c.labels.as_ref();
            Some(Managed::new(
                summary_name(c)?,
                labels
                    .and_then(|l| l.get(LABEL_WORKTREE))
                    .map(PathBuf::from),
                labels
                    .and_then(|l| l.get(LABEL_SERVICE))
                    .map(String::as_str),
            ))
        })
        .collect();
    let entries: Vec<Entry> = registry.entries().cloned().collect();
    let plan = plan(&entries, &containers, owner_of);

    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for (container, why) in &plan.containers {
        if !args.dry_run {
            crate::instance::lifecycle::remove(&engine, container).await?;
        }
        output::data(format!("{verb} container `{container}`: {why}"));
    }
    if !args.dry_run {
        // An instance with services had a private network named after its
        // container; with the instance and its services gone, so is it.
        for (container, _) in &plan.containers {
            crate::instance::services::remove_private_network(&engine, container).await?;
        }
    }
    for (entry, why) in &plan.entries {
        if !args.dry_run {
            registry.remove(&entry.name);
        }
        output::data(format!(
            "{verb} instance `{}` (port {}): {why}",
            entry.name, entry.port
        ));
    }
    if !args.dry_run && !plan.entries.is_empty() {
        registry.save()?;
    }
    for note in &plan.kept {
        output::note(note);
    }
    if plan.containers.is_empty() && plan.entries.is_empty() {
        output::note("nothing to clean up");
    }
    Ok(0)
}

/// What a worktree path holds now.
#[derive(Debug, Clone, PartialEq)]
enum Owner {
    /// No `.sky-dev/` there (or no directory at all).
    Gone,
    /// `.sky-dev/` without a readable `.instance`: a setup in progress or
    /// interrupted; not ours to judge.
    Unknown,
    /// The instance set up there now.
    Instance { name: String, container: String },
}

fn owner_of(worktree: &Path) -> Owner {
    if !worktree.join(DIR_NAME).is_dir() {
        return Owner::Gone;
    }
    match Layout::new(worktree).read_record() {
        Ok(record) => Owner::Instance {
            name: record.name,
            container: record.container,
        },
        Err(_) => Owner::Unknown,
    }
}

struct Managed {
    name: String,
    worktree: Option<PathBuf>,
    /// The instance's container it belongs to: its own name, or for a
    /// service's container (`<instance container>-<service>`) its instance's,
    /// so a live instance's services are judged, and kept, with it.
    instance: String,
}

impl Managed {
    fn new(name: String, worktree: Option<PathBuf>, service: Option<&str>) -> Managed {
        let instance = service
            .and_then(|s| name.strip_suffix(&format!("-{s}")))
            .unwrap_or(&name)
            .to_owned();
        Managed {
            name,
            worktree,
            instance,
        }
    }
}

#[derive(Debug, Default)]
struct Plan {
    /// Registry entries to drop (their ports are released), and why.
    entries: Vec<(Entry, String)>,
    /// Containers to remove, and why.
    containers: Vec<(String, String)>,
    /// Things left alone that the user may want to know about.
    kept: Vec<String>,
}

/// Decides, without touching anything, what is stale. `owner_of` tells what
/// a worktree path holds now.
fn plan(entries: &[Entry], containers: &[Managed], owner_of: impl Fn(&Path) -> Owner) -> Plan {
    let mut plan = Plan::default();
    let mut owned = BTreeSet::new();
    for entry in entries {
        let shown = entry.worktree.display();
        match owner_of(&entry.worktree) {
            Owner::Gone => plan
                .entries
                .push((entry.clone(), format!("its worktree `{shown}` is gone"))),
            Owner::Instance { name, .. } if name != entry.name => plan.entries.push((
                entry.clone(),
                format!("its worktree `{shown}` is now instance `{name}`"),
            )),
            _ => {
                owned.insert(entry.container.as_str());
            }
        }
    }
    for c in containers
        .iter()
        .filter(|c| !owned.contains(c.instance.as_str()))
    {
        let Some(worktree) = &c.worktree else {
            plan.containers
                .push((c.name.clone(), "it names no worktree".to_owned()));
            continue;
        };
        let shown = worktree.display();
        match owner_of(worktree) {
            Owner::Gone => plan
                .containers
                .push((c.name.clone(), format!("its worktree `{shown}` is gone"))),
            Owner::Instance { container, .. } if container != c.instance => plan.containers.push((
                c.name.clone(),
                format!("its worktree `{shown}` now uses container `{container}`"),
            )),
            Owner::Instance { .. } => plan.kept.push(format!(
                "kept container `{}`: its worktree `{shown}` is live but not in this registry \
                 (run `devinst setup` there to register it)",
                c.name
            )),
            Owner::Unknown => {}
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, worktree: &str) -> Entry {
        Entry {
            name: name.into(),
            worktree: worktree.into(),
            container: format!("c-{name}"),
            port: 47100,
            created: String::new(),
            services: Default::default(),
        }
    }

    fn managed(name: &str, worktree: &str) -> Managed {
        Managed::new(name.into(), Some(worktree.into()), None)
    }

    fn service(instance: &str, service: &str, worktree: &str) -> Managed {
        Managed::new(
            format!("{instance}-{service}"),
            Some(worktree.into()),
            Some(service),
        )
    }

    fn world(path: &Path) -> Owner {
        match path.to_str().unwrap() {
            "/live" => Owner::Instance {
                name: "live".into(),
                container: "c-live".into(),
            },
            "/renamed" => Owner::Instance {
                name: "new".into(),
                container: "c-new".into(),
            },
            "/half" => Owner::Unknown,
            _ => Owner::Gone,
        }
    }

    fn names<T>(items: &[(T, String)], name: impl Fn(&T) -> String) -> Vec<String> {
        items.iter().map(|(item, _)| name(item)).collect()
    }

    #[test]
    fn live_instances_are_never_removed() {
        let entries = [entry("live", "/live"), entry("half", "/half")];
        let containers = [managed("c-live", "/live"), managed("c-half", "/half")];
        let plan = plan(&entries, &containers, world);
        assert!(plan.entries.is_empty() && plan.containers.is_empty());
        // Unregistered but claimed by its live worktree: kept, and said so.
        let plan = super::plan(&[], &containers, world);
        assert!(plan.containers.is_empty());
        assert_eq!(plan.kept.len(), 1);
    }

    #[test]
    fn services_go_with_their_instance() {
        let entries = [entry("live", "/live")];
        let containers = [
            managed("c-live", "/live"),
            service("c-live", "db", "/live"),
            service("c-old", "db", "/gone"),
        ];
        let plan = plan(&entries, &containers, world);
        assert_eq!(names(&plan.containers, String::clone), ["c-old-db"]);
        // Unregistered but claimed by its live worktree: kept, not an orphan.
        let plan = super::plan(&[], &containers[..2], world);
        assert!(plan.containers.is_empty(), "{:?}", plan.containers);
    }

    #[test]
    fn gone_worktrees_lose_their_entry_and_container() {
        let entries = [entry("old", "/gone"), entry("live", "/live")];
        let containers = [managed("c-old", "/gone"), managed("c-live", "/live")];
        let plan = plan(&entries, &containers, world);
        assert_eq!(names(&plan.entries, |e| e.name.clone()), ["old"]);
        assert_eq!(names(&plan.containers, String::clone), ["c-old"]);
    }

    #[test]
    fn renamed_instances_release_the_old_name_and_container() {
        let entries = [entry("old", "/renamed"), entry("new", "/renamed")];
        let containers = [managed("c-old", "/renamed"), managed("c-new", "/renamed")];
        let plan = plan(&entries, &containers, world);
        assert_eq!(names(&plan.entries, |e| e.name.clone()), ["old"]);
        assert_eq!(names(&plan.containers, String::clone), ["c-old"]);
        assert!(plan.entries[0].1.contains("instance `new`"));
    }

    #[test]
    fn a_moved_worktrees_container_stays_with_its_entry() {
        // Setup in the new place re-pointed the entry; the container still
        // names the old path until `start` recreates it.
        let entries = [entry("live", "/live")];
        let containers = [managed("c-live", "/old-place")];
        let plan = plan(&entries, &containers, world);
        assert!(plan.containers.is_empty());
    }
}
