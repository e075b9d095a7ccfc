//! The simulated machine as the runtime drives it: its state on disk, each operation in each
//! phase (and again), the services of each side, its event logs, and its faults.

use std::path::{Path, PathBuf};

use super::*;
use crate::platform::PlatformErrorKind;

use super::testing::built_in_without_software as built_in;

/// A machine built in `root/state` from the built-in 320Ma (without software) with instant
/// operations and no resynchronisation wait, plus `faults` (YAML flow items).
fn machine(root: &Path, faults: &str) -> Sim {
    let durations = "durations: {split: 200ms, merge: 200ms, resync: 500ms}";
    assert!(BUILT_IN.contains(durations), "the built-in inventory's durations changed: update this test");
    let instant = format!(
        "durations: {{split: 0s, merge: 0s, commit: 0s, abort: 0s, finish: 0s, resync: 0s}}\n  faults: [{faults}]"
    );
    let path = root.join("inventory.yaml");
    std::fs::write(&path, built_in().replace(durations, &instant)).unwrap();
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

/// The built-in 320Ma with instant operations, a `restart` duration, and SQL Server 15.0.2 and
/// IIS 10.0 installed.
fn machine_with_software(root: &Path, restart: &str) -> Sim {
    let durations = "durations: {split: 200ms, merge: 200ms, resync: 500ms}";
    let instant = format!(
        "durations: {{split: 0s, merge: 0s, commit: 0s, abort: 0s, finish: 0s, resync: 0s, restart: {restart}}}"
    );
    let software = "software:\n  - {name: SQL Server, version: \"15.0.2\"}\n  - {name: IIS, version: \"10.0\"}\n";
    let text = built_in().replace(durations, &instant).replace("event_logs:", &format!("{software}event_logs:"));
    let path = root.join("inventory.yaml");
    std::fs::write(&path, text).unwrap();
    Sim::open(&state_dir(root), Some(&path), true).unwrap_or_else(|e| panic!("the machine builds: {e}"))
}

fn sw(name: &str, version: &str) -> Software {
    Software { name: name.into(), version: version.into() }
}

async fn versions(sim: &Sim, side: Side) -> Vec<(String, String)> {
    sim.software(side).await.unwrap().into_iter().map(|s| (s.name, s.version)).collect()
}

fn listed(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
}

#[tokio::test]
async fn software_follows_the_sides_through_split_install_commit_and_abort() {
    let dir = tempfile::tempdir().unwrap();
    let sim = machine_with_software(dir.path(), "0s");
    let original = listed(&[("IIS", "10.0"), ("SQL Server", "15.0.2")]);
    for side in [Side::Production, Side::Upgrade] {
        assert_eq!(versions(&sim, side).await, original, "sorted by name, on both sides");
    }
    operate(&sim, Operation::Split).await.unwrap();
    sim.installed(Side::Upgrade, &sw("SQL Server", "15.0.4")).await.unwrap();
    sim.installed(Side::Upgrade, &sw("Agent", "2.1")).await.unwrap();
    sim.installed(Side::Upgrade, &sw("Agent", "2.1")).await.unwrap();
    let upgraded = listed(&[("Agent", "2.1"), ("IIS", "10.0"), ("SQL Server", "15.0.4")]);
    assert_eq!(versions(&sim, Side::Upgrade).await, upgraded);
    assert_eq!(versions(&sim, Side::Production).await, original, "the Production Side is untouched");
    drop(sim);
    let sim = Sim::open(&state_dir(dir.path()), None, false).unwrap();
    assert_eq!(versions(&sim, Side::Upgrade).await, upgraded, "installs are durable");
    operate(&sim, Operation::Merge).await.unwrap();
    operate(&sim, Operation::Commit).await.unwrap();
    assert_eq!(versions(&sim, Side::Production).await, upgraded, "the commit keeps the upgrade");
    operate(&sim, Operation::Finish).await.unwrap();
    assert_eq!(versions(&sim, Side::Upgrade).await, upgraded);

    let dir = tempfile::tempdir().unwrap();
    let sim = machine_with_software(dir.path(), "0s");
    operate(&sim, Operation::Split).await.unwrap();
    sim.installed(Side::Upgrade, &sw("SQL Server", "15.0.4")).await.unwrap();
    operate(&sim, Operation::Abort).await.unwrap();
    for side in [Side::Production, Side::Upgrade] {
        assert_eq!(versions(&sim, side).await, original, "the abort discards the install");
    }
    operate(&sim, Operation::Finish).await.unwrap();
    operate(&sim, Operation::Split).await.unwrap();
    assert_eq!(versions(&sim, Side::Upgrade).await, original, "a new split copies the Production Side");
}

#[tokio::test]
async fn an_install_on_a_duplexed_machine_is_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let sim = machine_with_software(dir.path(), "0s");
    sim.installed(Side::Production, &sw("IIS", "10.1")).await.unwrap();
    for side in [Side::Production, Side::Upgrade] {
        assert_eq!(versions(&sim, side).await, listed(&[("IIS", "10.1"), ("SQL Server", "15.0.2")]), "{side:?}");
    }
}

#[tokio::test]
async fn a_machine_without_software_reports_an_empty_list() {
    let dir = tempfile::tempdir().unwrap();
    let sim = machine(dir.path(), "");
    assert!(sim.software(Side::Production).await.unwrap().is_empty());
    assert!(!state_text(dir.path()).contains("booting_until_ms"), "nothing is saved for a restart not under way");
}

#[tokio::test]
async fn a_state_file_from_before_software_reads_as_the_inventorys_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let sim = machine_with_software(dir.path(), "0s");
    operate(&sim, Operation::Split).await.unwrap();
    drop(sim);
    let file = Sim::state_file(&state_dir(dir.path()));
    let mut old: serde_json::Value = serde_json::from_str(&state_text(dir.path())).unwrap();
    assert!(old.as_object_mut().unwrap().remove("software").is_some(), "the state keeps software");
    std::fs::write(&file, old.to_string()).unwrap();

    let sim = Sim::open(&state_dir(dir.path()), None, false).unwrap();
    let original = listed(&[("IIS", "10.0"), ("SQL Server", "15.0.2")]);
    for side in [Side::Production, Side::Upgrade] {
        assert_eq!(versions(&sim, side).await, original);
    }
    sim.installed(Side::Upgrade, &sw("IIS", "10.1")).await.unwrap();
    let saved: serde_json::Value = serde_json::from_str(&state_text(dir.path())).unwrap();
    assert_eq!(saved["software"]["upgrade"]["IIS"], "10.1");
    assert_eq!(saved["software"]["production"]["IIS"], "10.0");
}

#[tokio::test(start_paused = true)]
async fn a_restart_shows_os_booting_then_os_up_and_keeps_disabled_services_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let sim = machine_with_software(dir.path(), "1h");
    operate(&sim, Operation::Split).await.unwrap();
    sim.set_startup(Side::Upgrade, "W3SVC", Startup::Disabled).await.unwrap();
    sim.stop_service(Side::Upgrade, "W3SVC").await.unwrap();
    let mut said = Vec::new();
    let mut progress = |p: Progress| said.push(p.message);
    let (restarted, during) = tokio::join!(sim.restart(Side::Upgrade, &mut progress), async {
        let partner = sim.observe().await.unwrap().partner;
        let unreachable = sim.service(Side::Upgrade, "MSSQLSERVER").await.unwrap_err();
        (partner, unreachable.kind)
    });
    restarted.unwrap();
    assert_eq!(during, (PartnerState::OsBooting, PlatformErrorKind::Unreachable));
    assert_eq!(
        said,
        ["restart of the Upgrade Side in progress (simulated, 1h)", "restart of the Upgrade Side complete"]
    );
    assert_eq!(sim.observe().await.unwrap().partner, PartnerState::OsUp);
    assert_eq!(
        sim.service(Side::Upgrade, "W3SVC").await.unwrap(),
        ServiceState { running: false, startup: Startup::Disabled }
    );
    assert_eq!(sim.service(Side::Upgrade, "MSSQLSERVER").await.unwrap(), RUNNING_AUTOMATIC, "automatic: started");
    let app = sim.service(Side::Upgrade, "AppServer").await.unwrap();
    assert_eq!(app, ServiceState { running: false, startup: Startup::Manual }, "manual: not started by the boot");
    assert_eq!(messages(&sim, Side::Upgrade, "System").last().unwrap(), "The Upgrade Side restarted.");
    assert!(!messages(&sim, Side::Production, "System").contains(&"The Upgrade Side restarted.".to_owned()));
    assert!(sim.service(Side::Production, "AppServer").await.unwrap().running, "the Production Side is untouched");
}

#[tokio::test]
async fn a_restart_is_refused_unless_the_upgrade_side_is_split_off() {
    let dir = tempfile::tempdir().unwrap();
    let sim = machine_with_software(dir.path(), "0s");
    let refused = sim.restart(Side::Upgrade, &mut |_| {}).await.unwrap_err();
    assert_eq!(refused.kind, PlatformErrorKind::Refused);
    assert_eq!(
        refused.message,
        "cannot restart the Upgrade Side: only the Upgrade Side is restarted, while the machine is split (it is Duplexed)"
    );
    operate(&sim, Operation::Split).await.unwrap();
    let production = sim.restart(Side::Production, &mut |_| {}).await.unwrap_err();
    assert_eq!(production.kind, PlatformErrorKind::Refused);
    assert!(sim.snapshot().production.values().all(|s| s.running), "nothing changed");
}

#[tokio::test]
async fn a_restart_cut_short_by_a_kill_is_seen_booting_and_is_done_again() {
    let dir = tempfile::tempdir().unwrap();
    let sim = machine_with_software(dir.path(), "0s");
    operate(&sim, Operation::Split).await.unwrap();
    // Killed while the Upgrade Side boots: its services are down, it boots for an hour more.
    let mut state = sim.snapshot();
    for service in state.upgrade.values_mut() {
        service.running = false;
    }
    state.booting_until_ms = now_ms() + 3_600_000;
    sim.save(&state).unwrap();
    drop(sim);

    let sim = Sim::open(&state_dir(dir.path()), None, false).unwrap();
    assert_eq!(sim.observe().await.unwrap().partner, PartnerState::OsBooting);
    sim.restart(Side::Upgrade, &mut |_| {}).await.unwrap();
    assert_eq!(sim.observe().await.unwrap().partner, PartnerState::OsUp);
    assert!(sim.service(Side::Upgrade, "W3SVC").await.unwrap().running);
    let restarted =
        messages(&sim, Side::Upgrade, "System").iter().filter(|m| *m == "The Upgrade Side restarted.").count();
    assert_eq!(restarted, 1);
}
