//! Sessions on disk: built whole and opened again with the same progress, read without being
//! changed, and refused when their journal is not a session's. The helpers build sessions the
//! way the commands do, for the status tests too.

use std::path::Path;

use duet_compiler::compiled::{RequestName, State};
use duet_compiler::{Options, compile};
use duet_contract::record::{Broken, Command, Stream, Through};

use super::*;
use crate::store::staged::Commit;

/// The message and help of a refusal (any other error fails the test).
fn refused_with(e: StoreError) -> (String, String) {
    match e {
        StoreError::Refused { message, help } => (message, help),
        other => panic!("not a refusal: {other:?}"),
    }
}
use crate::state::Operational;

/// The id every test session has (the shape `new_id` gives).
pub(crate) const ID: &str = "20261206-210349-ab12";

/// The plan the test sessions run: one service, on the guide's 320Ma.
const PLAN: &str = "version: 1\ndisks: {system: [disk0, disk1], data: [disk2]}\nservices: [W3SVC]\n";

/// The 320Ma inventory shipped with the plans.
pub(crate) fn inventory_320ma() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans/machines/320ma.yaml")
}

/// [`PLAN`], written into `root` and compiled against the 320Ma.
pub(crate) fn compilation(root: &Path) -> Compilation {
    let plan = root.join("plan.yaml");
    std::fs::write(&plan, PLAN).unwrap();
    let compilation = compile(&Options { plan, inventory: Some(inventory_320ma()), keyring: None });
    assert!(compilation.compiled.is_some(), "the test plan compiles: {:?}", compilation.diagnostics);
    compilation
}

pub(crate) fn begin(id: &str) -> Entry {
    Entry::Begin {
        id: id.into(),
        plan: "plan.yaml".into(),
        platform: "sim (Express5800/320Ma)".into(),
        duet: "0".into(),
    }
}

pub(crate) fn operation(command: Command, requests: &[RequestName], goal: Option<Through>) -> Entry {
    Entry::Operation {
        operation: command,
        requests: requests.to_vec(),
        goal,
        command: "duet".into(),
        user: "op".into(),
        automatic: None,
    }
}

/// What `duet split` records (`duet run --through GOAL` with a goal).
pub(crate) fn split(goal: Option<Through>) -> Entry {
    use RequestName as R;
    operation(Command::Split, &[R::CheckReadiness, R::PrepareSplit, R::ExecuteSplit], goal)
}

/// What `duet readiness` records.
pub(crate) fn readiness() -> Entry {
    operation(Command::Readiness, &[RequestName::CheckReadiness], None)
}

/// A session (or readiness check) in `dest` of the state directory `state`, whose root holds
/// the plan, started by `operation`, with nothing run yet.
pub(crate) fn create_in(state: &StateDir, dest: &Path, operation: &Entry) -> Session {
    let mut compilation = compilation(&state.root);
    let compiled = compilation.compiled.take().expect("compiled");
    let new = NewSession { dest, commit: Commit::New, compilation: &compilation, first: [&begin(ID), operation] };
    Session::create(state, &new, compiled).unwrap()
}

/// A state directory in a temporary one.
pub(crate) fn state_dir() -> (tempfile::TempDir, StateDir) {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path().join("state"));
    state.ensure().unwrap();
    (dir, state)
}

/// Records that `request` ran, ending Ready or (with `broken`) Broken at that step.
pub(crate) fn ran(session: &mut Session, request: RequestName, broken: Option<(&str, Output)>) {
    let mut record = |e: Entry| session.record(&e, Durability::Buffered).unwrap();
    record(Entry::RequestStarted { request });
    if let Some((step, output)) = broken {
        record(Entry::StepStarted { request, step: step.into(), attempt: 1 });
        let failed = StepResult::Failed { message: "Custom action failed with exit value 3".into(), help: None };
        record(Entry::StepFinished {
            request,
            step: step.into(),
            attempt: 1,
            result: failed,
            duration_ms: 5,
            output: Some(output),
        });
        let broken = Broken { step: step.into(), message: "Custom action failed with exit value 3".into() };
        record(Entry::RequestFinished { request, broken: Some(broken), peak_rss_kib: None });
    } else {
        record(Entry::RequestFinished { request, broken: None, peak_rss_kib: None });
    }
}

/// What a failed action printed.
pub(crate) fn output(stderr: &str) -> Output {
    let stream = |tail: &str| Stream { tail: tail.into(), bytes: tail.len() as u64, file: None };
    Output { exit: Some(3), stdout: stream(""), stderr: stream(stderr) }
}

fn journal_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("journal")).unwrap()
}

#[test]
fn a_created_session_opens_again_with_its_progress_and_its_snapshot() {
    let (_dir, state) = state_dir();
    let mut session = create_in(&state, &state.session(), &split(Some(Through::Merge)));
    assert_eq!((session.id(), session.progress.records), (ID, 2), "begin and the operation");
    ran(&mut session, RequestName::CheckReadiness, None);
    let compiled = session.compiled.clone();
    drop(session);

    let opened = Session::open(&state.session()).unwrap();
    let p = &opened.progress;
    assert_eq!((p.id.as_str(), p.plan.as_str(), p.records), (ID, "plan.yaml", 4));
    assert_eq!(p.remaining(), [RequestName::PrepareSplit, RequestName::ExecuteSplit]);
    assert_eq!(p.operation.as_ref().and_then(|o| o.goal), Some(Through::Merge));
    assert_eq!(opened.compiled, compiled, "the compiled plan is the snapshot's");
    // The plan's text is kept as it was compiled, whatever happens to the file.
    std::fs::write(state.root.join("plan.yaml"), "version: 1\n").unwrap();
    let sources: Vec<SnapshotFile> =
        serde_json::from_str(&std::fs::read_to_string(state.session().join("plan/sources.json")).unwrap()).unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0].snapshot, "plan/sources/1-plan.yaml");
    assert_eq!(std::fs::read_to_string(state.session().join(&sources[0].snapshot)).unwrap(), PLAN);
}

#[test]
fn a_session_is_never_created_over_another_and_leaves_nothing_half_built() {
    let (_dir, state) = state_dir();
    drop(create_in(&state, &state.session(), &split(None)));
    let journal = journal_bytes(&state.session());
    let mut compilation = compilation(&state.root);
    let compiled = compilation.compiled.take().unwrap();
    let (dest, first) = (state.session(), [&begin("other"), &split(None)]);
    let new = NewSession { dest: &dest, commit: Commit::New, compilation: &compilation, first };
    let refused = Session::create(&state, &new, compiled).err().expect("a session is in progress");
    assert_eq!(
        refused_with(refused),
        (
            format!("{} already exists", state.session().display()),
            "another session was started meanwhile: run `duet status`".to_owned()
        )
    );
    assert_eq!(journal_bytes(&state.session()), journal, "the session in progress is untouched");
    let mut names: Vec<String> =
        std::fs::read_dir(&state.root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    names.sort();
    assert_eq!(names, ["plan.yaml", "session"], "no `.new-*` directory is left behind");
}

#[test]
fn the_last_readiness_check_is_replaced_whole() {
    let (_dir, state) = state_dir();
    for id in ["readiness-1", "readiness-2"] {
        let mut compilation = compilation(&state.root);
        let compiled = compilation.compiled.take().unwrap();
        let (dest, first) = (state.readiness(), [&begin(id), &readiness()]);
        let new = NewSession { dest: &dest, commit: Commit::Replace, compilation: &compilation, first };
        Session::create(&state, &new, compiled).unwrap();
        let view = View::read(&state.readiness(), false, true).unwrap().expect("a readiness check");
        assert_eq!((view.progress.id.as_str(), view.records.len()), (id, 2));
    }
}

#[test]
fn a_view_folds_the_journal_and_changes_nothing() {
    let (_dir, state) = state_dir();
    let mut session = create_in(&state, &state.session(), &split(None));
    ran(&mut session, RequestName::CheckReadiness, None);
    ran(&mut session, RequestName::PrepareSplit, None);
    ran(&mut session, RequestName::ExecuteSplit, Some(("action:stop@upgrade", output("failing as asked\n"))));
    drop(session);
    let before = journal_bytes(&state.session());

    let view = View::read(&state.session(), false, true).unwrap().expect("a session");
    assert_eq!(view.records.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=10).collect::<Vec<u64>>());
    assert_eq!(view.progress.upgrade_state(), State::Split);
    assert_eq!(view.progress.operational(), Operational::Broken);
    assert_eq!(view.failed_output, Some(("action:stop@upgrade".to_owned(), output("failing as asked\n"))));
    assert_eq!(view.damage, None);
    let summary = View::read(&state.session(), false, false).unwrap().expect("a session");
    assert!(summary.records.is_empty(), "records are kept only when asked for");
    assert_eq!(summary.progress.records, 10);
    assert_eq!(journal_bytes(&state.session()), before);
    assert!(View::read(&state.root.join("nothing-here"), false, true).unwrap().is_none());
}

#[test]
fn a_last_record_without_its_end_of_line_is_damage_unless_a_driver_is_writing_it() {
    let (_dir, state) = state_dir();
    drop(create_in(&state, &state.session(), &split(None)));
    let path = state.session().join("journal");
    let mut bytes = journal_bytes(&state.session());
    bytes.extend_from_slice(b"0badcafe {\"seq\":3,");
    std::fs::write(&path, &bytes).unwrap();

    let damaged = View::read(&state.session(), false, false).unwrap().expect("a session");
    let damage = damaged.damage.expect("a torn last record");
    assert!(damage.unfinished && !damage.followed_by_intact, "{damage:?}");
    assert_eq!((damage.line, damaged.progress.records), (4, 2), "the intact records are still folded");
    let driven = View::read(&state.session(), true, false).unwrap().expect("a session");
    assert_eq!(driven.damage, None, "a record being written is not damage");
    assert_eq!(journal_bytes(&state.session()), bytes, "reading repairs nothing");
}

#[test]
fn a_journal_whose_first_record_is_not_begin_holds_no_session() {
    let (_dir, state) = state_dir();
    let dir = state.session();
    std::fs::create_dir_all(&dir).unwrap();
    let message =
        format!("{}: the journal holds no session (its first record is not `begin`)", dir.join("journal").display());
    let help =
        format!("the session directory is damaged: keep a copy, then move {} aside to start again", dir.display());
    let header_only = |_: &mut Journal<Entry>| {};
    let operation_first = |j: &mut Journal<Entry>| {
        j.append(&operation(Command::Merge, &[RequestName::PrepareMerge], None), Durability::Durable).unwrap();
        j.append(&begin(ID), Durability::Durable).unwrap();
    };
    for write in [&header_only as &dyn Fn(&mut Journal<Entry>), &operation_first] {
        let _ = std::fs::remove_file(dir.join("journal"));
        write(&mut Journal::create(&dir.join("journal")).unwrap());
        let refused = View::read(&dir, false, false).err().expect("no session");
        assert_eq!(refused_with(refused), (message.clone(), help.clone()));
        let refused = Session::open(&dir).err().expect("no session");
        assert_eq!(refused_with(refused).0, message);
    }
}

#[test]
fn a_session_id_that_names_a_path_is_refused() {
    let (_dir, state) = state_dir();
    let dir = state.session();
    std::fs::create_dir_all(&dir).unwrap();
    let mut journal = Journal::create(&dir.join("journal")).unwrap();
    journal.append(&begin("../../elsewhere"), Durability::Durable).unwrap();
    let refused = View::read(&dir, false, false).err().expect("not a session id");
    assert_eq!(
        refused_with(refused).0,
        format!("{}: the journal's session id `../../elsewhere` is not a session id", dir.join("journal").display())
    );
}

#[test]
fn the_fold_takes_begin_only_as_the_first_record_and_keeps_the_last_failure() {
    let record = |seq: u64, entry: Entry| Record { seq, time_ms: 0, entry };
    let failed = |step: &str, stderr: &str| Entry::StepFinished {
        request: RequestName::ExecuteSplit,
        step: step.into(),
        attempt: 1,
        result: StepResult::Failed { message: "exit value 3".into(), help: None },
        duration_ms: 1,
        output: Some(output(stderr)),
    };
    let mut fold = Fold::default();
    for (seq, entry) in
        [(1, begin(ID)), (2, failed("action:a@upgrade", "first")), (3, failed("action:b@upgrade", "second"))]
    {
        fold.add(&record(seq, entry));
    }
    assert!(fold.begins(Path::new("/s")).is_ok());
    assert_eq!(fold.failed_output, Some(("action:b@upgrade".to_owned(), output("second"))));

    let mut late = Fold::default();
    late.add(&record(1, Entry::RequestStarted { request: RequestName::CheckReadiness }));
    late.add(&record(2, begin(ID)));
    assert!(late.begins(Path::new("/s")).is_err(), "a begin after other records starts nothing");
    assert!(Fold::default().begins(Path::new("/s")).is_err(), "an empty journal is no session");
}

#[test]
fn a_new_id_is_the_date_the_time_and_four_hex_digits() {
    let id = new_id();
    let parts: Vec<&str> = id.split('-').collect();
    assert!(matches!(parts[..], [date, time, salt] if date.len() == 8 && time.len() == 6 && salt.len() == 4), "{id}");
    assert!(parts[0].chars().chain(parts[1].chars()).all(|c| c.is_ascii_digit()), "{id}");
    assert!(parts[2].chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    assert!(duet_compiler::name::problem(&id).is_none(), "an id names directories: {id}");
}
