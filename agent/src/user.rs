//! The user an exec asks for, resolved as the engine would: a name or uid,
//! optionally `:group` or `:gid`, looked up in the image's /etc/passwd and
//! /etc/group (no NSS: the agent is static).

/// `(uid, gid)` for `spec`, or `None` when a name is unknown.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Option<(u32, u32)> {
    let (user, group_part) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let entry = passwd_entry(passwd, user);
    let uid = match user.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => entry?.0,
    };
    let gid = match group_part {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_gid(group, g)?,
        },
        // A uid with no passwd entry runs with gid 0, as runc does.
        None => entry.map_or(0, |e| e.1),
    };
    Some((uid, gid))
}

/// The uid and gid of `user` (a name or a uid) in passwd.
fn passwd_entry(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 4 {
            return None;
        }
        let (uid, gid) = (fields[2].parse().ok()?, fields[3].parse().ok()?);
        (fields[0] == user || fields[2] == user).then_some((uid, gid))
    })
}

fn group_gid(group: &str, name: &str) -> Option<u32> {
    group.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 3 && fields[0] == name)
            .then(|| fields[2].parse().ok())
            .flatten()
    })
}

/// Resolves `spec` against the container's own files.
pub fn resolve_here(spec: &str) -> Option<(u32, u32)> {
    let read = |path| std::fs::read_to_string(path).unwrap_or_default();
    resolve(spec, &read("/etc/passwd"), &read("/etc/group"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app\n";

    #[test]
    fn names_and_numbers_resolve_like_the_engine() {
        assert_eq!(resolve("root", PASSWD, GROUP), Some((0, 0)));
        assert_eq!(resolve("app", PASSWD, GROUP), Some((1000, 1001)));
        assert_eq!(resolve("1000", PASSWD, GROUP), Some((1000, 1001)));
        assert_eq!(resolve("1234", PASSWD, GROUP), Some((1234, 0)));
        assert_eq!(resolve("1234:5678", PASSWD, GROUP), Some((1234, 5678)));
        assert_eq!(resolve("app:staff", PASSWD, GROUP), Some((1000, 50)));
        assert_eq!(resolve("nobody", PASSWD, GROUP), None);
        assert_eq!(resolve("app:nogroup", PASSWD, GROUP), None);
    }
}
