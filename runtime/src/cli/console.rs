//! `duet console [PLAN]`: the terminal UI ([`crate::view::tui`]). It reads the state directory
//! a few times a second, as `duet status` and `duet log` do, and never takes the driver's lock:
//! it follows a run another `duet` drives. A command it runs itself (Enter on a page, `r`) is
//! another `duet` process in a session of its own, writing to a file of its own, so closing or
//! killing the console never stops a running request; the console then watches it like any
//! other driver.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use duet_contract::record::Command;

use crate::cli::args::StateArgs;
use crate::cli::{Context, log};
use crate::error::{Error, Result};
use crate::outcome::Outcome;
use crate::platform;
use crate::view::console;
use crate::view::status::{gather, unbuilt};
use crate::view::tui::{self, Model, Page, Prompt, Prompted, Ui};

/// How often the console reads the state directory when no key is pressed.
const REFRESH: Duration = Duration::from_millis(250);

/// A command the console started: what it is, the process, and where its output goes.
struct Driven {
    what: String,
    child: Child,
    output: PathBuf,
}

pub(crate) fn console(args: &StateArgs, plan: Option<&Path>) -> Outcome {
    use std::io::IsTerminal as _;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        console::eprintln(
            "error: duet console needs a terminal\n  help: run it in a terminal (or tmux); for scripts, `duet log --follow --format json` and `duet status --json`",
        );
        return Outcome::Failure;
    }
    let ctx = Context::reading(args);
    if let Err(e) = ctx.state.usable() {
        console::eprintln(&Error::from(e).report(None));
        return Outcome::Failure;
    }
    let plan = plan.map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned()));
    // SIGTERM, SIGHUP (the terminal closed) and SIGINT end the console: the loop stops at its
    // next turn and gives the terminal back; if it cannot (reading a terminal that is gone
    // never returns), this thread ends the process a second later. A request the console
    // started runs on either way.
    let stop = Arc::new(AtomicBool::new(false));
    let signals = [signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP, signal_hook::consts::SIGINT];
    let mut signals = match signal_hook::iterator::Signals::new(signals) {
        Ok(s) => s,
        Err(e) => {
            console::eprintln(&format!("error: cannot handle signals: {e}"));
            return Outcome::Failure;
        }
    };
    let stopping = Arc::clone(&stop);
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            stopping.store(true, Ordering::Relaxed);
            std::thread::sleep(Duration::from_secs(1));
            let _ = ratatui::try_restore();
            std::process::exit(i32::from(duet_contract::exit::signalled(signal)));
        }
    });
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            console::eprintln(&format!("error: cannot set up the terminal: {e}"));
            return Outcome::Failure;
        }
    };
    let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let result = run(&mut terminal, &ctx, plan.as_deref(), colour, &stop);
    let _ = ratatui::try_restore();
    match result {
        Ok(()) => Outcome::Success,
        Err(e) => {
            console::eprintln(&e.report(None));
            Outcome::Failure
        }
    }
}

fn run(
    terminal: &mut ratatui::DefaultTerminal,
    ctx: &Context,
    plan: Option<&Path>,
    colour: bool,
    stop: &AtomicBool,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(format!("cannot start the runtime: {e}")))?;
    let mut ui = Ui::new(colour);
    let mut driven: Option<Driven> = None;
    while !stop.load(Ordering::Relaxed) {
        if let Some(said) = ended(&mut driven) {
            ui.message = Some(said);
        }
        let model = read(ctx, plan, &runtime, driven.as_ref().map(|d| d.what.as_str()))?;
        if ui.follow {
            ui.page = model.current_page();
        }
        let rows = tui::rows(&crate::view::activity::entries(&model.records), &ui.toggled).len();
        if ui.tail || ui.selected >= rows {
            ui.selected = rows.saturating_sub(1);
        }
        terminal.draw(|frame| tui::draw(frame, &model, &ui)).map_err(|e| Error::new(format!("cannot draw: {e}")))?;
        if !event::poll(REFRESH).map_err(|e| Error::new(format!("cannot read the terminal: {e}")))? {
            continue;
        }
        match event::read().map_err(|e| Error::new(format!("cannot read the terminal: {e}")))? {
            Event::Key(key) if key.kind != KeyEventKind::Release => match keyed(key, &model, &mut ui) {
                Keyed::Quit => break,
                Keyed::Run(command) => started(start(ctx, &model, command), &mut driven, &mut ui),
                Keyed::Reasoned(what, reason) => started(reasoned(ctx, &what, reason), &mut driven, &mut ui),
                Keyed::Nothing => {}
            },
            // A resize is drawn at the next turn, at the new size.
            _ => {}
        }
    }
    Ok(())
}

/// Says what the console started (or why it could not), and keeps it to watch.
fn started(result: std::result::Result<Driven, String>, driven: &mut Option<Driven>, ui: &mut Ui) {
    match result {
        Ok(d) => {
            ui.message = Some(format!("started {} (pid {})", d.what, d.child.id()));
            *driven = Some(d);
        }
        Err(why) => ui.message = Some(why),
    }
}

/// Everything the screen shows, read afresh (no lock, nothing written).
fn read(ctx: &Context, plan: Option<&Path>, runtime: &tokio::runtime::Runtime, driving: Option<&str>) -> Result<Model> {
    let in_session = ctx.state.in_session();
    let status = match platform::existing(&ctx.state.root, ctx.inventory.as_deref(), in_session)? {
        Some(platform) => runtime.block_on(gather(&ctx.state, &platform))?,
        None => unbuilt(),
    };
    let view = log::find(&ctx.state, None).ok();
    let plan_file = plan.map(|p| p.display().to_string()).or_else(|| view.as_ref().map(|v| v.progress.plan.clone()));
    let compiled = view.as_ref().and_then(crate::store::session::View::compiled);
    let (records, progress) = view.map_or((Vec::new(), None), |v| (v.records, Some(v.progress)));
    Ok(Model {
        status,
        records,
        progress,
        plan: compiled,
        plan_file,
        state_dir: ctx.state.root.display().to_string(),
        driving: driving.map(str::to_owned),
    })
}

enum Keyed {
    Quit,
    Run(Command),
    /// A command that takes the operator's reason: `approve`, `skip STEP`, `retry --from STEP`.
    Reasoned(Prompted, String),
    Nothing,
}

/// What a key does on the screen as it is.
fn keyed(key: KeyEvent, model: &Model, ui: &mut Ui) -> Keyed {
    if ui.prompt.is_some() {
        return prompted(key, ui);
    }
    // What the console said stays until the next key.
    ui.message = None;
    if let Some(command) = ui.confirm {
        ui.confirm = None;
        return if matches!(key.code, KeyCode::Char('y' | 'Y')) { Keyed::Run(command) } else { Keyed::Nothing };
    }
    if ui.detail {
        if matches!(key.code, KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q')) {
            ui.detail = false;
        }
        return Keyed::Nothing;
    }
    let pages = Page::ALL;
    let at = pages.iter().position(|p| *p == ui.page).unwrap_or(0);
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => return Keyed::Quit,
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => return Keyed::Quit,
        KeyCode::Right | KeyCode::Tab | KeyCode::Char('l') => {
            (ui.page, ui.follow) = (pages[(at + 1) % pages.len()], false);
        }
        KeyCode::Left | KeyCode::BackTab | KeyCode::Char('h') => {
            (ui.page, ui.follow) = (pages[(at + pages.len() - 1) % pages.len()], false);
        }
        KeyCode::Char(digit @ '1'..='9') => {
            let n = usize::from(digit as u8 - b'1');
            (ui.page, ui.follow) = (pages[n], false);
        }
        KeyCode::Char('f') => ui.follow = true,
        KeyCode::Char('a') => (ui.page, ui.follow) = (Page::Activity, false),
        KeyCode::Up | KeyCode::Char('k') => (ui.selected, ui.tail) = (ui.selected.saturating_sub(1), false),
        KeyCode::Down | KeyCode::Char('j') => ui.selected += 1,
        KeyCode::PageUp => (ui.selected, ui.tail) = (ui.selected.saturating_sub(10), false),
        KeyCode::PageDown => ui.selected += 10,
        KeyCode::Home => (ui.selected, ui.tail) = (0, false),
        KeyCode::End => ui.tail = true,
        KeyCode::Char('+' | '-' | ' ') if ui.page == Page::Activity => toggle(model, ui),
        KeyCode::Enter if ui.page == Page::Activity => ui.detail = true,
        KeyCode::Enter => {
            if let Some(&command) = ui.page.commands().iter().find(|c| model.allowed(**c).is_ok()) {
                return ask(command, ui);
            }
            let why = ui.page.commands().first().map(|c| model.allowed(*c));
            if let Some(Err(why)) = why {
                ui.message = Some(why);
            }
        }
        KeyCode::Char('r') => match model.allowed(Command::Resume) {
            Ok(()) => return Keyed::Run(Command::Resume),
            Err(why) => ui.message = Some(why),
        },
        KeyCode::Char('p') => match &model.status.awaiting_approval {
            Some(_) => ui.prompt = Some(Prompt { what: Prompted::Approve, text: String::new() }),
            None => ui.message = Some("nothing awaits approval".to_owned()),
        },
        KeyCode::Char('s') => match model.skippable() {
            Ok(step) => ui.prompt = Some(Prompt { what: Prompted::Skip(step), text: String::new() }),
            Err(why) => ui.message = Some(why),
        },
        KeyCode::Char('T') if ui.page == Page::Activity => match model.retryable_from(selected_seq(model, ui)) {
            Ok(step) => ui.prompt = Some(Prompt { what: Prompted::RetryFrom(step), text: String::new() }),
            Err(why) => ui.message = Some(why),
        },
        KeyCode::Char('t') => match model.allowed(Command::Retry) {
            Ok(()) => return Keyed::Run(Command::Retry),
            Err(why) => ui.message = Some(why),
        },
        _ => {}
    }
    Keyed::Nothing
}

/// Typing a reason: Enter runs the command with it, Esc cancels.
fn prompted(key: KeyEvent, ui: &mut Ui) -> Keyed {
    let Some(prompt) = ui.prompt.as_mut() else { return Keyed::Nothing };
    match key.code {
        KeyCode::Esc => ui.prompt = None,
        KeyCode::Backspace => {
            prompt.text.pop();
        }
        KeyCode::Enter if prompt.text.trim().is_empty() => {
            ui.message = Some("give a reason: it is recorded with who asked and when".to_owned());
        }
        KeyCode::Enter => {
            let prompt = ui.prompt.take().expect("prompting");
            return Keyed::Reasoned(prompt.what, prompt.text.trim().to_owned());
        }
        KeyCode::Char(c) if !c.is_control() && prompt.text.chars().count() < 200 => prompt.text.push(c),
        _ => {}
    }
    Keyed::Nothing
}

/// Commit and abort ask first; the rest run at once.
fn ask(command: Command, ui: &mut Ui) -> Keyed {
    if matches!(command, Command::Commit | Command::Abort) {
        ui.confirm = Some(command);
        Keyed::Nothing
    } else {
        Keyed::Run(command)
    }
}

fn toggle(model: &Model, ui: &mut Ui) {
    if let Some((seq, true)) = selected(model, ui)
        && !ui.toggled.remove(&seq)
    {
        ui.toggled.insert(seq);
    }
}

/// The journal record of the activity log's selected line.
fn selected_seq(model: &Model, ui: &Ui) -> Option<u64> {
    selected(model, ui).map(|(seq, _)| seq)
}

/// The activity log's selected line: its journal record, and whether it is a request's node.
fn selected(model: &Model, ui: &Ui) -> Option<(u64, bool)> {
    let entries = crate::view::activity::entries(&model.records);
    let rows = tui::rows(&entries, &ui.toggled);
    rows.get(ui.selected.min(rows.len().saturating_sub(1))).map(|row| (entries[row.entry].seq, row.node.is_some()))
}

/// Starts `duet COMMAND` as a process of its own session (so the terminal's signals and the
/// console's end do not reach it), its output in a file of its own.
fn start(ctx: &Context, model: &Model, command: Command) -> std::result::Result<Driven, String> {
    let mut args: Vec<String> = vec![command.name().to_owned()];
    if matches!(command, Command::Readiness | Command::Split) {
        args.push(model.plan_file.clone().ok_or("no plan: start the console with `duet console PLAN`")?);
    }
    spawn(ctx, args)
}

/// `duet approve --reason TEXT`, `duet skip STEP --reason TEXT` or `duet retry --from STEP
/// --reason TEXT`.
fn reasoned(ctx: &Context, what: &Prompted, reason: String) -> std::result::Result<Driven, String> {
    let args = match what {
        Prompted::Approve => vec!["approve".to_owned(), "--reason".to_owned(), reason],
        Prompted::Skip(step) => vec!["skip".to_owned(), step.clone(), "--reason".to_owned(), reason],
        Prompted::RetryFrom(step) => {
            vec!["retry".to_owned(), "--from".to_owned(), step.clone(), "--reason".to_owned(), reason]
        }
    };
    spawn(ctx, args)
}

/// `duet ARGS --state-dir DIR [--inventory FILE]`, in a session of its own.
fn spawn(ctx: &Context, mut args: Vec<String>) -> std::result::Result<Driven, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the duet binary: {e}"))?;
    let name = args[0].clone();
    args.extend(["--state-dir".to_owned(), ctx.state.root.display().to_string()]);
    if let Some(inventory) = &ctx.inventory {
        args.extend(["--inventory".to_owned(), inventory.display().to_string()]);
    }
    let output = std::env::temp_dir().join(format!("duet-console-{}-{name}.log", std::process::id()));
    let file = std::fs::File::create(&output).map_err(|e| format!("cannot create {}: {e}", output.display()))?;
    let file2 = file.try_clone().map_err(|e| format!("cannot create {}: {e}", output.display()))?;
    let child = Process::new("setsid")
        .arg(exe)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(file2)
        .spawn()
        .map_err(|e| format!("cannot start `duet {name}`: {e} (is `setsid`, of util-linux, installed?)"))?;
    Ok(Driven { what: format!("`duet {name}`"), child, output })
}

/// What the console's own command ended with, once it has.
fn ended(driven: &mut Option<Driven>) -> Option<String> {
    let d = driven.as_mut()?;
    let status = d.child.try_wait().ok()??;
    let d = driven.take()?;
    let text = std::fs::read_to_string(&d.output).unwrap_or_default();
    let _ = std::fs::remove_file(&d.output);
    Some(if status.success() {
        format!("{} ended: done", d.what)
    } else {
        let why = text.lines().find(|l| l.starts_with("error:")).unwrap_or("see `duet log`");
        format!("{} failed ({status}): {why}", d.what)
    })
}
