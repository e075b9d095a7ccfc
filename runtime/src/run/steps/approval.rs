//! An approval step: duet waits for an operator's `duet approve` before the merge or the
//! commit goes on. The wait's deadline is journaled when it first starts, so a resume (after
//! Ctrl-C or a crash) waits on until the same moment; the approval itself is journaled with who
//! gave it and why before the step succeeds. An expired wait fails the step; what that leads to
//! (hold, or an automatic abort) is the approval's `on_expiry`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use duet_compiler::compiled::{Approval, Event, Step};
use duet_contract::record::{Entry, Severity, StepResult};

use super::{StepCtx, failed, success};
use crate::platform::Platform;
use crate::run::notify::{self, Happened};
use crate::state::Deadline;
use crate::store::fsutil;
use crate::store::layout::SessionDir;

/// How often the wait looks for an approval (`duet approve` writes a file the step reads).
const POLL: Duration = Duration::from_millis(100);

/// What `duet approve` leaves for the waiting step.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Given {
    pub(crate) user: String,
    pub(crate) reason: String,
}

pub(super) async fn run<P: Platform>(ctx: &StepCtx<'_, P>, step: &Step) -> StepResult {
    let Some(approval) = step.item.as_deref().and_then(|id| ctx.plan.unattended.approvals.iter().find(|a| a.id == id))
    else {
        return failed(format!("{} names an approval the plan does not have", step.id), None);
    };
    let seen = ctx.approvals.get(&step.id);
    if let Some((user, reason)) = seen.and_then(|s| s.approved.clone()) {
        return success(format!("approved by {user}: {reason}"));
    }
    let deadline = if let Some(deadline) = seen.and_then(|s| s.waiting) {
        deadline
    } else {
        let deadline = approval.expires_ms.map_or(Deadline::Never, |ms| Deadline::At(now_ms().saturating_add(ms)));
        let deadline_ms = match deadline {
            Deadline::At(ms) => Some(ms),
            Deadline::Never => None,
        };
        let entry = Entry::AwaitingApproval { request: ctx.request, step: step.id.clone(), deadline_ms };
        if let Err(e) = ctx.durable(entry).await {
            return StepResult::StorageFailed { message: format!("cannot record the wait for {}: {e}", step.id) };
        }
        deadline
    };
    let waiting = waiting_for(approval, deadline);
    ctx.note(step, Severity::Warning, &waiting);
    let request = ctx.request.as_str();
    let happened = Happened {
        event: Event::WaitingForApproval,
        session: ctx.session_id,
        request: Some(request),
        step: Some(&step.id),
        message: &waiting,
    };
    for warning in notify::send(ctx.plan, ctx.session_dir, happened, ctx.options).await {
        ctx.note(step, Severity::Warning, warning);
    }
    wait(ctx, step, approval, deadline).await
}

/// Waits for the approval, the deadline or the first signal (which leaves the step to resume).
async fn wait<P: Platform>(ctx: &StepCtx<'_, P>, step: &Step, approval: &Approval, deadline: Deadline) -> StepResult {
    let file = SessionDir(ctx.session_dir).approval(&step.id);
    loop {
        if let Some(given) = read(&file) {
            let entry = Entry::Approved {
                request: ctx.request,
                step: step.id.clone(),
                user: given.user.clone(),
                reason: given.reason.clone(),
            };
            if let Err(e) = ctx.durable(entry).await {
                return StepResult::StorageFailed {
                    message: format!("cannot record the approval of {}: {e}", step.id),
                };
            }
            let _ = std::fs::remove_file(&file);
            return success(format!("approved by {}: {}", given.user, given.reason));
        }
        if let Deadline::At(ms) = deadline
            && now_ms() >= ms
        {
            return failed(
                format!(
                    "approval `{}` expired at {}: nobody approved the {} in time",
                    approval.id,
                    at(ms),
                    approval.before.as_str()
                ),
                Some(format!(
                    "the plan says `on_expiry: {}` for it; to go on anyway, approve it (`duet approve --reason TEXT`)",
                    approval.on_expiry.as_str()
                )),
            );
        }
        tokio::select! {
            biased;
            () = ctx.options.interrupt.stop() => {
                return StepResult::Interrupted {
                    message: format!("stopped while waiting for approval `{}`; `duet resume` waits on (until the same deadline)", approval.id),
                };
            }
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// The activity log's line for a wait.
fn waiting_for(approval: &Approval, deadline: Deadline) -> String {
    let until = match deadline {
        Deadline::At(ms) => {
            let left = Duration::from_secs(ms.saturating_sub(now_ms()).div_ceil(1000));
            format!(" until {} ({} left)", at(ms), humantime::format_duration(left))
        }
        Deadline::Never => String::new(),
    };
    format!(
        "waiting for approval `{}` before the {}{until}: `duet approve --reason TEXT` lets it go on",
        approval.id,
        approval.before.as_str()
    )
}

/// An approval `duet approve` left, if there is a readable one.
fn read(file: &std::path::Path) -> Option<Given> {
    let text = fsutil::read_regular_text(file, 64 << 10).ok()?;
    serde_json::from_str(&text).ok()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn at(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}
