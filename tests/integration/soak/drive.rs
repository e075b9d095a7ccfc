//! Driving a scenario as an operator would (docs/runtime.md): each command perhaps killed
//! (`SIGKILL`) at a random instant, then `resume`, `retry` after correcting what an injected
//! fault broke, `resume --repair-journal` after a torn tail, or the phase's command again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{FAILED, Fault, KILL_PERCENT, MAX_COMMANDS, Phase, Rng, SERVICE_TIMEOUT, Scenario, Target};
use crate::machine::{Exit, Machine, read_journal, status_of, text};

/// What driving one scenario took.
#[derive(Clone, Debug, Default)]
pub(super) struct Tally {
    pub(super) commands: usize,
    pub(super) kills: usize,
    /// `scenario: last journal record` at each kill.
    pub(super) kill_points: BTreeSet<String>,
    /// `scenario: records in the journal` at each kill.
    pub(super) kill_records: BTreeSet<String>,
    /// Kills that came while an action the killed command had started ran (no end yet).
    pub(super) kills_in_action: usize,
    pub(super) resumes: usize,
    pub(super) retries: usize,
    /// Retries after resume refused to run an interrupted `rerun: unsafe` action again.
    pub(super) unsafe_retries: usize,
    pub(super) repairs: usize,
    /// A phase's command given again: killed before it had recorded anything.
    pub(super) again: usize,
    /// Faults that made the operator react, by kind.
    pub(super) fired: BTreeMap<&'static str, usize>,
}

/// The kills of a drive; none for the uninterrupted reference.
pub(super) struct Kills {
    pub(super) rng: Rng,
    /// The longest command of each phase in the reference, plus a margin: delays are drawn
    /// from the whole of it.
    pub(super) ranges: Vec<Duration>,
    pub(super) left: Vec<usize>,
}

pub(super) struct Drive<'a> {
    pub(super) m: &'a Machine,
    scenario: &'a Scenario,
    faults: &'a [Fault],
    kills: Option<Kills>,
    pub(super) tally: Tally,
    /// The longest command of each phase.
    pub(super) durations: Vec<Duration>,
    /// The Upgrade Side's event logs and dumps when the first `duet abort` was given.
    pub(super) before_abort: Option<BTreeMap<String, Vec<u8>>>,
    reacted: BTreeSet<Fault>,
    /// Each command and how it ended, for a failure's report.
    pub(super) trace: Vec<String>,
}

impl<'a> Drive<'a> {
    pub(super) fn new(m: &'a Machine, scenario: &'a Scenario, faults: &'a [Fault], kills: Option<Kills>) -> Self {
        Self {
            m,
            scenario,
            faults,
            kills,
            tally: Tally::default(),
            durations: Vec::new(),
            before_abort: None,
            reacted: BTreeSet::new(),
            trace: Vec::new(),
        }
    }

    pub(super) fn run(&mut self) -> Result<(), String> {
        for (i, phase) in self.scenario.phases.iter().enumerate() {
            if phase.command == ["abort"] {
                self.before_abort = Some(upgrade_side(self.m));
            }
            let start = self.status()?;
            let mut args: Vec<&'static str> = phase.command.to_vec();
            self.durations.push(Duration::ZERO);
            let mut reached = false;
            for _ in 0..MAX_COMMANDS {
                let took = self.invoke(i, &args)?;
                self.durations[i] = self.durations[i].max(took);
                let status = self.status()?;
                if self.reached(phase.target, &status) {
                    reached = true;
                    break;
                }
                args = self.react(&status, &start, phase)?;
            }
            if !reached {
                return Err(format!(
                    "`duet {}` did not reach {:?} within {MAX_COMMANDS} commands: {}",
                    phase.command.join(" "),
                    phase.target,
                    self.status()?
                ));
            }
        }
        Ok(())
    }

    fn status(&self) -> Result<Value, String> {
        status_of(self.m)
    }

    /// Whether a kill comes, and when.
    fn kill_delay(&mut self, phase: usize) -> Option<Duration> {
        let kills = self.kills.as_mut()?;
        if kills.left[phase] == 0 || !kills.rng.chance(KILL_PERCENT) {
            return None;
        }
        kills.left[phase] -= 1;
        Some(kills.ranges[phase].mul_f64(kills.rng.unit()))
    }

    /// `duet ARGS`, killed (`SIGKILL`) after a random delay if it is still running then. Fails on what
    /// no command may do whatever happened before it: panic, a usage error, another signal.
    fn invoke(&mut self, phase: usize, args: &[&str]) -> Result<Duration, String> {
        let plan = self.m.plan();
        let mut full: Vec<&str> = args.iter().map(|&a| if a == "PLAN" { plan.as_str() } else { a }).collect();
        full.extend(["-q", "--service-timeout", SERVICE_TIMEOUT]);
        let delay = self.kill_delay(phase);
        let runs_before = self.m.action_runs().len();
        let started = Instant::now();
        let mut child = self.m.duet(&full).spawn();
        let mut signalled = false;
        if let Some(delay) = delay {
            std::thread::sleep(delay);
            if child.try_wait().expect("wait for duet").is_none() {
                let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("kill duet");
                signalled = true;
            }
        }
        let out = child.wait_with_output().expect("wait for duet");
        let took = started.elapsed();
        let exit = Exit::new(out.status, &out.stdout, &out.stderr);
        self.tally.commands += 1;
        match args.first() {
            Some(&"resume") => self.tally.resumes += 1,
            Some(&"retry") => self.tally.retries += 1,
            _ => {}
        }
        let shown = || format!("`duet {}`: {}", full.join(" "), exit.show());
        if exit.says("panicked") {
            return Err(format!("duet panicked: {}", shown()));
        }
        let shown_args = args.join(" ");
        if exit.killed() && signalled {
            self.tally.kills += 1;
            let point = self.kill_point(runs_before);
            self.trace.push(format!("duet {shown_args}: killed after {took:.0?}, at {point}"));
        } else if !matches!(exit.code, Some(0 | 1)) {
            return Err(shown());
        } else {
            let code = exit.code.unwrap_or_default();
            self.trace.push(format!("duet {shown_args}: exit {code} after {took:.0?}"));
        }
        Ok(took)
    }

    /// Notes where the kill landed: the last record of the session's journal, and the actions
    /// the killed command had started (after the first `runs_before`) that had not exited.
    fn kill_point(&mut self, runs_before: usize) -> String {
        let name = self.scenario.name;
        let journal = self.m.state().join("session/journal");
        let (point, records) = if journal.exists() {
            match read_journal(&journal) {
                Ok(records) => {
                    let e = records.last().map_or(&Value::Null, |r| &r["e"]);
                    let what = [text(&e["type"]), text(&e["request"]), text(&e["step"])].join(" ");
                    (what.trim().to_owned(), records.len().to_string())
                }
                Err(_) => ("a torn journal tail".to_owned(), "torn".to_owned()),
            }
        } else {
            ("no session yet".to_owned(), "0".to_owned())
        };
        self.tally.kill_points.insert(format!("{name}: {point}"));
        self.tally.kill_records.insert(format!("{name}: {records}"));
        let running: Vec<String> =
            self.m.action_runs().into_iter().skip(runs_before).filter(|r| r.exit.is_none()).map(|r| r.step).collect();
        if running.is_empty() {
            format!("{point} (record {records})")
        } else {
            self.tally.kills_in_action += 1;
            format!("{point} (record {records}), inside {}", running.join(", "))
        }
    }

    fn reached(&self, target: Target, status: &Value) -> bool {
        match target {
            Target::State { upgrade, operational, broken } => {
                text(&status["upgrade"]) == upgrade
                    && text(&status["operational"]) == operational
                    && status["session"].is_string()
                    && status["journal_damage"].is_null()
                    && match broken {
                        None => status["broken"].is_null(),
                        Some((step, says)) => {
                            text(&status["broken"]["step"]) == step && text(&status["broken"]["message"]).contains(says)
                        }
                    }
            }
            Target::Finished => {
                text(&status["upgrade"]) == "Idle"
                    && status["session"].is_null()
                    && !self.m.state().join("session/journal").exists()
                    && std::fs::read_dir(self.m.state().join("history")).map_or(0, Iterator::count) == 1
            }
        }
    }

    /// What the operator does next (docs/runtime.md): the command to give.
    fn react(&mut self, status: &Value, start: &Value, phase: &Phase) -> Result<Vec<&'static str>, String> {
        let at = || format!("in {} ({})", text(&status["upgrade"]), text(&status["operational"]));
        if let Some(damage) = status["journal_damage"].as_str() {
            // A SIGKILL can cut a write that spans two pages: a torn tail, which resume repairs.
            if damage.contains("torn or corrupt tail") {
                self.tally.repairs += 1;
                return Ok(vec!["resume", "--repair-journal"]);
            }
            return Err(format!("{}: journal damage a kill cannot explain: {damage}", at()));
        }
        if status["session"].is_null() {
            if self.m.state().join("session/journal").exists() {
                // The session finished, and duet died before moving it to history/: resume does.
                return Ok(vec!["resume"]);
            }
            // No session in progress: the kill came before the session existed, or its
            // readiness check failed (nothing was split).
            if text(&status["operational"]) == "Broken" {
                self.correct(status)?;
            }
            self.tally.again += 1;
            return Ok(phase.command.to_vec());
        }
        if same_state(status, start) {
            // Killed before it recorded anything: the phase's command again.
            self.tally.again += 1;
            return Ok(phase.command.to_vec());
        }
        match text(&status["operational"]) {
            "Busy" if status["interrupted"] == true => Ok(vec!["resume"]),
            "Busy" => Err(format!("{}: Busy, not interrupted, and no process drives it: {status}", at())),
            "Broken" if text(&status["upgrade"]) == "Idle" => {
                // The readiness check failed, and duet died before setting it aside: the
                // phase's command sets it aside and starts again.
                self.correct(status)?;
                self.tally.again += 1;
                Ok(phase.command.to_vec())
            }
            // An unattended run killed between a failure and the abort its plan asks for.
            "Broken" if text(&status["next"]).contains("`duet resume` aborts") => Ok(vec!["resume"]),
            "Broken" => {
                if text(&status["broken"]["message"]).contains("rerun: unsafe") {
                    // The operator checked what the interrupted unsafe action did.
                    self.tally.unsafe_retries += 1;
                } else {
                    self.correct(status)?;
                }
                Ok(vec!["retry"])
            }
            _ => Ok(vec!["resume"]),
        }
    }

    /// Corrects the problem an injected fault made a step fail with, as the step's help says:
    /// heals the action, stops or starts the service by hand; a platform operation needs
    /// nothing (retry tries it again). Fails if no injected fault explains the failure.
    fn correct(&mut self, status: &Value) -> Result<(), String> {
        let (step, message) = (text(&status["broken"]["step"]), text(&status["broken"]["message"]));
        let request = text(&status["broken"]["request"]);
        let fault = self.faults.iter().find(|f| match f {
            Fault::Operation { op, .. } => step == format!("platform:{op}") && message.contains("(simulated fault"),
            Fault::Service { service, hang, .. } => {
                step.starts_with(&format!("service:{service}@"))
                    && message.contains(if *hang { "did not finish within" } else { "(simulated fault)" })
            }
            Fault::Action { step: s, .. } => s == step && message == FAILED,
        });
        let Some(fault) = fault.cloned() else {
            return Err(format!("{request} is Broken at {step} ({message}), and no injected fault explains it"));
        };
        match &fault {
            Fault::Operation { .. } => {}
            Fault::Service { service, on, .. } => {
                let side = step.rsplit_once('@').map_or("", |(_, side)| side);
                by_hand(self.m, side, service, on == "start")?;
            }
            Fault::Action { .. } => {
                let marker = self.m.rec().join(format!("fail-{}", fault.marker().expect("an action fault")));
                // Already removed if a kill cut the retry that followed short.
                let _ = std::fs::remove_file(marker);
            }
        }
        if self.reacted.insert(fault.clone()) {
            *self.tally.fired.entry(fault.kind()).or_default() += 1;
        }
        Ok(())
    }
}

/// Whether the session's state is what it was when the phase began (the phase's command was
/// killed before it recorded anything).
fn same_state(a: &Value, b: &Value) -> bool {
    ["upgrade", "operational", "session", "broken"].iter().all(|k| a[k] == b[k])
}

/// Stops or starts a service by hand on one side of the simulated machine, as the step's help
/// asks (`sim/state.json` is the machine's state; duet is not running).
fn by_hand(m: &Machine, side: &str, service: &str, running: bool) -> Result<(), String> {
    let path = m.state().join("sim/state.json");
    let read = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut state: Value = serde_json::from_str(&read).map_err(|e| format!("{}: {e}", path.display()))?;
    let entry = &mut state[side][service];
    if !entry.is_object() {
        return Err(format!("the sim has no service {service} on side {side}: {read}"));
    }
    entry["running"] = Value::Bool(running);
    let tmp = path.with_extension("by-hand");
    std::fs::write(&tmp, serde_json::to_string_pretty(&state).expect("JSON") + "\n").expect("write the sim state");
    std::fs::rename(&tmp, &path).expect("replace the sim state");
    Ok(())
}

/// The Upgrade Side's event logs (as an abort's evidence names them) and dump files.
fn upgrade_side(m: &Machine) -> BTreeMap<String, Vec<u8>> {
    let side = m.state().join("sim/sides/upgrade");
    let mut files = BTreeMap::new();
    for (dir, prefix) in [("logs", "upgrade-"), ("dumps", "")] {
        for entry in std::fs::read_dir(side.join(dir)).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            files.insert(format!("{prefix}{name}"), std::fs::read(entry.path()).expect("read"));
        }
    }
    files
}
