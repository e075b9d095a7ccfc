//! Machine inventories (execution model 2.3): what a platform reports about itself, or a file
//! that vendors and CI check plans against offline, and what the simulated platform is built from.

pub mod linux;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::compiled::Software;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::duration;
use crate::loader;
use crate::name;
use crate::schema::Schema;
use crate::source::{FileId, Loc, SourceMap};
use crate::suggest;
use crate::version;
use crate::yaml::{Node, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskLocation {
    Internal,
    External,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    pub id: String,
    pub location: DiskLocation,
    pub rdr: bool,
    pub synced: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub id: String,
    pub mount: String,
    pub disks: Vec<String>,
    pub boot: bool,
    pub paging: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adapter {
    pub enclosure: u32,
    pub link: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    pub name: String,
    pub embedded: bool,
    pub adapters: Vec<Adapter>,
    pub address: Option<String>,
    pub dhcp: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vtm {
    pub enclosure: u32,
    pub configured: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Startup {
    Automatic,
    Manual,
    Disabled,
}

impl Startup {
    /// As plans, inventories and duet's output spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Automatic => "automatic",
            Self::Manual => "manual",
            Self::Disabled => "disabled",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryService {
    pub name: String,
    pub startup: Startup,
    pub running: bool,
}

/// Simulated durations in milliseconds; `None` means the simulator's default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durations {
    pub split: Option<u64>,
    pub merge: Option<u64>,
    pub commit: Option<u64>,
    pub abort: Option<u64>,
    pub finish: Option<u64>,
    pub resync: Option<u64>,
    /// A restart of the Upgrade Side's OS.
    #[serde(default)]
    pub restart: Option<u64>,
}

/// The hardware operations a simulated fault can make fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultOp {
    Split,
    Merge,
    Commit,
    Abort,
    Finish,
}

impl FaultOp {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Split => "split",
            Self::Merge => "merge",
            Self::Commit => "commit",
            Self::Abort => "abort",
            Self::Finish => "finish",
        }
    }
}

/// Which service operation a fault affects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceOp {
    Stop,
    Start,
}

/// The partner states of guide table 4-6, spelled as the status bar shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PartnerState {
    #[serde(rename = "DC On")]
    DcOn,
    #[serde(rename = "DC Off")]
    DcOff,
    #[serde(rename = "BIOS POST")]
    BiosPost,
    #[serde(rename = "Hung: BIOS POST")]
    HungBiosPost,
    #[serde(rename = "OS Booting")]
    OsBooting,
    #[serde(rename = "Hung: OS Booting")]
    HungOsBooting,
    #[serde(rename = "OS Up")]
    OsUp,
    #[serde(rename = "Hung: OS Up")]
    HungOsUp,
    #[serde(rename = "OS Rebooting")]
    OsRebooting,
    #[serde(rename = "Hung: OS Rebooting")]
    HungOsRebooting,
    #[serde(rename = "OS Shutting Down")]
    OsShuttingDown,
    #[serde(rename = "Hung: OS Shutting Down")]
    HungOsShuttingDown,
    #[serde(rename = "State Sensitive Recovery: NMI issued")]
    RecoveryNmi,
    #[serde(rename = "State Sensitive Recovery: Reset")]
    RecoveryReset,
}

impl PartnerState {
    pub const ALL: [Self; 14] = [
        Self::DcOn,
        Self::DcOff,
        Self::BiosPost,
        Self::HungBiosPost,
        Self::OsBooting,
        Self::HungOsBooting,
        Self::OsUp,
        Self::HungOsUp,
        Self::OsRebooting,
        Self::HungOsRebooting,
        Self::OsShuttingDown,
        Self::HungOsShuttingDown,
        Self::RecoveryNmi,
        Self::RecoveryReset,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DcOn => "DC On",
            Self::DcOff => "DC Off",
            Self::BiosPost => "BIOS POST",
            Self::HungBiosPost => "Hung: BIOS POST",
            Self::OsBooting => "OS Booting",
            Self::HungOsBooting => "Hung: OS Booting",
            Self::OsUp => "OS Up",
            Self::HungOsUp => "Hung: OS Up",
            Self::OsRebooting => "OS Rebooting",
            Self::HungOsRebooting => "Hung: OS Rebooting",
            Self::OsShuttingDown => "OS Shutting Down",
            Self::HungOsShuttingDown => "Hung: OS Shutting Down",
            Self::RecoveryNmi => "State Sensitive Recovery: NMI issued",
            Self::RecoveryReset => "State Sensitive Recovery: Reset",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// A `Hung: ...` state: the partner will not get further by itself.
    pub fn is_hung(self) -> bool {
        self.as_str().starts_with("Hung:")
    }

    /// The partner operating system crashed (it leaves dump files).
    pub fn is_crash(self) -> bool {
        matches!(self, Self::RecoveryNmi | Self::RecoveryReset)
    }
}

impl std::fmt::Display for PartnerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "fault")]
pub enum Fault {
    /// A platform operation fails `fail_times` times, then succeeds.
    Operation { op: FaultOp, fail_times: u32 },
    /// A service fails (or, with `hang`, never finishes) when stopped or started.
    Service { service: String, on: ServiceOp, hang: bool },
    /// A side reports this partner state (guide table 4-6), e.g. `Hung: OS Booting`.
    Partner { side: crate::compiled::Side, partner_state: PartnerState },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Simulation {
    pub durations: Durations,
    pub faults: Vec<Fault>,
}

/// One machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub model: String,
    pub duplex: bool,
    pub disks: Vec<Disk>,
    pub volumes: Vec<Volume>,
    pub teams: Vec<Team>,
    pub vtms: Vec<Vtm>,
    pub remote_desktop: bool,
    pub services: Vec<InventoryService>,
    pub event_logs: Vec<String>,
    /// The software installed (empty when the inventory lists none).
    #[serde(default)]
    pub software: Vec<Software>,
    pub simulation: Simulation,
    /// A Linux host (`platform: linux`); `None` for the simulated machine.
    #[serde(default)]
    pub linux: Option<linux::LinuxMachine>,
}

impl Inventory {
    /// Reads and checks an inventory file. `None` (with diagnostics) when it is unusable.
    pub fn load(path: &Path, sources: &mut SourceMap, diags: &mut Diagnostics) -> Option<Self> {
        let display = path.display().to_string();
        let errors_before = diags.count(crate::diagnostic::Severity::Error);
        let (file, root) = loader::read_document(path, &display, None, Schema::Inventory, sources, diags)?;
        if diags.count(crate::diagnostic::Severity::Error) > errors_before {
            return None;
        }
        let inventory = Self::from_node(&root, file, diags);
        (diags.count(crate::diagnostic::Severity::Error) == errors_before).then_some(inventory)
    }

    /// The volume a path lies on: the one with the longest matching mount prefix.
    pub fn volume_of(&self, path: &Path) -> Option<&Volume> {
        self.volumes
            .iter()
            .filter(|v| path.starts_with(&v.mount))
            .max_by_key(|v| Path::new(&v.mount).components().count())
    }

    pub fn disk(&self, id: &str) -> Option<&Disk> {
        self.disks.iter().find(|d| d.id == id)
    }

    /// Extracts an inventory from a schema-valid tree and checks its cross references.
    fn from_node(root: &Node, file: FileId, diags: &mut Diagnostics) -> Self {
        if linux::is_linux(root) {
            return Self::linux(root, file, diags);
        }
        linux::check_not_linux(root, file, diags);
        let inventory = Self {
            model: text(root, "model").unwrap_or_default(),
            duplex: flag(root, "duplex", true),
            disks: items(root, "disks").iter().map(disk).collect(),
            volumes: items(root, "volumes").iter().map(volume).collect(),
            teams: root.get("network").map(|n| items(&n.value, "teams").iter().map(team).collect()).unwrap_or_default(),
            vtms: items(root, "vtms")
                .iter()
                .map(|v| Vtm { enclosure: number(v, "enclosure"), configured: flag(v, "configured", true) })
                .collect(),
            remote_desktop: flag(root, "remote_desktop", true),
            services: items(root, "services").iter().map(service).collect(),
            event_logs: names(root, "event_logs"),
            software: items(root, "software").iter().map(software).collect(),
            simulation: root.get("simulation").map(|s| simulation(&s.value)).unwrap_or_default(),
            linux: None,
        };
        inventory.check_references(root, file, diags);
        check_versions(items(root, "software"), file, diags);
        inventory
    }

    /// A Linux machine file: what binding reads follows from its `linux` section.
    fn linux(root: &Node, file: FileId, diags: &mut Diagnostics) -> Self {
        let (machine, derived) = linux::machine(root, file, diags);
        let section = root.get("linux").map(|e| &e.value);
        let listed = |key: &str| section.map(|s| items(s, key)).unwrap_or_default();
        for (key, what) in
            [("trees", "tree"), ("data", "data path"), ("services", "service"), ("event_logs", "event log")]
        {
            for node in listed(key).iter().filter_map(|x| x.get("name")).map(|e| &e.value) {
                let Some(name) = node.as_str() else { continue };
                if let Some(problem) = name::problem(name) {
                    diags.push(
                        Diagnostic::error("duet::inventory::name", format!("{what} name {name:?} {problem}"))
                            .at(Loc { file, span: node.span }, "not a usable name")
                            .help(name::help(what)),
                    );
                }
            }
        }
        unique(listed("services"), "name", "service", file, diags);
        unique(listed("event_logs"), "name", "event log", file, diags);
        unique(listed("software"), "name", "software", file, diags);
        Self {
            model: text(root, "model").unwrap_or_else(|| "Linux host".to_owned()),
            duplex: true,
            disks: derived.disks,
            volumes: derived.volumes,
            teams: Vec::new(),
            vtms: Vec::new(),
            remote_desktop: false,
            services: derived.services,
            event_logs: derived.event_logs,
            software: derived.software,
            simulation: Simulation::default(),
            linux: Some(machine),
        }
    }

    /// Usable, unique ids and names; volumes name listed disks; faults name listed services.
    /// Each problem is reported at the node that makes it.
    fn check_references(&self, root: &Node, file: FileId, diags: &mut Diagnostics) {
        let at = |n: &Node| Loc { file, span: n.span };
        let teams = root.get("network").map(|n| items(&n.value, "teams")).unwrap_or_default();
        let keyed = [
            (items(root, "disks"), "id", "disk"),
            (items(root, "volumes"), "id", "volume"),
            (teams, "name", "team"),
            (items(root, "services"), "name", "service"),
            (items(root, "software"), "name", "software"),
        ];
        let names = keyed
            .into_iter()
            .flat_map(|(list, key, what)| list.iter().filter_map(move |x| x.get(key)).map(move |e| (&e.value, what)))
            .chain(items(root, "event_logs").iter().map(|n| (n, "event log")));
        for (node, what) in names {
            let Some(name) = node.as_str() else { continue };
            if let Some(problem) = name::problem(name) {
                diags.push(
                    Diagnostic::error("duet::inventory::name", format!("{what} name {name:?} {problem}"))
                        .at(at(node), "not a usable name")
                        .help(name::help(what)),
                );
            }
        }
        for (key, what) in [("disks", "disk"), ("volumes", "volume"), ("services", "service"), ("software", "software")]
        {
            unique(items(root, key), "id", what, file, diags);
            unique(items(root, key), "name", what, file, diags);
        }
        let disk_ids = || self.disks.iter().map(|x| x.id.as_str());
        for d in
            items(root, "volumes").iter().flat_map(|v| v.get("disks").map(|e| items_of(&e.value)).unwrap_or_default())
        {
            let id = d.as_str().unwrap_or_default();
            if !disk_ids().any(|x| x == id) {
                diags.push(
                    Diagnostic::error(
                        "duet::inventory::unknown-disk",
                        format!("volume uses disk `{id}`, which is not listed under `disks`"),
                    )
                    .at(at(d), "unknown disk")
                    .help_opt(suggest::did_you_mean(id, disk_ids())),
                );
            }
        }
        let durations = root
            .get("simulation")
            .and_then(|s| s.value.get("durations"))
            .and_then(|d| d.value.as_map())
            .unwrap_or_default();
        for entry in durations {
            let text = entry.value.as_str().unwrap_or_default();
            if let (true, Err(why)) = (duration::is_well_formed(text), simulated_ms(text)) {
                diags.push(
                    Diagnostic::error("duet::inventory::duration", format!("invalid simulated duration: {why}"))
                        .at(at(&entry.value), "here")
                        .help("simulated durations are at most 7 days; 0s means instant"),
                );
            }
        }
        let mounts: Vec<(&str, &Node)> = items(root, "volumes")
            .iter()
            .filter_map(|v| v.get("mount").and_then(|m| m.value.as_str().map(|t| (t.trim_end_matches('/'), &m.value))))
            .collect();
        for (i, (mount, node)) in mounts.iter().enumerate() {
            if let Some((_, first)) = mounts[..i].iter().find(|(m, _)| m == mount) {
                diags.push(
                    Diagnostic::error(
                        "duet::inventory::duplicate-mount",
                        format!("two volumes are mounted at {}", if mount.is_empty() { "/" } else { mount }),
                    )
                    .at(at(node), "mounted again here")
                    .related(at(first), "first mounted here")
                    .help("a path must lie on exactly one volume: fix one of the mounts"),
                );
            }
        }
        if !self.volumes.is_empty() && !self.volumes.iter().any(|v| v.boot) {
            diags.push(
                Diagnostic::warning(
                    "duet::inventory::no-boot-volume",
                    "no volume is marked `boot: true`, so no disk is a mandatory system disk",
                )
                .at(Loc { file, span: root.get("volumes").map_or(root.head(), |e| e.key_span) }, "no boot volume")
                .help("mark the volume the system boots from with `boot: true`"),
            );
        }
        let faults = root.get("simulation").map(|s| items(&s.value, "faults")).unwrap_or_default();
        for entry in faults.iter().filter_map(|f| f.get("service")) {
            let name = entry.value.as_str().unwrap_or_default();
            if !self.services.iter().any(|s| s.name == name) {
                diags.push(
                    Diagnostic::error(
                        "duet::inventory::unknown-service",
                        format!("fault names service `{name}`, which is not listed under `services`"),
                    )
                    .at(at(&entry.value), "unknown service")
                    .help_opt(suggest::did_you_mean(name, self.services.iter().map(|s| s.name.as_str()))),
                );
            }
        }
    }
}

fn disk(d: &Node) -> Disk {
    let location = if text(d, "location").as_deref() == Some("external") {
        DiskLocation::External
    } else {
        DiskLocation::Internal
    };
    Disk {
        id: text(d, "id").unwrap_or_default(),
        location,
        rdr: flag(d, "rdr", location == DiskLocation::Internal),
        synced: flag(d, "synced", true),
    }
}

fn volume(v: &Node) -> Volume {
    Volume {
        id: text(v, "id").unwrap_or_default(),
        mount: text(v, "mount").unwrap_or_default(),
        disks: names(v, "disks"),
        boot: flag(v, "boot", false),
        paging: flag(v, "paging", false),
    }
}

fn team(t: &Node) -> Team {
    Team {
        name: text(t, "name").unwrap_or_default(),
        embedded: flag(t, "embedded", false),
        adapters: items(t, "adapters")
            .iter()
            .map(|a| Adapter { enclosure: number(a, "enclosure"), link: flag(a, "link", true) })
            .collect(),
        address: text(t, "address"),
        dhcp: flag(t, "dhcp", false),
    }
}

fn service(s: &Node) -> InventoryService {
    InventoryService {
        name: text(s, "name").unwrap_or_default(),
        startup: {
            let written = text(s, "startup");
            [Startup::Manual, Startup::Disabled]
                .into_iter()
                .find(|startup| written.as_deref() == Some(startup.as_str()))
                .unwrap_or(Startup::Automatic)
        },
        running: flag(s, "running", true),
    }
}

fn software(s: &Node) -> Software {
    Software {
        name: text(s, "name").unwrap_or_default(),
        version: s.get("version").map(version_text).unwrap_or_default(),
    }
}

/// A version as written: a string, or an integer (`15`). A float (`10.2`) is refused where it
/// is checked, since YAML has already lost its spelling (`10.10` reads as 10.1).
fn version_text(entry: &crate::yaml::Entry) -> String {
    match &entry.value.value {
        Value::Int(i) => i.to_string(),
        _ => entry.value.as_str().unwrap_or_default().to_owned(),
    }
}

/// Each software version is dotted numbers, reported where it is written.
fn check_versions(software: &[Node], file: FileId, diags: &mut Diagnostics) {
    for entry in software.iter().filter_map(|s| s.get("version")) {
        let at = Loc { file, span: entry.value.span };
        let problem = match &entry.value.value {
            Value::Float(_) if entry.value.as_str().is_none() => {
                Some(("YAML reads this version as a number, which loses its spelling".to_owned(), "quote it"))
            }
            _ => version::parse(&version_text(entry)).err().map(|why| (why, "not a version")),
        };
        if let Some((why, label)) = problem {
            diags.push(
                Diagnostic::error("duet::inventory::version", format!("invalid software version: {why}"))
                    .at(at, label)
                    .help("write the version as dotted numbers in quotes, like version: \"15.0.4\""),
            );
        }
    }
}

fn items<'a>(node: &'a Node, key: &str) -> &'a [Node] {
    node.get(key).map(|e| items_of(&e.value)).unwrap_or_default()
}

fn items_of(node: &Node) -> &[Node] {
    node.as_seq().unwrap_or_default()
}

fn text(node: &Node, key: &str) -> Option<String> {
    node.get(key).and_then(|e| e.value.as_str()).map(str::to_owned)
}

fn flag(node: &Node, key: &str, default: bool) -> bool {
    node.get(key).and_then(|e| e.value.as_bool()).unwrap_or(default)
}

fn number(node: &Node, key: &str) -> u32 {
    node.get(key).and_then(|e| e.value.as_int()).and_then(|i| u32::try_from(i).ok()).unwrap_or_default()
}

fn names(node: &Node, key: &str) -> Vec<String> {
    node.get(key)
        .and_then(|e| e.value.as_seq())
        .unwrap_or_default()
        .iter()
        .filter_map(Node::as_str)
        .map(str::to_owned)
        .collect()
}

fn unique(items: &[Node], key: &str, what: &str, file: FileId, diags: &mut Diagnostics) {
    let mut seen: Vec<(&str, &Node)> = Vec::new();
    for item in items {
        let Some(entry) = item.get(key) else { continue };
        let Some(name) = entry.value.as_str() else {
            continue;
        };
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            diags.push(
                Diagnostic::error("duet::inventory::duplicate", format!("{what} `{name}` is listed twice"))
                    .at(Loc { file, span: entry.value.span }, "listed again here")
                    .related(Loc { file, span: first.span }, "first listed here")
                    .help(format!("each {what} is listed once: remove or rename one of them")),
            );
        } else {
            seen.push((name, &entry.value));
        }
    }
}

/// A simulated duration: like a timeout, except that zero (instant) is allowed.
fn simulated_ms(text: &str) -> Result<u64, String> {
    if duration::is_well_formed(text) && text.bytes().take_while(u8::is_ascii_digit).all(|b| b == b'0') {
        return Ok(0);
    }
    duration::parse(text)
}

/// A schema-checked enum value, through its serde spelling.
fn enum_value<T: serde::de::DeserializeOwned>(text: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
}

fn simulation(node: &Node) -> Simulation {
    let ms = |key: &str| {
        node.get("durations")
            .and_then(|d| d.value.get(key))
            .and_then(|e| e.value.as_str())
            .and_then(|s| simulated_ms(s).ok())
    };
    let faults = node
        .get("faults")
        .and_then(|f| f.value.as_seq())
        .unwrap_or_default()
        .iter()
        .filter_map(|f| {
            // The schema has checked every value; anything else is skipped, not guessed.
            if let Some(op) = text(f, "op") {
                let fail_times =
                    f.get("fail_times").and_then(|e| e.value.as_int()).and_then(|i| u32::try_from(i).ok()).unwrap_or(1);
                Some(Fault::Operation { op: enum_value(&op)?, fail_times })
            } else if let Some(service) = text(f, "service") {
                let on = enum_value(&text(f, "on")?)?;
                Some(Fault::Service { service, on, hang: flag(f, "hang", false) })
            } else {
                let side = enum_value(&text(f, "side")?)?;
                Some(Fault::Partner { side, partner_state: PartnerState::parse(&text(f, "partner_state")?)? })
            }
        })
        .collect();
    Simulation {
        durations: Durations {
            split: ms("split"),
            merge: ms("merge"),
            commit: ms("commit"),
            abort: ms("abort"),
            finish: ms("finish"),
            resync: ms("resync"),
            restart: ms("restart"),
        },
        faults,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::testing::expect_at;

    fn volume(id: &str, mount: &str) -> Volume {
        Volume { id: id.into(), mount: mount.into(), disks: vec![format!("d-{id}")], boot: false, paging: false }
    }

    #[test]
    fn a_path_lies_on_the_volume_with_the_longest_matching_mount_prefix() {
        let inventory = Inventory {
            model: String::new(),
            duplex: true,
            disks: Vec::new(),
            volumes: vec![volume("root", "/"), volume("data", "/srv/data"), volume("deep", "/srv/data/db/logs")],
            teams: Vec::new(),
            vtms: Vec::new(),
            remote_desktop: true,
            services: Vec::new(),
            event_logs: Vec::new(),
            software: Vec::new(),
            simulation: Simulation::default(),
            linux: None,
        };
        let on = |p: &str| inventory.volume_of(Path::new(p)).map(|v| v.id.as_str());
        assert_eq!(on("/srv/data/x"), Some("data"));
        assert_eq!(on("/srv/data"), Some("data"));
        assert_eq!(on("/srv/data/db/logs/app.log"), Some("deep"));
        assert_eq!(on("/srv/database/x"), Some("root"), "prefixes match whole path components");
        assert_eq!(on("/etc/passwd"), Some("root"));
        let no_root = Inventory { volumes: vec![volume("data", "/srv/data")], ..inventory.clone() };
        assert_eq!(no_root.volume_of(Path::new("/opt/x")), None);
    }

    fn load(text: &str) -> (Option<Inventory>, Vec<crate::diagnostic::Diagnostic>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.yaml");
        std::fs::write(&path, text).unwrap();
        let (mut sources, mut diags) = (SourceMap::default(), Diagnostics::default());
        let inventory = Inventory::load(&path, &mut sources, &mut diags);
        (inventory, diags.into_sorted())
    }

    #[test]
    fn software_is_read_with_its_versions_and_is_empty_when_absent() {
        let (inventory, diags) = load(
            "version: 1\nsoftware:\n  - {name: SQL Server, version: \"15.0.2\"}\n  - {name: Ivanti UWM, version: 10}\n",
        );
        assert!(diags.is_empty(), "{diags:#?}");
        let software = inventory.unwrap().software;
        assert_eq!(
            software,
            [
                Software { name: "SQL Server".into(), version: "15.0.2".into() },
                Software { name: "Ivanti UWM".into(), version: "10".into() },
            ]
        );
        assert_eq!(load("version: 1\n").0.unwrap().software, []);
        assert_eq!(
            load("version: 1\nsimulation: {durations: {restart: 2s}}\n").0.unwrap().simulation.durations.restart,
            Some(2000)
        );
    }

    #[test]
    fn bad_software_entries_are_reported_where_they_are_written() {
        let t = crate::testing::Tree::new(&[
            ("plan.yaml", "version: 1\n"),
            (
                "inv.yaml",
                "version: 1\nsoftware:\n  - {name: A, version: 10.2}\n  - {name: B, version: \"1.x\"}\n  - {name: A, version: \"1\"}\n  - {name: \"x/y\", version: \"1\"}\n",
            ),
        ]);
        let c = t.compile_with("plan.yaml", "inv.yaml");
        let m = expect_at(&c, "duet::inventory::version", "inv.yaml", 3, 24);
        assert_eq!(m, "invalid software version: YAML reads this version as a number, which loses its spelling");
        let m = expect_at(&c, "duet::inventory::version", "inv.yaml", 4, 24);
        assert_eq!(m, "invalid software version: \"1.x\" is not a version: write dotted numbers, like 15.0.4");
        expect_at(&c, "duet::inventory::duplicate", "inv.yaml", 5, 12);
        expect_at(&c, "duet::inventory::name", "inv.yaml", 6, 12);
        assert!(!c.is_valid());
    }
}
