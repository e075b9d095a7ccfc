//! Operator repair: `duet skip STEP --reason TEXT` and `duet retry --from STEP --reason TEXT`,
//! through the real binary on the rig of `machine.rs`: what they run, what they refuse, and the
//! audit trail they leave in the journal and the activity log.

use crate::machine::Machine;

/// How often each `step|request` ran, as the actions recorded it.
fn count(m: &Machine, step: &str, request: &str) -> usize {
    m.runs().iter().filter(|r| r.starts_with(&format!("{step}|{request}|"))).count()
}

/// The journal's entries of one kind, flattened (`{"KIND": {...}}` -> the fields): the session
/// in progress, or the one finished session in `history/`.
fn entries(m: &Machine, kind: &str) -> Vec<serde_json::Value> {
    let mut bytes = m.journal();
    if bytes.is_empty() {
        let finished = std::fs::read_dir(m.state().join("history")).expect("history").next().expect("a session");
        bytes = std::fs::read(finished.expect("entry").path().join("journal")).expect("journal");
    }
    let text = String::from_utf8(bytes).expect("journal is UTF-8");
    text.lines()
        .skip(1)
        .filter_map(|line| line.split_once(' '))
        .map(|(_, json)| serde_json::from_str::<serde_json::Value>(json).expect("record"))
        .filter_map(|r| r["e"].get(kind).cloned())
        .collect()
}

#[test]
fn skip_marks_a_failed_action_done_runs_on_and_leaves_who_and_why() {
    let m = Machine::new();
    let step = "action:stop@upgrade";
    m.fail(step);
    m.run(&["run", &m.plan()]).code(1).stderr_has(&format!("Broken at step {step}"));
    assert_eq!(count(&m, step, "Stop"), 1);

    let skip = m.run(&["skip", step, "--reason", "stopped by hand, ticket OPS-1"]);
    skip.code(0).stdout_has(&format!("{step} is marked done without running it"));
    assert_eq!(count(&m, step, "Stop"), 1, "a skipped step does not run");
    let skips = entries(&m, "skip");
    assert_eq!(skips.len(), 1, "{skips:?}");
    assert_eq!(
        (skips[0]["step"].as_str(), skips[0]["reason"].as_str()),
        (Some(step), Some("stopped by hand, ticket OPS-1"))
    );
    assert!(skips[0]["user"].as_str().is_some_and(|u| !u.is_empty()), "{skips:?}");
    // `skip` carried on to the goal of `duet run`.
    m.run(&["status"]).code(0).stdout_has("Idle");

    let log = m.run(&["log"]);
    log.code(0)
        .stdout_has(&format!("{step} skipped by"))
        .stdout_has("without running it: stopped by hand, ticket OPS-1");
}

#[test]
fn skip_refuses_what_would_corrupt_the_state_model() {
    let m = Machine::new();
    m.run(&["skip", "action:stop@upgrade", "--reason", "x"]).code(1).stderr_has("no upgrade session");
    m.run(&["skip", "action:stop@upgrade"]).code(2).stderr_has("--reason");
    m.run(&["skip", "action:stop@upgrade", "--reason", "  "]).code(2).stderr_has("give a reason");
    // A reason is one line of the activity log: it cannot forge another.
    let forged = "ok\n2026-12-01T00:00:00Z  Success  [Stop] action:stop@upgrade: exit value 0";
    m.run(&["skip", "action:stop@upgrade", "--reason", forged]).code(2).stderr_has("one line of text");

    m.run(&["run", &m.plan(), "--through", "split"]).code(0);
    m.run(&["skip", "action:stop@upgrade", "--reason", "x"]).code(1).stderr_has("nothing to skip");

    m.fail("action:adv-early@production-PrepareMerge");
    m.run(&["run", &m.plan(), "--through", "merge"]).code(1);
    let journal = m.journal();
    m.run(&["skip", "probe:merge-readiness", "--reason", "x"])
        .code(1)
        .stderr_has("it is a readiness probe step; only a failed action step can be skipped");
    m.run(&["skip", "action:adv-early@upgrade", "--reason", "x"]).code(1).stderr_has("it is done already");
    m.run(&["skip", "action:adv-late@production", "--reason", "x"]).code(1).stderr_has("it has not failed");
    m.run(&["skip", "action:adv-erly@production", "--reason", "x"])
        .code(1)
        .stderr_has("PrepareMerge has no such step")
        .stderr_has("did you mean `action:adv-early@production`?");
    assert_eq!(m.journal(), journal, "a refused repair writes nothing");
}

#[test]
fn nothing_is_skipped_or_run_again_after_a_commit() {
    let m = Machine::new();
    let step = "action:adv-early@upgrade";
    m.fail(&format!("{step}-Commit"));
    m.run(&["run", &m.plan()]).code(1).stderr_has(&format!("Commit is Broken at step {step}"));
    let journal = m.journal();
    m.run(&["skip", step, "--reason", "x"]).code(1).stderr_has("the upgrade is committed");
    m.run(&["retry", "--from", step, "--reason", "x"]).code(1).stderr_has("the upgrade is committed");
    assert_eq!(m.journal(), journal);
    m.heal(&format!("{step}-Commit"));
    m.run(&["retry"]).code(0);
}

#[test]
fn retry_from_runs_a_step_and_everything_after_it_again() {
    let m = Machine::new();
    m.run(&["run", &m.plan(), "--through", "split"]).code(0);
    let from = "action:adv-early@upgrade";
    let retry = m.run(&["retry", "--from", from, "--reason", "the installer needs a clean run"]);
    retry.code(0).stdout_has(&format!("ExecuteSplit runs again from {from}: {from}, action:adv-late@upgrade"));
    for (step, times) in [
        (from, 2),
        ("action:adv-late@upgrade", 2),
        ("action:adv-early@production", 1),
        ("action:adv-late@production", 1),
        ("action:stop@upgrade", 1),
    ] {
        assert_eq!(count(&m, step, "ExecuteSplit") + count(&m, step, "Stop"), times, "{step}: {:?}", m.runs());
    }
    let retries = entries(&m, "retry");
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert_eq!(retries[0]["from"], from);
    assert_eq!(retries[0]["steps"], serde_json::json!([from, "action:adv-late@upgrade"]));
    assert_eq!(retries[0]["reason"], "the installer needs a clean run");
    let status = m.status();
    assert_eq!((&status["upgrade"], &status["operational"]), (&"Split".into(), &"Ready".into()), "{status:#}");
    m.run(&["log"]).code(0).stdout_has(&format!("retry of ExecuteSplit from {from}")).stdout_has("clean run");
}

#[test]
fn retry_from_refuses_platform_steps_and_what_would_repeat_one() {
    let m = Machine::new();
    m.fail("action:start@upgrade");
    m.run(&["run", &m.plan()]).code(1).stderr_has("Broken at step action:start@upgrade");
    let journal = m.journal();
    m.run(&["retry", "--from", "platform:merge", "--reason", "x"]).code(1).stderr_has("it is a platform step");
    m.run(&["retry", "--from", "action:save@production", "--reason", "x"])
        .code(1)
        .stderr_has("platform:merge depends on it, and the machine is past it");
    m.run(&["retry", "--from", "action:adv-late@upgrade", "--reason", "x"]).code(1).stderr_has("it has not run");
    m.run(&["retry", "--from", "service:AppServer@upgrade"]).code(2).stderr_has("--reason");
    assert_eq!(m.journal(), journal, "a refused repair writes nothing");

    // After the merge: from a step past the platform step, the rest runs again.
    m.heal("action:start@upgrade");
    m.run(&["retry", "--from", "service:AppServer@upgrade", "--reason", "restart it"]).code(0);
    assert_eq!(count(&m, "action:start@upgrade", "Start"), 2, "{:?}", m.runs());
    assert_eq!(count(&m, "action:save@production", "Backup"), 1, "before the merge: not again");
    m.run(&["status"]).code(0).stdout_has("Idle");
}

#[test]
fn retry_from_a_request_that_had_not_failed_goes_no_further_than_it() {
    // `duet run` stopped by Ctrl-C in ExecuteSplit's last step: Split, Ready, headed for finish.
    let m = Machine::new();
    let step = "action:adv-late@upgrade";
    std::fs::write(m.rec().join(format!("block-{step}")), "").expect("marker");
    let child = m.duet(&["run", &m.plan()]).spawn();
    let start = std::time::Instant::now();
    while !m.rec().join("blocked").exists() {
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "{step} never started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    while !String::from_utf8_lossy(&m.journal()).contains("SIGINT received") {
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "the signal was never journaled");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::fs::write(m.rec().join("go"), "").expect("go");
    assert_eq!(child.wait_with_output().expect("wait").status.code(), Some(130));
    std::fs::remove_file(m.rec().join(format!("block-{step}"))).expect("marker");

    let retry = m.run(&["retry", "--from", step, "--reason", "re-run the agent install"]);
    retry.code(0).stdout_has("`duet resume` carries on there");
    assert_eq!(count(&m, step, "ExecuteSplit"), 2, "{:?}", m.runs());
    let status = m.status();
    assert_eq!(
        (&status["upgrade"], &status["operational"]),
        (&"Split".into(), &"Ready".into()),
        "no merge: {status:#}"
    );
    m.run(&["resume"]).code(0);
    assert_eq!(m.status()["upgrade"], "Idle", "resume carried on to the goal");
}
