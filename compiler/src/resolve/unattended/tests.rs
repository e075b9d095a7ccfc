//! The unattended keys end to end through the compiler: what each compiles to, every
//! diagnostic at its exact position, and nesting.

use super::*;
use crate::compile::Compilation;
use crate::compiled::{CheckKind, CompiledPlan, Event, Retry, Software};
use crate::testing::{Tree, expect_at, expect_clean, found};

const PLAN: &str = r#"version: 1
on_failure: abort
versions: {software: AppServer, from: "10.2", to: "12.0", max_major_hop: 2}
upgrade:
  - id: sp4
    file: bin/setup.sh
    args: [/quiet, "%ACTIVE_UPGRADE_SIDE%"]
    timeout: 20m
    restart: true
    installs: {software: AppServer, version: "12.0"}
  - {file: bin/patch.sh, rerun: unsafe}
verify:
  - id: smoke
    before: merge
    run: {file: bin/smoke.sh, args: [--fast], stdout: "^OK"}
  - id: status
    before: commit
    retry: {times: 3, interval: 10s}
    http: {url: "http://127.0.0.1:8080/health", contains: ready}
  - id: level
    before: merge
    timeout: 5s
    version: {software: AppServer, constraint: ">=12.0"}
approve:
  - {id: go-merge, before: merge, expires: 4h, on_expiry: abort}
  - {id: go-commit, before: commit}
notify:
  - {id: page, file: bin/page.sh, on: [aborted, broken, broken]}
  - {file: bin/mail.sh, timeout: 10s}
"#;

pub(crate) fn tree(plan: &str) -> Tree {
    Tree::new(&[
        ("plan.yaml", plan),
        ("bin/setup.sh", "#!/bin/sh\n"),
        ("bin/patch.sh", "#!/bin/sh\n"),
        ("bin/smoke.sh", "#!/bin/sh\n"),
        ("bin/page.sh", "#!/bin/sh\n"),
        ("bin/mail.sh", "#!/bin/sh\n"),
        ("bin/x.sh", "#!/bin/sh\n"),
    ])
}

/// The unattended plan every step test uses.
pub(crate) fn unattended_plan() -> CompiledPlan {
    let c = tree(PLAN).compile("plan.yaml");
    expect_clean(&c);
    c.compiled.expect("valid")
}

#[test]
fn every_key_compiles_with_its_defaults() {
    let t = tree(PLAN);
    let plan = t.compile("plan.yaml").compiled.expect("valid");
    let u = &plan.unattended;
    let bin = |name: &str| t.path("bin").join(name).display().to_string();

    let tasks: Vec<_> = u.tasks.iter().map(|t| (t.id.as_str(), t.timeout_ms, t.rerun, t.restart)).collect();
    assert_eq!(tasks, [("sp4", 1_200_000, Rerun::Safe, true), ("patch", DEFAULT_TIMEOUT_MS, Rerun::Unsafe, false)]);
    assert_eq!(u.tasks[0].file, bin("setup.sh"));
    assert_eq!(u.tasks[0].args, ["/quiet", "%ACTIVE_UPGRADE_SIDE%"]);
    assert_eq!(u.tasks[0].installs, Some(Software { name: "AppServer".into(), version: "12.0".into() }));
    assert_eq!((u.tasks[1].installs.as_ref(), u.tasks[1].source.line), (None, 11));

    let checks: Vec<_> = u.checks.iter().map(|c| (c.id.as_str(), c.before, c.timeout_ms, c.retry)).collect();
    assert_eq!(
        checks,
        [
            ("smoke", Gate::Merge, DEFAULT_CHECK_TIMEOUT_MS, None),
            ("status", Gate::Commit, 30_000, Some(Retry { times: 3, interval_ms: 10_000 })),
            ("level", Gate::Merge, 5000, None),
        ]
    );
    assert_eq!(
        u.checks[0].check,
        CheckKind::Run { file: bin("smoke.sh"), args: vec!["--fast".into()], stdout: Some("^OK".into()) }
    );
    assert_eq!(
        u.checks[1].check,
        CheckKind::Http { url: "http://127.0.0.1:8080/health".into(), status: 200, contains: Some("ready".into()) }
    );
    assert_eq!(u.checks[2].check, CheckKind::Version { software: "AppServer".into(), constraint: ">=12.0".into() });

    let approvals: Vec<_> = u.approvals.iter().map(|a| (a.id.as_str(), a.before, a.expires_ms, a.on_expiry)).collect();
    assert_eq!(
        approvals,
        [
            ("go-merge", Gate::Merge, Some(14_400_000), OnFailure::Abort),
            ("go-commit", Gate::Commit, None, OnFailure::Hold)
        ]
    );

    let versions = u.versions.as_ref().expect("versions");
    assert_eq!(
        (versions.software.as_str(), versions.from.as_str(), versions.to.as_str(), versions.max_major_hop),
        ("AppServer", "10.2", "12.0", Some(2))
    );
    assert_eq!(versions.source.line, 3);

    let notify: Vec<_> = u.notify.iter().map(|n| (n.id.as_str(), n.on.clone(), n.timeout_ms)).collect();
    assert_eq!(
        notify,
        [
            ("page", vec![Event::Broken, Event::Aborted], DEFAULT_NOTIFY_TIMEOUT_MS),
            ("mail", Event::ALL.to_vec(), 10_000),
        ],
        "events in their fixed order, each once; all by default"
    );
    assert_eq!(u.on_failure, OnFailure::Abort);
}

#[test]
fn a_plan_without_the_keys_compiles_as_before() {
    let c = tree("version: 1\nservices: [A]\nactions:\n  - {file: bin/x.sh, control: stop}\n").compile("plan.yaml");
    expect_clean(&c);
    let plan = c.compiled.unwrap();
    assert!(plan.unattended.is_empty());
    let json = serde_json::to_string(&plan).unwrap();
    assert!(!json.contains("\"unattended\"") && !json.contains("\"item\""), "{json}");
    assert!(!plan.requests.contains_key(&crate::compiled::RequestName::Upgrade));
    assert_eq!(CompiledPlan::from_json(&json).unwrap(), plan);

    let plan = unattended_plan();
    let json = serde_json::to_string(&plan).unwrap();
    assert!(json.contains("\"unattended\"") && json.contains("\"item\":\"sp4\""));
    assert_eq!(CompiledPlan::from_json(&json).unwrap(), plan, "the unattended plan round-trips");
}

const BAD: &str = r#"version: 1
upgrade:
  - file: bin/x.sh
    restrat: true
  - id: t2
    file: bin/x.sh
    timeout: 0s
  - id: t2
    file: bin/x.sh
verify:
  - id: two
    before: merge
    run: {file: bin/x.sh}
    http: {url: "http://x"}
  - id: re
    before: merge
    run: {file: bin/x.sh, stdout: "ok("}
  - id: ver
    before: commit
    version: {software: App, constraint: "~1.2"}
  - id: url
    before: commit
    http: {url: "ftp://example.com/x"}
  - id: slow
    before: merge
    timeout: 5 min
    run: {file: bin/x.sh}
approve:
  - {id: a, before: merge, expires: 200h}
versions: {software: App, from: "10.x", to: "12"}
"#;

#[test]
fn each_mistake_is_reported_where_it_was_written() {
    let c = tree(BAD).compile("plan.yaml");
    let m = expect_at(&c, "duet::schema::unknown-key", "plan.yaml", 4, 5);
    assert_eq!(m, "unknown key `restrat` in `upgrade[1]`");
    let d = c.diagnostics.iter().find(|d| d.code == "duet::schema::unknown-key").unwrap();
    assert_eq!(d.help.as_deref(), Some("did you mean `restart`?"));
    let m = expect_at(&c, "duet::task::timeout", "plan.yaml", 7, 14);
    assert!(m.contains("`0s` is zero"), "{m}");
    assert_eq!(expect_at(&c, "duet::plan::duplicate", "plan.yaml", 8, 9), "task `t2` is declared twice in this plan");
    assert_eq!(
        expect_at(&c, "duet::verify::two-checks", "plan.yaml", 14, 5),
        "a check has one kind; `http` is a second"
    );
    let m = expect_at(&c, "duet::verify::regex", "plan.yaml", 17, 35);
    assert!(m.starts_with("`stdout` is not a valid regular expression: "), "{m}");
    let m = expect_at(&c, "duet::verify::constraint", "plan.yaml", 20, 42);
    assert_eq!(
        m,
        "invalid version constraint: \"~1.2\" is not a version constraint: start it with >=, >, <=, < or =, like >=15.0.4"
    );
    assert_eq!(
        expect_at(&c, "duet::verify::url", "plan.yaml", 23, 17),
        "`ftp://example.com/x` is not an http:// or https:// URL"
    );
    assert_eq!(
        expect_at(&c, "duet::schema::invalid-value", "plan.yaml", 26, 14),
        "invalid duration `5 min` for `verify[5].timeout`"
    );
    let m = expect_at(&c, "duet::approve::expires", "plan.yaml", 29, 37);
    assert!(m.contains("7-day maximum"), "{m}");
    let m = expect_at(&c, "duet::versions::version", "plan.yaml", 30, 33);
    assert!(m.contains("\"10.x\" is not a version"), "{m}");
    let errors = found(&c).into_iter().filter(|f| f.severity == crate::diagnostic::Severity::Error).count();
    assert_eq!(errors, 10, "one error per mistake: {:#?}", found(&c));
}

#[test]
fn a_hop_too_big_names_the_version_to_go_through() {
    let c = tree("version: 1\ntitle: hop\nversions: {software: App, from: \"10.2\", to: \"14.0\", max_major_hop: 2}\n")
        .compile("plan.yaml");
    let m = expect_at(&c, "duet::versions::hop", "plan.yaml", 3, 1);
    assert_eq!(m, "10.2 -> 14.0 is 4 major versions; at most 2 per upgrade: upgrade to 12.x first");
    assert!(!c.is_valid());

    let c = tree("version: 1\nversions: {software: App, from: \"10.2\", to: \"12.9\", max_major_hop: 2}\n")
        .compile("plan.yaml");
    expect_clean(&c);
    let c = tree("version: 1\nversions:\n  software: App\n  from: \"12.1\"\n  to: \"12.0\"\n").compile("plan.yaml");
    assert_eq!(expect_at(&c, "duet::versions::downgrade", "plan.yaml", 2, 1), "App 12.1 -> 12.0 goes backwards");
}

#[test]
fn the_hop_message_names_the_intermediate_version() {
    let v = |s| Version::parse(s).unwrap();
    assert_eq!(
        hop_too_big(&v("10.2"), &v("14.0"), 2).as_deref(),
        Some("10.2 -> 14.0 is 4 major versions; at most 2 per upgrade: upgrade to 12.x first")
    );
    assert_eq!(hop_too_big(&v("10.2"), &v("12.9"), 2), None);
    assert_eq!(hop_too_big(&v("10"), &v("11"), 1), None);
    assert_eq!(
        hop_too_big(&v("1"), &v("5"), 3).as_deref(),
        Some("1 -> 5 is 4 major versions; at most 3 per upgrade: upgrade to 4.x first")
    );
}

#[test]
fn entries_must_be_complete_after_nesting() {
    let c = tree("version: 1\nverify:\n  - id: half\n    timeout: 10s\napprove:\n  - id: ok\nupgrade:\n  - {id: t, restart: true}\n")
        .compile("plan.yaml");
    let messages: Vec<(String, usize, usize)> = found(&c).into_iter().map(|f| (f.message, f.line, f.column)).collect();
    assert_eq!(
        messages,
        [
            ("check `half` has no `before` after nesting is resolved".to_owned(), 3, 9),
            ("check `half` has no `run`, `http` or `version` after nesting is resolved".to_owned(), 3, 9),
            ("approval `ok` has no `before` after nesting is resolved".to_owned(), 6, 9),
            ("task `t` has no `file` after nesting is resolved".to_owned(), 8, 10),
        ]
    );
    expect_at(&c, "duet::verify::incomplete", "plan.yaml", 3, 9);
    expect_at(&c, "duet::approve::incomplete", "plan.yaml", 6, 9);
    expect_at(&c, "duet::task::incomplete", "plan.yaml", 8, 10);
}

const SOFTWARE_PLAN: &str = r#"version: 1
versions: {software: AppSrv, from: "10.2", to: "11"}
verify:
  - id: level
    before: merge
    version: {software: Nope, constraint: ">=11"}
"#;

#[test]
fn software_must_be_in_the_inventory_when_one_is_given() {
    let t = Tree::new(&[
        ("plan.yaml", SOFTWARE_PLAN),
        ("machine.yaml", "version: 1\nsoftware:\n  - {name: AppServer, version: \"10.2\"}\n"),
        ("bare.yaml", "version: 1\n"),
    ]);
    let c = t.compile_with("plan.yaml", "machine.yaml");
    let m = expect_at(&c, "duet::software::unknown", "plan.yaml", 2, 1);
    assert!(
        m.starts_with("versions names software `AppSrv`, which ") && m.ends_with("machine.yaml does not list"),
        "{m}"
    );
    let d = c.diagnostics.iter().find(|d| d.message.starts_with("versions")).unwrap();
    assert_eq!(d.help.as_deref(), Some("did you mean `AppServer`?"));
    let m = expect_at(&c, "duet::software::unknown", "plan.yaml", 6, 14);
    assert!(m.starts_with("version check names software `Nope`"), "{m}");
    assert_eq!(c.inventory.as_ref().unwrap().software, [Software { name: "AppServer".into(), version: "10.2".into() }]);

    let c = t.compile_with("plan.yaml", "bare.yaml");
    let d = c.diagnostics.iter().find(|d| d.code == "duet::software::unknown").unwrap();
    assert_eq!(d.help.as_deref(), Some("the inventory lists no software: add `software: [{name, version}]` to it"));

    expect_clean(&t.compile("plan.yaml"));
}

fn nested(top: &str) -> Compilation {
    let child = r#"version: 1
on_failure: hold
versions: {software: App, from: "1.0", to: "2.0"}
upgrade:
  - id: sp4
    file: bin/x.sh
    timeout: 5m
    restart: true
verify:
  - id: smoke
    before: merge
    run: {file: bin/x.sh}
  - id: page
    before: commit
    http: {url: "http://127.0.0.1/"}
approve:
  - {id: go, before: merge}
"#;
    Tree::new(&[("top.yaml", top), ("child.yaml", child), ("bin/x.sh", "#!/bin/sh\n")]).compile("top.yaml")
}

#[test]
fn the_parent_wins_field_by_field_and_enabled_false_removes() {
    let c = nested(
        r#"version: 1
include: [child.yaml]
on_failure: abort
versions: {software: App, from: "1.0", to: "3.0"}
upgrade:
  - id: sp4
    timeout: 7m
verify:
  - id: smoke
    http: {url: "http://127.0.0.1:8080/"}
  - {id: page, enabled: false}
approve:
  - {id: go, expires: 1h}
"#,
    );
    expect_clean(&c);
    let u = &c.compiled.as_ref().unwrap().unattended;
    let task = &u.tasks[0];
    assert_eq!((task.timeout_ms, task.restart, task.source.file.ends_with("child.yaml")), (420_000, true, true));
    assert_eq!(u.checks.len(), 1, "page is removed");
    assert_eq!(
        (u.checks[0].before, &u.checks[0].check),
        (Gate::Merge, &CheckKind::Http { url: "http://127.0.0.1:8080/".into(), status: 200, contains: None }),
        "the parent's check replaces the child's whole; `before` comes from the child"
    );
    assert_eq!((u.approvals[0].before, u.approvals[0].expires_ms), (Gate::Merge, Some(3_600_000)));
    assert_eq!(u.on_failure, OnFailure::Abort);
    assert_eq!(u.versions.as_ref().unwrap().to, "3.0");

    let resolved = c.resolved.as_ref().unwrap();
    let explained = crate::render::explain::render(resolved, &c.sources, Some("task:sp4")).unwrap();
    let timeout = explained.lines().find(|l| l.trim_start().starts_with("timeout")).unwrap();
    assert!(timeout.contains("= 7m") && timeout.ends_with("child.yaml:7 (5m)"), "{explained}");
    let explained = crate::render::explain::render(resolved, &c.sources, Some("on_failure")).unwrap();
    assert!(explained.starts_with("on_failure = abort\n") && explained.contains("(hold)"), "{explained}");
    assert!(crate::render::explain::keys(resolved).contains(&"check:page".to_owned()));

    let c = nested("version: 1\ninclude: [child.yaml]\n");
    let u = &c.compiled.as_ref().unwrap().unattended;
    assert_eq!((u.on_failure, u.checks.len(), u.tasks[0].timeout_ms), (OnFailure::Hold, 2, 300_000));
}

#[test]
fn siblings_that_disagree_on_versions_conflict() {
    let t = Tree::new(&[
        ("top.yaml", "version: 1\ninclude: [a.yaml, b.yaml]\n"),
        ("a.yaml", "version: 1\non_failure: abort\nversions: {software: App, from: \"1\", to: \"2\"}\n"),
        ("b.yaml", "version: 1\non_failure: abort\nversions: {software: App, from: \"1\", to: \"3\"}\n"),
    ]);
    let c = t.compile("top.yaml");
    let m = expect_at(&c, "duet::nesting::conflict", "b.yaml", 3, 1);
    assert_eq!(m, "`versions` conflicts between included plans: App 1 -> 2 and App 1 -> 3");
    assert_eq!(found(&c).len(), 1, "the same on_failure twice is no conflict: {:#?}", found(&c));
}

const MORE_BAD: &str = r#"version: 1
on_failure: abrt
upgrade:
  - {restart: true}
  - {file: bin/.hidden}
  - {id: v, file: bin/x.sh, installs: {software: A, version: "1.x"}}
verify:
  - {id: r, before: merg, retry: {times: 2, interval: 0s}, run: {file: bin/x.sh}}
notify:
  - {file: bin/x.sh, timeout: 200h}
  - {on: [broken]}
"#;

#[test]
fn ids_durations_versions_and_keywords_of_every_list_are_checked() {
    let c = tree(MORE_BAD).compile("plan.yaml");
    expect_at(&c, "duet::schema::invalid-value", "plan.yaml", 2, 13);
    let d = c.diagnostics.iter().find(|d| d.message.contains("abrt")).unwrap();
    assert_eq!(d.help.as_deref(), Some("did you mean `abort`?"));
    assert_eq!(expect_at(&c, "duet::task::anonymous", "plan.yaml", 4, 6), "a task needs an `id` or a `file`");
    assert_eq!(
        expect_at(&c, "duet::task::id", "plan.yaml", 5, 12),
        "cannot derive a task id from the file name `bin/.hidden`"
    );
    let m = expect_at(&c, "duet::task::installs-version", "plan.yaml", 6, 62);
    assert!(m.contains("\"1.x\" is not a version"), "{m}");
    expect_at(&c, "duet::schema::invalid-value", "plan.yaml", 8, 21);
    assert!(expect_at(&c, "duet::verify::retry", "plan.yaml", 8, 55).contains("is zero"));
    assert!(expect_at(&c, "duet::notify::timeout", "plan.yaml", 10, 31).contains("7-day"));
    assert_eq!(
        expect_at(&c, "duet::notify::anonymous", "plan.yaml", 11, 6),
        "a notification needs an `id` or a `file`"
    );

    let c = tree("version: 1\napprove: [{id: a, before: merge, timeout: 0s}]\n").compile("plan.yaml");
    let codes: Vec<&str> = found(&c).iter().map(|f| f.code).collect();
    assert_eq!(codes, ["duet::schema::unknown-key", "duet::check::stopped"], "a misplaced key is reported once");

    let c = tree("version: 1\nnotify: [{id: n}]\nupgrade: [{id: nope, enabled: false}]\n").compile("plan.yaml");
    assert_eq!(
        expect_at(&c, "duet::notify::incomplete", "plan.yaml", 2, 15),
        "notification `n` has no `file` after nesting is resolved"
    );
    assert_eq!(
        expect_at(&c, "duet::nesting::disables-nothing", "plan.yaml", 3, 16),
        "task `nope` is disabled, but no included plan declares it"
    );
}

#[test]
fn task_and_run_check_programs_are_bound_like_actions() {
    let t = Tree::new(&[
        (
            "plan.yaml",
            "version: 1\nupgrade:\n  - {id: a, file: bin/missing}\n  - {id: b, file: tools/setup}\nverify:\n  - {id: c, before: merge, run: {file: data/check.sh}}\n",
        ),
        ("tools/setup", "#!/bin/sh\n"),
        ("data/check.sh", "#!/bin/sh\n"),
    ]);
    let data = t.path("data");
    let inventory = format!(
        "version: 1\ndisks: [{{id: disk0}}, {{id: disk2}}]\nvolumes:\n  - {{id: C, mount: /, disks: [disk0], boot: true}}\n  - {{id: D, mount: {}, disks: [disk2]}}\n",
        data.display()
    );
    std::fs::write(t.path("machine.yaml"), inventory).unwrap();
    let c = t.compile_with("plan.yaml", "machine.yaml");
    assert_eq!(
        expect_at(&c, "duet::task::missing-file", "plan.yaml", 3, 19),
        "The executable filename does not exist."
    );
    let m = expect_at(&c, "duet::task::not-executable", "plan.yaml", 4, 19);
    assert!(m.ends_with("of task `b` is not executable"), "{m}");
    let m = expect_at(&c, "duet::verify::not-on-system-disk", "plan.yaml", 6, 33);
    assert!(m.starts_with("The executable file ") && m.ends_with("check.sh is not on a system disk"), "{m}");
    assert_eq!(found(&c).len(), 3, "{:#?}", found(&c));
}

#[test]
fn the_summary_lists_the_unattended_entries_only_when_there_are_some() {
    let t = tree(PLAN);
    let c = t.compile("plan.yaml");
    let summary =
        crate::render::summary::render(c.compiled.as_ref().unwrap(), c.resolved.as_ref().unwrap(), &c.sources, None);
    let section = summary.split("\nUnattended upgrade\n").nth(1).unwrap().split("\nSteps\n").next().unwrap();
    let lines: Vec<&str> = section.lines().map(str::trim_end).collect();
    assert_eq!(
        lines[..3],
        ["  On failure:  abort", "  Versions:    AppServer 10.2 -> 12.0 (at most 2 major versions)", "  Tasks"]
    );
    assert!(lines[3].starts_with("    sp4    20m  safe    restart  installs AppServer 12.0  "), "{section}");
    assert!(section.contains("\n    status  before commit  30s  retry 3x 10s  http http://127.0.0.1:8080/health -> 200, contains \"ready\"\n"), "{section}");
    assert!(section.contains("\n    go-merge   before merge   expires 4h: abort\n"), "{section}");
    let page: Vec<&str> = lines.iter().find(|l| l.starts_with("    page ")).unwrap().split_whitespace().collect();
    assert_eq!(page[..4], ["page", "broken,", "aborted", "1m"], "{section}");

    let c = tree("version: 1\nservices: [A]\n").compile("plan.yaml");
    let summary =
        crate::render::summary::render(c.compiled.as_ref().unwrap(), c.resolved.as_ref().unwrap(), &c.sources, None);
    assert!(!summary.contains("Unattended"), "{summary}");
}
