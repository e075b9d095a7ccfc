//! Whole outputs, as a user reads them: every line of stdout and stderr of the commands people
//! run most, compared exactly (through [`Run::normalized`] where a run prints a session id, a
//! temporary path or a measured duration). A change to any of these texts is a change to what
//! users see: it shows here, line by line.
//!
//! [`Run::normalized`]: crate::support::Run::normalized

use crate::machine::{INVENTORY, Machine};
use crate::support::{assert_text, duet, indoc};

const INVENTORY_320MA: &str = "plans/machines/320ma.yaml";

/// A plan whose requests are each one chain of steps (no two run at once), so the order of its
/// output is fixed: a readiness action, a stop action and two ordered services.
const ONE_CHAIN: &str = r"
    version: 1
    title: one chain
    disks: {system: [disk0, disk1], data: [disk2]}
    services:
      - AppServer
      - {name: W3SVC, after: [AppServer]}
    actions:
      - {id: ready, file: rec, control: readiness}
      - {id: stop, file: rec, control: stop}
    ";

#[test]
fn status_of_a_fresh_state_dir_says_how_to_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    duet(&["status", "--state-dir", &state.display().to_string()]).run().code(0).stderr("").stdout(&indoc(
        r"
        Fault Tolerant | Idle | Ready    Partner: OS Up
        Next: `duet readiness PLAN` or `duet split PLAN` builds the simulated machine (the built-in 320Ma, or `--inventory FILE`) and starts a session
        ",
    ));
    assert!(!state.exists(), "`duet status` only reads: it created {}", state.display());
}

#[test]
fn check_of_the_example_plans() {
    duet(&["check", "plans/quickstart.yaml"]).run().code(0).stderr("").stdout(&indoc(
        r"
        plans/quickstart.yaml: valid
        note: no --inventory given: disks, executables, services and event logs were not checked against a machine
        ",
    ));
    duet(&["check", "plans/quickstart.yaml", "--inventory", INVENTORY_320MA])
        .run()
        .code(0)
        .stderr("")
        .stdout("plans/quickstart.yaml: valid\n");
    // The site plan includes the vendor's template, whose disk selection it overrides.
    duet(&["check", "plans/site-db01.yaml", "--inventory", INVENTORY_320MA])
        .run()
        .code(0)
        .stdout("plans/site-db01.yaml: valid\n")
        .stderr(&indoc(
            r"
            duet::nesting::child-disks

              ☞ the disk selection in included plan `plans/vendor-sql.yaml` is ignored
                ╭─[plans/vendor-sql.yaml:11:1]
             10 │   directory and set the site's disks and staging directory there.
             11 │ disks:
                · ──┬──
                ·   ╰── ignored
             12 │   system: [disk0]
                ╰────
              help: only the top-level plan selects disks (guide 3-7); select them in `plans/site-db01.yaml`
            ",
        ));
}

#[test]
fn commands_that_need_a_session_are_refused_without_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state").display().to_string();
    let to_start = "start one with `duet split PLAN`; `duet readiness PLAN` checks the machine first";
    let to_run = "start one with `duet split PLAN` or `duet run PLAN`";
    for (command, help) in
        [("merge", to_start), ("commit", to_start), ("abort", to_start), ("finish", to_start), ("resume", to_run)]
    {
        duet(&[command, "--state-dir", &state])
            .run()
            .code(1)
            .stdout("")
            .stderr(&format!("error: cannot {command}: no upgrade session (state Idle)\n  help: {help}\n"));
    }
    duet(&["log", "--state-dir", &state]).run().normalized(dir.path()).code(1).stdout("").stderr(&indoc(
        r"
        error: no session and no readiness check yet in [DIR]/state
          help: `duet readiness PLAN` or `duet split PLAN` starts one
        ",
    ));
    assert!(!dir.path().join("state").exists(), "a refused command changes nothing");
}

#[test]
fn run_through_split_prints_each_request_each_step_and_the_status_bar() {
    let m = Machine::with(&indoc(ONE_CHAIN), INVENTORY);
    let run = m.run(&["run", &m.plan(), "--through", "split"]).normalized(m.dir.path());
    run.code(0).stderr("").stdout(&indoc(
        r"
        session [ID]: [DIR]/plans/plan.yaml on sim (Express5800/320Ma)
        CheckReadiness (Idle)
          ok      probe:readiness                    readiness check passed  [T]
                  the plan binds to Express5800/320Ma (sim): system disks disk0, disk1; data disks disk2, disk3
          ok      probe:binding                      plan bound to the machine  [T]
          ok      action:ready@production            exit value 0  [T]
        PrepareSplit (PrepareSplit)
          ok      probe:readiness                    readiness check passed  [T]
        ExecuteSplit (Split)
          ..      platform:split
                  split in progress (simulated, 0s)
                  split complete
          ok      platform:split                     split done  [T]
          ok      action:stop@upgrade                exit value 0  [T]
          ok      service:W3SVC@upgrade              startup type automatic saved, set to disabled; stopped  [T]
          ok      service:AppServer@upgrade          startup type manual saved, set to disabled; stopped  [T]
        Production Side | Split | Ready    Partner: OS Up
        ",
    ));
    m.run(&["status"]).normalized(m.dir.path()).code(0).stderr("").stdout(&indoc(
        r"
        Production Side | Split | Ready    Partner: OS Up
        Plan: [DIR]/plans/plan.yaml (session [ID])
        Services:
                     Production Side         Upgrade Side
          AppServer  running, manual         stopped, disabled
          W3SVC      running, automatic      stopped, disabled
        Next: install the software on the Upgrade Side, then `duet merge`; or `duet abort`
        ",
    ));
}

#[test]
fn a_failed_step_shows_its_output_and_what_to_do_next() {
    let m = Machine::with(&indoc(ONE_CHAIN), INVENTORY);
    m.fail("action:stop@upgrade");
    let run = m.run(&["split", &m.plan()]).normalized(m.dir.path());
    run.code(1).stderr(&indoc(
        r"
        error: ExecuteSplit is Broken at step action:stop@upgrade: Custom action failed with exit value 3
          help: check its output (`duet log`) and correct the problem (action `stop`), then `duet retry`; or `duet abort`
        ",
    ));
    run.stdout(&indoc(
        r"
        session [ID]: [DIR]/plans/plan.yaml on sim (Express5800/320Ma)
        CheckReadiness (Idle)
          ok      probe:readiness                    readiness check passed  [T]
                  the plan binds to Express5800/320Ma (sim): system disks disk0, disk1; data disks disk2, disk3
          ok      probe:binding                      plan bound to the machine  [T]
          ok      action:ready@production            exit value 0  [T]
        PrepareSplit (PrepareSplit)
          ok      probe:readiness                    readiness check passed  [T]
        ExecuteSplit (Split)
          ..      platform:split
                  split in progress (simulated, 0s)
                  split complete
          ok      platform:split                     split done  [T]
          FAILED  action:stop@upgrade                Custom action failed with exit value 3
                  stderr: failing as asked
                  help: check its output (`duet log`) and correct the problem (action `stop`)
        ExecuteSplit is Broken: action:stop@upgrade failed: Custom action failed with exit value 3
        Production Side | Split | Broken    Partner: OS Up
        ",
    ));
    // The Upgrade Side's services were never reached: the stop action before them failed.
    m.run(&["status"]).normalized(m.dir.path()).code(0).stderr("").stdout(&indoc(
        r"
        Production Side | Split | Broken    Partner: OS Up
        Plan: [DIR]/plans/plan.yaml (session [ID])
        Broken: ExecuteSplit at action:stop@upgrade: Custom action failed with exit value 3
          stderr: failing as asked
        Services:
                     Production Side         Upgrade Side
          AppServer  running, manual         running, manual
          W3SVC      running, automatic      running, automatic
        Next: correct the problem (`duet log`), then `duet retry`; or `duet abort`
        ",
    ));
}

/// The quickstart's two sides run their last steps of ExecuteSplit at the same time, so their
/// lines interleave either way: each side's are compared in their order.
#[test]
fn run_of_the_quickstart_through_split_on_the_sim() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state").display().to_string();
    let run = duet(&["run", "plans/quickstart.yaml", "--through", "split", "--state-dir", &state])
        .run()
        .normalized(dir.path());
    run.code(0).stderr("");
    let (upgrade, rest) = upgrade_side_lines(&run.stdout);
    assert_text(
        "the Upgrade Side's lines of stdout",
        &indoc(
            r"
              ok      action:app-stop@upgrade            exit value 0  [T]
              ok      service:W3SVC@upgrade              startup type automatic saved, set to disabled; stopped  [T]
              ok      service:AppServer@upgrade          startup type manual saved, set to disabled; stopped  [T]
              ok      action:trace@upgrade               exit value 0  [T]
              ok      action:notify@upgrade              exit value 0  [T]
            ",
        ),
        &upgrade,
    );
    assert_text(
        "the other lines of stdout (duet's and the Production Side's)",
        &indoc(
            r"
            session [ID]: plans/quickstart.yaml on sim (Express5800/320Ma)
            CheckReadiness (Idle)
              ok      probe:readiness                    readiness check passed  [T]
                      the plan binds to Express5800/320Ma (sim): system disks disk0, disk1; data disks disk2, disk3
              ok      probe:binding                      plan bound to the machine  [T]
              ok      action:trace@production            exit value 0  [T]
              ok      action:check-free-space@production exit value 0  [T]
              ok      action:notify@production           exit value 0  [T]
            PrepareSplit (PrepareSplit)
              ok      probe:readiness                    readiness check passed  [T]
              ok      action:trace@production            exit value 0  [T]
              ok      action:notify@production           exit value 0  [T]
            ExecuteSplit (Split)
              ..      platform:split
                      split in progress (simulated, 200ms)
                      split complete
              ok      platform:split                     split done  [T]
              ok      action:trace@production            exit value 0  [T]
              ok      action:notify@production           exit value 0  [T]
            Production Side | Split | Ready    Partner: OS Up
            ",
        ),
        &rest,
    );
}

/// The lines of `text` about the Upgrade Side's steps, and the others, each in their order.
fn upgrade_side_lines(text: &str) -> (String, String) {
    let (upgrade, rest): (Vec<&str>, Vec<&str>) = text.split_inclusive('\n').partition(|l| l.contains("@upgrade"));
    (upgrade.concat(), rest.concat())
}
