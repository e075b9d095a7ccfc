//! A backup step: a side's event logs copied out (to the plan's staging directory, else the
//! session directory); the evidence step in front of an abort also collects dump files.

use duet_compiler::compiled::Step;
use duet_contract::record::StepResult;

use super::{StepCtx, list, platform_failed, success};
use crate::platform::{Platform, Severity};
use crate::run::EVIDENCE_STEP;
use crate::store::layout::{Backup, SessionDir};

pub(super) async fn run<P: Platform>(ctx: &StepCtx<'_, P>, step: &Step) -> StepResult {
    let evidence = step.id == EVIDENCE_STEP;
    let kind = if evidence { Backup::Evidence } else { Backup::Logs };
    debug_assert!(duet_compiler::name::problem(ctx.session_id).is_none(), "the session id was checked when read");
    let into = match &ctx.plan.logs.staging_dir {
        Some(dir) => ctx.platform.host_path(dir).join(ctx.session_id).join(kind.as_str()),
        None => SessionDir(ctx.session_dir).backups(kind),
    };
    let mut copied = Vec::new();
    for log in &step.logs {
        match ctx.platform.export_event_log(step.side, log, &into).await {
            Ok(file) => {
                ctx.note(step, Severity::Information, format!("{log} event log copied to {}", file.display()));
                copied.push(log.clone());
            }
            Err(e) => return platform_failed(e),
        }
    }
    if evidence {
        match ctx.platform.collect_dumps(step.side, &into).await {
            Ok(dumps) => {
                for dump in &dumps {
                    ctx.note(step, Severity::Warning, format!("Upgrade Side dump file copied to {}", dump.display()));
                }
            }
            Err(e) => return platform_failed(e),
        }
    }
    success(format!("{} copied to {}", list(&copied), into.display()))
}
