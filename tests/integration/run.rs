//! The runtime through the real binary: the step order and environment of every request,
//! services, aborts, refusals, retries, timeouts, output, platform faults, snapshots, logs.

use crate::machine::{INVENTORY, Machine, PLAN, make_executable};
use crate::support::{duet, indoc, repo};

/// What each side's actions saw in a full uninterrupted cycle:
/// `step|side|state|request|hw_split|attempt|args`.
const PRODUCTION: &[&str] = &[
    "action:adv-early@production|Production|Idle|CheckReadiness|No|1|",
    "action:ready@production|Production|Idle|CheckReadiness|No|1|",
    "action:adv-late@production|Production|Idle|CheckReadiness|No|1|",
    "action:adv-early@production|Production|PrepareSplit|PrepareSplit|No|1|",
    "action:adv-late@production|Production|PrepareSplit|PrepareSplit|No|1|",
    "action:adv-early@production|Production|Split|ExecuteSplit|Yes|1|",
    "action:adv-late@production|Production|Split|ExecuteSplit|Yes|1|",
    "action:adv-early@production|Production|PrepareMerge|PrepareMerge|Yes|1|",
    "action:adv-late@production|Production|PrepareMerge|PrepareMerge|Yes|1|",
    "action:stop-early@production|Production|Merge|Stop|Yes|1|stop Production",
    "action:stop@production|Production|Merge|Stop|Yes|1|",
    "action:save@production|Production|Merge|Backup|Yes|1|",
];

const UPGRADE: &[&str] = &[
    "action:stop-early@upgrade|Upgrade|Split|Stop|Yes|1|stop Upgrade",
    "action:stop@upgrade|Upgrade|Split|Stop|Yes|1|",
    "action:adv-early@upgrade|Upgrade|Split|ExecuteSplit|Yes|1|",
    "action:adv-late@upgrade|Upgrade|Split|ExecuteSplit|Yes|1|",
    "action:adv-early@upgrade|Upgrade|PrepareMerge|PrepareMerge|Yes|1|",
    "action:adv-late@upgrade|Upgrade|PrepareMerge|PrepareMerge|Yes|1|",
    "action:start@upgrade|Upgrade|Merge|Start|No|1|Start 100%",
    "action:adv-early@upgrade|Upgrade|Merge|ExecuteMerge|No|1|",
    "action:adv-late@upgrade|Upgrade|Merge|ExecuteMerge|No|1|",
    "action:adv-early@upgrade|Upgrade|Commit|Commit|No|1|",
    "action:adv-late@upgrade|Upgrade|Commit|Commit|No|1|",
];

#[test]
fn a_full_cycle_runs_every_request_in_order_with_the_guides_environment() {
    let m = Machine::new();
    let r = m.run(&["run", &m.plan()]);
    r.code(0);
    for request in
        ["CheckReadiness (Idle)", "ExecuteSplit (Split)", "ExecuteMerge (Merge)", "Commit (Commit)", "Finish (Idle)"]
    {
        r.stdout_has(request);
    }
    r.stdout_has("  ok      platform:split").stdout_has("Fault Tolerant | Idle | Ready    Partner: OS Up");
    assert_eq!(m.recorded("Production"), PRODUCTION);
    assert_eq!(m.recorded("Upgrade"), UPGRADE);
    let status = m.status();
    assert_eq!(status["upgrade"], "Idle");
    assert_eq!(status["session"], serde_json::Value::Null);
    assert_eq!(status["hardware"], "FaultTolerant");
    // The finished session is kept, with its journal and every action's output.
    let history: Vec<_> = std::fs::read_dir(m.state().join("history")).unwrap().flatten().collect();
    assert_eq!(history.len(), 1);
    let stdout = history[0].path().join("output/ExecuteMerge/action-start@upgrade.1.stdout");
    assert_eq!(std::fs::read_to_string(stdout).unwrap(), "ok action:start@upgrade\n");
}

#[test]
fn services_are_saved_disabled_and_restored_on_the_upgrade_side_only() {
    let m = Machine::new();
    let original = [("AppServer", ("manual", true)), ("W3SVC", ("automatic", true)), ("Reports", ("manual", false))];
    let production_startups = |m: &Machine| {
        for (name, (startup, _)) in original {
            assert_eq!(
                m.service(name, "production").0,
                startup,
                "{name}: the Production Side's startup type never changes"
            );
        }
    };
    m.run(&["split", &m.plan()]).code(0).stdout_has("Production Side | Split | Ready    Partner: OS Up");
    production_startups(&m);
    for (name, (_, running)) in original {
        assert_eq!(
            m.service(name, "upgrade"),
            ("disabled".to_owned(), false),
            "{name} on the Upgrade Side after split"
        );
        assert_eq!(m.service(name, "production").1, running, "{name} keeps running on the Production Side");
    }
    let system = m.upgrade_log("System");
    assert!(
        system.contains("The start type of the W3SVC service was changed from auto start to disabled."),
        "{system}"
    );
    assert!(system.contains("The W3SVC service entered the stopped state."), "{system}");

    m.run(&["merge"]).code(0);
    production_startups(&m);
    for (name, (startup, running)) in original {
        assert_eq!(m.service(name, "upgrade"), (startup.to_owned(), running), "{name} restored on the Upgrade Side");
        assert!(!m.service(name, "production").1, "{name} stopped on the Production Side by the merge");
    }
    let production_system =
        std::fs::read_to_string(m.state().join("sim/sides/production/logs/System.log")).expect("production log");
    assert!(
        !production_system.contains("start type"),
        "no startup type changed on the Production Side:\n{production_system}"
    );

    m.run(&["commit"]).code(0);
    for (name, (startup, running)) in original {
        assert_eq!(m.service(name, "production"), (startup.to_owned(), running), "{name} after the commit");
    }
    m.run(&["finish"]).code(0);
    assert_eq!(m.status()["upgrade"], "Idle");
}

/// How a test brings the session to the state an abort starts from.
struct AbortCase {
    name: &'static str,
    fail: Option<&'static str>,
    commands: &'static [&'static str],
    state: &'static str,
    operational: &'static str,
    /// The abort request that runs.
    request: &'static str,
}

const ABORTS: &[AbortCase] = &[
    AbortCase {
        name: "Prepare Split, Broken",
        fail: Some("action:adv-late@production-PrepareSplit"),
        commands: &["split"],
        state: "PrepareSplit",
        operational: "Broken",
        request: "AbortFromSplit",
    },
    AbortCase {
        name: "Split, Ready",
        fail: None,
        commands: &["split"],
        state: "Split",
        operational: "Ready",
        request: "AbortFromSplit",
    },
    AbortCase {
        name: "Split, Broken",
        fail: Some("action:stop@upgrade"),
        commands: &["split"],
        state: "Split",
        operational: "Broken",
        request: "AbortFromSplit",
    },
    AbortCase {
        name: "Prepare Merge, Broken",
        fail: Some("action:adv-early@upgrade-PrepareMerge"),
        commands: &["split", "merge"],
        state: "PrepareMerge",
        operational: "Broken",
        request: "AbortFromSplit",
    },
    AbortCase {
        name: "Merge, Broken before the hardware merge",
        fail: Some("action:save@production"),
        commands: &["split", "merge"],
        state: "Merge",
        operational: "Broken",
        request: "AbortFromMerge",
    },
    AbortCase {
        name: "Merge, Ready",
        fail: None,
        commands: &["split", "merge"],
        state: "Merge",
        operational: "Ready",
        request: "AbortFromMerge",
    },
];

#[test]
fn abort_from_every_allowed_state_keeps_every_upgrade_side_log_line() {
    for case in ABORTS {
        let m = Machine::new();
        if let Some(step) = case.fail {
            m.fail(step);
        }
        for (i, command) in case.commands.iter().enumerate() {
            let last = i + 1 == case.commands.len();
            let plan = m.plan();
            let args: Vec<&str> = if *command == "split" { vec!["split", &plan] } else { vec![command] };
            m.run(&args).code(i32::from(last && case.fail.is_some()));
        }
        let status = m.status();
        assert_eq!(
            (status["upgrade"].as_str(), status["operational"].as_str()),
            (Some(case.state), Some(case.operational)),
            "{}",
            case.name
        );
        let session = m.session();
        let before: Vec<String> = ["Application", "System", "Security"].iter().map(|l| m.upgrade_log(l)).collect();
        assert!(
            before[0].lines().count() > 1 || case.state == "PrepareSplit",
            "{}: the Upgrade Side logged something",
            case.name
        );

        let r = m.run(&["abort"]);
        r.code(0).stdout_has(&format!("{} (Abort)", case.request)).stdout_has("evidence:upgrade");
        let status = m.status();
        assert_eq!(
            (status["upgrade"].as_str(), status["operational"].as_str()),
            (Some("Abort"), Some("Ready")),
            "{}",
            case.name
        );
        let evidence = m.state().join(format!("sim/machine/srv/data/upgrade-logs/{session}/evidence"));
        for (log, content) in ["Application", "System", "Security"].iter().zip(&before) {
            let saved = std::fs::read_to_string(evidence.join(format!("upgrade-{log}.log")))
                .unwrap_or_else(|e| panic!("{}: evidence of {log}: {e}", case.name));
            assert_eq!(&saved, content, "{}: the {log} log of the Upgrade Side is kept whole", case.name);
        }
        // What the abort's actions saw, in order: start actions (after a merge), then the
        // advanced ones, all on the Production Side, after the hardware abort for the latter.
        let production = m.recorded("Production");
        let abort: Vec<&str> =
            production.iter().map(String::as_str).filter(|l| l.split('|').nth(2) == Some("Abort")).collect();
        let mut expected = vec![
            "action:adv-early@production|Production|Abort|Abort|No|1|",
            "action:adv-late@production|Production|Abort|Abort|No|1|",
        ];
        if case.request == "AbortFromMerge" {
            expected.insert(0, "action:start@production|Production|Abort|Start|No|1|Start 100%");
            assert!(m.service("W3SVC", "production").1, "{}: automatic services come back", case.name);
        }
        assert_eq!(abort, expected, "{}", case.name);
        m.run(&["finish"]).code(0);
        let status = m.status();
        assert_eq!(
            (status["upgrade"].as_str(), status["hardware"].as_str()),
            (Some("Idle"), Some("FaultTolerant")),
            "{}",
            case.name
        );
        let sim: serde_json::Value = serde_json::from_str(&m.sim_state()).unwrap();
        for (name, startup) in [("AppServer", "manual"), ("W3SVC", "automatic"), ("Reports", "manual")] {
            assert_eq!(sim["production"][name]["startup"], startup, "{}: {name}", case.name);
            assert_eq!(sim["upgrade"][name], sim["production"][name], "{}: {name} mirrored again", case.name);
        }
    }
}

#[test]
fn refused_requests_change_nothing() {
    let m = Machine::new();
    let plan = m.plan();
    m.run(&["readiness", &plan]).code(0);
    let inventory = || std::fs::read_to_string(m.state().join("sim/inventory.yaml")).unwrap();
    let built = inventory();
    m.write("inventory.yaml", &INVENTORY.replace("remote_desktop: true", "remote_desktop: false"));
    m.run(&["merge"]).code(1).stderr_has("cannot merge: no upgrade session (state Idle)");
    m.run(&["status"]).code(1).stderr_has("was built from another inventory than");
    assert_eq!(inventory(), built, "a refused command does not rebuild the machine");
    m.write("inventory.yaml", INVENTORY);
    for command in ["merge", "commit", "abort", "finish", "retry", "resume"] {
        m.run(&[command])
            .code(1)
            .stderr_has(&format!("cannot {command}: no upgrade session (state Idle)"))
            .stderr_has("help: ");
    }
    m.run(&["split", &plan]).code(0);
    let other = repo().join("plans/quickstart.yaml").display().to_string();
    let cases: &[(&[&str], &str)] = &[
        (&["split", &plan], "cannot split: the session is in state Split (Ready)"),
        (&["commit"], "cannot commit: the session is in state Split (Ready)"),
        (&["finish"], "cannot finish: the session is in state Split (Ready)"),
        (&["retry"], "nothing to retry: the session is in state Split (Ready)"),
        (&["resume"], "nothing to resume: the session is in state Split (Ready)"),
        (&["readiness", &plan], "cannot run a readiness check: the session is in state Split (Ready)"),
        (&["run", &other], "in progress runs"),
        (&["run", "no-such-plan.yaml"], "in progress runs"),
    ];
    for (args, message) in cases {
        let (journal, sim) = (m.journal(), m.sim_state());
        m.run(args).code(1).stderr_has(message).stderr_has("help: ");
        assert_eq!((m.journal(), m.sim_state()), (journal, sim), "{args:?} changed nothing");
    }
    let journal = m.journal();
    m.run(&["run", &plan, "--through", "split"]).code(0).stdout_has("nothing to run: the session is in state Split");
    assert_eq!(m.journal(), journal);
    m.run(&["merge"]).code(0);
    m.run(&["merge"]).code(1).stderr_has("cannot merge: the session is in state Merge (Ready)");
    m.run(&["commit"]).code(0);
    let (journal, sim) = (m.journal(), m.sim_state());
    m.run(&["abort"]).code(1).stderr_has("cannot abort: the upgrade is committed, and a commit cannot be undone");
    assert_eq!((m.journal(), m.sim_state()), (journal, sim));
    // Usage errors are exit 2.
    m.run(&["merge", "--no-such-flag"]).code(2);
    m.run(&["run", &plan, "--through", "sideways"]).code(2);
}

#[test]
fn a_broken_request_refuses_the_next_one_and_retry_runs_only_what_was_not_done() {
    let m = Machine::new();
    m.fail("action:stop@upgrade");
    let r = m.run(&["run", &m.plan()]);
    r.code(1).stdout_has("Custom action failed with exit value 3").stdout_has("Production Side | Split | Broken");
    let status = m.status();
    assert_eq!(status["operational"], "Broken");
    assert_eq!(status["broken"]["step"], "action:stop@upgrade");
    assert_eq!(status["broken"]["message"], "Custom action failed with exit value 3");
    m.run(&["log"]).code(0).stdout_has("failing as asked");
    let (journal, sim) = (m.journal(), m.sim_state());
    m.run(&["merge"])
        .code(1)
        .stderr_has("ExecuteSplit is Broken at step action:stop@upgrade: Custom action failed with exit value 3");
    assert_eq!((m.journal(), m.sim_state()), (journal, sim));

    m.heal("action:stop@upgrade");
    m.run(&["retry"]).code(0).stdout_has("Fault Tolerant | Idle | Ready");
    let mut expected_upgrade: Vec<String> = UPGRADE.iter().map(|s| (*s).to_owned()).collect();
    expected_upgrade.insert(2, "action:stop@upgrade|Upgrade|Split|Stop|Yes|2|".to_owned());
    assert_eq!(
        m.recorded("Upgrade"),
        expected_upgrade,
        "the failed step ran again, then what followed; nothing done twice"
    );
    assert_eq!(m.recorded("Production"), PRODUCTION);
    m.run(&["log", "--format", "json"]);
}

#[test]
fn a_failed_readiness_check_splits_nothing_and_names_the_guides_problem() {
    let inventory = INVENTORY.replace(
        "{id: disk1, location: internal, rdr: true, synced: true}",
        "{id: disk1, location: internal, rdr: true, synced: false}",
    );
    let inventory = inventory.replace("address: 192.0.2.10", "dhcp: true");
    let m = Machine::with(PLAN, &inventory);
    let r = m.run(&["split", &m.plan()]);
    r.code(1).stdout_has("readiness check failed: RDR disk is not duplexed (disk1)");
    r.stdout_has("warning: Active Upgrade may fail. Check DHCP server. (team0)");
    r.stdout_has("nothing was split; the state stays Idle");
    let status = m.status();
    assert_eq!((status["upgrade"].as_str(), status["hardware"].as_str()), (Some("Idle"), Some("FaultTolerant")));
    assert_eq!(status["session"], serde_json::Value::Null);
    assert!(m.recorded("Upgrade").is_empty());
    m.run(&["log"]).code(0).stdout_has("RDR disk is not duplexed (disk1)");
    m.run(&["readiness", &m.plan()]).code(1).stdout_has("RDR disk is not duplexed");
}

#[test]
fn a_platform_operation_that_fails_once_is_broken_then_retried() {
    let inventory = format!("{INVENTORY}  faults:\n    - {{op: split, fail_times: 1}}\n");
    let m = Machine::with(PLAN, &inventory);
    m.run(&["split", &m.plan()]).code(1).stdout_has("the split failed (simulated fault, failure 1 of 1)");
    assert_eq!(m.status()["broken"]["step"], "platform:split");
    assert_eq!(m.status()["hardware"], "FaultTolerant");
    m.run(&["retry"]).code(0).stdout_has("Production Side | Split | Ready");
}

#[test]
fn a_service_that_will_not_stop_times_out() {
    let inventory = format!("{INVENTORY}  faults:\n    - {{service: W3SVC, on: stop, hang: true}}\n");
    let m = Machine::with(PLAN, &inventory);
    let r = m.run(&["split", &m.plan(), "--service-timeout", "300ms"]);
    r.code(1).stdout_has("stopping W3SVC did not finish within 300ms");
    assert_eq!(m.status()["broken"]["step"], "service:W3SVC@upgrade");
    // AppServer stops after W3SVC (W3SVC is `after` it), so it was never stopped.
    assert!(m.service("AppServer", "upgrade").1);
    m.run(&["abort"]).code(0);
}

#[test]
fn a_hung_or_crashed_upgrade_side_is_reported_and_its_dumps_are_kept() {
    let hung = format!("{INVENTORY}  faults:\n    - {{side: upgrade, partner_state: \"Hung: OS Booting\"}}\n");
    let m = Machine::with(PLAN, &hung);
    m.run(&["split", &m.plan()])
        .code(1)
        .stdout_has("the Upgrade Side is not responding (partner state: Hung: OS Booting)")
        .stdout_has("Production Side | Split | Broken    Partner: Hung: OS Booting");
    m.run(&["abort"]).code(0);

    let crashed = format!(
        "{INVENTORY}  faults:\n    - {{side: upgrade, partner_state: \"State Sensitive Recovery: NMI issued\"}}\n"
    );
    let m = Machine::with(PLAN, &crashed);
    m.run(&["split", &m.plan()]).code(1);
    let session = m.session();
    m.run(&["abort"]).code(0).stdout_has("Upgrade Side dump file copied to");
    let dump = m.state().join(format!("sim/machine/srv/data/upgrade-logs/{session}/evidence/Memory1.dmp"));
    assert!(dump.is_file(), "{} kept", dump.display());
}

#[test]
fn the_merge_readiness_check_refuses_an_upgrade_side_that_is_not_up() {
    // Hung only after the split's own steps: no actions or services on the Upgrade Side.
    let plan = "version: 1\nactions:\n  - {id: a, file: rec, control: start}\n";
    let hung = format!("{INVENTORY}  faults:\n    - {{side: upgrade, partner_state: \"OS Booting\"}}\n");
    let m = Machine::with(plan, &hung);
    m.run(&["split", &m.plan()]).code(0).stdout_has("Partner: OS Booting");
    m.run(&["merge"])
        .code(1)
        .stdout_has("merge readiness check failed: the Upgrade Side is not up (partner state: OS Booting)");
    assert_eq!(m.status()["upgrade"], "PrepareMerge");
}

#[test]
fn a_timed_out_action_is_killed_with_its_whole_process_tree() {
    let plan = indoc(
        r"
        version: 1
        actions:
          - {id: tree, file: tree, control: readiness, timeout: 1s}
        ",
    );
    let m = Machine::with(&plan, INVENTORY);
    m.write("plans/tree", "#!/bin/sh\nsleep 300 &\necho $! > \"$REC/child\"\necho $$ > \"$REC/parent\"\nsleep 300\n");
    make_executable(&m.path("plans/tree"));
    m.run(&["readiness", &m.plan()])
        .code(1)
        .stdout_has("Custom action timed out after 1s; it was stopped with its whole process tree");
    for who in ["child", "parent"] {
        let pid = std::fs::read_to_string(m.rec().join(who)).unwrap().trim().to_owned();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()).unwrap_or("gone");
        assert!(matches!(state, "gone" | "Z" | "X"), "the {who} ({pid}) is still alive: {stat}");
    }
}

#[test]
fn an_action_printing_a_gigabyte_stays_within_the_memory_bound() {
    let plan = indoc(
        r"
        version: 1
        actions:
          - {id: loud, file: /usr/bin/head, args: [-c, '1073741824', /dev/zero], control: readiness}
        ",
    );
    let m = Machine::with(&plan, INVENTORY);
    m.run(&["readiness", &m.plan()]).code(0);
    let file = m.state().join("readiness/output/CheckReadiness/action-loud@production.1.stdout");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 1 << 30, "the whole output is on disk");
    std::fs::remove_file(&file).unwrap();
    let log = m.run(&["log", "--format", "json"]).code(0).json();
    let entries = log.as_array().expect("entries");
    let peak = entries.iter().filter_map(|e| e["detail"]["peak_rss_kib"].as_u64()).max().expect("peak RSS recorded");
    assert!(peak < 100 * 1024, "duet's peak RSS was {peak} KiB");
    let step = entries
        .iter()
        .find(|e| e["detail"]["output"]["stdout"]["bytes"].as_u64() == Some(1 << 30))
        .expect("output recorded");
    assert_eq!(step["detail"]["output"]["stdout"]["tail"].as_str().unwrap().len(), 16 * 1024);
}

#[test]
fn the_session_runs_its_snapshot_and_status_says_the_plan_changed() {
    let m = Machine::new();
    m.run(&["split", &m.plan()]).code(0);
    m.write("plans/plan.yaml", &PLAN.replace("\"100%%\"", "\"edited\""));
    let status = m.status();
    assert_eq!(status["changed_files"].as_array().unwrap().len(), 1, "{status:#}");
    assert_eq!(status["changed_files"][0]["change"], "modified");
    m.run(&["status"])
        .code(0)
        .stdout_has("was modified since the session started; the session keeps running its snapshot");
    m.run(&["merge"]).code(0);
    assert!(m.recorded("Upgrade").contains(&"action:start@upgrade|Upgrade|Merge|Start|No|1|Start 100%".to_owned()));
    // A plan that does not compile any more does not matter either.
    m.write("plans/plan.yaml", "version: 1\nbogus: [");
    m.run(&["commit"]).code(0);
    std::fs::remove_file(m.path("plans/plan.yaml")).unwrap();
    assert_eq!(m.status()["changed_files"][0]["change"], "deleted");
}

#[test]
fn the_activity_log_reads_as_text_json_and_the_guides_xml() {
    let m = Machine::new();
    m.run(&["run", &m.plan(), "--through", "merge"]).code(0);
    let text = m.run(&["log"]).code(0).stdout.clone();
    assert!(text.contains("[ExecuteMerge] action:start@upgrade: exit value 0"), "{text}");
    let json = m.run(&["log", "--format", "json"]).code(0).json();
    let entries = json.as_array().unwrap();
    assert!(entries.iter().all(|e| e["severity"].is_string() && e["time"].is_string()));
    assert!(entries.iter().any(|e| e["severity"] == "Success" && e["parent"] == "ExecuteSplit"));
    let xml = m.run(&["log", "--format", "xml"]).code(0).stdout.clone();
    assert!(xml.starts_with("<?xml") && xml.trim_end().ends_with("</ActivityLog>"), "{xml}");
    assert_eq!(xml.matches("<Entry").count(), entries.len());
    m.run(&["run", &m.plan()]).code(0).stdout_has("continuing session ");
    let id = std::fs::read_dir(m.state().join("history")).unwrap().flatten().next().unwrap().file_name();
    m.run(&["log", "--session", id.to_str().unwrap()]).code(0).stdout_has("Finish");
    m.run(&["log", "--session", "../etc"]).code(1).stderr_has("is not a session id");
    m.run(&["log", "--session", "nope"]).code(1).stderr_has("no session `nope`");
}

#[test]
fn every_shipped_plan_rehearses_on_the_built_in_machine() {
    for plan in ["plans/quickstart.yaml", "plans/site-db01.yaml", "plans/vendor-sql.yaml"] {
        let state = tempfile::tempdir().unwrap();
        let state_dir = state.path().display().to_string();
        let r = duet(&["run", plan, "--state-dir", &state_dir]).run();
        r.code(0).stdout_has("Finish (Idle)").stdout_has("Fault Tolerant | Idle | Ready");
        assert!(repo().join(plan).is_file());
    }
}

#[test]
fn a_different_inventory_is_refused_while_a_session_runs() {
    let m = Machine::new();
    m.run(&["split", &m.plan()]).code(0);
    m.write("inventory.yaml", &INVENTORY.replace("remote_desktop: true", "remote_desktop: false"));
    m.run(&["merge"]).code(1).stderr_has("was built from another inventory than");
    m.write("inventory.yaml", "version: 1\nmodel: [");
    let r = m.run(&["status"]);
    r.code(1);
}

#[test]
fn without_a_staging_dir_abort_evidence_goes_to_the_session() {
    let plan = PLAN.replace("logs:\n  staging_dir: /srv/data/upgrade-logs\n  backup: [Application, System]\n", "");
    let m = Machine::with(&plan, INVENTORY);
    m.run(&["split", &m.plan()]).code(0);
    let before = m.upgrade_log("Application");
    m.run(&["abort"]).code(0);
    let saved = std::fs::read_to_string(m.state().join("session/evidence/upgrade-Application.log")).unwrap();
    assert_eq!(saved, before);
    assert_ne!(m.upgrade_log("Application"), before, "the abort really overwrote the Upgrade Side's log");
    m.run(&["finish"]).code(0);
    let history = std::fs::read_dir(m.state().join("history")).unwrap().flatten().next().unwrap().path();
    assert_eq!(std::fs::read_to_string(history.join("evidence/upgrade-Application.log")).unwrap(), before);
}

#[test]
fn resume_stops_what_a_killed_attempt_left_running_before_it_runs_the_step_again() {
    let m = Machine::new();
    let step = "action:adv-late@upgrade";
    let orphan = m.kill_inside(step, &["split", &m.plan()]);
    assert!(std::path::Path::new(&format!("/proc/{orphan}")).exists(), "the action outlived duet");
    let r = m.run(&["resume"]);
    r.code(0).stdout_has(&format!("attempt 1 of {step} outlived the duet that started it: stopped its processes"));
    r.stdout_has(&orphan);
    let stat = std::fs::read_to_string(format!("/proc/{orphan}/stat")).unwrap_or_default();
    assert!(stat.is_empty() || stat.contains(") Z"), "the leftover {orphan} was stopped: {stat}");
    let attempts: Vec<String> = m.recorded("Upgrade").into_iter().filter(|l| l.starts_with(step)).collect();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(attempts[1].contains("|2|"), "{attempts:?}");
}

#[test]
fn read_only_and_refused_commands_create_nothing() {
    let m = Machine::new();
    for args in [&["merge"][..], &["abort"], &["resume"], &["retry"]] {
        m.run(args).code(1).stderr_has("no upgrade session (state Idle)");
    }
    m.run(&["status"]).code(0).stdout_has("Fault Tolerant | Idle | Ready").stdout_has("builds the simulated machine");
    m.run(&["log"]).code(1).stderr_has("no session and no readiness check yet");
    assert!(!m.state().exists(), "nothing was created in {}", m.state().display());
    // A state directory that is a file is named as such, by every command.
    std::fs::write(m.state(), "not a directory").unwrap();
    for args in [&["status"][..], &["log"], &["merge"], &["readiness", &m.plan()]] {
        m.run(args).code(1).stderr_has("is not a directory").stderr_has("--state-dir DIR");
    }
}

#[test]
fn a_damaged_state_directory_is_refused_not_rebuilt() {
    let m = Machine::new();
    m.run(&["split", &m.plan()]).code(0);
    let logs = m.upgrade_log("Application");
    std::fs::remove_file(m.state().join("sim/state.json")).unwrap();
    m.run(&["status"]).code(1).stderr_has("sim/state.json is missing, and a session is in progress on it");
    m.run(&["merge"]).code(1).stderr_has("is missing, and a session is in progress on it");
    assert_eq!(m.upgrade_log("Application"), logs, "the machine's logs were not rebuilt away");

    let m = Machine::new();
    m.run(&["split", &m.plan()]).code(0);
    std::fs::write(m.state().join("session/journal"), "duet-journal 1\n").unwrap();
    for args in [&["merge"][..], &["status"], &["log"]] {
        m.run(args).code(1).stderr_has("the journal holds no session (its first record is not `begin`)");
    }
}

#[test]
fn abort_after_a_crash_stops_the_abandoned_action_and_trusts_the_machine() {
    let m = Machine::new();
    let step = "action:adv-late@upgrade";
    let orphan = m.kill_inside(step, &["split", &m.plan()]);
    m.run(&["abort"]).code(0).stdout_has("outlived the duet that started it").stdout_has("AbortFromSplit (Abort)");
    let stat = std::fs::read_to_string(format!("/proc/{orphan}/stat")).unwrap_or_default();
    assert!(stat.is_empty() || stat.contains(") Z"), "the abandoned action {orphan} was stopped: {stat}");

    // The machine merged, but duet died before its journal said so: the abort must revert,
    // though no step of the merge had touched the Production Side.
    let m = Machine::with("version: 1\nactions:\n  - {id: start, file: rec, control: start}\n", INVENTORY);
    m.run(&["split", &m.plan()]).code(0);
    m.fail("action:start@upgrade");
    m.run(&["merge"]).code(1);
    let state = m.sim_state().replace("\"phase\": \"split\"", "\"phase\": \"merged\"");
    assert!(state.contains("merged"));
    std::fs::write(m.state().join("sim/state.json"), state).unwrap();
    // Forget the merge in the journal: cut it back to before `platform:merge` finished.
    let journal = String::from_utf8(m.journal()).unwrap();
    let cut = journal.find("\"step\":\"platform:merge\",\"attempt\":1,\"result\"").expect("merge recorded");
    let line_start = journal[..cut].rfind('\n').unwrap() + 1;
    std::fs::write(m.state().join("session/journal"), &journal[..line_start]).unwrap();
    m.run(&["abort"]).code(0).stdout_has("the machine is merged").stdout_has("AbortFromMerge (Abort)");
}

#[test]
fn an_environment_variable_that_is_not_utf8_does_not_stop_an_upgrade() {
    use std::os::unix::ffi::OsStrExt as _;
    let m = Machine::new();
    let bad = std::ffi::OsStr::from_bytes(b"\xff\xfe");
    m.duet(&["run", &m.plan()]).env("DUET_TEST_NOT_UTF8", bad).run().code(0);
    assert_eq!(m.recorded("Upgrade"), UPGRADE);
}

#[test]
fn the_log_of_a_finished_session_is_still_shown() {
    let m = Machine::new();
    m.run(&["readiness", &m.plan()]).code(0);
    m.run(&["run", &m.plan()]).code(0);
    m.run(&["log"]).code(0).stdout_has("Finish completed: Ready");
}

#[test]
fn a_failure_duet_died_before_recording_as_broken_is_not_run_again_by_resume() {
    let m = Machine::new();
    m.fail("action:stop@upgrade");
    m.run(&["split", &m.plan()]).code(1);
    // Cut the journal back to the failed step's end, as a kill right after it would have.
    let journal = String::from_utf8(m.journal()).unwrap();
    let end = journal.trim_end().rfind('\n').unwrap() + 1;
    assert!(journal[end..].contains("request-finished"), "{}", &journal[end..]);
    std::fs::write(m.state().join("session/journal"), &journal[..end]).unwrap();
    assert_eq!(m.status()["operational"], "Busy");
    m.run(&["resume"])
        .code(1)
        .stderr_has("ExecuteSplit is Broken at step action:stop@upgrade: Custom action failed with exit value 3");
    let runs = m.recorded("Upgrade").iter().filter(|l| l.starts_with("action:stop@upgrade|")).count();
    assert_eq!(runs, 1, "the failed action was not run again without an operator's retry");
    m.heal("action:stop@upgrade");
    m.run(&["retry"]).code(0).stdout_has("Production Side | Split | Ready");
}

#[test]
fn a_failed_readiness_check_duet_died_before_setting_aside_does_not_block_the_next_split() {
    let m = Machine::new();
    m.fail("action:ready@production");
    m.run(&["split", &m.plan()]).code(1).stdout_has("nothing was split");
    // As if duet had died right after the readiness check failed, before setting it aside.
    std::fs::rename(m.state().join("readiness"), m.state().join("session")).unwrap();
    m.heal("action:ready@production");
    m.run(&["split", &m.plan()])
        .code(0)
        .stdout_has("the last session's readiness check had failed, so nothing was split")
        .stdout_has("Production Side | Split | Ready");
}

#[test]
fn after_a_commit_the_disks_resynchronise_and_a_readiness_check_says_so() {
    let inventory = INVENTORY.replace("resync: 0s", "resync: 10m");
    let m = Machine::with(PLAN, &inventory);
    m.run(&["run", &m.plan()]).code(0);
    let status = m.status();
    assert_eq!(status["resyncing"], true, "{status:#}");
    m.run(&["status"]).code(0).stdout_has("RDR disks are resynchronising");
    m.run(&["readiness", &m.plan()])
        .code(1)
        .stdout_has("readiness check failed: 3 problems, the first: RDR disk is not duplexed");
    m.run(&["log"])
        .code(0)
        .stdout_has("RDR disk is not duplexed (disk0)")
        .stdout_has("RDR disk is not duplexed (disk2)");
}

#[test]
fn a_split_that_outlasts_its_limit_fails_the_step_and_splits_nothing() {
    // The compiler gives the split its 5-minute limit (dag.rs tests it); here the session's
    // snapshot and the simulated machine are edited so the limit is met in a test's time.
    let inventory = format!("{INVENTORY}  faults:\n    - {{op: split, fail_times: 1}}\n");
    let m = Machine::with(PLAN, &inventory);
    m.run(&["split", &m.plan()]).code(1).stdout_has("the split failed (simulated fault");
    let compiled = m.state().join("session/plan/compiled.json");
    let text = std::fs::read_to_string(&compiled).unwrap();
    assert_eq!(text.matches("\"timeout_ms\":300000").count(), 1, "only the split has the 5-minute limit");
    std::fs::write(&compiled, text.replace("\"timeout_ms\":300000", "\"timeout_ms\":200")).unwrap();
    let sim_inventory = m.state().join("sim/inventory.yaml");
    let machine = std::fs::read_to_string(&sim_inventory).unwrap().replace("split: 0s", "split: 1h");
    std::fs::write(&sim_inventory, &machine).unwrap();
    m.write("inventory.yaml", &machine);
    m.run(&["retry"]).code(1).stdout_has("the split timed out after 200ms");
    let status = m.status();
    assert_eq!(
        (status["hardware"].as_str(), status["broken"]["step"].as_str()),
        (Some("FaultTolerant"), Some("platform:split"))
    );
}

/// Found by the soak.
#[test]
fn status_after_a_finished_session_does_not_report_an_older_failed_readiness_check() {
    let m = Machine::new();
    m.fail("action:ready@production");
    m.run(&["run", &m.plan()]).code(1).stdout_has("nothing was split");
    assert_eq!(m.status()["operational"], "Broken", "the failed check is the last word, for now");
    m.heal("action:ready@production");
    m.run(&["run", &m.plan()]).code(0).stdout_has("Fault Tolerant | Idle | Ready");
    let status = m.status();
    assert_eq!((&status["upgrade"], &status["operational"]), (&"Idle".into(), &"Ready".into()), "{status:#}");
    assert!(status["broken"].is_null(), "{status:#}");
}
