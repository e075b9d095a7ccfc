//! duet fleets: upgrade a cluster of machines, coordinated through etcd (docs/fleet.md).
//!
//! Layering: [`plan`] (the fleet file as written) -> [`check`] -> [`spec`] (the checked fleet,
//! what a run journals) -> [`compile`] (the pipeline, node plans compiled by the plan compiler).
//! Running: [`coordinator`] (one step of a run, over the [`scheduler`]'s decisions) on the
//! [`coordination`] service ([`etcd`]); [`agent`] on each node, with its [`local`] journal,
//! running the node's upgrade with the runtime's `duet` ([`node`]) and the fleet's scripts
//! ([`exec`]); [`status`] for `duet-fleet status`. The library drives the runtime only as a
//! process (the `duet-node` binary is the runtime's `duet`, built alongside).

pub mod agent;
pub mod check;
pub mod compile;
pub mod coordination;
pub mod coordinator;
pub mod etcd;
pub mod exec;
pub mod journal;
pub mod local;
pub mod node;
pub mod plan;
pub mod scheduler;
pub mod spec;
pub mod status;

#[cfg(test)]
mod etcd_tests;
#[cfg(test)]
mod scheduler_tests;
#[cfg(test)]
mod tests;
