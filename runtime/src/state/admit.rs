//! Which command may run next (execution model 3, guide tables 4-4 and 4-5): the transition
//! table, and the words of its refusals.
//!
//! [`table`] is the state model as one match, keyed by the command, the upgrade state (none
//! without a session) and the operational state, plus the two [`Facts`] a row needs beyond
//! them. It answers with the requests to run or the [`Reason`] for a refusal; [`wording`] alone
//! turns a reason into what the operator reads. [`admit`] derives the keys from a journal's
//! [`Progress`], looks them up and renders the answer.

use duet_compiler::compiled::{OnFailure, RequestName, State, Unattended, step_id};
use duet_contract::record::Broken;

use super::{Command, Operational, Progress};

/// Why a command may not run now: the message, and what to do instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) message: String,
    pub(crate) help: String,
}

/// What the table says of one cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// These requests, in order. None: the operation is done, and `duet run`'s goal is ahead.
    Runs(&'static [RequestName]),
    /// What is left of the current operation ([`Progress::remaining`]).
    RunsRemaining,
    Refused(Reason),
}

/// Why the table refuses a command; [`wording`] says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    /// There is no session to act on.
    NoSession,
    /// The last request has not finished (interrupted, or still being driven).
    Busy,
    /// A retry or skip of a request that did not fail: it was interrupted, and resumes.
    Interrupted,
    /// The current request failed and must be corrected first.
    Broken,
    /// A retry, skip or resume with nothing failed or left to run.
    NothingPending,
    /// An abort after the commit, which cannot be undone.
    Committed,
    /// Not a next step from this state.
    WrongState,
    /// `duet upgrade` with no upgrade task left to run (the plan has none, or they ran).
    NoTasks,
    /// A merge before the plan's upgrade tasks ran.
    TasksPending,
}

/// What the table reads besides the command and the two states; each decides a row of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Facts {
    /// `duet run` stopped between two operations, short of its goal ([`Progress::goal_ahead`]).
    goal_ahead: bool,
    /// ExecuteMerge stopped something on the Production Side, or the hardware merged: an abort
    /// must restart the Production Side first.
    production_touched: bool,
    /// The plan has upgrade tasks, and their request has not completed in this session.
    tasks_pending: bool,
}

impl Facts {
    fn of(p: &Progress) -> Self {
        Facts {
            goal_ahead: p.goal_ahead().is_some(),
            production_touched: p.merged() || p.production_touched(),
            tasks_pending: p.tasks_pending(),
        }
    }
}

/// The state model. `state` is `None` without a session (whose operational state is Ready, as
/// `duet status` shows it). The first row that matches decides.
#[rustfmt::skip]
#[expect(clippy::match_same_arms, reason = "rows grouped by command, so some answers repeat")]
fn table(command: Command, state: Option<State>, operational: Operational, facts: Facts) -> Verdict {
    use Command as C;
    use Operational::{Broken, Busy, Ready};
    use RequestName as R;
    use State as S;
    use Verdict::{Refused, Runs, RunsRemaining};
    match (command, state, operational) {
        // A split always checks readiness first (execution model 3).
        (C::Readiness, None, _) => Runs(&[R::CheckReadiness]),
        (C::Split,     None, _) => Runs(&[R::CheckReadiness, R::PrepareSplit, R::ExecuteSplit]),
        (_,            None, _) => Refused(Reason::NoSession),

        (C::Resume, _,                     Busy)   => RunsRemaining,
        (C::Resume, _,                     Broken) => Refused(Reason::Broken),
        (C::Resume, _,                     Ready) if facts.goal_ahead => Runs(&[]),
        // A Prepare request is never the last of an operation; should one be (a journal from
        // elsewhere), its Execute request is what resuming means, as `next_hint` says.
        (C::Resume, Some(S::PrepareSplit), Ready)  => Runs(&[R::ExecuteSplit]),
        (C::Resume, Some(S::PrepareMerge), Ready)  => Runs(&[R::ExecuteMerge]),
        (C::Resume, _,                     Ready)  => Refused(Reason::NothingPending),

        (C::Retry | C::Skip, _, Broken) => RunsRemaining,
        (C::Retry | C::Skip, _, Busy)   => Refused(Reason::Interrupted),
        (C::Retry | C::Skip, _, Ready)  => Refused(Reason::NothingPending),

        // From Broken too (execution model 3), and from Busy: the abort first stops what the
        // interrupted request left running.
        (C::Abort, Some(s),         _) if abortable(s) && facts.production_touched => Runs(&[R::AbortFromMerge]),
        (C::Abort, Some(s),         _) if abortable(s) => Runs(&[R::AbortFromSplit]),
        (C::Abort, Some(S::Commit), _) => Refused(Reason::Committed),

        // The plan's upgrade tasks run while split, before the merge (issue 12).
        (C::Upgrade, Some(S::Split), Ready) if facts.tasks_pending => Runs(&[R::Upgrade]),
        (C::Upgrade, Some(S::Split), Ready) => Refused(Reason::NoTasks),
        (C::Merge,   Some(S::Split), Ready) if facts.tasks_pending => Refused(Reason::TasksPending),

        // No going back, no skipping, no next state while Busy or Broken (execution model 3).
        (C::Merge,  Some(S::Split),             Ready)  => Runs(&[R::PrepareMerge, R::ExecuteMerge]),
        (C::Commit, Some(S::Merge),             Ready)  => Runs(&[R::Commit]),
        (C::Finish, Some(S::Commit | S::Abort), Ready)  => Runs(&[R::Finish]),
        (_,         _,                          Ready)  => Refused(Reason::WrongState),
        (_,         _,                          Busy)   => Refused(Reason::Busy),
        (_,         _,                          Broken) => Refused(Reason::Broken),
    }
}

/// The states an abort may leave (execution model 3).
fn abortable(state: State) -> bool {
    matches!(state, State::PrepareSplit | State::Split | State::PrepareMerge | State::Merge)
}

/// Checks a command against the session's state (`None`: no session, Idle). On success says
/// which requests to run, in order.
pub(crate) fn admit(command: Command, session: Option<&Progress>) -> Result<Vec<RequestName>, Refusal> {
    let (state, operational, facts) = match session {
        None => (None, Operational::Ready, Facts::default()),
        Some(p) => (Some(p.upgrade_state()), p.operational(), Facts::of(p)),
    };
    match table(command, state, operational, facts) {
        Verdict::Runs(requests) => Ok(requests.to_vec()),
        Verdict::RunsRemaining => Ok(session.map(Progress::remaining).unwrap_or_default()),
        Verdict::Refused(reason) => Err(wording(reason, command, session)),
    }
}

/// What the operator reads when `command` is refused for `reason`.
fn wording(reason: Reason, command: Command, session: Option<&Progress>) -> Refusal {
    let verb = command.verb();
    let Some(p) = session.filter(|_| reason != Reason::NoSession) else {
        let help = match command {
            Command::Retry | Command::Resume | Command::Skip => "start one with `duet split PLAN` or `duet run PLAN`",
            _ => "start one with `duet split PLAN`; `duet readiness PLAN` checks the machine first",
        };
        return refuse(format!("cannot {verb}: no upgrade session (state Idle)"), help);
    };
    let state = p.upgrade_state();
    let operational = p.operational();
    let here = format!("the session is in state {state} ({})", operational.as_str());
    match reason {
        Reason::NoSession => unreachable!("worded without the session above"),
        Reason::Busy => refuse(
            format!("cannot {verb}: {here}: its last request was interrupted"),
            "run `duet resume` to finish it first",
        ),
        Reason::Interrupted => refuse(
            format!("cannot {verb}: {here}, interrupted while running"),
            "run `duet resume` to continue where it stopped",
        ),
        Reason::Broken => {
            let (request, broken) = p.broken().expect("Broken has a reason");
            refuse(
                format!("cannot {verb}: {request} is Broken at step {}: {}", broken.step, broken.message),
                format!("correct the problem, {}", after_broken(p)),
            )
        }
        Reason::NothingPending => refuse(format!("nothing to {verb}: {here}"), hint(p)),
        Reason::Committed => refuse(
            "cannot abort: the upgrade is committed, and a commit cannot be undone",
            match operational {
                Operational::Ready => "run `duet finish`",
                Operational::Busy => "run `duet resume` to finish the commit",
                Operational::Broken => "correct the problem, then `duet retry` the commit",
            },
        ),
        Reason::WrongState => refuse(format!("cannot {verb}: {here}"), hint(p)),
        Reason::NoTasks if p.plan_tasks => {
            refuse(format!("nothing to run: the upgrade tasks have run ({here})"), next_hint(state))
        }
        Reason::NoTasks => refuse(format!("nothing to run: the plan has no upgrade tasks ({here})"), next_hint(state)),
        Reason::TasksPending => refuse(
            format!("cannot merge: the plan's upgrade tasks have not run ({here})"),
            "run them with `duet upgrade` (or `duet run PLAN`), then `duet merge`; or `duet abort`",
        ),
    }
}

fn refuse(message: impl Into<String>, help: impl Into<String>) -> Refusal {
    Refusal { message: message.into(), help: help.into() }
}

/// What to run once the problem that left the current request Broken is corrected: only
/// commands [`admit`] accepts in that state (`duet retry`, and `duet abort` where an abort is
/// allowed). A failed readiness check leaves no session (the state stays Idle), so it is run
/// again instead. Every failure's help ends with this, wherever it is shown.
pub(crate) fn after_broken(p: &Progress) -> String {
    let state = p.upgrade_state();
    if state == State::Idle {
        return "then run the readiness check again: `duet readiness PLAN`, or `duet split PLAN` (or `duet run PLAN`) to split once it passes".into();
    }
    if abortable(state) { "then `duet retry`; or `duet abort`".into() } else { "then `duet retry`".into() }
}

/// Whether the plan says to abort when `broken` happens (`on_failure: abort`, or a failed
/// approval's `on_expiry: abort`) and the state model allows an abort from here: then duet
/// aborts by itself (and a `resume` does, when duet died before it could).
pub(crate) fn aborts_by_itself(p: &Progress, plan: &Unattended, broken: &Broken) -> bool {
    let says = match plan.approvals.iter().find(|a| step_id::approve(&a.id) == broken.step) {
        Some(approval) => approval.on_expiry,
        None => plan.on_failure,
    };
    says == OnFailure::Abort && admit(Command::Abort, Some(p)).is_ok()
}

/// What may come next from the session's Ready state, its upgrade tasks considered.
pub(crate) fn hint(p: &Progress) -> String {
    match p.upgrade_state() {
        State::Split if p.tasks_pending() => {
            "run the plan's upgrade tasks: `duet upgrade`, then `duet merge`; or `duet abort`".into()
        }
        state => next_hint(state),
    }
}

/// What may come next from a Ready state.
pub(crate) fn next_hint(state: State) -> String {
    match state {
        State::Idle => "start a session with `duet split PLAN`".into(),
        State::PrepareSplit | State::PrepareMerge => "run `duet resume`".into(),
        State::Split => "install the software on the Upgrade Side, then `duet merge`; or `duet abort`".into(),
        State::Merge => "check the applications, then `duet commit`; or `duet abort`".into(),
        State::Commit | State::Abort => "run `duet finish`".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Command as C;
    use Operational::{Broken, Busy, Ready};
    use RequestName as R;
    use duet_compiler::compiled::{Side, step_id};
    use duet_contract::record::{Entry, StepResult, Through};

    /// The columns of the grids below, in order.
    const STATES: [State; 7] = [
        State::Idle,
        State::PrepareSplit,
        State::Split,
        State::PrepareMerge,
        State::Merge,
        State::Commit,
        State::Abort,
    ];

    // Answers, named short so that a row of a grid fits a line.
    const WRONG: Verdict = Verdict::Refused(Reason::WrongState);
    const BUSY: Verdict = Verdict::Refused(Reason::Busy);
    const BROKEN: Verdict = Verdict::Refused(Reason::Broken);
    const NOTHING: Verdict = Verdict::Refused(Reason::NothingPending);
    const INTERRUPTED: Verdict = Verdict::Refused(Reason::Interrupted);
    const COMMITTED: Verdict = Verdict::Refused(Reason::Committed);
    const NO_SESSION: Verdict = Verdict::Refused(Reason::NoSession);
    const NO_TASKS: Verdict = Verdict::Refused(Reason::NoTasks);
    const REST: Verdict = Verdict::RunsRemaining;
    const MERGE: Verdict = Verdict::Runs(&[R::PrepareMerge, R::ExecuteMerge]);
    const COMMIT: Verdict = Verdict::Runs(&[R::Commit]);
    const FINISH: Verdict = Verdict::Runs(&[R::Finish]);
    const ABORT: Verdict = Verdict::Runs(&[R::AbortFromSplit]);
    const EXEC_SPLIT: Verdict = Verdict::Runs(&[R::ExecuteSplit]);
    const EXEC_MERGE: Verdict = Verdict::Runs(&[R::ExecuteMerge]);

    /// A row per command (in `Command::ALL` order), a column per state (in `STATES` order).
    type Grid = [(Command, [Verdict; 7]); 10];

    /// Every cell of a Ready session, where neither fact holds.
    #[rustfmt::skip]
    const WHEN_READY: Grid = [
        //              Idle     PrepareSplit Split    PrepareMerge Merge    Commit     Abort
        (C::Readiness, [WRONG,   WRONG,       WRONG,   WRONG,       WRONG,   WRONG,     WRONG]),
        (C::Split,     [WRONG,   WRONG,       WRONG,   WRONG,       WRONG,   WRONG,     WRONG]),
        (C::Upgrade,   [WRONG,   WRONG,       NO_TASKS, WRONG,      WRONG,   WRONG,     WRONG]),
        (C::Merge,     [WRONG,   WRONG,       MERGE,   WRONG,       WRONG,   WRONG,     WRONG]),
        (C::Commit,    [WRONG,   WRONG,       WRONG,   WRONG,       COMMIT,  WRONG,     WRONG]),
        (C::Abort,     [WRONG,   ABORT,       ABORT,   ABORT,       ABORT,   COMMITTED, WRONG]),
        (C::Finish,    [WRONG,   WRONG,       WRONG,   WRONG,       WRONG,   FINISH,    FINISH]),
        (C::Retry,     [NOTHING, NOTHING,     NOTHING, NOTHING,     NOTHING, NOTHING,   NOTHING]),
        (C::Resume,    [NOTHING, EXEC_SPLIT,  NOTHING, EXEC_MERGE,  NOTHING, NOTHING,   NOTHING]),
        (C::Skip,      [NOTHING, NOTHING,     NOTHING, NOTHING,     NOTHING, NOTHING,   NOTHING]),
    ];

    /// Every cell of a Busy session (interrupted, or being driven).
    #[rustfmt::skip]
    const WHEN_BUSY: Grid = [
        //              Idle         PrepareSplit Split        PrepareMerge Merge        Commit       Abort
        (C::Readiness, [BUSY,        BUSY,        BUSY,        BUSY,        BUSY,        BUSY,        BUSY]),
        (C::Split,     [BUSY,        BUSY,        BUSY,        BUSY,        BUSY,        BUSY,        BUSY]),
        (C::Upgrade,   [BUSY,        BUSY,        BUSY,        BUSY,        BUSY,        BUSY,        BUSY]),
        (C::Merge,     [BUSY,        BUSY,        BUSY,        BUSY,        BUSY,        BUSY,        BUSY]),
        (C::Commit,    [BUSY,        BUSY,        BUSY,        BUSY,        BUSY,        BUSY,        BUSY]),
        (C::Abort,     [BUSY,        ABORT,       ABORT,       ABORT,       ABORT,       COMMITTED,   BUSY]),
        (C::Finish,    [BUSY,        BUSY,        BUSY,        BUSY,        BUSY,        BUSY,        BUSY]),
        (C::Retry,     [INTERRUPTED, INTERRUPTED, INTERRUPTED, INTERRUPTED, INTERRUPTED, INTERRUPTED, INTERRUPTED]),
        (C::Resume,    [REST,        REST,        REST,        REST,        REST,        REST,        REST]),
        (C::Skip,      [INTERRUPTED, INTERRUPTED, INTERRUPTED, INTERRUPTED, INTERRUPTED, INTERRUPTED, INTERRUPTED]),
    ];

    /// Every cell of a Broken session.
    #[rustfmt::skip]
    const WHEN_BROKEN: Grid = [
        //              Idle    PrepareSplit Split   PrepareMerge Merge   Commit     Abort
        (C::Readiness, [BROKEN, BROKEN,      BROKEN, BROKEN,      BROKEN, BROKEN,    BROKEN]),
        (C::Split,     [BROKEN, BROKEN,      BROKEN, BROKEN,      BROKEN, BROKEN,    BROKEN]),
        (C::Upgrade,   [BROKEN, BROKEN,      BROKEN, BROKEN,      BROKEN, BROKEN,    BROKEN]),
        (C::Merge,     [BROKEN, BROKEN,      BROKEN, BROKEN,      BROKEN, BROKEN,    BROKEN]),
        (C::Commit,    [BROKEN, BROKEN,      BROKEN, BROKEN,      BROKEN, BROKEN,    BROKEN]),
        (C::Abort,     [BROKEN, ABORT,       ABORT,  ABORT,       ABORT,  COMMITTED, BROKEN]),
        (C::Finish,    [BROKEN, BROKEN,      BROKEN, BROKEN,      BROKEN, BROKEN,    BROKEN]),
        (C::Retry,     [REST,   REST,        REST,   REST,        REST,   REST,      REST]),
        (C::Resume,    [BROKEN, BROKEN,      BROKEN, BROKEN,      BROKEN, BROKEN,    BROKEN]),
        (C::Skip,      [REST,   REST,        REST,   REST,        REST,   REST,      REST]),
    ];

    /// Without a session, whatever operational state is passed.
    #[rustfmt::skip]
    const WITHOUT_SESSION: [(Command, Verdict); 10] = [
        (C::Readiness, Verdict::Runs(&[R::CheckReadiness])),
        (C::Split,     Verdict::Runs(&[R::CheckReadiness, R::PrepareSplit, R::ExecuteSplit])),
        (C::Upgrade,   NO_SESSION),
        (C::Merge,     NO_SESSION),
        (C::Commit,    NO_SESSION),
        (C::Abort,     NO_SESSION),
        (C::Finish,    NO_SESSION),
        (C::Retry,     NO_SESSION),
        (C::Resume,    NO_SESSION),
        (C::Skip,      NO_SESSION),
    ];

    /// The grids' answer for a cell with a session.
    fn grid(command: Command, state: State, operational: Operational) -> Verdict {
        let grid = match operational {
            Ready => &WHEN_READY,
            Busy => &WHEN_BUSY,
            Broken => &WHEN_BROKEN,
        };
        let column = STATES.iter().position(|&s| s == state).expect("a column per state");
        grid.iter().find(|(c, _)| *c == command).expect("a row per command").1[column]
    }

    /// The grids' answer, with what each fact changes.
    fn expected(command: Command, state: State, operational: Operational, facts: Facts) -> Verdict {
        let before_commit = [State::PrepareSplit, State::Split, State::PrepareMerge, State::Merge];
        match (command, operational) {
            (C::Resume, Ready) if facts.goal_ahead => Verdict::Runs(&[]),
            (C::Upgrade, Ready) if facts.tasks_pending && state == State::Split => Verdict::Runs(&[R::Upgrade]),
            (C::Merge, Ready) if facts.tasks_pending && state == State::Split => Verdict::Refused(Reason::TasksPending),
            (C::Abort, _) if facts.production_touched && before_commit.contains(&state) => {
                Verdict::Runs(&[R::AbortFromMerge])
            }
            _ => grid(command, state, operational),
        }
    }

    /// Every cell with a session where the table does not answer as [`expected`], described.
    fn wrong_cells(facts: Facts) -> Vec<String> {
        let mut wrong = Vec::new();
        for operational in [Ready, Busy, Broken] {
            for command in Command::ALL {
                for state in STATES {
                    let got = table(command, Some(state), operational, facts);
                    let want = expected(command, state, operational, facts);
                    if got != want {
                        let cell = format!("{} in {state} ({})", command.name(), operational.as_str());
                        wrong.push(format!("{cell}: {got:?}, expected {want:?}"));
                    }
                }
            }
        }
        wrong
    }

    #[test]
    fn the_grids_have_a_row_per_command_in_order() {
        for grid in [WHEN_READY, WHEN_BUSY, WHEN_BROKEN] {
            assert_eq!(grid.map(|(c, _)| c), Command::ALL);
        }
        assert_eq!(WITHOUT_SESSION.map(|(c, _)| c), Command::ALL);
    }

    #[test]
    fn without_a_session_only_a_readiness_check_or_a_split_runs() {
        for (command, want) in WITHOUT_SESSION {
            for operational in [Ready, Busy, Broken] {
                for facts in
                    [Facts::default(), Facts { goal_ahead: true, production_touched: true, tasks_pending: true }]
                {
                    assert_eq!(table(command, None, operational, facts), want, "{} ({operational:?})", command.name());
                }
            }
        }
    }

    #[test]
    fn every_cell_with_a_session_answers_as_its_grid() {
        let wrong = wrong_cells(Facts::default());
        assert!(wrong.is_empty(), "{} cells:\n{}", wrong.len(), wrong.join("\n"));
    }

    #[test]
    fn with_a_goal_ahead_a_ready_resume_runs_nothing_and_no_other_cell_changes() {
        for (production_touched, tasks_pending) in [(false, false), (true, false), (false, true), (true, true)] {
            let facts = Facts { goal_ahead: true, production_touched, tasks_pending };
            let wrong = wrong_cells(facts);
            assert!(wrong.is_empty(), "{facts:?}, {} cells:\n{}", wrong.len(), wrong.join("\n"));
        }
    }

    #[test]
    fn once_the_production_side_was_touched_an_abort_restarts_it_first_and_no_other_cell_changes() {
        for (goal_ahead, tasks_pending) in [(false, false), (true, false), (false, true), (true, true)] {
            let facts = Facts { goal_ahead, production_touched: true, tasks_pending };
            let wrong = wrong_cells(facts);
            assert!(wrong.is_empty(), "{facts:?}, {} cells:\n{}", wrong.len(), wrong.join("\n"));
        }
    }

    fn journal(entries: &[Entry]) -> Progress {
        let mut p = Progress::default();
        for entry in entries {
            p.apply(entry);
        }
        p
    }

    fn operation(requests: &[RequestName], goal: Option<Through>) -> Entry {
        Entry::Operation {
            operation: Command::Merge,
            requests: requests.to_vec(),
            goal,
            command: "duet".into(),
            user: "op".into(),
            automatic: None,
        }
    }

    fn ran(request: RequestName) -> [Entry; 2] {
        [Entry::RequestStarted { request }, Entry::RequestFinished { request, broken: None, peak_rss_kib: None }]
    }

    /// ExecuteMerge's step `id` started, and finished Success if `done`.
    fn step(id: &str, done: bool) -> Vec<Entry> {
        let request = R::ExecuteMerge;
        let mut entries = vec![Entry::StepStarted { request, step: id.into(), attempt: 1 }];
        if done {
            let result = StepResult::Success { message: String::new() };
            entries.push(Entry::StepFinished {
                request,
                step: id.into(),
                attempt: 1,
                result,
                duration_ms: 1,
                output: None,
            });
        }
        entries
    }

    /// An interrupted merge (state Merge, Busy) that got as far as `steps`.
    fn merging(steps: &[Vec<Entry>]) -> Progress {
        let mut entries = vec![operation(&[R::PrepareMerge, R::ExecuteMerge], None)];
        entries.extend(ran(R::PrepareMerge));
        entries.push(Entry::RequestStarted { request: R::ExecuteMerge });
        entries.extend(steps.iter().flatten().cloned());
        journal(&entries)
    }

    #[test]
    fn an_abort_restarts_the_production_side_once_the_merge_touched_it_or_merged() {
        let production = step_id::service("W3SVC", Side::Production);
        let upgrade = step_id::action("stop", Side::Upgrade);
        for (steps, want) in [
            (vec![step(&upgrade, true)], R::AbortFromSplit),
            (vec![step(&upgrade, true), step(&production, false)], R::AbortFromMerge),
            (vec![step(step_id::MERGE, true)], R::AbortFromMerge),
            (vec![step(step_id::MERGE, false)], R::AbortFromSplit),
        ] {
            let p = merging(&steps);
            assert_eq!((p.upgrade_state(), p.operational()), (State::Merge, Busy));
            assert_eq!(admit(Command::Abort, Some(&p)), Ok(vec![want]), "{steps:?}");
        }
    }

    #[test]
    fn a_resume_between_two_operations_of_a_run_runs_nothing_and_carries_on() {
        let split = [R::CheckReadiness, R::PrepareSplit, R::ExecuteSplit];
        let mut entries = vec![operation(&split, Some(Through::Merge))];
        entries.extend(split.into_iter().flat_map(ran));
        let p = journal(&entries);
        assert_eq!((p.upgrade_state(), p.operational()), (State::Split, Ready));
        assert_eq!(admit(Command::Resume, Some(&p)), Ok(Vec::new()));

        entries[0] = operation(&split, None);
        let refusal = admit(Command::Resume, Some(&journal(&entries))).expect_err("no goal, nothing to resume");
        assert!(refusal.message.starts_with("nothing to resume"), "{refusal:?}");
    }
}
