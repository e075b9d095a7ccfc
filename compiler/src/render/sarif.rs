//! `duet check --format sarif`: the diagnostics as SARIF 2.1.0 (OASIS), the format code-scanning
//! UIs read to show each problem on its line. One run, one rule per diagnostic code, one result
//! per diagnostic; related places are `relatedLocations`. Columns count Unicode code points,
//! as everywhere in duet (`columnKind`).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::diagnostic::{Diagnostic, Severity};
use crate::source::{Loc, SourceMap};

/// The schema a SARIF 2.1.0 log names (the OASIS errata 01 one, vendored into the tests).
pub const SCHEMA: &str = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// Characters kept as they are in a file's URI: RFC 3986's unreserved ones and `/`.
const PATH: &AsciiSet = &NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// A file as a URI reference: relative paths stay relative (to where `duet check` ran, the
/// repository's root in CI), absolute ones become `file://` URIs.
pub fn uri(path: &str) -> String {
    let encoded = utf8_percent_encode(path, PATH).to_string();
    if path.starts_with('/') { format!("file://{encoded}") } else { encoded }
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
    }
}

fn region(loc: Loc, sources: &SourceMap) -> (String, Value) {
    let file = sources.get(loc.file);
    let (start_line, start_column) = file.line_col(loc.span.start);
    let (end_line, end_column) = file.line_col(loc.span.end);
    let region = json!({
        "startLine": start_line,
        "startColumn": start_column,
        "endLine": end_line,
        "endColumn": end_column,
    });
    (file.display.clone(), region)
}

fn location(loc: Loc, sources: &SourceMap) -> Value {
    let (file, region) = region(loc, sources);
    json!({ "physicalLocation": { "artifactLocation": { "uri": uri(&file) }, "region": region } })
}

fn result(d: &Diagnostic, rule: usize, sources: &SourceMap) -> Value {
    let text = match &d.help {
        Some(help) => format!("{}\nhelp: {help}", d.message),
        None => d.message.clone(),
    };
    let mut result =
        json!({ "ruleId": d.code, "ruleIndex": rule, "level": level(d.severity), "message": { "text": text } });
    let locations: Vec<Value> = match (&d.primary, &d.path) {
        (Some(label), _) => vec![location(label.loc, sources)],
        (None, Some(path)) => vec![json!({ "physicalLocation": { "artifactLocation": { "uri": uri(path) } } })],
        (None, None) => Vec::new(),
    };
    if !locations.is_empty() {
        result["locations"] = Value::Array(locations);
    }
    if !d.related.is_empty() {
        let related: Vec<Value> = d
            .related
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut place = location(l.loc, sources);
                place["id"] = json!(i + 1);
                place["message"] = json!({ "text": l.text });
                place
            })
            .collect();
        result["relatedLocations"] = Value::Array(related);
    }
    result
}

/// The SARIF log of one `duet check`.
pub fn render(diags: &[Diagnostic], sources: &SourceMap) -> Value {
    let mut codes: Vec<&'static str> = diags.iter().map(|d| d.code).collect();
    codes.sort_unstable();
    codes.dedup();
    let rules: Vec<Value> = codes
        .iter()
        .map(|code| {
            json!({
                "id": code,
                "name": code.trim_start_matches("duet::").replace("::", "/"),
                "shortDescription": { "text": format!("duet diagnostic {code}") },
                "helpUri": "https://example.invalid/duet/docs/plan-format.md#9-diagnostic-codes",
            })
        })
        .collect();
    let results: Vec<Value> = diags
        .iter()
        .map(|d| result(d, codes.binary_search(&d.code).expect("every code has a rule"), sources))
        .collect();
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "duet",
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://example.invalid/duet",
                "rules": rules,
            } },
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::uri;

    #[test]
    fn file_names_become_uri_references() {
        assert_eq!(uri("plans/site.yaml"), "plans/site.yaml");
        assert_eq!(uri("plans/my site#1.yaml"), "plans/my%20site%231.yaml");
        assert_eq!(uri("/tmp/x/é.yaml"), "file:///tmp/x/%C3%A9.yaml");
    }
}
