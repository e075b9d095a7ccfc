//! The upgrade commands (`readiness`, `split`, `merge`, `commit`, `abort`, `finish`, `retry`,
//! `skip`, `resume`, `run`): each takes the state directory's lock, opens the platform and the
//! session, asks the state model whether it may run ([`state::admit()`]), and drives requests
//! through the run loop ([`run::run_request`]), with the console subscribed to the session. A
//! refused command changes nothing.

use std::path::{Path, PathBuf};

use duet_compiler::compiled::{Event, RequestName, State};
use duet_compiler::{Compilation, Options as CompileOptions, compile};
use duet_contract::record::{Broken, Entry, Severity, StepResult, Through};

use crate::cli::args::{RunArgs, RunFormat};
use crate::cli::context::Context;
use crate::error::{Error, Result};
use crate::outcome::Outcome;
use crate::platform::{self, Phase, Platform};
use crate::process::interrupt::Interrupt;
use crate::run::notify::{self, Happened};
use crate::run::{self, Outcome as RequestOutcome};
use crate::state::{self, Command, Operational, Progress};
use crate::store::journal::{Durability, Journal};
use crate::store::layout::SessionDir;
use crate::store::lock::{LockError, StateLock};
use crate::store::session::{self, NewSession, Session};
use crate::store::staged::Commit;
use crate::view::console::{self, Console};
use crate::view::status;

/// What a command asks for.
#[derive(Clone, Debug)]
pub(crate) enum Request {
    Readiness { plan: PathBuf },
    Split { plan: PathBuf },
    Upgrade,
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
            Self::Upgrade => Command::Upgrade,
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
    ctx.keyring.clone_from(&args.keyring);
    let format = match args.format {
        RunFormat::Human => console::Format::Human,
        RunFormat::Json => console::Format::Json,
    };
    let console = Console::new(ctx.quiet, format);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            console::eprintln(&format!("error: cannot start the runtime: {e}"));
            return Outcome::Failure;
        }
    };
    let driven = match Interrupt::listen() {
        Ok(interrupt) => {
            ctx.options.interrupt = interrupt;
            runtime.block_on(drive(&ctx, request, console))
        }
        Err(e) => Err(Error::new(format!("cannot handle signals: {e}"))),
    };
    match driven {
        Ok(outcome @ Outcome::Interrupted(signal)) => {
            let stopped = format!("stopped by {}; the journal records everything up to here", signal.name);
            console::eprintln(&Error::new(stopped).help(again(&ctx, request)).report(None));
            outcome
        }
        Ok(outcome) => {
            // The signal came while the last step ran, and the command then ended as asked.
            if let (Outcome::Success, Some(signal)) = (outcome, ctx.options.interrupt.stopping()) {
                console.say(&format!(
                    "{} came during the last step, and the command had nothing left to start",
                    signal.name
                ));
            }
            outcome
        }
        Err(e) => {
            let help = e.storage_fix().map(|fix| format!("{fix}, then {}", again(&ctx, request)));
            console::eprintln(&e.report(help));
            if matches!(e, Error::Lock(LockError::Held { .. })) { Outcome::Busy } else { Outcome::Failure }
        }
    }
}

/// How to go on after a stop (a signal, a disk error): `resume`, if a session is in progress;
/// else the same command again (a readiness check, or a session that was never created).
fn again(ctx: &Context, request: &Request) -> String {
    if matches!(request, Request::Readiness { .. }) || !ctx.state.in_session() {
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
pub(crate) fn user() -> String {
    let uid = || format!("uid {}", nix::unistd::getuid());
    let named = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| uid());
    if named.trim().is_empty() || named.chars().any(char::is_control) { uid() } else { named }
}

/// Takes the lock, opens the session and the machine, and carries the request out.
async fn drive(ctx: &Context, request: &Request, console: Console) -> Result<Outcome> {
    ctx.state.usable()?;
    let starts = matches!(request, Request::Readiness { .. } | Request::Split { .. } | Request::Run { .. });
    if !starts && !ctx.state.in_session() {
        // Nothing to act on: refused before anything is created (not even the state directory).
        admit(request.command(), None)?;
    }
    ctx.state.ensure()?;
    let _lock = StateLock::acquire(&ctx.state.root, &command_line())?;
    ctx.state.sweep();
    if let Request::Resume { repair_journal: true } = request {
        repair(&ctx.state.session(), console)?;
    }
    let (session, archived) = open_session(ctx, console)?;
    if archived && matches!(request, Request::Resume { .. }) {
        return Ok(Outcome::Success);
    }
    // Only a command that may start a session builds the machine, or rebuilds it from a new
    // inventory, and only with no session in progress: a refused command changes nothing.
    let platform = platform::open(&ctx.state.root, ctx.inventory.as_deref(), starts && session.is_none())?;
    let driver = Driver { ctx, platform: &platform, console };
    let mut session = session.map(|s| driver.watched(s));
    let outcome = driver.carry_out(request, &mut session).await?;
    status::print_bar(&ctx.state, &platform, session.as_ref(), console.format).await;
    Ok(outcome)
}

/// One upgrade command being carried out: what it was given, the machine, the console.
struct Driver<'a, P> {
    ctx: &'a Context,
    platform: &'a P,
    console: Console,
}

/// What a new session directory is for.
#[derive(Clone, Copy)]
enum Start {
    /// `duet readiness`: a check in Idle, kept in `readiness/` (the last one).
    Readiness,
    /// `duet split` and `duet run`: a session, headed for `goal` if `duet run` started it.
    Session { goal: Option<Through> },
}

impl<P: Platform> Driver<'_, P> {
    /// The session, with the console printing what it records.
    fn watched(&self, mut session: Session) -> Session {
        session.subscribe(self.console.observer(&session));
        session
    }

    async fn carry_out(&self, request: &Request, session: &mut Option<Session>) -> Result<Outcome> {
        match request {
            Request::Readiness { plan } => self.start(session, plan, Start::Readiness).await,
            Request::Split { plan } => self.start(session, plan, Start::Session { goal: None }).await,
            Request::Run { plan, through } => {
                let started = if let Some(s) = session.as_ref() {
                    same_plan(s, plan)?;
                    self.console.say(&format!("continuing session {} (from its snapshot of the plan)", s.id()));
                    false
                } else {
                    let outcome = self.start(session, plan, Start::Session { goal: Some(*through) }).await?;
                    if outcome != Outcome::Success {
                        return Ok(outcome);
                    }
                    true
                };
                match session.as_mut() {
                    Some(s) => self.toward(s, *through, started).await,
                    None => Ok(Outcome::Success),
                }
            }
            _ => {
                // A command on a session that is not there any more (a failed readiness check
                // set aside as the last one): the state model says what it says with no session.
                let Some(s) = session.as_mut() else {
                    return admit(request.command(), None).map(|_| Outcome::Success);
                };
                self.go_on(request, s).await
            }
        }
    }

    /// A new session directory (or the last readiness check's), whose first request is the
    /// readiness check; run. If a session's check fails, nothing was split: it is set aside as
    /// the last readiness check, and the state stays Idle.
    async fn start(&self, current: &mut Option<Session>, plan: &Path, start: Start) -> Result<Outcome> {
        let (command, goal) = match start {
            Start::Readiness => (Command::Readiness, None),
            Start::Session { goal } => (Command::Split, goal),
        };
        let requests = admit(command, current.as_ref().map(|s| &s.progress))?;
        let mut compilation = compile_for(self.platform, plan, self.ctx.keyring.as_deref())?;
        let compiled = compilation.compiled.take().expect("checked");
        let state = &self.ctx.state;
        let (id, dest) = match start {
            // The last check's record stays until the new one replaces it.
            Start::Readiness => (format!("readiness-{}", session::new_id()), (state.readiness(), Commit::Replace)),
            Start::Session { .. } => (session::new_id(), (state.session(), Commit::New)),
        };
        let operation = operation_entry(command, &requests, goal);
        let begin = begin_entry(&id, plan, self.platform);
        let new = NewSession { dest: &dest.0, commit: dest.1, compilation: &compilation, first: [&begin, &operation] };
        let s = Session::create(state, &new, compiled)?;
        drop(compilation);
        if let Start::Session { .. } = start {
            let (name, model) = (self.platform.name(), &self.platform.inventory().model);
            self.console.say(&format!("session {id}: {} on {name} ({model})", plan.display()));
        }
        let s = current.insert(self.watched(s));
        if let Start::Session { .. } = start {
            self.notify(s, Event::Started, (None, None), &format!("session {id} started: {}", plan.display())).await;
        }
        self.run_requests(s, &requests).await
    }

    /// A command on the session in progress: merge, commit, abort, finish, retry, skip,
    /// resume. `resume` and `retry` carry on to where `duet run` was headed.
    async fn go_on(&self, request: &Request, s: &mut Session) -> Result<Outcome> {
        let command = request.command();
        // `retry --from` of a request that had not failed runs that request again, and no
        // further: going on to `duet run`'s goal (a commit, perhaps) is not what was asked.
        let carry_on =
            s.progress.operational() != Operational::Ready || !matches!(request, Request::Retry { from: Some(_), .. });
        // A Broken session the plan says to abort, whose duet died before it could.
        if command == Command::Resume
            && let Some((_, broken)) = s.progress.broken().map(|(r, b)| (r, b.clone()))
            && Self::aborts_by_itself(s, &broken)
        {
            return self.abort_by_itself(s, &broken).await;
        }
        let requests = self.requests_for(request, s).await?;
        let outcome = self.run_requests(s, &requests).await?;
        let goal = s.progress.operation.as_ref().and_then(|o| o.goal);
        match (outcome, goal, command) {
            (Outcome::Success, Some(goal), Command::Retry | Command::Resume | Command::Skip) if carry_on => {
                self.toward(s, goal, true).await
            }
            (Outcome::Success, Some(goal), _) if !carry_on && s.progress.goal_ahead().is_some() => {
                self.console
                    .say(&format!("`duet run` was headed for {}: `duet resume` carries on there", goal.as_str()));
                Ok(Outcome::Success)
            }
            (outcome, ..) => Ok(outcome),
        }
    }

    /// The requests `request` runs on the session, journaled with who asked (and why).
    async fn requests_for(&self, request: &Request, s: &mut Session) -> Result<Vec<RequestName>> {
        let command = request.command();
        let requests = match request {
            // A repair is judged against the request's steps (and may retry a Ready one).
            Request::Retry { from: Some(_), .. } | Request::Skip { .. } => self.operator_repair(s, request)?,
            Request::Abort => self.abort_requests(s).await?,
            _ => admit(command, Some(&s.progress))?,
        };
        if matches!(command, Command::Upgrade | Command::Merge | Command::Commit | Command::Abort | Command::Finish) {
            begin(s, command, &requests, None)?;
        } else if let Request::Retry { from: None, reason } = request
            && let Some(&request) = requests.first()
        {
            let retry = Entry::Retry { request, user: user(), from: None, steps: Vec::new(), reason: reason.clone() };
            s.record(&retry, Durability::Durable)?;
        }
        Ok(requests)
    }

    /// Runs the plan's notifications of `event`; one that fails is a warning in the activity
    /// log, and changes nothing else.
    async fn notify(
        &self,
        s: &mut Session,
        event: Event,
        (request, step): (Option<RequestName>, Option<&str>),
        message: &str,
    ) {
        let plan = std::sync::Arc::clone(&s.compiled);
        let request_name = request.map(RequestName::as_str);
        let happened = Happened { event, session: s.id(), request: request_name, step, message };
        let warnings = notify::send(&plan, &s.dir.clone(), happened, &self.ctx.options).await;
        for message in warnings {
            let note = Entry::Note { request, step: None, severity: Severity::Warning, message };
            let _ = s.record(&note, Durability::Buffered);
        }
    }

    /// The abort requests that apply, once what the interrupted request left running is
    /// stopped.
    async fn abort_requests(&self, s: &mut Session) -> Result<Vec<RequestName>> {
        let mut requests = admit(Command::Abort, Some(&s.progress))?;
        run::stop_interrupted(self.platform, s, &self.ctx.options).await?;
        // The journal may not know of a merge the machine made just before duet died.
        if requests == [RequestName::AbortFromSplit] && self.platform.observe().await?.phase == Phase::Merged {
            self.console.say("the machine is merged (the merge completed before duet stopped): aborting from Merge");
            requests = vec![RequestName::AbortFromMerge];
        }
        Ok(requests)
    }

    /// The plan says to abort when this failure happens (`on_failure: abort`, or the failed
    /// approval's `on_expiry: abort`), and the state model allows an abort from here.
    fn aborts_by_itself(s: &Session, broken: &Broken) -> bool {
        state::aborts_by_itself(&s.progress, &s.compiled.unattended, broken)
    }

    /// The automatic abort of an unattended run: journaled as started by duet, with the failed
    /// step as its reason. The session stops Aborted (Ready), so `status` says what happened
    /// and `duet finish` ends it.
    async fn abort_by_itself(&self, s: &mut Session, broken: &Broken) -> Result<Outcome> {
        self.console.say(&format!(
            "the plan says to abort when this fails: aborting by itself ({} failed: {})",
            broken.step, broken.message
        ));
        let requests = self.abort_requests(s).await?;
        let mut operation = operation_entry(Command::Abort, &requests, None);
        if let Entry::Operation { automatic, .. } = &mut operation {
            *automatic = Some(broken.clone());
        }
        s.record(&operation, Durability::Durable)?;
        match Box::pin(self.run_requests(s, &requests)).await? {
            // The upgrade failed, however cleanly it was undone.
            Outcome::Success => Ok(Outcome::Failure),
            other => Ok(other),
        }
    }

    /// `duet skip STEP` and `duet retry --from STEP`: judged against the current request's
    /// steps, journaled with who and why; then the request runs on (and the rest of its
    /// operation).
    fn operator_repair(&self, s: &mut Session, request: &Request) -> Result<Vec<RequestName>> {
        if let Request::Skip { .. } = request {
            admit(Command::Skip, Some(&s.progress))?;
        }
        let current = s.progress.current().map(|(r, _)| r).expect("a session has a request");
        let steps = run::steps_of(&s.compiled, current, &self.platform.inventory().event_logs);
        let refused = |r: state::Refusal| Error::new(r.message).help(r.help);
        let entry = match request {
            Request::Skip { step, reason } => {
                let request = state::repair::skip(&s.progress, &steps, step).map_err(refused)?;
                self.console.say(&format!("{step} is marked done without running it ({reason}); {request} runs on"));
                Entry::Skip { request, step: step.clone(), user: user(), reason: reason.clone() }
            }
            Request::Retry { from: Some(step), reason } => {
                let fix = state::repair::retry_from(&s.progress, &steps, step).map_err(refused)?;
                self.console.say(&format!("{} runs again from {step}: {}", fix.request, fix.steps.join(", ")));
                let (request, from) = (fix.request, Some(step.clone()));
                Entry::Retry { request, user: user(), from, steps: fix.steps, reason: reason.clone() }
            }
            _ => unreachable!("only repairs come here"),
        };
        s.record(&entry, Durability::Durable)?;
        Ok(s.progress.remaining())
    }

    async fn run_requests(&self, session: &mut Session, requests: &[RequestName]) -> Result<Outcome> {
        let ctx = self.ctx;
        for &request in requests {
            if let Some(signal) = ctx.options.interrupt.stopping() {
                let message = format!("stopped by {} before {request}; `duet resume` continues", signal.name);
                let note = Entry::Note { request: None, step: None, severity: Severity::Warning, message };
                session.record(&note, Durability::Durable)?;
                return Ok(Outcome::Interrupted(signal));
            }
            match run::run_request(self.platform, session, request, &ctx.options).await? {
                RequestOutcome::Ready => {
                    let event = match request {
                        RequestName::AbortFromSplit | RequestName::AbortFromMerge => Some(Event::Aborted),
                        RequestName::Commit => Some(Event::Committed),
                        RequestName::Finish => Some(Event::Finished),
                        _ => None,
                    };
                    if let Some(event) = event {
                        let message = format!("{request} completed");
                        self.notify(session, event, (Some(request), None), &message).await;
                    }
                }
                RequestOutcome::Interrupted(signal) => return Ok(Outcome::Interrupted(signal)),
                RequestOutcome::Broken(broken) => {
                    let message = format!("{request} is Broken at step {}: {}", broken.step, broken.message);
                    self.notify(session, Event::Broken, (Some(request), Some(&broken.step)), &message).await;
                    let outcome = self.broken(session, request, &broken)?;
                    if Self::aborts_by_itself(session, &broken) {
                        return Box::pin(self.abort_by_itself(session, &broken)).await;
                    }
                    return Ok(outcome);
                }
            }
        }
        if session.progress.finished_ok(RequestName::Finish) {
            let id = session.id().to_owned();
            let dest = session::archive(&ctx.state, &session.dir, &id)?;
            self.console.say(&format!("session {id} finished; its record is in {}", dest.display()));
        }
        Ok(Outcome::Success)
    }

    /// Says why `request` is Broken and what to do. A session's readiness check failed: nothing
    /// was split, the attempt is kept as the last readiness check, and the state stays Idle.
    fn broken(&self, session: &mut Session, request: RequestName, broken: &Broken) -> Result<Outcome> {
        let state_dir = &self.ctx.state;
        let fix = match session.progress.step(request, &broken.step).and_then(|s| s.result.as_ref()) {
            Some(StepResult::Failed { help: Some(help), .. }) => help.clone(),
            _ => "correct the problem (`duet log`)".to_owned(),
        };
        let help = format!("{fix}, {}", state::after_broken(&session.progress));
        let error = Error::new(format!("{request} is Broken at step {}: {}", broken.step, broken.message));
        console::eprintln(&error.help(help).report(None));
        if request == RequestName::CheckReadiness && session.dir == state_dir.session() {
            session::replace_dir(state_dir, &session.dir, &state_dir.readiness())?;
            session.dir = state_dir.readiness();
            self.console.say("the readiness check failed, so nothing was split; the state stays Idle");
        }
        Ok(Outcome::Failure)
    }

    /// Drives a Ready session on toward `goal` (`duet run`): merge, commit, finish. `ran`: this
    /// command has run requests already (so reaching the goal at once is no news).
    async fn toward(&self, session: &mut Session, goal: Through, mut ran: bool) -> Result<Outcome> {
        loop {
            if !session.dir.exists() {
                return Ok(Outcome::Success);
            }
            let progress = &session.progress;
            let command = match progress.operational() {
                Operational::Ready => {
                    let Some(command) = next_toward(progress, goal) else {
                        if !ran {
                            let state = progress.upgrade_state();
                            let through = goal.as_str();
                            self.console.say(&format!(
                                "nothing to run: the session is in state {state}, at or past `--through {through}`"
                            ));
                        }
                        return Ok(Outcome::Success);
                    };
                    command
                }
                Operational::Busy => Command::Resume,
                Operational::Broken => return Err(cannot_run_on(progress)),
            };
            if command != Command::Resume
                && let Some(signal) = self.ctx.options.interrupt.stopping()
            {
                return Ok(Outcome::Interrupted(signal));
            }
            ran = true;
            let requests = admit(command, Some(progress))?;
            if command != Command::Resume {
                begin(session, command, &requests, Some(goal))?;
            }
            let outcome = self.run_requests(session, &requests).await?;
            if outcome != Outcome::Success {
                return Ok(outcome);
            }
        }
    }
}

/// The command that takes a Ready session one step toward `goal`, if any: from Split, the
/// plan's upgrade tasks come before the merge.
fn next_toward(progress: &Progress, goal: Through) -> Option<Command> {
    match (progress.upgrade_state(), goal) {
        (State::Split, Through::Merge | Through::Commit | Through::Finish) if progress.tasks_pending() => {
            Some(Command::Upgrade)
        }
        (State::Split, Through::Merge | Through::Commit | Through::Finish) => Some(Command::Merge),
        (State::Merge, Through::Commit | Through::Finish) => Some(Command::Commit),
        (State::Commit | State::Abort, Through::Finish) => Some(Command::Finish),
        _ => None,
    }
}

/// `duet run` meets a Broken request on its way.
fn cannot_run_on(progress: &Progress) -> Error {
    let (request, broken) = progress.broken().expect("Broken has a reason");
    Error::new(format!("cannot run on: {request} is Broken at step {}: {}", broken.step, broken.message)).help(format!(
        "correct the problem, {} (a retry carries on to where `duet run` was headed)",
        state::after_broken(progress)
    ))
}

/// `duet run PLAN` continues the session in progress only if it was started from PLAN.
fn same_plan(session: &Session, plan: &Path) -> Result<()> {
    let ours = session.compiled.sources.last().map(|s| PathBuf::from(&s.path));
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
fn open_session(ctx: &Context, console: Console) -> Result<(Option<Session>, bool)> {
    let dir = ctx.state.session();
    if !ctx.state.in_session() {
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

fn repair(dir: &Path, console: Console) -> Result<()> {
    let path = SessionDir(dir).journal();
    let said = Journal::<Entry>::repair(&path)?;
    console.say(&said);
    Ok(())
}

fn compile_for<P: Platform>(platform: &P, plan: &Path, keyring: Option<&Path>) -> Result<Compilation> {
    let compilation = compile(&CompileOptions {
        plan: plan.to_owned(),
        inventory: Some(platform.inventory_file().to_owned()),
        keyring: keyring.map(Path::to_owned),
    });
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
    let (command, user) = (command_line(), user());
    Entry::Operation { operation, requests: requests.to_vec(), goal, command, user, automatic: None }
}

fn begin(session: &mut Session, operation: Command, requests: &[RequestName], goal: Option<Through>) -> Result<()> {
    Ok(session.record(&operation_entry(operation, requests, goal), Durability::Durable)?)
}
