//! The checks the schema cannot make, and the checked [`FleetSpec`]: every name a fleet uses
//! exists, the stages form a DAG, and the fleet can make progress at all (a role that matches
//! no node, a `serial` that takes a must-stay-up group fully down, a budget larger than the
//! group, a version hop too big are refused here, before anything runs).

use std::collections::{BTreeSet, HashMap};

use duet_compiler::diagnostic::{Diagnostic, Diagnostics};
use duet_compiler::resolve::unattended::hop_too_big;
use duet_compiler::source::{Loc, SourceMap};
use duet_compiler::suggest::did_you_mean;
use duet_compiler::version::Version;
use indexmap::IndexMap;

use crate::plan::{At, FleetFile, RoleRule, Stage, Target};
use crate::spec::{
    self, FleetSpec, GroupSpec, NodeSpec, PreconditionSpec, PreserveSpec, RoleSpec, StageSpec, VersionPathSpec,
};

/// Checks a fleet file; the spec is returned only when no error was found.
pub fn check(fleet: &FleetFile, display: &str, sources: &SourceMap, diags: &mut Diagnostics) -> Option<FleetSpec> {
    let errors_before = diags.count(duet_compiler::diagnostic::Severity::Error);
    let nodes = nodes(fleet, diags);
    let groups = groups(fleet, &nodes, diags);
    let roles = roles(fleet, &groups, diags);
    let order = stage_order(fleet, diags);
    for stage in &fleet.stages {
        check_target(&stage.target, &groups, &roles, diags);
    }
    for p in &fleet.preconditions {
        check_target(&p.target, &groups, &roles, diags);
    }
    for p in &fleet.preserve {
        check_target(&p.target, &groups, &roles, diags);
    }
    check_progress(fleet, &nodes, &groups, &roles, diags);
    check_budgets(fleet, &groups, &roles, diags);
    check_versions(fleet, diags);
    check_scripts(fleet, diags);
    check_step_ids(fleet, diags);
    if diags.count(duet_compiler::diagnostic::Severity::Error) > errors_before {
        return None;
    }
    let stages = order.into_iter().map(|i| stage_spec(&fleet.stages[i], fleet, sources)).collect();
    Some(FleetSpec {
        format_version: spec::FORMAT_VERSION,
        file: display.to_owned(),
        title: fleet.title.clone(),
        versions: fleet.versions.as_ref().map(|v| VersionPathSpec {
            software: v.software.clone(),
            path: v.path.iter().map(|p| p.value.clone()).collect(),
        }),
        nodes,
        groups,
        roles,
        notify: fleet.notify.clone(),
        preserve: fleet
            .preserve
            .iter()
            .map(|p| PreserveSpec { target: p.target.value.clone(), paths: p.paths.clone() })
            .collect(),
        preconditions: fleet
            .preconditions
            .iter()
            .map(|p| PreconditionSpec {
                id: p.id.value.clone(),
                target: p.target.value.clone(),
                check: p.check.clone(),
                fix: p.fix.clone(),
                restore: p.restore.clone(),
            })
            .collect(),
        stages,
        policy: fleet.policy,
    })
}

fn stage_spec(stage: &Stage, fleet: &FleetFile, sources: &SourceMap) -> StageSpec {
    StageSpec {
        id: stage.id.value.clone(),
        target: stage.target.value.clone(),
        after: stage.after.iter().map(|a| a.value.clone()).collect(),
        serial: stage.serial.value,
        run_once: stage.run_once.clone(),
        exclusive: stage.exclusive.clone(),
        failover: stage.failover.clone(),
        drain: stage.drain.clone(),
        undrain: stage.undrain.clone(),
        upgrade: stage.upgrade,
        gates: stage.gates.clone(),
        policy: stage.policy.as_ref().map_or(fleet.policy, |p| p.value),
        source: sources.describe(stage.loc),
    }
}

fn nodes(fleet: &FleetFile, _diags: &mut Diagnostics) -> IndexMap<String, NodeSpec> {
    fleet
        .nodes
        .iter()
        .map(|n| {
            let dir = &fleet.dir;
            let spec = NodeSpec {
                plan: dir.join(&n.plan.value),
                inventory: n.inventory.as_ref().map(|i| dir.join(&i.value)),
                groups: n.groups.iter().map(|g| g.value.clone()).collect(),
            };
            (n.name.value.clone(), spec)
        })
        .collect()
}

/// Every group a node names or `groups:` declares, with its members in node order.
fn groups(
    fleet: &FleetFile,
    nodes: &IndexMap<String, NodeSpec>,
    diags: &mut Diagnostics,
) -> IndexMap<String, GroupSpec> {
    let mut out: IndexMap<String, GroupSpec> = IndexMap::new();
    for n in &fleet.nodes {
        for g in &n.groups {
            let entry = out.entry(g.value.clone()).or_insert_with(|| GroupSpec { members: Vec::new(), min_up: 0 });
            if entry.members.contains(&n.name.value) {
                diags.push(
                    Diagnostic::error(
                        "duet::fleet::duplicate-group",
                        format!("node `{}` lists group `{}` twice", n.name.value, g.value),
                    )
                    .at(g.loc, "listed again here")
                    .help("list each group once"),
                );
            } else {
                entry.members.push(n.name.value.clone());
            }
        }
    }
    for g in &fleet.groups {
        let members = out.get(&g.name.value).map(|s| s.members.len()).unwrap_or_default();
        if members == 0 {
            let hint = did_you_mean(&g.name.value, out.keys().map(String::as_str));
            diags.push(
                Diagnostic::error("duet::fleet::empty-group", format!("group `{}` has no nodes", g.name.value))
                    .at(g.name.loc, "no node lists this group")
                    .help(
                        hint.unwrap_or_else(|| {
                            format!("add `groups: [{}]` to the nodes that belong to it", g.name.value)
                        }),
                    ),
            );
            continue;
        }
        if let Some(min_up) = &g.min_up {
            if min_up.value as usize > members {
                diags.push(
                    Diagnostic::error(
                        "duet::fleet::min-up-too-large",
                        format!(
                            "group `{}` must keep {} nodes up, but it has only {members}",
                            g.name.value, min_up.value
                        ),
                    )
                    .at(min_up.loc, format!("the group has {members} nodes"))
                    .help("lower `min_up`, or add nodes to the group"),
                );
            } else {
                out.get_mut(&g.name.value).expect("counted above").min_up = min_up.value;
            }
        }
    }
    let _ = nodes;
    out
}

fn roles(
    fleet: &FleetFile,
    groups: &IndexMap<String, GroupSpec>,
    diags: &mut Diagnostics,
) -> IndexMap<String, RoleSpec> {
    let mut out = IndexMap::new();
    for role in &fleet.roles {
        let Some(group) = groups.get(&role.group.value) else {
            diags.push(unknown("group", &role.group, groups.keys()));
            continue;
        };
        let rule = match &role.rule {
            RoleRule::Probe(c) => spec::RoleRule::Probe(c.clone()),
            RoleRule::Not(other) => spec::RoleRule::Not(other.value.clone()),
            RoleRule::Unclear => {
                diags.push(
                    Diagnostic::error(
                        "duet::fleet::role-rule",
                        format!("role `{}` needs exactly one of `probe` and `not`", role.name.value),
                    )
                    .at(role.name.loc, "this role")
                    .help(
                        "`probe: {file: ...}` finds the nodes that hold it; `not: OTHER` takes the group's other nodes",
                    ),
                );
                continue;
            }
        };
        let members = group.members.len() as u32;
        if role.count.value > members {
            diags.push(no_node_for_role(
                role.name.value.as_str(),
                role.count.loc,
                &role.group.value,
                format!(
                    "role `{}` needs {} nodes but group `{}` has {members}",
                    role.name.value, role.count.value, role.group.value
                ),
            ));
        }
        out.insert(
            role.name.value.clone(),
            RoleSpec { group: role.group.value.clone(), rule, count: role.count.value },
        );
    }
    check_complements(fleet, groups, &mut out, diags);
    out
}

/// `not:` roles: the other role exists, is over the same group, and leaves some node.
fn check_complements(
    fleet: &FleetFile,
    groups: &IndexMap<String, GroupSpec>,
    roles: &mut IndexMap<String, RoleSpec>,
    diags: &mut Diagnostics,
) {
    for role in &fleet.roles {
        let RoleRule::Not(other) = &role.rule else { continue };
        let Some(other_spec) = roles.get(&other.value).cloned() else {
            if roles.contains_key(&role.name.value) {
                diags.push(unknown("role", other, roles.keys()));
                roles.shift_remove(&role.name.value);
            }
            continue;
        };
        if matches!(other_spec.rule, spec::RoleRule::Not(_)) {
            diags.push(
                Diagnostic::error(
                    "duet::fleet::role-rule",
                    format!("role `{}` is `not` a role that is itself `not` another", role.name.value),
                )
                .at(other.loc, "a `not` role")
                .help("name a role that has a `probe`"),
            );
            continue;
        }
        if other_spec.group != role.group.value {
            diags.push(
                Diagnostic::error(
                    "duet::fleet::role-rule",
                    format!(
                        "role `{}` is over group `{}` but `{}` is over `{}`",
                        role.name.value, role.group.value, other.value, other_spec.group
                    ),
                )
                .at(other.loc, "another group's role")
                .help("a `not` role takes the other nodes of the same group"),
            );
            continue;
        }
        let members = groups.get(&role.group.value).map_or(0, |g| g.members.len()) as u32;
        let left = members.saturating_sub(other_spec.count);
        if left == 0 {
            diags.push(no_node_for_role(
                &role.name.value,
                role.name.loc,
                &role.group.value,
                format!(
                    "role `{}` matches no node: group `{}` has {members} and `{}` takes {}",
                    role.name.value, role.group.value, other.value, other_spec.count
                ),
            ));
        } else if let Some(r) = roles.get_mut(&role.name.value) {
            r.count = left;
        }
    }
}

fn no_node_for_role(_role: &str, loc: Loc, group: &str, message: String) -> Diagnostic {
    Diagnostic::error("duet::fleet::role-matches-no-node", message)
        .at(loc, "no node can hold it")
        .help(format!("add nodes to group `{group}`, or change the role"))
}

fn unknown<'a>(what: &str, name: &At<String>, known: impl Iterator<Item = &'a String> + Clone) -> Diagnostic {
    let hint = did_you_mean(&name.value, known.clone().map(String::as_str));
    let list: Vec<&str> = known.map(String::as_str).collect();
    let help = hint.unwrap_or_else(|| {
        if list.is_empty() {
            format!("this fleet defines no {what}s")
        } else {
            format!("the {what}s are: {}", list.join(", "))
        }
    });
    Diagnostic::error(format!("duet::fleet::unknown-{what}").leak(), format!("unknown {what} `{}`", name.value))
        .at(name.loc, format!("no such {what}"))
        .help(help)
}

fn check_target(
    target: &At<Target>,
    groups: &IndexMap<String, GroupSpec>,
    roles: &IndexMap<String, RoleSpec>,
    diags: &mut Diagnostics,
) {
    let (what, name, known): (&str, &String, Vec<&String>) = match &target.value {
        Target::All => return,
        Target::Group(g) if groups.contains_key(g) => return,
        Target::Role(r) if roles.contains_key(r) => return,
        Target::Group(g) => ("group", g, groups.keys().collect()),
        Target::Role(r) => ("role", r, roles.keys().collect()),
    };
    diags.push(unknown(what, &At { value: name.clone(), loc: target.loc }, known.into_iter()));
}

/// Stage ids are unique, `after` names stages, and there is no cycle. Returns a topological
/// order (indexes into `fleet.stages`, ties in file order).
fn stage_order(fleet: &FleetFile, diags: &mut Diagnostics) -> Vec<usize> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, s) in fleet.stages.iter().enumerate() {
        if let Some(&first) = index.get(s.id.value.as_str()) {
            diags.push(
                Diagnostic::error("duet::fleet::duplicate-stage", format!("stage `{}` is defined twice", s.id.value))
                    .at(s.id.loc, "defined again here")
                    .related(fleet.stages[first].id.loc, "first defined here")
                    .help("give each stage its own id"),
            );
        } else {
            index.insert(&s.id.value, i);
        }
    }
    let mut deps: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); fleet.stages.len()];
    for (i, s) in fleet.stages.iter().enumerate() {
        for a in &s.after {
            match index.get(a.value.as_str()) {
                Some(&j) => {
                    deps[i].insert(j);
                }
                None => diags.push(unknown("stage", a, index.keys().map(|k| &fleet.stages[index[k]].id.value))),
            }
        }
    }
    let mut done = vec![false; deps.len()];
    let mut order = Vec::new();
    while order.len() < deps.len() {
        let Some(next) = (0..deps.len()).find(|&i| !done[i] && deps[i].iter().all(|&d| done[d])) else {
            let stuck: Vec<usize> = (0..deps.len()).filter(|&i| !done[i]).collect();
            let names: Vec<&str> = stuck.iter().map(|&i| fleet.stages[i].id.value.as_str()).collect();
            let first = &fleet.stages[stuck[0]];
            let mut d = Diagnostic::error(
                "duet::fleet::stage-cycle",
                format!("stages wait for each other: {}", names.join(", ")),
            )
            .at(first.after.first().map_or(first.id.loc, |a| a.loc), "waits here")
            .help("remove one of the `after` entries so the stages form a DAG");
            for &i in &stuck[1..] {
                d = d.related(fleet.stages[i].id.loc, "on the cycle");
            }
            diags.push(d);
            return order;
        };
        done[next] = true;
        order.push(next);
    }
    order
}

/// The worst number of `group`'s nodes a stage takes down at once.
fn worst_down(
    stage: &Stage,
    group: &GroupSpec,
    groups: &IndexMap<String, GroupSpec>,
    roles: &IndexMap<String, RoleSpec>,
) -> usize {
    let in_group = |candidates: &[String]| candidates.iter().filter(|n| group.members.contains(n)).count();
    let reach = match &stage.target.value {
        Target::All => group.members.len(),
        Target::Group(g) => groups.get(g).map_or(0, |g| in_group(&g.members)),
        Target::Role(r) => roles.get(r).map_or(0, |r| {
            let pool = groups.get(&r.group).map_or(0, |g| in_group(&g.members));
            pool.min(r.count as usize)
        }),
    };
    reach.min(stage.serial.value as usize)
}

/// A stage whose batch would leave a group with fewer than `min_up` nodes up can never run.
fn check_progress(
    fleet: &FleetFile,
    _nodes: &IndexMap<String, NodeSpec>,
    groups: &IndexMap<String, GroupSpec>,
    roles: &IndexMap<String, RoleSpec>,
    diags: &mut Diagnostics,
) {
    for stage in &fleet.stages {
        for (name, group) in groups {
            if group.min_up == 0 {
                continue;
            }
            let down = worst_down(stage, group, groups, roles);
            let up = group.members.len().saturating_sub(down);
            if up < group.min_up as usize {
                let declared = fleet.groups.iter().find(|g| &g.name.value == name).and_then(|g| g.min_up.as_ref());
                let mut d = Diagnostic::error(
                    "duet::fleet::serial-takes-group-down",
                    format!(
                        "stage `{}` upgrades {down} of group `{name}`'s {} nodes at once, leaving {up} up; the group must keep {} up",
                        stage.id.value,
                        group.members.len(),
                        group.min_up
                    ),
                )
                .at(stage.serial.loc, format!("{down} at once"))
                .help(match group.members.len().saturating_sub(group.min_up as usize) {
                    0 => format!("group `{name}` can never take a node down: lower its `min_up`"),
                    most => format!("lower `serial` to at most {most}"),
                });
                if let Some(m) = declared {
                    d = d.related(m.loc, "the group's minimum");
                }
                diags.push(d);
            }
        }
    }
}

/// A budget larger than the nodes it is over is a mistake: it can never be spent.
fn check_budgets(
    fleet: &FleetFile,
    groups: &IndexMap<String, GroupSpec>,
    roles: &IndexMap<String, RoleSpec>,
    diags: &mut Diagnostics,
) {
    let all = fleet.nodes.len();
    if let Some(loc) = fleet.policy_loc {
        if fleet.policy.max_failed as usize > all {
            diags.push(budget_error("the fleet", all, fleet.policy.max_failed, loc));
        }
    }
    for stage in &fleet.stages {
        let Some(policy) = &stage.policy else { continue };
        let size = match &stage.target.value {
            Target::All => all,
            Target::Group(g) => groups.get(g).map_or(usize::MAX, |g| g.members.len()),
            Target::Role(r) => roles.get(r).map_or(usize::MAX, |r| r.count as usize),
        };
        if policy.value.max_failed as usize > size {
            diags.push(budget_error(&format!("stage `{}`", stage.id.value), size, policy.value.max_failed, policy.loc));
        }
    }
}

fn budget_error(what: &str, size: usize, max_failed: u32, loc: Loc) -> Diagnostic {
    Diagnostic::error(
        "duet::fleet::budget-too-large",
        format!("{what} allows {max_failed} failed nodes but has only {size}"),
    )
    .at(loc, "this policy")
    .help(format!("set `max_failed` to at most {size}"))
}

fn check_versions(fleet: &FleetFile, diags: &mut Diagnostics) {
    let Some(versions) = &fleet.versions else { return };
    let mut previous: Option<(Version, Loc)> = None;
    for step in &versions.path {
        let version = match Version::parse(&step.value) {
            Ok(v) => v,
            Err(e) => {
                diags.push(
                    Diagnostic::error(
                        "duet::fleet::version",
                        format!("invalid version `{}` in the version path: {e}", step.value),
                    )
                    .at(step.loc, "here")
                    .help("write dotted numbers: \"12.1\""),
                );
                return;
            }
        };
        if let Some((from, from_loc)) = &previous {
            if version.parts() <= from.parts() {
                diags.push(
                    Diagnostic::error(
                        "duet::fleet::version-order",
                        format!("the version path goes from {from} to {version}, which is not up"),
                    )
                    .at(step.loc, "not newer")
                    .related(*from_loc, "the previous version")
                    .help("list the versions from oldest to newest"),
                );
            } else if let Some(message) = versions.max_major_hop.and_then(|max| hop_too_big(from, &version, max)) {
                diags.push(
                    Diagnostic::error("duet::fleet::hop-too-big", message)
                        .at(step.loc, "too big a hop")
                        .related(versions.loc, "the version path")
                        .help("add the intermediate version to `path`"),
                );
            }
        }
        previous = Some((version, step.loc));
    }
}

fn check_scripts(fleet: &FleetFile, diags: &mut Diagnostics) {
    use std::os::unix::fs::PermissionsExt;
    let mut seen = BTreeSet::new();
    for c in fleet.commands() {
        if !seen.insert(c.path.clone()) {
            continue;
        }
        let problem = match std::fs::metadata(&c.path) {
            Err(_) => Some((
                "duet::fleet::missing-script",
                "does not exist",
                "check the path; it is relative to the fleet file",
            )),
            Ok(m) if !m.is_file() || m.permissions().mode() & 0o111 == 0 => {
                Some(("duet::fleet::not-executable", "is not an executable file", "make it executable: chmod +x"))
            }
            Ok(_) => None,
        };
        if let Some((code, what, help)) = problem {
            let d = Diagnostic::error(code, format!("script `{}` {what}", c.file)).help(help);
            diags.push(match c.loc {
                Some(loc) => d.at(loc, "named here"),
                None => d.in_file(c.path.display().to_string()),
            });
        }
    }
}

/// Step ids are unique within a stage (they name journal entries).
fn check_step_ids(fleet: &FleetFile, diags: &mut Diagnostics) {
    for stage in &fleet.stages {
        let mut seen = BTreeSet::new();
        let ids = stage.run_once.iter().chain(stage.exclusive.iter().flat_map(|e| &e.steps)).map(|s| s.id.as_str());
        for id in ids {
            if !seen.insert(id) {
                diags.push(
                    Diagnostic::error(
                        "duet::fleet::duplicate-step",
                        format!("stage `{}` has two steps `{id}`", stage.id.value),
                    )
                    .at(stage.id.loc, "in this stage")
                    .help("give each step of a stage its own id"),
                );
            }
        }
    }
}
