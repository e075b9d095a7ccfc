//! The event stream for programs: newline-delimited JSON, one object per line, each with the
//! stream's `format_version` and an `event` kind. `duet run --format json` (and every upgrade
//! command with `--format json`) prints it live; `duet log --follow --format json` prints the
//! `entry` events of a journal another process writes. docs/runtime.md spells the format.
//!
//! - `entry`: the journal holds an entry: `seq`, `time`, the activity-log line (`severity`,
//!   `parent`, `message`) and the journal's own `entry` (as `duet log --format json` nests it:
//!   externally tagged, kebab-case); `recorded: false` if the journal could not take it.
//! - `request`: a request begins or continues (`request`, `state`); not journaled.
//! - `message`: what the command itself says (`text`).
//! - `status`: the status bar at the end (`hardware`, `upgrade`, `operational`, `partner`).

use serde_json::{Value, json};

use duet_compiler::compiled::State;
use duet_contract::record::Entry;
use duet_contract::status::{Hardware, Operational};

use crate::store::journal::Record;
use crate::view::activity;

/// The version of this stream's format: a consumer refuses a version it does not know.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// One line of the stream: `fields` with `format_version` and `event` first.
fn line(event: &str, fields: Value) -> String {
    let mut object = serde_json::Map::new();
    object.insert("format_version".into(), FORMAT_VERSION.into());
    object.insert("event".into(), event.into());
    if let Value::Object(fields) = fields {
        object.extend(fields);
    }
    // Compact, so one event is one line; hostile characters are escaped as `\u` sequences.
    duet_compiler::text::escape_json(Value::Object(object).to_string())
}

/// An `entry` event: a journal record with its activity-log line.
pub(crate) fn entry(record: &Record<Entry>, recorded: bool) -> String {
    let activity = activity::entries(std::slice::from_ref(record)).pop().expect("one record, one line");
    let mut fields = serde_json::Map::new();
    fields.insert("seq".into(), record.seq.into());
    fields.insert("time".into(), activity.time.into());
    fields.insert("recorded".into(), recorded.into());
    fields.insert("severity".into(), activity.severity.as_str().into());
    if let Some(parent) = activity.parent {
        fields.insert("parent".into(), parent.into());
    }
    fields.insert("message".into(), activity.message.into());
    fields.insert("entry".into(), serde_json::to_value(&record.entry).expect("entries serialize"));
    line("entry", Value::Object(fields))
}

/// A `request` event.
pub(crate) fn request(request: &str, state: &str) -> String {
    line("request", json!({ "request": request, "state": state }))
}

/// A `message` event: what the command says that is no journal entry.
pub(crate) fn message(text: &str) -> String {
    line("message", json!({ "text": text }))
}

/// The `status` event a command ends with: the values as `duet status --json` spells them.
pub(crate) fn status(hardware: Hardware, upgrade: State, operational: Operational, partner: &str) -> String {
    line("status", json!({ "hardware": hardware, "upgrade": upgrade, "operational": operational, "partner": partner }))
}

#[cfg(test)]
mod tests {
    use duet_compiler::compiled::RequestName;
    use duet_contract::record::{Entry, StepResult};

    use crate::store::journal::Record;

    #[test]
    fn an_entry_is_one_line_with_its_version_and_activity_line() {
        let entry = Entry::StepFinished {
            request: RequestName::PrepareSplit,
            step: "action:a@production".into(),
            attempt: 1,
            result: StepResult::Success { message: "exit \u{1b}[2J 0".into() },
            duration_ms: 12,
            output: None,
        };
        let text = super::entry(&Record { seq: 7, time_ms: 0, entry }, true);
        assert!(!text.contains('\n') && !text.contains('\u{1b}'), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["format_version"], 1);
        assert_eq!(v["event"], "entry");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["severity"], "Success");
        assert_eq!(v["parent"], "PrepareSplit");
        assert_eq!(v["entry"]["step-finished"]["duration_ms"], 12);
        assert_eq!(v["message"], "action:a@production: exit \u{1b}[2J 0");
    }
}
