//! Runs one request's step DAG (execution model 4) against a [`Platform`], with durable
//! checkpoints (execution model 6).
//!
//! One loop owns the session: it starts every step whose dependencies are complete, and is the
//! only writer of the journal. Steps run as futures polled by that loop (so the two sides'
//! chains and independent services proceed concurrently); they talk back through a channel
//! (progress notes, a service's saved startup type, which must be durable before the step goes
//! on). A step's completion is fsync'd before any step that depends on it starts. A failed step
//! stops the request: nothing new starts, running steps finish, and the request is Broken.
//! Recording is publishing: the console (and any other observer of the session) sees each
//! entry once the journal holds it; nothing here prints.
//!
//! Before running, the loop reconciles steps the journal shows started but not finished (the
//! process died): a platform operation the machine is already past is recorded as done without
//! running it again; an action marked `rerun: unsafe` is not run again and leaves the request
//! Broken until an operator retries it; anything else runs again (at-least-once).
//!
//! The rooms: [`schedule`] (which step may start), `runner` (the loop and what it records),
//! `reconcile` (steps a dead process left, and what its actions left running), `steps/` (one
//! file per step kind).

pub(crate) mod notify;
mod program;
mod reconcile;
mod runner;
mod schedule;
mod steps;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use duet_compiler::compiled::{CompiledPlan, Op, RequestName, Side, State, Step, StepKind};
use duet_contract::event::RunEvent;
use duet_contract::record::{Broken, Entry, Severity, StepResult};

use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::process::interrupt::{Interrupt, Signal};
use crate::state::Ended;
use crate::store::journal::Durability;
use crate::store::session::Session;
pub(crate) use reconcile::stop_interrupted;
use runner::Stops;
use schedule::{Sched, Schedule};
pub(crate) use steps::approval::Given as ApprovalGiven;

/// Runtime settings that are not part of the plan.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// How long a service may take to stop or start before the step fails.
    pub(crate) service_timeout: Duration,
    /// After an action's timeout: SIGTERM, then SIGKILL after this long.
    pub(crate) kill_grace: Duration,
    /// Ctrl-C and SIGTERM ([`crate::process::interrupt`]).
    pub(crate) interrupt: Interrupt,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            service_timeout: Duration::from_secs(120),
            kill_grace: Duration::from_secs(5),
            interrupt: Interrupt::default(),
        }
    }
}

/// The step an abort runs first: the Upgrade Side's event logs and dumps, before the abort
/// discards them.
pub(crate) const EVIDENCE_STEP: &str = "evidence:upgrade";

/// The steps of a request as the runtime runs them: the compiled DAG, plus the evidence step
/// in front of an abort.
/// Borrowed from the plan, except for an abort's (a request can hold thousands of steps).
pub(crate) fn steps_of<'p>(plan: &'p CompiledPlan, request: RequestName, event_logs: &[String]) -> Cow<'p, [Step]> {
    let compiled: &[Step] = plan.requests.get(&request).map_or(&[], |r| r.steps.as_slice());
    if !matches!(request, RequestName::AbortFromSplit | RequestName::AbortFromMerge) {
        return Cow::Borrowed(compiled);
    }
    let mut steps = compiled.to_vec();
    for step in steps.iter_mut().filter(|s| s.after.is_empty()) {
        step.after.push(EVIDENCE_STEP.into());
    }
    let evidence =
        Step { logs: event_logs.to_vec(), ..Step::new(EVIDENCE_STEP, StepKind::LogBackup, Side::Upgrade, Op::Backup) };
    steps.insert(0, evidence);
    Cow::Owned(steps)
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ready,
    Broken(Broken),
    /// Stopped by a signal before the request completed: it stays unfinished, and `resume`
    /// continues it.
    Interrupted(Signal),
}

/// One request being run: the machine, the session (the loop's alone) and the options. The
/// loop's own bookkeeping ([`Stops`]) says why it stopped starting steps.
struct Runner<'a, P> {
    platform: &'a P,
    session: &'a mut Session,
    request: RequestName,
    options: &'a Options,
    stops: Stops,
}

/// Runs `request` of the session to its end (Ready or Broken), or until a signal stops it.
pub(crate) async fn run_request<P: Platform>(
    platform: &P,
    session: &mut Session,
    request: RequestName,
    options: &Options,
) -> Result<Outcome> {
    let plan = Arc::clone(&session.compiled);
    let steps = steps_of(&plan, request, &platform.inventory().event_logs);
    let state = plan.requests.get(&request).map_or(State::Idle, |r| r.state);
    session.publish(&RunEvent::Request { request, state });
    let restarting = session.progress.requests.get(&request).is_some_and(|r| r.ended == Ended::No);
    if !restarting {
        session.record(&Entry::RequestStarted { request }, Durability::Buffered)?;
    }
    let mut runner = Runner { platform, session, request, options, stops: Stops::default() };
    let (sched, broken_at) = runner.resume_point(&steps).await?;
    if let Some(i) = broken_at {
        return runner.finish(Some(&steps[i]));
    }
    runner.run_steps(&steps, Schedule::new(&steps, sched)).await;
    runner.conclude(&steps)
}

impl<P: Platform> Runner<'_, P> {
    /// Where the journal left each step. A step that failed (and was not retried since: a retry
    /// clears failures) means the request was Broken already; duet stopped before saying so:
    /// the second value names the first such step. Every interrupted step is reconciled, even
    /// after a failure, so that nothing a killed attempt left running goes on unsupervised.
    async fn resume_point(&mut self, steps: &[Step]) -> Result<(Vec<Sched>, Option<usize>)> {
        let mut sched = vec![Sched::Pending; steps.len()];
        let mut broken_at: Option<usize> = None;
        for (i, step) in steps.iter().enumerate() {
            let Some(progress) = self.session.progress.step(self.request, &step.id) else { continue };
            if progress.completed() {
                sched[i] = Sched::Done;
            } else if progress.running {
                let attempts = progress.attempts;
                if let Some(outcome) = self.reconcile(step, attempts).await? {
                    sched[i] = outcome;
                }
            } else if matches!(progress.result, Some(StepResult::Failed { .. })) {
                sched[i] = Sched::Failed;
            }
            if sched[i] == Sched::Failed {
                broken_at.get_or_insert(i);
            }
        }
        Ok((sched, broken_at))
    }

    /// After the loop: an error of duet's own (the request stays unfinished), a stop by a
    /// signal (resumable), or the request's end, Ready or Broken.
    fn conclude(mut self, steps: &[Step]) -> Result<Outcome> {
        let request = self.request;
        if let Some(e) = self.stops.halt.take() {
            // Not Broken: nothing about the upgrade failed. The request stays unfinished, so
            // that `resume` continues it once the disk is fixed (a step that did fail is found
            // failed).
            if !self.stops.journal_lost {
                let message = format!("stopped: {e}");
                let note = Entry::Note { request: Some(request), step: None, severity: Severity::Error, message };
                let _ = self.session.record(&note, Durability::Durable);
            }
            return Err(e);
        }
        let interrupt = &self.options.interrupt;
        if let Some(signal) = interrupt.stopping()
            && self.stops.failed.is_none()
            && !self.stops.complete
        {
            let what = if interrupt.escalated() { "the running steps were stopped" } else { "no new step was started" };
            let message = format!("stopped by {}: {what}; `duet resume` continues", signal.name);
            let note = Entry::Note { request: Some(request), step: None, severity: Severity::Warning, message };
            self.session.record(&note, Durability::Durable)?;
            return Ok(Outcome::Interrupted(signal));
        }
        let failed = self.stops.failed.map(|i| &steps[i]);
        self.finish(failed)
    }

    /// Records the request's end: Ready, or Broken at `failed`.
    fn finish(self, failed: Option<&Step>) -> Result<Outcome> {
        let (session, request) = (self.session, self.request);
        let broken = failed.map(|step| {
            let message = match session.progress.step(request, &step.id).and_then(|p| p.result.as_ref()) {
                Some(StepResult::Failed { message, .. }) => message.clone(),
                _ => "failed".into(),
            };
            Broken { step: step.id.clone(), message }
        });
        let peak_rss_kib = crate::process::peak_rss_kib();
        session
            .record(&Entry::RequestFinished { request, broken: broken.clone(), peak_rss_kib }, Durability::Durable)?;
        Ok(broken.map_or(Outcome::Ready, Outcome::Broken))
    }
}

/// A storage failure that stops the loop (see [`Stops::halt`]).
fn halted(message: &str) -> Error {
    Error::storage(message.to_owned())
}
