//! Where snapshots travel to: an S3 bucket (AWS, MinIO, any S3-compatible
//! server) or a directory, reached the way AWS tools reach S3.

use crate::support::error::WithHint;
use anyhow::{anyhow, bail, Context, Result};
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A store's address, as given.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreUrl {
    S3 { bucket: String, prefix: String },
    Dir(PathBuf),
}

impl StoreUrl {
    /// `s3://bucket/prefix`, `file:///dir`, or a directory (relative to `cwd`).
    pub fn parse(text: &str, cwd: &Path) -> Result<StoreUrl> {
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                bail!("`{text}` names no bucket: write `s3://BUCKET/PREFIX`");
            }
            let prefix = prefix.trim_matches('/').to_owned();
            if prefix.split('/').any(|part| part == "..") {
                bail!("`{text}`: a prefix with `..` is not a place in a bucket");
            }
            return Ok(StoreUrl::S3 {
                bucket: bucket.to_owned(),
                prefix,
            });
        }
        if let Some(scheme) = text
            .split_once("://")
            .map(|(s, _)| s)
            .filter(|s| *s != "file")
        {
            bail!("`{scheme}://` is not a snapshot store: use `s3://BUCKET/PREFIX` or a directory");
        }
        let path = text.strip_prefix("file://").unwrap_or(text);
        if path.is_empty() {
            bail!("an empty snapshot store: use `s3://BUCKET/PREFIX` or a directory");
        }
        Ok(StoreUrl::Dir(cwd.join(path)))
    }

    pub fn shown(&self) -> String {
        match self {
            StoreUrl::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}"),
            StoreUrl::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
            StoreUrl::Dir(dir) => dir.display().to_string(),
        }
    }
}

/// An open store: keys are under its prefix.
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    pub shown: String,
}

/// How much of a file an upload or download sends at once, and how many
/// parts are in flight: a snapshot never sits whole in memory.
const PART: usize = 8 << 20;
const PARTS_IN_FLIGHT: usize = 4;

impl Store {
    /// Opens `url`; S3 with credentials, region and endpoint as AWS tools
    /// find them (`AWS_*` variables, then `~/.aws/credentials` and
    /// `~/.aws/config`), the endpoint given by the recipe or user last.
    pub fn open(url: &StoreUrl, endpoint: Option<&str>) -> Result<Store> {
        let shown = url.shown();
        match url {
            StoreUrl::Dir(dir) => {
                crate::support::fs::create_dir_all(dir)?;
                let inner = LocalFileSystem::new_with_prefix(dir).with_context(|| {
                    format!("cannot use `{}` as a snapshot store", dir.display())
                })?;
                Ok(Store {
                    inner: Arc::new(inner),
                    prefix: String::new(),
                    shown,
                })
            }
            StoreUrl::S3 { bucket, prefix } => {
                let inner = s3_builder(bucket, endpoint)?
                    .build()
                    .with_context(|| format!("cannot use `{shown}` as a snapshot store"))?;
                Ok(Store {
                    inner: Arc::new(inner),
                    prefix: prefix.clone(),
                    shown,
                })
            }
        }
    }

    fn key(&self, rel: &str) -> Key {
        match self.prefix.is_empty() {
            true => Key::from(rel),
            false => Key::from(format!("{}/{rel}", self.prefix)),
        }
    }

    /// Whether `rel` is in the store.
    pub async fn has(&self, rel: &str) -> Result<bool> {
        match self.inner.head(&self.key(rel)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(self.explain(err)),
        }
    }

    pub async fn put_small(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        self.inner
            .put(&self.key(rel), PutPayload::from(bytes))
            .await
            .map(drop)
            .map_err(|err| self.explain(err))
    }

    /// `rel`'s bytes, or `None` when it is not there.
    pub async fn get_small(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        match self.inner.get(&self.key(rel)).await {
            Ok(got) => Ok(Some(
                got.bytes().await.map_err(|e| self.explain(e))?.to_vec(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(self.explain(err)),
        }
    }

    /// Uploads `file` to `rel` in parts. The object appears whole when the
    /// upload completes, or not at all.
    pub async fn upload(&self, file: &Path, rel: &str, what: &str) -> Result<()> {
        let size = std::fs::metadata(file)?.len();
        let upload = self
            .inner
            .put_multipart(&self.key(rel))
            .await
            .map_err(|err| self.explain(err))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut input = tokio::fs::File::open(file).await?;
        let mut progress = Progress::new(what, size);
        let mut buffer = vec![0u8; PART];
        loop {
            let read = read_full(&mut input, &mut buffer).await?;
            if read == 0 {
                break;
            }
            writer
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(|err| self.explain(err))?;
            writer.write(&buffer[..read]);
            progress.advance(read as u64);
        }
        writer.finish().await.map_err(|err| self.explain(err))?;
        progress.done();
        Ok(())
    }

    /// Downloads `rel` into `file` (made anew), returning its sha256.
    pub async fn download(&self, rel: &str, file: &Path, what: &str) -> Result<String> {
        let got = match self.inner.get(&self.key(rel)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(anyhow!("`{rel}` is missing from `{}`", self.shown))
                    .hint("the store is incomplete: push the snapshot to it again")
            }
            Err(err) => return Err(self.explain(err)),
        };
        let mut progress = Progress::new(what, got.meta.size);
        let mut out = tokio::fs::File::create(file)
            .await
            .with_context(|| format!("cannot create `{}`", file.display()))?;
        let mut hasher = Sha256::new();
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|err| self.explain(err))?;
            hasher.update(&chunk);
            out.write_all(&chunk).await?;
            progress.advance(chunk.len() as u64);
        }
        out.flush().await?;
        progress.done();
        Ok(hex(&hasher.finalize()))
    }

    /// The store's error, with what to check.
    fn explain(&self, err: object_store::Error) -> anyhow::Error {
        let text = format!("{err}");
        let hint = if text.contains("NoSuchBucket") || text.contains("bucket does not exist") {
            "the bucket does not exist (or is named wrong): create it, or fix the store's URL"
        } else if text.contains("InvalidAccessKeyId")
            || text.contains("SignatureDoesNotMatch")
            || text.contains("AccessDenied")
            || text.contains("403")
        {
            "the store refused the credentials: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or ~/.aws/credentials and AWS_PROFILE)"
        } else if ["error sending request", "connect", "dns", "timed out"]
            .iter()
            .any(|s| text.contains(s))
        {
            "the store does not answer: check AWS_ENDPOINT_URL (or `[snapshots] endpoint`) and that the server runs"
        } else {
            "check the store's URL, endpoint and credentials"
        };
        anyhow!("snapshot store `{}`: {err}", self.shown)
            .context(crate::support::error::Hint(hint.to_owned()))
    }
}

async fn read_full(input: &mut tokio::fs::File, buffer: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        let read = input.read(&mut buffer[filled..]).await?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    Ok(filled)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// S3 as AWS tools find it: the `AWS_*` variables first, then the profile
/// (`AWS_PROFILE`, else `default`) in `~/.aws/credentials` and
/// `~/.aws/config`; path-style requests, which MinIO-like servers need and
/// AWS takes.
fn s3_builder(bucket: &str, endpoint: Option<&str>) -> Result<AmazonS3Builder> {
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
    let home = directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf());
    let files = home
        .map(|home| AwsFiles::read(&home, &profile))
        .unwrap_or_default();
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_virtual_hosted_style_request(false);
    if env("AWS_ACCESS_KEY_ID").is_none() {
        if let (Some(id), Some(secret)) = (
            files.get("aws_access_key_id"),
            files.get("aws_secret_access_key"),
        ) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
            if let Some(token) = files.get("aws_session_token") {
                builder = builder.with_token(token);
            }
        }
    }
    let region = env("AWS_REGION")
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .or_else(|| files.get("region").cloned())
        .unwrap_or_else(|| "us-east-1".to_owned());
    builder = builder.with_region(region);
    let endpoint = env("AWS_ENDPOINT_URL_S3")
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .or_else(|| endpoint.map(str::to_owned))
        .or_else(|| files.get("endpoint_url").cloned());
    if let Some(endpoint) = endpoint {
        builder = builder
            .with_allow_http(endpoint.starts_with("http://"))
            .with_endpoint(endpoint);
    }
    Ok(builder)
}

/// One profile's keys from `~/.aws/credentials` and `~/.aws/config` (the
/// credentials file wins).
#[derive(Debug, Default)]
struct AwsFiles(BTreeMap<String, String>);

impl AwsFiles {
    fn read(home: &Path, profile: &str) -> AwsFiles {
        let read =
            |name: &str| std::fs::read_to_string(home.join(".aws").join(name)).unwrap_or_default();
        let mut keys = ini_section(&read("config"), &config_section(profile));
        keys.extend(ini_section(&read("credentials"), profile));
        AwsFiles(keys)
    }

    fn get(&self, key: &str) -> Option<&String> {
        self.0.get(key)
    }
}

/// In `~/.aws/config` a profile's section is `[profile NAME]`, but `[default]`.
fn config_section(profile: &str) -> String {
    match profile {
        "default" => "default".to_owned(),
        name => format!("profile {name}"),
    }
}

/// The `key = value` lines of section `[name]` of an INI text.
fn ini_section(text: &str, name: &str) -> BTreeMap<String, String> {
    let mut keys = BTreeMap::new();
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.trim() == name;
            continue;
        }
        if let (true, Some((key, value))) = (inside, line.split_once('=')) {
            keys.insert(key.trim().to_owned(), value.trim().to_owned());
        }
    }
    keys
}

/// Progress of one transfer: on a terminal a bar, else a note when it
/// begins.
struct Progress {
    what: String,
    done: u64,
    bar: Option<crate::support::progress::ByteBar>,
}

impl Progress {
    fn new(what: &str, size: u64) -> Progress {
        use crate::support::progress;
        crate::support::output::note(format!("{what} ({})", crate::support::units::bytes(size)));
        Progress {
            what: what.to_owned(),
            done: 0,
            bar: progress::drawn().then(|| progress::ByteBar::new(what, size)),
        }
    }

    fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if let Some(bar) = &self.bar {
            bar.advance(bytes);
        }
    }

    fn done(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
        tracing::debug!("{}: {} bytes", self.what, self.done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_are_buckets_or_directories() {
        let cwd = Path::new("/w");
        assert_eq!(
            StoreUrl::parse("s3://team/snaps/", cwd).unwrap(),
            StoreUrl::S3 {
                bucket: "team".into(),
                prefix: "snaps".into()
            }
        );
        assert_eq!(
            StoreUrl::parse("s3://team", cwd).unwrap(),
            StoreUrl::S3 {
                bucket: "team".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            StoreUrl::parse("file:///srv/s", cwd).unwrap(),
            StoreUrl::Dir("/srv/s".into())
        );
        assert_eq!(
            StoreUrl::parse("out", cwd).unwrap(),
            StoreUrl::Dir("/w/out".into())
        );
        for bad in ["s3://", "s3:///x", "http://x/y", "", "s3://b/../c"] {
            assert!(StoreUrl::parse(bad, cwd).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_profile_is_read_from_both_aws_files() {
        let tmp = tempfile::tempdir().unwrap();
        let aws = tmp.path().join(".aws");
        std::fs::create_dir_all(&aws).unwrap();
        std::fs::write(
            aws.join("credentials"),
            "[default]\naws_access_key_id = A\n[work]\naws_access_key_id = W\naws_secret_access_key = S\n",
        )
        .unwrap();
        std::fs::write(
            aws.join("config"),
            "[default]\nregion = eu-west-1\n[profile work]\nregion = us-west-2\n",
        )
        .unwrap();
        let work = AwsFiles::read(tmp.path(), "work");
        assert_eq!(work.get("aws_access_key_id").unwrap(), "W");
        assert_eq!(work.get("region").unwrap(), "us-west-2");
        let default = AwsFiles::read(tmp.path(), "default");
        assert_eq!(default.get("region").unwrap(), "eu-west-1");
        assert!(default.get("aws_secret_access_key").is_none());
    }
}
