//! The machine's software inventory through the real binary (issue 12): an inventory's
//! `software` checked where it is written, and shown per side by `status` once the simulated
//! machine is built from it. The verification gates themselves (each check kind passing and
//! failing, HTTP against a server on 127.0.0.1) are tested at the step, in
//! runtime/src/run/steps/verify/tests.rs, until the compiler reads `verify:`.

use crate::machine::{INVENTORY, Machine, PLAN};
use crate::support::{duet, tree};

fn with_software() -> String {
    format!(
        "{INVENTORY}software:\n  - {{name: SQL Server, version: \"15.0.2\"}}\n  - {{name: IIS, version: \"10.0\"}}\n"
    )
}

#[test]
fn status_shows_the_software_of_both_sides_once_the_machine_is_built_from_the_inventory() {
    let m = Machine::with(PLAN, &with_software());
    m.run(&["readiness", &m.plan()]).code(0);
    let status = m.status();
    assert_eq!(
        status["software"],
        serde_json::json!([
            {"name": "IIS", "production": "10.0", "upgrade": "10.0"},
            {"name": "SQL Server", "production": "15.0.2", "upgrade": "15.0.2"},
        ]),
        "{status:#}"
    );
    m.run(&["status"]).code(0).stdout_has(
        "Software:\n              Production Side         Upgrade Side\n  \
         IIS         10.0                    10.0\n  \
         SQL Server  15.0.2                  15.0.2\n",
    );
}

#[test]
fn a_machine_without_software_shows_none() {
    let m = Machine::new();
    m.run(&["readiness", &m.plan()]).code(0);
    let status = m.status();
    assert!(status.get("software").is_none(), "{status:#}");
    let text = m.run(&["status"]).code(0).stdout.clone();
    assert!(!text.contains("Software:"), "{text}");
}

#[test]
fn a_bad_software_entry_is_refused_where_it_is_written() {
    let inventory = "version: 1\nsoftware:\n  - {name: SQL Server, version: 10.2}\n  - {name: IIS, version: \"ten\"}\n  - {name: IIS, version: \"10\"}\n";
    let dir = tree(&[("plan.yaml", b"version: 1\n"), ("inv.yaml", inventory.as_bytes())]);
    let out = duet(&["check", "plan.yaml", "--inventory", "inv.yaml"]).in_dir(dir.path()).run();
    out.code(1)
        .stderr_has("inv.yaml:3:33]")
        .stderr_has("invalid software version: YAML reads this version as a number, which loses its spelling")
        .stderr_has("inv.yaml:4:26]")
        .stderr_has("\"ten\" is not a version")
        .stderr_has("inv.yaml:5:12]")
        .stderr_has("software `IIS` is listed twice");
}
