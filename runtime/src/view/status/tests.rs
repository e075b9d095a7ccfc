//! `status` gathered from a state directory in each situation a user finds it in: no session,
//! a Ready session (and one `duet run` left on its way), a Broken one, an interrupted one, one
//! driven by another process, a readiness check in Idle, a damaged journal, a finished session.

use duet_compiler::compiled::RequestName;
use duet_compiler::inventory::Startup;
use duet_contract::record::{Command, Entry, Through};
use duet_contract::status::Change;

use super::*;
use crate::platform::{self, Operation};
use crate::store::journal::Durability;
use crate::store::session::tests::{ID, create_in, operation, output, ran, readiness, split, state_dir};

/// The 320Ma (without its software list) of the state directory, built the way `duet split`
/// builds it.
fn machine(state: &StateDir) -> impl Platform + use<> {
    let inventory = state.root.with_file_name("320ma-without-software.yaml");
    std::fs::write(&inventory, crate::platform::sim::testing::built_in_without_software()).unwrap();
    platform::open(&state.root, Some(&inventory), true).unwrap()
}

async fn status(state: &StateDir, machine: &impl Platform) -> Status {
    gather(state, machine).await.unwrap()
}

/// A session that ran the split's requests, on a machine that split.
async fn split_session(state: &StateDir, machine: &impl Platform, goal: Option<Through>) -> Session {
    let mut session = create_in(state, &state.session(), &split(goal));
    for request in [RequestName::CheckReadiness, RequestName::PrepareSplit, RequestName::ExecuteSplit] {
        ran(&mut session, request, None);
    }
    machine.operate(Operation::Split, &mut |_| {}).await.unwrap();
    session
}

const RUNNING_AUTOMATIC: Option<SideService> = Some(SideService { running: true, startup: Startup::Automatic });

#[tokio::test(start_paused = true)]
async fn with_no_session_the_machine_is_idle_and_a_split_comes_next() {
    let (_dir, state) = state_dir();
    let machine = machine(&state);
    let s = status(&state, &machine).await;
    assert_eq!((s.hardware, s.upgrade, s.operational), (Hardware::FaultTolerant, State::Idle, Operational::Ready));
    assert_eq!((s.session, s.plan, s.driver, s.interrupted, s.broken), (None, None, None, false, None));
    assert_eq!(s.partner, "OS Up");
    assert!(s.services.is_empty(), "no plan, no services: {:?}", s.services);
    assert_eq!(s.next, "start a session with `duet split PLAN`");
}

#[tokio::test(start_paused = true)]
async fn a_ready_session_shows_both_sides_and_what_comes_next() {
    let (_dir, state) = state_dir();
    let machine = machine(&state);
    drop(split_session(&state, &machine, None).await);
    let s = status(&state, &machine).await;
    assert_eq!((s.hardware, s.upgrade, s.operational), (Hardware::ProductionSide, State::Split, Operational::Ready));
    assert_eq!((s.session.as_deref(), s.plan.as_deref(), s.interrupted), (Some(ID), Some("plan.yaml"), false));
    let w3svc = ServiceStatus { name: "W3SVC".into(), production: RUNNING_AUTOMATIC, upgrade: RUNNING_AUTOMATIC };
    assert_eq!(s.services, [w3svc]);
    assert_eq!(s.next, "install the software on the Upgrade Side, then `duet merge`; or `duet abort`");
    assert_eq!(
        render(&s),
        "Production Side | Split | Ready    Partner: OS Up\n\
         Plan: plan.yaml (session 20261206-210349-ab12)\n\
         Services:\n\
         \x20          Production Side         Upgrade Side\n\
         \x20 W3SVC    running, automatic      running, automatic\n\
         Next: install the software on the Upgrade Side, then `duet merge`; or `duet abort`\n"
    );

    // The session runs its snapshot; status says the file changed.
    std::fs::write(state.root.join("plan.yaml"), "version: 1\n").unwrap();
    let s = status(&state, &machine).await;
    assert_eq!(s.changed_files.iter().map(|c| c.change).collect::<Vec<_>>(), [Change::Modified]);
}

#[tokio::test(start_paused = true)]
async fn a_run_that_stopped_before_its_goal_is_carried_on_by_resume() {
    let (_dir, state) = state_dir();
    let machine = machine(&state);
    drop(split_session(&state, &machine, Some(Through::Commit)).await);
    let s = status(&state, &machine).await;
    assert_eq!((s.upgrade, s.operational), (State::Split, Operational::Ready));
    assert_eq!(
        s.next,
        "`duet run` stopped on its way to commit: `duet resume` carries on; or install the software on the Upgrade \
         Side, then `duet merge`; or `duet abort`"
    );
}

#[tokio::test(start_paused = true)]
async fn a_broken_session_names_the_step_its_output_and_the_way_out() {
    let (_dir, state) = state_dir();
    let machine = machine(&state);
    let mut session = create_in(&state, &state.session(), &split(None));
    ran(&mut session, RequestName::CheckReadiness, None);
    ran(&mut session, RequestName::PrepareSplit, None);
    let printed = output("failing as asked\n\u{1b}]0;pwned\u{7}\n");
    ran(&mut session, RequestName::ExecuteSplit, Some(("action:stop@upgrade", printed.clone())));
    drop(session);
    let s = status(&state, &machine).await;
    assert_eq!((s.upgrade, s.operational, s.interrupted), (State::Split, Operational::Broken, false));
    let broken = BrokenStatus {
        request: "ExecuteSplit".into(),
        step: "action:stop@upgrade".into(),
        message: "Custom action failed with exit value 3".into(),
        output: Some(printed),
    };
    assert_eq!(s.broken, Some(broken));
    assert_eq!(s.next, "correct the problem (`duet log`), then `duet retry`; or `duet abort`");
    let shown = render(&s);
    assert!(
        shown.contains(
            "Broken: ExecuteSplit at action:stop@upgrade: Custom action failed with exit value 3\n  stderr: failing as asked\n"
        ),
        "{shown}"
    );
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "what the action printed is shown, not obeyed: {shown:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_session_is_resumed_and_one_being_driven_is_waited_for() {
    let (_dir, state) = state_dir();
    let machine = machine(&state);
    let mut session = create_in(&state, &state.session(), &split(None));
    ran(&mut session, RequestName::CheckReadiness, None);
    let request = RequestName::PrepareSplit;
    session.record(&Entry::RequestStarted { request }, Durability::Durable).unwrap();
    session
        .record(&Entry::StepStarted { request, step: "probe:readiness".into(), attempt: 1 }, Durability::Durable)
        .unwrap();
    drop(session);

    let s = status(&state, &machine).await;
    assert_eq!((s.upgrade, s.operational, s.interrupted), (State::PrepareSplit, Operational::Busy, true));
    assert_eq!(s.driver, None);
    assert_eq!(s.next, "run `duet resume` to continue where it stopped");
    assert!(render(&s).contains("Interrupted: no duet process is driving the session\n"));

    let _lock = StateLock::acquire(&state.root, "duet split plan.yaml").unwrap();
    let s = status(&state, &machine).await;
    assert_eq!((s.operational, s.interrupted), (Operational::Busy, false));
    assert_eq!(s.driver.and_then(|d| d.pid), Some(std::process::id()));
    assert_eq!(s.next, "wait: another duet process is driving the session");
}

#[tokio::test(start_paused = true)]
async fn a_readiness_check_in_idle_is_run_again() {
    let (_dir, state) = state_dir();
    let machine = machine(&state);
    let mut check = create_in(&state, &state.readiness(), &readiness());
    ran(&mut check, RequestName::CheckReadiness, Some(("action:ready@production", output("not ready\n"))));
    drop(check);
    let s = status(&state, &machine).await;
    assert_eq!((s.upgrade, s.operational, s.session.as_deref()), (State::Idle, Operational::Broken, None));
    assert_eq!(s.plan.as_deref(), Some("plan.yaml"), "the last readiness check's plan");
    assert_eq!(s.next, "correct the problems the readiness check found (`duet log`), then run it again");

    let (_dir, state) = state_dir();
    let machine = self::machine(&state);
    let mut check = create_in(&state, &state.readiness(), &readiness());
    check.record(&Entry::RequestStarted { request: RequestName::CheckReadiness }, Durability::Durable).unwrap();
    drop(check);
    let s = status(&state, &machine).await;
    assert_eq!((s.upgrade, s.operational, s.interrupted), (State::Idle, Operational::Busy, true));
    assert_eq!(s.next, "the readiness check was interrupted: run `duet readiness PLAN` again");
}

#[tokio::test(start_paused = true)]
async fn a_damaged_journal_is_broken_until_it_is_repaired() {
    let (_dir, state) = state_dir();
    let machine = machine(&state);
    drop(split_session(&state, &machine, None).await);
    let journal = state.session().join("journal");
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes.extend_from_slice(b"0badcafe {\"seq\":");
    std::fs::write(&journal, &bytes).unwrap();
    let s = status(&state, &machine).await;
    assert_eq!((s.upgrade, s.operational, s.interrupted), (State::Split, Operational::Broken, false));
    assert!(s.journal_damage.as_deref().is_some_and(|d| d.contains("has a torn or corrupt tail at line")), "{s:?}");
    assert_eq!(s.next, "the journal is damaged: `duet resume --repair-journal` (see `duet log`)");
}

#[tokio::test(start_paused = true)]
async fn a_session_whose_finish_completed_is_over_before_it_is_archived() {
    let (_dir, state) = state_dir();
    let machine = machine(&state);
    let mut session = split_session(&state, &machine, None).await;
    session.record(&operation(Command::Finish, &[RequestName::Finish], None), Durability::Durable).unwrap();
    ran(&mut session, RequestName::Finish, None);
    drop(session);
    let s = status(&state, &machine).await;
    assert_eq!((s.upgrade, s.operational, s.session), (State::Idle, Operational::Ready, None));
    assert_eq!(s.next, "start a session with `duet split PLAN`");
}

#[tokio::test]
async fn the_software_of_both_sides_is_shown_when_the_machine_keeps_it() {
    let (dir, state) = state_dir();
    let without = machine(&state);
    let s = status(&state, &without).await;
    assert!(s.software.is_empty(), "the 320Ma lists no software");
    assert!(!render(&s).contains("Software:"));
    assert!(!serde_json::to_string(&s).unwrap().contains("software"), "left out of the JSON when empty");
    drop(without);

    let text = crate::platform::sim::testing::built_in_without_software().replace(
        "event_logs:",
        "software:\n  - {name: SQL Server, version: \"15.0.2\"}\n  - {name: IIS, version: \"10.0\"}\nevent_logs:",
    );
    let inventory = dir.path().join("with-software.yaml");
    std::fs::write(&inventory, text).unwrap();
    let machine = crate::platform::sim::Sim::open(&state.root, Some(&inventory), true).unwrap();
    machine.operate(Operation::Split, &mut |_| {}).await.unwrap();
    let sql = duet_compiler::compiled::Software { name: "SQL Server".into(), version: "15.0.4".into() };
    machine.installed(Side::Upgrade, &sql).await.unwrap();
    let agent = duet_compiler::compiled::Software { name: "Agent".into(), version: "2".into() };
    machine.installed(Side::Upgrade, &agent).await.unwrap();
    let s = status(&state, &machine).await;
    let row = |name: &str, production: Option<&str>, upgrade: Option<&str>| SideSoftware {
        name: name.into(),
        production: production.map(str::to_owned),
        upgrade: upgrade.map(str::to_owned),
    };
    assert_eq!(
        s.software,
        [
            row("Agent", None, Some("2")),
            row("IIS", Some("10.0"), Some("10.0")),
            row("SQL Server", Some("15.0.2"), Some("15.0.4"))
        ]
    );
    let shown = render(&s);
    assert!(
        shown.contains(
            "Software:\n              Production Side         Upgrade Side\n  \
             Agent       not installed           2\n  \
             IIS         10.0                    10.0\n  \
             SQL Server  15.0.2                  15.0.4\n"
        ),
        "{shown}"
    );
}
