//! The Linux platform's readiness findings, in the guide's style: each says what is wrong, about
//! what, and what to do.

use std::path::Path;

use duet_compiler::inventory::linux::{LinuxMachine, OnDrift, ServiceBackend};

use super::inspect::User;
use super::tree::{self, Tree};
use crate::platform::{Finding, Phase, Severity};
use crate::process::command;

fn finding(severity: Severity, message: String, subject: Option<String>, help: &str) -> Finding {
    Finding { severity, message, subject, help: help.to_owned() }
}

fn error(message: String, subject: &str, help: &str) -> Finding {
    finding(Severity::Error, message, Some(subject.to_owned()), help)
}

/// Everything the split needs of the host, its trees and its services.
pub(super) fn findings(machine: &LinuxMachine, trees: &[Tree]) -> Vec<Finding> {
    let mut found = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        found.push(finding(
            Severity::Error,
            "duet is not running as root".into(),
            None,
            "run duet as root: the Upgrade Side needs mount and network namespaces",
        ));
    }
    let namespaces = ["mnt", "net", "uts", "ipc"].iter().all(|ns| Path::new(&format!("/proc/self/ns/{ns}")).exists());
    if !namespaces {
        found.push(finding(
            Severity::Error,
            "this kernel has no mount, network, UTS or IPC namespaces".into(),
            None,
            "use a kernel built with namespaces (CONFIG_NAMESPACES): the Upgrade Side is isolated in them",
        ));
    }
    if !command::installed("ip") {
        found.push(finding(
            Severity::Error,
            "the `ip` command (iproute2) is not installed".into(),
            None,
            "install iproute2: duet brings the Upgrade Side's loopback interface up with it",
        ));
    }
    for t in trees {
        found.extend(tree_findings(t));
    }
    for s in &machine.services {
        found.extend(service_finding(&s.name, &s.backend));
    }
    for d in &machine.data {
        if !Path::new(&d.path).is_dir() {
            found.push(error(
                format!("data path {} ({}) does not exist", d.name, d.path),
                &d.name,
                "create it, or remove it from the machine file",
            ));
        }
    }
    found
}

fn tree_findings(t: &Tree) -> Vec<Finding> {
    let subject = t.name.as_str();
    let path = t.path.display();
    if tree::is_mount_point(&t.path) {
        return vec![error(
            format!("tree {subject} ({path}) is a mount point"),
            subject,
            "a tree must be a directory on the file system of its parent: move the application into one, then `duet adopt`",
        )];
    }
    let Some(current) = t.current().ok().flatten() else {
        let help = if t.path.is_dir() {
            "run `duet adopt --inventory FILE` once, with the application stopped"
        } else {
            "install the application there, or fix the tree's path in the machine file"
        };
        return vec![error(format!("tree {subject} ({path}) is not adopted"), subject, help)];
    };
    let generation = t.generation(current);
    let mut found = Vec::new();
    if !tree::same_file_system(&generation, t.parent()) {
        found.push(error(
            format!("tree {subject}: {path} and its generations are on different file systems"),
            subject,
            "keep PARENT/.duet on the tree's own file system: the swap is a rename",
        ));
    }
    if !tree::is_subvolume(&generation) {
        let need = tree::size_of(&generation);
        let free =
            nix::sys::statvfs::statvfs(t.parent()).map_or(u64::MAX, |s| s.blocks_available() * s.fragment_size());
        if need > free {
            found.push(error(
                format!("not enough space for a copy of tree {subject}: it holds {need} bytes, {free} are free"),
                subject,
                "free space on the tree's file system, or make the tree a btrfs subvolume (a snapshot needs none)",
            ));
        }
    }
    found
}

fn service_finding(name: &str, backend: &ServiceBackend) -> Option<Finding> {
    match backend {
        ServiceBackend::Exec { start, .. } => {
            let program = Path::new(&start[0]);
            let exists = if program.is_absolute() { program.is_file() } else { command::installed(&start[0]) };
            (!exists).then(|| {
                error(
                    format!("service {name}: its start program {} does not exist", start[0]),
                    name,
                    "install the application, or fix the service's `exec.start` in the machine file",
                )
            })
        }
        ServiceBackend::Systemd { unit } => {
            let known = command::output("systemctl", &["cat".into(), unit.into()]).is_ok_and(|o| o.success());
            (!known).then(|| {
                error(
                    format!("service {name}: the systemd unit {unit} does not exist (or systemd is not running)"),
                    name,
                    "install the unit, or give the service an `exec` backend in the machine file",
                )
            })
        }
    }
}

pub(super) fn stale_session(phase: Phase) -> Finding {
    finding(
        Severity::Error,
        format!("the machine is not Fault Tolerant: a session left it {phase:?}"),
        None,
        "finish or abort the upgrade session on the machine first (`duet status`)",
    )
}

pub(super) fn resyncing() -> Finding {
    finding(
        Severity::Warning,
        "old generations of the last session are still being deleted".into(),
        None,
        "nothing to do: the deletion runs in the background",
    )
}

pub(super) fn not_split(phase: Phase) -> Finding {
    finding(
        Severity::Error,
        format!("the machine is not split: it is {phase:?}"),
        None,
        "`duet status` shows the machine's state",
    )
}

pub(super) fn side_down() -> Finding {
    finding(
        Severity::Error,
        "the Upgrade Side is not up (partner state: DC Off)".into(),
        Some("Upgrade Side".into()),
        "restart the Upgrade Side, or abort",
    )
}

pub(super) fn busy(t: &Tree, user: &User) -> Finding {
    error(
        format!("process {} ({}) still uses tree {} outside the plan's services", user.pid, user.name, t.name),
        &t.name,
        "stop it, or add its service to the plan, then run the merge again",
    )
}

pub(super) fn drift(t: &Tree, changed: &[String], on_drift: OnDrift) -> Finding {
    let shown: Vec<&str> = changed.iter().take(5).map(String::as_str).collect();
    let more = changed.len().saturating_sub(shown.len());
    let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
    finding(
        if on_drift == OnDrift::Refuse { Severity::Error } else { Severity::Warning },
        format!(
            "the Production Side's tree {} changed since the split ({}{tail}): these changes are lost at the commit",
            t.name,
            shown.join(", ")
        ),
        Some(t.name.clone()),
        "copy the changes into the Upgrade Side's tree, or abort and split again",
    )
}
