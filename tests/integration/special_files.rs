//! duet's own files replaced by FIFOs, devices or runaway files: every command that reads them
//! ends at once with a message naming the file and what is wrong with it. Never a hang (each
//! command here is killed, and the test fails, if it has not ended within a minute), never
//! memory exhaustion.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::machine::Machine;
use crate::support::Run;

/// Runs `duet ARGS` on the rig, failing the test (after killing duet) if it has not ended in a
/// minute: a hang is the defect these tests look for.
fn bounded(m: &Machine, args: &[&str]) -> Run {
    let mut child = m.duet(args).spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`duet {}` hung", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("output");
    Run {
        code: out.status.code().expect("duet exits, not killed by a signal"),
        stdout: String::from_utf8(out.stdout).expect("UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8"),
    }
}

fn fifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

fn link_to(path: &Path, target: &str) {
    let _ = std::fs::remove_file(path);
    std::os::unix::fs::symlink(target, path).expect("symlink");
}

/// A rig with a session Ready in Split.
fn split() -> Machine {
    let m = Machine::new();
    m.run(&["split", &m.plan()]).code(0);
    m
}

#[test]
fn a_journal_that_is_a_fifo_or_a_device_is_refused_at_once() {
    for (what, make) in
        [("a FIFO (named pipe)", fifo as fn(&Path)), ("a character device", |p: &Path| link_to(p, "/dev/zero"))]
    {
        let m = split();
        let journal = m.state().join("session/journal");
        make(&journal);
        let expected = format!("{}: it is {what}, not a regular file", journal.display());
        for args in [&["status"][..], &["resume"], &["log"], &["merge"], &["abort"]] {
            let r = bounded(&m, args);
            r.code(1).stderr_has(&expected);
            // Not a full disk: the help says what is wrong instead.
            if r.stderr.contains("help:") {
                r.stderr_has("that is not the file duet wrote there");
                assert!(!r.stderr.contains("free space"), "{}", r.stderr);
            }
        }
    }
}

#[test]
fn a_journal_past_the_size_limit_is_refused_unread() {
    let m = split();
    let journal = m.state().join("session/journal");
    // Sparse: 300 MiB that take no room, and would take 300 MiB of memory to read.
    std::fs::OpenOptions::new().write(true).open(&journal).expect("open").set_len(300 << 20).expect("grow");
    for args in [&["status"][..], &["resume"]] {
        bounded(&m, args)
            .code(1)
            .stderr_has("it is 314572800 bytes, more than the 256 MiB duet reads from such a file");
    }
}

#[test]
fn the_snapshot_the_machine_and_the_lock_as_fifos_are_refused_at_once() {
    let m = split();
    let compiled = m.state().join("session/plan/compiled.json");
    fifo(&compiled);
    bounded(&m, &["resume"])
        .code(1)
        .stderr_has(&format!("cannot read {}: it is a FIFO (named pipe), not a regular file", compiled.display()));
    bounded(&m, &["status"]).code(0);

    let m = split();
    let state = m.state().join("sim/state.json");
    fifo(&state);
    let expected = format!("cannot read {}: it is a FIFO (named pipe), not a regular file", state.display());
    for args in [&["status"][..], &["resume"], &["merge"]] {
        bounded(&m, args).code(1).stderr_has(&expected);
    }

    let m = split();
    let lock = m.state().join("lock");
    fifo(&lock);
    let expected = format!("cannot lock {}: it is a FIFO (named pipe), not a regular file", lock.display());
    for args in [&["merge"][..], &["resume"]] {
        bounded(&m, args).code(1).stderr_has(&expected);
    }
    bounded(&m, &["status"]).code(0);
}

#[test]
fn a_plan_file_replaced_by_a_fifo_or_a_device_reads_as_modified() {
    for make in [fifo as fn(&Path), |p: &Path| link_to(p, "/dev/zero")] {
        let m = split();
        make(&m.path("plans/plan.yaml"));
        bounded(&m, &["status"])
            .code(0)
            .stdout_has("plan.yaml was modified since the session started; the session keeps running its snapshot");
        bounded(&m, &["merge"]).code(0);
    }
}

#[test]
fn an_inventory_that_is_a_fifo_is_refused_at_once() {
    let m = Machine::new();
    let inventory = m.path("inventory.yaml");
    fifo(&inventory);
    bounded(&m, &["readiness", &m.plan()])
        .code(1)
        .stderr_has(&format!("cannot read {}: it is a FIFO (named pipe), not a regular file", inventory.display()));
}
