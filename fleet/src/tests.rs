//! The fleet compiler's tests: each refusal at its exact `file:line:column`, with its message.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use duet_compiler::diagnostic::Severity;

use crate::compile::{FleetCompilation, compile};

/// A tree in a temporary directory with a node plan, an inventory and an executable script.
struct Tree {
    dir: tempfile::TempDir,
}

const NODE_PLAN: &str = "version: 1\nservices: [AppServer]\n";
const SCRIPT: &str = "#!/bin/sh\nexit 0\n";

impl Tree {
    fn new(fleet: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("fleet.yaml"), fleet).expect("write");
        std::fs::write(dir.path().join("node.yaml"), NODE_PLAN).expect("write");
        std::fs::create_dir(dir.path().join("bin")).expect("mkdir");
        let script = dir.path().join("bin/ok");
        std::fs::write(&script, SCRIPT).expect("write");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Self { dir }
    }

    fn compile(&self) -> FleetCompilation {
        compile(&self.dir.path().join("fleet.yaml"))
    }
}

/// `(code, line, column, message)` of every fleet-file diagnostic.
fn found(c: &FleetCompilation) -> Vec<(String, usize, usize, String)> {
    c.diagnostics
        .iter()
        .map(|d| {
            let (_, line, column) = d.position(&c.sources);
            (d.code.to_owned(), line.unwrap_or(0), column.unwrap_or(0), d.message.clone())
        })
        .collect()
}

#[track_caller]
fn only(fleet: &str) -> (String, usize, usize, String) {
    let c = Tree::new(fleet).compile();
    let all = found(&c);
    assert_eq!(all.len(), 1, "expected one diagnostic, found:\n{all:#?}");
    assert!(c.spec.is_none(), "an invalid fleet has no spec");
    all.into_iter().next().expect("one")
}

fn d(code: &str, line: usize, column: usize, message: &str) -> (String, usize, usize, String) {
    (code.to_owned(), line, column, message.to_owned())
}

const TWO_WEB: &str =
    "version: 1\nkind: fleet\nnodes:\n  a: {plan: node.yaml, groups: [web]}\n  b: {plan: node.yaml, groups: [web]}\n";

#[test]
fn a_minimal_fleet_compiles_with_its_stages_in_dag_order() {
    let c = Tree::new(&format!(
        "{TWO_WEB}stages:\n  - {{id: second, group: web, after: [first]}}\n  - {{id: first, group: web, serial: 2}}\n"
    ))
    .compile();
    assert!(found(&c).is_empty(), "{:#?}", found(&c));
    assert!(c.plan_of("a").is_some());
    let spec = c.spec.expect("valid");
    let ids: Vec<&str> = spec.stages.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["first", "second"]);
    assert_eq!(spec.groups["web"].members, ["a", "b"]);
    assert_eq!(spec.stages[0].serial, 2);
    assert!(spec.stages[1].source.ends_with("fleet.yaml:7"), "{}", spec.stages[1].source);
}

#[test]
fn the_schema_reports_unknown_keys_and_the_kind() {
    let c = Tree::new("version: 1\nkind: plan\nnodes: {a: {plan: node.yaml}}\nstages: [{id: s, seral: 2}]\n").compile();
    let all = found(&c);
    assert!(all.contains(&d("duet::schema::invalid-value", 2, 7, "`kind` must be \"fleet\"")), "{all:#?}");
    assert!(all.iter().any(|f| f.0 == "duet::schema::unknown-key" && f.1 == 4 && f.2 == 18), "{all:#?}");
    let help = c.diagnostics.iter().find(|d| d.code == "duet::schema::unknown-key").and_then(|d| d.help.clone());
    assert_eq!(help.as_deref(), Some("did you mean `serial`?"));
}

#[test]
fn a_stage_over_an_unknown_group_or_role_is_refused_naming_the_known_ones() {
    let (code, line, col, msg) = only(&format!("{TWO_WEB}stages:\n  - {{id: s, group: wbe}}\n"));
    assert_eq!((code.as_str(), line, col, msg.as_str()), ("duet::fleet::unknown-group", 7, 20, "unknown group `wbe`"));
    let c = Tree::new(&format!("{TWO_WEB}stages:\n  - {{id: s, group: wbe}}\n")).compile();
    assert_eq!(c.diagnostics[0].help.as_deref(), Some("the groups are: web"));
    let got = only(&format!("{TWO_WEB}stages:\n  - {{id: s, role: owner}}\n"));
    assert_eq!(got, d("duet::fleet::unknown-role", 7, 19, "unknown role `owner`"));
}

#[test]
fn a_role_that_matches_no_node_is_refused() {
    // Two nodes, the active role takes one; a count of 3 can never be met.
    let got = only(&format!(
        "{TWO_WEB}roles:\n  active: {{group: web, count: 3, probe: {{file: bin/ok}}}}\nstages:\n  - {{id: s, role: active}}\n"
    ));
    assert_eq!(got, d("duet::fleet::role-matches-no-node", 7, 31, "role `active` needs 3 nodes but group `web` has 2"));
    // A one-node group: `not: active` leaves nobody.
    let one = "version: 1\nkind: fleet\nnodes:\n  a: {plan: node.yaml, groups: [web]}\n";
    let got = only(&format!(
        "{one}roles:\n  active: {{group: web, probe: {{file: bin/ok}}}}\n  passive: {{group: web, not: active}}\nstages:\n  - {{id: s, role: passive}}\n"
    ));
    assert_eq!(
        got,
        d(
            "duet::fleet::role-matches-no-node",
            7,
            3,
            "role `passive` matches no node: group `web` has 1 and `active` takes 1"
        )
    );
}

#[test]
fn a_role_needs_exactly_one_rule() {
    let got = only(&format!("{TWO_WEB}roles:\n  r: {{group: web}}\nstages:\n  - {{id: s, group: web}}\n"));
    assert_eq!(got, d("duet::fleet::role-rule", 7, 3, "role `r` needs exactly one of `probe` and `not`"));
}

#[test]
fn a_serial_that_takes_a_must_stay_up_group_fully_down_is_refused() {
    let got =
        only(&format!("{TWO_WEB}groups:\n  web: {{min_up: 1}}\nstages:\n  - id: s\n    group: web\n    serial: 2\n"));
    assert_eq!(
        got,
        d(
            "duet::fleet::serial-takes-group-down",
            11,
            13,
            "stage `s` upgrades 2 of group `web`'s 2 nodes at once, leaving 0 up; the group must keep 1 up"
        )
    );
    // The same group with serial 1 is fine; a role over it counts only the role's nodes.
    let c = Tree::new(&format!(
        "{TWO_WEB}groups:\n  web: {{min_up: 1}}\nroles:\n  r: {{group: web, probe: {{file: bin/ok}}}}\nstages:\n  - {{id: s, role: r, serial: 5}}\n"
    ))
    .compile();
    assert!(c.is_valid(), "{:#?}", found(&c));
}

#[test]
fn a_group_that_must_keep_more_up_than_it_has_is_refused() {
    let got =
        only(&format!("{TWO_WEB}groups:\n  web: {{min_up: 3}}\nstages:\n  - {{id: s, group: web, upgrade: false}}\n"));
    assert_eq!(got.0, "duet::fleet::min-up-too-large");
    assert_eq!((got.1, got.2), (7, 17));
    assert_eq!(got.3, "group `web` must keep 3 nodes up, but it has only 2");
}

#[test]
fn a_budget_larger_than_the_group_is_refused() {
    let got = only(&format!("{TWO_WEB}stages:\n  - id: s\n    group: web\n    policy: {{max_failed: 3}}\n"));
    assert_eq!(got, d("duet::fleet::budget-too-large", 9, 5, "stage `s` allows 3 failed nodes but has only 2"));
    let got = only(&format!("{TWO_WEB}stages:\n  - {{id: s, group: web}}\npolicy: {{max_failed: 4}}\n"));
    assert_eq!(got, d("duet::fleet::budget-too-large", 8, 1, "the fleet allows 4 failed nodes but has only 2"));
}

#[test]
fn a_version_path_with_a_hop_too_big_is_refused() {
    let got = only(&format!(
        "{TWO_WEB}versions: {{software: UWM, path: [\"10.2\", \"12.1\", \"15.0\"], max_major_hop: 2}}\nstages:\n  - {{id: s, group: web}}\n"
    ));
    assert_eq!(
        got,
        d(
            "duet::fleet::hop-too-big",
            6,
            50,
            "12.1 -> 15.0 is 3 major versions; at most 2 per upgrade: upgrade to 14.x first"
        )
    );
    let got = only(&format!(
        "{TWO_WEB}versions: {{software: UWM, path: [\"12.1\", \"10.2\"]}}\nstages:\n  - {{id: s, group: web}}\n"
    ));
    assert_eq!(got, d("duet::fleet::version-order", 6, 42, "the version path goes from 12.1 to 10.2, which is not up"));
}

#[test]
fn a_node_plan_off_the_version_path_is_refused() {
    let tree = Tree::new(&format!(
        "{TWO_WEB}versions: {{software: UWM, path: [\"10.2\", \"12.1\"]}}\nstages:\n  - {{id: s, group: web}}\n"
    ));
    std::fs::write(
        tree.dir.path().join("node.yaml"),
        "version: 1\nversions: {software: UWM, from: \"9.0\", to: \"10.2\"}\n",
    )
    .expect("write");
    let c = tree.compile();
    let all = found(&c);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(all[0].0, "duet::fleet::plan-off-path");
    assert_eq!((all[0].1, all[0].2), (4, 13));
    assert_eq!(
        all[0].3,
        "node `a`'s plan upgrades UWM 9.0 -> 10.2, which is not a step of the fleet's path UWM 10.2 -> 12.1"
    );
}

#[test]
fn stages_that_wait_for_each_other_are_refused() {
    let got = only(&format!(
        "{TWO_WEB}stages:\n  - {{id: a, group: web, after: [b]}}\n  - {{id: b, group: web, after: [a]}}\n"
    ));
    assert_eq!(got, d("duet::fleet::stage-cycle", 7, 33, "stages wait for each other: a, b"));
    let got = only(&format!("{TWO_WEB}stages:\n  - {{id: a, group: web, after: [c]}}\n"));
    assert_eq!(got, d("duet::fleet::unknown-stage", 7, 33, "unknown stage `c`"));
    let got = only(&format!("{TWO_WEB}stages:\n  - {{id: a, group: web}}\n  - {{id: a, group: web}}\n"));
    assert_eq!(got, d("duet::fleet::duplicate-stage", 8, 10, "stage `a` is defined twice"));
}

#[test]
fn missing_and_non_executable_scripts_are_refused_where_they_are_named() {
    let tree = Tree::new(&format!(
        "{TWO_WEB}stages:\n  - id: s\n    group: web\n    drain: {{file: bin/nope}}\n    undrain: {{file: node.yaml}}\n"
    ));
    let all = found(&tree.compile());
    assert_eq!(
        all,
        [
            d("duet::fleet::missing-script", 9, 19, "script `bin/nope` does not exist"),
            d("duet::fleet::not-executable", 10, 21, "script `node.yaml` is not an executable file"),
        ]
    );
}

#[test]
fn a_node_plan_that_does_not_compile_is_named_and_its_errors_kept() {
    let tree = Tree::new(&format!("{TWO_WEB}stages:\n  - {{id: s, group: web}}\n"));
    std::fs::write(tree.dir.path().join("node.yaml"), "version: 1\nservies: [a]\n").expect("write");
    let c = tree.compile();
    let all = found(&c);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(all[0], d("duet::fleet::node-plan", 4, 13, "node `a` runs plan `node.yaml`, which has 1 error(s)"));
    assert_eq!(c.plans.len(), 1, "one compilation for the two nodes that share plan and inventory");
    assert_eq!(c.plans[0].compilation.count(Severity::Error), 1);
    assert_eq!(c.errors(), 3);
    let shown = c.render_human(false);
    assert!(shown.contains("unknown key `servies`"), "{shown}");
}

#[test]
fn duplicate_step_ids_in_a_stage_are_refused() {
    let got = only(&format!(
        "{TWO_WEB}stages:\n  - id: s\n    group: web\n    run_once: [{{id: x, file: bin/ok}}]\n    exclusive: {{id: db, steps: [{{id: x, file: bin/ok}}]}}\n"
    ));
    assert_eq!(got, d("duet::fleet::duplicate-step", 7, 9, "stage `s` has two steps `x`"));
}

/// Every fleet under `plans/fleets/` compiles, with its node plans, from the repository root.
#[test]
fn the_shipped_seed_fleets_compile() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans/fleets");
    let mut fleets = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("plans/fleets") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if path.extension().is_some_and(|e| e == "yaml") && text.contains("\nkind: fleet\n") {
            let c = compile(&path);
            assert!(c.is_valid(), "{}:\n{}", path.display(), c.render_human(false));
            fleets.push(path.file_name().expect("name").to_string_lossy().into_owned());
        }
    }
    fleets.sort();
    assert_eq!(fleets, ["eft-shared.yaml", "eft.yaml", "flowtraq.yaml", "uwm.yaml"]);
}
