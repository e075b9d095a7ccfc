//! `duet console`'s screen (ratatui): the guide's layout (chapter 2, "Understanding the Active
//! Upgrade Console Interface"): a title bar with the page's name, the navigation bar, the main
//! window of the selected page, and the status bar (`Production Side | Split | Ready    Partner:
//! OS Up`, guide 4-25). The activity log is a tree, a request's entries under it, with the
//! guide's severities (table 4-2); Enter on an entry opens its detail. A pure function of what
//! was read ([`Model`]) and what the operator selected ([`Ui`]): the `TestBackend` snapshots draw
//! exactly what a terminal shows.

use std::collections::HashSet;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use duet_compiler::compiled::{CompiledPlan, RequestName, State};
use duet_contract::record::{Command, Entry, Severity};
use duet_contract::status::Status;

use crate::state::{self, Progress};
use crate::store::journal::Record;
use crate::view::activity::{self, ActivityEntry};
use crate::view::console::escape;
use crate::view::report;

/// The pages of the navigation bar, in its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Page {
    Configuration,
    Summary,
    Readiness,
    Split,
    Merge,
    Commit,
    Abort,
    Finish,
    Activity,
}

impl Page {
    pub(crate) const ALL: [Self; 9] = [
        Self::Configuration,
        Self::Summary,
        Self::Readiness,
        Self::Split,
        Self::Merge,
        Self::Commit,
        Self::Abort,
        Self::Finish,
        Self::Activity,
    ];

    pub(crate) fn title(self) -> &'static str {
        match self {
            Self::Configuration => "Configuration",
            Self::Summary => "Upgrade Summary",
            Self::Readiness => "Readiness",
            Self::Split => "Split",
            Self::Merge => "Merge",
            Self::Commit => "Commit",
            Self::Abort => "Abort",
            Self::Finish => "Finish",
            Self::Activity => "Activity Log",
        }
    }

    /// The requests whose steps the page shows.
    fn requests(self) -> &'static [RequestName] {
        match self {
            Self::Readiness => &[RequestName::CheckReadiness],
            Self::Split => &[RequestName::PrepareSplit, RequestName::ExecuteSplit],
            Self::Merge => &[RequestName::Upgrade, RequestName::PrepareMerge, RequestName::ExecuteMerge],
            Self::Commit => &[RequestName::Commit],
            Self::Abort => &[RequestName::AbortFromSplit, RequestName::AbortFromMerge],
            Self::Finish => &[RequestName::Finish],
            Self::Configuration | Self::Summary | Self::Activity => &[],
        }
    }

    /// The commands the page offers, in the order its keys list them.
    pub(crate) fn commands(self) -> &'static [Command] {
        match self {
            Self::Readiness => &[Command::Readiness],
            Self::Split => &[Command::Split],
            Self::Merge => &[Command::Upgrade, Command::Merge],
            Self::Commit => &[Command::Commit],
            Self::Abort => &[Command::Abort],
            Self::Finish => &[Command::Finish],
            Self::Configuration | Self::Summary | Self::Activity => &[],
        }
    }

    /// The page of a request in progress.
    pub(crate) fn of(request: RequestName) -> Self {
        Self::ALL.into_iter().find(|p| p.requests().contains(&request)).unwrap_or(Self::Activity)
    }
}

/// Everything the console read: the state directory's status, the session's journal and plan.
#[derive(Clone, Debug)]
pub(crate) struct Model {
    pub(crate) status: Status,
    pub(crate) records: Vec<Record<Entry>>,
    pub(crate) progress: Option<Progress>,
    pub(crate) plan: Option<CompiledPlan>,
    /// The plan file a readiness check or split would start from.
    pub(crate) plan_file: Option<String>,
    pub(crate) state_dir: String,
    /// The command the console itself started, while it runs or after it ended.
    pub(crate) driving: Option<String>,
}

impl Model {
    /// Whether `command` may run now, and if not, why (the state model's refusal, or another
    /// process driving the session).
    pub(crate) fn allowed(&self, command: Command) -> Result<(), String> {
        if let Some(driver) = &self.status.driver {
            return Err(format!("{} is running ({driver}); watch it here", command_of(driver.command.as_deref())));
        }
        if matches!(command, Command::Readiness | Command::Split) && self.plan_file.is_none() {
            return Err("start the console with a plan (`duet console PLAN`) to run this".to_owned());
        }
        let progress = self.progress.as_ref().filter(|_| self.status.session.is_some());
        state::admit(command, progress).map(|_| ()).map_err(|r| format!("{} ({})", r.message, r.help))
    }

    /// The failed step `duet skip` would mark done, if the state model allows a skip (the step
    /// itself is judged by `duet skip`: only a failed action step may be skipped).
    pub(crate) fn skippable(&self) -> Result<String, String> {
        self.allowed(Command::Skip)?;
        self.status.broken.as_ref().map(|b| b.step.clone()).ok_or_else(|| "no step failed".to_owned())
    }

    /// The step a line of the activity log is about (its start or its end), to run it and what
    /// follows again: `duet retry --from STEP`, where a retry is allowed.
    pub(crate) fn retryable_from(&self, seq: Option<u64>) -> Result<String, String> {
        self.allowed(Command::Retry)?;
        seq.and_then(|seq| self.records.iter().find(|r| r.seq == seq))
            .and_then(|r| match &r.entry {
                Entry::StepStarted { step, .. } | Entry::StepFinished { step, .. } => Some(step.clone()),
                _ => None,
            })
            .ok_or_else(|| "select a step's line in the activity log to retry from it".to_owned())
    }

    /// The page of what runs now, or ran last.
    pub(crate) fn current_page(&self) -> Page {
        let Some(progress) = &self.progress else { return Page::Readiness };
        match progress.current().map(|(r, _)| r) {
            Some(RequestName::Finish) if progress.finished_ok(RequestName::Finish) => Page::Finish,
            Some(request) => Page::of(request),
            None => Page::Readiness,
        }
    }
}

fn command_of(line: Option<&str>) -> String {
    line.and_then(|l| l.split_whitespace().nth(1)).map_or_else(|| "duet".to_owned(), |c| format!("`duet {c}`"))
}

/// A command that takes the operator's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Prompted {
    /// `duet approve`: the approval a `duet run` waits at.
    Approve,
    /// `duet skip STEP`: the failed action step of the Broken request.
    Skip(String),
    /// `duet retry --from STEP`: the step selected in the activity log, and what follows it.
    RetryFrom(String),
}

/// The reason being typed for a [`Prompted`] command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Prompt {
    pub(crate) what: Prompted,
    pub(crate) text: String,
}

/// What the operator selected.
#[derive(Clone, Debug)]
#[expect(clippy::struct_excessive_bools, reason = "independent choices of the operator, each a yes or no")]
pub(crate) struct Ui {
    pub(crate) page: Page,
    /// The page follows the request in progress until the operator picks one.
    pub(crate) follow: bool,
    /// The selected row of the activity log.
    pub(crate) selected: usize,
    /// The selection stays on the last row as the log grows (until the operator moves up).
    pub(crate) tail: bool,
    /// Request nodes whose expansion the operator toggled (by their entry's seq); the last
    /// node is expanded unless toggled.
    pub(crate) toggled: HashSet<u64>,
    /// The detail window of the selected entry is open.
    pub(crate) detail: bool,
    /// A command waiting for the operator's `y`.
    pub(crate) confirm: Option<Command>,
    /// A reason being typed.
    pub(crate) prompt: Option<Prompt>,
    pub(crate) colour: bool,
    /// The last thing the console has to say (a command started, refused, ended).
    pub(crate) message: Option<String>,
}

impl Ui {
    pub(crate) fn new(colour: bool) -> Self {
        Self {
            page: Page::Readiness,
            follow: true,
            selected: 0,
            tail: true,
            toggled: HashSet::new(),
            detail: false,
            confirm: None,
            prompt: None,
            colour,
            message: None,
        }
    }
}

/// One row of the activity log tree: the entry, its depth, and for a node whether it is open.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Row {
    pub(crate) entry: usize,
    pub(crate) child: bool,
    /// `Some(open)` for a request node (a request's start, with entries under it).
    pub(crate) node: Option<bool>,
}

/// The rows of the activity log as shown: a request's entries under its start (up to its end
/// line), folded unless open.
pub(crate) fn rows(entries: &[ActivityEntry], toggled: &HashSet<u64>) -> Vec<Row> {
    let node_of =
        |e: &ActivityEntry| e.parent.is_none().then(|| e.message.strip_suffix(" started")).flatten().map(str::to_owned);
    let last_node = entries.iter().rposition(|e| node_of(e).is_some());
    let mut rows = Vec::new();
    // The request whose entries come now, and whether its node is open.
    let mut inside: Option<(String, bool)> = None;
    for (i, e) in entries.iter().enumerate() {
        if let Some(request) = node_of(e) {
            let open = (Some(i) == last_node) != toggled.contains(&e.seq);
            rows.push(Row { entry: i, child: false, node: Some(open) });
            inside = Some((request, open));
            continue;
        }
        let ends = inside.as_ref().is_some_and(|(r, _)| {
            e.parent.is_none()
                && (e.message.starts_with(&format!("{r} completed"))
                    || e.message.starts_with(&format!("{r} is Broken")))
        });
        match &inside {
            Some((_, open)) if !ends => {
                if *open {
                    rows.push(Row { entry: i, child: true, node: None });
                }
            }
            _ => {
                rows.push(Row { entry: i, child: false, node: None });
                inside = None;
            }
        }
    }
    rows
}

/// The smallest terminal the console draws in.
pub(crate) const MIN: (u16, u16) = (60, 14);

/// Draws the whole screen.
pub(crate) fn draw(frame: &mut Frame<'_>, model: &Model, ui: &Ui) {
    let area = frame.area();
    if area.width < MIN.0 || area.height < MIN.1 {
        let text = format!(
            "The terminal is {}x{}: duet console needs {}x{}. Enlarge it, or q to quit.",
            area.width, area.height, MIN.0, MIN.1
        );
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
        return;
    }
    let [title, nav, main, keys, bar] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let styles = Styles::new(ui.colour);
    let session = model.status.session.as_deref().map_or_else(|| "no session".to_owned(), |s| format!("session {s}"));
    frame.render_widget(
        Paragraph::new(format!("duet console — {} — {session}", ui.page.title())).style(styles.title),
        title,
    );
    frame.render_widget(Paragraph::new(nav_line(model, ui, &styles)), nav);
    let block = Block::default().borders(Borders::ALL).title(format!(" {} ", ui.page.title()));
    let inner = block.inner(main);
    frame.render_widget(block, main);
    match ui.page {
        Page::Configuration => {
            frame.render_widget(Paragraph::new(configuration(model)).wrap(Wrap { trim: false }), inner);
        }
        Page::Summary => {
            frame.render_widget(Paragraph::new(summary(model.plan.as_ref())).wrap(Wrap { trim: false }), inner);
        }
        Page::Activity => activity_page(frame, inner, model, ui, &styles),
        page => frame.render_widget(Paragraph::new(steps_page(page, model, &styles)).wrap(Wrap { trim: false }), inner),
    }
    frame.render_widget(Paragraph::new(keys_line(model, ui)).style(styles.dim), keys);
    frame.render_widget(Paragraph::new(status_line(model)).style(styles.bar), bar);
    if let Some(prompt) = &ui.prompt {
        reason(frame, main, prompt);
    } else if let Some(command) = ui.confirm {
        confirm(frame, main, command);
    } else if ui.detail && ui.page == Page::Activity {
        detail(frame, main, model, ui);
    }
}

struct Styles {
    title: Style,
    bar: Style,
    dim: Style,
    current: Style,
    here: Style,
    selected: Style,
    colour: bool,
}

impl Styles {
    fn new(colour: bool) -> Self {
        let plain = Style::default();
        if colour {
            Self {
                title: plain.fg(Color::White).bg(Color::Blue).add_modifier(Modifier::BOLD),
                bar: plain.fg(Color::Black).bg(Color::Gray),
                dim: plain.fg(Color::DarkGray),
                current: plain.fg(Color::Black).bg(Color::Cyan).add_modifier(Modifier::BOLD),
                here: plain.fg(Color::Cyan).add_modifier(Modifier::BOLD),
                selected: plain.add_modifier(Modifier::REVERSED),
                colour,
            }
        } else {
            // NO_COLOR: emphasis only (bold, reverse video), never a colour.
            Self {
                title: plain.add_modifier(Modifier::BOLD),
                bar: plain.add_modifier(Modifier::REVERSED),
                dim: plain,
                current: plain.add_modifier(Modifier::REVERSED | Modifier::BOLD),
                here: plain.add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
                selected: plain.add_modifier(Modifier::REVERSED),
                colour,
            }
        }
    }

    fn severity(&self, severity: Severity) -> Style {
        if !self.colour {
            return Style::default();
        }
        match severity {
            Severity::Success => Style::default().fg(Color::Green),
            Severity::Error => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            Severity::Warning => Style::default().fg(Color::Yellow),
            Severity::Pending | Severity::Information => Style::default(),
        }
    }
}

/// The guide's severities as marks that read without colour too.
fn mark(severity: Severity) -> &'static str {
    match severity {
        Severity::Success => "✔",
        Severity::Pending => "…",
        Severity::Information => "i",
        Severity::Warning => "!",
        Severity::Error => "✖",
    }
}

fn nav_line(model: &Model, ui: &Ui, styles: &Styles) -> Line<'static> {
    let here = model.current_page();
    let mut spans = Vec::new();
    for page in Page::ALL {
        let style = if page == ui.page {
            styles.current
        } else if page == here {
            styles.here
        } else {
            Style::default()
        };
        spans.push(Span::styled(format!(" {} ", page.title()), style));
        spans.push(Span::raw("│"));
    }
    spans.pop();
    Line::from(spans)
}

fn status_line(model: &Model) -> String {
    let s = &model.status;
    let plan = model.plan_file.as_deref().map(|p| {
        std::path::Path::new(p).file_name().map_or_else(|| p.to_owned(), |n| n.to_string_lossy().into_owned())
    });
    let upgrade = match s.upgrade {
        State::PrepareSplit => "Prepare Split",
        State::PrepareMerge => "Prepare Merge",
        other => other.as_str(),
    };
    format!(
        " {}{} | {upgrade} | {}    Partner: {}",
        plan.map(|p| format!("{p}   ")).unwrap_or_default(),
        s.hardware.label(),
        s.operational.as_str(),
        s.partner
    )
}

fn keys_line(model: &Model, ui: &Ui) -> String {
    if ui.confirm.is_some() {
        return " y confirm   n cancel".to_owned();
    }
    if ui.prompt.is_some() {
        let said = ui.message.as_deref().map(|m| format!("   {}", escape(m))).unwrap_or_default();
        return format!(" type the reason   Enter run   Esc cancel{said}");
    }
    let mut keys = vec!["←/→ or 1-9 page".to_owned()];
    match ui.page {
        Page::Activity => {
            keys.extend(["↑/↓ select".into(), "Enter detail".into(), "+/- expand".into()]);
            if model.allowed(Command::Retry).is_ok() {
                keys.push("T retry from here".into());
            }
        }
        // Enter runs the first of the page's commands the state model allows.
        page => {
            if let Some(command) = page.commands().iter().find(|c| model.allowed(**c).is_ok()) {
                keys.push(format!("Enter {}", command.name()));
            }
        }
    }
    if model.allowed(Command::Resume).is_ok() {
        keys.push("r resume".into());
    }
    if model.allowed(Command::Retry).is_ok() {
        keys.push("t retry".into());
    }
    if model.skippable().is_ok() {
        keys.push("s skip".into());
    }
    if model.status.awaiting_approval.is_some() {
        keys.push("p approve".into());
    }
    keys.push("q quit".into());
    // What the console just said comes first: a narrow terminal cuts the end of the line.
    match &ui.message {
        Some(m) => format!(" {}   {}", escape(m), keys.join("   ")),
        None => format!(" {}", keys.join("   ")),
    }
}

fn configuration(model: &Model) -> Vec<Line<'static>> {
    let s = &model.status;
    let mut lines = vec![
        Line::from(format!("State directory:  {}", escape(&model.state_dir))),
        Line::from(format!(
            "Plan:             {}",
            escape(model.plan_file.as_deref().unwrap_or("(none: `duet console PLAN`)"))
        )),
        Line::from(format!("Session:          {}", s.session.as_deref().unwrap_or("none in progress"))),
    ];
    if let Some(driver) = &s.driver {
        lines.push(Line::from(format!("Driven by:        {}", escape(&driver.to_string()))));
    }
    if let Some(driving) = &model.driving {
        lines.push(Line::from(format!("This console ran: {}", escape(driving))));
    }
    lines.push(Line::from(""));
    lines.push(Line::from("Services:"));
    for service in &s.services {
        let side = |side: Option<&duet_contract::status::SideService>| {
            side.map_or_else(
                || "-".to_owned(),
                |s| format!("{:?}{}", s.startup, if s.running { ", running" } else { "" }).to_lowercase(),
            )
        };
        lines.push(Line::from(format!(
            "  {:<20} production: {:<20} upgrade: {}",
            escape(&service.name),
            side(service.production.as_ref()),
            side(service.upgrade.as_ref())
        )));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(format!("Next: {}", escape(&s.next))));
    lines
}

/// The guide's Upgrade Summary of the session's plan.
fn summary(plan: Option<&CompiledPlan>) -> Vec<Line<'static>> {
    let Some(plan) = plan else {
        return vec![Line::from("No plan yet: a readiness check or a split reads one (`duet console PLAN`).")];
    };
    let mut lines = vec![Line::from(format!("Title:     {}", escape(plan.title.as_deref().unwrap_or("(none)"))))];
    if let Some(comments) = &plan.comments {
        lines.push(Line::from(format!("Comments:  {}", escape(comments))));
    }
    let disks = |d: &[String]| d.join(", ");
    lines.push(Line::from(format!(
        "Disks:     system {}; data {}",
        disks(&plan.disks.system),
        disks(&plan.disks.data)
    )));
    let services: Vec<String> = plan.services.iter().map(|s| escape(&s.name).into_owned()).collect();
    lines.push(Line::from(format!("Services:  {}", services.join(", "))));
    lines.push(Line::from(format!("Log backup: {}", plan.logs.backup.join(", "))));
    lines.push(Line::from("Custom actions:"));
    for a in &plan.actions {
        lines.push(Line::from(format!("  {:<16} {:?}, {:?}  {}", escape(&a.id), a.control, a.timing, escape(&a.file))));
    }
    lines.push(Line::from("Requests:"));
    for (name, request) in &plan.requests {
        lines.push(Line::from(format!("  {:<16} {} steps", name.as_str(), request.steps.len())));
    }
    lines
}

fn steps_page(page: Page, model: &Model, styles: &Styles) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if let Some(driver) = &model.status.driver {
        let line = format!(
            "{} is running ({driver}): the console follows it; commands come back when it ends",
            command_of(driver.command.as_deref())
        );
        lines.push(Line::from(escape(&line).into_owned()));
    }
    for command in page.commands().iter().filter(|_| model.status.driver.is_none()) {
        let line = match model.allowed(*command) {
            Ok(()) => format!(
                "{} is available{}",
                command.name(),
                if matches!(command, Command::Commit | Command::Abort) { " (asks for confirmation)" } else { "" }
            ),
            Err(why) => format!("{} is not available: {why}", command.name()),
        };
        lines.push(Line::from(escape(&line).into_owned()));
    }
    lines.push(Line::from(""));
    let spans = report::spans(&model.records, model.plan.as_ref());
    for request in page.requests() {
        let Some(steps) = model.plan.as_ref().and_then(|p| p.requests.get(request)) else { continue };
        let ran = spans.iter().any(|s| s.request == *request);
        if !ran && matches!(request, RequestName::Upgrade | RequestName::AbortFromSplit | RequestName::AbortFromMerge) {
            continue;
        }
        lines.push(Line::styled(
            format!("{} (state {})", request.as_str(), steps.state.as_str()),
            Style::default().add_modifier(Modifier::BOLD),
        ));
        for step in &steps.steps {
            let last = spans.iter().rev().find(|s| s.request == *request && s.step == step.id);
            let (severity, what) = match last {
                None => (Severity::Information, "pending".to_owned()),
                Some(s) => match (s.result, s.end_ms) {
                    (Some(r), Some(end)) => {
                        let (_, word) = report::outcome(Some(r));
                        let severity = match r {
                            r if r.succeeded() => Severity::Success,
                            duet_contract::record::StepResult::Failed { .. } => Severity::Error,
                            _ => Severity::Warning,
                        };
                        (severity, format!("{word} {}", report::seconds(end - s.start_ms)))
                    }
                    _ => (Severity::Pending, "running".to_owned()),
                },
            };
            let shown = if last.is_none() { " " } else { mark(severity) };
            lines.push(Line::styled(
                format!("  {shown} {:<40} {:<10} {what}", escape(&step.id), step.side.as_str()),
                styles.severity(severity),
            ));
        }
    }
    lines
}

fn activity_page(frame: &mut Frame<'_>, area: Rect, model: &Model, ui: &Ui, styles: &Styles) {
    let entries = activity::entries(&model.records);
    let rows = rows(&entries, &ui.toggled);
    if rows.is_empty() {
        frame.render_widget(Paragraph::new("The activity log is empty: no readiness check or session yet."), area);
        return;
    }
    let selected = ui.selected.min(rows.len() - 1);
    // Scrolled so the selected row is in view.
    let height = usize::from(area.height);
    let first = selected.saturating_sub(height.saturating_sub(1));
    let mut lines = Vec::new();
    for (n, row) in rows.iter().enumerate().skip(first).take(height) {
        let e = &entries[row.entry];
        let fold = match row.node {
            Some(true) => "[-] ",
            Some(false) => "[+] ",
            None if row.child => "      ",
            None => "    ",
        };
        let time = e.time.get(11..19).unwrap_or(&e.time);
        let step =
            e.parent.as_deref().and_then(|p| p.split_once(" > ")).map(|(_, s)| format!("{s}: ")).unwrap_or_default();
        let text =
            format!("{fold}{} {time} {:<11} {step}{}", mark(e.severity), e.severity.as_str(), escape(&e.message));
        let style = if n == selected {
            styles.selected.patch(styles.severity(e.severity))
        } else {
            styles.severity(e.severity)
        };
        lines.push(Line::styled(text, style));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

/// The selected entry's detail (guide figure 4-6): when, severity, where, and an action's
/// output tails, exit value and duration.
fn detail(frame: &mut Frame<'_>, area: Rect, model: &Model, ui: &Ui) {
    let entries = activity::entries(&model.records);
    let rows = rows(&entries, &ui.toggled);
    let Some(row) = rows.get(ui.selected.min(rows.len().saturating_sub(1))) else { return };
    let e = &entries[row.entry];
    let mut lines = vec![
        Line::from(format!("Time:      {}", e.time)),
        Line::from(format!("Severity:  {}", e.severity.as_str())),
        Line::from(format!("Where:     {}", escape(e.parent.as_deref().unwrap_or("session")))),
        Line::from(format!("Message:   {}", escape(&e.message))),
    ];
    if let Some(d) = &e.detail {
        if let Some(a) = d.attempt {
            lines.push(Line::from(format!("Attempt:   {a}")));
        }
        if let Some(ms) = d.duration_ms {
            lines.push(Line::from(format!("Duration:  {}", report::seconds(ms))));
        }
        if let Some(o) = &d.output {
            lines.push(Line::from(format!("Exit value: {}", o.exit.map_or_else(|| "-".to_owned(), |c| c.to_string()))));
            for (name, s) in [("stdout", &o.stdout), ("stderr", &o.stderr)].into_iter().filter(|(_, s)| s.bytes > 0) {
                lines.push(Line::from(format!("{name} ({} bytes):", s.bytes)));
                let tail: Vec<&str> = s.tail.lines().collect();
                for l in &tail[tail.len().saturating_sub(8)..] {
                    lines.push(Line::from(format!("  {}", escape(l))));
                }
            }
        }
        if let Some(help) = &d.help {
            lines.push(Line::from(format!("Help:      {}", escape(help))));
        }
    }
    lines.push(Line::from(""));
    lines.push(Line::from("Esc or Enter closes"));
    let popup = centered(area, 90, u16::try_from(lines.len() + 2).unwrap_or(u16::MAX));
    frame.render_widget(Clear, popup);
    let block = Block::default().borders(Borders::ALL).title(" Activity Log Detail ");
    frame.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }), popup);
}

fn confirm(frame: &mut Frame<'_>, area: Rect, command: Command) {
    let warning = match command {
        Command::Commit => "Commit makes the upgrade permanent: it cannot be undone.",
        _ => "Abort returns the machine to the original software.",
    };
    let lines = vec![Line::from(warning), Line::from(""), Line::from(format!("{} now? y / n", command.name()))];
    let popup = centered(area, 70, 5);
    frame.render_widget(Clear, popup);
    let block = Block::default().borders(Borders::ALL).title(format!(" Confirm {} ", command.name()));
    frame.render_widget(Paragraph::new(lines).block(block), popup);
}

fn reason(frame: &mut Frame<'_>, area: Rect, prompt: &Prompt) {
    let (title, what) = match &prompt.what {
        Prompted::Approve => (" Approve ".to_owned(), "Why may the run go on?".to_owned()),
        Prompted::Skip(step) => {
            (format!(" Skip {} ", escape(step)), format!("Why is it safe to go on without {}?", escape(step)))
        }
        Prompted::RetryFrom(step) => (
            format!(" Retry from {} ", escape(step)),
            format!("Why run {} and every step after it again?", escape(step)),
        ),
    };
    let lines = vec![
        Line::from(what),
        Line::from("(recorded in the journal with who and when)"),
        Line::from(""),
        Line::from(format!("Reason: {}_", escape(&prompt.text))),
    ];
    let popup = centered(area, 80, 6);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(title)).wrap(Wrap { trim: false }),
        popup,
    );
}

/// A rectangle of `percent` of `area`'s width and `height` rows, centred.
fn centered(area: Rect, percent: u16, height: u16) -> Rect {
    let width = (area.width * percent / 100).max(20).min(area.width);
    let height = height.min(area.height);
    Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height }
}

#[cfg(test)]
mod tests;
