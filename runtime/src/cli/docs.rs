//! `duet completions SHELL` and `duet man --out-dir DIR`: generated from the command line's
//! own definition ([`Cli`]), so they never disagree with `--help`.

use std::path::Path;

use clap::CommandFactory as _;

use crate::cli::args::Cli;
use crate::outcome::Outcome;
use crate::store::fsutil;
use crate::view::console;

/// Prints the completion script for `shell` on stdout.
pub(crate) fn completions(shell: clap_complete::Shell) -> Outcome {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "duet", &mut script);
    // The script is shell code: printed as generated (it holds no text from outside duet).
    let mut stdout = std::io::stdout().lock();
    match std::io::Write::write_all(&mut stdout, &script).and_then(|()| std::io::Write::flush(&mut stdout)) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            console::eprintln(&format!("error: cannot write the completion script: {e}"));
            Outcome::Failure
        }
        _ => Outcome::Success,
    }
}

/// Writes `duet.1` and a page per command (`duet-run.1`, ...) into `dir`, each replaced
/// atomically.
pub(crate) fn man(dir: &Path) -> Outcome {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let mut pages = Vec::new();
    collect(command, &mut pages);
    let written = fsutil::create_dir_all_durable(dir).and_then(|()| {
        for (name, text) in &pages {
            fsutil::write_atomic(&dir.join(name), text)?;
        }
        Ok(())
    });
    match written {
        Ok(()) => console::print(&format!(
            "wrote {} man pages to {} (`man -l {}/duet.1`)\n",
            pages.len(),
            dir.display(),
            dir.display()
        )),
        Err(e) => {
            console::eprintln(&format!(
                "error: cannot write the man pages to {}: {e}\n  help: choose a directory you can write (`--out-dir DIR`)",
                dir.display()
            ));
            Outcome::Failure
        }
    }
}

/// The pages of `command` and of its subcommands, each as (file name, roff text).
fn collect(command: clap::Command, pages: &mut Vec<(String, Vec<u8>)>) {
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
        collect(sub, pages);
    }
    let man = clap_mangen::Man::new(command);
    let mut text = Vec::new();
    man.render(&mut text).expect("rendering into memory does not fail");
    pages.push((man.get_filename(), text));
}
