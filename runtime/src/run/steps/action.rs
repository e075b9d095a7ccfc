//! An action or task step: a custom action's program (or an upgrade task's), run on its side
//! with the guide's environment and the attempt's marks, its output kept in the session
//! directory. A task that succeeds tells the platform what it installed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use duet_compiler::compiled::Step;
use duet_contract::record::{Output, StepResult, Stream};

use super::{StepCtx, failed, platform_failed, success};
use crate::error::Error;
use crate::platform::{Platform, PlatformErrorKind};
use crate::process::{Exit, Marks, ProcessOutcome, ProcessSpec};
use crate::run::program::Program;
use crate::store::layout::SessionDir;

/// What an attempt ends with: its result, its output (if it ran), and what stops duet after it
/// although the result stands (its output could not be saved).
type Ran = (StepResult, Option<Output>, Option<Error>);

pub(super) async fn run<P: Platform>(ctx: &StepCtx<'_, P>, step: &Step, attempt: u32) -> Ran {
    let Some(program) = ctx.program(step) else {
        return (failed(format!("{} names a program the plan does not have", step.id), None), None, None);
    };
    let spec = spec(ctx, step, &program, attempt);
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
        Err(e) if e.kind == PlatformErrorKind::Storage => {
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
    let mut result = result(ctx, &program, &outcome.exit, spec.timeout);
    if let (Some(software), true) = (program.installs, result.succeeded()) {
        match ctx.platform.installed(step.side, software).await {
            Ok(()) => result = success(format!("exit value 0; installed {} {}", software.name, software.version)),
            Err(e) => result = platform_failed(e),
        }
    }
    (result, Some(output), halt)
}

/// The process to run: the guide's environment and the attempt's marks, `%NAME%` expanded,
/// output under the session directory.
pub(super) fn spec<P>(ctx: &StepCtx<'_, P>, step: &Step, action: &Program<'_>, attempt: u32) -> ProcessSpec {
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
        action.args.to_vec()
    };
    let program = PathBuf::from(action.file);
    ProcessSpec {
        cwd: program.parent().map_or_else(|| ctx.session_dir.to_owned(), Path::to_owned),
        program,
        args,
        env,
        timeout: Duration::from_millis(step.timeout_ms.unwrap_or(action.timeout_ms)),
        kill_grace: ctx.options.kill_grace,
        output_base: SessionDir(ctx.session_dir).output(ctx.request, &step.id, attempt),
        interrupt: ctx.options.interrupt.clone(),
        marks,
    }
}

/// How the attempt ended, in the guide's words for custom actions.
fn result<P>(ctx: &StepCtx<'_, P>, program: &Program<'_>, exit: &Exit, timeout: Duration) -> StepResult {
    let (what, id) = (program.what.capital(), format!("{} `{}`", program.what.key(), program.id));
    match exit {
        Exit::Code(0) => success("exit value 0"),
        Exit::Code(n) => failed(
            format!("{what} failed with exit value {n}"),
            Some(format!("check its output (`duet log`) and correct the problem ({id})")),
        ),
        Exit::Signal(sig) => {
            failed(format!("{what} was killed by signal {sig}"), Some(format!("check what stopped it ({id})")))
        }
        Exit::TimedOut => failed(
            format!(
                "{what} timed out after {}; it was stopped with its whole process tree",
                humantime::format_duration(timeout)
            ),
            Some(format!("make it finish in time or raise its `timeout` ({id})")),
        ),
        Exit::Interrupted => ctx.interrupted("while it ran; it was stopped with its whole process tree"),
        Exit::SpawnFailed { message, not_found } => failed(
            message.clone(),
            Some(if *not_found {
                format!("ensure `{}` exists on a system disk", program.file)
            } else {
                format!("make `{}` executable", program.file)
            }),
        ),
    }
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
