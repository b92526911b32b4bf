//! `devinst doctor`: is everything an instance needs in place? Each check
//! prints `ok` or `problem`, a problem with the command that fixes it. Exits 1
//! only when something blocks use (no engine, an unusable recipe).

use super::Invocation;
use crate::engine::{self, Engine, UserMapping};
use crate::instance::holdings;
use crate::instance::host::{self, CaComparison};
use crate::instance::spec;
use crate::recipe::settings::Settings;
use crate::state::layout::Layout;
use crate::state::ports;
use crate::state::registry::Registry;
use crate::state::worktree::Worktree;
use crate::support::output;
use crate::support::table::Table;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::Path;

struct Check {
    name: &'static str,
    ok: bool,
    /// A problem that stops devinst from working at all.
    blocking: bool,
    detail: String,
    fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: true,
            blocking: false,
            detail: detail.into(),
            fix: None,
        }
    }

    fn problem(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            ok: false,
            blocking: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn blocking(mut self) -> Check {
        self.blocking = true;
        self
    }
}

pub async fn run(ctx: &Invocation) -> Result<i32> {
    let mut checks = Vec::new();
    let instance = Layout::find(&ctx.cwd);
    let root = match &instance {
        Some(layout) => layout.root.clone(),
        None => Worktree::discover(&ctx.cwd).map_or_else(|_| ctx.cwd.clone(), |w| w.root),
    };
    let settings = match Settings::load(&root) {
        Ok(settings) => settings,
        Err(err) => {
            checks.push(
                Check::problem(
                    "recipe",
                    format!("{err:#}"),
                    "fix `devinst.toml` as the error says",
                )
                .blocking(),
            );
            // The other checks still run, against the defaults.
            Settings::resolve(Default::default())?
        }
    };
    let engine = Engine::connect(&ctx.engine_choice(Some(&settings))).await;
    match &engine {
        Ok(engine) => {
            checks.push(engine_check(engine).await);
            checks.push(runtime_check(engine, &settings).await);
            checks.push(userns_check(engine, &settings, &root).await);
            checks.extend(limits_check(engine, &settings).await);
            checks.push(ca_check(engine, &settings).await);
        }
        Err(err) => checks.push(
            Check::problem("engine", without_hints(err), engine::START_ENGINE_HINT).blocking(),
        ),
    }
    let engine = engine.ok();
    checks.push(port_check(engine.as_ref(), &settings).await);
    checks.push(registry_check());
    checks.push(credentials_check(&settings));
    checks.push(instance_check(engine.as_ref(), instance.as_ref()).await);
    print(&checks);
    Ok(if checks.iter().any(|c| c.blocking) {
        1
    } else {
        0
    })
}

fn print(checks: &[Check]) {
    let mut table = Table::headless();
    for c in checks {
        let status = if c.ok { "ok" } else { "problem" };
        table.row([status, c.name, &c.detail]);
        if let Some(fix) = &c.fix {
            table.row(["", "", &format!("fix: {fix}")]);
        }
    }
    output::data(table);
}

async fn engine_check(engine: &Engine) -> Check {
    let at = format!("{} ({})", engine.endpoint.uri, engine.endpoint.source);
    match engine.describe().await {
        Ok(v) => Check::ok(
            "engine",
            format!(
                "reachable at {at}: server {}, API version {} (engine supports {} to {})",
                v.server_version.as_deref().unwrap_or("unknown"),
                v.api_version,
                v.min_api_version.as_deref().unwrap_or("?"),
                v.max_api_version.as_deref().unwrap_or("?"),
            ),
        ),
        Err(err) => Check::problem(
            "engine",
            format!("reachable at {at}, but its version is unknown: {err}"),
            engine::START_ENGINE_HINT,
        )
        .blocking(),
    }
}

async fn runtime_check(engine: &Engine, settings: &Settings) -> Check {
    let info = match engine.runtimes().await {
        Ok(info) => info,
        Err(err) => {
            return Check::problem(
                "runtimes",
                format!("the engine did not describe itself: {err}"),
                "check the engine's own logs",
            )
        }
    };
    let runtimes = info.names;
    let default = info.default.unwrap_or_else(|| "runc".to_owned());
    let detail = format!("{} (default `{default}`)", runtimes.join(", "));
    match &settings.runtime {
        Some(wanted) if !runtimes.contains(wanted) => Check::problem(
            "runtimes",
            format!("devinst.toml asks for runtime `{wanted}`, the engine has {detail}"),
            format!("install `{wanted}` and register it with the engine (gVisor: `runsc install`, then restart dockerd), or remove `[container] runtime` from devinst.toml"),
        )
        .blocking(),
        _ if settings.gpus.is_some() && !runtimes.iter().any(|r| r == "nvidia") => Check::problem(
            "runtimes",
            format!("devinst.toml asks for GPUs, and the engine has no `nvidia` runtime ({detail})"),
            "install the NVIDIA Container Toolkit and configure the engine with it (`nvidia-ctk runtime configure`), or remove `gpus` from `[container]` in devinst.toml".to_owned(),
        ),
        Some(wanted) => Check::ok("runtimes", format!("{detail}; devinst.toml uses `{wanted}`")),
        None => Check::ok("runtimes", detail),
    }
}

/// Rootless or rootful, and the user and user namespace mode this recipe's
/// instances get there: what `start` would ask the engine for, and whether
/// it can (`keep-id` on rootless Podman, for `user = "host"`).
async fn userns_check(engine: &Engine, settings: &Settings, root: &Path) -> Check {
    const NAME: &str = "userns";
    let mapping = match engine.user_mapping().await {
        Ok(mapping) => mapping,
        Err(err) => {
            return Check::problem(
                NAME,
                format!(
                    "cannot tell how the engine maps users: {}",
                    without_hints(&err)
                ),
                "check the engine's own logs",
            )
        }
    };
    let engine_kind = mapping_text(mapping);
    let owner = settings
        .user
        .is_owner()
        .then(|| worktree_owner(root, mapping))
        .flatten();
    if let Some(owner) = owner {
        if let Err(err) = host::check_keep_id(&settings.user, mapping, owner.uid) {
            let (_, hints) = crate::support::error::messages_and_hints(&err);
            return Check::problem(
                NAME,
                format!("{engine_kind}; {}", without_hints(&err)),
                hints.join("; "),
            );
        }
    }
    let (user, mode) = spec::user_and_userns(settings, owner);
    let mode = match (mode, mapping) {
        (Some(mode), _) => format!("user namespace mode `{mode}`"),
        (None, UserMapping::Direct) => "no user namespace of their own".to_owned(),
        (None, _) => "the engine's default user namespace".to_owned(),
    };
    let user = user.map_or_else(|| "the image's user".to_owned(), |u| format!("user `{u}`"));
    Check::ok(NAME, format!("{engine_kind}; instances get {mode}, {user}"))
}

/// Limits the recipe sets (itself or in a tier) that the engine would take
/// and drop; nothing to say when it sets none.
async fn limits_check(engine: &Engine, settings: &Settings) -> Option<Check> {
    let asks = std::iter::once(&settings.limits)
        .chain(settings.tiers.values())
        .any(|l| *l != Default::default());
    if !asks {
        return None;
    }
    Some(match engine.ignores_limits().await {
        Ok(false) => Check::ok("limits", "devinst.toml sets limits; the engine applies them"),
        Ok(true) => Check::problem(
            "limits",
            "devinst.toml sets limits, and the engine (rootless Podman on cgroup v1) would drop them: `start` refuses",
            "remove `cpus`, `memory` and `pids` (and the tiers') from devinst.toml, or use a rootful engine",
        ),
        Err(err) => Check::problem(
            "limits",
            format!("cannot tell whether the engine applies limits: {}", without_hints(&err)),
            "check the engine's own logs",
        ),
    })
}

fn mapping_text(mapping: UserMapping) -> String {
    match mapping {
        UserMapping::Direct => "rootful engine: ids inside are the host's".to_owned(),
        UserMapping::RootlessPodman {
            engine_uid,
            subordinate_ids,
        } => {
            let who = engine_uid.map_or_else(|| "its user".to_owned(), |u| format!("uid {u}"));
            format!(
                "rootless Podman, run by {who} with {subordinate_ids} subordinate ids: \
                 the container's root is {who} on the host"
            )
        }
        UserMapping::RootIsHostUser => {
            "rootless Docker: the container's root is the engine's user on the host".to_owned()
        }
    }
}

/// The worktree's owner, as `start` finds them, when it can be read.
fn worktree_owner(root: &Path, mapping: UserMapping) -> Option<spec::Owner> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(root).ok()?;
    Some(spec::Owner {
        uid: meta.uid(),
        gid: meta.gid(),
        mapping,
    })
}

/// Whether TLS from inside would fail where the host's succeeds: the host
/// trusts certificates (a proxy's CA that re-signs HTTPS) that the image the
/// instance starts from lacks. Compared only when that image is present:
/// nothing is pulled for it.
async fn ca_check(engine: &Engine, settings: &Settings) -> Check {
    const NAME: &str = "ca";
    let image = &settings.image;
    if settings.host_ca {
        return match host::read_host_ca() {
            Ok(Some(bundle)) => Check::ok(
                NAME,
                format!(
                    "`host_ca` is on: the instance and its builds trust the host's `{}`",
                    bundle.path.display()
                ),
            ),
            Ok(None) => Check::problem(
                NAME,
                format!(
                    "`host_ca` is on, but the host has no CA bundle (looked at {})",
                    host::CA_BUNDLE_PATHS.join(", ")
                ),
                "install the host's CA certificates (Debian: `apt-get install ca-certificates`), or remove `host_ca` from devinst.toml",
            ),
            Err(err) => Check::problem(NAME, format!("{err:#}"), "make the host's CA bundle readable"),
        };
    }
    match host::compare_ca(engine, image).await {
        Ok(CaComparison::NoHostBundle) => Check::ok(NAME, "the host has no CA bundle to compare"),
        Ok(CaComparison::ImageAbsent) => Check::ok(
            NAME,
            format!("not compared: image `{image}` is not present yet (`devinst start` gets it)"),
        ),
        Ok(CaComparison::NoImageBundle) => Check::ok(
            NAME,
            format!(
                "not compared: image `{image}` has no CA bundle at {}",
                host::CA_BUNDLE_PATHS.join(", ")
            ),
        ),
        Ok(CaComparison::Compared {
            host,
            image_path,
            host_total,
            lacking: 0,
        }) => Check::ok(
            NAME,
            format!(
                "image `{image}` trusts all {host_total} certificates of the host's `{}` (its `{image_path}`)",
                host.display()
            ),
        ),
        Ok(CaComparison::Compared {
            host,
            image_path,
            lacking,
            ..
        }) => Check::problem(
            NAME,
            format!(
                "the host trusts {lacking} certificate{} that image `{image}` lacks (its `{image_path}` against the host's `{}`): \
                 behind a proxy that re-signs HTTPS, TLS fails inside the instance and its builds",
                if lacking == 1 { "" } else { "s" },
                host.display()
            ),
            "set `host_ca = true` under `[container]` in devinst.toml",
        ),
        Err(err) => Check::problem(
            NAME,
            format!("could not compare with image `{image}`: {}", without_hints(&err)),
            "check the engine's own logs",
        ),
    }
}

async fn port_check(engine: Option<&Engine>, settings: &Settings) -> Check {
    let range = settings.host_range.clone();
    let (first, last) = (*range.start(), *range.end());
    let mut used: BTreeMap<u16, String> = BTreeMap::new();
    for entry in Registry::read_unlocked().unwrap_or_default() {
        for port in entry.ports().filter(|p| range.contains(p)) {
            used.insert(port, format!("instance `{}`", entry.name));
        }
    }
    // What `setup` would skip: ports containers publish, or will when a
    // stopped devinst container starts again.
    if let Some(engine) = engine {
        let held = holdings::gather(engine).await.unwrap_or_default();
        for (port, holders) in held.ports.range(range.clone()) {
            if let Some(holder) = holders.first() {
                used.entry(*port)
                    .or_insert(format!("container `{}`", holder.container));
            }
        }
    }
    for port in range.clone() {
        if !used.contains_key(&port) && !ports::is_free_on_host(port) {
            used.insert(port, "another program".to_owned());
        }
    }
    let total = usize::from(last - first) + 1;
    let free = total - used.len();
    let mut who: Vec<String> = used.iter().map(|(p, by)| format!("{p} {by}")).collect();
    if who.len() > 8 {
        let more = who.len() - 8;
        who.truncate(8);
        who.push(format!("{more} more"));
    }
    let detail = format!(
        "{first}-{last}: {} used{}, {free} free",
        used.len(),
        if who.is_empty() {
            String::new()
        } else {
            format!(" ({})", who.join(", "))
        }
    );
    if free == 0 {
        Check::problem(
            "ports",
            detail,
            "`devinst gc` to release stale instances, or widen `[ports] host_range` in devinst.toml",
        )
    } else {
        Check::ok("ports", detail)
    }
}

fn registry_check() -> Check {
    let entries = match Registry::read_unlocked() {
        Ok(entries) => entries,
        Err(err) => {
            return Check::problem(
                "registry",
                format!("{err:#}"),
                "move the file aside; `devinst setup` in each worktree registers it again",
            )
        }
    };
    let gone: Vec<String> = entries
        .iter()
        .filter(|e| !e.worktree_exists())
        .map(|e| format!("`{}`", e.name))
        .collect();
    let detail = format!("{} instances", entries.len());
    if gone.is_empty() {
        return Check::ok("registry", detail);
    }
    let shown: Vec<String> = gone.iter().take(5).cloned().collect();
    let more = if gone.len() > 5 { ", ..." } else { "" };
    Check::problem(
        "registry",
        format!(
            "{detail}; {} whose worktree is gone: {}{more}",
            gone.len(),
            shown.join(", ")
        ),
        "devinst gc",
    )
}

fn credentials_check(settings: &Settings) -> Check {
    let Some(home) = directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf()) else {
        return Check::problem("credentials", "no home directory is set", "set `HOME`");
    };
    let (found, missing): (Vec<&String>, Vec<&String>) =
        settings.credential_paths.iter().partition(|entry| {
            let (host, _) =
                crate::instance::spec::credential_paths(entry, &home, &settings.credential_home);
            host.exists()
        });
    let list = |items: &[&String]| {
        items
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if settings.credential_paths.is_empty() {
        return Check::ok("credentials", "the recipe mounts none");
    }
    if found.is_empty() && settings.default_credentials() {
        // Mounted when they exist; a project may need none of them.
        return Check::ok(
            "credentials",
            format!(
                "none of the default directories exists ({}), so none is mounted",
                list(&missing)
            ),
        );
    }
    if found.is_empty() {
        return Check::problem(
            "credentials",
            format!("none of {} exists", list(&missing)),
            "sign in with your cloud's CLI (e.g. `aws configure`, `gcloud auth login`), or set `[credentials] paths` in devinst.toml",
        );
    }
    let missing = if missing.is_empty() {
        String::new()
    } else {
        format!("; not found: {}", list(&missing))
    };
    Check::ok(
        "credentials",
        format!("mounted read-only: {}{missing}", list(&found)),
    )
}

async fn instance_check(engine: Option<&Engine>, layout: Option<&Layout>) -> Check {
    let Some(layout) = layout else {
        return Check::problem(
            "instance",
            "this directory has no instance",
            "devinst setup (in a worktree)",
        );
    };
    let record = match layout.read_record() {
        Ok(record) => record,
        Err(err) => return Check::problem("instance", format!("{err:#}"), "devinst setup"),
    };
    let registered = Registry::read_unlocked()
        .unwrap_or_default()
        .into_iter()
        .any(|e| e.name == record.name && e.worktree == layout.root);
    if !registered || record.worktree != layout.root {
        return Check::problem(
            "instance",
            format!(
                "`{}` is not registered for `{}` (moved or copied?)",
                record.name,
                layout.root.display()
            ),
            "devinst setup",
        );
    }
    let state = match engine {
        Some(engine) => match engine.inspect(&record.container).await {
            Ok(Some(info)) => info.status,
            Ok(None) => "not created yet".to_owned(),
            Err(_) => "unknown".to_owned(),
        },
        None => "unknown (no engine)".to_owned(),
    };
    Check::ok(
        "instance",
        format!(
            "`{}` at {}: container `{}` {state}, port {}",
            record.name,
            shown(&layout.root),
            record.container,
            record.port
        ),
    )
}

/// The error's sentences on one line; its hint becomes the check's fix.
fn without_hints(err: &anyhow::Error) -> String {
    let parts: Vec<String> = err
        .chain()
        .map(|cause| cause.to_string())
        .filter(|text| !text.starts_with(crate::support::error::HINT_PREFIX))
        .collect();
    let text = parts.join(": ");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn shown(path: &Path) -> String {
    format!("`{}`", path.display())
}
