//! A verification gate: one check of the Upgrade Side (a command, an HTTP GET, an installed
//! version), each try bounded by the check's timeout, retried as the plan says. The step's
//! message says what was expected and what was seen; each failed try before the last is noted
//! in the activity log.

use std::time::Duration;

use duet_compiler::compiled::{Check, CheckKind, Side, Step};
use duet_compiler::plan::Rerun;
use duet_compiler::version::{self, Constraint};
use duet_contract::record::{Severity, StepResult};
use regex::Regex;

use super::{StepCtx, action, failed, success};
use crate::platform::{HttpAnswer, HttpFailure, MAX_BODY, Platform, PlatformErrorKind};
use crate::process::Exit;
use crate::run::program::{Program, What};
use crate::store::layout::SessionDir;

/// A check made ready to try: its pattern or constraint parsed once.
enum Ready<'c> {
    Run { file: &'c str, args: &'c [String], stdout: Option<Regex> },
    Http { url: &'c str, status: u16, contains: Option<&'c str> },
    Version { software: &'c str, constraint: Constraint },
}

/// How one try ended.
enum Try {
    Passed(String),
    /// What was seen instead.
    Failed(String),
    /// Duet was interrupted (the result to record).
    Stopped(StepResult),
}

pub(super) async fn run<P: Platform>(ctx: &StepCtx<'_, P>, step: &Step, attempt: u32) -> StepResult {
    let id = step.item.as_deref().unwrap_or(&step.id);
    let Some(check) = ctx.plan.unattended.checks.iter().find(|c| c.id == id) else {
        return failed(format!("{} names a verification the plan does not have", step.id), None);
    };
    let ready = match prepare(&check.check) {
        Ok(ready) => ready,
        Err(why) => {
            return failed(
                format!("verification `{id}` cannot run: {why}"),
                Some("correct the check in the plan".into()),
            );
        }
    };
    let tries = check.retry.map_or(0, |r| r.times).saturating_add(1);
    let interval = Duration::from_millis(check.retry.map_or(0, |r| r.interval_ms));
    let mut seen = String::new();
    for n in 1..=tries {
        match try_once(ctx, step, check, &ready, (attempt, n)).await {
            Try::Passed(what) => return success(format!("verification `{id}` passed: {what}{}", count(n))),
            Try::Stopped(result) => return result,
            Try::Failed(what) => seen = what,
        }
        if n < tries {
            ctx.note(
                step,
                Severity::Warning,
                format!(
                    "verification `{id}` try {n} of {tries} failed: {seen}; trying again in {}",
                    humantime::format_duration(interval)
                ),
            );
            tokio::select! {
                biased;
                () = ctx.options.interrupt.stop() => {
                    return StepResult::Interrupted {
                        message: format!("stopped between tries of verification `{id}`; `duet resume` runs it again"),
                    };
                }
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
    failed(
        format!("verification `{id}` failed: expected {}, {seen}{}", expected(&ready), count(tries)),
        Some(format!("check the Upgrade Side, then `duet retry` (verification `{id}`)")),
    )
}

fn count(tries: u32) -> String {
    if tries > 1 { format!(" ({tries} tries)") } else { String::new() }
}

/// The check's pattern or constraint, parsed (the compiler has checked them; a compiled plan
/// from elsewhere may not have been).
fn prepare(kind: &CheckKind) -> Result<Ready<'_>, String> {
    Ok(match kind {
        CheckKind::Run { file, args, stdout } => Ready::Run {
            file,
            args,
            stdout: stdout
                .as_deref()
                .map(|p| Regex::new(p).map_err(|e| format!("its stdout pattern is not a regular expression: {e}")))
                .transpose()?,
        },
        CheckKind::Http { url, status, contains } => {
            Ready::Http { url, status: *status, contains: contains.as_deref() }
        }
        CheckKind::Version { software, constraint } => {
            Ready::Version { software, constraint: Constraint::parse(constraint)? }
        }
    })
}

/// What a check expects, as the failure message says it.
fn expected(ready: &Ready<'_>) -> String {
    match ready {
        Ready::Run { file, stdout, .. } => match stdout {
            Some(re) => format!("`{file}` to exit with value 0 and print output matching /{}/", re.as_str()),
            None => format!("`{file}` to exit with value 0"),
        },
        Ready::Http { url, status, contains } => match contains {
            Some(text) => format!("GET {url} to answer {status} with a body containing {text:?}"),
            None => format!("GET {url} to answer {status}"),
        },
        Ready::Version { software, constraint } => format!("{software} {constraint} on the Upgrade Side"),
    }
}

async fn try_once<P: Platform>(
    ctx: &StepCtx<'_, P>,
    step: &Step,
    check: &Check,
    ready: &Ready<'_>,
    (attempt, n): (u32, u32),
) -> Try {
    let timeout = Duration::from_millis(check.timeout_ms);
    match ready {
        Ready::Run { file, args, stdout } => {
            let program = Program {
                what: What::Action,
                id: &check.id,
                file,
                args,
                timeout_ms: check.timeout_ms,
                rerun: Rerun::Safe,
                installs: None,
            };
            run_command(ctx, step, &program, stdout.as_ref(), (attempt, n)).await
        }
        Ready::Http { url, status, contains } => http(ctx, url, *status, *contains, timeout).await,
        Ready::Version { software, constraint } => {
            match tokio::time::timeout(timeout, ctx.platform.software(Side::Upgrade)).await {
                Err(_) => Try::Failed(format!(
                    "the software inventory did not answer within {}",
                    humantime::format_duration(timeout)
                )),
                Ok(Err(e)) if e.kind == PlatformErrorKind::Storage => {
                    Try::Stopped(StepResult::StorageFailed { message: e.message })
                }
                Ok(Err(e)) => Try::Failed(format!("the software inventory could not be read: {}", e.message)),
                Ok(Ok(list)) => version_seen(software, constraint, list.iter().find(|s| s.name == *software)),
            }
        }
    }
}

fn version_seen(software: &str, constraint: &Constraint, found: Option<&duet_compiler::compiled::Software>) -> Try {
    let Some(found) = found else { return Try::Failed(format!("found no {software} installed")) };
    match version::parse(&found.version) {
        Ok(v) if constraint.matches(&v) => Try::Passed(format!("{software} {} meets {constraint}", found.version)),
        Ok(_) => Try::Failed(format!("found {}", found.version)),
        Err(why) => Try::Failed(format!("found {software} at {:?}, which duet cannot compare: {why}", found.version)),
    }
}

/// A `run` check's command: on the Upgrade Side, as an action runs (the guide's environment,
/// the attempt's marks), its output kept per try.
async fn run_command<P: Platform>(
    ctx: &StepCtx<'_, P>,
    step: &Step,
    program: &Program<'_>,
    stdout: Option<&Regex>,
    (attempt, n): (u32, u32),
) -> Try {
    let mut spec = action::spec(ctx, step, program, attempt);
    spec.timeout = Duration::from_millis(program.timeout_ms);
    spec.output_base = SessionDir(ctx.session_dir).check_output(ctx.request, &step.id, attempt, n);
    if let Some(parent) = spec.output_base.parent() {
        if let Err(e) = std::fs::create_dir_all(parent) {
            return Try::Stopped(StepResult::NotStarted {
                message: format!("{} was not started: cannot create {}: {e}", step.id, parent.display()),
            });
        }
    }
    let outcome = match ctx.platform.run(Side::Upgrade, &spec).await {
        Ok(outcome) => outcome,
        Err(e) if e.kind == PlatformErrorKind::Storage => {
            return Try::Stopped(StepResult::StorageFailed { message: e.message });
        }
        Err(e) => return Try::Failed(format!("it could not run: {}", e.message)),
    };
    match outcome.exit {
        Exit::Code(0) => match stdout {
            Some(re) if !re.is_match(&outcome.stdout.tail) => {
                Try::Failed(format!("its output did not match: {}", last_line(&outcome.stdout.tail)))
            }
            Some(re) => {
                Try::Passed(format!("`{}` exited with value 0, its output matching /{}/", program.file, re.as_str()))
            }
            None => Try::Passed(format!("`{}` exited with value 0", program.file)),
        },
        Exit::Code(code) => Try::Failed(format!("it exited with value {code}")),
        Exit::Signal(sig) => Try::Failed(format!("it was killed by signal {sig}")),
        Exit::TimedOut => {
            Try::Failed(format!("it timed out after {} and was stopped", humantime::format_duration(spec.timeout)))
        }
        Exit::Interrupted => {
            Try::Stopped(ctx.interrupted("while its check ran; it was stopped with its whole process tree"))
        }
        Exit::SpawnFailed { message, .. } => Try::Failed(format!("it could not start: {message}")),
    }
}

/// The last non-empty line of an output, shortened, for a message (`(no output)` when none).
fn last_line(text: &str) -> String {
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty());
    match line {
        None => "(no output)".into(),
        Some(l) if l.chars().count() > 200 => format!("{:?}...", l.chars().take(200).collect::<String>()),
        Some(l) => format!("{l:?}"),
    }
}

/// An `http` check's GET, through the platform (from where the Upgrade Side's applications are
/// reached), bounded by the check's timeout.
async fn http<P: Platform>(
    ctx: &StepCtx<'_, P>,
    url: &str,
    status: u16,
    contains: Option<&str>,
    timeout: Duration,
) -> Try {
    let HttpAnswer { status: answered, body } = match ctx.platform.http_get(Side::Upgrade, url, timeout).await {
        Ok(answer) => answer,
        Err(HttpFailure::TimedOut) => {
            return Try::Failed(format!("it did not answer within {}", humantime::format_duration(timeout)));
        }
        Err(HttpFailure::Failed(why)) => return Try::Failed(format!("the request failed: {why}")),
    };
    if answered != status {
        return Try::Failed(format!("it answered {answered}"));
    }
    match contains {
        Some(text) if !String::from_utf8_lossy(&body).contains(text) => Try::Failed(format!(
            "it answered {answered}, but its body ({} bytes{}) does not contain it",
            body.len(),
            if body.len() as u64 >= MAX_BODY { ", the first MiB read" } else { "" }
        )),
        Some(text) => Try::Passed(format!("GET {url} answered {answered} with {text:?} in its body")),
        None => Try::Passed(format!("GET {url} answered {answered}")),
    }
}

#[cfg(test)]
mod tests;
