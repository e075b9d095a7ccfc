//! The command line: its arguments ([`args`]) and one module per group of commands: `check`,
//! `compile` and `explain` ([`check`]); the upgrade commands ([`upgrade`]); `status` and `log`
//! through the views. Each command decides its [`Outcome`], and so its exit code.

pub(crate) mod approve;
pub(crate) mod args;
pub(crate) mod check;
pub(crate) mod console;
pub(crate) mod context;
pub(crate) mod docs;
pub(crate) mod fleet;
pub(crate) mod linux;
pub(crate) mod log;
pub(crate) mod report;
pub(crate) mod sign;
pub(crate) mod status;
pub(crate) mod upgrade;

use clap::Parser;
use duet_compiler::Options;

pub(crate) use crate::outcome::Outcome;
use args::{Cli, Command};
pub(crate) use context::Context;

/// duet's hidden helper commands (`__upgrade-side`, `__purge`), if this process is one.
pub(crate) fn helper() -> Option<u8> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    crate::platform::linux::side::helper(&args).or_else(|| crate::platform::linux::purge_main(&args))
}

/// Parses the command line and runs one command.
pub(crate) fn main() -> Outcome {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { plan, inventory, format, keyring } => {
            check::check(&Options { plan, inventory, keyring }, format)
        }
        Command::Compile { plan, inventory, format, keyring } => {
            check::compile_plan(&Options { plan, inventory, keyring }, format)
        }
        Command::Explain { plan, key, inventory, keyring } => {
            check::explain(&Options { plan, inventory, keyring }, key.as_deref())
        }
        Command::Keygen { out } => sign::keygen(&out),
        Command::Sign { file, key, comment } => sign::sign(&file, &key, comment.as_deref()),
        Command::Adopt { inventory, undo } => linux::adopt(&inventory, undo),
        Command::Inventory(args) => linux::inventory(&args),
        Command::Recover { run } => linux::recover(&run),
        Command::Fleet { args } => fleet::fleet(None, &args),
        Command::Agent { args } => fleet::fleet(Some("agent"), &args),
        Command::Status { json, state } => status::status(&Context::reading(&state), json),
        Command::Log { format, session, follow: true, state } => {
            let _ = session;
            log::follow(&Context::reading(&state).state, format)
        }
        Command::Log { format, session, follow: false, state } => {
            log::log(&Context::reading(&state).state, session.as_deref(), format)
        }
        Command::Readiness { plan, run } => upgrade::execute(&run, &upgrade::Request::Readiness { plan }),
        Command::Split { plan, run } => upgrade::execute(&run, &upgrade::Request::Split { plan }),
        Command::Upgrade { run } => upgrade::execute(&run, &upgrade::Request::Upgrade),
        Command::Approve { reason, state } => approve::approve(&Context::reading(&state), &reason),
        Command::Merge { run } => upgrade::execute(&run, &upgrade::Request::Merge),
        Command::Commit { run } => upgrade::execute(&run, &upgrade::Request::Commit),
        Command::Abort { run } => upgrade::execute(&run, &upgrade::Request::Abort),
        Command::Finish { run } => upgrade::execute(&run, &upgrade::Request::Finish),
        Command::Retry { from, reason, run } => upgrade::execute(&run, &upgrade::Request::Retry { from, reason }),
        Command::Skip { step, reason, run } => upgrade::execute(&run, &upgrade::Request::Skip { step, reason }),
        Command::Resume { repair_journal, run } => upgrade::execute(&run, &upgrade::Request::Resume { repair_journal }),
        Command::Run { plan, through, run } => upgrade::execute(&run, &upgrade::Request::Run { plan, through }),
        Command::Console { plan, state } => console::console(&state, plan.as_deref()),
        Command::Report { session, output, state } => {
            report::report(&Context::reading(&state).state, session.as_deref(), output.as_deref())
        }
        Command::Completions { shell } => docs::completions(shell),
        Command::Man { out_dir } => docs::man(&out_dir),
    }
}
