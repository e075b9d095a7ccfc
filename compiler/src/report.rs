//! Rendering diagnostics: miette's graphical report for people, a flat JSON list for CI. Labels
//! in another file than the primary one become related reports with that file's source.

use std::fmt::{self, Write};
use std::sync::Arc;

use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents, SourceSpan, SpanContents,
};
use serde::Serialize;

use crate::diagnostic::{Diagnostic, Label, Severity};
use crate::source::{FileId, SourceMap};

/// One miette report: a message, labels in one file, and related reports for other files.
#[derive(Debug)]
struct Report {
    severity: Severity,
    code: Option<&'static str>,
    message: String,
    help: Option<String>,
    source: Option<Source>,
    labels: Vec<LabeledSpan>,
    related: Vec<Report>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Report {}

impl miette::Diagnostic for Report {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.code.map(|c| Box::new(c) as Box<dyn fmt::Display>)
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
            Severity::Note => miette::Severity::Advice,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        (!self.labels.is_empty())
            .then(|| Box::new(self.labels.iter().cloned()) as Box<dyn Iterator<Item = LabeledSpan>>)
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        (!self.related.is_empty()).then(|| {
            Box::new(self.related.iter().map(|r| r as &dyn miette::Diagnostic))
                as Box<dyn Iterator<Item = &dyn miette::Diagnostic>>
        })
    }
}

/// Lines longer than this are not shown: miette cannot lay out columns past 65,535, and a
/// 200 KB line is no help on a terminal. The position is given in the message instead.
const MAX_SHOWN_LINE: usize = 1000;

/// A file as miette reads it, with columns counted in characters (miette counts bytes), so
/// the `file:line:column` it prints agrees with the JSON output and with editors.
#[derive(Debug)]
struct Source {
    name: String,
    text: Arc<str>,
}

impl miette::SourceCode for Source {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let contents = self.text.read_span(span, before, after)?;
        let start = contents.span().offset();
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let column = self.text[line_start..start].chars().count();
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            contents.data(),
            *contents.span(),
            contents.line(),
            column,
            contents.line_count(),
        )))
    }
}

fn named(sources: &SourceMap, file: FileId) -> Source {
    let f = sources.get(file);
    Source { name: f.display.clone(), text: Arc::clone(&f.text) }
}

/// Whether every label of a diagnostic sits on a line short enough to show.
fn showable(labels: &[&Label], sources: &SourceMap) -> bool {
    labels.iter().all(|l| {
        let text = &sources.get(l.loc.file).text;
        let start = text[..l.loc.span.start.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
        let end = text[l.loc.span.start.min(text.len())..].find('\n').map_or(text.len(), |i| l.loc.span.start + i);
        end - start <= MAX_SHOWN_LINE
    })
}

fn labeled(label: &Label, primary: bool) -> LabeledSpan {
    let span = SourceSpan::new(label.loc.span.start.into(), label.loc.span.len());
    if primary {
        LabeledSpan::new_primary_with_span(Some(label.text.clone()), span)
    } else {
        LabeledSpan::new_with_span(Some(label.text.clone()), span)
    }
}

fn report(d: &Diagnostic, sources: &SourceMap) -> Report {
    let all: Vec<&Label> = d.primary.iter().chain(&d.related).collect();
    if !showable(&all, sources) {
        let at = |l: &Label| {
            let f = sources.get(l.loc.file);
            let (line, column) = f.line_col(l.loc.span.start);
            format!("{}:{line}:{column}", f.display)
        };
        let mut message = d.message.clone();
        for label in &all {
            let _ = write!(message, "\n  at {}: {}", at(label), label.text);
        }
        return Report {
            severity: d.severity,
            code: Some(d.code),
            message,
            help: d.help.clone(),
            source: None,
            labels: Vec::new(),
            related: Vec::new(),
        };
    }
    let file = d.primary.as_ref().map(|l| l.loc.file);
    let mut labels: Vec<LabeledSpan> = d.primary.iter().map(|l| labeled(l, true)).collect();
    let mut related = Vec::new();
    for label in &d.related {
        if Some(label.loc.file) == file {
            labels.push(labeled(label, false));
        } else {
            related.push(Report {
                severity: Severity::Note,
                code: None,
                message: label.text.clone(),
                help: None,
                source: Some(named(sources, label.loc.file)),
                labels: vec![labeled(label, true)],
                related: Vec::new(),
            });
        }
    }
    Report {
        severity: d.severity,
        code: Some(d.code),
        message: d.message.clone(),
        help: d.help.clone(),
        source: file.map(|f| named(sources, f)),
        labels,
        related,
    }
}

/// More diagnostics than this are counted, not drawn: a person reads the first ones, and a
/// hostile plan can produce hundreds of thousands.
pub const MAX_RENDERED: usize = 200;

/// The graphical rendering of every diagnostic, as `duet check` prints it. Width and theme are
/// fixed when `color` is off, so output is identical on every machine.
pub fn render_human(diags: &[Diagnostic], sources: &SourceMap, color: bool) -> String {
    let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100).with_wrap_lines(false).with_links(false);
    let mut out = String::new();
    for d in diags.iter().take(MAX_RENDERED) {
        // Rendering into a String cannot fail.
        let _ = handler.render_report(&mut out, &report(d, sources));
    }
    if diags.len() > MAX_RENDERED {
        let _ = writeln!(
            out,
            "... and {} more diagnostics not shown; `--format json` lists them all",
            diags.len() - MAX_RENDERED
        );
    }
    out
}

#[derive(Serialize)]
pub struct JsonRelated {
    pub message: String,
    pub file: String,
    pub line: usize,
    pub column: usize,
}

#[derive(Serialize)]
pub struct JsonDiagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<JsonRelated>,
}

pub fn to_json(diags: &[Diagnostic], sources: &SourceMap) -> Vec<JsonDiagnostic> {
    diags
        .iter()
        .map(|d| {
            let (file, line, column) = d.position(sources);
            JsonDiagnostic {
                severity: d.severity,
                code: d.code,
                message: d.message.clone(),
                file,
                line,
                column,
                help: d.help.clone(),
                related: d
                    .related
                    .iter()
                    .map(|l| {
                        let f = sources.get(l.loc.file);
                        let (line, column) = f.line_col(l.loc.span.start);
                        JsonRelated { message: l.text.clone(), file: f.display.clone(), line, column }
                    })
                    .collect(),
            }
        })
        .collect()
}
