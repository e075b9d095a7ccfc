//! Format versions (docs/reliability.md, "Formats and compatibility"): the journal, the
//! session's snapshot of the plan and the simulated machine's state each carry a version, and
//! a version or a record this duet does not know is refused with a clear message, by every
//! command, changing nothing; never misread.

use crate::machine::{Machine, writers_refused};

/// A split session, then `edit` applied to `rel` (under the state directory).
fn split_then(edit: impl Fn(&str) -> String, rel: &str) -> (Machine, Vec<u8>) {
    let m = Machine::new();
    m.run(&["run", &m.plan(), "--through", "split"]).code(0);
    let path = m.state().join(rel);
    let text = std::fs::read_to_string(&path).expect("the file exists");
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit changed {rel}");
    std::fs::write(&path, edited).expect("write");
    let journal = m.journal();
    (m, journal)
}

/// Every command that would write, refused with `says`, changing nothing.
fn refused_by_all(m: &Machine, says: &[&str]) {
    let plan = m.plan();
    writers_refused(m, &[&["merge"], &["abort"], &["resume"], &["run", &plan]], says);
}

#[test]
fn a_journal_of_a_newer_format_is_refused_never_read() {
    let (m, journal) = split_then(|t| t.replacen("duet-journal 1\n", "duet-journal 2\n", 1), "session/journal");
    let says = ["journal format version 2; this duet reads version 1 only", "with the duet version that started it"];
    refused_by_all(&m, &says);
    m.run(&["status"]).code(1).stderr_has(says[0]);
    m.run(&["log"]).code(1).stderr_has(says[0]);
    m.run(&["resume", "--repair-journal"]).code(1).stderr_has(says[0]);
    assert_eq!(m.journal(), journal, "repair does not touch a journal it cannot read");
}

#[test]
fn an_intact_record_of_an_unknown_kind_is_refused_not_repaired_away() {
    // What a newer duet could append: checksummed, in sequence, of a kind this one lacks.
    let add = |t: &str| {
        let seq = t.lines().count();
        let json = format!(r#"{{"seq":{seq},"t":1,"e":{{"quarantine":{{"step":"x"}}}}}}"#);
        format!("{t}{:08x} {json}\n", crc32fast::hash(json.as_bytes()))
    };
    let (m, journal) = split_then(add, "session/journal");
    let says = ["is an intact record this duet cannot read", "unknown variant `quarantine`"];
    refused_by_all(&m, &says);
    m.run(&["resume", "--repair-journal"]).code(1).stderr_has(says[0]);
    assert_eq!(m.journal(), journal, "repair must not cut away a record it cannot read");
}

#[test]
fn a_snapshot_of_a_newer_format_is_refused() {
    let edit = |t: &str| t.replacen("\"format_version\":1", "\"format_version\":7", 1);
    let (m, _) = split_then(edit, "session/plan/compiled.json");
    refused_by_all(&m, &["compiled plan format version 7 is not supported; this duet reads version 1"]);
}

#[test]
fn a_simulated_machine_of_a_newer_format_is_refused() {
    let edit = |t: &str| t.replacen("\"version\": 1", "\"version\": 2", 1);
    let (m, _) = split_then(edit, "sim/state.json");
    let says = ["simulated machine state format version 2; this duet reads version 1 only"];
    refused_by_all(&m, &says);
    m.run(&["status"]).code(1).stderr_has(says[0]);
}
