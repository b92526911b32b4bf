//! What apt-get, pip and image references accept, checked by hand so that
//! no value from the recipe can be read as an option or as syntax.

pub(super) fn has_control(text: &str) -> bool {
    text.chars().any(|c| c.is_control() && c != '\t')
}

/// `[registry/]name[:tag][@digest]`, in the characters references use: no
/// shell or Dockerfile syntax can hide in it.
pub(super) fn is_image_reference(text: &str) -> bool {
    !text.is_empty()
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@'))
}

/// Debian policy's package name (lowercase alphanumerics, `+`, `-`, `.`, two
/// characters at least, starting alphanumeric), with an optional `:arch`, then
/// `=version` or `/release` as apt-get accepts them.
pub(super) fn is_apt_package(text: &str) -> bool {
    let (name, rest) = split_at_any(text, &[':', '=', '/']);
    let name_ok = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
    let (arch, rest) = match rest.strip_prefix(':') {
        Some(after) => split_at_any(after, &['=', '/']),
        None => ("-", rest),
    };
    let arch_ok = !arch.is_empty()
        && arch
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let suffix_ok = match (rest.strip_prefix('='), rest.strip_prefix('/')) {
        (Some(version), _) => {
            !version.is_empty()
                && version.starts_with(|c: char| c.is_ascii_alphanumeric())
                && version
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | ':' | '-'))
        }
        (None, Some(release)) => {
            !release.is_empty()
                && release.starts_with(|c: char| c.is_ascii_alphanumeric())
                && release
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-'))
        }
        (None, None) => rest.is_empty(),
    };
    name_ok && arch_ok && suffix_ok
}

/// PEP 508's name, optional `[extras]` and version specifiers, without the
/// spaces, URLs and markers it also allows: enough for a recipe, and nothing
/// pip could read as an option.
pub(super) fn is_pip_requirement(text: &str) -> bool {
    let is_name = |s: &str| {
        !s.is_empty()
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    let (name, rest) = split_at_any(text, &['[', '<', '>', '=', '!', '~']);
    if !is_name(name) {
        return false;
    }
    let rest = match rest.strip_prefix('[') {
        Some(after) => {
            let Some((extras, rest)) = after.split_once(']') else {
                return false;
            };
            if !extras.split(',').all(is_name) {
                return false;
            }
            rest
        }
        None => rest,
    };
    rest.is_empty()
        || (rest.starts_with(['<', '>', '=', '!', '~'])
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "<>=!~,.*+_-".contains(c)))
}

fn split_at_any<'a>(text: &'a str, stops: &[char]) -> (&'a str, &'a str) {
    match text.find(stops) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_like_their_tools_do() {
        for good in [
            "jq",
            "g++",
            "libc6-dev",
            "python3.11",
            "jq=1.6-2.1",
            "jq/bookworm-backports",
            "libssl3:amd64",
        ] {
            assert!(is_apt_package(good), "{good}");
        }
        for bad in [
            "",
            "j",
            "-y",
            "--allow-unauthenticated",
            "Jq",
            "jq vim",
            "jq;rm",
            "$(x)",
            "jq=",
            "jq\n",
        ] {
            assert!(!is_apt_package(bad), "{bad}");
        }
        for good in [
            "six",
            "six==1.16.0",
            "Django>=4,<5",
            "requests[socks,security]~=2.31",
            "zope.interface",
            "a_b-c",
        ] {
            assert!(is_pip_requirement(good), "{good}");
        }
        for bad in [
            "",
            "-e",
            "--index-url=x",
            "six ==1",
            "six;python_version<'3'",
            "pkg @ https://x",
            "six==1 && rm",
            "x[",
            "`x`",
        ] {
            assert!(!is_pip_requirement(bad), "{bad}");
        }
        for good in [
            "ubuntu:22.04",
            "registry.local:5000/team/img:1",
            "img@sha256:abc",
        ] {
            assert!(is_image_reference(good), "{good}");
        }
        for bad in [
            "",
            " ubuntu",
            "-x",
            "ubuntu:22.04 AS x",
            "a\nRUN x",
            "$BASE",
        ] {
            assert!(!is_image_reference(bad), "{bad}");
        }
    }
}
