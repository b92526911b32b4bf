//! The exec socket: `DIR/sock`, made for the directory's owner alone.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// The socket's name in its directory.
pub const SOCKET_NAME: &str = "sock";
/// The longest path a unix socket address holds, with its final NUL.
const SUN_PATH_MAX: usize = 108;

/// Serves execs on `dir/sock` for as long as the agent runs. A socket left
/// by an earlier run is replaced. Without one, commands go through the
/// engine, so a failure here is said once and is not fatal.
pub fn listen(dir: &Path, container: &str) {
    let listener = match bind(dir) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!(
                "devinst-agent: no exec socket in `{}` ({err}); commands go through the engine",
                dir.display()
            );
            return;
        }
    };
    for stream in listener.incoming().flatten() {
        let container = container.to_owned();
        std::thread::spawn(move || crate::exec::serve(stream, &container));
    }
}

fn bind(dir: &Path) -> std::io::Result<UnixListener> {
    let owner = std::fs::metadata(dir)?;
    let path = dir.join(SOCKET_NAME);
    let address = short_address(&path);
    match std::fs::remove_file(&address) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let listener = UnixListener::bind(&address)?;
    // Usable by the directory's owner (the worktree's) and no one else. A
    // non-root agent cannot give it away: then it is its own, which is the
    // owner when the container runs as them.
    let _ = std::os::unix::fs::chown(&address, Some(owner.uid()), Some(owner.gid()));
    std::fs::set_permissions(&address, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// `path`, or when it is too long for a socket address, the same file
/// reached through a descriptor of its directory (kept open for the
/// agent's life).
fn short_address(path: &Path) -> PathBuf {
    if path.as_os_str().len() < SUN_PATH_MAX {
        return path.to_owned();
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    match std::fs::File::open(dir) {
        Ok(file) => {
            let fd = std::os::fd::IntoRawFd::into_raw_fd(file);
            PathBuf::from(format!("/proc/self/fd/{fd}/{SOCKET_NAME}"))
        }
        Err(_) => path.to_owned(),
    }
}
