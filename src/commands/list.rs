//! `devinst list`: every instance on this host, from the registry and from the
//! engine's labels (so containers whose worktree is gone show up too).

use super::Invocation;
use crate::cli::JsonArgs;
use crate::engine::Engine;
use crate::support::output;
use crate::support::table::Table;
use anyhow::Result;

pub async fn run(ctx: &Invocation, args: JsonArgs) -> Result<i32> {
    let engine = Engine::connect(&ctx.engine_choice(None)).await;
    if let Err(err) = &engine {
        // The first layer of the chain is the hint; the root says what failed.
        output::warn(format!("container states unknown: {}", err.root_cause()));
    }
    let views = crate::instance::view::list(engine.ok().as_ref()).await?;
    if args.json {
        output::json(&views);
        return Ok(0);
    }
    let mut table = Table::new(["NAME", "STATE", "PORT", "CONTAINER", "WORKTREE"]);
    for v in &views {
        let gone = if v.worktree_exists { "" } else { " (gone)" };
        table.row([
            v.name.clone(),
            v.state.clone(),
            port_text(v.port, &v.extra_ports),
            v.container.clone(),
            format!("{}{gone}", v.worktree),
        ]);
    }
    output::data(table);
    Ok(0)
}

/// The instance's port, then each named one as `name=port`.
fn port_text(port: u16, extra: &std::collections::BTreeMap<String, u16>) -> String {
    let main = match port {
        0 => "-".to_owned(),
        port => port.to_string(),
    };
    let named = extra.iter().map(|(name, port)| format!(" {name}={port}"));
    std::iter::once(main).chain(named).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_ports_follow_the_instances_own() {
        let extra = [("debug".to_owned(), 46503), ("web".to_owned(), 46502)].into();
        assert_eq!(port_text(46501, &extra), "46501 debug=46503 web=46502");
        assert_eq!(port_text(0, &Default::default()), "-");
    }
}
