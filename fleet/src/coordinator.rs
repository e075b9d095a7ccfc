//! The coordinator: one step of a fleet run. It keeps no state of its own: each step reads the
//! journal and the agents' reports from the coordination service, journals new reports, asks
//! the [`scheduler`] what to do, and does it, every write fenced by its leadership. A step of a
//! deposed coordinator fails with [`CoordError::Deposed`] before it changes anything.

use indexmap::IndexMap;

use crate::coordination::{Assignment, CoordError, Coordination, Fence};
use crate::journal::{Entry, Outcome, RunState};
use crate::scheduler::{self, Action, Decision};
use crate::spec::FleetSpec;

/// What the coordinator runs itself: role probes, notifications, preconditions, `run_once` steps
/// and restores. The real one runs the fleet's scripts; tests script the outcomes.
pub trait Executor {
    fn roles(&mut self, spec: &FleetSpec) -> Result<IndexMap<String, Vec<String>>, String>;
    fn notify(&mut self, spec: &FleetSpec, id: &str) -> Outcome;
    fn precondition(&mut self, spec: &FleetSpec, id: &str, node: &str) -> Outcome;
    fn run_once(&mut self, spec: &FleetSpec, stage: &str, step: &str, node: &str) -> Outcome;
    fn restore(&mut self, spec: &FleetSpec, id: &str, node: &str) -> Outcome;
}

/// What a coordinator that has just won the election does first: it hands out again the work
/// the journal has in flight (a predecessor may have died between journaling a dispatch and
/// handing it out). An agent that has the work already knows it by its own journal, and only
/// reports it. Returns how many it handed out again.
pub fn take_over<C: Coordination>(coord: &mut C, fence: Fence) -> Result<usize, CoordError> {
    let state = RunState::fold(&coord.journal()?);
    let mut again = Vec::new();
    for (stage, run) in &state.stages {
        for (node, n) in run.nodes.iter().filter(|(_, n)| n.in_flight) {
            let exclusive = run.exclusive_holder.as_ref() == Some(node) && !run.exclusive_done;
            again.push(Assignment { stage: stage.clone(), node: node.clone(), attempt: n.attempts, exclusive });
        }
    }
    if !again.is_empty() {
        coord.assign(fence, &again)?;
    }
    Ok(again.len())
}

/// One step. Returns what was decided (the actions done, what the run waits for).
pub fn step<C: Coordination, E: Executor>(
    spec: &FleetSpec,
    coord: &mut C,
    fence: Fence,
    exec: &mut E,
) -> Result<Decision, CoordError> {
    let journal = coord.journal()?;
    let state = RunState::fold(&journal);
    // Live agents before their reports: a restarted agent reports what it resumed before it
    // registers again, so an agent seen live here has its reports seen below (and its work is
    // not handed out again as if lost).
    let live = coord.live()?;
    let fresh = fresh_reports(&state, coord)?;
    if !fresh.is_empty() {
        coord.append(fence, &fresh)?;
        return Ok(Decision { actions: fresh.into_iter().map(Action::Journal).collect(), waiting: Vec::new() });
    }
    let decision = scheduler::decide(spec, &state, &live);
    let mut actions = decision.actions.iter().peekable();
    while let Some(action) = actions.next() {
        let Action::Dispatch { .. } = action else {
            act(spec, coord, fence, exec, action)?;
            continue;
        };
        // A batch is handed out in two writes, not two per node: every `Dispatched` entry in
        // one append, then every assignment in one transaction (journaled first, as one by one:
        // a successor hands out again what is journaled in flight).
        let mut batch = vec![action];
        while let Some(next) = actions.next_if(|a| matches!(a, Action::Dispatch { .. })) {
            batch.push(next);
        }
        dispatch(coord, fence, &batch)?;
    }
    Ok(decision)
}

/// Reports the journal does not have yet: for the attempt in flight, or a late one for an
/// attempt counted lost (the agent came back and finished it locally).
fn fresh_reports<C: Coordination>(state: &RunState, coord: &mut C) -> Result<Vec<Entry>, CoordError> {
    let mut out = Vec::new();
    for r in coord.reports()? {
        let Some(n) = state.stages.get(&r.stage).and_then(|s| s.nodes.get(&r.node)) else { continue };
        let settled = n.done || (n.failed.is_some() && !n.lost && r.outcome != Outcome::Ok);
        if n.attempts == r.attempt && (n.in_flight || !settled) {
            out.push(Entry::Reported { stage: r.stage, node: r.node, attempt: r.attempt, outcome: r.outcome });
        }
    }
    Ok(out)
}

fn dispatch<C: Coordination>(coord: &mut C, fence: Fence, batch: &[&Action]) -> Result<(), CoordError> {
    let assignments: Vec<Assignment> = batch
        .iter()
        .filter_map(|a| match a {
            Action::Dispatch { stage, node, attempt, exclusive } => {
                Some(Assignment { stage: stage.clone(), node: node.clone(), attempt: *attempt, exclusive: *exclusive })
            }
            _ => None,
        })
        .collect();
    let entries: Vec<Entry> = assignments
        .iter()
        .map(|a| Entry::Dispatched {
            stage: a.stage.clone(),
            node: a.node.clone(),
            attempt: a.attempt,
            exclusive: a.exclusive,
        })
        .collect();
    coord.append(fence, &entries)?;
    coord.assign(fence, &assignments)
}

fn act<C: Coordination, E: Executor>(
    spec: &FleetSpec,
    coord: &mut C,
    fence: Fence,
    exec: &mut E,
    action: &Action,
) -> Result<(), CoordError> {
    let entry = match action {
        Action::Journal(e) => e.clone(),
        Action::ResolveRoles => match exec.roles(spec) {
            Ok(roles) => Entry::Roles { roles },
            Err(reason) => Entry::Halted { reason: format!("roles could not be resolved: {reason}") },
        },
        Action::Notify { id } => Entry::Notified { id: id.clone(), outcome: exec.notify(spec, id) },
        Action::Precondition { id, node } => {
            Entry::Precondition { id: id.clone(), node: node.clone(), outcome: exec.precondition(spec, id, node) }
        }
        Action::RunOnce { stage, step, node } => {
            // Journaled before it runs: a coordinator that dies while it runs leaves it started,
            // and no successor runs it again (the stage waits for `retry`).
            coord.append(
                fence,
                &[Entry::RunOnceStarted { stage: stage.clone(), step: step.clone(), node: node.clone() }],
            )?;
            let outcome = exec.run_once(spec, stage, step, node);
            Entry::RunOnce { stage: stage.clone(), step: step.clone(), node: node.clone(), outcome }
        }
        Action::Dispatch { .. } => return dispatch(coord, fence, &[action]),
        Action::Restore { id, node } => {
            Entry::Restored { id: id.clone(), node: node.clone(), outcome: exec.restore(spec, id, node) }
        }
    };
    coord.append(fence, &[entry])
}
