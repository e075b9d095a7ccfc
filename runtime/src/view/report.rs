//! `duet report`: one self-contained HTML file for a change board (no script, no fetch: every
//! style and picture is inline): the session, a timeline of every step per side with the merge
//! downtime marked, each request's DAG as SVG, failures with their output tails, the operators'
//! actions with who and why, and where the backups and the evidence went. Read from the
//! session directory only; the same journal gives the same file.

use std::fmt::Write as _;
use std::path::Path;

use duet_compiler::compiled::{CompiledPlan, Op, RequestName, Side, Step};
use duet_contract::record::{Entry, StepResult};
use sha2::Digest as _;

use crate::store::journal::Record;
use crate::store::layout::{Backup, SessionDir};
use crate::store::session::{SnapshotFile, View};

/// The report's format version, in the file (`<meta name="duet-report-version">`).
pub(crate) const FORMAT_VERSION: u32 = 1;

/// One attempt of a step, as the journal tells it.
#[derive(Clone, Debug)]
pub(crate) struct Span<'a> {
    pub(crate) request: RequestName,
    pub(crate) step: &'a str,
    pub(crate) side: Side,
    pub(crate) attempt: u32,
    pub(crate) start_ms: u64,
    /// `None`: still running (or cut off by a crash).
    pub(crate) end_ms: Option<u64>,
    pub(crate) result: Option<&'a StepResult>,
    /// An operator marked this failed attempt done (`duet skip`): who.
    pub(crate) skipped_by: Option<&'a str>,
}

/// Every step attempt of the journal, in the order they started.
pub(crate) fn spans<'a>(records: &'a [Record<Entry>], plan: Option<&CompiledPlan>) -> Vec<Span<'a>> {
    let mut spans: Vec<Span<'a>> = Vec::new();
    for r in records {
        match &r.entry {
            Entry::StepStarted { request, step, attempt } => spans.push(Span {
                request: *request,
                step,
                side: side_of(plan, *request, step),
                attempt: *attempt,
                start_ms: r.time_ms,
                end_ms: None,
                result: None,
                skipped_by: None,
            }),
            Entry::StepFinished { request, step, attempt, result, duration_ms, .. } => {
                let open = spans
                    .iter_mut()
                    .rev()
                    .find(|s| s.request == *request && s.step == step && s.attempt == *attempt && s.end_ms.is_none());
                match open {
                    Some(s) => {
                        s.end_ms = Some(r.time_ms);
                        s.result = Some(result);
                    }
                    // Finished without a start record (a skip, a reconciliation).
                    None => spans.push(Span {
                        request: *request,
                        step,
                        side: side_of(plan, *request, step),
                        attempt: *attempt,
                        start_ms: r.time_ms.saturating_sub(*duration_ms),
                        end_ms: Some(r.time_ms),
                        result: Some(result),
                        skipped_by: None,
                    }),
                }
            }
            Entry::Skip { request, step, user, .. } => {
                if let Some(s) = spans.iter_mut().rev().find(|s| s.request == *request && s.step == step) {
                    s.skipped_by = Some(user);
                }
            }
            _ => {}
        }
    }
    spans
}

/// The side a step runs on: the compiled plan's, else its id's (`…@upgrade`, `evidence:upgrade`).
fn side_of(plan: Option<&CompiledPlan>, request: RequestName, step: &str) -> Side {
    plan.and_then(|p| p.requests.get(&request))
        .and_then(|r| r.steps.iter().find(|s| s.id == step))
        .map_or_else(|| if step.ends_with("upgrade") { Side::Upgrade } else { Side::Production }, |s| s.side)
}

/// The merge downtime: from the first step of ExecuteMerge that stops the applications on the
/// Production Side to the end of the last one that starts them on the Upgrade Side (the
/// hardware merge itself if the plan stops or starts none), in Unix ms.
pub(crate) fn merge_downtime(spans: &[Span<'_>], plan: Option<&CompiledPlan>) -> Option<(u64, u64)> {
    let step = |s: &Span<'_>| -> Option<Step> {
        plan?.requests.get(&s.request)?.steps.iter().find(|st| st.id == s.step).cloned()
    };
    let control = |st: &Step| {
        let action = st.action.as_ref()?;
        plan?.actions.iter().find(|a| &a.id == action).map(|a| a.control)
    };
    let merge: Vec<(&Span<'_>, Option<Step>)> =
        spans.iter().filter(|s| s.request == RequestName::ExecuteMerge).map(|s| (s, step(s))).collect();
    let stops = |st: &Step| {
        st.side == Side::Production
            && (matches!(st.op, Op::Stop | Op::DisableAndStop)
                || control(st) == Some(duet_compiler::plan::Control::Stop))
    };
    let starts = |st: &Step| {
        st.side == Side::Upgrade
            && (st.op == Op::RestoreAndStart || control(st) == Some(duet_compiler::plan::Control::Start))
    };
    let platform = merge.iter().find(|(_, st)| st.as_ref().is_some_and(|st| st.op == Op::Merge));
    let start = merge.iter().find(|(_, st)| st.as_ref().is_some_and(stops)).or(platform).map(|(s, _)| s.start_ms)?;
    let end =
        merge.iter().rev().find(|(_, st)| st.as_ref().is_some_and(starts)).or(platform).and_then(|(s, _)| s.end_ms)?;
    (end >= start).then_some((start, end))
}

/// HTML text: markup escaped, control and bidi characters shown as `\x{..}`.
fn html(text: &str) -> String {
    let shown = crate::view::console::escape(text);
    let mut out = String::with_capacity(shown.len());
    for c in shown.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn time(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

pub(crate) fn seconds(ms: u64) -> String {
    #[expect(clippy::cast_precision_loss, reason = "a duration shown to a tenth of a second")]
    let s = ms as f64 / 1000.0;
    format!("{s:.1}s")
}

/// A step attempt's outcome as a CSS class and a word: a failed one an operator skipped is
/// skipped.
fn span_outcome(span: &Span<'_>) -> (&'static str, &'static str) {
    if span.skipped_by.is_some() { ("skipped", "failed, then skipped") } else { outcome(span.result) }
}

/// A step's outcome as a CSS class and a word.
pub(crate) fn outcome(result: Option<&StepResult>) -> (&'static str, &'static str) {
    match result {
        None => ("running", "not finished"),
        Some(StepResult::Success { .. } | StepResult::Reconciled { .. }) => ("ok", "ok"),
        Some(StepResult::Skipped { .. }) => ("skipped", "skipped"),
        Some(StepResult::Failed { .. }) => ("failed", "FAILED"),
        Some(_) => ("stopped", "stopped"),
    }
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}code,pre{font-family:ui-monospace,monospace;font-size:12px}
pre{background:#f6f6f6;padding:.5em;overflow:auto;max-height:20em}
.ok{fill:#4c9a4c;color:#2a6b2a}.failed{fill:#c0392b;color:#c0392b;font-weight:bold}.skipped{fill:#e08e0b;color:#b26b00}
.stopped,.running{fill:#999;color:#666}.pending{fill:#ddd;color:#888}
svg text{font:11px ui-monospace,monospace;fill:#222}svg .label{font-weight:bold}
.downtime{fill:#c0392b;fill-opacity:.15;stroke:#c0392b;stroke-dasharray:4 2}
.edge{stroke:#888;stroke-width:1;fill:none}.node rect{stroke:#444;stroke-width:.5}";

/// The report of a session (or a readiness check): one HTML document.
pub(crate) fn render(view: &View, plan: Option<&CompiledPlan>) -> String {
    let spans = spans(&view.records, plan);
    let downtime = merge_downtime(&spans, plan);
    let id = &view.progress.id;
    let mut out = String::with_capacity(64 << 10);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"duet-report-version\" content=\"{FORMAT_VERSION}\">\
         <title>duet session {}</title><style>{STYLE}</style></head><body>\n",
        html(id)
    );
    let title = plan.and_then(|p| p.title.as_deref()).unwrap_or("(untitled plan)");
    let _ = writeln!(out, "<h1>Upgrade session {}: {}</h1>", html(id), html(title));
    session_section(&mut out, view);
    sources_section(&mut out, &view.dir);
    timeline_section(&mut out, &spans, downtime);
    steps_section(&mut out, &spans);
    if let Some(plan) = plan {
        dag_section(&mut out, plan, &spans);
    }
    failures_section(&mut out, &view.records);
    operators_section(&mut out, &view.records);
    backups_section(&mut out, view, plan);
    out.push_str("</body></html>\n");
    out
}

fn session_section(out: &mut String, view: &View) {
    let records = &view.records;
    let mut rows: Vec<(&str, String)> = Vec::new();
    if let Some(Entry::Begin { id, plan, platform, duet }) = records.first().map(|r| &r.entry) {
        rows.extend([("Session", id.clone()), ("Plan", plan.clone()), ("Machine", platform.clone())]);
        rows.push(("duet", duet.clone()));
    }
    let mut users: Vec<&str> = records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Operation { user, .. }
            | Entry::Retry { user, .. }
            | Entry::Skip { user, .. }
            | Entry::Approved { user, .. } => Some(user.as_str()),
            _ => None,
        })
        .collect();
    users.dedup();
    rows.push(("Who", users.join(", ")));
    if let (Some(first), Some(last)) = (records.first(), records.last()) {
        rows.push((
            "When",
            format!("{} to {} ({})", time(first.time_ms), time(last.time_ms), seconds(last.time_ms - first.time_ms)),
        ));
    }
    let p = &view.progress;
    let finished = p.finished_ok(RequestName::Finish);
    let state = if finished {
        "finished".to_owned()
    } else {
        format!("{} | {}", p.upgrade_state().as_str(), p.operational().as_str())
    };
    let verdict = if p.finished_ok(RequestName::Commit) {
        "committed: the upgrade is permanent"
    } else if p.finished_ok(RequestName::AbortFromSplit) || p.finished_ok(RequestName::AbortFromMerge) {
        "aborted: the original software was restored"
    } else if p.broken().is_some() {
        "Broken: a step failed (see Failures)"
    } else {
        "in progress"
    };
    rows.push(("Outcome", format!("{verdict} (state: {state})")));
    if let Some(damage) = &view.damage {
        rows.push(("Journal", format!("damaged; this report ends at the last intact record: {damage}")));
    }
    out.push_str("<h2>Session</h2>\n<table id=\"session\">\n");
    for (k, v) in rows {
        let _ = writeln!(out, "<tr><th>{k}</th><td>{}</td></tr>", html(&v));
    }
    out.push_str("</table>\n");
}

fn sources_section(out: &mut String, dir: &Path) {
    let manifest = std::fs::read_to_string(SessionDir(dir).sources_manifest()).ok();
    let files: Vec<SnapshotFile> = manifest.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    out.push_str("<h2>Plan sources</h2>\n<p>The snapshot the session ran (SHA-256 of each file).</p>\n<table id=\"sources\">\n<tr><th>File</th><th>SHA-256</th></tr>\n");
    for f in &files {
        let hash = std::fs::read(dir.join(&f.snapshot)).map_or_else(
            |e| format!("(cannot read the snapshot: {e})"),
            |bytes| {
                sha2::Sha256::digest(&bytes).iter().fold(String::new(), |mut s, b| {
                    let _ = write!(s, "{b:02x}");
                    s
                })
            },
        );
        let _ = writeln!(out, "<tr><td>{}</td><td><code>{hash}</code></td></tr>", html(&f.path));
    }
    out.push_str("</table>\n");
}

/// Pixels of the timeline's drawing area, and of a row.
const TIMELINE_WIDTH: u64 = 1100;
const ROW: u64 = 34;
const LABEL: u64 = 130;

fn timeline_section(out: &mut String, spans: &[Span<'_>], downtime: Option<(u64, u64)>) {
    out.push_str("<h2>Timeline</h2>\n");
    let (Some(t0), Some(t1)) =
        (spans.iter().map(|s| s.start_ms).min(), spans.iter().map(|s| s.end_ms.unwrap_or(s.start_ms)).max())
    else {
        out.push_str("<p>No step ran.</p>\n");
        return;
    };
    let total = (t1 - t0).max(1);
    let x = |t: u64| LABEL + (t - t0) * TIMELINE_WIDTH / total;
    if let Some((start, end)) = downtime {
        let _ = writeln!(
            out,
            "<p id=\"downtime\">Merge downtime (applications stopped on the Production Side until started on the Upgrade Side): <b>{}</b>, {} to {}.</p>",
            seconds(end - start),
            time(start),
            time(end)
        );
    }
    let height = 40 + 2 * (ROW + 8) + 10;
    let _ = writeln!(
        out,
        "<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"timeline of every step per side\">",
        LABEL + TIMELINE_WIDTH + 20
    );
    // The requests, as bands over both rows.
    let mut requests: Vec<(RequestName, u64, u64)> = Vec::new();
    for s in spans {
        let end = s.end_ms.unwrap_or(s.start_ms);
        match requests.iter_mut().find(|(r, ..)| *r == s.request) {
            Some((_, a, b)) => (*a, *b) = ((*a).min(s.start_ms), (*b).max(end)),
            None => requests.push((s.request, s.start_ms, end)),
        }
    }
    for (i, (r, a, b)) in requests.iter().enumerate() {
        let y = [2, 12, 22][i % 3];
        let _ = writeln!(
            out,
            "<g class=\"request\"><line x1=\"{0}\" x2=\"{0}\" y1=\"0\" y2=\"{height}\" stroke=\"#ccc\"/><text x=\"{0}\" y=\"{1}\">{2}</text><title>{2}: {3}</title></g>",
            x(*a),
            y + 9,
            r.as_str(),
            seconds(b - a)
        );
    }
    for (row, (side, name)) in
        [(Side::Production, "Production Side"), (Side::Upgrade, "Upgrade Side")].iter().enumerate()
    {
        let y = 40 + row as u64 * (ROW + 8);
        let _ = writeln!(out, "<text class=\"label\" x=\"4\" y=\"{}\">{name}</text>", y + ROW / 2 + 4);
        for s in spans.iter().filter(|s| s.side == *side) {
            let end = s.end_ms.unwrap_or(t1);
            let (class, word) = span_outcome(s);
            let _ = writeln!(
                out,
                "<rect class=\"span {class}\" data-step=\"{}\" data-request=\"{}\" x=\"{}\" y=\"{y}\" width=\"{}\" height=\"{ROW}\"><title>{} {} (attempt {}): {word}, {}</title></rect>",
                html(s.step),
                s.request.as_str(),
                x(s.start_ms),
                (x(end) - x(s.start_ms)).max(2),
                s.request.as_str(),
                html(s.step),
                s.attempt,
                seconds(end - s.start_ms)
            );
        }
    }
    if let Some((start, end)) = downtime {
        let _ = writeln!(
            out,
            "<rect class=\"downtime\" x=\"{}\" y=\"36\" width=\"{}\" height=\"{}\"><title>merge downtime {}</title></rect>",
            x(start),
            (x(end) - x(start)).max(2),
            ROW * 2 + 16,
            seconds(end - start)
        );
    }
    out.push_str("</svg>\n");
}

fn steps_section(out: &mut String, spans: &[Span<'_>]) {
    out.push_str("<h2>Steps per side</h2>\n");
    for (side, name) in [(Side::Production, "Production Side"), (Side::Upgrade, "Upgrade Side")] {
        let _ = writeln!(
            out,
            "<h3>{name}</h3>\n<table class=\"steps\" data-side=\"{}\">\n<tr><th>Request</th><th>Step</th><th>Attempt</th><th>Started</th><th>Duration</th><th>Outcome</th></tr>",
            side.as_str()
        );
        for s in spans.iter().filter(|s| s.side == side) {
            let (class, word) = span_outcome(s);
            let duration = s.end_ms.map_or_else(|| "-".to_owned(), |e| seconds(e - s.start_ms));
            let _ = writeln!(
                out,
                "<tr class=\"step\" data-step=\"{0}\"><td>{1}</td><td><code>{0}</code></td><td>{2}</td><td>{3}</td><td>{duration}</td><td class=\"{class}\">{word}</td></tr>",
                html(s.step),
                s.request.as_str(),
                s.attempt,
                time(s.start_ms)
            );
        }
        out.push_str("</table>\n");
    }
}

/// Each request that ran, as a DAG: a row per depth (the longest chain of dependencies before
/// the step), the steps of a row side by side, an edge from each dependency.
fn dag_section(out: &mut String, plan: &CompiledPlan, spans: &[Span<'_>]) {
    out.push_str("<h2>Requests as run (DAGs)</h2>\n");
    let ran: Vec<RequestName> = spans.iter().map(|s| s.request).fold(Vec::new(), |mut v, r| {
        if !v.contains(&r) {
            v.push(r);
        }
        v
    });
    for name in ran {
        let Some(request) = plan.requests.get(&name) else { continue };
        let _ = writeln!(out, "<h3>{} (state {})</h3>", name.as_str(), request.state.as_str());
        dag(out, name, &request.steps, spans);
    }
}

const NODE_W: u64 = 250;
const NODE_H: u64 = 24;
const GAP_X: u64 = 16;
const GAP_Y: u64 = 22;

fn dag(out: &mut String, name: RequestName, steps: &[Step], spans: &[Span<'_>]) {
    // Steps come in topological order, so a step's dependencies have their depth already.
    let mut depth: Vec<usize> = Vec::with_capacity(steps.len());
    for s in steps {
        let d = s.after.iter().filter_map(|a| steps.iter().position(|t| &t.id == a)).map(|i| depth[i] + 1).max();
        depth.push(d.unwrap_or(0));
    }
    let mut column = vec![0_u64; steps.len()];
    let mut per_row: Vec<u64> = Vec::new();
    for (i, &d) in depth.iter().enumerate() {
        if per_row.len() <= d {
            per_row.resize(d + 1, 0);
        }
        column[i] = per_row[d];
        per_row[d] += 1;
    }
    let at = |i: usize| (8 + column[i] * (NODE_W + GAP_X), 8 + depth[i] as u64 * (NODE_H + GAP_Y));
    let width = per_row.iter().max().copied().unwrap_or(1) * (NODE_W + GAP_X) + 16;
    let height = per_row.len() as u64 * (NODE_H + GAP_Y) + 16;
    let _ = writeln!(
        out,
        "<svg class=\"dag\" data-request=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"the steps of {0} and their dependencies\">",
        name.as_str()
    );
    for (i, s) in steps.iter().enumerate() {
        for a in &s.after {
            let Some(j) = steps.iter().position(|t| &t.id == a) else { continue };
            let ((x1, y1), (x2, y2)) = (at(j), at(i));
            let _ = writeln!(
                out,
                "<line class=\"edge\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{y2}\"/>",
                x1 + NODE_W / 2,
                y1 + NODE_H,
                x2 + NODE_W / 2
            );
        }
    }
    for (i, s) in steps.iter().enumerate() {
        let last = spans.iter().rev().find(|sp| sp.request == name && sp.step == s.id);
        let (class, word) = last.map_or(("pending", "not run"), span_outcome);
        let (x, y) = at(i);
        let _ = writeln!(
            out,
            "<g class=\"node\" data-step=\"{0}\"><rect class=\"{class}\" x=\"{x}\" y=\"{y}\" width=\"{NODE_W}\" height=\"{NODE_H}\" rx=\"4\" fill-opacity=\".35\"/><text x=\"{1}\" y=\"{2}\">{0}</text><title>{0} ({3}): {word}</title></g>",
            html(&s.id),
            x + 6,
            y + 16,
            s.side.as_str()
        );
    }
    out.push_str("</svg>\n");
}

fn failures_section(out: &mut String, records: &[Record<Entry>]) {
    out.push_str("<h2>Failures</h2>\n");
    let mut any = false;
    for r in records {
        let Entry::StepFinished {
            request, step, attempt, result: StepResult::Failed { message, help }, output, ..
        } = &r.entry
        else {
            continue;
        };
        any = true;
        let _ = writeln!(
            out,
            "<div class=\"failure\" data-step=\"{0}\"><h3>{1} <code>{0}</code> (attempt {attempt}) at {2}</h3><p class=\"failed\">{3}</p>",
            html(step),
            request.as_str(),
            time(r.time_ms),
            html(message)
        );
        if let Some(help) = help {
            let _ = writeln!(out, "<p>help: {}</p>", html(help));
        }
        if let Some(o) = output {
            if let Some(code) = o.exit {
                let _ = writeln!(out, "<p>exit value: {code}</p>");
            }
            for (name, s) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
                if s.bytes > 0 {
                    let whole = s.file.as_deref().map(|f| format!("; all of it in {}", html(f))).unwrap_or_default();
                    let _ = writeln!(out, "<p>{name} ({} bytes{whole}):</p><pre>{}</pre>", s.bytes, html(&s.tail));
                }
            }
        }
        out.push_str("</div>\n");
    }
    if !any {
        out.push_str("<p>No step failed.</p>\n");
    }
}

fn operators_section(out: &mut String, records: &[Record<Entry>]) {
    out.push_str("<h2>Operator actions</h2>\n<table id=\"operators\">\n<tr><th>When</th><th>Who</th><th>What</th><th>Why</th></tr>\n");
    for r in records {
        let (who, what, why) = match &r.entry {
            Entry::Operation { operation, command, user, automatic, requests, .. } => {
                let names: Vec<&str> = requests.iter().map(|r| r.as_str()).collect();
                match automatic {
                    Some(b) => (
                        "duet".to_owned(),
                        format!("{} ({})", operation.name(), names.join(", ")),
                        format!("the plan says to abort when this fails: {} failed: {}", b.step, b.message),
                    ),
                    None => (
                        user.clone(),
                        format!("{} (`{command}`): {}", operation.name(), names.join(", ")),
                        String::new(),
                    ),
                }
            }
            Entry::Retry { request, user, from, reason, .. } => {
                let from = from.as_ref().map(|f| format!(" from {f}")).unwrap_or_default();
                (user.clone(), format!("retry {}{from}", request.as_str()), reason.clone().unwrap_or_default())
            }
            Entry::Skip { step, user, reason, .. } => (user.clone(), format!("skip {step}"), reason.clone()),
            Entry::Approved { step, user, reason, .. } => (user.clone(), format!("approve {step}"), reason.clone()),
            _ => continue,
        };
        let _ = writeln!(
            out,
            "<tr class=\"operator\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(r.time_ms),
            html(&who),
            html(&what),
            html(&why)
        );
    }
    out.push_str("</table>\n");
}

fn backups_section(out: &mut String, view: &View, plan: Option<&CompiledPlan>) {
    out.push_str("<h2>Event-log backups and evidence</h2>\n<ul id=\"backups\">\n");
    if let Some(dir) = plan.and_then(|p| p.logs.staging_dir.as_deref()) {
        let _ = writeln!(out, "<li>The plan's staging directory on the machine: <code>{}</code></li>", html(dir));
    }
    for kind in [Backup::Logs, Backup::Evidence] {
        let dir = SessionDir(&view.dir).backups(kind);
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        if !files.is_empty() {
            let _ = writeln!(
                out,
                "<li><code>{}</code>: {}</li>",
                html(&dir.display().to_string()),
                html(&files.join(", "))
            );
        }
    }
    for r in &view.records {
        if let Entry::StepFinished { step, result: StepResult::Success { message }, .. } = &r.entry
            && (step.starts_with("logs:") || step.starts_with("evidence:"))
        {
            let _ = writeln!(out, "<li><code>{}</code>: {}</li>", html(step), html(message));
        }
    }
    out.push_str("</ul>\n");
}

#[cfg(test)]
mod tests {
    #[test]
    fn html_text_cannot_become_markup_or_drive_a_terminal() {
        assert_eq!(super::html("<script>&\"'"), "&lt;script&gt;&amp;&quot;&#39;");
        assert_eq!(super::html("a\u{1b}[2J"), "a\\x{1b}[2J");
    }
}
