//! `duet-node`: the runtime's `duet` command, unchanged (its journal, lock and resume), built
//! next to `duet-fleet` so an agent runs the node's upgrade with the duet of its own build.

fn main() -> std::process::ExitCode {
    duet::main()
}
