//! duet's runtime: the command-line interface, the state model, sessions and their journal,
//! the executor and the platforms it drives. The binary (`main.rs`) only calls [`main`]; the
//! library exists so that fuzz targets (`tests/fuzz`) reach the readers through [`fuzzing`].
//!
//! The folders are the architecture (docs/architecture.md): `cli/` (commands and their
//! arguments), `run/` (the loop that executes a request's steps), `state/` (the state model),
//! `store/` (journal, sessions, lock, durable files), `platform/` (the machine: the trait and
//! its implementations), `process/` (child processes and signals), `view/` (what is shown).
//! The journal records, status JSON and exit codes are the `duet_contract` crate.

#[cfg(test)]
mod architecture;
mod cli;
mod error;
mod outcome;
mod platform;
mod process;
mod run;
mod state;
mod store;
mod view;

/// Parses the command line, runs one command and says which exit code it decided (2 for usage
/// errors, from clap).
pub fn main() -> std::process::ExitCode {
    // duet's own helper processes (the Upgrade Side's namespaces, background deletion) must
    // start before anything else, while the process has one thread.
    if let Some(code) = cli::helper() {
        return std::process::ExitCode::from(code);
    }
    std::process::ExitCode::from(cli::main().exit_code())
}

/// Entry points for the fuzz targets: each reads untrusted bytes the way duet reads them from
/// disk, and must return (never panic, hang or abort) whatever the bytes are.
#[doc(hidden)]
pub mod fuzzing {
    use crate::state::{self, Command, Progress};
    use crate::store::journal::Journal;
    use duet_contract::record::Entry;

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
