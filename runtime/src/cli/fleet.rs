//! `duet fleet ...` and `duet agent ...`: fleets live in their own binary, `duet-fleet` (the
//! `fleet/` crate, which builds on this one), and these two commands hand over to it, the way
//! `git foo` runs `git-foo`. It is looked up beside this `duet`, then on the PATH;
//! `DUET_FLEET_BIN` names another.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

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
            "error: `duet {}` needs the `{BINARY}` program, which is neither beside this duet nor on the PATH\n  help: build it with `cargo build -p duet-fleet` (it lands next to duet in target/), or set DUET_FLEET_BIN to its path\n",
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
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(BINARY));
    beside.into_iter().chain(on_path).find(|p| is_program(p))
}

fn is_program(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
