//! Every clap type: global flags and one `Args` struct per command.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "devinst",
    version,
    about = "Give every git worktree its own isolated Docker dev instance",
    propagate_version = true
)]
pub struct Cli {
    /// Run as if devinst was started in DIR.
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// More detail on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// The engine to use, as in DOCKER_HOST (`unix:///...`, `tcp://...`);
    /// wins over DOCKER_HOST, `[engine] host` and the docker context.
    #[arg(long, global = true, value_name = "URI")]
    pub host: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or refresh this worktree's instance (keeps its port and state).
    Setup(SetupArgs),
    /// Create the container if missing, start it, run the setup steps.
    Start(StartArgs),
    /// Build the image `[container.build]` describes, or say it is cached.
    Build,
    /// Stop the container; keep everything.
    Stop,
    /// Run a command inside the instance.
    Exec(ExecArgs),
    /// Open an interactive shell inside the instance.
    Shell(ShellArgs),
    /// Show this worktree's instance.
    Status(JsonArgs),
    /// Show every instance on this host.
    List(JsonArgs),
    /// Remove the container and release the port.
    Destroy(DestroyArgs),
    /// Save the instance (its container's filesystem, state and logs) and
    /// restore it later.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Show the container's output.
    Logs(LogsArgs),
    /// Show the container's cpu and memory use.
    Stats(JsonArgs),
    /// Remove instances whose worktree is gone and containers no instance owns.
    Gc(GcArgs),
    /// Check the engine, runtimes, ports, registry and credentials.
    Doctor,
    /// Agree to what this worktree's devinst.toml asks beyond the defaults
    /// (credentials, engine, network, bind, variables, shims), as it is now.
    Trust,
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Serve the HTTP API and the dashboard (on 127.0.0.1 by default).
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address and port to listen on; a port of 0 picks a free one.
    /// Another address than loopback is reachable by others: only with care.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:46500")]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The instance name (default: the worktree directory's name).
    pub name: Option<String>,
    /// A resource tier from `[tiers.NAME]` in devinst.toml (kept on re-runs).
    #[arg(long, value_name = "NAME")]
    pub tier: Option<String>,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Replace the container (state, logs and venv are kept).
    #[arg(long)]
    pub recreate: bool,
    /// Run the setup steps here even when a sibling instance of the same
    /// repository finished the same ones (never start warm).
    #[arg(long)]
    pub cold: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The worktree whose instance runs the command (default: the one
    /// containing the current directory). Shims pass it.
    #[arg(long, value_name = "DIR")]
    pub worktree: Option<PathBuf>,

    /// Run on node K of a `[cluster]` (0, the head, by default).
    #[arg(long, value_name = "K")]
    pub node: Option<u16>,

    /// Run on every node of a `[cluster]` at once, each output line behind
    /// its node; exits 0 only when every node did.
    #[arg(long, conflicts_with = "node")]
    pub all: bool,

    /// The command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ShellArgs {
    #[arg(long, value_name = "DIR", hide = true)]
    pub worktree: Option<PathBuf>,

    /// Open the shell on node K of a `[cluster]` (0, the head, by default).
    #[arg(long, value_name = "K")]
    pub node: Option<u16>,
}

#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// The instance to destroy, by its name in this host's registry (works
    /// from anywhere, also when its worktree is gone); default: this
    /// worktree's.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// The same as NAME.
    #[arg(long = "name", value_name = "NAME", conflicts_with = "name")]
    pub name_flag: Option<String>,
    /// Also remove `.sky-dev/` (state, logs, venv, scripts), the services'
    /// data directories and volumes.
    #[arg(long)]
    pub purge: bool,
    /// Do not ask before deleting data (needed for `--purge` without a
    /// terminal).
    #[arg(short, long)]
    pub yes: bool,
}

impl DestroyArgs {
    /// The instance named on the command line, if any.
    pub fn target(&self) -> Option<&str> {
        self.name.as_deref().or(self.name_flag.as_deref())
    }
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the container stops (or Ctrl-C).
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
    /// The logs of node K of a `[cluster]` (0, the head, by default).
    #[arg(long, value_name = "K")]
    pub node: Option<u16>,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Print what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Judge every devinst container on the engine, not only those this
    /// data directory made (what cannot be proven gone is still kept).
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save the container's filesystem, `state/` and `sky_logs/` as NAME.
    Save {
        /// The snapshot's name (default: the current UTC time).
        name: Option<String>,
    },
    /// List this instance's snapshots.
    List(JsonArgs),
    /// Put the instance back as it was at NAME (the worktree's code is not
    /// touched: git keeps that).
    Restore { name: String },
    /// Go back to the recipe's image, keeping the current state and logs.
    Reset,
    /// Delete snapshot NAME.
    Rm { name: String },
    /// Copy snapshot NAME to a store: `s3://BUCKET/PREFIX` or a directory
    /// (default: `[snapshots] store`).
    Push {
        name: String,
        #[arg(long, value_name = "STORE")]
        to: Option<String>,
    },
    /// Copy snapshot NAME from a store into this instance's snapshots
    /// (default store: `[snapshots] store`).
    Pull {
        name: String,
        #[arg(long, value_name = "STORE")]
        from: Option<String>,
    },
}
