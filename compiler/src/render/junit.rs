//! `duet check --format junit`: the diagnostics as `JUnit` XML, the test report format CI systems
//! show. Each file the check read is a test case (the plans in load order, then an inventory);
//! a file with errors fails, with every error of the file in the failure's text. Warnings and
//! notes go to the case's `system-out`. Diagnostics without a file belong to the first case.

use std::fmt::Write;

use crate::diagnostic::{Diagnostic, Severity};
use crate::source::SourceMap;

/// Text as XML 1.0 character data: escaped, and the characters XML cannot hold at all
/// (controls other than tab and line breaks) replaced by U+FFFD.
fn xml(text: &str) -> String {
    let valid: String = text
        .chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if c < ' ' || c == '\u{fffe}' || c == '\u{ffff}' => '\u{fffd}',
            c => c,
        })
        .collect();
    quick_xml::escape::escape(valid.as_str()).into_owned()
}

fn line(d: &Diagnostic, sources: &SourceMap) -> String {
    let (file, l, c) = d.position(sources);
    let place = match (file, l, c) {
        (Some(f), Some(l), Some(c)) => format!("{f}:{l}:{c}: "),
        (Some(f), _, _) => format!("{f}: "),
        _ => String::new(),
    };
    let severity = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
    };
    let help = d.help.as_deref().map_or_else(String::new, |h| format!(" (help: {h})"));
    format!("{place}{severity}[{}]: {}{help}", d.code, d.message)
}

/// The `JUnit` report of one `duet check` of `plan`.
pub fn render(plan: &str, diags: &[Diagnostic], sources: &SourceMap) -> String {
    let mut files: Vec<String> = sources.files().map(|f| f.display.clone()).collect();
    for d in diags {
        if let (Some(path), None) = (&d.path, &d.primary) {
            if !files.contains(path) {
                files.push(path.clone());
            }
        }
    }
    if files.is_empty() {
        files.push(plan.to_owned());
    }
    let mut cases: Vec<(String, Vec<&Diagnostic>)> = files.into_iter().map(|f| (f, Vec::new())).collect();
    for d in diags {
        let file = d.position(sources).0;
        let case = file.and_then(|f| cases.iter().position(|(name, _)| *name == f)).unwrap_or(0);
        cases[case].1.push(d);
    }
    let failures = cases.iter().filter(|(_, ds)| ds.iter().any(|d| d.severity == Severity::Error)).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let counts = format!("tests=\"{}\" failures=\"{failures}\" errors=\"0\"", cases.len());
    let _ = writeln!(out, "<testsuites name=\"duet check\" {counts}>");
    let _ = writeln!(out, "  <testsuite name=\"duet check {}\" {counts} skipped=\"0\">", xml(plan));
    for (file, ds) in &cases {
        let name = xml(file);
        let _ = write!(out, "    <testcase classname=\"duet.check\" name=\"{name}\" file=\"{name}\"");
        if ds.is_empty() {
            out.push_str("/>\n");
            continue;
        }
        out.push_str(">\n");
        let errors: Vec<&&Diagnostic> = ds.iter().filter(|d| d.severity == Severity::Error).collect();
        if let Some(first) = errors.first() {
            let n = errors.len();
            let message = format!("{n} error{}: {}", if n == 1 { "" } else { "s" }, first.message);
            let text: Vec<String> = errors.iter().map(|d| line(d, sources)).collect();
            let _ = writeln!(
                out,
                "      <failure message=\"{}\" type=\"{}\">{}</failure>",
                xml(&message),
                first.code,
                xml(&text.join("\n"))
            );
        }
        let others: Vec<String> =
            ds.iter().filter(|d| d.severity != Severity::Error).map(|d| line(d, sources)).collect();
        if !others.is_empty() {
            let _ = writeln!(out, "      <system-out>{}</system-out>", xml(&others.join("\n")));
        }
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_that_xml_cannot_hold_is_replaced_and_markup_escaped() {
        assert_eq!(super::xml("a<b>&\"c\u{1b}[31m\n"), "a&lt;b&gt;&amp;&quot;c\u{fffd}[31m\n");
    }
}
