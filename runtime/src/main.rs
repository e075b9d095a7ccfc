//! `duet`: the command-line entry point. Parses arguments, runs one command, exits with the
//! code its [`outcome::Outcome`] decides (2 for usage errors, from clap).

mod check;
mod cli;
mod outcome;

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
    };
    std::process::ExitCode::from(outcome.exit_code())
}
