//! `duet report [--session ID] [-o FILE]`: the session's HTML report ([`crate::view::report`]),
//! on stdout or written atomically to FILE.

use std::path::Path;

use crate::cli::log;
use crate::outcome::Outcome;
use crate::store::fsutil;
use crate::store::layout::StateDir;
use crate::view::{console, report};

pub(crate) fn report(state: &StateDir, session: Option<&str>, output: Option<&Path>) -> Outcome {
    let view = match log::find(state, session) {
        Ok(view) => view,
        Err(message) => {
            console::eprintln(&message);
            return Outcome::Failure;
        }
    };
    let plan = view.compiled();
    if plan.is_none() {
        console::eprintln(&format!(
            "warning: {} has no readable compiled plan: the report has no DAGs and names sides from the step ids",
            view.dir.display()
        ));
    }
    let html = report::render(&view, plan.as_ref());
    if let Some(damage) = &view.damage {
        console::eprintln(&format!(
            "warning: the journal is damaged; the report ends at the last intact record: {damage}"
        ));
    }
    let Some(path) = output else { return console::print(&html) };
    match fsutil::write_atomic(path, html.as_bytes()) {
        Ok(()) => {
            console::eprintln(&format!("wrote the report of session {} to {}", view.progress.id, path.display()));
            Outcome::Success
        }
        Err(e) => {
            console::eprintln(&format!(
                "error: cannot write the report to {}: {e}\n  help: name a file in a directory you can write (`-o FILE`)",
                path.display()
            ));
            Outcome::Failure
        }
    }
}
