//! Compiling a fleet: read and schema-check the fleet file with the plan compiler's machinery,
//! check it ([`crate::check`]), and compile every node's single-machine plan against its
//! inventory with the plan compiler itself, so a fleet that starts has nodes whose plans are
//! valid. Nothing here runs a command.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use duet_compiler::compiled::CompiledPlan;
use duet_compiler::diagnostic::{Diagnostic, Diagnostics, Severity};
use duet_compiler::loader;
use duet_compiler::schema::Schema;
use duet_compiler::source::SourceMap;

use crate::check;
use crate::plan::FleetFile;
use crate::spec::FleetSpec;

/// One node plan's compilation (shared by the nodes with the same plan and inventory).
pub struct NodePlan {
    pub nodes: Vec<String>,
    pub compilation: duet_compiler::Compilation,
}

pub struct FleetCompilation {
    pub sources: SourceMap,
    /// The fleet file's diagnostics, sorted.
    pub diagnostics: Vec<Diagnostic>,
    /// The node plans, in node order of first use.
    pub plans: Vec<NodePlan>,
    /// Present only when the fleet file and every node plan are valid.
    pub spec: Option<FleetSpec>,
}

impl FleetCompilation {
    pub fn is_valid(&self) -> bool {
        self.spec.is_some()
    }

    /// Errors over the fleet file and every node plan.
    pub fn errors(&self) -> usize {
        let own = self.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
        own + self.plans.iter().map(|p| p.compilation.count(Severity::Error)).sum::<usize>()
    }

    /// The compiled plan of a node, once valid.
    pub fn plan_of(&self, node: &str) -> Option<&CompiledPlan> {
        self.plans.iter().find(|p| p.nodes.iter().any(|n| n == node))?.compilation.compiled.as_ref()
    }

    /// Every diagnostic, rendered for a person: the fleet file's, then each node plan's.
    pub fn render_human(&self, color: bool) -> String {
        let mut out = duet_compiler::report::render_human(&self.diagnostics, &self.sources, color);
        for p in &self.plans {
            if !p.compilation.diagnostics.is_empty() {
                out.push_str(&duet_compiler::report::render_human(
                    &p.compilation.diagnostics,
                    &p.compilation.sources,
                    color,
                ));
            }
        }
        out
    }
}

pub fn compile(path: &Path) -> FleetCompilation {
    let mut sources = SourceMap::default();
    let mut diags = Diagnostics::default();
    let display = path.display().to_string();
    let Some((file, root)) = loader::read_document(path, &display, None, Schema::Fleet, &mut sources, &mut diags)
    else {
        return FleetCompilation { sources, diagnostics: diags.into_sorted(), plans: Vec::new(), spec: None };
    };
    if diags.has_errors() {
        return FleetCompilation { sources, diagnostics: diags.into_sorted(), plans: Vec::new(), spec: None };
    }
    let dir = std::path::absolute(path).ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default();
    let fleet = FleetFile::from_node(&root, file, &dir);
    let spec = check::check(&fleet, &display, &sources, &mut diags);
    // Node plans are compiled from paths as the user sees them (next to the fleet file as named).
    let shown_dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let plans = compile_node_plans(&fleet, &shown_dir, &mut diags);
    if let Some(spec) = &spec {
        check_version_path(spec, &fleet, &plans, &mut diags);
    }
    let valid = !diags.has_errors() && plans.iter().all(|p| p.compilation.is_valid());
    FleetCompilation { sources, diagnostics: diags.into_sorted(), plans, spec: spec.filter(|_| valid) }
}

fn compile_node_plans(fleet: &FleetFile, shown_dir: &Path, diags: &mut Diagnostics) -> Vec<NodePlan> {
    let mut plans: Vec<NodePlan> = Vec::new();
    let mut by_key: HashMap<(PathBuf, Option<PathBuf>), usize> = HashMap::new();
    // The keys a node's duet trusts for signed templates: the same keyring (DUET_KEYRING).
    let keyring = std::env::var_os("DUET_KEYRING").map(PathBuf::from);
    for node in &fleet.nodes {
        let plan = shown_dir.join(&node.plan.value);
        let inventory = node.inventory.as_ref().map(|i| shown_dir.join(&i.value));
        let key = (plan.clone(), inventory.clone());
        let index = *by_key.entry(key).or_insert_with(|| {
            let compilation =
                duet_compiler::compile(&duet_compiler::Options { plan, inventory, keyring: keyring.clone() });
            plans.push(NodePlan { nodes: Vec::new(), compilation });
            plans.len() - 1
        });
        plans[index].nodes.push(node.name.value.clone());
        let errors = plans[index].compilation.count(Severity::Error);
        if errors > 0 {
            diags.push(
                Diagnostic::error(
                    "duet::fleet::node-plan",
                    format!("node `{}` runs plan `{}`, which has {errors} error(s)", node.name.value, node.plan.value),
                )
                .at(node.plan.loc, "this plan does not compile")
                .help(format!("fix the plan (its errors are shown below), or run `duet check {}`", node.plan.value)),
            );
        }
    }
    plans
}

/// A node plan that makes a version hop makes one along the fleet's path.
fn check_version_path(spec: &FleetSpec, fleet: &FleetFile, plans: &[NodePlan], diags: &mut Diagnostics) {
    let Some(path) = &spec.versions else { return };
    for node in &fleet.nodes {
        let Some(plan) = plans.iter().find(|p| p.nodes.contains(&node.name.value)) else { continue };
        let Some(v) = plan.compilation.compiled.as_ref().and_then(|c| c.unattended.versions.as_ref()) else { continue };
        let from = path.path.iter().position(|p| p == &v.from);
        let to = path.path.iter().position(|p| p == &v.to);
        let on_path = v.software == path.software && matches!((from, to), (Some(a), Some(b)) if a < b);
        if !on_path {
            diags.push(
                Diagnostic::error(
                    "duet::fleet::plan-off-path",
                    format!(
                        "node `{}`'s plan upgrades {} {} -> {}, which is not a step of the fleet's path {} {}",
                        node.name.value,
                        v.software,
                        v.from,
                        v.to,
                        path.software,
                        path.path.join(" -> ")
                    ),
                )
                .at(node.plan.loc, "this plan's `versions`")
                .help("make the plan's `versions` a hop along `versions.path`, or change the path"),
            );
        }
    }
}
