//! The services of the machine file, on one side: the `exec` backend (duet starts the program
//! detached and tracks its process, or reads the pid file) and the `systemd` backend
//! (`systemctl`, on the host only).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use duet_compiler::inventory::Startup;
use duet_compiler::inventory::linux::{LinuxService, ServiceBackend};
use nix::sys::signal::{Signal, killpg};
use serde::{Deserialize, Serialize};

use super::side::Holder;
use crate::platform::{PlatformError, PlatformResult};
use crate::process::command;

/// What the platform keeps of a service on one side.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tracked {
    pub(crate) startup: Option<Startup>,
    /// The process duet started (exec backend): pid and start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) process: Option<(u32, u64)>,
    /// A systemd unit the new Upgrade Side would have started (it runs on the Production Side
    /// and starts by itself): the state model sees it running there until it is stopped, and
    /// the host's service manager runs nothing of it before the merge (see `boots_isolated`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) held: bool,
}

/// Where a service runs: on the host, or inside the isolated Upgrade Side.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Place {
    Host,
    Isolated(Holder),
}

impl Place {
    fn path(self, path: &Path) -> PathBuf {
        match self {
            Self::Host => path.to_path_buf(),
            Self::Isolated(holder) => holder.view(path),
        }
    }

    fn argv(self, argv: &[String]) -> Vec<OsString> {
        match self {
            Self::Host => argv.iter().map(OsString::from).collect(),
            Self::Isolated(holder) => holder.enter_argv(Path::new("/"), Path::new(&argv[0]), &argv[1..]),
        }
    }
}

/// The pid the service runs as, if it runs.
pub(crate) fn running_pid(service: &LinuxService, tracked: &Tracked, place: Place) -> PlatformResult<Option<u32>> {
    match &service.backend {
        ServiceBackend::Exec { pid_file, .. } => {
            // The process duet started, else the one the pid file names (started by someone else,
            // or a daemon that forked away from duet's).
            if let Some((pid, _)) = tracked.process.filter(|&(p, s)| command::alive(p, s)) {
                return Ok(Some(pid));
            }
            let Some(file) = pid_file else { return Ok(None) };
            let text = std::fs::read_to_string(place.path(Path::new(file))).unwrap_or_default();
            let pid = text.trim().parse::<u32>().ok();
            Ok(pid.filter(|&p| command::start_time(p).is_some()))
        }
        // A unit runs under the host's service manager, never on the isolated Upgrade Side.
        ServiceBackend::Systemd { .. } if matches!(place, Place::Isolated(_)) => Ok(tracked.held.then_some(0)),
        ServiceBackend::Systemd { unit } => {
            let out = systemctl(&["is-active", "--quiet", unit])?;
            if !out.success() {
                return Ok(None);
            }
            Ok(Some(unit_pids(unit)?.first().copied().unwrap_or(0)))
        }
    }
}

/// Whether the service starts by itself on a new Upgrade Side (the split, a restart): an `exec`
/// service does, in the Upgrade Side's namespaces; a systemd unit does not (the host's service
/// manager has no Upgrade Side), so it is only recorded as running there (`Tracked::held`).
pub(crate) fn boots_isolated(service: &LinuxService) -> bool {
    matches!(service.backend, ServiceBackend::Exec { .. })
}

/// Every process of the service on the host: the unit's control group (systemd), else the
/// process `running_pid` names. The busy check leaves these out, since the merge stops them.
pub(crate) fn host_pids(service: &LinuxService, tracked: &Tracked) -> PlatformResult<Vec<u32>> {
    match &service.backend {
        ServiceBackend::Systemd { unit } => unit_pids(unit),
        ServiceBackend::Exec { .. } => Ok(running_pid(service, tracked, Place::Host)?.into_iter().collect()),
    }
}

/// The unit's main process first, then the rest of its control group (cgroup v2).
fn unit_pids(unit: &str) -> PlatformResult<Vec<u32>> {
    let out = systemctl(&["show", "--property=MainPID,ControlGroup", unit])?;
    let mut main = None;
    let mut group = None;
    for line in out.stdout.lines() {
        match line.split_once('=') {
            Some(("MainPID", pid)) => main = pid.trim().parse::<u32>().ok().filter(|&p| p > 0),
            Some(("ControlGroup", cg)) if !cg.trim().is_empty() => group = Some(cg.trim().to_owned()),
            _ => {}
        }
    }
    let mut pids: Vec<u32> = main.into_iter().collect();
    if let Some(group) = group {
        let procs = std::fs::read_to_string(format!("/sys/fs/cgroup{group}/cgroup.procs")).unwrap_or_default();
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()).filter(|p| Some(*p) != main));
    }
    Ok(pids)
}

/// Set by `duet recover`, which runs at boot in a unit ordered before the applications': a
/// `systemctl start` of such an application waits for that unit to end, so there the start is
/// only queued (`--no-block`) and systemd runs it once `duet recover` has finished.
static AT_BOOT: AtomicBool = AtomicBool::new(false);

/// Makes this process's systemd starts queue the start instead of waiting for it (see
/// [`AT_BOOT`]).
pub(crate) fn queue_starts() {
    AT_BOOT.store(true, Ordering::SeqCst);
}

/// Starts the service; returns the process to track (exec backend without a pid file).
pub(crate) fn start(service: &LinuxService, place: Place, log: &Path) -> PlatformResult<Option<(u32, u64)>> {
    match &service.backend {
        ServiceBackend::Exec { start, .. } => {
            let pid =
                command::spawn_detached(&place.argv(start), log, &[("DUET_SERVICE".into(), service.name.clone())])
                    .map_err(|e| {
                        PlatformError::refused(format!("cannot start service {}: {} ({e})", service.name, start[0]))
                            .help("check the service's `exec.start` in the machine file")
                    })?;
            let started = command::start_time(pid).unwrap_or_default();
            Ok(Some((pid, started)))
        }
        ServiceBackend::Systemd { unit } => {
            host_only(service, place)?;
            let queue: &[&str] = if AT_BOOT.load(Ordering::SeqCst) { &["--no-block"] } else { &[] };
            let out = systemctl(&[&["start"], queue, &[unit.as_str()]].concat())?;
            if !out.success() {
                return Err(PlatformError::transient(format!("systemctl start {unit} failed: {}", out.why()))
                    .help(format!("see `journalctl -u {unit}`")));
            }
            Ok(None)
        }
    }
}

/// Stops the service and waits until it is gone (the caller applies the step's timeout).
pub(crate) async fn stop(service: &LinuxService, pid: u32, place: Place) -> PlatformResult<()> {
    match &service.backend {
        ServiceBackend::Exec { stop, stop_timeout_ms, .. } => {
            if let Some(stop) = stop {
                let out = command::output_argv(&place.argv(stop)).map_err(|e| {
                    PlatformError::refused(format!("cannot run the stop command of service {}: {e}", service.name))
                })?;
                if !out.success() {
                    return Err(PlatformError::transient(format!(
                        "the stop command of service {} failed: {}",
                        service.name,
                        out.why()
                    ))
                    .help(format!("stop {} by hand, then run the command again", service.name)));
                }
            } else {
                signal(pid, Signal::SIGTERM);
            }
            let grace = Duration::from_millis(*stop_timeout_ms);
            if !wait_gone(pid, grace).await {
                signal(pid, Signal::SIGKILL);
                wait_gone(pid, Duration::from_secs(3600)).await;
            }
            Ok(())
        }
        // Never started there (see `boots_isolated`): nothing to stop.
        ServiceBackend::Systemd { .. } if matches!(place, Place::Isolated(_)) => Ok(()),
        ServiceBackend::Systemd { unit } => {
            let out = systemctl(&["stop", unit])?;
            if !out.success() {
                return Err(PlatformError::transient(format!("systemctl stop {unit} failed: {}", out.why())));
            }
            Ok(())
        }
    }
}

/// Applies a startup type where the service manager keeps one (systemd on the host:
/// automatic = enabled, manual = disabled, disabled = masked).
pub(crate) fn apply_startup(service: &LinuxService, startup: Startup) -> PlatformResult<()> {
    let ServiceBackend::Systemd { unit } = &service.backend else { return Ok(()) };
    let steps: &[&[&str]] = match startup {
        Startup::Automatic => &[&["unmask", unit], &["enable", unit]],
        Startup::Manual => &[&["unmask", unit], &["disable", unit]],
        Startup::Disabled => &[&["mask", unit]],
    };
    for args in steps {
        let out = systemctl(args)?;
        if !out.success() {
            return Err(PlatformError::transient(format!("systemctl {} failed: {}", args.join(" "), out.why())));
        }
    }
    Ok(())
}

/// Signals the service's process group (duet starts each in its own), else the process alone
/// (one started by someone else, from a pid file).
fn signal(pid: u32, signal: Signal) {
    let pid = command::pid(pid);
    if killpg(pid, signal).is_err() {
        let _ = nix::sys::signal::kill(pid, signal);
    }
}

async fn wait_gone(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    while command::start_time(pid).is_some() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
    true
}

fn host_only(service: &LinuxService, place: Place) -> PlatformResult<()> {
    match place {
        Place::Host => Ok(()),
        Place::Isolated(_) => Err(PlatformError::refused(format!(
            "service {} is a systemd unit, and systemd units are not run on the isolated Upgrade Side",
            service.name
        ))
        .help("give the service an `exec` backend in the machine file to run it on the Upgrade Side (docs/linux.md)")),
    }
}

fn systemctl(args: &[&str]) -> PlatformResult<command::CommandOutput> {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    command::output("systemctl", &args).map_err(|e| {
        PlatformError::refused(format!("cannot run systemctl: {e}")).help("the systemd backend needs systemd (PID 1)")
    })
}
