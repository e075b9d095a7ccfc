//! Which steps may start: each waits for its dependencies in this request (an `after` naming
//! no step here is met) and becomes ready when the last one completes; ready steps start in the
//! DAG's order. Linear in the steps and their dependencies.

use std::collections::{BTreeSet, HashMap};

use duet_compiler::compiled::Step;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sched {
    Pending,
    Running,
    Done,
    Failed,
}

pub(super) struct Schedule {
    state: Vec<Sched>,
    dependents: Vec<Vec<usize>>,
    waiting: Vec<usize>,
    ready: BTreeSet<usize>,
}

impl Schedule {
    pub(super) fn new(steps: &[Step], state: Vec<Sched>) -> Self {
        let index: HashMap<&str, usize> = steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
        let mut waiting: Vec<usize> = vec![0; steps.len()];
        for (i, step) in steps.iter().enumerate() {
            for j in step.after.iter().filter_map(|d| index.get(d.as_str()).copied()) {
                dependents[j].push(i);
                if state[j] != Sched::Done {
                    waiting[i] += 1;
                }
            }
        }
        let ready = (0..steps.len()).filter(|&i| state[i] == Sched::Pending && waiting[i] == 0).collect();
        Self { state, dependents, waiting, ready }
    }

    /// The next step to start (marked running).
    pub(super) fn next(&mut self) -> Option<usize> {
        let i = self.ready.pop_first()?;
        self.state[i] = Sched::Running;
        Some(i)
    }

    /// Whether every step has completed.
    pub(super) fn complete(&self) -> bool {
        self.state.iter().all(|&s| s == Sched::Done)
    }

    pub(super) fn finished(&mut self, i: usize, ok: bool) {
        self.state[i] = if ok { Sched::Done } else { Sched::Failed };
        if ok {
            for &k in &self.dependents[i] {
                self.waiting[k] -= 1;
                if self.waiting[k] == 0 && self.state[k] == Sched::Pending {
                    self.ready.insert(k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use duet_compiler::compiled::{Op, Side, StepKind};

    use super::*;

    fn step(id: &str, after: &[&str]) -> Step {
        let after = after.iter().map(|a| (*a).into()).collect();
        Step { after, ..Step::new(id, StepKind::Probe, Side::Upgrade, Op::Readiness) }
    }

    #[test]
    fn a_step_starts_once_its_last_dependency_completes_and_never_after_a_failure() {
        let steps = [step("a", &[]), step("b", &["a"]), step("c", &["a", "b"]), step("d", &["elsewhere"])];
        let mut s = Schedule::new(&steps, vec![Sched::Pending; 4]);
        assert_eq!((s.next(), s.next(), s.next()), (Some(0), Some(3), None), "a and d (whose dependency is not here)");
        s.finished(0, true);
        assert_eq!((s.next(), s.next()), (Some(1), None), "c still waits for b");
        s.finished(1, false);
        assert_eq!(s.next(), None, "c waits for b, which failed");
        s.finished(3, true);
        assert!(!s.complete());
    }

    #[test]
    fn steps_done_before_a_restart_count_as_met() {
        let steps = [step("a", &[]), step("b", &["a"])];
        let mut s = Schedule::new(&steps, vec![Sched::Done, Sched::Pending]);
        assert_eq!(s.next(), Some(1));
        s.finished(1, true);
        assert!(s.complete());
    }
}
