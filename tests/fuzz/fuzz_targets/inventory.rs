//! Fuzz target `inventory`: see `duet_compiler::fuzzing::Scratch::inventory`.
#![no_main]

static SCRATCH: std::sync::LazyLock<duet_compiler::fuzzing::Scratch> =
    std::sync::LazyLock::new(duet_compiler::fuzzing::Scratch::in_temp_dir);

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| SCRATCH.inventory(bytes));
