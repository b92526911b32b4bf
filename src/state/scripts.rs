//! The scripts in `.sky-dev/bin/`: `activate`, `start-container`,
//! `stop-container` and one shim per `[shims]` entry, written by `setup`
//! from the askama templates in `templates/`. Values reach the templates
//! raw; the `.sh` escaper quotes each one (`support::templates::Shell`).

use crate::recipe::settings::{port_env_name, service_env_stem, Settings};
use crate::state::layout::{path_text, Layout, Record};
use crate::support::fs;
use crate::support::templates::VarName;
use anyhow::{Context, Result};
use askama::Template;
use std::path::Path;

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
    ports: Vec<PortVar>,
}

/// A port's variable (`DEVINST_PORT_WEB`) and its host port.
struct PortVar {
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

/// Writes every script into a fresh directory and swaps it in for `bin/`:
/// nothing that was in `bin/` before (a dropped shim, a file planted there)
/// survives a `setup`.
pub fn write_scripts(layout: &Layout, settings: &Settings, record: &Record) -> Result<()> {
    let devinst = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map(|p| path_text(&p))
        .unwrap_or_else(|_| "devinst".to_owned());
    let fresh = layout.dir().join("bin.new");
    remove_tree(&fresh)?;
    crate::state::contained::make_dir(layout, &fresh)?;
    for script in render(&devinst, layout, settings, record)? {
        let path = fresh.join(&script.file);
        fs::write_atomic(&path, script.text.as_bytes(), script.mode)?;
    }
    swap_in(&fresh, &layout.bin_dir())
}

/// Puts the directory `fresh` at `bin` in one step where the file system can
/// exchange them (shims on PATH never miss), else in two, and removes the old.
fn swap_in(fresh: &Path, bin: &Path) -> Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    let exchanged = std::fs::symlink_metadata(bin).is_ok()
        && renameat_with(CWD, fresh, CWD, bin, RenameFlags::EXCHANGE).is_ok();
    if !exchanged {
        remove_tree(bin)?;
        std::fs::rename(fresh, bin)
            .with_context(|| format!("cannot replace `{}`", bin.display()))?;
    }
    remove_tree(fresh)
}

/// Removes `path` (a link itself, never what it points to), if it is there.
fn remove_tree(path: &Path) -> Result<()> {
    let removed = match std::fs::symlink_metadata(path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        _ => std::fs::remove_file(path),
    };
    removed.with_context(|| format!("cannot remove `{}`", path.display()))
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
        ports: port_vars(record)?,
    };
    scripts.push(Script::new("activate", &activate, SOURCED)?);
    Ok(scripts)
}

/// `DEVINST_PORT_<NAME>` for each `[ports.extra]` port and
/// `DEVINST_SERVICE_<NAME>_PORT` for each service that publishes one, with
/// its host port.
fn port_vars(record: &Record) -> Result<Vec<PortVar>> {
    let extra = record
        .extra_ports
        .iter()
        .map(|(name, port)| (port_env_name(name), port));
    let services = record
        .service_ports
        .iter()
        .map(|(service, port)| (format!("{}_PORT", service_env_stem(service)), port));
    extra
        .chain(services)
        .map(|(name, port)| {
            Ok(PortVar {
                name: VarName::new(name)?,
                value: port.to_string(),
            })
        })
        .collect()
}

/// A shim `setup` wrote that the recipe no longer names.
fn is_stale_shim(settings: &Settings, file: &str, path: &Path) -> bool {
    let ours = matches!(file, "activate" | "start-container" | "stop-container")
        || settings.shims.contains_key(file)
        || file.starts_with('.');
    !ours && std::fs::read_to_string(path).is_ok_and(|t| t.contains("devinst setup"))
}

/// What the next `setup` would change in `.sky-dev/bin/`: the shims the
/// recipe names that are not written yet, and those written that it no
/// longer names. One directory read (and one read per file it does not
/// name): a shim asks this on its way.
pub fn shims_out_of_date(layout: &Layout, settings: &Settings) -> (Vec<String>, Vec<String>) {
    let Ok(entries) = std::fs::read_dir(layout.bin_dir()) else {
        return (Vec::new(), Vec::new());
    };
    let mut written = Vec::new();
    let mut stale = Vec::new();
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if is_stale_shim(settings, &file, &entry.path()) {
            stale.push(file);
        } else {
            written.push(file);
        }
    }
    let missing = settings
        .shims
        .keys()
        .filter(|name| !written.contains(name))
        .cloned()
        .collect();
    stale.sort();
    (missing, stale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::config::Config;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// Values no script may take for code: spaces, quotes, `$(...)`,
    /// backquotes, newlines, an empty word.
    const HOSTILE_ROOT: &str = "/w/a b/it's $(touch pwned)\n`id`";
    const HOSTILE_ARGV: &[&str] = &["sh", "-c", "echo \"$1\" '$(x)' `y`\nz", "", "it's"];

    fn fixture() -> (Layout, Settings, Record) {
        let mut settings = Settings::resolve(Config::default()).unwrap();
        settings.shims = [
            ("sky", &["/app/.sky-dev/venv/bin/sky"][..]),
            ("hostile", HOSTILE_ARGV),
        ]
        .iter()
        .map(|(name, argv)| {
            (
                name.to_string(),
                argv.iter().map(|a| a.to_string()).collect(),
            )
        })
        .collect();
        let record = Record {
            name: "feat-x".into(),
            worktree: PathBuf::from(HOSTILE_ROOT),
            port: 46507,
            container: "skypilot-dev-feat-x".into(),
            created: "2026-11-23T11:00:00Z".into(),
            version: "0.1.0".into(),
            tier: None,
            service_ports: [("db".into(), 46508), ("object-store".into(), 46509)].into(),
            extra_ports: [("code-server".into(), 46510)].into(),
        };
        (Layout::new(Path::new(HOSTILE_ROOT)), settings, record)
    }

    fn script<'a>(scripts: &'a [Script], file: &str) -> &'a Script {
        scripts.iter().find(|s| s.file == file).unwrap()
    }

    /// Runs `shell` on `script` with `args`; its output split at NULs.
    fn run(shell: &str, dir: &Path, script: &Script, args: &[&str]) -> Vec<String> {
        let path = dir.join(&script.file);
        std::fs::write(&path, &script.text).unwrap();
        let out = Command::new(shell)
            .arg(&path)
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        text.split_terminator('\0').map(str::to_owned).collect()
    }

    #[test]
    fn setup_makes_bin_afresh() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, settings, mut record) = fixture();
        let layout = Layout::new(&tmp.path().canonicalize().unwrap());
        record.worktree = layout.root.clone();
        std::fs::create_dir_all(layout.bin_dir()).unwrap();
        std::fs::write(layout.bin_dir().join("ls"), "planted").unwrap();
        std::fs::write(layout.bin_dir().join(".hidden"), "planted").unwrap();
        for _ in 0..2 {
            write_scripts(&layout, &settings, &record).unwrap();
            let mut files: Vec<String> = std::fs::read_dir(layout.bin_dir())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            let want = [
                "activate",
                "hostile",
                "sky",
                "start-container",
                "stop-container",
            ];
            assert_eq!(files, want);
        }
        let left: Vec<_> = std::fs::read_dir(layout.dir()).unwrap().collect();
        assert_eq!(left.len(), 1, "only `bin/` is left: {left:?}");
    }

    #[test]
    fn every_script_in_order_with_its_mode() {
        let (layout, settings, record) = fixture();
        let scripts = render("devinst", &layout, &settings, &record).unwrap();
        let files: Vec<(&str, u32)> = scripts.iter().map(|s| (s.file.as_str(), s.mode)).collect();
        assert_eq!(
            files,
            [
                ("start-container", RUN),
                ("stop-container", RUN),
                ("hostile", RUN),
                ("sky", RUN),
                ("activate", SOURCED)
            ]
        );
    }

    #[test]
    fn shims_and_start_hand_hostile_values_to_devinst_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        // A stand-in devinst, itself at a hostile path, that prints its arguments.
        let bin = dir.path().join("de'v $(id) `x`");
        std::fs::create_dir(&bin).unwrap();
        let devinst = bin.join("devinst");
        std::fs::write(&devinst, "#!/bin/sh\nprintf '%s\\0' \"$@\"\n").unwrap();
        std::fs::set_permissions(
            &devinst,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let (layout, settings, record) = fixture();
        let scripts = render(&path_text(&devinst), &layout, &settings, &record).unwrap();

        let args = run("sh", dir.path(), script(&scripts, "hostile"), &["", "a b"]);
        let mut expected = vec!["exec", "--worktree", HOSTILE_ROOT, "--"];
        expected.extend(HOSTILE_ARGV);
        expected.extend(["", "a b"]);
        assert_eq!(args, expected);

        let args = run(
            "sh",
            dir.path(),
            script(&scripts, "start-container"),
            &["$x"],
        );
        assert_eq!(args, ["start", "-C", HOSTILE_ROOT, "$x"]);
        let args = run("sh", dir.path(), script(&scripts, "stop-container"), &[]);
        assert_eq!(args, ["stop", "-C", HOSTILE_ROOT]);
    }

    /// Sources `activate`, prints what it set, deactivates, prints again.
    const ACTIVATE_PROBE: &str = r#". ./activate
printf '%s\0' "$DEVINST_WORKTREE" "$DEVINST_INSTANCE" "$DEVINST_PORT" \
    "$DEVINST_SERVICE_OBJECT_STORE_PORT" "$DEVINST_PORT_CODE_SERVER" "${PATH%%:*}" "$PS1"
deactivate
printf '%s\0' "${DEVINST_WORKTREE-unset}" "${DEVINST_PORT_CODE_SERVER-unset}" "$PATH"
"#;

    #[test]
    fn activate_sets_hostile_values_and_deactivate_clears_them() {
        let dir = tempfile::tempdir().unwrap();
        let (layout, settings, record) = fixture();
        let scripts = render("devinst", &layout, &settings, &record).unwrap();
        let activate = script(&scripts, "activate");
        std::fs::write(dir.path().join(&activate.file), &activate.text).unwrap();
        let probe = Script {
            file: "probe".into(),
            text: ACTIVATE_PROBE.into(),
            mode: RUN,
        };
        let seen = run("bash", dir.path(), &probe, &[]);
        let bin = format!("{HOSTILE_ROOT}/.sky-dev/bin");
        let set = [
            HOSTILE_ROOT,
            "feat-x",
            "46507",
            "46509",
            "46510",
            &bin,
            "(feat-x) ",
        ];
        assert_eq!(seen[..7], set);
        assert_eq!(seen[7..9], ["unset", "unset"]);
        assert!(!seen[9].contains(".sky-dev"), "{}", seen[9]);
    }
}
