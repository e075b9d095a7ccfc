//! duet's plan compiler: YAML plans with nesting -> a validated DAG of steps per request.
//!
//! The pipeline, one stage per module: [`source`] (files under limits) -> [`yaml`] (spanned
//! tree) -> [`schema`] -> [`plan`] (`PlanFile`) -> [`loader`] (include tree) -> [`resolve`]
//! (`ResolvedPlan`) -> [`bind`] (`BoundPlan`, against an [`inventory`]) -> [`dag`] ->
//! [`compiled`] (`CompiledPlan`, the runtime's contract). [`compile::compile`] runs it.
//! [`version`] reads the dotted versions and constraints of the unattended-upgrade keys.
//! [`trust`] checks pinned and signed includes as the loader reads them; [`lock`] refuses
//! what a template's `locked:` forbids, before resolution.
//! Nothing here spawns a process or touches hardware.

pub mod bind;
pub mod compile;
pub mod compiled;
pub mod dag;
pub mod diagnostic;
pub mod duration;
#[doc(hidden)]
pub mod fuzzing;
pub mod inventory;
pub mod loader;
pub mod lock;
pub mod name;
pub mod plan;
pub mod render;
pub mod report;
pub mod resolve;
pub mod schema;
pub mod source;
pub mod suggest;
pub mod text;
pub mod trust;
pub mod version;
pub mod yaml;

#[cfg(test)]
mod testing;

pub use compile::{Compilation, Options, compile};
