//! `duet-fleet`: the fleet commands (`check` for now). Kept out of the `duet` binary so the
//! single-node build carries no etcd client.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "duet-fleet", about = "Upgrade a cluster of machines with duet, coordinated through etcd")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a fleet plan and every node plan it names; print every problem.
    Check {
        fleet: PathBuf,
        /// Print the checked fleet as JSON (what a run journals).
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { fleet, json } => check(&fleet, json),
    }
}

fn check(path: &std::path::Path, json: bool) -> ExitCode {
    let compilation = duet_fleet::compile::compile(path);
    let report = compilation.render_human(false);
    eprint!("{report}");
    let Some(spec) = &compilation.spec else {
        eprintln!("{}: {} error(s); nothing was run", path.display(), compilation.errors());
        return ExitCode::from(duet_contract::exit::FAILURE);
    };
    if json {
        println!("{}", serde_json::to_string_pretty(spec).expect("a spec serializes"));
    } else {
        println!("{}: valid ({} nodes, {} stages)", path.display(), spec.nodes.len(), spec.stages.len());
    }
    ExitCode::SUCCESS
}
