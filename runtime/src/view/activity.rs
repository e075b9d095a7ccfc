//! The activity log (execution model 7, guide 4-21 and 5-1): every probe, step and platform
//! event of a session, derived from its journal, as text, JSON or the guide's XML. Entries nest:
//! a request is the parent of its steps, a step of its notes.

use std::fmt::Write;

use serde::Serialize;

use duet_compiler::compiled::RequestName;
use duet_contract::record::{Broken, Entry, Output, Severity, StepResult};

use crate::store::journal::Record;
use duet_compiler::text::escape;

#[derive(Debug, Serialize)]
pub(crate) struct ActivityEntry {
    pub(crate) seq: u64,
    pub(crate) time: String,
    pub(crate) severity: Severity,
    /// `REQUEST` or `REQUEST > STEP`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) parent: Option<String>,
    pub(crate) message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) detail: Option<Detail>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Detail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) attempt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) help: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) output: Option<Output>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) peak_rss_kib: Option<u64>,
}

fn time(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The activity log of a journal's records, one line each.
pub(crate) fn entries(records: &[Record<Entry>]) -> Vec<ActivityEntry> {
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let (severity, parent, message, detail) = match &r.entry {
            Entry::Begin { id, plan, platform, duet } => {
                (Severity::Information, None, format!("session {id}: plan {plan} on {platform} (duet {duet})"), None)
            }
            Entry::Operation { operation, requests, goal, command, user, automatic } => {
                let names: Vec<String> = requests.iter().map(ToString::to_string).collect();
                let goal = goal.map(|g| format!(", through {}", g.as_str())).unwrap_or_default();
                let message = match automatic {
                    Some(b) => format!(
                        "{} started by duet (the plan says so on failure: {} failed: {}): {}",
                        operation.name(),
                        b.step,
                        b.message,
                        names.join(", ")
                    ),
                    None => {
                        format!("{} requested by {user} (`{command}`): {}{goal}", operation.name(), names.join(", "))
                    }
                };
                let severity = if automatic.is_some() { Severity::Warning } else { Severity::Information };
                (severity, None, message, None)
            }
            Entry::AwaitingApproval { request, step, deadline_ms } => {
                let until = deadline_ms.map(|d| format!(" until {}", time(d))).unwrap_or_default();
                (Severity::Pending, Some(request.to_string()), format!("{step}: waiting for approval{until}"), None)
            }
            Entry::Approved { request, step, user, reason } => (
                Severity::Information,
                Some(request.to_string()),
                format!("{step}: approved by {user}: {reason}"),
                None,
            ),
            Entry::RequestStarted { request } => (Severity::Pending, None, format!("{request} started"), None),
            Entry::StepStarted { request, step, attempt } => {
                let again = if *attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
                (Severity::Pending, Some(request.to_string()), format!("{step} started{again}"), None)
            }
            Entry::StepFinished { request, step, attempt, result, duration_ms, output } => {
                step_finished(*request, step, *attempt, result, (*duration_ms, output.as_ref()))
            }
            Entry::ServiceSaved { service, startup, running } => (
                Severity::Information,
                None,
                format!(
                    "{service}: startup type {} saved ({})",
                    format!("{startup:?}").to_lowercase(),
                    if *running { "running" } else { "stopped" }
                ),
                None,
            ),
            Entry::Note { request, step, severity, message } => {
                let parent = match (request, step) {
                    (Some(r), Some(s)) => Some(format!("{r} > {s}")),
                    (Some(r), None) => Some(r.to_string()),
                    _ => None,
                };
                (*severity, parent, message.clone(), None)
            }
            Entry::RequestFinished { request, broken, peak_rss_kib } => {
                request_finished(*request, broken.as_ref(), *peak_rss_kib)
            }
            Entry::Retry { request, user, from, steps, reason } => {
                let from = from
                    .as_ref()
                    .map_or_else(String::new, |f| format!(" from {f} (running again: {})", steps.join(", ")));
                let why = reason.as_ref().map_or_else(String::new, |r| format!(": {r}"));
                (Severity::Information, None, format!("retry of {request}{from} requested by {user}{why}"), None)
            }
            Entry::Skip { request, step, user, reason } => (
                Severity::Warning,
                Some(request.to_string()),
                format!("{step} skipped by {user}, without running it: {reason}"),
                None,
            ),
        };
        out.push(ActivityEntry { seq: r.seq, time: time(r.time_ms), severity, parent, message, detail });
    }
    out
}

/// A line's severity, parent (request, step), message and detail.
type Line = (Severity, Option<String>, String, Option<Detail>);

fn step_finished(
    request: RequestName,
    step: &str,
    attempt: u32,
    result: &StepResult,
    (duration_ms, output): (u64, Option<&Output>),
) -> Line {
    let (severity, message, help) = match result {
        StepResult::Success { message } | StepResult::Reconciled { message } => {
            (Severity::Success, format!("{step}: {message}"), None)
        }
        StepResult::Failed { message, help } => (Severity::Error, format!("{step}: {message}"), help.clone()),
        StepResult::Interrupted { message }
        | StepResult::StorageFailed { message }
        | StepResult::NotStarted { message } => (Severity::Warning, format!("{step}: {message}"), None),
        StepResult::Skipped { reason, user } => {
            (Severity::Warning, format!("{step}: skipped by {user}: {reason}"), None)
        }
    };
    let detail = Detail {
        attempt: Some(attempt),
        duration_ms: Some(duration_ms),
        help,
        output: output.cloned(),
        peak_rss_kib: None,
    };
    (severity, Some(request.to_string()), message, Some(detail))
}

fn request_finished(request: RequestName, broken: Option<&Broken>, peak_rss_kib: Option<u64>) -> Line {
    let detail = Some(Detail { attempt: None, duration_ms: None, help: None, output: None, peak_rss_kib });
    match broken {
        None => (Severity::Success, None, format!("{request} completed: Ready"), detail),
        Some(b) => (Severity::Error, None, format!("{request} is Broken: {} failed: {}", b.step, b.message), detail),
    }
}

pub(crate) fn to_text(entries: &[ActivityEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        let parent = e.parent.as_deref().map(|p| format!("[{p}] ")).unwrap_or_default();
        let _ = writeln!(out, "{}  {:<11}  {parent}{}", e.time, e.severity.as_str(), escape(&e.message));
        if let Some(d) = &e.detail {
            if let Some(help) = &d.help {
                let _ = writeln!(out, "    help: {help}");
            }
            if let Some(o) = &d.output {
                for (name, s) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
                    if s.bytes == 0 {
                        continue;
                    }
                    let kept = if (s.tail.len() as u64) < s.bytes {
                        format!(
                            " (last {} of {} bytes; all of it in {})",
                            s.tail.len(),
                            s.bytes,
                            s.file.as_deref().unwrap_or("?")
                        )
                    } else {
                        String::new()
                    };
                    let _ = writeln!(out, "    {name}{kept}:");
                    for line in s.tail.lines() {
                        let _ = writeln!(out, "      {}", escape(line));
                    }
                }
            }
        }
    }
    out
}

pub(crate) fn to_json(entries: &[ActivityEntry]) -> String {
    duet_compiler::text::escape_json(serde_json::to_string_pretty(entries).expect("entries serialize") + "\n")
}

/// XML 1.0 text: markup escaped, and characters XML cannot hold written as `\x{..}`.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' => out.push(c),
            // A bare carriage return would move a terminal's cursor; XML keeps it as a reference.
            '\r' => out.push_str("&#13;"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{{{:x}}}", u32::from(c));
            }
            c if duet_compiler::text::hostile(c) => {
                let _ = write!(out, "&#x{:x};", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// The guide saves the activity log as XML (guide 5-1).
pub(crate) fn to_xml(session: &str, entries: &[ActivityEntry]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(out, "<ActivityLog session=\"{}\">", xml(session));
    for e in entries {
        let _ = write!(out, "  <Entry seq=\"{}\" time=\"{}\" severity=\"{}\"", e.seq, e.time, e.severity.as_str());
        if let Some(p) = &e.parent {
            let _ = write!(out, " parent=\"{}\"", xml(p));
        }
        let _ = writeln!(out, ">");
        let _ = writeln!(out, "    <Message>{}</Message>", xml(&e.message));
        if let Some(d) = &e.detail {
            if let Some(a) = d.attempt {
                let _ = writeln!(out, "    <Attempt>{a}</Attempt>");
            }
            if let Some(ms) = d.duration_ms {
                let _ = writeln!(out, "    <DurationMs>{ms}</DurationMs>");
            }
            if let Some(h) = &d.help {
                let _ = writeln!(out, "    <Help>{}</Help>", xml(h));
            }
            if let Some(o) = &d.output {
                if let Some(code) = o.exit {
                    let _ = writeln!(out, "    <ExitValue>{code}</ExitValue>");
                }
                for (name, s) in [("StandardOutput", &o.stdout), ("StandardError", &o.stderr)] {
                    if s.bytes > 0 {
                        let _ = writeln!(out, "    <{name} bytes=\"{}\">{}</{name}>", s.bytes, xml(&s.tail));
                    }
                }
            }
        }
        let _ = writeln!(out, "  </Entry>");
    }
    out.push_str("</ActivityLog>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::xml;

    #[test]
    fn xml_text_is_escaped_and_well_formed() {
        assert_eq!(xml("a<b>&\"c\""), "a&lt;b&gt;&amp;&quot;c&quot;");
        assert_eq!(xml("esc\u{1b}[0m"), "esc\\x{1b}[0m");
        assert_eq!(xml("50%\r75%\n"), "50%&#13;75%\n");
    }
}
