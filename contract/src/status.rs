//! What `duet status --json` reports: the guide's status bar (hardware | upgrade state |
//! operational state, partner; guide 4-25), the session, and the controlled services on both
//! sides, and the software on both sides. A field is added, never renamed: scripts and a fleet coordinator read these.

use duet_compiler::compiled::State;
use duet_compiler::inventory::Startup;
use serde::{Deserialize, Serialize};

use crate::record::Output;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub hardware: Hardware,
    pub upgrade: State,
    pub operational: Operational,
    pub partner: String,
    /// RDR disks are resynchronising after a commit or an abort (a readiness check fails
    /// meanwhile: guide 5-1, "RDR disk is not duplexed").
    pub resyncing: bool,
    pub session: Option<String>,
    pub plan: Option<String>,
    /// The process driving the session now, if any.
    pub driver: Option<Driver>,
    /// A request was left unfinished by a process that is gone: `duet resume` continues it.
    pub interrupted: bool,
    pub broken: Option<BrokenStatus>,
    /// Plan files edited since the session's snapshot (the session keeps the snapshot).
    pub changed_files: Vec<ChangedFile>,
    pub journal_damage: Option<String>,
    pub services: Vec<ServiceStatus>,
    /// The approval a `duet run` waits at (or waited at, when stopped), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_approval: Option<AwaitedApproval>,
    /// duet aborted by itself (the plan's `on_failure: abort`, or an approval's
    /// `on_expiry: abort`): the step that failed, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_by_duet: Option<crate::record::Broken>,
    /// The software installed on each side, by name (empty, and left out, when the platform
    /// keeps no software inventory).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub software: Vec<SideSoftware>,
    pub next: String,
}

/// One piece of software and its version on each side (`None`: not installed there, or the
/// side cannot be asked).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideSoftware {
    pub name: String,
    pub production: Option<String>,
    pub upgrade: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwaitedApproval {
    pub request: String,
    pub step: String,
    /// When the wait expires (RFC 3339, UTC); `None`: never.
    pub until: Option<String>,
}

/// Hardware state of the status bar (guide table 4-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hardware {
    FaultTolerant,
    ProductionSide,
}

impl Hardware {
    /// As the status bar shows it.
    pub fn label(self) -> &'static str {
        match self {
            Self::FaultTolerant => "Fault Tolerant",
            Self::ProductionSide => "Production Side",
        }
    }
}

/// Operational state (guide table 4-5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operational {
    Ready,
    Busy,
    Broken,
}

impl Operational {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Busy => "Busy",
            Self::Broken => "Broken",
        }
    }
}

/// Who holds the state directory's lock: the pid the kernel lists it under, and what the lock
/// file says of that pid (`None` when the file speaks of another process: it is being
/// rewritten, or stale).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Driver {
    /// `None` (`null`): the kernel says the lock is held, but not by which process duet can see.
    pub pid: Option<u32>,
    pub command: Option<String>,
    pub since: Option<String>,
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.pid, &self.command, &self.since) {
            (Some(pid), Some(command), Some(since)) => write!(f, "pid {pid} since {since}: `{command}`"),
            (Some(pid), ..) => write!(f, "pid {pid} (it has just taken the lock; its command is not recorded yet)"),
            (None, ..) => f.write_str("a process duet cannot identify (the kernel does not say which)"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenStatus {
    pub request: String,
    pub step: String,
    pub message: String,
    /// The failed action's output (the tails the journal keeps; `duet log` shows them too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Output>,
}

/// A plan file that is not what the session's snapshot holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedFile {
    pub file: String,
    pub change: Change,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Modified,
    Deleted,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Modified => "modified",
            Self::Deleted => "deleted",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub production: Option<SideService>,
    pub upgrade: Option<SideService>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideService {
    pub running: bool,
    pub startup: Startup,
}
