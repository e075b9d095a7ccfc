//! `duet compile --format failures`: for every step of every request, what a failure there
//! leads to, before anything runs. With `on_failure: hold` that is Broken (the operator
//! decides); with `on_failure: abort` it is the abort the state model allows from there, and
//! the steps that abort runs. Approvals also show what their expiry leads to.

use std::fmt::Write;

use super::table;
use crate::compiled::{CompiledPlan, OnFailure, Request, RequestName, Side, StepKind, step_id};

/// What a failure in one request can lead to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// A readiness check: it fails, and there is nothing to abort.
    Check,
    /// Before the commit: an abort is allowed.
    Abortable,
    /// Commit, Finish, and the aborts themselves: no abort from there.
    NoAbort,
}

fn scope(request: RequestName) -> Scope {
    match request {
        RequestName::CheckReadiness => Scope::Check,
        RequestName::PrepareSplit
        | RequestName::ExecuteSplit
        | RequestName::Upgrade
        | RequestName::PrepareMerge
        | RequestName::ExecuteMerge => Scope::Abortable,
        RequestName::Commit | RequestName::AbortFromSplit | RequestName::AbortFromMerge | RequestName::Finish => {
            Scope::NoAbort
        }
    }
}

/// For each step of ExecuteMerge, whether a failure there finds the Production Side touched
/// (a Production step was attempted, this one included) or the hardware merged (the merge
/// step completed): then an abort must restart the Production Side, AbortFromMerge. Steps
/// are in topological order, so one pass over each step's dependencies suffices.
fn production_touched(request: &Request) -> Vec<bool> {
    let mut before: Vec<bool> = Vec::with_capacity(request.steps.len());
    let index: std::collections::HashMap<&str, usize> =
        request.steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    for step in &request.steps {
        let touched = step.after.iter().filter_map(|d| index.get(d.as_str())).any(|&d| {
            let dep = &request.steps[d].id;
            before[d] || step_id::side(dep) == Some(Side::Production) || dep == step_id::MERGE
        });
        before.push(touched);
    }
    request.steps.iter().zip(before).map(|(s, b)| b || step_id::side(&s.id) == Some(Side::Production)).collect()
}

/// What `policy` (the plan's `on_failure`, or an approval's `on_expiry`) leads to at a step.
fn outcome(policy: OnFailure, scope: Scope, abort: RequestName) -> String {
    match (scope, policy) {
        (Scope::Check, _) => "the readiness check fails (nothing is split)".to_owned(),
        (Scope::Abortable, OnFailure::Hold) => "hold: Broken; retry, skip or abort".to_owned(),
        (Scope::Abortable, OnFailure::Abort) => format!("abort: {abort}"),
        (Scope::NoAbort, OnFailure::Hold) => "hold: Broken; retry or skip".to_owned(),
        (Scope::NoAbort, OnFailure::Abort) => "hold: Broken; retry or skip (no abort from here)".to_owned(),
    }
}

pub fn render(plan: &CompiledPlan) -> String {
    let unattended = &plan.unattended;
    let policy = unattended.on_failure;
    let mut out = format!("on_failure: {}\n", policy.as_str());
    for (&name, request) in &plan.requests {
        let scope = scope(name);
        let touched = production_touched(request);
        let _ = write!(out, "\n{name} ({})\n", request.state.as_str());
        let mut rows = Vec::with_capacity(request.steps.len());
        for (step, touched) in request.steps.iter().zip(touched) {
            let abort = if name == RequestName::ExecuteMerge && touched {
                RequestName::AbortFromMerge
            } else {
                RequestName::AbortFromSplit
            };
            let mut what = outcome(policy, scope, abort);
            if step.kind == StepKind::Approval {
                what.insert_str(0, "failure: ");
                let expiry = unattended.approvals.iter().find(|a| Some(&a.id) == step.item.as_ref());
                match expiry.and_then(|a| a.expires_ms.map(|ms| (a.on_expiry, ms))) {
                    Some((on_expiry, ms)) => {
                        let _ = write!(
                            what,
                            "; expiry after {}: {}",
                            crate::duration::format(ms),
                            outcome(on_expiry, scope, abort)
                        );
                    }
                    None => what.push_str("; never expires"),
                }
            }
            rows.push(vec![step.id.clone(), what]);
        }
        out.push_str(&table(&rows, "  "));
    }
    let aborts = [RequestName::AbortFromSplit, RequestName::AbortFromMerge];
    let mut rows = Vec::new();
    for name in aborts.into_iter().filter(|n| plan.requests.contains_key(n)) {
        let steps: Vec<&str> = plan.requests[&name].steps.iter().map(|s| s.id.as_str()).collect();
        rows.push(vec![format!("{name}:"), steps.join(", ")]);
    }
    out.push_str("\nwhat each abort runs\n");
    out.push_str(&table(&rows, "  "));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Tree, expect_clean};

    const PLAN: &str = r#"version: 1
on_failure: abort
services: [App]
actions:
  - {id: stop-app, file: x.sh, control: stop}
  - {id: adv, file: x.sh, control: advanced}
versions: {software: App, from: "1.0", to: "2.0"}
upgrade:
  - {id: sp4, file: x.sh, restart: true}
verify:
  - {id: smoke, before: merge, run: {file: x.sh}}
  - {id: status, before: commit, http: {url: "http://127.0.0.1:8080/"}}
approve:
  - {id: go-merge, before: merge, expires: 4h, on_expiry: hold}
  - {id: go-commit, before: commit, expires: 30m, on_expiry: abort}
  - {id: whenever, before: commit}
"#;

    fn matrix(plan: &str) -> String {
        let t = Tree::new(&[("plan.yaml", plan), ("x.sh", "#!/bin/sh\n")]);
        let c = t.compile("plan.yaml");
        expect_clean(&c);
        render(c.compiled.as_ref().unwrap())
    }

    fn line<'a>(text: &'a str, request: &str, step: &str) -> &'a str {
        let section = text.split("\n\n").find(|s| s.starts_with(request)).unwrap_or_else(|| panic!("no {request}"));
        section.lines().find(|l| l.trim_start().starts_with(&format!("{step} "))).unwrap_or_else(|| panic!("no {step}"))
    }

    #[test]
    fn with_abort_each_step_names_the_abort_the_state_model_allows() {
        let text = matrix(PLAN);
        insta::assert_snapshot!("failures_abort", text);
        assert!(
            line(&text, "CheckReadiness", "probe:versions").ends_with("the readiness check fails (nothing is split)")
        );
        assert!(line(&text, "Upgrade", "restart:sp4@upgrade").ends_with("abort: AbortFromSplit"));
        assert!(line(&text, "PrepareMerge", "verify:smoke@upgrade").ends_with("abort: AbortFromSplit"));
        assert!(
            line(&text, "ExecuteMerge", "action:stop-app@production").ends_with("abort: AbortFromMerge"),
            "a Production step touched the Production Side when it started"
        );
        assert!(line(&text, "ExecuteMerge", "verify:status@upgrade").ends_with("abort: AbortFromMerge"));
        assert!(
            line(&text, "ExecuteMerge", "approve:go-commit")
                .ends_with("  failure: abort: AbortFromMerge; expiry after 30m: abort: AbortFromMerge")
        );
        assert!(
            line(&text, "PrepareMerge", "approve:go-merge")
                .ends_with("; expiry after 4h: hold: Broken; retry, skip or abort")
        );
        assert!(line(&text, "ExecuteMerge", "approve:whenever").ends_with("; never expires"));
        assert!(line(&text, "Commit", "platform:commit").ends_with("no abort from here)"));
        assert!(line(&text, "AbortFromMerge", "platform:revert").ends_with("no abort from here)"));
        assert!(text.contains("\n  AbortFromSplit:  platform:abort, action:adv@production\n"), "{text}");
    }

    #[test]
    fn a_merge_that_touched_nothing_before_it_aborts_from_split() {
        let text = matrix("version: 1\non_failure: abort\nupgrade: [{id: t, file: x.sh}]\n");
        assert!(line(&text, "ExecuteMerge", "platform:merge").ends_with("abort: AbortFromSplit"), "{text}");
        let text = matrix("version: 1\non_failure: abort\nservices: [App]\n");
        assert!(line(&text, "ExecuteMerge", "platform:merge").ends_with("abort: AbortFromMerge"), "{text}");
        assert!(line(&text, "ExecuteMerge", "service:App@upgrade").ends_with("abort: AbortFromMerge"), "{text}");
    }

    #[test]
    fn with_hold_every_failure_is_broken() {
        let text = matrix(&PLAN.replace("on_failure: abort", "on_failure: hold"));
        insta::assert_snapshot!("failures_hold", text);
        assert!(text.starts_with("on_failure: hold\n"));
        let steps = text.split("\nwhat each abort runs\n").next().unwrap();
        let aborting: Vec<&str> = steps.lines().filter(|l| l.contains("abort: Abort")).collect();
        assert_eq!(aborting.len(), 1, "only go-commit's expiry aborts: {aborting:#?}");
        assert!(line(&text, "ExecuteSplit", "platform:split").ends_with("hold: Broken; retry, skip or abort"));
        assert!(
            line(&text, "ExecuteMerge", "approve:go-commit").ends_with("; expiry after 30m: abort: AbortFromMerge"),
            "an approval's own on_expiry still aborts"
        );
        assert!(line(&text, "Finish", "platform:finish").ends_with("hold: Broken; retry or skip"));
    }
}
