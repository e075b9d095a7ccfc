//! `duet explain`: for every resolved setting, which file and line set it, and which
//! definitions it overrode or ignored.

use std::fmt::Write;

use super::table;
use crate::plan::{KeyedEntry, Kind, Setting};
use crate::resolve::ResolvedPlan;
use crate::source::SourceMap;
use crate::suggest;

/// Fields of each kind of entry, with the default shown when no plan sets them.
pub(crate) fn fields(kind: Kind) -> &'static [(&'static str, Option<&'static str>)] {
    match kind {
        Kind::Service => &[("after", Some("[]")), ("enabled", Some("true"))],
        Kind::Action => &[
            ("file", None),
            ("args", Some("[]")),
            ("control", None),
            ("timing", Some("default")),
            ("timeout", Some("10m")),
            ("rerun", Some("safe")),
            ("enabled", Some("true")),
        ],
        Kind::Log => &[("enabled", Some("true"))],
        Kind::Task => &[
            ("file", None),
            ("args", Some("[]")),
            ("timeout", Some("10m")),
            ("rerun", Some("safe")),
            ("restart", Some("false")),
            ("installs", Some("nothing")),
            ("enabled", Some("true")),
        ],
        Kind::Check => &[
            ("before", None),
            ("check", None),
            ("timeout", Some("30s")),
            ("retry", Some("none")),
            ("enabled", Some("true")),
        ],
        Kind::Approval => {
            &[("before", None), ("expires", Some("never")), ("on_expiry", Some("hold")), ("enabled", Some("true"))]
        }
        Kind::Notify => &[
            ("file", None),
            ("args", Some("[]")),
            ("on", Some("[started, waiting-for-approval, broken, aborted, committed, finished]")),
            ("timeout", Some("1m")),
            ("enabled", Some("true")),
        ],
    }
}

/// Every key `explain` accepts for this plan, in output order.
pub fn keys(plan: &ResolvedPlan) -> Vec<String> {
    let mut keys: Vec<String> = ["title", "comments", "disks", "logs.staging_dir"].map(String::from).to_vec();
    // Shown only when set, so the explanation of a plan without them reads as it always did.
    for (name, setting) in [("versions", &plan.versions), ("on_failure", &plan.on_failure)] {
        if setting.is_some() {
            keys.push(name.to_owned());
        }
    }
    keys.extend(plan.entries.iter().chain(&plan.dropped).map(|e| format!("{}:{}", e.kind.as_str(), e.key)));
    keys
}

/// The provenance of one key, or of all when `key` is `None`. `Err` names the unknown key.
/// Both are escaped for a terminal.
pub fn render(plan: &ResolvedPlan, sources: &SourceMap, key: Option<&str>) -> Result<String, String> {
    let escaped = |text: String| crate::text::escape(&text).into_owned();
    provenance(plan, sources, key).map(escaped).map_err(escaped)
}

fn provenance(plan: &ResolvedPlan, sources: &SourceMap, key: Option<&str>) -> Result<String, String> {
    let all = keys(plan);
    if let Some(key) = key {
        if !all.iter().any(|k| k == key) {
            // Suggest among keys of the same kind: `action:` in common makes any two look alike.
            let (kind, name) = key.split_once(':').unwrap_or(("", key));
            let same_kind: Vec<&str> = all
                .iter()
                .filter_map(|k| match k.split_once(':') {
                    Some((k_kind, k_name)) if k_kind == kind => Some(k_name),
                    None if kind.is_empty() => Some(k.as_str()),
                    _ => None,
                })
                .collect();
            let hint = match suggest::closest(name, same_kind.iter().copied()) {
                Some(found) if kind.is_empty() => format!("did you mean `{found}`?"),
                Some(found) => format!("did you mean `{kind}:{found}`?"),
                None => format!("known keys: {}", all.join(", ")),
            };
            return Err(format!("`{key}` is not a setting of this plan; {hint}"));
        }
    }
    let wanted = |k: &str| key.is_none_or(|key| key == k);
    let at = |setting: &Setting| sources.describe(setting.loc);
    let mut out = String::new();

    for (name, setting) in
        [("title", &plan.title), ("comments", &plan.comments), ("logs.staging_dir", &plan.staging_dir)]
    {
        if !wanted(name) {
            continue;
        }
        match setting {
            Some(s) => {
                let _ = writeln!(out, "{name} = {}\n  set at {}", s.value, at(s));
                for o in &s.overridden {
                    let _ = writeln!(out, "  overrides {} ({})", sources.describe(o.loc), o.value);
                }
            }
            None => {
                let _ = writeln!(out, "{name}: not set");
            }
        }
        out.push('\n');
    }

    if wanted("disks") {
        match &plan.disks {
            Some(d) => {
                let names = |list: &[crate::plan::Spanned<String>]| {
                    list.iter().map(|n| n.value.as_str()).collect::<Vec<_>>().join(", ")
                };
                let _ = writeln!(
                    out,
                    "disks\n  set at {}\n  system = [{}]\n  data = [{}]",
                    sources.describe(d.loc),
                    names(&d.system),
                    names(&d.data)
                );
            }
            None => {
                let _ = writeln!(out, "disks: not selected by the top-level plan (mandatory system disks only)");
            }
        }
        for ignored in &plan.ignored_disks {
            let _ = writeln!(
                out,
                "  ignored: {} (included plans' disk selections are ignored)",
                sources.describe(ignored.loc)
            );
        }
        out.push('\n');
    }

    for (name, setting) in [("versions", &plan.versions), ("on_failure", &plan.on_failure)] {
        if let Some(s) = setting.as_ref().filter(|_| wanted(name)) {
            let _ = writeln!(out, "{name} = {}\n  set at {}", s.value, at(s));
            for o in &s.overridden {
                let _ = writeln!(out, "  overrides {} ({})", sources.describe(o.loc), o.value);
            }
            out.push('\n');
        }
    }

    for entry in plan.entries.iter().chain(&plan.dropped) {
        let name = format!("{}:{}", entry.kind.as_str(), entry.key);
        if wanted(&name) {
            entry_block(&mut out, entry, &name, sources);
        }
    }
    Ok(out.trim_end().to_owned() + "\n")
}

fn entry_block(out: &mut String, entry: &KeyedEntry, name: &str, sources: &SourceMap) {
    let decls: Vec<String> = entry.decls.iter().map(|&d| sources.describe(d)).collect();
    let state = if entry.enabled() { "" } else { "  (disabled: dropped from the plan)" };
    let _ = writeln!(out, "{name}{state}\n  declared at {}", decls.join(", "));
    for lock in &entry.locks {
        let what = match &lock.fields {
            None => "the whole entry".to_owned(),
            Some(fields) => fields.iter().map(|f| f.value.as_str()).collect::<Vec<_>>().join(", "),
        };
        let why = lock.reason.as_deref().map_or_else(String::new, |r| format!(": {r}"));
        let _ = writeln!(out, "  locked at {} ({what}){why}", sources.describe(lock.loc));
    }
    let mut rows = Vec::new();
    for (field, default) in fields(entry.kind) {
        match entry.fields.get(field) {
            Some(s) => {
                let mut from = format!("set at {}", sources.describe(s.loc));
                for o in &s.overridden {
                    let _ = write!(from, "; overrides {} ({})", sources.describe(o.loc), o.value);
                }
                if entry.locks.iter().any(|l| l.covers(field)) {
                    from.push_str(" (locked)");
                }
                rows.push(vec![(*field).to_owned(), format!("= {}", s.value), from]);
            }
            None => rows.push(vec![
                (*field).to_owned(),
                format!("= {}", default.unwrap_or("(missing)")),
                if entry.locks.iter().any(|l| l.covers(field)) { "default (locked)" } else { "default" }.to_owned(),
            ]),
        }
    }
    out.push_str(&table(&rows, "  "));
    out.push('\n');
}
