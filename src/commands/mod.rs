//! One module per subcommand; this one dispatches and holds what they share.

mod build;
mod completions;
mod destroy;
mod doctor;
mod exec;
mod gc;
mod list;
mod logs;
mod serve;
mod setup;
mod snapshot;
mod start;
mod stats;
mod status;
mod stop;
mod trust;

use crate::cli::Command;
use crate::engine;
use crate::recipe::settings::Settings;
use anyhow::Result;
use std::future::Future;
use std::path::PathBuf;

/// What every command gets: where it runs, and the engine it was told to use.
pub struct Invocation {
    pub cwd: PathBuf,
    /// `--host`.
    pub host: Option<String>,
}

impl Invocation {
    /// The engines named: `--host`, the user's config, the recipe's
    /// `[engine] host` (see `engine::discover` for the whole order).
    pub fn engine_choice(&self, settings: Option<&Settings>) -> engine::Choice {
        crate::instance::engine_choice(self.host.clone(), settings)
    }
}

pub fn dispatch(command: Command, ctx: &Invocation) -> Result<i32> {
    match command {
        Command::Setup(args) => setup::run(ctx, args),
        Command::Start(args) => block_on(start::run(ctx, args)),
        Command::Build => block_on(build::run(ctx)),
        Command::Stop => block_on(stop::run(ctx)),
        Command::Exec(args) => exec::exec(ctx, args),
        Command::Shell(args) => exec::shell(ctx, args),
        Command::Status(args) => block_on(status::run(ctx, args)),
        Command::List(args) => block_on(list::run(ctx, args)),
        Command::Destroy(args) => block_on(destroy::run(ctx, args)),
        Command::Snapshot(action) => block_on(snapshot::run(ctx, action)),
        Command::Logs(args) => block_on(logs::run(ctx, args)),
        Command::Stats(args) => block_on(stats::run(ctx, args)),
        Command::Gc(args) => block_on(gc::run(ctx, args)),
        Command::Doctor => block_on(doctor::run(ctx)),
        Command::Trust => trust::run(ctx),
        Command::Completions(args) => completions::run(args),
        Command::Serve(args) => serve::run(ctx, args),
    }
}

/// A single-threaded runtime: each command talks to one engine over one
/// socket, and a shim's start-up must stay light.
pub fn block_on<T, F: Future<Output = Result<T>>>(future: F) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(future);
    // Don't wait for a stdin reader blocked on a terminal.
    runtime.shutdown_background();
    result
}
