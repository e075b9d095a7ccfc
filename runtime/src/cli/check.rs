//! `duet check`, `duet compile` and `duet explain`: run the compiler and print what it found.

use std::io::{IsTerminal, Write};

use duet_compiler::diagnostic::Severity;
use duet_compiler::render::{explain, failures, graph, junit, sarif, summary};
use duet_compiler::{Compilation, Options, compile, report};

use crate::cli::args::{CheckFormat, CompileFormat};
use crate::outcome::Outcome;

fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

use crate::view::console::{eprint as err, print as out};

/// The diagnostics, for people. They quote the plan's text, escaped by the compiler's renderer
/// piece by piece (so colour stays and labels stay under what they point at): written as
/// rendered, since escaping it again would also escape the colours.
pub(crate) fn print_diagnostics(c: &Compilation) {
    if c.diagnostics.is_empty() {
        return;
    }
    let text = report::render_human(&c.diagnostics, &c.sources, color());
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// The process exits right after a command: freeing a large plan's many small allocations one
/// by one would only delay that (about 6% of `duet check` on the benchmark tree).
fn done(c: Compilation, outcome: Outcome) -> Outcome {
    drop(c);
    outcome
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

pub(crate) fn check(options: &Options, format: CheckFormat) -> Outcome {
    let c = compile(options);
    let plan = options.plan.display();
    let text = match format {
        CheckFormat::Json => {
            let json = serde_json::json!({
                "valid": c.is_valid(),
                "platform_checked": c.inventory.is_some(),
                "diagnostics": report::to_json(&c.diagnostics, &c.sources),
            });
            crate::view::console::escape_json(
                serde_json::to_string_pretty(&json).expect("diagnostics serialize") + "\n",
            )
        }
        CheckFormat::Sarif => crate::view::console::escape_json(
            serde_json::to_string_pretty(&sarif::render(&c.diagnostics, &c.sources)).expect("SARIF serializes") + "\n",
        ),
        CheckFormat::Junit => junit::render(&plan.to_string(), &c.diagnostics, &c.sources),
        CheckFormat::Human => {
            print_diagnostics(&c);
            let (errors, warnings) = (c.count(Severity::Error), c.count(Severity::Warning));
            if c.is_valid() {
                let extra = if warnings > 0 { format!(" ({})", plural(warnings, "warning")) } else { String::new() };
                let mut text = format!("{plan}: valid{extra}\n");
                if options.inventory.is_none() {
                    text.push_str(
                        "note: no --inventory given: disks, executables, services and event logs were not checked against a machine\n",
                    );
                }
                text
            } else if let (Some(inventory), None) = (&options.inventory, &c.inventory) {
                format!(
                    "{plan}: not checked against {}: the inventory is unusable ({} in all, {})\n",
                    inventory.display(),
                    plural(errors, "error"),
                    plural(warnings, "warning")
                )
            } else {
                format!("{plan}: invalid: {}, {}\n", plural(errors, "error"), plural(warnings, "warning"))
            }
        }
    };
    let written = out(&text);
    let outcome = if c.is_valid() { written } else { Outcome::Failure };
    done(c, outcome)
}

pub(crate) fn compile_plan(options: &Options, format: CompileFormat) -> Outcome {
    let c = compile(options);
    print_diagnostics(&c);
    let (Some(plan), Some(resolved)) = (&c.compiled, &c.resolved) else {
        err(&format!(
            "{}: invalid: {}; nothing compiled\n",
            options.plan.display(),
            plural(c.count(Severity::Error), "error")
        ));
        return Outcome::Failure;
    };
    let text = match format {
        CompileFormat::Summary => summary::render(plan, resolved, &c.sources, c.inventory.as_ref()),
        CompileFormat::Json => crate::view::console::escape_json(
            serde_json::to_string_pretty(plan).expect("compiled plan serializes") + "\n",
        ),
        CompileFormat::Dot => graph::to_dot(plan),
        CompileFormat::Mermaid => graph::to_mermaid(plan),
        CompileFormat::Failures => failures::render(plan),
    };
    let written = out(&text);
    done(c, written)
}

pub(crate) fn explain(options: &Options, key: Option<&str>) -> Outcome {
    let c = compile(options);
    print_diagnostics(&c);
    let Some(resolved) = &c.resolved else {
        err(&format!("{}: cannot explain a plan tree that does not load\n", options.plan.display()));
        return Outcome::Failure;
    };
    let written = match explain::render(resolved, &c.sources, key) {
        Ok(text) => out(&text),
        Err(why) => {
            err(&format!("error: {why}\n"));
            return Outcome::Failure;
        }
    };
    if c.count(Severity::Error) > 0 { Outcome::Failure } else { written }
}
