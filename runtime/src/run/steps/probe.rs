//! A probe step: the readiness checks (guide table 5-1, the guide's wording kept) and the
//! plan's binding to the machine. A finding of severity Error fails the step.

use duet_compiler::compiled::{Op, Step};

use super::{StepCtx, failed, list, platform_failed, success};
use crate::platform::{Finding, Platform, Severity};
use duet_contract::record::StepResult;

pub(super) async fn run<P: Platform>(ctx: &StepCtx<'_, P>, step: &Step) -> StepResult {
    let findings: Vec<Finding> = match step.op {
        Op::Binding => {
            let inventory = ctx.platform.inventory();
            let disks = &ctx.plan.disks;
            ctx.note(
                step,
                Severity::Information,
                format!(
                    "the plan binds to {} ({}): system disks {}; data disks {}",
                    inventory.model,
                    ctx.platform.name(),
                    list(&disks.system),
                    list(&disks.data)
                ),
            );
            return success("plan bound to the machine");
        }
        Op::MergeReadiness => match ctx.platform.merge_readiness().await {
            Ok(f) => f,
            Err(e) => return platform_failed(e),
        },
        _ => match ctx.platform.readiness().await {
            Ok(f) => f,
            Err(e) => return platform_failed(e),
        },
    };
    for finding in &findings {
        let subject = finding.subject.as_deref().map(|s| format!(" ({s})")).unwrap_or_default();
        ctx.note(step, finding.severity, format!("{}{subject}", finding.message));
    }
    let blocking: Vec<&Finding> = findings.iter().filter(|f| f.blocks()).collect();
    let what = if step.op == Op::MergeReadiness { "merge readiness check" } else { "readiness check" };
    match blocking.as_slice() {
        [] if findings.is_empty() => success(format!("{what} passed")),
        [] => success(format!("{what} passed with {} warning(s)", findings.len())),
        [only] => failed(
            format!(
                "{what} failed: {}{}",
                only.message,
                only.subject.as_deref().map(|s| format!(" ({s})")).unwrap_or_default()
            ),
            Some(only.help.clone()),
        ),
        [first, ..] => failed(
            format!("{what} failed: {} problems, the first: {}", blocking.len(), first.message),
            Some(format!("{}; `duet log` lists every problem", first.help)),
        ),
    }
}
