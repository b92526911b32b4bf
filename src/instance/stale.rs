//! What `devinst gc` removes: what no live worktree stands behind: registry
//! entries whose worktree is gone (or now holds another instance), and
//! containers devinst made that no entry owns and no worktree claims.
//!
//! An instance whose worktree exists and names its container is never
//! touched, even when this registry does not know it: another user of the
//! engine (another data directory) may own it. Nor is one whose worktree
//! cannot be seen (a home of mode 700): only "no such file" proves a
//! worktree gone. By default only containers this data directory made are
//! judged at all.

use super::spec::{LABEL_DATA_DIR, LABEL_NODE, LABEL_SERVICE, LABEL_WORKTREE};
use crate::engine::Engine;
use crate::state::layout::{Layout, DIR_NAME};
use crate::state::registry::Entry;
use anyhow::Result;
use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Which containers `gc` judges.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    /// Those made from the data directory of this identity, and those its
    /// registry names.
    DataDir(String),
    /// Every devinst container on the engine (`gc --all`).
    All,
}

/// What is stale among this registry's entries and the engine's devinst
/// containers. Decides only; the caller removes.
pub async fn find(engine: &Engine, entries: &[Entry], scope: &Scope) -> Result<Plan> {
    let containers: Vec<Managed> = super::managed_containers(engine)
        .await?
        .into_iter()
        .map(|c| {
            let worktree = c.label(LABEL_WORKTREE).map(PathBuf::from);
            let part = c
                .label(LABEL_SERVICE)
                .map(str::to_owned)
                .or_else(|| c.label(LABEL_NODE).map(|rank| format!("node-{rank}")));
            let data_dir = c.label(LABEL_DATA_DIR).map(str::to_owned);
            Managed::new(c.name, worktree, part.as_deref()).made_by(data_dir)
        })
        .collect();
    let mut plan = plan(entries, &containers, scope, owner_of);
    let label = format!("{}=devinst", super::spec::LABEL_MANAGED_BY);
    let volumes: Vec<Managed> = engine
        .list_volumes(&label)
        .await?
        .into_iter()
        .map(|v| {
            let worktree = v.label(LABEL_WORKTREE).map(PathBuf::from);
            let data_dir = v.label(LABEL_DATA_DIR).map(str::to_owned);
            Managed::new(v.name, worktree, None).made_by(data_dir)
        })
        .collect();
    plan.volumes = stale_volumes(entries, &volumes, scope, owner_of);
    Ok(plan)
}

/// What a worktree path holds now.
#[derive(Debug, Clone, PartialEq)]
enum Occupant {
    /// No `.sky-dev/` there, or no directory at all: the file system said
    /// "no such file". Nothing else proves a worktree gone.
    Gone,
    /// `.sky-dev/` without a readable `.instance`: a setup in progress or
    /// interrupted; not ours to judge.
    Unknown,
    /// It cannot be seen (permission denied, ...): not ours to judge either.
    Unreadable(String),
    /// The instance set up there now.
    Instance { name: String, container: String },
}

fn owner_of(worktree: &Path) -> Occupant {
    // Not followed: a `.sky-dev` symlink is no instance of devinst's.
    match std::fs::symlink_metadata(worktree.join(DIR_NAME)) {
        Ok(_) => {}
        Err(err) if err.kind() == ErrorKind::NotFound => return Occupant::Gone,
        Err(err) => return Occupant::Unreadable(err.to_string()),
    }
    let layout = Layout::new(worktree);
    match std::fs::File::open(layout.instance_file()) {
        Err(err) if err.kind() == ErrorKind::PermissionDenied => {
            return Occupant::Unreadable(err.to_string())
        }
        _ => {}
    }
    match layout.read_record() {
        Ok(record) => Occupant::Instance {
            name: record.name,
            container: record.container,
        },
        Err(_) => Occupant::Unknown,
    }
}

struct Managed {
    name: String,
    worktree: Option<PathBuf>,
    /// The instance's container it belongs to: its own name, or for a
    /// service's or a cluster node's container (`<instance container>-<service>`,
    /// `<instance container>-node-K`) its instance's, so a live instance's
    /// services and nodes are judged, and kept, with it.
    instance: String,
    /// The identity of the data directory that made it, when labelled.
    data_dir: Option<String>,
}

impl Managed {
    /// `part`: the service's name, or `node-K`, for a container that is part
    /// of an instance.
    fn new(name: String, worktree: Option<PathBuf>, part: Option<&str>) -> Managed {
        let instance = part
            .and_then(|s| name.strip_suffix(&format!("-{s}")))
            .unwrap_or(&name)
            .to_owned();
        Managed {
            name,
            worktree,
            instance,
            data_dir: None,
        }
    }

    fn made_by(self, data_dir: Option<String>) -> Managed {
        Managed { data_dir, ..self }
    }
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Registry entries to drop (their ports are released), and why.
    pub entries: Vec<(Entry, String)>,
    /// Containers to remove, and why.
    pub containers: Vec<(String, String)>,
    /// Services' named volumes to remove (after the containers), and why.
    pub volumes: Vec<(String, String)>,
    /// Things left alone that the user may want to know about.
    pub kept: Vec<String>,
}

/// Decides, without touching anything, what is stale. `owner_of` tells what
/// a worktree path holds now.
fn plan(
    entries: &[Entry],
    containers: &[Managed],
    scope: &Scope,
    owner_of: impl Fn(&Path) -> Occupant,
) -> Plan {
    let mut plan = Plan::default();
    let mut owned = BTreeSet::new();
    for entry in entries {
        let shown = entry.worktree.display();
        match owner_of(&entry.worktree) {
            Occupant::Gone => plan
                .entries
                .push((entry.clone(), format!("its worktree `{shown}` is gone"))),
            Occupant::Instance { name, .. } if name != entry.name => plan.entries.push((
                entry.clone(),
                format!("its worktree `{shown}` is now instance `{name}`"),
            )),
            Occupant::Unreadable(why) => {
                plan.kept.push(format!(
                    "kept instance `{}`: cannot see its worktree `{shown}` ({why})",
                    entry.name
                ));
                owned.insert(entry.container.as_str());
            }
            _ => {
                owned.insert(entry.container.as_str());
            }
        }
    }
    let registered: BTreeSet<&str> = entries.iter().map(|e| e.container.as_str()).collect();
    let mut elsewhere = 0;
    for c in containers
        .iter()
        .filter(|c| !owned.contains(c.instance.as_str()))
    {
        let in_scope = match scope {
            Scope::All => true,
            Scope::DataDir(id) => {
                c.data_dir.as_deref() == Some(id) || registered.contains(c.instance.as_str())
            }
        };
        if !in_scope {
            elsewhere += 1;
            continue;
        }
        judge_container(&mut plan, c, &owner_of);
    }
    if elsewhere > 0 {
        plan.kept.push(format!(
            "left {elsewhere} container(s) of other data directories (other users, or an \
             older devinst) alone; `devinst gc --all` judges them too"
        ));
    }
    plan
}

/// The services' volumes whose worktree is proven gone: data is kept as
/// long as its worktree could still want it (a renamed instance's too).
fn stale_volumes(
    entries: &[Entry],
    volumes: &[Managed],
    scope: &Scope,
    owner_of: impl Fn(&Path) -> Occupant,
) -> Vec<(String, String)> {
    let in_scope = |v: &Managed| match scope {
        Scope::All => true,
        Scope::DataDir(id) => {
            v.data_dir.as_deref() == Some(id)
                || entries
                    .iter()
                    .any(|e| Some(&e.worktree) == v.worktree.as_ref())
        }
    };
    volumes
        .iter()
        .filter(|v| in_scope(v))
        .filter_map(|v| {
            let worktree = v.worktree.as_ref()?;
            (owner_of(worktree) == Occupant::Gone).then(|| {
                let why = format!("its worktree `{}` is gone", worktree.display());
                (v.name.clone(), why)
            })
        })
        .collect()
}

/// Adds `c` to the plan when no live worktree stands behind it.
fn judge_container(plan: &mut Plan, c: &Managed, owner_of: &impl Fn(&Path) -> Occupant) {
    let Some(worktree) = &c.worktree else {
        plan.containers
            .push((c.name.clone(), "it names no worktree".to_owned()));
        return;
    };
    let shown = worktree.display();
    match owner_of(worktree) {
        Occupant::Gone => plan
            .containers
            .push((c.name.clone(), format!("its worktree `{shown}` is gone"))),
        Occupant::Instance { container, .. } if container != c.instance => plan.containers.push((
            c.name.clone(),
            format!("its worktree `{shown}` now uses container `{container}`"),
        )),
        Occupant::Instance { .. } => plan.kept.push(format!(
            "kept container `{}`: its worktree `{shown}` is live but not in this registry \
             (run `devinst setup` there to register it)",
            c.name
        )),
        Occupant::Unreadable(why) => plan.kept.push(format!(
            "kept container `{}`: cannot see its worktree `{shown}` ({why})",
            c.name
        )),
        Occupant::Unknown => {}
    }
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
            extra: Default::default(),
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

    fn world(path: &Path) -> Occupant {
        match path.to_str().unwrap() {
            "/live" => Occupant::Instance {
                name: "live".into(),
                container: "c-live".into(),
            },
            "/renamed" => Occupant::Instance {
                name: "new".into(),
                container: "c-new".into(),
            },
            "/half" => Occupant::Unknown,
            "/locked" => Occupant::Unreadable("Permission denied (os error 13)".into()),
            _ => Occupant::Gone,
        }
    }

    fn names<T>(items: &[(T, String)], name: impl Fn(&T) -> String) -> Vec<String> {
        items.iter().map(|(item, _)| name(item)).collect()
    }

    #[test]
    fn live_instances_are_never_removed() {
        let entries = [entry("live", "/live"), entry("half", "/half")];
        let containers = [managed("c-live", "/live"), managed("c-half", "/half")];
        let plan = plan(&entries, &containers, &Scope::All, world);
        assert!(plan.entries.is_empty() && plan.containers.is_empty());
        // Unregistered but claimed by its live worktree: kept, and said so.
        let plan = super::plan(&[], &containers, &Scope::All, world);
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
        let plan = plan(&entries, &containers, &Scope::All, world);
        assert_eq!(names(&plan.containers, String::clone), ["c-old-db"]);
        // Unregistered but claimed by its live worktree: kept, not an orphan.
        let plan = super::plan(&[], &containers[..2], &Scope::All, world);
        assert!(plan.containers.is_empty(), "{:?}", plan.containers);
    }

    #[test]
    fn gone_worktrees_lose_their_entry_and_container() {
        let entries = [entry("old", "/gone"), entry("live", "/live")];
        let containers = [managed("c-old", "/gone"), managed("c-live", "/live")];
        let plan = plan(&entries, &containers, &Scope::All, world);
        assert_eq!(names(&plan.entries, |e| e.name.clone()), ["old"]);
        assert_eq!(names(&plan.containers, String::clone), ["c-old"]);
    }

    #[test]
    fn renamed_instances_release_the_old_name_and_container() {
        let entries = [entry("old", "/renamed"), entry("new", "/renamed")];
        let containers = [managed("c-old", "/renamed"), managed("c-new", "/renamed")];
        let plan = plan(&entries, &containers, &Scope::All, world);
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
        let plan = plan(&entries, &containers, &Scope::All, world);
        assert!(plan.containers.is_empty());
    }

    #[test]
    fn a_worktree_that_cannot_be_seen_is_not_gone() {
        let entries = [entry("locked", "/locked")];
        let containers = [managed("c-locked", "/locked"), managed("c-x", "/locked")];
        for scope in [Scope::All, Scope::DataDir("me".into())] {
            let plan = plan(&entries, &containers, &scope, world);
            assert!(plan.entries.is_empty() && plan.containers.is_empty());
        }
        let plan = plan(&[], &containers, &Scope::All, world);
        assert!(plan.containers.is_empty());
        assert!(plan.kept[0].contains("cannot see its worktree `/locked`"));
    }

    #[test]
    fn volumes_go_only_when_their_worktree_is_gone() {
        let volumes = [
            managed("v-gone", "/gone"),
            managed("v-live", "/live"),
            managed("v-renamed", "/renamed"),
            managed("v-locked", "/locked"),
            managed("v-half", "/half"),
            managed("v-theirs", "/gone").made_by(Some("them".into())),
        ];
        let names = |found: Vec<(String, String)>| -> Vec<String> {
            found.into_iter().map(|(name, _)| name).collect()
        };
        let all = stale_volumes(&[], &volumes, &Scope::All, world);
        assert_eq!(names(all), ["v-gone", "v-theirs"]);
        let entries = [entry("old", "/gone")];
        let mine = Scope::DataDir("me".into());
        assert_eq!(
            names(stale_volumes(&entries, &volumes, &mine, world)),
            ["v-gone", "v-theirs"]
        );
        assert!(stale_volumes(&[], &volumes, &mine, world).is_empty());
    }

    #[test]
    fn by_default_only_this_data_directorys_containers_are_judged() {
        let mine = Scope::DataDir("me".into());
        let made_by =
            |name: &str, id: Option<&str>| managed(name, "/gone").made_by(id.map(str::to_owned));
        let containers = [
            made_by("c-mine", Some("me")),
            made_by("c-theirs", Some("them")),
            made_by("c-old", None),
            made_by("c-registered", None),
        ];
        let entries = [entry("registered", "/gone")];
        let plan = plan(&entries, &containers, &mine, world);
        assert_eq!(
            names(&plan.containers, String::clone),
            ["c-mine", "c-registered"]
        );
        assert!(plan.kept.iter().any(|k| k.contains("left 2 container(s)")));
        let plan = super::plan(&entries, &containers, &Scope::All, world);
        assert_eq!(plan.containers.len(), 4);
    }
}
