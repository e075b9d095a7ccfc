//! Fuzz target `journal`: see `duet::fuzzing::journal`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| duet::fuzzing::journal(bytes));
