//! What a running command prints as it goes: each request, each step as it finishes, progress
//! notes, and the status bar at the end. Plain text, one line per event, so it reads the same
//! in a terminal, a CI log or a pipe; control characters from action output are escaped.

use std::io::Write;
use std::time::Duration;

use duet_compiler::compiled::{RequestName, State, Step};

use crate::cli::outcome::Outcome;
use duet_contract::record::{Broken, Output, Severity, StepResult};

/// The compiler's escape: one for everything duet prints (docs/decisions.md D48).
pub(crate) use duet_compiler::text::{escape, escape_json, hostile};

#[derive(Debug)]
pub(crate) struct Console {
    /// Only the request lines and failures.
    pub(crate) quiet: bool,
    out: std::io::Stdout,
}

/// Lines of a failed action's output shown under it (the rest is in `duet log`).
pub(crate) const SHOWN_LINES: usize = 10;

impl Console {
    pub(crate) fn new(quiet: bool) -> Self {
        Self { quiet, out: std::io::stdout() }
    }

    /// Every line duet prints while it drives a session; control characters (from an action's
    /// output, a file name, a plan) are shown escaped, never obeyed by the terminal.
    fn line(&self, text: &str) {
        let mut out = self.out.lock();
        // A closed pipe (`duet run | head`) must not stop the upgrade.
        let _ = writeln!(out, "{}", escape(text));
        let _ = out.flush();
    }

    pub(crate) fn say(&self, text: &str) {
        self.line(text);
    }

    pub(crate) fn request(&mut self, request: RequestName, state: State) {
        self.line(&format!("{request} ({state})"));
    }

    pub(crate) fn step_started(&mut self, step: &Step, attempt: u32) {
        if self.quiet {
            return;
        }
        if attempt > 1 {
            self.line(&format!("  ..      {} (attempt {attempt})", step.id));
        } else if step.timeout_ms.is_some() && step.action.is_none() {
            self.line(&format!("  ..      {}", step.id));
        }
    }

    pub(crate) fn note(&mut self, severity: Severity, message: &str) {
        if self.quiet && severity < Severity::Warning {
            return;
        }
        let mark = match severity {
            Severity::Warning => "warning: ",
            Severity::Error => "error: ",
            _ => "",
        };
        self.line(&format!("          {mark}{}", escape(message)));
    }

    pub(crate) fn step_finished(
        &mut self,
        step: &Step,
        attempt: u32,
        result: &StepResult,
        duration: Duration,
        output: Option<&Output>,
    ) {
        let again = if attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
        match result {
            StepResult::Success { message } => {
                if !self.quiet {
                    self.line(&format!("  ok      {:<34} {}{again}  {}", step.id, escape(message), seconds(duration)));
                }
            }
            StepResult::Reconciled { message } => {
                self.line(&format!("  ok      {:<34} {}", step.id, escape(message)));
            }
            StepResult::Skipped { reason, user } => {
                self.line(&format!("  skipped {:<34} by {user}: {}", step.id, escape(reason)));
            }
            StepResult::Interrupted { message } | StepResult::NotStarted { message } => {
                self.line(&format!("  STOPPED {:<34} {}{again}", step.id, escape(message)));
            }
            StepResult::Failed { message, help } => {
                self.line(&format!("  FAILED  {:<34} {}{again}", step.id, escape(message)));
                if let Some(output) = output {
                    for (name, stream) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
                        let lines: Vec<&str> = stream.tail.lines().collect();
                        for line in &lines[lines.len().saturating_sub(SHOWN_LINES)..] {
                            self.line(&format!("          {name}: {}", escape(line)));
                        }
                    }
                }
                if let Some(help) = help {
                    self.line(&format!("          help: {help}"));
                }
            }
        }
    }

    pub(crate) fn request_finished(&mut self, request: RequestName, broken: Option<&Broken>) {
        if let Some(b) = broken {
            self.line(&format!("{request} is Broken: {} failed: {}", b.step, escape(&b.message)));
        }
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

/// [`eprint`] with a newline.
pub(crate) fn eprintln(text: &str) {
    eprint(&format!("{text}\n"));
}
