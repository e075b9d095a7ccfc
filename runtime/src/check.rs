//! `duet check`, `duet compile` and `duet explain`: run the compiler and print what it found.

use std::io::IsTerminal;

use duet_compiler::diagnostic::Severity;
use duet_compiler::render::{explain, graph, summary};
use duet_compiler::{Compilation, Options, compile, report};

use crate::cli::{CheckFormat, CompileFormat};
use crate::outcome::Outcome;

fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn print_diagnostics(c: &Compilation) {
    if !c.diagnostics.is_empty() {
        eprint!("{}", report::render_human(&c.diagnostics, &c.sources, color()));
    }
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

pub(crate) fn check(options: &Options, format: CheckFormat) -> Outcome {
    let c = compile(options);
    let plan = options.plan.display();
    match format {
        CheckFormat::Json => {
            let json = serde_json::json!({
                "valid": c.is_valid(),
                "platform_checked": options.inventory.is_some(),
                "diagnostics": report::to_json(&c.diagnostics, &c.sources),
            });
            println!("{}", serde_json::to_string_pretty(&json).expect("diagnostics serialize"));
        }
        CheckFormat::Human => {
            print_diagnostics(&c);
            let (errors, warnings) = (c.count(Severity::Error), c.count(Severity::Warning));
            if c.is_valid() {
                let extra = if warnings > 0 { format!(" ({})", plural(warnings, "warning")) } else { String::new() };
                println!("{plan}: valid{extra}");
                if options.inventory.is_none() {
                    println!(
                        "note: no --inventory given: disks, executables, services and event logs were not checked against a machine"
                    );
                }
            } else {
                println!("{plan}: invalid: {}, {}", plural(errors, "error"), plural(warnings, "warning"));
            }
        }
    }
    if c.is_valid() { Outcome::Success } else { Outcome::Failure }
}

pub(crate) fn compile_plan(options: &Options, format: CompileFormat) -> Outcome {
    let c = compile(options);
    print_diagnostics(&c);
    let (Some(plan), Some(resolved)) = (&c.compiled, &c.resolved) else {
        eprintln!(
            "{}: invalid: {}; nothing compiled",
            options.plan.display(),
            plural(c.count(Severity::Error), "error")
        );
        return Outcome::Failure;
    };
    let text = match format {
        CompileFormat::Summary => summary::render(plan, resolved, &c.sources, c.inventory.as_ref()),
        CompileFormat::Json => serde_json::to_string_pretty(plan).expect("compiled plan serializes") + "\n",
        CompileFormat::Dot => graph::to_dot(plan),
        CompileFormat::Mermaid => graph::to_mermaid(plan),
    };
    print!("{text}");
    Outcome::Success
}

pub(crate) fn explain(options: &Options, key: Option<&str>) -> Outcome {
    let c = compile(options);
    let Some(resolved) = &c.resolved else {
        print_diagnostics(&c);
        eprintln!("{}: cannot explain a plan tree that does not load", options.plan.display());
        return Outcome::Failure;
    };
    match explain::render(resolved, &c.sources, key) {
        Ok(text) => print!("{text}"),
        Err(why) => {
            eprintln!("error: {why}");
            return Outcome::Failure;
        }
    }
    if c.count(Severity::Error) > 0 {
        print_diagnostics(&c);
        return Outcome::Failure;
    }
    Outcome::Success
}
