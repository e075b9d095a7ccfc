//! The unattended-upgrade keys of one plan file (issue 12): `upgrade`, `verify`, `approve` and
//! `notify` are keyed entries like actions (so nesting and `duet explain` treat them alike);
//! `versions` and `on_failure` are single settings. What one file can get wrong is reported
//! here, at the node: a regex that does not compile, a constraint or version that does not
//! parse, a URL that is not http(s), two checks in one entry.

use std::fmt;

use indexmap::IndexMap;

use super::Rerun;
use super::{Extractor, FieldValue, KeyedEntry, Kind, Setting, Spanned, default_id};
use crate::compiled::{CheckKind, Event, Gate, OnFailure, Retry, Software};
use crate::diagnostic::Diagnostic;
use crate::duration;
use crate::source::Loc;
use crate::version::{Constraint, Version};
use crate::yaml::{Entry as YamlEntry, Node};

/// A plan's `versions`: the hop it makes, and the largest it may make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionHop {
    pub software: String,
    pub from: String,
    pub to: String,
    pub max_major_hop: Option<u32>,
}

impl fmt::Display for VersionHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.software, self.from, self.to)?;
        match self.max_major_hop {
            Some(max) => write!(f, " (at most {max} major)"),
            None => Ok(()),
        }
    }
}

pub(super) fn on_failure(text: &str) -> Option<OnFailure> {
    match text {
        "hold" => Some(OnFailure::Hold),
        "abort" => Some(OnFailure::Abort),
        _ => None,
    }
}

fn gate(text: &str) -> Option<Gate> {
    match text {
        "merge" => Some(Gate::Merge),
        "commit" => Some(Gate::Commit),
        _ => None,
    }
}

fn event(text: &str) -> Option<Event> {
    Event::ALL.into_iter().find(|e| e.as_str() == text)
}

/// How `explain` shows a check.
pub(super) fn describe_check(check: &CheckKind, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match check {
        CheckKind::Run { file, args, stdout } => {
            write!(f, "run {file}")?;
            if !args.is_empty() {
                write!(f, " [{}]", args.join(", "))?;
            }
            match stdout {
                Some(re) => write!(f, ", stdout matches {re:?}"),
                None => Ok(()),
            }
        }
        CheckKind::Http { url, status, contains } => {
            write!(f, "http {url} -> {status}")?;
            match contains {
                Some(text) => write!(f, ", contains {text:?}"),
                None => Ok(()),
            }
        }
        CheckKind::Version { software, constraint } => write!(f, "version {software} {constraint}"),
    }
}

/// The code of a problem with an entry of `kind`: `id` (none derivable), `anonymous`, `retry`,
/// or a duration field (`timeout`, or an approval's `expires`; `field` reads each only where
/// the schema allows it).
fn code(kind: Kind, problem: &str) -> &'static str {
    match (kind, problem) {
        (Kind::Task, "id") => "duet::task::id",
        (Kind::Task, "anonymous") => "duet::task::anonymous",
        (Kind::Task, _) => "duet::task::timeout",
        (Kind::Check, "retry") => "duet::verify::retry",
        (Kind::Check, _) => "duet::verify::timeout",
        (Kind::Notify, "id") => "duet::notify::id",
        (Kind::Notify, "anonymous") => "duet::notify::anonymous",
        (Kind::Notify, _) => "duet::notify::timeout",
        _ => "duet::approve::expires",
    }
}

impl Extractor<'_> {
    /// A duration the schema found well formed, in range (at most 7 days, not zero).
    fn duration(&self, node: &Node, code: &'static str, out: &mut Vec<Diagnostic>) -> Option<(u64, String)> {
        let text = node.as_str()?;
        match duration::parse(text) {
            Ok(ms) => Some((ms, text.to_owned())),
            Err(why) => {
                // A malformed duration was already reported by the schema.
                if duration::is_well_formed(text) {
                    out.push(
                        Diagnostic::error(code, format!("invalid duration: {why}"))
                            .at(self.loc(node.span), "here")
                            .help("write a whole number and a unit, at most 7 days: 500ms, 30s, 2m or 1h"),
                    );
                }
                None
            }
        }
    }

    fn args(&self, node: &Node, out: &mut Vec<Diagnostic>) -> Vec<String> {
        let items = node.as_seq().unwrap_or_default();
        for item in items {
            self.check_variables(item, out);
        }
        items.iter().map(|a| self.arg_text(a)).collect()
    }

    fn text_at(node: &Node, key: &str) -> Option<String> {
        node.get(key).and_then(|e| e.value.as_str()).map(str::to_owned)
    }

    /// `upgrade`, `verify`, `approve` and `notify`: lists of mappings keyed by `id` (a task's
    /// and a notification's id defaults to its file name without the extension, like an
    /// action's).
    pub(super) fn keyed(&self, node: &Node, kind: Kind, into: &mut Vec<KeyedEntry>, out: &mut Vec<Diagnostic>) {
        for item in node.as_seq().unwrap_or_default() {
            let Some(map) = item.as_map() else { continue };
            let mut fields = IndexMap::new();
            let mut id: Option<Spanned<String>> = None;
            let mut check_at: Option<Loc> = None;
            for YamlEntry { key, key_span, value } in map {
                let loc = self.loc(value.span);
                if key == "id" {
                    id = value.as_str().map(|s| Spanned { value: s.to_owned(), loc });
                    continue;
                }
                if kind == Kind::Check && matches!(key.as_str(), "run" | "http" | "version") {
                    let here = self.loc(*key_span);
                    if let Some(first) = check_at {
                        out.push(
                            Diagnostic::error(
                                "duet::verify::two-checks",
                                format!("a check has one kind; `{key}` is a second"),
                            )
                            .at(here, "second check kind")
                            .related(first, "first check kind")
                            .help("split it into two checks, each with its own `id`"),
                        );
                        continue;
                    }
                    check_at = Some(here);
                }
                if let Some((name, v)) = self.field(kind, key, value, out) {
                    fields.insert(name, Setting::new(v, loc));
                }
            }
            // `verify` and `approve` require an `id` (the schema said so).
            let head = self.loc(item.head());
            let derived = || {
                matches!(kind, Kind::Task | Kind::Notify)
                    .then(|| Self::default_entry_id(kind, &fields, head, out))
                    .flatten()
            };
            let Some(id) = id.or_else(derived) else { continue };
            let decl = id.loc;
            let locks = self.lock(item).into_iter().collect();
            into.push(KeyedEntry { kind, key: id.value, decl, decls: vec![decl], fields, locks });
        }
    }

    fn default_entry_id(
        kind: Kind,
        fields: &IndexMap<&'static str, Setting>,
        head: Loc,
        out: &mut Vec<Diagnostic>,
    ) -> Option<Spanned<String>> {
        let what = if kind == Kind::Notify { "notification" } else { kind.as_str() };
        if let Some(Setting { value: FieldValue::Path { written, .. }, loc, .. }) = fields.get("file") {
            if let Some(stem) = default_id(written) {
                return Some(Spanned { value: stem, loc: *loc });
            }
            out.push(
                Diagnostic::error(
                    code(kind, "id"),
                    format!("cannot derive a {what} id from the file name `{written}`"),
                )
                .at(*loc, "no usable file name")
                .help(format!("give the {what} an explicit `id` made of letters, digits, `.`, `_` and `-`")),
            );
        } else {
            out.push(
                Diagnostic::error(code(kind, "anonymous"), format!("a {what} needs an `id` or a `file`"))
                    .at(head, "neither `id` nor `file`")
                    .help(format!(
                        "add `file:` with the executable to run, or `id:` naming the {what} this entry overrides"
                    )),
            );
        }
        None
    }

    fn field(
        &self,
        kind: Kind,
        key: &str,
        value: &Node,
        out: &mut Vec<Diagnostic>,
    ) -> Option<(&'static str, FieldValue)> {
        let text = value.as_str();
        Some(match key {
            "file" => {
                let s = text?;
                ("file", FieldValue::Path { written: s.to_owned(), resolved: self.resolve_path(s) })
            }
            "args" => ("args", FieldValue::Args(self.args(value, out))),
            "enabled" => ("enabled", FieldValue::Bool(value.as_bool()?)),
            "restart" => ("restart", FieldValue::Bool(value.as_bool()?)),
            "rerun" => ("rerun", FieldValue::Rerun(Rerun::parse(text?)?)),
            "before" => ("before", FieldValue::Gate(gate(text?)?)),
            "on_expiry" => ("on_expiry", FieldValue::OnFailure(on_failure(text?)?)),
            // Each where the schema allows it: a misplaced one is an unknown key there.
            "timeout" | "expires" if (key == "expires") == (kind == Kind::Approval) => {
                let (ms, written) = self.duration(value, code(kind, key), out)?;
                (if key == "timeout" { "timeout" } else { "expires" }, FieldValue::Duration { ms, written })
            }
            "on" => ("on", FieldValue::Events(Self::events(value))),
            "installs" => {
                let version = Self::text_at(value, "version")?;
                let at = value.get("version").map_or(value.span, |e| e.value.span);
                Self::version_text(&version, self.loc(at), "duet::task::installs-version", out)?;
                ("installs", FieldValue::Software(Software { name: Self::text_at(value, "software")?, version }))
            }
            "retry" if kind == Kind::Check => {
                let times = u32::try_from(value.get("times")?.value.as_int()?).ok()?;
                let (interval_ms, _) = self.duration(&value.get("interval")?.value, code(kind, "retry"), out)?;
                ("retry", FieldValue::Retry(Retry { times, interval_ms }))
            }
            "run" | "http" | "version" => ("check", FieldValue::Check(self.check(key, value, out)?)),
            _ => return None,
        })
    }

    /// Events in the order of [`Event::ALL`], each once.
    fn events(node: &Node) -> Vec<Event> {
        let named: Vec<Event> =
            node.as_seq().unwrap_or_default().iter().filter_map(|n| n.as_str().and_then(event)).collect();
        Event::ALL.into_iter().filter(|e| named.contains(e)).collect()
    }

    fn version_text(text: &str, loc: Loc, code: &'static str, out: &mut Vec<Diagnostic>) -> Option<Version> {
        match Version::parse(text) {
            Ok(v) => Some(v),
            Err(why) => {
                out.push(
                    Diagnostic::error(code, format!("invalid version: {why}"))
                        .at(loc, "not a version")
                        .help("versions are dotted numbers, compared part by part: 10.2, 15.0.4"),
                );
                None
            }
        }
    }

    fn check(&self, kind: &str, node: &Node, out: &mut Vec<Diagnostic>) -> Option<CheckKind> {
        let at = |key: &str| node.get(key).map(|e| self.loc(e.value.span));
        match kind {
            "run" => {
                let file = Self::text_at(node, "file")?;
                let stdout = Self::text_at(node, "stdout");
                if let (Some(re), Some(loc)) = (&stdout, at("stdout")) {
                    if let Err(e) = regex::Regex::new(re) {
                        let why = e.to_string();
                        let last = why.lines().last().unwrap_or_default().trim().trim_start_matches("error: ");
                        out.push(
                            Diagnostic::error("duet::verify::regex", format!("`stdout` is not a valid regular expression: {last}"))
                                .at(loc, "invalid regular expression")
                                .help("write a regular expression in Rust `regex` syntax; escape literal `(`, `[`, `.` and `*` with `\\`"),
                        );
                        return None;
                    }
                }
                Some(CheckKind::Run {
                    file: self.resolve_path(&file).display().to_string(),
                    args: node.get("args").map(|e| self.args(&e.value, out)).unwrap_or_default(),
                    stdout,
                })
            }
            "http" => {
                let url = Self::text_at(node, "url")?;
                if !(url.starts_with("http://") || url.starts_with("https://")) || url.contains(char::is_whitespace) {
                    out.push(
                        Diagnostic::error("duet::verify::url", format!("`{url}` is not an http:// or https:// URL"))
                            .at(at("url")?, "not an HTTP URL")
                            .help("write the full URL of the status page, e.g. http://127.0.0.1:8080/health"),
                    );
                    return None;
                }
                let status = match node.get("status").and_then(|e| e.value.as_int()) {
                    Some(s) => u16::try_from(s).ok()?,
                    None => 200,
                };
                Some(CheckKind::Http { url, status, contains: Self::text_at(node, "contains") })
            }
            _ => {
                let constraint = Self::text_at(node, "constraint")?;
                if let Err(why) = Constraint::parse(&constraint) {
                    out.push(
                        Diagnostic::error("duet::verify::constraint", format!("invalid version constraint: {why}"))
                            .at(at("constraint")?, "not a constraint")
                            .help("write >=, >, <=, < or = followed by a dotted version, e.g. >=15.0.4"),
                    );
                    return None;
                }
                Some(CheckKind::Version { software: Self::text_at(node, "software")?, constraint })
            }
        }
    }

    /// `versions`, at its key (where the version-hop error points).
    pub(super) fn versions(&self, entry: &YamlEntry, out: &mut Vec<Diagnostic>) -> Option<Setting> {
        let node = &entry.value;
        let mut valid = true;
        for key in ["from", "to"] {
            if let Some(e) = node.get(key) {
                let text = e.value.as_str().unwrap_or_default();
                valid &= Self::version_text(text, self.loc(e.value.span), "duet::versions::version", out).is_some();
            }
        }
        let hop = VersionHop {
            software: Self::text_at(node, "software")?,
            from: Self::text_at(node, "from")?,
            to: Self::text_at(node, "to")?,
            max_major_hop: node.get("max_major_hop").and_then(|e| u32::try_from(e.value.as_int()?).ok()),
        };
        valid.then(|| Setting::new(FieldValue::Versions(hop), self.loc(entry.key_span)))
    }
}
