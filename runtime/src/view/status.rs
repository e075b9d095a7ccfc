//! The status bar (hardware | upgrade state | operational state, and the partner state, guide
//! 4-25), the controlled services and the software on both sides, gathered from the state directory and the
//! machine into the contract's [`Status`] and rendered for people. Reads only.

use duet_compiler::compiled::{CompiledPlan, Side, State};
use duet_contract::status::{
    AwaitedApproval, BrokenStatus, Hardware, Operational, ServiceStatus, SideService, SideSoftware, Status,
};

use crate::error::Result;
use crate::platform::Platform;
use crate::state::{self, Deadline};
use crate::store::layout::StateDir;
use crate::store::lock::StateLock;
use crate::store::session::{Session, View};
use crate::view::console;

#[cfg(test)]
mod tests;

/// A state directory whose simulated machine was never built: Idle, nothing to show yet.
pub(crate) fn unbuilt() -> Status {
    Status {
        hardware: Hardware::FaultTolerant,
        upgrade: State::Idle,
        operational: Operational::Ready,
        partner: duet_compiler::inventory::PartnerState::OsUp.as_str().to_owned(),
        resyncing: false,
        session: None,
        plan: None,
        driver: None,
        interrupted: false,
        broken: None,
        changed_files: Vec::new(),
        journal_damage: None,
        services: Vec::new(),
        awaiting_approval: None,
        aborted_by_duet: None,
        software: Vec::new(),
        next: "`duet readiness PLAN` or `duet split PLAN` builds the simulated machine (the built-in 320Ma, or `--inventory FILE`) and starts a session".into(),
    }
}

pub(crate) async fn gather<P: Platform>(dir: &StateDir, platform: &P) -> Result<Status> {
    let holder = StateLock::holder(&dir.root);
    // The session's journal and its compiled plan (for the services), read on both cores. A
    // session whose Finish completed is over, even before the next command archives it.
    let (session, plan) = std::thread::scope(|scope| {
        let plan = scope.spawn(|| crate::store::session::compiled_in(&dir.session()));
        let session = View::read(&dir.session(), holder.is_some(), false);
        (session, plan.join().ok().flatten())
    });
    let session = session?.filter(|v| !v.progress.finished_ok(duet_compiler::compiled::RequestName::Finish));
    let in_session = session.is_some();
    // With no session in progress: the last readiness check, unless a session finished since
    // (it passed a readiness check of its own).
    let superseded = || crate::store::session::finished_records(dir).first().is_some_and(|d| *d != dir.readiness());
    let (mut view, plan) = if let Some(v) = session {
        (Some(v), plan)
    } else if superseded() {
        (None, None)
    } else {
        let view = View::read(&dir.readiness(), holder.is_some(), false)?;
        let plan = view.as_ref().and_then(View::compiled);
        (view, plan)
    };
    if let (Some(v), Some(plan)) = (view.as_mut(), plan.as_ref()) {
        v.progress.plan_tasks = !plan.unattended.tasks.is_empty();
    }
    let observed = platform.observe().await?;
    let (upgrade, mut operational) = match &view {
        Some(v) if in_session => (v.progress.upgrade_state(), v.progress.operational()),
        Some(v) => (State::Idle, v.progress.operational()),
        None => (State::Idle, Operational::Ready),
    };
    let damaged = view.as_ref().is_some_and(|v| v.damage.is_some());
    let interrupted = operational == Operational::Busy && holder.is_none() && !damaged;
    if damaged {
        operational = Operational::Broken;
    }
    let broken = view.as_ref().and_then(|v| {
        let (request, b) = v.progress.broken()?;
        let output = v.failed_output.as_ref().filter(|(step, _)| *step == b.step).map(|(_, o)| o.clone());
        Some(BrokenStatus { request: request.to_string(), step: b.step.clone(), message: b.message.clone(), output })
    });
    let services = services(platform, plan.as_ref()).await;
    // A failure the plan says to abort on, whose duet died before it could.
    let aborting = match (view.as_ref(), plan.as_ref()) {
        (Some(v), Some(p)) if in_session && !damaged => {
            v.progress.broken().is_some_and(|(_, b)| state::aborts_by_itself(&v.progress, &p.unattended, b))
        }
        _ => false,
    };
    let next = if aborting && operational == Operational::Broken {
        "duet stopped before it could abort by itself, as the plan says: `duet resume` aborts".to_owned()
    } else {
        next(operational, interrupted, view.as_ref(), in_session, upgrade)
    };
    Ok(Status {
        hardware: observed.hardware(),
        upgrade,
        operational,
        partner: observed.partner.as_str().to_owned(),
        resyncing: observed.resyncing,
        session: view.as_ref().filter(|_| in_session).map(|v| v.progress.id.clone()),
        plan: view.as_ref().map(|v| v.progress.plan.clone()).filter(|p| !p.is_empty()),
        driver: holder,
        interrupted,
        broken,
        changed_files: view.as_ref().filter(|_| in_session).map(View::changed_sources).unwrap_or_default(),
        journal_damage: view.as_ref().and_then(|v| v.damage.as_ref()).map(ToString::to_string),
        services,
        awaiting_approval: view.as_ref().filter(|_| in_session).and_then(|v| awaited(&v.progress)),
        aborted_by_duet: view.as_ref().filter(|_| in_session).and_then(|v| v.progress.aborted_by_duet.clone()),
        software: software(platform).await,
        next,
    })
}

/// The approval the session waits at, with its deadline.
fn awaited(p: &crate::state::Progress) -> Option<AwaitedApproval> {
    let (request, step) = p.awaited_approval()?;
    let until = match p.step(request, &step)?.waiting? {
        Deadline::At(ms) => Some(
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string(),
        ),
        Deadline::Never => None,
    };
    Some(AwaitedApproval { request: request.to_string(), step, until })
}

/// Each service of the plan on both sides, as the machine reports it now.
async fn services<P: Platform>(platform: &P, plan: Option<&CompiledPlan>) -> Vec<ServiceStatus> {
    let mut services = Vec::new();
    for service in plan.iter().flat_map(|p| &p.services) {
        let side = |s: Side| async move {
            platform
                .service(s, &service.name)
                .await
                .ok()
                .map(|st| SideService { running: st.running, startup: st.startup })
        };
        services.push(ServiceStatus {
            name: service.name.clone(),
            production: side(Side::Production).await,
            upgrade: side(Side::Upgrade).await,
        });
    }
    services
}

/// The software of both sides, by name: empty when the platform keeps no inventory of it (or
/// the Production Side cannot be asked); a version is `None` where it is not installed or the
/// side does not answer (an Upgrade Side that is booting).
async fn software<P: Platform>(platform: &P) -> Vec<SideSoftware> {
    let Ok(production) = platform.software(Side::Production).await else { return Vec::new() };
    let upgrade = platform.software(Side::Upgrade).await.unwrap_or_default();
    let mut names: Vec<&str> = production.iter().chain(&upgrade).map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let version = |list: &[duet_compiler::compiled::Software], name: &str| {
        list.iter().find(|s| s.name == name).map(|s| s.version.clone())
    };
    names
        .into_iter()
        .map(|name| SideSoftware {
            name: name.to_owned(),
            production: version(&production, name),
            upgrade: version(&upgrade, name),
        })
        .collect()
}

/// What to do next, from where the session (or the last readiness check) stands.
fn next(operational: Operational, interrupted: bool, view: Option<&View>, in_session: bool, upgrade: State) -> String {
    match (operational, interrupted, view) {
        (_, _, Some(v)) if v.damage.is_some() => {
            "the journal is damaged: `duet resume --repair-journal` (see `duet log`)".to_owned()
        }
        (Operational::Busy, driven_by_none, Some(v)) if in_session && v.progress.awaited_approval().is_some() => {
            if driven_by_none {
                "approve with `duet approve --reason TEXT`, then `duet resume` (it waits on until the same deadline)"
                    .to_owned()
            } else {
                "a `duet run` waits for approval: `duet approve --reason TEXT` lets it go on".to_owned()
            }
        }
        (Operational::Busy, true, _) if !in_session => {
            "the readiness check was interrupted: run `duet readiness PLAN` again".to_owned()
        }
        (Operational::Busy, true, _) => "run `duet resume` to continue where it stopped".to_owned(),
        (Operational::Busy, false, _) => "wait: another duet process is driving the session".to_owned(),
        (Operational::Broken, ..) if upgrade == State::Idle => {
            "correct the problems the readiness check found (`duet log`), then run it again".to_owned()
        }
        (Operational::Broken, _, Some(v)) => {
            format!("correct the problem (`duet log`), {}", state::after_broken(&v.progress))
        }
        (Operational::Broken, ..) => "correct the problem (`duet log`), then `duet retry`".to_owned(),
        (Operational::Ready, _, Some(v)) if in_session && v.progress.goal_ahead().is_some() => format!(
            "`duet run` stopped on its way to {}: `duet resume` carries on; or {}",
            v.progress.goal_ahead().map_or("", |g| g.as_str()),
            state::next_hint(upgrade)
        ),
        (Operational::Ready, _, Some(v)) if in_session => state::hint(&v.progress),
        (Operational::Ready, ..) => state::next_hint(upgrade),
    }
}

fn upgrade_label(state: State) -> &'static str {
    match state {
        State::PrepareSplit => "Prepare Split",
        State::PrepareMerge => "Prepare Merge",
        other => other.as_str(),
    }
}

fn bar(hardware: Hardware, upgrade: State, operational: Operational, partner: &str) -> String {
    format!("{} | {} | {}    Partner: {partner}", hardware.label(), upgrade_label(upgrade), operational.as_str())
}

/// The status bar after a command, from the session it drove (no re-reading).
pub(crate) async fn print_bar<P: Platform>(
    dir: &StateDir,
    platform: &P,
    session: Option<&Session>,
    format: console::Format,
) {
    let (upgrade, operational) = match session {
        Some(s) if s.dir == dir.session() => (s.progress.upgrade_state(), s.progress.operational()),
        // A readiness check in Idle (or a session's failed one, set aside as such).
        Some(s) if s.dir == dir.readiness() => (State::Idle, s.progress.operational()),
        _ => (State::Idle, Operational::Ready),
    };
    if let Ok(observed) = platform.observe().await {
        let (hardware, partner) = (observed.hardware(), observed.partner.as_str());
        let _ = match format {
            console::Format::Human => console::print(&format!("{}\n", bar(hardware, upgrade, operational, partner))),
            console::Format::Json => {
                console::print(&format!("{}\n", crate::view::events::status(hardware, upgrade, operational, partner)))
            }
        };
    }
}

pub(crate) fn render(s: &Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "{}", bar(s.hardware, s.upgrade, s.operational, &s.partner));
    if let Some(plan) = &s.plan {
        let what = match &s.session {
            Some(id) => format!("session {id}"),
            None => "last readiness check".to_owned(),
        };
        let _ = writeln!(out, "Plan: {plan} ({what})");
    }
    for c in &s.changed_files {
        let _ = writeln!(
            out,
            "note: {} was {} since the session started; the session keeps running its snapshot",
            c.file,
            c.change.as_str()
        );
    }
    if let Some(d) = &s.driver {
        let _ = writeln!(out, "Driven by: {d}");
    } else if s.interrupted {
        let _ = writeln!(out, "Interrupted: no duet process is driving the session");
    }
    if let Some(b) = &s.broken {
        let _ = writeln!(out, "Broken: {} at {}: {}", b.request, b.step, b.message);
        for (name, stream) in b.output.iter().flat_map(|o| [("stdout", &o.stdout), ("stderr", &o.stderr)]) {
            let lines: Vec<&str> = stream.tail.lines().collect();
            for line in &lines[lines.len().saturating_sub(console::SHOWN_LINES)..] {
                let _ = writeln!(out, "  {name}: {line}");
            }
        }
    }
    if let Some(b) = &s.aborted_by_duet {
        let _ = writeln!(out, "Aborted by duet: {} failed: {}; the plan says to abort when it does", b.step, b.message);
    }
    if let Some(a) = &s.awaiting_approval {
        let until = a.until.as_deref().map(|u| format!(" until {u}")).unwrap_or_default();
        let _ = writeln!(out, "Waiting for approval: {} ({}){until}: `duet approve --reason TEXT`", a.step, a.request);
    }
    if s.resyncing {
        let _ = writeln!(out, "RDR disks are resynchronising: wait for it before another readiness check or split");
    }
    if let Some(damage) = &s.journal_damage {
        let _ = writeln!(out, "Journal: {damage}");
    }
    if !s.services.is_empty() {
        let width = s.services.iter().map(|x| x.name.len()).max().unwrap_or(0).max(7);
        let _ = writeln!(out, "Services:\n  {:<width$}  {:<22}  Upgrade Side", "", "Production Side");
        let cell = |x: &Option<SideService>| match x {
            Some(x) => format!("{}, {}", if x.running { "running" } else { "stopped" }, x.startup.as_str()),
            None => "unavailable".to_owned(),
        };
        for x in &s.services {
            let _ = writeln!(out, "  {:<width$}  {:<22}  {}", x.name, cell(&x.production), cell(&x.upgrade));
        }
    }
    if !s.software.is_empty() {
        let width = s.software.iter().map(|x| x.name.len()).max().unwrap_or(0).max(7);
        let _ = writeln!(out, "Software:\n  {:<width$}  {:<22}  Upgrade Side", "", "Production Side");
        let cell = |v: &Option<String>| v.clone().unwrap_or_else(|| "not installed".to_owned());
        for x in &s.software {
            let _ = writeln!(out, "  {:<width$}  {:<22}  {}", x.name, cell(&x.production), cell(&x.upgrade));
        }
    }
    let _ = writeln!(out, "Next: {}", s.next);
    // Action output, file names, plan text: whatever is in it is shown, never obeyed.
    console::escape(&out).into_owned()
}
