//! The Linux platform `linux`: application trees on an ordinary Linux host (docs/linux.md).
//!
//! ```text
//! STATE_DIR/linux/
//!   machine.yaml            the machine file the platform was built from (plans bind to it)
//!   state.json              phase, the operation in progress, each tree's generations, the
//!                           services of each side, the Upgrade Side's holder
//!   manifest/TREE.json      the Production tree at the split (the drift check)
//!   sides/SIDE/NAME.log     output of the services duet started
//!   upgrade-side.log        what the Upgrade Side's holder said
//! ```
//!
//! **Ground truth and intent.** Where each tree's symlink points is the truth; `state.json`
//! (replaced atomically) records what duet meant to do. Every operation first records itself
//! as `pending`, then does idempotent work, then writes its result and clears `pending` in one
//! replacement. While an operation is pending, [`Platform::observe`] reports the phase before it,
//! so the runtime repeats it after a crash and the repetition finishes it. Without one, the
//! symlinks decide between split and merged.
//!
//! **Sides.** Duplexed (no session) and aborted, the host is the Production Side. Split, the
//! Production Side is the host and the Upgrade Side is isolated ([`side`]). Merged and
//! committed, the host runs the new generation: it is the Upgrade Side.

pub(crate) mod inspect;
mod readiness;
mod service;
pub(crate) use service::queue_starts;
pub(crate) mod side;
pub(crate) mod tree;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use duet_compiler::compiled::{Side, Software};
use duet_compiler::diagnostic::Diagnostics;
use duet_compiler::inventory::linux::{LinuxMachine, LinuxService, LogSource};
use duet_compiler::inventory::{Inventory, PartnerState, Startup};
use duet_compiler::report;
use duet_compiler::source::{MAX_FILE_BYTES, SourceMap};
use serde::{Deserialize, Serialize};

use super::{Finding, Observed, Operation, Phase, Platform, PlatformError, PlatformResult, Progress, ServiceState};
use crate::process::{self, Marks, ProcessOutcome, ProcessSpec, command};
use crate::store::fsutil::{self, at};
use service::{Place, Tracked};
use side::Holder;
use tree::Tree;

const STATE_FORMAT: &str = "duet-linux";
const STATE_VERSION: u32 = 1;
const MAX_STATE_BYTES: u64 = 16 << 20;
/// The hidden command that deletes given-up generations in the background.
pub(crate) const PURGE: &str = "__purge";

/// One tree's generations during a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Generations {
    production: u32,
    upgrade: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clone: Option<tree::Clone>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct LinuxState {
    format: String,
    version: u32,
    phase: Phase,
    /// The operation under way: recorded before its work, cleared with its result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<Operation>,
    /// Tree name -> its generations, from the split to the finish.
    #[serde(default)]
    trees: BTreeMap<String, Generations>,
    production: BTreeMap<String, Tracked>,
    upgrade: BTreeMap<String, Tracked>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    holder: Option<Holder>,
    /// When the split happened (Unix seconds): event logs are exported from then on.
    #[serde(default)]
    split_at: u64,
}

impl LinuxState {
    fn side(&self, side: Side) -> &BTreeMap<String, Tracked> {
        match side {
            Side::Production => &self.production,
            Side::Upgrade => &self.upgrade,
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut BTreeMap<String, Tracked> {
        match side {
            Side::Production => &mut self.production,
            Side::Upgrade => &mut self.upgrade,
        }
    }
}

pub(crate) struct Linux {
    dir: PathBuf,
    inventory: Inventory,
    inventory_file: PathBuf,
    state: Mutex<LinuxState>,
}

/// A failure of the trees' own files (a full disk, a permission): fix, then resume.
fn storage(message: String, help: &str) -> PlatformError {
    PlatformError::storage(message).help(help)
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Production => "Production Side",
        Side::Upgrade => "Upgrade Side",
    }
}

/// Whether a machine file is a Linux one (`platform: linux` at the top level).
pub(crate) fn is_linux_file(text: &[u8]) -> bool {
    String::from_utf8_lossy(text).lines().any(|l| {
        let l = l.split('#').next().unwrap_or("").trim_end();
        matches!(l, "platform: linux" | "platform: \"linux\"" | "platform: 'linux'")
    })
}

fn load_inventory(path: &Path) -> PlatformResult<Inventory> {
    let (mut sources, mut diags) = (SourceMap::default(), Diagnostics::default());
    let inventory = Inventory::load(path, &mut sources, &mut diags);
    match inventory {
        Some(inventory) if !diags.has_errors() && inventory.linux.is_some() => Ok(inventory),
        Some(_) if !diags.has_errors() => {
            Err(PlatformError::refused(format!("{}: not a linux machine file", path.display())))
        }
        _ => {
            let shown = report::render_human(&diags.into_sorted(), &sources, false);
            Err(PlatformError::refused(format!(
                "{}: the machine file is invalid\n{}",
                path.display(),
                shown.trim_end()
            ))
            .help("fix it (`duet check PLAN --inventory FILE` shows its problems too), then run the command again"))
        }
    }
}

impl Linux {
    pub(crate) fn state_file(root: &Path) -> PathBuf {
        root.join("linux/state.json")
    }

    /// The Linux machine of a state directory for a command that drives it; built (or rebuilt
    /// from another machine file) only when `may_build`.
    pub(crate) fn open(root: &Path, inventory: Option<&Path>, may_build: bool) -> PlatformResult<Self> {
        let dir = root.join("linux");
        let inventory_file = dir.join("machine.yaml");
        let state_file = Self::state_file(root);
        let given = match inventory {
            Some(path) => Some(fsutil::read_regular(path, MAX_FILE_BYTES).map_err(at("read", path)).map_err(|e| {
                PlatformError::refused(e.to_string()).help("give a machine file that exists (`--inventory FILE`)")
            })?),
            None => None,
        };
        if state_file.exists() {
            let current = fsutil::read_regular(&inventory_file, MAX_FILE_BYTES).map_err(at("read", &inventory_file))?;
            if given.as_ref().is_none_or(|g| *g == current) {
                return Self::reopen(dir, inventory_file, &state_file);
            }
            let state = Self::reopen(dir.clone(), inventory_file.clone(), &state_file)?.snapshot();
            if !may_build || state.phase != Phase::Duplexed {
                return Err(PlatformError::refused(format!(
                    "the Linux machine in {} was set up from another machine file than {}",
                    dir.display(),
                    inventory.map_or_else(String::new, |p| p.display().to_string())
                ))
                .help("omit `--inventory` to use the machine as it is; a new machine file is taken only with no session in progress"));
            }
        } else if !may_build {
            return Err(PlatformError::refused(format!(
                "the Linux machine's state {} is missing, and a session is in progress on it",
                state_file.display()
            ))
            .help("restore the state directory from a backup"));
        }
        let Some(path) = inventory else {
            return Err(PlatformError::refused("no machine file for the Linux platform")
                .help("give one with `--inventory FILE` (`duet inventory --platform linux` writes one)"));
        };
        let inventory = load_inventory(path)?;
        fsutil::create_dir_all_durable(&dir).map_err(at("create", &dir))?;
        fsutil::write_atomic(&inventory_file, given.as_deref().unwrap_or_default())
            .map_err(at("write", &inventory_file))?;
        let services: BTreeMap<String, Tracked> = linux(&inventory)
            .services
            .iter()
            .map(|s| (s.name.clone(), Tracked { startup: Some(s.startup), ..Tracked::default() }))
            .collect();
        let state = LinuxState {
            format: STATE_FORMAT.into(),
            version: STATE_VERSION,
            phase: Phase::Duplexed,
            pending: None,
            trees: BTreeMap::new(),
            production: services.clone(),
            upgrade: services,
            holder: None,
            split_at: 0,
        };
        let machine = Self { dir, inventory, inventory_file, state: Mutex::new(state.clone()) };
        machine.save(&state)?;
        Ok(machine)
    }

    fn reopen(dir: PathBuf, inventory_file: PathBuf, state_file: &Path) -> PlatformResult<Self> {
        let text = fsutil::read_regular_text(state_file, MAX_STATE_BYTES).map_err(at("read", state_file))?;
        let state: LinuxState = serde_json::from_str(&text).map_err(|e| {
            PlatformError::refused(format!("{}: the Linux machine's state cannot be read: {e}", state_file.display()))
                .help("restore the state directory from a backup")
        })?;
        if state.format != STATE_FORMAT || state.version != STATE_VERSION {
            return Err(PlatformError::refused(format!(
                "{}: format {} version {} is not one this duet reads ({STATE_FORMAT} {STATE_VERSION})",
                state_file.display(),
                state.format,
                state.version
            )));
        }
        let inventory = load_inventory(&inventory_file)?;
        Ok(Self { dir, inventory, inventory_file, state: Mutex::new(state) })
    }

    fn machine(&self) -> &LinuxMachine {
        linux(&self.inventory)
    }

    fn trees(&self) -> Vec<Tree> {
        self.machine().trees.iter().map(|t| Tree { name: t.name.clone(), path: PathBuf::from(&t.path) }).collect()
    }

    fn snapshot(&self) -> LinuxState {
        self.state.lock().expect("state lock").clone()
    }

    fn save(&self, state: &LinuxState) -> PlatformResult<()> {
        let path = self.dir.join("state.json");
        let mut text = serde_json::to_string_pretty(state).expect("the state serialises");
        text.push('\n');
        fsutil::write_atomic(&path, text.as_bytes()).map_err(at("write", &path))?;
        *self.state.lock().expect("state lock") = state.clone();
        Ok(())
    }

    fn change<T>(&self, f: impl FnOnce(&mut LinuxState) -> PlatformResult<T>) -> PlatformResult<T> {
        let mut state = self.snapshot();
        let out = f(&mut state)?;
        self.save(&state)?;
        Ok(out)
    }

    /// The phase as the machine is: a pending operation's phase before it; else, between split
    /// and merged, what the symlinks say.
    fn phase(&self, state: &LinuxState) -> Phase {
        if state.pending.is_some() || !matches!(state.phase, Phase::Split | Phase::Merged) || state.trees.is_empty() {
            return state.phase;
        }
        let at = |pick: fn(&Generations) -> u32| {
            self.trees()
                .iter()
                .all(|t| state.trees.get(&t.name).is_some_and(|g| t.current().ok().flatten() == Some(pick(g))))
        };
        match state.phase {
            Phase::Split if at(|g| g.upgrade) => Phase::Merged,
            Phase::Merged if at(|g| g.production) => Phase::Split,
            phase => phase,
        }
    }

    /// Where a side's processes run now.
    fn place(&self, state: &LinuxState, side: Side) -> PlatformResult<Place> {
        let phase = self.phase(state);
        match (phase, side) {
            (Phase::Split, Side::Upgrade) => match state.holder.filter(|h| h.alive()) {
                Some(holder) => Ok(Place::Isolated(holder)),
                None => Err(PlatformError::unreachable("the Upgrade Side is down (partner state: DC Off)")
                    .help("restart the Upgrade Side (a plan's `restart`), or abort")),
            },
            (Phase::Merged | Phase::Committed, Side::Production) => Err(PlatformError::refused(
                "the Production Side is not running: the applications run from the new generations since the merge",
            )
            .help("abort to go back to the Production Side")),
            _ => Ok(Place::Host),
        }
    }

    /// The record a side's service is kept in: duplexed and aborted, the two sides are one host.
    fn record_side(&self, state: &LinuxState, side: Side) -> Side {
        match self.phase(state) {
            Phase::Duplexed | Phase::Aborted => Side::Production,
            _ => side,
        }
    }

    fn service_def(&self, side: Side, name: &str) -> PlatformResult<&LinuxService> {
        self.machine().service(name).ok_or_else(|| {
            PlatformError::refused(format!("the {} has no service {name}", side_name(side)))
                .help("the plan names a service the machine file does not list: check the plan against it")
        })
    }

    fn service_log(&self, side: Side, name: &str) -> PlatformResult<PathBuf> {
        let dir = self.dir.join("sides").join(if side == Side::Production { "production" } else { "upgrade" });
        fsutil::create_dir_all_durable(&dir).map_err(at("create", &dir))?;
        Ok(dir.join(format!("{name}.log")))
    }

    fn running(&self, side: Side, name: &str) -> PlatformResult<Option<u32>> {
        let state = self.snapshot();
        let def = self.service_def(side, name)?;
        let place = self.place(&state, side)?;
        let tracked = state.side(self.record_side(&state, side)).get(name).cloned().unwrap_or_default();
        service::running_pid(def, &tracked, place)
    }

    /// The processes of the machine file's services on the host (duet's, or a pid file's): the
    /// busy check leaves them (and their process groups) out, since the merge stops them.
    fn service_pids(&self, state: &LinuxState) -> BTreeSet<u32> {
        let mut out: BTreeSet<u32> =
            state.production.values().chain(state.upgrade.values()).filter_map(|t| t.process.map(|(p, _)| p)).collect();
        for def in &self.machine().services {
            let tracked = state.production.get(&def.name).cloned().unwrap_or_default();
            out.extend(service::host_pids(def, &tracked).unwrap_or_default());
        }
        out
    }

    fn side_spec(&self, state: &LinuxState) -> side::SideSpec {
        let binds = self
            .trees()
            .iter()
            .filter_map(|t| state.trees.get(&t.name).map(|g| (t.generation(g.upgrade), t.generation(g.production))))
            .collect();
        let hide = self.machine().data.iter().map(|d| PathBuf::from(&d.path)).collect();
        let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        side::SideSpec { binds, hide, hostname: format!("{host}-upgrade") }
    }

    /// Brings the Upgrade Side of `state`'s trees up (a recorded holder that is up is kept; one a
    /// killed duet left unrecorded is stopped first). The caller records the holder.
    async fn start_side(&self, state: &LinuxState) -> PlatformResult<Holder> {
        if let Some(holder) = state.holder.filter(|h| h.alive()) {
            return Ok(holder);
        }
        for stale in side::holders_of(&self.dir) {
            stale.stop().await;
        }
        side::start(&self.side_spec(state), &self.dir, &self.dir.join("upgrade-side.log"))
            .map_err(|why| PlatformError::refused(why).help("`duet readiness` checks what the Upgrade Side needs"))
    }

    async fn stop_side(&self) -> PlatformResult<()> {
        if let Some(holder) = self.snapshot().holder {
            holder.stop().await;
        }
        self.change(|s| {
            s.holder = None;
            for t in s.upgrade.values_mut() {
                t.process = None;
                t.held = false;
            }
            Ok(())
        })
    }

    /// Starts the background deletion of the trash (the "resync").
    fn purge(&self) {
        let dirs: Vec<OsString> =
            self.trees().iter().map(|t| t.trash().into_os_string()).filter(|d| Path::new(d).exists()).collect();
        if dirs.is_empty() {
            return;
        }
        let exe = std::env::current_exe().map_or_else(|_| "duet".into(), PathBuf::into_os_string);
        let mut argv = vec![exe, PURGE.into()];
        argv.extend(dirs);
        if let Ok(pid) = command::spawn_detached(&argv, &self.dir.join("purge.log"), &[]) {
            let started = command::start_time(pid).unwrap_or_default();
            let _ = fsutil::write_atomic(&self.dir.join("purge.pid"), format!("{pid} {started}\n").as_bytes());
        }
    }

    /// Starts the background deletion again if it stopped before the trash was empty (a reboot,
    /// a kill): called when a command that drives the machine opens it.
    pub(crate) fn resume_purge(&self) {
        if !self.resyncing() {
            return;
        }
        let recorded = std::fs::read_to_string(self.dir.join("purge.pid")).unwrap_or_default();
        let mut fields = recorded.split_ascii_whitespace().map(str::parse::<u64>);
        if let (Some(Ok(pid)), Some(Ok(started))) = (fields.next(), fields.next()) {
            if u32::try_from(pid).is_ok_and(|pid| command::alive(pid, started)) {
                return;
            }
        }
        self.purge();
    }

    fn resyncing(&self) -> bool {
        self.trees().iter().any(|t| std::fs::read_dir(t.trash()).is_ok_and(|mut d| d.next().is_some()))
    }

    fn begin(&self, op: Operation) -> PlatformResult<LinuxState> {
        self.change(|s| {
            s.pending = Some(op);
            Ok(s.clone())
        })
    }

    /// The split: each tree's next generation (recorded with the intent, in one write), its
    /// manifest, the clone, then the Upgrade Side; the result in one more write.
    async fn split(&self, progress: &mut dyn FnMut(Progress)) -> PlatformResult<()> {
        let mut state = self.snapshot();
        state.pending = Some(Operation::Split);
        for t in self.trees() {
            let current =
                t.current().map_err(|e| PlatformError::refused(format!("cannot read tree {}: {e}", t.name)))?;
            let Some(current) = current else {
                return Err(PlatformError::refused(format!("tree {} ({}) is not adopted", t.name, t.path.display()))
                    .help("run `duet adopt --inventory FILE` once, with the application stopped"));
            };
            state.trees.entry(t.name.clone()).or_insert(Generations {
                production: current,
                upgrade: current + 1,
                clone: None,
            });
        }
        self.save(&state)?;
        for t in self.trees() {
            let generations = state.trees[&t.name];
            let manifest = inspect::manifest(&t.generation(generations.production));
            let file = self.dir.join("manifest").join(format!("{}.json", t.name));
            fsutil::create_dir_all_durable(file.parent().expect("a directory")).map_err(at("create", &file))?;
            fsutil::write_atomic(&file, &serde_json::to_vec(&manifest).expect("serialises"))
                .map_err(at("write", &file))?;
            progress(Progress { message: format!("making generation {} of tree {}", generations.upgrade, t.name) });
            let clock = Instant::now();
            let method = t
                .clone_generation(generations.production, generations.upgrade)
                .map_err(|why| storage(why, "free space on the tree's file system, then run the command again"))?;
            progress(Progress {
                message: format!(
                    "generation {} of tree {} made ({method}, {} ms)",
                    generations.upgrade,
                    t.name,
                    clock.elapsed().as_millis()
                ),
            });
            state.trees.get_mut(&t.name).expect("inserted").clone = Some(method);
        }
        let holder = self.start_side(&state).await?;
        state.holder = Some(holder);
        // The Upgrade Side boots as a copy of the Production Side: what runs there and starts
        // by itself starts on the Upgrade Side too (ExecuteSplit then stops it, as on the sim).
        let mut upgrade = BTreeMap::new();
        for def in &self.machine().services {
            let tracked = state.production.get(&def.name).cloned().unwrap_or_default();
            let runs = service::running_pid(def, &tracked, Place::Host)?.is_some();
            let process = if runs && tracked.startup == Some(Startup::Automatic) && service::boots_isolated(def) {
                service::start(def, Place::Isolated(holder), &self.service_log(Side::Upgrade, &def.name)?)?
            } else {
                None
            };
            let held = runs && tracked.startup == Some(Startup::Automatic) && !service::boots_isolated(def);
            upgrade.insert(def.name.clone(), Tracked { startup: tracked.startup, process, held });
        }
        state.upgrade = upgrade;
        state.phase = Phase::Split;
        state.pending = None;
        state.split_at = now_s();
        self.save(&state)
    }

    /// The merge: the Upgrade Side goes, each tree's symlink swaps to the new generation. No
    /// intent is recorded first (the shortest downtime): the symlinks say how far it got.
    async fn merge(&self) -> PlatformResult<()> {
        let state = self.snapshot();
        if let Some(holder) = state.holder {
            holder.stop().await;
        }
        for t in self.trees() {
            if let Some(g) = state.trees.get(&t.name) {
                t.point_at(g.upgrade)
                    .map_err(|e| storage(format!("cannot swap tree {}: {e}", t.name), "check the tree's directory"))?;
            }
        }
        self.change(|s| {
            s.holder = None;
            for t in s.upgrade.values_mut() {
                t.process = None;
                t.held = false;
            }
            s.phase = Phase::Merged;
            s.pending = None;
            Ok(())
        })
    }

    /// Back to the Production Side's generations: whatever runs of the services stops (the new
    /// generation's processes), the symlinks swap back, the Production Side's startup types are
    /// the service manager's again (the merge gave it the Upgrade Side's), and the automatic
    /// services start. Each part finds what is left to do, so a revert a kill interrupted
    /// completes when run again.
    async fn revert(&self) -> PlatformResult<()> {
        let state = self.begin(Operation::Revert)?;
        self.stop_side().await?;
        for def in &self.machine().services {
            let tracked = state.upgrade.get(&def.name).cloned().unwrap_or_default();
            if let Some(pid) = service::running_pid(def, &tracked, Place::Host)? {
                service::stop(def, pid, Place::Host).await?;
            }
            if let Some(startup) = state.production.get(&def.name).and_then(|t| t.startup) {
                service::apply_startup(def, startup)?;
            }
        }
        for t in self.trees() {
            if let Some(g) = state.trees.get(&t.name) {
                t.point_at(g.production)
                    .map_err(|e| storage(format!("cannot swap tree {}: {e}", t.name), "check the tree's directory"))?;
            }
        }
        let mut started = BTreeMap::new();
        for def in &self.machine().services {
            let tracked = state.production.get(&def.name).cloned().unwrap_or_default();
            if tracked.startup == Some(Startup::Automatic)
                && service::running_pid(def, &tracked, Place::Host)?.is_none()
            {
                started.insert(
                    def.name.clone(),
                    service::start(def, Place::Host, &self.service_log(Side::Production, &def.name)?)?,
                );
            }
        }
        self.change(|s| {
            for (name, process) in started {
                s.production.entry(name).or_default().process = process;
            }
            for t in s.upgrade.values_mut() {
                t.process = None;
                t.held = false;
            }
            s.phase = Phase::Split;
            s.pending = None;
            Ok(())
        })
    }

    async fn abort(&self) -> PlatformResult<()> {
        let state = self.begin(Operation::Abort)?;
        self.stop_side().await?;
        for t in self.trees() {
            if let Some(g) = state.trees.get(&t.name) {
                let fail = |e: std::io::Error| {
                    storage(
                        format!("cannot discard tree {}'s new generation: {e}", t.name),
                        "check the tree's directory",
                    )
                };
                t.point_at(g.production).map_err(fail)?;
                t.discard(g.upgrade).map_err(fail)?;
            }
        }
        self.change(|s| {
            s.upgrade = s.production.clone();
            s.phase = Phase::Aborted;
            s.pending = None;
            Ok(())
        })?;
        self.purge();
        Ok(())
    }

    fn commit(&self) -> PlatformResult<()> {
        let state = self.begin(Operation::Commit)?;
        for t in self.trees() {
            if let Some(g) = state.trees.get(&t.name) {
                t.discard(g.production).map_err(|e| {
                    storage(
                        format!("cannot retire tree {}'s old generation: {e}", t.name),
                        "check the tree's directory",
                    )
                })?;
            }
        }
        self.change(|s| {
            s.production = s.upgrade.clone();
            s.phase = Phase::Committed;
            s.pending = None;
            Ok(())
        })?;
        self.purge();
        Ok(())
    }

    fn apply_sync(&self, op: Operation, phase: Phase) -> Option<PlatformResult<()>> {
        let wrong = |needs: &str| {
            Err(PlatformError::refused(format!("cannot {op}: the machine is {phase:?}, and the {op} needs it {needs}"))
                .help("`duet status` shows the machine's state"))
        };
        Some(match (op, phase) {
            (Operation::Split, Phase::Split)
            | (Operation::Merge, Phase::Merged)
            | (Operation::Commit, Phase::Committed)
            | (Operation::Abort, Phase::Aborted)
            | (Operation::Finish, Phase::Duplexed) => Ok(()),
            (Operation::Split, _) => wrong("Fault Tolerant with no session"),
            (Operation::Commit, Phase::Merged) => self.commit(),
            (Operation::Commit, _) => wrong("merged"),
            (Operation::Revert, Phase::Merged | Phase::Split) | (Operation::Abort | Operation::Merge, Phase::Split) => {
                return None;
            }
            (Operation::Revert, _) => wrong("merged or split"),
            (Operation::Abort, Phase::Duplexed) => self.change(|s| {
                s.phase = Phase::Aborted;
                s.pending = None;
                Ok(())
            }),
            (Operation::Abort, Phase::Merged) => wrong("split (after a merge, revert first)"),
            (Operation::Merge | Operation::Abort, _) => wrong("split"),
            (Operation::Finish, Phase::Committed | Phase::Aborted) => self.change(|s| {
                s.upgrade = s.production.clone();
                s.trees.clear();
                s.phase = Phase::Duplexed;
                s.pending = None;
                Ok(())
            }),
            (Operation::Finish, _) => wrong("committed or aborted"),
        })
    }
}

fn linux(inventory: &Inventory) -> &LinuxMachine {
    static EMPTY: std::sync::OnceLock<LinuxMachine> = std::sync::OnceLock::new();
    inventory.linux.as_ref().unwrap_or_else(|| EMPTY.get_or_init(LinuxMachine::default))
}

/// The background deletion: `duet __purge DIR...` empties each directory (btrfs aware).
pub(crate) fn purge_main(args: &[OsString]) -> Option<u8> {
    if args.get(1).map(OsString::as_os_str) != Some(std::ffi::OsStr::new(PURGE)) {
        return None;
    }
    for dir in &args[2..] {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for entry in entries.flatten() {
            if let Err(e) = tree::remove_generation(&entry.path()) {
                eprintln!("duet {PURGE}: cannot remove {}: {e}", entry.path().display());
            }
        }
    }
    Some(0)
}

impl Platform for Linux {
    fn name(&self) -> &'static str {
        "linux"
    }

    fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    fn inventory_file(&self) -> &Path {
        &self.inventory_file
    }

    async fn readiness(&self) -> PlatformResult<Vec<Finding>> {
        let state = self.snapshot();
        let mut found = readiness::findings(self.machine(), &self.trees());
        let phase = self.phase(&state);
        if phase != Phase::Duplexed {
            found.push(readiness::stale_session(phase));
        }
        if self.resyncing() {
            found.push(readiness::resyncing());
        }
        Ok(found)
    }

    async fn merge_readiness(&self) -> PlatformResult<Vec<Finding>> {
        let state = self.snapshot();
        let mut found = Vec::new();
        let phase = self.phase(&state);
        if phase != Phase::Split {
            found.push(readiness::not_split(phase));
        }
        if state.holder.is_none_or(|h| !h.alive()) {
            found.push(readiness::side_down());
        }
        let groups = self.service_pids(&state);
        for t in self.trees() {
            let Some(g) = state.trees.get(&t.name) else { continue };
            let old = std::fs::canonicalize(t.generation(g.production)).unwrap_or_else(|_| t.generation(g.production));
            found.extend(inspect::users(&old, &groups).into_iter().map(|u| readiness::busy(&t, &u)));
            let file = self.dir.join("manifest").join(format!("{}.json", t.name));
            let before: inspect::Manifest =
                std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
            let changed = inspect::drift(&before, &inspect::manifest(&t.generation(g.production)));
            if !changed.is_empty() {
                found.push(readiness::drift(&t, &changed, self.machine().on_drift));
            }
        }
        Ok(found)
    }

    async fn operate(&self, op: Operation, progress: &mut dyn FnMut(Progress)) -> PlatformResult<()> {
        let state = self.snapshot();
        let phase = self.phase(&state);
        progress(Progress { message: format!("{op} in progress") });
        match (op, phase) {
            (Operation::Split, Phase::Duplexed) => self.split(progress).await?,
            (Operation::Merge, Phase::Split) => self.merge().await?,
            (Operation::Revert, Phase::Merged | Phase::Split) => self.revert().await?,
            (Operation::Abort, Phase::Split) => self.abort().await?,
            _ => self.apply_sync(op, phase).expect("the async operations are matched above")?,
        }
        progress(Progress { message: format!("{op} complete") });
        Ok(())
    }

    async fn observe(&self) -> PlatformResult<Observed> {
        let state = self.snapshot();
        let phase = self.phase(&state);
        let partner = match phase {
            Phase::Split if state.holder.is_none_or(|h| !h.alive()) => PartnerState::DcOff,
            _ => PartnerState::OsUp,
        };
        Ok(Observed { phase, resyncing: self.resyncing(), partner })
    }

    async fn service(&self, side: Side, name: &str) -> PlatformResult<ServiceState> {
        let running = self.running(side, name)?.is_some();
        let state = self.snapshot();
        let def = self.service_def(side, name)?;
        let startup =
            state.side(self.record_side(&state, side)).get(name).and_then(|t| t.startup).unwrap_or(def.startup);
        Ok(ServiceState { running, startup })
    }

    async fn set_startup(&self, side: Side, name: &str, startup: Startup) -> PlatformResult<()> {
        let state = self.snapshot();
        let def = self.service_def(side, name)?;
        let record = self.record_side(&state, side);
        // The host's service manager is changed only for the new generation running on it.
        if record == Side::Upgrade && matches!(self.place(&state, side)?, Place::Host) {
            service::apply_startup(def, startup)?;
        }
        self.change(|s| {
            s.side_mut(record).entry(name.to_owned()).or_default().startup = Some(startup);
            Ok(())
        })
    }

    async fn stop_service(&self, side: Side, name: &str) -> PlatformResult<()> {
        if self.place(&self.snapshot(), side).is_err() && side == Side::Production {
            return Ok(());
        }
        let Some(pid) = self.running(side, name)? else { return Ok(()) };
        let state = self.snapshot();
        service::stop(self.service_def(side, name)?, pid, self.place(&state, side)?).await?;
        let record = self.record_side(&state, side);
        self.change(|s| {
            let tracked = s.side_mut(record).entry(name.to_owned()).or_default();
            tracked.process = None;
            tracked.held = false;
            Ok(())
        })
    }

    async fn start_service(&self, side: Side, name: &str) -> PlatformResult<()> {
        if self.running(side, name)?.is_some() {
            return Ok(());
        }
        let state = self.snapshot();
        let def = self.service_def(side, name)?;
        let record = self.record_side(&state, side);
        let startup = state.side(record).get(name).and_then(|t| t.startup).unwrap_or(def.startup);
        if startup == Startup::Disabled {
            return Err(PlatformError::refused(format!(
                "{name} on the {}: The service cannot be started, either because it is disabled or because it has no enabled devices associated with it.",
                side_name(side)
            ))
            .help("set its startup type to automatic or manual"));
        }
        let process = service::start(def, self.place(&state, side)?, &self.service_log(record, name)?)?;
        self.change(|s| {
            s.side_mut(record).entry(name.to_owned()).or_default().process = process;
            Ok(())
        })
    }

    async fn run(&self, side: Side, spec: &ProcessSpec) -> PlatformResult<ProcessOutcome> {
        let state = self.snapshot();
        match self.place(&state, side)? {
            Place::Host => Ok(process::run(spec).await),
            Place::Isolated(holder) => {
                let argv = holder.enter_argv(&spec.cwd, &spec.program, &spec.args);
                let mut wrapped = spec.clone();
                wrapped.program = PathBuf::from(&argv[0]);
                wrapped.args = argv[1..].iter().map(|a| a.to_string_lossy().into_owned()).collect();
                Ok(process::run(&wrapped).await)
            }
        }
    }

    async fn leftovers(&self, _side: Side, marks: &Marks) -> PlatformResult<Vec<u32>> {
        Ok(process::leftovers(marks))
    }

    async fn stop_leftovers(&self, _side: Side, marks: &Marks, grace: Duration) -> PlatformResult<Vec<u32>> {
        Ok(process::stop_leftovers(marks, grace).await)
    }

    async fn export_event_log(&self, side: Side, log: &str, into: &Path) -> PlatformResult<PathBuf> {
        let def = self
            .machine()
            .event_logs
            .iter()
            .find(|l| l.name == log)
            .ok_or_else(|| PlatformError::refused(format!("the {} has no event log {log}", side_name(side))))?;
        let state = self.snapshot();
        let fail = |e: fsutil::FsError| storage(format!("cannot save event log {log}: {e}"), e.fix());
        fsutil::create_dir_all_durable(into).map_err(at("create", into)).map_err(fail)?;
        let dest = into.join(format!("{}-{log}.log", if side == Side::Production { "production" } else { "upgrade" }));
        match &def.source {
            LogSource::File(file) => {
                let from = match self.place(&state, side) {
                    Ok(Place::Isolated(holder)) => holder.view(Path::new(file)),
                    _ => PathBuf::from(file),
                };
                if from.exists() {
                    fsutil::copy_atomic(&from, &dest).map_err(at("write", &dest)).map_err(fail)?;
                } else {
                    let note = format!("(no file {file} on the {})\n", side_name(side));
                    fsutil::write_atomic(&dest, note.as_bytes()).map_err(at("write", &dest)).map_err(fail)?;
                }
            }
            LogSource::Unit(unit) => {
                let since =
                    format!("@{}", if state.split_at == 0 { now_s().saturating_sub(86_400) } else { state.split_at });
                let args: Vec<OsString> =
                    ["-u", unit, "-o", "json", "--no-pager", "--since", &since].iter().map(OsString::from).collect();
                let out = command::output("journalctl", &args).map_err(|e| {
                    PlatformError::refused(format!("cannot read the journal of {unit}: {e}"))
                        .help("the journal backend needs journalctl; name a log file in the machine file instead")
                })?;
                fsutil::write_atomic(&dest, out.stdout.as_bytes()).map_err(at("write", &dest)).map_err(fail)?;
            }
        }
        Ok(dest)
    }

    async fn collect_dumps(&self, _side: Side, into: &Path) -> PlatformResult<Vec<PathBuf>> {
        if !command::installed("coredumpctl") {
            return Ok(Vec::new());
        }
        let since = format!("@{}", self.snapshot().split_at);
        let args: Vec<OsString> = ["list", "--no-pager", "--since", &since].iter().map(OsString::from).collect();
        let Ok(out) = command::output("coredumpctl", &args) else { return Ok(Vec::new()) };
        if !out.success() || out.stdout.trim().is_empty() {
            return Ok(Vec::new());
        }
        let dest = into.join("coredumps.txt");
        let fail = |e: fsutil::FsError| storage(format!("cannot save the dump list: {e}"), e.fix());
        fsutil::create_dir_all_durable(into).map_err(at("create", into)).map_err(fail)?;
        fsutil::write_atomic(&dest, out.stdout.as_bytes()).map_err(at("write", &dest)).map_err(fail)?;
        Ok(vec![dest])
    }

    async fn software(&self, side: Side) -> PlatformResult<Vec<Software>> {
        let state = self.snapshot();
        let phase = self.phase(&state);
        let mut out = Vec::new();
        for sw in &self.machine().software {
            let Some(t) = self.trees().into_iter().find(|t| t.name == sw.tree) else { continue };
            let generation = match (state.trees.get(&t.name), side, phase) {
                (Some(g), Side::Upgrade, _) => Some(g.upgrade),
                (Some(g), Side::Production, Phase::Split | Phase::Merged) => Some(g.production),
                _ => t.current().ok().flatten(),
            };
            let Some(generation) = generation else { continue };
            let file = t.generation(generation).join(&sw.file);
            let text = fsutil::read_regular_text(&file, 4096).map_err(|e| {
                PlatformError::refused(format!(
                    "cannot read the version of {} on the {} ({}): {e}",
                    sw.name,
                    side_name(side),
                    file.display()
                ))
                .help("the machine file's `software` names a file each generation of the tree keeps")
            })?;
            out.push(Software { name: sw.name.clone(), version: text.lines().next().unwrap_or("").trim().to_owned() });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn restart(&self, side: Side, progress: &mut dyn FnMut(Progress)) -> PlatformResult<()> {
        let phase = self.phase(&self.snapshot());
        if side != Side::Upgrade || phase != Phase::Split {
            return Err(PlatformError::refused(format!(
                "cannot restart the {}: only the Upgrade Side is restarted, while the machine is split (it is {phase:?})",
                side_name(side)
            ))
            .help("`duet status` shows the machine's state"));
        }
        progress(Progress { message: "restart of the Upgrade Side in progress".into() });
        self.stop_side().await?;
        let holder = self.start_side(&self.snapshot()).await?;
        self.change(|s| {
            s.holder = Some(holder);
            Ok(())
        })?;
        let state = self.snapshot();
        let mut started = BTreeMap::new();
        for def in &self.machine().services {
            if state.upgrade.get(&def.name).and_then(|t| t.startup) == Some(Startup::Automatic) {
                let process = if service::boots_isolated(def) {
                    service::start(def, Place::Isolated(holder), &self.service_log(Side::Upgrade, &def.name)?)?
                } else {
                    None
                };
                started.insert(def.name.clone(), (process, !service::boots_isolated(def)));
            }
        }
        self.change(|s| {
            for (name, (process, held)) in started {
                let tracked = s.upgrade.entry(name).or_default();
                tracked.process = process;
                tracked.held = held;
            }
            Ok(())
        })?;
        progress(Progress { message: "restart of the Upgrade Side complete".into() });
        Ok(())
    }

    async fn http_get(
        &self,
        side: Side,
        url: &str,
        timeout: Duration,
    ) -> Result<super::HttpAnswer, super::HttpFailure> {
        match self.place(&self.snapshot(), side) {
            Ok(Place::Isolated(holder)) => http_inside(holder, url, timeout).await,
            _ => super::http::get(url, timeout).await,
        }
    }

    fn host_path(&self, machine_path: &str) -> PathBuf {
        PathBuf::from(machine_path)
    }
}

/// A GET from inside the isolated Upgrade Side (a helper joins its namespaces and makes it).
async fn http_inside(holder: Holder, url: &str, timeout: Duration) -> Result<super::HttpAnswer, super::HttpFailure> {
    use super::HttpFailure;
    let exe = std::env::current_exe().map_or_else(|_| "duet".into(), PathBuf::into_os_string);
    let argv: Vec<OsString> = vec![
        exe,
        side::HELPER.into(),
        "http".into(),
        holder.pid.to_string().into(),
        holder.started.to_string().into(),
        url.into(),
        timeout.as_millis().to_string().into(),
    ];
    let out = tokio::task::spawn_blocking(move || command::output_argv(&argv))
        .await
        .map_err(|e| HttpFailure::Failed(e.to_string()))?
        .map_err(|e| HttpFailure::Failed(e.to_string()))?;
    let line = out.stdout.lines().next().unwrap_or("");
    let json: serde_json::Value = serde_json::from_str(line).map_err(|_| HttpFailure::Failed(out.why()))?;
    if let Some(failure) = json.get("failure").and_then(|f| f.as_str()) {
        return Err(if failure == "timed out" {
            HttpFailure::TimedOut
        } else {
            HttpFailure::Failed(failure.to_owned())
        });
    }
    let status =
        json.get("status").and_then(serde_json::Value::as_u64).and_then(|s| u16::try_from(s).ok()).unwrap_or(0);
    let body = serde_json::from_value(json.get("body").cloned().unwrap_or_default()).unwrap_or_default();
    Ok(super::HttpAnswer { status, body })
}
