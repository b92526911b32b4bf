//! `[ports.extra]`: named ports inside the container, each published on a
//! host port of its own beside the instance's main one.

use anyhow::{bail, Result};
use std::collections::BTreeMap;

/// A port name becomes part of an environment variable name
/// (`DEVINST_PORT_<NAME>`) and of `.instance`, so it stays short.
pub const MAX_PORT_NAME: usize = 20;
/// More would mostly exhaust the host range for everyone else.
pub const MAX_EXTRA_PORTS: usize = 16;

/// `DEVINST_PORT_<NAME>`: the variable holding a named port's host port.
/// Names have no `_`, so the mapping is one to one.
pub fn port_env_name(name: &str) -> String {
    format!(
        "DEVINST_PORT_{}",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// The name a [`port_env_name`] came from; `None` for other variables.
pub fn port_name_of_env(key: &str) -> Option<String> {
    let stem = key.strip_prefix("DEVINST_PORT_")?;
    let name = stem.to_ascii_lowercase().replace('_', "-");
    validate_port_name(&name).ok().map(|()| name)
}

/// Checks `[ports.extra]`: valid names, ports inside that are neither the
/// main one nor named twice.
pub(super) fn validate_extra_ports(extra: &BTreeMap<String, u16>, main: u16) -> Result<()> {
    if extra.len() > MAX_EXTRA_PORTS {
        bail!(
            "`[ports.extra]` names {} ports; at most {MAX_EXTRA_PORTS}",
            extra.len()
        );
    }
    let mut seen: BTreeMap<u16, &str> = BTreeMap::new();
    for (name, &port) in extra {
        validate_port_name(name)?;
        if port == 0 {
            bail!("`[ports.extra] {name}` must be a port from 1 to 65535, not 0");
        }
        if port == main {
            bail!(
                "`[ports.extra] {name}` is {port}, the instance's own port (`[ports] container`)"
            );
        }
        if let Some(other) = seen.insert(port, name) {
            bail!("`[ports.extra]` names port {port} twice: `{other}` and `{name}`");
        }
    }
    Ok(())
}

fn validate_port_name(name: &str) -> Result<()> {
    let ok = name.len() <= MAX_PORT_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!(
            "`[ports.extra] {name}`: a port name is lowercase letters, digits and single `-`, \
             at most {MAX_PORT_NAME} characters, starting with a letter"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extra(pairs: &[(&str, u16)]) -> BTreeMap<String, u16> {
        pairs.iter().map(|(n, p)| (n.to_string(), *p)).collect()
    }

    #[test]
    fn names_map_to_variables_and_back() {
        assert_eq!(port_env_name("web"), "DEVINST_PORT_WEB");
        assert_eq!(port_env_name("code-server"), "DEVINST_PORT_CODE_SERVER");
        assert_eq!(
            port_name_of_env("DEVINST_PORT_CODE_SERVER").as_deref(),
            Some("code-server")
        );
        assert_eq!(port_name_of_env("DEVINST_PORT"), None);
        assert_eq!(port_name_of_env("DEVINST_PORT_"), None);
        assert_eq!(port_name_of_env("DEVINST_PORT__X"), None);
        assert_eq!(port_name_of_env("DEVINST_NAME"), None);
    }

    #[test]
    fn extra_ports_are_checked() {
        validate_extra_ports(&extra(&[("web", 3000), ("debug", 5678)]), 46580).unwrap();
        let err = |pairs: &[(&str, u16)]| {
            validate_extra_ports(&extra(pairs), 46580)
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[("Web", 3000)]).contains("lowercase"));
        assert!(err(&[("web_ui", 3000)]).contains("lowercase"));
        assert!(err(&[("a--b", 3000)]).contains("single `-`"));
        assert!(err(&[("1web", 3000)]).contains("starting with a letter"));
        assert!(err(&[("web", 0)]).contains("not 0"));
        assert!(err(&[("web", 46580)]).contains("the instance's own port"));
        assert!(err(&[("a", 3000), ("b", 3000)]).contains("names port 3000 twice"));
        let many: Vec<(String, u16)> = (0..17).map(|i| (format!("p{i}"), 3000 + i)).collect();
        let many = many
            .iter()
            .map(|(n, p)| (n.as_str(), *p))
            .collect::<Vec<_>>();
        assert!(err(&many).contains("at most 16"));
    }
}
