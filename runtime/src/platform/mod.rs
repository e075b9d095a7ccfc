//! The split/merge platform: the one place that talks to hardware (execution model 1).
//!
//! The runtime sees the machine only through [`Platform`]. duet ships the simulated platform
//! ([`sim`]); a real backend (an isolated Upgrade Side, A/B system trees, a real service manager)
//! implements the same trait. Every method names the side it acts on; every long operation
//! reports progress and can be re-observed after a crash through [`Platform::observe`], so a
//! restarted runtime reconciles before it continues. [`http`] holds the HTTP client of `http`
//! verification gates.

mod error;
mod http;
pub(crate) mod linux;
mod machine;
pub(crate) mod sim;

pub(crate) use error::{PlatformError, PlatformErrorKind, PlatformResult};
pub(crate) use http::{HttpAnswer, HttpFailure, MAX_BODY};

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use duet_compiler::compiled::{Side, Software};
use duet_compiler::inventory::{Inventory, PartnerState, Startup};
use serde::{Deserialize, Serialize};

use crate::process::{Marks, ProcessOutcome, ProcessSpec};
pub(crate) use duet_contract::record::Severity;
pub(crate) use duet_contract::status::Hardware;

/// The machine a state directory drives, for a command that drives it: the one place that picks
/// the platform. A machine file that says `platform: linux` (or, with none given, a state
/// directory that holds a Linux machine) is the Linux platform; anything else is the simulated
/// one. Only when `may_build` (a command that may start a session, with none in progress) is it
/// built the first time, or rebuilt from a different `inventory`; otherwise a missing or
/// different machine is refused.
pub(crate) fn open(root: &Path, inventory: Option<&Path>, may_build: bool) -> PlatformResult<impl Platform + use<>> {
    if is_linux(root, inventory) {
        let machine = linux::Linux::open(root, inventory, may_build)?;
        machine.resume_purge();
        return Ok(machine::Machine::Linux(machine));
    }
    sim::Sim::open(root, inventory, may_build).map(machine::Machine::Sim)
}

fn is_linux(root: &Path, inventory: Option<&Path>) -> bool {
    match inventory {
        // Bounded and regular only: a FIFO or a device here must not hang or exhaust memory; the
        // platform that opens it reports the problem.
        Some(path) => crate::store::fsutil::read_regular(path, duet_compiler::source::MAX_FILE_BYTES)
            .is_ok_and(|text| linux::is_linux_file(&text)),
        None => linux::Linux::state_file(root).exists(),
    }
}

/// The machine as it is, for a command that only reads it (`status`): `None` when none was built
/// yet; a session in progress on a machine that is gone is an error.
pub(crate) fn existing(
    root: &Path,
    inventory: Option<&Path>,
    in_session: bool,
) -> PlatformResult<Option<impl Platform + use<>>> {
    if linux::Linux::state_file(root).exists() {
        return linux::Linux::open(root, inventory, false).map(|m| Some(machine::Machine::Linux(m)));
    }
    match sim::Sim::existing(root, inventory)? {
        Some(machine) => Ok(Some(machine::Machine::Sim(machine))),
        None if in_session => Err(PlatformError::refused(format!(
            "the simulated machine's state {} is missing, and a session is in progress on it",
            sim::Sim::state_file(root).display()
        ))
        .help("restore the state directory from a backup")),
        None => Ok(None),
    }
}

/// A hardware operation (guide chapter 4). `Revert` shuts the Upgrade Side down and restarts
/// the applications from the Production Side (abort after a merge).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Operation {
    Split,
    Merge,
    Commit,
    Abort,
    Revert,
    Finish,
}

impl Operation {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Split => "split",
            Self::Merge => "merge",
            Self::Commit => "commit",
            Self::Abort => "abort",
            Self::Revert => "revert",
            Self::Finish => "finish",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the hardware is, as the platform itself reports it. After a crash the runtime compares
/// this with its journal: an operation whose start was journaled but not its end has happened
/// if the platform is already past it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Phase {
    /// Duplexed, no session on the hardware (also: after finish).
    Duplexed,
    /// Split: Production Side runs the applications, the Upgrade Side is isolated.
    Split,
    /// Merged: the applications run from the Upgrade Side's disks, duplexed again.
    Merged,
    /// Committed: the upgrade is permanent (system disks resynchronise Upgrade -> Production).
    Committed,
    /// Aborted: back on the original software (resynchronise Production -> Upgrade).
    Aborted,
}

/// What [`Platform::observe`] returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Observed {
    pub(crate) phase: Phase,
    /// RDR disks are still resynchronising after a commit or abort.
    pub(crate) resyncing: bool,
    /// The state of the other side (guide table 4-6), seen from the side duet runs on.
    pub(crate) partner: PartnerState,
}

/// Hardware state of the status bar (guide table 4-3).
impl Observed {
    pub(crate) fn hardware(&self) -> Hardware {
        match self.phase {
            Phase::Split => Hardware::ProductionSide,
            _ => Hardware::FaultTolerant,
        }
    }
}

/// One service as the service manager of a side reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ServiceState {
    pub(crate) running: bool,
    pub(crate) startup: Startup,
}

/// One result of a readiness probe. `message` is the guide's own text where it has one
/// (table 5-1, word for word); `subject` names the disk, team or enclosure it is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Finding {
    pub(crate) severity: Severity,
    pub(crate) message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) subject: Option<String>,
    /// What to do about it (the guide's "Action" column, shortened).
    pub(crate) help: String,
}

impl Finding {
    pub(crate) fn blocks(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A progress event of a long operation, for the activity log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Progress {
    pub(crate) message: String,
}

/// An event-log entry a side records (the sim writes them to real files).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventLog {
    /// Services starting and stopping.
    System,
    /// Custom actions and duet's own steps.
    Application,
}

impl EventLog {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::System => "System",
            Self::Application => "Application",
        }
    }
}

/// The split/merge machine. Implementations keep their own state durable: a process killed at
/// any instant leaves the machine in a state `observe` reports truthfully, and every mutating
/// method is idempotent (splitting a split machine, stopping a stopped service succeed), so
/// the runtime may repeat a step whose completion it did not record.
pub(crate) trait Platform {
    /// A short name for messages (`sim`).
    fn name(&self) -> &str;

    /// What the machine reports about itself (execution model 2.3).
    fn inventory(&self) -> &Inventory;

    /// The inventory as a file the compiler can bind plans against.
    fn inventory_file(&self) -> &Path;

    /// Readiness probes (guide table 5-1): every problem found, the guide's wording kept.
    async fn readiness(&self) -> PlatformResult<Vec<Finding>>;

    /// PrepareMerge probes: the Upgrade Side is up (partner `OS Up`) and nothing is busy.
    async fn merge_readiness(&self) -> PlatformResult<Vec<Finding>>;

    /// Runs a hardware operation to its end, reporting progress. Idempotent: an operation the
    /// machine is already past succeeds at once. The caller applies the timeout.
    async fn operate(&self, op: Operation, progress: &mut dyn FnMut(Progress)) -> PlatformResult<()>;

    /// The machine's real state, for the status bar and for reconciling after a crash.
    async fn observe(&self) -> PlatformResult<Observed>;

    /// A service on one side.
    async fn service(&self, side: Side, name: &str) -> PlatformResult<ServiceState>;

    /// Sets a service's startup type on one side.
    async fn set_startup(&self, side: Side, name: &str, startup: Startup) -> PlatformResult<()>;

    /// Stops a service on one side; succeeds at once if it is stopped. The caller applies the
    /// timeout (a service that will not stop hangs here).
    async fn stop_service(&self, side: Side, name: &str) -> PlatformResult<()>;

    /// Starts a service on one side; succeeds at once if it is running.
    async fn start_service(&self, side: Side, name: &str) -> PlatformResult<()>;

    /// Runs a process on one side. The spec carries the timeout; the outcome says how it ended.
    async fn run(&self, side: Side, spec: &ProcessSpec) -> PlatformResult<ProcessOutcome>;

    /// Processes on one side that an earlier attempt of a step left running (the duet that
    /// supervised them died): those whose environment holds every `NAME=VALUE` of `marks`.
    async fn leftovers(&self, side: Side, marks: &Marks) -> PlatformResult<Vec<u32>>;

    /// Stops [`Platform::leftovers`] (SIGTERM, SIGKILL after `grace`); returns their pids.
    async fn stop_leftovers(&self, side: Side, marks: &Marks, grace: Duration) -> PlatformResult<Vec<u32>>;

    /// Copies a side's event log into `into` (a directory on this host); returns the file.
    async fn export_event_log(&self, side: Side, log: &str, into: &Path) -> PlatformResult<PathBuf>;

    /// Copies a side's crash dump files (if it crashed) into `into`; returns the files copied.
    async fn collect_dumps(&self, side: Side, into: &Path) -> PlatformResult<Vec<PathBuf>>;

    /// The software installed on a side, as its inventory lists it (a real platform asks the
    /// side's package manager).
    async fn software(&self, side: Side) -> PlatformResult<Vec<Software>> {
        let _ = side;
        Err(PlatformError::refused(format!("the {} platform keeps no software inventory", self.name()))
            .help("remove the plan's version checks, or use a platform that reports installed software"))
    }

    /// A task says it installed `software` on `side`. The sim records it in its inventory; a real
    /// platform reads the side instead ([`Platform::software`]) and needs nothing here.
    async fn installed(&self, side: Side, software: &Software) -> PlatformResult<()> {
        let _ = (side, software);
        Ok(())
    }

    /// Restarts a side's OS (the Upgrade Side after an installer), reporting progress; returns
    /// once the side is up again. Its controlled services keep their startup types (disabled,
    /// on the Upgrade Side while split).
    async fn restart(&self, side: Side, progress: &mut dyn FnMut(Progress)) -> PlatformResult<()> {
        let _ = (side, progress);
        Err(PlatformError::refused(format!("the {} platform cannot restart a side", self.name())))
    }

    /// An HTTP GET of `url` as `side`'s applications are reached (an `http` verification gate).
    /// The sim, and by default any platform: from this host. A real platform whose Upgrade Side
    /// is isolated while split makes it from there.
    async fn http_get(&self, side: Side, url: &str, timeout: Duration) -> Result<HttpAnswer, HttpFailure> {
        let _ = side;
        http::get(url, timeout).await
    }

    /// Where a path of the machine (the plan's `staging_dir`) is on this host. The identity on
    /// a real machine; the sim keeps its machine's disks under its state directory.
    fn host_path(&self, machine_path: &str) -> PathBuf;
}
