//! Which image an instance's container runs: the one answer, for `start`,
//! `status` and snapshots alike.

use super::Instance;
use crate::engine::auth::LoginRefused;
use crate::engine::build::BuildFailed;
use crate::engine::Engine;
use crate::recipe::image::{BuildContext, HostCa};
use crate::recipe::settings::Settings;
use crate::support::error::Hint;
use crate::support::output;
use anyhow::{Context, Result};
use std::path::Path;

/// The image an instance's container should run.
pub enum ImageChoice {
    /// The snapshot last restored (`devinst snapshot restore`).
    Snapshot(String),
    /// Built from `[container.build]`; its tag hashes the recipe and files.
    Built(BuildContext),
    /// `[container] image`, pulled when missing.
    Pulled(String),
}

impl ImageChoice {
    /// A restored snapshot's image, else the one built from
    /// `[container.build]`, else `[container] image`.
    pub fn of(instance: &Instance) -> Result<ImageChoice> {
        if let Some(snapshot) = instance.layout.active_snapshot() {
            let image = super::snapshot::image_ref(&instance.record.name, &snapshot);
            return Ok(ImageChoice::Snapshot(image));
        }
        Ok(
            match build_context(&instance.settings, &instance.layout.root)? {
                Some(context) => ImageChoice::Built(context),
                None => ImageChoice::Pulled(instance.settings.image.clone()),
            },
        )
    }

    /// The image of a cluster's node `rank` when it is not the head's: a
    /// restored snapshot's own image of that node, when the snapshot has one.
    pub async fn for_node(
        &self,
        engine: &Engine,
        instance: &Instance,
        rank: u16,
    ) -> Result<Option<ImageChoice>> {
        let (ImageChoice::Snapshot(_), Some(snapshot)) = (self, instance.layout.active_snapshot())
        else {
            return Ok(None);
        };
        let image = super::snapshot::node_image_ref(&instance.record.name, &snapshot, rank);
        Ok(engine
            .image_exists(&image)
            .await?
            .then_some(ImageChoice::Snapshot(image)))
    }

    pub fn reference(&self) -> &str {
        match self {
            ImageChoice::Snapshot(image) | ImageChoice::Pulled(image) => image,
            ImageChoice::Built(build) => &build.tag,
        }
    }

    /// Makes the image present: built or pulled when missing. A snapshot's
    /// image is never pulled: it exists only here.
    pub async fn ensure_present(&self, engine: &Engine) -> Result<()> {
        match self {
            ImageChoice::Built(build) => ensure_built(engine, build).await.map(drop),
            ImageChoice::Pulled(image) | ImageChoice::Snapshot(image) => {
                engine.ensure_image(image).await.map_err(|err| {
                    // A refused login carries its own hint: `docker login`.
                    if err.downcast_ref::<LoginRefused>().is_some() {
                        return err;
                    }
                    err.context(Hint(format!(
                        "make the image available locally (`docker pull {image}`, `docker build -t {image} .`), \
                         or set `[container] image` in devinst.toml"
                    )))
                })
            }
        }
    }
}

/// The build context of the worktree's `[container.build]`, if it has one:
/// its files read and, under `host_ca`, the host's CA bundle for the steps
/// that fetch.
pub fn build_context(settings: &Settings, root: &Path) -> Result<Option<BuildContext>> {
    let Some(recipe) = &settings.build else {
        return Ok(None);
    };
    let wants_ca = settings.host_ca && recipe.fetches();
    let bundle = match wants_ca {
        true => super::host::read_host_ca()?,
        false => None,
    };
    let certificates = bundle.as_ref().map(|b| b.certificates.as_slice());
    let mut context = BuildContext::collect(recipe, root, certificates).with_context(|| {
        format!(
            "invalid `{}`",
            root.join(crate::recipe::config::FILE_NAME).display()
        )
    })?;
    if wants_ca && bundle.is_none() {
        context.host_ca = HostCa::NotFound;
    }
    Ok(Some(context))
}

/// Builds the recipe's image unless its tag exists; whether it built.
pub async fn ensure_built(engine: &Engine, build: &BuildContext) -> Result<bool> {
    let tag = &build.tag;
    if engine.image_exists(tag).await? {
        return Ok(false);
    }
    output::note(format!("building image `{tag}` from `[container.build]`"));
    match build.host_ca {
        HostCa::Used => output::note(
            "the steps that fetch (apt, pip) trust the host's CA bundle (`host_ca`); no layer keeps a copy",
        ),
        HostCa::NotFound => output::warn(
            "`host_ca` is on but no CA bundle was found on the host: the build's steps trust only the image's own",
        ),
        HostCa::Off => {}
    }
    let started = std::time::Instant::now();
    let labels = [(
        super::spec::LABEL_MANAGED_BY.to_owned(),
        "devinst".to_owned(),
    )];
    if let Err(err) = engine
        .build(tag, &labels, build.archive()?, &build.base)
        .await
    {
        if err.downcast_ref::<LoginRefused>().is_some() {
            return Err(err);
        }
        let hint = build_hint(&err, build.host_ca);
        return Err(err.context(Hint(hint)));
    }
    output::note(format!(
        "built image `{tag}` in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(true)
}

/// What to try after a failed build: a failure to verify TLS points at
/// `host_ca`, anything else at the recipe.
fn build_hint(err: &anyhow::Error, host_ca: HostCa) -> String {
    let tls = err
        .downcast_ref::<BuildFailed>()
        .is_some_and(|failed| shows_tls_failure(&failed.output));
    if !tls {
        return "fix `[container.build]` in devinst.toml (a package name or version?) \
                and run the command again; the build's output says what failed"
            .to_owned();
    }
    let what = "the build could not verify a server's TLS certificate";
    match host_ca {
        HostCa::Off => format!(
            "{what}: HTTPS from here seems to pass through a proxy that re-signs it with a CA \
             only the host trusts. Set `host_ca = true` under `[container]` in devinst.toml: \
             the build's steps then trust the host's CA bundle (and the instance mounts it)"
        ),
        HostCa::NotFound => format!(
            "{what}, and `host_ca` found no CA bundle on the host (it looks at {}): \
             put the host's bundle there, with the proxy's CA in it",
            super::host::CA_BUNDLE_PATHS.join(", ")
        ),
        HostCa::Used => format!(
            "{what}, even with the host's CA bundle (`host_ca`): does the host itself trust \
             the server? (`curl -sSI https://pypi.org` on the host)"
        ),
    }
}

/// Whether a step's output says a TLS certificate could not be verified:
/// Python and pip (pip's "from versions: none" comes after SSL errors),
/// OpenSSL, curl, wget, apt (GnuTLS), git, Node and Go.
fn shows_tls_failure(output: &[String]) -> bool {
    const SIGNS: [&str; 12] = [
        "certificate_verify_failed",
        "certificate verify failed",
        "ssl certificate problem",
        "certificate verification failed",
        "unable to get local issuer certificate",
        "self signed certificate in certificate chain",
        "self-signed certificate in certificate chain",
        "unable to locally verify the issuer's authority",
        "self_signed_cert_in_chain",
        "unable_to_get_issuer_cert_locally",
        "certificate signed by unknown authority",
        "the certificate is not trusted",
    ];
    let lower: Vec<String> = output.iter().map(|l| l.to_lowercase()).collect();
    let says = |needle: &str| lower.iter().any(|l| l.contains(needle));
    SIGNS.iter().any(|sign| says(sign))
        || (says("(from versions: none)") && (says("sslerror") || says("ssl certificate")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    /// pip 23 in Debian 12 behind a proxy whose CA the image lacks, verbatim
    /// but for the retries.
    const PIP: &str = "\
WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) after connection broken by 'SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate in certificate chain (_ssl.c:992)'))': /simple/six/
Could not fetch URL https://pypi.org/simple/six/: There was a problem confirming the ssl certificate: HTTPSConnectionPool(host='pypi.org', port=443): Max retries exceeded with url: /simple/six/ (Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate in certificate chain (_ssl.c:992)'))) - skipping
ERROR: Could not find a version that satisfies the requirement six==1.16.0 (from versions: none)
ERROR: No matching distribution found for six==1.16.0";

    #[test]
    fn tls_failures_are_told_from_other_failures() {
        assert!(shows_tls_failure(&lines(PIP)));
        // pip that words it without the OpenSSL code.
        assert!(shows_tls_failure(&lines(
            "Could not fetch URL https://pypi.org/simple/six/: There was a problem confirming the ssl certificate: - skipping\n\
             ERROR: Could not find a version that satisfies the requirement six (from versions: none)"
        )));
        for line in [
            // apt (GnuTLS)
            "Err:1 https://deb.example bookworm InRelease\n  Certificate verification failed: The certificate is NOT trusted. The certificate issuer is unknown.",
            // curl
            "curl: (60) SSL certificate problem: unable to get local issuer certificate",
            // wget
            "ERROR: cannot verify pypi.org's certificate, issued by 'CN=Proxy CA': Unable to locally verify the issuer's authority.",
            // git
            "fatal: unable to access 'https://github.com/x/y/': server certificate verification failed. CAfile: none CRLfile: none",
            // npm
            "npm ERR! code SELF_SIGNED_CERT_IN_CHAIN",
            // Go
            "x509: certificate signed by unknown authority",
        ] {
            assert!(shows_tls_failure(&lines(line)), "{line}");
        }
        // A missing package is not a TLS failure, with or without "from versions: none".
        assert!(!shows_tls_failure(&lines(
            "ERROR: Could not find a version that satisfies the requirement nope==9 (from versions: 1.0, 2.0)\n\
             ERROR: No matching distribution found for nope==9"
        )));
        assert!(!shows_tls_failure(&lines(
            "ERROR: Could not find a version that satisfies the requirement devinst-nope (from versions: none)"
        )));
        assert!(!shows_tls_failure(&lines(
            "E: Unable to locate package devinst-no-such-package"
        )));
    }

    #[test]
    fn the_hint_follows_the_failure_and_host_ca() {
        let failed = |output: &str| -> anyhow::Error {
            anyhow::Error::new(BuildFailed {
                message: "building image `x` failed".into(),
                output: lines(output),
            })
            .context("while starting")
        };
        let tls = failed(PIP);
        assert!(build_hint(&tls, HostCa::Off).contains("Set `host_ca = true` under `[container]`"));
        assert!(!build_hint(&tls, HostCa::Off).contains("package name"));
        assert!(build_hint(&tls, HostCa::Used).contains("even with the host's CA bundle"));
        assert!(build_hint(&tls, HostCa::NotFound).contains("found no CA bundle on the host"));
        let other = failed("E: Unable to locate package nope");
        for host_ca in [HostCa::Off, HostCa::Used, HostCa::NotFound] {
            assert!(build_hint(&other, host_ca).contains("a package name or version?"));
        }
        let refused = anyhow::anyhow!("the engine answered 500: no space left on device");
        assert!(build_hint(&refused, HostCa::Off).contains("a package name or version?"));
    }
}
