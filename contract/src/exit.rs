//! What duet's exit code says. The runtime decides which one applies in one place (its
//! `Outcome::exit_code`); these are the values, for scripts, CI and a fleet agent to read.

/// Done; the plan is valid (warnings allowed).
pub const SUCCESS: u8 = 0;
/// The plan is invalid, or the request failed or was refused.
pub const FAILURE: u8 = 1;
/// The command line is wrong (clap's own code).
pub const USAGE: u8 = 2;
/// Nothing was done: another duet process drives the state directory (its lock is held). Try
/// again when it has finished (`duet status` shows it): sysexits' `EX_TEMPFAIL`.
pub const BUSY: u8 = 75;

/// Stopped by signal `number` with the journal complete (`resume` continues): the shell's
/// convention, 128 + the signal's number.
pub fn signalled(number: i32) -> u8 {
    128u8.saturating_add(u8::try_from(number.unsigned_abs()).unwrap_or(u8::MAX - 128))
}

#[cfg(test)]
mod tests {
    #[test]
    fn signals_map_to_128_plus_their_number() {
        assert_eq!(super::signalled(2), 130);
        assert_eq!(super::signalled(15), 143);
    }
}
