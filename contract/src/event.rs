//! What a command driving a session publishes as it goes, in the order it happens: each journal
//! entry once the journal holds it. The console prints from these, `duet log --follow` and a
//! fleet agent ("report a step only once the node's journal has it") read the same stream;
//! nothing below the run loop prints.

use duet_compiler::compiled::{RequestName, State};

use crate::record::Entry;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEvent<'a> {
    /// A request begins, or continues after an interruption (no record is written for that).
    Request { request: RequestName, state: State },
    /// The journal holds `entry`; fsync'd when `durable`.
    Recorded { entry: &'a Entry, durable: bool },
    /// `entry` could not be recorded (the journal can no longer be written): shown, never
    /// journaled.
    Unrecorded(&'a Entry),
}
