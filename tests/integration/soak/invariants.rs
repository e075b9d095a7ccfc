//! What a driven scenario leaves, and the invariants: every journal parses and keeps the
//! rules, every action run agrees with its journal, an abort's evidence is the Upgrade Side as
//! the abort found it, and the end is the uninterrupted run's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::drive::Drive;
use super::{Scenario, UNSAFE};
use crate::machine::{
    ActionRun, Exit, Final, Machine, differences, final_state, history_session, read_journal, state_of, text,
};

/// What a finished scenario leaves that an uninterrupted run must match.
#[derive(Clone, Debug)]
pub(super) struct Outcome {
    /// `runs` counts the action runs whose end the journal records (an exit duet saw).
    pub(super) state: Final,
    /// Every event-log file of the machine (both sides, log backups, evidence), its path and
    /// lines without their times, session ids and temporary paths made stable.
    pub(super) logs: BTreeMap<String, BTreeSet<String>>,
    /// Action runs the journal does not record an end of: killed with duet, or done while
    /// duet was dead (at-least-once).
    pub(super) unrecorded: usize,
}

/// Every journal of the state directory, by session id.
fn journals(m: &Machine) -> Result<BTreeMap<String, (PathBuf, Vec<Value>)>, String> {
    let mut paths = vec![m.state().join("session/journal"), m.state().join("readiness/journal")];
    for entry in std::fs::read_dir(m.state().join("history")).into_iter().flatten().flatten() {
        paths.push(entry.path().join("journal"));
    }
    let mut all = BTreeMap::new();
    for path in paths.into_iter().filter(|p| p.exists()) {
        let records = read_journal(&path)?;
        let id = text(&records.first().map_or(&Value::Null, |r| &r["e"])["id"]).to_owned();
        if id.is_empty() {
            return Err(format!("{}: the first record is not `begin`", path.display()));
        }
        all.insert(id, (path, records));
    }
    Ok(all)
}

/// Within one journal: no step starts again once it completed, a failed step starts again only
/// after a `retry` of its request, and an interrupted action marked `rerun: unsafe` is never
/// started again without one (resume records it failed instead).
fn journal_problems(path: &Path, records: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut completed = BTreeSet::new();
    let mut failed: BTreeMap<(String, String), bool> = BTreeMap::new();
    let mut running = BTreeSet::new();
    for record in records {
        let e = &record["e"];
        let key = (text(&e["request"]).to_owned(), text(&e["step"]).to_owned());
        let at = || format!("{} seq {}: {} {}", path.display(), record["seq"], key.0, key.1);
        match text(&e["type"]) {
            "step-started" => {
                if completed.contains(&key) {
                    problems.push(format!("{} started again (attempt {}) after it had completed", at(), e["attempt"]));
                }
                if failed.remove(&key) == Some(false) {
                    problems.push(format!("{} started again after it failed, with no retry", at()));
                }
                if !running.insert(key.clone()) && UNSAFE.iter().any(|a| key.1.starts_with(&format!("action:{a}@"))) {
                    problems.push(format!("{} (rerun: unsafe) started again after it was interrupted", at()));
                }
            }
            "step-finished" if e["result"]["outcome"] == "failed" => {
                running.remove(&key);
                failed.insert(key, false);
            }
            // Cut short by a signal or a disk error: unfinished, as after a crash.
            "step-finished" if e["result"]["outcome"] == "interrupted" => {}
            // Never started: pending again.
            "step-finished" if e["result"]["outcome"] == "not-started" => {
                running.remove(&key);
            }
            "step-finished" => {
                running.remove(&key);
                completed.insert(key);
            }
            "retry" => {
                for (_, retried) in failed.iter_mut().filter(|((request, _), _)| request == text(&e["request"])) {
                    *retried = true;
                }
                // `retry --from`: the steps it names run again.
                for step in e["steps"].as_array().into_iter().flatten() {
                    completed.remove(&(text(&e["request"]).to_owned(), text(step).to_owned()));
                }
            }
            _ => {}
        }
    }
    problems
}

/// The action runs against the journals: each was journaled as started, an end the journal
/// records is the one the action wrote, and an action whose run completed and was recorded
/// never ran again. Returns the recorded runs (`step|state|request` -> how many) and how many
/// were not recorded.
fn action_problems(
    runs: &[ActionRun],
    journals: &BTreeMap<String, (PathBuf, Vec<Value>)>,
    problems: &mut Vec<String>,
) -> (BTreeMap<String, usize>, usize) {
    let mut recorded = BTreeMap::new();
    let mut unrecorded = 0;
    let mut seen = BTreeSet::new();
    for run in runs {
        let what = format!("{} {} ({}, {}) attempt {}", run.session, run.step, run.state, run.request, run.attempt);
        if !seen.insert((&run.session, &run.step, &run.state, &run.request, run.attempt)) {
            problems.push(format!("{what} was launched twice"));
        }
        let Some((path, records)) = journals.get(&run.session) else {
            problems.push(format!("{what} ran in a session no journal records"));
            continue;
        };
        let this = |e: &Value, kind: &str| {
            e["type"] == kind
                && state_of(text(&e["request"])) == run.state
                && text(&e["step"]) == run.step
                && e["attempt"].as_u64() == Some(u64::from(run.attempt))
        };
        if !records.iter().any(|r| this(&r["e"], "step-started")) {
            problems.push(format!("{what} ran, and {} has no start of it", path.display()));
        }
        let end = records.iter().map(|r| &r["e"]).find(|e| this(e, "step-finished") && e["output"].is_object());
        let Some(end) = end else {
            unrecorded += 1;
            continue;
        };
        let exit = end["output"]["exit"].as_i64().and_then(|x| i32::try_from(x).ok());
        if exit != run.exit {
            problems.push(format!("{what}: {} records exit {exit:?}, the action wrote {:?}", path.display(), run.exit));
        }
        if end["result"]["outcome"] == "success" {
            let again: Vec<u32> = runs
                .iter()
                .filter(|r| {
                    (&r.session, &r.step, &r.state) == (&run.session, &run.step, &run.state) && r.attempt > run.attempt
                })
                .map(|r| r.attempt)
                .collect();
            if !again.is_empty() {
                problems.push(format!("{what} completed and was recorded, and ran again as attempt {again:?}"));
            }
        }
        *recorded.entry(format!("{}|{}|{}", run.step, run.state, run.request)).or_default() += 1;
    }
    (recorded, unrecorded)
}

fn is_session_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b[8] == b'-'
        && b[15] == b'-'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
        && b[16..].iter().all(u8::is_ascii_hexdigit)
}

/// Every `.log` file under the simulated machine, its lines without their times.
fn event_logs(m: &Machine) -> BTreeMap<String, BTreeSet<String>> {
    let root = m.dir.path().display().to_string();
    let sim = m.state().join("sim");
    let mut logs = BTreeMap::new();
    let mut dirs = vec![sim.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|x| x != "log") {
                continue;
            }
            let rel = path.strip_prefix(&sim).expect("under sim").components();
            let rel: Vec<String> = rel
                .map(|c| {
                    let c = c.as_os_str().to_string_lossy();
                    if is_session_id(&c) { "<session>".to_owned() } else { c.into_owned() }
                })
                .collect();
            let lines = std::fs::read_to_string(&path)
                .expect("read an event log")
                .lines()
                .map(|l| l.split_once('\t').map_or(l, |(_, rest)| rest).replace(&root, "<tmp>"))
                .collect();
            logs.insert(rel.join("/"), lines);
        }
    }
    logs
}

/// Checks what a driven scenario left: every journal parses and keeps the rules, every action
/// run agrees with its journal, the finished session's activity log reads, and an abort's
/// evidence is the Upgrade Side as the abort found it.
pub(super) fn outcome(drive: &Drive<'_>) -> Result<Outcome, Vec<String>> {
    let m = drive.m;
    let mut problems = Vec::new();
    let journals = journals(m).map_err(|e| vec![e])?;
    for (path, records) in journals.values() {
        problems.extend(journal_problems(path, records));
    }
    let (recorded, unrecorded) = action_problems(&m.action_runs(), &journals, &mut problems);
    let session = history_session(m).map_err(|e| vec![e])?;
    let id = session.file_name().expect("id").to_string_lossy().into_owned();
    let out = m.duet(&["log", "--session", &id, "--format", "json"]).spawn().wait_with_output().expect("duet log");
    let log = Exit::new(out.status, &out.stdout, &out.stderr);
    if log.code != Some(0) || !log.stderr.is_empty() {
        problems.push(format!("`duet log --session {id} --format json`: {}", log.show()));
    }
    if let Some(before) = &drive.before_abort {
        let evidence = m.state().join(format!("sim/machine/srv/data/upgrade-logs/{id}/evidence"));
        for (name, bytes) in before {
            match std::fs::read(evidence.join(name)) {
                Ok(saved) if &saved == bytes => {}
                Ok(saved) => problems.push(format!(
                    "the abort's evidence {name} is not the Upgrade Side's as the abort found it:\n  \
                     then {:?}\n  kept {:?}",
                    String::from_utf8_lossy(bytes),
                    String::from_utf8_lossy(&saved)
                )),
                Err(e) => problems.push(format!("the abort kept no evidence {name}: {e}")),
            }
        }
    }
    let mut state = final_state(m).map_err(|e| vec![e])?;
    state.runs = recorded;
    if problems.is_empty() { Ok(Outcome { state, logs: event_logs(m), unrecorded }) } else { Err(problems) }
}

/// How a driven scenario's outcome differs from the uninterrupted run's.
pub(super) fn compare(scenario: &Scenario, want: &Outcome, got: &Outcome, kills: usize) -> Vec<String> {
    let (mut want_state, mut got_state) = (want.state.clone(), got.state.clone());
    let mut problems = scenario.set_aside_races(&mut want_state);
    problems.extend(scenario.set_aside_races(&mut got_state));
    problems.extend(differences(&want_state, &got_state, &BTreeSet::new()));
    for (file, lines) in &want.logs {
        let Some(have) = got.logs.get(file) else {
            problems.push(format!("the event log {file} is missing"));
            continue;
        };
        for line in lines.difference(have) {
            problems.push(format!("the event log {file} lost a line: {line:?}"));
        }
    }
    // Each kill stops at most one running action per side.
    if got.unrecorded > 2 * kills {
        problems.push(format!("{} action runs the journal does not record, after {kills} kills", got.unrecorded));
    }
    problems
}
