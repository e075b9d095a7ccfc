//! `duet compile` through the binary: the compiled plan's JSON contract, the Upgrade Summary,
//! the DAG drawings, and rendered diagnostics (snapshots).

use crate::support::{duet, indoc, repo, tree};

const INVENTORY: &str = "plans/machines/320ma.yaml";

fn redact(text: &str) -> String {
    text.replace(&repo().display().to_string(), "[REPO]")
}

#[test]
fn compiled_json_has_the_contract_fields() {
    let run = duet(&["compile", "plans/site-db01.yaml", "--inventory", INVENTORY, "--format", "json"]).run();
    run.code(0);
    let plan = run.json();
    assert_eq!(plan["format_version"], 1);
    assert_eq!(plan["title"], "db01 SQL Server SP4");
    assert!(plan["comments"].as_str().unwrap().starts_with("Purpose: SQL Server SP4"));
    let sources: Vec<&str> = plan["sources"].as_array().unwrap().iter().map(|s| s["file"].as_str().unwrap()).collect();
    assert_eq!(sources, ["plans/vendor-sql.yaml", "plans/site-db01.yaml"]);
    assert_eq!(plan["disks"], serde_json::json!({"system": ["disk0", "disk1"], "data": ["disk2", "disk3"]}));
    assert_eq!(
        plan["services"][1],
        serde_json::json!({"name": "SQLSERVERAGENT", "after": ["MSSQLSERVER"], "source": {"file": "plans/vendor-sql.yaml", "line": 15}})
    );
    let stop = plan["actions"].as_array().unwrap().iter().find(|a| a["id"] == "sql-stop").unwrap();
    assert_eq!(stop["timeout_ms"], 600_000);
    assert_eq!(stop["control"], "stop");
    assert_eq!(stop["timing"], "default");
    assert_eq!(
        stop["args"],
        serde_json::json!(["stop", "%ACTIVE_UPGRADE_SIDE%"]),
        "%VAR% is kept verbatim for the runtime"
    );
    assert_eq!(stop["file"], format!("{}/plans/scripts/sqlctl", repo().display()), "relative to the plan's directory");
    assert_eq!(stop["source"], serde_json::json!({"file": "plans/vendor-sql.yaml", "line": 22}));
    assert_eq!(
        plan["logs"],
        serde_json::json!({"staging_dir": "/srv/data/upgrade-logs", "backup": ["Application", "System", "Security"]})
    );
    let requests: Vec<&String> = plan["requests"].as_object().unwrap().keys().collect();
    assert_eq!(
        requests,
        [
            "CheckReadiness",
            "PrepareSplit",
            "ExecuteSplit",
            "PrepareMerge",
            "ExecuteMerge",
            "Commit",
            "AbortFromSplit",
            "AbortFromMerge",
            "Finish"
        ]
    );
    let split_stop = &plan["requests"]["ExecuteSplit"]["steps"][1];
    assert_eq!(split_stop["id"], "action:sql-stop@upgrade");
    assert_eq!(split_stop["kind"], "action");
    assert_eq!(split_stop["side"], "upgrade");
    assert_eq!(split_stop["after"], serde_json::json!(["platform:split"]));
    assert_eq!(split_stop["env"]["ACTIVE_UPGRADE_REQUEST"], "Stop");
}

#[test]
fn the_summary_follows_the_guide() {
    let run = duet(&["compile", "plans/site-db01.yaml", "--inventory", INVENTORY]).run();
    run.code(0);
    insta::assert_snapshot!("summary_site_db01", redact(&run.stdout));
}

#[test]
fn the_dags_draw_as_dot_and_mermaid() {
    let dot = duet(&["compile", "plans/quickstart.yaml", "--format", "dot"]).run();
    dot.code(0);
    insta::assert_snapshot!("quickstart_dot", dot.stdout);
    let mermaid = duet(&["compile", "plans/quickstart.yaml", "--format", "mermaid"]).run();
    mermaid.code(0);
    insta::assert_snapshot!("quickstart_mermaid", mermaid.stdout);
}

#[test]
fn an_invalid_plan_compiles_to_nothing() {
    let dir = tree(&[("p.yaml", b"version: 1\nservices: [{name: A, after: [B]}, {name: B, after: [A]}]\n")]);
    let run = duet(&["compile", "p.yaml", "--format", "json"]).in_dir(dir.path()).run();
    run.code(1).stderr_has("services are ordered in a cycle: A after B after A").stderr_has("nothing compiled");
    assert!(run.stdout.is_empty());
}

/// Every problem of a tree is reported at once, in each file, with labels on the exact nodes.
#[test]
fn rendered_diagnostics_of_a_broken_tree() {
    let site = indoc(
        r"
        version: 1
        title: Broken site
        include: [vendor.yaml, other.yaml]
        actions:
          - id: app-stop
            timout: 5m
        logs:
          backup: [Application]
        ",
    );
    let vendor = indoc(
        r"
        version: 1
        disks: {system: [disk0]}
        actions:
          - id: app-stop
            file: bin/appctl
            control: stop
            timeout: 2m
        ",
    );
    let other = indoc(
        r"
        version: 1
        actions:
          - id: app-stop
            timeout: 3m
          - id: lonely
            timing: early
        ",
    );
    let dir =
        tree(&[("site.yaml", site.as_bytes()), ("vendor.yaml", vendor.as_bytes()), ("other.yaml", other.as_bytes())]);
    let run = duet(&["check", "site.yaml"]).in_dir(dir.path()).run();
    run.code(1);
    insta::assert_snapshot!("broken_tree_schema", run.stderr);

    let site = indoc(
        r"
        version: 1
        title: Broken site
        include: [vendor.yaml, other.yaml]
        logs:
          backup: [Application]
        ",
    );
    std::fs::write(dir.path().join("site.yaml"), site).unwrap();
    let run = duet(&["check", "site.yaml"]).in_dir(dir.path()).run();
    run.code(1).stdout_has("site.yaml: invalid: 3 errors, 0 warnings");
    insta::assert_snapshot!("broken_tree_resolution", run.stderr);
}
