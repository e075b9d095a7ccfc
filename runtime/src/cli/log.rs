//! `duet log`: the activity log of the session in progress, else of the last readiness check
//! or the last finished session (or the one `--session ID` names), as text, JSON or XML.

use std::fmt::Write as _;
use std::io::Write as _;

use crate::cli::args::LogFormat;
use crate::error::Error;
use crate::outcome::Outcome;
use crate::store::layout::{SessionDir, StateDir};
use crate::store::lock::StateLock;
use crate::store::session;
use crate::view::follow::{Follower, Polled};
use crate::view::{activity, console, events};
use duet_contract::record::Entry;

/// `duet log`: the session in progress, else the last readiness check, or a finished session.
pub(crate) fn log(state: &StateDir, session: Option<&str>, format: LogFormat) -> Outcome {
    let view = match find(state, session) {
        Ok(view) => view,
        Err(message) => {
            console::eprintln(&message);
            return Outcome::Failure;
        }
    };
    let list = activity::entries(&view.records);
    let mut text = match format {
        LogFormat::Text => activity::to_text(&list),
        LogFormat::Json => activity::to_json(&list),
        LogFormat::Xml => activity::to_xml(&view.progress.id, &list),
    };
    if let Some(damage) = &view.damage {
        if format == LogFormat::Text {
            let _ = writeln!(text, "error: {damage}");
        }
        console::eprintln(&format!(
            "warning: the journal is damaged; the log above ends at the last intact record: {damage}"
        ));
    }
    // Action output, file names, plan text: whatever is in it is shown, never obeyed (JSON
    // and XML escape it their own way).
    console::print(&text)
}

/// The session `--session ID` names (under `history/`), else the session in progress, else
/// whichever was written last of the last readiness check and the last finished session. The
/// error is the whole report for the user.
pub(crate) fn find(state: &StateDir, session: Option<&str>) -> Result<session::View, String> {
    state.usable().map_err(|e| Error::from(e).report(None))?;
    let dirs = match session {
        // An id names a directory under history/: one that is a path (`../x`, `.`) is refused.
        Some(id) if duet_compiler::name::problem(id).is_some() => {
            return Err(format!(
                "error: `{id}` is not a session id\n  help: session ids are the names under {}",
                state.history().display()
            ));
        }
        Some(id) => vec![state.history().join(id)],
        None => std::iter::once(state.session()).chain(session::finished_records(state)).collect(),
    };
    let driven = StateLock::holder(&state.root).is_some();
    match dirs.iter().find_map(|d| session::View::read(d, driven, true).transpose()) {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(Error::from(e).report(None)),
        None => {
            let what = session
                .map_or_else(|| "no session and no readiness check yet".to_owned(), |id| format!("no session `{id}`"));
            Err(format!(
                "error: {what} in {}\n  help: `duet readiness PLAN` or `duet split PLAN` starts one",
                state.root.display()
            ))
        }
    }
}

/// How often `duet log --follow` looks at the journal.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// `duet log --follow`: the session in progress, as it is written, until it finishes (or is
/// set aside); waits for one to start. Text, or one JSON event per line.
pub(crate) fn follow(state: &StateDir, format: LogFormat) -> Outcome {
    if format == LogFormat::Xml {
        console::eprintln(
            "error: `--follow` prints text or JSON events, not XML (a document is written whole)\n  help: `duet log --follow --format json`, or `duet log --format xml` once the session has finished",
        );
        return Outcome::Failure;
    }
    if let Err(e) = state.usable() {
        console::eprintln(&Error::from(e).report(None));
        return Outcome::Failure;
    }
    let mut follower = Follower::new(SessionDir(&state.session()).journal());
    let mut waiting = false;
    let mut id = None;
    loop {
        let records = match follower.poll() {
            Ok(Polled::Absent) => {
                if !waiting {
                    console::eprintln(&format!("waiting for a session to start in {}", state.root.display()));
                    waiting = true;
                }
                Vec::new()
            }
            Ok(Polled::Records(records)) => records,
            Ok(Polled::Ended) => {
                let id = id.unwrap_or_default();
                console::eprintln(&format!(
                    "session {id} is no longer in progress: `duet log --session {id}` shows it whole"
                ));
                return Outcome::Success;
            }
            Err(e) => {
                console::eprintln(&Error::from(e).report(None));
                return Outcome::Failure;
            }
        };
        if let Some(Entry::Begin { id: begun, .. }) = records.first().map(|r| &r.entry) {
            id = Some(begun.clone());
        }
        if records.is_empty() {
            std::thread::sleep(FOLLOW_EVERY);
            continue;
        }
        let text = match format {
            LogFormat::Json => records.iter().map(|r| events::entry(r, true) + "\n").collect(),
            _ => activity::to_text(&activity::entries(&records)),
        };
        // A reader that went away (`duet log --follow | head`) ends the following.
        let mut stdout = std::io::stdout().lock();
        match stdout.write_all(console::escape(&text).as_bytes()).and_then(|()| stdout.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Outcome::Success,
            Err(e) => {
                console::eprintln(&format!("error: cannot write the output: {e}"));
                return Outcome::Failure;
            }
        }
    }
}
