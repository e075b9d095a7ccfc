//! One plan file as written: [`PlanFile`], extracted from a schema-valid YAML tree.
//!
//! Services, actions and event logs are all *keyed entries* whose fields are [`Setting`]s that
//! remember where they were written. Nesting (`resolve.rs`) merges entries field by field with
//! one generic algorithm, and `duet explain` prints the provenance the settings carry.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::compiled::{CheckKind, Event, Gate, OnFailure, Retry, Software};
use crate::diagnostic::Diagnostic;
use crate::duration;
use crate::name;
use crate::source::{FileId, Loc, SourceFile, Span};
use crate::suggest;
use crate::yaml::{Entry as YamlEntry, Node, Value};

mod unattended;

pub use unattended::VersionHop;

/// A value and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub loc: Loc,
}

/// When an action runs (guide table 3-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Control {
    Start,
    Stop,
    Readiness,
    Advanced,
    Backup,
}

/// Order among the actions of one step (guide table 3-4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Timing {
    Early,
    #[default]
    Default,
    Late,
}

/// May a crash make this action run again? (execution model section 6)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Rerun {
    #[default]
    Safe,
    Unsafe,
}

macro_rules! keyword_enum {
    ($ty:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),* }
            }

            fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some(Self::$variant),)* _ => None }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

keyword_enum!(Control { Start => "start", Stop => "stop", Readiness => "readiness", Advanced => "advanced", Backup => "backup" });
keyword_enum!(Timing { Early => "early", Default => "default", Late => "late" });
keyword_enum!(Rerun { Safe => "safe", Unsafe => "unsafe" });

/// The kinds of keyed entries; `explain` names an entry `kind:key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Service,
    Action,
    Log,
    /// An upgrade task (`upgrade:`).
    Task,
    /// A verification gate (`verify:`).
    Check,
    /// An approval (`approve:`).
    Approval,
    /// A notification (`notify:`).
    Notify,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Action => "action",
            Self::Log => "log",
            Self::Task => "task",
            Self::Check => "check",
            Self::Approval => "approval",
            Self::Notify => "notify",
        }
    }
}

/// The value of one field of an entry.
#[derive(Clone, Debug)]
pub enum FieldValue {
    Text(String),
    /// An action's executable: as written, and resolved against its plan's directory.
    Path {
        written: String,
        resolved: PathBuf,
    },
    Names(Vec<Spanned<String>>),
    Args(Vec<String>),
    Bool(bool),
    Control(Control),
    Timing(Timing),
    Rerun(Rerun),
    Duration {
        ms: u64,
        written: String,
    },
    Gate(Gate),
    OnFailure(OnFailure),
    Events(Vec<Event>),
    /// A task's `installs`.
    Software(Software),
    Retry(Retry),
    /// A check's `run`, `http` or `version`: one field, so a parent that writes one replaces
    /// the child's check whole (kind and all).
    Check(CheckKind),
    /// The plan's `versions`.
    Versions(VersionHop),
}

impl PartialEq for FieldValue {
    /// Semantic equality: the same names written in two places are equal.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Text(a), Self::Text(b)) => a == b,
            (Self::Path { resolved: a, .. }, Self::Path { resolved: b, .. }) => a == b,
            (Self::Names(a), Self::Names(b)) => a.iter().map(|n| &n.value).eq(b.iter().map(|n| &n.value)),
            (Self::Args(a), Self::Args(b)) => a == b,
            (Self::Bool(a), Self::Bool(b)) => a == b,
            (Self::Control(a), Self::Control(b)) => a == b,
            (Self::Timing(a), Self::Timing(b)) => a == b,
            (Self::Rerun(a), Self::Rerun(b)) => a == b,
            (Self::Duration { ms: a, .. }, Self::Duration { ms: b, .. }) => a == b,
            (Self::Gate(a), Self::Gate(b)) => a == b,
            (Self::OnFailure(a), Self::OnFailure(b)) => a == b,
            (Self::Events(a), Self::Events(b)) => a == b,
            (Self::Software(a), Self::Software(b)) => a == b,
            (Self::Retry(a), Self::Retry(b)) => a == b,
            (Self::Check(a), Self::Check(b)) => a == b,
            (Self::Versions(a), Self::Versions(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Multi-line text (comments) is shown by its first line wherever a value is quoted.
            Self::Text(s) => match s.split_once('\n') {
                Some((first, _)) => write!(f, "{first:?} (and more lines)"),
                None => write!(f, "{s:?}"),
            },
            Self::Path { resolved, .. } => write!(f, "{}", resolved.display()),
            Self::Names(names) => {
                let names: Vec<&str> = names.iter().map(|n| n.value.as_str()).collect();
                write!(f, "[{}]", names.join(", "))
            }
            Self::Args(args) => write!(f, "[{}]", args.join(", ")),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Control(c) => write!(f, "{c}"),
            Self::Timing(t) => write!(f, "{t}"),
            Self::Rerun(r) => write!(f, "{r}"),
            Self::Duration { written, .. } => f.write_str(written),
            Self::Gate(g) => f.write_str(g.as_str()),
            Self::OnFailure(o) => f.write_str(o.as_str()),
            Self::Events(events) => {
                let events: Vec<&str> = events.iter().map(|e| e.as_str()).collect();
                write!(f, "[{}]", events.join(", "))
            }
            Self::Software(s) => write!(f, "{} {}", s.name, s.version),
            Self::Retry(r) => write!(f, "{} times, {} apart", r.times, duration::format(r.interval_ms)),
            Self::Check(check) => unattended::describe_check(check, f),
            Self::Versions(hop) => write!(f, "{hop}"),
        }
    }
}

/// A definition that lost to another: shown by `duet explain`.
#[derive(Clone, Debug, PartialEq)]
pub struct Overridden {
    pub loc: Loc,
    pub value: String,
}

/// One field's value with its provenance.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub value: FieldValue,
    pub loc: Loc,
    /// For `title`, `comments` and `logs.staging_dir` ("the nearest definition to the top
    /// wins"): how many includes below the plan being resolved it was written (0: in that
    /// plan). Entry fields do not use it.
    pub depth: u32,
    pub overridden: Vec<Overridden>,
}

impl Setting {
    pub fn new(value: FieldValue, loc: Loc) -> Self {
        Self { value, loc, depth: 0, overridden: Vec::new() }
    }
}

/// A service, action or event log as declared in one file, or as merged from several.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyedEntry {
    pub kind: Kind,
    pub key: String,
    /// The first declaration: the merged entry keeps its position and points here.
    pub decl: Loc,
    /// Every declaration merged into this entry, first first.
    pub decls: Vec<Loc>,
    pub fields: IndexMap<&'static str, Setting>,
    /// The `locked:` marks of every declaration merged into this entry (a template's).
    pub locks: Vec<Lock>,
}

/// What a template forbids the plans above it to change in one entry (`locked:`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lock {
    /// The `locked` key: where diagnostics and `duet explain` point.
    pub loc: Loc,
    /// The locked fields as written (`run`, `http` and `version` all lock a check's one
    /// `check` field); `None` locks the whole entry, `enabled` included.
    pub fields: Option<Vec<Spanned<String>>>,
    pub reason: Option<String>,
}

impl Lock {
    /// Whether the field (by its internal name) is locked.
    pub fn covers(&self, field: &str) -> bool {
        self.fields.as_ref().is_none_or(|list| list.iter().any(|f| internal_field(&f.value) == field))
    }
}

/// The name a field is kept under: a check's `run`, `http` and `version` are its one `check`.
pub fn internal_field(written: &str) -> &str {
    match written {
        "run" | "http" | "version" => "check",
        other => other,
    }
}

/// One entry of `include`: a file name, optionally pinned to its SHA-256 and/or required to
/// carry a minisign signature by a trusted key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Include {
    pub file: Spanned<String>,
    /// Lowercase hex.
    pub sha256: Option<Spanned<String>>,
    pub signed: Option<Spanned<Signer>>,
}

/// Whose signature an include requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signer {
    /// Any trusted key.
    Any,
    /// The trusted key of this name.
    Named(String),
}

/// A public key the top-level plan trusts to sign templates (`trust:`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedKey {
    pub name: String,
    /// The minisign public key, base64 (the second line of a `.pub` file).
    pub key: String,
    pub loc: Loc,
}

impl KeyedEntry {
    pub fn enabled(&self) -> bool {
        !matches!(self.fields.get("enabled").map(|s| &s.value), Some(FieldValue::Bool(false)))
    }
}

/// The `disks` selection of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct DiskSelection {
    pub loc: Loc,
    pub system: Vec<Spanned<String>>,
    pub data: Vec<Spanned<String>>,
}

/// One plan file, as written.
#[derive(Clone, Debug, Default)]
pub struct PlanFile {
    pub title: Option<Setting>,
    pub comments: Option<Setting>,
    pub staging_dir: Option<Setting>,
    pub disks: Option<DiskSelection>,
    pub includes: Vec<Include>,
    /// Keys trusted to sign included templates; only the top-level plan's count.
    pub trust: Vec<TrustedKey>,
    pub entries: Vec<KeyedEntry>,
    /// `versions` and `on_failure`: the nearest definition to the top wins.
    pub versions: Option<Setting>,
    pub on_failure: Option<Setting>,
}

impl PlanFile {
    /// Extracts a plan from a tree the plan schema accepted. Anything the schema would have
    /// refused is skipped rather than trusted, so this never panics on a tree it did not check.
    pub fn from_node(root: &Node, source: &SourceFile, file: FileId, out: &mut Vec<Diagnostic>) -> Self {
        let x = Extractor { source, file };
        let mut plan = Self::default();
        let Some(entries) = root.as_map() else {
            return plan;
        };
        for entry in entries {
            let value = &entry.value;
            match entry.key.as_str() {
                "title" => plan.title = x.text(value),
                "comments" => plan.comments = x.text(value),
                "disks" => {
                    plan.disks = Some(DiskSelection {
                        loc: x.loc(entry.key_span),
                        system: value.get("system").map(|e| x.unique_names(&e.value, "disk", out)).unwrap_or_default(),
                        data: value.get("data").map(|e| x.unique_names(&e.value, "disk", out)).unwrap_or_default(),
                    });
                }
                "include" => plan.includes = x.includes(value, out),
                "trust" => plan.trust = x.trust(value),
                "services" => x.named_entries(value, Kind::Service, &mut plan.entries, out),
                "actions" => x.actions(value, &mut plan.entries, out),
                "upgrade" => x.keyed(value, Kind::Task, &mut plan.entries, out),
                "verify" => x.keyed(value, Kind::Check, &mut plan.entries, out),
                "approve" => x.keyed(value, Kind::Approval, &mut plan.entries, out),
                "notify" => x.keyed(value, Kind::Notify, &mut plan.entries, out),
                "versions" => plan.versions = x.versions(entry, out),
                "on_failure" => {
                    plan.on_failure = value
                        .as_str()
                        .and_then(unattended::on_failure)
                        .map(|o| Setting::new(FieldValue::OnFailure(o), x.loc(value.span)));
                }
                "logs" => {
                    if let Some(dir) = value.get("staging_dir") {
                        plan.staging_dir = x.text(&dir.value);
                        if let Some(Setting { value: FieldValue::Text(dir), loc, .. }) = &plan.staging_dir {
                            if !dir.starts_with('/') {
                                out.push(Diagnostic::error("duet::logs::staging-relative", "`logs.staging_dir` must be an absolute path")
                                    .at(*loc, "relative path")
                                    .help("write the full path of a directory on a data disk, e.g. /srv/data/upgrade-logs"));
                            }
                        }
                    }
                    if let Some(backup) = value.get("backup") {
                        x.named_entries(&backup.value, Kind::Log, &mut plan.entries, out);
                    }
                }
                _ => {}
            }
        }
        plan.entries = first_declarations(std::mem::take(&mut plan.entries), out);
        plan
    }
}

/// Each service, action and event log once per file: a repeat is an error, and the first
/// declaration is kept.
fn first_declarations(entries: Vec<KeyedEntry>, out: &mut Vec<Diagnostic>) -> Vec<KeyedEntry> {
    keep_first(
        entries,
        |e| (e.kind, e.key.clone()),
        out,
        |again, first| {
            let kind = again.kind.as_str();
            let help = if matches!(again.kind, Kind::Action | Kind::Task | Kind::Notify) {
                format!("give each {kind} its own `id:` (without one, the id is the file name without its extension)")
            } else {
                format!("merge the two declarations: each {kind} appears once per plan")
            };
            Diagnostic::error("duet::plan::duplicate", format!("{kind} `{}` is declared twice in this plan", again.key))
                .at(again.decl, "declared again here")
                .related(first.decl, "first declared here")
                .help(help)
        },
    )
}

/// Keeps the first item of each key; each repeat is dropped with the diagnostic
/// `report(repeat, first)`. Indexed, not scanned: hostile lists can hold a million items.
fn keep_first<T, K: std::hash::Hash + Eq>(
    items: Vec<T>,
    key: impl Fn(&T) -> K,
    out: &mut Vec<Diagnostic>,
    report: impl Fn(&T, &T) -> Diagnostic,
) -> Vec<T> {
    let mut kept: Vec<T> = Vec::with_capacity(items.len());
    let mut index: std::collections::HashMap<K, usize> = std::collections::HashMap::with_capacity(items.len());
    for item in items {
        match index.entry(key(&item)) {
            std::collections::hash_map::Entry::Occupied(first) => out.push(report(&item, &kept[*first.get()])),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(kept.len());
                kept.push(item);
            }
        }
    }
    kept
}

struct Extractor<'a> {
    source: &'a SourceFile,
    file: FileId,
}

impl Extractor<'_> {
    fn loc(&self, span: Span) -> Loc {
        Loc { file: self.file, span }
    }

    fn text(&self, node: &Node) -> Option<Setting> {
        node.as_str().map(|s| Setting::new(FieldValue::Text(s.to_owned()), self.loc(node.span)))
    }

    fn names(&self, node: &Node) -> Vec<Spanned<String>> {
        node.as_seq()
            .unwrap_or_default()
            .iter()
            .filter_map(|n| n.as_str().map(|s| Spanned { value: s.to_owned(), loc: self.loc(n.span) }))
            .collect()
    }

    /// A name of a service, log or disk: printed in summaries, logs and graphs, and made into
    /// file names by the runtime, so it must be visible text on one line and one file name
    /// ([`name::problem`]).
    fn check_name(name: &str, loc: Loc, what: &str, out: &mut Vec<Diagnostic>) -> bool {
        let Some(problem) = name::problem(name) else { return true };
        out.push(
            Diagnostic::error("duet::plan::name", format!("{what} name {name:?} {problem}"))
                .at(loc, "not a usable name")
                .help(name::help(what)),
        );
        false
    }

    /// A list of names, each valid and listed once (a repeat is a warning and is dropped).
    fn unique_names(&self, node: &Node, what: &str, out: &mut Vec<Diagnostic>) -> Vec<Spanned<String>> {
        let valid: Vec<Spanned<String>> =
            self.names(node).into_iter().filter(|name| Self::check_name(&name.value, name.loc, what, out)).collect();
        keep_first(
            valid,
            |n| n.value.clone(),
            out,
            |again, first| {
                Diagnostic::warning("duet::plan::repeated-name", format!("{what} `{}` is listed twice", again.value))
                    .at(again.loc, "listed again here")
                    .related(first.loc, "first listed here")
                    .help("remove the repeated entry")
            },
        )
    }

    fn trust(&self, node: &Node) -> Vec<TrustedKey> {
        let text = |item: &Node, key: &str| item.get(key).and_then(|e| e.value.as_str()).map(str::to_owned);
        node.as_seq()
            .unwrap_or_default()
            .iter()
            .filter_map(|item| {
                let key = item.get("key")?;
                Some(TrustedKey {
                    name: text(item, "name")?,
                    key: key.value.as_str()?.to_owned(),
                    loc: self.loc(key.value.span),
                })
            })
            .collect()
    }

    /// `include`'s items: a file name, or `{file, sha256, signed}`.
    fn include_items(&self, node: &Node) -> Vec<Include> {
        let spanned = |n: &Node| n.as_str().map(|s| Spanned { value: s.to_owned(), loc: self.loc(n.span) });
        node.as_seq()
            .unwrap_or_default()
            .iter()
            .filter_map(|item| {
                if let Some(file) = spanned(item) {
                    return Some(Include { file, sha256: None, signed: None });
                }
                let file = spanned(&item.get("file")?.value)?;
                // A malformed pin is the schema's error; it pins nothing.
                let well_formed =
                    |s: &Spanned<String>| s.value.len() == 64 && s.value.bytes().all(|b| b.is_ascii_hexdigit());
                let sha256 = item.get("sha256").and_then(|e| spanned(&e.value)).filter(well_formed).map(|mut s| {
                    s.value = s.value.to_ascii_lowercase();
                    s
                });
                let signed = item.get("signed").and_then(|e| {
                    let signer = match (&e.value.value, e.value.as_bool()) {
                        (_, Some(true)) => Signer::Any,
                        (Value::Str(name), None) => Signer::Named(name.clone()),
                        _ => return None,
                    };
                    Some(Spanned { value: signer, loc: self.loc(e.value.span) })
                });
                Some(Include { file, sha256, signed })
            })
            .collect()
    }

    fn includes(&self, node: &Node, out: &mut Vec<Diagnostic>) -> Vec<Include> {
        let mut seen: Vec<Include> = Vec::new();
        for include in self.include_items(node) {
            let name = &include.file;
            let v = name.value.as_str();
            let bad_path = v.contains('/')
                || v.contains('\\')
                || v == ".."
                || v == "."
                || Path::new(v).components().any(|c| !matches!(c, Component::Normal(_)));
            if bad_path {
                out.push(Diagnostic::error("duet::include::path", format!("include `{v}` is not a bare file name"))
                    .at(name.loc, "path separators and `..` are not allowed")
                    .help("child plans must be in the same directory as the plan that includes them (guide 3-7); copy or link the file there and include it by name"));
                continue;
            }
            if !is_yaml_name(v) {
                out.push(
                    Diagnostic::error("duet::include::not-yaml", format!("include `{v}` is not a plan file"))
                        .at(name.loc, "expected a .yaml or .yml file")
                        .help("plans are YAML files named *.yaml or *.yml"),
                );
                continue;
            }
            seen.push(include);
        }
        keep_first(
            seen,
            |n| n.file.value.clone(),
            out,
            |again, first| {
                Diagnostic::warning("duet::include::repeated", format!("`{}` is included twice", again.file.value))
                    .at(again.file.loc, "included again here")
                    .related(first.file.loc, "first included here")
                    .help("a plan is included once however often it is named; remove the repeated entry")
            },
        )
    }

    /// An entry's `locked:` (`true`, a list of fields, or `{fields, reason}`).
    pub(crate) fn lock(&self, item: &Node) -> Option<Lock> {
        let entry = item.get("locked")?;
        let loc = self.loc(entry.key_span);
        let value = &entry.value;
        let (fields, reason) = if let Some(all) = value.as_bool() {
            if !all {
                return None;
            }
            (None, None)
        } else if value.as_seq().is_some() {
            (Some(self.names(value)), None)
        } else {
            let fields = value.get("fields").map(|e| self.names(&e.value));
            (fields, value.get("reason").and_then(|e| e.value.as_str()).map(str::to_owned))
        };
        Some(Lock { loc, fields, reason })
    }

    fn bool_field(&self, map: &Node, key: &str, fields: &mut IndexMap<&'static str, Setting>, name: &'static str) {
        if let Some(e) = map.get(key) {
            if let Some(b) = e.value.as_bool() {
                fields.insert(name, Setting::new(FieldValue::Bool(b), self.loc(e.value.span)));
            }
        }
    }

    /// Services and event logs: each a name, or a `{name: ...}` mapping with more fields.
    fn named_entries(&self, node: &Node, kind: Kind, into: &mut Vec<KeyedEntry>, out: &mut Vec<Diagnostic>) {
        let what = if kind == Kind::Log { "event log" } else { kind.as_str() };
        for item in node.as_seq().unwrap_or_default() {
            let mut fields = IndexMap::new();
            let (name, span) = if let Some(name) = item.as_str() {
                (name.to_owned(), item.span)
            } else if let Some(entry) = item.get("name") {
                let Some(name) = entry.value.as_str() else { continue };
                if let Some(after) = item.get("after").filter(|_| kind == Kind::Service) {
                    let names = FieldValue::Names(self.unique_names(&after.value, "service", out));
                    fields.insert("after", Setting::new(names, self.loc(after.value.span)));
                }
                self.bool_field(item, "enabled", &mut fields, "enabled");
                (name.to_owned(), entry.value.span)
            } else {
                continue;
            };
            let decl = self.loc(span);
            if Self::check_name(&name, decl, what, out) {
                let locks = self.lock(item).into_iter().collect();
                into.push(KeyedEntry { kind, key: name, decl, decls: vec![decl], fields, locks });
            }
        }
    }

    fn actions(&self, node: &Node, into: &mut Vec<KeyedEntry>, out: &mut Vec<Diagnostic>) {
        for item in node.as_seq().unwrap_or_default() {
            let Some(map) = item.as_map() else { continue };
            let mut fields = IndexMap::new();
            let mut id: Option<Spanned<String>> = None;
            for YamlEntry { key, value, .. } in map {
                let loc = self.loc(value.span);
                let field = match key.as_str() {
                    "id" => {
                        id = value.as_str().map(|s| Spanned { value: s.to_owned(), loc });
                        continue;
                    }
                    "file" => value
                        .as_str()
                        .map(|s| ("file", FieldValue::Path { written: s.to_owned(), resolved: self.resolve_path(s) })),
                    "args" => {
                        let items = value.as_seq().unwrap_or_default();
                        for item in items {
                            self.check_variables(item, out);
                        }
                        Some(("args", FieldValue::Args(items.iter().map(|a| self.arg_text(a)).collect())))
                    }
                    "control" => value.as_str().and_then(Control::parse).map(|c| ("control", FieldValue::Control(c))),
                    "timing" => value.as_str().and_then(Timing::parse).map(|t| ("timing", FieldValue::Timing(t))),
                    "rerun" => value.as_str().and_then(Rerun::parse).map(|r| ("rerun", FieldValue::Rerun(r))),
                    "enabled" => value.as_bool().map(|b| ("enabled", FieldValue::Bool(b))),
                    "timeout" => match value.as_str().map(duration::parse) {
                        Some(Ok(ms)) => Some((
                            "timeout",
                            FieldValue::Duration { ms, written: value.as_str().unwrap_or_default().to_owned() },
                        )),
                        Some(Err(why)) => {
                            // A malformed duration was already reported by the schema.
                            if !duration::is_well_formed(value.as_str().unwrap_or_default()) {
                                continue;
                            }
                            out.push(
                                Diagnostic::error("duet::action::timeout", format!("invalid timeout: {why}"))
                                    .at(loc, "here")
                                    .help("write a whole number and a unit, at most 7 days: 500ms, 30s, 2m or 1h"),
                            );
                            None
                        }
                        None => None,
                    },
                    _ => None,
                };
                if let Some((name, v)) = field {
                    fields.insert(name, Setting::new(v, loc));
                }
            }
            let head = self.loc(item.head());
            let id =
                if let Some(id) = id {
                    id
                } else if let Some(Setting { value: FieldValue::Path { written, .. }, loc, .. }) = fields.get("file") {
                    if let Some(stem) = default_id(written) {
                        Spanned { value: stem, loc: *loc }
                    } else {
                        out.push(
                            Diagnostic::error(
                                "duet::action::id",
                                format!("cannot derive an action id from the file name `{written}`"),
                            )
                            .at(*loc, "no usable file name")
                            .help("give the action an explicit `id` made of letters, digits, `.`, `_` and `-`"),
                        );
                        continue;
                    }
                } else {
                    out.push(Diagnostic::error("duet::action::anonymous", "an action needs an `id` or a `file`")
                    .at(head, "neither `id` nor `file`")
                    .help("add `file:` with the executable to run, or `id:` naming the action this entry overrides"));
                    continue;
                };
            let decl = id.loc;
            let locks = self.lock(item).into_iter().collect();
            into.push(KeyedEntry { kind: Kind::Action, key: id.value, decl, decls: vec![decl], fields, locks });
        }
    }

    /// `%NAME%` that is not one of the guide's variables but looks like one is probably a typo:
    /// it would be passed as written. (Other names may be the host's variables: not a warning.)
    fn check_variables(&self, arg: &Node, out: &mut Vec<Diagnostic>) {
        const NAMES: [&str; 4] =
            ["ACTIVE_UPGRADE_SIDE", "ACTIVE_UPGRADE_STATE", "ACTIVE_UPGRADE_REQUEST", "ACTIVE_UPGRADE_HW_SPLIT"];
        let Some(text) = arg.as_str() else { return };
        let mut rest = text;
        while let Some(start) = rest.find('%') {
            let after = &rest[start + 1..];
            let Some(len) = after.find('%') else { break };
            let name = &after[..len];
            rest = &after[len + 1..];
            if name.is_empty() || NAMES.contains(&name) {
                continue;
            }
            if let Some(hint) = suggest::did_you_mean(name, NAMES) {
                out.push(
                    Diagnostic::warning(
                        "duet::action::unknown-variable",
                        format!("`%{name}%` is not an Active Upgrade variable; it will be passed as written"),
                    )
                    .at(self.loc(arg.span), "unknown variable")
                    .help(hint),
                );
            }
        }
    }

    /// Numbers and booleans in `args` are passed as written, not as re-formatted values.
    fn arg_text(&self, node: &Node) -> String {
        match &node.value {
            Value::Str(s) => s.clone(),
            _ => self.source.text.get(node.span.start..node.span.end).unwrap_or_default().trim().to_owned(),
        }
    }

    /// Relative action paths are relative to the plan's own directory; `.` and `..` are
    /// removed lexically so the compiled plan shows one canonical spelling.
    fn resolve_path(&self, written: &str) -> PathBuf {
        let joined = self.source.dir().join(written);
        let mut out = PathBuf::new();
        for c in joined.components() {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::CurDir => {}
                c => out.push(c),
            }
        }
        out
    }
}

/// Plans are `*.yaml` or `*.yml` files (any case).
pub fn is_yaml_name(name: &str) -> bool {
    Path::new(name).extension().is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

/// The default action id: the file name without its extension.
fn default_id(written: &str) -> Option<String> {
    let stem = Path::new(written).file_stem()?.to_str()?;
    let mut chars = stem.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    valid.then(|| stem.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ids_come_from_the_file_stem() {
        assert_eq!(default_id("scripts/app-stop.sh").as_deref(), Some("app-stop"));
        assert_eq!(default_id("/opt/bin/backup").as_deref(), Some("backup"));
        assert_eq!(default_id("scripts/.hidden"), None);
        assert_eq!(default_id("scripts/my tool.sh"), None);
    }
}
