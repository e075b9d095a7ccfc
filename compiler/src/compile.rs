//! The pipeline: text -> spanned YAML -> `PlanFile`s -> `ResolvedPlan` -> `BoundPlan` ->
//! `CompiledPlan`. Each stage reports every problem it finds; later stages run as long as what
//! they read is sound, so one run reports as much as it can.

use std::path::PathBuf;

use crate::bind::{self, BoundPlan};
use crate::compiled::{self, CompiledPlan, FORMAT_VERSION};
use crate::dag;
use crate::diagnostic::{Diagnostic, Diagnostics, Severity};
use crate::inventory::Inventory;
use crate::loader;
use crate::lock;
use crate::plan::{FieldValue, Setting};
use crate::resolve::{self, ResolvedPlan};
use crate::source::{Loc, SourceMap};

/// What to compile.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub plan: PathBuf,
    /// Check against this machine; without it only platform-independent checks run.
    pub inventory: Option<PathBuf>,
    /// A directory of minisign public keys (`NAME.pub`) trusted to sign templates, besides
    /// the top-level plan's `trust:`.
    pub keyring: Option<PathBuf>,
}

/// Everything one compilation produced. `compiled` is present only when the plan is valid.
#[derive(Debug)]
pub struct Compilation {
    pub sources: SourceMap,
    pub diagnostics: Vec<Diagnostic>,
    /// Present once the plan tree loaded without errors (even if later stages found some):
    /// `duet explain` can show provenance of a plan that does not yet bind.
    pub resolved: Option<ResolvedPlan>,
    pub inventory: Option<Inventory>,
    pub compiled: Option<CompiledPlan>,
}

impl Compilation {
    pub fn is_valid(&self) -> bool {
        self.compiled.is_some()
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == severity).count()
    }
}

pub fn compile(options: &Options) -> Compilation {
    let mut sources = SourceMap::default();
    let mut diags = Diagnostics::default();
    let inventory = options.inventory.as_ref().and_then(|path| Inventory::load(path, &mut sources, &mut diags));
    let inventory_failed = options.inventory.is_some() && inventory.is_none();

    let errors_before = diags.count(Severity::Error);
    let tree = loader::load_trusting(&options.plan, options.keyring.as_deref(), &mut sources, &mut diags);
    let mut resolved = None;
    let mut compiled = None;
    let loaded = diags.count(Severity::Error) == errors_before;
    if tree.is_some() && !loaded {
        diags.push(
            Diagnostic::note(
                "duet::check::stopped",
                "nesting, ordering and platform checks did not run because of the errors above",
            )
            .in_file(options.plan.display().to_string())
            .help("fix these errors and check again: later checks may find more"),
        );
    }
    if let Some(mut tree) = tree.filter(|_| loaded) {
        lock::check(&mut tree, &sources, &mut diags);
        let plan = resolve::resolve(&tree, &sources, &mut diags);
        let acyclic = dag::check_service_cycles(&plan.services, &mut diags);
        let inventory_name = options.inventory.as_ref().map(|p| p.display().to_string());
        let bound = inventory
            .as_ref()
            .zip(inventory_name.as_deref())
            .map(|(inv, name)| bind::bind(&plan, inv, name, &mut diags));
        if acyclic && !diags.has_errors() && !inventory_failed {
            let requests = dag::build_requests(&plan);
            dag::validate(&requests, &mut diags);
            if !diags.has_errors() {
                compiled = Some(assemble(&plan, bound.as_ref(), inventory_name, requests, &sources));
            }
        }
        resolved = Some(plan);
    }
    Compilation { diagnostics: diags.into_sorted(), sources, resolved, inventory, compiled }
}

fn text(setting: Option<&Setting>) -> Option<String> {
    match setting.map(|s| &s.value) {
        Some(FieldValue::Text(t)) => Some(t.clone()),
        _ => None,
    }
}

fn source(loc: Loc, sources: &SourceMap) -> compiled::Source {
    let file = sources.get(loc.file);
    compiled::Source { file: file.display.clone(), line: file.line_col(loc.span.start).0 }
}

fn assemble(
    plan: &ResolvedPlan,
    bound: Option<&BoundPlan>,
    inventory: Option<String>,
    requests: indexmap::IndexMap<compiled::RequestName, compiled::Request>,
    sources: &SourceMap,
) -> CompiledPlan {
    let names = |pick: fn(&crate::plan::DiskSelection) -> &Vec<crate::plan::Spanned<String>>| {
        plan.disks.as_ref().map(|d| pick(d).iter().map(|n| n.value.clone()).collect()).unwrap_or_default()
    };
    let disks = match bound {
        Some(b) => compiled::Disks { system: b.disks.system.clone(), data: b.disks.data.clone() },
        None => compiled::Disks { system: names(|d| &d.system), data: names(|d| &d.data) },
    };
    CompiledPlan {
        format_version: FORMAT_VERSION,
        title: text(plan.title.as_ref()),
        comments: text(plan.comments.as_ref()),
        sources: plan
            .sources
            .iter()
            .map(|&f| {
                let file = sources.get(f);
                compiled::SourceRef {
                    file: file.display.clone(),
                    path: file.canonical.display().to_string(),
                    sha256: file.verified.as_ref().map(|v| v.sha256.clone()),
                    signed_by: file.verified.as_ref().and_then(|v| v.signed_by.as_ref().map(|(name, _)| name.clone())),
                }
            })
            .collect(),
        inventory,
        disks,
        unattended: plan.unattended.clone(),
        services: plan
            .services
            .iter()
            .map(|s| compiled::Service {
                name: s.name.clone(),
                after: s.after.iter().map(|a| a.value.clone()).collect(),
                source: source(s.decl, sources),
            })
            .collect(),
        actions: plan
            .actions
            .iter()
            .map(|a| compiled::Action {
                id: a.id.clone(),
                file: a.file.display().to_string(),
                args: a.args.clone(),
                control: a.control,
                timing: a.timing,
                timeout_ms: a.timeout_ms,
                rerun: a.rerun,
                source: source(a.decl, sources),
            })
            .collect(),
        logs: compiled::Logs {
            staging_dir: text(plan.staging_dir.as_ref()),
            backup: plan.logs.iter().map(|l| l.name.clone()).collect(),
        },
        requests,
    }
}
