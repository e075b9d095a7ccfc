//! `duet fleet ...` and `duet agent ...`: fleets live in a program of their own, `duet-fleet`,
//! which builds on this crate (so this one carries no etcd client), and these two commands hand
//! over to it, the way `git foo` runs `git-foo`. It is looked up beside this `duet`, then on
//! the PATH; `DUET_FLEET_BIN` names another.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::outcome::Outcome;
use crate::process::command;
use crate::view::console;

const BINARY: &str = "duet-fleet";

/// Replaces this process with `duet-fleet [SUBCOMMAND] ARGS`; returns only when it cannot.
pub(crate) fn fleet(subcommand: Option<&str>, args: &[OsString]) -> Outcome {
    let mut handed: Vec<OsString> = subcommand.map(OsString::from).into_iter().collect();
    handed.extend(args.iter().cloned());
    let Some(program) = locate() else {
        console::eprintln(&format!(
            "error: `duet {}` needs the `{BINARY}` program, which is neither beside this duet nor on the PATH\n  help: install duet-fleet beside duet or on the PATH, or set DUET_FLEET_BIN to its path\n",
            subcommand.unwrap_or("fleet")
        ));
        return Outcome::Failure;
    };
    let why = command::exec(&program, &handed);
    console::eprintln(&format!(
        "error: cannot run {}: {why}\n  help: check that it is the duet-fleet program and is executable\n",
        program.display()
    ));
    Outcome::Failure
}

fn locate() -> Option<PathBuf> {
    if let Some(named) = std::env::var_os("DUET_FLEET_BIN") {
        return Some(PathBuf::from(named));
    }
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.join(BINARY)));
    beside.filter(|p| p.is_file()).or_else(|| command::which(BINARY))
}
