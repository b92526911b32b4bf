//! Registry logins, found where the Docker CLI keeps them and chosen as
//! `docker pull` chooses: `credHelpers[registry]`, else `credsStore`, else
//! `auths` in `config.json` (under `DOCKER_CONFIG`, else `~/.docker`). A
//! helper is the program `docker-credential-<name>`, asked with `get`.
//!
//! Only the registry an image names gets its login; no secret is ever
//! logged or put in an error message.

use crate::support::error::WithHint;
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use bollard::auth::DockerCredentials;
use serde::Deserialize;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The key the Docker CLI files Docker Hub's login under.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// A helper answers this when it holds nothing for the registry.
const NOT_FOUND: &str = "credentials not found";
/// A helper's error is shown cut to this many characters.
const HELPER_MESSAGE_CHARS: usize = 200;

/// The registry an image comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Registry {
    /// As config.json keys it and a credential helper is asked for it:
    /// [`DOCKER_HUB_KEY`] or `host[:port]`.
    pub key: String,
    /// As a user names it to `docker login`: `docker.io` or `host[:port]`.
    pub name: String,
}

impl Registry {
    /// The registry of an image reference, read as the Docker CLI reads it:
    /// the part before the first `/` is a registry when it has a `.` or a
    /// `:` or is `localhost`; otherwise the image is Docker Hub's.
    pub fn of_image(image: &str) -> Registry {
        let host = match image.split_once('/') {
            Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
            _ => "docker.io",
        };
        if is_docker_hub(host) {
            return Registry {
                key: DOCKER_HUB_KEY.to_owned(),
                name: "docker.io".to_owned(),
            };
        }
        Registry {
            key: host.to_owned(),
            name: host.to_owned(),
        }
    }

    /// Whether a config.json key (`host`, `https://host/v1/`) names this
    /// registry.
    fn is_named_by(&self, key: &str) -> bool {
        let host = key_host(key);
        match self.key == DOCKER_HUB_KEY {
            true => is_docker_hub(host),
            false => host == self.key,
        }
    }
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// The host of a config.json key: its scheme and path left out.
fn key_host(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

/// The registry an image comes from and the login devinst sends it.
#[derive(Debug)]
pub struct ImageLogin {
    pub registry: Registry,
    pub login: Option<Login>,
}

impl ImageLogin {
    /// The login for `image`'s registry, from the Docker CLI's config
    /// directory of this process's environment.
    pub fn find(image: &str) -> Result<ImageLogin> {
        let registry = Registry::of_image(image);
        let config_dir = super::discover::Env::from_process().docker_config;
        let login = login(config_dir.as_deref(), &registry)?;
        if let Some(login) = &login {
            tracing::debug!("logging in to `{}` with {}", registry.name, login.source);
        }
        Ok(ImageLogin { registry, login })
    }

    /// No login: for an image that will not be pulled.
    pub fn none(image: &str) -> ImageLogin {
        ImageLogin {
            registry: Registry::of_image(image),
            login: None,
        }
    }

    /// What bollard sends as `X-Registry-Auth`.
    pub fn credentials(&self) -> Option<DockerCredentials> {
        self.login.as_ref().map(|l| l.credentials.clone())
    }

    /// What bollard sends as `X-Registry-Config` for a build: this
    /// registry's login alone, under the key the Docker CLI uses.
    pub fn registry_config(&self) -> Option<HashMap<String, DockerCredentials>> {
        self.credentials()
            .map(|c| HashMap::from([(self.registry.key.clone(), c)]))
    }

    /// The error to give when the engine's `message` about `image` says the
    /// registry refused; `None` for any other failure.
    pub fn refused(&self, image: &str, message: &str) -> Option<anyhow::Error> {
        is_refusal(message).then(|| {
            LoginRefused {
                image: image.to_owned(),
                registry: self.registry.clone(),
                sent: self.login.as_ref().map(|l| l.source.clone()),
                message: message.to_owned(),
            }
            .into_error()
        })
    }
}

/// The parts of the Docker CLI's config.json that hold logins (no
/// `Debug`: it holds secrets).
#[derive(Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(rename = "credsStore", default)]
    creds_store: Option<String>,
    #[serde(rename = "credHelpers", default)]
    cred_helpers: HashMap<String, String>,
}

/// One `auths` entry: `auth` is base64 of `user:password`.
#[derive(Default, Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// Where a login was found, for messages (never the secret itself).
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    ConfigFile(PathBuf),
    Helper(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::ConfigFile(path) => write!(f, "`auths` in `{}`", path.display()),
            Source::Helper(name) => write!(f, "the credential helper `docker-credential-{name}`"),
        }
    }
}

/// A login for one registry.
#[derive(Clone)]
pub struct Login {
    pub credentials: DockerCredentials,
    pub source: Source,
}

/// Never shows the secret.
impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.credentials.username)
            .field("serveraddress", &self.credentials.serveraddress)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The login `docker pull` would use for `registry`, from the Docker CLI's
/// config directory `config_dir`; `None` to pull anonymously.
pub fn login(config_dir: Option<&Path>, registry: &Registry) -> Result<Option<Login>> {
    let Some(dir) = config_dir else {
        return Ok(None);
    };
    let Some((path, config)) = super::discover::read_docker_config::<ConfigFile>(dir)? else {
        return Ok(None);
    };
    if let Some(helper) = helper_for(&config, registry) {
        return ask_helper(&helper, registry, &path);
    }
    let entry = config.auths.get(&registry.key).or_else(|| {
        config
            .auths
            .iter()
            .find(|(key, _)| registry.is_named_by(key))
            .map(|(_, entry)| entry)
    });
    let Some(entry) = entry else {
        return Ok(None);
    };
    let credentials = entry_credentials(entry, registry)
        .with_context(|| {
            format!(
                "invalid login for `{}` in `{}`",
                registry.name,
                path.display()
            )
        })
        .hint(format!("run `docker login {}` again", registry.name))?;
    Ok(credentials.map(|credentials| Login {
        credentials,
        source: Source::ConfigFile(path),
    }))
}

/// The helper for `registry`: its own in `credHelpers`, else `credsStore`.
fn helper_for(config: &ConfigFile, registry: &Registry) -> Option<String> {
    let own = config.cred_helpers.get(&registry.key).or_else(|| {
        config
            .cred_helpers
            .iter()
            .find(|(key, _)| registry.is_named_by(key))
            .map(|(_, name)| name)
    });
    own.or(config.creds_store.as_ref())
        .filter(|name| !name.is_empty())
        .cloned()
}

/// The credentials of an `auths` entry; `None` when it holds none (the
/// Docker CLI leaves `{}` behind when a helper keeps the secret).
fn entry_credentials(entry: &AuthEntry, registry: &Registry) -> Result<Option<DockerCredentials>> {
    let (mut username, mut password) = (entry.username.clone(), entry.password.clone());
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let (user, pass) = decode_auth(auth)?;
        username = Some(user);
        password = Some(pass);
    }
    let token = entry.identitytoken.clone().filter(|t| !t.is_empty());
    let empty = |v: &Option<String>| v.as_deref().is_none_or(str::is_empty);
    if empty(&username) && empty(&password) && token.is_none() {
        return Ok(None);
    }
    Ok(Some(DockerCredentials {
        username,
        password,
        identitytoken: token,
        serveraddress: Some(registry.key.clone()),
        ..Default::default()
    }))
}

/// `user:password` from base64 (the message never shows the value).
fn decode_auth(auth: &str) -> Result<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| anyhow!("its `auth` is not base64"))?;
    let text = String::from_utf8(bytes).map_err(|_| anyhow!("its `auth` is not UTF-8"))?;
    match text.split_once(':') {
        Some((user, pass)) => Ok((user.to_owned(), pass.to_owned())),
        None => bail!("its `auth` is not `user:password`"),
    }
}

/// What a credential helper prints for `get`.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// The helper's answer for `registry`: `docker-credential-<name> get`, the
/// registry on stdin, JSON on stdout. "credentials not found" means none.
fn ask_helper(name: &str, registry: &Registry, config: &Path) -> Result<Option<Login>> {
    let program = helper_program(name).with_context(|| {
        format!(
            "`{}` names the credential helper `{name}`",
            config.display()
        )
    })?;
    let fix_hint = format!(
        "install `{program}` on PATH, or remove `credsStore`/`credHelpers` for `{}` from `{}`",
        registry.name,
        config.display()
    );
    let credentials = query_helper(Path::new(&program), registry).hint(fix_hint)?;
    Ok(credentials.map(|credentials| Login {
        credentials,
        source: Source::Helper(name.to_owned()),
    }))
}

/// Runs `program get` for `registry` and reads its answer.
fn query_helper(program: &Path, registry: &Registry) -> Result<Option<DockerCredentials>> {
    let shown = program.display();
    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run the credential helper `{shown}`"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is judged by its answer.
        let _ = stdin.write_all(registry.key.as_bytes());
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("the credential helper `{shown}` failed"))?;
    if !out.status.success() {
        let said = helper_message(&out.stdout, &out.stderr);
        if said.to_lowercase().contains(NOT_FOUND) {
            return Ok(None);
        }
        return Err(anyhow!(
            "the credential helper `{shown}` failed ({}) for `{}`: {said}",
            out.status,
            registry.name
        ))
        .hint(format!(
            "check it with `printf %s {} | {shown} get`",
            registry.key
        ));
    }
    // Its output holds the secret: never quoted in the error.
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout).map_err(|_| {
        anyhow!(
            "the credential helper `{shown}` answered something other than its JSON for `{}`",
            registry.name
        )
    })?;
    if answer.username.is_empty() && answer.secret.is_empty() {
        return Ok(None);
    }
    let mut credentials = DockerCredentials {
        serveraddress: Some(registry.key.clone()),
        ..Default::default()
    };
    // A helper names an identity token by the user `<token>`.
    if answer.username == "<token>" {
        credentials.identitytoken = Some(answer.secret);
    } else {
        credentials.username = Some(answer.username);
        credentials.password = Some(answer.secret);
    }
    Ok(Some(credentials))
}

/// `docker-credential-<name>`, for a name that is a plain word: found on
/// PATH, never a path of its own, never an option.
fn helper_program(name: &str) -> Result<String> {
    let plain = !name.is_empty()
        && !name.starts_with('-')
        && !name.contains(['/', '\\', '\0'])
        && !name.chars().any(char::is_whitespace);
    if !plain {
        bail!("`{name}` is not a credential helper's name (a plain word, as in `docker-credential-NAME`)");
    }
    Ok(format!("docker-credential-{name}"))
}

/// A failed helper's own words (the protocol puts them on stdout), one
/// line, cut short.
fn helper_message(stdout: &[u8], stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdout);
    let text = match text.trim().is_empty() {
        true => String::from_utf8_lossy(stderr),
        false => text,
    };
    let line = text.trim().lines().next().unwrap_or("").trim();
    match line.char_indices().nth(HELPER_MESSAGE_CHARS) {
        Some((end, _)) => format!("{}...", &line[..end]),
        None if line.is_empty() => "no message".to_owned(),
        None => line.to_owned(),
    }
}

/// Whether an engine's message says the registry refused (no login, or a
/// wrong one): Docker and Podman word it in these ways. A local
/// "permission denied" is not a refusal.
pub fn is_refusal(message: &str) -> bool {
    const SIGNS: [&str; 7] = [
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "access denied",
        "access to the resource is denied",
        "denied:",
        "forbidden",
    ];
    let lower = message.to_lowercase();
    // Status codes only as words of their own ("401 Unauthorized", "status
    // 403"), not inside a digest.
    let status = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| word == "401" || word == "403");
    status || SIGNS.iter().any(|sign| lower.contains(sign))
}

/// The registry refused to serve an image: not logged in, or the login
/// was refused.
#[derive(Debug)]
pub struct LoginRefused {
    pub image: String,
    pub registry: Registry,
    /// Where the login that was sent came from; `None` when devinst had
    /// none to send.
    pub sent: Option<Source>,
    /// The engine's own words.
    pub message: String,
}

impl std::fmt::Display for LoginRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let registry = &self.registry.name;
        let image = &self.image;
        let message = self.message.trim();
        match &self.sent {
            None => write!(
                f,
                "the registry `{registry}` refused to serve `{image}` without a login: {message}"
            ),
            Some(source) => write!(
                f,
                "the registry `{registry}` refused the login for `{image}` (from {source}): {message}"
            ),
        }
    }
}

impl std::error::Error for LoginRefused {}

impl LoginRefused {
    /// The error with its hint: log in to that registry (again).
    pub fn into_error(self) -> anyhow::Error {
        let registry = &self.registry.name;
        let hint = match &self.sent {
            None => format!(
                "run `docker login {registry}` (devinst uses the logins the Docker CLI keeps, \
                 in `$DOCKER_CONFIG` or `~/.docker`), then run the command again"
            ),
            Some(_) => format!(
                "run `docker login {registry}` again (the login may be wrong or expired), then \
                 run the command again; if it still fails, the account may not have access to \
                 the image, or the image's name is wrong"
            ),
        };
        anyhow::Error::new(self).context(crate::support::error::Hint(hint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_dir(json: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), json).unwrap();
        dir
    }

    fn registry(image: &str) -> Registry {
        Registry::of_image(image)
    }

    fn user_and_password(dir: &tempfile::TempDir, image: &str) -> Option<(String, String)> {
        login(Some(dir.path()), &registry(image)).unwrap().map(|l| {
            (
                l.credentials.username.unwrap_or_default(),
                l.credentials.password.unwrap_or_default(),
            )
        })
    }

    #[test]
    fn images_name_their_registry_as_the_docker_cli_reads_them() {
        for hub in [
            "ubuntu:22.04",
            "library/ubuntu",
            "docker.io/library/ubuntu:22.04",
            "index.docker.io/x/y",
            "devinst-test/busybox:1",
            "ubuntu@sha256:abc",
        ] {
            assert_eq!(registry(hub).key, DOCKER_HUB_KEY, "{hub}");
            assert_eq!(registry(hub).name, "docker.io", "{hub}");
        }
        for (image, host) in [
            ("127.0.0.1:5001/devinst-test/busybox:1", "127.0.0.1:5001"),
            ("ghcr.io/org/x:1", "ghcr.io"),
            ("localhost/x", "localhost"),
            ("localhost:5000/x", "localhost:5000"),
            (
                "registry.example.com/a/b/c@sha256:00",
                "registry.example.com",
            ),
        ] {
            assert_eq!(registry(image).key, host, "{image}");
            assert_eq!(registry(image).name, host, "{image}");
        }
    }

    #[test]
    fn auths_entries_are_matched_by_host_whatever_the_key_looks_like() {
        let dir = config_dir(
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOmh1YnBhc3M="},
                "https://ghcr.io/v2/": {"auth": "Z2g6Z2hwYXNz"},
                "127.0.0.1:5001": {"username": "u", "password": "p:with:colons"},
                "other.example": {}
            }}"#,
        );
        let pair = |u: &str, p: &str| Some((u.to_owned(), p.to_owned()));
        assert_eq!(user_and_password(&dir, "ubuntu"), pair("hub", "hubpass"));
        assert_eq!(
            user_and_password(&dir, "docker.io/x/y"),
            pair("hub", "hubpass")
        );
        assert_eq!(user_and_password(&dir, "ghcr.io/o/x"), pair("gh", "ghpass"));
        assert_eq!(
            user_and_password(&dir, "127.0.0.1:5001/x:1"),
            pair("u", "p:with:colons")
        );
        // Another port is another registry; an empty entry is no login.
        assert_eq!(user_and_password(&dir, "127.0.0.1:5000/x:1"), None);
        assert_eq!(user_and_password(&dir, "other.example/x"), None);
        let login = login(Some(dir.path()), &registry("ghcr.io/o/x"))
            .unwrap()
            .unwrap();
        assert_eq!(login.credentials.serveraddress.as_deref(), Some("ghcr.io"));
        assert!(matches!(login.source, Source::ConfigFile(_)));
    }

    #[test]
    fn no_config_means_anonymous_and_a_broken_one_is_named() {
        assert!(login(None, &registry("x")).unwrap().is_none());
        let empty = tempfile::tempdir().unwrap();
        assert!(login(Some(empty.path()), &registry("x")).unwrap().is_none());
        let broken = config_dir("{not json");
        let err = format!(
            "{:#}",
            login(Some(broken.path()), &registry("x")).unwrap_err()
        );
        assert!(err.contains("config.json"), "{err}");
    }

    #[test]
    fn a_bad_auth_value_is_an_error_that_never_shows_it() {
        let dir = config_dir(r#"{"auths": {"reg.example": {"auth": "c2VjcmV0LW5vLWNvbG9u"}}}"#);
        let err = login(Some(dir.path()), &registry("reg.example/x")).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("reg.example") && text.contains("user:password"),
            "{text}"
        );
        assert!(
            !text.contains("secret-no-colon") && !text.contains("c2VjcmV0"),
            "{text}"
        );
    }

    #[test]
    fn identity_tokens_are_passed_as_such() {
        let dir =
            config_dir(r#"{"auths": {"reg.example": {"auth": "dTo=", "identitytoken": "tok"}}}"#);
        let login = login(Some(dir.path()), &registry("reg.example/x"))
            .unwrap()
            .unwrap();
        assert_eq!(login.credentials.identitytoken.as_deref(), Some("tok"));
        assert_eq!(login.credentials.username.as_deref(), Some("u"));
        assert!(!format!("{login:?}").contains("tok"), "Debug hides secrets");
    }

    #[test]
    fn a_registrys_own_helper_wins_over_the_store_which_wins_over_auths() {
        let config: ConfigFile = serde_json::from_str(
            r#"{"auths": {"a.example": {"auth": "dTpw"}},
                "credsStore": "store",
                "credHelpers": {"b.example": "own", "https://index.docker.io/v1/": "hub"}}"#,
        )
        .unwrap();
        let helper = |image: &str| helper_for(&config, &registry(image));
        assert_eq!(helper("a.example/x").as_deref(), Some("store"));
        assert_eq!(helper("b.example/x").as_deref(), Some("own"));
        assert_eq!(helper("ubuntu").as_deref(), Some("hub"));
        let no_store: ConfigFile =
            serde_json::from_str(r#"{"credHelpers": {"b.example": "own"}}"#).unwrap();
        assert_eq!(helper_for(&no_store, &registry("a.example/x")), None);
    }

    #[test]
    fn helper_names_are_plain_words() {
        assert_eq!(helper_program("pass").unwrap(), "docker-credential-pass");
        assert_eq!(
            helper_program("ecr-login").unwrap(),
            "docker-credential-ecr-login"
        );
        for bad in ["", "../x", "a/b", "-rf", "a b", "a\0b"] {
            assert!(helper_program(bad).is_err(), "{bad:?}");
        }
    }

    /// A helper speaking the protocol: it answers for `good.example` only,
    /// and fails otherwise as helpers do.
    fn helper_script(dir: &Path) -> PathBuf {
        let path = dir.join("docker-credential-test");
        std::fs::write(
            &path,
            "#!/bin/sh\n[ \"$1\" = get ] || exit 9\nread -r server || true\ncase $server in\n\
             good.example) echo '{\"ServerURL\":\"good.example\",\"Username\":\"u\",\"Secret\":\"s3\"}' ;;\n\
             token.example) echo '{\"ServerURL\":\"token.example\",\"Username\":\"<token>\",\"Secret\":\"t\"}' ;;\n\
             broken.example) echo 'not json s3' ;;\n\
             none.example) echo 'credentials not found in native keychain'; exit 1 ;;\n\
             *) echo 'keychain locked'; exit 1 ;;\nesac\n",
        )
        .unwrap();
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&path, perms).unwrap();
        path
    }

    #[test]
    fn helpers_are_asked_with_the_real_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let helper = helper_script(dir.path());
        let ask = |host: &str| query_helper(&helper, &registry(&format!("{host}/x")));
        let good = ask("good.example").unwrap().unwrap();
        assert_eq!(good.username.as_deref(), Some("u"));
        assert_eq!(good.password.as_deref(), Some("s3"));
        assert_eq!(good.serveraddress.as_deref(), Some("good.example"));
        let token = ask("token.example").unwrap().unwrap();
        assert_eq!(token.identitytoken.as_deref(), Some("t"));
        assert_eq!(token.username, None);
        assert!(
            ask("none.example").unwrap().is_none(),
            "not found: anonymous"
        );
        let failed = format!("{:#}", ask("other.example").unwrap_err());
        assert!(
            failed.contains("keychain locked") && failed.contains("other.example"),
            "{failed}"
        );
        let broken = format!("{:#}", ask("broken.example").unwrap_err());
        assert!(
            broken.contains("JSON") && !broken.contains("s3"),
            "{broken}"
        );
        let missing = query_helper(&dir.path().join("nope"), &registry("good.example/x"));
        assert!(format!("{:#}", missing.unwrap_err()).contains("cannot run"));
    }

    #[test]
    fn helper_messages_are_one_line_and_short() {
        assert_eq!(helper_message(b"", b""), "no message");
        assert_eq!(helper_message(b"boom\nmore", b"x"), "boom");
        assert_eq!(helper_message(b"  ", b"err"), "err");
        let long = "x".repeat(HELPER_MESSAGE_CHARS + 10);
        assert!(helper_message(long.as_bytes(), b"").ends_with("..."));
    }

    #[test]
    fn refusals_are_recognised_in_docker_and_podman_words() {
        for refusal in [
            "Head \"http://127.0.0.1:5001/v2/x/manifests/1\": no basic auth credentials",
            "pull access denied for x, repository does not exist or may require 'docker login'",
            "initializing source docker://127.0.0.1:5001/x:1: reading manifest 1 in \
             127.0.0.1:5001/x: unauthorized: authentication required",
            "unexpected status 403 Forbidden",
            "denied: requested access to the resource is denied",
            "reading manifest 1 in reg.example/x: StatusCode: 401",
        ] {
            assert!(is_refusal(refusal), "{refusal}");
        }
        for other in [
            "manifest for x:1 not found: manifest unknown",
            "dial tcp 127.0.0.1:5001: connect: connection refused",
            "sha256:4013abc4401",
            "failed to register layer: open /var/lib/docker/x: permission denied",
        ] {
            assert!(!is_refusal(other), "{other}");
        }
    }

    #[test]
    fn the_refusal_names_the_registry_and_hints_the_login() {
        let err = LoginRefused {
            image: "127.0.0.1:5001/x:1".into(),
            registry: registry("127.0.0.1:5001/x:1"),
            sent: None,
            message: "no basic auth credentials".into(),
        }
        .into_error();
        let (messages, hints) = crate::support::error::messages_and_hints(&err);
        assert!(
            messages[0].contains("`127.0.0.1:5001` refused"),
            "{messages:?}"
        );
        assert!(
            hints[0].contains("`docker login 127.0.0.1:5001`"),
            "{hints:?}"
        );
        assert!(err.downcast_ref::<LoginRefused>().is_some());
    }
}
