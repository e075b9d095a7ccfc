//! The scheduler: pure logic. Given the checked fleet, the run as its journal says it is, and
//! which agents hold a live lease, it says what to do next. It does nothing itself: the
//! coordinator ([`crate::coordinator`]) journals and carries out its actions, so every rule here
//! (stage order, batch size, `min_up`, exclusive sections, the budget, `run_once`) is tested
//! without a process or a network.

use std::collections::BTreeSet;

use indexmap::IndexMap;

use crate::journal::{Entry, NodeRun, Outcome, RunState, StageRun};
use crate::plan::{OnFailure, Policy, Rerun};
use crate::spec::{FleetSpec, StageSpec};

/// One thing the coordinator must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write this entry (fenced); nothing runs.
    Journal(Entry),
    /// Run every role's probe on its group's nodes and journal `Roles`.
    ResolveRoles,
    /// Run a `notify` step on the coordinator.
    Notify { id: String },
    /// Check (and fix) a precondition on a node.
    Precondition { id: String, node: String },
    /// Journal `RunOnceStarted`, then run the step (on its node or the coordinator).
    RunOnce { stage: String, step: String, node: String },
    /// Journal `Dispatched`, then hand the node's work in the stage to its agent.
    Dispatch { stage: String, node: String, attempt: u32, exclusive: bool },
    /// Restore a precondition on a node after the last stage.
    Restore { id: String, node: String },
}

/// What to do now, and what the run waits for (shown by `duet fleet status`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub actions: Vec<Action>,
    pub waiting: Vec<String>,
}

impl Decision {
    fn wait(&mut self, why: impl Into<String>) {
        self.waiting.push(why.into());
    }

    fn only(action: Action) -> Self {
        Self { actions: vec![action], waiting: Vec::new() }
    }
}

/// This decision already hands `node` work (in another stage).
fn claimed(d: &Decision, node: &str) -> bool {
    d.actions.iter().any(|a| matches!(a, Action::Dispatch { node: n, .. } if n == node))
}

struct View<'a> {
    spec: &'a FleetSpec,
    state: &'a RunState,
    live: &'a BTreeSet<String>,
    roles: IndexMap<String, Vec<String>>,
}

pub fn decide(spec: &FleetSpec, state: &RunState, live: &BTreeSet<String>) -> Decision {
    let mut d = Decision::default();
    if let Some(why) = &state.halted {
        d.wait(format!("halted: {why}; `duet fleet retry` or `duet fleet abort`"));
        return d;
    }
    if state.finished {
        return d;
    }
    if !spec.roles.is_empty() && state.roles.is_none() {
        return Decision::only(Action::ResolveRoles);
    }
    if let Some(why) = &state.notify_failed {
        return Decision::only(Action::Journal(Entry::Halted { reason: why.clone() }));
    }
    if let Some(n) = spec.notify.iter().find(|n| !state.notified.contains(&n.id)) {
        return Decision::only(Action::Notify { id: n.id.clone() });
    }
    let view = View { spec, state, live, roles: state.roles.clone().unwrap_or_default() };
    if let Some(pre) = view.preconditions() {
        return pre;
    }
    if let Some(why) = &state.paused {
        d.wait(format!("paused: {why}; `duet fleet resume` or `duet fleet retry`"));
        return d;
    }
    if let Some(halt) = view.budget_spent() {
        return Decision::only(Action::Journal(halt));
    }
    if let Some(why) = view.waiting_for_lost() {
        d.wait(why);
        return d;
    }
    if let Some(pause) = view.pause() {
        return Decision::only(Action::Journal(pause));
    }
    let mut all_done = true;
    for stage in &spec.stages {
        let run = state.stages.get(&stage.id);
        if run.is_some_and(|r| r.done) {
            continue;
        }
        all_done = false;
        if let Some(before) = stage.after.iter().find(|a| !state.stages.get(*a).is_some_and(|r| r.done)) {
            d.wait(format!("stage `{}` waits for stage `{before}`", stage.id));
            continue;
        }
        view.stage(stage, &mut d);
    }
    if all_done {
        view.finish(&mut d);
    } else if let Some(stuck) = view.stuck(&d) {
        return Decision::only(Action::Journal(stuck));
    }
    d
}

impl View<'_> {
    fn members(&self, target: &crate::plan::Target) -> Vec<String> {
        self.spec.members(target, &self.roles)
    }

    /// Every precondition on every node of its target, before the first stage.
    fn preconditions(&self) -> Option<Decision> {
        let mut d = Decision::default();
        for p in &self.spec.preconditions {
            for node in self.members(&p.target) {
                match self.state.preconditions.get(&(p.id.clone(), node.clone())) {
                    None => d.actions.push(Action::Precondition { id: p.id.clone(), node }),
                    Some(Outcome::Failed(why)) => {
                        let reason = format!("precondition `{}` does not hold on node `{node}`: {why}", p.id);
                        return Some(Decision::only(Action::Journal(Entry::Halted { reason })));
                    }
                    Some(Outcome::Ok) => {}
                }
            }
        }
        (!d.actions.is_empty()).then_some(d)
    }

    fn policy_of(&self, stage: &str) -> Policy {
        self.spec.stages.iter().find(|s| s.id == stage).map_or(self.spec.policy, |s| s.policy)
    }

    /// Failed with no attempt left (the operator did not allow another).
    fn exhausted(&self, stage: &str, n: &NodeRun) -> bool {
        n.failed.is_some() && !n.in_flight && !n.retry_allowed && n.attempts > self.policy_of(stage).retries
    }

    /// The nodes failed for good, over the whole run.
    fn failed(&self) -> BTreeSet<String> {
        self.state
            .stages
            .iter()
            .flat_map(|(stage, s)| s.nodes.iter().map(move |(node, n)| (stage, node, n)))
            .filter(|(stage, _, n)| self.exhausted(stage, n))
            .map(|(_, node, _)| node.clone())
            .collect()
    }

    /// Nodes whose agent lost its lease with work in flight and has not reported since.
    fn lost(&self) -> BTreeSet<String> {
        let nodes = self.state.stages.values().flat_map(|s| s.nodes.iter());
        nodes.filter(|(_, n)| n.lost).map(|(node, _)| node.clone()).collect()
    }

    /// An unreachable node counts as failed, but it may come back and report: when counting it
    /// spends the budget (or a stage halts on a failure), no new batch starts until it is back
    /// or the operator decides (`retry` or `abort`), rather than the run halting on it.
    fn waiting_for_lost(&self) -> Option<String> {
        let lost = self.lost();
        if lost.is_empty() {
            return None;
        }
        let over = |failed: &BTreeSet<String>, max: u32| failed.len() > max as usize;
        let spent = over(&self.failed(), self.spec.policy.max_failed)
            || self.spec.stages.iter().any(|stage| {
                self.state.stages.get(&stage.id).is_some_and(|run| {
                    let mine = run.nodes.iter().filter(|(_, n)| self.exhausted(&stage.id, n)).map(|(k, _)| k.clone());
                    over(&mine.collect(), stage.policy.max_failed)
                        || (stage.policy.on_failure == OnFailure::Halt && run.nodes.values().any(|n| n.lost))
                })
            });
        spent.then(|| {
            let names = lost.into_iter().collect::<Vec<_>>().join(", ");
            format!(
                "node(s) {names} unreachable with work in flight (counted failed, over the budget): no new batch starts until their agents are back and report, or `duet fleet abort`"
            )
        })
    }

    /// The fleet's budget over the whole run, and each stage's over its own nodes (a stage
    /// without a policy of its own has the fleet's). Nodes that are only unreachable do not halt
    /// the run: [`View::waiting_for_lost`] holds it for them.
    fn budget_spent(&self) -> Option<Entry> {
        let lost = self.lost();
        let failed: BTreeSet<String> = self.failed().difference(&lost).cloned().collect();
        let spent = |what: &str, failed: &BTreeSet<String>, max: u32| {
            (failed.len() > max as usize).then(|| Entry::Halted {
                reason: format!(
                    "{} node(s) failed{what} ({}), more than the budget of {max}",
                    failed.len(),
                    failed.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            })
        };
        if let Some(halt) = spent("", &failed, self.spec.policy.max_failed) {
            return Some(halt);
        }
        self.spec.stages.iter().find_map(|stage| {
            let run = self.state.stages.get(&stage.id)?;
            let mine: BTreeSet<String> = run
                .nodes
                .iter()
                .filter(|(_, n)| self.exhausted(&stage.id, n) && !n.lost)
                .map(|(k, _)| k.clone())
                .collect();
            spent(&format!(" in stage `{}`", stage.id), &mine, stage.policy.max_failed)
        })
    }

    /// A failure within the budget under `on_failure: halt` pauses the run once.
    fn pause(&self) -> Option<Entry> {
        for (stage, s) in &self.state.stages {
            if self.policy_of(stage).on_failure != OnFailure::Halt {
                continue;
            }
            for (node, n) in &s.nodes {
                if self.exhausted(stage, n) && !n.lost && !self.state.paused_for.contains(node) {
                    let why = n.failed.clone().unwrap_or_default();
                    let reason = format!("node `{node}` failed in stage `{stage}`: {why}");
                    return Some(Entry::Paused { node: node.clone(), reason });
                }
            }
        }
        None
    }

    fn stage(&self, stage: &StageSpec, d: &mut Decision) {
        let empty = StageRun::default();
        let run = self.state.stages.get(&stage.id).unwrap_or(&empty);
        let members = self.members(&stage.target);
        if let Some(why) = &run.run_once_failed {
            d.wait(format!("stage `{}`: {why}; `duet fleet retry`", stage.id));
            return;
        }
        if let Some(step) = stage.run_once.iter().find(|s| !run.run_once.contains(&s.id)) {
            if run.run_once_started.contains(&step.id) {
                d.wait(format!(
                    "stage `{}`: run_once step `{}` was started by a coordinator that stopped before it reported; `duet fleet retry {}` runs it again",
                    stage.id, step.id, stage.id
                ));
            } else if let Some(first) = members.first() {
                d.actions.push(Action::RunOnce { stage: stage.id.clone(), step: step.id.clone(), node: first.clone() });
            }
            return;
        }
        // Agents that lost their lease with work in flight: counted as failed.
        let mut lost = false;
        for (node, n) in &run.nodes {
            if n.in_flight && !self.live.contains(node) {
                d.actions.push(Action::Journal(Entry::Lost {
                    stage: stage.id.clone(),
                    node: node.clone(),
                    attempt: n.attempts,
                }));
                lost = true;
            }
        }
        if lost {
            return;
        }
        let retry_pending = self.retries(stage, run, d);
        if retry_pending || run.nodes.values().any(|n| n.in_flight) {
            d.wait(format!("stage `{}` batch {} runs", stage.id, run.batches.max(1)));
            return;
        }
        if stage.exclusive.is_some() && !run.exclusive_done {
            self.exclusive(stage, run, &members, d);
            return;
        }
        self.next_batch(stage, run, &members, d);
    }

    /// A failed node with attempts left (or allowed by the operator) goes again when its agent
    /// is back. The holder of an exclusive section goes again only if `rerun: safe` or retried.
    /// Returns whether a retry is due (dispatched now or waiting for its agent): no new batch
    /// starts before it. Only when nothing of the stage is in flight, at most `serial` at once.
    fn retries(&self, stage: &StageSpec, run: &StageRun, d: &mut Decision) -> bool {
        let policy = stage.policy;
        let mut due = false;
        let mut started = 0;
        let idle = !run.nodes.values().any(|n| n.in_flight);
        for (node, n) in &run.nodes {
            if n.failed.is_none() || n.in_flight || n.done {
                continue;
            }
            let holder = run.exclusive_holder.as_ref() == Some(node) && !run.exclusive_done;
            let allowed = n.retry_allowed
                || (n.attempts <= policy.retries
                    && !(holder && stage.exclusive.as_ref().is_some_and(|e| e.rerun == Rerun::Manual)));
            if !allowed {
                if holder && !n.retry_allowed {
                    d.wait(format!(
                        "stage `{}`: the exclusive section's holder `{node}` failed; `duet fleet retry {} {node}`",
                        stage.id, stage.id
                    ));
                }
                continue;
            }
            due = true;
            if !idle || started == stage.serial {
                continue;
            }
            if self.busy(node) || claimed(d, node) {
                d.wait(format!("node `{node}`'s retry waits for its work in another stage"));
            } else if !self.keeps_groups_up(&self.down(d), node) {
                d.wait(format!("node `{node}`'s retry waits: it would leave a group below its min_up"));
            } else if self.live.contains(node) {
                d.actions.push(Action::Dispatch {
                    stage: stage.id.clone(),
                    node: node.clone(),
                    attempt: n.attempts + 1,
                    exclusive: holder,
                });
                started += 1;
            } else {
                d.wait(format!("node `{node}` is unreachable; its retry waits for its agent"));
            }
        }
        due
    }

    /// The first node runs the exclusive section alone; the stage's others wait for it.
    fn exclusive(&self, stage: &StageSpec, run: &StageRun, members: &[String], d: &mut Decision) {
        let holder = run.exclusive_holder.clone().or_else(|| members.first().cloned());
        let Some(holder) = holder else { return };
        if run.nodes.contains_key(&holder) {
            d.wait(format!("stage `{}` waits for `{holder}`'s exclusive section", stage.id));
        } else if self.busy(&holder) || claimed(d, &holder) {
            d.wait(format!("node `{holder}` waits for its work in another stage"));
        } else if !self.keeps_groups_up(&self.down(d), &holder) {
            d.wait(format!("node `{holder}` waits: upgrading it now would leave a group below its min_up"));
        } else {
            d.actions.push(Action::Dispatch { stage: stage.id.clone(), node: holder, attempt: 1, exclusive: true });
        }
    }

    /// Nodes down right now (in flight, failed, unreachable), per group with a `min_up`.
    /// `d`'s own dispatches count: they are about to go down.
    fn down(&self, d: &Decision) -> BTreeSet<String> {
        let mut down: BTreeSet<String> = self.failed();
        down.extend(d.actions.iter().filter_map(|a| match a {
            Action::Dispatch { node, .. } => Some(node.clone()),
            _ => None,
        }));
        for s in self.state.stages.values() {
            down.extend(s.nodes.iter().filter(|(_, n)| n.in_flight).map(|(k, _)| k.clone()));
        }
        down.extend(self.spec.nodes.keys().filter(|n| !self.live.contains(*n)).cloned());
        down
    }

    /// A node works on one stage at a time (its agent has one assignment).
    fn busy(&self, node: &str) -> bool {
        self.state.stages.values().any(|s| s.nodes.get(node).is_some_and(|n| n.in_flight))
    }

    fn keeps_groups_up(&self, down: &BTreeSet<String>, node: &str) -> bool {
        self.spec.groups.values().filter(|g| g.min_up > 0 && g.members.iter().any(|m| m == node)).all(|g| {
            let up = g.members.iter().filter(|m| *m != node && !down.contains(*m)).count();
            up >= g.min_up as usize
        })
    }

    fn next_batch(&self, stage: &StageSpec, run: &StageRun, members: &[String], d: &mut Decision) {
        let pending: Vec<&String> = members.iter().filter(|m| !run.nodes.contains_key(*m)).collect();
        if pending.is_empty() {
            if run.nodes.values().all(|n| n.done || self.exhausted(&stage.id, n)) {
                d.actions.push(Action::Journal(Entry::StageDone { stage: stage.id.clone() }));
            }
            return;
        }
        let mut down = self.down(d);
        for (batch, node) in pending.into_iter().enumerate() {
            if batch == stage.serial as usize {
                break;
            }
            if self.busy(node) || claimed(d, node) {
                d.wait(format!("node `{node}` waits for its work in another stage"));
                break;
            }
            if !self.keeps_groups_up(&down, node) {
                d.wait(format!("node `{node}` waits: upgrading it now would leave a group below its min_up"));
                break;
            }
            down.insert(node.clone());
            d.actions.push(Action::Dispatch {
                stage: stage.id.clone(),
                node: node.clone(),
                attempt: 1,
                exclusive: false,
            });
        }
    }

    /// Nothing to do, nothing in flight, every agent live: the run cannot go on by itself
    /// (a failed node keeps a group at its `min_up`, an exclusive holder failed for good). It
    /// halts saying why; `retry` takes it on again.
    fn stuck(&self, d: &Decision) -> Option<Entry> {
        let in_flight =
            self.state.stages.values().any(|s| s.nodes.values().any(|n| n.in_flight) || !s.run_once_started.is_empty());
        let all_live = self.spec.nodes.keys().all(|n| self.live.contains(n));
        (d.actions.is_empty() && !in_flight && all_live)
            .then(|| Entry::Halted { reason: format!("the run cannot go on by itself: {}", d.waiting.join("; ")) })
    }

    fn finish(&self, d: &mut Decision) {
        for p in &self.spec.preconditions {
            if p.restore.is_none() {
                continue;
            }
            for node in self.members(&p.target) {
                if !self.state.restored.contains(&(p.id.clone(), node.clone())) {
                    d.actions.push(Action::Restore { id: p.id.clone(), node });
                }
            }
        }
        if d.actions.is_empty() {
            d.actions.push(Action::Journal(Entry::Finished));
        }
    }
}
