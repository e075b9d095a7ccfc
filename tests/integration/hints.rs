//! Every hint names a command the state model accepts: for a failure in each request (and a
//! readiness check on its own), the commands the error's help, `duet status` and a refused
//! `duet resume` name are run, each from the same state, and none may be refused.

use std::path::Path;

use crate::machine::{INVENTORY, Machine};
use crate::support::Run;

/// The `duet ...` commands quoted in backticks in `text`, with `PLAN` made the rig's plan.
fn commands(text: &str, plan: &str) -> Vec<Vec<String>> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|quoted| quoted.starts_with("duet "))
        .map(|quoted| {
            quoted
                .split_whitespace()
                .skip(1)
                .map(|w| if w == "PLAN" { plan.to_owned() } else { w.to_owned() })
                .collect()
        })
        .collect()
}

fn help_of(run: &Run) -> String {
    run.stderr.lines().filter_map(|l| l.trim_start().strip_prefix("help: ")).collect::<Vec<_>>().join("\n")
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let ok = std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().expect("cp runs").success();
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}

/// Runs every command the failure's help, `status` and a refused `resume` name, each from the
/// state the failure left; none is refused by the state model. Returns the commands walked.
fn walk(m: &Machine, failed: &Run) -> Vec<String> {
    failed.code(1);
    let plan = m.plan();
    let mut hints = vec![help_of(failed)];
    assert!(!hints[0].is_empty(), "the failure gives no help:\n{}", failed.stderr);
    hints.push(m.status()["next"].as_str().expect("status says what is next").to_owned());
    let resume = m.run(&["resume"]);
    if resume.code == 1 {
        hints.push(help_of(&resume));
    }
    let (state, saved) = (m.state(), m.path("state.saved"));
    let (rec, rec_saved) = (m.rec(), m.path("rec.saved"));
    copy_dir(&state, &saved);
    copy_dir(&rec, &rec_saved);
    let mut walked = Vec::new();
    for hint in &hints {
        let named = commands(hint, &plan);
        assert!(!named.is_empty() || hint.contains("wait"), "a hint that names no command: {hint:?}");
        for args in named {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let run = m.run(&args);
            for refusal in ["error: cannot ", "error: nothing to ", "no upgrade session"] {
                assert!(
                    !run.stderr.contains(refusal),
                    "the hint {hint:?} names `duet {}`, which the state model refuses:\n{}",
                    args.join(" "),
                    run.stderr
                );
            }
            assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
            walked.push(args.first().copied().unwrap_or_default().to_owned());
            copy_dir(&saved, &state);
            copy_dir(&rec_saved, &rec);
        }
    }
    walked.sort();
    walked.dedup();
    walked
}

#[test]
fn a_failed_readiness_action_points_at_running_the_check_again() {
    let m = Machine::new();
    m.fail("action:ready@production");
    let run = m.run(&["run", &m.plan()]);
    run.stderr_has("CheckReadiness is Broken at step action:ready@production");
    assert!(!help_of(&run).contains("duet retry"), "{}", run.stderr);
    assert_eq!(walk(&m, &run), ["log", "readiness", "run", "split"]);

    let m = Machine::new();
    m.fail("action:ready@production");
    let run = m.run(&["readiness", &m.plan()]);
    assert_eq!(walk(&m, &run), ["log", "readiness", "run", "split"]);
}

#[test]
fn a_failure_in_any_request_points_only_at_commands_the_state_allows() {
    /// What fails, the commands that reach it, the commands its hints name.
    type Case<'a> = (&'a str, &'a [&'a [&'a str]], &'a [&'a str]);
    let cases: [Case; 6] = [
        ("action:adv-early@production-PrepareSplit", &[&["run", "PLAN"]], &["abort", "log", "retry"]),
        ("action:adv-early@upgrade-ExecuteSplit", &[&["run", "PLAN"]], &["abort", "log", "retry"]),
        ("action:adv-early@upgrade-PrepareMerge", &[&["run", "PLAN"]], &["abort", "log", "retry"]),
        ("action:stop@production", &[&["run", "PLAN"]], &["abort", "log", "retry"]),
        ("action:adv-early@upgrade-Commit", &[&["run", "PLAN"]], &["log", "retry"]),
        ("action:adv-early@production-Abort", &[&["split", "PLAN"], &["abort"]], &["log", "retry"]),
    ];
    for (fail, steps, expected) in cases {
        let m = Machine::new();
        m.fail(fail);
        let plan = m.plan();
        let mut last = None;
        for args in steps {
            let args: Vec<&str> = args.iter().map(|&a| if a == "PLAN" { plan.as_str() } else { a }).collect();
            last = Some(m.run(&args));
        }
        let failed = last.expect("a command ran");
        failed.stderr_has("is Broken at step");
        assert_eq!(walk(&m, &failed), expected, "{fail}:\n{}", failed.stderr);
    }
}

#[test]
fn a_failed_platform_operation_points_only_at_commands_the_state_allows() {
    for (op, expected) in
        [("split", &["abort", "log", "retry"][..]), ("commit", &["log", "retry"]), ("finish", &["log", "retry"])]
    {
        let inventory =
            INVENTORY.replace("simulation:\n", &format!("simulation:\n  faults: [{{op: {op}, fail_times: 1}}]\n"));
        let m = Machine::with(crate::machine::PLAN, &inventory);
        let failed = m.run(&["run", &m.plan()]);
        failed.stderr_has(&format!("Broken at step platform:{op}"));
        assert_eq!(walk(&m, &failed), expected, "{op}:\n{}", failed.stderr);
    }
}
