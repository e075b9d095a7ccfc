//! `duet check` and `duet explain` through the binary: exit codes, formats, the shipped plans.

use std::fmt::Write;

use crate::support::{duet, indoc, repo, tree};

const INVENTORY: &str = "plans/machines/320ma.yaml";

/// Every plan under `plans/` checks clean (no errors, no warnings), without and with the
/// inventory of the machine the plans are written for.
#[test]
fn every_shipped_plan_checks_clean() {
    let mut plans: Vec<String> = std::fs::read_dir(repo().join("plans"))
        .expect("plans/")
        .map(|e| e.expect("entry").file_name().into_string().expect("UTF-8 name"))
        .filter(|n| std::path::Path::new(n).extension().is_some_and(|e| e == "yaml"))
        .map(|n| format!("plans/{n}"))
        .collect();
    plans.sort();
    assert!(plans.len() >= 3, "quickstart, vendor template and site plan: {plans:?}");
    for plan in &plans {
        for args in [vec!["check", plan.as_str()], vec!["check", plan.as_str(), "--inventory", INVENTORY]] {
            let run = duet(&args).run();
            run.code(0).stdout_has(&format!("{plan}: valid"));
            assert!(!run.stderr.contains("warning"), "{args:?} warned:\n{}", run.stderr);
        }
    }
}

#[test]
fn check_says_when_the_platform_was_not_checked() {
    duet(&["check", "plans/quickstart.yaml"]).run().code(0).stdout_has("no --inventory given");
    let run = duet(&["check", "plans/quickstart.yaml", "--inventory", INVENTORY]).run();
    assert!(!run.code(0).stdout.contains("no --inventory"));
}

#[test]
fn usage_errors_exit_2() {
    duet(&[]).run().code(2);
    duet(&["check"]).run().code(2).stderr_has("<PLAN>");
    duet(&["check", "plans/quickstart.yaml", "--format", "yaml"])
        .run()
        .code(2)
        .stderr_has("possible values: human, json");
    duet(&["frobnicate"]).run().code(2);
}

#[test]
fn check_json_lists_every_diagnostic_with_its_position() {
    let site = indoc(
        r"
        version: 1
        include: [vendor.yaml]
        servies: [a]
        ",
    );
    let vendor = indoc(
        r"
        version: 1
        actions:
          - {file: x, control: Stop}
        disks: {system: [disk0]}
        ",
    );
    let dir = tree(&[("site.yaml", site.as_bytes()), ("vendor.yaml", vendor.as_bytes())]);
    let run = duet(&["check", "site.yaml", "--format", "json"]).in_dir(dir.path()).run();
    run.code(1);
    let json = run.json();
    assert_eq!(json["valid"], false);
    assert_eq!(json["platform_checked"], false);
    let diags = json["diagnostics"].as_array().expect("list");
    let brief: Vec<(String, String, u64, u64)> = diags
        .iter()
        .map(|d| {
            (
                d["severity"].as_str().unwrap().into(),
                d["file"].as_str().unwrap().into(),
                d["line"].as_u64().unwrap_or(0),
                d["column"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        brief,
        [
            ("error".into(), "site.yaml".into(), 3, 1),
            ("error".into(), "vendor.yaml".into(), 3, 24),
            ("note".into(), "site.yaml".into(), 0, 0),
        ]
    );
    assert_eq!(diags[2]["code"], "duet::check::stopped", "the note says later checks did not run");
    assert_eq!(diags[2]["line"], serde_json::Value::Null);
    assert_eq!(diags[0]["code"], "duet::schema::unknown-key");
    assert_eq!(diags[0]["message"], "unknown key `servies` in this plan");
    assert_eq!(diags[0]["help"], "did you mean `services`?");
    assert_eq!(diags[1]["help"], "did you mean `stop`?");
}

#[test]
fn check_json_of_a_valid_plan() {
    let run = duet(&["check", "plans/site-db01.yaml", "--inventory", INVENTORY, "--format", "json"]).run();
    run.code(0);
    let json = run.json();
    assert_eq!(json["valid"], true);
    assert_eq!(json["platform_checked"], true);
    let notes: Vec<&str> =
        json["diagnostics"].as_array().unwrap().iter().map(|d| d["code"].as_str().unwrap()).collect();
    assert_eq!(notes, ["duet::nesting::child-disks"], "the vendor's disk selection is ignored, with a note");
}

#[test]
fn explain_shows_provenance_and_refuses_unknown_keys() {
    let run = duet(&["explain", "plans/site-db01.yaml", "action:sql-stop"]).run();
    run.code(0);
    // Columns are aligned to the absolute path of the executable, which depends on where the
    // repository is checked out: compare the content with single spaces.
    let stdout = run.stdout.replace(&repo().display().to_string(), "[REPO]");
    let mut normalized = String::new();
    for line in stdout.lines() {
        let indent = line.len() - line.trim_start().len();
        let _ = writeln!(normalized, "{}{}", " ".repeat(indent), line.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    insta::assert_snapshot!("explain_sql_stop", normalized);
    duet(&["explain", "plans/site-db01.yaml", "disks"]).run().code(0).stdout_has("ignored: plans/vendor-sql.yaml:11");
    duet(&["explain", "plans/site-db01.yaml", "action:sql-backup"])
        .run()
        .code(0)
        .stdout_has("(disabled: dropped from the plan)");
    duet(&["explain", "plans/site-db01.yaml", "action:sql-stp"])
        .run()
        .code(1)
        .stderr_has("did you mean `action:sql-stop`?");
    let nope = duet(&["explain", "plans/site-db01.yaml", "action:nope"]).run();
    assert!(!nope.code(1).stderr.contains("did you mean"), "no far-fetched suggestion:\n{}", nope.stderr);
    duet(&["explain", "plans/site-db01.yaml", "comments"])
        .run()
        .code(0)
        .stdout_has("comments = \"Purpose: SQL Server SP4 on db01 during the Saturday window.\" (and more lines)");
    let all = duet(&["explain", "plans/site-db01.yaml"]).run();
    all.code(0).stdout_has("title = \"db01 SQL Server SP4\"").stdout_has("service:W3SVC").stdout_has("log:Security");
}

#[test]
fn explain_shows_what_a_conflict_needs() {
    let dir = tree(&[
        ("top.yaml", b"version: 1\ninclude: [a.yaml, b.yaml]\n"),
        ("a.yaml", b"version: 1\nservices: [{name: S, after: [T]}, T, U]\n"),
        ("b.yaml", b"version: 1\nservices: [{name: S, after: [U]}]\n"),
    ]);
    let run = duet(&["explain", "top.yaml", "service:S"]).in_dir(dir.path()).run();
    run.code(1)
        .stdout_has("after    = [T]")
        .stderr_has("`after` of service `S` conflicts between included plans: [T] and [U]")
        .stderr_has("set `after` of service `S` in `top.yaml` (or any plan that includes it) to choose");
}

#[test]
fn a_missing_plan_is_reported_with_a_suggestion() {
    duet(&["check", "plans/quickstart.yml"])
        .run()
        .code(1)
        .stderr_has("cannot read plan `plans/quickstart.yml`: no such file")
        .stderr_has("did you mean `quickstart.yaml`?");
}

/// `duet compile ... | head -1`: a reader that stops early is not an error, and never a panic.
#[test]
fn a_closed_stdout_pipe_is_not_a_failure() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_duet"))
        .args(["compile", "plans/site-db01.yaml", "--format", "json"])
        .current_dir(repo())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("duet runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn an_unusable_inventory_is_not_blamed_on_the_plan() {
    let run = duet(&["check", "plans/quickstart.yaml", "--inventory", "plans/machines/none.yaml"]).run();
    run.code(1).stdout_has("not checked against plans/machines/none.yaml: the inventory is unusable");
    let json = duet(&["check", "plans/quickstart.yaml", "--inventory", "plans/machines/none.yaml", "--format", "json"])
        .run()
        .json();
    assert_eq!(json["platform_checked"], false);
}

/// `duet fleet ARGS` and `duet agent ARGS` hand over to `duet-fleet` (here a stand-in that says
/// what it got and exits 7): every argument as given, hyphens included, and its exit code.
#[test]
fn duet_fleet_and_duet_agent_hand_over_to_duet_fleet_with_every_argument() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stand_in = dir.path().join("duet-fleet");
    std::fs::write(&stand_in, "#!/bin/sh\nprintf '[%s]' \"$@\"\necho\nexit 7\n").expect("write");
    crate::linux::make_executable(&stand_in);
    duet(&["fleet", "run", "plans/fleets/eft.yaml", "--endpoints", "127.0.0.1:2379", "--help"])
        .env("DUET_FLEET_BIN", &stand_in)
        .run()
        .code(7)
        .stdout_has("[run][plans/fleets/eft.yaml][--endpoints][127.0.0.1:2379][--help]");
    duet(&["agent", "--node", "a b", "-v"])
        .env("DUET_FLEET_BIN", &stand_in)
        .run()
        .code(7)
        .stdout_has("[agent][--node][a b][-v]");
    duet(&["fleet", "status"])
        .env("DUET_FLEET_BIN", dir.path().join("missing"))
        .run()
        .code(1)
        .stderr_has("cannot run")
        .stderr_has("missing");
}
