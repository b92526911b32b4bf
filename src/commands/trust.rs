//! `devinst trust`: agree to what this worktree's devinst.toml asks for
//! beyond the defaults, as it is now. Works without a terminal (CI).

use super::Invocation;
use crate::instance::consent;
use crate::recipe::config::FILE_NAME;
use crate::recipe::settings::Settings;
use crate::state::worktree::Worktree;
use crate::support::output;
use anyhow::Result;

pub fn run(ctx: &Invocation) -> Result<i32> {
    let root = Worktree::discover(&ctx.cwd)?.root;
    let settings = Settings::load(&root)?;
    let recipe = root.join(FILE_NAME);
    let asks = consent::asks_here(&settings, &ctx.engine_choice(Some(&settings)), true);
    if asks.is_empty() {
        output::note(format!(
            "nothing to trust: `{}` asks for nothing beyond the defaults",
            recipe.display()
        ));
        return Ok(0);
    }
    for ask in &asks {
        output::data(ask);
    }
    let file = consent::record(&root, &asks)?;
    output::note(format!(
        "trusted `{}` as it is now (recorded in `{}`); a change to these keys asks again",
        recipe.display(),
        file.display()
    ));
    Ok(0)
}
