//! `[container] user`: who commands in the container run as.

/// HOME inside the container when commands run as the worktree's owner
/// (`user = "host"`, or a worktree root does not own): `/root` is neither
/// theirs nor writable to them.
pub const HOST_USER_HOME: &str = "/home/devinst";

/// Who commands in the container run as.
#[derive(Debug, Clone, PartialEq)]
pub enum User {
    /// The image's own user: root in the seed's image, the default for a
    /// worktree root owns.
    Image,
    /// `user = "host"`: the worktree owner's uid:gid, so files made inside
    /// belong to them on the host.
    Host,
    /// The default for a worktree someone other than root owns: commands run
    /// as that owner, as with `Host`, while the setup steps run as root (they
    /// may install packages) and what they made is handed to the owner after.
    Owner,
    /// A user as the engine takes it: `name`, `uid` or `uid:gid`.
    Named(String),
}

impl User {
    /// The recipe's `user`; when it names none, the image's user unless the
    /// worktree belongs to someone other than root.
    pub(super) fn parse(text: Option<String>, owned_by_root: bool) -> User {
        match text {
            None if owned_by_root => User::Image,
            None => User::Owner,
            Some(text) if text == "host" => User::Host,
            Some(text) => User::Named(text),
        }
    }

    /// The user an exec asks for. `Host` and `Owner` ask for none: the exec
    /// then runs as the container's own user, which `start` resolved from the
    /// worktree's owner (and the engine's user mapping) when it created the
    /// container.
    pub fn for_exec(&self) -> Option<String> {
        match self {
            User::Named(name) => Some(name.clone()),
            User::Image | User::Host | User::Owner => None,
        }
    }

    /// The user the setup steps run as: root for `Owner`, else as an exec.
    pub fn for_setup(&self) -> Option<String> {
        match self {
            User::Owner => Some("0:0".to_owned()),
            other => other.for_exec(),
        }
    }

    /// Whether the container runs as the worktree's owner.
    pub fn is_owner(&self) -> bool {
        matches!(self, User::Host | User::Owner)
    }

    /// The HOME the default state, logs and credential mounts go under:
    /// running as the host's user, one that user can write.
    pub(super) fn default_home(&self) -> &'static str {
        if self.is_owner() {
            HOST_USER_HOME
        } else {
            "/root"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worktree_root_does_not_own_runs_as_its_owner_and_sets_up_as_root() {
        assert_eq!(User::parse(None, true), User::Image);
        let owner = User::parse(None, false);
        assert_eq!(owner, User::Owner);
        assert_eq!(owner.for_exec(), None, "the container's own user");
        assert_eq!(owner.for_setup().as_deref(), Some("0:0"));
        assert_eq!(owner.default_home(), HOST_USER_HOME);
        // What the recipe names wins, whoever owns the worktree.
        assert_eq!(User::parse(Some("host".into()), false), User::Host);
        assert_eq!(User::Host.for_setup(), None);
        let root = User::parse(Some("root".into()), false);
        assert_eq!(root.for_setup().as_deref(), Some("root"));
        assert_eq!(root.default_home(), "/root");
    }
}
