//! The request DAGs drawn as Graphviz DOT and Mermaid flowcharts, one cluster per request.

use std::fmt::Write;

use crate::compiled::CompiledPlan;

fn dot_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub fn to_dot(plan: &CompiledPlan) -> String {
    let mut out = String::from("digraph duet {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n");
    for (name, request) in &plan.requests {
        let _ = writeln!(out, "  subgraph {} {{", dot_quote(&format!("cluster_{name}")));
        let _ = writeln!(out, "    label={};", dot_quote(&format!("{name} (state {})", request.state.as_str())));
        for step in &request.steps {
            let _ = writeln!(out, "    {} [label={}];", dot_quote(&format!("{name}/{}", step.id)), dot_quote(&step.id));
        }
        for step in &request.steps {
            for dep in &step.after {
                let _ = writeln!(
                    out,
                    "    {} -> {};",
                    dot_quote(&format!("{name}/{dep}")),
                    dot_quote(&format!("{name}/{}", step.id))
                );
            }
        }
        out.push_str("  }\n");
    }
    out.push_str("}\n");
    out
}

fn mermaid_label(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "#quot;"))
}

pub fn to_mermaid(plan: &CompiledPlan) -> String {
    let mut out = String::from("flowchart TD\n");
    let mut next = 0usize;
    for (name, request) in &plan.requests {
        let _ = writeln!(
            out,
            "  subgraph {name}[{}]",
            mermaid_label(&format!("{name} (state {})", request.state.as_str()))
        );
        let ids: Vec<String> = request
            .steps
            .iter()
            .map(|_| {
                next += 1;
                format!("n{next}")
            })
            .collect();
        for (step, id) in request.steps.iter().zip(&ids) {
            let _ = writeln!(out, "    {id}[{}]", mermaid_label(&step.id));
        }
        let index: std::collections::HashMap<&str, usize> =
            request.steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
        for (step, id) in request.steps.iter().zip(&ids) {
            for dep in &step.after {
                if let Some(&from) = index.get(dep.as_str()) {
                    let _ = writeln!(out, "    {} --> {id}", ids[from]);
                }
            }
        }
        out.push_str("  end\n");
    }
    out
}
