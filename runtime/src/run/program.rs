//! A program a step runs on a side: a custom action, or an upgrade task (issue 12). Both are
//! supervised, journaled and reconciled alike; they differ in their words and in what a task
//! leaves behind (`installs`).

use std::collections::HashMap;

use duet_compiler::compiled::{Action, CompiledPlan, Software, Step, StepKind, Task};
use duet_compiler::plan::Rerun;

/// What kind of program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum What {
    Action,
    Task,
}

impl What {
    /// As a sentence starts with it (the guide's `Custom action failed with exit value N`).
    pub(super) fn capital(self) -> &'static str {
        match self {
            Self::Action => "Custom action",
            Self::Task => "Upgrade task",
        }
    }

    /// Inside a sentence.
    pub(super) fn noun(self) -> &'static str {
        match self {
            Self::Action => "custom action",
            Self::Task => "upgrade task",
        }
    }

    /// The plan's word for it, as a help names it: "(action `stop`)".
    pub(super) fn key(self) -> &'static str {
        match self {
            Self::Action => "action",
            Self::Task => "task",
        }
    }
}

/// The program of an action or task step, as the plan declares it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Program<'p> {
    pub(super) what: What,
    pub(super) id: &'p str,
    pub(super) file: &'p str,
    pub(super) args: &'p [String],
    pub(super) timeout_ms: u64,
    pub(super) rerun: Rerun,
    /// A task's declared result.
    pub(super) installs: Option<&'p Software>,
}

impl<'p> Program<'p> {
    fn action(a: &'p Action) -> Self {
        Self {
            what: What::Action,
            id: &a.id,
            file: &a.file,
            args: &a.args,
            timeout_ms: a.timeout_ms,
            rerun: a.rerun,
            installs: None,
        }
    }

    fn task(t: &'p Task) -> Self {
        let installs = t.installs.as_ref();
        Self {
            what: What::Task,
            id: &t.id,
            file: &t.file,
            args: &t.args,
            timeout_ms: t.timeout_ms,
            rerun: t.rerun,
            installs,
        }
    }
}

/// The programs of a plan, found by step: actions through a map (a plan may hold thousands, and
/// the loop asks for each step it starts), tasks (a handful) by search.
pub(super) struct Programs<'p> {
    plan: &'p CompiledPlan,
    actions: HashMap<&'p str, &'p Action>,
}

impl<'p> Programs<'p> {
    pub(super) fn new(plan: &'p CompiledPlan) -> Self {
        Self { plan, actions: plan.actions.iter().map(|a| (a.id.as_str(), a)).collect() }
    }

    /// The program `step` runs, if it runs one the plan has.
    pub(super) fn of(&self, step: &Step) -> Option<Program<'p>> {
        find(self.plan, step, |id| self.actions.get(id).copied())
    }
}

/// The program `step` runs, searched for (for the few steps a resume reconciles).
pub(super) fn program_of<'p>(plan: &'p CompiledPlan, step: &Step) -> Option<Program<'p>> {
    find(plan, step, |id| plan.actions.iter().find(|a| a.id == id))
}

/// The program of an action step (found by `action`) or of a task step (by search: a handful).
fn find<'p>(
    plan: &'p CompiledPlan,
    step: &Step,
    action: impl FnOnce(&str) -> Option<&'p Action>,
) -> Option<Program<'p>> {
    match step.kind {
        StepKind::Action => action(step.action.as_deref()?).map(Program::action),
        StepKind::Task => {
            let id = step.item.as_deref()?;
            plan.unattended.tasks.iter().find(|t| t.id == id).map(Program::task)
        }
        _ => None,
    }
}

/// Whether the step may run a program (whose processes carry the attempt's marks): an action,
/// a task, or a verification gate (a `run` check's command; the other kinds run none, and
/// their leftovers are found empty).
pub(super) fn runs_program(step: &Step) -> bool {
    matches!(step.kind, StepKind::Action | StepKind::Task | StepKind::Verify)
}
