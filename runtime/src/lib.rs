//! duet's runtime: the command-line interface, the state model, sessions and their journal,
//! the executor and the platforms it drives. The binary (`main.rs`) only calls [`main`]; the
//! library exists so that fuzz targets (`tests/fuzz`) reach the readers through [`fuzzing`].

mod activity;
mod check;
mod cli;
mod commands;
mod console;
mod context;
mod error;
mod executor;
mod fsutil;
mod interrupt;
mod journal;
mod lock;
mod outcome;
mod platform;
mod process;
mod record;
mod repair;
mod session;
mod state;
mod status;

use clap::Parser;
use duet_compiler::Options;

use cli::{Cli, Command};

/// Parses the command line, runs one command and says which exit code it decided (2 for usage
/// errors, from clap).
pub fn main() -> std::process::ExitCode {
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
        Command::Retry { from, reason, run } => commands::execute(&run, &commands::Request::Retry { from, reason }),
        Command::Skip { step, reason, run } => commands::execute(&run, &commands::Request::Skip { step, reason }),
        Command::Resume { repair_journal, run } => {
            commands::execute(&run, &commands::Request::Resume { repair_journal })
        }
        Command::Run { plan, through, run } => commands::execute(&run, &commands::Request::Run { plan, through }),
    };
    std::process::ExitCode::from(outcome.exit_code())
}

/// Entry points for the fuzz targets: each reads untrusted bytes the way duet reads them from
/// disk, and must return (never panic, hang or abort) whatever the bytes are.
#[doc(hidden)]
pub mod fuzzing {
    use crate::journal::Journal;
    use crate::record::Entry;
    use crate::state::{self, Command, Progress};

    /// Reads `bytes` as a session journal, folds the intact records into the state model the
    /// way `status` and `resume` do, and asks it whether each command may run next.
    pub fn journal(bytes: &[u8]) {
        let path = std::path::Path::new("fuzz/journal");
        let mut progress = Progress::default();
        if Journal::<Entry>::read_bytes(path, bytes, |r| progress.apply(&r.entry)).is_ok() {
            let _ = (progress.upgrade_state(), progress.operational(), progress.goal_ahead());
            let _ = (progress.broken(), progress.remaining(), progress.production_touched());
            for command in Command::ALL {
                let _ = state::admit(command, Some(&progress));
            }
        }
    }

    #[cfg(test)]
    mod tests {
        /// Every committed seed of the `journal` fuzz target (and every finding kept there),
        /// through the same entry point as the fuzzer, on stable.
        #[test]
        fn the_fuzz_seeds_are_read_without_panicking() {
            let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz/seeds/journal");
            let mut files: Vec<_> = std::fs::read_dir(&seeds).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            assert!(files.len() >= 4, "seeds missing from {}", seeds.display());
            for file in files {
                eprintln!("journal: {}", file.display());
                super::journal(&std::fs::read(&file).unwrap());
            }
        }
    }
}
