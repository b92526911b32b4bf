//! The scripts in `.sky-dev/bin/`: `activate`, `start-container`,
//! `stop-container` and one shim per `[shims]` entry, written by `setup`
//! from the askama templates in `templates/`. Values reach the templates
//! raw; the `.sh` escaper quotes each one (`support::templates::Shell`).

use crate::recipe::settings::{service_env_stem, Settings};
use crate::state::layout::{path_text, Layout, Record};
use crate::support::fs as fsutil;
use crate::support::templates::VarName;
use anyhow::{Context as _, Result};
use askama::Template;

#[derive(Template)]
#[template(path = "start-container.sh")]
struct StartContainer<'a> {
    devinst: &'a str,
    root: &'a str,
}

#[derive(Template)]
#[template(path = "stop-container.sh")]
struct StopContainer<'a> {
    devinst: &'a str,
    root: &'a str,
}

#[derive(Template)]
#[template(path = "shim.sh")]
struct Shim<'a> {
    devinst: &'a str,
    root: &'a str,
    argv: &'a [String],
}

#[derive(Template)]
#[template(path = "activate.sh")]
struct Activate<'a> {
    bin_dir: String,
    name: &'a str,
    port: String,
    root: &'a str,
    container: &'a str,
    prompt: String,
    services: Vec<ServiceVar>,
}

/// `DEVINST_SERVICE_<NAME>_PORT` and its host port.
struct ServiceVar {
    name: VarName,
    value: String,
}

/// One file of `.sky-dev/bin/`.
#[derive(Debug, PartialEq)]
struct Script {
    file: String,
    text: String,
    mode: u32,
}

/// Modes: scripts to run, and `activate`, which is sourced.
const RUN: u32 = 0o755;
const SOURCED: u32 = 0o644;

impl Script {
    fn new(file: &str, template: &impl Template, mode: u32) -> Result<Script> {
        let text = template
            .render()
            .with_context(|| format!("cannot render `{file}`"))?;
        Ok(Script {
            file: file.to_owned(),
            text,
            mode,
        })
    }
}

/// Writes every script, then removes shims the recipe no longer has.
pub fn write_scripts(layout: &Layout, settings: &Settings, record: &Record) -> Result<()> {
    let devinst = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map(|p| path_text(&p))
        .unwrap_or_else(|_| "devinst".to_owned());
    let bin = layout.bin_dir();
    for script in render(&devinst, layout, settings, record)? {
        let path = bin.join(&script.file);
        fsutil::write_atomic(&path, script.text.as_bytes(), script.mode)?;
    }
    remove_stale_shims(layout, settings)
}

/// The scripts' names, texts and modes, in the order they are written.
fn render(
    devinst: &str,
    layout: &Layout,
    settings: &Settings,
    record: &Record,
) -> Result<Vec<Script>> {
    let root = &path_text(&layout.root);
    let mut scripts = vec![
        Script::new("start-container", &StartContainer { devinst, root }, RUN)?,
        Script::new("stop-container", &StopContainer { devinst, root }, RUN)?,
    ];
    for (file, argv) in &settings.shims {
        let shim = Shim {
            devinst,
            root,
            argv,
        };
        scripts.push(Script::new(file, &shim, RUN)?);
    }
    let activate = Activate {
        bin_dir: path_text(&layout.bin_dir()),
        name: &record.name,
        port: record.port.to_string(),
        root,
        container: &record.container,
        prompt: format!("({}) ", record.name),
        services: service_vars(record)?,
    };
    scripts.push(Script::new("activate", &activate, SOURCED)?);
    Ok(scripts)
}

/// `DEVINST_SERVICE_<NAME>_PORT` and its host port, for each service that
/// publishes one.
fn service_vars(record: &Record) -> Result<Vec<ServiceVar>> {
    record
        .service_ports
        .iter()
        .map(|(service, port)| {
            Ok(ServiceVar {
                name: VarName::new(format!("{}_PORT", service_env_stem(service)))?,
                value: port.to_string(),
            })
        })
        .collect()
}

/// Shims dropped from the recipe disappear on the next setup.
fn remove_stale_shims(layout: &Layout, settings: &Settings) -> Result<()> {
    let bin = layout.bin_dir();
    for entry in
        std::fs::read_dir(&bin).with_context(|| format!("cannot list `{}`", bin.display()))?
    {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let ours = matches!(
            file.as_str(),
            "activate" | "start-container" | "stop-container"
        ) || settings.shims.contains_key(&file)
            || file.starts_with('.');
        if !ours {
            let path = entry.path();
            let is_shim = std::fs::read_to_string(&path).is_ok_and(|t| t.contains("devinst setup"));
            if is_shim {
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove `{}`", path.display()))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::config::Config;
    use std::path::{Path, PathBuf};

    /// Values no script may take for code: spaces, quotes, `$(...)`,
    /// backquotes, newlines, an empty word.
    const HOSTILE_ROOT: &str = "/w/a b/it's $(touch pwned)\n`id`";
    const HOSTILE_DEVINST: &str = "/opt/de'v $(id)/devinst";

    fn fixture(services: &[(&str, u16)], shims: &[(&str, &[&str])]) -> (Layout, Settings, Record) {
        let mut settings = Settings::resolve(Config::default()).unwrap();
        if !shims.is_empty() {
            settings.shims = shims
                .iter()
                .map(|(name, argv)| {
                    (
                        name.to_string(),
                        argv.iter().map(|a| a.to_string()).collect(),
                    )
                })
                .collect();
        }
        let record = Record {
            name: "feat-x".into(),
            worktree: PathBuf::from(HOSTILE_ROOT),
            port: 46507,
            container: "skypilot-dev-feat-x".into(),
            created: "2026-11-23T11:00:00Z".into(),
            version: "0.1.0".into(),
            tier: None,
            service_ports: services.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
        };
        (Layout::new(Path::new(HOSTILE_ROOT)), settings, record)
    }

    fn fixtures() -> Vec<(Layout, Settings, Record)> {
        vec![
            fixture(&[], &[]),
            fixture(
                &[("db", 46508), ("object-store", 46509)],
                &[
                    ("sky", &["/app/.sky-dev/venv/bin/sky"]),
                    (
                        "hostile",
                        &["sh", "-c", "echo \"$1\" '$(x)' `y`\nz", "", "it's"],
                    ),
                ],
            ),
        ]
    }

    /// The hand-written renderer as it was, collecting instead of writing:
    /// askama must render the very same bytes.
    mod old {
        use super::super::*;
        use crate::support::shell::quote;
        use std::collections::BTreeMap;

        pub const ACTIVATE: &str = include_str!("../../templates/activate");
        pub const SHIM: &str = include_str!("../../templates/shim");
        pub const START_CONTAINER: &str = include_str!("../../templates/start-container");
        pub const STOP_CONTAINER: &str = include_str!("../../templates/stop-container");

        /// Values for the templates, quoted once on the way in.
        #[derive(Debug, Default)]
        pub struct Vars(BTreeMap<&'static str, String>);

        impl Vars {
            /// Adds `value`, quoted as one shell word.
            pub fn word(mut self, key: &'static str, value: &str) -> Vars {
                self.0.insert(key, quote(value));
                self
            }

            /// Adds `values`, each quoted, separated by spaces.
            pub fn words(mut self, key: &'static str, values: &[String]) -> Vars {
                let quoted: Vec<String> = values.iter().map(|v| quote(v)).collect();
                self.0.insert(key, quoted.join(" "));
                self
            }
        }

        impl Vars {
            /// Adds `NAME='value'` lines with an `export NAME` each. Names are
            /// devinst's own (checked to be identifiers), values are quoted.
            pub fn exports(mut self, key: &'static str, pairs: &[(String, String)]) -> Vars {
                let lines: Vec<String> = pairs
                    .iter()
                    .map(|(name, value)| {
                        assert!(is_identifier(name), "not a variable name: {name}");
                        format!("{name}={}\nexport {name}\n", quote(value))
                    })
                    .collect();
                self.0.insert(key, lines.concat());
                self
            }

            /// Adds the names of `pairs`, space-separated, for `unset`.
            pub fn names(mut self, key: &'static str, pairs: &[(String, String)]) -> Vars {
                let names: Vec<&str> = pairs
                    .iter()
                    .map(|(name, _)| {
                        assert!(is_identifier(name), "not a variable name: {name}");
                        name.as_str()
                    })
                    .collect();
                self.0.insert(key, names.join(" "));
                self
            }
        }

        fn is_identifier(name: &str) -> bool {
            name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }

        /// Replaces each `{{key}}` in `template`. A placeholder with no value is a
        /// bug in devinst, caught by the tests that render every template.
        pub fn render(template: &str, vars: &Vars) -> String {
            let mut out = String::with_capacity(template.len() + 256);
            let mut rest = template;
            while let Some(start) = rest.find("{{") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let end = after
                    .find("}}")
                    .expect("unclosed placeholder in a template");
                let key = after[..end].trim();
                let value = vars
                    .0
                    .get(key)
                    .unwrap_or_else(|| panic!("no value for `{{{{{key}}}}}`"));
                out.push_str(value);
                rest = &after[end + 2..];
            }
            out.push_str(rest);
            out
        }

        pub fn render_scripts(
            devinst: &str,
            layout: &Layout,
            settings: &Settings,
            record: &Record,
        ) -> Vec<Script> {
            let root = path_text(&layout.root);
            let bin = layout.bin_dir();
            let base = || Vars::default().word("devinst", devinst).word("root", &root);
            let mut out = Vec::new();
            let mut write = |file: &str, text: String, mode: u32| {
                out.push(Script {
                    file: file.to_owned(),
                    text,
                    mode,
                })
            };
            write("start-container", render(START_CONTAINER, &base()), 0o755);
            write("stop-container", render(STOP_CONTAINER, &base()), 0o755);
            for (shim, argv) in &settings.shims {
                write(shim, render(SHIM, &base().words("argv", argv)), 0o755);
            }
            let activate = Vars::default()
                .word("bin_dir", &path_text(&bin))
                .word("name", &record.name)
                .word("port", &record.port.to_string())
                .word("root", &root)
                .word("container", &record.container)
                .word("prompt", &format!("({}) ", record.name))
                .exports("service_exports", &service_vars(record))
                .names("service_unsets", &service_vars(record));
            write("activate", render(ACTIVATE, &activate), 0o644);
            out
        }

        fn service_vars(record: &Record) -> Vec<(String, String)> {
            record
                .service_ports
                .iter()
                .map(|(service, port)| {
                    (
                        format!(
                            "{}_PORT",
                            crate::recipe::settings::service_env_stem(service)
                        ),
                        port.to_string(),
                    )
                })
                .collect()
        }
    }

    #[test]
    fn askama_renders_the_same_bytes_as_the_old_renderer() {
        for (layout, settings, record) in fixtures() {
            let new = render(HOSTILE_DEVINST, &layout, &settings, &record).unwrap();
            let old = old::render_scripts(HOSTILE_DEVINST, &layout, &settings, &record);
            assert_eq!(new.len(), old.len());
            for (new, old) in new.iter().zip(&old) {
                assert_eq!(new, old, "{}", old.file);
            }
        }
    }
}
