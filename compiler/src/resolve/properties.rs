//! Property tests of nesting (execution model 2.1, plan format 3): random include trees are
//! written to a temporary directory, compiled, and compared with [`Model`], a direct transcription
//! of the rules that shares no code with `resolve.rs`.
//!
//! The trees are acyclic (plan `i` includes only plans after it), with diamonds, plans that no
//! one includes, and a small vocabulary of keys and values so that siblings often agree, often
//! disagree, and write the same value differently (`1m` and `60s`, `bin/a.sh` and
//! `./bin/a.sh`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use proptest::prelude::*;

use crate::compile::Compilation;
use crate::plan::{FieldValue, KeyedEntry, Kind};
use crate::testing::Tree;

/// Cases per property: each writes and compiles a tree of up to seven files, a few
/// milliseconds in a debug build. `PROPTEST_CASES=N` asks for more, for a longer search.
const CASES: u32 = 192;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(CASES);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

const SERVICES: [&str; 4] = ["S0", "S1", "S2", "S3"];
const ACTIONS: [&str; 3] = ["a0", "a1", "a2"];
const LOGS: [&str; 2] = ["L0", "L1"];
const DISKS: [&str; 3] = ["disk0", "disk1", "disk2"];

/// A field value as written in YAML, and what it means (what the rules compare).
#[derive(Clone, Debug)]
struct Value {
    yaml: String,
    meaning: String,
}

fn value(yaml: &str, meaning: &str) -> Value {
    Value { yaml: yaml.to_owned(), meaning: meaning.to_owned() }
}

/// The values each field can take: several spellings of one meaning where the format has them.
fn values(kind: Kind, field: &str) -> Vec<Value> {
    match (kind, field) {
        (_, "enabled") => vec![value("true", "true"), value("false", "false")],
        (Kind::Service, "after") => {
            vec![value("[]", "[]"), value("[S0]", "[S0]"), value("[S1, S0]", "[S1, S0]"), value("[S2]", "[S2]")]
        }
        (_, "file") => vec![
            value("bin/a.sh", "bin/a.sh"),
            value("./bin/a.sh", "bin/a.sh"),
            value("bin/../bin/a.sh", "bin/a.sh"),
            value("bin/b.sh", "bin/b.sh"),
        ],
        (_, "control") => vec![value("stop", "stop"), value("start", "start"), value("advanced", "advanced")],
        (_, "timing") => vec![value("early", "early"), value("late", "late"), value("default", "default")],
        (_, "timeout") => {
            vec![value("1m", "60000"), value("60s", "60000"), value("60000ms", "60000"), value("2m", "120000")]
        }
        (_, "rerun") => vec![value("safe", "safe"), value("unsafe", "unsafe")],
        (_, "args") => {
            vec![value("[]", "[]"), value("[x]", "[x]"), value("[x, \"y z\"]", "[x, y z]"), value("[1.50]", "[1.50]")]
        }
        _ => unreachable!("no field {field} for {kind:?}"),
    }
}

fn fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Service => &["after", "enabled"],
        Kind::Action => &["file", "control", "timing", "timeout", "rerun", "args", "enabled"],
        Kind::Log => &["enabled"],
        // The unattended entries nest by the same code path as actions; the model covers the
        // three kinds the rules were written for.
        Kind::Task | Kind::Check | Kind::Approval | Kind::Notify => &[],
    }
}

/// One service, action or event log as one plan writes it.
#[derive(Clone, Debug)]
struct Entry {
    kind: Kind,
    key: &'static str,
    fields: Vec<(&'static str, Value)>,
}

/// One plan file.
#[derive(Clone, Debug)]
struct Plan {
    title: Option<&'static str>,
    comments: Option<&'static str>,
    staging_dir: Option<&'static str>,
    disks: Option<(Vec<&'static str>, Vec<&'static str>)>,
    includes: Vec<usize>,
    entries: Vec<Entry>,
}

fn name(i: usize) -> String {
    format!("p{i}.yaml")
}

impl Plan {
    fn yaml(&self) -> String {
        let mut out = String::from("version: 1\n");
        for (key, v) in [("title", self.title), ("comments", self.comments)] {
            if let Some(v) = v {
                let _ = writeln!(out, "{key}: {v}");
            }
        }
        if let Some((system, data)) = &self.disks {
            let _ = writeln!(out, "disks: {{system: [{}], data: [{}]}}", system.join(", "), data.join(", "));
        }
        if !self.includes.is_empty() {
            let names: Vec<String> = self.includes.iter().map(|&i| name(i)).collect();
            let _ = writeln!(out, "include: [{}]", names.join(", "));
        }
        let items = |kind: Kind, key: &str, indent: &str| -> String {
            let mut list = String::new();
            for e in self.entries.iter().filter(|e| e.kind == kind) {
                let mut parts = vec![format!("{key}: {}", e.key)];
                parts.extend(e.fields.iter().map(|(f, v)| format!("{f}: {}", v.yaml)));
                let _ = writeln!(list, "{indent}- {{{}}}", parts.join(", "));
            }
            list
        };
        for (section, list) in
            [("services", items(Kind::Service, "name", "  ")), ("actions", items(Kind::Action, "id", "  "))]
        {
            if !list.is_empty() {
                let _ = write!(out, "{section}:\n{list}");
            }
        }
        let logs = items(Kind::Log, "name", "    ");
        if self.staging_dir.is_some() || !logs.is_empty() {
            out.push_str("logs:\n");
            if let Some(dir) = self.staging_dir {
                let _ = writeln!(out, "  staging_dir: {dir}");
            }
            if !logs.is_empty() {
                let _ = write!(out, "  backup:\n{logs}");
            }
        }
        out
    }
}

fn entry(kind: Kind, keys: &'static [&'static str]) -> impl Strategy<Value = Entry> {
    let field_values: Vec<_> = fields(kind)
        .iter()
        .map(|&f| proptest::option::weighted(0.35, proptest::sample::select(values(kind, f))).prop_map(move |v| (f, v)))
        .collect();
    (proptest::sample::select(keys), field_values).prop_map(move |(key, fields)| Entry {
        kind,
        key,
        fields: fields.into_iter().filter_map(|(f, v)| v.map(|v| (f, v))).collect(),
    })
}

fn plan(index: usize, count: usize) -> impl Strategy<Value = Plan> {
    let later: Vec<usize> = (index + 1..count).collect();
    let includes = proptest::sample::subsequence(later.clone(), 0..=later.len().min(3)).prop_shuffle();
    let entries = proptest::collection::vec(
        prop_oneof![entry(Kind::Service, &SERVICES), entry(Kind::Action, &ACTIONS), entry(Kind::Log, &LOGS)],
        0..5,
    );
    let disks = proptest::option::weighted(
        0.3,
        (proptest::sample::subsequence(DISKS.to_vec(), 0..=2), proptest::sample::subsequence(DISKS.to_vec(), 0..=1)),
    );
    (
        proptest::option::weighted(0.3, proptest::sample::select(vec!["T1", "T2"])),
        proptest::option::weighted(0.2, proptest::sample::select(vec!["C1", "C2"])),
        proptest::option::weighted(0.3, proptest::sample::select(vec!["/data/a", "/data/b"])),
        disks,
        includes,
        entries,
    )
        .prop_map(|(title, comments, staging_dir, disks, includes, entries)| {
            // Each key once per file: a repeat is another rule (`duet::plan::duplicate`).
            let mut seen = BTreeSet::new();
            let mut entries: Vec<Entry> = entries.into_iter().filter(|e| seen.insert((e.kind, e.key))).collect();
            // In the order the file lists them: services, actions, event logs.
            entries.sort_by_key(|e| e.kind);
            Plan { title, comments, staging_dir, disks, includes, entries }
        })
}

fn trees() -> impl Strategy<Value = Vec<Plan>> {
    (1usize..=7).prop_flat_map(|count| (0..count).map(|i| plan(i, count)).collect::<Vec<_>>())
}

/// What two siblings can disagree on.
type Subject = String;

fn field_subject(kind: Kind, key: &str, field: &str) -> Subject {
    format!("`{field}` of {} `{key}`", kind.as_str())
}

const STAGING: &str = "`logs.staging_dir`";

/// A resolved entry: its fields' meanings, and the plan that declared it first.
#[derive(Clone, Debug, PartialEq)]
struct ModelEntry {
    kind: Kind,
    key: &'static str,
    first: usize,
    fields: BTreeMap<&'static str, String>,
}

/// `resolve(P)` by the rules, written without looking at `resolve.rs`.
#[derive(Clone, Debug, Default)]
struct Model {
    /// In resolved order: the children's entries in include order, then the plan's new ones.
    entries: Vec<ModelEntry>,
    /// `(distance from this plan, value)`.
    title: Option<(u32, &'static str)>,
    comments: Option<(u32, &'static str)>,
    staging_dir: Option<(u32, &'static str)>,
    /// Sibling disagreements no plan on the way up has settled by setting the field.
    open: BTreeSet<Subject>,
}

impl Model {
    fn resolve(plans: &[Plan], index: usize) -> Self {
        let children: Vec<Self> = plans[index].includes.iter().map(|&c| Self::resolve(plans, c)).collect();
        let mut m = Self::default();
        // combine: the union by key, in include order; a field two children set differently
        // is a conflict.
        for child in &children {
            m.open.extend(child.open.iter().cloned());
            for e in &child.entries {
                if !m.entries.iter().any(|x| x.kind == e.kind && x.key == e.key) {
                    m.entries.push(ModelEntry { fields: BTreeMap::new(), ..e.clone() });
                }
            }
        }
        for e in &mut m.entries {
            for &field in fields(e.kind) {
                let set: Vec<&String> = children
                    .iter()
                    .filter_map(|c| c.entries.iter().find(|x| x.kind == e.kind && x.key == e.key))
                    .filter_map(|x| x.fields.get(field))
                    .collect();
                if let Some(first) = set.first() {
                    if set.iter().any(|v| v != first) {
                        m.open.insert(field_subject(e.kind, e.key, field));
                    }
                    e.fields.insert(field, (*first).clone());
                }
            }
        }
        // The nearest definition wins; the first included wins a tie (for the staging
        // directory, a tie between different values is a conflict).
        let nearest = |pick: fn(&Self) -> Option<(u32, &'static str)>| {
            let all: Vec<(u32, &'static str)> = children.iter().filter_map(pick).map(|(d, v)| (d + 1, v)).collect();
            let depth = all.iter().map(|(d, _)| *d).min()?;
            let at: Vec<&'static str> = all.iter().filter(|(d, _)| *d == depth).map(|(_, v)| *v).collect();
            Some((depth, at))
        };
        m.title = nearest(|c| c.title).map(|(d, at)| (d, at[0]));
        m.comments = nearest(|c| c.comments).map(|(d, at)| (d, at[0]));
        if let Some((d, at)) = nearest(|c| c.staging_dir) {
            if at.iter().any(|v| *v != at[0]) {
                m.open.insert(STAGING.to_owned());
            }
            m.staging_dir = Some((d, at[0]));
        }
        // override: the plan's own fields win, field by field, and settle conflicts below.
        let own = &plans[index];
        for e in &own.entries {
            let i = m.entries.iter().position(|x| x.kind == e.kind && x.key == e.key).unwrap_or_else(|| {
                m.entries.push(ModelEntry { kind: e.kind, key: e.key, first: index, fields: BTreeMap::new() });
                m.entries.len() - 1
            });
            for (field, v) in &e.fields {
                m.open.remove(&field_subject(e.kind, e.key, field));
                m.entries[i].fields.insert(field, v.meaning.clone());
            }
        }
        if let Some(t) = own.title {
            m.title = Some((0, t));
        }
        if let Some(c) = own.comments {
            m.comments = Some((0, c));
        }
        if let Some(s) = own.staging_dir {
            m.open.remove(STAGING);
            m.staging_dir = Some((0, s));
        }
        m
    }
}

/// What a field's value means, spelled as [`values`] spells it.
fn meaning(v: &FieldValue, dir: &str) -> String {
    match v {
        FieldValue::Path { resolved, .. } => resolved.display().to_string().trim_start_matches(dir).to_owned(),
        FieldValue::Duration { ms, .. } => ms.to_string(),
        FieldValue::Text(t) => t.clone(),
        other => other.to_string(),
    }
}

fn file_name(c: &Compilation, file: crate::source::FileId) -> String {
    c.sources.get(file).display.rsplit('/').next().unwrap_or_default().to_owned()
}

fn resolved_entry(c: &Compilation, e: &KeyedEntry, dir: &str) -> ModelEntry {
    let first = file_name(c, e.decl.file);
    let first = first.trim_start_matches('p').trim_end_matches(".yaml").parse().expect("a generated file name");
    let key = *SERVICES.iter().chain(&ACTIONS).chain(&LOGS).find(|k| **k == e.key).expect("a generated key");
    let fields = e.fields.iter().map(|(f, s)| (*f, meaning(&s.value, dir))).collect();
    ModelEntry { kind: e.kind, key, first, fields }
}

fn conflicts(c: &Compilation) -> BTreeSet<Subject> {
    c.diagnostics
        .iter()
        .filter(|d| d.code == "duet::nesting::conflict")
        .map(|d| d.message.split(" conflicts between").next().unwrap_or_default().to_owned())
        .collect()
}

fn reachable(plans: &[Plan], from: usize, into: &mut BTreeSet<usize>) {
    if into.insert(from) {
        for &c in &plans[from].includes {
            reachable(plans, c, into);
        }
    }
}

fn write(plans: &[Plan]) -> Tree {
    let files: Vec<(String, String)> = plans.iter().enumerate().map(|(i, p)| (name(i), p.yaml())).collect();
    Tree::new(&files.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect::<Vec<_>>())
}

proptest! {
    #![proptest_config(config())]

    /// The parent wins field by field, the nearest title wins, entries keep the position of
    /// their first declaration, `enabled: false` is applied last, and exactly the sibling
    /// disagreements that no plan above settles are conflicts.
    #[test]
    fn nesting_resolves_as_the_rules_say(plans in trees()) {
        let t = write(&plans);
        let c = t.compile("p0.yaml");
        let dir = format!("{}/", t.dir.path().display());
        let model = Model::resolve(&plans, 0);
        let resolved = c.resolved.as_ref().expect("a generated tree loads");

        prop_assert_eq!(conflicts(&c), model.open.clone(), "conflicts; plans:\n{}", dump(&plans));
        let (enabled, dropped): (Vec<ModelEntry>, Vec<ModelEntry>) =
            model.entries.iter().cloned().partition(|e| e.fields.get("enabled").is_none_or(|v| v != "false"));
        let got = |list: &[KeyedEntry]| list.iter().map(|e| resolved_entry(&c, e, &dir)).collect::<Vec<_>>();
        if model.open.is_empty() {
            prop_assert_eq!(got(&resolved.entries), enabled, "entries; plans:\n{}", dump(&plans));
            prop_assert_eq!(got(&resolved.dropped), dropped, "dropped; plans:\n{}", dump(&plans));
            let staging = resolved.staging_dir.as_ref().map(|s| meaning(&s.value, &dir));
            prop_assert_eq!(staging.as_deref(), model.staging_dir.map(|(_, v)| v));
        } else {
            // What a conflicting field resolves to is unspecified; which keys there are is not.
            let keys = |list: &mut dyn Iterator<Item = (Kind, String)>| list.collect::<BTreeSet<_>>();
            prop_assert_eq!(
                keys(&mut resolved.entries.iter().chain(&resolved.dropped).map(|e| (e.kind, e.key.clone()))),
                keys(&mut model.entries.iter().map(|e| (e.kind, e.key.to_owned())))
            );
        }
        let text = |s: Option<&crate::plan::Setting>| s.map(|s| meaning(&s.value, &dir));
        prop_assert_eq!(text(resolved.title.as_ref()), model.title.map(|(_, v)| v.to_owned()));
        prop_assert_eq!(text(resolved.comments.as_ref()), model.comments.map(|(_, v)| v.to_owned()));
    }

    /// Only the top-level plan's disks count; every other plan of the tree that selects disks
    /// gets one note; the same tree compiles to the same diagnostics and provenance every time.
    #[test]
    fn disks_come_from_the_top_plan_and_output_is_stable(plans in trees()) {
        let t = write(&plans);
        let c = t.compile("p0.yaml");
        let resolved = c.resolved.as_ref().expect("a generated tree loads");
        let names = |list: &[crate::plan::Spanned<String>]| list.iter().map(|n| n.value.clone()).collect::<Vec<_>>();
        let disks = resolved.disks.as_ref().map(|d| (names(&d.system), names(&d.data)));
        let own = plans[0].disks.as_ref().map(|(s, d)| {
            (s.iter().map(ToString::to_string).collect::<Vec<_>>(), d.iter().map(ToString::to_string).collect::<Vec<_>>())
        });
        prop_assert_eq!(disks, own);
        let mut tree = BTreeSet::new();
        reachable(&plans, 0, &mut tree);
        let expected: BTreeSet<String> =
            tree.iter().filter(|&&i| i != 0 && plans[i].disks.is_some()).map(|&i| name(i)).collect();
        let notes: Vec<String> = c
            .diagnostics
            .iter()
            .filter(|d| d.code == "duet::nesting::child-disks")
            .map(|d| file_name(&c, d.primary.as_ref().expect("a note at the child's disks").loc.file))
            .collect();
        prop_assert_eq!(notes.len(), expected.len(), "one note per file: {:?}", notes);
        prop_assert_eq!(notes.into_iter().collect::<BTreeSet<_>>(), expected);

        let again = t.compile("p0.yaml");
        let render = |c: &Compilation| {
            let explained = crate::render::explain::render(c.resolved.as_ref().unwrap(), &c.sources, None);
            (crate::report::render_human(&c.diagnostics, &c.sources, false), explained)
        };
        prop_assert_eq!(render(&c), render(&again));
    }

    /// A back edge makes a cycle, and each cycle reported is a real one: every file on it
    /// includes the next, and it ends where it starts.
    #[test]
    fn a_cycle_is_reported_with_every_file_on_it(mut plans in trees(), back in any::<prop::sample::Index>()) {
        // Close a cycle: a plan reachable from the top includes the top-level plan.
        let mut tree = BTreeSet::new();
        reachable(&plans, 0, &mut tree);
        let from = *back.get(&tree.iter().copied().collect::<Vec<_>>());
        plans[from].includes.push(0);
        let t = write(&plans);
        let c = t.compile("p0.yaml");
        let dir = format!("{}/", t.dir.path().display());
        let cycles: Vec<&str> =
            c.diagnostics.iter().filter(|d| d.code == "duet::include::cycle").map(|d| d.message.as_str()).collect();
        prop_assert!(!cycles.is_empty(), "no cycle reported; plans:\n{}", dump(&plans));
        for message in cycles {
            let files: Vec<usize> = message
                .trim_start_matches("include cycle: ")
                .split(" -> ")
                .map(|f| f.trim_start_matches(&dir).trim_start_matches('p').trim_end_matches(".yaml").parse().unwrap())
                .collect();
            prop_assert_eq!(files.first(), files.last(), "{}", message);
            for pair in files.windows(2) {
                prop_assert!(plans[pair[0]].includes.contains(&pair[1]), "{} in\n{}", message, dump(&plans));
            }
        }
    }
}

fn dump(plans: &[Plan]) -> String {
    let mut out = String::new();
    for (i, p) in plans.iter().enumerate() {
        let _ = write!(out, "--- {}\n{}", name(i), p.yaml());
    }
    out
}
