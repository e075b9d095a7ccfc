//! Steps a dead duet left started but not finished, and the processes its actions left
//! running: a platform operation the machine is already past is recorded as done; an unsafe
//! action is left to the operator; anything else runs again, once what its last attempt left
//! running is stopped (found by the attempt's marks, `process::Marks`).

use std::sync::Arc;

use duet_compiler::compiled::{RequestName, Side, Step};
use duet_compiler::plan::Rerun;
use duet_contract::record::{Entry, Severity, StepResult};

use super::program::{program_of, runs_program};
use super::runner::finished;
use super::schedule::Sched;
use super::steps::{operation_of, platform_failed};
use super::{Options, Runner, steps_of};
use crate::error::Result;
use crate::platform::{Operation, Phase, Platform};
use crate::process::Marks;
use crate::store::journal::Durability;
use crate::store::session::Session;

impl<P: Platform> Runner<'_, P> {
    /// A step the journal shows started but not finished: the process running it died. Says
    /// where it stands now (`None`: it runs again).
    pub(super) async fn reconcile(&mut self, step: &Step, attempts: u32) -> Result<Option<Sched>> {
        if let Some(op) = operation_of(step.op) {
            let observed = self.platform.observe().await?;
            if done_on(op, observed.phase) {
                let message =
                    format!("the {op} had completed before duet stopped (the machine is {:?})", observed.phase);
                let entry = finished(self.request, step, attempts, StepResult::Reconciled { message });
                self.session.record(&entry, Durability::Durable)?;
                return Ok(Some(Sched::Done));
            }
        }
        let plan = Arc::clone(&self.session.compiled);
        if let Some(program) = program_of(&plan, step).filter(|p| p.rerun == Rerun::Unsafe) {
            let marks = Marks::attempt(self.session.id(), &step.id, attempts);
            let alive = self.platform.leftovers(step.side, &marks).await?;
            let still = if alive.is_empty() {
                String::new()
            } else {
                format!("; its processes {} are still running", pids(&alive))
            };
            let result = StepResult::Failed {
                message: format!(
                    "{} `{}` was running when duet stopped (attempt {attempts}){still}; it is marked `rerun: unsafe`, so duet did not run it again",
                    program.what.noun(),
                    program.id
                ),
                help: Some("check whether it completed: a retry runs it again".into()),
            };
            self.session.record(&finished(self.request, step, attempts, result), Durability::Durable)?;
            return Ok(Some(Sched::Failed));
        }
        if runs_program(step) {
            stop_attempt(self.platform, self.session, (self.request, step, attempts), self.options).await?;
        }
        let message = format!("{} was interrupted at attempt {attempts}; running it again", step.id);
        self.session.record(&note(self.request, step, message), Durability::Buffered)?;
        Ok(None)
    }

    /// Before attempt 2 or later of an action starts (a retry, `retry --from`, a resume, the
    /// steps after a skip, an abort's own actions): whatever an earlier attempt of the same step
    /// left running (found by the step's marks) must not run beside it. A `rerun: safe`
    /// action's leftovers are stopped, and the activity log says so; an unsafe action's are not
    /// touched, and the step does not start: the returned failure names them and what to do.
    pub(super) async fn clear_earlier_attempts(&mut self, step: &Step) -> Option<StepResult> {
        let marks = Marks::step(self.session.id(), &step.id);
        let alive = match self.platform.leftovers(step.side, &marks).await {
            Ok(alive) if alive.is_empty() => return None,
            Ok(alive) => alive,
            Err(e) => return Some(platform_failed(e)),
        };
        let plan = Arc::clone(&self.session.compiled);
        if let Some(program) = program_of(&plan, step).filter(|p| p.rerun == Rerun::Unsafe) {
            return Some(StepResult::Failed {
                message: format!(
                    "{} `{}` is still running from an earlier attempt (processes {}); it is marked `rerun: unsafe`, so duet does not start another attempt beside it",
                    program.what.noun(),
                    program.id,
                    pids(&alive)
                ),
                help: Some(format!(
                    "wait for it to end, or stop it (`kill {}`)",
                    alive.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
                )),
            });
        }
        let stopped = match self.platform.stop_leftovers(step.side, &marks, self.options.kill_grace).await {
            Ok(stopped) => stopped,
            Err(e) => return Some(platform_failed(e)),
        };
        let message = format!(
            "an earlier attempt of {} was still running: stopped its processes {} before running it again",
            step.id,
            pids(&stopped)
        );
        self.record(&note(self.request, step, message), Durability::Buffered);
        None
    }
}

/// Stops what attempt `attempts` of an action step left running when the duet supervising it
/// died (found by the marks in its environment), and says so.
async fn stop_attempt<P: Platform>(
    platform: &P,
    session: &mut Session,
    (request, step, attempts): Attempt<'_>,
    options: &Options,
) -> Result<()> {
    let marks = Marks::attempt(session.id(), &step.id, attempts);
    let stopped = platform.stop_leftovers(step.side, &marks, options.kill_grace).await?;
    if !stopped.is_empty() {
        let message = format!(
            "attempt {attempts} of {} outlived the duet that started it: stopped its processes {}",
            step.id,
            pids(&stopped)
        );
        session.record(&note(request, step, message), Durability::Buffered)?;
    }
    Ok(())
}

/// Before an abort: what the last request's interrupted actions left behind is stopped, so
/// nothing of the abandoned request runs on while the abort does.
pub(crate) async fn stop_interrupted<P: Platform>(
    platform: &P,
    session: &mut Session,
    options: &Options,
) -> Result<()> {
    // Interrupted, or Broken with other steps still marked running (duet died while they ran).
    let Some((request, progress)) = session.progress.current() else { return Ok(()) };
    let plan = Arc::clone(&session.compiled);
    let running: Vec<(Step, u32)> = steps_of(&plan, request, &[])
        .iter()
        .filter(|step| runs_program(step))
        .filter_map(|step| Some((step.clone(), progress.steps.get(&step.id).filter(|p| p.running)?.attempts)))
        .collect();
    for (step, attempts) in &running {
        stop_attempt(platform, session, (request, step, *attempts), options).await?;
    }
    // Anything else of this session still running (an unsafe action a resume left alone, a
    // daemon an earlier attempt started) would run on beside the abort: it is stopped too.
    let marks = Marks::session(session.id());
    let mut stopped = platform.stop_leftovers(Side::Production, &marks, options.kill_grace).await?;
    stopped.extend(platform.stop_leftovers(Side::Upgrade, &marks, options.kill_grace).await?);
    if !stopped.is_empty() {
        let message =
            format!("stopped processes {} that earlier action attempts left running, before the abort", pids(&stopped));
        let note = Entry::Note { request: Some(request), step: None, severity: Severity::Warning, message };
        session.record(&note, Durability::Buffered)?;
    }
    Ok(())
}

/// Which attempt: of which step, in which request.
type Attempt<'s> = (RequestName, &'s Step, u32);

/// A warning about `step`.
fn note(request: RequestName, step: &Step, message: String) -> Entry {
    Entry::Note { request: Some(request), step: Some(step.id.clone()), severity: Severity::Warning, message }
}

fn pids(pids: &[u32]) -> String {
    pids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Whether the machine's phase shows `op` already done. A revert cannot be told apart from a
/// split machine, so it runs again (it is idempotent).
fn done_on(op: Operation, phase: Phase) -> bool {
    match op {
        Operation::Split => phase == Phase::Split,
        Operation::Merge => phase == Phase::Merged,
        Operation::Commit => phase == Phase::Committed,
        Operation::Abort => phase == Phase::Aborted,
        Operation::Finish => phase == Phase::Duplexed,
        Operation::Revert => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciling_trusts_only_a_phase_that_proves_the_operation_done() {
        assert!(done_on(Operation::Split, Phase::Split));
        assert!(!done_on(Operation::Split, Phase::Duplexed));
        assert!(done_on(Operation::Merge, Phase::Merged));
        assert!(!done_on(Operation::Merge, Phase::Split));
        assert!(!done_on(Operation::Revert, Phase::Split));
        assert!(done_on(Operation::Finish, Phase::Duplexed));
    }
}
