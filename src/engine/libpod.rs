//! The one answer only Podman's own API gives: whether it runs rootless, and
//! as whom. Podman 4.3's Docker-compatible `/info` lists no `name=rootless`
//! among its security options (Docker and later Podmans do), and its
//! `Rootless` field is not Docker's, so bollard drops it. Podman's own
//! `/libpod/info` says both, read here with one plain HTTP/1.0 GET (Podman
//! then answers without chunking and closes the connection).

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Podman 4 and later serve their own API under a versioned path only.
const INFO_PATH: &str = "/v4.0.0/libpod/info";
const LIMIT: Duration = Duration::from_secs(20);

/// How a Podman engine maps ids, as its own API tells it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PodmanHost {
    pub rootless: bool,
    /// The user the engine runs as, on the host: the one its rootless
    /// containers' root is, and the one `keep-id` keeps.
    pub engine_uid: Option<u32>,
    /// How many subordinate uids the engine's user has (`/etc/subuid`):
    /// the ids other than their own that a container may use.
    pub subordinate_ids: u64,
}

#[derive(Deserialize)]
struct Info {
    host: Host,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Host {
    security: Security,
    id_mappings: Option<IdMappings>,
}

#[derive(Deserialize)]
struct Security {
    rootless: bool,
}

#[derive(Deserialize)]
struct IdMappings {
    uidmap: Option<Vec<IdMap>>,
}

#[derive(Deserialize)]
struct IdMap {
    container_id: u32,
    host_id: u32,
    size: u64,
}

/// Asks the Podman engine at `uri` (`unix://` or `tcp://`/`http://`) how it
/// maps ids.
pub async fn host(uri: &str) -> Result<PodmanHost> {
    let answer = tokio::time::timeout(LIMIT, get(uri, INFO_PATH))
        .await
        .map_err(|_| anyhow!("no answer within {} s", LIMIT.as_secs()))??;
    parse_info(&answer)
}

async fn get(uri: &str, path: &str) -> Result<Vec<u8>> {
    if let Some(socket) = uri.strip_prefix("unix://") {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .with_context(|| format!("cannot connect to `{socket}`"))?;
        return exchange(stream, path).await;
    }
    let address = uri
        .strip_prefix("tcp://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or_else(|| anyhow!("unsupported engine URI `{uri}`"))?
        .trim_end_matches('/');
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| format!("cannot connect to `{address}`"))?;
    exchange(stream, path).await
}

async fn exchange(mut stream: impl AsyncRead + AsyncWrite + Unpin, path: &str) -> Result<Vec<u8>> {
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: podman\r\nAccept: application/json\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    Ok(answer)
}

/// The body of a whole HTTP/1.x answer with status 200, else an error that
/// quotes the status line.
fn body_of(answer: &[u8]) -> Result<&[u8]> {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("an answer without headers"))?;
    let head = String::from_utf8_lossy(&answer[..split]);
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(anyhow!("`GET {INFO_PATH}` answered `{status}`"));
    }
    if head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        return Err(anyhow!("a chunked answer to an HTTP/1.0 request"));
    }
    Ok(&answer[split + 4..])
}

fn parse_info(answer: &[u8]) -> Result<PodmanHost> {
    let info: Info = serde_json::from_slice(body_of(answer)?)
        .with_context(|| format!("cannot read Podman's `{INFO_PATH}`"))?;
    let uidmap = info
        .host
        .id_mappings
        .and_then(|m| m.uidmap)
        .unwrap_or_default();
    // Rootless: the engine's user is the host id of the container's root;
    // the other ranges are their subordinate ids.
    let engine_uid = uidmap
        .iter()
        .find(|m| m.container_id == 0 && m.size == 1)
        .map(|m| m.host_id);
    let subordinate_ids = uidmap
        .iter()
        .filter(|m| m.container_id != 0)
        .map(|m| m.size)
        .sum();
    Ok(PodmanHost {
        rootless: info.host.security.rootless,
        engine_uid: engine_uid.filter(|_| info.host.security.rootless),
        subordinate_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &str) -> Vec<u8> {
        format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nLibpod-Api-Version: 4.3.1\r\n\r\n{body}")
            .into_bytes()
    }

    #[test]
    fn rootless_podman_says_who_it_runs_as_and_how_many_ids_it_has() {
        // Podman 4.3.1's answer for an ordinary user, trimmed to what is read.
        let rootless = answer(
            r#"{"host":{"security":{"rootless":true,"seccompEnabled":true},
                "idMappings":{"gidmap":[{"container_id":0,"host_id":1001,"size":1},{"container_id":1,"host_id":100000,"size":65536}],
                              "uidmap":[{"container_id":0,"host_id":1001,"size":1},{"container_id":1,"host_id":100000,"size":65536}]}},
                "store":{}}"#,
        );
        assert_eq!(
            parse_info(&rootless).unwrap(),
            PodmanHost {
                rootless: true,
                engine_uid: Some(1001),
                subordinate_ids: 65536
            }
        );
        let without_subordinates = answer(
            r#"{"host":{"security":{"rootless":true},
                "idMappings":{"uidmap":[{"container_id":0,"host_id":1001,"size":1}]}}}"#,
        );
        assert_eq!(
            parse_info(&without_subordinates).unwrap().subordinate_ids,
            0
        );
        // Rootful Podman 4.3.1: no mappings at all.
        let rootful = answer(
            r#"{"host":{"security":{"rootless":false},"idMappings":{"gidmap":null,"uidmap":null}}}"#,
        );
        assert_eq!(parse_info(&rootful).unwrap(), PodmanHost::default());
    }

    #[test]
    fn an_answer_other_than_200_is_an_error_that_quotes_it() {
        let err = parse_info(b"HTTP/1.0 404 Not Found\r\n\r\n{\"message\":\"page not found\"}")
            .unwrap_err();
        assert!(err.to_string().contains("404 Not Found"), "{err}");
        assert!(parse_info(b"garbage").is_err());
    }
}
