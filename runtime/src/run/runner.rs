//! The loop: starts every ready step, records what the running ones say and how they end. It
//! is the journal's only writer while a request runs; what it records, it publishes (through
//! the session), so it prints nothing itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use std::collections::HashMap;

use duet_compiler::compiled::{RequestName, Step, StepKind};
use duet_compiler::plan::Rerun;
use duet_contract::event::RunEvent;
use duet_contract::record::{Entry, Severity, StepResult};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;

use super::program::{Programs, runs_program};
use super::steps::{self, Done, Message, StepCtx};
use super::{Runner, Schedule, halted};
use crate::error::Error;
use crate::platform::Platform;
use crate::process::interrupt::Interrupt;
use crate::state::StepProgress;
use crate::store::journal::Durability;

/// Why the step loop stopped starting steps, and whether it can still record.
#[derive(Default)]
pub(super) struct Stops {
    /// The first step that failed.
    pub(super) failed: Option<usize>,
    /// What stops duet although no step failed: a file of its own it could not write.
    pub(super) halt: Option<Error>,
    /// A journal write failed: nothing more is recorded.
    pub(super) journal_lost: bool,
    /// Every step completed.
    pub(super) complete: bool,
}

impl Stops {
    fn starting(&self, interrupt: &Interrupt) -> bool {
        self.failed.is_none() && self.halt.is_none() && interrupt.stopping().is_none()
    }

    fn lose(&mut self, e: Error) {
        self.journal_lost = true;
        self.halt.get_or_insert(e);
    }
}

/// The step attempts in flight, each borrowing the loop's [`StepCtx`].
type Running<'c> = FuturesUnordered<Pin<Box<dyn Future<Output = Done> + 'c>>>;

impl<P: Platform> Runner<'_, P> {
    /// Runs the schedule until no step runs and none may start; [`Runner::stops`] says why.
    pub(super) async fn run_steps(&mut self, steps: &[Step], mut schedule: Schedule) {
        let plan = Arc::clone(&self.session.compiled);
        let programs = Programs::new(&plan);
        let saved = self.session.progress.saved.clone();
        let approvals: HashMap<String, StepProgress> = steps
            .iter()
            .filter(|s| s.kind == StepKind::Approval)
            .filter_map(|s| Some((s.id.clone(), self.session.progress.step(self.request, &s.id)?.clone())))
            .collect();
        let (dir, id) = (self.session.dir.clone(), self.session.id().to_owned());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let ctx = StepCtx {
            platform: self.platform,
            plan: &plan,
            programs: &programs,
            request: self.request,
            session_dir: &dir,
            session_id: &id,
            saved: &saved,
            approvals: &approvals,
            options: self.options,
            tx,
            output_dir: std::cell::Cell::new(false),
        };
        let mut running: Running<'_> = FuturesUnordered::new();
        let interrupt = &self.options.interrupt;
        let mut told = interrupt.stopping().is_some();
        loop {
            self.start_ready(&ctx, steps, &mut schedule, &mut running).await;
            if running.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                () = interrupt.stop(), if !told => {
                    told = true;
                    self.told_to_stop();
                }
                Some(message) = rx.recv() => self.deliver(message),
                Some(done) = running.next() => {
                    while let Ok(message) = rx.try_recv() {
                        self.deliver(message);
                    }
                    let (index, ok) = (done.index, done.result.succeeded());
                    self.finished(&steps[index], done);
                    schedule.finished(index, ok);
                }
            }
        }
        drop(running);
        drop(ctx);
        while let Ok(message) = rx.try_recv() {
            self.deliver(message);
        }
        self.stops.complete = schedule.complete();
    }

    /// Starts every step the schedule has ready, while steps may start.
    async fn start_ready<'c>(
        &mut self,
        ctx: &'c StepCtx<'c, P>,
        steps: &'c [Step],
        schedule: &mut Schedule,
        running: &mut Running<'c>,
    ) {
        while self.stops.starting(&self.options.interrupt)
            && let Some(i) = schedule.next()
        {
            let step = &steps[i];
            let attempt = self.session.progress.step(self.request, &step.id).map_or(0, |p| p.attempts) + 1;
            if attempt > 1
                && runs_program(step)
                && let Some(refused) = self.clear_earlier_attempts(step).await
            {
                // Not started: an earlier attempt of this unsafe action still runs. Recorded as
                // a failure of its last attempt, as a reconciled one is.
                self.record(&finished(self.request, step, attempt - 1, refused), Durability::Durable);
                self.stops.failed.get_or_insert(i);
                schedule.finished(i, false);
                continue;
            }
            let unsafe_action = ctx.program(step).is_some_and(|p| p.rerun == Rerun::Unsafe);
            let durability = if unsafe_action { Durability::Durable } else { Durability::Buffered };
            self.record(&Entry::StepStarted { request: self.request, step: step.id.clone(), attempt }, durability);
            if self.stops.journal_lost {
                break;
            }
            running.push(Box::pin(steps::run(ctx, i, step, attempt)));
        }
    }

    /// The activity log says when duet was told to stop, and what it waits for.
    fn told_to_stop(&mut self) {
        let signal = self.options.interrupt.stopping().map_or("a signal", |s| s.name);
        let message = format!("{signal} received: starting no new step; waiting for the running steps");
        let note = Entry::Note { request: Some(self.request), step: None, severity: Severity::Warning, message };
        self.record(&note, Durability::Durable);
    }

    /// A step attempt ended: its result is recorded, durably, before anything depending on it
    /// starts.
    fn finished(&mut self, step: &Step, done: Done) {
        if let StepResult::StorageFailed { message } | StepResult::NotStarted { message } = &done.result {
            self.stops.halt.get_or_insert_with(|| halted(message));
        }
        if let Some(e) = done.halt {
            self.stops.halt.get_or_insert(e);
        }
        if matches!(done.result, StepResult::Failed { .. }) {
            self.stops.failed.get_or_insert(done.index);
        }
        let entry = Entry::StepFinished {
            request: self.request,
            step: step.id.clone(),
            attempt: done.attempt,
            result: done.result,
            duration_ms: u64::try_from(done.duration.as_millis()).unwrap_or(u64::MAX),
            output: done.output,
        };
        self.record(&entry, Durability::Durable);
    }

    /// Records `entry`, unless the journal is lost (then it is only shown); a failure to record
    /// loses it.
    pub(super) fn record(&mut self, entry: &Entry, durability: Durability) {
        if self.stops.journal_lost {
            self.session.publish(&RunEvent::Unrecorded(entry));
        } else if let Err(e) = self.session.record(entry, durability) {
            self.stops.lose(e.into());
        }
    }

    /// Records a step's message. With the journal lost, it is only shown, and a step waiting
    /// for it to be durable is told it is not.
    fn deliver(&mut self, message: Message) {
        if self.stops.journal_lost {
            self.session.publish(&RunEvent::Unrecorded(&message.entry));
            if let Some(ack) = message.ack {
                let _ = ack.send(Err("the journal could not be written; nothing more is recorded".to_owned()));
            }
            return;
        }
        let durability = if message.ack.is_some() { Durability::Durable } else { Durability::Buffered };
        let written = self.session.record(&message.entry, durability);
        if let Some(ack) = message.ack {
            let _ = ack.send(written.as_ref().copied().map_err(ToString::to_string));
        }
        if let Err(e) = written {
            self.stops.lose(e.into());
        }
    }
}

/// The record of a step attempt that ended without running (reconciled, refused).
pub(super) fn finished(request: RequestName, step: &Step, attempt: u32, result: StepResult) -> Entry {
    Entry::StepFinished { request, step: step.id.clone(), attempt, result, duration_ms: 0, output: None }
}
