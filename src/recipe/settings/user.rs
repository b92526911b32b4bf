//! `[container] user`: who commands in the container run as.

/// HOME inside the container when commands run as the worktree's owner
/// (`user = "host"`): `/root` is neither theirs nor writable to them.
pub const HOST_USER_HOME: &str = "/home/devinst";

/// Who commands in the container run as.
#[derive(Debug, Clone, PartialEq)]
pub enum User {
    /// The image's own user: root in the seed's image, the default.
    Image,
    /// `user = "host"`: the worktree owner's uid:gid, so files made inside
    /// belong to them on the host.
    Host,
    /// A user as the engine takes it: `name`, `uid` or `uid:gid`.
    Named(String),
}

impl User {
    pub(super) fn parse(text: Option<String>) -> User {
        match text {
            None => User::Image,
            Some(text) if text == "host" => User::Host,
            Some(text) => User::Named(text),
        }
    }

    /// The user an exec asks for. `Host` asks for none: the exec then runs as
    /// the container's own user, which `start` resolved from the worktree's
    /// owner (and the engine's user mapping) when it created the container.
    pub fn for_exec(&self) -> Option<String> {
        match self {
            User::Named(name) => Some(name.clone()),
            User::Image | User::Host => None,
        }
    }

    /// The HOME the default state, logs and credential mounts go under:
    /// running as the host's user, one that user can write.
    pub(super) fn default_home(&self) -> &'static str {
        match self {
            User::Host => HOST_USER_HOME,
            User::Image | User::Named(_) => "/root",
        }
    }
}
