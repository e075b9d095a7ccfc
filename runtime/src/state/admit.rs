//! Which command may run next (execution model 3, guide tables 4-4 and 4-5): the transition
//! table, and the words of its refusals.
//!
//! [`table`] is the state model as one match, keyed by the command, the upgrade state (none
//! without a session) and the operational state, plus the two [`Facts`] a row needs beyond
//! them. It answers with the requests to run or the [`Reason`] for a refusal; [`wording`] alone
//! turns a reason into what the operator reads. [`admit`] derives the keys from a journal's
//! [`Progress`], looks them up and renders the answer.

use duet_compiler::compiled::{RequestName, State};

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
}

/// What the table reads besides the command and the two states; each decides a row of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Facts {
    /// `duet run` stopped between two operations, short of its goal ([`Progress::goal_ahead`]).
    goal_ahead: bool,
    /// ExecuteMerge stopped something on the Production Side, or the hardware merged: an abort
    /// must restart the Production Side first.
    production_touched: bool,
}

impl Facts {
    fn of(p: &Progress) -> Self {
        Facts { goal_ahead: p.goal_ahead().is_some(), production_touched: p.merged() || p.production_touched() }
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
        Reason::NothingPending => refuse(format!("nothing to {verb}: {here}"), next_hint(state)),
        Reason::Committed => refuse(
            "cannot abort: the upgrade is committed, and a commit cannot be undone",
            match operational {
                Operational::Ready => "run `duet finish`",
                Operational::Busy => "run `duet resume` to finish the commit",
                Operational::Broken => "correct the problem, then `duet retry` the commit",
            },
        ),
        Reason::WrongState => refuse(format!("cannot {verb}: {here}"), next_hint(state)),
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
