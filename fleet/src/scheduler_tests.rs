//! The scheduler against the in-memory coordination service: random fleets, random agent
//! outcomes, agents that die and come back, coordinators deposed mid-run. Every run is checked
//! against the rules from the journal and the service's lock record: stage order, at most
//! `serial` nodes in flight per stage, `min_up`, exclusive holders never overlap, no batch after
//! the budget is spent, `run_once` once per fleet, and a run without faults finishes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use indexmap::IndexMap;
use proptest::prelude::*;

use crate::coordination::{AgentSide, CoordError, Coordination, Memory, Report};
use crate::coordinator::{self, Executor};
use crate::journal::{Entry, Outcome, RunState};
use crate::plan::{Command, Exclusive, OnFailure, Place, Policy, Rerun, Step, Target};
use crate::spec::{FORMAT_VERSION, FleetSpec, GroupSpec, NodeSpec, StageSpec};

fn command() -> Command {
    Command { file: "x".into(), path: "x".into(), args: Vec::new(), timeout: Duration::from_secs(1), loc: None }
}

#[derive(Clone, Debug)]
struct StageShape {
    group: usize,
    serial: u32,
    after: Vec<usize>,
    exclusive: bool,
    run_once: bool,
}

#[derive(Clone, Debug)]
struct Shape {
    nodes: usize,
    /// For each group, which nodes belong to it (bit i = node i).
    groups: Vec<u32>,
    min_up: Vec<u32>,
    stages: Vec<StageShape>,
    policy: Policy,
}

fn shape() -> impl Strategy<Value = Shape> {
    (2usize..8, 1usize..4, 1usize..5).prop_flat_map(|(nodes, groups, stages)| {
        let mask = (1u32 << nodes) - 1;
        (
            proptest::collection::vec((1..=mask, 0u32..2), groups),
            proptest::collection::vec(
                (0..groups, 1u32..4, proptest::collection::vec(0usize..8, 0..3), any::<bool>(), any::<bool>()),
                stages,
            ),
            (0u32..3, 0u32..2, any::<bool>()),
        )
            .prop_map(move |(gs, ss, (max_failed, retries, halt))| Shape {
                nodes,
                groups: gs.iter().map(|g| g.0).collect(),
                min_up: gs.iter().map(|g| g.1.min(g.0.count_ones() - 1)).collect(),
                stages: ss
                    .into_iter()
                    .enumerate()
                    .map(|(i, (group, serial, after, exclusive, run_once))| StageShape {
                        group,
                        serial,
                        // Only earlier stages: a DAG, as the compiler guarantees.
                        after: after.into_iter().filter(|a| *a < i).collect(),
                        exclusive,
                        run_once,
                    })
                    .collect(),
                policy: Policy {
                    max_failed: max_failed.min(u32::try_from(nodes).unwrap_or(0)),
                    retries,
                    on_failure: if halt { OnFailure::Halt } else { OnFailure::Continue },
                },
            })
    })
}

fn node(i: usize) -> String {
    format!("n{i}")
}

fn spec_of(shape: &Shape) -> FleetSpec {
    let nodes: IndexMap<String, NodeSpec> = (0..shape.nodes)
        .map(|i| {
            let groups =
                (0..shape.groups.len()).filter(|g| shape.groups[*g] & (1 << i) != 0).map(|g| format!("g{g}")).collect();
            (node(i), NodeSpec { plan: "p.yaml".into(), inventory: None, groups })
        })
        .collect();
    let groups = (0..shape.groups.len())
        .map(|g| {
            let members = (0..shape.nodes).filter(|i| shape.groups[g] & (1 << i) != 0).map(node).collect();
            (format!("g{g}"), GroupSpec { members, min_up: shape.min_up[g] })
        })
        .collect();
    let step = |id: &str| Step { id: id.into(), command: command(), on: Place::Node };
    let stages = shape
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| StageSpec {
            id: format!("s{i}"),
            target: Target::Group(format!("g{}", s.group)),
            after: s.after.iter().map(|a| format!("s{a}")).collect(),
            serial: s.serial,
            run_once: if s.run_once { vec![step("once")] } else { Vec::new() },
            exclusive: s.exclusive.then(|| Exclusive { id: "db".into(), steps: vec![step("db")], rerun: Rerun::Safe }),
            failover: None,
            drain: None,
            undrain: None,
            upgrade: true,
            gates: Vec::new(),
            policy: shape.policy,
            source: format!("fleet.yaml:{i}"),
        })
        .collect();
    FleetSpec {
        format_version: FORMAT_VERSION,
        file: "fleet.yaml".into(),
        title: None,
        versions: None,
        nodes,
        groups,
        roles: IndexMap::new(),
        notify: vec![step("tell-users")],
        preserve: Vec::new(),
        preconditions: Vec::new(),
        stages,
        policy: shape.policy,
    }
}

/// Counts what the coordinator ran itself; every outcome is Ok.
#[derive(Default)]
struct Exec {
    run_once: Vec<(String, String)>,
}

impl Executor for Exec {
    fn roles(&mut self, _: &FleetSpec) -> Result<IndexMap<String, Vec<String>>, String> {
        Ok(IndexMap::new())
    }
    fn notify(&mut self, _: &FleetSpec, _: &str) -> Outcome {
        Outcome::Ok
    }
    fn precondition(&mut self, _: &FleetSpec, _: &str, _: &str) -> Outcome {
        Outcome::Ok
    }
    fn run_once(&mut self, _: &FleetSpec, stage: &str, step: &str, _: &str) -> Outcome {
        self.run_once.push((stage.into(), step.into()));
        Outcome::Ok
    }
    fn restore(&mut self, _: &FleetSpec, _: &str, _: &str) -> Outcome {
        Outcome::Ok
    }
}

/// One simulated agent event per tick, chosen by the test's random script.
#[derive(Clone, Copy, Debug)]
enum Tick {
    /// The agent of node (index mod nodes) finishes its work: ok, or failed.
    Finish(usize, bool),
    /// Its lease expires (killed); it comes back on a later `Revive`.
    Die(usize),
    Revive(usize),
    /// A new coordinator wins the election; the old one tries one write, which must fail.
    Depose,
    /// The operator resumes a paused run.
    Resume,
}

fn tick() -> impl Strategy<Value = Tick> {
    prop_oneof![
        6 => (0usize..8, prop::bool::weighted(0.85)).prop_map(|(n, ok)| Tick::Finish(n, ok)),
        1 => (0usize..8).prop_map(Tick::Die),
        2 => (0usize..8).prop_map(Tick::Revive),
        1 => Just(Tick::Depose),
        1 => Just(Tick::Resume),
    ]
}

struct Sim {
    spec: FleetSpec,
    world: Memory,
    exec: Exec,
    fence: crate::coordination::Fence,
    /// Agents that took their assignment (and the exclusive lock, if it is one).
    working: BTreeMap<String, crate::coordination::Assignment>,
    deposed_writes_refused: usize,
    retries: usize,
}

impl Sim {
    fn new(spec: FleetSpec) -> Self {
        let mut world = Memory::default();
        world.live = spec.nodes.keys().cloned().collect();
        let fence = world.elect();
        world.journal.push(Entry::Started { coordinator: "c1".into() });
        Self {
            spec,
            world,
            exec: Exec::default(),
            fence,
            working: BTreeMap::new(),
            deposed_writes_refused: 0,
            retries: 0,
        }
    }

    /// Live agents pick up new assignments; an exclusive one takes its lock first.
    fn agents_take_work(&mut self) {
        for node in self.world.assignments.keys().cloned().collect::<Vec<_>>() {
            if self.world.live.contains(&node) {
                self.take_work(&node);
            }
        }
    }

    /// The agent of `node` takes its assignment, unless it has work already (one piece at a
    /// time: it reports what it has before it takes on the next) or reported it.
    fn take_work(&mut self, node: &str) {
        let Some(a) = self.world.assignments.get(node).cloned() else { return };
        let reported =
            self.world.reports.iter().any(|r| r.node == node && r.stage == a.stage && r.attempt == a.attempt);
        if reported || self.working.contains_key(node) {
            return;
        }
        if a.exclusive && self.world.lock(&format!("exclusive/{}", a.stage), node).is_err() {
            return;
        }
        self.working.insert(node.to_owned(), a);
    }

    fn apply(&mut self, t: Tick) {
        let nodes = self.spec.nodes.len();
        match t {
            Tick::Finish(i, ok) => {
                let node = node(i % nodes);
                if !self.world.live.contains(&node) {
                    return;
                }
                if let Some(a) = self.working.remove(&node) {
                    let outcome = if ok { Outcome::Ok } else { Outcome::Failed("simulated failure".into()) };
                    self.world
                        .report(&Report { stage: a.stage.clone(), node: node.clone(), attempt: a.attempt, outcome })
                        .unwrap();
                    self.world.unlock(&format!("exclusive/{}", a.stage), &node).unwrap();
                }
            }
            Tick::Die(i) => {
                let node = node(i % nodes);
                self.world.expire(&node);
            }
            Tick::Revive(i) => {
                // A restarted agent takes on what was handed to it before it says it is live.
                let node = node(i % nodes);
                self.take_work(&node);
                self.world.live.insert(node);
            }
            Tick::Depose => {
                let old = self.fence;
                self.fence = self.world.elect();
                let refused = self.world.append(old, &[Entry::Finished]);
                assert_eq!(refused, Err(CoordError::Deposed(old.0)), "a deposed coordinator wrote to the journal");
                self.deposed_writes_refused += 1;
            }
            Tick::Resume => self.operator(),
        }
    }

    /// The operator: resumes a paused run, and retries an exclusive section whose holder
    /// failed for good (the stage waits for that; no other node takes the section over).
    fn operator(&mut self) {
        let state = RunState::fold(&self.world.journal);
        if state.paused.is_some() {
            self.world.append(self.fence, &[Entry::Resumed { by: "operator".into() }]).unwrap();
        }
        for (stage, run) in &state.stages {
            let Some(holder) = &run.exclusive_holder else { continue };
            let n = &run.nodes[holder];
            if !run.exclusive_done && n.failed.is_some() && !n.in_flight && !n.retry_allowed && self.retries < 3 {
                self.retries += 1;
                let retried = Entry::Retried {
                    stage: stage.clone(),
                    node: holder.clone(),
                    by: "operator".into(),
                    reason: "test".into(),
                };
                self.world.append(self.fence, &[retried]).unwrap();
            }
        }
    }

    fn step(&mut self) {
        coordinator::step(&self.spec, &mut self.world, self.fence, &mut self.exec).expect("the leader's step");
        self.agents_take_work();
    }

    fn done(&self) -> bool {
        let s = RunState::fold(&self.world.journal);
        s.finished || s.halted.is_some()
    }

    /// With no more faults: every agent alive, finishing its work, the operator resuming.
    fn settle(&mut self) {
        for i in 0..self.spec.nodes.len() {
            self.apply(Tick::Revive(i));
        }
        for _ in 0..2000 {
            if self.done() {
                return;
            }
            self.step();
            for i in 0..self.spec.nodes.len() {
                self.apply(Tick::Finish(i, true));
            }
            self.apply(Tick::Resume);
        }
        let state = RunState::fold(&self.world.journal);
        let decision = crate::scheduler::decide(&self.spec, &state, &self.world.live);
        panic!("the run did not end: {decision:#?}\n{:?}", self.world.journal);
    }
}

/// Replays the journal and checks every rule at every entry.
fn check_rules(sim: &Sim) {
    let spec = &sim.spec;
    let mut state = RunState::default();
    let mut run_once_started = BTreeSet::new();
    for (at, entry) in sim.world.journal.iter().enumerate() {
        let before = state.clone();
        state.apply(entry);
        match entry {
            Entry::Dispatched { stage, node, attempt, .. } => {
                let s = spec.stages.iter().find(|s| &s.id == stage).expect("a stage of the spec");
                for a in &s.after {
                    assert!(
                        before.stages.get(a).is_some_and(|r| r.done),
                        "#{at}: {stage} dispatched before {a} was done"
                    );
                }
                assert!(before.halted.is_none(), "#{at}: {node} dispatched after the run halted: {:?}", before.halted);
                assert!(before.paused.is_none(), "#{at}: {node} dispatched while paused");
                let run = &state.stages[stage];
                let in_flight = run.nodes.values().filter(|n| n.in_flight).count();
                assert!(
                    in_flight <= s.serial as usize,
                    "#{at}: {in_flight} nodes in flight in {stage}, serial {}: {:#?}",
                    s.serial,
                    sim.world.journal
                );
                if let Some(holder) = &run.exclusive_holder {
                    assert!(
                        before.stages.get(stage).is_some_and(|r| r.exclusive_done) || holder == node,
                        "#{at}: {node} dispatched in {stage} while {holder} holds its exclusive section"
                    );
                }
                assert!(
                    s.exclusive.is_none() || *attempt > 1 || run.exclusive_holder.is_some(),
                    "#{at}: {stage} has an exclusive section but {node} was dispatched without a holder"
                );
                for (g, group) in &spec.groups {
                    let flying = group
                        .members
                        .iter()
                        .filter(|m| state.stages.values().any(|r| r.nodes.get(*m).is_some_and(|n| n.in_flight)))
                        .count();
                    assert!(group.members.len() - flying >= group.min_up as usize, "#{at}: group {g} below its min_up");
                }
            }
            Entry::RunOnceStarted { stage, step, .. } => {
                assert!(
                    run_once_started.insert((stage.clone(), step.clone())),
                    "#{at}: run_once {stage}/{step} started twice"
                );
            }
            Entry::Finished => {
                for s in &spec.stages {
                    assert!(state.stages.get(&s.id).is_some_and(|r| r.done), "finished before stage {} was done", s.id);
                }
            }
            _ => {}
        }
    }
    assert!(sim.world.contended.is_empty(), "two holders of an exclusive section: {:?}", sim.world.contended);
    let once: BTreeSet<_> = sim.exec.run_once.iter().cloned().collect();
    assert_eq!(once.len(), sim.exec.run_once.len(), "a run_once step ran twice: {:?}", sim.exec.run_once);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_scheduler_keeps_every_rule_under_faults(shape in shape(), ticks in proptest::collection::vec(tick(), 0..200)) {
        let mut sim = Sim::new(spec_of(&shape));
        for t in ticks {
            if sim.done() {
                break;
            }
            sim.step();
            sim.apply(t);
        }
        sim.settle();
        check_rules(&sim);
    }

    #[test]
    fn a_run_without_faults_finishes_every_stage(shape in shape()) {
        let mut sim = Sim::new(spec_of(&shape));
        sim.settle();
        check_rules(&sim);
        let state = RunState::fold(&sim.world.journal);
        prop_assert!(state.finished, "{:#?}", state);
        for (stage, run) in &state.stages {
            prop_assert!(run.nodes.values().all(|n| n.done), "{stage}: {run:#?}");
        }
        // Every stage's nodes: its group's members, each upgraded once.
        let dispatched = sim.world.journal.iter().filter(|e| matches!(e, Entry::Dispatched { .. })).count();
        let expected: usize = sim.spec.stages.iter().map(|s| sim.spec.members(&s.target, &IndexMap::new()).len()).sum();
        prop_assert_eq!(dispatched, expected);
        prop_assert_eq!(sim.exec.run_once.len(), shape.stages.iter().filter(|s| s.run_once).count());
    }
}

/// The budget, exactly: with `max_failed: 1` the second node failing for good halts the run and
/// no batch starts after it.
#[test]
fn the_second_failure_spends_a_budget_of_one() {
    let shape = Shape {
        nodes: 4,
        groups: vec![0b1111],
        min_up: vec![0],
        stages: vec![StageShape { group: 0, serial: 1, after: Vec::new(), exclusive: false, run_once: false }],
        policy: Policy { max_failed: 1, retries: 0, on_failure: OnFailure::Continue },
    };
    let mut sim = Sim::new(spec_of(&shape));
    for i in 0..2 {
        sim.step(); // dispatch n{i}
        sim.step(); // nothing new: n{i} is in flight
        sim.apply(Tick::Finish(i, false));
    }
    for _ in 0..5 {
        sim.step();
    }
    let state = RunState::fold(&sim.world.journal);
    assert_eq!(state.halted.as_deref(), Some("2 node(s) failed (n0, n1), more than the budget of 1"));
    let dispatched: Vec<&str> = sim
        .world
        .journal
        .iter()
        .filter_map(|e| match e {
            Entry::Dispatched { node, .. } => Some(node.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(dispatched, ["n0", "n1"]);
    check_rules(&sim);
}

/// An exclusive section's holder that dies is not replaced: with `rerun: manual` the stage
/// waits for `retry`, and the same node runs it again.
#[test]
fn a_dead_exclusive_holder_is_not_replaced() {
    let shape = Shape {
        nodes: 3,
        groups: vec![0b111],
        min_up: vec![0],
        stages: vec![StageShape { group: 0, serial: 3, after: Vec::new(), exclusive: true, run_once: false }],
        policy: Policy { max_failed: 1, retries: 1, on_failure: OnFailure::Continue },
    };
    let mut spec = spec_of(&shape);
    spec.stages[0].exclusive.as_mut().expect("exclusive").rerun = Rerun::Manual;
    let mut sim = Sim::new(spec);
    sim.step(); // notify
    sim.step(); // dispatch the holder alone
    assert_eq!(sim.working.keys().collect::<Vec<_>>(), ["n0"]);
    sim.apply(Tick::Die(0));
    sim.working.clear();
    for _ in 0..3 {
        sim.step();
    }
    let decision = crate::scheduler::decide(&sim.spec, &RunState::fold(&sim.world.journal), &sim.world.live);
    assert!(decision.actions.is_empty(), "{decision:#?}");
    assert!(
        decision.waiting.iter().any(|w| w.contains("holder `n0` failed; `duet fleet retry s0 n0`")),
        "{decision:#?}"
    );
    sim.apply(Tick::Revive(0));
    sim.world
        .append(
            sim.fence,
            &[Entry::Retried { stage: "s0".into(), node: "n0".into(), by: "operator".into(), reason: "test".into() }],
        )
        .unwrap();
    sim.step();
    assert_eq!(sim.world.assignments["n0"].attempt, 2, "the same node resumes the section");
    assert!(!sim.world.assignments.contains_key("n1"));
    sim.settle();
    check_rules(&sim);
    assert!(RunState::fold(&sim.world.journal).finished);
}

#[test]
fn a_new_coordinator_hands_out_again_only_the_work_in_flight() {
    let mut memory = Memory::default();
    let old = memory.elect();
    let dispatched =
        |node: &str| Entry::Dispatched { stage: "s".into(), node: node.into(), attempt: 1, exclusive: false };
    let entries = [
        Entry::Started { coordinator: "c1".into() },
        dispatched("a"),
        dispatched("b"),
        Entry::Reported { stage: "s".into(), node: "b".into(), attempt: 1, outcome: Outcome::Ok },
    ];
    memory.append(old, &entries).unwrap();
    // The old coordinator died after journaling `a`'s dispatch, before handing it out.
    assert!(memory.assignments.is_empty());
    let new = memory.elect();
    assert_eq!(coordinator::take_over(&mut memory, old), Err(CoordError::Deposed(old.0)), "a deposed one cannot");
    assert_eq!(coordinator::take_over(&mut memory, new), Ok(1));
    assert_eq!(memory.assignments.keys().collect::<Vec<_>>(), ["a"], "b reported: not handed out again");
    assert_eq!(memory.assignments["a"].attempt, 1, "the same attempt, not a new one");
}

/// An unreachable node counts as failed, but with the budget spent by it the run waits for its
/// agent instead of halting: back, the agent reports the work it finished locally, and the run
/// goes on. A failure it reports then is a failure like any other.
#[test]
fn an_unreachable_node_over_the_budget_holds_the_run_until_its_agent_reports() {
    let shape = Shape {
        nodes: 2,
        groups: vec![0b11],
        min_up: vec![0],
        stages: vec![StageShape { group: 0, serial: 1, after: Vec::new(), exclusive: false, run_once: false }],
        policy: Policy { max_failed: 0, retries: 0, on_failure: OnFailure::Halt },
    };
    for late in [true, false] {
        let mut sim = Sim::new(spec_of(&shape));
        sim.step(); // notify
        sim.step(); // dispatch n0
        assert_eq!(sim.working.keys().collect::<Vec<_>>(), ["n0"]);
        sim.apply(Tick::Die(0));
        for _ in 0..4 {
            sim.step();
        }
        let state = RunState::fold(&sim.world.journal);
        assert!(state.stages["s0"].nodes["n0"].lost, "{state:#?}");
        assert_eq!(state.halted, None, "an unreachable node does not halt the run");
        assert_eq!(state.paused, None, "nor pause it");
        let decision = crate::scheduler::decide(&sim.spec, &state, &sim.world.live);
        assert!(decision.actions.is_empty(), "no new batch: {decision:#?}");
        assert!(decision.waiting.iter().any(|w| w.contains("n0 unreachable with work in flight")), "{decision:#?}");
        sim.apply(Tick::Revive(0));
        sim.apply(Tick::Finish(0, late));
        sim.step(); // the late report
        let state = RunState::fold(&sim.world.journal);
        assert!(!state.stages["s0"].nodes["n0"].lost, "{state:#?}");
        if late {
            sim.settle();
            check_rules(&sim);
            assert!(RunState::fold(&sim.world.journal).finished);
        } else {
            for _ in 0..3 {
                sim.step();
            }
            let halted = RunState::fold(&sim.world.journal).halted;
            assert_eq!(halted.as_deref(), Some("1 node(s) failed (n0), more than the budget of 0"));
        }
    }
}
