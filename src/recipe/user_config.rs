//! The user's own config, `~/.config/devinst/config.toml` (XDG): their word,
//! which a repository's `devinst.toml` cannot loosen. Every key is optional;
//! unknown keys are errors naming the file, line and key.

use crate::recipe::config::Config;
use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    #[serde(default)]
    pub engine: UserEngine,
    #[serde(default)]
    pub container: UserContainer,
    #[serde(default)]
    pub credentials: UserList,
    #[serde(default)]
    pub env: UserEnv,
    /// The user's snapshot store: beats a recipe's, and needs no consent.
    #[serde(default)]
    pub snapshots: crate::recipe::config::SnapshotsConfig,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEngine {
    /// The engine endpoint: beats `[engine] host` in a recipe.
    pub host: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserContainer {
    /// A runtime every instance runs in (`runsc`): a recipe cannot choose another.
    pub runtime: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserList {
    /// Host paths mounted read-only into every instance, and allowed in a
    /// recipe without asking.
    #[serde(default)]
    pub paths: Vec<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEnv {
    /// Variables (NAME or PREFIX*) passed into every instance, and allowed in
    /// a recipe without asking.
    #[serde(default)]
    pub pass: Vec<String>,
}

impl UserConfig {
    /// Where the file is: `$XDG_CONFIG_HOME/devinst/config.toml`, by default
    /// `~/.config/devinst/config.toml`.
    pub fn path() -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", "devinst")
            .map(|dirs| dirs.config_dir().join("config.toml"))
    }

    /// Reads the user's config; no file is the empty config.
    pub fn load() -> Result<UserConfig> {
        let Some(path) = UserConfig::path() else {
            return Ok(UserConfig::default());
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(UserConfig::default())
            }
            Err(err) => {
                return Err(err).with_context(|| format!("cannot read `{}`", path.display()))
            }
        };
        UserConfig::parse(&text).with_context(|| format!("invalid `{}`", path.display()))
    }

    pub fn parse(text: &str) -> Result<UserConfig> {
        Config::parse_as(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_keys_parse_and_unknown_ones_are_named() {
        let user = UserConfig::parse(
            "[engine]\nhost = \"unix:///x.sock\"\n[container]\nruntime = \"runsc\"\n\
             [credentials]\npaths = [\"~/.netrc\"]\n[env]\npass = [\"NPM_TOKEN\"]\n",
        )
        .unwrap();
        assert_eq!(user.engine.host.as_deref(), Some("unix:///x.sock"));
        assert_eq!(user.container.runtime.as_deref(), Some("runsc"));
        assert_eq!(user.credentials.paths, ["~/.netrc"]);
        assert_eq!(user.env.pass, ["NPM_TOKEN"]);
        let err = format!(
            "{:#}",
            UserConfig::parse("[container]\nimage = \"x\"\n").unwrap_err()
        );
        assert!(err.contains("image") && err.contains("line 2"), "{err}");
    }
}
