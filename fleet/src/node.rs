//! The node's upgrade: the runtime's `duet` binary, run on the node's own state directory (its
//! session, journal, lock and simulated machine), unchanged in its guarantees. The agent only
//! starts it, or lets it resume: `duet run PLAN` continues a session in progress started from
//! the same plan, without running a completed step again. What the agent adds is telling,
//! after its own restart, an upgrade that finished while it was down (a new session in
//! `history/`) from one that never started, so it never starts the upgrade a second time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use duet_contract::status::Status;

/// The node's duet.
pub struct NodeDuet<'a> {
    pub binary: &'a Path,
    pub node: &'a str,
    /// The node's duet state directory.
    pub state_dir: PathBuf,
    pub plan: &'a Path,
    pub inventory: Option<&'a Path>,
}

impl NodeDuet<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.binary);
        cmd.args(args).arg("--state-dir").arg(&self.state_dir);
        if let Some(inventory) = self.inventory {
            cmd.arg("--inventory").arg(inventory);
        }
        cmd.env("DUET_FLEET_NODE", self.node).stdin(Stdio::null());
        cmd
    }

    fn where_(&self) -> String {
        format!("node `{}` ({})", self.node, self.state_dir.display())
    }

    /// `duet status --json`.
    pub fn status(&self) -> Result<Status, String> {
        let out = self
            .command(&["status", "--json"])
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "`duet status --json` of {} gave no status ({e}): {}",
                self.where_(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })
    }

    /// The finished sessions (their ids under `history/`), sorted.
    pub fn history(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.state_dir.join("history"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        ids.sort();
        ids
    }

    /// Carries the node's upgrade out, or on. `from`: the finished sessions before it first
    /// started. Waits while another duet drives the state directory (one a killed agent started
    /// goes on by itself; its lock says so).
    pub fn upgrade(&self, from: &[String]) -> Result<(), String> {
        let mut said = false;
        loop {
            let status = self.status()?;
            if let Some(driver) = &status.driver {
                if !said {
                    eprintln!("agent {}: waiting for the duet that drives the node: {driver}", self.node);
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            if status.session.is_none() {
                if let Some(id) = self.history().into_iter().find(|id| !from.contains(id)) {
                    return self.finished(&id);
                }
            }
            return self.run();
        }
    }

    fn run(&self) -> Result<(), String> {
        let plan = self.plan.to_string_lossy().into_owned();
        let status = self
            .command(&["run", &plan, "--quiet"])
            .status()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        if status.success() {
            return Ok(());
        }
        Err(format!(
            "`duet run {plan}` on {} exited with {status}; see `duet status --state-dir {}` and `duet log`, fix the node, then `duet-fleet retry`",
            self.where_(),
            self.state_dir.display()
        ))
    }

    /// The outcome of session `id`, which finished while the agent was down.
    fn finished(&self, id: &str) -> Result<(), String> {
        let out = self
            .command(&["log", "--format", "json", "--session", id])
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        if !out.status.success() {
            return Err(format!(
                "cannot read the log of session {id} of {}: {}",
                self.where_(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let log: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("the log of session {id} of {} is not duet's JSON log ({e})", self.where_()))?;
        if committed(&log) {
            Ok(())
        } else {
            Err(format!(
                "the upgrade of {} ended without a commit (session {id} was aborted); see `duet log --session {id} --state-dir {}`",
                self.where_(),
                self.state_dir.display()
            ))
        }
    }
}

/// Whether a finished session's activity log (`duet log --format json`) has its Commit done.
fn committed(log: &[serde_json::Value]) -> bool {
    log.iter().any(|e| e["message"].as_str().is_some_and(|m| m.starts_with("Commit completed")))
}
