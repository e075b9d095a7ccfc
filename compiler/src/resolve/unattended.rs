//! The resolved unattended-upgrade entries (issue 12) made into the compiled plan's
//! [`Unattended`]: each task, check, approval and notification complete after nesting, and the
//! version hop within its limit.

use crate::compiled::{self, Approval, Check, Gate, Notify, OnFailure, Task, Unattended, Versions};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::plan::{FieldValue, KeyedEntry, Kind, Rerun, Setting, Spanned, VersionHop};
use crate::resolve::DEFAULT_TIMEOUT_MS;
use crate::source::{Loc, SourceMap};
use crate::version::Version;

/// One try of a check may take this long unless it says otherwise.
pub const DEFAULT_CHECK_TIMEOUT_MS: u64 = 30_000;
/// A notification may take this long unless it says otherwise.
pub const DEFAULT_NOTIFY_TIMEOUT_MS: u64 = 60_000;

/// A software name the plan relies on the platform's software inventory to know: a `version`
/// check's, or the `versions` hop's.
#[derive(Clone, Debug)]
pub struct SoftwareRef {
    pub name: Spanned<String>,
    /// `version check` or `versions`: what refers to it, for the message.
    pub what: &'static str,
}

/// A program an upgrade task or a `run` check runs on the Upgrade Side, which binding checks
/// like an action's executable.
#[derive(Clone, Debug)]
pub struct ProgramRef {
    /// `Task` or `Check`.
    pub kind: Kind,
    pub id: String,
    pub file: std::path::PathBuf,
    /// The task's `file`, or the check's `run`.
    pub loc: Loc,
}

/// What the resolved unattended keys compile to.
#[derive(Debug, Default)]
pub struct Resolved {
    pub unattended: Unattended,
    pub software: Vec<SoftwareRef>,
    pub programs: Vec<ProgramRef>,
}

fn source(loc: Loc, sources: &SourceMap) -> compiled::Source {
    let file = sources.get(loc.file);
    compiled::Source { file: file.display.clone(), line: file.line_col(loc.span.start).0 }
}

/// The entries of `entries` (enabled, in resolved order) that are unattended ones, and the
/// top-level `versions` and `on_failure`, as the compiled plan carries them.
pub fn complete(
    entries: &[KeyedEntry],
    versions: Option<&Setting>,
    on_failure: Option<&Setting>,
    sources: &SourceMap,
    diags: &mut Diagnostics,
) -> Resolved {
    let mut out = Resolved::default();
    for entry in entries {
        let fields = Fields(entry);
        match entry.kind {
            Kind::Task => {
                if let Some(task) = task(&fields, sources, diags) {
                    let loc = entry.fields.get("file").map_or(entry.decl, |s| s.loc);
                    let file = task.file.clone().into();
                    out.programs.push(ProgramRef { kind: Kind::Task, id: task.id.clone(), file, loc });
                    out.unattended.tasks.push(task);
                }
            }
            Kind::Check => {
                if let Some(check) = check(&fields, sources, diags) {
                    let loc = entry.fields.get("check").map_or(entry.decl, |s| s.loc);
                    if let compiled::CheckKind::Run { file, .. } = &check.check {
                        let file = file.into();
                        out.programs.push(ProgramRef { kind: Kind::Check, id: check.id.clone(), file, loc });
                    }
                    if let compiled::CheckKind::Version { software, .. } = &check.check {
                        out.software.push(SoftwareRef {
                            name: Spanned { value: software.clone(), loc },
                            what: "version check",
                        });
                    }
                    out.unattended.checks.push(check);
                }
            }
            Kind::Approval => {
                if let Some(before) =
                    fields.required("before", |v| if let FieldValue::Gate(g) = v { Some(*g) } else { None }, diags)
                {
                    out.unattended.approvals.push(Approval {
                        id: entry.key.clone(),
                        before,
                        expires_ms: fields.duration("expires"),
                        on_expiry: match fields.get("on_expiry") {
                            Some(FieldValue::OnFailure(o)) => *o,
                            _ => OnFailure::Hold,
                        },
                        source: source(entry.decl, sources),
                    });
                }
            }
            Kind::Notify => {
                if let Some(file) = fields.required("file", file_of, diags) {
                    out.unattended.notify.push(Notify {
                        id: entry.key.clone(),
                        file,
                        args: fields.args(),
                        on: match fields.get("on") {
                            Some(FieldValue::Events(events)) if !events.is_empty() => events.clone(),
                            _ => compiled::Event::ALL.to_vec(),
                        },
                        timeout_ms: fields.duration("timeout").unwrap_or(DEFAULT_NOTIFY_TIMEOUT_MS),
                        source: source(entry.decl, sources),
                    });
                }
            }
            Kind::Service | Kind::Action | Kind::Log => {}
        }
    }
    if let Some(OnFailure::Abort) =
        on_failure.and_then(|s| if let FieldValue::OnFailure(o) = s.value { Some(o) } else { None })
    {
        out.unattended.on_failure = OnFailure::Abort;
    }
    if let Some(Setting { value: FieldValue::Versions(hop), loc, .. }) = versions {
        if check_hop(hop, *loc, diags) {
            out.software
                .push(SoftwareRef { name: Spanned { value: hop.software.clone(), loc: *loc }, what: "versions" });
            out.unattended.versions = Some(Versions {
                software: hop.software.clone(),
                from: hop.from.clone(),
                to: hop.to.clone(),
                max_major_hop: hop.max_major_hop,
                source: source(*loc, sources),
            });
        }
    }
    out
}

fn file_of(value: &FieldValue) -> Option<String> {
    match value {
        FieldValue::Path { resolved, .. } => Some(resolved.display().to_string()),
        _ => None,
    }
}

/// An entry's fields, read by name.
struct Fields<'a>(&'a KeyedEntry);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&FieldValue> {
        self.0.fields.get(name).map(|s| &s.value)
    }

    fn duration(&self, name: &str) -> Option<u64> {
        match self.get(name) {
            Some(FieldValue::Duration { ms, .. }) => Some(*ms),
            _ => None,
        }
    }

    fn args(&self) -> Vec<String> {
        match self.get("args") {
            Some(FieldValue::Args(a)) => a.clone(),
            _ => Vec::new(),
        }
    }

    /// A field every such entry must have once nesting is resolved ("after resolution every
    /// action must have `file` and `control`", and likewise here).
    fn required<T>(&self, name: &str, read: impl Fn(&FieldValue) -> Option<T>, diags: &mut Diagnostics) -> Option<T> {
        if let Some(value) = self.get(name).and_then(read) {
            return Some(value);
        }
        let entry = self.0;
        let (code, what, field) = match entry.kind {
            Kind::Task => ("duet::task::incomplete", "task", "`file`"),
            Kind::Check if name == "check" => ("duet::verify::incomplete", "check", "`run`, `http` or `version`"),
            Kind::Check => ("duet::verify::incomplete", "check", "`before`"),
            Kind::Approval => ("duet::approve::incomplete", "approval", "`before`"),
            _ => ("duet::notify::incomplete", "notification", "`file`"),
        };
        let mut d = Diagnostic::error(code, format!("{what} `{}` has no {field} after nesting is resolved", entry.key))
            .at(entry.decl, format!("missing {field}"))
            .help(format!("set {field} in one of the plans that declare `{}`", entry.key));
        for decl in entry.decls.iter().skip(1) {
            d = d.related(*decl, "also declared here");
        }
        diags.push(d);
        None
    }
}

fn task(fields: &Fields<'_>, sources: &SourceMap, diags: &mut Diagnostics) -> Option<Task> {
    let entry = fields.0;
    let file = fields.required("file", file_of, diags)?;
    Some(Task {
        id: entry.key.clone(),
        file,
        args: fields.args(),
        timeout_ms: fields.duration("timeout").unwrap_or(DEFAULT_TIMEOUT_MS),
        rerun: match fields.get("rerun") {
            Some(FieldValue::Rerun(r)) => *r,
            _ => Rerun::Safe,
        },
        restart: matches!(fields.get("restart"), Some(FieldValue::Bool(true))),
        installs: match fields.get("installs") {
            Some(FieldValue::Software(s)) => Some(s.clone()),
            _ => None,
        },
        source: source(entry.decl, sources),
    })
}

fn check(fields: &Fields<'_>, sources: &SourceMap, diags: &mut Diagnostics) -> Option<Check> {
    let entry = fields.0;
    let before: Option<Gate> =
        fields.required("before", |v| if let FieldValue::Gate(g) = v { Some(*g) } else { None }, diags);
    let kind = fields.required("check", |v| if let FieldValue::Check(c) = v { Some(c.clone()) } else { None }, diags);
    Some(Check {
        id: entry.key.clone(),
        before: before?,
        check: kind?,
        timeout_ms: fields.duration("timeout").unwrap_or(DEFAULT_CHECK_TIMEOUT_MS),
        retry: match fields.get("retry") {
            Some(FieldValue::Retry(r)) => Some(*r),
            _ => None,
        },
        source: source(entry.decl, sources),
    })
}

/// The message of a hop that is too big: "10.2 -> 14.0 is 4 major versions; at most 2 per
/// upgrade: upgrade to 12.x first". Readiness words a machine that is not at `from` alike.
pub fn hop_too_big(from: &Version, to: &Version, max: u32) -> Option<String> {
    let hop = to.major().saturating_sub(from.major());
    (hop > u64::from(max)).then(|| {
        let via = from.major() + u64::from(max);
        format!("{from} -> {to} is {hop} major versions; at most {max} per upgrade: upgrade to {via}.x first")
    })
}

/// The hop is forwards and within `max_major_hop`. (`from` and `to` parsed when read.)
fn check_hop(hop: &VersionHop, loc: Loc, diags: &mut Diagnostics) -> bool {
    let (Ok(from), Ok(to)) = (Version::parse(&hop.from), Version::parse(&hop.to)) else { return false };
    if to < from {
        diags.push(
            Diagnostic::error(
                "duet::versions::downgrade",
                format!("{} {} -> {} goes backwards", hop.software, hop.from, hop.to),
            )
            .at(loc, "`to` is older than `from`")
            .help("an upgrade goes to a newer version; to go back, abort the session instead"),
        );
        return false;
    }
    if let Some(message) = hop.max_major_hop.and_then(|max| hop_too_big(&from, &to, max)) {
        diags.push(
            Diagnostic::error("duet::versions::hop", message)
                .at(loc, "hop too big")
                .help("split the upgrade into plans that each stay within `max_major_hop`"),
        );
        return false;
    }
    true
}

#[cfg(test)]
mod tests;
