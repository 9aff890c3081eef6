//! `synguard`: the command line, one module per verb over the `guard_user` library. This file
//! sets up logging and the runtime, checks privileges, dispatches, and maps failures to exit
//! codes (xdp-tools' convention: 2 options and arguments, 3 XDP attach, 4 BPF and privileges,
//! 1 anything else; 0 when stdout was closed under it).

mod args;
mod detach;
mod docs;
mod events;
mod output;
mod run;
mod set;
mod stats;
mod status;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};
use guard_user::{GuardError, error::Failure};

use args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    output::init_logger(cli.verbose);
    let result = require_privileges(&cli.command)
        .map_err(anyhow::Error::from)
        .and_then(|()| dispatch(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<output::StdoutClosed>() => ExitCode::SUCCESS,
        Err(e) => {
            output::report_error(&e);
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The exit code of a failure.
fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(g) = e.downcast_ref::<GuardError>() {
        return match g.failure() {
            Failure::Invalid => 2,
            Failure::Attach => 3,
            Failure::Bpf => 4,
            Failure::System => 1,
        };
    }
    1
}

/// Every verb but `man` and `completions` needs root (or CAP_BPF/CAP_SYS_ADMIN and
/// CAP_NET_ADMIN): without, the pins and state files are out of reach and would look absent,
/// and nothing can be loaded or sent.
fn require_privileges(cmd: &Command) -> Result<(), GuardError> {
    let verb = match cmd {
        Command::Run(_) => "run",
        Command::Attach(_) => "attach",
        Command::Detach(_) => "detach",
        Command::Set(_) => "set",
        Command::Status(_) => "status",
        Command::Stats(_) => "stats",
        Command::Events(_) => "events",
        // Documentation from the command line's definition: nothing to touch.
        Command::Man { .. } | Command::Completions { .. } => return Ok(()),
    };
    if guard_user::guard::have_privileges() {
        return Ok(());
    }
    Err(GuardError::Permission {
        what: format!("`synguard {verb}` loads, opens or runs BPF objects"),
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(a) => runtime()?.block_on(run::run(a, cli.verbose)),
        Command::Attach(a) => runtime()?.block_on(run::attach(a, cli.verbose)),
        Command::Detach(a) => detach::detach(&a),
        Command::Set(a) => set::set(&a),
        Command::Status(a) => status::status(&a),
        Command::Stats(a) => stats::stats(&a),
        Command::Events(a) => events::events(&a),
        Command::Man { out_dir } => docs::man(Cli::command(), &out_dir),
        Command::Completions { shell } => docs::completions(Cli::command(), shell),
    }
}
