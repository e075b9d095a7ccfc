//! `duet`: the command-line entry point; everything it does is in the library ([`duet::main`]).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    duet::main()
}
