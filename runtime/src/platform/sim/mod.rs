//! The simulated platform `sim`: the guide's Express5800/320Ma, faithful enough to rehearse a
//! plan end to end (execution model 1 and 2.3).
//!
//! ```text
//! STATE_DIR/sim/
//!   inventory.yaml              the inventory the machine was built from (plans bind to it)
//!   state.json                  phase, both sides' services and software, fault counters, resync and
//!                               restart deadlines
//!   sides/SIDE/logs/NAME.log    each side's event logs: real files, one entry a line
//!   sides/SIDE/dumps/           dump files of a crashed side (guide 4-22, C:\sradumps)
//!   machine/...                 the machine's own paths (the staging directory) on this host
//! ```
//!
//! **Crash safety.** `state.json` is replaced atomically after every change, and each change
//! is one replacement: an operation first does its idempotent file work (copying one side's
//! logs over the other's), then flips the phase in one write. A process killed at any instant
//! leaves a machine whose [`Platform::observe`] tells the truth, and repeating any operation
//! is harmless.
//!
//! **Sides.** Duplexed, the two sides are one machine (the Upgrade Side's record mirrors the
//! Production Side's). The split copies the Production Side to the Upgrade Side (services and
//! logs: they are on the mirrored system disks). The commit copies the Upgrade Side over the
//! Production Side (its system disks win); the abort copies the Production Side over the Upgrade
//! Side, which is why the runtime saves the Upgrade Side's logs first.
//!
//! **Faults** (`simulation.faults`): an operation that fails N times and then succeeds (the
//! count is kept in `state.json`, so it survives restarts); a service that fails, or hangs,
//! when stopped or started; a partner state for the Upgrade Side while split (`Hung: ...` makes
//! it unreachable; a `State Sensitive Recovery` state leaves a dump file).

mod readiness;
#[cfg(test)]
mod tests;

/// For tests elsewhere in the runtime that build machines of their own.
#[cfg(test)]
pub(crate) mod testing {
    /// The built-in 320Ma without its software list (a test says what software it wants).
    pub(crate) fn built_in_without_software() -> String {
        let text = super::BUILT_IN;
        let start = text.find("\nsoftware:\n").map_or(text.len(), |i| i + 1);
        let end = text[start..].find("\nsimulation:").map_or(start, |i| start + i + 1);
        format!("{}{}", &text[..start], &text[end..])
    }
}

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use duet_compiler::compiled::{Side, Software};
use duet_compiler::diagnostic::Diagnostics;
use duet_compiler::inventory::{DiskLocation, Fault, FaultOp, Inventory, PartnerState, ServiceOp, Startup};
use duet_compiler::report;
use duet_compiler::source::{MAX_FILE_BYTES, SourceMap};
use serde::{Deserialize, Serialize};

use super::{
    EventLog, Finding, Observed, Operation, Phase, Platform, PlatformError, PlatformResult, Progress, ServiceState,
    Severity,
};
use crate::process::{self, Exit, Marks, ProcessOutcome, ProcessSpec};
use crate::store::fsutil::{self, at};

/// The machine the sim is built from when no `--inventory` is given.
const BUILT_IN: &str = include_str!("../../../../plans/machines/320ma.yaml");

/// Each operation's simulated duration when the inventory gives none.
const DEFAULT_DURATION: Duration = Duration::from_millis(50);

/// The format of `state.json`.
const STATE_FORMAT: &str = "duet-sim";
const STATE_VERSION: u32 = 1;
/// The largest state file duet reads (a machine's is a few KiB).
const MAX_STATE_BYTES: u64 = 16 << 20;
/// The largest simulated event log duet reads into memory (to settle the lines it owes).
const MAX_LOG_BYTES: u64 = 256 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct SimState {
    format: String,
    version: u32,
    phase: Phase,
    production: BTreeMap<String, ServiceState>,
    upgrade: BTreeMap<String, ServiceState>,
    /// How often each operation has failed by a simulated fault so far.
    #[serde(default)]
    failures: BTreeMap<FaultOp, u32>,
    /// RDR disks resynchronise until this Unix time (ms), after a commit or an abort.
    #[serde(default)]
    resync_until_ms: u64,
    /// Event-log lines the machine owes: see [`Owed`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    owed: Vec<Owed>,
    /// The software of each side. Absent in a state file written before the sim kept software:
    /// [`Sim::open`] fills it in from the inventory (on both sides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    software: Option<SideSoftware>,
    /// The Upgrade Side's OS is restarting until this Unix time (ms): its partner state is
    /// `OS Booting` until then. 0: not restarting.
    #[serde(default, skip_serializing_if = "is_zero")]
    booting_until_ms: u64,
}

#[expect(clippy::trivially_copy_pass_by_ref, reason = "serde's skip_serializing_if passes a reference")]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Software name -> version, per side (sorted by name).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SideSoftware {
    production: BTreeMap<String, String>,
    upgrade: BTreeMap<String, String>,
}

impl SideSoftware {
    fn of(inventory: &Inventory) -> Self {
        let list: BTreeMap<String, String> =
            inventory.software.iter().map(|s| (s.name.clone(), s.version.clone())).collect();
        Self { production: list.clone(), upgrade: list }
    }

    fn side_mut(&mut self, side: Side) -> &mut BTreeMap<String, String> {
        match side {
            Side::Production => &mut self.production,
            Side::Upgrade => &mut self.upgrade,
        }
    }
}

/// A line the service manager owes its event log. The change it tells of and the line are
/// saved together, in the state, before the line is appended; the line leaves the state once it
/// is in the log. duet killed in between leaves it here, and the machine writes it before
/// anything else happens to it, so a kill never loses a line (nor writes one twice).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Owed {
    /// The log file, relative to the sim's directory.
    log: PathBuf,
    /// The log's length before the line.
    at: u64,
    line: String,
}

impl SimState {
    fn side(&self, side: Side) -> &BTreeMap<String, ServiceState> {
        match side {
            Side::Production => &self.production,
            Side::Upgrade => &self.upgrade,
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut BTreeMap<String, ServiceState> {
        match side {
            Side::Production => &mut self.production,
            Side::Upgrade => &mut self.upgrade,
        }
    }

    /// The software of both sides ([`Sim::open`] has filled it in).
    fn software_mut(&mut self) -> &mut SideSoftware {
        self.software.get_or_insert_with(SideSoftware::default)
    }

    /// One side's software becomes a copy of the other's (a disk copy of the system disks).
    fn copy_software(&mut self, from: Side) {
        let software = self.software_mut();
        match from {
            Side::Production => software.upgrade = software.production.clone(),
            Side::Upgrade => software.production = software.upgrade.clone(),
        }
    }
}

pub(crate) struct Sim {
    dir: PathBuf,
    inventory: Inventory,
    inventory_file: PathBuf,
    state: Mutex<SimState>,
    /// Event-log files open for appending (one open per log, not per entry). Dropped whenever a
    /// disk copy replaces the files.
    logs: Mutex<BTreeMap<PathBuf, std::fs::File>>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Production => "Production Side",
        Side::Upgrade => "Upgrade Side",
    }
}

fn side_dir(side: Side) -> &'static str {
    match side {
        Side::Production => "production",
        Side::Upgrade => "upgrade",
    }
}

/// Windows' words for a start type, as the System log writes them.
fn start_type(startup: Startup) -> &'static str {
    match startup {
        Startup::Automatic => "auto start",
        Startup::Manual => "demand start",
        Startup::Disabled => "disabled",
    }
}

fn load_inventory(path: &Path) -> PlatformResult<Inventory> {
    let (mut sources, mut diags) = (SourceMap::default(), Diagnostics::default());
    let inventory = Inventory::load(path, &mut sources, &mut diags);
    match inventory {
        Some(inventory) if !diags.has_errors() => Ok(inventory),
        _ => {
            let shown = report::render_human(&diags.into_sorted(), &sources, false);
            Err(PlatformError::refused(format!("{}: the inventory is invalid\n{}", path.display(), shown.trim_end()))
                .help("fix it (`duet check PLAN --inventory FILE` shows its problems too), then run the command again"))
        }
    }
}

impl Sim {
    /// Where a state directory keeps the machine's state.
    pub(crate) fn state_file(root: &Path) -> PathBuf {
        root.join("sim/state.json")
    }

    /// The simulated machine of a state directory, for a command that only reads: `None` if it
    /// was never built. Never writes.
    pub(crate) fn existing(root: &Path, inventory: Option<&Path>) -> PlatformResult<Option<Self>> {
        if !Self::state_file(root).exists() {
            return Ok(None);
        }
        Self::open(root, inventory, false).map(Some)
    }

    /// Opens the simulated machine of a state directory for a command that drives it. Only
    /// when `may_build` (a command that may start a session, with none in progress) is it built
    /// the first time, from `inventory` (or the built-in 320Ma), or rebuilt from a different
    /// inventory; otherwise a missing or different machine is refused.
    pub(crate) fn open(root: &Path, inventory: Option<&Path>, may_build: bool) -> PlatformResult<Self> {
        let dir = root.join("sim");
        let inventory_file = dir.join("inventory.yaml");
        let state_file = Self::state_file(root);
        let given = match inventory {
            Some(path) => Some(fsutil::read_regular(path, MAX_FILE_BYTES).map_err(at("read", path)).map_err(|e| {
                PlatformError::refused(e.to_string()).help("give an inventory file that exists (`--inventory FILE`)")
            })?),
            None => None,
        };
        if state_file.exists() {
            let current = fsutil::read_regular(&inventory_file, MAX_FILE_BYTES).map_err(at("read", &inventory_file))?;
            let differs = given.as_ref().is_some_and(|g| *g != current);
            if !differs {
                return Self::reopen(dir, inventory_file, &state_file);
            }
            if !may_build {
                return Err(PlatformError::refused(format!(
                    "the simulated machine in {} was built from another inventory than {}",
                    dir.display(),
                    inventory.map_or_else(String::new, |p| p.display().to_string())
                ))
                .help(
                    "omit `--inventory` to use the machine as it is; it is rebuilt from a new inventory only by \
                     `duet readiness` or `duet split` with no session in progress (finish or abort it first)",
                ));
            }
        }
        if !state_file.exists() && !may_build {
            return Err(PlatformError::refused(format!(
                "the simulated machine's state {} is missing, and a session is in progress on it",
                state_file.display()
            ))
            .help("restore the state directory from a backup; to start over, move STATE_DIR/session aside (it keeps the session's record)"));
        }
        // Build (or rebuild) the machine: validate the inventory first, so nothing is replaced
        // by an invalid one.
        let inventory = if let Some(path) = inventory {
            load_inventory(path)?
        } else {
            fsutil::create_dir_all_durable(&dir).map_err(at("create", &dir))?;
            fsutil::write_atomic(&inventory_file, BUILT_IN.as_bytes()).map_err(at("write", &inventory_file))?;
            load_inventory(&inventory_file)?
        };
        // The state file goes first and comes back last: a rebuild cut short is redone by the
        // next command, never taken for a machine.
        if state_file.exists() {
            std::fs::remove_file(&state_file).map_err(at("remove", &state_file))?;
            fsutil::sync_dir(&dir).map_err(at("sync", &dir))?;
        }
        let _ = std::fs::remove_dir_all(dir.join("sides"));
        fsutil::create_dir_all_durable(&dir).map_err(at("create", &dir))?;
        if let Some(text) = &given {
            fsutil::write_atomic(&inventory_file, text).map_err(at("write", &inventory_file))?;
        }
        let services: BTreeMap<String, ServiceState> = inventory
            .services
            .iter()
            .map(|s| (s.name.clone(), ServiceState { running: s.running, startup: s.startup }))
            .collect();
        let state = SimState {
            format: STATE_FORMAT.into(),
            version: STATE_VERSION,
            phase: Phase::Duplexed,
            production: services.clone(),
            upgrade: services,
            failures: BTreeMap::new(),
            resync_until_ms: 0,
            owed: Vec::new(),
            software: Some(SideSoftware::of(&inventory)),
            booting_until_ms: 0,
        };
        let sim = Self { dir, inventory, inventory_file, state: Mutex::new(state.clone()), logs: Mutex::default() };
        for log in &sim.inventory.event_logs {
            let file = sim.log_file(Side::Production, log);
            let parent = file.parent().expect("a log file has a directory");
            fsutil::create_dir_all_durable(parent).map_err(at("create", parent))?;
            let line = entry_line(Severity::Information, "EventLog", &format!("The {log} event log was started."));
            fsutil::write_atomic(&file, line.as_bytes()).map_err(at("write", &file))?;
        }
        sim.copy_logs(Side::Production, Side::Upgrade)?;
        sim.save(&state)?;
        Ok(sim)
    }

    /// The machine as its state file left it.
    fn reopen(dir: PathBuf, inventory_file: PathBuf, state_file: &Path) -> PlatformResult<Self> {
        let text = fsutil::read_regular_text(state_file, MAX_STATE_BYTES).map_err(at("read", state_file))?;
        let mut state = parse_state(state_file, &text)?;
        let inventory = load_inventory(&inventory_file)?;
        // A machine from before the sim kept software has the inventory's on both sides (saved
        // with the next change).
        state.software.get_or_insert_with(|| SideSoftware::of(&inventory));
        Ok(Self { dir, inventory, inventory_file, state: Mutex::new(state), logs: Mutex::default() })
    }

    /// An event log's file. Its name was checked where it entered (the inventory, or the
    /// sim's own `System` and `Application`): one file name, never a path.
    fn log_file(&self, side: Side, log: &str) -> PathBuf {
        debug_assert!(duet_compiler::name::problem(log).is_none(), "event log name {log:?} is a checked name");
        self.dir.join("sides").join(side_dir(side)).join("logs").join(format!("{log}.log"))
    }

    fn dumps_dir(&self, side: Side) -> PathBuf {
        self.dir.join("sides").join(side_dir(side)).join("dumps")
    }

    /// A log or dump copy that failed: into the plan's staging directory, the step fails (the
    /// operator fixes the directory and retries); into duet's own state directory (a plan
    /// without one), or reading the sim's own files, it is a storage error (D46).
    fn copy_failed(&self, into: &Path, e: &fsutil::FsError) -> PlatformError {
        let root = self.dir.parent().unwrap_or(&self.dir);
        if into.starts_with(root) || e.path.starts_with(&self.dir) {
            PlatformError::storage(e.to_string())
        } else {
            PlatformError::refused(e.to_string()).help("check the staging directory")
        }
    }

    fn save(&self, state: &SimState) -> PlatformResult<()> {
        let path = self.dir.join("state.json");
        let text = serde_json::to_string_pretty(state).expect("the sim state serializes") + "\n";
        fsutil::write_atomic(&path, text.as_bytes()).map_err(|e| {
            PlatformError::storage(format!(
                "the simulated machine cannot save its state: cannot write {}: {e}",
                path.display()
            ))
        })
    }

    /// Changes the state and saves it, as one step.
    fn change<T>(&self, f: impl FnOnce(&mut SimState) -> PlatformResult<T>) -> PlatformResult<T> {
        self.settle()?;
        self.commit(f)
    }

    /// Changes the state and saves it, with the event-log line that tells of the change (if
    /// `f` gives one, and the machine keeps `log`): the line is owed ([`Owed`]) until it is in
    /// the log.
    fn change_and_log<T>(
        &self,
        side: Side,
        log: EventLog,
        f: impl FnOnce(&mut SimState) -> PlatformResult<(T, Option<String>)>,
    ) -> PlatformResult<T> {
        let path = self.log_file(side, log.as_str());
        let keeps = self.inventory.event_logs.iter().any(|l| l == log.as_str());
        let value = self.change(|s| {
            let (value, message) = f(s)?;
            if let Some(message) = message.filter(|_| keeps) {
                let at = std::fs::metadata(&path).map_or(0, |m| m.len());
                let line = entry_line(Severity::Information, "duet", &message);
                let log = path.strip_prefix(&self.dir).unwrap_or(&path).to_owned();
                s.owed.push(Owed { log, at, line });
            }
            Ok(value)
        })?;
        self.settle()?;
        Ok(value)
    }

    /// Writes the lines the machine owes its logs (after a kill, those it may not have), then
    /// clears them from the state. A line the log holds at its place is not written again; a
    /// part of it there (a write cut short) is completed; anything else in the log is kept.
    fn settle(&self) -> PlatformResult<()> {
        let owed = self.snapshot().owed;
        if owed.is_empty() {
            return Ok(());
        }
        for o in &owed {
            let path = self.dir.join(&o.log);
            let bytes = match fsutil::read_regular(&path, MAX_LOG_BYTES) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => {
                    return Err(PlatformError::storage(format!("cannot read the event log {}: {e}", path.display())));
                }
            };
            let line = o.line.as_bytes();
            let at = usize::try_from(o.at).unwrap_or(usize::MAX);
            let there = bytes.get(at..).unwrap_or_default();
            if there.starts_with(line) {
                continue;
            }
            let cut = (line.starts_with(there) && at <= bytes.len()).then_some(o.at);
            let written = std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut file| {
                if let Some(len) = cut {
                    file.set_len(len)?;
                }
                file.write_all(line)
            });
            self.logs.lock().expect("the log files lock is never poisoned").remove(&path);
            written
                .map_err(|e| PlatformError::storage(format!("cannot write the event log {}: {e}", path.display())))?;
        }
        self.commit(|s| {
            s.owed.clear();
            Ok(())
        })
    }

    /// Changes the state and saves it, as one step (nothing owed is written first).
    fn commit<T>(&self, f: impl FnOnce(&mut SimState) -> PlatformResult<T>) -> PlatformResult<T> {
        let mut guard = self.state.lock().expect("the sim state lock is never poisoned");
        let mut next = guard.clone();
        let value = f(&mut next)?;
        if next != *guard {
            self.save(&next)?;
            *guard = next;
        }
        Ok(value)
    }

    fn snapshot(&self) -> SimState {
        self.state.lock().expect("the sim state lock is never poisoned").clone()
    }

    /// Replaces `to`'s event logs (and dumps) with `from`'s: RDR resynchronisation of the
    /// system disks. Idempotent; each file is replaced atomically.
    fn copy_logs(&self, from: Side, to: Side) -> PlatformResult<()> {
        self.settle()?;
        let fail = |e: fsutil::FsError| PlatformError::storage(format!("the simulated disk copy failed: {e}"));
        self.logs.lock().expect("the log files lock is never poisoned").clear();
        for log in &self.inventory.event_logs {
            let (src, dest) = (self.log_file(from, log), self.log_file(to, log));
            let parent = dest.parent().expect("a log file has a directory");
            fsutil::create_dir_all_durable(parent).map_err(at("create", parent)).map_err(fail)?;
            fsutil::copy_atomic(&src, &dest).map_err(at("write", &dest)).map_err(fail)?;
        }
        let _ = std::fs::remove_dir_all(self.dumps_dir(to));
        Ok(())
    }

    /// The partner state a fault sets for a side, if any.
    fn partner_fault(&self, side: Side) -> Option<PartnerState> {
        self.inventory.simulation.faults.iter().find_map(|f| match f {
            Fault::Partner { side: s, partner_state } if *s == side => Some(*partner_state),
            _ => None,
        })
    }

    fn partner(&self, phase: Phase) -> PartnerState {
        match phase {
            Phase::Split => self.partner_fault(Side::Upgrade).unwrap_or_else(|| {
                if now_ms() < self.snapshot().booting_until_ms { PartnerState::OsBooting } else { PartnerState::OsUp }
            }),
            _ => PartnerState::OsUp,
        }
    }

    /// Refuses work on an Upgrade Side that is split off and not up.
    fn reachable(&self, side: Side) -> PlatformResult<()> {
        let phase = self.snapshot().phase;
        let partner = self.partner(phase);
        if side == Side::Upgrade && phase == Phase::Split && partner != PartnerState::OsUp {
            return Err(PlatformError::unreachable(format!(
                "the Upgrade Side is not responding (partner state: {partner})"
            ))
            .help("restart the Upgrade Side and wait for `Partner: OS Up` (`duet status`)"));
        }
        Ok(())
    }

    fn duration(&self, op: Operation) -> Duration {
        let d = &self.inventory.simulation.durations;
        let ms = match op {
            Operation::Split => d.split,
            Operation::Merge => d.merge,
            Operation::Commit => d.commit,
            Operation::Abort | Operation::Revert => d.abort,
            Operation::Finish => d.finish,
        };
        ms.map_or(DEFAULT_DURATION, Duration::from_millis)
    }

    fn restart_duration(&self) -> Duration {
        self.inventory.simulation.durations.restart.map_or(DEFAULT_DURATION, Duration::from_millis)
    }

    fn resync_ms(&self) -> u64 {
        self.inventory.simulation.durations.resync.unwrap_or(50)
    }

    fn service_fault(&self, name: &str, on: ServiceOp) -> Option<bool> {
        self.inventory.simulation.faults.iter().find_map(|f| match f {
            Fault::Service { service, on: o, hang } if service == name && *o == on => Some(*hang),
            _ => None,
        })
    }

    fn append_event(&self, side: Side, log: EventLog, severity: Severity, message: &str) -> PlatformResult<()> {
        if !self.inventory.event_logs.iter().any(|l| l == log.as_str()) {
            return Ok(());
        }
        let path = self.log_file(side, log.as_str());
        let line = entry_line(severity, "duet", message);
        let mut logs = self.logs.lock().expect("the log files lock is never poisoned");
        let file = match logs.entry(path.clone()) {
            std::collections::btree_map::Entry::Occupied(file) => Ok(file.into_mut()),
            std::collections::btree_map::Entry::Vacant(slot) => {
                OpenOptions::new().create(true).append(true).open(&path).map(|file| slot.insert(file))
            }
        };
        // A line that could not be written whole (a full disk) is cut back, so the next one
        // starts a line of its own.
        let written = file.and_then(|file| {
            let len = file.metadata()?.len();
            file.write_all(line.as_bytes()).inspect_err(|_| {
                let _ = file.set_len(len);
            })
        });
        written.map_err(|e| {
            logs.remove(&path);
            PlatformError::storage(format!("cannot write the {} event log {}: {e}", side_name(side), path.display()))
        })
    }

    fn known(state: &SimState, side: Side, name: &str) -> PlatformResult<ServiceState> {
        state.side(side).get(name).copied().ok_or_else(|| {
            PlatformError::refused(format!("the {} has no service {name}", side_name(side)))
                .help("the plan names a service this machine does not have: check the plan against the inventory")
        })
    }

    /// Stops or starts a service: at once if it already is, never if a fault says so.
    async fn control(&self, side: Side, name: &str, op: ServiceOp) -> PlatformResult<()> {
        self.reachable(side)?;
        // A change made before a kill may still owe its line, even if nothing changes now.
        self.settle()?;
        let now = Self::known(&self.snapshot(), side, name)?;
        let (running, verb, state) = match op {
            ServiceOp::Stop => (false, "stop", "stopped"),
            ServiceOp::Start => (true, "start", "running"),
        };
        if now.running == running {
            return Ok(());
        }
        if running && now.startup == Startup::Disabled {
            return Err(PlatformError::refused(format!(
                "{name} on the {}: The service cannot be started, either because it is disabled or because it has no enabled devices associated with it.",
                side_name(side)
            ))
            .help("set its startup type to automatic or manual"));
        }
        match self.service_fault(name, op) {
            Some(true) => std::future::pending::<()>().await,
            Some(false) => {
                return Err(PlatformError::transient(format!(
                    "The {name} service on the {} did not {verb}: it did not respond to the {verb} request (simulated fault)",
                    side_name(side)
                ))
                .help(format!("{verb} {name} by hand on the {}", side_name(side))));
            }
            None => {}
        }
        self.change_and_log(side, EventLog::System, |s| {
            if let Some(x) = s.side_mut(side).get_mut(name) {
                x.running = running;
            }
            Ok(((), Some(format!("The {name} service entered the {state} state."))))
        })
    }

    /// The hardware split: the Upgrade Side starts as a copy of the Production Side (and, with
    /// a crash fault, leaves a dump file behind).
    fn split(&self) -> PlatformResult<()> {
        self.copy_logs(Side::Production, Side::Upgrade)?;
        if self.partner_fault(Side::Upgrade).is_some_and(PartnerState::is_crash) {
            let dumps = self.dumps_dir(Side::Upgrade);
            let made = fsutil::create_dir_all_durable(&dumps)
                .and_then(|()| fsutil::write_atomic(&dumps.join("Memory1.dmp"), b"simulated crash dump\n"));
            made.map_err(|e| PlatformError::storage(format!("cannot write the simulated dump file: {e}")))?;
        }
        self.change(|s| {
            s.upgrade = s.production.clone();
            s.copy_software(Side::Production);
            s.phase = Phase::Split;
            Ok(())
        })
    }

    /// Shuts the Upgrade Side down and boots the Production Side: its services come back as
    /// their (untouched) startup types say: automatic ones start.
    fn revert(&self) -> PlatformResult<()> {
        self.append_event(
            Side::Production,
            EventLog::System,
            Severity::Warning,
            "The Upgrade Side was shut down; the system restarted from the Production Side.",
        )?;
        self.change(|s| {
            for service in s.upgrade.values_mut() {
                service.running = false;
            }
            for service in s.production.values_mut() {
                service.running |= service.startup == Startup::Automatic;
            }
            s.phase = Phase::Split;
            Ok(())
        })
    }

    /// Restarts the Upgrade Side's OS while split: its services stop, the partner state is
    /// `OS Booting` for the simulated duration (saved, so a duet killed meanwhile sees it end),
    /// then `OS Up` with the services back as their startup types say (disabled ones stay
    /// stopped). Repeating it restarts again, which is harmless.
    async fn restart_upgrade_side(&self, side: Side, progress: &mut dyn FnMut(Progress)) -> PlatformResult<()> {
        let phase = self.snapshot().phase;
        if side != Side::Upgrade || phase != Phase::Split {
            return Err(PlatformError::refused(format!(
                "cannot restart the {}: only the Upgrade Side is restarted, while the machine is split (it is {phase:?})",
                side_name(side)
            ))
            .help("`duet status` shows the machine's state"));
        }
        let duration = self.restart_duration();
        progress(Progress {
            message: format!(
                "restart of the Upgrade Side in progress (simulated, {})",
                humantime::format_duration(duration)
            ),
        });
        let until = now_ms() + u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        self.change(|s| {
            for service in s.upgrade.values_mut() {
                service.running = false;
            }
            s.booting_until_ms = until.max(1);
            Ok(())
        })?;
        tokio::time::sleep(duration).await;
        self.change_and_log(Side::Upgrade, EventLog::System, |s| {
            for service in s.upgrade.values_mut() {
                service.running = service.startup == Startup::Automatic;
            }
            s.booting_until_ms = 0;
            Ok(((), Some("The Upgrade Side restarted.".to_owned())))
        })?;
        progress(Progress { message: "restart of the Upgrade Side complete".into() });
        Ok(())
    }

    /// Applies an operation's effect on the machine (the durations are waited before).
    fn apply(&self, op: Operation) -> PlatformResult<()> {
        let phase = self.snapshot().phase;
        let wrong = |needs: &str| {
            PlatformError::refused(format!("cannot {op}: the machine is {phase:?}, and the {op} needs it {needs}"))
                .help("`duet status` shows the machine's state")
        };
        match (op, phase) {
            (Operation::Split, Phase::Split)
            | (Operation::Merge, Phase::Merged)
            | (Operation::Commit, Phase::Committed)
            | (Operation::Abort, Phase::Aborted)
            | (Operation::Finish, Phase::Duplexed) => Ok(()),
            (Operation::Split, Phase::Duplexed) => self.split(),
            (Operation::Split, _) => Err(wrong("Fault Tolerant with no session")),
            (Operation::Merge, Phase::Split) => self.change(|s| {
                s.phase = Phase::Merged;
                Ok(())
            }),
            (Operation::Commit, Phase::Merged) => {
                self.copy_logs(Side::Upgrade, Side::Production)?;
                let until = now_ms() + self.resync_ms();
                self.change(|s| {
                    s.production = s.upgrade.clone();
                    s.copy_software(Side::Upgrade);
                    s.phase = Phase::Committed;
                    s.resync_until_ms = until;
                    Ok(())
                })
            }
            (Operation::Commit, _) => Err(wrong("merged")),
            (Operation::Revert, Phase::Merged | Phase::Split) => self.revert(),
            (Operation::Revert, _) => Err(wrong("merged or split")),
            (Operation::Abort, Phase::Split) => {
                self.copy_logs(Side::Production, Side::Upgrade)?;
                let until = now_ms() + self.resync_ms();
                self.change(|s| {
                    s.upgrade = s.production.clone();
                    s.copy_software(Side::Production);
                    s.phase = Phase::Aborted;
                    s.resync_until_ms = until;
                    Ok(())
                })
            }
            // Aborted before the hardware split (from Prepare Split): nothing to resynchronise.
            (Operation::Abort, Phase::Duplexed) => self.change(|s| {
                s.phase = Phase::Aborted;
                Ok(())
            }),
            (Operation::Abort, Phase::Merged) => Err(wrong("split (after a merge, revert first)")),
            (Operation::Merge | Operation::Abort, _) => Err(wrong("split")),
            (Operation::Finish, Phase::Committed | Phase::Aborted) => self.change(|s| {
                s.upgrade = s.production.clone();
                s.copy_software(Side::Production);
                s.phase = Phase::Duplexed;
                Ok(())
            }),
            (Operation::Finish, _) => Err(wrong("committed or aborted")),
        }
    }
}

fn parse_state(path: &Path, text: &str) -> PlatformResult<SimState> {
    #[derive(Deserialize)]
    struct Header {
        format: Option<String>,
        version: Option<u32>,
    }
    let rebuild = "remove the directory to rebuild the simulated machine (only when no session is in progress)";
    let header: Header = serde_json::from_str(text).map_err(|e| {
        PlatformError::refused(format!("{}: the simulated machine's state cannot be read: {e}", path.display()))
            .help(rebuild)
    })?;
    match (header.format.as_deref(), header.version) {
        (Some(STATE_FORMAT), Some(STATE_VERSION)) => {}
        (Some(STATE_FORMAT), Some(v)) => {
            return Err(PlatformError::refused(format!(
                "{}: simulated machine state format version {v}; this duet reads version {STATE_VERSION} only",
                path.display()
            ))
            .help("use the duet version that wrote it"));
        }
        _ => {
            return Err(
                PlatformError::refused(format!("{}: not a simulated machine's state", path.display())).help(rebuild)
            );
        }
    }
    let state: SimState = serde_json::from_str(text).map_err(|e| {
        PlatformError::refused(format!("{}: the simulated machine's state cannot be read: {e}", path.display()))
            .help(rebuild)
    })?;
    // The lines owed to the logs name their files relative to the sim's directory: a path that
    // leads out of it is not one this duet wrote.
    if let Some(o) = state.owed.iter().find(|o| !o.log.components().all(|c| matches!(c, Component::Normal(_)))) {
        return Err(PlatformError::refused(format!(
            "{}: not a simulated machine's state: it owes a line to {}, outside the machine",
            path.display(),
            o.log.display()
        ))
        .help(rebuild));
    }
    Ok(state)
}

/// One event-log line: time, severity, source, message (tabs and newlines in the message are
/// escaped so that one entry stays one line).
fn entry_line(severity: Severity, source: &str, message: &str) -> String {
    let time = humantime::format_rfc3339_millis(SystemTime::now());
    let message = message.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n");
    format!("{time}\t{}\t{source}\t{message}\n", severity.as_str())
}

impl Platform for Sim {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    fn inventory_file(&self) -> &Path {
        &self.inventory_file
    }

    async fn readiness(&self) -> PlatformResult<Vec<Finding>> {
        let state = self.snapshot();
        let mut found = readiness::findings(&self.inventory);
        if now_ms() < state.resync_until_ms {
            for disk in
                self.inventory.disks.iter().filter(|d| d.location == DiskLocation::Internal && d.rdr && d.synced)
            {
                found.push(Finding {
                    severity: Severity::Error,
                    message: readiness::RDR_NOT_DUPLEXED.into(),
                    subject: Some(disk.id.clone()),
                    help: readiness::RDR_HELP.into(),
                });
            }
        }
        if state.phase != Phase::Duplexed {
            found.push(Finding {
                severity: Severity::Error,
                message: format!("the machine is not Fault Tolerant: it is {:?}", state.phase),
                subject: None,
                help: "finish or abort the upgrade session on the machine first (`duet status`)".into(),
            });
        }
        Ok(found)
    }

    async fn merge_readiness(&self) -> PlatformResult<Vec<Finding>> {
        let state = self.snapshot();
        let partner = self.partner(state.phase);
        let mut found = Vec::new();
        if state.phase != Phase::Split {
            found.push(Finding {
                severity: Severity::Error,
                message: format!("the machine is not split: it is {:?}", state.phase),
                subject: None,
                help: "`duet status` shows the machine's state".into(),
            });
        }
        if partner != PartnerState::OsUp {
            found.push(Finding {
                severity: Severity::Error,
                message: format!("the Upgrade Side is not up (partner state: {partner})"),
                subject: Some("Upgrade Side".into()),
                help: "wait for `Partner: OS Up`; if it is hung, restart the Upgrade Side".into(),
            });
        }
        Ok(found)
    }

    async fn operate(&self, op: Operation, progress: &mut dyn FnMut(Progress)) -> PlatformResult<()> {
        let fault = match op {
            Operation::Split => Some(FaultOp::Split),
            Operation::Merge => Some(FaultOp::Merge),
            Operation::Commit => Some(FaultOp::Commit),
            Operation::Abort => Some(FaultOp::Abort),
            Operation::Finish => Some(FaultOp::Finish),
            Operation::Revert => None,
        };
        let limit = fault.and_then(|f| {
            self.inventory.simulation.faults.iter().find_map(|x| match x {
                Fault::Operation { op, fail_times } if *op == f => Some((f, *fail_times)),
                _ => None,
            })
        });
        let duration = self.duration(op);
        progress(Progress {
            message: format!("{op} in progress (simulated, {})", humantime::format_duration(duration)),
        });
        tokio::time::sleep(duration).await;
        if let Some((f, times)) = limit {
            let failed = self.change(|s| {
                let n = s.failures.entry(f).or_default();
                if *n < times {
                    *n += 1;
                    Ok(Some(*n))
                } else {
                    Ok(None)
                }
            })?;
            if let Some(n) = failed {
                return Err(PlatformError::transient(format!(
                    "the {op} failed (simulated fault, failure {n} of {times})"
                ))
                .help(format!("the {op} may succeed when tried again")));
            }
        }
        self.apply(op)?;
        progress(Progress { message: format!("{op} complete") });
        Ok(())
    }

    async fn observe(&self) -> PlatformResult<Observed> {
        let state = self.snapshot();
        Ok(Observed {
            phase: state.phase,
            resyncing: now_ms() < state.resync_until_ms,
            partner: self.partner(state.phase),
        })
    }

    async fn service(&self, side: Side, name: &str) -> PlatformResult<ServiceState> {
        self.reachable(side)?;
        Self::known(&self.snapshot(), side, name)
    }

    async fn set_startup(&self, side: Side, name: &str, startup: Startup) -> PlatformResult<()> {
        self.reachable(side)?;
        self.change_and_log(side, EventLog::System, |s| {
            let before = Self::known(s, side, name)?;
            s.side_mut(side).insert(name.to_owned(), ServiceState { startup, ..before });
            let line = (before.startup != startup).then(|| {
                format!(
                    "The start type of the {name} service was changed from {} to {}.",
                    start_type(before.startup),
                    start_type(startup)
                )
            });
            Ok(((), line))
        })
    }

    async fn stop_service(&self, side: Side, name: &str) -> PlatformResult<()> {
        self.control(side, name, ServiceOp::Stop).await
    }

    async fn start_service(&self, side: Side, name: &str) -> PlatformResult<()> {
        self.control(side, name, ServiceOp::Start).await
    }

    async fn run(&self, side: Side, spec: &ProcessSpec) -> PlatformResult<ProcessOutcome> {
        self.reachable(side)?;
        let step = spec.env.iter().find(|(n, _)| n == "DUET_STEP").map_or("", |(_, v)| v.as_str());
        let program = spec.program.display();
        self.append_event(
            side,
            EventLog::Application,
            Severity::Information,
            &format!("Custom action {program} started ({step})"),
        )?;
        let mut outcome = process::run(spec).await;
        let (severity, how) = match &outcome.exit {
            Exit::Code(0) => (Severity::Success, "exited with value 0".to_owned()),
            Exit::Code(n) => (Severity::Error, format!("failed with exit value {n}")),
            Exit::Signal(s) => (Severity::Error, format!("was killed by signal {s}")),
            Exit::TimedOut => (Severity::Error, "timed out and was stopped".to_owned()),
            Exit::Interrupted => (Severity::Warning, "was stopped: duet was interrupted".to_owned()),
            Exit::SpawnFailed { message, .. } => (Severity::Error, format!("could not start: {message}")),
        };
        // The action ran: what it did stands even if the log cannot say so.
        let logged = self.append_event(
            side,
            EventLog::Application,
            severity,
            &format!("Custom action {program} {how} ({step})"),
        );
        outcome.record_error = logged.err().map(|e| e.message);
        Ok(outcome)
    }

    async fn leftovers(&self, _side: Side, marks: &Marks) -> PlatformResult<Vec<u32>> {
        Ok(process::leftovers(marks))
    }

    async fn stop_leftovers(&self, _side: Side, marks: &Marks, grace: Duration) -> PlatformResult<Vec<u32>> {
        Ok(process::stop_leftovers(marks, grace).await)
    }

    async fn export_event_log(&self, side: Side, log: &str, into: &Path) -> PlatformResult<PathBuf> {
        if !self.inventory.event_logs.iter().any(|l| l == log) {
            return Err(PlatformError::refused(format!("the {} has no event log {log}", side_name(side))));
        }
        self.settle()?;
        let fail = |e: fsutil::FsError| self.copy_failed(into, &e);
        fsutil::create_dir_all_durable(into).map_err(at("create", into)).map_err(fail)?;
        debug_assert!(duet_compiler::name::problem(log).is_none(), "event log name {log:?} is a checked name");
        let dest = into.join(format!("{}-{log}.log", side_dir(side)));
        fsutil::copy_atomic(&self.log_file(side, log), &dest).map_err(at("write", &dest)).map_err(fail)?;
        Ok(dest)
    }

    async fn collect_dumps(&self, side: Side, into: &Path) -> PlatformResult<Vec<PathBuf>> {
        let Ok(entries) = std::fs::read_dir(self.dumps_dir(side)) else { return Ok(Vec::new()) };
        let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        let fail = |e: fsutil::FsError| self.copy_failed(into, &e);
        let mut out = Vec::new();
        for path in names {
            let dest = into.join(path.file_name().expect("a dump file has a name"));
            fsutil::create_dir_all_durable(into).map_err(at("create", into)).map_err(fail)?;
            fsutil::copy_atomic(&path, &dest).map_err(at("copy", &path)).map_err(fail)?;
            out.push(dest);
        }
        Ok(out)
    }

    async fn software(&self, side: Side) -> PlatformResult<Vec<Software>> {
        self.reachable(side)?;
        let mut state = self.snapshot();
        let list = state.software_mut().side_mut(side);
        Ok(list.iter().map(|(name, version)| Software { name: name.clone(), version: version.clone() }).collect())
    }

    async fn installed(&self, side: Side, software: &Software) -> PlatformResult<()> {
        self.reachable(side)?;
        self.change(|s| {
            // Duplexed, the two sides are one machine.
            let sides: &[Side] = if s.phase == Phase::Duplexed { &[Side::Production, Side::Upgrade] } else { &[side] };
            for &each in sides {
                s.software_mut().side_mut(each).insert(software.name.clone(), software.version.clone());
            }
            Ok(())
        })
    }

    async fn restart(&self, side: Side, progress: &mut dyn FnMut(Progress)) -> PlatformResult<()> {
        self.restart_upgrade_side(side, progress).await
    }

    fn host_path(&self, machine_path: &str) -> PathBuf {
        let mut out = self.dir.join("machine");
        for c in Path::new(machine_path).components() {
            if let Component::Normal(part) = c {
                out.push(part);
            }
        }
        out
    }
}
