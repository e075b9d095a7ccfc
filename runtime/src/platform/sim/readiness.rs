//! The readiness probes of guide table 5-1, read from an inventory: what a machine shows about
//! itself that would block (or endanger) an upgrade session.
//!
//! Pure: the same inventory always gives the same findings, in the same order. Findings come in
//! the order of the guide's table, and within a row in inventory order. `message` keeps the
//! guide's text word for word; `subject` names the enclosure, disk or team; `help` shortens
//! the guide's "Action" column. What depends on the machine's state (disks still
//! resynchronising after a session, a session already on the hardware) is the platform's to add.

use duet_compiler::inventory::{DiskLocation, Inventory};

use crate::platform::{Finding, Severity};

/// The two CPU-I/O enclosures of an Express5800/320Ma (guide: "I/O enclosure 10").
pub(crate) const ENCLOSURES: [u32; 2] = [10, 11];

pub(crate) const RDR_NOT_DUPLEXED: &str = "RDR disk is not duplexed";
pub(crate) const RDR_HELP: &str = "if an upgrade session ran recently, wait for the RDR resynchronization to complete \
                                   before starting another; otherwise check the disk's mirror";

/// Every finding for `inventory`, in the order of guide table 5-1.
pub(crate) fn findings(inventory: &Inventory) -> Vec<Finding> {
    let mut out = Vec::new();
    io_boards(inventory, &mut out);
    for disk in inventory.disks.iter().filter(|d| d.location == DiskLocation::Internal && d.rdr && !d.synced) {
        out.push(error(RDR_NOT_DUPLEXED, &disk.id, RDR_HELP));
    }
    for team in inventory.teams.iter().filter(|t| t.embedded && t.adapters.len() < 2) {
        out.push(error(
            "Embedded NIC not teamed",
            &team.name,
            "team all embedded Ethernet PCI adapters (Intel PROSet), with an adapter from each CPU-I/O enclosure",
        ));
    }
    for team in inventory.teams.iter().filter(|t| t.address.is_none() && !t.dhcp) {
        out.push(error(
            "No IP address on Upgrade ready team",
            &team.name,
            "assign an IP address to the Ethernet team (preferably a static one), or renew its DHCP lease",
        ));
    }
    for team in inventory.teams.iter().filter(|t| t.embedded && !linked_on_both_sides(t)) {
        out.push(error(
            "Team does not have link on both sides",
            &team.name,
            "give the embedded team an adapter with an active network link in each CPU-I/O enclosure: check that \
             the network cables are plugged in on both sides",
        ));
    }
    for team in inventory.teams.iter().filter(|t| t.dhcp) {
        out.push(Finding {
            severity: Severity::Warning,
            message: "Active Upgrade may fail. Check DHCP server.".into(),
            subject: Some(team.name.clone()),
            help: "if possible, assign static IP addresses to your Ethernet teams and VTMs".into(),
        });
    }
    if !inventory.remote_desktop {
        out.push(Finding {
            severity: Severity::Warning,
            message: "Remote Desktop is not enabled".into(),
            subject: None,
            help: "enable Remote Desktop connections in the System control panel to reach the Upgrade Side while \
                   split (or use Remote KVM)"
                .into(),
        });
    }
    out
}

/// "IO board nn is unsafe to pull": a CPU-I/O enclosure that is not duplexed, or whose VTM (a
/// critical resource) is missing or unconfigured. One finding per enclosure, with every reason.
fn io_boards(inventory: &Inventory, out: &mut Vec<Finding>) {
    for enclosure in ENCLOSURES {
        let mut reasons = Vec::new();
        if !inventory.duplex {
            reasons.push("the system is not duplexed".to_owned());
        }
        match inventory.vtms.iter().find(|v| v.enclosure == enclosure) {
            None => reasons.push(format!("enclosure {enclosure} has no VTM")),
            Some(vtm) if !vtm.configured => reasons.push(format!("the VTM in enclosure {enclosure} is not configured")),
            Some(_) => {}
        }
        if !reasons.is_empty() {
            out.push(error(
                &format!("IO board {enclosure} is unsafe to pull"),
                &format!("enclosure {enclosure}"),
                &format!(
                    "{}: verify that all critical system resources (disks, Ethernet PCI adapters, VTMs) are \
                     configured correctly and duplexed",
                    reasons.join("; ")
                ),
            ));
        }
    }
}

/// Adapters with an active link in at least two different enclosures.
fn linked_on_both_sides(team: &duet_compiler::inventory::Team) -> bool {
    let mut linked = team.adapters.iter().filter(|a| a.link).map(|a| a.enclosure);
    linked.next().is_some_and(|first| linked.any(|e| e != first))
}

fn error(message: &str, subject: &str, help: &str) -> Finding {
    Finding { severity: Severity::Error, message: message.into(), subject: Some(subject.into()), help: help.into() }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use duet_compiler::diagnostic::Diagnostics;
    use duet_compiler::inventory::{Adapter, Inventory, Team, Vtm};
    use duet_compiler::source::SourceMap;

    use super::*;

    /// The guide's machine, as `plans/machines/320ma.yaml` describes it.
    pub(crate) fn machine_320ma() -> Inventory {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans/machines/320ma.yaml");
        let (mut sources, mut diags) = (SourceMap::default(), Diagnostics::default());
        Inventory::load(&path, &mut sources, &mut diags).expect("the 320Ma inventory loads")
    }

    fn team(name: &str, adapters: &[(u32, bool)]) -> Team {
        Team {
            name: name.into(),
            embedded: true,
            adapters: adapters.iter().map(|&(enclosure, link)| Adapter { enclosure, link }).collect(),
            address: Some("192.0.2.10".into()),
            dhcp: false,
        }
    }

    /// (what is changed, the change, the findings as `severity message (subject)`).
    type Case = (&'static str, fn(&mut Inventory), &'static [&'static str]);

    const CASES: &[Case] = &[
        (
            "not duplexed",
            |i| i.duplex = false,
            &[
                "Error IO board 10 is unsafe to pull (enclosure 10)",
                "Error IO board 11 is unsafe to pull (enclosure 11)",
            ],
        ),
        (
            "VTM missing",
            |i| i.vtms.retain(|v| v.enclosure != 11),
            &["Error IO board 11 is unsafe to pull (enclosure 11)"],
        ),
        (
            "VTM not configured",
            |i| i.vtms[0].configured = false,
            &["Error IO board 10 is unsafe to pull (enclosure 10)"],
        ),
        (
            "VTMs in other enclosures only",
            |i| i.vtms = vec![Vtm { enclosure: 0, configured: true }, Vtm { enclosure: 1, configured: true }],
            &[
                "Error IO board 10 is unsafe to pull (enclosure 10)",
                "Error IO board 11 is unsafe to pull (enclosure 11)",
            ],
        ),
        ("RDR disk resynchronising", |i| i.disks[1].synced = false, &["Error RDR disk is not duplexed (disk1)"]),
        ("an unsynced external disk is not RDR", |i| i.disks[3].synced = false, &[]),
        (
            "embedded NIC alone",
            |i| i.teams[0].adapters.truncate(1),
            &["Error Embedded NIC not teamed (team0)", "Error Team does not have link on both sides (team0)"],
        ),
        ("no IP address", |i| i.teams[0].address = None, &["Error No IP address on Upgrade ready team (team0)"]),
        (
            "no link in enclosure 11",
            |i| i.teams[0].adapters[1].link = false,
            &["Error Team does not have link on both sides (team0)"],
        ),
        (
            "both adapters in one enclosure",
            |i| i.teams[0].adapters[1].enclosure = 10,
            &["Error Team does not have link on both sides (team0)"],
        ),
        (
            "a non-embedded team needs no link on both sides",
            |i| {
                i.teams.push(Team { embedded: false, ..team("team1", &[(10, true)]) });
            },
            &[],
        ),
        (
            "DHCP",
            |i| {
                i.teams[0].address = None;
                i.teams[0].dhcp = true;
            },
            &["Warning Active Upgrade may fail. Check DHCP server. (team0)"],
        ),
        ("Remote Desktop disabled", |i| i.remote_desktop = false, &["Warning Remote Desktop is not enabled"]),
        (
            "everything at once, in the guide's order",
            |i| {
                i.remote_desktop = false;
                i.teams.push(Team { dhcp: true, address: None, ..team("team1", &[(11, true), (10, false)]) });
                i.disks[2].synced = false;
                i.disks[0].synced = false;
                i.vtms.clear();
            },
            &[
                "Error IO board 10 is unsafe to pull (enclosure 10)",
                "Error IO board 11 is unsafe to pull (enclosure 11)",
                "Error RDR disk is not duplexed (disk0)",
                "Error RDR disk is not duplexed (disk2)",
                "Error Team does not have link on both sides (team1)",
                "Warning Active Upgrade may fail. Check DHCP server. (team1)",
                "Warning Remote Desktop is not enabled",
            ],
        ),
    ];

    fn show(f: &Finding) -> String {
        let subject = f.subject.as_deref().map(|s| format!(" ({s})")).unwrap_or_default();
        format!("{} {}{subject}", f.severity.as_str(), f.message)
    }

    #[test]
    fn the_320ma_machine_is_ready() {
        assert_eq!(findings(&machine_320ma()), []);
    }

    #[test]
    fn each_condition_gives_the_guides_message() {
        for (what, change, expected) in CASES {
            let mut inventory = machine_320ma();
            change(&mut inventory);
            let found = findings(&inventory);
            assert_eq!(found.iter().map(show).collect::<Vec<_>>(), *expected, "{what}");
            assert!(found.iter().all(|f| !f.help.is_empty()), "{what}: every finding says what to do");
            assert_eq!(findings(&inventory), found, "{what}: deterministic");
        }
    }

    #[test]
    fn io_board_findings_say_why() {
        let mut inventory = machine_320ma();
        inventory.duplex = false;
        inventory.vtms[1].configured = false;
        let found = findings(&inventory);
        assert!(found[0].help.starts_with("the system is not duplexed: verify"), "{}", found[0].help);
        assert!(
            found[1].help.starts_with("the system is not duplexed; the VTM in enclosure 11 is not configured: "),
            "{}",
            found[1].help
        );
        assert!(found.iter().all(Finding::blocks));
    }
}
