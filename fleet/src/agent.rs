//! `duet-fleet agent`: one per node. It registers on a lease, watches for its assignment, does
//! the node's work in a stage (the exclusive section under etcd's lock, drain, preserve,
//! failover, the node's upgrade by the runtime's `duet` with the node's own state directory and
//! simulator, gates, undrain), records each step and the outcome in its own journal
//! ([`LocalJournal`], durable) and only then reports it. Restarted, it first finishes (resumes)
//! the work the killed agent left, or took on too late, and reports it, before it says it is
//! live again: the coordinator sees the report no later than the agent, and never hands the
//! work out twice.
//! Its own steps (drain, failover, gates) are at-least-once like duet's actions: one that was
//! running when the agent died runs again; the node's duet steps run exactly once.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::coordination::{AgentSide, Assignment, CoordError, Coordination, Report};
use crate::etcd::Etcd;
use crate::exec::{self, Env};
use crate::journal::{Entry, Outcome};
use crate::local::LocalJournal;
use crate::node::NodeDuet;
use crate::plan::{Gate, Place, Probe, Rerun};
use crate::spec::{FleetSpec, StageSpec};

/// Seconds an agent's lease lives without a keep-alive: a killed agent drops out this fast.
pub const LEASE_TTL: i64 = 3;

/// How long before its lease may lapse an agent stops starting steps (longer than a step takes
/// to be recorded started).
const LEASE_MARGIN: Duration = Duration::from_millis(500);

pub struct Agent {
    pub spec: FleetSpec,
    pub node: String,
    pub state_dir: PathBuf,
    pub env: Env,
    /// The runtime's `duet` binary that upgrades the node.
    pub duet: PathBuf,
}

/// One step of a node's work in a stage, in the order they run.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Exclusive,
    Drain,
    Preserve,
    FailoverBefore,
    Upgrade,
    Gate(usize),
    Failover,
    Undrain,
}

impl Step {
    fn name(&self, stage: &StageSpec) -> String {
        match self {
            Self::Exclusive => format!("exclusive:{}", stage.exclusive.as_ref().map_or("", |x| x.id.as_str())),
            Self::Drain => "drain".into(),
            Self::Preserve => "preserve".into(),
            Self::FailoverBefore => "failover-before".into(),
            Self::Upgrade => "upgrade".into(),
            Self::Gate(i) => format!("gate:{}", stage.gates[*i].id),
            Self::Failover => "failover".into(),
            Self::Undrain => "undrain".into(),
        }
    }

    fn of(spec: &FleetSpec, stage: &StageSpec, a: &Assignment) -> Vec<Self> {
        let mut steps = Vec::new();
        if a.exclusive && stage.exclusive.is_some() {
            steps.push(Self::Exclusive);
        }
        if stage.drain.is_some() {
            steps.push(Self::Drain);
        }
        // Only where a `preserve` entry covers the node (roles are the coordinator's; entries
        // name groups or every node): elsewhere it would be a journal write for nothing.
        if spec.preserve.iter().any(|p| spec.members(&p.target, &indexmap::IndexMap::new()).contains(&a.node)) {
            steps.push(Self::Preserve);
        }
        if stage.failover.as_ref().is_some_and(|f| f.before) {
            steps.push(Self::FailoverBefore);
        }
        if stage.upgrade {
            steps.push(Self::Upgrade);
        }
        steps.extend((0..stage.gates.len()).map(Self::Gate));
        if stage.failover.as_ref().is_some_and(|f| !f.before) {
            steps.push(Self::Failover);
        }
        if stage.undrain.is_some() {
            steps.push(Self::Undrain);
        }
        steps
    }
}

impl Agent {
    /// Runs until the fleet's journal says the run finished (or etcd or the agent's own journal
    /// fails: then the agent stops, and a restart carries on).
    pub fn serve(&self, etcd: &mut Etcd) -> Result<(), String> {
        let err = |e: CoordError| format!("node `{}`: {e}", self.node);
        let mut journal = LocalJournal::open(&self.state_dir, &self.node)?;
        self.reachable(etcd, |etcd| etcd.grant_lease(LEASE_TTL).map(drop))?;
        if let Some(work) = journal.unfinished() {
            let a = journal.work()[work].assignment.clone();
            eprintln!(
                "agent {}: resuming stage `{}` attempt {} where the previous agent stopped",
                self.node, a.stage, a.attempt
            );
            self.carry_out(&mut journal, work, etcd)?;
        } else if let Some(a) = etcd.assignment(&self.node).map_err(err)?.filter(|a| !journal.has(a)) {
            // Handed to the previous agent process, which died before it took it on: done
            // before this one says it is live too, or the coordinator, seeing it back with the
            // work lost, would hand it out again as a new attempt.
            eprintln!(
                "agent {}: taking on stage `{}` attempt {}, handed out before it restarted",
                self.node, a.stage, a.attempt
            );
            let work = journal.accept(&a)?;
            self.carry_out(&mut journal, work, etcd)?;
        }
        for r in journal.reports() {
            self.reachable(etcd, |etcd| etcd.report(&r))?;
        }
        self.reachable(etcd, |etcd| etcd.register(&self.node))?;
        eprintln!("agent {}: registered; waiting for work", self.node);
        loop {
            if etcd.lease_expired() || !etcd.registered_on_lease() {
                // etcd could not be reached for longer than the lease: the coordinator counts
                // this agent's work in flight as lost; it registers again to be seen back (only
                // here, with its work reported: never with work of a lost attempt unreported).
                eprintln!("agent {}: registering again on a new lease (etcd was out of reach)", self.node);
                if etcd.lease_expired() {
                    self.reachable(etcd, |etcd| etcd.grant_lease(LEASE_TTL).map(drop))?;
                }
                self.reachable(etcd, |etcd| etcd.register(&self.node))?;
            }
            let Some(revision) = self.try_etcd(etcd.revision())? else { continue };
            if let Some(Some(a)) = self.try_etcd(etcd.assignment(&self.node))? {
                if !journal.has(&a) {
                    let work = journal.accept(&a)?;
                    let report = self.carry_out(&mut journal, work, etcd)?;
                    self.reachable(etcd, |etcd| etcd.report(&report))?;
                    continue;
                }
            }
            if self.try_etcd(etcd.journal())?.is_some_and(|j| j.contains(&Entry::Finished)) {
                eprintln!("agent {}: the fleet run finished", self.node);
                return Ok(());
            }
            // Its own assignment wakes it; the end of the run is seen within a second.
            self.try_etcd(etcd.wait_for_assignment(&self.node, revision, Duration::from_secs(1)))?;
        }
    }

    /// A call's value; when etcd is out of reach, None after a pause (the agent waits for it
    /// rather than stopping: its work is local, its reports are on disk).
    fn try_etcd<T>(&self, r: Result<T, CoordError>) -> Result<Option<T>, String> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(CoordError::Service(why)) => {
                eprintln!("agent {}: etcd is out of reach ({why}); trying again", self.node);
                std::thread::sleep(Duration::from_millis(500));
                Ok(None)
            }
            // Not a matter of reaching etcd (a key that is not the fleet's): stop and say so.
            Err(e) => Err(format!("node `{}`: {e}", self.node)),
        }
    }

    /// `f` until etcd answers it (a report the local journal holds must reach etcd).
    fn reachable<T>(
        &self,
        etcd: &mut Etcd,
        mut f: impl FnMut(&mut Etcd) -> Result<T, CoordError>,
    ) -> Result<T, String> {
        loop {
            if let Some(v) = self.try_etcd(f(etcd))? {
                return Ok(v);
            }
        }
    }

    /// Before a step starts: the agent's lease surely lives a while longer. When etcd has been
    /// out of reach for most of the lease (a partition), no step starts: the coordinator may
    /// count this work lost any moment, and what the agent does then must be what it does after
    /// it is back. It waits for etcd, takes a new lease (its registration comes after the
    /// report, in [`Agent::serve`]) and carries on where it stopped.
    fn hold_lease(&self, etcd: &mut Etcd) -> Result<(), String> {
        if etcd.lease_held_for(LEASE_MARGIN) {
            return Ok(());
        }
        eprintln!(
            "agent {}: etcd has been out of reach for most of the lease: no step starts until it is back",
            self.node
        );
        self.reachable(etcd, |etcd| etcd.grant_lease(LEASE_TTL).map(drop))?;
        eprintln!("agent {}: etcd is back; carrying on (registering again once the work is reported)", self.node);
        Ok(())
    }

    /// Does the steps of `work` not done yet, each recorded done before the next, then records
    /// the outcome. Returns the report to make (it is on disk already).
    fn carry_out(&self, journal: &mut LocalJournal, work: usize, etcd: &mut Etcd) -> Result<Report, String> {
        let a = journal.work()[work].assignment.clone();
        let outcome = match self.spec.stages.iter().find(|s| s.id == a.stage) {
            None => Outcome::Failed(format!(
                "node `{}`: stage `{}` is not in this agent's fleet file {}; start the agent with the coordinator's file",
                self.node, a.stage, self.spec.file
            )),
            Some(stage) => {
                eprintln!("agent {}: stage `{}` attempt {}", self.node, stage.id, a.attempt);
                match self.steps(stage, &a, journal, work, etcd) {
                    Ok(()) => Outcome::Ok,
                    Err(why) => Outcome::Failed(format!("node `{}`, stage `{}`: {why}", self.node, stage.id)),
                }
            }
        };
        if let Outcome::Failed(why) = &outcome {
            eprintln!("agent {}: {why}", self.node);
        }
        journal.finish(work, outcome.clone())?;
        Ok(Report { stage: a.stage, node: self.node.clone(), attempt: a.attempt, outcome })
    }

    fn steps(
        &self,
        stage: &StageSpec,
        a: &Assignment,
        journal: &mut LocalJournal,
        work: usize,
        etcd: &mut Etcd,
    ) -> Result<(), String> {
        for step in Step::of(&self.spec, stage, a) {
            let name = step.name(stage);
            if journal.work()[work].done.contains(&name) {
                continue;
            }
            self.hold_lease(etcd)?;
            match step {
                Step::Upgrade => {
                    let (from, just_prepared) = if let Some(from) = journal.work()[work].upgrade_from.clone() {
                        (from, false)
                    } else {
                        // Recorded before duet starts: after a restart, a session finished
                        // since is this upgrade's.
                        let from = self.duet().prepare()?;
                        journal.upgrade_started(work, from.clone())?;
                        (from, true)
                    };
                    self.duet().upgrade(&from, just_prepared)?;
                }
                Step::Exclusive => {
                    let x = stage.exclusive.as_ref().expect("an exclusive step has its section");
                    let interrupted = journal.work()[work].running.as_deref() == Some(name.as_str());
                    if interrupted && x.rerun == Rerun::Manual {
                        return Err(format!(
                            "the exclusive section `{}` was interrupted (the agent stopped while it ran) and is `rerun: manual`: check what it did, then `duet-fleet retry {} {} --reason ...`",
                            x.id, stage.id, self.node
                        ));
                    }
                    journal.step_started(work, &name)?;
                    self.step(stage, &step, etcd).map_err(|e| format!("step `{name}`: {e}"))?;
                }
                step => self.step(stage, &step, etcd).map_err(|e| format!("step `{name}`: {e}"))?,
            }
            journal.step_done(work, &name)?;
        }
        Ok(())
    }

    fn step(&self, stage: &StageSpec, step: &Step, etcd: &mut Etcd) -> Result<(), String> {
        let node = self.node.as_str();
        match step {
            Step::Exclusive => {
                let Some(x) = &stage.exclusive else { return Ok(()) };
                let lock = format!("exclusive/{}/{}", stage.id, x.id);
                lock_waiting(etcd, &lock, node)?;
                let ran = x
                    .steps
                    .iter()
                    .try_for_each(|s| exec::run(&s.command, node, &self.env).map_err(|e| format!("`{}`: {e}", s.id)));
                etcd.unlock(&lock, node).map_err(|e| e.to_string())?;
                ran
            }
            Step::Drain => stage.drain.as_ref().map_or(Ok(()), |c| exec::run(c, node, &self.env)),
            Step::Undrain => stage.undrain.as_ref().map_or(Ok(()), |c| exec::run(c, node, &self.env)),
            Step::Preserve => self.preserve(stage),
            Step::FailoverBefore | Step::Failover => stage.failover.as_ref().map_or(Ok(()), |f| self.failover(f)),
            Step::Gate(i) => self.gate(&stage.gates[*i]),
            Step::Upgrade => unreachable!("the upgrade is the node's duet"),
        }
    }

    fn duet(&self) -> NodeDuet<'_> {
        let node = &self.spec.nodes[&self.node];
        NodeDuet {
            binary: &self.duet,
            node: &self.node,
            state_dir: self.state_dir.join("duet"),
            plan: &node.plan,
            inventory: node.inventory.as_deref(),
        }
    }

    fn failover(&self, f: &crate::plan::Failover) -> Result<(), String> {
        exec::run(&f.r#move, &self.node, &self.env).map_err(|e| format!("moving {} to this node: {e}", f.resource))?;
        exec::run(&f.check, &self.node, &self.env).map_err(|e| format!("{} did not move to this node: {e}", f.resource))
    }

    fn gate(&self, gate: &Gate) -> Result<(), String> {
        let on = if gate.on == Place::Coordinator { "coordinator" } else { self.node.as_str() };
        let mut last = String::new();
        for attempt in 0..gate.times.max(1) {
            if attempt > 0 {
                std::thread::sleep(gate.interval);
            }
            let r = match &gate.probe {
                Probe::Command(c) => exec::run(c, on, &self.env),
                Probe::Http { url, status, contains } => http_check(url, *status, contains.as_deref()),
            };
            match r {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(format!("gate `{}` failed: {last}", gate.id))
    }

    /// Copies each preserved path of the node's simulated root aside, before the upgrade (it may
    /// overwrite them: the operator merges them back by hand).
    fn preserve(&self, stage: &StageSpec) -> Result<(), String> {
        for p in &self.spec.preserve {
            // Roles are the coordinator's; preserve entries name groups (or every node).
            let members = self.spec.members(&p.target, &indexmap::IndexMap::new());
            if !members.contains(&self.node) {
                continue;
            }
            for path in &p.paths {
                let src = self.env.sim.join("nodes").join(&self.node).join(path.trim_start_matches('/'));
                if !src.exists() {
                    continue;
                }
                let dst = self.state_dir.join("preserved").join(&stage.id).join(path.trim_start_matches('/'));
                crate::copy_tree(&src, &dst).map_err(|e| format!("preserve {path}: {e}"))?;
                eprintln!(
                    "agent {}: preserved {} -> {} (the upgrade may overwrite it; merge it back by hand)",
                    self.node,
                    src.display(),
                    dst.display()
                );
            }
        }
        Ok(())
    }
}

/// Takes an exclusive section's lock, waiting while another holds it (the scheduler never lets
/// that happen; etcd's lock makes sure).
fn lock_waiting(etcd: &mut Etcd, lock: &str, node: &str) -> Result<(), String> {
    loop {
        match etcd.lock(lock, node) {
            Ok(()) => return Ok(()),
            Err(CoordError::Held { holder, .. }) => {
                eprintln!("agent {node}: waiting for lock `{lock}` held by {holder}");
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// GET `url` (ureq, no proxy from the environment: a gate checks the fleet's own services):
/// the status must match and the body (its first MiB) hold `contains`.
fn http_check(url: &str, status: u16, contains: Option<&str>) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| format!("GET {url}: {e}"))?;
    let got = response.status().as_u16();
    if got != status {
        return Err(format!("GET {url} answered {got}, expected {status}"));
    }
    if let Some(c) = contains {
        let mut body = String::new();
        response
            .into_body()
            .into_reader()
            .take(1 << 20)
            .read_to_string(&mut body)
            .map_err(|e| format!("GET {url}: reading the page failed: {e}"))?;
        if !body.contains(c) {
            return Err(format!("GET {url}: the page does not contain `{c}`"));
        }
    }
    Ok(())
}
