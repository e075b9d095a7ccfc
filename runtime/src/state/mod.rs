//! The state model (execution model 3, guide 1-8 and 4-25), replayed from a journal.
//!
//! [`Progress`] is what the journal says happened: which requests started and finished, which
//! steps completed, which were running when the process died. The upgrade state and the
//! operational state are derived from it here; [`admit()`] holds every rule about which command
//! may run next, in one table. A refused command changes nothing.

mod admit;
pub(crate) mod repair;

use std::collections::HashMap;

use duet_compiler::compiled::{RequestName, Side, State, step_id};
use duet_compiler::inventory::Startup;
use indexmap::IndexMap;

pub(crate) use duet_contract::record::Command;
use duet_contract::record::{Broken, Entry, StepResult, Through};

pub(crate) use admit::{Refusal, aborts_by_itself, admit, after_broken, hint, next_hint};
pub(crate) use duet_contract::status::Operational;

#[derive(Clone, Debug, Default)]
pub(crate) struct StepProgress {
    /// An approval step that has started waiting, and when its wait expires.
    pub(crate) waiting: Option<Deadline>,
    /// An approval step: who approved, and why.
    pub(crate) approved: Option<(String, String)>,
    pub(crate) attempts: u32,
    /// Started and not finished: the process died (or is still running it).
    pub(crate) running: bool,
    pub(crate) result: Option<StepResult>,
}

impl StepProgress {
    pub(crate) fn completed(&self) -> bool {
        !self.running && self.result.as_ref().is_some_and(StepResult::succeeded)
    }
}

/// When an approval's wait expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deadline {
    Never,
    /// Unix ms.
    At(u64),
}

/// How a request stands in the journal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Started and not finished: running, or interrupted.
    #[default]
    No,
    Ready,
    Broken(Broken),
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RequestProgress {
    pub(crate) ended: Ended,
    pub(crate) steps: HashMap<String, StepProgress>,
}

#[derive(Clone, Debug)]
pub(crate) struct OperationProgress {
    pub(crate) requests: Vec<RequestName>,
    pub(crate) goal: Option<Through>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Saved {
    pub(crate) startup: Startup,
    pub(crate) running: bool,
}

/// Everything a journal says, folded.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress {
    pub(crate) id: String,
    pub(crate) plan: String,
    pub(crate) operation: Option<OperationProgress>,
    /// In the order they first started.
    pub(crate) requests: IndexMap<RequestName, RequestProgress>,
    pub(crate) saved: IndexMap<String, Saved>,
    pub(crate) records: usize,
    /// The last operation duet started by itself (an automatic abort), and why.
    pub(crate) aborted_by_duet: Option<Broken>,
    /// The plan has upgrade tasks (a fact of the session's plan snapshot, not of the journal:
    /// the session sets it when it opens).
    pub(crate) plan_tasks: bool,
}

impl Progress {
    pub(crate) fn apply(&mut self, entry: &Entry) {
        self.records += 1;
        match entry {
            Entry::Begin { id, plan, .. } => {
                self.id.clone_from(id);
                self.plan.clone_from(plan);
            }
            Entry::Operation { requests, goal, automatic, .. } => {
                self.operation = Some(OperationProgress { requests: requests.clone(), goal: *goal });
                if automatic.is_some() {
                    self.aborted_by_duet.clone_from(automatic);
                }
            }
            Entry::RequestStarted { request } => {
                self.requests.entry(*request).or_default().ended = Ended::No;
            }
            Entry::StepStarted { request, step, attempt } => {
                let s = step_mut(self.requests.entry(*request).or_default(), step);
                s.attempts = (*attempt).max(s.attempts);
                s.running = true;
            }
            Entry::StepFinished { request, step, result, .. } => {
                let s = step_mut(self.requests.entry(*request).or_default(), step);
                // An interrupted attempt is as unfinished as one a crash cut short.
                s.running = result.cut_short();
                s.result = Some(result.clone());
            }
            Entry::ServiceSaved { service, startup, running } => {
                // The first save is the original state; a repeated step never overwrites it.
                self.saved.entry(service.clone()).or_insert(Saved { startup: *startup, running: *running });
            }
            Entry::RequestFinished { request, broken, .. } => {
                self.requests.entry(*request).or_default().ended = match broken {
                    Some(b) => Ended::Broken(b.clone()),
                    None => Ended::Ready,
                };
            }
            // The operator asked to run the failed steps again (and with `--from`, the steps
            // named): they are pending once more, and the request runs again.
            Entry::Retry { request, steps, .. } => {
                if let Some(r) = self.requests.get_mut(request) {
                    for (id, step) in r.steps.iter_mut().filter(|(_, s)| !s.running) {
                        if matches!(step.result, Some(StepResult::Failed { .. })) || steps.contains(id) {
                            step.result = None;
                        }
                    }
                    if !steps.is_empty() {
                        r.ended = Ended::No;
                    }
                }
            }
            // The operator marked a failed step done: the request runs on from it.
            Entry::Skip { request, step, user, reason } => {
                let r = self.requests.entry(*request).or_default();
                let s = step_mut(r, step);
                s.running = false;
                s.result = Some(StepResult::Skipped { reason: reason.clone(), user: user.clone() });
                r.ended = Ended::No;
            }
            Entry::AwaitingApproval { request, step, deadline_ms } => {
                let deadline = deadline_ms.map_or(Deadline::Never, Deadline::At);
                step_mut(self.requests.entry(*request).or_default(), step).waiting.get_or_insert(deadline);
            }
            Entry::Approved { request, step, user, reason } => {
                step_mut(self.requests.entry(*request).or_default(), step).approved =
                    Some((user.clone(), reason.clone()));
            }
            Entry::Note { .. } => {}
        }
    }

    pub(crate) fn step(&self, request: RequestName, step: &str) -> Option<&StepProgress> {
        self.requests.get(&request).and_then(|r| r.steps.get(step))
    }

    /// The request that started last.
    pub(crate) fn current(&self) -> Option<(RequestName, &RequestProgress)> {
        self.requests.last().map(|(name, p)| (*name, p))
    }

    /// The approval step the current request waits at (started waiting, not approved, not
    /// finished), if any.
    pub(crate) fn awaited_approval(&self) -> Option<(RequestName, String)> {
        let (request, progress) = self.current()?;
        let (step, _) = progress
            .steps
            .iter()
            .filter(|(_, s)| s.waiting.is_some() && s.approved.is_none() && !s.completed())
            .min_by(|a, b| a.0.cmp(b.0))?;
        Some((request, step.clone()))
    }

    /// The plan's upgrade tasks have yet to complete in this session.
    pub(crate) fn tasks_pending(&self) -> bool {
        self.plan_tasks && !self.finished_ok(RequestName::Upgrade)
    }

    pub(crate) fn finished_ok(&self, request: RequestName) -> bool {
        self.requests.get(&request).is_some_and(|r| r.ended == Ended::Ready)
    }

    /// The upgrade state (guide table 4-4).
    pub(crate) fn upgrade_state(&self) -> State {
        let Some((request, progress)) = self.current() else { return State::Idle };
        match request {
            RequestName::CheckReadiness => State::Idle,
            RequestName::PrepareSplit => State::PrepareSplit,
            RequestName::ExecuteSplit | RequestName::Upgrade => State::Split,
            RequestName::PrepareMerge => State::PrepareMerge,
            RequestName::ExecuteMerge => State::Merge,
            RequestName::Commit => State::Commit,
            RequestName::AbortFromSplit | RequestName::AbortFromMerge => State::Abort,
            RequestName::Finish if progress.ended == Ended::Ready => State::Idle,
            RequestName::Finish => {
                if self.requests.contains_key(&RequestName::Commit) {
                    State::Commit
                } else {
                    State::Abort
                }
            }
        }
    }

    /// The operational state (guide table 4-5). An unfinished request is Busy: either a duet
    /// process is driving it, or one died and `duet resume` continues it.
    ///
    /// An operation whose requests have not all run is Busy too: the process died between two
    /// of them (or right after recording the operation), and `duet resume` runs the rest.
    pub(crate) fn operational(&self) -> Operational {
        let pending = !self.remaining().is_empty();
        let in_operation = |r: RequestName| self.operation.as_ref().is_some_and(|o| o.requests.contains(&r));
        match self.current() {
            Some((_, RequestProgress { ended: Ended::No, .. })) => Operational::Busy,
            Some((r, RequestProgress { ended: Ended::Broken(_), .. })) if pending && !in_operation(r) => {
                Operational::Busy
            }
            Some((_, RequestProgress { ended: Ended::Broken(_), .. })) => Operational::Broken,
            Some(_) | None if pending => Operational::Busy,
            Some(_) | None => Operational::Ready,
        }
    }

    /// Where a `duet run` was headed when it stopped between two operations (Ready, not there
    /// yet): `duet resume` carries on to it.
    pub(crate) fn goal_ahead(&self) -> Option<Through> {
        let goal = self.operation.as_ref()?.goal?;
        let ahead = match self.upgrade_state() {
            State::Split => goal > Through::Split,
            State::Merge => goal > Through::Merge,
            State::Commit | State::Abort => goal == Through::Finish,
            _ => false,
        };
        (ahead && self.operational() == Operational::Ready).then_some(goal)
    }

    /// Why the current request is Broken.
    pub(crate) fn broken(&self) -> Option<(RequestName, &Broken)> {
        self.current().and_then(|(r, p)| match &p.ended {
            Ended::Broken(b) => Some((r, b)),
            _ => None,
        })
    }

    /// Requests of the current operation that have not finished Ready, in order.
    pub(crate) fn remaining(&self) -> Vec<RequestName> {
        self.operation
            .as_ref()
            .map(|op| op.requests.iter().copied().filter(|r| !self.finished_ok(*r)).collect())
            .unwrap_or_default()
    }

    /// The hardware merge completed (abort must revert first).
    pub(crate) fn merged(&self) -> bool {
        self.step(RequestName::ExecuteMerge, step_id::MERGE).is_some_and(StepProgress::completed)
    }

    /// ExecuteMerge stopped something on the Production Side, so an abort must restart it.
    pub(crate) fn production_touched(&self) -> bool {
        self.requests.get(&RequestName::ExecuteMerge).is_some_and(|r| {
            r.steps.iter().any(|(id, s)| step_id::side(id) == Some(Side::Production) && (s.attempts > 0 || s.running))
        })
    }
}

/// A step's progress, created on first sight (without copying the id when it exists).
fn step_mut<'r>(request: &'r mut RequestProgress, step: &str) -> &'r mut StepProgress {
    if !request.steps.contains_key(step) {
        request.steps.insert(step.to_owned(), StepProgress::default());
    }
    request.steps.get_mut(step).expect("inserted above")
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: RequestName = RequestName::ExecuteMerge;

    fn started(step: &str) -> Entry {
        Entry::StepStarted { request: R, step: step.into(), attempt: 1 }
    }

    fn finished(step: &str, result: StepResult) -> Entry {
        Entry::StepFinished { request: R, step: step.into(), attempt: 1, result, duration_ms: 1, output: None }
    }

    fn broken_at(step: &str) -> Progress {
        let mut p = Progress::default();
        for e in [
            Entry::Operation {
                operation: Command::Merge,
                requests: vec![R],
                goal: None,
                command: "duet merge".into(),
                user: "op".into(),
                automatic: None,
            },
            Entry::RequestStarted { request: R },
            started("action:a@upgrade"),
            finished("action:a@upgrade", StepResult::Success { message: String::new() }),
            started(step),
            finished(step, StepResult::Failed { message: "exit value 3".into(), help: None }),
            Entry::RequestFinished {
                request: R,
                broken: Some(Broken { step: step.into(), message: "exit value 3".into() }),
                peak_rss_kib: None,
            },
        ] {
            p.apply(&e);
        }
        p
    }

    /// A signal's interruption, and a storage failure's (decisions D56), alike.
    #[test]
    fn an_interrupted_attempt_is_unfinished_like_one_a_crash_cut_short() {
        let cut = [
            StepResult::Interrupted { message: "SIGINT".into() },
            StepResult::StorageFailed { message: "disk full".into() },
        ];
        for result in cut {
            let mut p = Progress::default();
            p.apply(&Entry::RequestStarted { request: R });
            p.apply(&started("action:x@upgrade"));
            p.apply(&finished("action:x@upgrade", result));
            let s = p.step(R, "action:x@upgrade").expect("step");
            assert!(s.running && !s.completed(), "{s:?}");
            assert_eq!(p.operational(), Operational::Busy);
        }
    }

    #[test]
    fn a_skip_completes_the_step_and_reopens_the_request() {
        let mut p = broken_at("action:x@upgrade");
        assert_eq!(p.operational(), Operational::Broken);
        p.apply(&Entry::Skip { request: R, step: "action:x@upgrade".into(), user: "op".into(), reason: "why".into() });
        assert!(p.step(R, "action:x@upgrade").is_some_and(StepProgress::completed));
        assert_eq!(p.operational(), Operational::Busy, "after a crash here, `resume` runs on");
    }

    #[test]
    fn after_a_failure_the_hint_names_exactly_what_the_state_model_accepts() {
        use RequestName as Rq;
        for request in [
            Rq::CheckReadiness,
            Rq::PrepareSplit,
            Rq::ExecuteSplit,
            Rq::PrepareMerge,
            Rq::ExecuteMerge,
            Rq::Commit,
            Rq::AbortFromSplit,
            Rq::AbortFromMerge,
            Rq::Finish,
        ] {
            let p = session(&[], request, &broken());
            let hint = after_broken(&p);
            if request == Rq::CheckReadiness {
                // Set aside as the last readiness check: no session, Idle.
                assert!(hint.contains("`duet readiness PLAN`") && !hint.contains("retry"), "{hint}");
                assert!(admit(Command::Split, None).is_ok() && admit(Command::Retry, None).is_err());
                continue;
            }
            for (command, named) in [(Command::Retry, "`duet retry`"), (Command::Abort, "`duet abort`")] {
                assert_eq!(
                    hint.contains(named),
                    admit(command, Some(&p)).is_ok(),
                    "{request}: {hint:?} and `duet {}`",
                    command.name()
                );
            }
            let refusal = admit(Command::Merge, Some(&p)).expect_err("a Broken session merges nothing");
            assert!(refusal.help.ends_with(&hint), "{request}: {}", refusal.help);
        }
    }

    /// How a request ends Broken in these tests.
    fn broken() -> Ended {
        Ended::Broken(Broken { step: "action:x@upgrade".into(), message: "exit value 3".into() })
    }

    /// A session whose last request is `last`, after `before` completed Ready, in an operation
    /// of exactly those requests; `last` ended as `ended` (`Ended::No`: interrupted).
    fn session(before: &[RequestName], last: RequestName, ended: &Ended) -> Progress {
        let mut p = Progress::default();
        let mut requests = before.to_vec();
        requests.push(last);
        let operation = Entry::Operation {
            operation: Command::Split,
            requests,
            goal: None,
            command: "duet".into(),
            user: "op".into(),
            automatic: None,
        };
        p.apply(&operation);
        for &request in before {
            p.apply(&Entry::RequestStarted { request });
            p.apply(&Entry::RequestFinished { request, broken: None, peak_rss_kib: None });
        }
        p.apply(&Entry::RequestStarted { request: last });
        match ended {
            Ended::No => {}
            Ended::Ready => p.apply(&Entry::RequestFinished { request: last, broken: None, peak_rss_kib: None }),
            Ended::Broken(b) => {
                p.apply(&Entry::RequestFinished { request: last, broken: Some(b.clone()), peak_rss_kib: None });
            }
        }
        p
    }

    /// Every cell of the state model: each command against no session, and against a session
    /// in each state, Ready, Busy (interrupted) and Broken. The snapshot is the table to review
    /// against the guide (tables 4-4 and 4-5, execution model 3).
    #[test]
    fn every_command_in_every_state() {
        use RequestName as Rq;
        use std::fmt::Write as _;
        let commands = Command::ALL;
        let sessions: [(&[Rq], Rq); 8] = [
            (&[Rq::CheckReadiness], Rq::PrepareSplit),
            (&[Rq::CheckReadiness, Rq::PrepareSplit], Rq::ExecuteSplit),
            (&[], Rq::PrepareMerge),
            (&[Rq::PrepareMerge], Rq::ExecuteMerge),
            (&[], Rq::Commit),
            (&[], Rq::AbortFromSplit),
            (&[], Rq::AbortFromMerge),
            (&[Rq::Commit], Rq::Finish),
        ];
        // Every command a refusal's help names is one the state model accepts right there.
        let hints_hold = |help: &str, p: Option<&Progress>| {
            for quoted in help.split('`').skip(1).step_by(2) {
                let Some(name) = quoted.strip_prefix("duet ").and_then(|q| q.split_whitespace().next()) else {
                    continue;
                };
                if let Some(&named) = commands.iter().find(|c| c.name() == name) {
                    assert!(admit(named, p).is_ok(), "the help {help:?} names `duet {name}`, which is refused there");
                }
            }
        };
        let cell = |command: Command, p: Option<&Progress>| match admit(command, p) {
            Ok(requests) => {
                let names: Vec<&str> = requests.iter().map(|r| r.as_str()).collect();
                format!("  {:<9} runs [{}]\n", command.name(), names.join(", "))
            }
            Err(r) => {
                // A finished session is archived before any command is judged against it.
                if !p.is_some_and(|p| p.finished_ok(RequestName::Finish)) {
                    hints_hold(&r.help, p);
                }
                format!("  {:<9} refused: {}\n            help: {}\n", command.name(), r.message, r.help)
            }
        };
        let mut table = String::from("no session (Idle)\n");
        for command in commands {
            table.push_str(&cell(command, None));
        }
        for (before, last) in sessions {
            for ended in [Ended::Ready, Ended::No, broken()] {
                let p = session(before, last, &ended);
                let _ =
                    write!(table, "\n{last} {ended:?}: state {}, {}\n", p.upgrade_state(), p.operational().as_str());
                for command in commands {
                    table.push_str(&cell(command, Some(&p)));
                }
            }
        }
        insta::assert_snapshot!(table);
    }

    #[test]
    fn a_retry_from_resets_the_steps_named_and_only_those() {
        let mut p = broken_at("action:x@upgrade");
        let retry =
            |steps: Vec<String>| Entry::Retry { request: R, user: "op".into(), from: None, steps, reason: None };
        p.apply(&retry(Vec::new()));
        assert!(p.step(R, "action:x@upgrade").is_some_and(|s| s.result.is_none()), "a plain retry clears the failure");
        assert!(p.step(R, "action:a@upgrade").is_some_and(StepProgress::completed), "and nothing else");
        assert_eq!(p.operational(), Operational::Broken, "a plain retry leaves the request as it was");

        let mut p = broken_at("action:x@upgrade");
        p.apply(&retry(vec!["action:a@upgrade".into()]));
        assert!(p.step(R, "action:a@upgrade").is_some_and(|s| s.result.is_none() && s.attempts == 1));
        assert_eq!(p.operational(), Operational::Busy);
    }
}
