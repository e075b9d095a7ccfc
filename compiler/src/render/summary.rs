//! The guide's Upgrade Summary (3-19): file, title, description, disks, child plans, services,
//! custom actions and event logs, followed by the steps of every request.

use std::collections::HashSet;
use std::fmt::Write;

use super::table;
use crate::compiled::{CheckKind, CompiledPlan, Unattended};
use crate::duration;
use crate::inventory::Inventory;
use crate::resolve::ResolvedPlan;
use crate::source::{FileId, SourceMap};

const NONE: &str = "(none)";

/// The summary, escaped for a terminal.
pub fn render(
    plan: &CompiledPlan,
    resolved: &ResolvedPlan,
    sources: &SourceMap,
    inventory: Option<&Inventory>,
) -> String {
    let mut out = String::new();
    header(&mut out, plan, resolved, sources, inventory);
    let list = |items: &[String]| if items.is_empty() { NONE.to_owned() } else { items.join(", ") };
    let _ = writeln!(out, "\nDisks\n  System:  {}\n  Data:    {}", list(&plan.disks.system), list(&plan.disks.data));

    let _ = writeln!(out, "\nOther plans (child plans)");
    let children = resolved.includes.get(&resolved.root).map_or(&[][..], Vec::as_slice);
    if children.is_empty() {
        let _ = writeln!(out, "  {NONE}");
    }
    let mut shown = HashSet::new();
    for &child in children {
        include_tree(&mut out, resolved, sources, child, 1, &mut shown);
    }

    let _ = writeln!(out, "\nApplication services");
    let services: Vec<Vec<String>> = plan
        .services
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                if s.after.is_empty() { String::new() } else { format!("after {}", s.after.join(", ")) },
            ]
        })
        .collect();
    section_table(&mut out, &services);

    let _ = writeln!(out, "\nCustom actions");
    actions(&mut out, plan);

    let _ = writeln!(out, "\nEvent logs to back up");
    if plan.logs.backup.is_empty() {
        let _ = writeln!(out, "  {NONE}");
    } else {
        let _ =
            writeln!(out, "  {} -> {}", plan.logs.backup.join(", "), plan.logs.staging_dir.as_deref().unwrap_or(NONE));
    }

    if !plan.unattended.is_empty() {
        let _ = writeln!(out, "\nUnattended upgrade");
        unattended(&mut out, &plan.unattended);
    }

    let _ = writeln!(out, "\nSteps");
    steps(&mut out, plan);
    crate::text::escape(&out).into_owned()
}

/// File, title, description (the guide's Description page) and what the plan was checked on.
fn header(
    out: &mut String,
    plan: &CompiledPlan,
    resolved: &ResolvedPlan,
    sources: &SourceMap,
    inventory: Option<&Inventory>,
) {
    let _ = writeln!(out, "Upgrade Summary");
    let _ = writeln!(out, "  Plan file:    {}", sources.get(resolved.root).display);
    let _ = writeln!(out, "  Title:        {}", plan.title.as_deref().unwrap_or(NONE));
    let comments = plan.comments.as_deref().map(str::trim_end).filter(|c| !c.is_empty()).unwrap_or(NONE);
    for (i, line) in comments.lines().enumerate() {
        let _ = writeln!(out, "  {:<14}{line}", if i == 0 { "Description:" } else { "" });
    }
    let checked = match (&plan.inventory, inventory) {
        (Some(path), Some(inv)) if !inv.model.is_empty() => format!("{path} ({})", inv.model),
        (Some(path), _) => path.clone(),
        (None, _) => "no inventory: disks, executables, services and event logs not checked (use --inventory)".into(),
    };
    let _ = writeln!(out, "  Checked on:   {checked}");
}

fn section_table(out: &mut String, rows: &[Vec<String>]) {
    if rows.is_empty() {
        let _ = writeln!(out, "  {NONE}");
    } else {
        out.push_str(&table(rows, "  "));
    }
}

fn actions(out: &mut String, plan: &CompiledPlan) {
    if plan.actions.is_empty() {
        let _ = writeln!(out, "  {NONE}");
        return;
    }
    let mut rows = vec![["ID", "CONTROL", "TIMING", "TIMEOUT", "RERUN", "COMMAND"].map(String::from).to_vec()];
    for a in &plan.actions {
        let command =
            std::iter::once(a.file.as_str()).chain(a.args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ");
        rows.push(vec![
            a.id.clone(),
            a.control.to_string(),
            a.timing.to_string(),
            duration::format(a.timeout_ms),
            a.rerun.as_str().to_owned(),
            command,
        ]);
    }
    out.push_str(&table(&rows, "  "));
}

fn command(file: &str, args: &[String]) -> String {
    std::iter::once(file).chain(args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
}

/// The tasks, checks, approvals and notifications, the version hop and what a failure does
/// (shown only for a plan that has any of them, so other plans' summaries read as before).
fn unattended(out: &mut String, u: &Unattended) {
    let _ = writeln!(out, "  On failure:  {}", u.on_failure.as_str());
    if let Some(v) = &u.versions {
        let max = v.max_major_hop.map(|m| format!(" (at most {m} major versions)")).unwrap_or_default();
        let _ = writeln!(out, "  Versions:    {} {} -> {}{max}", v.software, v.from, v.to);
    }
    let mut lists: Vec<(&str, Vec<Vec<String>>)> = Vec::new();
    let tasks = u.tasks.iter().map(|t| {
        vec![
            t.id.clone(),
            duration::format(t.timeout_ms),
            t.rerun.as_str().to_owned(),
            if t.restart { "restart".to_owned() } else { String::new() },
            t.installs.as_ref().map(|s| format!("installs {} {}", s.name, s.version)).unwrap_or_default(),
            command(&t.file, &t.args),
        ]
    });
    lists.push(("Tasks", tasks.collect()));
    let checks = u.checks.iter().map(|c| {
        let retry =
            c.retry.map(|r| format!("retry {}x {}", r.times, duration::format(r.interval_ms))).unwrap_or_default();
        let what = match &c.check {
            CheckKind::Run { file, args, stdout } => {
                let matching = stdout.as_ref().map(|re| format!(", stdout ~ {re}")).unwrap_or_default();
                format!("run {}{matching}", command(file, args))
            }
            CheckKind::Http { url, status, contains } => {
                let text = contains.as_ref().map(|c| format!(", contains {c:?}")).unwrap_or_default();
                format!("http {url} -> {status}{text}")
            }
            CheckKind::Version { software, constraint } => format!("version {software} {constraint}"),
        };
        vec![c.id.clone(), format!("before {}", c.before.as_str()), duration::format(c.timeout_ms), retry, what]
    });
    lists.push(("Checks", checks.collect()));
    let approvals = u.approvals.iter().map(|a| {
        let expiry = a.expires_ms.map_or_else(
            || "never expires".to_owned(),
            |ms| format!("expires {}: {}", duration::format(ms), a.on_expiry.as_str()),
        );
        vec![a.id.clone(), format!("before {}", a.before.as_str()), expiry]
    });
    lists.push(("Approvals", approvals.collect()));
    let notify = u.notify.iter().map(|n| {
        let on: Vec<&str> = n.on.iter().map(|e| e.as_str()).collect();
        vec![n.id.clone(), on.join(", "), duration::format(n.timeout_ms), command(&n.file, &n.args)]
    });
    lists.push(("Notifications", notify.collect()));
    for (name, rows) in lists {
        let _ = writeln!(out, "  {name}");
        if rows.is_empty() {
            let _ = writeln!(out, "    {NONE}");
        } else {
            out.push_str(&table(&rows, "    "));
        }
    }
}

/// Every request's steps, numbered, with the numbers of the steps each waits for.
fn steps(out: &mut String, plan: &CompiledPlan) {
    for (name, request) in &plan.requests {
        let _ = writeln!(out, "  {name} (state {})", request.state.as_str());
        let positions: std::collections::HashMap<&str, usize> =
            request.steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i + 1)).collect();
        let rows: Vec<Vec<String>> = request
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let after: Vec<String> =
                    s.after.iter().map(|d| positions.get(d.as_str()).copied().unwrap_or(0).to_string()).collect();
                let after = if after.is_empty() { String::new() } else { format!("after {}", after.join(", ")) };
                vec![
                    format!("{:>3}", i + 1),
                    s.id.clone(),
                    s.kind.as_str().to_owned(),
                    s.side.as_str().to_owned(),
                    after,
                ]
            })
            .collect();
        out.push_str(&table(&rows, "  "));
    }
}

fn include_tree(
    out: &mut String,
    resolved: &ResolvedPlan,
    sources: &SourceMap,
    file: FileId,
    depth: usize,
    shown: &mut HashSet<FileId>,
) {
    let name = &sources.get(file).display;
    let indent = "  ".repeat(depth);
    if !shown.insert(file) {
        let _ = writeln!(out, "{indent}{name} (included above)");
        return;
    }
    // A pinned or signed template says what it was verified against.
    let verified = match &sources.get(file).verified {
        Some(v) => match &v.signed_by {
            Some((signer, _)) => format!("  (signed by {signer}; sha256 {})", &v.sha256[..16]),
            None => format!("  (sha256 {}, pinned)", &v.sha256[..16]),
        },
        None => String::new(),
    };
    let _ = writeln!(out, "{indent}{name}{verified}");
    for &child in resolved.includes.get(&file).map_or(&[][..], Vec::as_slice) {
        include_tree(out, resolved, sources, child, depth + 1, shown);
    }
}
