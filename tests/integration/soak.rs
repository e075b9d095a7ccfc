//! The randomized crash soak (docs/soak.md): full cycles, and aborts from every state the state
//! model allows one from, each with random platform and action faults, while duet is `SIGKILL`ed
//! at random instants and driven on as an operator would (docs/runtime.md). Each scenario ends
//! as an uninterrupted run of the same scenario and faults does, or the soak fails.
//!
//! `DUET_SOAK_SECONDS` (default 50) bounds how long new scenarios are started; every scenario
//! kind runs at least once whatever the bound. `DUET_SOAK_SEED` sets the seed (printed), and
//! `DUET_SOAK_ONLY=N` runs scenario #N of that seed alone; `DUET_SOAK_KEEP=1` keeps the
//! temporary directory of a scenario that failed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::machine::{Final, INVENTORY, Machine, PLAN, state_of};

mod drive;
mod invariants;

use drive::{Drive, Kills, Tally};
use invariants::{Outcome, compare, outcome};

/// Scenarios are started until this many seconds have passed (`DUET_SOAK_SECONDS`).
const DEFAULT_SECONDS: u64 = 50;

/// Scenarios running at once (the machine the bounded soak is sized for has two cores).
const WORKERS: usize = 2;

/// Commands one phase may take before the scenario counts as stuck: kills, the operator's
/// reactions to faults, and a margin.
const MAX_COMMANDS: usize = 30;

/// Each command is killed (`SIGKILL`) with this probability (percent), at most [`KILLS_PER_PHASE`] times
/// per phase, so every phase ends.
const KILL_PERCENT: u64 = 70;
const KILLS_PER_PHASE: usize = 5;

/// Given to every command: a service fault that hangs fails its step this soon.
const SERVICE_TIMEOUT: &str = "300ms";

/// Actions that take a while (seconds), so that kills land inside them too: the one marked
/// `rerun: unsafe`, and a safe one on each side.
const SLOW: &[(&str, &str)] =
    &[("action:save@production", "0.1"), ("action:stop@upgrade", "0.05"), ("action:adv-late@production", "0.05")];

/// The rig plan's actions marked `rerun: unsafe`.
const UNSAFE: &[&str] = &["save"];

/// A scenario stops being started after this many failed.
const MAX_FAILURES: usize = 5;

// ---------------------------------------------------------------------------------------------
// A seeded PRNG (splitmix64): a scenario's seed decides its faults, kills and delays.

#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    /// Scenario `n` of the soak seeded with `seed`.
    fn scenario(seed: u64, n: usize) -> Self {
        let mut mix = Self(seed ^ (n as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        Self(mix.next())
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("below n")
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// Uniform in [0, 1).
    #[expect(clippy::cast_precision_loss, reason = "53 random bits")]
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios: what an operator sets out to do, in phases.

#[derive(Clone, Copy, Debug)]
enum Target {
    /// A session in this state; Broken at this step, with this in its message.
    State { upgrade: &'static str, operational: &'static str, broken: Option<(&'static str, &'static str)> },
    /// Back in Idle, the session finished and moved to `history/`.
    Finished,
}

struct Phase {
    /// `PLAN` stands for the rig's plan.
    command: &'static [&'static str],
    target: Target,
}

struct Scenario {
    name: &'static str,
    /// A `rec` fail marker, never healed: the failure that brings the session where an abort
    /// starts (the list of run.rs's test of the abort from each allowed state).
    fail: Option<&'static str>,
    /// A partner state of the Upgrade Side while split (an inventory fault).
    partner: Option<&'static str>,
    /// Added to the rig's plan after the unattended tasks (empty: the rig's plan alone).
    plan: &'static str,
    phases: &'static [Phase],
}

impl Scenario {
    /// The step the scenario ends Broken at, and in which state.
    fn designed(&self) -> Option<(&'static str, &'static str)> {
        self.phases.iter().find_map(|p| match p.target {
            Target::State { upgrade, broken: Some((step, _)), .. } => Some((upgrade, step)),
            _ => None,
        })
    }

    fn broken_at(&self) -> Option<&'static str> {
        self.designed().map(|(_, step)| step)
    }

    /// Whether action `step` (in `state`) runs concurrently with the step the scenario ends
    /// Broken at: the other side's actions in its request. Whether such a step started before
    /// the failure stopped the request is a race (a failed step lets running ones finish and
    /// starts nothing new), so it may have run once or not at all, in any run.
    fn races(&self, step: &str, state: &str) -> bool {
        let side = |step: &str| step.rsplit_once('@').map(|(_, side)| side.to_owned());
        self.designed().is_some_and(|(upgrade, broken)| state == upgrade && side(step) != side(broken))
    }

    /// Sets aside what [`Scenario::races`]: the problems if such a step ran or completed more
    /// than once.
    fn set_aside_races(&self, state: &mut Final) -> Vec<String> {
        let mut problems = Vec::new();
        state.runs.retain(|key, n| {
            let f: Vec<&str> = key.split('|').collect();
            let racing = self.races(f[0], f[1]);
            if racing && *n > 1 {
                problems.push(format!("{key} ran {n} times; it races with the failure, so once at most"));
            }
            !racing
        });
        state.completed.retain(|key, n| {
            let (request, step) = key.split_once(' ').unwrap_or_default();
            let racing = self.races(step, state_of(request));
            if racing && *n > 1 {
                problems.push(format!("{key} completed {n} times"));
            }
            !racing
        });
        problems
    }
}

const fn ready(upgrade: &'static str) -> Target {
    Target::State { upgrade, operational: "Ready", broken: None }
}

const fn broken(upgrade: &'static str, step: &'static str, says: &'static str) -> Target {
    Target::State { upgrade, operational: "Broken", broken: Some((step, says)) }
}

const FAILED: &str = "Custom action failed with exit value 3";
const SPLIT: Phase = Phase { command: &["split", "PLAN"], target: ready("Split") };
const MERGE: Phase = Phase { command: &["merge"], target: ready("Merge") };
const ABORT: Phase = Phase { command: &["abort"], target: ready("Abort") };
const FINISH: Phase = Phase { command: &["finish"], target: Target::Finished };

/// An unattended upgrade (issue 12): the rig's tasks and check
/// ([`crate::machine::UNATTENDED_TASKS`], added to every plan that is not empty here), and duet
/// aborting by itself when a step fails.
const UNATTENDED: &str = "on_failure: abort\n";

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "full cycle",
        fail: None,
        partner: None,
        plan: "",
        phases: &[Phase { command: &["run", "PLAN"], target: Target::Finished }],
    },
    Scenario {
        name: "abort from Prepare Split, Broken",
        fail: Some("action:adv-late@production-PrepareSplit"),
        partner: None,
        plan: "",
        phases: &[
            Phase { command: &["split", "PLAN"], target: broken("PrepareSplit", "action:adv-late@production", FAILED) },
            ABORT,
            FINISH,
        ],
    },
    Scenario { name: "abort from Split, Ready", fail: None, partner: None, plan: "", phases: &[SPLIT, ABORT, FINISH] },
    Scenario {
        name: "abort from Split, Broken",
        fail: Some("action:stop@upgrade"),
        partner: None,
        plan: "",
        phases: &[
            Phase { command: &["split", "PLAN"], target: broken("Split", "action:stop@upgrade", FAILED) },
            ABORT,
            FINISH,
        ],
    },
    Scenario {
        name: "abort from Split, Broken: the Upgrade Side crashed",
        fail: None,
        partner: Some("State Sensitive Recovery: Reset"),
        plan: "",
        phases: &[
            Phase {
                command: &["split", "PLAN"],
                target: broken("Split", "action:stop-early@upgrade", "the Upgrade Side is not responding"),
            },
            ABORT,
            FINISH,
        ],
    },
    Scenario {
        name: "abort from Prepare Merge, Broken",
        fail: Some("action:adv-early@upgrade-PrepareMerge"),
        partner: None,
        plan: "",
        phases: &[
            SPLIT,
            Phase { command: &["merge"], target: broken("PrepareMerge", "action:adv-early@upgrade", FAILED) },
            ABORT,
            FINISH,
        ],
    },
    Scenario {
        name: "abort from Merge, Broken before the hardware merge",
        fail: Some("action:save@production"),
        partner: None,
        plan: "",
        phases: &[
            SPLIT,
            Phase { command: &["merge"], target: broken("Merge", "action:save@production", FAILED) },
            ABORT,
            FINISH,
        ],
    },
    Scenario {
        name: "abort from Merge, Ready",
        fail: None,
        partner: None,
        plan: "",
        phases: &[SPLIT, MERGE, ABORT, FINISH],
    },
    Scenario {
        name: "unattended: an upgrade task fails and duet aborts by itself",
        fail: Some("task:cu@upgrade"),
        partner: None,
        plan: UNATTENDED,
        phases: &[Phase { command: &["run", "PLAN"], target: ready("Abort") }, FINISH],
    },
];

// ---------------------------------------------------------------------------------------------
// Faults, and how an operator corrects each.

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Fault {
    /// A platform operation fails `times` times, then succeeds (the sim counts the failures in
    /// its state, across kills). The operator retries.
    Operation { op: String, times: u32 },
    /// A service fails (or hangs until `--service-timeout`) whenever it is stopped (or started).
    /// The operator stops (starts) it by hand, then retries.
    Service { service: String, on: String, hang: bool },
    /// An action exits 3 in one request (`rec`'s fail marker `STEP-REQUEST`) until the operator,
    /// having seen its step Broken, corrects the problem (removes the marker) and retries.
    Action { step: String, request: String },
}

impl Fault {
    fn kind(&self) -> &'static str {
        match self {
            Self::Operation { .. } => "a platform operation fails 1-2 times",
            Self::Service { hang: false, .. } => "a service fails to stop or start",
            Self::Service { hang: true, .. } => "a service hangs stopping or starting",
            Self::Action { .. } => "an action exits nonzero once",
        }
    }

    fn inventory_entry(&self) -> Option<String> {
        match self {
            Self::Operation { op, times } => Some(format!("{{op: {op}, fail_times: {times}}}")),
            Self::Service { service, on, hang } => Some(format!("{{service: {service}, on: {on}, hang: {hang}}}")),
            Self::Action { .. } => None,
        }
    }

    /// The `rec` fail marker of an action fault.
    fn marker(&self) -> Option<String> {
        match self {
            Self::Action { step, request } => Some(format!("{step}-{request}")),
            _ => None,
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Operation { op, times } => write!(f, "{op} fails {times}x"),
            Self::Service { service, on, hang } => {
                write!(f, "{service} {} on {on}", if *hang { "hangs" } else { "fails" })
            }
            Self::Action { step, request } => write!(f, "{step} ({request}) exits 3 once"),
        }
    }
}

/// The rig's inventory with short platform operations (so that kills land inside them too),
/// and the faults.
fn inventory(scenario: &Scenario, faults: &[Fault]) -> String {
    let instant = "durations: {split: 0s, merge: 0s, commit: 0s, abort: 0s, finish: 0s, resync: 0s}";
    assert!(INVENTORY.contains(instant), "the rig's inventory changed: {INVENTORY}");
    let mut text = INVENTORY
        .replace(instant, "durations: {split: 20ms, merge: 20ms, commit: 20ms, abort: 20ms, finish: 20ms, resync: 0s}");
    let mut entries: Vec<String> = faults.iter().filter_map(Fault::inventory_entry).collect();
    if let Some(state) = scenario.partner {
        entries.push(format!("{{side: upgrade, partner_state: \"{state}\"}}"));
    }
    if !entries.is_empty() {
        text.push_str("  faults:\n");
        for entry in entries {
            writeln!(text, "    - {entry}").expect("a String");
        }
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Uninterrupted references, one per scenario and fault set.

struct Reference {
    outcome: Outcome,
    /// The longest command of each phase.
    durations: Vec<Duration>,
}

type Cell = &'static OnceLock<Result<Reference, String>>;
type Cache = Mutex<HashMap<(usize, Vec<Fault>), Cell>>;

/// The references computed so far (each leaked: they are kept for the whole test).
fn references() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// The rig of a scenario with its faults, ready to drive.
fn rig(scenario: &Scenario, faults: &[Fault]) -> Machine {
    let plan = if scenario.plan.is_empty() {
        PLAN.to_owned()
    } else {
        format!("{PLAN}{}{}", crate::machine::UNATTENDED_TASKS, scenario.plan)
    };
    let m = Machine::with(&plan, &inventory(scenario, faults));
    if let Some(step) = scenario.fail {
        m.fail(step);
    }
    for marker in faults.iter().filter_map(Fault::marker) {
        m.fail(&marker);
    }
    for (step, seconds) in SLOW {
        m.write(&format!("rec/slow-{step}"), seconds);
    }
    m
}

/// The uninterrupted run of scenario `index` with `faults` (computed once).
fn reference(index: usize, faults: &[Fault]) -> Result<&'static Reference, String> {
    let cell: Cell = *references()
        .lock()
        .expect("cache")
        .entry((index, faults.to_vec()))
        .or_insert_with(|| Box::leak(Box::default()));
    let result = cell.get_or_init(|| {
        let scenario = &SCENARIOS[index];
        let m = rig(scenario, faults);
        let mut drive = Drive::new(&m, scenario, faults, None);
        drive.run().map_err(|e| format!("the uninterrupted run: {e}"))?;
        let outcome = outcome(&drive).map_err(|p| format!("the uninterrupted run: {}", p.join("\n  ")))?;
        let all = crate::machine::runs(&m);
        if outcome.unrecorded > 0 || all != outcome.state.runs {
            return Err(format!(
                "the uninterrupted run left action runs its journal does not record: {all:?} vs {:?}",
                outcome.state.runs
            ));
        }
        Ok(Reference { outcome, durations: drive.durations })
    });
    result.as_ref().map_err(Clone::clone)
}

/// The faults scenario `index` can meet, from its uninterrupted run without faults: the
/// platform operations it runs, the actions it runs (not its designed failure), the services
/// it stops and starts.
fn candidates(index: usize, base: &Reference) -> Vec<Fault> {
    let scenario = &SCENARIOS[index];
    // A plan that aborts by itself turns any fault into an abort, and which of the other side's
    // concurrent steps had run when the failure stopped the request is then a race no
    // reference can pin (there is no retry that runs them after all): kills only.
    if scenario.plan.contains("on_failure: abort") {
        return Vec::new();
    }
    let mut faults = BTreeSet::new();
    for key in base.outcome.state.completed.keys() {
        if let Some(op) = key.split_once(" platform:").map(|(_, op)| op).filter(|op| *op != "revert") {
            faults.insert(Fault::Operation { op: op.to_owned(), times: 1 });
        }
    }
    // Not the step the scenario ends Broken at, nor one that runs concurrently with it: which
    // of two concurrent failures the request is Broken at would be a race.
    for key in base.outcome.state.runs.keys() {
        let f: Vec<&str> = key.split('|').collect();
        if !scenario.races(f[0], f[1]) && scenario.broken_at() != Some(f[0]) {
            faults.insert(Fault::Action { step: f[0].to_owned(), request: f[2].to_owned() });
        }
    }
    for lines in base.outcome.logs.values() {
        for line in lines {
            let message = line.rsplit('\t').next().unwrap_or_default();
            let Some(rest) = message.strip_prefix("The ") else { continue };
            for (state, on) in
                [(" service entered the stopped state.", "stop"), (" service entered the running state.", "start")]
            {
                if let Some(service) = rest.strip_suffix(state) {
                    faults.insert(Fault::Service { service: service.to_owned(), on: on.to_owned(), hang: false });
                }
            }
        }
    }
    faults.into_iter().collect()
}

/// Up to one fault of each kind, at random.
fn choose(rng: &mut Rng, candidates: &[Fault]) -> Vec<Fault> {
    if candidates.is_empty() {
        return Vec::new();
    }
    let how_many = *rng.pick(&[0, 1, 1, 2, 2, 3]);
    let mut chosen: Vec<Fault> = Vec::new();
    for _ in 0..how_many {
        let mut fault = rng.pick(candidates).clone();
        match &mut fault {
            Fault::Operation { times, .. } => *times = 1 + u32::from(rng.chance(50)),
            Fault::Service { hang, .. } => *hang = rng.chance(30),
            Fault::Action { .. } => {}
        }
        if !chosen.iter().any(|c| std::mem::discriminant(c) == std::mem::discriminant(&fault)) {
            chosen.push(fault);
        }
    }
    chosen.sort();
    chosen
}

// ---------------------------------------------------------------------------------------------
// The soak.

#[derive(Default)]
struct Summary {
    scenarios: BTreeMap<&'static str, usize>,
    tally: Tally,
    injected: BTreeMap<&'static str, usize>,
    references: usize,
    unrecorded: usize,
    failures: Vec<String>,
}

impl Summary {
    fn add(&mut self, tally: &Tally) {
        let t = &mut self.tally;
        t.commands += tally.commands;
        t.kills += tally.kills;
        t.kill_points.extend(tally.kill_points.iter().cloned());
        t.kill_records.extend(tally.kill_records.iter().cloned());
        t.kills_in_action += tally.kills_in_action;
        t.resumes += tally.resumes;
        t.retries += tally.retries;
        t.unsafe_retries += tally.unsafe_retries;
        t.repairs += tally.repairs;
        t.again += tally.again;
        for (kind, n) in &tally.fired {
            *t.fired.entry(kind).or_default() += n;
        }
    }
}

/// One scenario: its reference, its faults, then the drive with kills, checked.
fn soak_one(seed: u64, n: usize, summary: &Mutex<Summary>) -> Result<(), String> {
    let mut rng = Rng::scenario(seed, n);
    let index = if n < SCENARIOS.len() { n } else { rng.below(SCENARIOS.len()) };
    let scenario = &SCENARIOS[index];
    let context = |faults: &[Fault], e: String| {
        let faults: Vec<String> = faults.iter().map(ToString::to_string).collect();
        format!("scenario #{n} ({}; faults: [{}]): {e}", scenario.name, faults.join(", "))
    };
    let base = reference(index, &[]).map_err(|e| context(&[], e))?;
    let faults = choose(&mut rng, &candidates(index, base));
    let want = reference(index, &faults).map_err(|e| context(&faults, e))?;
    let m = rig(scenario, &faults);
    let ranges = want.durations.iter().map(|d| d.mul_f64(1.2) + Duration::from_millis(5)).collect();
    let kills = Kills { rng, ranges, left: vec![KILLS_PER_PHASE; scenario.phases.len()] };
    let mut drive = Drive::new(&m, scenario, &faults, Some(kills));
    let problems = match drive.run() {
        Err(e) => vec![e],
        Ok(()) => match outcome(&drive) {
            Err(p) => p,
            Ok(got) => {
                let problems = compare(scenario, &want.outcome, &got, drive.tally.kills);
                summary.lock().expect("summary").unrecorded += got.unrecorded;
                problems
            }
        },
    };
    let (tally, trace) = (drive.tally, drive.trace);
    if std::env::var_os("DUET_SOAK_ONLY").is_some() {
        eprintln!("soak: scenario #{n} ({}; faults: {faults:?}):\n  {}", scenario.name, trace.join("\n  "));
    }
    {
        let mut s = summary.lock().expect("summary");
        *s.scenarios.entry(scenario.name).or_default() += 1;
        for fault in &faults {
            *s.injected.entry(fault.kind()).or_default() += 1;
        }
        s.add(&tally);
        s.references = references().lock().expect("cache").len();
    }
    if problems.is_empty() {
        return Ok(());
    }
    let faults: Vec<String> = faults.iter().map(ToString::to_string).collect();
    let kept = if std::env::var_os("DUET_SOAK_KEEP").is_some() {
        let Machine { dir } = m;
        format!("\n  kept in {}", dir.keep().display())
    } else {
        String::new()
    };
    Err(format!(
        "scenario #{n} ({}; faults: {}; {} kills): reproduce with \
         DUET_SOAK_SEED={seed} DUET_SOAK_ONLY={n}{kept}\n  {}\n  the commands:\n    {}",
        scenario.name,
        if faults.is_empty() { "none".to_owned() } else { faults.join(", ") },
        tally.kills,
        problems.join("\n  "),
        trace.join("\n    ")
    ))
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.parse().unwrap_or_else(|_| panic!("{name}={value} is not a number")))
}

fn print(summary: &Summary, seed: u64, elapsed: Duration) {
    let t = &summary.tally;
    let total: usize = summary.scenarios.values().sum();
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "soak: seed {seed}: {total} scenarios in {elapsed:.1?} ({WORKERS} at a time)");
    for (name, n) in &summary.scenarios {
        let _ = writeln!(w, "  {n:5}  {name}");
    }
    let _ = writeln!(
        w,
        "  duet killed (SIGKILL) {} times ({} with an action running) in {} commands; {} distinct kill points \
         (scenario, last journal record), {} distinct (scenario, journal length)",
        t.kills,
        t.kills_in_action,
        t.commands,
        t.kill_points.len(),
        t.kill_records.len()
    );
    let _ = writeln!(w, "  faults injected (how many made the operator react in the killed runs):");
    for (kind, n) in &summary.injected {
        let _ = writeln!(w, "  {n:5}  {kind} ({})", t.fired.get(kind).copied().unwrap_or(0));
    }
    let _ = writeln!(
        w,
        "  operator: {} resumes, {} retries ({} after resume refused an interrupted unsafe action), {} journal \
         repairs, {} commands given again",
        t.resumes, t.retries, t.unsafe_retries, t.repairs, t.again
    );
    let _ = writeln!(
        w,
        "  {} action runs the journal does not record (killed, or done while duet was dead: run again); \
         {} uninterrupted references",
        summary.unrecorded, summary.references
    );
    if std::env::var_os("DUET_SOAK_POINTS").is_some() {
        for p in &t.kill_points {
            let _ = writeln!(w, "    {p}");
        }
    }
    eprint!("{out}");
}

/// The soak: scenarios with random faults and random SIGKILLs, each checked against an
/// uninterrupted run of the same scenario and faults (see the module header and docs/soak.md).
#[test]
fn soak_random_kills_and_faults_end_as_the_uninterrupted_run() {
    let seed = env_number("DUET_SOAK_SEED").unwrap_or_else(|| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("time");
        now.as_secs() ^ (u64::from(now.subsec_nanos()) << 20) ^ u64::from(std::process::id())
    });
    for line in PLAN.lines().filter(|l| l.contains("rerun: unsafe")) {
        assert!(UNSAFE.iter().any(|a| line.contains(&format!("{{id: {a},"))), "UNSAFE lacks the action of {line}");
    }
    let only = env_number("DUET_SOAK_ONLY").map(|n| usize::try_from(n).expect("a scenario number"));
    let budget = Duration::from_secs(env_number("DUET_SOAK_SECONDS").unwrap_or(DEFAULT_SECONDS));
    eprintln!("soak: seed {seed} (DUET_SOAK_SEED={seed} repeats it), {budget:?} of scenarios");
    let started = Instant::now();
    let next = AtomicUsize::new(only.unwrap_or(0));
    let summary = Mutex::new(Summary::default());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let done = match only {
                        Some(only) => n != only,
                        None => {
                            (n >= SCENARIOS.len() && started.elapsed() >= budget)
                                || summary.lock().expect("summary").failures.len() >= MAX_FAILURES
                        }
                    };
                    if done {
                        break;
                    }
                    if let Err(e) = soak_one(seed, n, &summary) {
                        eprintln!("soak: {e}");
                        summary.lock().expect("summary").failures.push(e);
                    }
                }
            });
        }
    });
    let summary = summary.into_inner().expect("summary");
    print(&summary, seed, started.elapsed());
    assert!(
        summary.failures.is_empty(),
        "{} scenarios went wrong:\n\n{}",
        summary.failures.len(),
        summary.failures.join("\n\n")
    );
    let ran: usize = summary.scenarios.values().sum();
    assert!(ran >= only.map_or(SCENARIOS.len(), |_| 1), "{ran} scenarios ran");
    // One scenario alone (`DUET_SOAK_ONLY`) may be one that kills nothing.
    assert!(only.is_some() || summary.tally.kills > 0, "no kill landed on a running duet in {ran} scenarios");
}
