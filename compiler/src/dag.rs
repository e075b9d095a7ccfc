//! The step DAG of each request (execution model section 4), built from a resolved plan and
//! validated whole before anything may run it.

use std::collections::HashMap;

use indexmap::IndexMap;
use petgraph::algo::tarjan_scc;
use petgraph::graphmap::DiGraphMap;

use crate::compiled::{
    ActionEnv, EnvRequest, Gate, HwSplit, Op, Request, RequestName, Side, State, Step, StepKind, Unattended, step_id,
};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::plan::Control;
use crate::resolve::{Action, ResolvedPlan, Service};

/// The hardware split gives up after five minutes (guide, execution model section 4).
pub const SPLIT_TIMEOUT_MS: u64 = 5 * 60 * 1000;

/// Reports every cycle among services' `after` lists as its full path. Returns whether there
/// was none (the DAGs can only be built without).
pub fn check_service_cycles(services: &[Service], diags: &mut Diagnostics) -> bool {
    let mut graph: DiGraphMap<usize, ()> = DiGraphMap::new();
    for (i, after) in after_edges(services).into_iter().enumerate() {
        graph.add_node(i);
        for j in after {
            graph.add_edge(i, j, ());
        }
    }
    let mut clean = true;
    let mut sccs: Vec<Vec<usize>> = tarjan_scc(&graph).into_iter().filter(|c| c.len() > 1).collect();
    for scc in &mut sccs {
        scc.sort_unstable();
    }
    sccs.sort();
    for scc in sccs {
        clean = false;
        let path = cycle_path(&graph, &scc);
        let names: Vec<&str> = path.iter().map(|&i| services[i].name.as_str()).collect();
        let mut d = Diagnostic::error(
            "duet::service::cycle",
            format!("services are ordered in a cycle: {}", names.join(" after ")),
        )
        .help("services start in `after` order and stop in reverse; remove one `after` entry on the cycle");
        for pair in path.windows(2) {
            let (from, to) = (&services[pair[0]], &services[pair[1]]);
            if let Some(entry) = from.after.iter().find(|a| a.value == to.name) {
                let text = format!("`{}` after `{}`", from.name, to.name);
                d = if d.primary.is_none() { d.at(entry.loc, text) } else { d.related(entry.loc, text) };
            }
        }
        diags.push(d);
    }
    clean
}

/// `edges[i]`: the services service `i` is `after`, as indexes into `services` (unknown names and
/// the service itself, both reported by `resolve`, left out).
fn after_edges(services: &[Service]) -> Vec<Vec<usize>> {
    let index: HashMap<&str, usize> = services.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    services
        .iter()
        .enumerate()
        .map(|(i, service)| {
            service.after.iter().filter_map(|dep| index.get(dep.value.as_str()).copied()).filter(|&j| j != i).collect()
        })
        .collect()
}

/// One direction through the services: what each waits for, and a stable order to build in.
struct ServiceOrder {
    deps: Vec<Vec<usize>>,
    order: Vec<usize>,
}

/// Both directions, computed once for every request: starting follows `after`, stopping
/// goes the other way.
struct ServiceOrders {
    start: ServiceOrder,
    stop: ServiceOrder,
}

impl ServiceOrders {
    fn new(services: &[Service]) -> Self {
        let start = after_edges(services);
        let mut stop: Vec<Vec<usize>> = vec![Vec::new(); services.len()];
        for (i, after) in start.iter().enumerate() {
            for &j in after {
                stop[j].push(i);
            }
        }
        let order = |deps: Vec<Vec<usize>>| ServiceOrder { order: stable_topo(&deps), deps };
        Self { start: order(start), stop: order(stop) }
    }
}

/// A shortest cycle through the first node of a strongly connected component, as a closed
/// path in edge order: `[a, b, ..., a]` where each node is `after` the next.
fn cycle_path(graph: &DiGraphMap<usize, ()>, scc: &[usize]) -> Vec<usize> {
    let start = scc[0];
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        let mut next: Vec<usize> = graph.neighbors(node).filter(|n| scc.contains(n)).collect();
        next.sort_unstable();
        for n in next {
            if n == start {
                let mut path = vec![node];
                while let Some(&p) = parent.get(path.last().expect("non-empty")) {
                    path.push(p);
                }
                path.reverse();
                path.push(start);
                return path;
            }
            if n != start && !parent.contains_key(&n) {
                parent.insert(n, node);
                queue.push_back(n);
            }
        }
    }
    vec![start, start]
}

/// Builds one request's steps, tracking the steps the next step must wait for.
struct Builder<'a> {
    request: RequestName,
    state: State,
    steps: Vec<Step>,
    frontier: Vec<usize>,
    actions: &'a [Action],
    services: &'a [Service],
    orders: &'a ServiceOrders,
}

impl<'a> Builder<'a> {
    fn new(request: RequestName, state: State, plan: &'a ResolvedPlan, orders: &'a ServiceOrders) -> Self {
        Self {
            request,
            state,
            steps: Vec::new(),
            frontier: Vec::new(),
            actions: &plan.actions,
            services: &plan.services,
            orders,
        }
    }

    fn push(&mut self, mut step: Step, deps: &[usize]) -> usize {
        step.after = deps.iter().map(|&d| self.steps[d].id.clone()).collect();
        self.steps.push(step);
        self.steps.len() - 1
    }

    fn step(id: String, kind: StepKind, side: Side, op: Op) -> Step {
        Step::new(id, kind, side, op)
    }

    /// A step after everything so far; it becomes the frontier.
    fn then(&mut self, step: Step) {
        let deps = std::mem::take(&mut self.frontier);
        let i = self.push(step, &deps);
        self.frontier = vec![i];
    }

    fn probe(&mut self, op: Op, name: &str) {
        self.then(Self::step(step_id::probe(name), StepKind::Probe, Side::Production, op));
    }

    fn platform(&mut self, op: Op, name: &str, timeout_ms: Option<u64>) {
        let mut step = Self::step(step_id::platform(name), StepKind::Platform, Side::Production, op);
        step.timeout_ms = timeout_ms;
        self.then(step);
    }

    /// actions(C): the enabled actions whose control is in C, by timing then resolved order,
    /// one after another on one side.
    fn actions(&mut self, controls: &[Control], side: Side, request: EnvRequest, hw_split: bool) {
        let mut chosen: Vec<&Action> = self.actions.iter().filter(|a| controls.contains(&a.control)).collect();
        chosen.sort_by_key(|a| a.timing);
        for action in chosen {
            let mut step = Self::step(step_id::action(&action.id, side), StepKind::Action, side, Op::Run);
            step.action = Some(action.id.clone());
            step.timeout_ms = Some(action.timeout_ms);
            step.env = Some(ActionEnv {
                side: side.into(),
                state: self.state,
                request,
                hw_split: if hw_split { HwSplit::Yes } else { HwSplit::No },
            });
            self.then(step);
        }
    }

    /// One step per service. Starting follows `after`; stopping (`reverse`) goes the other way.
    /// Services with no order between them may run concurrently.
    fn services(&mut self, side: Side, op: Op, reverse: bool) {
        if self.services.is_empty() {
            return;
        }
        let start = std::mem::take(&mut self.frontier);
        let ServiceOrder { deps, order } = if reverse { &self.orders.stop } else { &self.orders.start };
        let mut step_of: Vec<usize> = vec![usize::MAX; self.services.len()];
        let mut has_dependents = vec![false; self.services.len()];
        for &i in order {
            let service = &self.services[i];
            let mut step = Self::step(step_id::service(&service.name, side), StepKind::Service, side, op);
            step.service = Some(service.name.clone());
            // A service waiting for another already waits for what that one waits for.
            let mut step_deps = if deps[i].is_empty() { start.clone() } else { Vec::new() };
            for &d in &deps[i] {
                step_deps.push(step_of[d]);
                has_dependents[d] = true;
            }
            step_deps.sort_unstable();
            step_of[i] = self.push(step, &step_deps);
        }
        self.frontier = order.iter().filter(|&&i| !has_dependents[i]).map(|&i| step_of[i]).collect();
        self.frontier.sort_unstable();
    }

    /// Branches that start from the same frontier and may run concurrently (different sides).
    fn both_sides(&mut self, mut branch: impl FnMut(&mut Self, Side)) {
        let start = self.frontier.clone();
        let mut ends = Vec::new();
        for side in [Side::Production, Side::Upgrade] {
            self.frontier.clone_from(&start);
            branch(self, side);
            ends.extend(self.frontier.iter().copied());
        }
        ends.sort_unstable();
        ends.dedup();
        self.frontier = ends;
    }

    fn log_backup(&mut self, logs: &[String]) {
        if logs.is_empty() {
            return;
        }
        let mut step = Self::step("logs:backup".into(), StepKind::LogBackup, Side::Production, Op::Backup);
        step.logs = logs.to_vec();
        self.then(step);
    }

    /// The upgrade tasks, one after another on the Upgrade Side, each followed by the restart
    /// it asks for.
    fn tasks(&mut self, unattended: &Unattended) {
        for task in &unattended.tasks {
            let mut step = Self::step(step_id::task(&task.id), StepKind::Task, Side::Upgrade, Op::Install);
            step.item = Some(task.id.clone());
            step.timeout_ms = Some(task.timeout_ms);
            step.env = Some(ActionEnv {
                side: Side::Upgrade.into(),
                state: self.state,
                request: EnvRequest::Upgrade,
                hw_split: HwSplit::Yes,
            });
            self.then(step);
            if task.restart {
                let mut step = Self::step(step_id::restart(&task.id), StepKind::Platform, Side::Upgrade, Op::Restart);
                step.item = Some(task.id.clone());
                self.then(step);
            }
        }
    }

    /// The gate before `gate`: its checks in plan order, then its approvals, one chain after
    /// everything else of the request.
    fn gate(&mut self, unattended: &Unattended, gate: Gate) {
        for check in unattended.checks.iter().filter(|c| c.before == gate) {
            let mut step = Self::step(step_id::verify(&check.id), StepKind::Verify, Side::Upgrade, Op::Verify);
            step.item = Some(check.id.clone());
            step.timeout_ms = Some(check.timeout_ms);
            self.then(step);
        }
        for approval in unattended.approvals.iter().filter(|a| a.before == gate) {
            let mut step = Self::step(step_id::approve(&approval.id), StepKind::Approval, Side::Upgrade, Op::Approve);
            step.item = Some(approval.id.clone());
            self.then(step);
        }
    }

    fn finish(mut self) -> (RequestName, Request) {
        // Nine requests' steps are alive at once: drop the slack each Vec grew with.
        self.steps.shrink_to_fit();
        (self.request, Request { state: self.state, steps: self.steps })
    }
}

/// Kahn's algorithm picking the lowest declared index first: the declared order wherever the
/// dependencies allow it, so outputs read in the order the plan was written. (A cycle, which
/// the compiler refuses before this runs, would fall back to the declared order.)
fn stable_topo(deps: &[Vec<usize>]) -> Vec<usize> {
    let n = deps.len();
    let mut remaining: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&i| remaining[i] == 0).collect();
    let mut out = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        out.push(i);
        for &j in &dependents[i] {
            remaining[j] -= 1;
            if remaining[j] == 0 {
                ready.insert(j);
            }
        }
    }
    if out.len() == n { out } else { (0..n).collect() }
}

/// Every request's steps, `CheckReadiness` to `Finish`.
pub fn build_requests(plan: &ResolvedPlan) -> IndexMap<RequestName, Request> {
    use Control::{Advanced, Backup, Readiness, Start, Stop};
    use Side::{Production, Upgrade};
    let orders = ServiceOrders::new(&plan.services);
    let logs: Vec<String> = plan.logs.iter().map(|l| l.name.clone()).collect();
    let mut requests = IndexMap::new();

    let mut b = Builder::new(RequestName::CheckReadiness, State::Idle, plan, &orders);
    b.probe(Op::Readiness, "readiness");
    b.probe(Op::Binding, "binding");
    if plan.unattended.versions.is_some() {
        b.probe(Op::Versions, "versions");
    }
    b.actions(&[Readiness, Advanced], Production, EnvRequest::CheckReadiness, false);
    requests.extend([b.finish()]);

    let mut b = Builder::new(RequestName::PrepareSplit, State::PrepareSplit, plan, &orders);
    b.probe(Op::Readiness, "readiness");
    b.actions(&[Advanced], Production, EnvRequest::PrepareSplit, false);
    requests.extend([b.finish()]);

    let mut b = Builder::new(RequestName::ExecuteSplit, State::Split, plan, &orders);
    b.platform(Op::Split, "split", Some(SPLIT_TIMEOUT_MS));
    b.actions(&[Stop], Upgrade, EnvRequest::Stop, true);
    b.services(Upgrade, Op::DisableAndStop, true);
    b.both_sides(|b, side| b.actions(&[Advanced], side, EnvRequest::ExecuteSplit, true));
    requests.extend([b.finish()]);

    if !plan.unattended.tasks.is_empty() {
        let mut b = Builder::new(RequestName::Upgrade, State::Split, plan, &orders);
        b.tasks(&plan.unattended);
        requests.extend([b.finish()]);
    }

    let mut b = Builder::new(RequestName::PrepareMerge, State::PrepareMerge, plan, &orders);
    b.probe(Op::MergeReadiness, "merge-readiness");
    b.both_sides(|b, side| b.actions(&[Advanced], side, EnvRequest::PrepareMerge, true));
    b.gate(&plan.unattended, Gate::Merge);
    requests.extend([b.finish()]);

    let mut b = Builder::new(RequestName::ExecuteMerge, State::Merge, plan, &orders);
    b.actions(&[Stop], Production, EnvRequest::Stop, true);
    b.services(Production, Op::Stop, true);
    b.actions(&[Backup], Production, EnvRequest::Backup, true);
    b.log_backup(&logs);
    b.platform(Op::Merge, "merge", None);
    b.services(Upgrade, Op::RestoreAndStart, false);
    b.actions(&[Start], Upgrade, EnvRequest::Start, false);
    b.actions(&[Advanced], Upgrade, EnvRequest::ExecuteMerge, false);
    b.gate(&plan.unattended, Gate::Commit);
    requests.extend([b.finish()]);

    let mut b = Builder::new(RequestName::Commit, State::Commit, plan, &orders);
    b.platform(Op::Commit, "commit", None);
    b.actions(&[Advanced], Upgrade, EnvRequest::Commit, false);
    requests.extend([b.finish()]);

    let mut b = Builder::new(RequestName::AbortFromSplit, State::Abort, plan, &orders);
    b.platform(Op::Abort, "abort", None);
    b.actions(&[Advanced], Production, EnvRequest::Abort, false);
    requests.extend([b.finish()]);

    let mut b = Builder::new(RequestName::AbortFromMerge, State::Abort, plan, &orders);
    b.platform(Op::Revert, "revert", None);
    b.actions(&[Start], Production, EnvRequest::Start, false);
    b.platform(Op::Abort, "abort", None);
    b.actions(&[Advanced], Production, EnvRequest::Abort, false);
    requests.extend([b.finish()]);

    let mut b = Builder::new(RequestName::Finish, State::Idle, plan, &orders);
    b.platform(Op::Finish, "finish", None);
    requests.extend([b.finish()]);

    requests
}

/// Validates every request's DAG: unique ids, each dependency listed once and placed before its
/// dependent. That order is a topological order, so the DAG has no cycle. A failure here is a
/// compiler bug, reported as such rather than handed to the runtime.
pub fn validate(requests: &IndexMap<RequestName, Request>, diags: &mut Diagnostics) {
    for (name, request) in requests {
        let mut seen = std::collections::HashSet::new();
        let problem = request.steps.iter().find_map(|s| {
            if !seen.insert(s.id.as_str()) {
                return Some(format!("step id `{}` is used twice", s.id));
            }
            // A step after a large group of services waits for thousands of them: use a set.
            let mut listed = std::collections::HashSet::with_capacity(s.after.len());
            if let Some(d) = s.after.iter().find(|d| !listed.insert(d.as_str())) {
                return Some(format!("step `{}` lists `{d}` twice", s.id));
            }
            s.after
                .iter()
                .find(|d| !seen.contains(d.as_str()))
                .map(|d| format!("step `{}` depends on `{d}`, which does not come before it", s.id))
        });
        if let Some(problem) = problem {
            diags.push(
                Diagnostic::error(
                    "duet::internal::dag",
                    format!("request {name} compiled to an invalid DAG: {problem}"),
                )
                .help("this is a bug in duet; please report it with the plan"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::compiled::{CompiledPlan, RequestName};
    use crate::testing::{Tree, expect_at, expect_clean};

    const PLAN: &str = "version: 1
services:
  - DB
  - {name: App, after: [DB]}
  - {name: Web, after: [App]}
  - Cache
actions:
  - {id: late-adv, file: x.sh, control: advanced, timing: late}
  - {id: stop1, file: x.sh, control: stop}
  - {id: early-adv, file: x.sh, control: advanced, timing: early}
  - {id: check, file: x.sh, control: readiness}
  - {id: adv, file: x.sh, control: advanced}
  - {id: start1, file: x.sh, control: start}
  - {id: bak, file: x.sh, control: backup}
logs: {staging_dir: /data/logs, backup: [Application]}
";

    fn compiled() -> CompiledPlan {
        let t = Tree::new(&[("plan.yaml", PLAN), ("x.sh", "#!/bin/sh\n")]);
        let c = t.compile("plan.yaml");
        expect_clean(&c);
        c.compiled.unwrap()
    }

    fn ids(plan: &CompiledPlan, request: RequestName) -> Vec<String> {
        plan.requests[&request].steps.iter().map(|s| s.id.clone()).collect()
    }

    fn after(plan: &CompiledPlan, request: RequestName, id: &str) -> Vec<String> {
        plan.requests[&request]
            .steps
            .iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("no step {id}"))
            .after
            .clone()
    }

    #[test]
    fn every_request_runs_the_steps_of_section_4_in_order() {
        let p = compiled();
        assert_eq!(
            ids(&p, RequestName::CheckReadiness),
            [
                "probe:readiness",
                "probe:binding",
                "action:early-adv@production",
                "action:check@production",
                "action:adv@production",
                "action:late-adv@production"
            ]
        );
        assert_eq!(
            ids(&p, RequestName::PrepareSplit),
            ["probe:readiness", "action:early-adv@production", "action:adv@production", "action:late-adv@production"]
        );
        assert_eq!(
            ids(&p, RequestName::ExecuteSplit),
            [
                "platform:split",
                "action:stop1@upgrade",
                "service:Web@upgrade",
                "service:App@upgrade",
                "service:DB@upgrade",
                "service:Cache@upgrade",
                "action:early-adv@production",
                "action:adv@production",
                "action:late-adv@production",
                "action:early-adv@upgrade",
                "action:adv@upgrade",
                "action:late-adv@upgrade",
            ]
        );
        assert_eq!(ids(&p, RequestName::PrepareMerge)[0], "probe:merge-readiness");
        assert_eq!(
            ids(&p, RequestName::ExecuteMerge),
            [
                "action:stop1@production",
                "service:Web@production",
                "service:App@production",
                "service:DB@production",
                "service:Cache@production",
                "action:bak@production",
                "logs:backup",
                "platform:merge",
                "service:DB@upgrade",
                "service:App@upgrade",
                "service:Web@upgrade",
                "service:Cache@upgrade",
                "action:start1@upgrade",
                "action:early-adv@upgrade",
                "action:adv@upgrade",
                "action:late-adv@upgrade",
            ]
        );
        assert_eq!(
            ids(&p, RequestName::Commit),
            ["platform:commit", "action:early-adv@upgrade", "action:adv@upgrade", "action:late-adv@upgrade"]
        );
        assert_eq!(
            ids(&p, RequestName::AbortFromSplit),
            ["platform:abort", "action:early-adv@production", "action:adv@production", "action:late-adv@production"]
        );
        assert_eq!(
            ids(&p, RequestName::AbortFromMerge),
            [
                "platform:revert",
                "action:start1@production",
                "platform:abort",
                "action:early-adv@production",
                "action:adv@production",
                "action:late-adv@production"
            ]
        );
        assert_eq!(ids(&p, RequestName::Finish), ["platform:finish"]);
    }

    #[test]
    fn services_stop_in_reverse_and_start_in_order_and_unrelated_ones_run_concurrently() {
        let p = compiled();
        let split = RequestName::ExecuteSplit;
        assert_eq!(after(&p, split, "service:Web@upgrade"), ["action:stop1@upgrade"]);
        assert_eq!(after(&p, split, "service:App@upgrade"), ["service:Web@upgrade"]);
        assert_eq!(after(&p, split, "service:DB@upgrade"), ["service:App@upgrade"]);
        assert_eq!(
            after(&p, split, "service:Cache@upgrade"),
            ["action:stop1@upgrade"],
            "Cache has no order: it stops alongside Web"
        );
        assert_eq!(after(&p, split, "action:early-adv@production"), ["service:DB@upgrade", "service:Cache@upgrade"]);
        assert_eq!(
            after(&p, split, "action:early-adv@upgrade"),
            ["service:DB@upgrade", "service:Cache@upgrade"],
            "the two sides' advanced actions run concurrently"
        );
        let merge = RequestName::ExecuteMerge;
        assert_eq!(after(&p, merge, "service:DB@upgrade"), ["platform:merge"]);
        assert_eq!(after(&p, merge, "service:Web@upgrade"), ["service:App@upgrade"]);
        assert_eq!(after(&p, merge, "action:start1@upgrade"), ["service:Web@upgrade", "service:Cache@upgrade"]);
        assert_eq!(p.requests[&split].steps[0].timeout_ms, Some(300_000), "split gives up after 5 minutes");
        for request in p.requests.values() {
            assert!(petgraph::algo::toposort(&request.graph(), None).is_ok());
        }
    }

    #[test]
    fn actions_see_the_guides_environment() {
        let p = compiled();
        let env = |request, id: &str| {
            let step = p.requests[&request].steps.iter().find(|s| s.id == id).unwrap();
            let e = step.env.as_ref().unwrap();
            [e.side.as_str(), e.state.as_str(), e.request.as_str(), e.hw_split.as_str()].map(str::to_owned)
        };
        assert_eq!(
            env(RequestName::CheckReadiness, "action:check@production"),
            ["Production", "Idle", "CheckReadiness", "No"]
        );
        assert_eq!(env(RequestName::ExecuteSplit, "action:stop1@upgrade"), ["Upgrade", "Split", "Stop", "Yes"]);
        assert_eq!(
            env(RequestName::ExecuteSplit, "action:adv@production"),
            ["Production", "Split", "ExecuteSplit", "Yes"]
        );
        assert_eq!(
            env(RequestName::PrepareMerge, "action:adv@upgrade"),
            ["Upgrade", "PrepareMerge", "PrepareMerge", "Yes"]
        );
        assert_eq!(env(RequestName::ExecuteMerge, "action:stop1@production"), ["Production", "Merge", "Stop", "Yes"]);
        assert_eq!(env(RequestName::ExecuteMerge, "action:bak@production"), ["Production", "Merge", "Backup", "Yes"]);
        assert_eq!(env(RequestName::ExecuteMerge, "action:start1@upgrade"), ["Upgrade", "Merge", "Start", "No"]);
        assert_eq!(env(RequestName::Commit, "action:adv@upgrade"), ["Upgrade", "Commit", "Commit", "No"]);
        assert_eq!(
            env(RequestName::AbortFromMerge, "action:start1@production"),
            ["Production", "Abort", "Start", "No"]
        );
        assert_eq!(env(RequestName::AbortFromSplit, "action:adv@production"), ["Production", "Abort", "Abort", "No"]);
    }

    /// `PLAN` with every unattended key: their steps come after everything the plan had.
    fn unattended() -> CompiledPlan {
        let plan = format!(
            "{PLAN}{}",
            r#"versions: {software: App, from: "1.0", to: "2.0"}
upgrade:
  - {id: sp4, file: x.sh, timeout: 20m, restart: true}
  - {id: off, file: x.sh, restart: true, enabled: false}
  - {id: patch, file: x.sh}
verify:
  - {id: c-first, before: commit, run: {file: x.sh}}
  - {id: m-first, before: merge, timeout: 5s, run: {file: x.sh}}
  - {id: m-second, before: merge, http: {url: "http://127.0.0.1/"}}
  - {id: c-second, before: commit, version: {software: App, constraint: ">=2"}}
approve:
  - {id: go-commit, before: commit}
  - {id: go-merge, before: merge, expires: 1h}
"#
        );
        let t = Tree::new(&[("plan.yaml", &plan), ("x.sh", "#!/bin/sh\n")]);
        let c = t.compile("plan.yaml");
        expect_clean(&c);
        c.compiled.unwrap()
    }

    #[test]
    fn unattended_steps_run_where_issue_12_puts_them() {
        use crate::compiled::{ActionEnv, EnvRequest, HwSplit, Op, Side, State, StepKind};
        let (p, old) = (unattended(), compiled());
        let names: Vec<RequestName> = p.requests.keys().copied().collect();
        assert_eq!(names[2..5], [RequestName::ExecuteSplit, RequestName::Upgrade, RequestName::PrepareMerge]);
        assert!(!old.requests.contains_key(&RequestName::Upgrade), "no tasks, no Upgrade request");

        let upgrade = &p.requests[&RequestName::Upgrade];
        assert_eq!(upgrade.state, State::Split);
        assert_eq!(ids(&p, RequestName::Upgrade), ["task:sp4@upgrade", "restart:sp4@upgrade", "task:patch@upgrade"]);
        assert_eq!(after(&p, RequestName::Upgrade, "task:patch@upgrade"), ["restart:sp4@upgrade"]);
        let shape: Vec<_> = upgrade
            .steps
            .iter()
            .map(|s| (s.kind, s.op, s.side, s.item.as_deref(), s.timeout_ms, s.env.is_some()))
            .collect();
        assert_eq!(
            shape,
            [
                (StepKind::Task, Op::Install, Side::Upgrade, Some("sp4"), Some(1_200_000), true),
                (StepKind::Platform, Op::Restart, Side::Upgrade, Some("sp4"), None, false),
                (StepKind::Task, Op::Install, Side::Upgrade, Some("patch"), Some(600_000), true),
            ]
        );
        assert_eq!(
            upgrade.steps[0].env,
            Some(ActionEnv {
                side: crate::compiled::EnvSide::Upgrade,
                state: State::Split,
                request: EnvRequest::Upgrade,
                hw_split: HwSplit::Yes
            })
        );

        let readiness = ids(&p, RequestName::CheckReadiness);
        assert_eq!(readiness[..3], ["probe:readiness", "probe:binding", "probe:versions"]);
        assert_eq!(readiness[3..], ids(&old, RequestName::CheckReadiness)[2..], "then the actions, as before");
        assert_eq!(p.requests[&RequestName::CheckReadiness].steps[2].op, Op::Versions);

        // The gates come after every step the request had, checks in plan order, then approvals.
        for (request, gate) in [
            (RequestName::PrepareMerge, ["verify:m-first@upgrade", "verify:m-second@upgrade", "approve:go-merge"]),
            (RequestName::ExecuteMerge, ["verify:c-first@upgrade", "verify:c-second@upgrade", "approve:go-commit"]),
        ] {
            let before = ids(&old, request);
            let now = ids(&p, request);
            assert_eq!(now[..before.len()], before[..], "{request}");
            assert_eq!(now[before.len()..], gate, "{request}");
            let last_old: Vec<String> = old.requests[&request]
                .steps
                .iter()
                .filter(|s| !old.requests[&request].steps.iter().any(|o| o.after.contains(&s.id)))
                .map(|s| s.id.clone())
                .collect();
            assert_eq!(after(&p, request, gate[0]), last_old, "{request}: after every existing step");
            assert_eq!(after(&p, request, gate[1]), [gate[0]]);
            assert_eq!(after(&p, request, gate[2]), [gate[1]]);
        }
        assert_eq!(
            after(&p, RequestName::PrepareMerge, "verify:m-first@upgrade"),
            ["action:late-adv@production", "action:late-adv@upgrade"],
            "both sides' advanced actions"
        );
        let merge = &p.requests[&RequestName::PrepareMerge];
        let step = |id: &str| merge.steps.iter().find(|s| s.id == id).unwrap();
        let verify = step("verify:m-first@upgrade");
        assert_eq!(
            (verify.kind, verify.op, verify.side, verify.item.as_deref()),
            (StepKind::Verify, Op::Verify, Side::Upgrade, Some("m-first"))
        );
        assert_eq!(verify.timeout_ms, Some(5000));
        let approve = step("approve:go-merge");
        assert_eq!(
            (approve.kind, approve.op, approve.item.as_deref()),
            (StepKind::Approval, Op::Approve, Some("go-merge"))
        );

        for request in [
            RequestName::PrepareSplit,
            RequestName::ExecuteSplit,
            RequestName::Commit,
            RequestName::AbortFromSplit,
            RequestName::AbortFromMerge,
            RequestName::Finish,
        ] {
            assert_eq!(ids(&p, request), ids(&old, request), "{request} is unchanged");
        }
        let mut diags = crate::diagnostic::Diagnostics::default();
        super::validate(&p.requests, &mut diags);
        assert!(!diags.has_errors());
    }

    #[test]
    fn a_service_cycle_is_reported_as_its_full_path() {
        let t = Tree::new(&[(
            "plan.yaml",
            "version: 1\nservices:\n  - {name: A, after: [C]}\n  - {name: B, after: [A]}\n  - {name: C, after: [B]}\n  - {name: D, after: [A]}\n",
        )]);
        let c = t.compile("plan.yaml");
        let m = expect_at(&c, "duet::service::cycle", "plan.yaml", 3, 23);
        assert_eq!(m, "services are ordered in a cycle: A after C after B after A");
        assert_eq!(c.diagnostics[0].related.len(), 2);
        assert!(!c.is_valid());
    }

    #[test]
    fn the_compiled_plan_round_trips_and_refuses_other_versions() {
        let p = compiled();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(CompiledPlan::from_json(&json).unwrap(), p);
        let newer = json.replacen("\"format_version\":1", "\"format_version\":2", 1);
        assert_eq!(
            CompiledPlan::from_json(&newer).unwrap_err(),
            "compiled plan format version 2 is not supported; this duet reads version 1"
        );
        assert!(CompiledPlan::from_json("{}").unwrap_err().contains("no `format_version`"));
    }
}
