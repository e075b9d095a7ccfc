//! A Linux machine file (`platform: linux`, docs/linux.md): application trees, data paths, services
//! and event logs of an ordinary Linux host. Plans bind to it exactly as to the sim's inventory:
//! [`machine`] turns it into the disks, volumes, services and event logs that binding reads.
//!
//! The mapping (decision D63): the host's root file system is disk `root` (volume `/`, boot, so a
//! mandatory system disk: the Upgrade Side sees it, read-only); each tree is an internal disk with
//! a boot volume at its path (mandatory system: every tree the machine file names is split); each
//! data path is an external disk (always data: the Upgrade Side never sees it).

use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use super::{Disk, DiskLocation, InventoryService, Startup, Volume, items, text};
use crate::compiled::Software;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::duration;
use crate::source::{FileId, Loc};
use crate::suggest;
use crate::yaml::{Node, Value};

/// The disk (and volume) id of the host's root file system.
pub const ROOT_DISK: &str = "root";

/// Default time a service is given to stop after SIGTERM before SIGKILL.
const DEFAULT_STOP_TIMEOUT_MS: u64 = 10_000;

/// A named absolute path (a tree or a data path).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedPath {
    pub name: String,
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceBackend {
    /// A systemd unit, driven through `systemctl`.
    Systemd { unit: String },
    /// A program duet starts detached and tracks by its process (or `pid_file`).
    Exec { start: Vec<String>, stop: Option<Vec<String>>, pid_file: Option<String>, stop_timeout_ms: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinuxService {
    pub name: String,
    pub startup: Startup,
    pub backend: ServiceBackend,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogSource {
    /// A file on the host (read through the side's view while split).
    File(String),
    /// A systemd unit's journal (`journalctl -u UNIT -o json`).
    Unit(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinuxLog {
    pub name: String,
    pub source: LogSource,
}

/// Software whose version a tree records in a file relative to the tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeVersion {
    pub name: String,
    pub tree: String,
    pub file: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDrift {
    #[default]
    Warn,
    Refuse,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnReboot {
    #[default]
    Revert,
    Keep,
}

/// The `linux` section of a machine file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinuxMachine {
    pub trees: Vec<NamedPath>,
    pub data: Vec<NamedPath>,
    pub services: Vec<LinuxService>,
    pub event_logs: Vec<LinuxLog>,
    pub software: Vec<TreeVersion>,
    pub on_drift: OnDrift,
    pub on_reboot: OnReboot,
}

impl LinuxMachine {
    pub fn tree(&self, name: &str) -> Option<&NamedPath> {
        self.trees.iter().find(|t| t.name == name)
    }

    pub fn service(&self, name: &str) -> Option<&LinuxService> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// What binding reads, made from the `linux` section.
pub(super) struct Derived {
    pub(super) disks: Vec<Disk>,
    pub(super) volumes: Vec<Volume>,
    pub(super) services: Vec<InventoryService>,
    pub(super) event_logs: Vec<String>,
    pub(super) software: Vec<Software>,
}

/// Keys of the sim's inventory that a Linux machine file derives instead.
const DERIVED_KEYS: [&str; 7] = ["disks", "volumes", "network", "vtms", "services", "event_logs", "simulation"];

/// Reads the `linux` section of a schema-valid machine file and checks what the schema cannot.
pub(super) fn machine(root: &Node, file: FileId, diags: &mut Diagnostics) -> (LinuxMachine, Derived) {
    let at = |n: &Node| Loc { file, span: n.span };
    for entry in DERIVED_KEYS.iter().filter_map(|k| root.get(k)) {
        diags.push(
            Diagnostic::error(
                "duet::inventory::linux-key",
                format!("`{}` is not written in a linux machine file: it follows from `linux`", entry.key),
            )
            .at(Loc { file, span: entry.key_span }, "not for platform: linux")
            .help("describe trees, data paths, services and event logs under `linux:` (docs/linux.md)"),
        );
    }
    let Some(section) = root.get("linux").map(|e| &e.value) else {
        diags.push(
            Diagnostic::error("duet::inventory::linux-missing", "a linux machine file needs a `linux` section")
                .at(Loc { file, span: root.head() }, "platform: linux")
                .help("`duet inventory --platform linux --tree NAME=PATH ...` writes one from this host"),
        );
        return (LinuxMachine::default(), derive(&LinuxMachine::default()));
    };
    let named = |key: &str| -> Vec<NamedPath> {
        items(section, key)
            .iter()
            .map(|n| NamedPath { name: text(n, "name").unwrap_or_default(), path: text(n, "path").unwrap_or_default() })
            .collect()
    };
    let machine = LinuxMachine {
        trees: named("trees"),
        data: named("data"),
        services: items(section, "services").iter().map(service).collect(),
        event_logs: items(section, "event_logs").iter().map(log).collect(),
        software: items(section, "software")
            .iter()
            .map(|n| TreeVersion {
                name: text(n, "name").unwrap_or_default(),
                tree: text(n, "tree").unwrap_or_default(),
                file: text(n, "file").unwrap_or_default(),
            })
            .collect(),
        on_drift: if text(section, "on_drift").as_deref() == Some("refuse") { OnDrift::Refuse } else { OnDrift::Warn },
        on_reboot: if text(section, "on_reboot").as_deref() == Some("keep") {
            OnReboot::Keep
        } else {
            OnReboot::Revert
        },
    };
    check_paths(section, file, diags);
    for node in items(section, "software") {
        let Some(entry) = node.get("tree") else { continue };
        let tree = entry.value.as_str().unwrap_or_default();
        if machine.tree(tree).is_none() {
            diags.push(
                Diagnostic::error(
                    "duet::inventory::unknown-tree",
                    format!("software names tree `{tree}`, which is not listed under `linux.trees`"),
                )
                .at(at(&entry.value), "unknown tree")
                .help_opt(suggest::did_you_mean(tree, machine.trees.iter().map(|t| t.name.as_str()))),
            );
        }
    }
    let derived = derive(&machine);
    (machine, derived)
}

fn service(n: &Node) -> LinuxService {
    let startup = match text(n, "startup").as_deref() {
        Some("manual") => Startup::Manual,
        Some("disabled") => Startup::Disabled,
        _ => Startup::Automatic,
    };
    let backend = match n.get("exec") {
        Some(exec) => {
            let exec = &exec.value;
            let stop_timeout_ms =
                text(exec, "stop_timeout").and_then(|t| duration::parse(&t).ok()).unwrap_or(DEFAULT_STOP_TIMEOUT_MS);
            ServiceBackend::Exec {
                start: argv(exec.get("start").map(|e| &e.value)),
                stop: exec.get("stop").map(|e| argv(Some(&e.value))),
                pid_file: text(exec, "pid_file"),
                stop_timeout_ms,
            }
        }
        None => ServiceBackend::Systemd { unit: text(n, "systemd").unwrap_or_default() },
    };
    LinuxService { name: text(n, "name").unwrap_or_default(), startup, backend }
}

/// An argument vector as written: numbers and booleans keep their spelling's value.
fn argv(node: Option<&Node>) -> Vec<String> {
    node.and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .map(|a| match &a.value {
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Float(f) => a.as_str().map_or_else(|| f.to_string(), str::to_owned),
            _ => a.as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

fn log(n: &Node) -> LinuxLog {
    let source = match text(n, "file") {
        Some(file) => LogSource::File(file),
        None => LogSource::Unit(text(n, "unit").unwrap_or_default()),
    };
    LinuxLog { name: text(n, "name").unwrap_or_default(), source }
}

/// Trees and data paths: plain absolute paths (no `.`/`..`, not `/`), names unique across both
/// (they become disk ids), and none inside another.
fn check_paths(section: &Node, file: FileId, diags: &mut Diagnostics) {
    let at = |n: &Node| Loc { file, span: n.span };
    let mut seen: Vec<(&str, &str, &Node, &Node)> = Vec::new();
    for (key, what) in [("trees", "tree"), ("data", "data path")] {
        for item in items(section, key) {
            let (Some(name), Some(path)) = (item.get("name"), item.get("path")) else { continue };
            let (n, p) = (name.value.as_str().unwrap_or_default(), path.value.as_str().unwrap_or_default());
            let plain = Path::new(p).components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
            if !plain || p == "/" || p.ends_with('/') {
                diags.push(
                    Diagnostic::error(
                        "duet::inventory::linux-path",
                        format!("{what} path {p:?} is not a plain absolute path"),
                    )
                    .at(at(&path.value), "here")
                    .help(
                        "write the directory's absolute path without `.`, `..` or a trailing `/` (and not `/` itself)",
                    ),
                );
                continue;
            }
            if n == ROOT_DISK {
                diags.push(
                    Diagnostic::error(
                        "duet::inventory::duplicate",
                        format!("{what} name `{n}` is the host's root disk"),
                    )
                    .at(at(&name.value), "reserved")
                    .help("`root` names the host's root file system: call the tree something else"),
                );
            }
            for (other, other_path, other_name, other_path_node) in &seen {
                if *other == n {
                    diags.push(
                        Diagnostic::error("duet::inventory::duplicate", format!("`{n}` names two trees or data paths"))
                            .at(at(&name.value), "named again here")
                            .related(at(other_name), "first named here")
                            .help("trees and data paths become disks: give each its own name"),
                    );
                } else if Path::new(p).starts_with(other_path) || Path::new(other_path).starts_with(p) {
                    diags.push(
                        Diagnostic::error(
                            "duet::inventory::linux-nested",
                            format!("{what} {p} and {other_path} lie inside one another"),
                        )
                        .at(at(&path.value), "here")
                        .related(at(other_path_node), "and here")
                        .help("a tree or data path is one directory of its own: list the outer one only"),
                    );
                }
            }
            seen.push((n, p, &name.value, &path.value));
        }
    }
}

/// The disks, volumes, services, event logs and software binding reads (see the module doc).
fn derive(machine: &LinuxMachine) -> Derived {
    let disk = |id: &str, location| Disk { id: id.to_owned(), location, rdr: true, synced: true };
    let volume = |id: &str, mount: &str, boot| Volume {
        id: id.to_owned(),
        mount: mount.to_owned(),
        disks: vec![id.to_owned()],
        boot,
        paging: false,
    };
    let mut disks = vec![disk(ROOT_DISK, DiskLocation::Internal)];
    let mut volumes = vec![volume(ROOT_DISK, "/", true)];
    for t in &machine.trees {
        disks.push(disk(&t.name, DiskLocation::Internal));
        volumes.push(volume(&t.name, &t.path, true));
    }
    for d in &machine.data {
        disks.push(disk(&d.name, DiskLocation::External));
        volumes.push(volume(&d.name, &d.path, false));
    }
    Derived {
        disks,
        volumes,
        services: machine
            .services
            .iter()
            .map(|s| InventoryService { name: s.name.clone(), startup: s.startup, running: true })
            .collect(),
        event_logs: machine.event_logs.iter().map(|l| l.name.clone()).collect(),
        software: machine.software.iter().map(|s| Software { name: s.name.clone(), version: String::new() }).collect(),
    }
}

/// Whether a machine file says `platform: linux`.
pub(super) fn is_linux(root: &Node) -> bool {
    text(root, "platform").as_deref() == Some("linux")
}

/// A `linux` section in a file that is not `platform: linux`.
pub(super) fn check_not_linux(root: &Node, file: FileId, diags: &mut Diagnostics) {
    if let Some(entry) = root.get("linux") {
        diags.push(
            Diagnostic::error("duet::inventory::linux-key", "a `linux` section needs `platform: linux`")
                .at(Loc { file, span: entry.key_span }, "here")
                .help("add `platform: linux` at the top of the machine file, or remove the section"),
        );
    }
}
