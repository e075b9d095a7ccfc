//! What a running command prints as it goes: each request, each step as it finishes, progress
//! notes, and the status bar at the end. Plain text, one line per event, so it reads the same
//! in a terminal, a CI log or a pipe; control characters from action output are escaped.

use std::io::Write;
use std::time::Duration;

use duet_compiler::compiled::{RequestName, State, Step};

use crate::outcome::Outcome;
use crate::platform::Severity;
use crate::record::{Broken, Output, StepResult};

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

/// Control characters (terminal escapes included) shown as `\x1b`-style escapes, so output
/// captured from an action cannot rewrite the operator's terminal.
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

/// A character a terminal would obey rather than show: a control character other than newline
/// and tab, or a bidirectional override.
pub(crate) fn hostile(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// JSON text for a terminal: serde escapes C0 controls in strings, not DEL, C1 controls or
/// bidirectional overrides; these become `\uXXXX` too (they only occur inside strings).
pub(crate) fn escape_json(json: String) -> String {
    if !json.chars().any(hostile) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if hostile(c) {
            use std::fmt::Write as _;
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` with every control character but newline and tab written as `\x{..}`: what a
/// terminal shows, never an instruction to it (escape sequences, C1 controls such as CSI,
/// carriage returns, bells), and the bidirectional overrides that make text read other than
/// it is. Escaping twice changes nothing.
pub(crate) fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(hostile) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        // A carriage return ending a line (CRLF) moves nothing a newline would not.
        if c == '\r' && chars.peek() == Some(&'\n') {
            out.push(c);
        } else if hostile(c) {
            out.push_str(&c.escape_unicode().to_string().replace("\\u{", "\\x{"));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn json_keeps_its_meaning_and_loses_its_controls() {
        let json = serde_json::to_string(&"a\u{9b}b\u{7f}\u{202e}\u{1b}").expect("json");
        let safe = super::escape_json(json);
        assert_eq!(safe, r#""a\u009bb\u007f\u202e\u001b""#);
        assert_eq!(serde_json::from_str::<String>(&safe).expect("still JSON"), "a\u{9b}b\u{7f}\u{202e}\u{1b}");
    }

    #[test]
    fn terminal_escapes_are_shown_not_obeyed() {
        assert_eq!(escape("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(escape("\u{1b}[2Jgone"), "\\x{1b}[2Jgone");
        assert_eq!(escape("bell\u{7}"), "bell\\x{7}");
        assert_eq!(escape("csi\u{9b}2J and\r back"), "csi\\x{9b}2J and\\x{d} back");
        assert_eq!(escape("crlf\r\nline"), "crlf\r\nline");
        assert_eq!(escape("abc\u{202e}fed"), "abc\\x{202e}fed");
        let once = escape("\u{1b}]0;title\u{7}").into_owned();
        assert_eq!(escape(&once), once, "escaping twice changes nothing");
    }
}
