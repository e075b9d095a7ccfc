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
