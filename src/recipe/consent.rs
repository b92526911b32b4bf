//! What in a recipe needs the user's consent: the keys that widen what the
//! container reaches on the host, or where data goes, beyond the defaults
//! and the user's own config. A repository is not the user: these take effect
//! only once the user said yes (`devinst trust`). Pure: the host's facts
//! (home, sockets, PATH) come in from the caller.

use crate::recipe::settings::{Settings, DEFAULT_BIND, DEFAULT_CREDENTIALS, DEFAULT_ENV_PASS};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

/// Shim names that always ask: devinst itself (a shim by that name would call
/// itself), and commands that take a password or a key, which a fake inside
/// could collect even where the host lacks the real one.
pub const ALWAYS_ASK_SHIMS: &[&str] = &[
    "devinst", "sudo", "su", "doas", "pkexec", "run0", "passwd", "ssh", "gpg",
];

/// One thing the recipe asks for beyond the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    /// The key, as the file spells it: `[credentials] paths`, `[shims] ls`.
    pub key: String,
    /// What it asks for.
    pub value: String,
    /// Why it matters, in plain words.
    pub note: String,
}

impl Ask {
    fn new(key: impl Into<String>, value: impl Into<String>, note: impl Into<String>) -> Ask {
        Ask {
            key: key.into(),
            value: value.into(),
            note: note.into(),
        }
    }

    /// What consent to this ask is recorded as: a hash of its key and value,
    /// so a changed value asks again.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.key.as_bytes());
        hasher.update([0]);
        hasher.update(self.value.as_bytes());
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl fmt::Display for Ask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` = `{}`: {}", self.key, self.value, self.note)
    }
}

/// What the host says about the recipe's values.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// The user's home directory.
    pub home: Option<PathBuf>,
    /// The engine sockets this host may have (a mount that holds one hands
    /// the engine, and so the host, to the container).
    pub sockets: Vec<PathBuf>,
    /// Whether the recipe's `[engine] host` would be the endpoint used:
    /// `--host`, `DOCKER_HOST`, the user's config or context beat it.
    pub recipe_engine_used: bool,
    /// Shim names that are commands on the host's PATH, with the command.
    pub on_path: BTreeMap<String, PathBuf>,
}

/// Everything `settings` asks for beyond the defaults, in the file's order.
pub fn asks(settings: &Settings, host: &HostFacts) -> Vec<Ask> {
    let mut asks = credential_asks(settings, host);
    if let (Some(uri), true) = (&settings.engine_host, host.recipe_engine_used) {
        asks.push(Ask::new(
            "[engine] host",
            uri,
            "devinst talks to this engine: every container, command and passed variable goes there",
        ));
    }
    asks.extend(snapshot_asks(settings));
    asks.extend(network_ask(settings));
    asks.extend(bind_ask(settings));
    asks.extend(env_asks(settings));
    asks.extend(shim_asks(settings, host));
    asks
}

/// A recipe's snapshot store, and its endpoint, where the user's config
/// names none: `snapshot push` sends the instance's filesystem, state and
/// logs there.
fn snapshot_asks(settings: &Settings) -> Vec<Ask> {
    let mine = &settings.user_config.snapshots;
    let recipe = &settings.recipe_snapshots;
    let mut asks = Vec::new();
    if let (None, Some(store)) = (&mine.store, &recipe.store) {
        asks.push(Ask::new(
            "[snapshots] store",
            store,
            "`snapshot push` without `--to` sends the instance's filesystem, state and logs there",
        ));
    }
    if let (None, Some(endpoint)) = (&mine.endpoint, &recipe.endpoint) {
        asks.push(Ask::new(
            "[snapshots] endpoint",
            endpoint,
            "snapshots pushed to and pulled from S3 go through this server, with your AWS credentials",
        ));
    }
    asks
}

/// The shims worth looking up on the host's PATH: those that are not the
/// defaults.
pub fn shims_to_look_up(settings: &Settings) -> Vec<&str> {
    settings
        .shims
        .iter()
        .filter(|(name, argv)| !settings.is_default_shim(name, argv))
        .map(|(name, _)| name.as_str())
        .collect()
}

fn credential_asks(settings: &Settings, host: &HostFacts) -> Vec<Ask> {
    let allowed = |entry: &String| {
        DEFAULT_CREDENTIALS.contains(&entry.as_str())
            || settings.user_config.credentials.paths.contains(entry)
    };
    settings
        .credential_paths
        .iter()
        .filter(|entry| !allowed(entry))
        .map(|entry| {
            let path = host_path(entry, host.home.as_deref());
            let mut notes = Vec::new();
            if host.sockets.iter().any(|socket| socket.starts_with(&path))
                || path.extension().is_some_and(|e| e == "sock")
            {
                notes.push("the engine's socket: a container that reaches it controls the host, read-only or not".to_owned());
            }
            let inside_home = host.home.as_ref().is_some_and(|h| path.starts_with(h));
            if !inside_home {
                notes.push(format!("outside your home (`{}`)", path.display()));
            }
            notes.push("mounted read-only".to_owned());
            Ask::new("[credentials] paths", entry, notes.join("; "))
        })
        .collect()
}

/// Where a credential entry is on the host, `..` resolved without touching
/// the disk: `~/../../etc` is `/etc`.
pub fn host_path(entry: &str, home: Option<&Path>) -> PathBuf {
    let raw = match (entry.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(entry),
    };
    let mut clean = PathBuf::new();
    for part in raw.components() {
        match part {
            Component::ParentDir => {
                clean.pop();
            }
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    clean
}

fn network_ask(settings: &Settings) -> Option<Ask> {
    let network = settings.network.as_deref()?;
    let note = if network == "host" {
        "the host's own network: the instance reaches every server on the host's loopback, and what it opens is open on every host address"
    } else if network.starts_with("container:") {
        "another container's network: the instance reaches everything that container does"
    } else if network.starts_with("ns:") {
        "a network namespace of the host's, chosen by path"
    } else {
        return None;
    };
    Some(Ask::new("[container] network", network, note))
}

fn bind_ask(settings: &Settings) -> Option<Ask> {
    let bind = settings.bind.as_str();
    let loopback = bind == DEFAULT_BIND
        || bind == "localhost"
        || bind.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return None;
    }
    let everywhere = bind.is_empty() || bind.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
    let note = if everywhere {
        "every address of this host: other machines can reach the instance's ports"
    } else {
        "an address other than loopback: other machines may reach the instance's ports"
    };
    Some(Ask::new("[ports] bind", bind, note))
}

fn env_asks(settings: &Settings) -> Vec<Ask> {
    let user = &settings.user_config.env.pass;
    let allowed: Vec<&str> = DEFAULT_ENV_PASS
        .iter()
        .copied()
        .chain(user.iter().map(String::as_str))
        .collect();
    settings
        .env_pass
        .iter()
        .filter(|pattern| !allowed.iter().any(|a| covers(a, pattern)))
        .map(|pattern| {
            let note = match pattern.strip_suffix('*') {
                Some("") => {
                    "EVERY variable of your environment, secrets included, goes into every command"
                        .to_owned()
                }
                Some(prefix) => format!(
                    "every variable whose name starts with `{prefix}` goes into every command"
                ),
                None => "this variable goes into every command".to_owned(),
            };
            Ask::new("[env] pass", pattern, note)
        })
        .collect()
}

/// Whether the pass pattern `allowed` lets through everything `pattern` does.
fn covers(allowed: &str, pattern: &str) -> bool {
    match allowed.strip_suffix('*') {
        Some(prefix) => pattern.starts_with(prefix),
        None => allowed == pattern,
    }
}

fn shim_asks(settings: &Settings, host: &HostFacts) -> Vec<Ask> {
    settings
        .shims
        .iter()
        .filter(|(name, argv)| !settings.is_default_shim(name, argv))
        .filter_map(|(name, argv)| {
            let note = if name == "devinst" {
                "named like devinst itself: once `activate` is sourced, `devinst` runs this inside".to_owned()
            } else if let Some(command) = host.on_path.get(name) {
                format!(
                    "shadows `{}` on your PATH once `activate` is sourced",
                    command.display()
                )
            } else if ALWAYS_ASK_SHIMS.contains(&name.as_str()) {
                format!("named like `{name}`, which asks for passwords or keys: a fake one inside could collect them")
            } else {
                return None;
            };
            Some(Ask::new(format!("[shims] {name}"), argv.join(" "), note))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::config::Config;
    use crate::recipe::user_config::UserConfig;

    fn settings(text: &str) -> Settings {
        Settings::resolve(Config::parse(text).unwrap()).unwrap()
    }

    fn host() -> HostFacts {
        HostFacts {
            home: Some("/home/u".into()),
            sockets: vec!["/var/run/docker.sock".into(), "/run/docker.sock".into()],
            recipe_engine_used: true,
            on_path: BTreeMap::from([("ls".to_owned(), PathBuf::from("/usr/bin/ls"))]),
        }
    }

    fn keys(text: &str) -> Vec<String> {
        asks(&settings(text), &host())
            .into_iter()
            .map(|a| format!("{}={}", a.key, a.value))
            .collect()
    }

    #[test]
    fn a_recipes_snapshot_store_asks_unless_the_user_names_one() {
        let text = "[snapshots]\nstore = \"s3://theirs/x\"\nendpoint = \"http://10.0.0.9:9000\"\n";
        assert_eq!(
            keys(text),
            [
                "[snapshots] store=s3://theirs/x",
                "[snapshots] endpoint=http://10.0.0.9:9000"
            ]
        );
        let mine: UserConfig = toml::from_str(
            "[snapshots]\nstore = \"s3://mine/y\"\nendpoint = \"http://127.0.0.1:9000\"\n",
        )
        .unwrap();
        let with_mine = Settings::resolve_with(Config::parse(text).unwrap(), mine, true).unwrap();
        assert!(asks(&with_mine, &host()).is_empty());
        assert_eq!(with_mine.snapshot_store.as_deref(), Some("s3://mine/y"));
    }

    #[test]
    fn the_defaults_and_safe_recipes_ask_nothing() {
        assert!(keys("").is_empty());
        let safe = "[container]\nimage = \"busybox\"\nruntime = \"runsc\"\nnetwork = \"team\"\ncpus = 1.0\n\
                    [ports]\nbind = \"127.0.0.2\"\n[setup]\ncommands = [\"make\"]\n\
                    [shims]\nhello = \"echo\"\n[env]\npass = [\"AWS_PROFILE\", \"LC_*\"]\n\
                    [credentials]\npaths = [\"~/.aws\"]\n[tiers.small]\ncpus = 0.5\n\
                    [services.db]\nimage = \"postgres\"\n";
        assert!(keys(safe).is_empty(), "{:?}", keys(safe));
        for bind in ["::1", "localhost"] {
            assert!(keys(&format!("[ports]\nbind = \"{bind}\"\n")).is_empty());
        }
        // The default shim, spelled out, is still the default.
        assert!(keys("[shims]\nsky = \"/app/.sky-dev/venv/bin/sky\"\n").is_empty());
    }

    #[test]
    fn each_widening_key_asks() {
        for (text, want) in [
            (
                "[credentials]\npaths = [\"~/.netrc\"]\n",
                "[credentials] paths=~/.netrc",
            ),
            (
                "[engine]\nhost = \"tcp://x:1\"\n",
                "[engine] host=tcp://x:1",
            ),
            (
                "[container]\nnetwork = \"host\"\n",
                "[container] network=host",
            ),
            (
                "[container]\nnetwork = \"container:db\"\n",
                "[container] network=container:db",
            ),
            (
                "[container]\nnetwork = \"ns:/proc/1/ns/net\"\n",
                "[container] network=ns:/proc/1/ns/net",
            ),
            ("[ports]\nbind = \"0.0.0.0\"\n", "[ports] bind=0.0.0.0"),
            ("[ports]\nbind = \"\"\n", "[ports] bind="),
            ("[env]\npass = [\"*\"]\n", "[env] pass=*"),
            (
                "[env]\npass = [\"GITHUB_TOKEN\"]\n",
                "[env] pass=GITHUB_TOKEN",
            ),
            ("[shims]\nls = [\"ls\", \"-l\"]\n", "[shims] ls=ls -l"),
            ("[shims]\nsudo = \"sh\"\n", "[shims] sudo=sh"),
            ("[shims]\ndevinst = \"true\"\n", "[shims] devinst=true"),
            ("[shims]\nsky = \"python3\"\n", ""),
        ] {
            let got = keys(text);
            match want {
                "" => assert!(got.is_empty(), "{text}: {got:?}"),
                want => assert_eq!(got, [want], "{text}"),
            }
        }
    }

    #[test]
    fn the_prompt_says_plainly_what_a_credential_path_is() {
        let text = "[credentials]\npaths = [\"/var/run/docker.sock\", \"~/../../../etc\", \"/var/run\", \"~/.netrc\"]\n";
        let notes: Vec<String> = asks(&settings(text), &host())
            .into_iter()
            .map(|a| a.note)
            .collect();
        assert!(notes[0].contains("engine's socket"), "{notes:?}");
        assert!(notes[0].contains("outside your home"), "{notes:?}");
        assert!(notes[1].contains("outside your home (`/etc`)"), "{notes:?}");
        assert!(!notes[1].contains("socket"), "{notes:?}");
        assert!(
            notes[2].contains("engine's socket"),
            "a directory holding it: {notes:?}"
        );
        assert_eq!(notes[3], "mounted read-only");
        let text = "[env]\npass = [\"*\"]\n";
        assert!(asks(&settings(text), &host())[0]
            .note
            .contains("EVERY variable"));
    }

    #[test]
    fn an_overridden_engine_host_asks_nothing() {
        let s = settings("[engine]\nhost = \"tcp://x:1\"\n");
        let host = HostFacts {
            recipe_engine_used: false,
            ..host()
        };
        assert!(asks(&s, &host).is_empty());
    }

    #[test]
    fn the_users_own_paths_and_variables_need_no_consent() {
        let user =
            UserConfig::parse("[credentials]\npaths = [\"~/.netrc\"]\n[env]\npass = [\"NPM_*\"]\n")
                .unwrap();
        let recipe = "[credentials]\npaths = [\"~/.netrc\", \"~/.pgpass\"]\n\
                      [env]\npass = [\"NPM_TOKEN\", \"NPMX\"]\n";
        let s = Settings::resolve_with(Config::parse(recipe).unwrap(), user, true).unwrap();
        let got: Vec<String> = asks(&s, &host()).into_iter().map(|a| a.value).collect();
        assert_eq!(got, ["~/.pgpass", "NPMX"]);
    }

    #[test]
    fn a_changed_value_has_another_digest() {
        let a = Ask::new("[ports] bind", "0.0.0.0", "x");
        let b = Ask::new("[ports] bind", "10.0.0.1", "x");
        let c = Ask::new("[ports] bind", "0.0.0.0", "other words");
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.digest(), c.digest(), "the note is not what was agreed to");
        assert_eq!(a.digest().len(), 64);
    }

    #[test]
    fn host_paths_resolve_dots_without_the_disk() {
        let home = Path::new("/home/u");
        assert_eq!(host_path("~/../../../etc", Some(home)), Path::new("/etc"));
        assert_eq!(host_path("~/.aws", Some(home)), Path::new("/home/u/.aws"));
        assert_eq!(host_path("/a/./b/../c", Some(home)), Path::new("/a/c"));
    }
}
