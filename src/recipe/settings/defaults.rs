//! What each key takes when `devinst.toml` leaves it out: SkyPilot's
//! multi-instance setup.

use crate::support::shell::quote;
use std::collections::BTreeMap;

pub const DEFAULT_IMAGE: &str = "ubuntu:22.04";
pub const DEFAULT_PREFIX: &str = "skypilot-dev";
pub const DEFAULT_WORKDIR: &str = "/app";
pub const DEFAULT_CONTAINER_PORT: u16 = 46580;
pub const DEFAULT_HOST_RANGE: [u16; 2] = [46501, 46599];
pub const DEFAULT_BIND: &str = "127.0.0.1";
pub const DEFAULT_CREDENTIALS: &[&str] = &[
    "~/.aws",
    "~/.azure",
    "~/.config/gcloud",
    "~/.kube",
    "~/.ssh",
];
pub const DEFAULT_ENV_PASS: &[&str] = &[
    "SKYPILOT_*",
    "SKY_*",
    "AWS_*",
    "AZURE_*",
    "GOOGLE_*",
    "GCP_*",
    "CLOUDSDK_*",
    "KUBE*",
    "KUBERNETES_*",
    "DOCKER_*",
    "GIT_*",
    "RAY_*",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "LANG",
    "LC_*",
    "TZ",
];
pub const DEFAULT_SETUP_INPUTS: &[&str] = &[
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "requirements.txt",
];

/// The keep-alive process.
pub(super) fn command() -> Vec<String> {
    vec!["sleep".to_owned(), "infinity".to_owned()]
}

/// The virtualenv the default setup steps make, inside the worktree.
pub(super) fn venv(workdir: &str) -> String {
    format!("{workdir}/.sky-dev/venv")
}

pub(super) fn state_mount(home: &str) -> String {
    format!("{home}/.sky")
}

pub(super) fn logs_mount(home: &str) -> String {
    format!("{home}/sky_logs")
}

pub(super) fn env_set() -> BTreeMap<String, String> {
    BTreeMap::from([("SKYPILOT_DEV".to_owned(), "1".to_owned())])
}

/// `sky`, from the virtualenv.
pub(super) fn shims(venv: &str) -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([("sky".to_owned(), vec![format!("{venv}/bin/sky")])])
}

/// Every path in them is quoted: `workdir = "/my app"` is one word.
pub(super) fn setup_commands(workdir: &str, venv: &str) -> Vec<String> {
    let (python, pip) = (
        quote(&format!("{venv}/bin/python")),
        quote(&format!("{venv}/bin/pip")),
    );
    let (venv, workdir) = (quote(venv), quote(workdir));
    vec![
        "if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then \
         apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y python3 python3-pip python3-venv; fi"
            .to_owned(),
        format!("[ -x {python} ] || python3 -m venv {venv}"),
        format!("{pip} install -e {workdir}"),
    ]
}

/// The default outputs belong to the default steps: custom steps name their
/// own, or are judged by their inputs alone.
pub(super) fn setup_outputs(custom_commands: bool) -> Vec<String> {
    if custom_commands {
        Vec::new()
    } else {
        vec![".sky-dev/venv/bin/python".to_owned()]
    }
}
