//! `duet-fleet status`: every node's state bar, the stages, the batch, the budget left and what
//! the run waits for, from the journal and the live agents. Deterministic: nodes in fleet order.

use std::collections::BTreeSet;
use std::fmt::Write;

use serde::Serialize;

use crate::journal::{NodeRun, RunState};
use crate::scheduler::Decision;
use crate::spec::FleetSpec;

#[derive(Serialize)]
pub struct NodeStatus {
    pub node: String,
    /// `live` or `unreachable`.
    pub agent: &'static str,
    /// `pending`, `running`, `done`, `failed` in its latest stage.
    pub state: &'static str,
    pub stage: Option<String>,
    pub attempt: u32,
    pub failure: Option<String>,
}

#[derive(Serialize)]
pub struct StageStatus {
    pub stage: String,
    /// `waiting`, `running`, `done`.
    pub state: &'static str,
    pub batch: u32,
    pub in_batch: Vec<String>,
}

#[derive(Serialize)]
pub struct Status {
    pub fleet: String,
    /// `not-started`, `running`, `paused`, `halted`, `finished`.
    pub run: &'static str,
    pub reason: Option<String>,
    pub budget_left: i64,
    pub nodes: Vec<NodeStatus>,
    pub stages: Vec<StageStatus>,
    pub waiting: Vec<String>,
}

fn node_state(n: &NodeRun) -> &'static str {
    if n.in_flight {
        "running"
    } else if n.done {
        "done"
    } else if n.failed.is_some() {
        "failed"
    } else {
        "pending"
    }
}

impl Status {
    pub fn of(spec: &FleetSpec, state: &RunState, live: &BTreeSet<String>, decision: &Decision) -> Self {
        let mut nodes = Vec::new();
        for name in spec.nodes.keys() {
            // The node's latest stage: the last in DAG order it has work in.
            let latest = spec
                .stages
                .iter()
                .rev()
                .find_map(|s| state.stages.get(&s.id)?.nodes.get(name).map(|n| (s.id.clone(), n)));
            let (in_stage, run) = latest.map_or((None, None), |(s, r)| (Some(s), Some(r)));
            nodes.push(NodeStatus {
                node: name.clone(),
                agent: if live.contains(name) { "live" } else { "unreachable" },
                state: run.map_or("pending", node_state),
                stage: in_stage,
                attempt: run.map_or(0, |r| r.attempts),
                failure: run.and_then(|r| r.failed.clone()),
            });
        }
        let stages = spec
            .stages
            .iter()
            .map(|s| {
                let run = state.stages.get(&s.id);
                let st = match run {
                    Some(r) if r.done => "done",
                    Some(r) if !r.nodes.is_empty() || !r.run_once.is_empty() => "running",
                    _ => "waiting",
                };
                StageStatus {
                    stage: s.id.clone(),
                    state: st,
                    batch: run.map_or(0, |r| r.batches),
                    in_batch: run.map(|r| r.batch.clone()).unwrap_or_default(),
                }
            })
            .collect();
        let failed = nodes.iter().filter(|n| n.state == "failed").count();
        let (run, reason) = if state.finished {
            ("finished", None)
        } else if let Some(h) = &state.halted {
            ("halted", Some(h.clone()))
        } else if let Some(p) = &state.paused {
            ("paused", Some(p.clone()))
        } else if state.started {
            ("running", None)
        } else {
            ("not-started", None)
        };
        Self {
            fleet: spec.file.clone(),
            run,
            reason,
            budget_left: i64::from(spec.policy.max_failed) - i64::try_from(failed).unwrap_or(0),
            nodes,
            stages,
            waiting: decision.waiting.clone(),
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "fleet {}: {}{}",
            self.fleet,
            self.run,
            self.reason.as_ref().map_or(String::new(), |r| format!(" ({r})"))
        );
        let _ = writeln!(out, "budget left: {} failed node(s)", self.budget_left.max(0));
        let width = self.nodes.iter().map(|n| n.node.len()).max().unwrap_or(4);
        for n in &self.nodes {
            let stage = n.stage.as_deref().map_or(String::new(), |s| format!(" | stage {s} attempt {}", n.attempt));
            let _ = writeln!(out, "  {:width$} | {:11} | {:7}{stage}", n.node, n.agent, n.state);
            if let Some(f) = &n.failure {
                let _ = writeln!(out, "  {:width$}   {f}", "");
            }
        }
        for s in &self.stages {
            let batch = if s.in_batch.is_empty() {
                String::new()
            } else {
                format!(" batch {}: {}", s.batch, s.in_batch.join(", "))
            };
            let _ = writeln!(out, "stage {}: {}{batch}", s.stage, s.state);
        }
        for w in &self.waiting {
            let _ = writeln!(out, "waiting: {w}");
        }
        out
    }
}
