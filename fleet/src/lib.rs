//! duet fleets: upgrade a cluster of machines, coordinated through etcd (docs/fleet.md).
//!
//! Layering: [`plan`] (the fleet file as written) -> [`check`] -> [`spec`] (the checked fleet,
//! what a run journals) -> [`compile`] (the pipeline, node plans compiled by the plan compiler).
//! This crate depends on the plan compiler and the runtime's contract, never on the runtime:
//! a node's upgrade is the `duet` binary, run by the agent.

pub mod check;
pub mod compile;
pub mod coordination;
pub mod coordinator;
pub mod etcd;
pub mod journal;
pub mod plan;
pub mod scheduler;
pub mod spec;

#[cfg(test)]
mod etcd_tests;
#[cfg(test)]
mod scheduler_tests;
#[cfg(test)]
mod tests;
