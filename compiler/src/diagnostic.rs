//! Diagnostics: every error, warning and note the compiler reports, each pointing at the exact
//! YAML node it is about. Stages push into a [`Diagnostics`] list and keep going, so one run
//! reports every problem of a plan tree; `report.rs` renders them.

use serde::Serialize;

use crate::source::{Loc, SourceMap};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Note,
}

/// A secondary location: "first defined here", "included from here".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub loc: Loc,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Namespaced and stable, e.g. `duet::include::cycle`: tests and CI scripts match on it.
    pub code: &'static str,
    pub message: String,
    /// The node the diagnostic is about, with the text of its label.
    pub primary: Option<Label>,
    /// A file the diagnostic is about when it has no position in it (an unreadable root plan).
    pub path: Option<String>,
    pub related: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    fn new(severity: Severity, code: &'static str, message: impl Into<String>) -> Self {
        Self { severity, code, message: message.into(), primary: None, path: None, related: Vec::new(), help: None }
    }

    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, message)
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, message)
    }

    pub fn note(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Severity::Note, code, message)
    }

    #[must_use]
    pub fn at(mut self, loc: Loc, label: impl Into<String>) -> Self {
        self.primary = Some(Label { loc, text: label.into() });
        self
    }

    #[must_use]
    pub fn in_file(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    #[must_use]
    pub fn related(mut self, loc: Loc, text: impl Into<String>) -> Self {
        self.related.push(Label { loc, text: text.into() });
        self
    }

    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    #[must_use]
    pub fn help_opt(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    /// File, 1-based line and column of the primary location, as JSON output reports them.
    pub fn position(&self, sources: &SourceMap) -> (Option<String>, Option<usize>, Option<usize>) {
        match &self.primary {
            Some(label) => {
                let file = sources.get(label.loc.file);
                let (line, column) = file.line_col(label.loc.span.start);
                (Some(file.display.clone()), Some(line), Some(column))
            }
            None => (self.path.clone(), None, None),
        }
    }
}

/// The diagnostics of one compilation, in a deterministic order.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.items.iter().filter(|d| d.severity == severity).count()
    }

    /// Sorted by file (in load order), then position; diagnostics without a position last.
    /// Stable whatever order the stages found them in.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by_key(|d| match &d.primary {
            Some(l) => (false, Some((l.loc.file, l.loc.span.start, l.loc.span.end))),
            None => (true, None),
        });
        self.items
    }
}

impl Extend<Diagnostic> for Diagnostics {
    fn extend<T: IntoIterator<Item = Diagnostic>>(&mut self, iter: T) {
        self.items.extend(iter);
    }
}
