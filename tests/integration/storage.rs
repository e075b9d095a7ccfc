//! duet on a disk that fills up or turns read-only under it (docs/reliability.md, "Disk full
//! and I/O errors"): the real write paths against real file systems. Each test puts the state
//! directory on a small tmpfs in a mount namespace of its own (`unshare`), where it can also
//! mount a smaller file system over one part of it (the simulated machine, the output
//! directory) so that exactly that part fails; duet runs inside that namespace (`nsenter`).
//! The test reads and fills the file systems through `/proc/PID/root`.
//!
//! A journal record cut short halfway (a full disk can let part of a `write` through) is made
//! with a file-size limit (`RLIMIT_FSIZE`): the kernel writes up to the limit, then refuses.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::machine::Machine;
use crate::support::Run;

/// A mount namespace holding a tmpfs on the rig's state directory, kept alive by a shell that
/// runs the commands it is given there.
struct Disk {
    holder: Child,
    commands: ChildStdin,
    replies: BufReader<ChildStdout>,
    state: PathBuf,
}

const HOLDER: &str = r#"mount -t tmpfs -o "size=$1" tmpfs "$0" || exit 1
echo ready
while read -r cmd; do
  if sh -c "$cmd" >&2; then echo ok; else echo failed; fi
done"#;

impl Disk {
    /// The rig's state directory on a fresh tmpfs of `size` (`mount`'s spelling: `4m`).
    fn new(m: &Machine, size: &str) -> Self {
        let state = m.state();
        std::fs::create_dir_all(&state).expect("state dir");
        let mut holder = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "--propagation", "private", "sh", "-c", HOLDER])
            .arg(&state)
            .arg(size)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux) runs");
        let commands = holder.stdin.take().expect("stdin");
        let mut replies = BufReader::new(holder.stdout.take().expect("stdout"));
        let mut line = String::new();
        replies.read_line(&mut line).expect("the holder answers");
        assert_eq!(line.trim(), "ready", "cannot mount a tmpfs in a new mount namespace");
        Self { holder, commands, replies, state }
    }

    /// Runs a shell command inside the namespace (`$S` is the state directory).
    #[track_caller]
    fn sh(&mut self, command: &str) {
        let command = command.replace("$S", &self.state.display().to_string());
        writeln!(self.commands, "{command}").expect("send");
        let mut line = String::new();
        self.replies.read_line(&mut line).expect("reply");
        assert_eq!(line.trim(), "ok", "`{command}` failed in the namespace");
    }

    /// Mounts a tmpfs of `size` on `rel` (under the state directory), keeping what was there.
    fn isolate(&mut self, rel: &str, size: &str) {
        self.sh(&format!(
            "mkdir -p $S/{rel} && cp -a $S/{rel} $S/.keep && mount -t tmpfs -o size={size} tmpfs $S/{rel} \
             && cp -a $S/.keep/. $S/{rel}/ && rm -rf $S/.keep"
        ));
    }

    /// `rel` as the test sees it: through the namespace's root.
    fn view(&self, rel: &str) -> PathBuf {
        let inside = self.state.join(rel);
        PathBuf::from(format!("/proc/{}/root{}", self.holder.id(), inside.display()))
    }

    /// Fills the file system holding `rel` (a directory) to the last byte.
    fn fill(&self, rel: &str) {
        let path = self.view(rel).join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = file.write_all(&chunk) {
                assert_eq!(e.raw_os_error(), Some(nix::libc::ENOSPC), "filling {}: {e}", path.display());
                break;
            }
        }
        // Whatever a partial chunk left: byte by byte up to the end.
        while file.write_all(&[0]).is_ok() {}
    }

    /// Frees what [`Disk::fill`] took.
    fn free(&self, rel: &str) {
        std::fs::remove_file(self.view(rel).join("filler")).expect("remove filler");
    }

    /// `duet ARGS` inside the namespace, with the rig's state directory and inventory.
    fn command(&self, m: &Machine, args: &[&str]) -> Command {
        let mut all: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
        all.extend(["--state-dir".into(), self.state.display().to_string()]);
        if args.first() != Some(&"log") {
            all.extend(["--inventory".into(), m.path("inventory.yaml").display().to_string()]);
        }
        let mut command = Command::new("nsenter");
        command
            .args(["--target", &self.holder.id().to_string(), "--user", "--mount", "--preserve-credentials"])
            .arg(format!("--wd={}", m.dir.path().display()))
            .arg(env!("CARGO_BIN_EXE_duet"))
            .args(&all)
            .env("REC", m.rec())
            .env("NO_COLOR", "1");
        command
    }

    fn duet(&self, m: &Machine, args: &[&str]) -> Run {
        let out = self.command(m, args).output().expect("nsenter runs");
        Run {
            code: out.status.code().expect("duet exits, not killed by a signal"),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn status(&self, m: &Machine) -> serde_json::Value {
        self.duet(m, &["status", "--json"]).code(0).json()
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Each action as `step|request|attempt`, sorted.
fn runs(m: &Machine) -> Vec<String> {
    let mut runs = m.runs();
    runs.sort();
    runs
}

/// Every journal record line of `path` is complete, and `status` reads the session whole.
#[track_caller]
fn readable(disk: &Disk, m: &Machine, journal: &Path) {
    let bytes = std::fs::read(journal).expect("the journal is readable");
    assert!(bytes.ends_with(b"\n"), "the journal ends inside a record: {:?}", String::from_utf8_lossy(&bytes));
    let status = disk.status(m);
    assert!(status["journal_damage"].is_null(), "{status:#}");
}

#[test]
fn a_full_disk_while_creating_a_session_leaves_nothing_half_built() {
    let m = Machine::new();
    let disk = Disk::new(&m, "4m");
    disk.duet(&m, &["readiness", &m.plan()]).code(0);
    disk.fill("");
    let run = disk.duet(&m, &["run", &m.plan()]);
    run.code(1)
        .stderr_has("cannot create the session in")
        .stderr_has("No space left on device")
        .stderr_has("free space on that file system")
        .stderr_has("run the same command again: no session is in progress");
    let mut entries: Vec<String> = std::fs::read_dir(disk.view(""))
        .expect("state dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["filler", "lock", "readiness", "sim"], "nothing half-built stays behind");
    assert!(runs(&m).iter().all(|r| r.contains("CheckReadiness")), "nothing ran: {:?}", runs(&m));

    disk.free("");
    disk.duet(&m, &["run", &m.plan()]).code(0).stdout_has("finished");
    assert_eq!(disk.status(&m)["upgrade"], "Idle");
}

#[test]
fn lost_output_stops_duet_after_the_step_and_resume_goes_on() {
    let m = Machine::new();
    let mut disk = Disk::new(&m, "8m");
    disk.duet(&m, &["run", &m.plan(), "--through", "split"]).code(0);
    disk.isolate("session/output", "1m");
    disk.fill("session/output");
    let before = runs(&m).len();

    let run = disk.duet(&m, &["run", &m.plan()]);
    run.code(1).stderr_has("could not be saved").stderr_has("(ENOSPC)").stderr_has("duet resume");
    // The two sides' first actions run at once; nothing started after them.
    let ran = runs(&m).len() - before;
    assert!((1..=2).contains(&ran), "duet stopped after the first action whose output it lost: {:?}", runs(&m));
    readable(&disk, &m, &disk.view("session/journal"));
    let status = disk.status(&m);
    assert_eq!(status["operational"], "Busy", "{status:#}");

    disk.free("session/output");
    disk.duet(&m, &["resume"]).code(0);
    let again: Vec<String> = runs(&m).into_iter().filter(|r| !r.ends_with("|1")).collect();
    assert!(again.is_empty(), "no action ran twice: its result was recorded although its output was lost: {again:?}");
    assert_eq!(disk.status(&m)["upgrade"], "Idle", "resume carried `run` on to its goal");
}

#[test]
fn a_full_disk_under_the_simulated_machine_stops_before_the_next_step() {
    let m = Machine::new();
    let mut disk = Disk::new(&m, "8m");
    disk.duet(&m, &["run", &m.plan(), "--through", "split"]).code(0);
    let split = std::fs::read_to_string(disk.view("sim/state.json")).expect("sim state");
    disk.isolate("sim", "256k");
    disk.fill("sim");

    let run = disk.duet(&m, &["run", &m.plan()]);
    run.code(1).stderr_has("/sim/").stderr_has("No space left on device").stderr_has("duet resume");
    readable(&disk, &m, &disk.view("session/journal"));
    let state = std::fs::read_to_string(disk.view("sim/state.json")).expect("the machine's state is readable");
    assert_eq!(state, split, "the machine's state was never half-written");
    let status = disk.status(&m);
    assert_eq!((&status["upgrade"], &status["operational"]), (&"Merge".into(), &"Busy".into()), "{status:#}");

    disk.free("sim");
    disk.duet(&m, &["resume"]).code(0);
    let status = disk.status(&m);
    assert_eq!(status["upgrade"], "Idle", "{status:#}");
}

/// A step the full disk cut short is journaled as a storage failure, not as an interruption
/// (which means a signal), and `resume` reconciles it like one (decisions D56).
#[test]
fn a_step_the_full_disk_cut_short_is_recorded_as_a_storage_failure() {
    let m = Machine::new();
    let mut disk = Disk::new(&m, "8m");
    disk.duet(&m, &["run", &m.plan(), "--through", "split"]).code(0);
    disk.isolate("sim", "256k");
    disk.fill("sim");
    disk.duet(&m, &["merge"]).code(1).stdout_has("STOPPED");
    let journal = std::fs::read_to_string(disk.view("session/journal")).expect("journal");
    let cut: Vec<&str> =
        journal.lines().filter(|l| l.contains("\"step-finished\"") && !l.contains("\"success\"")).collect();
    assert!(
        cut.iter().any(|l| l.contains("\"outcome\":\"storage-failed\"") && l.contains("No space left on device")),
        "{journal}"
    );
    assert!(!journal.contains("\"outcome\":\"interrupted\""), "no signal came:\n{journal}");
    disk.free("sim");
    disk.duet(&m, &["resume"]).code(0);
    assert_eq!(disk.status(&m)["upgrade"], "Merge");
}

#[test]
fn a_read_only_session_is_refused_before_anything_runs_and_resume_goes_on() {
    let m = Machine::new();
    let mut disk = Disk::new(&m, "8m");
    disk.duet(&m, &["run", &m.plan(), "--through", "split"]).code(0);
    let journal = std::fs::read(disk.view("session/journal")).expect("journal");
    let before = runs(&m);
    disk.sh("mount --bind $S/session $S/session && mount -o remount,bind,ro $S/session");

    let run = disk.duet(&m, &["run", &m.plan()]);
    run.code(1).stderr_has("session/journal").stderr_has("Read-only file system");
    assert_eq!(runs(&m), before, "nothing ran");
    assert_eq!(std::fs::read(disk.view("session/journal")).expect("journal"), journal);

    disk.sh("umount $S/session");
    disk.duet(&m, &["run", &m.plan()]).code(0).stdout_has("finished");
}

/// The journal is the file that grows: a limit just past its size cuts a record halfway.
#[test]
fn a_journal_record_cut_short_is_cut_back_and_resume_needs_no_repair() {
    let m = Machine::new();
    m.run(&["run", &m.plan(), "--through", "split"]).code(0);
    let journal = m.state().join("session/journal");
    let size = std::fs::metadata(&journal).expect("journal").len();
    let limit = size + 100;
    let state = m.state().display().to_string();
    let inventory = m.path("inventory.yaml").display().to_string();
    let plan = m.plan();
    // SIGXFSZ ignored, as a full disk sends none: the write fails with EFBIG instead.
    let out = Command::new("sh")
        .args(["-c", r#"trap '' XFSZ; exec prlimit --fsize="$0" -- "$@""#])
        .arg(limit.to_string())
        .arg(env!("CARGO_BIN_EXE_duet"))
        .args(["run", &plan, "--state-dir", &state, "--inventory", &inventory])
        .env("REC", m.rec())
        .current_dir(m.dir.path())
        .output()
        .expect("prlimit runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("session/journal") && stderr.contains("File too large"), "{stderr}");
    let bytes = std::fs::read(&journal).expect("journal");
    assert!((size..limit).contains(&(bytes.len() as u64)), "{} bytes: not cut back to a record", bytes.len());
    assert!(bytes.ends_with(b"\n"), "the part-written record was cut back: {:?}", String::from_utf8_lossy(&bytes));

    // The merge's first record was the one cut short: the merge never began, and `run` starts
    // it now, from a journal that needs no repair.
    let again = m.run(&["run", &plan]);
    again.code(0);
    assert!(!again.stderr.contains("repair"), "{}", again.stderr);
    assert_eq!(m.status()["upgrade"], "Idle");
}

/// The rig's one action: a `rerun: unsafe` backup, which runs in ExecuteMerge.
const UNSAFE_ONLY: &str = "version: 1
title: one unsafe action
disks: {system: [disk0, disk1], data: [disk2]}
actions:
  - {id: save, file: rec, control: backup, rerun: unsafe}
";

#[test]
fn an_action_the_platform_could_not_start_is_started_by_resume_even_an_unsafe_one() {
    let m = Machine::with(UNSAFE_ONLY, crate::machine::INVENTORY);
    let mut disk = Disk::new(&m, "8m");
    disk.duet(&m, &["run", &m.plan(), "--through", "split"]).code(0);
    // The simulated machine records each action's start in its event log: it cannot now.
    disk.sh("mount --bind $S/sim $S/sim && mount -o remount,bind,ro $S/sim");
    let run = disk.duet(&m, &["run", &m.plan()]);
    run.code(1).stderr_has("action:save@production was not started").stderr_has("Read-only file system");
    assert!(runs(&m).is_empty(), "it never ran: {:?}", runs(&m));

    disk.sh("umount $S/sim");
    disk.duet(&m, &["resume"]).code(0);
    assert_eq!(runs(&m).len(), 1, "resume ran it, once: {:?}", runs(&m));
    assert_eq!(disk.status(&m)["upgrade"], "Idle");
}

#[test]
fn an_action_that_ran_keeps_its_result_when_the_platform_cannot_log_its_end() {
    let m = Machine::with(UNSAFE_ONLY, crate::machine::INVENTORY);
    let mut disk = Disk::new(&m, "8m");
    disk.duet(&m, &["run", &m.plan(), "--through", "split"]).code(0);
    disk.isolate("sim", "256k");
    std::fs::write(m.rec().join("block-action:save@production"), "").expect("marker");
    let child = disk.command(&m, &["run", &m.plan()]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let child = child.expect("nsenter runs");
    let blocked = m.rec().join("blocked");
    let start = std::time::Instant::now();
    while !blocked.exists() {
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "the action never started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // While it runs: fill the machine's disk, and leave its event log a sparse tail, so that
    // the line saying the action ended needs a page the disk no longer has.
    disk.fill("sim");
    let log = disk.view("sim/sides/production/logs/Application.log");
    let size = std::fs::metadata(&log).expect("log").len();
    std::fs::OpenOptions::new().write(true).open(&log).expect("log").set_len(size + 65536).expect("sparse");
    std::fs::write(m.rec().join("go"), "").expect("go");
    let out = child.wait_with_output().expect("duet ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the result of action:save@production is recorded"), "{stderr}");

    std::fs::OpenOptions::new().write(true).open(&log).expect("log").set_len(size).expect("cut");
    disk.free("sim");
    std::fs::remove_file(m.rec().join("block-action:save@production")).expect("marker");
    disk.duet(&m, &["resume"]).code(0);
    assert_eq!(runs(&m).len(), 1, "it completed once and was not run again: {:?}", runs(&m));
    assert_eq!(disk.status(&m)["upgrade"], "Idle");
}
