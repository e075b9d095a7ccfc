//! One file per step kind: [`probe`] (readiness checks, the plan's binding), [`operate`] (a
//! hardware operation), [`service`] (stop, disable, restore and start a service), [`action`] (a
//! custom action's process), [`backup`] (event logs and evidence), [`approval`] and [`verify`]
//! (a verification gate's check). Each is a future the loop
//! polls; it reports what it does through the loop's channel, never by printing.

mod action;
pub(crate) mod approval;
mod backup;
mod operate;
mod probe;
mod service;
mod verify;

use std::cell::Cell;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use duet_compiler::compiled::{CompiledPlan, RequestName, Step, StepKind};
use duet_contract::record::{Entry, Output, Severity, StepResult};
use indexmap::IndexMap;
use tokio::sync::{mpsc, oneshot};

use super::Options;
use super::program::{Program, Programs};
use crate::error::Error;
use crate::platform::{Platform, PlatformError, PlatformErrorKind};
use crate::state::Saved;
pub(super) use operate::operation_of;

/// A message from a running step to the loop.
pub(super) struct Message {
    pub(super) entry: Entry,
    /// Durable, and acknowledged once written.
    pub(super) ack: Option<oneshot::Sender<std::result::Result<(), String>>>,
}

/// What a finished step attempt reports.
pub(super) struct Done {
    pub(super) index: usize,
    pub(super) attempt: u32,
    pub(super) result: StepResult,
    pub(super) output: Option<Output>,
    pub(super) duration: Duration,
    /// The step ran, but duet could not keep what it must (its output): stop after it.
    pub(super) halt: Option<Error>,
}

/// What a step needs, shared by all running steps (the loop keeps the session to itself).
pub(super) struct StepCtx<'a, P> {
    pub(super) platform: &'a P,
    pub(super) plan: &'a CompiledPlan,
    pub(super) programs: &'a Programs<'a>,
    pub(super) request: RequestName,
    pub(super) session_dir: &'a Path,
    pub(super) session_id: &'a str,
    pub(super) saved: &'a IndexMap<String, Saved>,
    /// The request's approval steps, as the journal has them.
    pub(super) approvals: &'a HashMap<String, crate::state::StepProgress>,
    pub(super) options: &'a Options,
    pub(super) tx: mpsc::UnboundedSender<Message>,
    /// This request's output directory exists (made by the first action that runs).
    pub(super) output_dir: Cell<bool>,
}

impl<'a, P> StepCtx<'a, P> {
    pub(super) fn program(&self, step: &Step) -> Option<Program<'a>> {
        self.programs.of(step)
    }

    fn note(&self, step: &Step, severity: Severity, message: impl Into<String>) {
        let entry =
            Entry::Note { request: Some(self.request), step: Some(step.id.clone()), severity, message: message.into() };
        let _ = self.tx.send(Message { entry, ack: None });
    }

    /// Sends an entry that must be durable before the step goes on.
    async fn durable(&self, entry: Entry) -> std::result::Result<(), String> {
        let (ack, done) = oneshot::channel();
        self.tx.send(Message { entry, ack: Some(ack) }).map_err(|_| "the session loop has stopped".to_owned())?;
        done.await.map_err(|_| "the session loop has stopped".to_owned())?
    }

    /// A step cut short by a second signal.
    fn interrupted(&self, what: &str) -> StepResult {
        let signal = self.options.interrupt.stopping().map_or("a signal", |s| s.name);
        StepResult::Interrupted {
            message: format!("interrupted by {signal} {what}; `duet resume` reconciles it with the machine"),
        }
    }
}

/// Runs attempt `attempt` of `step` (the `index`th of the request) to its end.
pub(super) async fn run<P: Platform>(ctx: &StepCtx<'_, P>, index: usize, step: &Step, attempt: u32) -> Done {
    let started = Instant::now();
    let (result, output, halt) = match step.kind {
        StepKind::Action | StepKind::Task => action::run(ctx, step, attempt).await,
        kind => {
            let run = async {
                match kind {
                    StepKind::Probe => probe::run(ctx, step).await,
                    StepKind::Platform => operate::run(ctx, step).await,
                    StepKind::Service => service::run(ctx, step).await,
                    StepKind::LogBackup => backup::run(ctx, step).await,
                    StepKind::Approval => approval::run(ctx, step).await,
                    StepKind::Verify => verify::run(ctx, step, attempt).await,
                    StepKind::Action | StepKind::Task => {
                        failed(format!("this duet cannot run {} steps yet ({})", kind.as_str(), step.id), None)
                    }
                }
            };
            // An action stops its process tree at the second signal; anything else is
            // abandoned where it is, as a crash would leave it, and `resume` reconciles it.
            let result = tokio::select! {
                // A step that completes in the same poll as the signal completed.
                biased;
                result = run => result,
                () = ctx.options.interrupt.escalation() => ctx.interrupted("while it was running"),
            };
            (result, None, None)
        }
    };
    Done { index, attempt, result, output, duration: started.elapsed(), halt }
}

fn failed(message: impl Into<String>, help: Option<String>) -> StepResult {
    StepResult::Failed { message: message.into(), help }
}

fn success(message: impl Into<String>) -> StepResult {
    StepResult::Success { message: message.into() }
}

/// A platform error: the step failed, or (an I/O error on duet's own files) it was cut short
/// by a storage failure, which `resume` reconciles once the disk is fixed.
pub(super) fn platform_failed(e: PlatformError) -> StepResult {
    if e.kind == PlatformErrorKind::Storage {
        StepResult::StorageFailed { message: e.message }
    } else {
        failed(e.message, e.help)
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() { "none".into() } else { items.join(", ") }
}
