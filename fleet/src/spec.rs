//! The checked fleet: what the coordinator journals when a run starts and the scheduler reads.
//! Names are resolved, groups have their members, stages are in a valid DAG order. Versioned:
//! a coordinator refuses a journal written in a format it does not read.

use std::path::PathBuf;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::plan::{Command, Exclusive, Failover, Gate, Policy, Step, Target};

pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// The single-machine plan the node runs.
    pub plan: PathBuf,
    pub inventory: Option<PathBuf>,
    pub groups: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSpec {
    /// In the order the fleet file lists the nodes.
    pub members: Vec<String>,
    /// At least this many members stay up (not drained) at any time.
    pub min_up: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleRule {
    Probe(Command),
    Not(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSpec {
    pub group: String,
    pub rule: RoleRule,
    pub count: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreconditionSpec {
    pub id: String,
    pub target: Target,
    pub check: Command,
    pub fix: Option<Command>,
    pub restore: Option<Command>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreserveSpec {
    pub target: Target,
    pub paths: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageSpec {
    pub id: String,
    pub target: Target,
    pub after: Vec<String>,
    pub serial: u32,
    pub run_once: Vec<Step>,
    pub exclusive: Option<Exclusive>,
    pub failover: Option<Failover>,
    pub drain: Option<Command>,
    pub undrain: Option<Command>,
    pub upgrade: bool,
    pub gates: Vec<Gate>,
    /// The stage's own policy, or the fleet's.
    pub policy: Policy,
    /// Where the stage is written (`fleet.yaml:12`), for messages.
    pub source: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionPathSpec {
    pub software: String,
    pub path: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetSpec {
    pub format_version: u32,
    /// The fleet file as given.
    pub file: String,
    pub title: Option<String>,
    pub versions: Option<VersionPathSpec>,
    pub nodes: IndexMap<String, NodeSpec>,
    pub groups: IndexMap<String, GroupSpec>,
    pub roles: IndexMap<String, RoleSpec>,
    pub notify: Vec<Step>,
    pub preserve: Vec<PreserveSpec>,
    pub preconditions: Vec<PreconditionSpec>,
    /// In a topological order of `after` (ties in file order).
    pub stages: Vec<StageSpec>,
    pub policy: Policy,
}

impl FleetSpec {
    /// The nodes a target names once roles are known (`roles`: role -> its nodes).
    pub fn members(&self, target: &Target, roles: &IndexMap<String, Vec<String>>) -> Vec<String> {
        match target {
            Target::All => self.nodes.keys().cloned().collect(),
            Target::Group(g) => self.groups.get(g).map(|g| g.members.clone()).unwrap_or_default(),
            Target::Role(r) => roles.get(r).cloned().unwrap_or_default(),
        }
    }
}
