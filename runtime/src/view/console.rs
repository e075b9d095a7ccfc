//! What a running command prints as it goes: each request, each step as it finishes, progress
//! notes, and the status bar at the end. Plain text, one line per event, so it reads the same
//! in a terminal, a CI log or a pipe; control characters from action output are escaped. On a
//! terminal, a step in progress shows a progress line with its elapsed time (indicatif), cleared
//! when it finishes. With `--format json`, the same events as newline-delimited JSON
//! ([`crate::view::events`]).

use std::collections::HashSet;
use std::io::{IsTerminal as _, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use duet_compiler::compiled::{CompiledPlan, RequestName};
use duet_contract::event::RunEvent;
use duet_contract::record::{Broken, Entry, Output, Severity, StepResult};

use crate::outcome::Outcome;
use crate::store::journal::Record;
use crate::store::session::Session;
use crate::view::events;

/// The compiler's escape: one for everything duet prints (docs/decisions.md D48).
pub(crate) use duet_compiler::text::{escape, escape_json};

/// How a running command prints its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// A line per event for people.
    Human,
    /// Newline-delimited JSON events ([`crate::view::events`]).
    Json,
}

/// Prints a running command's events (one line each) and what the command itself says.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Console {
    /// Only the request lines and failures.
    pub(crate) quiet: bool,
    pub(crate) format: Format,
    /// Show the step in progress on a progress line (stdout is a terminal, for people).
    pub(crate) progress: bool,
}

/// Lines of a failed action's output shown under it (the rest is in `duet log`).
pub(crate) const SHOWN_LINES: usize = 10;

impl Console {
    /// A console for people shows progress lines only on a terminal.
    pub(crate) fn new(quiet: bool, format: Format) -> Self {
        let progress = format == Format::Human && !quiet && std::io::stdout().is_terminal();
        Self { quiet, format, progress }
    }

    /// What the command itself says (not an event of the session): shown even with `--quiet`.
    pub(crate) fn say(self, text: &str) {
        match self.format {
            Format::Human => line(text),
            Format::Json => raw_line(&events::message(text)),
        }
    }

    /// Prints a session's events as they are recorded: subscribe it to the session
    /// (`Session::subscribe`).
    pub(crate) fn observer(self, session: &Session) -> Box<dyn FnMut(&RunEvent<'_>) + 'static> {
        match self.format {
            Format::Human => {
                let mut shown = self.human(&session.compiled);
                let mut progress = Progress::default();
                Box::new(move |event| {
                    if self.progress {
                        progress.around(event, &mut shown);
                    } else {
                        shown(event);
                    }
                })
            }
            Format::Json => {
                // The journal's records are numbered from 1; this command's follow the ones it read.
                let mut seq = session.progress.records as u64;
                Box::new(move |event| json_event(event, &mut seq))
            }
        }
    }

    /// The human lines of events. `plan` says which steps announce their start.
    fn human(self, plan: &CompiledPlan) -> impl FnMut(&RunEvent<'_>) + 'static {
        // A platform step with a timeout may take a while: its start is shown (an action's
        // output shows its own progress).
        let announced: HashSet<String> = plan
            .requests
            .values()
            .flat_map(|r| &r.steps)
            .filter(|s| s.timeout_ms.is_some() && s.action.is_none())
            .map(|s| s.id.clone())
            .collect();
        move |event| self.show(event, &announced)
    }

    fn show(self, event: &RunEvent<'_>, announced: &HashSet<String>) {
        match *event {
            RunEvent::Request { request, state } => line(&format!("{request} ({state})")),
            RunEvent::Recorded { entry: Entry::StepStarted { step, attempt, .. }, .. } => {
                self.step_started(step, *attempt, announced.contains(step));
            }
            RunEvent::Recorded { entry, .. } | RunEvent::Unrecorded(entry) => match entry {
                Entry::StepFinished { step, attempt, result, duration_ms, output, .. } => {
                    self.step_finished(step, *attempt, result, (Duration::from_millis(*duration_ms), output.as_ref()));
                }
                Entry::Note { severity, message, .. } => self.note(*severity, message),
                Entry::RequestFinished { request, broken, .. } => request_finished(*request, broken.as_ref()),
                _ => {}
            },
        }
    }

    fn step_started(self, step: &str, attempt: u32, announced: bool) {
        if self.quiet {
            return;
        }
        if attempt > 1 {
            line(&format!("  ..      {step} (attempt {attempt})"));
        } else if announced {
            line(&format!("  ..      {step}"));
        }
    }

    fn note(self, severity: Severity, message: &str) {
        if self.quiet && severity < Severity::Warning {
            return;
        }
        let mark = match severity {
            Severity::Warning => "warning: ",
            Severity::Error => "error: ",
            _ => "",
        };
        line(&format!("          {mark}{}", escape(message)));
    }

    fn step_finished(
        self,
        step: &str,
        attempt: u32,
        result: &StepResult,
        (duration, output): (Duration, Option<&Output>),
    ) {
        let again = if attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
        match result {
            StepResult::Success { message } => {
                if !self.quiet {
                    line(&format!("  ok      {step:<34} {}{again}  {}", escape(message), seconds(duration)));
                }
            }
            StepResult::Reconciled { message } => {
                line(&format!("  ok      {step:<34} {}", escape(message)));
            }
            StepResult::Skipped { reason, user } => {
                line(&format!("  skipped {step:<34} by {user}: {}", escape(reason)));
            }
            StepResult::Interrupted { message }
            | StepResult::StorageFailed { message }
            | StepResult::NotStarted { message } => {
                line(&format!("  STOPPED {step:<34} {}{again}", escape(message)));
            }
            StepResult::Failed { message, help } => {
                line(&format!("  FAILED  {step:<34} {}{again}", escape(message)));
                for (name, stream) in output.iter().flat_map(|o| [("stdout", &o.stdout), ("stderr", &o.stderr)]) {
                    let lines: Vec<&str> = stream.tail.lines().collect();
                    for shown in &lines[lines.len().saturating_sub(SHOWN_LINES)..] {
                        line(&format!("          {name}: {}", escape(shown)));
                    }
                }
                if let Some(help) = help {
                    line(&format!("          help: {help}"));
                }
            }
        }
    }
}

/// One event of `--format json`.
fn json_event(event: &RunEvent<'_>, seq: &mut u64) {
    match *event {
        RunEvent::Request { request, state } => raw_line(&events::request(request.as_str(), state.as_str())),
        RunEvent::Recorded { entry, .. } => {
            *seq += 1;
            raw_line(&events::entry(&Record { seq: *seq, time_ms: now_ms(), entry: entry.clone() }, true));
        }
        RunEvent::Unrecorded(entry) => {
            raw_line(&events::entry(&Record { seq: *seq + 1, time_ms: now_ms(), entry: entry.clone() }, false));
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The progress lines of the steps in progress, on a terminal: a spinner, the step and its
/// elapsed time, redrawn by indicatif's own thread; every other line is printed above them, and
/// a step's line is gone when it finishes.
struct Progress {
    lines: indicatif::MultiProgress,
    bars: Vec<(String, indicatif::ProgressBar)>,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            lines: indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stdout()),
            bars: Vec::new(),
        }
    }
}

impl Progress {
    fn around(&mut self, event: &RunEvent<'_>, shown: &mut impl FnMut(&RunEvent<'_>)) {
        let entry = match *event {
            RunEvent::Recorded { entry, .. } | RunEvent::Unrecorded(entry) => Some(entry),
            RunEvent::Request { .. } => None,
        };
        if let Some(Entry::StepFinished { step, .. }) = entry
            && let Some(at) = self.bars.iter().position(|(s, _)| s == step)
        {
            let (_, bar) = self.bars.remove(at);
            bar.finish_and_clear();
            self.lines.remove(&bar);
        }
        if matches!(entry, Some(Entry::RequestFinished { .. })) {
            for (_, bar) in self.bars.drain(..) {
                bar.finish_and_clear();
            }
        }
        self.lines.suspend(|| shown(event));
        if let Some(Entry::StepStarted { step, attempt, .. }) = entry {
            let style = indicatif::ProgressStyle::with_template("  {spinner} {msg} ({elapsed})")
                .expect("a valid template")
                .tick_chars("|/-\\ ");
            let bar = self.lines.add(indicatif::ProgressBar::new_spinner().with_style(style));
            let again = if *attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
            bar.set_message(format!("{}{again}", escape(step)));
            bar.enable_steady_tick(Duration::from_millis(200));
            self.bars.push((step.clone(), bar));
        }
    }
}

/// A line already escaped (JSON): printed as it is.
fn raw_line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// Every line duet prints while it drives a session; control characters (from an action's
/// output, a file name, a plan) are shown escaped, never obeyed by the terminal.
fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`duet run | head`) must not stop the upgrade.
    let _ = writeln!(out, "{}", escape(text));
    let _ = out.flush();
}

fn request_finished(request: RequestName, broken: Option<&Broken>) {
    if let Some(b) = broken {
        line(&format!("{request} is Broken: {} failed: {}", b.step, escape(&b.message)));
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Writes `text` to stdout for people: escaped ([`escape`]). A reader that closed the pipe
/// (`duet ... | head`) is not an error; any other write failure (a full disk) is reported and
/// fails the command.
pub(crate) fn print(text: &str) -> Outcome {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(escape(text).as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprint(&format!("error: cannot write the output: {e}\n"));
            Outcome::Failure
        }
        _ => Outcome::Success,
    }
}

/// Writes `text` to stderr, escaped. A closed pipe (`duet run 2>&1 | tee log`, and Ctrl-C
/// stopped `tee`) loses the text, never the command: there is nowhere left to report it.
pub(crate) fn eprint(text: &str) {
    let _ = std::io::stderr().lock().write_all(escape(text).as_bytes());
}

/// [`eprint()`] with a newline.
pub(crate) fn eprintln(text: &str) {
    eprint(&format!("{text}\n"));
}
