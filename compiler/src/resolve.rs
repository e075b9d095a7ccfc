//! Nesting (execution model 2.1): a [`PlanTree`] becomes one [`ResolvedPlan`].
//!
//! `resolve(P) = override(combine(resolve(C1), ..., resolve(Cn)), own(P))`, children first.
//! Every field keeps the location it was written at and the definitions it overrode, which is
//! what `duet explain` prints.

use indexmap::IndexMap;

use crate::compiled;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::loader::PlanTree;
use crate::plan::{Control, DiskSelection, FieldValue, KeyedEntry, Kind, Overridden, Rerun, Setting, Spanned, Timing};
use crate::source::{FileId, Loc, SourceMap};
use crate::suggest;

pub mod unattended;

/// Default action timeout (execution model section 2).
pub const DEFAULT_TIMEOUT_MS: u64 = 10 * 60 * 1000;

#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    pub decl: Loc,
    pub after: Vec<Spanned<String>>,
}

#[derive(Clone, Debug)]
pub struct Action {
    pub id: String,
    pub decl: Loc,
    pub file: std::path::PathBuf,
    pub file_loc: Loc,
    pub args: Vec<String>,
    pub control: Control,
    pub timing: Timing,
    pub timeout_ms: u64,
    pub rerun: Rerun,
}

#[derive(Clone, Debug)]
pub struct Log {
    pub name: String,
    pub decl: Loc,
}

/// A plan tree resolved into one plan.
#[derive(Debug)]
pub struct ResolvedPlan {
    pub root: FileId,
    /// Every file of the tree, children before parents.
    pub sources: Vec<FileId>,
    /// Each file's direct includes, for the summary's tree of child plans.
    pub includes: IndexMap<FileId, Vec<FileId>>,
    pub title: Option<Setting>,
    pub comments: Option<Setting>,
    pub staging_dir: Option<Setting>,
    /// The top-level plan's selection; children's are in `ignored_disks`.
    pub disks: Option<DiskSelection>,
    pub ignored_disks: Vec<DiskSelection>,
    /// Every enabled entry with its provenance, in resolved order.
    pub entries: Vec<KeyedEntry>,
    /// Entries removed by `enabled: false`.
    pub dropped: Vec<KeyedEntry>,
    pub services: Vec<Service>,
    pub actions: Vec<Action>,
    pub logs: Vec<Log>,
    /// `versions` and `on_failure` as resolved (the nearest definition to the top wins).
    pub versions: Option<Setting>,
    pub on_failure: Option<Setting>,
    /// The tasks, checks, approvals, notifications, version hop and failure policy.
    pub unattended: compiled::Unattended,
    /// Software names the platform's software inventory must know (checked when binding).
    pub software: Vec<unattended::SoftwareRef>,
    /// The programs of upgrade tasks and `run` checks (checked when binding, like actions').
    pub programs: Vec<unattended::ProgramRef>,
}

type Key = (Kind, String);

/// `resolve(P)` of one plan: what its parent combines.
#[derive(Clone, Default)]
struct Partial {
    entries: IndexMap<Key, KeyedEntry>,
    title: Option<Setting>,
    comments: Option<Setting>,
    staging_dir: Option<Setting>,
    versions: Option<Setting>,
    on_failure: Option<Setting>,
    /// Sibling conflicts no plan has settled yet: any plan above can still settle them by
    /// setting the field; the ones that reach the top are errors.
    conflicts: Conflicts,
}

/// What two siblings can disagree on: a field of an entry, or a top-level setting.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Subject {
    Field(Key, &'static str),
    Scalar(&'static str),
}

impl Subject {
    fn describe(&self) -> String {
        match self {
            Self::Field((kind, key), field) => format!("`{field}` of {} `{key}`", kind.as_str()),
            Self::Scalar("staging_dir") => "`logs.staging_dir`".to_owned(),
            Self::Scalar(name) => format!("`{name}`"),
        }
    }
}

/// Conflicting definitions found while combining siblings, each with the plan whose children
/// disagree (the first place that could have settled it).
#[derive(Clone, Default)]
struct Conflicts {
    found: IndexMap<Subject, (FileId, Vec<Setting>)>,
}

impl Conflicts {
    fn add(&mut self, subject: Subject, parent: FileId, current: &Setting, other: Setting) {
        let (_, list) = self.found.entry(subject).or_insert_with(|| (parent, vec![current.clone()]));
        if !list.iter().any(|s| s.loc == other.loc) {
            list.push(other);
        }
    }

    /// A child's unsettled conflicts become this plan's.
    fn absorb(&mut self, other: Conflicts) {
        for (subject, (parent, settings)) in other.found {
            let (_, list) = self.found.entry(subject).or_insert_with(|| (parent, Vec::new()));
            for s in settings {
                if !list.iter().any(|x| x.loc == s.loc) {
                    list.push(s);
                }
            }
        }
    }

    /// The parent set this itself: the conflict is settled, its sides are what it overrode.
    fn settle(&mut self, subject: &Subject) -> Vec<Setting> {
        self.found.shift_remove(subject).map(|(_, s)| s).unwrap_or_default()
    }

    /// The conflicts that reached the top plan unsettled.
    fn report(self, sources: &SourceMap, diags: &mut Diagnostics) {
        for (subject, (parent, settings)) in self.found {
            let (first, rest) = settings.split_first().expect("a conflict has two sides");
            let what = subject.describe();
            let parent = &sources.get(parent).display;
            for other in rest {
                diags.push(
                    Diagnostic::error(
                        "duet::nesting::conflict",
                        format!("{what} conflicts between included plans: {} and {}", first.value, other.value),
                    )
                    .at(other.loc, format!("set to {} here", other.value))
                    .related(first.loc, format!("set to {} here", first.value))
                    .help(format!(
                        "set {what} in `{parent}` (or any plan that includes it) to choose; the parent's setting wins"
                    )),
                );
            }
        }
    }
}

pub fn resolve(tree: &PlanTree, sources: &SourceMap, diags: &mut Diagnostics) -> ResolvedPlan {
    // A child's resolution is moved into its last parent instead of copied: only diamonds copy.
    let mut parents_left = vec![0usize; tree.plans.len()];
    for plan in &tree.plans {
        for &child in &plan.children {
            parents_left[child] += 1;
        }
    }
    let mut memo: Vec<Option<Partial>> = vec![None; tree.plans.len()];
    for &index in &tree.post_order {
        let children: Vec<Partial> = tree.plans[index]
            .children
            .iter()
            .filter_map(|&c| {
                parents_left[c] -= 1;
                if parents_left[c] == 0 { memo[c].take() } else { memo[c].clone() }
            })
            .collect();
        memo[index] = Some(resolve_one(tree, index, children));
    }
    let root = memo[tree.root].take().unwrap_or_default();
    finish(tree, root, sources, diags)
}

fn deeper(mut setting: Setting) -> Setting {
    setting.depth += 1;
    setting
}

/// `own` replaces `old` (if any) and everything `old` had replaced, and settles `lost`.
fn overriding(own: &Setting, old: Option<Setting>, lost: Vec<Setting>) -> Setting {
    let mut own = own.clone();
    if let Some(old) = old {
        own.overridden.push(Overridden { loc: old.loc, value: old.value.to_string() });
        own.overridden.extend(old.overridden);
    }
    for lost in lost {
        if !own.overridden.iter().any(|o| o.loc == lost.loc) {
            own.overridden.push(Overridden { loc: lost.loc, value: lost.value.to_string() });
        }
    }
    own
}

fn resolve_one(tree: &PlanTree, index: usize, children: Vec<Partial>) -> Partial {
    let loaded = &tree.plans[index];
    let mut acc = Partial::default();
    let mut conflicts = Conflicts::default();
    let here = loaded.file;

    // combine(resolve(C1), ..., resolve(Cn))
    let (mut titles, mut comments, mut staging_dirs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut versions, mut on_failures) = (Vec::new(), Vec::new());
    for child in children {
        conflicts.absorb(child.conflicts);
        for (key, entry) in child.entries {
            let Some(existing) = acc.entries.get_mut(&key) else {
                acc.entries.insert(key, entry);
                continue;
            };
            for decl in entry.decls {
                if !existing.decls.contains(&decl) {
                    existing.decls.push(decl);
                }
            }
            for lock in entry.locks {
                if !existing.locks.contains(&lock) {
                    existing.locks.push(lock);
                }
            }
            for (field, setting) in entry.fields {
                match existing.fields.get(field) {
                    None => {
                        existing.fields.insert(field, setting);
                    }
                    Some(current) if current.value == setting.value => {}
                    Some(current) => conflicts.add(Subject::Field(key.clone(), field), here, current, setting),
                }
            }
        }
        titles.extend(child.title.map(deeper));
        comments.extend(child.comments.map(deeper));
        staging_dirs.extend(child.staging_dir.map(deeper));
        versions.extend(child.versions.map(deeper));
        on_failures.extend(child.on_failure.map(deeper));
    }
    acc.title = nearest(titles, None);
    acc.comments = nearest(comments, None);
    acc.staging_dir = nearest(staging_dirs, Some((&mut conflicts, here, "staging_dir")));
    acc.versions = nearest(versions, Some((&mut conflicts, here, "versions")));
    acc.on_failure = nearest(on_failures, Some((&mut conflicts, here, "on_failure")));

    // override(..., own(P))
    let own = &loaded.plan;
    for entry in &own.entries {
        let key = (entry.kind, entry.key.clone());
        let Some(existing) = acc.entries.get_mut(&key) else {
            acc.entries.insert(key, entry.clone());
            continue;
        };
        existing.decls.push(entry.decl);
        existing.locks.extend(entry.locks.iter().filter(|l| !existing.locks.contains(l)).cloned().collect::<Vec<_>>());
        for (field, setting) in &entry.fields {
            let lost = conflicts.settle(&Subject::Field(key.clone(), field));
            let settled = overriding(setting, existing.fields.shift_remove(field), lost);
            existing.fields.insert(field, settled);
        }
    }
    for (slot, own, name) in [
        (&mut acc.title, &own.title, "title"),
        (&mut acc.comments, &own.comments, "comments"),
        (&mut acc.staging_dir, &own.staging_dir, "staging_dir"),
        (&mut acc.versions, &own.versions, "versions"),
        (&mut acc.on_failure, &own.on_failure, "on_failure"),
    ] {
        if let Some(own) = own {
            *slot = Some(overriding(own, slot.take(), conflicts.settle(&Subject::Scalar(name))));
        }
    }

    acc.conflicts = conflicts;
    acc
}

/// "The nearest definition to the top wins": fewer includes away wins, the first included wins
/// a tie. With `conflicts`, a tie between different values is a conflict, like any other field
/// (two staging directories cannot both be right; two titles are only cosmetic). Only the
/// nearest definitions can tie, whatever order the children are included in: a nearer
/// definition is not a conflict with two farther ones.
fn nearest(
    mut candidates: Vec<Setting>,
    mut conflicts: Option<(&mut Conflicts, FileId, &'static str)>,
) -> Option<Setting> {
    let depth = candidates.iter().map(|s| s.depth).min()?;
    let first = candidates.iter().position(|s| s.depth == depth)?;
    let mut winner = candidates.remove(first);
    for other in candidates {
        if other.value == winner.value {
            continue;
        }
        match &mut conflicts {
            Some((conflicts, here, name)) if other.depth == depth => {
                conflicts.add(Subject::Scalar(name), *here, &winner, other);
            }
            _ => winner.overridden.push(Overridden { loc: other.loc, value: other.value.to_string() }),
        }
    }
    Some(winner)
}

fn finish(tree: &PlanTree, mut root: Partial, sources: &SourceMap, diags: &mut Diagnostics) -> ResolvedPlan {
    std::mem::take(&mut root.conflicts).report(sources, diags);
    let root_plan = &tree.plans[tree.root];
    let root_name = &sources.get(root_plan.file).display;
    let mut ignored_disks = Vec::new();
    for &index in &tree.post_order {
        let loaded = &tree.plans[index];
        if index == tree.root {
            continue;
        }
        if let Some(disks) = &loaded.plan.disks {
            diags.push(
                Diagnostic::note(
                    "duet::nesting::child-disks",
                    format!("the disk selection in included plan `{}` is ignored", sources.get(loaded.file).display),
                )
                .at(disks.loc, "ignored")
                .help(format!("only the top-level plan selects disks (guide 3-7); select them in `{root_name}`")),
            );
            ignored_disks.push(disks.clone());
        }
    }

    let (entries, dropped): (Vec<KeyedEntry>, Vec<KeyedEntry>) =
        root.entries.into_values().partition(KeyedEntry::enabled);
    warn_disables_nothing(&entries, &dropped, diags);

    let mut services = Vec::new();
    let mut actions = Vec::new();
    let mut logs = Vec::new();
    for entry in &entries {
        match entry.kind {
            Kind::Service => services.push(Service {
                name: entry.key.clone(),
                decl: entry.decl,
                after: match entry.fields.get("after").map(|s| &s.value) {
                    Some(FieldValue::Names(names)) => names.clone(),
                    _ => Vec::new(),
                },
            }),
            Kind::Action => {
                if let Some(action) = complete_action(entry, diags) {
                    actions.push(action);
                }
            }
            Kind::Log => logs.push(Log { name: entry.key.clone(), decl: entry.decl }),
            Kind::Task | Kind::Check | Kind::Approval | Kind::Notify => {}
        }
    }
    check_after(&services, &dropped, diags);
    // A service dropped with `enabled: false` takes its ordering constraints with it.
    for service in &mut services {
        service.after.retain(|dep| !dropped.iter().any(|d| d.kind == Kind::Service && d.key == dep.value));
    }
    if let (Some(first), None) = (logs.first(), &root.staging_dir) {
        diags.push(
            Diagnostic::error(
                "duet::logs::no-staging-dir",
                "event logs are named for backup, but no `logs.staging_dir` is set",
            )
            .at(first.decl, "backed up where?")
            .help("add `logs: {staging_dir: /path/on/a/data/disk}` to the top-level plan"),
        );
    }

    let unattended = unattended::complete(&entries, root.versions.as_ref(), root.on_failure.as_ref(), sources, diags);

    ResolvedPlan {
        root: root_plan.file,
        sources: tree.post_order.iter().map(|&i| tree.plans[i].file).collect(),
        includes: tree
            .post_order
            .iter()
            .map(|&i| (tree.plans[i].file, tree.plans[i].children.iter().map(|&c| tree.plans[c].file).collect()))
            .collect(),
        title: root.title,
        comments: root.comments,
        staging_dir: root.staging_dir,
        disks: root_plan.plan.disks.clone(),
        ignored_disks,
        entries,
        dropped,
        services,
        actions,
        logs,
        versions: root.versions,
        on_failure: root.on_failure,
        unattended: unattended.unattended,
        software: unattended.software,
        programs: unattended.programs,
    }
}

/// `enabled: false` on an entry no included plan declares is probably a misspelt name.
fn warn_disables_nothing(entries: &[KeyedEntry], dropped: &[KeyedEntry], diags: &mut Diagnostics) {
    for gone in dropped {
        let only_disables = gone.decls.len() == 1 && gone.fields.keys().all(|f| *f == "enabled");
        if only_disables {
            let kind = gone.kind;
            let names =
                entries.iter().chain(dropped).filter(|e| e.kind == kind && e.key != gone.key).map(|e| e.key.as_str());
            diags.push(
                Diagnostic::warning(
                    "duet::nesting::disables-nothing",
                    format!("{} `{}` is disabled, but no included plan declares it", kind.as_str(), gone.key),
                )
                .at(gone.decl, "nothing to disable")
                .help_opt(
                    suggest::did_you_mean(&gone.key, names)
                        .or_else(|| Some("check the name against the included plans".into())),
                ),
            );
        }
    }
}

/// "After resolution every action must have `file` and `control`."
fn complete_action(entry: &KeyedEntry, diags: &mut Diagnostics) -> Option<Action> {
    let field = |name| entry.fields.get(name).map(|s| (&s.value, s.loc));
    let file = match field("file") {
        Some((FieldValue::Path { resolved, .. }, loc)) => Some((resolved.clone(), loc)),
        _ => None,
    };
    let control = match field("control") {
        Some((FieldValue::Control(c), _)) => Some(*c),
        _ => None,
    };
    let missing: Vec<&str> = [("file", file.is_none()), ("control", control.is_none())]
        .into_iter()
        .filter(|(_, m)| *m)
        .map(|(n, _)| n)
        .collect();
    if !missing.is_empty() {
        let list = missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(" and ");
        let mut d = Diagnostic::error(
            "duet::action::incomplete",
            format!("action `{}` has no {list} after nesting is resolved", entry.key),
        )
        .at(entry.decl, format!("missing {list}"))
        .help(format!("set {list} in one of the plans that declare `{}`", entry.key));
        for decl in entry.decls.iter().skip(1) {
            d = d.related(*decl, "also declared here");
        }
        diags.push(d);
        return None;
    }
    let (file, file_loc) = file?;
    Some(Action {
        id: entry.key.clone(),
        decl: entry.decl,
        file,
        file_loc,
        args: match field("args") {
            Some((FieldValue::Args(a), _)) => a.clone(),
            _ => Vec::new(),
        },
        control: control?,
        timing: match field("timing") {
            Some((FieldValue::Timing(t), _)) => *t,
            _ => Timing::Default,
        },
        timeout_ms: match field("timeout") {
            Some((FieldValue::Duration { ms, .. }, _)) => *ms,
            _ => DEFAULT_TIMEOUT_MS,
        },
        rerun: match field("rerun") {
            Some((FieldValue::Rerun(r), _)) => *r,
            _ => Rerun::Safe,
        },
    })
}

/// `after` must name other services of the plan. A service dropped with `enabled: false` is
/// not an error: the parent meant to drop it, so the ordering constraint goes with it.
fn check_after(services: &[Service], dropped: &[KeyedEntry], diags: &mut Diagnostics) {
    let known: std::collections::HashSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    for service in services {
        for dep in &service.after {
            if dep.value == service.name {
                diags.push(
                    Diagnostic::error(
                        "duet::service::after-self",
                        format!("service `{}` is ordered after itself", service.name),
                    )
                    .at(dep.loc, "remove this")
                    .help(format!("remove `{}` from its own `after` list", service.name)),
                );
            } else if known.contains(dep.value.as_str()) {
            } else if dropped.iter().any(|d| d.kind == Kind::Service && d.key == dep.value) {
                diags.push(
                    Diagnostic::warning(
                        "duet::service::after-dropped",
                        format!("service `{}` is ordered after `{}`, which is disabled", service.name, dep.value),
                    )
                    .at(dep.loc, "disabled with `enabled: false`")
                    .help("the ordering constraint is dropped with the service"),
                );
            } else {
                diags.push(
                    Diagnostic::error(
                        "duet::service::after-unknown",
                        format!(
                            "service `{}` is ordered after `{}`, which is not a service of this plan",
                            service.name, dep.value
                        ),
                    )
                    .at(dep.loc, "unknown service")
                    .help_opt(
                        suggest::did_you_mean(&dep.value, services.iter().map(|s| s.name.as_str())).or_else(|| {
                            Some("list the service under `services` too, or remove it from `after`".into())
                        }),
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use crate::diagnostic::Severity;
    use crate::plan::FieldValue;
    use crate::testing::{Tree, expect_at, expect_clean, found};

    const ACTION: &str = "file: bin/x.sh\n    control: stop";

    #[test]
    fn includes_must_be_bare_yaml_names_in_the_same_directory() {
        let t = Tree::new(&[
            ("root.yaml", "version: 1\ninclude: [sub/child.yaml, ../up.yaml, notes.txt, missing.yaml, chlid.yaml]\n"),
            ("child.yaml", "version: 1\n"),
        ]);
        let c = t.compile("root.yaml");
        expect_at(&c, "duet::include::path", "root.yaml", 2, 11);
        expect_at(&c, "duet::include::path", "root.yaml", 2, 27);
        expect_at(&c, "duet::include::not-yaml", "root.yaml", 2, 39);
        let missing = expect_at(&c, "duet::file::unreadable", "root.yaml", 2, 50);
        assert!(missing.contains("missing.yaml") && missing.contains("no such file"), "{missing}");
        expect_at(&c, "duet::file::unreadable", "root.yaml", 2, 64);
        let typo = c.diagnostics.iter().find(|d| d.message.contains("chlid.yaml")).unwrap();
        assert_eq!(typo.help.as_deref(), Some("did you mean `child.yaml`?"));
        assert!(!c.is_valid());
    }

    #[test]
    fn a_cycle_names_every_file_on_it() {
        let t = Tree::new(&[
            ("a.yaml", "version: 1\ninclude: [b.yaml]\n"),
            ("b.yaml", "version: 1\ninclude: [c.yaml]\n"),
            ("c.yaml", "version: 1\ntitle: c\ninclude: [a.yaml]\n"),
        ]);
        let c = t.compile("a.yaml");
        let message = expect_at(&c, "duet::include::cycle", "c.yaml", 3, 11);
        let dir = t.dir.path().display().to_string() + "/";
        assert_eq!(message.replace(&dir, ""), "include cycle: a.yaml -> b.yaml -> c.yaml -> a.yaml");
        let cycle = c.diagnostics.iter().find(|d| d.code == "duet::include::cycle").unwrap();
        assert_eq!(cycle.related.len(), 2, "labels on the includes of b.yaml and c.yaml");
        assert_eq!(found(&c).iter().filter(|f| f.severity == Severity::Error).count(), 1);

        let t = Tree::new(&[("self.yaml", "version: 1\ninclude: [self.yaml]\n")]);
        let message = expect_at(&t.compile("self.yaml"), "duet::include::cycle", "self.yaml", 2, 11);
        assert_eq!(
            message.replace(&(t.dir.path().display().to_string() + "/"), ""),
            "include cycle: self.yaml -> self.yaml"
        );
    }

    #[test]
    fn a_diamond_is_included_once() {
        let t = Tree::new(&[
            ("top.yaml", "version: 1\ninclude: [left.yaml, right.yaml]\n"),
            ("left.yaml", "version: 1\ninclude: [base.yaml]\nservices: [L]\n"),
            ("right.yaml", "version: 1\ninclude: [base.yaml]\nservices: [R]\n"),
            ("base.yaml", &format!("version: 1\nservices: [DB]\nactions:\n  - id: a\n    {ACTION}\n    timeout: 1m\n")),
            ("bin/x.sh", "#!/bin/sh\n"),
        ]);
        let c = t.compile("top.yaml");
        expect_clean(&c);
        let plan = c.compiled.as_ref().unwrap();
        let names: Vec<&str> = plan.sources.iter().map(|s| s.file.rsplit('/').next().unwrap()).collect();
        assert_eq!(names, ["base.yaml", "left.yaml", "right.yaml", "top.yaml"], "children first, each file once");
        let services: Vec<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(services, ["DB", "L", "R"], "children first, in include order; DB once");
        assert_eq!(plan.actions.len(), 1);
    }

    #[test]
    fn the_parent_wins_field_by_field_and_keeps_the_first_position() {
        let t = Tree::new(&[
            (
                "site.yaml",
                "version: 1\ninclude: [vendor.yaml]\nservices: [Mine]\nactions:\n  - id: stop-app\n    timeout: 9m\n    args: [fast]\n",
            ),
            (
                "vendor.yaml",
                &format!(
                    "version: 1\nservices: [Theirs]\nactions:\n  - id: first\n    {ACTION}\n  - id: stop-app\n    {ACTION}\n    timeout: 1m\n    args: [slow]\n    timing: late\n"
                ),
            ),
            ("bin/x.sh", "#!/bin/sh\n"),
        ]);
        let c = t.compile("site.yaml");
        expect_clean(&c);
        let plan = c.compiled.as_ref().unwrap();
        assert_eq!(plan.services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["Theirs", "Mine"]);
        let ids: Vec<&str> = plan.actions.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["first", "stop-app"], "the merged entry keeps its first position");
        let a = &plan.actions[1];
        assert_eq!((a.timeout_ms, a.args.as_slice(), a.timing.as_str()), (540_000, &["fast".to_owned()][..], "late"));
        assert!(a.file.ends_with("bin/x.sh"), "file from the child: {}", a.file);
        assert_eq!(a.source.file.rsplit('/').next(), Some("vendor.yaml"));
        let resolved = c.resolved.as_ref().unwrap();
        let entry = resolved.entries.iter().find(|e| e.key == "stop-app").unwrap();
        let timeout = &entry.fields["timeout"];
        assert_eq!(c.sources.describe(timeout.loc).rsplit('/').next(), Some("site.yaml:6"));
        assert_eq!(timeout.overridden.len(), 1);
        assert_eq!(c.sources.describe(timeout.overridden[0].loc).rsplit('/').next(), Some("vendor.yaml:10"));
    }

    #[test]
    fn enabled_false_drops_a_childs_entry_and_a_grandparent_can_restore_it() {
        let t = Tree::new(&[
            ("top.yaml", "version: 1\ninclude: [mid.yaml]\nservices:\n  - {name: B, enabled: true}\n"),
            (
                "mid.yaml",
                "version: 1\ninclude: [base.yaml]\nservices:\n  - {name: A, enabled: false}\n  - {name: B, enabled: false}\n",
            ),
            ("base.yaml", "version: 1\nservices: [A, B, C]\n"),
        ]);
        let c = t.compile("top.yaml");
        expect_clean(&c);
        let names: Vec<&str> = c.compiled.as_ref().unwrap().services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["B", "C"]);
        assert_eq!(c.resolved.as_ref().unwrap().dropped.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), ["A"]);
    }

    #[test]
    fn disabling_an_undeclared_entry_warns_with_a_suggestion() {
        let t = Tree::new(&[
            ("top.yaml", "version: 1\ninclude: [base.yaml]\nservices:\n  - {name: MSSQLSEVER, enabled: false}\n"),
            ("base.yaml", "version: 1\nservices: [MSSQLSERVER]\n"),
        ]);
        let c = t.compile("top.yaml");
        expect_at(&c, "duet::nesting::disables-nothing", "top.yaml", 4, 12);
        assert_eq!(c.diagnostics[0].help.as_deref(), Some("did you mean `MSSQLSERVER`?"));
        assert!(c.is_valid(), "a warning does not make the plan invalid");
    }

    #[test]
    fn sibling_conflicts_are_errors_unless_the_parent_sets_the_field() {
        let files = |parent: &str| {
            vec![
                ("top.yaml".to_owned(), format!("version: 1\ninclude: [a.yaml, b.yaml]\n{parent}")),
                ("a.yaml".to_owned(), format!("version: 1\nactions:\n  - id: x\n    {ACTION}\n    timeout: 1m\n")),
                (
                    "b.yaml".to_owned(),
                    "version: 1\nactions:\n  - id: x\n    timeout: 2m\n    timing: early\n".to_owned(),
                ),
                ("bin/x.sh".to_owned(), "#!/bin/sh\n".to_owned()),
            ]
        };
        let owned = files("");
        let t = Tree::new(&owned.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect::<Vec<_>>());
        let c = t.compile("top.yaml");
        let message = expect_at(&c, "duet::nesting::conflict", "b.yaml", 4, 14);
        assert_eq!(message, "`timeout` of action `x` conflicts between included plans: 1m and 2m");
        let d = c.diagnostics.iter().find(|d| d.code == "duet::nesting::conflict").unwrap();
        assert_eq!(c.sources.describe(d.related[0].loc).rsplit('/').next(), Some("a.yaml:6"));
        assert_eq!(
            found(&c).iter().filter(|f| f.severity == Severity::Error).count(),
            1,
            "timing is set by one sibling only: no conflict"
        );

        let owned = files("actions:\n  - id: x\n    timeout: 3m\n");
        let t = Tree::new(&owned.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect::<Vec<_>>());
        let c = t.compile("top.yaml");
        expect_clean(&c);
        assert_eq!(c.compiled.as_ref().unwrap().actions[0].timeout_ms, 180_000);
        let entry = &c.resolved.as_ref().unwrap().entries[0];
        assert_eq!(entry.fields["timeout"].overridden.len(), 2, "both siblings' values are shown as overridden");
    }

    #[test]
    fn childrens_disks_are_ignored_with_a_note() {
        let t = Tree::new(&[
            ("top.yaml", "version: 1\ninclude: [child.yaml]\ndisks: {system: [disk0]}\n"),
            ("child.yaml", "version: 1\ndisks:\n  system: [disk1]\n"),
        ]);
        let c = t.compile("top.yaml");
        let message = expect_at(&c, "duet::nesting::child-disks", "child.yaml", 2, 1);
        assert!(message.contains("is ignored"), "{message}");
        assert_eq!(c.compiled.as_ref().unwrap().disks.system, ["disk0"]);
    }

    #[test]
    fn actions_must_be_complete_after_resolution() {
        let t = Tree::new(&[
            (
                "top.yaml",
                "version: 1\ninclude: [child.yaml]\nactions:\n  - id: only-timeout\n    timeout: 1m\n  - id: has-file\n    file: bin/x.sh\n",
            ),
            ("child.yaml", "version: 1\nactions:\n  - id: only-timeout\n    timing: late\n"),
            ("bin/x.sh", "#!/bin/sh\n"),
        ]);
        let c = t.compile("top.yaml");
        let m = expect_at(&c, "duet::action::incomplete", "child.yaml", 3, 9);
        assert_eq!(m, "action `only-timeout` has no `file` and `control` after nesting is resolved");
        let m = expect_at(&c, "duet::action::incomplete", "top.yaml", 6, 9);
        assert_eq!(m, "action `has-file` has no `control` after nesting is resolved");
    }

    #[test]
    fn title_comes_from_the_nearest_plan_to_the_top() {
        let t = Tree::new(&[
            ("top.yaml", "version: 1\ninclude: [deep.yaml, near.yaml]\n"),
            ("deep.yaml", "version: 1\ninclude: [deeper.yaml]\n"),
            ("deeper.yaml", "version: 1\ntitle: Deeper\ncomments: from deeper\n"),
            ("near.yaml", "version: 1\ntitle: Near\n"),
        ]);
        let c = t.compile("top.yaml");
        expect_clean(&c);
        let plan = c.compiled.as_ref().unwrap();
        assert_eq!(plan.title.as_deref(), Some("Near"), "one include away beats two");
        assert_eq!(plan.comments.as_deref(), Some("from deeper"));
    }

    #[test]
    fn sibling_staging_dirs_conflict_and_logs_need_one() {
        let t = Tree::new(&[
            ("top.yaml", "version: 1\ninclude: [a.yaml, b.yaml]\n"),
            ("a.yaml", "version: 1\nlogs: {staging_dir: /data/a, backup: [System]}\n"),
            ("b.yaml", "version: 1\nlogs: {staging_dir: /data/b}\n"),
        ]);
        let c = t.compile("top.yaml");
        let m = expect_at(&c, "duet::nesting::conflict", "b.yaml", 2, 21);
        assert!(m.starts_with("`logs.staging_dir` conflicts"), "{m}");

        let t = Tree::new(&[("top.yaml", "version: 1\nlogs:\n  backup: [Application]\n")]);
        expect_at(&t.compile("top.yaml"), "duet::logs::no-staging-dir", "top.yaml", 3, 12);
        let t = Tree::new(&[("top.yaml", "version: 1\nlogs: {staging_dir: data/logs}\n")]);
        expect_at(&t.compile("top.yaml"), "duet::logs::staging-relative", "top.yaml", 2, 21);
    }

    #[test]
    fn after_must_name_services_of_the_plan() {
        let t = Tree::new(&[
            (
                "top.yaml",
                "version: 1\ninclude: [base.yaml]\nservices:\n  - {name: Web, after: [Databse, Web, Cache]}\n  - {name: Cache, enabled: false}\n",
            ),
            ("base.yaml", "version: 1\nservices: [Database, Cache]\n"),
        ]);
        let c = t.compile("top.yaml");
        expect_at(&c, "duet::service::after-unknown", "top.yaml", 4, 25);
        expect_at(&c, "duet::service::after-self", "top.yaml", 4, 34);
        expect_at(&c, "duet::service::after-dropped", "top.yaml", 4, 39);
        let unknown = c.diagnostics.iter().find(|d| d.code == "duet::service::after-unknown").unwrap();
        assert_eq!(unknown.help.as_deref(), Some("did you mean `Database`?"));
    }

    #[test]
    fn duplicates_in_one_file_are_errors() {
        let t = Tree::new(&[(
            "top.yaml",
            &format!(
                "version: 1\nservices: [A, B, A]\nactions:\n  - {{id: x, {}}}\n  - id: x\n",
                "file: bin/x.sh, control: stop"
            ),
        )]);
        let c = t.compile("top.yaml");
        expect_at(&c, "duet::plan::duplicate", "top.yaml", 2, 18);
        expect_at(&c, "duet::plan::duplicate", "top.yaml", 5, 9);
    }

    #[test]
    fn default_action_id_is_the_file_stem_and_merges_by_it() {
        let t = Tree::new(&[
            ("top.yaml", "version: 1\ninclude: [child.yaml]\nactions:\n  - {file: bin/stop-app.sh, timeout: 7m}\n"),
            ("child.yaml", "version: 1\nactions:\n  - {file: bin/stop-app.sh, control: stop}\n"),
            ("bin/stop-app.sh", "#!/bin/sh\n"),
        ]);
        let c = t.compile("top.yaml");
        expect_clean(&c);
        let plan = c.compiled.as_ref().unwrap();
        assert_eq!(
            (plan.actions.len(), plan.actions[0].id.as_str(), plan.actions[0].timeout_ms),
            (1, "stop-app", 420_000)
        );
        let file = &c.resolved.as_ref().unwrap().entries[0].fields["file"];
        assert!(matches!(&file.value, FieldValue::Path { written, .. } if written == "bin/stop-app.sh"));
    }

    #[test]
    fn a_bad_timeout_is_reported_once_and_args_pass_as_written() {
        let t = Tree::new(&[(
            "p.yaml",
            "version: 1\nactions:\n  - {file: bin/x.sh, control: stop, timeout: 5x}\n  - {file: bin/y.sh, control: stop, timeout: 0s}\n",
        )]);
        let c = t.compile("p.yaml");
        assert_eq!(found(&c).iter().filter(|f| f.severity == Severity::Error).count(), 2, "{:#?}", found(&c));
        expect_at(&c, "duet::schema::invalid-value", "p.yaml", 3, 46);
        expect_at(&c, "duet::action::timeout", "p.yaml", 4, 46);

        let t = Tree::new(&[(
            "p.yaml",
            "version: 1\nactions:\n  - {file: bin/x.sh, control: stop, args: [.inf, 1.50, -3, true, \"%A%\"]}\n",
        )]);
        let c = t.compile("p.yaml");
        expect_clean(&c);
        assert_eq!(c.compiled.unwrap().actions[0].args, [".inf", "1.50", "-3", "true", "%A%"]);
    }

    #[test]
    fn any_plan_above_a_conflict_can_settle_it() {
        let files = |top: &'static str| {
            Tree::new(&[
                ("top.yaml", top),
                ("mid.yaml", "version: 1\ninclude: [left.yaml, right.yaml]\n"),
                ("left.yaml", "version: 1\nlogs: {staging_dir: /data/left}\nservices: [{name: S, after: [T]}, T, U]\n"),
                ("right.yaml", "version: 1\nlogs: {staging_dir: /data/right}\nservices: [{name: S, after: [U]}]\n"),
            ])
        };
        let t = files("version: 1\ninclude: [mid.yaml]\n");
        let c = t.compile("top.yaml");
        let all = found(&c);
        assert_eq!(all.iter().filter(|f| f.code == "duet::nesting::conflict").count(), 2, "{all:#?}");
        let d = c.diagnostics.iter().find(|d| d.message.starts_with("`logs.staging_dir`")).unwrap();
        assert!(d.help.as_deref().unwrap().starts_with("set `logs.staging_dir` in `"), "{:?}", d.help);
        assert!(d.help.as_deref().unwrap().contains("mid.yaml` (or any plan that includes it)"), "{:?}", d.help);

        let t = files(
            "version: 1\ninclude: [mid.yaml]\nlogs: {staging_dir: /data/top}\nservices: [{name: S, after: [T, U]}]\n",
        );
        let c = t.compile("top.yaml");
        expect_clean(&c);
        let plan = c.compiled.as_ref().unwrap();
        assert_eq!(plan.logs.staging_dir.as_deref(), Some("/data/top"), "the nearest definition to the top wins");
        assert_eq!(plan.services[0].after, ["T", "U"]);
        let staging = c.resolved.as_ref().unwrap().staging_dir.as_ref().unwrap();
        assert_eq!(staging.overridden.len(), 2, "both grandchildren's values are shown as overridden");
    }

    /// Found by `properties::nesting_resolves_as_the_rules_say`: two staging directories at the
    /// same distance conflicted even when a nearer plan set one, but only when they were
    /// included before it.
    #[test]
    fn a_nearer_staging_dir_wins_over_a_farther_tie_in_any_include_order() {
        for include in ["left.yaml, right.yaml, near.yaml", "near.yaml, left.yaml, right.yaml"] {
            let t = Tree::new(&[
                ("top.yaml", &format!("version: 1\ninclude: [{include}]\n")),
                ("left.yaml", "version: 1\ninclude: [b.yaml]\n"),
                ("right.yaml", "version: 1\ninclude: [a.yaml]\n"),
                ("b.yaml", "version: 1\nlogs: {staging_dir: /data/b}\n"),
                ("a.yaml", "version: 1\nlogs: {staging_dir: /data/a}\n"),
                ("near.yaml", "version: 1\nlogs: {staging_dir: /data/a}\n"),
            ]);
            let c = t.compile("top.yaml");
            expect_clean(&c);
            let staging = c.resolved.as_ref().unwrap().staging_dir.as_ref().unwrap();
            assert_eq!(c.sources.describe(staging.loc).rsplit('/').next(), Some("near.yaml:2"), "{include}");
            let lost: Vec<String> = staging.overridden.iter().map(|o| o.value.clone()).collect();
            assert_eq!(lost, ["\"/data/b\""], "{include}");
        }
    }

    #[test]
    fn a_title_that_loses_to_a_nearer_plan_is_recorded() {
        let t = Tree::new(&[
            ("top.yaml", "version: 1\ninclude: [a.yaml, b.yaml]\n"),
            ("a.yaml", "version: 1\ntitle: A\n"),
            ("b.yaml", "version: 1\ntitle: B\n"),
        ]);
        let c = t.compile("top.yaml");
        expect_clean(&c);
        let title = c.resolved.as_ref().unwrap().title.as_ref().unwrap();
        assert_eq!(title.value, FieldValue::Text("A".into()), "a tie goes to the first include");
        assert_eq!(title.overridden[0].value, "\"B\"");
    }

    #[test]
    fn names_must_be_visible_text_and_repeats_are_dropped_with_a_warning() {
        let t = Tree::new(&[(
            "p.yaml",
            "version: 1\nservices: [\"  \", \"new\\nline\", \" pad\", {name: A, after: [B, B]}, B]\ndisks: {system: [disk0, disk0]}\n",
        )]);
        let c = t.compile("p.yaml");
        expect_at(&c, "duet::plan::name", "p.yaml", 2, 12);
        expect_at(&c, "duet::plan::name", "p.yaml", 2, 18);
        expect_at(&c, "duet::plan::name", "p.yaml", 2, 31);
        expect_at(&c, "duet::plan::repeated-name", "p.yaml", 2, 60);
        expect_at(&c, "duet::plan::repeated-name", "p.yaml", 3, 25);
    }

    #[test]
    fn a_disabled_service_leaves_the_after_lists_it_was_in() {
        let t = Tree::new(&[
            ("top.yaml", "version: 1\ninclude: [base.yaml]\nservices: [{name: DB, enabled: false}]\n"),
            ("base.yaml", "version: 1\nservices: [DB, Cache, {name: App, after: [DB, Cache]}]\n"),
        ]);
        let c = t.compile("top.yaml");
        let plan = c.compiled.as_ref().unwrap();
        assert_eq!(
            plan.services.iter().map(|s| (s.name.as_str(), s.after.clone())).collect::<Vec<_>>(),
            [("Cache", vec![]), ("App", vec!["Cache".to_owned()])]
        );
        expect_at(&c, "duet::service::after-dropped", "base.yaml", 2, 43);
    }

    #[test]
    fn a_misspelt_variable_is_a_warning() {
        let t = Tree::new(&[(
            "p.yaml",
            "version: 1\nactions:\n  - {file: bin/x.sh, control: stop, args: [\"%ACTIVE_UPGRADE_SIDES%\", \"%PATH%\", \"100%%\", \"%ACTIVE_UPGRADE_SIDE%\"]}\n",
        )]);
        let c = t.compile("p.yaml");
        let m = expect_at(&c, "duet::action::unknown-variable", "p.yaml", 3, 44);
        assert_eq!(m, "`%ACTIVE_UPGRADE_SIDES%` is not an Active Upgrade variable; it will be passed as written");
        assert_eq!(c.diagnostics[0].help.as_deref(), Some("did you mean `ACTIVE_UPGRADE_SIDE`?"));
        assert_eq!(found(&c).len(), 1, "%PATH%, %% and the real variable are fine");
        assert!(c.is_valid());
    }

    #[test]
    fn non_finite_numbers_are_kept_as_written_text() {
        let t = Tree::new(&[("p.yaml", "version: 1\ntitle: .inf\nservices: [.nan]\n")]);
        let c = t.compile("p.yaml");
        expect_clean(&c);
        let plan = c.compiled.unwrap();
        assert_eq!(plan.title.as_deref(), Some(".inf"));
        assert_eq!(plan.services[0].name, ".nan");
    }
}
