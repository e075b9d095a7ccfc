//! The node's upgrade: the runtime's `duet` binary, run on the node's own state directory (its
//! session, journal, lock and simulated machine), unchanged in its guarantees. The agent only
//! starts it, or lets it resume: `duet run PLAN` continues a session in progress started from
//! the same plan, without running a completed step again. What the agent adds is telling,
//! after its own restart, an upgrade that finished while it was down (a new session in
//! `history/`) from one that never started, so it never starts the upgrade a second time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use duet_compiler::compiled::State;
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

    /// Waits while another duet drives the state directory (one a killed agent started goes
    /// on by itself; its lock says so), then returns the status.
    fn settled_status(&self) -> Result<Status, String> {
        let mut said = false;
        loop {
            let status = self.status()?;
            let Some(driver) = &status.driver else { return Ok(status) };
            if !said {
                eprintln!("agent {}: waiting for the duet that drives the node: {driver}", self.node);
                said = true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Before an upgrade first starts: a session a previous attempt left aborted (the plan's
    /// `on_failure: abort`) is finished, so that this attempt upgrades again instead of only
    /// tidying up, and the disks have resynchronised. Returns the finished sessions from then
    /// on (for [`NodeDuet::upgrade`]).
    pub fn prepare(&self) -> Result<Vec<String>, String> {
        let mut status = self.settled_status()?;
        loop {
            if status.session.is_none() || status.upgrade != State::Abort {
                break;
            }
            eprintln!("agent {}: finishing the session a previous attempt aborted", self.node);
            let code = self
                .command(&["finish", "--quiet"])
                .status()
                .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
            // BUSY: another duet drove the node; look again when it is done.
            if !code.success() && code.code() != Some(i32::from(duet_contract::exit::BUSY)) {
                return Err(format!(
                    "`duet finish` of the aborted session on {} exited with {code}; see `duet status --state-dir {}`",
                    self.where_(),
                    self.state_dir.display()
                ));
            }
            status = self.settled_status()?;
        }
        // A new session's readiness check fails while the RDR disks resynchronise after the
        // last commit or abort (guide 5-1): the upgrade waits for them, as an operator would.
        // The status read above says so already, most of the time: one `duet status` per
        // dispatch, not three.
        let mut said = false;
        while status.resyncing {
            if !said {
                eprintln!("agent {}: waiting for the RDR disks to resynchronise before upgrading", self.node);
                said = true;
            }
            std::thread::sleep(Duration::from_millis(100));
            status = self.settled_status()?;
        }
        Ok(self.history())
    }

    /// Carries the node's upgrade out, or on. `from`: the finished sessions before it first
    /// started. Its outcome is the session's: done when a new session in `history/` committed
    /// (one that finished while the agent was down counts), failed when it aborted or is left
    /// Broken or unfinished. A `duet run` that found another duet driving the node (one a
    /// killed agent started, just taking the lock) did nothing: the agent waits for that one
    /// and looks again.
    pub fn upgrade(&self, from: &[String], just_prepared: bool) -> Result<(), String> {
        // Just prepared (the status read, nothing running): straight to `duet run`; a duet
        // that started since makes it exit BUSY, and the loop looks.
        let mut look = !just_prepared;
        loop {
            let ran = if look && self.settled_status()?.session.is_none() && self.finished_since(from).is_some() {
                Ran::Finished
            } else {
                self.run()?
            };
            look = true;
            if ran == Ran::Busy {
                continue;
            }
            return match (self.finished_since(from), ran) {
                // This `duet run` reached its goal: the session committed (an abort, by
                // itself or not, ends it nonzero).
                (Some(_), Ran::Done) => Ok(()),
                // It finished while the agent was down, or ended otherwise: its log says how.
                (Some(id), _) => self.finished(&id),
                (None, Ran::Failed(why)) => Err(why),
                (None, _) => Err(format!(
                    "`duet run` on {} ended with its session unfinished; see `duet status --state-dir {}`",
                    self.where_(),
                    self.state_dir.display()
                )),
            };
        }
    }

    fn finished_since(&self, from: &[String]) -> Option<String> {
        self.history().into_iter().find(|id| !from.contains(id))
    }

    fn run(&self) -> Result<Ran, String> {
        let plan = self.plan.to_string_lossy().into_owned();
        let status = self
            .command(&["run", &plan, "--quiet"])
            .status()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        if status.success() {
            return Ok(Ran::Done);
        }
        if status.code() == Some(i32::from(duet_contract::exit::BUSY)) {
            eprintln!("agent {}: another duet drives the node; waiting for it", self.node);
            return Ok(Ran::Busy);
        }
        Ok(Ran::Failed(format!(
            "`duet run {plan}` on {} exited with {status}; see `duet status --state-dir {}` and `duet log`, fix the node, then `duet-fleet retry`",
            self.where_(),
            self.state_dir.display()
        )))
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

/// How one `duet run` ended.
#[derive(Debug, PartialEq, Eq)]
enum Ran {
    /// This `duet run` exited 0: its goal reached.
    Done,
    /// Nothing run: a session finished since `from`, while the agent was down.
    Finished,
    /// Another duet drove the node: this one did nothing.
    Busy,
    Failed(String),
}

/// Whether a finished session's activity log (`duet log --format json`) has its Commit done.
fn committed(log: &[serde_json::Value]) -> bool {
    log.iter().any(|e| e["message"].as_str().is_some_and(|m| m.starts_with("Commit completed")))
}
