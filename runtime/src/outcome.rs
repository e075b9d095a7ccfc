//! How a command ended, and the exit code that says so. Decided here and nowhere else (the
//! values are the contract's `exit`).

use duet_contract::exit;

use crate::process::interrupt::Signal;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Done; the plan is valid (warnings allowed).
    Success,
    /// The plan is invalid, or the request failed or was refused.
    Failure,
    /// Nothing was done: another duet process drives the state directory.
    Busy,
    /// Stopped by a signal (Ctrl-C, SIGTERM) with the journal complete: `resume` continues.
    Interrupted(Signal),
}

impl Outcome {
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Self::Success => exit::SUCCESS,
            Self::Failure => exit::FAILURE,
            Self::Busy => exit::BUSY,
            Self::Interrupted(signal) => exit::signalled(signal.number),
        }
    }
}
