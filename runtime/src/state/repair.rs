//! Operator repair (docs/runtime.md, "Operator repair"): `duet skip STEP --reason TEXT` marks a
//! failed action step done without running it; `duet retry --from STEP --reason TEXT` runs an
//! earlier step of the current request again, with every step after it.
//!
//! Both are judged here against the journal and the current request's steps, and refused when
//! they would corrupt the state model: a platform step (the machine's split, merge, commit and
//! abort happen once, or the request is aborted), a step whose re-run would repeat a platform
//! step the machine is past, and anything once the upgrade is committed (irreversible). What
//! they do is journaled with who asked and why, and shown by `duet log`.

use duet_compiler::compiled::{RequestName, State, Step, StepKind};
use duet_compiler::suggest::did_you_mean;

use crate::state::{Operational, Progress, Refusal};
use duet_contract::record::StepResult;

/// What an accepted `retry --from` runs again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Repair {
    pub(crate) request: RequestName,
    /// The steps to run again, in the request's order.
    pub(crate) steps: Vec<String>,
}

/// `duet skip STEP`: the Broken request's failed action step `step`; says which request.
pub(crate) fn skip(p: &Progress, steps: &[Step], step: &str) -> Result<RequestName, Refusal> {
    let (request, target) = find(p, steps, step, "skip")?;
    if p.operational() != Operational::Broken {
        return Err(refusal(
            format!("cannot skip {step}: nothing failed ({request} is {})", p.operational().as_str()),
            "`duet skip` marks a failed action step done; `duet status` shows the session",
        ));
    }
    if target.kind != StepKind::Action {
        return Err(refusal(
            format!("cannot skip {step}: it is a {} step; only a failed action step can be skipped", kind(target)),
            "correct the problem, then `duet retry`; or `duet abort`",
        ));
    }
    match p.step(request, step) {
        Some(s) if !s.running && matches!(s.result, Some(StepResult::Failed { .. })) => Ok(request),
        Some(s) if s.completed() => {
            Err(refusal(format!("cannot skip {step}: it is done already"), "`duet status` shows the failed step"))
        }
        _ => Err(refusal(format!("cannot skip {step}: it has not failed"), "`duet status` shows the failed step")),
    }
}

/// `duet retry --from STEP`: `step` of the current request (done, or failed) and every step
/// that depends on it, directly or not.
pub(crate) fn retry_from(p: &Progress, steps: &[Step], step: &str) -> Result<Repair, Refusal> {
    let (request, target) = find(p, steps, step, "retry from")?;
    if p.operational() == Operational::Busy {
        return Err(refusal(
            format!("cannot retry from {step}: {request} was interrupted while running"),
            "run `duet resume` to finish it first",
        ));
    }
    if !matches!(target.kind, StepKind::Action | StepKind::Service | StepKind::LogBackup) {
        return Err(refusal(
            format!("cannot retry from {step}: it is a {} step, which runs once", kind(target)),
            "retry from an action, service or log backup step of the request; or `duet abort`",
        ));
    }
    let progress = p.step(request, step);
    if !progress.is_some_and(|s| s.completed() || matches!(s.result, Some(StepResult::Failed { .. }))) {
        return Err(refusal(
            format!("cannot retry from {step}: it has not run in {request}"),
            "`duet retry` runs the failed step and what follows",
        ));
    }
    let again = after(steps, step);
    if let Some(platform) = steps
        .iter()
        .filter(|s| s.kind == StepKind::Platform && again.contains(&s.id))
        .find(|s| p.step(request, &s.id).is_some_and(|s| s.completed() || s.running))
    {
        return Err(refusal(
            format!("cannot retry from {step}: {} depends on it, and the machine is past it", platform.id),
            "retry from a step after it; or `duet abort`",
        ));
    }
    Ok(Repair { request, steps: again })
}

/// The current request, and its step `step`; refused after a commit.
fn find<'s>(p: &Progress, steps: &'s [Step], step: &str, what: &str) -> Result<(RequestName, &'s Step), Refusal> {
    let Some((request, _)) = p.current() else {
        return Err(refusal(format!("cannot {what} {step}: no upgrade session"), "`duet status` shows the state"));
    };
    let committed = p.requests.contains_key(&RequestName::Commit);
    if committed || p.upgrade_state() == State::Commit {
        return Err(refusal(
            format!(
                "cannot {what} {step}: the upgrade is committed, and nothing after a commit is skipped or run again"
            ),
            "correct the problem, then `duet retry`",
        ));
    }
    let Some(target) = steps.iter().find(|s| s.id == step) else {
        let guess =
            did_you_mean(step, steps.iter().map(|s| s.id.as_str())).map_or_else(String::new, |d| format!("{d}; "));
        return Err(refusal(
            format!("cannot {what} {step}: {request} has no such step"),
            format!("{guess}`duet status` and `duet log` name its steps"),
        ));
    };
    Ok((request, target))
}

/// `step` and every step that depends on it (transitively), in the request's order.
fn after(steps: &[Step], step: &str) -> Vec<String> {
    let mut again: Vec<&str> = vec![step];
    loop {
        let before = again.len();
        for s in steps {
            if !again.contains(&s.id.as_str()) && s.after.iter().any(|d| again.contains(&d.as_str())) {
                again.push(&s.id);
            }
        }
        if again.len() == before {
            break;
        }
    }
    steps.iter().filter(|s| again.contains(&s.id.as_str())).map(|s| s.id.clone()).collect()
}

fn kind(step: &Step) -> &'static str {
    match step.kind {
        StepKind::Probe => "readiness probe",
        StepKind::Platform => "platform",
        StepKind::Service => "service",
        StepKind::Action => "action",
        StepKind::LogBackup => "log backup",
        StepKind::Task => "upgrade task",
        StepKind::Verify => "verification",
        StepKind::Approval => "approval",
    }
}

fn refusal(message: impl Into<String>, help: impl Into<String>) -> Refusal {
    Refusal { message: message.into(), help: help.into() }
}
