//! The compiled plan: the contract between compiler and runtime. The runtime snapshots it into
//! a session, so it is a versioned serde type, and readers refuse versions they do not know.

use std::fmt;

use indexmap::IndexMap;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};

use crate::plan::{Control, Rerun, Timing};

/// Bumped on any change a reader of an older version would misread.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompiledPlan {
    pub format_version: u32,
    pub title: Option<String>,
    pub comments: Option<String>,
    /// Every file of the plan tree, children before parents.
    pub sources: Vec<SourceRef>,
    /// The inventory the plan was bound to, or `None` when only platform-independent checks ran.
    pub inventory: Option<String>,
    pub disks: Disks,
    pub services: Vec<Service>,
    pub actions: Vec<Action>,
    pub logs: Logs,
    /// Unattended upgrades (all empty in a plan without them; older compiled plans read so).
    #[serde(default, skip_serializing_if = "Unattended::is_empty")]
    pub unattended: Unattended,
    pub requests: IndexMap<RequestName, Request>,
}

/// What a plan says about running the upgrade itself unattended: the tasks that install the
/// software, the checks before merge and commit, the approvals, the version hop, the
/// notifications, and what a failure does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unattended {
    /// In the order they run (the `Upgrade` request).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<Task>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<Versions>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<Notify>,
    #[serde(default, skip_serializing_if = "OnFailure::is_hold")]
    pub on_failure: OnFailure,
}

impl Unattended {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// An upgrade task: a program run on the Upgrade Side while split (an installer, a service
/// pack), optionally followed by a restart of the Upgrade Side's OS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub file: String,
    pub args: Vec<String>,
    pub timeout_ms: u64,
    pub rerun: Rerun,
    /// Restart the Upgrade Side after the task succeeds (as installers ask).
    pub restart: bool,
    /// What the task puts on the Upgrade Side, as the platform's software inventory will show it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installs: Option<Software>,
    pub source: Source,
}

/// A piece of software and its version, as an inventory lists it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Software {
    pub name: String,
    pub version: String,
}

/// Where a gate stands: before the hardware merge (on the Upgrade Side, at the end of
/// PrepareMerge) or before the commit (after the applications restarted from the upgraded
/// disks, at the end of ExecuteMerge).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gate {
    Merge,
    Commit,
}

impl Gate {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Merge => "merge",
            Self::Commit => "commit",
        }
    }
}

/// A verification gate: one check, retried as asked, that must pass before `before`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub id: String,
    pub before: Gate,
    pub check: CheckKind,
    /// How long one try may take.
    pub timeout_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    pub source: Source,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// A command on the Upgrade Side: exit 0 passes; with `stdout`, its output must match
    /// that regular expression too.
    Run {
        file: String,
        args: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stdout: Option<String>,
    },
    /// An HTTP GET: the response must have `status`, and contain `contains` if given.
    Http {
        url: String,
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contains: Option<String>,
    },
    /// The platform's software inventory (Upgrade Side) must list `software` at a version
    /// meeting `constraint` (`>=15.0.4`, `=12.1`, `<3`).
    Version { software: String, constraint: String },
}

/// Tries after the first, `interval_ms` apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    pub times: u32,
    pub interval_ms: u64,
}

/// An operator's approval that `duet run` waits for before `before`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub before: Gate,
    /// How long duet waits from when it starts waiting; `None`: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
    pub on_expiry: OnFailure,
    pub source: Source,
}

/// The version hop a plan makes, and the largest it may make.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    pub software: String,
    pub from: String,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_major_hop: Option<u32>,
    pub source: Source,
}

/// A session event a notification runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    Started,
    WaitingForApproval,
    Broken,
    Aborted,
    Committed,
    Finished,
}

impl Event {
    pub const ALL: [Self; 6] =
        [Self::Started, Self::WaitingForApproval, Self::Broken, Self::Aborted, Self::Committed, Self::Finished];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::WaitingForApproval => "waiting-for-approval",
            Self::Broken => "broken",
            Self::Aborted => "aborted",
            Self::Committed => "committed",
            Self::Finished => "finished",
        }
    }
}

/// A command run on session events (with the event, session and step in its environment).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    pub id: String,
    pub file: String,
    pub args: Vec<String>,
    /// The events it runs on (all, when the plan names none).
    pub on: Vec<Event>,
    pub timeout_ms: u64,
    pub source: Source,
}

/// What a failed step (or an expired approval) leads to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// The request is Broken; the operator decides (retry, skip, abort).
    #[default]
    Hold,
    /// duet aborts by itself, where the state model allows an abort.
    Abort,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hold => "hold",
            Self::Abort => "abort",
        }
    }

    pub fn is_hold(&self) -> bool {
        *self == Self::Hold
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    /// As shown to the user (relative to where duet was run).
    pub file: String,
    /// Absolute, symlinks resolved.
    pub path: String,
    /// An included template's SHA-256, when its include pinned it or required a signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The trusted key whose signature of the template verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

/// Where an entry was first declared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub file: String,
    pub line: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disks {
    pub system: Vec<String>,
    pub data: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    pub after: Vec<String>,
    pub source: Source,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub id: String,
    pub file: String,
    pub args: Vec<String>,
    pub control: Control,
    pub timing: Timing,
    pub timeout_ms: u64,
    pub rerun: Rerun,
    pub source: Source,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logs {
    pub staging_dir: Option<String>,
    pub backup: Vec<String>,
}

/// The requests of the state model (execution model section 4). Abort compiles twice: before
/// the hardware merge and after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RequestName {
    CheckReadiness,
    PrepareSplit,
    ExecuteSplit,
    /// The plan's upgrade tasks, on the Upgrade Side while split (state Split).
    Upgrade,
    PrepareMerge,
    ExecuteMerge,
    Commit,
    AbortFromSplit,
    AbortFromMerge,
    Finish,
}

impl RequestName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CheckReadiness => "CheckReadiness",
            Self::PrepareSplit => "PrepareSplit",
            Self::ExecuteSplit => "ExecuteSplit",
            Self::Upgrade => "Upgrade",
            Self::PrepareMerge => "PrepareMerge",
            Self::ExecuteMerge => "ExecuteMerge",
            Self::Commit => "Commit",
            Self::AbortFromSplit => "AbortFromSplit",
            Self::AbortFromMerge => "AbortFromMerge",
            Self::Finish => "Finish",
        }
    }
}

impl fmt::Display for RequestName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Upgrade states (guide 1-8), as `ACTIVE_UPGRADE_STATE` spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    Idle,
    PrepareSplit,
    Split,
    PrepareMerge,
    Merge,
    Commit,
    Abort,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "Idle",
            Self::PrepareSplit => "PrepareSplit",
            Self::Split => "Split",
            Self::PrepareMerge => "PrepareMerge",
            Self::Merge => "Merge",
            Self::Commit => "Commit",
            Self::Abort => "Abort",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Production,
    Upgrade,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Upgrade => "upgrade",
        }
    }
}

/// Step ids, spelled here and read back here: `action:ID@SIDE`, `service:NAME@SIDE`,
/// `platform:OP`, `probe:NAME`. The journal names steps by id only, so what the state model
/// reads from a step it has no plan for (its side, whether it is the merge) comes from these.
pub mod step_id {
    use super::Side;

    /// The hardware merge's step: once it completed, an abort must revert first.
    pub const MERGE: &str = "platform:merge";

    pub fn action(id: &str, side: Side) -> String {
        format!("action:{id}@{}", side.as_str())
    }

    pub fn service(name: &str, side: Side) -> String {
        format!("service:{name}@{}", side.as_str())
    }

    pub fn platform(op: &str) -> String {
        format!("platform:{op}")
    }

    pub fn probe(name: &str) -> String {
        format!("probe:{name}")
    }

    /// An upgrade task (always on the Upgrade Side).
    pub fn task(id: &str) -> String {
        format!("task:{id}@upgrade")
    }

    /// The restart of the Upgrade Side after task `id`.
    pub fn restart(id: &str) -> String {
        format!("restart:{id}@upgrade")
    }

    /// A verification gate (on the Upgrade Side: before the merge it is isolated, after it the
    /// applications run from its disks).
    pub fn verify(id: &str) -> String {
        format!("verify:{id}@upgrade")
    }

    /// An approval.
    pub fn approve(id: &str) -> String {
        format!("approve:{id}")
    }

    /// The side an action or service step runs on (`None` for the others).
    pub fn side(id: &str) -> Option<Side> {
        match id.rsplit_once('@')?.1 {
            "production" => Some(Side::Production),
            "upgrade" => Some(Side::Upgrade),
            _ => None,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn ids_read_back_as_they_were_made() {
            for side in [Side::Production, Side::Upgrade] {
                assert_eq!(super::side(&action("x@y", side)), Some(side));
                assert_eq!(super::side(&service("W3 SVC", side)), Some(side));
            }
            assert_eq!(platform("merge"), MERGE);
            assert_eq!(super::side(MERGE), None);
            assert_eq!(super::side(&probe("readiness")), None);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    Probe,
    Platform,
    Service,
    Action,
    LogBackup,
    /// An upgrade task (`Unattended::tasks`).
    Task,
    /// A verification gate (`Unattended::checks`).
    Verify,
    /// An approval duet waits for (`Unattended::approvals`).
    Approval,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Probe => "probe",
            Self::Platform => "platform",
            Self::Service => "service",
            Self::Action => "action",
            Self::LogBackup => "log-backup",
            Self::Task => "task",
            Self::Verify => "verify",
            Self::Approval => "approval",
        }
    }
}

/// What a step does. Probes: `readiness`, `binding`, `merge-readiness`. Platform: `split`,
/// `merge`, `commit`, `abort`, `finish`, `revert` (shut the Upgrade Side down and restart from
/// the Production Side). Services: `disable-and-stop` (save the startup type, set Disabled,
/// stop), `stop`, `restore-and-start`. Actions: `run`. Log backup: `backup`. Unattended:
/// `versions` (a probe: the installed version is the plan's `from`), `install` (a task),
/// `restart` (a platform step: the Upgrade Side's OS restarts), `verify`, `approve`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    Readiness,
    Binding,
    MergeReadiness,
    Split,
    Merge,
    Commit,
    Abort,
    Finish,
    Revert,
    DisableAndStop,
    Stop,
    RestoreAndStart,
    Run,
    Backup,
    Versions,
    Install,
    Restart,
    Verify,
    Approve,
}

/// The custom-action environment of guide table 3-5, exactly as actions see it. Each value is
/// one of the guide's, typed: the names and spellings are what existing scripts test for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionEnv {
    #[serde(rename = "ACTIVE_UPGRADE_SIDE")]
    pub side: EnvSide,
    #[serde(rename = "ACTIVE_UPGRADE_STATE")]
    pub state: State,
    #[serde(rename = "ACTIVE_UPGRADE_REQUEST")]
    pub request: EnvRequest,
    #[serde(rename = "ACTIVE_UPGRADE_HW_SPLIT")]
    pub hw_split: HwSplit,
}

macro_rules! env_values {
    ($(#[$doc:meta])* $ty:ident { $($variant:ident),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $ty {
            $($variant),*
        }

        impl $ty {
            /// The value as the environment variable carries it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($variant)),*
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

env_values!(
    /// `ACTIVE_UPGRADE_SIDE`.
    EnvSide { Production, Upgrade }
);
env_values!(
    /// `ACTIVE_UPGRADE_REQUEST`: the request, or the task within it (`Start`, `Stop`, `Backup`).
    EnvRequest { Idle, CheckReadiness, PrepareSplit, ExecuteSplit, Upgrade, PrepareMerge, ExecuteMerge, Commit, Abort, Start, Stop, Backup }
);
env_values!(
    /// `ACTIVE_UPGRADE_HW_SPLIT`: `Yes` between the hardware split and the merge or abort.
    HwSplit { Yes, No }
);

impl From<Side> for EnvSide {
    fn from(side: Side) -> Self {
        match side {
            Side::Production => Self::Production,
            Side::Upgrade => Self::Upgrade,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Unique within its request and stable across compilations of the same plan.
    pub id: String,
    pub kind: StepKind,
    pub side: Side,
    pub op: Op,
    /// Ids of the steps (of the same request) that must complete first.
    pub after: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<ActionEnv>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
    /// The task, check or approval of `Unattended` a step runs (by id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
}

impl Step {
    /// A step with no dependencies and none of the optional parts.
    pub fn new(id: impl Into<String>, kind: StepKind, side: Side, op: Op) -> Self {
        Self {
            id: id.into(),
            kind,
            side,
            op,
            after: Vec::new(),
            action: None,
            service: None,
            env: None,
            timeout_ms: None,
            logs: Vec::new(),
            item: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The upgrade state while the request runs (`ACTIVE_UPGRADE_STATE`).
    pub state: State,
    /// In a valid topological order: every step comes after the steps it depends on.
    pub steps: Vec<Step>,
}

impl Request {
    /// The request as a petgraph DAG, edges from a dependency to its dependent.
    pub fn graph(&self) -> DiGraph<&Step, ()> {
        let mut graph = DiGraph::with_capacity(self.steps.len(), self.steps.len());
        let index: IndexMap<&str, NodeIndex> = self.steps.iter().map(|s| (s.id.as_str(), graph.add_node(s))).collect();
        for step in &self.steps {
            for dep in &step.after {
                if let Some(&from) = index.get(dep.as_str()) {
                    graph.add_edge(from, index[step.id.as_str()], ());
                }
            }
        }
        graph
    }
}

impl CompiledPlan {
    /// Reads a compiled plan, refusing a format version this build does not understand.
    ///
    /// The version is read first (a pass that skips everything else without building it), then
    /// the plan straight into its types: going through a `serde_json::Value` cost 5x the time
    /// and memory on a 10,000-action plan (docs/performance.md).
    pub fn from_json(text: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Header {
            format_version: Option<u64>,
        }
        let header: Header = serde_json::from_str(text).map_err(|e| format!("not a compiled plan: {e}"))?;
        match header.format_version {
            Some(v) if v == u64::from(FORMAT_VERSION) => {
                serde_json::from_str(text).map_err(|e| format!("malformed compiled plan: {e}"))
            }
            Some(v) => Err(format!(
                "compiled plan format version {v} is not supported; this duet reads version {FORMAT_VERSION}"
            )),
            None => Err("not a compiled plan: no `format_version`".into()),
        }
    }
}
