//! Unattended upgrades (issue 12) through the real binary: upgrade tasks and the Upgrade Side's
//! restart, approvals (granted, expired to hold or to abort, interrupted and resumed), the
//! automatic abort, and notifications. Verification gates and version hops have their own
//! tests (`checks.rs`, `unattended_compile.rs`).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::machine::{INVENTORY, Machine, make_executable};
use crate::support::indoc;

/// The rig's inventory, with SQL Server on the machine.
fn inventory() -> String {
    format!("{INVENTORY}software:\n  - {{name: SQL Server, version: 15.0.2}}\n")
}

/// A plan with two upgrade tasks (the first restarts the Upgrade Side and installs a service
/// pack), on top of `extra`.
fn plan(extra: &str) -> String {
    let base = indoc(
        r"
        version: 1
        title: unattended
        disks: {system: [disk0, disk1], data: [disk2]}
        services: [AppServer, W3SVC]
        actions:
          - {id: stop, file: rec, control: stop}
        upgrade:
          - id: sp1
            file: rec
            args: [install, sp1]
            restart: true
            installs: {software: SQL Server, version: 15.0.4}
          - {id: cu, file: rec, args: [install, cu]}
        ",
    );
    format!("{base}{}", indoc(extra))
}

fn rig(extra: &str) -> Machine {
    Machine::with(&plan(extra), &inventory())
}

/// The version of `name` on `side` that `status --json` reports.
fn software(status: &Value, name: &str, side: &str) -> Option<String> {
    let list = status["software"].as_array()?;
    let entry = list.iter().find(|s| s["name"] == name)?;
    entry[side].as_str().map(str::to_owned)
}

/// The activity log as text.
fn log(m: &Machine) -> String {
    m.run(&["log"]).code(0).stdout.clone()
}

/// Polls `status --json` until `ready` holds of it (a `duet run` in the background got there).
fn until(m: &Machine, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = m.run(&["status", "--json"]).code(0).json();
        if ready(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "never {what}: {status:#}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn waiting(status: &Value) -> bool {
    status["awaiting_approval"].is_object()
}

#[test]
fn tasks_run_in_order_after_the_split_restart_the_upgrade_side_and_installs_survive_the_commit() {
    let m = rig("");
    m.run(&["split", &m.plan()]).code(0);
    // The operator's merge waits for the plan's tasks.
    m.run(&["merge"])
        .code(1)
        .stderr_has("cannot merge: the plan's upgrade tasks have not run")
        .stderr_has("duet upgrade");
    let status = m.status();
    assert!(status["next"].as_str().unwrap().contains("duet upgrade"), "{status:#}");
    m.run(&["upgrade"]).code(0).stdout_has("task:sp1@upgrade").stdout_has("restart:sp1@upgrade");
    let tasks: Vec<String> = m.recorded("Upgrade").into_iter().filter(|l| l.contains("|install ")).collect();
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    assert!(tasks[0].starts_with("task:sp1@upgrade|Upgrade|Split|Upgrade|Yes|1|install sp1"), "{tasks:?}");
    assert!(tasks[1].starts_with("task:cu@upgrade|Upgrade|Split|Upgrade|Yes|1|install cu"), "{tasks:?}");
    let status = m.status();
    assert_eq!(software(&status, "SQL Server", "upgrade").as_deref(), Some("15.0.4"), "{status:#}");
    assert_eq!(software(&status, "SQL Server", "production").as_deref(), Some("15.0.2"), "{status:#}");
    assert!(log(&m).contains("restart"), "the restart is in the activity log");
    // The controlled services stay disabled on the Upgrade Side across the restart.
    assert_eq!(m.service("W3SVC", "upgrade"), ("disabled".to_owned(), false));
    m.run(&["upgrade"]).code(1).stderr_has("the upgrade tasks have run");
    m.run(&["merge"]).code(0);
    m.run(&["commit"]).code(0);
    let status = m.status();
    assert_eq!(software(&status, "SQL Server", "production").as_deref(), Some("15.0.4"), "{status:#}");
}

#[test]
fn duet_run_includes_the_tasks_and_an_abort_discards_what_they_installed() {
    let m = rig("");
    m.run(&["run", &m.plan(), "--through", "merge"]).code(0).stdout_has("Upgrade (Split)");
    assert_eq!(software(&m.status(), "SQL Server", "upgrade").as_deref(), Some("15.0.4"));
    m.run(&["abort"]).code(0);
    let status = m.status();
    assert_eq!(software(&status, "SQL Server", "upgrade").as_deref(), Some("15.0.2"), "{status:#}");
    assert_eq!(software(&status, "SQL Server", "production").as_deref(), Some("15.0.2"), "{status:#}");
}

#[test]
fn a_failed_task_holds_by_default_and_aborts_by_itself_when_the_plan_says_so() {
    let hold = rig("");
    hold.fail("task:cu@upgrade");
    hold.run(&["run", &hold.plan()]).code(1).stderr_has("Upgrade is Broken at step task:cu@upgrade");
    let status = hold.status();
    assert_eq!((&status["upgrade"], &status["operational"]), (&"Split".into(), &"Broken".into()), "{status:#}");
    assert!(status["aborted_by_duet"].is_null(), "{status:#}");

    let abort = rig("on_failure: abort\n");
    abort.fail("task:cu@upgrade");
    abort
        .run(&["run", &abort.plan()])
        .code(1)
        .stderr_has("Upgrade is Broken at step task:cu@upgrade")
        .stdout_has("aborting by itself");
    let status = abort.status();
    assert_eq!((&status["upgrade"], &status["operational"]), (&"Abort".into(), &"Ready".into()), "{status:#}");
    assert_eq!(status["aborted_by_duet"]["step"], "task:cu@upgrade", "{status:#}");
    let text = abort.run(&["status"]).code(0).stdout.clone();
    assert!(text.contains("Aborted by duet: task:cu@upgrade failed"), "{text}");
    assert!(log(&abort).contains("abort started by duet"), "the log says duet started the abort");
    assert_eq!(software(&status, "SQL Server", "upgrade").as_deref(), Some("15.0.2"), "{status:#}");
}

const APPROVAL: &str = "
approve:
  - {id: go, before: commit}
";

#[test]
fn a_run_waits_at_an_approval_until_someone_approves_it() {
    let m = rig(APPROVAL);
    let mut run = m.duet(&["run", &m.plan()]).spawn();
    let status = until(&m, "waiting for approval", waiting);
    assert_eq!(status["awaiting_approval"]["step"], "approve:go", "{status:#}");
    assert!(status["awaiting_approval"]["until"].is_null(), "no expiry: {status:#}");
    let text = m.run(&["status"]).code(0).stdout.clone();
    assert!(text.contains("Waiting for approval: approve:go"), "{text}");
    m.run(&["approve", "--reason", "change 4711 approved by the CAB"]).code(0).stdout_has("approved by");
    let exit = run.wait().expect("duet run ends");
    assert_eq!(exit.code(), Some(0));
    let status = m.status();
    assert_eq!(status["upgrade"], "Idle", "the run went on to the end: {status:#}");
    let history = std::fs::read_dir(m.state().join("history")).unwrap().next().unwrap().unwrap().file_name();
    let text = m.run(&["log", "--session", &history.to_string_lossy()]).code(0).stdout.clone();
    assert!(text.contains("approve:go: approved by") && text.contains("change 4711 approved by the CAB"), "{text}");
    m.run(&["approve", "--reason", "again"]).code(1).stderr_has("nothing awaits approval");
}

#[test]
fn an_expired_approval_holds_or_aborts_as_the_plan_says() {
    let hold = rig("approve:\n  - {id: go, before: merge, expires: 1s}\n");
    hold.run(&["run", &hold.plan()]).code(1).stderr_has("approval `go` expired");
    let status = hold.status();
    assert_eq!((&status["upgrade"], &status["operational"]), (&"PrepareMerge".into(), &"Broken".into()), "{status:#}");
    // Approved late, a retry goes on.
    hold.run(&["approve", "--reason", "late but fine"]).code(0);
    hold.run(&["retry"]).code(0);
    assert_eq!(hold.status()["upgrade"], "Idle");

    let abort = rig("approve:\n  - {id: go, before: merge, expires: 1s, on_expiry: abort}\n");
    abort.run(&["run", &abort.plan()]).code(1).stdout_has("aborting by itself");
    let status = abort.status();
    assert_eq!((&status["upgrade"], &status["operational"]), (&"Abort".into(), &"Ready".into()), "{status:#}");
    assert_eq!(status["aborted_by_duet"]["step"], "approve:go", "{status:#}");
}

#[test]
fn ctrl_c_while_waiting_for_an_approval_leaves_a_session_that_resume_continues_still_waiting() {
    let m = rig("approve:\n  - {id: go, before: commit, expires: 1h}\n");
    let run = m.duet(&["run", &m.plan()]).spawn();
    let first = until(&m, "waiting for approval", waiting);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(run.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let exit = run.wait_with_output().expect("duet run ends");
    assert_eq!(exit.status.code(), Some(130), "{}", String::from_utf8_lossy(&exit.stderr));
    let status = m.status();
    assert_eq!(status["awaiting_approval"], first["awaiting_approval"], "the same wait, the same deadline");
    assert!(status["next"].as_str().unwrap().contains("duet approve"), "{status:#}");
    let mut resume = m.duet(&["resume"]).spawn();
    until(&m, "waiting again", |s| waiting(s) && !s["driver"].is_null());
    m.run(&["approve", "--reason", "go"]).code(0);
    assert_eq!(resume.wait().unwrap().code(), Some(0));
    assert_eq!(m.status()["upgrade"], "Idle");
}

/// A notification script that appends its event's environment to `REC/notified`.
fn notifier(m: &Machine, name: &str, exit: i32) {
    let script = format!(
        "#!/bin/sh\necho \"$DUET_EVENT|$DUET_SESSION_ID|$DUET_EVENT_REQUEST|$DUET_EVENT_STEP|$*\" >> \"$REC/notified\"\nexit {exit}\n"
    );
    let path = m.path(&format!("plans/{name}"));
    std::fs::write(&path, script).unwrap();
    make_executable(Path::new(&path));
}

#[test]
fn notifications_receive_each_event_and_a_failing_one_changes_nothing() {
    let m = rig("
        on_failure: abort
        notify:
          - {id: pager, file: pager.sh, args: [page]}
          - {id: broken-mail, file: mail.sh, on: [broken]}
        ");
    notifier(&m, "pager.sh", 0);
    notifier(&m, "mail.sh", 1);
    m.fail("task:cu@upgrade");
    m.run(&["run", &m.plan()]).code(1);
    let notified = std::fs::read_to_string(m.rec().join("notified")).expect("notifications ran");
    let events: Vec<&str> = notified.lines().map(|l| l.split('|').next().unwrap()).collect();
    assert_eq!(events, ["started", "broken", "broken", "aborted"], "{notified}");
    let broken = notified.lines().nth(1).unwrap();
    assert!(broken.ends_with("|Upgrade|task:cu@upgrade|page"), "{broken}");
    let status = m.status();
    assert_eq!(status["upgrade"], "Abort", "the failing notification changed nothing: {status:#}");
    assert!(log(&m).contains("notification `broken-mail` for broken exited with 1"), "logged as a warning");
}
