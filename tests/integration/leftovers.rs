//! What an action attempt leaves running: nothing of it may run beside another attempt of the
//! same step, and "stopped with its whole process tree" must be true of processes that left the
//! tree's process group (`setsid`). Through the real binary, on the rig of `machine.rs`.

use std::time::{Duration, Instant};

use crate::machine::{INVENTORY, Machine, make_executable};
use crate::support::indoc;

/// Whether `pid` is a live process (a zombie only waits to be reaped: it is not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rfind(')').is_some_and(|end| !stat[end + 1..].trim_start().starts_with(['Z', 'X'])))
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How often `rec` recorded STEP starting (any request, any attempt).
fn starts(m: &Machine, step: &str) -> usize {
    m.runs().iter().filter(|r| r.starts_with(&format!("{step}|"))).count()
}

/// Kills what a test left running, whatever the assertions said.
struct Reap(Vec<u32>);

impl Drop for Reap {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

#[test]
fn retry_never_starts_an_unsafe_action_beside_the_attempt_a_crash_left_running() {
    let m = Machine::new();
    let step = "action:save@production";
    let orphan: u32 = m.kill_inside(step, &["run", &m.plan()]).parse().expect("pid");
    let _reap = Reap(vec![orphan]);
    assert!(alive(orphan), "the killed duet's action still runs");

    let resume = m.run(&["resume"]);
    resume.code(1).stderr_has("rerun: unsafe").stderr_has(&format!("its processes {orphan}"));
    // The operator does as told, but the first attempt has not ended: duet refuses to start a
    // second one beside it, names its processes and says what to do.
    let retry = m.run(&["retry"]);
    retry
        .code(1)
        .stderr_has(&format!("Broken at step {step}"))
        .stderr_has(&format!("is still running from an earlier attempt (processes {orphan}"))
        .stderr_has(&format!("stop it (`kill {orphan}"))
        .stderr_has("then `duet retry`; or `duet abort`");
    assert_eq!(starts(&m, step), 1, "no second attempt started");
    assert!(alive(orphan), "an unsafe action is never stopped behind the operator's back");
    m.run(&["retry", "--from", step, "--reason", "try again"])
        .code(1)
        .stderr_has("still running from an earlier attempt");
    assert_eq!(starts(&m, step), 1, "retry --from started no second attempt either");

    // The first attempt ends; now the retry runs attempt 2, and the run carries on to its goal.
    std::fs::write(m.rec().join("go"), "").expect("go");
    wait_until("the first attempt to end", || !alive(orphan));
    m.run(&["retry"]).code(0).stdout_has("finished");
    let saves: Vec<String> = m.runs().into_iter().filter(|r| r.starts_with(&format!("{step}|"))).collect();
    assert_eq!(saves, [format!("{step}|Backup|1"), format!("{step}|Backup|2")]);
}

#[test]
fn abort_stops_an_unsafe_action_that_a_resume_left_running() {
    let m = Machine::new();
    let step = "action:adv-late@upgrade";
    let plan = crate::machine::PLAN.replace(
        "{id: adv-late, file: rec, control: advanced, timing: late}",
        "{id: adv-late, file: rec, control: advanced, timing: late, rerun: unsafe}",
    );
    m.write("plans/plan.yaml", &plan);
    let orphan: u32 = m.kill_inside(step, &["split", &m.plan()]).parse().expect("pid");
    let _reap = Reap(vec![orphan]);
    m.run(&["resume"]).code(1).stderr_has("rerun: unsafe");
    assert!(alive(orphan));
    // Broken at the unsafe step, which is no longer marked running: the abort still finds it.
    m.run(&["abort"])
        .code(0)
        .stdout_has(&format!("stopped processes {orphan}"))
        .stdout_has("that earlier action attempts left running, before the abort")
        .stdout_has("AbortFromSplit (Abort)");
    assert!(!alive(orphan), "nothing of the abandoned request runs on beside the abort");
}

/// An action that starts a child which leaves its process group (and ignores SIGTERM), writes
/// that child's pid to `REC/escaped-ATTEMPT`, says so, then does what `REC/then` says
/// (`hang`, `fail` or `block`).
const ESCAPER: &str = r#"#!/bin/sh
setsid sh -c 'trap "" TERM; echo $$ > "$REC/escaped.tmp-$DUET_ATTEMPT"; exec sleep 300' &
while [ ! -s "$REC/escaped.tmp-$DUET_ATTEMPT" ]; do sleep 0.01; done
mv "$REC/escaped.tmp-$DUET_ATTEMPT" "$REC/escaped-$DUET_ATTEMPT"
echo "escaped"
case "$(cat "$REC/then")" in
  hang) sleep 300 ;;
  block) echo $$ > "$REC/blocked.tmp" && mv "$REC/blocked.tmp" "$REC/blocked"; sleep 300 ;;
  fail) exit 4 ;;
esac
"#;

fn escaper(then: &str, timeout: &str) -> Machine {
    let plan = indoc(&format!(
        r"
        version: 1
        disks: {{system: [disk0, disk1], data: [disk2]}}
        actions:
          - {{id: esc, file: escaper, control: stop, timeout: {timeout}}}
        "
    ));
    let m = Machine::with(&plan, INVENTORY);
    m.write("plans/escaper", ESCAPER);
    make_executable(&m.path("plans/escaper"));
    m.write("rec/then", then);
    m
}

fn escaped(m: &Machine, attempt: u32) -> u32 {
    let text = std::fs::read_to_string(m.rec().join(format!("escaped-{attempt}"))).expect("the child's pid");
    text.trim().parse().expect("pid")
}

#[test]
fn a_timed_out_action_is_stopped_with_the_children_that_left_its_process_group() {
    let m = escaper("hang", "3s");
    let run = m.run(&["split", &m.plan()]);
    let child = escaped(&m, 1);
    let _reap = Reap(vec![child]);
    run.code(1).stderr_has("Custom action timed out after 3s; it was stopped with its whole process tree");
    assert!(!alive(child), "the setsid child {child} outlived its action's timeout");
}

#[test]
fn a_second_ctrl_c_stops_the_children_that_left_the_process_group() {
    let m = escaper("block", "10m");
    let mut duet = m.duet(&["split", &m.plan()]).spawn();
    wait_until("the action to start its child", || m.rec().join("blocked").exists());
    let child = escaped(&m, 1);
    let _reap = Reap(vec![child]);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(duet.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signal");
    wait_until("the first signal to be noted", || String::from_utf8_lossy(&m.journal()).contains("SIGINT received"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signal");
    let status = duet.wait().expect("duet ends");
    assert_eq!(status.code(), Some(130));
    assert!(!alive(child), "the setsid child {child} outlived two Ctrl-Cs");
}

#[test]
fn retry_stops_what_an_earlier_attempt_of_a_safe_action_left_running_before_it_runs_again() {
    let m = escaper("fail", "10m");
    m.run(&["split", &m.plan()]).code(1).stderr_has("Custom action failed with exit value 4");
    let first = escaped(&m, 1);
    let _reap = Reap(vec![first]);
    // A normal exit kills nothing: the child it left is still there when the operator retries.
    assert!(alive(first));
    m.write("rec/then", "");
    let retry = m.run(&["retry"]);
    retry.code(0).stdout_has(&format!(
        "an earlier attempt of action:esc@upgrade was still running: stopped its processes {first} before running it again"
    ));
    assert!(!alive(first), "attempt 2 ran while attempt 1's child {first} still did");
    let second = escaped(&m, 2);
    let _reap_second = Reap(vec![second]);
}
