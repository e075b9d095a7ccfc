//! Locked fields (issue 16). A template marks what the plans that include it must not change:
//! `locked: [timeout, args]` on an entry locks those fields, `locked: true` (or a `{reason}`
//! mapping without `fields`) the whole entry, `enabled` included. The lock freezes the entry
//! as the locking plan resolves it: the locking plan and the plans it includes may set the
//! fields (they are the template), and every other plan of the tree that sets one, above it
//! or beside it, gets an error at its own setting that shows the lock and its reason.

use std::collections::{HashMap, HashSet};

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::loader::PlanTree;
use crate::plan::{FieldValue, Kind, Lock, internal_field};
use crate::render::explain;
use crate::source::SourceMap;
use crate::suggest;

/// The field names `locked:` accepts for an entry of this kind, as written.
pub fn lockable(kind: Kind) -> Vec<&'static str> {
    let mut names: Vec<&'static str> =
        explain::fields(kind).iter().map(|(f, _)| *f).filter(|f| *f != "check").collect();
    if kind == Kind::Check {
        names.extend(["run", "http", "version"]);
    }
    names
}

/// Checks every lock of the tree: its field names, and every setting of a locked field made
/// outside the locking plan's subtree. Each refused setting is then removed, so nesting goes
/// on as if the lock held (no conflict or warning follows from a setting already refused).
pub fn check(tree: &mut PlanTree, sources: &SourceMap, diags: &mut Diagnostics) {
    let refused = find(tree, sources, diags);
    for (plan, entry, field) in refused {
        tree.plans[plan].plan.entries[entry].fields.shift_remove(field);
    }
}

fn find(tree: &PlanTree, sources: &SourceMap, diags: &mut Diagnostics) -> Vec<(usize, usize, &'static str)> {
    let mut refused = Vec::new();
    let mut locks: HashMap<(Kind, &str), Vec<(usize, &Lock)>> = HashMap::new();
    for (index, loaded) in tree.plans.iter().enumerate() {
        for entry in &loaded.plan.entries {
            for lock in &entry.locks {
                check_names(entry.kind, lock, diags);
                locks.entry((entry.kind, entry.key.as_str())).or_default().push((index, lock));
            }
        }
    }
    if locks.is_empty() {
        return refused;
    }
    let mut below: HashMap<usize, HashSet<usize>> = HashMap::new();
    for &(index, _) in locks.values().flatten() {
        below.entry(index).or_insert_with(|| subtree(tree, index));
    }
    for (index, loaded) in tree.plans.iter().enumerate() {
        for (position, entry) in loaded.plan.entries.iter().enumerate() {
            let Some(found) = locks.get(&(entry.kind, entry.key.as_str())) else { continue };
            for (field, setting) in &entry.fields {
                let outside = |(owner, lock): &&(usize, &Lock)| !below[owner].contains(&index) && lock.covers(field);
                let Some(&(owner, lock)) = found.iter().find(outside) else { continue };
                refused.push((index, position, *field));
                let template = &sources.get(tree.plans[owner].file).display;
                let what = format!("{} `{}`", entry.kind.as_str(), entry.key);
                let message = if *field == "enabled" && setting.value == FieldValue::Bool(false) {
                    format!("{what} is locked by `{template}` and cannot be disabled")
                } else {
                    format!("`{}` of {what} is locked by `{template}`", shown(field))
                };
                let why =
                    lock.reason.as_deref().map_or_else(|| "locked here".to_owned(), |r| format!("locked here: {r}"));
                diags.push(
                    Diagnostic::error("duet::lock::overridden", message)
                        .at(setting.loc, "changed here")
                        .related(lock.loc, why)
                        .help(format!(
                            "remove `{}` from this entry: the template does not let the plans that include it change it; if it must change, ask the template's vendor for a version that allows it",
                            shown(field)
                        )),
                );
            }
        }
    }
    refused
}

/// A field as the user writes it (a check's `check` is its `run`, `http` or `version`).
fn shown(field: &str) -> &str {
    if field == "check" { "run`/`http`/`version" } else { field }
}

fn check_names(kind: Kind, lock: &Lock, diags: &mut Diagnostics) {
    let allowed = lockable(kind);
    for name in lock.fields.iter().flatten() {
        if allowed.contains(&internal_field(&name.value)) || allowed.contains(&name.value.as_str()) {
            continue;
        }
        let what = if kind == Kind::Log { "an event log" } else { article(kind) };
        diags.push(
            Diagnostic::error("duet::lock::unknown-field", format!("`{}` is not a field of {what}", name.value))
                .at(name.loc, "cannot be locked")
                .help(
                    suggest::did_you_mean(&name.value, allowed.iter().copied())
                        .unwrap_or_else(|| format!("fields that can be locked here: {}", allowed.join(", "))),
                ),
        );
    }
}

fn article(kind: Kind) -> &'static str {
    match kind {
        Kind::Service => "a service",
        Kind::Action => "an action",
        Kind::Log => "an event log",
        Kind::Task => "an upgrade task",
        Kind::Check => "a check",
        Kind::Approval => "an approval",
        Kind::Notify => "a notification",
    }
}

/// The plan and every plan it includes, directly or not.
fn subtree(tree: &PlanTree, root: usize) -> HashSet<usize> {
    let mut seen = HashSet::from([root]);
    let mut stack = vec![root];
    while let Some(index) = stack.pop() {
        for &child in &tree.plans[index].children {
            if seen.insert(child) {
                stack.push(child);
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use crate::testing::{Tree, expect_at, expect_clean, found};

    /// The vendor's template: `sql-stop` locks `timeout` and `args` with a reason, the
    /// `MSSQLSERVER` service is locked whole.
    const VENDOR: &str = "version: 1
services:
  - name: MSSQLSERVER
    locked: true
actions:
  - id: sql-stop
    file: bin/sqlctl.sh
    args: [stop]
    control: stop
    timeout: 5m
    locked: {fields: [timeout, args], reason: the vendor tested these values}
";

    fn tree(files: &[(&str, &str)]) -> Tree {
        let mut all = vec![("vendor.yaml", VENDOR), ("bin/sqlctl.sh", "#!/bin/sh\n")];
        all.extend_from_slice(files);
        Tree::new(&all)
    }

    #[test]
    fn a_locked_field_overridden_one_level_up_is_an_error_showing_the_lock() {
        let t = tree(&[(
            "site.yaml",
            "version: 1\ninclude: [vendor.yaml]\nactions:\n  - id: sql-stop\n    timing: late\n    timeout: 10m\n",
        )]);
        let c = t.compile("site.yaml");
        let m = expect_at(&c, "duet::lock::overridden", "site.yaml", 6, 14);
        assert!(m.starts_with("`timeout` of action `sql-stop` is locked by `"), "{m}");
        let d = c.diagnostics.iter().find(|d| d.code == "duet::lock::overridden").unwrap();
        assert_eq!(c.sources.describe(d.related[0].loc).rsplit('/').next(), Some("vendor.yaml:11"));
        assert_eq!(d.related[0].text, "locked here: the vendor tested these values");
        assert_eq!(found(&c).len(), 1, "`timing` is not locked: {:#?}", found(&c));
    }

    #[test]
    fn a_locked_field_overridden_two_levels_up_is_an_error_and_below_the_lock_is_not() {
        let t = tree(&[
            ("site.yaml", "version: 1\ninclude: [mid.yaml]\nactions:\n  - {id: sql-stop, args: [stop, now]}\n"),
            ("mid.yaml", "version: 1\ninclude: [vendor.yaml]\n"),
        ]);
        let c = t.compile("site.yaml");
        expect_at(&c, "duet::lock::overridden", "site.yaml", 4, 26);
        assert!(!c.is_valid());

        // The template's own include may set what the template locks: it is the template.
        let t = Tree::new(&[
            ("site.yaml", "version: 1\ninclude: [vendor.yaml]\n"),
            ("vendor.yaml", "version: 1\ninclude: [base.yaml]\nactions:\n  - {id: a, locked: [timeout]}\n"),
            ("base.yaml", "version: 1\nactions:\n  - {id: a, file: bin/a.sh, control: stop, timeout: 2m}\n"),
            ("bin/a.sh", "#!/bin/sh\n"),
        ]);
        expect_clean(&t.compile("site.yaml"));
    }

    #[test]
    fn a_locked_entry_cannot_be_disabled_or_changed() {
        let t = tree(&[(
            "site.yaml",
            "version: 1\ninclude: [vendor.yaml]\nservices:\n  - {name: MSSQLSERVER, enabled: false}\n  - {name: W3SVC, after: [MSSQLSERVER]}\n",
        )]);
        let c = t.compile("site.yaml");
        let m = expect_at(&c, "duet::lock::overridden", "site.yaml", 4, 34);
        assert!(m.starts_with("service `MSSQLSERVER` is locked by `") && m.ends_with("and cannot be disabled"), "{m}");
        assert_eq!(found(&c).len(), 1, "naming a locked service in another's `after` is fine: {:#?}", found(&c));
    }

    #[test]
    fn a_lock_in_a_diamond_is_checked_once_on_every_path() {
        let t = tree(&[
            ("top.yaml", "version: 1\ninclude: [left.yaml, right.yaml]\n"),
            ("left.yaml", "version: 1\ninclude: [vendor.yaml]\nactions:\n  - {id: sql-stop, timeout: 9m}\n"),
            ("right.yaml", "version: 1\ninclude: [vendor.yaml]\n"),
        ]);
        let c = t.compile("top.yaml");
        let locks: Vec<_> = found(&c).into_iter().filter(|f| f.code == "duet::lock::overridden").collect();
        assert_eq!(locks.len(), 1, "{locks:#?}");
        assert_eq!((locks[0].file.as_str(), locks[0].line), ("left.yaml", 4));

        // A sibling of the template is outside its subtree too.
        let t = tree(&[
            ("top.yaml", "version: 1\ninclude: [vendor.yaml, other.yaml]\n"),
            ("other.yaml", "version: 1\nactions:\n  - {id: sql-stop, timeout: 9m}\n"),
        ]);
        expect_at(&t.compile("top.yaml"), "duet::lock::overridden", "other.yaml", 3, 29);
    }

    #[test]
    fn an_unknown_locked_field_is_an_error_with_a_suggestion() {
        let t = Tree::new(&[(
            "p.yaml",
            "version: 1\nactions:\n  - {id: a, file: bin/a.sh, control: stop, locked: [timeot]}\nverify:\n  - {id: c, before: merge, version: {software: S, constraint: \">=1\"}, locked: [version, retry]}\n",
        )]);
        let c = t.compile("p.yaml");
        expect_at(&c, "duet::lock::unknown-field", "p.yaml", 3, 53);
        let d = c.diagnostics.iter().find(|d| d.code == "duet::lock::unknown-field").unwrap();
        assert_eq!(d.help.as_deref(), Some("did you mean `timeout`?"));
        assert_eq!(found(&c).len(), 1, "a check's `version` and `retry` can be locked: {:#?}", found(&c));
    }

    #[test]
    fn explain_shows_the_locks() {
        let t = tree(&[("site.yaml", "version: 1\ninclude: [vendor.yaml]\n")]);
        let c = t.compile("site.yaml");
        expect_clean(&c);
        let text =
            crate::render::explain::render(c.resolved.as_ref().unwrap(), &c.sources, Some("action:sql-stop")).unwrap();
        assert!(text.contains("vendor.yaml:11 (timeout, args): the vendor tested these values"), "{text}");
        assert!(text.lines().any(|l| l.trim_start().starts_with("timeout") && l.ends_with("(locked)")), "{text}");
        let text =
            crate::render::explain::render(c.resolved.as_ref().unwrap(), &c.sources, Some("service:MSSQLSERVER"))
                .unwrap();
        assert!(text.contains("vendor.yaml:4 (the whole entry)"), "{text}");
        assert!(text.contains("default (locked)"), "{text}");
    }
}
