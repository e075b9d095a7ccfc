//! The fleet plan as written: the typed form of a `kind: fleet` document, every value with the
//! location it came from. The schema has already checked the shapes, so extraction only reads;
//! what the schema cannot see (names that must exist, a DAG, budgets) is [`crate::check`]'s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use duet_compiler::source::{FileId, Loc};
use duet_compiler::yaml::Node;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// A value and the YAML node it was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct At<T> {
    pub value: T,
    pub loc: Loc,
}

/// A command: a script, relative to the fleet file, and its arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// As written in the plan (what outputs show).
    pub file: String,
    /// Resolved against the fleet file's directory (what runs).
    pub path: PathBuf,
    pub args: Vec<String>,
    #[serde(with = "millis")]
    pub timeout: Duration,
    /// Where `file:` is written; not journaled.
    #[serde(skip)]
    pub loc: Option<Loc>,
}

/// Where a step or gate runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    Node,
    Coordinator,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub id: String,
    pub command: Command,
    pub on: Place,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Probe {
    /// A command run on each node; the node holds the role when it exits 0.
    Command(Command),
    /// A URL fetched on 127.0.0.1: status and text.
    Http { url: String, status: u16, contains: Option<String> },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate {
    pub id: String,
    pub probe: Probe,
    pub on: Place,
    pub times: u32,
    #[serde(with = "millis")]
    pub interval: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    Halt,
    Continue,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub max_failed: u32,
    pub retries: u32,
    pub on_failure: OnFailure,
}

impl Default for Policy {
    fn default() -> Self {
        Self { max_failed: 0, retries: 0, on_failure: OnFailure::Halt }
    }
}

/// What a stage, precondition or preserve entry runs over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Group(String),
    Role(String),
    /// Every node of the fleet (a precondition or preserve entry without a target).
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rerun {
    Safe,
    Manual,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exclusive {
    pub id: String,
    pub steps: Vec<Step>,
    pub rerun: Rerun,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failover {
    pub resource: String,
    /// Move ownership before the node's upgrade (true) or after it (false, the default).
    pub before: bool,
    pub r#move: Command,
    pub check: Command,
}

pub struct Stage {
    pub id: At<String>,
    pub target: At<Target>,
    pub after: Vec<At<String>>,
    pub serial: At<u32>,
    pub run_once: Vec<Step>,
    pub exclusive: Option<Exclusive>,
    pub failover: Option<Failover>,
    pub drain: Option<Command>,
    pub undrain: Option<Command>,
    pub upgrade: bool,
    pub gates: Vec<Gate>,
    pub policy: Option<At<Policy>>,
    pub loc: Loc,
}

pub struct NodeEntry {
    pub name: At<String>,
    pub plan: At<String>,
    pub inventory: Option<At<String>>,
    pub groups: Vec<At<String>>,
}

pub struct GroupEntry {
    pub name: At<String>,
    pub min_up: Option<At<u32>>,
}

pub enum RoleRule {
    Probe(Command),
    Not(At<String>),
    /// Neither or both of `probe` and `not`: reported by the checker.
    Unclear,
}

pub struct RoleEntry {
    pub name: At<String>,
    pub group: At<String>,
    pub rule: RoleRule,
    pub count: At<u32>,
}

pub struct Precondition {
    pub id: At<String>,
    pub target: At<Target>,
    pub check: Command,
    pub fix: Option<Command>,
    pub restore: Option<Command>,
}

pub struct Preserve {
    pub target: At<Target>,
    pub paths: Vec<String>,
}

pub struct VersionPath {
    pub software: String,
    pub path: Vec<At<String>>,
    pub max_major_hop: Option<u32>,
    pub loc: Loc,
}

/// A fleet file as written. Every name it refers to is still unchecked.
pub struct FleetFile {
    pub file: FileId,
    /// The fleet file's directory: scripts, plans and inventories are relative to it.
    pub dir: PathBuf,
    pub title: Option<String>,
    pub versions: Option<VersionPath>,
    pub nodes: Vec<NodeEntry>,
    pub groups: Vec<GroupEntry>,
    pub roles: Vec<RoleEntry>,
    pub notify: Vec<Step>,
    pub preserve: Vec<Preserve>,
    pub preconditions: Vec<Precondition>,
    pub stages: Vec<Stage>,
    pub policy: Policy,
    pub policy_loc: Option<Loc>,
}

/// Default timeout of a fleet command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

struct Reader<'a> {
    file: FileId,
    dir: &'a Path,
}

impl Reader<'_> {
    fn loc(&self, node: &Node) -> Loc {
        Loc { file: self.file, span: node.span }
    }

    fn key_loc(&self, node: &Node, key: &str) -> Loc {
        node.get(key).map_or_else(|| self.loc(node), |e| Loc { file: self.file, span: e.key_span })
    }

    fn text(&self, node: &Node) -> At<String> {
        At { value: node.as_str().unwrap_or_default().to_owned(), loc: self.loc(node) }
    }

    fn str_of(node: &Node, key: &str) -> Option<String> {
        node.get(key).and_then(|e| e.value.as_str()).map(str::to_owned)
    }

    fn names(&self, node: &Node, key: &str) -> Vec<At<String>> {
        node.get(key)
            .and_then(|e| e.value.as_seq())
            .map(|s| s.iter().map(|n| self.text(n)).collect())
            .unwrap_or_default()
    }

    fn uint(&self, node: &Node, key: &str) -> Option<At<u32>> {
        let e = node.get(key)?;
        let value = u32::try_from(e.value.as_int()?).unwrap_or(u32::MAX);
        Some(At { value, loc: self.loc(&e.value) })
    }

    fn command(&self, node: &Node) -> Command {
        let file = Self::str_of(node, "file").unwrap_or_default();
        let args = node
            .get("args")
            .and_then(|e| e.value.as_seq())
            .map(|s| s.iter().map(|n| n.as_str().unwrap_or_default().to_owned()).collect())
            .unwrap_or_default();
        let timeout = Self::str_of(node, "timeout").and_then(|t| parse_duration(&t)).unwrap_or(DEFAULT_TIMEOUT);
        let loc = node.get("file").map(|e| self.loc(&e.value));
        Command { path: self.dir.join(&file), file, args, timeout, loc }
    }

    fn opt_command(&self, node: &Node, key: &str) -> Option<Command> {
        node.get(key).map(|e| self.command(&e.value))
    }

    fn place(node: &Node) -> Place {
        if Self::str_of(node, "on").as_deref() == Some("coordinator") { Place::Coordinator } else { Place::Node }
    }

    fn step(&self, node: &Node) -> Step {
        Step { id: Self::str_of(node, "id").unwrap_or_default(), command: self.command(node), on: Self::place(node) }
    }

    fn steps(&self, node: &Node, key: &str) -> Vec<Step> {
        node.get(key)
            .and_then(|e| e.value.as_seq())
            .map(|s| s.iter().map(|n| self.step(n)).collect())
            .unwrap_or_default()
    }

    fn gate(&self, node: &Node) -> Gate {
        let probe = match node.get("http") {
            Some(h) => Probe::Http {
                url: Self::str_of(&h.value, "url").unwrap_or_default(),
                status: h
                    .value
                    .get("status")
                    .and_then(|e| e.value.as_int())
                    .map_or(200, |s| u16::try_from(s).unwrap_or(200)),
                contains: Self::str_of(&h.value, "contains"),
            },
            None => Probe::Command(self.command(node)),
        };
        let retry = node.get("retry").map(|e| &e.value);
        Gate {
            id: Self::str_of(node, "id").unwrap_or_default(),
            probe,
            on: Self::place(node),
            times: retry.and_then(|r| self.uint(r, "times")).map_or(1, |t| t.value),
            interval: retry
                .and_then(|r| Self::str_of(r, "interval"))
                .and_then(|t| parse_duration(&t))
                .unwrap_or(Duration::ZERO),
        }
    }

    fn policy(&self, node: &Node) -> Policy {
        let on_failure = if Self::str_of(node, "on_failure").as_deref() == Some("continue") {
            OnFailure::Continue
        } else {
            OnFailure::Halt
        };
        Policy {
            max_failed: self.uint(node, "max_failed").map_or(0, |v| v.value),
            retries: self.uint(node, "retries").map_or(0, |v| v.value),
            on_failure,
        }
    }

    /// `group:` or `role:` of a stage, precondition or preserve entry.
    fn target(&self, node: &Node) -> At<Target> {
        match (node.get("group"), node.get("role")) {
            (Some(g), _) => {
                At { value: Target::Group(g.value.as_str().unwrap_or_default().into()), loc: self.loc(&g.value) }
            }
            (None, Some(r)) => {
                At { value: Target::Role(r.value.as_str().unwrap_or_default().into()), loc: self.loc(&r.value) }
            }
            (None, None) => At { value: Target::All, loc: Loc { file: self.file, span: node.head() } },
        }
    }

    fn stage(&self, node: &Node) -> Stage {
        let exclusive = node.get("exclusive").map(|e| Exclusive {
            id: Self::str_of(&e.value, "id").unwrap_or_default(),
            steps: self.steps(&e.value, "steps"),
            rerun: if Self::str_of(&e.value, "rerun").as_deref() == Some("safe") { Rerun::Safe } else { Rerun::Manual },
        });
        let failover = node.get("failover").map(|e| Failover {
            resource: Self::str_of(&e.value, "resource").unwrap_or_default(),
            before: Self::str_of(&e.value, "when").as_deref() == Some("before"),
            r#move: self.opt_command(&e.value, "move").unwrap_or_else(|| self.command(&e.value)),
            check: self.opt_command(&e.value, "check").unwrap_or_else(|| self.command(&e.value)),
        });
        let id =
            node.get("id").map_or_else(|| At { value: String::new(), loc: self.loc(node) }, |e| self.text(&e.value));
        Stage {
            id,
            target: self.target(node),
            after: self.names(node, "after"),
            serial: self.uint(node, "serial").unwrap_or(At { value: 1, loc: self.key_loc(node, "id") }),
            run_once: self.steps(node, "run_once"),
            exclusive,
            failover,
            drain: self.opt_command(node, "drain"),
            undrain: self.opt_command(node, "undrain"),
            upgrade: node.get("upgrade").and_then(|e| e.value.as_bool()).unwrap_or(true),
            gates: node
                .get("gates")
                .and_then(|e| e.value.as_seq())
                .map(|s| s.iter().map(|g| self.gate(g)).collect())
                .unwrap_or_default(),
            policy: node
                .get("policy")
                .map(|e| At { value: self.policy(&e.value), loc: Loc { file: self.file, span: e.key_span } }),
            loc: Loc { file: self.file, span: node.head() },
        }
    }

    fn node_entry(&self, key: At<String>, node: &Node) -> NodeEntry {
        NodeEntry {
            name: key,
            plan: node
                .get("plan")
                .map_or_else(|| At { value: String::new(), loc: self.loc(node) }, |e| self.text(&e.value)),
            inventory: node.get("inventory").map(|e| self.text(&e.value)),
            groups: self.names(node, "groups"),
        }
    }

    fn role(&self, key: At<String>, node: &Node) -> RoleEntry {
        let rule = match (node.get("probe"), node.get("not")) {
            (Some(p), None) => RoleRule::Probe(self.command(&p.value)),
            (None, Some(n)) => RoleRule::Not(self.text(&n.value)),
            _ => RoleRule::Unclear,
        };
        RoleEntry {
            group: node.get("group").map_or_else(|| At { value: String::new(), loc: key.loc }, |e| self.text(&e.value)),
            count: self.uint(node, "count").unwrap_or(At { value: 1, loc: key.loc }),
            name: key,
            rule,
        }
    }

    fn map_entries<'n>(&self, root: &'n Node, key: &str) -> Vec<(At<String>, &'n Node)> {
        root.get(key)
            .and_then(|e| e.value.as_map())
            .map(|m| {
                m.iter()
                    .map(|e| (At { value: e.key.clone(), loc: Loc { file: self.file, span: e.key_span } }, &e.value))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn seq<'n>(root: &'n Node, key: &str) -> &'n [Node] {
        root.get(key).and_then(|e| e.value.as_seq()).unwrap_or_default()
    }
}

impl FleetFile {
    /// Reads a schema-valid fleet document. `dir` is where its scripts and plans are looked up.
    pub fn from_node(root: &Node, file: FileId, dir: &Path) -> Self {
        let r = Reader { file, dir };
        let versions = root.get("versions").map(|e| VersionPath {
            software: Reader::str_of(&e.value, "software").unwrap_or_default(),
            path: Reader::seq(&e.value, "path").iter().map(|n| r.text(n)).collect(),
            max_major_hop: r.uint(&e.value, "max_major_hop").map(|v| v.value),
            loc: Loc { file, span: e.key_span },
        });
        let preconditions = Reader::seq(root, "preconditions")
            .iter()
            .map(|n| Precondition {
                id: n.get("id").map_or_else(|| r.text(n), |e| r.text(&e.value)),
                target: r.target(n),
                check: r.opt_command(n, "check").unwrap_or_else(|| r.command(n)),
                fix: r.opt_command(n, "fix"),
                restore: r.opt_command(n, "restore"),
            })
            .collect();
        let preserve = Reader::seq(root, "preserve")
            .iter()
            .map(|n| Preserve {
                target: r.target(n),
                paths: r.names(n, "paths").into_iter().map(|p| p.value).collect(),
            })
            .collect();
        Self {
            file,
            dir: dir.to_path_buf(),
            title: Reader::str_of(root, "title"),
            versions,
            nodes: r.map_entries(root, "nodes").into_iter().map(|(k, n)| r.node_entry(k, n)).collect(),
            groups: r
                .map_entries(root, "groups")
                .into_iter()
                .map(|(name, n)| GroupEntry { name, min_up: r.uint(n, "min_up") })
                .collect(),
            roles: r.map_entries(root, "roles").into_iter().map(|(k, n)| r.role(k, n)).collect(),
            notify: r.steps(root, "notify"),
            preserve,
            preconditions,
            stages: Reader::seq(root, "stages").iter().map(|n| r.stage(n)).collect(),
            policy: root.get("policy").map(|e| r.policy(&e.value)).unwrap_or_default(),
            policy_loc: root.get("policy").map(|e| Loc { file, span: e.key_span }),
        }
    }

    /// Every command the file names, with where it is named (for the existence check).
    pub fn commands(&self) -> Vec<&Command> {
        let mut out: Vec<&Command> = Vec::new();
        out.extend(self.notify.iter().map(|s| &s.command));
        for p in &self.preconditions {
            out.push(&p.check);
            out.extend(p.fix.iter().chain(&p.restore));
        }
        for r in &self.roles {
            if let RoleRule::Probe(c) = &r.rule {
                out.push(c);
            }
        }
        for s in &self.stages {
            out.extend(s.run_once.iter().map(|st| &st.command));
            out.extend(s.exclusive.iter().flat_map(|e| e.steps.iter().map(|st| &st.command)));
            out.extend(s.failover.iter().flat_map(|f| [&f.r#move, &f.check]));
            out.extend(s.drain.iter().chain(&s.undrain));
            out.extend(s.gates.iter().filter_map(|g| match &g.probe {
                Probe::Command(c) => Some(c),
                Probe::Http { .. } => None,
            }));
        }
        out
    }
}

/// `500ms`, `30s`, `2m`, `1h` (the schema's pattern).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits.parse().ok()?;
    Some(match &text[digits.len()..] {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return None,
    })
}

/// A map of node name -> value in plan order.
pub type ByNode<T> = IndexMap<String, T>;

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
