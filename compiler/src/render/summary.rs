//! The guide's Upgrade Summary (3-19): file, title, description, disks, child plans, services,
//! custom actions and event logs, followed by the steps of every request.

use std::collections::HashSet;
use std::fmt::Write;

use super::table;
use crate::compiled::CompiledPlan;
use crate::duration;
use crate::inventory::Inventory;
use crate::resolve::ResolvedPlan;
use crate::source::{FileId, SourceMap};

pub fn render(
    plan: &CompiledPlan,
    resolved: &ResolvedPlan,
    sources: &SourceMap,
    inventory: Option<&Inventory>,
) -> String {
    let mut out = String::new();
    let none = "(none)";
    let _ = writeln!(out, "Upgrade Summary");
    let _ = writeln!(
        out,
        "  Plan file:    {}",
        sources.get(resolved.root).display
    );
    let _ = writeln!(
        out,
        "  Title:        {}",
        plan.title.as_deref().unwrap_or(none)
    );
    match plan.comments.as_deref().map(str::trim_end) {
        Some(comments) if !comments.is_empty() => {
            for (i, line) in comments.lines().enumerate() {
                let _ = writeln!(
                    out,
                    "  {:<14}{line}",
                    if i == 0 { "Description:" } else { "" }
                );
            }
        }
        _ => {
            let _ = writeln!(out, "  Description:  {none}");
        }
    }
    match (&plan.inventory, inventory) {
        (Some(path), Some(inv)) if !inv.model.is_empty() => {
            let _ = writeln!(out, "  Checked on:   {path} ({})", inv.model);
        }
        (Some(path), _) => {
            let _ = writeln!(out, "  Checked on:   {path}");
        }
        (None, _) => {
            let _ = writeln!(
                out,
                "  Checked on:   no inventory: disks, executables, services and event logs not checked (use --inventory)"
            );
        }
    }

    let list = |items: &[String]| {
        if items.is_empty() {
            none.to_owned()
        } else {
            items.join(", ")
        }
    };
    let _ = writeln!(out, "\nDisks");
    let _ = writeln!(out, "  System:  {}", list(&plan.disks.system));
    let _ = writeln!(out, "  Data:    {}", list(&plan.disks.data));

    let _ = writeln!(out, "\nOther plans (child plans)");
    let children = resolved
        .includes
        .get(&resolved.root)
        .map_or(&[][..], Vec::as_slice);
    if children.is_empty() {
        let _ = writeln!(out, "  {none}");
    }
    let mut shown = HashSet::new();
    for &child in children {
        include_tree(&mut out, resolved, sources, child, 1, &mut shown);
    }

    let _ = writeln!(out, "\nApplication services");
    if plan.services.is_empty() {
        let _ = writeln!(out, "  {none}");
    } else {
        let rows: Vec<Vec<String>> = plan
            .services
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    if s.after.is_empty() {
                        String::new()
                    } else {
                        format!("after {}", s.after.join(", "))
                    },
                ]
            })
            .collect();
        out.push_str(&table(&rows, "  "));
    }

    let _ = writeln!(out, "\nCustom actions");
    if plan.actions.is_empty() {
        let _ = writeln!(out, "  {none}");
    } else {
        let mut rows = vec![
            ["ID", "CONTROL", "TIMING", "TIMEOUT", "RERUN", "COMMAND"]
                .map(String::from)
                .to_vec(),
        ];
        for a in &plan.actions {
            let mut command = a.file.clone();
            for arg in &a.args {
                command.push(' ');
                command.push_str(arg);
            }
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

    let _ = writeln!(out, "\nEvent logs to back up");
    if plan.logs.backup.is_empty() {
        let _ = writeln!(out, "  {none}");
    } else {
        let _ = writeln!(
            out,
            "  {} -> {}",
            plan.logs.backup.join(", "),
            plan.logs.staging_dir.as_deref().unwrap_or(none)
        );
    }

    let _ = writeln!(out, "\nSteps");
    for (name, request) in &plan.requests {
        let _ = writeln!(out, "  {name} (state {})", request.state.as_str());
        let positions: std::collections::HashMap<&str, usize> = request
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i + 1))
            .collect();
        let position = |id: &str| positions.get(id).copied().unwrap_or(0);
        let rows: Vec<Vec<String>> = request
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let after: Vec<String> = s.after.iter().map(|d| position(d).to_string()).collect();
                vec![
                    format!("{:>3}", i + 1),
                    s.id.clone(),
                    s.kind.as_str().to_owned(),
                    s.side.as_str().to_owned(),
                    if after.is_empty() {
                        String::new()
                    } else {
                        format!("after {}", after.join(", "))
                    },
                ]
            })
            .collect();
        out.push_str(&table(&rows, "  "));
    }
    out
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
    let _ = writeln!(out, "{indent}{name}");
    for &child in resolved.includes.get(&file).map_or(&[][..], Vec::as_slice) {
        include_tree(out, resolved, sources, child, depth + 1, shown);
    }
}
