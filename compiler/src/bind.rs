//! Binding a resolved plan to a machine (execution model 2.2): classify every disk as system or
//! data, and check that executables, the staging directory, event logs and services exist
//! where the plan needs them.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::inventory::{DiskLocation, Inventory};
use crate::plan::{DiskSelection, FieldValue, Kind, Spanned};
use crate::resolve::ResolvedPlan;
use crate::source::Loc;
use crate::suggest;

/// Disks as classified for one machine, each list in inventory order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskClasses {
    pub system: Vec<String>,
    pub data: Vec<String>,
}

/// A resolved plan checked against one machine.
#[derive(Debug)]
pub struct BoundPlan {
    pub disks: DiskClasses,
}

pub fn bind(plan: &ResolvedPlan, inventory: &Inventory, inventory_name: &str, diags: &mut Diagnostics) -> BoundPlan {
    let disks = classify_disks(plan, inventory, inventory_name, diags);
    let on_system =
        |path: &Path| inventory.volume_of(path).map(|v| (v, v.disks.iter().all(|d| disks.system.contains(d))));

    for action in &plan.actions {
        let program = Program {
            what: "action",
            id: &action.id,
            file: &action.file,
            at: action.file_loc,
            codes: ["duet::action::missing-file", "duet::action::not-executable", "duet::action::not-on-system-disk"],
        };
        check_executable(&program, inventory, &disks, inventory_name, diags);
    }
    // Upgrade tasks and `run` checks run on the Upgrade Side too.
    for program in &plan.programs {
        let codes = match program.kind {
            Kind::Task => ["duet::task::missing-file", "duet::task::not-executable", "duet::task::not-on-system-disk"],
            _ => ["duet::verify::missing-file", "duet::verify::not-executable", "duet::verify::not-on-system-disk"],
        };
        let program =
            Program { what: program.kind.as_str(), id: &program.id, file: &program.file, at: program.loc, codes };
        check_executable(&program, inventory, &disks, inventory_name, diags);
    }
    check_software(plan, inventory, inventory_name, diags);

    if let Some(setting) = &plan.staging_dir {
        if let FieldValue::Text(dir) = &setting.value {
            match on_system(Path::new(dir)) {
                None => diags.push(no_volume(setting.loc, dir, inventory_name)),
                Some((volume, true)) => diags.push(Diagnostic::error("duet::logs::staging-on-system-disk", format!("the staging directory {dir} is on a system disk"))
                    .at(setting.loc, format!("on volume `{}` (system)", volume.id))
                    .help("event logs must be saved to an internal data disk or an external disk: files on system disks are overwritten at commit")),
                Some(_) => {}
            }
        }
    }
    for log in &plan.logs {
        if !inventory.event_logs.contains(&log.name) {
            diags.push(
                Diagnostic::error(
                    "duet::logs::unknown",
                    format!("event log `{}` does not exist on {inventory_name}", log.name),
                )
                .at(log.decl, "unknown event log")
                .help_opt(
                    suggest::did_you_mean(&log.name, inventory.event_logs.iter().map(String::as_str))
                        .or_else(|| Some(format!("event logs there: {}", inventory.event_logs.join(", ")))),
                ),
            );
        }
    }
    for service in &plan.services {
        if !inventory.services.iter().any(|s| s.name == service.name) {
            diags.push(
                Diagnostic::error(
                    "duet::service::unknown",
                    format!("service `{}` does not exist on {inventory_name}", service.name),
                )
                .at(service.decl, "unknown service")
                .help_opt(
                    suggest::did_you_mean(&service.name, inventory.services.iter().map(|s| s.name.as_str())).or_else(
                        || Some("check the service name, or install the service before checking the plan".into()),
                    ),
                ),
            );
        }
    }
    BoundPlan { disks }
}

/// "The executable file must exist and lie on a system disk": the Upgrade Side reaches only
/// system disks while split. A symlink is judged by what it points to.
/// A program the plan names, as binding checks it.
struct Program<'a> {
    /// `action`, `task` or `check`.
    what: &'static str,
    id: &'a str,
    file: &'a Path,
    at: Loc,
    /// Missing, not executable, not on a system disk.
    codes: [&'static str; 3],
}

fn check_executable(
    program: &Program<'_>,
    inventory: &Inventory,
    disks: &DiskClasses,
    inventory_name: &str,
    diags: &mut Diagnostics,
) {
    let Program { what, id, file, at, codes: [missing, not_executable, off_system_code] } = *program;
    let shown = file.display();
    let problem = match std::fs::metadata(file) {
        Err(_) => Some(Diagnostic::error(missing, "The executable filename does not exist.").at(at, format!("{shown} not found")).help(format!(
            "{what} `{id}`: ensure the executable is in the directory you specified (relative paths are relative to the plan's directory)"
        ))),
        Ok(meta) if meta.is_dir() => Some(
            Diagnostic::error(not_executable, format!("the executable file {shown} of {what} `{id}` is a directory"))
                .at(at, "a directory")
                .help("name the program to run, not its directory"),
        ),
        Ok(meta) if meta.permissions().mode() & 0o111 == 0 => Some(
            Diagnostic::error(not_executable, format!("the executable file {shown} of {what} `{id}` is not executable"))
                .at(at, "no execute permission")
                .help(format!("chmod +x {shown}")),
        ),
        Ok(_) => None,
    };
    diags.extend(problem);

    let is_link = std::fs::symlink_metadata(file).is_ok_and(|m| m.file_type().is_symlink());
    let target =
        if is_link { std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf()) } else { file.to_path_buf() };
    let Some(volume) = inventory.volume_of(&target) else {
        diags.push(no_volume(at, &target.display().to_string(), inventory_name));
        return;
    };
    let off_system: Vec<&String> = volume.disks.iter().filter(|d| !disks.system.contains(*d)).collect();
    if off_system.is_empty() {
        return;
    }
    let via = if is_link { format!(" (it links to {})", target.display()) } else { String::new() };
    let selectable =
        off_system.iter().all(|d| inventory.disk(d).is_some_and(|d| d.location == DiskLocation::Internal && d.rdr));
    let help = if selectable {
        let names: Vec<&str> = off_system.iter().map(|d| d.as_str()).collect();
        format!(
            "select {} under `disks.system` in the top-level plan, or move the executable to a system disk",
            names.join(", ")
        )
    } else {
        "the Upgrade Side cannot reach data disks while split; move the executable to a system disk".to_owned()
    };
    diags.push(
        Diagnostic::error(off_system_code, format!("The executable file {shown} is not on a system disk{via}"))
            .at(at, format!("on volume `{}` (data)", volume.id))
            .help(help),
    );
}

fn no_volume(loc: Loc, path: &str, inventory_name: &str) -> Diagnostic {
    Diagnostic::error("duet::inventory::no-volume", format!("{path} is not on any volume of {inventory_name}"))
        .at(loc, "no volume mounts this path")
        .help("use a path under one of the inventory's volume mounts")
}

/// Classifies every disk of the machine in three passes over one growing set of system disks:
/// the plan's selection, the mandatory system disks, and volumes spanning several disks.
struct DiskClassifier<'a> {
    inventory: &'a Inventory,
    inventory_name: &'a str,
    selection: Option<&'a DiskSelection>,
    system: BTreeSet<String>,
    diags: &'a mut Diagnostics,
}

fn classify_disks(
    plan: &ResolvedPlan,
    inventory: &Inventory,
    inventory_name: &str,
    diags: &mut Diagnostics,
) -> DiskClasses {
    let mut c =
        DiskClassifier { inventory, inventory_name, selection: plan.disks.as_ref(), system: BTreeSet::new(), diags };
    c.selected();
    c.mandatory();
    c.spanning();
    let (system, data) = inventory.disks.iter().map(|d| d.id.clone()).partition(|id| c.system.contains(id));
    DiskClasses { system, data }
}

impl DiskClassifier<'_> {
    fn listed_as_data(&self, disk: &str) -> Option<&Spanned<String>> {
        self.selection.and_then(|s| s.data.iter().find(|n| n.value == disk))
    }

    /// Only internal RDR disks can be selected; external disks are always data.
    fn selected(&mut self) {
        let Some(selection) = self.selection else { return };
        let named = selection.system.iter().map(|n| (n, true)).chain(selection.data.iter().map(|n| (n, false)));
        for (name, as_system) in named {
            let Some(disk) = self.inventory.disk(&name.value) else {
                let ids = self.inventory.disks.iter().map(|d| d.id.as_str());
                let hint = suggest::did_you_mean(&name.value, ids.clone())
                    .unwrap_or_else(|| format!("disks there: {}", ids.collect::<Vec<_>>().join(", ")));
                self.diags.push(
                    Diagnostic::error(
                        "duet::disk::unknown",
                        format!("disk `{}` does not exist on {}", name.value, self.inventory_name),
                    )
                    .at(name.loc, "unknown disk")
                    .help(hint),
                );
                continue;
            };
            if let Some(other) = self.listed_as_data(&name.value).filter(|_| as_system) {
                self.diags.push(
                    Diagnostic::error(
                        "duet::disk::both",
                        format!("disk `{}` is listed as both system and data", name.value),
                    )
                    .at(other.loc, "listed as data")
                    .related(name.loc, "listed as system")
                    .help("a disk is either a system disk or a data disk: remove it from one of the lists"),
                );
            }
            let id = &name.value;
            let problem = match (disk.location, disk.rdr, as_system) {
                (DiskLocation::External, _, true) => Diagnostic::error(
                    "duet::disk::external",
                    format!("disk `{id}` is an external disk; external disks are always data disks"),
                )
                .at(name.loc, "external disk")
                .help("only internal disks mirrored with RDR can be system disks"),
                (DiskLocation::External, _, false) => Diagnostic::warning(
                    "duet::disk::external",
                    format!("disk `{id}` is an external disk, which is always a data disk; listing it changes nothing"),
                )
                .at(name.loc, "external disk"),
                (DiskLocation::Internal, false, _) => Diagnostic::error(
                    "duet::disk::not-rdr",
                    format!("disk `{id}` is not mirrored with RDR; only internal RDR disks can be selected"),
                )
                .at(name.loc, "not an RDR disk")
                .help("mirror the disk with RDR, or remove it from the selection"),
                (DiskLocation::Internal, true, true) => {
                    self.system.insert(id.clone());
                    continue;
                }
                (DiskLocation::Internal, true, false) => continue,
            };
            self.diags.push(problem);
        }
    }

    /// Mandatory system disks: a volume on them is boot or paging, or holds the mount point of
    /// such a volume (the volume that contains the directory it is mounted on).
    fn mandatory(&mut self) {
        let volumes = &self.inventory.volumes;
        let host_of = |w: &crate::inventory::Volume| {
            let parent = Path::new(&w.mount).parent()?;
            volumes.iter().filter(|v| v.id != w.id && parent.starts_with(&v.mount)).max_by_key(|v| v.mount.len())
        };
        for volume in volumes {
            let hosted = volumes.iter().find(|w| (w.boot || w.paging) && host_of(w).is_some_and(|h| h.id == volume.id));
            let reason = match (volume.boot, volume.paging, hosted) {
                (true, _, _) => format!("volume `{}` on it holds boot files", volume.id),
                (_, true, _) => format!("volume `{}` on it holds paging files", volume.id),
                (_, _, Some(w)) => {
                    format!("volume `{}` on it holds the mount point of volume `{}` ({})", volume.id, w.id, w.mount)
                }
                _ => continue,
            };
            for disk in &volume.disks {
                if let Some(named) = self.listed_as_data(disk) {
                    self.diags.push(
                        Diagnostic::error(
                            "duet::disk::mandatory",
                            format!("disk `{disk}` is a mandatory system disk and cannot be a data disk"),
                        )
                        .at(named.loc, reason.clone())
                        .help(
                            "remove it from `disks.data`; mandatory system disks are always upgraded as system disks",
                        ),
                    );
                }
                self.system.insert(disk.clone());
            }
        }
    }

    /// A volume spanning several disks makes all of them system when one is, until nothing grows.
    fn spanning(&mut self) {
        loop {
            let mut grew = false;
            for volume in &self.inventory.volumes {
                let Some(anchor) = volume.disks.iter().find(|d| self.system.contains(*d)).cloned() else { continue };
                for disk in &volume.disks {
                    if !self.system.insert(disk.clone()) {
                        continue;
                    }
                    grew = true;
                    let message = format!(
                        "disk `{disk}` is a system disk because volume `{}` spans it and system disk `{anchor}`",
                        volume.id
                    );
                    let d = match (self.listed_as_data(disk), self.selection) {
                        (Some(named), _) => Diagnostic::error("duet::disk::spanned", message)
                            .at(named.loc, "listed as data")
                            .help("a volume is upgraded whole: remove the disk from `disks.data`"),
                        (None, Some(s)) => Diagnostic::note("duet::disk::spanned", message).at(s.loc, "disk selection"),
                        (None, None) => Diagnostic::note("duet::disk::spanned", message).in_file(self.inventory_name),
                    };
                    self.diags.push(d);
                }
            }
            if !grew {
                break;
            }
        }
    }
}

/// `version` checks and `versions` name software the machine's software inventory lists.
fn check_software(plan: &ResolvedPlan, inventory: &Inventory, inventory_name: &str, diags: &mut Diagnostics) {
    let known = || inventory.software.iter().map(|s| s.name.as_str());
    for reference in &plan.software {
        let name = &reference.name.value;
        if known().any(|k| k == name) {
            continue;
        }
        diags.push(
            Diagnostic::error(
                "duet::software::unknown",
                format!("{} names software `{name}`, which {inventory_name} does not list", reference.what),
            )
            .at(reference.name.loc, "unknown software")
            .help_opt(suggest::did_you_mean(name, known()).or_else(|| {
                let listed: Vec<&str> = known().collect();
                Some(if listed.is_empty() {
                    "the inventory lists no software: add `software: [{name, version}]` to it".to_owned()
                } else {
                    format!("software there: {}", listed.join(", "))
                })
            })),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{Tree, expect_at, expect_clean, found};

    /// disk0 holds `/` (boot); `/boot` is a boot volume on disk1, so disk0 also "holds a mount
    /// point of such a volume"; volume S spans disk2 and disk3; D is data on disk4; disk5 is
    /// internal without RDR; disk6 is external.
    fn inventory(root: &std::path::Path) -> String {
        let r = root.display();
        format!(
            "version: 1\nmodel: Test\ndisks:\n  - {{id: disk0}}\n  - {{id: disk1}}\n  - {{id: disk2}}\n  - {{id: disk3}}\n  - {{id: disk4}}\n  - {{id: disk5, rdr: false}}\n  - {{id: disk6, location: external}}\n\
             volumes:\n  - {{id: R, mount: /, disks: [disk0]}}\n  - {{id: B, mount: /boot, disks: [disk1], boot: true}}\n  - {{id: S, mount: {r}/sys, disks: [disk2, disk3]}}\n  - {{id: D, mount: {r}/data, disks: [disk4]}}\n\
             services:\n  - {{name: MSSQLSERVER}}\n  - {{name: W3SVC, startup: manual}}\nevent_logs: [Application, System, Security]\n"
        )
    }

    fn tree(plan: &str) -> Tree {
        let t = Tree::new(&[
            ("plan.yaml", plan),
            ("sys/bin/ok.sh", "#!/bin/sh\n"),
            ("data/bin/on-data.sh", "#!/bin/sh\n"),
            ("sys/bin/not-exec.txt", ""),
        ]);
        std::fs::write(t.path("inv.yaml"), inventory(t.dir.path())).unwrap();
        t
    }

    #[test]
    fn a_plan_that_fits_the_machine_binds_and_classifies_disks() {
        let t = tree("");
        let plan = format!(
            "version: 1\ndisks: {{system: [disk2]}}\nservices: [MSSQLSERVER]\nactions:\n  - {{file: sys/bin/ok.sh, control: stop}}\nlogs: {{staging_dir: {}/data/logs, backup: [System]}}\n",
            t.dir.path().display()
        );
        std::fs::write(t.path("plan.yaml"), plan).unwrap();
        let c = t.compile_with("plan.yaml", "inv.yaml");
        let notes = found(&c);
        expect_clean(&c);
        let disks = &c.compiled.as_ref().unwrap().disks;
        assert_eq!(
            disks.system,
            ["disk0", "disk1", "disk2", "disk3"],
            "mandatory (disk0, disk1), chosen (disk2) and spanned (disk3)"
        );
        assert_eq!(disks.data, ["disk4", "disk5", "disk6"]);
        assert!(
            notes.iter().any(|n| n.code == "duet::disk::spanned"
                && n.message == "disk `disk3` is a system disk because volume `S` spans it and system disk `disk2`"),
            "{notes:#?}"
        );
    }

    #[test]
    fn disk_rules() {
        let t =
            tree("version: 1\ndisks:\n  system: [disk9, disk6, disk5, disk2]\n  data: [disk0, disk1, disk3, disk2]\n");
        let c = t.compile_with("plan.yaml", "inv.yaml");
        let m = expect_at(&c, "duet::disk::unknown", "plan.yaml", 3, 12);
        assert!(m.starts_with("disk `disk9` does not exist on"), "{m}");
        expect_at(&c, "duet::disk::external", "plan.yaml", 3, 19);
        expect_at(&c, "duet::disk::not-rdr", "plan.yaml", 3, 26);
        expect_at(&c, "duet::disk::mandatory", "plan.yaml", 4, 10);
        expect_at(&c, "duet::disk::mandatory", "plan.yaml", 4, 17);
        expect_at(&c, "duet::disk::spanned", "plan.yaml", 4, 24);
        expect_at(&c, "duet::disk::both", "plan.yaml", 4, 31);
        assert!(!c.is_valid());
    }

    #[test]
    fn executables_must_exist_on_a_system_disk() {
        let t = tree(
            "version: 1\ndisks: {system: [disk2]}\nactions:\n  - {file: sys/bin/missing.sh, control: stop}\n  - {file: data/bin/on-data.sh, control: stop}\n  - {file: sys/bin/not-exec.txt, control: stop}\n  - {file: sys/bin, control: stop}\n",
        );
        let c = t.compile_with("plan.yaml", "inv.yaml");
        assert_eq!(
            expect_at(&c, "duet::action::missing-file", "plan.yaml", 4, 12),
            "The executable filename does not exist."
        );
        let m = expect_at(&c, "duet::action::not-on-system-disk", "plan.yaml", 5, 12);
        assert!(
            m.starts_with("The executable file ") && m.ends_with("data/bin/on-data.sh is not on a system disk"),
            "{m}"
        );
        expect_at(&c, "duet::action::not-executable", "plan.yaml", 6, 12);
        expect_at(&c, "duet::action::not-executable", "plan.yaml", 7, 12);
        assert_eq!(
            found(&c).iter().filter(|f| f.severity == crate::diagnostic::Severity::Error).count(),
            4,
            "files on the system volume are on a system disk"
        );
    }

    #[test]
    fn logs_and_services_must_exist_and_staging_must_be_on_data() {
        let t = tree(
            "version: 1\nservices: [MSSQLSERVER, W3SVC, MSSQLSERVR]\nlogs:\n  staging_dir: /var/log/duet\n  backup: [Application, Aplication]\n",
        );
        let c = t.compile_with("plan.yaml", "inv.yaml");
        expect_at(&c, "duet::service::unknown", "plan.yaml", 2, 32);
        expect_at(&c, "duet::logs::staging-on-system-disk", "plan.yaml", 4, 16);
        expect_at(&c, "duet::logs::unknown", "plan.yaml", 5, 25);
        let helps: Vec<_> = c.diagnostics.iter().filter_map(|d| d.help.as_deref()).collect();
        assert!(
            helps.contains(&"did you mean `MSSQLSERVER`?") && helps.contains(&"did you mean `Application`?"),
            "{helps:?}"
        );
    }

    #[test]
    fn without_an_inventory_only_platform_independent_checks_run() {
        let t = tree(
            "version: 1\ndisks: {system: [disk9]}\nservices: [NoSuchService]\nactions:\n  - {file: sys/bin/missing.sh, control: stop}\n",
        );
        let c = t.compile("plan.yaml");
        expect_clean(&c);
        assert_eq!(c.compiled.unwrap().inventory, None);
    }

    #[test]
    fn inventory_problems_are_reported_in_the_inventory() {
        let t = Tree::new(&[
            ("plan.yaml", "version: 1\n"),
            (
                "inv.yaml",
                "version: 1\ndisks: [{id: a}, {id: a}]\nvolumes: [{id: V, mount: /, disks: [b]}]\nservices: [{name: S}]\nsimulation:\n  faults: [{service: T, on: stop}]\n",
            ),
        ]);
        let c = t.compile_with("plan.yaml", "inv.yaml");
        expect_at(&c, "duet::inventory::duplicate", "inv.yaml", 2, 23);
        expect_at(&c, "duet::inventory::unknown-disk", "inv.yaml", 3, 37);
        expect_at(&c, "duet::inventory::unknown-service", "inv.yaml", 6, 22);
        assert!(!c.is_valid());
    }

    #[test]
    fn simulated_durations_are_checked() {
        let t = Tree::new(&[
            ("plan.yaml", "version: 1\n"),
            ("inv.yaml", "version: 1\nsimulation: {durations: {split: 0s, merge: 9999h}}\n"),
        ]);
        let c = t.compile_with("plan.yaml", "inv.yaml");
        let m = expect_at(&c, "duet::inventory::duration", "inv.yaml", 2, 44);
        assert_eq!(m, "invalid simulated duration: `9999h` is longer than the 7-day maximum");
        assert_eq!(found(&c).len(), 1, "0s (instant) is a valid simulated duration");
    }

    #[test]
    fn a_symlink_is_judged_by_its_target_and_unselected_disks_are_named() {
        let t = tree("");
        std::os::unix::fs::symlink(t.path("data/bin/on-data.sh"), t.path("sys/bin/link.sh")).unwrap();
        std::fs::write(t.path("plan.yaml"), "version: 1\nactions:\n  - {file: sys/bin/link.sh, control: stop}\n  - {file: sys/bin/ok.sh, control: stop}\n").unwrap();
        let c = t.compile_with("plan.yaml", "inv.yaml");
        let m = expect_at(&c, "duet::action::not-on-system-disk", "plan.yaml", 3, 12);
        assert!(m.contains("(it links to ") && m.ends_with("data/bin/on-data.sh)"), "{m}");
        expect_at(&c, "duet::action::not-on-system-disk", "plan.yaml", 4, 12);
        let helps: Vec<&str> = c.diagnostics.iter().filter_map(|d| d.help.as_deref()).collect();
        assert!(helps.contains(&"select disk2, disk3 under `disks.system` in the top-level plan, or move the executable to a system disk"), "{helps:#?}");
    }

    #[test]
    fn a_mandatory_disk_says_why() {
        let t = tree("version: 1\ndisks: {data: [disk0, disk1]}\n");
        let c = t.compile_with("plan.yaml", "inv.yaml");
        let labels: Vec<&str> = c
            .diagnostics
            .iter()
            .filter(|d| d.code == "duet::disk::mandatory")
            .map(|d| d.primary.as_ref().unwrap().text.as_str())
            .collect();
        assert_eq!(
            labels,
            ["volume `R` on it holds the mount point of volume `B` (/boot)", "volume `B` on it holds boot files"]
        );
    }

    #[test]
    fn volumes_on_one_mount_and_a_missing_boot_volume() {
        let t = Tree::new(&[
            ("plan.yaml", "version: 1\n"),
            (
                "inv.yaml",
                "version: 1\ndisks: [{id: a}, {id: b}]\nvolumes:\n  - {id: E, mount: /data, disks: [a]}\n  - {id: F, mount: /data/, disks: [b]}\n",
            ),
        ]);
        let c = t.compile_with("plan.yaml", "inv.yaml");
        expect_at(&c, "duet::inventory::duplicate-mount", "inv.yaml", 5, 20);
        expect_at(&c, "duet::inventory::no-boot-volume", "inv.yaml", 3, 1);
    }
}
