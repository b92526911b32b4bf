//! devinst's agent: the keep-alive process of an instance's container.
//!
//! `devinst-agent --container NAME [--socket DIR] [--relay LISTEN:TARGET]... -- COMMAND...`
//!
//! It runs COMMAND (the recipe's keep-alive command) as its child, passes it
//! the signals it gets and exits with its status. Beside it, it serves
//! execs on the unix socket `DIR/sock` (see `proto`) and relays each TCP
//! port LISTEN to `127.0.0.1:TARGET`, so a published port reaches a server
//! inside whether it binds loopback or every address.

mod exec;
mod ports;
mod server;
mod supervise;
mod tty;
mod user;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use supervise::unblocked;

#[derive(Debug, Default, PartialEq)]
struct Args {
    container: String,
    socket: Option<PathBuf>,
    relays: Vec<(u16, u16)>,
    command: Vec<OsString>,
}

fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Args, String> {
    let mut parsed = Args::default();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg:?} needs a value"));
        match arg.to_str() {
            Some("--container") => parsed.container = text(value()?)?,
            Some("--socket") => parsed.socket = Some(value()?.into()),
            Some("--relay") => {
                let text = text(value()?)?;
                let pair = text
                    .split_once(':')
                    .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
                parsed
                    .relays
                    .push(pair.ok_or(format!("--relay takes LISTEN:TARGET, not {text:?}"))?);
            }
            Some("--") => {
                parsed.command = args.collect();
                break;
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    if parsed.container.is_empty() {
        return Err("--container is required".into());
    }
    Ok(parsed)
}

fn command(program: &OsString, args: &[OsString]) -> Command {
    let mut command = Command::new(program);
    command.args(args);
    command
}

fn text(value: OsString) -> Result<String, String> {
    value
        .into_string()
        .map_err(|v| format!("{v:?} is not UTF-8"))
}

fn main() -> ExitCode {
    let args = match parse(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("devinst-agent: {err}");
            return ExitCode::from(2);
        }
    };
    // Before any thread starts, so that only the signal thread takes them;
    // children start with an empty mask (std resets it).
    let signals = supervise::block_signals();
    let child = match args.command.split_first() {
        Some((program, rest)) => match unblocked(command(program, rest)).spawn() {
            Ok(child) => Some(child),
            Err(err) => {
                eprintln!("devinst-agent: cannot run {program:?}: {err}");
                return ExitCode::from(exec::spawn_failure_code(&err) as u8);
            }
        },
        None => None,
    };
    if let Some(dir) = args.socket {
        let container = args.container.clone();
        std::thread::spawn(move || server::listen(&dir, &container));
    }
    for (listen, target) in args.relays {
        std::thread::spawn(move || ports::relay(listen, target));
    }
    let pid = child.as_ref().map(|c| c.id() as i32);
    std::thread::spawn(move || supervise::forward_signals(signals, pid));
    match child {
        Some(mut child) => match child.wait() {
            Ok(status) => ExitCode::from(supervise::exit_code(status) as u8),
            Err(_) => ExitCode::FAILURE,
        },
        None => loop {
            std::thread::park();
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse(list.iter().map(OsString::from))
    }

    #[test]
    fn arguments_name_the_container_socket_relays_and_command() {
        let parsed = args(&[
            "--container",
            "c",
            "--socket",
            "/app/.sky-dev/agent",
            "--relay",
            "65000:46580",
            "--",
            "sleep",
            "--",
        ])
        .unwrap();
        assert_eq!(
            parsed,
            Args {
                container: "c".into(),
                socket: Some("/app/.sky-dev/agent".into()),
                relays: vec![(65000, 46580)],
                command: vec!["sleep".into(), "--".into()],
            }
        );
        assert!(args(&["--socket", "/x"]).is_err());
        assert!(args(&["--container", "c", "--relay", "1"]).is_err());
        assert!(args(&["--container"]).is_err());
        assert!(args(&["--container", "c", "--what"]).is_err());
    }
}
