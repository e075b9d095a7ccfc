//! Terminal safety: what actions print reaches the operator's terminal escaped, through every
//! command that shows it (`run`, `status`, `log`), so a hostile or broken action cannot clear
//! the screen, retitle the window, move the cursor or hide text.

use crate::machine::{INVENTORY, Machine, make_executable};

const PLAN: &str = "version: 1
title: hostile output
disks: {system: [disk0, disk1], data: [disk2]}
actions:
  - {id: evil, file: evil, control: advanced, timing: early}
";

/// Clears the screen, sets the window title, returns the carriage, sends a C1 CSI, and flips
/// the text direction: on stdout and on stderr; then fails.
const EVIL: &str = r"#!/bin/sh
printf '\033[2J\033]0;pwned\007\rhidden\302\233K\342\200\256txet\n'
printf 'err \033[31mred\n' >&2
exit 3
";

fn hostile(bytes: &str) -> Vec<char> {
    bytes
        .chars()
        .filter(|&c| (c.is_control() && c != '\n' && c != '\t') || ('\u{202a}'..='\u{202e}').contains(&c))
        .collect()
}

#[test]
fn action_output_is_shown_escaped_by_run_status_and_log() {
    let m = Machine::with(PLAN, INVENTORY);
    m.write("plans/evil", EVIL);
    make_executable(&m.path("plans/evil"));
    let run = m.run(&["run", &m.plan()]);
    run.code(1).stdout_has("\\x{1b}[2J\\x{1b}]0;pwned\\x{7}\\x{d}hidden\\x{9b}K\\x{202e}txet");
    let status = m.run(&["status"]);
    status.code(0).stdout_has("stdout: \\x{1b}[2J").stdout_has("stderr: err \\x{1b}[31mred");
    let json = m.run(&["status", "--json"]);
    json.code(0);
    assert!(json.json()["broken"]["output"]["stdout"]["tail"].as_str().is_some_and(|t| t.contains('\u{1b}')));
    let log = m.run(&["log"]);
    log.code(0).stdout_has("\\x{1b}[2J");
    let mut shown = Vec::new();
    for out in [&run, &status, &json, &log, &m.run(&["log", "--format", "json"]), &m.run(&["log", "--format", "xml"])] {
        shown.extend(hostile(&out.stdout));
        shown.extend(hostile(&out.stderr));
    }
    assert!(shown.is_empty(), "control characters reached the terminal: {shown:?}");
}

#[test]
fn a_plan_quoted_in_a_diagnostic_cannot_drive_the_terminal() {
    let plan = "version: 1\ntitle: t\nbogus: \"\u{1b}]0;pwned\u{7}\u{1b}[31mRED\"\n";
    let m = Machine::with(plan, INVENTORY);
    for args in [["check", "plans/plan.yaml"], ["run", "plans/plan.yaml"], ["compile", "plans/plan.yaml"]] {
        let out = if args[0] == "run" { m.run(&args) } else { crate::support::duet(&args).in_dir(m.dir.path()).run() };
        out.code(1).stderr_has("bogus");
        let shown: Vec<char> = hostile(&out.stderr).into_iter().chain(hostile(&out.stdout)).collect();
        assert!(shown.is_empty(), "`duet {}` let through {shown:?}:\n{}", args.join(" "), out.stderr);
    }
}

/// Sets the clipboard (OSC 52), clears the screen, sends a C1 CSI, flips the text direction.
const EVIL_TEXT: &str = "\u{1b}]52;c;cHduZWQ=\u{7}\u{1b}[2J\u{9b}\u{202e}";
/// How [`EVIL_TEXT`] is shown.
const EVIL_SHOWN: &str = "\\x{1b}]52;c;cHduZWQ=\\x{7}\\x{1b}[2J\\x{9b}\\x{202e}";

/// Every field a diagnostic quotes, holding [`EVIL_TEXT`]; NUL comes from a YAML escape (a file
/// holding a NUL byte is refused unread).
fn evil_plan() -> String {
    format!(
        r#"version: 1
title: "t{EVIL_TEXT}"
disks: {{system: [disk0, disk1], data: [disk2]}}
actions:
  - {{id: "a{EVIL_TEXT}", file: /bin/true, control: "bogus{EVIL_TEXT}", timeout: "9{EVIL_TEXT}"}}
  - {{file: /bin/true, control: advanced, "unk{EVIL_TEXT}\0": 1}}
include: ["inc{EVIL_TEXT}.yaml", "../x{EVIL_TEXT}.yaml"]
"#
    )
}

/// Valid without an inventory (two `%VAR%` warnings); with one, its executable is missing and
/// its staging directory is on a system disk.
fn evil_valid_plan() -> String {
    format!(
        r#"version: 1
title: "valid{EVIL_TEXT}"
comments: "c{EVIL_TEXT}"
disks: {{system: [disk0, disk1], data: [disk2]}}
actions:
  - {{id: x, file: "/no/such{EVIL_TEXT}", control: readiness, args: ["%ACTIVE_UPGRADE_SIDX{EVIL_TEXT}%"]}}
  - {{id: y, file: /bin/true, control: readiness, args: ["{EVIL_TEXT}", "%ACTIVE_UPGRADE_SIDEE%"]}}
logs:
  staging_dir: "/x{EVIL_TEXT}"
  backup: [Application]
"#
    )
}

#[track_caller]
fn shown_safely(out: &crate::support::Run, what: &str) {
    let shown: Vec<char> = hostile(&out.stdout).into_iter().chain(hostile(&out.stderr)).collect();
    assert!(shown.is_empty(), "`duet {what}` let through {shown:?}:\n{}\n{}", out.stdout, out.stderr);
}

#[test]
fn every_quoted_field_of_a_plan_is_escaped_by_check_compile_explain_and_readiness() {
    let m = Machine::with(&evil_plan(), INVENTORY);
    m.write("plans/valid.yaml", &evil_valid_plan());
    let duet = |args: &[&str]| crate::support::duet(args).in_dir(m.dir.path()).run();

    let check = duet(&["check", "plans/plan.yaml"]);
    check.code(1);
    for fragment in [
        format!("unknown key `unk{EVIL_SHOWN}\\x{{0}}`"),
        format!("invalid value `bogus{EVIL_SHOWN}`"),
        format!("invalid value `a{EVIL_SHOWN}`"),
        format!("invalid duration `9{EVIL_SHOWN}`"),
        format!("include `../x{EVIL_SHOWN}.yaml` is not a bare file name"),
        format!("cannot read included plan `plans/inc{EVIL_SHOWN}.yaml`"),
    ] {
        check.stderr_has(&fragment);
    }
    shown_safely(&check, "check");
    for args in [&["compile", "plans/plan.yaml"][..], &["explain", "plans/plan.yaml"]] {
        let out = duet(args);
        out.code(1).stderr_has(&format!("invalid value `bogus{EVIL_SHOWN}`"));
        shown_safely(&out, &args.join(" "));
    }

    let json = duet(&["check", "plans/plan.yaml", "--format", "json"]);
    json.code(1);
    shown_safely(&json, "check --format json");
    let messages: Vec<String> = json.json()["diagnostics"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|d| d["message"].as_str().expect("a message").to_owned())
        .collect();
    assert!(messages.iter().any(|m| m.contains(&format!("bogus{EVIL_TEXT}"))), "JSON keeps the text: {messages:?}");

    let warned = duet(&["check", "plans/valid.yaml"]);
    warned
        .code(0)
        .stdout_has("valid (2 warnings)")
        .stderr_has(&format!("`%ACTIVE_UPGRADE_SIDX{EVIL_SHOWN}%` is not an Active Upgrade variable"));
    shown_safely(&warned, "check (a valid plan)");
    let summary = duet(&["compile", "plans/valid.yaml"]);
    summary
        .code(0)
        .stdout_has(&format!("Title:        valid{EVIL_SHOWN}"))
        .stdout_has(&format!("/no/such{EVIL_SHOWN}"));
    shown_safely(&summary, "compile");
    // `explain` quotes text values as Rust does (`\u{1b}`), and escapes the rest.
    let explain = duet(&["explain", "plans/valid.yaml"]);
    explain.code(0).stdout_has(r#"title = "valid\u{1b}]52"#).stdout_has(&format!("/no/such{EVIL_SHOWN}"));
    shown_safely(&explain, "explain");

    let bound = duet(&["check", "plans/valid.yaml", "--inventory", "inventory.yaml"]);
    bound
        .code(1)
        .stderr_has(&format!("/no/such{EVIL_SHOWN} not found"))
        .stderr_has(&format!("the staging directory /x{EVIL_SHOWN} is on a system disk"));
    shown_safely(&bound, "check --inventory");
    let readiness = m.run(&["readiness", "plans/valid.yaml"]);
    readiness.code(1).stderr_has(&format!("the staging directory /x{EVIL_SHOWN} is on a system disk"));
    shown_safely(&readiness, "readiness");
}

#[test]
fn a_label_stays_under_its_text_after_an_escape_on_the_same_line() {
    let m = Machine::with(&evil_valid_plan(), INVENTORY);
    let out = crate::support::duet(&["check", "plans/plan.yaml"]).in_dir(m.dir.path()).run();
    out.code(0);
    // The warning on line 7 points at `"%ACTIVE_UPGRADE_SIDEE%"`, after an escaped argument;
    // the position is counted in characters as written, as in the JSON output.
    let lines: Vec<&str> = out.stderr.lines().collect();
    let at = (0..lines.len() - 1)
        .find(|&i| lines[i].starts_with(" 7 │") && lines[i + 1].trim_start().starts_with('·'))
        .expect("line 7 is shown with a label");
    assert!(lines[at].contains(EVIL_SHOWN), "{}", out.stderr);
    let column = lines[at].find("\"%ACTIVE_UPGRADE_SIDEE%\"").expect("the argument");
    let column = lines[at][..column].chars().count();
    assert_eq!(lines[at + 1].chars().position(|c| c == '─'), Some(column), "misaligned:\n{}", out.stderr);
    out.stderr_has("plans/plan.yaml:7:83]");
}

#[test]
fn a_file_name_quoted_in_a_diagnostic_cannot_drive_the_terminal() {
    let m = Machine::with("version: 1\n", INVENTORY);
    let name = format!("plans/p{EVIL_TEXT}.yaml");
    m.write(&name, "version: 1\nbogus: 1\n");
    let out = crate::support::duet(&["check", &name]).in_dir(m.dir.path()).run();
    out.code(1).stderr_has(&format!("plans/p{EVIL_SHOWN}.yaml:2:1]"));
    shown_safely(&out, "check");
}
