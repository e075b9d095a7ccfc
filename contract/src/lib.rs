//! The contract between duet's parts, as data: what a node's journal records ([`record`]) and
//! publishes as it records ([`event`]), what `duet status --json` reports ([`status`]) and what
//! each exit code means ([`exit`]). The compiled plan, the contract between the compiler and the
//! runtime, is `duet_compiler::compiled`.
//!
//! This crate holds serde types and their plain helpers only: it depends on nothing of the
//! runtime, so a fleet coordinator (which reads nodes' journals and status) can share the types
//! without linking the executor or a platform.

pub mod event;
pub mod exit;
pub mod record;
pub mod status;
