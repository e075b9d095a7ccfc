//! Rendering diagnostics: miette's graphical report for people, a flat JSON list for CI. Labels
//! in another file than the primary one become related reports with that file's source. The
//! graphical report quotes plans and file names escaped ([`text::escape`]): what it prints is
//! safe for a terminal whoever wrote the plan. The JSON list holds the text as written; its
//! printer escapes it ([`text::escape_json`]).

use std::fmt::{self, Write};
use std::sync::Arc;

use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents, SourceSpan, SpanContents,
};
use serde::Serialize;

use crate::diagnostic::{Diagnostic, Label, Severity};
use crate::source::{FileId, SourceMap, Span};
use crate::text;

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

/// A file as miette reads it: its name and text with hostile characters escaped
/// ([`text::escape`]), so a snippet cannot drive the terminal, and spans mapped into that text,
/// so labels still sit under what they point at. The `line:column` miette prints is counted in
/// characters of the file as written (miette counts bytes of what it is given), so it agrees
/// with the JSON output and with editors.
#[derive(Debug)]
struct Shown {
    name: String,
    written: Arc<str>,
    text: Arc<str>,
    /// Each escaped character: (offset as written, offset in `text`, length as written,
    /// length escaped), in order. Empty for a file without hostile characters.
    marks: Vec<Mark>,
}

#[derive(Clone, Copy, Debug)]
struct Mark {
    written: usize,
    shown: usize,
    written_len: usize,
    shown_len: usize,
}

impl Shown {
    fn new(name: &str, written: &Arc<str>) -> Self {
        let name = text::escape(name).into_owned();
        if !written.chars().any(text::hostile) {
            return Self { name, written: Arc::clone(written), text: Arc::clone(written), marks: Vec::new() };
        }
        let mut shown = String::with_capacity(written.len() + 64);
        let mut marks = Vec::new();
        let mut chars = written.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            if text::escapes(c, chars.peek().map(|&(_, n)| n)) {
                let before = shown.len();
                text::push_escaped(&mut shown, c);
                marks.push(Mark {
                    written: at,
                    shown: before,
                    written_len: c.len_utf8(),
                    shown_len: shown.len() - before,
                });
            } else {
                shown.push(c);
            }
        }
        Self { name, written: Arc::clone(written), text: Arc::from(shown), marks }
    }

    /// Where a byte offset of the file as written is in the shown text.
    fn to_shown(&self, offset: usize) -> usize {
        match self.marks.partition_point(|m| m.written < offset) {
            0 => offset,
            n => {
                let m = self.marks[n - 1];
                (m.shown + m.shown_len) + offset.saturating_sub(m.written + m.written_len)
            }
        }
    }

    /// Where a byte offset of the shown text is in the file as written (inside an escape: at
    /// the character it stands for).
    fn to_written(&self, offset: usize) -> usize {
        match self.marks.partition_point(|m| m.shown < offset) {
            0 => offset,
            n => {
                let m = self.marks[n - 1];
                if offset < m.shown + m.shown_len {
                    m.written
                } else {
                    m.written + m.written_len + (offset - m.shown - m.shown_len)
                }
            }
        }
    }

    fn span(&self, span: Span) -> SourceSpan {
        let start = self.to_shown(span.start);
        SourceSpan::new(start.into(), self.to_shown(span.end) - start)
    }
}

/// One file of a report (its text is shared with the other reports on that file).
#[derive(Debug)]
struct Source(Arc<Shown>);

impl miette::SourceCode for Source {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let shown = &*self.0;
        let contents = shown.text.read_span(span, before, after)?;
        let start = shown.to_written(contents.span().offset()).min(shown.written.len());
        let line_start = shown.written[..start].rfind('\n').map_or(0, |i| i + 1);
        let column = shown.written.get(line_start..start).map_or(0, |s| s.chars().count());
        Ok(Box::new(MietteSpanContents::new_named(
            shown.name.clone(),
            contents.data(),
            *contents.span(),
            contents.line(),
            column,
            contents.line_count(),
        )))
    }
}

/// The shown form of each file, made once per rendering, for the files a report quotes.
struct Files<'a> {
    sources: &'a SourceMap,
    shown: std::collections::HashMap<FileId, Arc<Shown>>,
}

impl<'a> Files<'a> {
    fn new(sources: &'a SourceMap) -> Self {
        Self { sources, shown: std::collections::HashMap::new() }
    }

    fn shown(&mut self, file: FileId) -> Arc<Shown> {
        let sources = self.sources;
        Arc::clone(self.shown.entry(file).or_insert_with(|| {
            let f = sources.get(file);
            Arc::new(Shown::new(&f.display, &f.text))
        }))
    }
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

fn labeled(label: &Label, shown: &Shown, primary: bool) -> LabeledSpan {
    let span = shown.span(label.loc.span);
    let text = Some(text::escape(&label.text).into_owned());
    if primary { LabeledSpan::new_primary_with_span(text, span) } else { LabeledSpan::new_with_span(text, span) }
}

fn escaped(text: &str) -> String {
    text::escape(text).into_owned()
}

/// The miette report of one diagnostic. Every text it holds is escaped here, the one place
/// all of it passes: message, labels, help, file names and source snippets.
fn report(d: &Diagnostic, files: &mut Files<'_>) -> Report {
    let sources = files.sources;
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
            message: escaped(&message),
            help: d.help.as_deref().map(escaped),
            source: None,
            labels: Vec::new(),
            related: Vec::new(),
        };
    }
    let file = d.primary.as_ref().map(|l| l.loc.file);
    let shown = file.map(|f| files.shown(f));
    let mut labels: Vec<LabeledSpan> = Vec::new();
    if let (Some(primary), Some(shown)) = (&d.primary, &shown) {
        labels.push(labeled(primary, shown, true));
    }
    let mut related = Vec::new();
    for label in &d.related {
        match &shown {
            Some(shown) if Some(label.loc.file) == file => labels.push(labeled(label, shown, false)),
            _ => {
                let other = files.shown(label.loc.file);
                related.push(Report {
                    severity: Severity::Note,
                    code: None,
                    message: escaped(&label.text),
                    help: None,
                    labels: vec![labeled(label, &other, true)],
                    source: Some(Source(other)),
                    related: Vec::new(),
                });
            }
        }
    }
    Report {
        severity: d.severity,
        code: Some(d.code),
        message: escaped(&d.message),
        help: d.help.as_deref().map(escaped),
        source: shown.map(Source),
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
    let mut files = Files::new(sources);
    for d in diags.iter().take(MAX_RENDERED) {
        // Rendering into a String cannot fail.
        let _ = handler.render_report(&mut out, &report(d, &mut files));
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;
    use crate::source::{Loc, SourceFile, Span};

    fn one_file(name: &str, text: &str) -> (SourceMap, FileId) {
        let mut sources = SourceMap::default();
        let file = sources.add(SourceFile::new(name.into(), PathBuf::from("/p.yaml"), Arc::from(text)));
        (sources, file)
    }

    fn hostile_chars(text: &str) -> Vec<char> {
        text.chars().filter(|&c| text::hostile(c)).collect()
    }

    #[test]
    fn offsets_map_both_ways_around_escapes() {
        let written: Arc<str> = Arc::from("a\u{1b}b\u{202e}c\r\nd\re");
        let shown = Shown::new("p", &written);
        assert_eq!(&*shown.text, "a\\x{1b}b\\x{202e}c\r\nd\\x{d}e");
        for (at, c) in written.char_indices() {
            let there = shown.to_shown(at);
            assert_eq!(shown.to_written(there), at, "offset {at} ({c:?}) comes back");
            if !text::hostile(c) || c == '\r' && written[at..].starts_with("\r\n") {
                assert_eq!(shown.text[there..].chars().next(), Some(c), "offset {at} maps to the same character");
            }
        }
        assert_eq!(shown.to_shown(written.len()), shown.text.len());
        assert_eq!(shown.to_written(shown.text.len()), written.len());
        assert_eq!(shown.to_written(2), 1, "inside an escape: the character it stands for");
    }

    #[test]
    fn snippets_are_escaped_and_labels_stay_under_their_text() {
        let text = "title: \"\u{1b}]52;c;eA==\u{7}\"\nbogus: \u{9b}2J\u{202e}x\u{0}\n";
        let (sources, file) = one_file("dir/\u{1b}[2Jp.yaml", text);
        let x = text.find('x').expect("x");
        let d = Diagnostic::error("duet::schema::unknown-key", "unknown key `\u{1b}[2J`")
            .at(Loc { file, span: Span::new(x, x + 1) }, "label \u{9b}here")
            .related(Loc { file, span: Span::new(7, 8) }, "quote")
            .help("help \u{7}");
        let out = render_human(&[d], &sources, false);
        assert_eq!(hostile_chars(&out), Vec::<char>::new(), "{out}");
        assert!(out.contains("unknown key `\\x{1b}[2J`"), "{out}");
        assert!(out.contains("label \\x{9b}here") && out.contains("help \\x{7}"), "{out}");
        // The position is counted in characters of the file as written, like the JSON output.
        assert!(out.contains("[dir/\\x{1b}[2Jp.yaml:2:12]"), "{out}");
        let lines: Vec<&str> = out.lines().collect();
        let at = lines.iter().position(|l| l.contains("bogus")).expect("the snippet shows line 2");
        assert!(lines[at].ends_with("bogus: \\x{9b}2J\\x{202e}x\\x{0}"), "{out}");
        let column = lines[at].chars().count() - "x\\x{0}".len();
        let mark = lines[at + 1];
        assert_eq!(mark.chars().position(|c| c == '┬'), Some(column), "the label sits under `x`:\n{out}");
    }

    #[test]
    fn a_file_without_hostile_characters_is_shown_as_it_is() {
        let (sources, file) = one_file("p.yaml", "version: 1\nbogus: 1\n");
        let d = Diagnostic::error("duet::schema::unknown-key", "unknown key `bogus`")
            .at(Loc { file, span: Span::new(11, 16) }, "here");
        let out = render_human(&[d], &sources, false);
        assert!(out.contains("[p.yaml:2:1]") && out.contains(" 2 │ bogus: 1"), "{out}");
    }
}
