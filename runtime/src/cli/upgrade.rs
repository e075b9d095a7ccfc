//! The upgrade commands (`readiness`, `split`, `merge`, `commit`, `abort`, `finish`, `retry`,
//! `resume`, `run`): each takes the state directory's lock, opens the platform and the session,
//! asks the state model whether it may run ([`state::admit()`]), and drives requests through the
//! executor. A refused command changes nothing.

use std::path::{Path, PathBuf};

use duet_compiler::compiled::{RequestName, State};
use duet_compiler::{Compilation, Options as CompileOptions, compile};

use crate::cli::args::RunArgs;
pub(crate) use crate::cli::context::Context;
use crate::cli::outcome::Outcome;
use crate::error::{Error, Result};
use crate::platform::{self, Phase, Platform};
use crate::process::interrupt::Interrupt;
use crate::run::{self, Outcome as RequestOutcome};
use crate::state::{self, Command, Operational, Progress};
use crate::store::journal::{Durability, Journal};
use crate::store::lock::StateLock;
use crate::store::session::{self, Session};
use crate::view::console::Console;
use crate::view::status;
use duet_contract::record::{Entry, StepResult, Through};

/// What a command asks for.
#[derive(Clone, Debug)]
pub(crate) enum Request {
    Readiness { plan: PathBuf },
    Split { plan: PathBuf },
    Merge,
    Commit,
    Abort,
    Finish,
    Retry { from: Option<String>, reason: Option<String> },
    Skip { step: String, reason: String },
    Resume { repair_journal: bool },
    Run { plan: PathBuf, through: Through },
}

impl Request {
    /// The command the state model judges.
    fn command(&self) -> Command {
        match self {
            Self::Readiness { .. } => Command::Readiness,
            Self::Split { .. } | Self::Run { .. } => Command::Split,
            Self::Merge => Command::Merge,
            Self::Commit => Command::Commit,
            Self::Abort => Command::Abort,
            Self::Finish => Command::Finish,
            Self::Retry { .. } => Command::Retry,
            Self::Skip { .. } => Command::Skip,
            Self::Resume { .. } => Command::Resume,
        }
    }
}

pub(crate) fn execute(args: &RunArgs, request: &Request) -> Outcome {
    let mut ctx = Context::reading(&args.state);
    ctx.options.service_timeout = args.service_timeout;
    ctx.quiet = args.quiet;
    let ctx = &ctx;
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            crate::view::console::eprintln(&format!("error: cannot start the runtime: {e}"));
            return Outcome::Failure;
        }
    };
    let mut console = Console::new(ctx.quiet);
    let driven = runtime.block_on(async {
        let mut ctx = ctx.clone();
        ctx.options.interrupt = Interrupt::listen().map_err(|e| Error::new(format!("cannot handle signals: {e}")))?;
        drive(&ctx, request, &mut console).await
    });
    match driven {
        Ok(outcome @ Outcome::Interrupted(signal)) => {
            let stopped = format!("stopped by {}; the journal records everything up to here", signal.name);
            crate::view::console::eprintln(&Error::new(stopped).help(again(ctx, request)).to_string());
            outcome
        }
        Ok(outcome) => {
            if let Some(signal) = ctx.options.interrupt.stopping() {
                console.say(&format!(
                    "{} came during the last step, and the command had nothing left to start",
                    signal.name
                ));
            }
            outcome
        }
        Err(mut e) => {
            if e.storage {
                e.help = Some(format!("{}, then {}", e.fix, again(ctx, request)));
            }
            crate::view::console::eprintln(&e.to_string());
            Outcome::Failure
        }
    }
}

/// How to go on after a stop (a signal, a disk error): `resume`, if a session is in progress;
/// else the same command again (a readiness check, or a session that was never created).
fn again(ctx: &Context, request: &Request) -> String {
    if matches!(request, Request::Readiness { .. }) || !ctx.state.session().join("journal").exists() {
        "run the same command again: no session is in progress to resume".to_owned()
    } else {
        "`duet resume` continues from the journal (`duet status` shows where the session is)".to_owned()
    }
}

/// The command line as the journal and the lock record it: arguments with spaces or quotes are
/// quoted, so it reads back unambiguously.
fn command_line() -> String {
    std::env::args_os()
        .map(|a| {
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Who runs duet, for the journal: `$USER`, `$LOGNAME`, else the uid. One line of text (an
/// environment can hold anything).
fn user() -> String {
    let uid = || format!("uid {}", nix::unistd::getuid());
    let named = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| uid());
    if named.trim().is_empty() || named.chars().any(char::is_control) { uid() } else { named }
}

async fn drive(ctx: &Context, request: &Request, console: &mut Console) -> Result<Outcome> {
    ctx.state.usable()?;
    let starts = matches!(request, Request::Readiness { .. } | Request::Split { .. } | Request::Run { .. });
    if !starts && !ctx.state.session().join("journal").exists() {
        // Nothing to act on: refused before anything is created (not even the state directory).
        admit(request.command(), None)?;
    }
    ctx.state.ensure()?;
    let _lock = StateLock::acquire(&ctx.state.root, &command_line())?;
    ctx.state.sweep();
    if let Request::Resume { repair_journal: true } = request {
        repair(&ctx.state.session(), console)?;
    }
    let (mut session, archived) = open_session(ctx, console)?;
    if archived && matches!(request, Request::Resume { .. }) {
        return Ok(Outcome::Success);
    }
    // Only a command that may start a session builds the machine, or rebuilds it from a new
    // inventory, and only with no session in progress: a refused command changes nothing.
    let platform = platform::open(&ctx.state.root, ctx.inventory.as_deref(), starts && session.is_none())?;
    let outcome = match request {
        Request::Readiness { plan } => {
            let (outcome, check) = readiness(ctx, &platform, session.as_ref(), plan, console).await?;
            session = Some(check);
            outcome
        }
        Request::Split { plan } => {
            let (outcome, started) = start(ctx, &platform, session.as_ref(), plan, None, console).await?;
            session = Some(started);
            outcome
        }
        Request::Run { plan, through } => 'run: {
            if session.is_none() {
                let (outcome, started) = start(ctx, &platform, None, plan, Some(*through), console).await?;
                session = Some(started);
                if outcome != Outcome::Success {
                    break 'run outcome;
                }
            } else if let Some(s) = session.as_ref() {
                same_plan(s, plan)?;
                console.say(&format!("continuing session {} (from its snapshot of the plan)", s.id()));
            }
            match session.as_mut() {
                Some(s) => toward(ctx, &platform, s, *through, console).await?,
                None => Outcome::Success,
            }
        }
        Request::Merge
        | Request::Commit
        | Request::Abort
        | Request::Finish
        | Request::Retry { .. }
        | Request::Skip { .. }
        | Request::Resume { .. } => {
            let command = request.command();
            // `retry --from` of a request that had not failed runs that request again, and no
            // further: going on to `duet run`'s goal (a commit, perhaps) is not what was asked.
            let carry_on = session.as_ref().is_some_and(|s| s.progress.operational() != Operational::Ready)
                || !matches!(request, Request::Retry { from: Some(_), .. });
            let mut requests = match (request, session.as_mut()) {
                // A repair is judged against the request's steps (and may retry a Ready one).
                (Request::Retry { from: Some(_), .. } | Request::Skip { .. }, Some(s)) => {
                    operator_repair(&platform, s, request, console)?
                }
                _ => admit(command, session.as_ref().map(|s| &s.progress))?,
            };
            let s = session.as_mut().expect("admitted commands have a session");
            if command == Command::Abort {
                run::stop_interrupted(&platform, s, &ctx.options, console).await?;
                // The journal may not know of a merge the machine made just before duet died.
                if requests == [RequestName::AbortFromSplit] && platform.observe().await?.phase == Phase::Merged {
                    console.say("the machine is merged (the merge completed before duet stopped): aborting from Merge");
                    requests = vec![RequestName::AbortFromMerge];
                }
            }
            if matches!(command, Command::Merge | Command::Commit | Command::Abort | Command::Finish) {
                begin(s, command, &requests, None)?;
            } else if let Request::Retry { from: None, reason } = request
                && let Some(&request) = requests.first()
            {
                let retry =
                    Entry::Retry { request, user: user(), from: None, steps: Vec::new(), reason: reason.clone() };
                s.record(&retry, Durability::Durable)?;
            }
            let outcome = run_requests(ctx, &platform, s, &requests, console).await?;
            // `resume` and `retry` carry on to where `duet run` was headed.
            let goal = s.progress.operation.as_ref().and_then(|o| o.goal);
            match (outcome, goal, command) {
                (Outcome::Success, Some(goal), Command::Retry | Command::Resume | Command::Skip) if carry_on => {
                    toward(ctx, &platform, s, goal, console).await?
                }
                (Outcome::Success, Some(goal), _) if !carry_on && s.progress.goal_ahead().is_some() => {
                    console
                        .say(&format!("`duet run` was headed for {}: `duet resume` carries on there", goal.as_str()));
                    Outcome::Success
                }
                (outcome, ..) => outcome,
            }
        }
    };
    status::print_bar(&ctx.state, &platform, session.as_ref()).await;
    Ok(outcome)
}

/// `duet skip STEP` and `duet retry --from STEP`: judged against the current request's steps,
/// journaled with who and why; then the request runs on (and the rest of its operation).
fn operator_repair<P: Platform>(
    platform: &P,
    s: &mut Session,
    request: &Request,
    console: &mut Console,
) -> Result<Vec<RequestName>> {
    if let Request::Skip { .. } = request {
        admit(Command::Skip, Some(&s.progress))?;
    }
    let current = s.progress.current().map(|(r, _)| r).expect("a session has a request");
    let steps = run::steps_of(&s.compiled, current, &platform.inventory().event_logs);
    let refused = |r: state::Refusal| Error::new(r.message).help(r.help);
    let entry = match request {
        Request::Skip { step, reason } => {
            let request = crate::state::repair::skip(&s.progress, &steps, step).map_err(refused)?;
            console.say(&format!("{step} is marked done without running it ({reason}); {request} runs on"));
            Entry::Skip { request, step: step.clone(), user: user(), reason: reason.clone() }
        }
        Request::Retry { from: Some(step), reason } => {
            let fix = crate::state::repair::retry_from(&s.progress, &steps, step).map_err(refused)?;
            console.say(&format!("{} runs again from {step}: {}", fix.request, fix.steps.join(", ")));
            Entry::Retry {
                request: fix.request,
                user: user(),
                from: Some(step.clone()),
                steps: fix.steps,
                reason: reason.clone(),
            }
        }
        _ => unreachable!("only repairs come here"),
    };
    s.record(&entry, Durability::Durable)?;
    Ok(s.progress.remaining())
}

/// `duet run PLAN` continues the session in progress only if it was started from PLAN.
fn same_plan(session: &Session, plan: &Path) -> Result<()> {
    let ours = session.compiled.sources.first().map(|s| PathBuf::from(&s.path));
    if ours.is_some() && std::fs::canonicalize(plan).ok() == ours {
        return Ok(());
    }
    let theirs = ours.map_or_else(|| session.progress.plan.clone(), |p| p.display().to_string());
    Err(Error::new(format!(
        "cannot run {}: session {} in progress runs {theirs}",
        plan.display(),
        session.id()
    ))
    .help(format!("`duet run {theirs}` continues it (`duet status` shows where it is); to start another, finish or abort it first")))
}

fn admit(command: Command, progress: Option<&Progress>) -> Result<Vec<RequestName>> {
    state::admit(command, progress).map_err(|r| Error::new(r.message).help(r.help))
}

/// Opens the session in progress. One that had finished (duet stopped before moving it to
/// `history/`) is archived now; the second value says so.
fn open_session(ctx: &Context, console: &mut Console) -> Result<(Option<Session>, bool)> {
    let dir = ctx.state.session();
    if !dir.join("journal").exists() {
        return Ok((None, false));
    }
    let session = Session::open(&dir)?;
    // A session whose readiness check failed is set aside as the last readiness check; duet
    // died before it was (nothing was split).
    if session.progress.requests.len() == 1
        && session.progress.broken().is_some_and(|(r, _)| r == RequestName::CheckReadiness)
    {
        drop(session);
        session::replace_dir(&ctx.state, &dir, &ctx.state.readiness())?;
        console.say("the last session's readiness check had failed, so nothing was split: it is kept as the last readiness check");
        return Ok((None, false));
    }
    if session.progress.finished_ok(RequestName::Finish) {
        let id = session.id().to_owned();
        drop(session);
        let dest = session::archive(&ctx.state, &dir, &id)?;
        console.say(&format!("session {id} had finished; archived to {}", dest.display()));
        return Ok((None, true));
    }
    Ok((Some(session), false))
}

fn repair(dir: &Path, console: &mut Console) -> Result<()> {
    let path = dir.join("journal");
    let said = Journal::<Entry>::repair(&path)?;
    console.say(&said);
    Ok(())
}

fn compile_for<P: Platform>(platform: &P, plan: &Path) -> Result<Compilation> {
    let compilation =
        compile(&CompileOptions { plan: plan.to_owned(), inventory: Some(platform.inventory_file().to_owned()) });
    if !compilation.diagnostics.is_empty() {
        crate::cli::check::print_diagnostics(&compilation);
    }
    if compilation.compiled.is_none() {
        return Err(Error::new(format!("{}: the plan is invalid; nothing was run", plan.display())).help(
            "fix the problems above (`duet check PLAN --inventory FILE` shows them), then run the command again",
        ));
    }
    Ok(compilation)
}

fn begin_entry<P: Platform>(id: &str, plan: &Path, platform: &P) -> Entry {
    Entry::Begin {
        id: id.to_owned(),
        plan: plan.display().to_string(),
        platform: format!("{} ({})", platform.name(), platform.inventory().model),
        duet: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

fn operation_entry(operation: Command, requests: &[RequestName], goal: Option<Through>) -> Entry {
    Entry::Operation { operation, requests: requests.to_vec(), goal, command: command_line(), user: user() }
}

fn begin(session: &mut Session, operation: Command, requests: &[RequestName], goal: Option<Through>) -> Result<()> {
    session.record(&operation_entry(operation, requests, goal), Durability::Durable)
}

/// `duet readiness PLAN`: a readiness check in Idle, kept in `readiness/` (the last one).
async fn readiness<P: Platform>(
    ctx: &Context,
    platform: &P,
    session: Option<&Session>,
    plan: &Path,
    console: &mut Console,
) -> Result<(Outcome, Session)> {
    let requests = admit(Command::Readiness, session.map(|s| &s.progress))?;
    let mut compilation = compile_for(platform, plan)?;
    let compiled = compilation.compiled.take().expect("checked");
    // The last check's record stays until the new one replaces it.
    let dest = ctx.state.readiness();
    let id = format!("readiness-{}", session::new_id());
    let operation = operation_entry(Command::Readiness, &requests, None);
    let begin = begin_entry(&id, plan, platform);
    let mut s = Session::create(&ctx.state, (&dest, true), &compilation, compiled, &begin, &operation)?;
    drop(compilation);
    let outcome = run_requests(ctx, platform, &mut s, &requests, console).await?;
    Ok((outcome, s))
}

/// `duet split PLAN` (and the start of `duet run`): a new session, whose first request is the
/// readiness check. If that fails, nothing was split: the session is set aside as the last
/// readiness check, and the state stays Idle.
async fn start<P: Platform>(
    ctx: &Context,
    platform: &P,
    session: Option<&Session>,
    plan: &Path,
    goal: Option<Through>,
    console: &mut Console,
) -> Result<(Outcome, Session)> {
    let requests = admit(Command::Split, session.map(|s| &s.progress))?;
    let mut compilation = compile_for(platform, plan)?;
    let compiled = compilation.compiled.take().expect("checked");
    let id = session::new_id();
    let dir = ctx.state.session();
    let operation = operation_entry(Command::Split, &requests, goal);
    let mut s = Session::create(
        &ctx.state,
        (&dir, false),
        &compilation,
        compiled,
        &begin_entry(&id, plan, platform),
        &operation,
    )?;
    drop(compilation);
    console.say(&format!("session {id}: {} on {} ({})", plan.display(), platform.name(), platform.inventory().model));
    let outcome = run_requests(ctx, platform, &mut s, &requests, console).await?;
    Ok((outcome, s))
}

async fn run_requests<P: Platform>(
    ctx: &Context,
    platform: &P,
    session: &mut Session,
    requests: &[RequestName],
    console: &mut Console,
) -> Result<Outcome> {
    for &request in requests {
        if let Some(signal) = ctx.options.interrupt.stopping() {
            let message = format!("stopped by {} before {request}; `duet resume` continues", signal.name);
            let note = Entry::Note { request: None, step: None, severity: crate::platform::Severity::Warning, message };
            session.record(&note, Durability::Durable)?;
            return Ok(Outcome::Interrupted(signal));
        }
        let outcome = run::run_request(platform, session, request, &ctx.options, console).await?;
        if let RequestOutcome::Interrupted(signal) = outcome {
            return Ok(Outcome::Interrupted(signal));
        }
        if let RequestOutcome::Broken(broken) = outcome {
            let fix = match session.progress.step(request, &broken.step).and_then(|s| s.result.as_ref()) {
                Some(StepResult::Failed { help: Some(help), .. }) => help.clone(),
                _ => "correct the problem (`duet log`)".to_owned(),
            };
            let help = format!("{fix}, {}", state::after_broken(&session.progress));
            let broken = Error::new(format!("{request} is Broken at step {}: {}", broken.step, broken.message));
            crate::view::console::eprintln(&broken.help(help).to_string());
            // A session's readiness check failed: nothing was split. The attempt is kept as the
            // last readiness check, and the state stays Idle.
            if request == RequestName::CheckReadiness && session.dir == ctx.state.session() {
                session::replace_dir(&ctx.state, &session.dir, &ctx.state.readiness())?;
                session.dir = ctx.state.readiness();
                console.say("the readiness check failed, so nothing was split; the state stays Idle");
            }
            return Ok(Outcome::Failure);
        }
    }
    if session.progress.finished_ok(RequestName::Finish) {
        let id = session.id().to_owned();
        let dest = session::archive(&ctx.state, &session.dir, &id)?;
        console.say(&format!("session {id} finished; its record is in {}", dest.display()));
    }
    Ok(Outcome::Success)
}

/// Drives a Ready session on toward `goal` (`duet run`): merge, commit, finish.
async fn toward<P: Platform>(
    ctx: &Context,
    platform: &P,
    session: &mut Session,
    goal: Through,
    console: &mut Console,
) -> Result<Outcome> {
    let mut ran = false;
    loop {
        if !session.dir.exists() {
            return Ok(Outcome::Success);
        }
        let progress = &session.progress;
        match progress.operational() {
            Operational::Ready => {}
            Operational::Busy => {
                let requests = admit(Command::Resume, Some(progress))?;
                ran = true;
                let outcome = run_requests(ctx, platform, session, &requests, console).await?;
                if outcome != Outcome::Success {
                    return Ok(outcome);
                }
                continue;
            }
            Operational::Broken => {
                let (request, broken) = progress.broken().expect("Broken has a reason");
                return Err(Error::new(format!(
                    "cannot run on: {request} is Broken at step {}: {}",
                    broken.step, broken.message
                ))
                .help(format!(
                    "correct the problem, {} (a retry carries on to where `duet run` was headed)",
                    state::after_broken(progress)
                )));
            }
        }
        let command = match (progress.upgrade_state(), goal) {
            (State::Split, Through::Merge | Through::Commit | Through::Finish) => Command::Merge,
            (State::Merge, Through::Commit | Through::Finish) => Command::Commit,
            (State::Commit | State::Abort, Through::Finish) => Command::Finish,
            (state, _) => {
                if !ran {
                    console.say(&format!(
                        "nothing to run: the session is in state {state}, at or past `--through {}`",
                        goal.as_str()
                    ));
                }
                return Ok(Outcome::Success);
            }
        };
        if let Some(signal) = ctx.options.interrupt.stopping() {
            return Ok(Outcome::Interrupted(signal));
        }
        ran = true;
        let requests = admit(command, Some(progress))?;
        begin(session, command, &requests, Some(goal))?;
        let outcome = run_requests(ctx, platform, session, &requests, console).await?;
        if outcome != Outcome::Success {
            return Ok(outcome);
        }
    }
}
