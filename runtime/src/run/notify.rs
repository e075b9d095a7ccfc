//! Notifications (`notify:` in a plan): commands run on this host when a session event happens
//! (started, waiting for an approval, Broken, aborted, committed, finished), with the event in
//! their environment. A notification informs; it never changes the upgrade: one that fails or
//! times out only comes back as a warning for the activity log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use duet_compiler::compiled::{CompiledPlan, Event};

use super::Options;
use crate::process::{self, Exit, Marks, ProcessSpec};
use crate::store::layout::SessionDir;

/// What happened, for the notification's environment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Happened<'a> {
    pub(crate) event: Event,
    pub(crate) session: &'a str,
    pub(crate) request: Option<&'a str>,
    pub(crate) step: Option<&'a str>,
    /// One line saying what happened.
    pub(crate) message: &'a str,
}

/// Runs every notification of `plan` that asks for this event, one after another; returns a
/// warning for each one that did not succeed.
pub(crate) async fn send(
    plan: &CompiledPlan,
    session_dir: &Path,
    happened: Happened<'_>,
    options: &Options,
) -> Vec<String> {
    let mut warnings = Vec::new();
    for n in plan.unattended.notify.iter().filter(|n| n.on.contains(&happened.event)) {
        let env = vec![
            ("DUET_EVENT".to_owned(), happened.event.as_str().to_owned()),
            ("DUET_SESSION_ID".to_owned(), happened.session.to_owned()),
            ("DUET_EVENT_REQUEST".to_owned(), happened.request.unwrap_or_default().to_owned()),
            ("DUET_EVENT_STEP".to_owned(), happened.step.unwrap_or_default().to_owned()),
            ("DUET_EVENT_MESSAGE".to_owned(), happened.message.to_owned()),
        ];
        let program = PathBuf::from(&n.file);
        let spec = ProcessSpec {
            cwd: program.parent().map_or_else(|| session_dir.to_owned(), Path::to_owned),
            program,
            args: n.args.iter().map(|a| process::expand(a, &env)).collect(),
            env,
            timeout: Duration::from_millis(n.timeout_ms),
            kill_grace: options.kill_grace,
            output_base: SessionDir(session_dir).notify_output(happened.event.as_str(), &n.id),
            interrupt: options.interrupt.clone(),
            // Not an action's process: an abort's sweep of the session's leftovers leaves it be.
            marks: Marks::default(),
        };
        if let Some(parent) = spec.output_base.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let outcome = process::run(&spec).await;
        let why = match &outcome.exit {
            Exit::Code(0) => continue,
            Exit::Code(n) => format!("exited with {n}"),
            Exit::Signal(s) => format!("was killed by signal {s}"),
            Exit::TimedOut => format!("timed out after {}", humantime::format_duration(spec.timeout)),
            Exit::Interrupted => "was stopped: duet was interrupted".to_owned(),
            Exit::SpawnFailed { message, .. } => format!("could not start: {message}"),
        };
        warnings.push(format!(
            "notification `{}` for {} {why}; the upgrade goes on regardless",
            n.id,
            happened.event.as_str()
        ));
    }
    warnings
}
