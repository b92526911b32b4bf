//! `devinst build`: build the image `[container.build]` describes now, or say
//! it is built already. Needs no instance, so CI can warm the cache first.

use super::Invocation;
use crate::engine::Engine;
use crate::instance::consent;
use crate::instance::image::build_context;
use crate::recipe::settings::Settings;
use crate::state::worktree::Worktree;
use crate::support::output;
use anyhow::Result;

pub async fn run(ctx: &Invocation) -> Result<i32> {
    let root = Worktree::discover(&ctx.cwd)?.root;
    let settings = Settings::load(&root)?;
    let choice = ctx.engine_choice(Some(&settings));
    consent::require(&root, &settings, &choice)?;
    let Some(context) = build_context(&settings, &root)? else {
        output::note(format!(
            "nothing to build: devinst.toml has no `[container.build]` (the instance runs `{}`)",
            settings.image
        ));
        return Ok(0);
    };
    let engine = Engine::connect(&choice).await?;
    if !crate::instance::image::ensure_built(&engine, &context).await? {
        output::note(format!("image `{}` is built already (cached)", context.tag));
    }
    output::data(&context.tag);
    Ok(0)
}
