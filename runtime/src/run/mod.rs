//! Runs one request's step DAG (execution model 4) against a [`Platform`], with durable
//! checkpoints (execution model 6).
//!
//! One loop owns the session: it starts every step whose dependencies are complete, and is the
//! only writer of the journal. Steps run as futures polled by that loop (so the two sides'
//! chains and independent services proceed concurrently); they talk back through a channel
//! (progress notes, a service's saved startup type, which must be durable before the step goes
//! on). A step's completion is fsync'd before any step that depends on it starts. A failed step
//! stops the request: nothing new starts, running steps finish, and the request is Broken.
//!
//! Before running, the loop reconciles steps the journal shows started but not finished (the
//! process died): a platform operation the machine is already past is recorded as done without
//! running it again; an action marked `rerun: unsafe` is not run again and leaves the request
//! Broken until an operator retries it; anything else runs again (at-least-once).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use duet_compiler::compiled::{Action, CompiledPlan, Op, RequestName, Side, Step, StepKind};
use duet_compiler::inventory::Startup;
use duet_compiler::plan::Rerun;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use indexmap::IndexMap;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::platform::{Finding, Operation, Phase, Platform, PlatformError, Progress as PlatformProgress, Severity};
use crate::process::interrupt::{Interrupt, Signal};
use crate::process::{Exit, Marks, ProcessOutcome, ProcessSpec};
use crate::state::Saved;
use crate::store::journal::Durability;
use crate::store::session::Session;
use crate::view::console::Console;
use duet_contract::record::{Broken, Entry, Output, StepResult, Stream};

/// Runtime settings that are not part of the plan.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// How long a service may take to stop or start before the step fails.
    pub(crate) service_timeout: Duration,
    /// After an action's timeout: SIGTERM, then SIGKILL after this long.
    pub(crate) kill_grace: Duration,
    /// Ctrl-C and SIGTERM ([`crate::process::interrupt`]).
    pub(crate) interrupt: Interrupt,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            service_timeout: Duration::from_secs(120),
            kill_grace: Duration::from_secs(5),
            interrupt: Interrupt::default(),
        }
    }
}

/// The step an abort runs first: the Upgrade Side's event logs and dumps, before the abort
/// discards them.
pub(crate) const EVIDENCE_STEP: &str = "evidence:upgrade";

/// The steps of a request as the runtime runs them: the compiled DAG, plus the evidence step
/// in front of an abort.
/// Borrowed from the plan, except for an abort's (a request can hold thousands of steps).
pub(crate) fn steps_of<'p>(plan: &'p CompiledPlan, request: RequestName, event_logs: &[String]) -> Cow<'p, [Step]> {
    let compiled: &[Step] = plan.requests.get(&request).map_or(&[], |r| r.steps.as_slice());
    if matches!(request, RequestName::AbortFromSplit | RequestName::AbortFromMerge) {
        let mut steps = compiled.to_vec();
        for step in steps.iter_mut().filter(|s| s.after.is_empty()) {
            step.after.push(EVIDENCE_STEP.into());
        }
        steps.insert(
            0,
            Step {
                id: EVIDENCE_STEP.into(),
                kind: StepKind::LogBackup,
                side: Side::Upgrade,
                op: Op::Backup,
                after: Vec::new(),
                action: None,
                service: None,
                env: None,
                timeout_ms: None,
                logs: event_logs.to_vec(),
            },
        );
        return Cow::Owned(steps);
    }
    Cow::Borrowed(compiled)
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ready,
    Broken(Broken),
    /// Stopped by a signal before the request completed: it stays unfinished, and `resume`
    /// continues it.
    Interrupted(Signal),
}

/// A message from a running step to the loop.
struct Message {
    entry: Entry,
    /// Durable, and acknowledged once written.
    ack: Option<oneshot::Sender<std::result::Result<(), String>>>,
}

/// What a finished step attempt reports.
struct Done {
    index: usize,
    attempt: u32,
    result: StepResult,
    output: Option<Output>,
    duration: Duration,
    /// The step ran, but duet could not keep what it must (its output): stop after it.
    halt: Option<Error>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sched {
    Pending,
    Running,
    Done,
    Failed,
}

/// Which steps may start: each waits for its dependencies in this request (an `after` naming
/// no step here is met) and becomes ready when the last one completes; ready steps start in the
/// DAG's order. Linear in the steps and their dependencies.
struct Schedule {
    state: Vec<Sched>,
    dependents: Vec<Vec<usize>>,
    waiting: Vec<usize>,
    ready: BTreeSet<usize>,
}

impl Schedule {
    fn new(steps: &[Step], state: Vec<Sched>) -> Self {
        let index: HashMap<&str, usize> = steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
        let mut waiting: Vec<usize> = vec![0; steps.len()];
        for (i, step) in steps.iter().enumerate() {
            for j in step.after.iter().filter_map(|d| index.get(d.as_str()).copied()) {
                dependents[j].push(i);
                if state[j] != Sched::Done {
                    waiting[i] += 1;
                }
            }
        }
        let ready = (0..steps.len()).filter(|&i| state[i] == Sched::Pending && waiting[i] == 0).collect();
        Self { state, dependents, waiting, ready }
    }

    /// The next step to start (marked running).
    fn next(&mut self) -> Option<usize> {
        let i = self.ready.pop_first()?;
        self.state[i] = Sched::Running;
        Some(i)
    }

    /// Whether every step has completed.
    fn complete(&self) -> bool {
        self.state.iter().all(|&s| s == Sched::Done)
    }

    fn finished(&mut self, i: usize, ok: bool) {
        self.state[i] = if ok { Sched::Done } else { Sched::Failed };
        if ok {
            for &k in &self.dependents[i] {
                self.waiting[k] -= 1;
                if self.waiting[k] == 0 && self.state[k] == Sched::Pending {
                    self.ready.insert(k);
                }
            }
        }
    }
}

/// What a step needs, shared by all running steps (the loop keeps the session to itself).
struct Ctx<'a, P> {
    platform: &'a P,
    plan: &'a CompiledPlan,
    actions: &'a HashMap<&'a str, &'a Action>,
    request: RequestName,
    session_dir: &'a Path,
    session_id: &'a str,
    saved: &'a IndexMap<String, Saved>,
    options: &'a Options,
    tx: mpsc::UnboundedSender<Message>,
    /// This request's output directory exists (made by the first action that runs).
    output_dir: std::cell::Cell<bool>,
}

pub(crate) async fn run_request<P: Platform>(
    platform: &P,
    session: &mut Session,
    request: RequestName,
    options: &Options,
    console: &mut Console,
) -> Result<Outcome> {
    let plan = Arc::clone(&session.compiled);
    let steps = steps_of(&plan, request, &platform.inventory().event_logs);
    let state = plan.requests.get(&request).map_or(duet_compiler::compiled::State::Idle, |r| r.state);
    console.request(request, state);
    let restarting = session.progress.requests.get(&request).is_some_and(|r| r.ended == crate::state::Ended::No);
    if !restarting {
        session.record(&Entry::RequestStarted { request }, Durability::Buffered)?;
    }

    // Where the journal left each step. A step that failed (and was not retried since: a retry
    // clears failures) means the request was Broken already; duet stopped before saying so.
    // Every interrupted step is reconciled, even after a failure, so that nothing a killed
    // attempt left running goes on unsupervised.
    let mut sched = vec![Sched::Pending; steps.len()];
    let mut broken_at: Option<usize> = None;
    for (i, step) in steps.iter().enumerate() {
        let Some(progress) = session.progress.step(request, &step.id) else { continue };
        if progress.completed() {
            sched[i] = Sched::Done;
        } else if progress.running {
            let attempts = progress.attempts;
            if let Some(outcome) = reconcile(platform, session, request, step, attempts, options, console).await? {
                sched[i] = outcome;
            }
        } else if matches!(progress.result, Some(StepResult::Failed { .. })) {
            sched[i] = Sched::Failed;
        }
        if sched[i] == Sched::Failed {
            broken_at.get_or_insert(i);
        }
    }
    if let Some(i) = broken_at {
        return finish(session, request, console, Some(&steps[i]));
    }

    let ended = run_steps(platform, session, request, &steps, Schedule::new(&steps, sched), options, console).await;
    let Stops { failed, halt, journal_lost, complete } = ended;
    if let Some(e) = halt {
        // Not Broken: nothing about the upgrade failed. The request stays unfinished, so that
        // `resume` continues it once the disk is fixed (a step that did fail is found failed).
        if !journal_lost {
            let message = format!("stopped: {}", e.message);
            let note = Entry::Note { request: Some(request), step: None, severity: Severity::Error, message };
            let _ = session.record(&note, Durability::Durable);
        }
        return Err(e);
    }
    if let Some(signal) = options.interrupt.stopping()
        && failed.is_none()
        && !complete
    {
        let what =
            if options.interrupt.escalated() { "the running steps were stopped" } else { "no new step was started" };
        let message = format!("stopped by {}: {what}; `duet resume` continues", signal.name);
        let note = Entry::Note { request: Some(request), step: None, severity: Severity::Warning, message };
        session.record(&note, Durability::Durable)?;
        return Ok(Outcome::Interrupted(signal));
    }
    finish(session, request, console, failed.map(|i| &steps[i]))
}

/// Why the step loop stopped starting steps, and whether it can still record.
#[derive(Default)]
struct Stops {
    /// The first step that failed.
    failed: Option<usize>,
    /// What stops duet although no step failed: a file of its own it could not write.
    halt: Option<Error>,
    /// A journal write failed: nothing more is recorded.
    journal_lost: bool,
    /// Every step completed.
    complete: bool,
}

impl Stops {
    fn starting(&self, interrupt: &Interrupt) -> bool {
        self.failed.is_none() && self.halt.is_none() && interrupt.stopping().is_none()
    }

    /// Records `entry`, unless the journal is lost; a failure to record loses it.
    fn record(&mut self, session: &mut Session, entry: &Entry, durability: Durability) {
        if !self.journal_lost
            && let Err(e) = session.record(entry, durability)
        {
            self.lose(e);
        }
    }

    /// A step that did not start (see [`clear_earlier_attempts`]): recorded as a failure of its
    /// last attempt, as a reconciled one is.
    fn refused(
        &mut self,
        session: &mut Session,
        console: &mut Console,
        (request, step, attempt): (RequestName, &Step, u32),
        result: StepResult,
    ) {
        console.step_finished(step, attempt, &result, Duration::ZERO, None);
        let entry =
            Entry::StepFinished { request, step: step.id.clone(), attempt, result, duration_ms: 0, output: None };
        self.record(session, &entry, Durability::Durable);
    }

    fn lose(&mut self, e: Error) {
        self.journal_lost = true;
        self.halt.get_or_insert(e);
    }

    /// Records a step's message. With the journal lost, it is only shown, and a step waiting
    /// for it to be durable is told it is not.
    fn deliver(&mut self, session: &mut Session, console: &mut Console, message: Message) {
        if let Entry::Note { severity, message: text, .. } = &message.entry {
            console.note(*severity, text);
        }
        if self.journal_lost {
            if let Some(ack) = message.ack {
                let _ = ack.send(Err("the journal could not be written; nothing more is recorded".to_owned()));
            }
            return;
        }
        let durability = if message.ack.is_some() { Durability::Durable } else { Durability::Buffered };
        let written = session.record(&message.entry, durability);
        if let Some(ack) = message.ack {
            let _ = ack.send(written.as_ref().copied().map_err(ToString::to_string));
        }
        if let Err(e) = written {
            self.lose(e);
        }
    }
}

/// The loop: starts every ready step, records what the running ones say and how they end.
async fn run_steps<P: Platform>(
    platform: &P,
    session: &mut Session,
    request: RequestName,
    steps: &[Step],
    mut schedule: Schedule,
    options: &Options,
    console: &mut Console,
) -> Stops {
    let plan = Arc::clone(&session.compiled);
    let actions: HashMap<&str, &Action> = plan.actions.iter().map(|a| (a.id.as_str(), a)).collect();
    let saved = session.progress.saved.clone();
    let dir = session.dir.clone();
    let id = session.id().to_owned();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let ctx = Ctx {
        platform,
        plan: &plan,
        actions: &actions,
        request,
        session_dir: &dir,
        session_id: &id,
        saved: &saved,
        options,
        tx,
        output_dir: std::cell::Cell::new(false),
    };
    let mut running: FuturesUnordered<Pin<Box<dyn Future<Output = Done> + '_>>> = FuturesUnordered::new();
    let mut run = Stops::default();
    let interrupt = &options.interrupt;
    let mut told = interrupt.stopping().is_some();
    loop {
        while run.starting(interrupt)
            && let Some(i) = schedule.next()
        {
            let step = &steps[i];
            let attempt = session.progress.step(request, &step.id).map_or(0, |p| p.attempts) + 1;
            if attempt > 1
                && step.kind == StepKind::Action
                && let Some(refused) = clear_earlier_attempts(&ctx, session, &mut run, console, step).await
            {
                // Not started: an earlier attempt of this unsafe action still runs.
                run.refused(session, console, (request, step, attempt - 1), refused);
                run.failed.get_or_insert(i);
                schedule.finished(i, false);
                continue;
            }
            let unsafe_action = ctx.action(step).is_some_and(|a| a.rerun == Rerun::Unsafe);
            let durability = if unsafe_action { Durability::Durable } else { Durability::Buffered };
            run.record(session, &Entry::StepStarted { request, step: step.id.clone(), attempt }, durability);
            if run.journal_lost {
                break;
            }
            console.step_started(step, attempt);
            running.push(Box::pin(run_step(&ctx, i, step, attempt)));
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            // The activity log says when duet was told to stop, and what it waits for.
            () = interrupt.stop(), if !told => {
                told = true;
                let signal = interrupt.stopping().map_or("a signal", |s| s.name);
                let message = format!("{signal} received: starting no new step; waiting for the running steps");
                let note = Entry::Note { request: Some(request), step: None, severity: Severity::Warning, message };
                run.record(session, &note, Durability::Durable);
            }
            Some(message) = rx.recv() => run.deliver(session, console, message),
            Some(done) = running.next() => {
                while let Ok(message) = rx.try_recv() {
                    run.deliver(session, console, message);
                }
                let step = &steps[done.index];
                let ok = done.result.succeeded();
                console.step_finished(step, done.attempt, &done.result, done.duration, done.output.as_ref());
                if let StepResult::Interrupted { message } | StepResult::NotStarted { message } = &done.result
                    && !interrupt.escalated()
                {
                    run.halt.get_or_insert_with(|| Error::storage(message.clone()));
                }
                if let Some(e) = done.halt {
                    run.halt.get_or_insert(e);
                }
                if matches!(done.result, StepResult::Failed { .. }) {
                    run.failed.get_or_insert(done.index);
                }
                let finished = Entry::StepFinished {
                    request,
                    step: step.id.clone(),
                    attempt: done.attempt,
                    result: done.result,
                    duration_ms: millis(done.duration),
                    output: done.output,
                };
                run.record(session, &finished, Durability::Durable);
                schedule.finished(done.index, ok);
            }
        }
    }
    drop(running);
    drop(ctx);
    while let Ok(message) = rx.try_recv() {
        run.deliver(session, console, message);
    }
    run.complete = schedule.complete();
    run
}

/// Before attempt 2 or later of an action starts (a retry, `retry --from`, a resume, the steps
/// after a skip, an abort's own actions): whatever an earlier attempt of the same step left
/// running (found by the step's marks) must not run beside it. A `rerun: safe` action's
/// leftovers are stopped, and the activity log says so; an unsafe action's are not touched,
/// and the step does not start: the returned failure names them and what to do.
async fn clear_earlier_attempts<P: Platform>(
    ctx: &Ctx<'_, P>,
    session: &mut Session,
    run: &mut Stops,
    console: &mut Console,
    step: &Step,
) -> Option<StepResult> {
    let marks = Marks::step(ctx.session_id, &step.id);
    let alive = match ctx.platform.leftovers(step.side, &marks).await {
        Ok(alive) if alive.is_empty() => return None,
        Ok(alive) => alive,
        Err(e) => return Some(platform_failed(e)),
    };
    if let Some(action) = ctx.action(step).filter(|a| a.rerun == Rerun::Unsafe) {
        return Some(StepResult::Failed {
            message: format!(
                "custom action `{}` is still running from an earlier attempt (processes {}); it is marked `rerun: unsafe`, so duet does not start another attempt beside it",
                action.id,
                pids(&alive)
            ),
            help: Some(format!(
                "wait for it to end, or stop it (`kill {}`)",
                alive.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
            )),
        });
    }
    let stopped = match ctx.platform.stop_leftovers(step.side, &marks, ctx.options.kill_grace).await {
        Ok(stopped) => stopped,
        Err(e) => return Some(platform_failed(e)),
    };
    let message = format!(
        "an earlier attempt of {} was still running: stopped its processes {} before running it again",
        step.id,
        pids(&stopped)
    );
    console.note(Severity::Warning, &message);
    let note =
        Entry::Note { request: Some(ctx.request), step: Some(step.id.clone()), severity: Severity::Warning, message };
    run.record(session, &note, Durability::Buffered);
    None
}

fn finish(
    session: &mut Session,
    request: RequestName,
    console: &mut Console,
    failed: Option<&Step>,
) -> Result<Outcome> {
    let broken = failed.map(|step| {
        let message = match session.progress.step(request, &step.id).and_then(|p| p.result.as_ref()) {
            Some(StepResult::Failed { message, .. }) => message.clone(),
            _ => "failed".into(),
        };
        Broken { step: step.id.clone(), message }
    });
    session.record(
        &Entry::RequestFinished { request, broken: broken.clone(), peak_rss_kib: peak_rss_kib() },
        Durability::Durable,
    )?;
    console.request_finished(request, broken.as_ref());
    Ok(broken.map_or(Outcome::Ready, Outcome::Broken))
}

/// A step the journal shows started but not finished: the process running it died.
async fn reconcile<P: Platform>(
    platform: &P,
    session: &mut Session,
    request: RequestName,
    step: &Step,
    attempts: u32,
    options: &Options,
    console: &mut Console,
) -> Result<Option<Sched>> {
    let plan = Arc::clone(&session.compiled);
    let finished = |result: StepResult| Entry::StepFinished {
        request,
        step: step.id.clone(),
        attempt: attempts,
        result,
        duration_ms: 0,
        output: None,
    };
    if let Some(op) = operation_of(step.op) {
        let observed = platform.observe().await?;
        if done_on(op, observed.phase) {
            let result = StepResult::Reconciled {
                message: format!("the {op} had completed before duet stopped (the machine is {:?})", observed.phase),
            };
            console.step_finished(step, attempts, &result, Duration::ZERO, None);
            session.record(&finished(result), Durability::Durable)?;
            return Ok(Some(Sched::Done));
        }
    }
    let marks = Marks::attempt(session.id(), &step.id, attempts);
    if let Some(action) = action_of(&plan, step).filter(|a| a.rerun == Rerun::Unsafe) {
        let alive = platform.leftovers(step.side, &marks).await?;
        let still = if alive.is_empty() {
            String::new()
        } else {
            format!("; its processes {} are still running", pids(&alive))
        };
        let result = StepResult::Failed {
            message: format!(
                "custom action `{}` was running when duet stopped (attempt {attempts}){still}; it is marked `rerun: unsafe`, so duet did not run it again",
                action.id
            ),
            help: Some("check whether it completed: a retry runs it again".into()),
        };
        console.step_finished(step, attempts, &result, Duration::ZERO, None);
        session.record(&finished(result), Durability::Durable)?;
        return Ok(Some(Sched::Failed));
    }
    if step.kind == StepKind::Action {
        stop_attempt(platform, session, request, step, attempts, options, console).await?;
    }
    let message = format!("{} was interrupted at attempt {attempts}; running it again", step.id);
    console.note(Severity::Warning, &message);
    session.record(
        &Entry::Note { request: Some(request), step: Some(step.id.clone()), severity: Severity::Warning, message },
        Durability::Buffered,
    )?;
    Ok(None)
}

/// Stops what attempt `attempts` of an action step left running when the duet supervising it
/// died (found by the marks in its environment), and says so.
async fn stop_attempt<P: Platform>(
    platform: &P,
    session: &mut Session,
    request: RequestName,
    step: &Step,
    attempts: u32,
    options: &Options,
    console: &mut Console,
) -> Result<()> {
    let marks = Marks::attempt(session.id(), &step.id, attempts);
    let stopped = platform.stop_leftovers(step.side, &marks, options.kill_grace).await?;
    if !stopped.is_empty() {
        let message = format!(
            "attempt {attempts} of {} outlived the duet that started it: stopped its processes {}",
            step.id,
            pids(&stopped)
        );
        console.note(Severity::Warning, &message);
        session.record(
            &Entry::Note { request: Some(request), step: Some(step.id.clone()), severity: Severity::Warning, message },
            Durability::Buffered,
        )?;
    }
    Ok(())
}

/// Before an abort: what the last request's interrupted actions left behind is stopped, so
/// nothing of the abandoned request runs on while the abort does.
pub(crate) async fn stop_interrupted<P: Platform>(
    platform: &P,
    session: &mut Session,
    options: &Options,
    console: &mut Console,
) -> Result<()> {
    // Interrupted, or Broken with other steps still marked running (duet died while they ran).
    let Some((request, progress)) = session.progress.current() else { return Ok(()) };
    let plan = Arc::clone(&session.compiled);
    let running: Vec<(Step, u32)> = steps_of(&plan, request, &[])
        .iter()
        .filter(|step| step.kind == StepKind::Action)
        .cloned()
        .filter_map(|step| {
            let attempts = progress.steps.get(&step.id).filter(|p| p.running)?.attempts;
            Some((step, attempts))
        })
        .collect();
    for (step, attempts) in running {
        stop_attempt(platform, session, request, &step, attempts, options, console).await?;
    }
    // Anything else of this session still running (an unsafe action a resume left alone, a
    // daemon an earlier attempt started) would run on beside the abort: it is stopped too.
    let marks = Marks::session(session.id());
    let mut stopped = platform.stop_leftovers(Side::Production, &marks, options.kill_grace).await?;
    stopped.extend(platform.stop_leftovers(Side::Upgrade, &marks, options.kill_grace).await?);
    if !stopped.is_empty() {
        let message =
            format!("stopped processes {} that earlier action attempts left running, before the abort", pids(&stopped));
        console.note(Severity::Warning, &message);
        session.record(
            &Entry::Note { request: Some(request), step: None, severity: Severity::Warning, message },
            Durability::Buffered,
        )?;
    }
    Ok(())
}

fn pids(pids: &[u32]) -> String {
    pids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn operation_of(op: Op) -> Option<Operation> {
    Some(match op {
        Op::Split => Operation::Split,
        Op::Merge => Operation::Merge,
        Op::Commit => Operation::Commit,
        Op::Abort => Operation::Abort,
        Op::Revert => Operation::Revert,
        Op::Finish => Operation::Finish,
        _ => return None,
    })
}

/// Whether the machine's phase shows `op` already done. A revert cannot be told apart from a
/// split machine, so it runs again (it is idempotent).
fn done_on(op: Operation, phase: Phase) -> bool {
    match op {
        Operation::Split => phase == Phase::Split,
        Operation::Merge => phase == Phase::Merged,
        Operation::Commit => phase == Phase::Committed,
        Operation::Abort => phase == Phase::Aborted,
        Operation::Finish => phase == Phase::Duplexed,
        Operation::Revert => false,
    }
}

fn action_of<'p>(plan: &'p CompiledPlan, step: &Step) -> Option<&'p duet_compiler::compiled::Action> {
    step.action.as_deref().and_then(|id| plan.actions.iter().find(|a| a.id == id))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Peak resident memory of this process in KiB (Linux `VmHWM`).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn run_step<P: Platform>(ctx: &Ctx<'_, P>, index: usize, step: &Step, attempt: u32) -> Done {
    let started = Instant::now();
    let (result, output, halt) = match step.kind {
        StepKind::Action => action(ctx, step, attempt).await,
        kind => {
            let run = async {
                match kind {
                    StepKind::Probe => probe(ctx, step).await,
                    StepKind::Platform => operate(ctx, step).await,
                    StepKind::Service => service(ctx, step).await,
                    _ => backup(ctx, step).await,
                }
            };
            // An action stops its process tree at the second signal; anything else is
            // abandoned where it is, as a crash would leave it, and `resume` reconciles it.
            let result = tokio::select! {
                // A step that completes in the same poll as the signal completed.
                biased;
                result = run => result,
                () = ctx.options.interrupt.escalation() => interrupted(ctx, "while it was running"),
            };
            (result, None, None)
        }
    };
    Done { index, attempt, result, output, duration: started.elapsed(), halt }
}

/// A step cut short by a second signal.
fn interrupted<P>(ctx: &Ctx<'_, P>, what: &str) -> StepResult {
    let signal = ctx.options.interrupt.stopping().map_or("a signal", |s| s.name);
    StepResult::Interrupted {
        message: format!("interrupted by {signal} {what}; `duet resume` reconciles it with the machine"),
    }
}

impl<P> Ctx<'_, P> {
    fn action(&self, step: &Step) -> Option<&Action> {
        step.action.as_deref().and_then(|id| self.actions.get(id).copied())
    }

    fn note(&self, step: &Step, severity: Severity, message: impl Into<String>) {
        let entry =
            Entry::Note { request: Some(self.request), step: Some(step.id.clone()), severity, message: message.into() };
        let _ = self.tx.send(Message { entry, ack: None });
    }

    /// Sends an entry that must be durable before the step goes on.
    async fn durable(&self, entry: Entry) -> std::result::Result<(), String> {
        let (ack, done) = oneshot::channel();
        self.tx.send(Message { entry, ack: Some(ack) }).map_err(|_| "the session loop has stopped".to_owned())?;
        done.await.map_err(|_| "the session loop has stopped".to_owned())?
    }
}

fn failed(message: impl Into<String>, help: Option<String>) -> StepResult {
    StepResult::Failed { message: message.into(), help }
}

/// A platform error: the step failed, or (an I/O error on duet's own files) it was interrupted.
fn platform_failed(e: PlatformError) -> StepResult {
    if e.storage { StepResult::Interrupted { message: e.message } } else { failed(e.message, e.help) }
}

fn success(message: impl Into<String>) -> StepResult {
    StepResult::Success { message: message.into() }
}

async fn probe<P: Platform>(ctx: &Ctx<'_, P>, step: &Step) -> StepResult {
    let findings: Vec<Finding> = match step.op {
        Op::Binding => {
            let inventory = ctx.platform.inventory();
            let disks = &ctx.plan.disks;
            ctx.note(
                step,
                Severity::Information,
                format!(
                    "the plan binds to {} ({}): system disks {}; data disks {}",
                    inventory.model,
                    ctx.platform.name(),
                    list(&disks.system),
                    list(&disks.data)
                ),
            );
            return success("plan bound to the machine");
        }
        Op::MergeReadiness => match ctx.platform.merge_readiness().await {
            Ok(f) => f,
            Err(e) => return platform_failed(e),
        },
        _ => match ctx.platform.readiness().await {
            Ok(f) => f,
            Err(e) => return platform_failed(e),
        },
    };
    for finding in &findings {
        let subject = finding.subject.as_deref().map(|s| format!(" ({s})")).unwrap_or_default();
        ctx.note(step, finding.severity, format!("{}{subject}", finding.message));
    }
    let blocking: Vec<&Finding> = findings.iter().filter(|f| f.blocks()).collect();
    let what = if step.op == Op::MergeReadiness { "merge readiness check" } else { "readiness check" };
    match blocking.as_slice() {
        [] if findings.is_empty() => success(format!("{what} passed")),
        [] => success(format!("{what} passed with {} warning(s)", findings.len())),
        [only] => failed(
            format!(
                "{what} failed: {}{}",
                only.message,
                only.subject.as_deref().map(|s| format!(" ({s})")).unwrap_or_default()
            ),
            Some(only.help.clone()),
        ),
        [first, ..] => failed(
            format!("{what} failed: {} problems, the first: {}", blocking.len(), first.message),
            Some(format!("{}; `duet log` lists every problem", first.help)),
        ),
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() { "none".into() } else { items.join(", ") }
}

async fn operate<P: Platform>(ctx: &Ctx<'_, P>, step: &Step) -> StepResult {
    let Some(op) = operation_of(step.op) else {
        return failed(format!("{} is not a platform operation", step.id), None);
    };
    let mut progress = |p: PlatformProgress| ctx.note(step, Severity::Information, p.message);
    let run = ctx.platform.operate(op, &mut progress);
    let result = match step.timeout_ms {
        Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), run).await {
            Ok(r) => r,
            Err(_) => {
                return failed(
                    format!("the {op} timed out after {}", humantime::format_duration(Duration::from_millis(ms))),
                    Some(format!("the {op} may succeed when tried again")),
                );
            }
        },
        None => run.await,
    };
    match result {
        Ok(()) => success(format!("{op} done")),
        Err(e) => platform_failed(e),
    }
}

async fn with_timeout<T>(
    limit: Duration,
    what: String,
    fut: impl Future<Output = std::result::Result<T, PlatformError>>,
) -> std::result::Result<T, StepResult> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(platform_failed(e)),
        Err(_) => Err(failed(
            format!("{what} did not finish within {}", humantime::format_duration(limit)),
            Some(
                "if the application does not handle the loss of network or disks gracefully, restart the Upgrade Side"
                    .into(),
            ),
        )),
    }
}

async fn service<P: Platform>(ctx: &Ctx<'_, P>, step: &Step) -> StepResult {
    let Some(name) = step.service.as_deref() else { return failed(format!("{} names no service", step.id), None) };
    let (platform, side, limit) = (ctx.platform, step.side, ctx.options.service_timeout);
    let outcome: std::result::Result<String, StepResult> = async {
        match step.op {
            Op::DisableAndStop => {
                let saved = if let Some(saved) = ctx.saved.get(name) {
                    *saved
                } else {
                    let now = platform.service(side, name).await.map_err(platform_failed)?;
                    let saved = Saved { startup: now.startup, running: now.running };
                    let entry = Entry::ServiceSaved {
                        service: name.to_owned(),
                        startup: saved.startup,
                        running: saved.running,
                    };
                    ctx.durable(entry).await.map_err(|e| StepResult::Interrupted {
                        message: format!("cannot save {name}'s startup type: {e}"),
                    })?;
                    saved
                };
                platform.set_startup(side, name, Startup::Disabled).await.map_err(platform_failed)?;
                with_timeout(limit, format!("stopping {name}"), platform.stop_service(side, name)).await?;
                Ok(format!("startup type {} saved, set to disabled; stopped", saved.startup.as_str()))
            }
            Op::Stop => {
                with_timeout(limit, format!("stopping {name}"), platform.stop_service(side, name)).await?;
                Ok("stopped".into())
            }
            Op::RestoreAndStart => {
                let Some(saved) = ctx.saved.get(name) else {
                    return Err(failed(
                        format!("no saved startup type for {name}: the split did not record it"),
                        Some("set its startup type by hand on the Upgrade Side".into()),
                    ));
                };
                platform.set_startup(side, name, saved.startup).await.map_err(platform_failed)?;
                if saved.running {
                    with_timeout(limit, format!("starting {name}"), platform.start_service(side, name)).await?;
                    Ok(format!("startup type restored to {}; started", saved.startup.as_str()))
                } else {
                    Ok(format!(
                        "startup type restored to {}; not started (it was not running before the split)",
                        saved.startup.as_str()
                    ))
                }
            }
            other => Err(failed(format!("{} has an unknown service operation {other:?}", step.id), None)),
        }
    }
    .await;
    match outcome {
        Ok(message) => success(message),
        Err(result) => result,
    }
}

async fn action<P: Platform>(
    ctx: &Ctx<'_, P>,
    step: &Step,
    attempt: u32,
) -> (StepResult, Option<Output>, Option<Error>) {
    let Some(action) = ctx.action(step) else {
        return (failed(format!("{} names an action the plan does not have", step.id), None), None, None);
    };
    let mut env: Vec<(String, String)> = Vec::with_capacity(8);
    if let Some(e) = &step.env {
        env.push(("ACTIVE_UPGRADE_SIDE".into(), e.side.as_str().into()));
        env.push(("ACTIVE_UPGRADE_STATE".into(), e.state.as_str().into()));
        env.push(("ACTIVE_UPGRADE_REQUEST".into(), e.request.as_str().into()));
        env.push(("ACTIVE_UPGRADE_HW_SPLIT".into(), e.hw_split.as_str().into()));
    }
    let marks = Marks::attempt(ctx.session_id, &step.id, attempt);
    env.extend(marks.env());
    let args = if action.args.iter().any(|a| a.contains('%')) {
        let mut all = env.clone();
        // `%NAME%` expands from duet's environment too; a variable that is not UTF-8 cannot be
        // named in a plan, so it is skipped (std::env::vars would panic on it).
        all.extend(std::env::vars_os().filter_map(|(n, v)| Some((n.into_string().ok()?, v.into_string().ok()?))));
        action.args.iter().map(|a| crate::process::expand(a, &all)).collect()
    } else {
        action.args.clone()
    };
    let program = PathBuf::from(&action.file);
    let rel = format!("output/{}/{}.{attempt}", ctx.request, sanitize(&step.id));
    let spec = ProcessSpec {
        cwd: program.parent().map_or_else(|| ctx.session_dir.to_owned(), Path::to_owned),
        program,
        args,
        env,
        timeout: Duration::from_millis(step.timeout_ms.unwrap_or(action.timeout_ms)),
        kill_grace: ctx.options.kill_grace,
        output_base: ctx.session_dir.join(&rel),
        interrupt: ctx.options.interrupt.clone(),
        marks,
    };
    if let Some(parent) = spec.output_base.parent().filter(|_| !ctx.output_dir.get()) {
        if let Err(e) = std::fs::create_dir_all(parent) {
            let message = format!("{} was not started: cannot create {}: {e}", step.id, parent.display());
            return (StepResult::NotStarted { message }, None, None);
        }
        ctx.output_dir.set(true);
    }
    let outcome = match ctx.platform.run(step.side, &spec).await {
        Ok(o) => o,
        // The platform could not prepare the run (it records each start): nothing ran.
        Err(e) if e.storage => {
            let message = format!("{} was not started: {}", step.id, e.message);
            return (StepResult::NotStarted { message }, None, None);
        }
        Err(e) => return (platform_failed(e), None, None),
    };
    let output = output_of(&outcome, ctx.session_dir);
    // The action ran and its result stands; but part of what it printed is lost, so duet stops
    // after it rather than go on without a record the operator may need.
    let lost = [&outcome.stdout, &outcome.stderr].into_iter().find_map(|c| c.write_error.clone());
    let halt = lost
        .map(|why| format!("the output of {} could not be saved: {why}; the step's result is recorded", step.id))
        .or_else(|| outcome.record_error.clone().map(|why| format!("{why}; the result of {} is recorded", step.id)))
        .map(Error::storage);
    let timeout = humantime::format_duration(spec.timeout);
    let result = match outcome.exit {
        Exit::Code(0) => success("exit value 0"),
        Exit::Code(n) => failed(
            format!("Custom action failed with exit value {n}"),
            Some(format!("check its output (`duet log`) and correct the problem (action `{}`)", action.id)),
        ),
        Exit::Signal(sig) => failed(
            format!("Custom action was killed by signal {sig}"),
            Some(format!("check what stopped it (action `{}`)", action.id)),
        ),
        Exit::TimedOut => failed(
            format!("Custom action timed out after {timeout}; it was stopped with its whole process tree"),
            Some(format!("make it finish in time or raise its `timeout` (action `{}`)", action.id)),
        ),
        Exit::Interrupted => interrupted(ctx, "while it ran; it was stopped with its whole process tree"),
        Exit::SpawnFailed { message, not_found } => failed(
            message,
            Some(if not_found {
                format!("ensure `{}` exists on a system disk", action.file)
            } else {
                format!("make `{}` executable", action.file)
            }),
        ),
    };
    (result, Some(output), halt)
}

fn output_of(outcome: &ProcessOutcome, session_dir: &Path) -> Output {
    let stream = |c: &crate::process::Captured| Stream {
        tail: c.tail.clone(),
        bytes: c.bytes,
        file: c.file.as_ref().map(|f| f.strip_prefix(session_dir).unwrap_or(f).display().to_string()),
    };
    Output {
        exit: match outcome.exit {
            Exit::Code(n) => Some(n),
            _ => None,
        },
        stdout: stream(&outcome.stdout),
        stderr: stream(&outcome.stderr),
    }
}

/// Step ids as file names: `action:x@upgrade` -> `action-x@upgrade`.
fn sanitize(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || "@.-_".contains(c) { c } else { '-' }).collect()
}

async fn backup<P: Platform>(ctx: &Ctx<'_, P>, step: &Step) -> StepResult {
    let evidence = step.id == EVIDENCE_STEP;
    let sub = if evidence { "evidence" } else { "logs" };
    debug_assert!(duet_compiler::name::problem(ctx.session_id).is_none(), "the session id was checked when read");
    let into = match &ctx.plan.logs.staging_dir {
        Some(dir) => ctx.platform.host_path(dir).join(ctx.session_id).join(sub),
        None => ctx.session_dir.join(sub),
    };
    let mut copied = Vec::new();
    for log in &step.logs {
        match ctx.platform.export_event_log(step.side, log, &into).await {
            Ok(file) => {
                ctx.note(step, Severity::Information, format!("{log} event log copied to {}", file.display()));
                copied.push(log.clone());
            }
            Err(e) => return platform_failed(e),
        }
    }
    if evidence {
        match ctx.platform.collect_dumps(step.side, &into).await {
            Ok(dumps) => {
                for dump in &dumps {
                    ctx.note(step, Severity::Warning, format!("Upgrade Side dump file copied to {}", dump.display()));
                }
            }
            Err(e) => return platform_failed(e),
        }
    }
    success(format!("{} copied to {}", list(&copied), into.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_ids_become_safe_file_names() {
        assert_eq!(sanitize("action:app-stop@upgrade"), "action-app-stop@upgrade");
        assert_eq!(sanitize("service:W3 SVC/x@production"), "service-W3-SVC-x@production");
    }

    #[test]
    fn reconciling_trusts_only_a_phase_that_proves_the_operation_done() {
        assert!(done_on(Operation::Split, Phase::Split));
        assert!(!done_on(Operation::Split, Phase::Duplexed));
        assert!(done_on(Operation::Merge, Phase::Merged));
        assert!(!done_on(Operation::Merge, Phase::Split));
        assert!(!done_on(Operation::Revert, Phase::Split));
        assert!(done_on(Operation::Finish, Phase::Duplexed));
    }
}
