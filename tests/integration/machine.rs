//! A rehearsal rig for the runtime tests: a temporary directory with a state dir, a plan tree
//! whose actions record what they saw, and a fast inventory of the guide's 320Ma.
//!
//! Every action of the generated plans runs `rec`, a shell script that appends one line to
//! `REC/SIDE.log` (`step|side|state|request|hw_split|attempt|args`), and a start line to
//! `REC/runs.log` (`start|session|step|state|request|attempt|pid`) whose `end|...|EXIT` twin it
//! writes just before it exits, so a run killed midway is told from one that completed; and then:
//! - exits 3 if `REC/fail-STEP` or `REC/fail-STEP-REQUEST` exists (STEP with `:` and `@` as
//!   they are, REQUEST the `ACTIVE_UPGRADE_REQUEST`), so a test can make one step fail and
//!   later "correct the problem" by removing the file;
//! - blocks until `REC/go` exists if `REC/block-STEP` exists, after writing `REC/blocked`
//!   (its pid), so a test can kill duet while an action runs without relying on timing;
//! - sleeps as many seconds as `REC/slow-STEP` says, if it exists (random kills then land
//!   inside that action more often).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use serde_json::Value;

use crate::support::{Duet, Run, duet};

/// The recorder every action runs.
const REC: &str = r#"#!/bin/sh
step="$DUET_STEP"
run="$DUET_SESSION|$step|$ACTIVE_UPGRADE_STATE|$ACTIVE_UPGRADE_REQUEST|$DUET_ATTEMPT"
echo "$step|$ACTIVE_UPGRADE_SIDE|$ACTIVE_UPGRADE_STATE|$ACTIVE_UPGRADE_REQUEST|$ACTIVE_UPGRADE_HW_SPLIT|$DUET_ATTEMPT|$*" >> "$REC/$ACTIVE_UPGRADE_SIDE.log"
echo "start|$run|$$" >> "$REC/runs.log"
if [ -e "$REC/block-$step" ]; then
  echo $$ > "$REC/blocked.tmp" && mv "$REC/blocked.tmp" "$REC/blocked"
  while [ ! -e "$REC/go" ]; do sleep 0.01; done
fi
if [ -e "$REC/slow-$step" ]; then sleep "$(cat "$REC/slow-$step")"; fi
if [ -e "$REC/fail-$step" ] || [ -e "$REC/fail-$step-$ACTIVE_UPGRADE_REQUEST" ]; then
  echo "failing as asked" >&2
  echo "end|$run|3" >> "$REC/runs.log"
  exit 3
fi
echo "ok $step"
echo "end|$run|0" >> "$REC/runs.log"
"#;

/// The guide's 320Ma with instant operations; services of every kind the tests need.
pub(crate) const INVENTORY: &str = "version: 1
model: Express5800/320Ma
duplex: true
disks:
  - {id: disk0, location: internal, rdr: true, synced: true}
  - {id: disk1, location: internal, rdr: true, synced: true}
  - {id: disk2, location: internal, rdr: true, synced: true}
  - {id: disk3, location: external}
volumes:
  - {id: C, mount: /, disks: [disk0], boot: true, paging: true}
  - {id: E, mount: /opt, disks: [disk1]}
  - {id: D, mount: /srv/data, disks: [disk2]}
network:
  teams:
    - name: team0
      embedded: true
      adapters: [{enclosure: 10, link: true}, {enclosure: 11, link: true}]
      address: 192.0.2.10
vtms: [{enclosure: 10, configured: true}, {enclosure: 11, configured: true}]
remote_desktop: true
services:
  - {name: AppServer, startup: manual, running: true}
  - {name: W3SVC, startup: automatic, running: true}
  - {name: Spooler, startup: automatic, running: true}
  - {name: Reports, startup: manual, running: false}
event_logs: [Application, System, Security]
simulation:
  durations: {split: 0s, merge: 0s, commit: 0s, abort: 0s, finish: 0s, resync: 0s}
";

/// A plan with actions of every control type and several timings, three services (one
/// that was not running) and a log backup.
pub(crate) const PLAN: &str = r#"version: 1
title: rehearsal
disks: {system: [disk0, disk1], data: [disk2]}
services:
  - AppServer
  - {name: W3SVC, after: [AppServer]}
  - Reports
actions:
  - {id: ready, file: rec, control: readiness}
  - {id: stop-early, file: rec, control: stop, timing: early, args: [stop, "%ACTIVE_UPGRADE_SIDE%"]}
  - {id: stop, file: rec, control: stop}
  - {id: start, file: rec, control: start, args: ["%ACTIVE_UPGRADE_REQUEST%", "100%%"]}
  - {id: save, file: rec, control: backup, rerun: unsafe}
  - {id: adv-late, file: rec, control: advanced, timing: late}
  - {id: adv-early, file: rec, control: advanced, timing: early}
logs:
  staging_dir: /srv/data/upgrade-logs
  backup: [Application, System]
"#;

/// Added to [`PLAN`] by the unattended runs of the crash rig and the soak: two upgrade tasks
/// (the first restarts the Upgrade Side) and a check before the merge.
pub(crate) const UNATTENDED_TASKS: &str = "
upgrade:
  - {id: sp1, file: rec, args: [install], restart: true}
  - {id: cu, file: rec, args: [install]}
verify:
  - {id: ready, before: merge, run: {file: rec, args: [check]}}
";

pub(crate) struct Machine {
    pub(crate) dir: tempfile::TempDir,
}

impl Machine {
    /// A rig with the standard plan and inventory.
    pub(crate) fn new() -> Self {
        Self::with(PLAN, INVENTORY)
    }

    pub(crate) fn with(plan: &str, inventory: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let m = Self { dir };
        std::fs::create_dir_all(m.rec()).expect("rec dir");
        std::fs::create_dir_all(m.path("plans")).expect("plans dir");
        m.write("plans/plan.yaml", plan);
        m.write("inventory.yaml", inventory);
        m.write("plans/rec", REC);
        make_executable(&m.path("plans/rec"));
        m
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub(crate) fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path(rel), text).expect("write");
    }

    pub(crate) fn rec(&self) -> PathBuf {
        self.path("rec")
    }

    pub(crate) fn state(&self) -> PathBuf {
        self.path("state")
    }

    pub(crate) fn plan(&self) -> String {
        self.path("plans/plan.yaml").display().to_string()
    }

    /// `duet ARGS --state-dir STATE --inventory INVENTORY`, with `REC` set for the actions.
    pub(crate) fn duet(&self, args: &[&str]) -> Duet {
        let state = self.state().display().to_string();
        let inventory = self.path("inventory.yaml").display().to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--state-dir", &state]);
        let with_inventory = !matches!(args.first(), Some(&"log"));
        if with_inventory {
            all.extend(["--inventory", &inventory]);
        }
        duet(&all).env("REC", self.rec()).in_dir(self.dir.path())
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        self.duet(args).run()
    }

    /// `duet status --json`.
    pub(crate) fn status(&self) -> serde_json::Value {
        self.run(&["status", "--json"]).code(0).json()
    }

    /// The lines the actions recorded on one side (`Production` or `Upgrade`).
    pub(crate) fn recorded(&self, side: &str) -> Vec<String> {
        std::fs::read_to_string(self.rec().join(format!("{side}.log")))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Every action run `rec` recorded in `REC/runs.log`, in the order they started.
    pub(crate) fn action_runs(&self) -> Vec<ActionRun> {
        let text = std::fs::read_to_string(self.rec().join("runs.log")).unwrap_or_default();
        let mut runs: Vec<ActionRun> = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split('|').collect();
            let [kind, session, step, state, request, attempt, last] = f[..] else {
                panic!("a runs.log line that is not `start|...` or `end|...`: {line:?}");
            };
            let attempt = attempt.parse().unwrap_or_else(|_| panic!("no attempt in {line:?}"));
            let same = |r: &ActionRun| {
                (r.session.as_str(), r.step.as_str(), r.state.as_str(), r.request.as_str(), r.attempt)
                    == (session, step, state, request, attempt)
            };
            if kind == "start" {
                runs.push(ActionRun {
                    session: session.to_owned(),
                    step: step.to_owned(),
                    state: state.to_owned(),
                    request: request.to_owned(),
                    attempt,
                    exit: None,
                });
            } else {
                let exit = last.parse().unwrap_or_else(|_| panic!("no exit value in {line:?}"));
                if let Some(run) = runs.iter_mut().rev().find(|r| same(r) && r.exit.is_none()) {
                    run.exit = Some(exit);
                }
            }
        }
        runs
    }

    /// Both sides' recorded lines, each as `step|request|attempt`.
    pub(crate) fn runs(&self) -> Vec<String> {
        let mut all = Vec::new();
        for side in ["Production", "Upgrade"] {
            for line in self.recorded(side) {
                let f: Vec<&str> = line.split('|').collect();
                all.push(format!("{}|{}|{}", f[0], f[3], f[5]));
            }
        }
        all
    }

    /// Makes step STEP (e.g. `action:stop@upgrade`, or `action:x@upgrade-PrepareMerge` for
    /// one request only) exit 3 until [`Machine::heal`].
    pub(crate) fn fail(&self, step: &str) {
        std::fs::write(self.rec().join(format!("fail-{step}")), "").expect("marker");
    }

    pub(crate) fn heal(&self, step: &str) {
        std::fs::remove_file(self.rec().join(format!("fail-{step}"))).expect("marker");
    }

    /// Runs `duet ARGS` until action step STEP runs, then kills duet with SIGKILL, as a crash
    /// would, leaving the action blocked; returns the action's pid. `REC/go` releases it.
    pub(crate) fn kill_inside(&self, step: &str, args: &[&str]) -> String {
        std::fs::write(self.rec().join(format!("block-{step}")), "").expect("marker");
        let mut duet = self.duet(args).spawn();
        let blocked = self.rec().join("blocked");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !blocked.exists() {
            assert!(std::time::Instant::now() < deadline, "{step} never started");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        duet.kill().expect("kill duet");
        duet.wait().expect("reap duet");
        std::fs::remove_file(self.rec().join(format!("block-{step}"))).expect("marker");
        std::fs::read_to_string(&blocked).expect("pid").trim().to_owned()
    }

    /// The session id in progress.
    pub(crate) fn session(&self) -> String {
        self.status()["session"].as_str().expect("a session is in progress").to_owned()
    }

    /// `(startup, running)` of a service on a side, from `status --json`.
    pub(crate) fn service(&self, name: &str, side: &str) -> (String, bool) {
        let status = self.status();
        let s = status["services"]
            .as_array()
            .expect("services")
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no service {name} in {status:#}"));
        let side = &s[side];
        (side["startup"].as_str().expect("startup").to_owned(), side["running"].as_bool().expect("running"))
    }

    /// The simulated machine's state file, for "nothing changed" checks.
    pub(crate) fn sim_state(&self) -> String {
        std::fs::read_to_string(self.state().join("sim/state.json")).unwrap_or_default()
    }

    pub(crate) fn journal(&self) -> Vec<u8> {
        std::fs::read(self.state().join("session/journal")).unwrap_or_default()
    }

    pub(crate) fn upgrade_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.state().join(format!("sim/sides/upgrade/logs/{name}.log"))).expect("upgrade log")
    }
}

/// One run of an action, as `rec` recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ActionRun {
    pub(crate) session: String,
    pub(crate) step: String,
    /// `ACTIVE_UPGRADE_STATE` and `ACTIVE_UPGRADE_REQUEST`, as the action saw them.
    pub(crate) state: String,
    pub(crate) request: String,
    pub(crate) attempt: u32,
    /// What it exited with, written just before it exited; `None`: it never got there (killed).
    pub(crate) exit: Option<i32>,
}

pub(crate) fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

// ---------------------------------------------------------------------------------------------
// Running duet and reading back what it left, for the tests that kill it (crash.rs, soak.rs):
// how a process ended, the journal read the way duet's reader does, and the state a finished
// cycle leaves, compared with an uninterrupted run's.

/// How a duet process ended, and what it printed.
pub(crate) struct Exit {
    pub(crate) code: Option<i32>,
    pub(crate) signal: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Exit {
    pub(crate) fn new(status: ExitStatus, stdout: &[u8], stderr: &[u8]) -> Self {
        Self {
            code: status.code(),
            signal: status.signal(),
            stdout: String::from_utf8_lossy(stdout).into_owned(),
            stderr: String::from_utf8_lossy(stderr).into_owned(),
        }
    }

    pub(crate) fn killed(&self) -> bool {
        self.signal == Some(nix::sys::signal::Signal::SIGKILL as i32)
    }

    /// In either stream: what the user sees on the terminal.
    pub(crate) fn says(&self, fragment: &str) -> bool {
        self.stdout.contains(fragment) || self.stderr.contains(fragment)
    }

    pub(crate) fn show(&self) -> String {
        let cut = |s: &str| {
            let s = s.trim_end();
            let mut from = s.len().saturating_sub(1500);
            while !s.is_char_boundary(from) {
                from += 1;
            }
            if from > 0 { format!("...{}", &s[from..]) } else { s.to_owned() }
        };
        let how = match (self.code, self.signal) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => "no exit status".to_owned(),
        };
        format!("{how}\n  stdout: {}\n  stderr: {}", cut(&self.stdout), cut(&self.stderr))
    }
}

/// `duet ARGS` on the rig, with extra environment; never panics on the outcome.
pub(crate) fn exec(m: &Machine, args: &[&str], env: &[(&str, &str)]) -> Exit {
    let mut duet = m.duet(args);
    for (name, value) in env {
        duet = duet.env(name, value);
    }
    let out = duet.spawn().wait_with_output().expect("wait for duet");
    Exit::new(out.status, &out.stdout, &out.stderr)
}

/// `duet status --json`, or why it could not be had.
pub(crate) fn status_of(m: &Machine) -> Result<Value, String> {
    let out = exec(m, &["status", "--json"], &[]);
    if out.code != Some(0) {
        return Err(format!("`duet status --json`: {}", out.show()));
    }
    serde_json::from_str(&out.stdout).map_err(|e| format!("`duet status --json` is not JSON ({e}): {}", out.stdout))
}

pub(crate) fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

// The journal, read the way duet's reader does.

/// The records of a journal (`{"seq", "t", "e"}`), every line checked: the header, a complete
/// last line, each CRC-32 and the sequence.
pub(crate) fn read_journal(path: &Path) -> Result<Vec<Value>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| format!("{} is not UTF-8", path.display()))?;
    let body = text.strip_prefix("duet-journal 1\n").ok_or_else(|| format!("{} has no header", path.display()))?;
    if !body.is_empty() && !body.ends_with('\n') {
        return Err(format!("{}: the last record is incomplete", path.display()));
    }
    let mut records = Vec::new();
    for (i, line) in body.lines().enumerate() {
        let at = || format!("{} line {}", path.display(), i + 2);
        let (crc, json) = line.split_once(' ').ok_or_else(|| format!("{}: no checksum", at()))?;
        let crc = u32::from_str_radix(crc, 16).ok().filter(|_| crc.len() == 8);
        if crc != Some(crc32fast::hash(json.as_bytes())) {
            return Err(format!("{}: the checksum does not match", at()));
        }
        let mut record: Value = serde_json::from_str(json).map_err(|e| format!("{}: {e}", at()))?;
        flatten_entry(&mut record);
        if record["seq"].as_u64() != Some(i as u64 + 1) {
            return Err(format!("{}: seq {} where {} was expected", at(), record["seq"], i + 1));
        }
        records.push(record);
    }
    Ok(records)
}

/// A record's entry is `{"KIND": {fields}}`; the tests read it as `{"type": "KIND", fields}`.
fn flatten_entry(record: &mut Value) {
    if let Some((kind, fields)) = record["e"].as_object().and_then(|e| e.iter().next()) {
        let mut flat = fields.as_object().cloned().unwrap_or_default();
        flat.insert("type".into(), Value::String(kind.clone()));
        record["e"] = Value::Object(flat);
    }
}

/// The one finished session under `history/`.
pub(crate) fn history_session(m: &Machine) -> Result<PathBuf, String> {
    let dir = m.state().join("history");
    let entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .map(|e| e.expect("entry").path())
        .collect();
    match entries.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!("{} holds {entries:?}, not one finished session", dir.display())),
    }
}

/// The upgrade state a request runs in, as the actions see it (`ACTIVE_UPGRADE_STATE`).
pub(crate) fn state_of(request: &str) -> &'static str {
    match request {
        "CheckReadiness" | "Finish" => "Idle",
        "PrepareSplit" => "PrepareSplit",
        "ExecuteSplit" | "Upgrade" => "Split",
        "PrepareMerge" => "PrepareMerge",
        "ExecuteMerge" => "Merge",
        "Commit" => "Commit",
        _ => "Abort",
    }
}

// The state a finished cycle leaves.

/// What a user can observe once a cycle is over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Final {
    /// `duet status --json`, the session id, the driver and the temporary path made stable.
    pub(crate) status: Value,
    /// The simulated machine (`sim/state.json`): phase and both sides' services.
    pub(crate) sim: Value,
    /// The state directory's entries, `history` as how many sessions it holds.
    pub(crate) entries: Vec<String>,
    /// Every action run the recorder saw, `step|state|request` -> how many times.
    pub(crate) runs: BTreeMap<String, usize>,
    /// Steps the finished session's journal records as completed (done, or found done when
    /// reconciling), `REQUEST step` -> how many times: each once, whatever the kills.
    pub(crate) completed: BTreeMap<String, usize>,
}

pub(crate) fn stable(value: &Value, root: &str) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace(root, "<tmp>")),
        Value::Array(items) => Value::Array(items.iter().map(|v| stable(v, root)).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), stable(v, root))).collect()),
        other => other.clone(),
    }
}

pub(crate) fn runs(m: &Machine) -> BTreeMap<String, usize> {
    let mut runs = BTreeMap::new();
    for side in ["Production", "Upgrade"] {
        for line in m.recorded(side) {
            let f: Vec<&str> = line.split('|').collect();
            *runs.entry(format!("{}|{}|{}", f[0], f[2], f[3])).or_default() += 1;
        }
    }
    runs
}

pub(crate) fn entries(m: &Machine) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(m.state())
        .map(|d| d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    for name in &mut names {
        if name == "history" {
            let n = std::fs::read_dir(m.state().join("history")).map(Iterator::count).unwrap_or_default();
            *name = format!("history ({n} sessions)");
        }
    }
    names.sort();
    names
}

pub(crate) fn final_state(m: &Machine) -> Result<Final, String> {
    let root = m.dir.path().display().to_string();
    let mut status = stable(&status_of(m)?, &root);
    if status["session"].is_string() {
        status["session"] = "<session id>".into();
    }
    if status["driver"].is_object() {
        status["driver"]["pid"] = "<pid>".into();
        status["driver"]["since"] = "<time>".into();
    }
    let mut sim: Value =
        serde_json::from_str(&m.sim_state()).map_err(|e| format!("sim/state.json is not JSON: {e}"))?;
    // When the disks finish resynchronising: a time.
    sim.as_object_mut().ok_or("sim/state.json is not an object")?.remove("resync_until_ms");
    let completed = history_session(m)
        .and_then(|session| read_journal(&session.join("journal")))
        .map(|records| completions(&records))
        .unwrap_or_default();
    Ok(Final { status, sim: stable(&sim, &root), entries: entries(m), runs: runs(m), completed })
}

pub(crate) fn completions(records: &[Value]) -> BTreeMap<String, usize> {
    let mut done = BTreeMap::new();
    for e in records.iter().map(|r| &r["e"]) {
        let completed = ["success", "reconciled", "skipped"].contains(&text(&e["result"]["outcome"]));
        if e["type"] == "step-finished" && completed {
            *done.entry(format!("{} {}", text(&e["request"]), text(&e["step"]))).or_default() += 1;
        }
    }
    done
}

/// How `got` differs from `want`. An action run in `may_repeat` (`step|state`) may have run once
/// more than in `want`.
pub(crate) fn differences(want: &Final, got: &Final, may_repeat: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    if want.status != got.status {
        out.push(format!("status --json differs:\n  want {}\n  got  {}", want.status, got.status));
    }
    if want.sim != got.sim {
        out.push(format!("the simulated machine differs:\n  want {}\n  got  {}", want.sim, got.sim));
    }
    if want.entries != got.entries {
        out.push(format!("the state directory differs: want {:?}, got {:?}", want.entries, got.entries));
    }
    if want.completed != got.completed {
        let keys: BTreeSet<&String> = want.completed.keys().chain(got.completed.keys()).collect();
        for key in keys {
            let (w, g) = (want.completed.get(key).unwrap_or(&0), got.completed.get(key).unwrap_or(&0));
            if w != g {
                out.push(format!("the journal records {key} completed {g} times, the uninterrupted run {w}"));
            }
        }
    }
    let keys: BTreeSet<&String> = want.runs.keys().chain(got.runs.keys()).collect();
    for key in keys {
        let (w, g) = (want.runs.get(key).copied().unwrap_or(0), got.runs.get(key).copied().unwrap_or(0));
        let step_state = key.rsplit_once('|').map_or(key.as_str(), |(s, _)| s);
        let slack = usize::from(may_repeat.contains(step_state));
        if g < w || g > w + slack {
            let allowed = if slack > 0 { format!(" (or {})", w + 1) } else { String::new() };
            out.push(format!("{key} ran {g} times, the uninterrupted run {w}{allowed}"));
        }
    }
    out
}

/// The journal's damaged bytes set aside (`journal.damaged-OFFSET`).
pub(crate) fn damaged_files(m: &Machine) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(m.state().join("session"))
        .expect("session")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("journal.damaged"))
        .collect();
    names.sort();
    names
}

/// Every command that would write is refused with `says`, and nothing changes.
#[track_caller]
pub(crate) fn writers_refused(m: &Machine, commands: &[&[&str]], says: &[&str]) {
    let (journal, sim, before) = (m.journal(), m.sim_state(), runs(m));
    for args in commands {
        let out = m.run(args);
        out.code(1);
        for fragment in says {
            out.stderr_has(fragment);
        }
        assert_eq!(m.journal(), journal, "`duet {}` changed the journal", args.join(" "));
        assert_eq!(m.sim_state(), sim, "`duet {}` changed the machine", args.join(" "));
        assert_eq!(runs(m), before, "`duet {}` ran actions", args.join(" "));
        assert_eq!(damaged_files(m), Vec::<String>::new(), "`duet {}` set bytes aside", args.join(" "));
    }
}
