//! A probe step: the readiness checks (guide table 5-1, the guide's wording kept) and the
//! plan's binding to the machine, and the installed version a plan's version hop starts from.
//! A finding of severity Error fails the step.

use duet_compiler::compiled::{Op, Side, Step, Versions};
use duet_compiler::version;

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
        Op::Versions => return installed_version(ctx).await,
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

/// The version hop starts where the machine is: the Production Side has `versions.software` in
/// the series `versions.from` names (`10.2` holds 10.2 and 10.2.x).
async fn installed_version<P: Platform>(ctx: &StepCtx<'_, P>) -> StepResult {
    let Some(versions) = &ctx.plan.unattended.versions else {
        return success("the plan makes no version hop");
    };
    let software = match ctx.platform.software(Side::Production).await {
        Ok(software) => software,
        Err(e) => return platform_failed(e),
    };
    let Some(installed) = software.iter().find(|s| s.name == versions.software) else {
        let names: Vec<String> = software.iter().map(|s| s.name.clone()).collect();
        return failed(
            format!(
                "the machine has no {} installed (it has {}); the plan upgrades it from {}",
                versions.software,
                list(&names),
                versions.from
            ),
            Some("correct versions.software, or install it first".into()),
        );
    };
    match hop_start(versions, &installed.version) {
        Ok(()) => success(format!(
            "{} {} is installed: the plan upgrades from {}",
            versions.software, installed.version, versions.from
        )),
        Err(message) => failed(message, Some("`duet status` shows the machine's software".into())),
    }
}

/// Whether a machine at `installed` may start the hop; the refusal in the compiler's words.
fn hop_start(versions: &Versions, installed: &str) -> Result<(), String> {
    let (name, from) = (&versions.software, &versions.from);
    let series = version::parse(from).map_err(|why| format!("the plan's versions.from is not a version: {why}"))?;
    let at = version::parse(installed)
        .map_err(|why| format!("the machine reports {name} at {installed:?}, which duet cannot compare: {why}"))?;
    if at.is_in(&series) {
        Ok(())
    } else if at < series {
        Err(format!(
            "the machine has {name} {installed}; the plan upgrades from {from}: upgrade to {from} first (or correct versions.from)"
        ))
    } else {
        Err(format!(
            "the machine has {name} {installed}; the plan upgrades from {from}: the machine is past it already (correct versions.from)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(from: &str) -> Versions {
        Versions {
            software: "Ivanti UWM".into(),
            from: from.into(),
            to: "12.0".into(),
            max_major_hop: Some(2),
            source: duet_compiler::compiled::Source { file: "plan.yaml".into(), line: 1 },
        }
    }

    #[test]
    fn a_hop_starts_only_from_the_series_it_names() {
        assert_eq!(hop_start(&hop("10.2"), "10.2"), Ok(()));
        assert_eq!(hop_start(&hop("10.2"), "10.2.7"), Ok(()));
        assert_eq!(
            hop_start(&hop("10.2"), "10.1.3").unwrap_err(),
            "the machine has Ivanti UWM 10.1.3; the plan upgrades from 10.2: upgrade to 10.2 first (or correct versions.from)"
        );
        assert_eq!(
            hop_start(&hop("10.2"), "12.0").unwrap_err(),
            "the machine has Ivanti UWM 12.0; the plan upgrades from 10.2: the machine is past it already (correct versions.from)"
        );
        assert!(hop_start(&hop("10.2"), "ten").unwrap_err().starts_with("the machine reports Ivanti UWM at \"ten\""));
    }
}
