//! The fleet journal: what a coordinator writes (fenced) to etcd as a run goes, one entry per
//! fact. It is the run's only state outside the agents: a new coordinator folds it
//! ([`RunState::fold`]) and carries on. Versioned with the spec ([`crate::spec::FORMAT_VERSION`]).

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// How one dispatched piece of work ended, as the agent (or the coordinator) reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "outcome", content = "reason")]
pub enum Outcome {
    Ok,
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "entry")]
pub enum Entry {
    /// The run started with this spec (its JSON) by this coordinator.
    Started {
        coordinator: String,
    },
    /// Roles resolved by their probes: role -> nodes.
    Roles {
        roles: IndexMap<String, Vec<String>>,
    },
    /// A `notify` step ran (coordinator).
    Notified {
        id: String,
        outcome: Outcome,
    },
    /// A precondition holds on a node (checked, fixed if it did not).
    Precondition {
        id: String,
        node: String,
        outcome: Outcome,
    },
    /// A `run_once` step was handed out (journaled before it runs: it never runs twice).
    RunOnceStarted {
        stage: String,
        step: String,
        node: String,
    },
    /// A `run_once` step of a stage ran.
    RunOnce {
        stage: String,
        step: String,
        node: String,
        outcome: Outcome,
    },
    /// A node's work in a stage was handed to its agent.
    Dispatched {
        stage: String,
        node: String,
        attempt: u32,
        /// The node holds the stage's exclusive section (it runs it before its upgrade).
        #[serde(default)]
        exclusive: bool,
    },
    /// The agent reported it, after its own journal had it durably.
    Reported {
        stage: String,
        node: String,
        attempt: u32,
        outcome: Outcome,
    },
    /// The node's agent lost its lease while the work was in flight: counted as failed.
    Lost {
        stage: String,
        node: String,
        attempt: u32,
    },
    /// The operator allowed a failed node (or an exclusive section's holder) another attempt.
    Retried {
        stage: String,
        node: String,
        by: String,
        /// Why it is safe to go again (`duet-fleet retry --reason`).
        #[serde(default)]
        reason: String,
    },
    /// A node failed for good within the budget under `on_failure: halt`: no new batch until
    /// the operator resumes (or retries the node).
    Paused {
        node: String,
        reason: String,
    },
    /// The operator let a paused run go on.
    Resumed {
        by: String,
    },
    StageDone {
        stage: String,
    },
    /// A precondition was restored on a node after the last stage.
    Restored {
        id: String,
        node: String,
        outcome: Outcome,
    },
    /// No new batch starts: the budget is spent, or the operator aborted.
    Halted {
        reason: String,
    },
    Finished,
}

/// Where one node stands in one stage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "facts folded from the journal, each set and cleared by its own entries"
)]
pub struct NodeRun {
    pub attempts: u32,
    /// Dispatched and neither reported nor lost.
    pub in_flight: bool,
    pub done: bool,
    /// Failed (or lost) on its last attempt; how it failed.
    pub failed: Option<String>,
    /// The operator allowed another attempt after a failure.
    pub retry_allowed: bool,
    /// Its agent lost its lease with the attempt in flight, and has not reported it since: it
    /// counts as failed, but it may still come back and report (the work goes on locally).
    pub lost: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StageRun {
    pub nodes: BTreeMap<String, NodeRun>,
    /// Nodes dispatched in the current batch (in dispatch order).
    pub batch: Vec<String>,
    pub batches: u32,
    pub run_once: BTreeSet<String>,
    /// Steps handed out and not yet reported.
    pub run_once_started: BTreeSet<String>,
    /// A failed `run_once` step: the stage waits for `retry`.
    pub run_once_failed: Option<String>,
    pub exclusive_holder: Option<String>,
    /// Its holder reported its work (the section and its upgrade) done.
    pub exclusive_done: bool,
    pub done: bool,
}

/// The run, as the journal says it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunState {
    pub started: bool,
    pub roles: Option<IndexMap<String, Vec<String>>>,
    pub notified: BTreeSet<String>,
    pub notify_failed: Option<String>,
    /// (precondition, node) that hold, or failed with a reason.
    pub preconditions: BTreeMap<(String, String), Outcome>,
    pub restored: BTreeSet<(String, String)>,
    pub stages: BTreeMap<String, StageRun>,
    /// Paused after a failure within the budget (`on_failure: halt`), until `resume`.
    pub paused: Option<String>,
    /// The nodes a pause was for (a resumed run does not pause for them again).
    pub paused_for: BTreeSet<String>,
    pub halted: Option<String>,
    pub finished: bool,
}

impl RunState {
    pub fn fold<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Self {
        let mut s = Self::default();
        for e in entries {
            s.apply(e);
        }
        s
    }

    pub fn stage(&mut self, stage: &str) -> &mut StageRun {
        self.stages.entry(stage.to_owned()).or_default()
    }

    fn node(&mut self, stage: &str, node: &str) -> &mut NodeRun {
        self.stage(stage).nodes.entry(node.to_owned()).or_default()
    }

    pub fn apply(&mut self, entry: &Entry) {
        match entry {
            Entry::Started { .. } => self.started = true,
            Entry::Roles { roles } => self.roles = Some(roles.clone()),
            Entry::Notified { id, outcome } => {
                self.notified.insert(id.clone());
                if let Outcome::Failed(why) = outcome {
                    self.notify_failed = Some(format!("notify `{id}` failed: {why}"));
                }
            }
            Entry::Precondition { id, node, outcome } => {
                self.preconditions.insert((id.clone(), node.clone()), outcome.clone());
            }
            Entry::RunOnceStarted { stage, step, .. } => {
                self.stage(stage).run_once_started.insert(step.clone());
            }
            Entry::RunOnce { stage, step, outcome, .. } => {
                let s = self.stage(stage);
                s.run_once_started.remove(step);
                match outcome {
                    Outcome::Ok => {
                        s.run_once.insert(step.clone());
                    }
                    Outcome::Failed(why) => s.run_once_failed = Some(format!("run_once step `{step}` failed: {why}")),
                }
            }
            Entry::Dispatched { stage, node, attempt, exclusive } => {
                // The node's one assignment is this one now: lost work of another stage will
                // not be taken on any more (it stays failed; a late report still counts).
                for (_, other) in self.stages.iter_mut().filter(|(id, _)| *id != stage) {
                    if let Some(n) = other.nodes.get_mut(node) {
                        n.lost = false;
                    }
                }
                let s = self.stage(stage);
                if !s.nodes.values().any(|n| n.in_flight) && *attempt == 1 {
                    s.batches += 1;
                    s.batch.clear();
                }
                if !s.batch.contains(node) {
                    s.batch.push(node.clone());
                }
                if *exclusive {
                    s.exclusive_holder = Some(node.clone());
                }
                let n = self.node(stage, node);
                n.attempts = *attempt;
                n.in_flight = true;
                n.failed = None;
                n.retry_allowed = false;
                n.lost = false;
            }
            Entry::Reported { stage, node, attempt, outcome } => self.report(stage, node, *attempt, outcome),
            Entry::Lost { stage, node, attempt } => {
                let n = self.node(stage, node);
                if n.attempts == *attempt && n.in_flight {
                    n.in_flight = false;
                    n.lost = true;
                    n.failed = Some("its agent lost its lease (unreachable)".into());
                }
            }
            Entry::Retried { stage, node, .. } => {
                let s = self.stage(stage);
                s.run_once_failed = None;
                s.run_once_started.clear();
                // A retry of the stage's `run_once` step names a node that has no work in it
                // yet: that node stays pending.
                if let Some(n) = s.nodes.get_mut(node) {
                    n.retry_allowed = true;
                }
                self.halted = None;
                self.paused = None;
            }
            Entry::Paused { node, reason } => {
                self.paused = Some(reason.clone());
                self.paused_for.insert(node.clone());
            }
            Entry::Resumed { .. } => self.paused = None,
            Entry::StageDone { stage } => self.stage(stage).done = true,
            Entry::Restored { id, node, .. } => {
                self.restored.insert((id.clone(), node.clone()));
            }
            Entry::Halted { reason } => self.halted = Some(reason.clone()),
            Entry::Finished => self.finished = true,
        }
    }

    /// A report for the current attempt settles the node; a late report for an attempt that
    /// was counted lost (the agent came back and resumed locally) settles it too.
    fn report(&mut self, stage: &str, node: &str, attempt: u32, outcome: &Outcome) {
        let s = self.stage(stage);
        if *outcome == Outcome::Ok && s.exclusive_holder.as_deref() == Some(node) {
            s.exclusive_done = true;
        }
        let n = self.node(stage, node);
        if n.attempts != attempt {
            return;
        }
        n.in_flight = false;
        n.lost = false;
        match outcome {
            Outcome::Ok => {
                n.done = true;
                n.failed = None;
            }
            Outcome::Failed(why) => n.failed = Some(why.clone()),
        }
    }
}
