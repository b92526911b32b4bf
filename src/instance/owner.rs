//! A worktree someone other than root owns, left to the container's default
//! user ([`User::Owner`]): commands run as the owner, but the setup steps run
//! as root (they may install packages), so what they made in the worktree is
//! handed to the owner afterwards, for them to change and delete.

use super::Instance;
use crate::engine::exec::{ExecSpec, Output};
use crate::engine::Engine;
use crate::recipe::settings::User;
use crate::state::layout::path_text;
use crate::state::worktree::outside_common_dir;
use crate::support::output;

/// Gives the worktree's owner (as the container sees them: the owner of its
/// root) every file root owns under the given directories, staying on their
/// file systems. Run as root, with the directories as arguments.
const HAND_BACK: &str = r#"owner=$(stat -c %u:%g "$1") || exit 1
[ "$owner" = 0:0 ] && exit 0
exec find "$@" -xdev -user 0 -exec chown -h "$owner" {} +"#;

/// After the setup steps, for [`User::Owner`]: what they made in the
/// worktree (and in a linked worktree's common git directory) becomes the
/// owner's. A failure is a warning: the steps themselves did their work.
pub async fn hand_back(engine: &Engine, instance: &Instance) {
    let s = &instance.settings;
    if s.user != User::Owner {
        return;
    }
    let mut argv: Vec<String> = ["sh", "-c", HAND_BACK, "sh", s.workdir.as_str()]
        .map(String::from)
        .to_vec();
    if let Ok(Some(common)) = outside_common_dir(&instance.layout.root) {
        argv.push(path_text(&common));
    }
    let spec = ExecSpec {
        argv,
        workdir: Some(s.workdir.clone()),
        user: s.user.for_setup(),
        ..Default::default()
    };
    let why = match engine
        .exec_simple(&instance.record.container, &spec, Output::Stderr)
        .await
    {
        Ok(0) => return,
        Ok(code) => format!("exit code {code}"),
        Err(err) => format!("{err:#}"),
    };
    output::warn(format!(
        "what the setup steps made in the worktree could not be handed to its owner ({why}); \
         files there may still belong to root (handing them over takes `sh`, `stat`, `find` and `chown` in the image)"
    ));
}
