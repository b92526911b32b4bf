//! The per-worktree instance directory, `.sky-dev/`, and its `.instance` file.

use crate::support::fs::write_atomic;
use crate::support::shell;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const DIR_NAME: &str = ".sky-dev";
/// The directory under `.sky-dev/` of a cluster's nodes but the head.
pub const NODES_DIR_NAME: &str = "nodes";
/// The agent's directory under `.sky-dev/`.
pub const AGENT_DIR_NAME: &str = "agent";
/// The agent's exec socket, in its directory.
pub const AGENT_SOCKET_NAME: &str = "sock";

/// Paths inside one worktree's `.sky-dev/`.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
        }
    }

    /// Walks up from `start` to the nearest directory holding an instance,
    /// never past the worktree's root (the first directory with a `.git`):
    /// a `.sky-dev/` above the repository is not this worktree's. Plain file
    /// checks, no git: this is on every shim's path.
    pub fn find(start: &Path) -> Option<Layout> {
        for dir in start.ancestors() {
            let layout = Layout::new(dir);
            if layout.instance_file().symlink_metadata().is_ok() {
                return Some(layout);
            }
            if dir.join(".git").symlink_metadata().is_ok() {
                return None;
            }
        }
        None
    }

    pub fn dir(&self) -> PathBuf {
        self.root.join(DIR_NAME)
    }
    pub fn instance_file(&self) -> PathBuf {
        self.dir().join(".instance")
    }
    pub fn port_file(&self) -> PathBuf {
        self.dir().join(".port")
    }
    pub fn setup_stamp(&self) -> PathBuf {
        self.dir().join(".setup-stamp")
    }
    /// Names the snapshot the container is made from, when one was restored.
    pub fn snapshot_file(&self) -> PathBuf {
        self.dir().join(".snapshot")
    }
    pub fn snapshots_dir(&self) -> PathBuf {
        self.dir().join("snapshots")
    }
    /// The restored snapshot the container should be made from, if any.
    pub fn active_snapshot(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.snapshot_file()).ok()?;
        Some(text.trim().to_owned()).filter(|name| !name.is_empty())
    }
    pub fn state_dir(&self) -> PathBuf {
        self.dir().join("state")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.dir().join("sky_logs")
    }
    /// HOME inside the container when it runs as the worktree's owner.
    pub fn home_dir(&self) -> PathBuf {
        self.dir().join("home")
    }
    pub fn bin_dir(&self) -> PathBuf {
        self.dir().join("bin")
    }
    /// The agent's directory: its executable and its exec socket, for the
    /// worktree's owner alone (0700).
    pub fn agent_dir(&self) -> PathBuf {
        self.dir().join(AGENT_DIR_NAME)
    }
    /// The agent's executable, mounted read-only into the container.
    pub fn agent_binary(&self) -> PathBuf {
        self.agent_dir().join("devinst-agent")
    }
    /// Marks that the hint to recreate an instance made before the agent
    /// was given.
    pub fn agent_hint_file(&self) -> PathBuf {
        self.dir().join(".agent-hint")
    }
    /// The venv the default setup steps make.
    pub fn venv_dir(&self) -> PathBuf {
        self.dir().join("venv")
    }
    /// The git config commands inside read as their global one: the host's
    /// identity, written by `start`.
    pub fn gitconfig(&self) -> PathBuf {
        self.dir().join("gitconfig")
    }
    /// The variables every exec gets on top of the container's own, written
    /// by `start`: the venv activated, git's config.
    pub fn exec_env_file(&self) -> PathBuf {
        self.dir().join(".exec-env")
    }
    /// What the setup steps last completed with: a digest per input.
    pub fn setup_inputs_file(&self) -> PathBuf {
        self.dir().join(".setup-inputs")
    }
    /// What the setup steps last completed with, for a sibling to start
    /// warm from: their fingerprint, the container and the repository.
    pub fn warm_file(&self) -> PathBuf {
        self.dir().join(".warm")
    }
    /// The last "instance is behind" notice a shim gave, so it is given once.
    pub fn noticed_file(&self) -> PathBuf {
        self.dir().join(".noticed")
    }
    /// A cluster's node `rank` (1 and up; the head keeps the directories
    /// above): its state, logs, home and setup stamp.
    pub fn node_dir(&self, rank: u16) -> PathBuf {
        self.dir().join(NODES_DIR_NAME).join(rank.to_string())
    }
    pub fn node_state_dir(&self, rank: u16) -> PathBuf {
        self.node_dir(rank).join("state")
    }
    pub fn node_logs_dir(&self, rank: u16) -> PathBuf {
        self.node_dir(rank).join("sky_logs")
    }
    pub fn node_home_dir(&self, rank: u16) -> PathBuf {
        self.node_dir(rank).join("home")
    }
    /// The setup stamp of node `rank`: the head's is [`Layout::setup_stamp`].
    pub fn node_setup_stamp(&self, rank: u16) -> PathBuf {
        match rank {
            0 => self.setup_stamp(),
            rank => self.node_dir(rank).join(".setup-stamp"),
        }
    }
    /// Where a service's `data` directory is kept on the host.
    pub fn service_data_dir(&self, service: &str) -> PathBuf {
        self.dir().join("services").join(service)
    }

    /// Holds this instance's lock until the file is dropped: `start`s in one
    /// worktree (a script and an auto-starting shim, say) take turns, so the
    /// setup steps never run twice at once.
    pub fn lock(&self) -> Result<std::fs::File> {
        crate::support::fs::lock_file(&self.dir().join(".lock"))
    }

    /// Makes the state and logs directories, following no link (`bin/` is
    /// made afresh by every `setup`).
    pub fn create_dirs(&self) -> Result<()> {
        for dir in [self.state_dir(), self.logs_dir()] {
            super::contained::make_dir(self, &dir)?;
        }
        Ok(())
    }

    pub fn read_record(&self) -> Result<Record> {
        let path = self.instance_file();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        Record::parse(&text).with_context(|| format!("invalid `{}`", path.display()))
    }

    /// Writes `.port` first and `.instance` last: `.instance` is what marks the
    /// instance as set up, so a setup killed halfway is simply set up again.
    pub fn write_record(&self, record: &Record) -> Result<()> {
        write_atomic(
            &self.port_file(),
            format!("{}\n", record.port).as_bytes(),
            0o644,
        )?;
        write_atomic(&self.instance_file(), record.to_shell().as_bytes(), 0o644)
    }
}

/// What `.instance` records. It is `source`-able by `sh`; every value quoted.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub name: String,
    pub worktree: PathBuf,
    pub port: u16,
    pub container: String,
    pub created: String,
    pub version: String,
    /// The `[tiers.NAME]` chosen with `setup --tier`.
    pub tier: Option<String>,
    /// Host ports of the services that publish one, by service name.
    pub service_ports: BTreeMap<String, u16>,
    /// Host ports of `[ports.extra]`, by port name.
    pub extra_ports: BTreeMap<String, u16>,
}

impl Record {
    pub fn to_shell(&self) -> String {
        let mut text = String::from("# devinst instance metadata; written by `devinst setup`.\n");
        text.push_str(&shell::assignments([
            ("DEVINST_NAME", self.name.clone()),
            ("DEVINST_WORKTREE", path_text(&self.worktree)),
            ("DEVINST_PORT", self.port.to_string()),
            ("DEVINST_CONTAINER", self.container.clone()),
            ("DEVINST_CREATED", self.created.clone()),
            ("DEVINST_VERSION", self.version.clone()),
            ("DEVINST_TIER", self.tier.clone().unwrap_or_default()),
        ]));
        for (service, port) in &self.service_ports {
            let key = format!(
                "{}_PORT",
                crate::recipe::settings::service_env_stem(service)
            );
            text.push_str(&format!("{key}={}\n", shell::quote(&port.to_string())));
        }
        for (name, port) in &self.extra_ports {
            let key = crate::recipe::settings::port_env_name(name);
            text.push_str(&format!("{key}={}\n", shell::quote(&port.to_string())));
        }
        text
    }

    /// `DEVINST_PORT_WEB` back to `web` and its port.
    fn extra_ports(pairs: &[(String, String)]) -> Result<BTreeMap<String, u16>> {
        let mut ports = BTreeMap::new();
        for (key, value) in pairs {
            let Some(name) = crate::recipe::settings::port_name_of_env(key) else {
                continue;
            };
            let port = value
                .parse()
                .with_context(|| format!("`{key}` is not a port number"))?;
            ports.insert(name, port);
        }
        Ok(ports)
    }

    /// `DEVINST_SERVICE_DB_MAIN_PORT` back to `db-main` and its port: service
    /// names have no `_`, so the mapping is one to one.
    fn service_ports(pairs: &[(String, String)]) -> Result<BTreeMap<String, u16>> {
        let mut ports = BTreeMap::new();
        for (key, value) in pairs {
            let Some(stem) = key
                .strip_prefix("DEVINST_SERVICE_")
                .and_then(|k| k.strip_suffix("_PORT"))
            else {
                continue;
            };
            let port = value
                .parse()
                .with_context(|| format!("`{key}` is not a port number"))?;
            ports.insert(stem.to_ascii_lowercase().replace('_', "-"), port);
        }
        Ok(ports)
    }

    /// The host port of service `name`, if it publishes one.
    pub fn service_port(&self, name: &str) -> Option<u16> {
        self.service_ports.get(name).copied()
    }

    /// The container of service `name`: the instance's, suffixed.
    pub fn service_container(&self, name: &str) -> String {
        format!("{}-{name}", self.container)
    }

    /// The container of a cluster's node `rank`: the head (0) is the
    /// instance's own.
    pub fn node_container(&self, rank: u16) -> String {
        match rank {
            0 => self.container.clone(),
            rank => format!("{}-node-{rank}", self.container),
        }
    }

    /// The private network an instance with services gets when the recipe
    /// names none: the container's own name.
    pub fn private_network(&self) -> &str {
        &self.container
    }

    pub fn parse(text: &str) -> Result<Record> {
        let pairs = shell::parse_assignments(text)?;
        let get = |key: &str| -> Result<String> {
            match pairs.iter().find(|(k, _)| k == key) {
                Some((_, value)) => Ok(value.clone()),
                None => bail!("`{key}` is missing"),
            }
        };
        Ok(Record {
            name: get("DEVINST_NAME")?,
            worktree: PathBuf::from(get("DEVINST_WORKTREE")?),
            port: get("DEVINST_PORT")?
                .parse()
                .context("`DEVINST_PORT` is not a port number")?,
            container: get("DEVINST_CONTAINER")?,
            created: get("DEVINST_CREATED")?,
            version: get("DEVINST_VERSION")?,
            tier: get("DEVINST_TIER").ok().filter(|t| !t.is_empty()),
            service_ports: Record::service_ports(&pairs)?,
            extra_ports: Record::extra_ports(&pairs)?,
        })
    }
}

/// Paths are written as text; devinst refuses non-UTF-8 worktree paths early.
pub fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Whether the worktree at `root` provably holds no instance any more: its
/// `.sky-dev` is not there. A worktree devinst cannot look into (another
/// user's, mode 700) is not gone; only "no such file" says so.
pub fn is_gone(root: &Path) -> bool {
    matches!(
        std::fs::symlink_metadata(root.join(DIR_NAME)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_no_such_file_is_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let live = tmp.path().join("live");
        std::fs::create_dir_all(live.join(DIR_NAME)).unwrap();
        assert!(!is_gone(&live));
        assert!(is_gone(&tmp.path().join("removed")));
        // A path devinst cannot look into (here: through a file, which
        // root cannot see past either) is not proof of anything.
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(!is_gone(&file));
    }

    #[test]
    fn find_stops_at_the_worktree_root() {
        let tmp = tempfile::tempdir().unwrap();
        let planted = Layout::new(tmp.path());
        std::fs::create_dir_all(planted.dir()).unwrap();
        std::fs::write(planted.instance_file(), "").unwrap();
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::create_dir_all(repo.join("src/deep")).unwrap();
        // Inside a repository: never the `.sky-dev/` above it.
        assert!(Layout::find(&repo.join("src/deep")).is_none());
        let own = Layout::new(&repo);
        std::fs::create_dir_all(own.dir()).unwrap();
        std::fs::write(own.instance_file(), "").unwrap();
        assert_eq!(Layout::find(&repo.join("src/deep")).unwrap().root, repo);
        // Outside git, the nearest one up.
        let plain = tmp.path().join("plain/sub");
        std::fs::create_dir_all(&plain).unwrap();
        assert_eq!(Layout::find(&plain).unwrap().root, tmp.path());
    }

    #[test]
    fn record_round_trips_with_hostile_worktree_path() {
        let record = Record {
            name: "x".into(),
            worktree: PathBuf::from("/w/a b/it's $(id)\n`x`"),
            port: 46501,
            container: "skypilot-dev-x".into(),
            created: "2026-11-23T11:00:00Z".into(),
            version: "0.1.0".into(),
            tier: Some("small".into()),
            service_ports: BTreeMap::from([("db".into(), 46502), ("object-store".into(), 46503)]),
            extra_ports: BTreeMap::from([("web".into(), 46504), ("code-server".into(), 46505)]),
        };
        let text = record.to_shell();
        assert!(text.contains("DEVINST_SERVICE_OBJECT_STORE_PORT='46503'"));
        assert!(text.contains("DEVINST_PORT_CODE_SERVER='46505'"));
        assert_eq!(Record::parse(&record.to_shell()).unwrap(), record);
    }
}
