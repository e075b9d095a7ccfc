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
pub mod status_page;

#[cfg(test)]
mod etcd_tests;
#[cfg(test)]
mod scheduler_tests;
#[cfg(test)]
mod tests;

/// Copies `src` (a file, or a directory and all below it) to `dst`, making the directories on
/// the way; `std::fs::copy` keeps each file's permissions. For preserved files, a rehearsal's
/// world and the tests' copies of the seed fleets.
pub fn copy_tree(src: &std::path::Path, dst: &std::path::Path) -> std::io::Result<()> {
    if src.is_dir() {
        std::fs::create_dir_all(dst)?;
        for entry in std::fs::read_dir(src)? {
            let entry = entry?;
            copy_tree(&entry.path(), &dst.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(src, dst).map(|_| ())
    }
}
