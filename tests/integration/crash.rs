//! duet killed anywhere, as a user would meet it: at every journal record of a full cycle,
//! inside a running action (a `rerun: safe` and a `rerun: unsafe` one), while another process
//! drives the state directory, with a torn or a corrupt journal, and while a session is being
//! created. Everything goes through the real binary and the rig of `machine.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt as _;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::machine::{
    Exit, Final, Machine, damaged_files, differences, entries, exec, final_state, history_session, read_journal, runs,
    state_of, status_of, text, writers_refused,
};
use crate::support::indoc;

/// The bound of every wait: far beyond what any of them takes, so only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(60);

/// Commands a kill point may need to reach the end of the cycle before it counts as stuck.
const MAX_COMMANDS: usize = 10;

/// Steps started and not finished in `records`: `(request, step)` -> index of the start.
fn in_flight(records: &[Value]) -> BTreeMap<(String, String), usize> {
    let mut running = BTreeMap::new();
    for (i, record) in records.iter().enumerate() {
        let e = &record["e"];
        let key = (text(&e["request"]).to_owned(), text(&e["step"]).to_owned());
        match text(&e["type"]) {
            "step-started" => {
                running.insert(key, i);
            }
            "step-finished" => {
                running.remove(&key);
            }
            _ => {}
        }
    }
    running
}

/// Actions (as `step|state`) that the first `n` records show running and already launched
/// when duet died: a record other than a step start follows their start, so duet's loop had
/// polled them. Steps on the two sides run concurrently, so a kill at one side's record
/// boundary can fall inside the other side's action: that one may run again (at-least-once).
/// An action whose start is among the last records, with only step starts after it, was never
/// launched and must not run twice.
fn launched_at_the_kill(records: &[Value], n: usize) -> BTreeSet<String> {
    let prefix = &records[..n.min(records.len())];
    in_flight(prefix)
        .into_iter()
        .filter(|((_, step), i)| {
            step.starts_with("action:") && prefix[i + 1..].iter().any(|r| r["e"]["type"] != "step-started")
        })
        .map(|((request, step), _)| format!("{step}|{}", state_of(&request)))
        .collect()
}

/// The attempts (`DUET_ATTEMPT`) the recorder saw for one step in one state, in order.
fn attempts(m: &Machine, step: &str, state: &str) -> Vec<String> {
    let side = if step.ends_with("@upgrade") { "Upgrade" } else { "Production" };
    m.recorded(side)
        .iter()
        .map(|l| l.split('|').collect::<Vec<_>>())
        .filter(|f| f[0] == step && f[2] == state)
        .map(|f| f[5].to_owned())
        .collect()
}

/// The records of the finished session's journal.
fn drive_reference(m: &Machine) -> usize {
    let session = history_session(m).unwrap_or_else(|e| panic!("{e}"));
    read_journal(&session.join("journal")).unwrap_or_else(|e| panic!("{e}")).len()
}

/// An uninterrupted `duet run` of the rig's plan: how many records its journal holds, and the
/// state it leaves. Computed once for all the tests of this file.
struct Reference {
    /// Records the first `duet run` of an uninterrupted cycle writes (the kill points).
    records: usize,
    /// How that first `duet run` exits, uninterrupted.
    exit: i32,
    state: Final,
}

fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let m = Machine::new();
        let run = exec(&m, &["run", &m.plan(), "-q"], &[]);
        assert_eq!(run.code, Some(0), "the uninterrupted run: {}", run.show());
        let records = drive_reference(&m);
        let state = final_state(&m).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text(&state.status["upgrade"]), "Idle", "{:#}", state.status);
        assert_eq!(text(&state.status["operational"]), "Ready", "{:#}", state.status);
        assert!(state.status["session"].is_null(), "{:#}", state.status);
        assert!(state.runs.contains_key("action:save@production|Merge|Backup"), "{:?}", state.runs);
        assert_eq!(state.completed.get("Finish platform:finish"), Some(&1), "{:?}", state.completed);
        assert!(state.completed.values().all(|&n| n == 1), "{:?}", state.completed);
        Reference { records, exit: 0, state }
    })
}

// ---------------------------------------------------------------------------------------------
// 1. A kill at every record boundary of a full cycle.

/// After `duet run` died, what a user does until the cycle is over: `duet resume` while a
/// request is interrupted; `duet retry` once the operator has checked an action marked
/// `rerun: unsafe`; when nothing is interrupted but the run had not reached its goal (`resume`
/// then says there is nothing to resume), `duet run PLAN` again. Returns the problems.
fn drive_to_the_end(m: &Machine) -> Vec<String> {
    let plan = m.plan();
    let mut problems = Vec::new();
    let mut nothing_to_resume: Option<Value> = None;
    for _ in 0..MAX_COMMANDS {
        let status = match status_of(m) {
            Ok(s) => s,
            Err(e) => return vec![e],
        };
        let (upgrade, operational) = (text(&status["upgrade"]), text(&status["operational"]));
        let at = format!("in {upgrade} ({operational}{})", if status["session"].is_null() { "" } else { ", session" });
        if upgrade == "Idle" && operational == "Ready" && status["session"].is_null() {
            let finished = std::fs::read_dir(m.state().join("history")).map_or(0, Iterator::count);
            if finished > 0 {
                return problems;
            }
            // A finished session not yet moved to history/ (killed right after Finish): resume
            // archives it. No session at all: killed before it existed, nothing was split, and
            // the operator starts again.
            let finished_here = m.state().join("session/journal").exists();
            let out = if finished_here { exec(m, &["resume", "-q"], &[]) } else { exec(m, &["run", &plan, "-q"], &[]) };
            if out.code != Some(0) && !(out.code == Some(1) && out.says("aborting by itself")) {
                problems.push(format!("{at}, no session yet: `duet run PLAN`: {}", out.show()));
                return problems;
            }
            continue;
        }
        let (args, out): (&[&str], Exit) = match operational {
            "Broken" if text(&status["broken"]["message"]).contains("rerun: unsafe") => {
                (&["retry"], exec(m, &["retry", "-q"], &[]))
            }
            // An unattended run killed between a failure and the abort the plan asks for.
            "Broken" if text(&status["next"]).contains("`duet resume` aborts") => {
                (&["resume"], exec(m, &["resume", "-q"], &[]))
            }
            "Broken" => {
                problems.push(format!("{at}: Broken: {}", status["broken"]));
                return problems;
            }
            "Busy" if status["interrupted"] != true => {
                problems.push(format!("{at}: Busy but not interrupted, with nobody driving: {status}"));
                return problems;
            }
            "Busy" => (&["resume"], exec(m, &["resume", "-q"], &[])),
            _ if nothing_to_resume.as_ref() == Some(&status) => {
                let out = exec(m, &["run", &plan, "-q"], &[]);
                if out.code == Some(0) && status_of(m).as_ref() == Ok(&status) {
                    problems.push(format!(
                        "{at}: stuck: `duet resume` says there is nothing to resume, and `duet run PLAN` exits 0 \
                         without changing anything:\n  {}\n  status: {status}",
                        out.show()
                    ));
                    return problems;
                }
                (&["run", "PLAN"], out)
            }
            _ => {
                let out = exec(m, &["resume", "-q"], &[]);
                let refused = out.code == Some(1)
                    && (out.stderr.contains("nothing to resume") || out.stderr.contains("no upgrade session"));
                if refused {
                    nothing_to_resume = Some(status);
                    continue;
                }
                (&["resume"], out)
            }
        };
        let unsafe_refusal = args == ["resume"] && out.code == Some(1) && out.says("rerun: unsafe");
        // An unattended run that failed and aborted by itself, as the plan says, exits 1.
        let aborted_by_duet = out.code == Some(1) && out.says("aborting by itself");
        if (out.code != Some(0) && !unsafe_refusal && !aborted_by_duet) || out.says("panicked") {
            problems.push(format!("{at}: `duet {}`: {}", args.join(" "), out.show()));
            return problems;
        }
    }
    problems.push(format!("the cycle did not end within {MAX_COMMANDS} commands: {:?}", status_of(m)));
    problems
}

/// Kills `duet run` right after its journal holds `n` records, finishes the cycle as a user
/// would, and checks it ends as the uninterrupted run did. Returns the problems, and the
/// actions the kill fell inside of that did run again.
fn kill_point(n: usize, reference: &Reference, rig: fn() -> Machine) -> (Vec<String>, Vec<String>) {
    let m = rig();
    let count = n.to_string();
    let first = exec(&m, &["run", &m.plan(), "-q"], &[("DUET_KILL_AFTER_RECORDS", &count)]);
    let mut problems = Vec::new();
    let exit = Some(reference.exit);
    let as_expected = match n.cmp(&reference.records) {
        std::cmp::Ordering::Less => first.killed(),
        std::cmp::Ordering::Equal => first.killed() || first.code == exit,
        std::cmp::Ordering::Greater => first.code == exit,
    };
    if !as_expected {
        let want =
            if n < reference.records { "killed by SIGKILL".to_owned() } else { format!("exit {}", reference.exit) };
        problems.push(format!("`DUET_KILL_AFTER_RECORDS={n} duet run PLAN`: want {want}, got {}", first.show()));
    }
    let stuck = drive_to_the_end(&m);
    if !stuck.is_empty() {
        problems.extend(stuck);
        return (problems, Vec::new());
    }
    let journal = match history_session(&m).and_then(|s| read_journal(&s.join("journal")).map(|r| (s, r))) {
        Ok((session, records)) => {
            let id = session.file_name().expect("id").to_string_lossy().into_owned();
            let log = exec(&m, &["log", "--session", &id, "--format", "json"], &[]);
            if log.code != Some(0) || !log.stderr.is_empty() {
                problems.push(format!("`duet log --session {id} --format json`: {}", log.show()));
            }
            records
        }
        Err(e) => {
            problems.push(e);
            Vec::new()
        }
    };
    let may_repeat = launched_at_the_kill(&journal, n);
    match final_state(&m) {
        Ok(got) => problems.extend(differences(&reference.state, &got, &may_repeat)),
        Err(e) => problems.push(e),
    }
    let got = runs(&m);
    let repeated = may_repeat
        .into_iter()
        .filter(|s| {
            let prefix = format!("{s}|");
            let count = |r: &BTreeMap<String, usize>| -> usize {
                r.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(_, c)| c).sum()
            };
            count(&got) > count(&reference.state.runs)
        })
        .collect();
    (problems, repeated)
}

/// For every N from 1 to one past the records of a full cycle: `duet run` killed right after
/// its journal holds N records, then driven to the end as a user would. It must end as the
/// uninterrupted run did: the same status, machine and state directory, every step completed
/// once in the journal, every action run as often (an action of the other side that the kill
/// fell inside of may run once more: at-least-once), and a journal that reads back whole.
/// Each kill point has its own rig; two run at a time.
#[test]
fn a_kill_at_every_record_boundary_of_a_full_cycle_ends_as_the_uninterrupted_run() {
    every_record_boundary(reference(), Machine::new);
}

/// An unattended plan: the rig's tasks and check ([`crate::machine::UNATTENDED_TASKS`]), and an
/// approval before the commit that nobody gives, whose expiry makes duet abort by itself (then
/// `duet run` finishes the aborted session).
const UNATTENDED: &str = "
approve:
  - {id: go, before: commit, expires: 1ms, on_expiry: abort}
";

fn unattended_rig() -> Machine {
    let plan = format!("{}{}{UNATTENDED}", crate::machine::PLAN, crate::machine::UNATTENDED_TASKS);
    Machine::with(&plan, crate::machine::INVENTORY)
}

/// The uninterrupted unattended cycle: `duet run` aborts by itself at the expired approval,
/// and a second `duet run` finishes the aborted session.
fn unattended_reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let m = unattended_rig();
        let run = exec(&m, &["run", &m.plan(), "-q"], &[]);
        assert_eq!(run.code, Some(1), "the unattended run aborts by itself: {}", run.show());
        let records = read_journal(&m.state().join("session/journal")).unwrap_or_else(|e| panic!("{e}")).len();
        let status = status_of(&m).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text(&status["aborted_by_duet"]["step"]), "approve:go", "{status:#}");
        let finish = exec(&m, &["run", &m.plan(), "-q"], &[]);
        assert_eq!(finish.code, Some(0), "finishing the aborted session: {}", finish.show());
        let state = final_state(&m).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text(&state.status["upgrade"]), "Idle", "{:#}", state.status);
        assert_eq!(state.completed.get("Upgrade task:cu@upgrade"), Some(&1), "{:?}", state.completed);
        assert_eq!(state.completed.get("AbortFromMerge platform:abort"), Some(&1), "{:?}", state.completed);
        assert!(state.completed.values().all(|&n| n == 1), "{:?}", state.completed);
        Reference { records, exit: 1, state }
    })
}

/// The same for the unattended plan: tasks, a restart, a check, an expired approval and the
/// automatic abort it starts, killed at each of its records.
#[test]
fn a_kill_at_every_record_boundary_of_an_unattended_cycle_ends_as_the_uninterrupted_run() {
    every_record_boundary(unattended_reference(), unattended_rig);
}

fn every_record_boundary(reference: &Reference, rig: fn() -> Machine) {
    let started = Instant::now();
    let last = reference.records + 1;
    let next = AtomicUsize::new(1);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n > last {
                        break;
                    }
                    let result = kill_point(n, reference, rig);
                    results.lock().expect("results").push((n, result));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|(n, _)| *n);
    let repeated: Vec<String> = results
        .iter()
        .filter(|(_, (_, r))| !r.is_empty())
        .map(|(n, (_, r))| format!("{n}: {}", r.join(", ")))
        .collect();
    eprintln!(
        "{} kill points (the journal of a full cycle holds {} records) in {:.1?}; a concurrent action the \
         kill fell inside of ran again at: {repeated:?}",
        results.len(),
        reference.records,
        started.elapsed()
    );
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, (p, _))| !p.is_empty())
        .map(|(n, (p, _))| format!("kill after record {n}:\n  {}", p.join("\n  ")))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} kill points went wrong:\n\n{}",
        failed.len(),
        results.len(),
        failed.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// 2. A kill inside a running action.

/// Makes the recorder block in `step` (every request that runs it) until [`release`].
fn block(m: &Machine, step: &str) {
    std::fs::write(m.rec().join(format!("block-{step}")), "").expect("marker");
}

/// Polls `ready` until it holds, at most [`PATIENCE`].
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < PATIENCE, "waited {PATIENCE:?} for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `duet run PLAN` and waits until it is blocked in `step` (`request` in its journal)
/// with nothing else running, so a kill now falls inside that one action and nowhere else.
fn run_until_blocked(m: &Machine, request: &str, step: &str) -> Child {
    block(m, step);
    let mut child = m.duet(&["run", &m.plan()]).spawn();
    let journal = m.state().join("session/journal");
    wait_for(&format!("duet to block in {step}"), || {
        if let Ok(Some(status)) = child.try_wait() {
            let read = |pipe: Option<&mut dyn std::io::Read>| {
                let mut bytes = Vec::new();
                pipe.map(|p| p.read_to_end(&mut bytes));
                bytes
            };
            let stdout = read(child.stdout.as_mut().map(|p| p as &mut dyn std::io::Read));
            let stderr = read(child.stderr.as_mut().map(|p| p as &mut dyn std::io::Read));
            panic!("duet ended before blocking in {step}: {}", Exit::new(status, &stdout, &stderr).show());
        }
        let running = read_journal(&journal).map(|r| in_flight(&r).into_keys().collect::<Vec<_>>());
        m.rec().join("blocked").exists() && running == Ok(vec![(request.to_owned(), step.to_owned())])
    });
    child
}

fn pid_of(child: &Child) -> nix::unistd::Pid {
    nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"))
}

/// SIGKILLs duet, as `kill -9` does.
fn kill(mut child: Child) {
    nix::sys::signal::kill(pid_of(&child), nix::sys::signal::Signal::SIGKILL).expect("kill duet");
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(nix::sys::signal::Signal::SIGKILL as i32), "{status:?}");
}

/// Whether a process runs (a zombie waiting for its new parent to reap it does not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

/// Lets the blocked recorder go, and stops it if it outlived duet.
fn release(m: &Machine) {
    std::fs::write(m.rec().join("go"), "").expect("go");
    for marker in std::fs::read_dir(m.rec()).expect("rec").flatten() {
        if marker.file_name().to_string_lossy().starts_with("block-") {
            std::fs::remove_file(marker.path()).expect("unblock");
        }
    }
    let pid: i32 = std::fs::read_to_string(m.rec().join("blocked")).expect("pid").trim().parse().expect("a pid");
    let start = Instant::now();
    while alive(pid) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    if alive(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    std::fs::remove_file(m.rec().join("blocked")).expect("blocked");
}

/// The reference, with `key` (`step|state|request`) run `extra` more times.
fn reference_plus(key: &str, extra: usize) -> Final {
    let mut want = reference().state.clone();
    *want.runs.get_mut(key).unwrap_or_else(|| panic!("the uninterrupted run has no {key}")) += extra;
    want
}

#[track_caller]
fn assert_final(m: &Machine, want: &Final) {
    let got = final_state(m).unwrap_or_else(|e| panic!("{e}"));
    let diff = differences(want, &got, &BTreeSet::new());
    assert!(diff.is_empty(), "the cycle did not end as the uninterrupted run:\n{}", diff.join("\n"));
}

#[test]
fn a_kill_inside_a_safe_action_runs_it_again_as_attempt_2() {
    let m = Machine::new();
    let step = "action:adv-late@upgrade";
    kill(run_until_blocked(&m, "ExecuteSplit", step));
    release(&m);
    assert_eq!(attempts(&m, step, "Split"), ["1"]);
    let status = m.status();
    assert_eq!((text(&status["upgrade"]), text(&status["operational"])), ("Split", "Busy"), "{status:#}");
    assert_eq!((&status["interrupted"], &status["driver"]), (&Value::Bool(true), &Value::Null), "{status:#}");

    let resume = m.run(&["resume"]);
    resume.code(0).stdout_has(&format!("{step} was interrupted at attempt 1; running it again"));
    assert_eq!(attempts(&m, step, "Split"), ["1", "2"], "resume re-runs it with DUET_ATTEMPT=2");
    // `duet resume` carried on to the goal of `duet run`: everything else ran exactly once.
    assert_final(&m, &reference_plus(&format!("{step}|Split|ExecuteSplit"), 1));
}

#[test]
fn a_kill_inside_an_unsafe_action_leaves_it_to_the_operator() {
    let m = Machine::new();
    let step = "action:save@production";
    kill(run_until_blocked(&m, "ExecuteMerge", step));
    release(&m);

    let resume = exec(&m, &["resume"], &[]);
    assert_eq!(resume.code, Some(1), "{}", resume.show());
    for fragment in ["custom action `save` was running when duet stopped", "rerun: unsafe", "`duet retry`"] {
        assert!(resume.says(fragment), "resume does not say {fragment:?}: {}", resume.show());
    }
    assert_eq!(attempts(&m, step, "Merge"), ["1"], "resume must not run an unsafe action again");
    let status = m.status();
    assert_eq!((text(&status["upgrade"]), text(&status["operational"])), ("Merge", "Broken"), "{status:#}");
    assert_eq!(text(&status["broken"]["step"]), step, "{status:#}");
    assert!(text(&status["broken"]["message"]).contains("rerun: unsafe"), "{status:#}");
    // Broken is not interrupted: resume keeps refusing, and says what to do.
    m.run(&["resume"]).code(1).stderr_has(&format!("Broken at step {step}")).stderr_has("duet retry");

    // The operator checked: `duet retry` runs it again, finishes ExecuteMerge, and carries on to
    // the goal of `duet run` (docs/runtime.md: retry and resume carry on to that goal).
    m.run(&["retry"]).code(0).stdout_has("finished");
    let saves: Vec<String> = m.runs().into_iter().filter(|r| r.starts_with(&format!("{step}|"))).collect();
    assert_eq!(saves, [format!("{step}|Backup|1"), format!("{step}|Backup|2")], "killed at attempt 1, retried as 2");
    m.run(&["resume"]).code(1).stderr_has("no upgrade session");
    assert_final(&m, &reference_plus(&format!("{step}|Merge|Backup"), 1));
}

// ---------------------------------------------------------------------------------------------
// 3. Two processes, one state directory.

#[test]
fn a_second_process_is_refused_while_one_drives_and_status_names_the_driver() {
    let m = Machine::new();
    let child = run_until_blocked(&m, "ExecuteSplit", "action:stop@upgrade");
    let pid = child.id();
    let (journal, sim) = (m.journal(), m.sim_state());
    let lock = std::fs::read(m.state().join("lock")).expect("lock");
    for args in [&["merge"][..], &["resume"], &["abort"], &["run", &m.plan()]] {
        m.run(args)
            .code(75) // exit::BUSY: nothing done, try again later
            .stderr_has(&format!("another duet process is driving {}: pid {pid} since", m.state().display()))
            .stderr_has("duet run");
    }
    assert_eq!(m.journal(), journal, "a refused command wrote to the journal");
    assert_eq!(m.sim_state(), sim, "a refused command changed the machine");
    assert_eq!(std::fs::read(m.state().join("lock")).expect("lock"), lock, "a refused command rewrote the lock");

    let status = m.status();
    assert_eq!(status["driver"]["pid"], pid, "{status:#}");
    assert!(text(&status["driver"]["command"]).contains(" run "), "{status:#}");
    assert_eq!((text(&status["upgrade"]), text(&status["operational"])), ("Split", "Busy"), "{status:#}");
    assert_eq!(status["interrupted"], false, "{status:#}");
    m.run(&["status"]).code(0).stdout_has(&format!("Driven by: pid {pid} since"));
    m.run(&["log"]).code(0).stdout_has("action:stop@upgrade started");

    std::fs::write(m.rec().join("go"), "").expect("go");
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    let out = result.recv_timeout(PATIENCE).expect("duet finishes once released").expect("output");
    let out = Exit::new(out.status, &out.stdout, &out.stderr);
    assert_eq!(out.code, Some(0), "{}", out.show());
    assert!(out.says("finished"), "{}", out.show());
    let status = m.status();
    assert_eq!((text(&status["upgrade"]), &status["driver"]), ("Idle", &Value::Null), "{status:#}");
}

/// The loser of a lock race reads the lock file while the winner has the lock but has not yet
/// written its pid (or a stale pid of the one before): it must name the process the kernel
/// says holds the lock, never the one the file names.
#[test]
fn a_refusal_names_the_process_that_holds_the_lock_not_the_one_the_file_names() {
    use nix::fcntl::{FcntlArg, fcntl};
    use nix::libc;
    let m = Machine::new();
    m.run(&["split", &m.plan()]).code(0);
    let path = m.state().join("lock");
    // This test process takes the lock, as a winner does, and leaves a stale content behind.
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).expect("lock file");
    std::fs::write(&path, "1\nduet run /old/plan.yaml\n2026-01-01T00:00:00Z\n").expect("stale content");
    let lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    fcntl(&file, FcntlArg::F_OFD_SETLK(&lock)).expect("the lock is free");
    let me = std::process::id();
    for args in [&["merge"][..], &["abort"]] {
        let r = m.run(args);
        r.code(75).stderr_has(&format!(
            "is driving {}: pid {me} (it has just taken the lock; its command is not recorded yet)",
            m.state().display()
        ));
        assert!(!r.stderr.contains("pid 1 ") && !r.stderr.contains("/old/plan.yaml"), "{}", r.stderr);
    }
    let status = m.status();
    assert_eq!(status["driver"]["pid"], me, "{status:#}");
    assert_eq!(status["driver"]["command"], Value::Null, "{status:#}");
    m.run(&["status"]).code(0).stdout_has(&format!("Driven by: pid {me} (it has just taken the lock"));
    drop(file);
    m.run(&["merge"]).code(0);
}

// ---------------------------------------------------------------------------------------------
// 4 and 5. A damaged journal.

/// `duet split`: a session Ready in Split, its journal's bytes and records.
fn split(m: &Machine) -> (Vec<u8>, Vec<Value>) {
    m.run(&["split", &m.plan()]).code(0);
    let status = m.status();
    assert_eq!((text(&status["upgrade"]), text(&status["operational"])), ("Split", "Ready"), "{status:#}");
    (m.journal(), read_journal(&m.state().join("session/journal")).unwrap_or_else(|e| panic!("{e}")))
}

#[test]
fn a_torn_journal_tail_stops_writers_until_resume_repairs_it() {
    let m = Machine::new();
    let (whole, records) = split(&m);
    let path = m.state().join("session/journal");
    let torn = &whole[..whole.len() - 5];
    std::fs::write(&path, torn).expect("tear the tail");
    // The last record, now incomplete: its line and the byte where it starts.
    let offset = torn.iter().rposition(|&b| b == b'\n').expect("a newline") + 1;
    let line = records.len() + 1;
    let damage = format!("{} has a torn or corrupt tail at line {line}, byte {offset}", path.display());
    let plan = m.plan();
    writers_refused(
        &m,
        &[&["merge"], &["abort"], &["resume"], &["run", &plan]],
        &[&damage, "incomplete", "duet resume --repair-journal"],
    );
    assert_eq!(m.journal(), torn);

    m.run(&["status"]).code(0).stdout_has(&format!("Journal: {damage}")).stdout_has("--repair-journal");
    let status = m.status();
    assert!(text(&status["journal_damage"]).contains(&damage), "{status:#}");
    assert_eq!(text(&status["operational"]), "Broken", "{status:#}");
    // `duet log` prints every intact record, and where the journal ends.
    let log = m.run(&["log", "--format", "json"]);
    log.code(0).stderr_has("the journal is damaged");
    let seqs: Vec<u64> =
        log.json().as_array().expect("entries").iter().map(|e| e["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, (1..records.len() as u64).collect::<Vec<_>>());
    m.run(&["log"]).code(0).stdout_has(&format!("error: {damage}"));

    let before = runs(&m);
    let aside = format!("journal.damaged-{offset}");
    m.run(&["resume", "--repair-journal"])
        .code(0)
        .stdout_has(&format!("moved to {}", path.with_file_name(&aside).display()))
        .stdout_has(&format!("the journal continues after record {}", records.len() - 1));
    assert_eq!(damaged_files(&m), std::slice::from_ref(&aside));
    assert_eq!(std::fs::read(m.state().join("session").join(&aside)).expect("aside"), &torn[offset..]);
    // What resume did: the torn record was ExecuteSplit's end; every step of it had finished, so
    // it ran nothing again and wrote that end once more. `duet split` has no goal beyond Split.
    assert_eq!(runs(&m), before, "resume ran actions again");
    let repaired = read_journal(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(repaired.len(), records.len());
    assert_eq!(repaired[..records.len() - 1], records[..records.len() - 1]);
    let end = &repaired[records.len() - 1]["e"];
    assert_eq!((text(&end["type"]), text(&end["request"])), ("request-finished", "ExecuteSplit"), "{end}");
    assert!(end.get("broken").is_none(), "{end}");
    let status = m.status();
    assert_eq!((text(&status["upgrade"]), text(&status["operational"])), ("Split", "Ready"), "{status:#}");
    assert!(status["journal_damage"].is_null(), "{status:#}");

    m.run(&["merge"]).code(0);
    let status = m.status();
    assert_eq!((text(&status["upgrade"]), text(&status["operational"])), ("Merge", "Ready"), "{status:#}");
}

#[test]
fn a_corrupt_record_followed_by_intact_ones_is_refused_even_by_repair() {
    let m = Machine::new();
    let (whole, records) = split(&m);
    let path = m.state().join("session/journal");
    // Flip one digit of the time of a record in the middle: still JSON, its checksum fails.
    let line = records.len() / 2 + 1;
    let start = whole.split_inclusive(|&b| b == b'\n').take(line - 1).map(<[u8]>::len).sum::<usize>();
    let field = whole[start..].windows(4).position(|w| w == b"\"t\":").expect("a time") + start + 5;
    let mut bytes = whole.clone();
    bytes[field] ^= 0x01;
    std::fs::write(&path, &bytes).expect("corrupt");
    let damage = format!("{} is corrupt at line {line}, byte {start}: the record fails its checksum", path.display());
    let plan = m.plan();
    writers_refused(
        &m,
        &[&["merge"], &["abort"], &["resume"], &["resume", "--repair-journal"], &["run", &plan]],
        &[&damage, "not a crash artefact"],
    );
    assert_eq!(m.journal(), bytes);
    let status = m.status();
    assert!(text(&status["journal_damage"]).contains(&damage), "{status:#}");
    let log = m.run(&["log", "--format", "json"]);
    log.code(0).stderr_has(&damage);
    assert_eq!(log.json().as_array().expect("entries").len(), line - 2, "the intact records before the damage");
}

// ---------------------------------------------------------------------------------------------
// 6. The session directory exists whole or not at all.

/// A new readiness check replaces the last one's record only once it exists whole: a kill while
/// it is being built leaves the last record as it was (it used to be deleted first).
#[test]
fn a_kill_while_a_readiness_check_is_set_up_keeps_the_last_checks_record() {
    let m = Machine::new();
    m.run(&["readiness", &m.plan()]).code(0);
    let record = m.state().join("readiness/journal");
    let last = std::fs::read(&record).expect("the last check's journal");
    let out = exec(&m, &["readiness", &m.plan()], &[("DUET_KILL_AFTER_RECORDS", "1")]);
    assert!(out.killed(), "{}", out.show());
    assert_eq!(std::fs::read(&record).expect("still there"), last, "the last check's record is intact");
    m.run(&["log"]).code(0).stdout_has("readiness check passed");

    // Killed right after it replaced the record: the new record is whole, the old one gone.
    let out = exec(&m, &["readiness", &m.plan()], &[("DUET_KILL_AFTER_RECORDS", "2")]);
    assert!(out.killed(), "{}", out.show());
    let now = read_journal(&record).expect("a whole journal");
    assert_eq!(now.len(), 2, "begin and operation");
    assert_ne!(std::fs::read(&record).expect("record"), last);
    m.run(&["readiness", &m.plan()]).code(0);
    let left: Vec<String> =
        entries(&m).into_iter().filter(|n| n.starts_with(".new-") || n.starts_with(".old-")).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_kill_after_the_first_record_leaves_no_session_or_a_whole_one() {
    let m = Machine::new();
    let out = exec(&m, &["split", &m.plan()], &[("DUET_KILL_AFTER_RECORDS", "1")]);
    assert!(out.killed(), "`DUET_KILL_AFTER_RECORDS=1 duet split PLAN` was not killed: {}", out.show());
    let session = m.state().join("session");
    let next = if session.exists() {
        for part in ["journal", "plan/compiled.json", "plan/sources.json"] {
            assert!(session.join(part).is_file(), "a half-built session: no {part}");
        }
        let records = read_journal(&session.join("journal")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text(&records[0]["e"]["type"]), "begin");
        m.run(&["resume"])
    } else {
        let status = m.status();
        assert!(status["session"].is_null(), "{status:#}");
        m.run(&["split", &m.plan()])
    };
    next.code(0);
    let status = m.status();
    assert_eq!((text(&status["upgrade"]), text(&status["operational"])), ("Split", "Ready"), "{status:#}");
    let left: Vec<String> =
        entries(&m).into_iter().filter(|n| n.starts_with(".new-") || n.starts_with(".old-")).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_half_built_session_directory_is_never_taken_for_a_session() {
    let m = Machine::new();
    m.run(&["status"]).code(0);
    // What a process killed while building a session leaves: a journal, no plan snapshot.
    let half = m.state().join(".new-4000000");
    std::fs::create_dir_all(half.join("plan/sources")).expect("mkdir");
    std::fs::write(half.join("journal"), "duet-journal 1\n").expect("journal");
    let status = m.status();
    assert!(status["session"].is_null() && text(&status["upgrade"]) == "Idle", "{status:#}");
    m.run(&["split", &m.plan()]).code(0);
    assert!(!half.exists(), "the next command must sweep {}", half.display());
    let status = m.status();
    assert_eq!((text(&status["upgrade"]), text(&status["operational"])), ("Split", "Ready"), "{status:#}");
}

// ---------------------------------------------------------------------------------------------
// 4. Ctrl-C and SIGTERM (docs/reliability.md, "Signals").

fn send(child: &Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(pid_of(child), signal).expect("signal duet");
}

/// Waits until the journal shows that duet took note of the signal (so a test never races it).
fn wait_until_noted(m: &Machine, signal: &str) {
    let journal = m.state().join("session/journal");
    wait_for(&format!("duet to journal the {signal}"), || {
        read_journal(&journal).is_ok_and(|records| {
            records.iter().any(|r| {
                r["e"]["type"] == "note" && text(&r["e"]["message"]).starts_with(&format!("{signal} received"))
            })
        })
    });
}

fn ended(child: Child) -> Exit {
    let out = child.wait_with_output().expect("wait for duet");
    Exit::new(out.status, &out.stdout, &out.stderr)
}

/// The last result the journal records for `step`.
fn last_outcome(m: &Machine, step: &str) -> String {
    let records = read_journal(&m.state().join("session/journal")).unwrap_or_else(|e| panic!("{e}"));
    records
        .iter()
        .rev()
        .find(|r| r["e"]["type"] == "step-finished" && r["e"]["step"] == step)
        .map(|r| text(&r["e"]["result"]["outcome"]).to_owned())
        .unwrap_or_default()
}

#[test]
fn a_first_ctrl_c_lets_the_running_action_finish_then_starts_nothing_new() {
    let m = Machine::new();
    let step = "action:adv-late@upgrade";
    let child = run_until_blocked(&m, "ExecuteSplit", step);
    send(&child, nix::sys::signal::Signal::SIGINT);
    wait_until_noted(&m, "SIGINT");
    let before = read_journal(&m.state().join("session/journal")).expect("journal").len();
    release(&m);
    let out = ended(child);
    assert_eq!(out.code, Some(130), "128 + SIGINT: {}", out.show());
    for fragment in ["SIGINT: starting no new step", "stopped by SIGINT", "`duet resume` continues"] {
        assert!(out.says(fragment), "duet does not say {fragment:?}: {}", out.show());
    }
    assert_eq!(last_outcome(&m, step), "success", "the running action finished and was journaled");
    let records = read_journal(&m.state().join("session/journal")).expect("journal");
    let started: Vec<&Value> = records[before..].iter().filter(|r| r["e"]["type"] == "step-started").collect();
    assert!(started.is_empty(), "steps started after the signal: {started:?}");
    // It was ExecuteSplit's last step: the split is done, and `run` went no further.
    let status = m.status();
    assert_eq!((text(&status["upgrade"]), text(&status["operational"])), ("Split", "Ready"), "{status:#}");
    assert!(text(&status["next"]).contains("`duet resume` carries on"), "{status:#}");

    m.run(&["resume"]).code(0);
    assert_eq!(attempts(&m, step, "Split"), ["1"], "it completed before duet stopped: it never runs again");
    assert_final(&m, &reference().state);
}

#[test]
fn a_second_signal_stops_the_action_tree_and_resume_runs_a_safe_action_again() {
    let m = Machine::new();
    let step = "action:adv-late@upgrade";
    let child = run_until_blocked(&m, "ExecuteSplit", step);
    let pid: i32 = std::fs::read_to_string(m.rec().join("blocked")).expect("pid").trim().parse().expect("pid");
    send(&child, nix::sys::signal::Signal::SIGTERM);
    wait_until_noted(&m, "SIGTERM");
    send(&child, nix::sys::signal::Signal::SIGINT);
    let out = ended(child);
    assert_eq!(out.code, Some(143), "128 + SIGTERM, the first signal: {}", out.show());
    assert!(out.says("stopping the running steps"), "{}", out.show());
    assert!(!alive(pid), "the action's process tree outlived duet");
    assert_eq!(last_outcome(&m, step), "interrupted");
    release(&m);

    m.run(&["resume"]).code(0).stdout_has(&format!("{step} was interrupted at attempt 1; running it again"));
    assert_eq!(attempts(&m, step, "Split"), ["1", "2"]);
    assert_final(&m, &reference_plus(&format!("{step}|Split|ExecuteSplit"), 1));
}

#[test]
fn a_second_signal_inside_an_unsafe_action_leaves_it_to_the_operator() {
    let m = Machine::new();
    let step = "action:save@production";
    let child = run_until_blocked(&m, "ExecuteMerge", step);
    send(&child, nix::sys::signal::Signal::SIGINT);
    wait_until_noted(&m, "SIGINT");
    send(&child, nix::sys::signal::Signal::SIGINT);
    let out = ended(child);
    assert_eq!(out.code, Some(130), "{}", out.show());
    assert_eq!(last_outcome(&m, step), "interrupted");
    release(&m);

    let resume = exec(&m, &["resume"], &[]);
    assert_eq!(resume.code, Some(1), "{}", resume.show());
    assert!(resume.says("rerun: unsafe"), "{}", resume.show());
    assert_eq!(attempts(&m, step, "Merge"), ["1"], "resume must not run an unsafe action again");
    m.run(&["retry"]).code(0);
    assert_final(&m, &reference_plus(&format!("{step}|Merge|Backup"), 1));
}

#[test]
fn a_second_signal_abandons_a_platform_operation_and_resume_reconciles_it() {
    let slow = crate::machine::INVENTORY.replace("split: 0s", "split: 1h");
    assert_ne!(slow, crate::machine::INVENTORY);
    let m = Machine::with(crate::machine::PLAN, &slow);
    let child = m.duet(&["split", &m.plan()]).spawn();
    let journal = m.state().join("session/journal");
    wait_for("the split to start", || {
        read_journal(&journal)
            .is_ok_and(|r| in_flight(&r).contains_key(&("ExecuteSplit".into(), "platform:split".into())))
    });
    send(&child, nix::sys::signal::Signal::SIGINT);
    wait_until_noted(&m, "SIGINT");
    send(&child, nix::sys::signal::Signal::SIGINT);
    let out = ended(child);
    assert_eq!(out.code, Some(130), "{}", out.show());
    assert_eq!(last_outcome(&m, "platform:split"), "interrupted", "abandoned, not waited for");
    let status = m.status();
    assert_eq!((text(&status["hardware"]), text(&status["operational"])), ("FaultTolerant", "Busy"), "{status:#}");

    // The machine never split: resume runs the operation again. (The simulated split is made
    // quick first: the machine's copy of the inventory and the rig's, alike.)
    m.write("inventory.yaml", crate::machine::INVENTORY);
    std::fs::write(m.state().join("sim/inventory.yaml"), crate::machine::INVENTORY).expect("inventory");
    m.run(&["resume"]).code(0).stdout_has("platform:split was interrupted at attempt 1; running it again");
    let status = m.status();
    assert_eq!((text(&status["upgrade"]), text(&status["operational"])), ("Split", "Ready"), "{status:#}");
    assert_eq!(text(&status["hardware"]), "ProductionSide", "{status:#}");
}

/// Kills a process when dropped: what a test started does not outlive it, pass or fail.
struct Reap(i32);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), nix::sys::signal::Signal::SIGKILL);
    }
}

#[test]
fn a_third_signal_exits_at_once_and_resume_stops_what_was_left() {
    // An action that ignores SIGTERM on its first attempt, so the second signal's stop waits
    // for the grace before SIGKILL; the third comes meanwhile.
    let plan = indoc(
        r"
        version: 1
        title: stubborn
        disks: {system: [disk0, disk1], data: [disk2]}
        actions:
          - {id: stubborn, file: stubborn, control: advanced, timing: early}
        ",
    );
    let m = Machine::with(&plan, crate::machine::INVENTORY);
    m.write(
        "plans/stubborn",
        "#!/bin/sh\nif [ \"$DUET_ATTEMPT\" = 1 ] && [ \"$ACTIVE_UPGRADE_REQUEST\" = PrepareSplit ]; then\n  \
         trap '' TERM\n  echo $$ > \"$REC/stubborn\"\n  while :; do sleep 0.05; done\nfi\n",
    );
    crate::machine::make_executable(&m.path("plans/stubborn"));
    let mut child = m.duet(&["run", &m.plan()]).spawn();
    wait_for("the stubborn action", || m.rec().join("stubborn").exists());
    let pid: i32 = std::fs::read_to_string(m.rec().join("stubborn")).expect("pid").trim().parse().expect("pid");
    // Whatever the test finds, the stubborn action does not outlive it.
    let _reap = Reap(pid);
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut said = String::new();
    let mut until = |fragment: &str| {
        while !said.contains(fragment) {
            let mut line = String::new();
            let n = std::io::BufRead::read_line(&mut stderr, &mut line).expect("read stderr");
            assert!(n > 0, "duet ended before saying {fragment:?}: {said}");
            said.push_str(&line);
        }
    };
    send(&child, nix::sys::signal::Signal::SIGINT);
    until("starting no new step");
    send(&child, nix::sys::signal::Signal::SIGINT);
    until("stopping the running steps");
    send(&child, nix::sys::signal::Signal::SIGINT);
    until("exiting now without journaling");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "{status:?}: {said}");
    assert!(alive(pid), "the third signal does not wait for the action");
    let records = read_journal(&m.state().join("session/journal")).expect("journal");
    let running = in_flight(&records);
    assert!(running.contains_key(&("PrepareSplit".into(), "action:stubborn@production".into())), "{running:?}");

    let resume = exec(&m, &["resume"], &[]);
    assert_eq!(resume.code, Some(0), "{}", resume.show());
    assert!(resume.says("stopped"), "resume says it stopped the leftover: {}", resume.show());
    assert!(!alive(pid), "resume stopped what the killed attempt left running");
}

#[test]
fn signals_still_work_when_stdout_and_stderr_are_closed_pipes() {
    // `duet run 2>&1 | tee run.log`: the Ctrl-C stops `tee` too.
    let m = Machine::new();
    let step = "action:adv-late@upgrade";
    let mut child = run_until_blocked(&m, "ExecuteSplit", step);
    let pid: i32 = std::fs::read_to_string(m.rec().join("blocked")).expect("pid").trim().parse().expect("pid");
    drop(child.stdout.take());
    drop(child.stderr.take());
    send(&child, nix::sys::signal::Signal::SIGINT);
    wait_until_noted(&m, "SIGINT");
    send(&child, nix::sys::signal::Signal::SIGINT);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(!alive(pid), "the second signal stopped the action");
    assert_eq!(last_outcome(&m, step), "interrupted");
    release(&m);
}

/// Found by the soak: a kill between the simulated service manager's change and its event-log
/// line lost the line for good (the repeated step found nothing left to change).
#[test]
fn a_kill_between_a_service_change_and_its_event_log_line_loses_no_line() {
    let m = Machine::new();
    block(&m, "action:stop@upgrade");
    let mut child = m.duet(&["split", &m.plan(), "-q"]).spawn();
    wait_for("stop@upgrade", || m.rec().join("blocked").exists());
    // The services' steps come next: the log becomes a FIFO, so the machine blocks writing the
    // first line, after it saved the change the line tells of.
    let log = m.state().join("sim/sides/upgrade/logs/System.log");
    let aside = log.with_extension("aside");
    std::fs::rename(&log, &aside).expect("aside");
    nix::unistd::mkfifo(&log, nix::sys::stat::Mode::S_IRWXU).expect("fifo");
    std::fs::write(m.rec().join("go"), "").expect("go");
    wait_for("a startup type set to disabled", || m.sim_state().contains("\"startup\": \"disabled\""));
    child.kill().expect("kill");
    child.wait().expect("wait");
    std::fs::remove_file(&log).expect("fifo");
    std::fs::rename(&aside, &log).expect("back");
    release(&m);

    m.run(&["resume"]).code(0);
    let system = m.upgrade_log("System");
    for service in ["W3SVC", "Reports", "AppServer"] {
        let changed = format!("The start type of the {service} service was changed from");
        assert_eq!(system.matches(&changed).count(), 1, "{changed}... once, not lost nor twice:\n{system}");
    }
}
