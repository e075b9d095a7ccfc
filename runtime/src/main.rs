//! `duet`: the command-line entry point. Parses arguments, runs one command, exits with the
//! code its [`outcome::Outcome`] decides (2 for usage errors, from clap).

mod activity;
mod check;
mod cli;
mod commands;
mod console;
mod error;
mod executor;
mod fsutil;
mod journal;
mod lock;
mod outcome;
mod platform;
mod process;
mod record;
mod session;
mod state;
mod status;

use clap::Parser;
use duet_compiler::Options;

use cli::{Cli, Command};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Check { plan, inventory, format } => check::check(&Options { plan, inventory }, format),
        Command::Compile { plan, inventory, format } => check::compile_plan(&Options { plan, inventory }, format),
        Command::Explain { plan, key, inventory } => check::explain(&Options { plan, inventory }, key.as_deref()),
        Command::Status { json, state } => status::status(&commands::Context::reading(&state), json),
        Command::Log { format, session, state } => {
            activity::log(&commands::Context::reading(&state).state, session.as_deref(), format)
        }
        Command::Readiness { plan, run } => commands::execute(&run, &commands::Request::Readiness { plan }),
        Command::Split { plan, run } => commands::execute(&run, &commands::Request::Split { plan }),
        Command::Merge { run } => commands::execute(&run, &commands::Request::Merge),
        Command::Commit { run } => commands::execute(&run, &commands::Request::Commit),
        Command::Abort { run } => commands::execute(&run, &commands::Request::Abort),
        Command::Finish { run } => commands::execute(&run, &commands::Request::Finish),
        Command::Retry { run } => commands::execute(&run, &commands::Request::Retry),
        Command::Resume { repair_journal, run } => {
            commands::execute(&run, &commands::Request::Resume { repair_journal })
        }
        Command::Run { plan, through, run } => commands::execute(&run, &commands::Request::Run { plan, through }),
    };
    std::process::ExitCode::from(outcome.exit_code())
}
