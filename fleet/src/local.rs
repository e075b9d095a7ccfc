//! The agent's own journal (`STATE_DIR/agent.json`): every assignment the agent accepted, the
//! steps of it done, and its outcome. Each change is written atomically and durably (temporary
//! file, fsync, rename, fsync of the directory) before the agent acts on it: a step is recorded
//! done before the next starts, and an outcome before it is reported to etcd. A restarted agent
//! reads it to carry on where the killed one stopped. Versioned: a journal of another format is
//! refused, never misread.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::coordination::{Assignment, Report};
use crate::exec;
use crate::journal::Outcome;

pub const FORMAT_VERSION: u32 = 1;

/// One accepted assignment and how far it got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Work {
    pub assignment: Assignment,
    /// The agent's steps done, in order (`drain`, `upgrade`, `gate:ID`, ...).
    pub done: Vec<String>,
    /// The node's finished duet sessions when its upgrade first started: how a restarted agent
    /// tells an upgrade that finished while it was down from one that never started.
    #[serde(default)]
    pub upgrade_from: Option<Vec<String>>,
    /// The step running now, recorded before it starts: found set by a restarted agent, that
    /// step was interrupted (an exclusive section with `rerun: manual` then waits for `retry`).
    #[serde(default)]
    pub running: Option<String>,
    /// Set once the work ended; reported to etcd only after this is on disk.
    pub outcome: Option<Outcome>,
    /// When the agent accepted it (RFC 3339, ms): for the operator, and the benchmark's
    /// split of a dispatch into the coordination's part and the agent's.
    #[serde(default)]
    pub accepted_at: Option<String>,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct File {
    format_version: u32,
    node: String,
    work: Vec<Work>,
}

/// The journal, loaded; every mutation goes to disk before it returns.
#[derive(Debug)]
pub struct LocalJournal {
    path: PathBuf,
    file: File,
}

impl LocalJournal {
    /// Reads `state_dir/agent.json` for `node` (an empty journal when there is none yet).
    pub fn open(state_dir: &Path, node: &str) -> Result<Self, String> {
        let path = state_dir.join("agent.json");
        let file = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: File = serde_json::from_slice(&bytes).map_err(|e| {
                    format!(
                        "the agent journal {} cannot be read ({e}); restore it from a backup, or move it aside to start node `{node}` over",
                        path.display()
                    )
                })?;
                if file.format_version != FORMAT_VERSION {
                    return Err(format!(
                        "the agent journal {} has format {}, this duet-fleet reads {FORMAT_VERSION}; use the duet-fleet that wrote it",
                        path.display(),
                        file.format_version
                    ));
                }
                if file.node != node {
                    return Err(format!(
                        "the agent journal {} is node `{}`'s, not `{node}`'s; give each node its own --state-dir",
                        path.display(),
                        file.node
                    ));
                }
                file
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                File { format_version: FORMAT_VERSION, node: node.to_owned(), work: Vec::new() }
            }
            Err(e) => return Err(format!("cannot read the agent journal {}: {e}", path.display())),
        };
        Ok(Self { path, file })
    }

    fn save(&self) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(&self.file).expect("the agent journal serializes");
        exec::write_atomic(&self.path, &bytes).map_err(|e| {
            format!(
                "cannot write the agent journal {}: {e}; free space or fix the directory, then restart the agent",
                self.path.display()
            )
        })
    }

    pub fn work(&self) -> &[Work] {
        &self.file.work
    }

    /// The work a previous agent process accepted and did not finish, if any.
    pub fn unfinished(&self) -> Option<usize> {
        self.file.work.iter().position(|w| w.outcome.is_none())
    }

    pub fn has(&self, a: &Assignment) -> bool {
        self.file.work.iter().any(|w| w.assignment.stage == a.stage && w.assignment.attempt == a.attempt)
    }

    /// Records that the agent took `a` on; returns its index.
    pub fn accept(&mut self, a: &Assignment) -> Result<usize, String> {
        self.file.work.push(Work {
            assignment: a.clone(),
            done: Vec::new(),
            upgrade_from: None,
            running: None,
            outcome: None,
            accepted_at: Some(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()),
        });
        self.save()?;
        Ok(self.file.work.len() - 1)
    }

    pub fn step_started(&mut self, work: usize, step: &str) -> Result<(), String> {
        self.file.work[work].running = Some(step.to_owned());
        self.save()
    }

    pub fn step_done(&mut self, work: usize, step: &str) -> Result<(), String> {
        let w = &mut self.file.work[work];
        w.done.push(step.to_owned());
        w.running = None;
        self.save()
    }

    pub fn upgrade_started(&mut self, work: usize, history: Vec<String>) -> Result<(), String> {
        self.file.work[work].upgrade_from = Some(history);
        self.save()
    }

    pub fn finish(&mut self, work: usize, outcome: Outcome) -> Result<(), String> {
        self.file.work[work].outcome = Some(outcome);
        self.save()
    }

    /// Every outcome on disk, as reports.
    pub fn reports(&self) -> Vec<Report> {
        self.file
            .work
            .iter()
            .filter_map(|w| {
                Some(Report {
                    stage: w.assignment.stage.clone(),
                    node: w.assignment.node.clone(),
                    attempt: w.assignment.attempt,
                    outcome: w.outcome.clone()?,
                })
            })
            .collect()
    }
}
