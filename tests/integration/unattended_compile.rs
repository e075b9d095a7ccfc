//! `duet compile` and `duet check` on a plan with the unattended-upgrade keys (issue 12): the
//! compiled plan carries them, `--format failures` shows what each failure leads to, and the
//! compiler refuses a version hop that is too big, at its position.

use crate::support::{duet, indoc, tree};

fn plan(on_failure: &str) -> String {
    indoc(&format!(
        r#"
        version: 1
        title: AppServer 12
        on_failure: {on_failure}
        services: [AppServer]
        actions:
          - {{id: app-stop, file: bin/appctl, control: stop}}
        versions: {{software: AppServer, from: "10.2", to: "12.0", max_major_hop: 2}}
        upgrade:
          - id: install
            file: bin/setup
            restart: true
            installs: {{software: AppServer, version: "12.0"}}
        verify:
          - id: level
            before: merge
            version: {{software: AppServer, constraint: ">=12.0"}}
          - id: status
            before: commit
            retry: {{times: 5, interval: 10s}}
            http: {{url: "http://127.0.0.1:8080/status", contains: ready}}
        approve:
          - {{id: go, before: commit, expires: 4h, on_expiry: abort}}
        "#
    ))
}

fn compile(text: &str, format: &str) -> crate::support::Run {
    let dir = tree(&[("plan.yaml", text.as_bytes()), ("bin/appctl", b"#!/bin/sh\n"), ("bin/setup", b"#!/bin/sh\n")]);
    duet(&["compile", "plan.yaml", "--format", format]).in_dir(dir.path()).run()
}

#[test]
fn the_failure_matrix_shows_hold_or_the_abort_of_every_step() {
    let run = compile(&plan("abort"), "failures");
    run.code(0);
    insta::assert_snapshot!("unattended_failures_abort", run.stdout);
    let line = |text: &str, step: &str| {
        let prefix = format!("  {step} ");
        text.lines().find(|l| l.starts_with(&prefix)).map(|l| l[prefix.len()..].trim_start().to_owned())
    };
    assert_eq!(line(&run.stdout, "task:install@upgrade").as_deref(), Some("abort: AbortFromSplit"));
    assert_eq!(
        line(&run.stdout, "approve:go").as_deref(),
        Some("failure: abort: AbortFromMerge; expiry after 4h: abort: AbortFromMerge")
    );
    assert_eq!(line(&run.stdout, "action:app-stop@production").as_deref(), Some("abort: AbortFromMerge"));

    let run = compile(&plan("hold"), "failures");
    run.code(0).stdout_has("on_failure: hold\n");
    assert_eq!(line(&run.stdout, "task:install@upgrade").as_deref(), Some("hold: Broken; retry, skip or abort"));
    assert_eq!(
        line(&run.stdout, "approve:go").as_deref(),
        Some("failure: hold: Broken; retry, skip or abort; expiry after 4h: abort: AbortFromMerge")
    );
}

#[test]
fn the_compiled_plan_carries_the_unattended_keys_and_the_upgrade_request() {
    let run = compile(&plan("abort"), "json");
    run.code(0);
    let json = run.json();
    let u = &json["unattended"];
    assert_eq!(u["on_failure"], "abort");
    assert_eq!(u["tasks"][0]["id"], "install");
    assert_eq!(u["tasks"][0]["installs"], serde_json::json!({"name": "AppServer", "version": "12.0"}));
    assert_eq!(u["checks"][1]["retry"], serde_json::json!({"times": 5, "interval_ms": 10_000}));
    assert_eq!(u["approvals"][0]["expires_ms"], 14_400_000);
    let requests: Vec<&String> = json["requests"].as_object().unwrap().keys().collect();
    assert_eq!(requests[3], "Upgrade");
    let steps: Vec<&str> =
        json["requests"]["Upgrade"]["steps"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(steps, ["task:install@upgrade", "restart:install@upgrade"]);
    assert_eq!(json["requests"]["Upgrade"]["steps"][0]["env"]["ACTIVE_UPGRADE_REQUEST"], "Upgrade");
}

#[test]
fn a_version_hop_too_big_is_refused_at_its_position() {
    let text = plan("hold").replace("to: \"12.0\", max_major_hop: 2", "to: \"14.0\", max_major_hop: 2");
    let run = compile(&text, "failures");
    run.code(1)
        .stderr_has("10.2 -> 14.0 is 4 major versions; at most 2 per upgrade: upgrade to 12.x first")
        .stderr_has("duet::versions::hop")
        .stderr_has("plan.yaml:7:1")
        .stderr_has("nothing compiled");
    assert!(run.stdout.is_empty());
}
