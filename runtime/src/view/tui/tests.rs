//! The console's screens, drawn on ratatui's `TestBackend` from sessions built as the commands
//! build them: each page in the states an operator meets (a split in progress driven by another
//! process, a Broken request with its detail, a confirmation), a small terminal, and no colour.

use duet_compiler::compiled::RequestName;
use duet_contract::record::{Command, Entry, StepResult};
use duet_contract::status::{Driver, Hardware, Operational};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;

use super::{Model, Page, Ui, draw};
use crate::store::journal::Durability;
use crate::store::session::View;
use crate::store::session::tests::{ID, create_in, output, ran, split, state_dir};
use crate::view::status::unbuilt;

/// A session split by `duet run`, then Broken in PrepareMerge at a failed action; `driven`: a
/// merge is still running in another process (its step started, not finished).
fn model(broken: bool, driven: bool) -> (tempfile::TempDir, Model) {
    model_with(broken, driven, "disk2 is\nnot synced")
}

fn model_with(broken: bool, driven: bool, stderr: &str) -> (tempfile::TempDir, Model) {
    let (dir, state) = state_dir();
    let mut session = create_in(&state, &state.session(), &split(None));
    for request in [RequestName::CheckReadiness, RequestName::PrepareSplit, RequestName::ExecuteSplit] {
        ran(&mut session, request, None);
    }
    let merge = Entry::Operation {
        operation: Command::Merge,
        requests: vec![RequestName::PrepareMerge, RequestName::ExecuteMerge],
        goal: None,
        command: "duet merge".into(),
        user: "op".into(),
        automatic: None,
    };
    session.record(&merge, Durability::Buffered).unwrap();
    if broken {
        ran(&mut session, RequestName::PrepareMerge, Some(("probe:merge-readiness", output(stderr))));
    } else {
        let request = RequestName::PrepareMerge;
        session.record(&Entry::RequestStarted { request }, Durability::Buffered).unwrap();
        let step = "probe:merge-readiness".to_owned();
        session.record(&Entry::StepStarted { request, step, attempt: 1 }, Durability::Buffered).unwrap();
    }
    let mut view = View::read(&state.session(), driven, true).unwrap().unwrap();
    // Times as fixed as the rest of the picture.
    for (n, r) in view.records.iter_mut().enumerate() {
        r.time_ms = 1_764_600_000_000 + n as u64 * 250;
    }
    if let Some(Entry::StepFinished { result: StepResult::Success { .. }, duration_ms, .. }) =
        view.records.last_mut().map(|r| &mut r.entry)
    {
        *duration_ms = 0;
    }
    let mut status = unbuilt();
    status.hardware = Hardware::ProductionSide;
    status.upgrade = view.progress.upgrade_state();
    status.operational = if broken { Operational::Broken } else { Operational::Busy };
    status.session = Some(ID.to_owned());
    status.next = "correct the problem, then `duet retry` (or `duet abort`)".to_owned();
    if driven {
        status.driver = Some(Driver {
            pid: Some(4242),
            command: Some("duet merge".into()),
            since: Some("2025-12-01T14:40:02Z".into()),
        });
    }
    let plan = view.compiled();
    let model = Model {
        status,
        records: view.records,
        progress: Some(view.progress),
        plan,
        plan_file: Some("/srv/plans/plan.yaml".into()),
        state_dir: "/var/lib/duet".into(),
        driving: None,
    };
    (dir, model)
}

/// The screen as text, a line per row.
fn screen(model: &Model, ui: &Ui, (width, height): (u16, u16)) -> (String, Terminal<TestBackend>) {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| draw(frame, model, ui)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    let mut text = String::new();
    for y in 0..height {
        let line: String = (0..width).map(|x| buffer[(x, y)].symbol()).collect();
        text.push_str(line.trim_end());
        text.push('\n');
    }
    (text, terminal)
}

fn ui(page: Page) -> Ui {
    let mut ui = Ui::new(true);
    ui.page = page;
    ui.follow = false;
    ui
}

#[test]
fn each_page_of_a_merge_another_process_drives() {
    let (_dir, model) = model(false, true);
    assert_eq!(model.current_page(), Page::Merge, "the page of the request in progress");
    for page in Page::ALL {
        let (text, _) = screen(&model, &ui(page), (110, 34));
        insta::assert_snapshot!(format!("driven_{}", page.title().replace(' ', "_").to_lowercase()), text);
    }
    // While another process drives the session, the console offers no command.
    for command in Command::ALL {
        let refused = model.allowed(command).unwrap_err();
        assert!(refused.contains("`duet merge` is running"), "{command:?}: {refused}");
    }
}

#[test]
fn a_broken_request_its_detail_and_what_may_run() {
    let (_dir, model) = model(true, false);
    let mut ui = ui(Page::Activity);
    let entries = crate::view::activity::entries(&model.records);
    let rows = super::rows(&entries, &ui.toggled);
    // The failed step is the row before the request's end line.
    ui.selected =
        rows.iter().rposition(|r| entries[r.entry].severity == duet_contract::record::Severity::Error).unwrap() - 1;
    insta::assert_snapshot!("broken_activity", screen(&model, &ui, (110, 30)).0);
    ui.detail = true;
    insta::assert_snapshot!("broken_detail", screen(&model, &ui, (110, 30)).0);
    // A Broken merge may be retried or aborted; not committed, not split again.
    assert!(model.allowed(Command::Retry).is_ok() && model.allowed(Command::Abort).is_ok());
    assert!(model.allowed(Command::Commit).unwrap_err().contains("cannot commit"));
    assert!(model.allowed(Command::Split).is_err());
    let mut confirming = self::ui(Page::Abort);
    confirming.confirm = Some(Command::Abort);
    insta::assert_snapshot!("abort_confirmation", screen(&model, &confirming, (110, 30)).0);
}

#[test]
fn earlier_requests_fold_and_open() {
    let (_dir, model) = model(true, false);
    let entries = crate::view::activity::entries(&model.records);
    let folded = super::rows(&entries, &std::collections::HashSet::new());
    let nodes: Vec<Option<bool>> = folded.iter().filter_map(|r| r.node.map(Some)).collect();
    assert_eq!(nodes, [Some(false), Some(false), Some(false), Some(true)], "only the last request is open");
    let last = folded.iter().rfind(|r| r.node.is_some()).unwrap();
    assert!(folded.iter().any(|r| r.child && entries[r.entry].parent.as_deref() == Some("PrepareMerge")));
    let closed = super::rows(&entries, &[entries[last.entry].seq].into());
    assert_eq!(closed.len(), folded.len() - 2, "folding PrepareMerge hides its step's two entries");
    assert!(closed.iter().all(|r| !r.child), "{closed:?}");
}

#[test]
fn a_small_terminal_says_so_and_no_colour_has_none() {
    let (_dir, model) = model(false, true);
    let (text, _) = screen(&model, &ui(Page::Merge), (50, 10));
    assert!(text.contains("needs 60x14"), "{text}");
    for colour in [true, false] {
        let mut ui = ui(Page::Activity);
        ui.colour = colour;
        let (_, terminal) = screen(&model, &ui, (110, 30));
        let buffer = terminal.backend().buffer();
        let coloured = buffer.content().iter().any(|c| c.fg != Color::Reset || c.bg != Color::Reset);
        assert_eq!(coloured, colour, "colour: {colour}");
    }
}

#[test]
fn an_actions_output_is_shown_escaped_never_obeyed() {
    let (_dir, model) = model_with(true, false, "\u{1b}[2J\u{1b}]0;pwned\u{7}gone\r\u{202e}txet");
    let mut ui = ui(Page::Activity);
    let entries = crate::view::activity::entries(&model.records);
    let rows = super::rows(&entries, &ui.toggled);
    ui.selected =
        rows.iter().rposition(|r| entries[r.entry].severity == duet_contract::record::Severity::Error).unwrap() - 1;
    ui.detail = true;
    let (text, _) = screen(&model, &ui, (110, 30));
    assert!(text.contains("\\x{1b}[2J\\x{1b}]0;pwned\\x{7}gone\\x{d}\\x{202e}txet"), "{text}");
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "a control character reached the screen:\n{text}");
}
