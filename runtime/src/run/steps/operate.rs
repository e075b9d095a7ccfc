//! A platform step: one hardware operation (split, merge, commit, abort, revert, finish), run
//! to its end with the plan's timeout, its progress noted in the activity log.

use std::time::Duration;

use duet_compiler::compiled::{Op, Step};
use duet_contract::record::StepResult;

use super::{StepCtx, failed, platform_failed, success};
use crate::platform::{Operation, Platform, Progress as PlatformProgress, Severity};

pub(super) async fn run<P: Platform>(ctx: &StepCtx<'_, P>, step: &Step) -> StepResult {
    if step.op == Op::Restart {
        return restart(ctx, step).await;
    }
    let Some(op) = operation_of(step.op) else {
        return failed(format!("{} is not a platform operation", step.id), None);
    };
    let mut progress = |p: PlatformProgress| ctx.note(step, Severity::Information, p.message);
    let run = ctx.platform.operate(op, &mut progress);
    let result = match step.timeout_ms {
        Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), run).await {
            Ok(r) => r,
            Err(_) => {
                return failed(
                    format!("the {op} timed out after {}", humantime::format_duration(Duration::from_millis(ms))),
                    Some(format!("the {op} may succeed when tried again")),
                );
            }
        },
        None => run.await,
    };
    match result {
        Ok(()) => success(format!("{op} done")),
        Err(e) => platform_failed(e),
    }
}

/// The restart of a side's OS after an upgrade task (the task's `restart: true`). A restart the
/// journal did not see complete is simply done again: restarting twice is harmless.
async fn restart<P: Platform>(ctx: &StepCtx<'_, P>, step: &Step) -> StepResult {
    let mut progress = |p: PlatformProgress| ctx.note(step, Severity::Information, p.message);
    let side = if step.side == duet_compiler::compiled::Side::Upgrade { "Upgrade Side" } else { "Production Side" };
    match ctx.platform.restart(step.side, &mut progress).await {
        Ok(()) => success(format!("the {side} restarted and is up")),
        Err(e) => platform_failed(e),
    }
}

/// The hardware operation a step's op runs, if it is one.
pub(in crate::run) fn operation_of(op: Op) -> Option<Operation> {
    Some(match op {
        Op::Split => Operation::Split,
        Op::Merge => Operation::Merge,
        Op::Commit => Operation::Commit,
        Op::Abort => Operation::Abort,
        Op::Revert => Operation::Revert,
        Op::Finish => Operation::Finish,
        _ => return None,
    })
}
