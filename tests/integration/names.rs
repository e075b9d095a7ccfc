//! Names that become file names (event logs, services, disks, volumes) are checked where they
//! enter, in the plan or the inventory, with a diagnostic at their position: one that is a path
//! (`../x`, `/x`, `a\b`) is refused, and no command writes outside the state directory.

use crate::machine::INVENTORY;
use crate::support::{duet, tree};

/// [`INVENTORY`] with one more event log.
fn inventory_with_log(log: &str) -> String {
    let with = INVENTORY.replace(
        "event_logs: [Application, System, Security]",
        &format!("event_logs: [Application, System, \"{log}\"]"),
    );
    assert_ne!(with, INVENTORY, "the event log list is where it was");
    with
}

/// 1-based line and column of `needle` in `text`.
fn position(text: &str, needle: &str) -> (usize, usize) {
    let at = text.find(needle).expect("the needle is in the text");
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    (text[..at].matches('\n').count() + 1, text[line_start..at].chars().count() + 1)
}

#[test]
fn an_inventory_event_log_that_is_a_path_is_refused_and_nothing_is_written_outside() {
    let outside = tempfile::tempdir().expect("temp dir");
    let important = outside.path().join("important");
    // From STATE/sim/sides/production/logs, five `..` lead out of STATE.
    for (log, target) in [
        ("../../../../../escaped".to_owned(), outside.path().join("escaped.log")),
        (important.display().to_string(), outside.path().join("important.log")),
    ] {
        let dir = outside.path().join("work");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).expect("state dir");
        let inventory = inventory_with_log(&log);
        std::fs::write(dir.join("bad.yaml"), &inventory).expect("write");
        let bad = dir.join("bad.yaml").display().to_string();
        let (line, column) = position(&inventory, &format!("\"{log}\""));

        let check = duet(&["check", "plans/quickstart.yaml", "--inventory", &bad]).run();
        check
            .code(1)
            .stderr_has("duet::inventory::name")
            .stderr_has(&format!("{bad}:{line}:{column}]"))
            .stderr_has("event log name")
            .stdout_has("the inventory is unusable");
        let json = duet(&["check", "plans/quickstart.yaml", "--inventory", &bad, "--format", "json"]).run();
        let found = json.json()["diagnostics"]
            .as_array()
            .expect("a list")
            .iter()
            .any(|d| d["code"] == "duet::inventory::name" && d["line"] == line && d["column"] == column);
        assert!(found, "no duet::inventory::name at {line}:{column}:\n{}", json.stdout);

        let state = dir.join("state").display().to_string();
        let run = duet(&["run", "plans/quickstart.yaml", "--inventory", &bad, "--state-dir", &state]).run();
        run.code(1).stderr_has("the inventory is invalid").stderr_has("duet::inventory::name");
        assert!(!target.exists(), "`duet run` wrote {}", target.display());
        assert!(!dir.join("state/sim/state.json").exists(), "no machine was built from the inventory");
    }
}

#[test]
fn every_inventory_name_is_checked_where_it_is_written() {
    let inventory = "version: 1
disks:
  - {id: disk0}
  - {id: \"a/b\"}
volumes:
  - {id: \"..\", mount: /, disks: [disk0], boot: true}
network:
  teams: [{name: \"C:x\", adapters: []}]
services:
  - {name: \"back\\\\slash\"}
  - {name: \"...\"}
event_logs: [Application, \"Microsoft-Windows-Foo Bar\", \"x/../y\"]
";
    let dir = tree(&[("plan.yaml", b"version: 1\n"), ("inv.yaml", inventory.as_bytes())]);
    let out = duet(&["check", "plan.yaml", "--inventory", "inv.yaml"]).in_dir(dir.path()).run();
    out.code(1);
    for (needle, what) in [
        ("\"a/b\"", "disk"),
        ("\"..\"", "volume"),
        ("\"C:x\"", "team"),
        ("\"back", "service"),
        ("\"...\"", "service"),
        ("\"x/../y\"", "event log"),
    ] {
        let (line, column) = position(inventory, needle);
        out.stderr_has(&format!("inv.yaml:{line}:{column}]")).stderr_has(&format!("{what} name"));
    }
    assert_eq!(out.stderr.matches("duet::inventory::name").count(), 6, "{}", out.stderr);
}

#[test]
fn a_plan_name_that_is_a_path_is_refused_where_it_is_written() {
    let plan = "version: 1
disks: {system: [disk0, \"disk1/..\"], data: [disk2]}
services:
  - \"../../../svc\"
  - {name: W3SVC, after: [\"a\\\\b\"]}
  - \"Microsoft-Windows-Foo Service\"
logs:
  staging_dir: /srv/data/upgrade-logs
  backup: [Application, \"/etc/passwd\", {name: \".\"}]
";
    let dir = tree(&[("plan.yaml", plan.as_bytes())]);
    let out = duet(&["check", "plan.yaml"]).in_dir(dir.path()).run();
    out.code(1);
    for needle in ["\"disk1/..\"", "\"../../../svc\"", "\"a\\\\b\"", "\"/etc/passwd\"", "\".\""] {
        let (line, column) = position(plan, needle);
        out.stderr_has(&format!("plan.yaml:{line}:{column}]"));
    }
    assert_eq!(out.stderr.matches("duet::plan::name").count(), 5, "{}", out.stderr);
    let state = dir.path().join("state").display().to_string();
    let run = duet(&["run", "plan.yaml", "--state-dir", &state]).in_dir(dir.path()).run();
    run.code(1).stderr_has("duet::plan::name");
}

#[test]
fn windows_names_with_spaces_and_dashes_stay_valid() {
    let inventory = inventory_with_log("Microsoft-Windows-Foo Bar")
        .replace("- {name: Reports,", "- {name: \"SQL Server (MSSQLSERVER)\", startup: manual}\n  - {name: Reports,");
    let plan = "version: 1
disks: {system: [disk0, disk1], data: [disk2]}
services: [\"SQL Server (MSSQLSERVER)\"]
logs:
  staging_dir: /srv/data/upgrade-logs
  backup: [Application, \"Microsoft-Windows-Foo Bar\"]
";
    let dir = tree(&[("plan.yaml", plan.as_bytes()), ("inv.yaml", inventory.as_bytes())]);
    duet(&["check", "plan.yaml", "--inventory", "inv.yaml"]).in_dir(dir.path()).run().code(0).stdout_has("valid");
    let state = dir.path().join("state").display().to_string();
    let run = duet(&["run", "plan.yaml", "--inventory", "inv.yaml", "--state-dir", &state]).in_dir(dir.path()).run();
    run.code(0);
    let saved = std::fs::read_dir(dir.path().join("state/sim/machine/srv/data/upgrade-logs"))
        .expect("the staging directory")
        .flatten()
        .flat_map(|session| std::fs::read_dir(session.path().join("logs")).expect("logs").flatten())
        .any(|f| f.file_name() == "production-Microsoft-Windows-Foo Bar.log");
    assert!(saved, "the log with a space in its name was backed up");
}

#[test]
fn a_session_id_that_is_a_path_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state").display().to_string();
    duet(&["readiness", "plans/quickstart.yaml", "--state-dir", &state]).run().code(0);
    for id in ["../state", ".", "..", "a\\b", "/etc", "", "C:x"] {
        duet(&["log", "--session", id, "--state-dir", &state])
            .run()
            .code(1)
            .stderr_has(&format!("`{id}` is not a session id"))
            .stderr_has("help: session ids are the names under");
    }
}
