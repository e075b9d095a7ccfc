//! The simulated machine as the runtime drives it: its state on disk, each operation in each
//! phase (and again), the services of each side, its event logs, and its faults.

use std::path::{Path, PathBuf};

use super::*;
use crate::platform::PlatformErrorKind;

/// A machine built in `root/state` from the built-in 320Ma with instant operations and no
/// resynchronisation wait, plus `faults` (YAML flow items).
fn machine(root: &Path, faults: &str) -> Sim {
    let durations = "durations: {split: 200ms, merge: 200ms, resync: 500ms}";
    assert!(BUILT_IN.contains(durations), "the built-in inventory's durations changed: update this test");
    let instant = format!(
        "durations: {{split: 0s, merge: 0s, commit: 0s, abort: 0s, finish: 0s, resync: 0s}}\n  faults: [{faults}]"
    );
    let path = root.join("inventory.yaml");
    std::fs::write(&path, BUILT_IN.replace(durations, &instant)).unwrap();
    Sim::open(&root.join("state"), Some(&path), true).unwrap_or_else(|e| panic!("the machine builds: {e}"))
}

fn state_dir(root: &Path) -> PathBuf {
    root.join("state")
}

/// Runs `op`; the progress it reported.
async fn operate(sim: &Sim, op: Operation) -> PlatformResult<Vec<String>> {
    let mut said = Vec::new();
    sim.operate(op, &mut |p| said.push(p.message)).await.map(|()| said)
}

async fn phase(sim: &Sim) -> Phase {
    sim.observe().await.unwrap().phase
}

fn state_text(root: &Path) -> String {
    std::fs::read_to_string(Sim::state_file(&state_dir(root))).unwrap()
}

/// The messages of a side's event log, oldest first.
fn messages(sim: &Sim, side: Side, log: &str) -> Vec<String> {
    let text = std::fs::read_to_string(sim.log_file(side, log)).unwrap();
    text.lines().map(|l| l.rsplit('\t').next().unwrap().to_owned()).collect()
}

const RUNNING_AUTOMATIC: ServiceState = ServiceState { running: true, startup: Startup::Automatic };

#[tokio::test]
async fn a_new_machine_is_duplexed_with_the_inventorys_services_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let sim = machine(dir.path(), "");
    let observed = sim.observe().await.unwrap();
    assert_eq!(observed, Observed { phase: Phase::Duplexed, resyncing: false, partner: PartnerState::OsUp });
    for side in [Side::Production, Side::Upgrade] {
        assert_eq!(sim.service(side, "W3SVC").await.unwrap(), RUNNING_AUTOMATIC);
        let app = sim.service(side, "AppServer").await.unwrap();
        assert_eq!(app, ServiceState { running: true, startup: Startup::Manual });
        assert_eq!(messages(&sim, side, "System"), ["The System event log was started."]);
    }
    let unknown = sim.service(Side::Upgrade, "Nope").await.unwrap_err();
    assert_eq!(unknown.message, "the Upgrade Side has no service Nope");
}

#[tokio::test]
async fn the_state_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let sim = machine(dir.path(), "");
    operate(&sim, Operation::Split).await.unwrap();
    sim.stop_service(Side::Upgrade, "W3SVC").await.unwrap();
    sim.set_startup(Side::Upgrade, "W3SVC", Startup::Disabled).await.unwrap();
    let before = sim.snapshot();
    drop(sim);

    let again = Sim::open(&state_dir(dir.path()), None, false).unwrap();
    assert_eq!(again.snapshot(), before);
    assert_eq!(phase(&again).await, Phase::Split);
    let w3svc = again.service(Side::Upgrade, "W3SVC").await.unwrap();
    assert_eq!(w3svc, ServiceState { running: false, startup: Startup::Disabled });
    let seen = Sim::existing(&state_dir(dir.path()), None).unwrap().expect("the machine was built");
    assert_eq!(seen.snapshot(), before);
    let text = state_text(dir.path());
    assert!(text.contains("\"format\": \"duet-sim\"") && text.contains("\"version\": 1"), "{text}");
}

#[test]
fn a_machine_that_was_never_built_is_not_built_by_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    let root = state_dir(dir.path());
    assert!(Sim::existing(&root, None).unwrap().is_none());
    let refused = Sim::open(&root, None, false).err().expect("only a command that may start a session builds it");
    assert_eq!(
        refused.message,
        format!(
            "the simulated machine's state {} is missing, and a session is in progress on it",
            Sim::state_file(&root).display()
        )
    );
    assert!(!root.exists(), "nothing was written");
}

#[tokio::test]
async fn every_operation_reports_progress_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let sim = machine(dir.path(), "");
    for (op, after) in [
        (Operation::Split, Phase::Split),
        (Operation::Merge, Phase::Merged),
        (Operation::Commit, Phase::Committed),
        (Operation::Finish, Phase::Duplexed),
    ] {
        let said = operate(&sim, op).await.unwrap();
        assert_eq!(said, [format!("{op} in progress (simulated, 0s)"), format!("{op} complete")]);
        assert_eq!(phase(&sim).await, after, "after the {op}");
        let saved = state_text(dir.path());
        operate(&sim, op).await.unwrap_or_else(|e| panic!("the {op} again: {e}"));
        assert_eq!(state_text(dir.path()), saved, "the {op} again changes nothing");
    }
}

#[tokio::test]
async fn an_operation_the_phase_does_not_allow_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = machine(dir.path(), "");
    let cases: [(&[Operation], Operation, &str); 6] = [
        (&[], Operation::Merge, "cannot merge: the machine is Duplexed, and the merge needs it split"),
        (&[], Operation::Commit, "cannot commit: the machine is Duplexed, and the commit needs it merged"),
        (&[], Operation::Revert, "cannot revert: the machine is Duplexed, and the revert needs it merged or split"),
        (
            &[Operation::Split],
            Operation::Finish,
            "cannot finish: the machine is Split, and the finish needs it committed or aborted",
        ),
        (
            &[Operation::Merge],
            Operation::Abort,
            "cannot abort: the machine is Merged, and the abort needs it split (after a merge, revert first)",
        ),
        (
            &[],
            Operation::Split,
            "cannot split: the machine is Merged, and the split needs it Fault Tolerant with no session",
        ),
    ];
    for (before, op, message) in cases {
        for &step in before {
            operate(&sim, step).await.unwrap();
        }
        let saved = state_text(dir.path());
        let refused = operate(&sim, op).await.expect_err(message);
        assert_eq!(refused.message, message);
        assert_eq!(refused.help.as_deref(), Some("`duet status` shows the machine's state"));
        assert_eq!(refused.kind, PlatformErrorKind::Refused, "a refusal is not a storage error");
        assert_eq!(state_text(dir.path()), saved, "{message}: the state changed");
    }
}

#[tokio::test]
async fn services_stop_start_and_change_startup_on_one_side_only() {
    let dir = tempfile::tempdir().unwrap();
    let sim = machine(dir.path(), "");
    operate(&sim, Operation::Split).await.unwrap();
    let (up, name) = (Side::Upgrade, "W3SVC");

    sim.stop_service(up, name).await.unwrap();
    sim.stop_service(up, name).await.expect("stopping a stopped service succeeds");
    sim.set_startup(up, name, Startup::Disabled).await.unwrap();
    sim.set_startup(up, name, Startup::Disabled).await.unwrap();
    assert_eq!(sim.service(up, name).await.unwrap(), ServiceState { running: false, startup: Startup::Disabled });

    let refused = sim.start_service(up, name).await.unwrap_err();
    assert_eq!(
        refused.message,
        "W3SVC on the Upgrade Side: The service cannot be started, either because it is disabled or because it has no enabled devices associated with it."
    );
    assert_eq!(refused.help.as_deref(), Some("set its startup type to automatic or manual"));

    sim.set_startup(up, name, Startup::Automatic).await.unwrap();
    sim.start_service(up, name).await.unwrap();
    sim.start_service(up, name).await.expect("starting a running service succeeds");
    assert_eq!(sim.service(up, name).await.unwrap(), RUNNING_AUTOMATIC);
    assert_eq!(sim.service(Side::Production, name).await.unwrap(), RUNNING_AUTOMATIC, "the other side is untouched");
    // One line for each change, none for what changed nothing; the Production Side's log has none.
    assert_eq!(
        messages(&sim, up, "System"),
        [
            "The System event log was started.",
            "The W3SVC service entered the stopped state.",
            "The start type of the W3SVC service was changed from auto start to disabled.",
            "The start type of the W3SVC service was changed from disabled to auto start.",
            "The W3SVC service entered the running state.",
        ]
    );
    assert_eq!(messages(&sim, Side::Production, "System"), ["The System event log was started."]);
}

#[tokio::test]
async fn commit_keeps_the_upgrade_side_and_abort_the_production_side() {
    let dir = tempfile::tempdir().unwrap();
    let sim = machine(dir.path(), "");
    operate(&sim, Operation::Split).await.unwrap();
    sim.set_startup(Side::Upgrade, "AppServer", Startup::Automatic).await.unwrap();
    operate(&sim, Operation::Merge).await.unwrap();
    operate(&sim, Operation::Commit).await.unwrap();
    let observed = sim.observe().await.unwrap();
    assert_eq!(observed, Observed { phase: Phase::Committed, resyncing: false, partner: PartnerState::OsUp });
    assert_eq!(sim.service(Side::Production, "AppServer").await.unwrap(), RUNNING_AUTOMATIC, "the upgrade wins");
    operate(&sim, Operation::Finish).await.unwrap();
    assert_eq!(phase(&sim).await, Phase::Duplexed);

    let dir = tempfile::tempdir().unwrap();
    let sim = machine(dir.path(), "");
    operate(&sim, Operation::Split).await.unwrap();
    sim.stop_service(Side::Upgrade, "W3SVC").await.unwrap();
    operate(&sim, Operation::Abort).await.unwrap();
    assert_eq!(phase(&sim).await, Phase::Aborted);
    assert_eq!(sim.service(Side::Upgrade, "W3SVC").await.unwrap(), RUNNING_AUTOMATIC, "the original wins");
    assert_eq!(messages(&sim, Side::Upgrade, "System"), ["The System event log was started."], "logs copied back");
}

#[tokio::test]
async fn a_revert_stops_the_upgrade_side_and_restarts_the_production_sides_automatic_services() {
    let dir = tempfile::tempdir().unwrap();
    let sim = machine(dir.path(), "");
    operate(&sim, Operation::Split).await.unwrap();
    for name in ["W3SVC", "AppServer"] {
        sim.stop_service(Side::Production, name).await.unwrap();
    }
    operate(&sim, Operation::Merge).await.unwrap();
    operate(&sim, Operation::Revert).await.unwrap();
    assert_eq!(phase(&sim).await, Phase::Split);
    for name in ["W3SVC", "AppServer"] {
        assert!(!sim.service(Side::Upgrade, name).await.unwrap().running, "{name} on the Upgrade Side");
    }
    assert!(sim.service(Side::Production, "W3SVC").await.unwrap().running, "automatic: started");
    assert!(!sim.service(Side::Production, "AppServer").await.unwrap().running, "manual: left stopped");
}

#[tokio::test]
async fn an_operation_fault_fails_as_often_as_asked_even_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let sim = machine(dir.path(), "{op: split, fail_times: 2}");
    let failed = operate(&sim, Operation::Split).await.unwrap_err();
    assert_eq!(failed.message, "the split failed (simulated fault, failure 1 of 2)");
    assert_eq!(failed.help.as_deref(), Some("the split may succeed when tried again"));
    drop(sim);
    let sim = Sim::open(&state_dir(dir.path()), None, false).unwrap();
    let failed = operate(&sim, Operation::Split).await.unwrap_err();
    assert_eq!(failed.message, "the split failed (simulated fault, failure 2 of 2)");
    assert_eq!(phase(&sim).await, Phase::Duplexed);
    operate(&sim, Operation::Split).await.unwrap();
    assert_eq!(phase(&sim).await, Phase::Split);
}

#[tokio::test]
async fn a_line_owed_to_a_log_when_duet_was_killed_is_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let sim = machine(dir.path(), "");
    let log = sim.log_file(Side::Production, "System");
    let at = std::fs::metadata(&log).unwrap().len();
    // Killed after saving a change and its line, before appending the line.
    let mut state = sim.snapshot();
    let line = entry_line(Severity::Information, "duet", "The Spooler service entered the stopped state.");
    state.owed.push(Owed { log: log.strip_prefix(&sim.dir).unwrap().to_owned(), at, line });
    sim.save(&state).unwrap();
    drop(sim);

    let sim = Sim::open(&state_dir(dir.path()), None, false).unwrap();
    sim.stop_service(Side::Production, "W3SVC").await.unwrap();
    sim.stop_service(Side::Production, "AppServer").await.unwrap();
    assert_eq!(
        messages(&sim, Side::Production, "System"),
        [
            "The System event log was started.",
            "The Spooler service entered the stopped state.",
            "The W3SVC service entered the stopped state.",
            "The AppServer service entered the stopped state.",
        ]
    );
    assert!(sim.snapshot().owed.is_empty(), "nothing is owed any more");
}

#[test]
fn a_state_file_this_duet_did_not_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sim = machine(dir.path(), "");
    let file = Sim::state_file(&state_dir(dir.path()));
    let good: serde_json::Value = serde_json::from_str(&state_text(dir.path())).unwrap();
    drop(sim);
    let refusal = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut state = good.clone();
        change(&mut state);
        std::fs::write(&file, state.to_string()).unwrap();
        Sim::open(&state_dir(dir.path()), None, false).err().expect("refused")
    };
    let newer = refusal(&|s| s["version"] = 2.into());
    let path = file.display();
    assert_eq!(
        newer.message,
        format!("{path}: simulated machine state format version 2; this duet reads version 1 only")
    );
    assert_eq!(newer.help.as_deref(), Some("use the duet version that wrote it"));
    let other = refusal(&|s| s["format"] = "something-else".into());
    assert_eq!(other.message, format!("{path}: not a simulated machine's state"));
    let escaping = refusal(&|s| {
        s["owed"] = serde_json::json!([{"log": "../../outside.log", "at": 0, "line": "x\n"}]);
    });
    assert_eq!(
        escaping.message,
        format!("{path}: not a simulated machine's state: it owes a line to ../../outside.log, outside the machine")
    );
    assert!(!dir.path().join("outside.log").exists());
}
