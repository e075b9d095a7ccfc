//! The coordination service a fleet runs on, as a trait: membership (agents' leases), the
//! fenced fleet journal, assignments and reports, and locks for exclusive sections. [`etcd`]
//! (`crate::etcd`) is the real one; [`Memory`] here is the in-memory stand-in the scheduler's
//! property tests run against. Both keep the same rules: an append with a stale fence (a
//! deposed coordinator's) is refused, a lock has one holder, a lost lease drops its agent.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::journal::{Entry, Outcome};

/// Work handed to a node's agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub stage: String,
    pub node: String,
    pub attempt: u32,
    pub exclusive: bool,
}

/// What an agent reports, once its own journal has it durably.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub stage: String,
    pub node: String,
    pub attempt: u32,
    pub outcome: Outcome,
}

/// The leadership a coordinator's writes are guarded by: its election key's revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Fence(pub i64);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoordError {
    #[error("this coordinator is no longer the leader (its fence {0} is stale); another coordinator runs the fleet")]
    Deposed(i64),
    #[error("lock `{lock}` is held by `{holder}`")]
    Held { lock: String, holder: String },
    #[error("the coordination service failed: {0}")]
    Service(String),
}

/// The coordinator's side.
pub trait Coordination {
    /// The fleet journal, in order.
    fn journal(&mut self) -> Result<Vec<Entry>, CoordError>;
    /// Appends `entries` if `fence` is still the leader's, all or none.
    fn append(&mut self, fence: Fence, entries: &[Entry]) -> Result<(), CoordError>;
    /// The nodes whose agents hold a live lease.
    fn live(&mut self) -> Result<BTreeSet<String>, CoordError>;
    /// Hands work to nodes' agents, all or none (fenced like an append).
    fn assign(&mut self, fence: Fence, assignments: &[Assignment]) -> Result<(), CoordError>;
    /// Every report the agents wrote.
    fn reports(&mut self) -> Result<Vec<Report>, CoordError>;
}

/// The agent's side.
pub trait AgentSide {
    /// The work assigned to `node` (the latest assignment), if any.
    fn assignment(&mut self, node: &str) -> Result<Option<Assignment>, CoordError>;
    fn report(&mut self, report: &Report) -> Result<(), CoordError>;
    /// Takes `lock` for `holder`; refused while another holds it.
    fn lock(&mut self, lock: &str, holder: &str) -> Result<(), CoordError>;
    fn unlock(&mut self, lock: &str, holder: &str) -> Result<(), CoordError>;
}

/// The in-memory coordination service: one process, no network; for the scheduler's tests.
#[derive(Debug, Default)]
pub struct Memory {
    pub journal: Vec<Entry>,
    /// The current leader's fence.
    pub leader: Option<Fence>,
    pub live: BTreeSet<String>,
    pub assignments: BTreeMap<String, Assignment>,
    pub reports: Vec<Report>,
    pub locks: BTreeMap<String, String>,
    /// Every refused lock: two holders would have overlapped.
    pub contended: Vec<(String, String, String)>,
    next_revision: i64,
}

impl Memory {
    /// Elects a new leader: the previous fence is stale from now on.
    pub fn elect(&mut self) -> Fence {
        self.next_revision += 1;
        let fence = Fence(self.next_revision);
        self.leader = Some(fence);
        fence
    }

    fn fenced(&self, fence: Fence) -> Result<(), CoordError> {
        if self.leader == Some(fence) { Ok(()) } else { Err(CoordError::Deposed(fence.0)) }
    }

    /// An agent's lease expires: it leaves the live set and its locks are released.
    pub fn expire(&mut self, node: &str) {
        self.live.remove(node);
        self.locks.retain(|_, holder| holder != node);
    }
}

impl Coordination for Memory {
    fn journal(&mut self) -> Result<Vec<Entry>, CoordError> {
        Ok(self.journal.clone())
    }

    fn append(&mut self, fence: Fence, entries: &[Entry]) -> Result<(), CoordError> {
        self.fenced(fence)?;
        self.journal.extend_from_slice(entries);
        Ok(())
    }

    fn live(&mut self) -> Result<BTreeSet<String>, CoordError> {
        Ok(self.live.clone())
    }

    fn assign(&mut self, fence: Fence, assignments: &[Assignment]) -> Result<(), CoordError> {
        self.fenced(fence)?;
        for a in assignments {
            self.assignments.insert(a.node.clone(), a.clone());
        }
        Ok(())
    }

    fn reports(&mut self) -> Result<Vec<Report>, CoordError> {
        Ok(self.reports.clone())
    }
}

impl AgentSide for Memory {
    fn assignment(&mut self, node: &str) -> Result<Option<Assignment>, CoordError> {
        Ok(self.assignments.get(node).cloned())
    }

    fn report(&mut self, report: &Report) -> Result<(), CoordError> {
        if !self.reports.contains(report) {
            self.reports.push(report.clone());
        }
        Ok(())
    }

    fn lock(&mut self, lock: &str, holder: &str) -> Result<(), CoordError> {
        match self.locks.get(lock) {
            Some(h) if h != holder => {
                self.contended.push((lock.to_owned(), h.clone(), holder.to_owned()));
                Err(CoordError::Held { lock: lock.to_owned(), holder: h.clone() })
            }
            _ => {
                self.locks.insert(lock.to_owned(), holder.to_owned());
                Ok(())
            }
        }
    }

    fn unlock(&mut self, lock: &str, holder: &str) -> Result<(), CoordError> {
        if self.locks.get(lock).is_some_and(|h| h == holder) {
            self.locks.remove(lock);
        }
        Ok(())
    }
}
