//! The Upgrade Side while split: a mount, network, UTS and IPC namespace of its own, held open
//! by a small process (the holder), where generation n+1 of each tree is bound over generation
//! n (so P shows the new generation), the data paths are hidden under empty private tmpfs mounts, the
//! rest of the host's root file system is read-only, `/dev/shm` is private, and the network is
//! the loopback interface alone.
//!
//! Upgrade tasks, custom actions and Upgrade-side services run there through
//! `duet __upgrade-side enter`, which joins the holder's namespaces and execs the program. Both
//! helpers are fresh, single-threaded duet processes (`unshare` and `setns` of a mount namespace
//! refuse a multi-threaded caller), and both use only `nix`'s safe wrappers.
//!
//! A holder is named by its pid and start time, so a reused pid is never taken for it; it lives
//! until the merge, an abort or a restart tears the side down (every process of its mount
//! namespace is stopped), or the host reboots.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::{Signal, kill};
use serde::{Deserialize, Serialize};

use crate::process::command;

/// The hidden command of both helpers.
pub(crate) const HELPER: &str = "__upgrade-side";

/// How long a torn-down side's processes get after SIGTERM before SIGKILL.
const TEARDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the holder sets up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SideSpec {
    /// (generation n+1, generation n): the first is bound over the second.
    pub(crate) binds: Vec<(PathBuf, PathBuf)>,
    /// Data paths, hidden under empty private tmpfs mounts (what the side writes there is lost).
    pub(crate) hide: Vec<PathBuf>,
    pub(crate) hostname: String,
}

/// A running holder: its pid and start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Holder {
    pub(crate) pid: u32,
    pub(crate) started: u64,
}

impl Holder {
    pub(crate) fn alive(self) -> bool {
        command::alive(self.pid, self.started)
    }

    /// Where the side's file system is seen from the host.
    pub(crate) fn view(self, path: &Path) -> PathBuf {
        let mut out = PathBuf::from(format!("/proc/{}/root", self.pid));
        out.push(path.strip_prefix("/").unwrap_or(path));
        out
    }

    /// The command line that runs `program args` on the side, in `cwd`.
    pub(crate) fn enter_argv(self, cwd: &Path, program: &Path, args: &[String]) -> Vec<OsString> {
        let mut line = vec![exe(), HELPER.into(), "enter".into(), self.pid.to_string().into()];
        line.extend([self.started.to_string().into(), cwd.into(), "--".into(), program.into()]);
        line.extend(args.iter().map(OsString::from));
        line
    }

    /// Processes of the side (its mount namespace), the holder excluded.
    pub(crate) fn members(self) -> Vec<u32> {
        let Ok(ns) = std::fs::read_link(format!("/proc/{}/ns/mnt", self.pid)) else { return Vec::new() };
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        let mut out: Vec<u32> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
            .filter(|&pid| pid != self.pid && command::start_time(pid).is_some())
            .filter(|&pid| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|l| l == ns))
            .collect();
        out.sort_unstable();
        out
    }

    /// Tears the side down: its processes get SIGTERM, SIGKILL after a grace, then the holder
    /// goes. Returns once they are gone (or after a bounded wait).
    pub(crate) async fn stop(self) {
        if !self.alive() {
            return;
        }
        let signal_all = |signal| {
            for pid in self.members() {
                let _ = kill(command::pid(pid), signal);
            }
        };
        signal_all(Signal::SIGTERM);
        let deadline = Instant::now() + TEARDOWN_GRACE;
        while !self.members().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        signal_all(Signal::SIGKILL);
        let _ = kill(command::pid(self.pid), Signal::SIGKILL);
        let deadline = Instant::now() + TEARDOWN_GRACE;
        while (self.alive() || !self.members().is_empty()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn exe() -> OsString {
    std::env::current_exe().map_or_else(|_| "duet".into(), PathBuf::into_os_string)
}

/// The environment mark of a machine's holders: the platform's directory.
const MARK: &str = "DUET_UPGRADE_SIDE_OF";

/// Holders of the machine in `dir` (marked in their environment): a holder that a killed duet
/// started but did not record is found and stopped before another is started.
pub(crate) fn holders_of(dir: &Path) -> Vec<Holder> {
    let wanted = [MARK.as_bytes(), b"=", dir.as_os_str().as_bytes()].concat();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == wanted))
        })
        .filter_map(|pid| command::start_time(pid).map(|started| Holder { pid, started }))
        .collect()
}

/// Starts a holder for `spec`, marked as the machine in `dir`'s; its complaints go to `log`.
pub(crate) fn start(spec: &SideSpec, dir: &Path, log: &Path) -> Result<Holder, String> {
    let json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
    let argv = [exe(), HELPER.into(), "hold".into(), json.into()];
    let mark = [(MARK.to_owned(), dir.display().to_string())];
    let (pid, line) =
        command::spawn_until_ready(&argv, log, &mark).map_err(|e| format!("cannot start the Upgrade Side: {e}"))?;
    if line != "ready" {
        let why = line.strip_prefix("error: ").unwrap_or(if line.is_empty() { "it exited at once" } else { &line });
        return Err(format!("cannot start the Upgrade Side: {why} (its log: {})", log.display()));
    }
    let started = command::start_time(pid).ok_or_else(|| "the Upgrade Side's holder exited at once".to_owned())?;
    Ok(Holder { pid, started })
}

/// The helper process: `duet __upgrade-side hold SPEC` or `enter PID START CWD -- PROGRAM ARGS`.
/// Called first thing in `main`, before any thread exists. `None` when this is not the helper.
pub(crate) fn helper(args: &[OsString]) -> Option<u8> {
    if args.get(1).map(OsString::as_os_str) != Some(OsStr::new(HELPER)) {
        return None;
    }
    let rest = &args[2..];
    let result = match rest.first().and_then(|a| a.to_str()) {
        Some("hold") => hold(rest),
        Some("enter") => enter(rest),
        Some("http") => http(rest),
        _ => Err("usage: duet __upgrade-side hold SPEC | enter PID START CWD -- PROGRAM ARGS...".to_owned()),
    };
    match result {
        Ok(code) => Some(code),
        Err(why) => {
            println!("error: {why}");
            eprintln!("duet {HELPER}: {why}");
            Some(127)
        }
    }
}

/// A nix error with what it was doing.
fn e(what: &'static str) -> impl Fn(nix::Error) -> String {
    move |err| format!("{what}: {err}")
}

fn hold(rest: &[OsString]) -> Result<u8, String> {
    let spec: SideSpec = serde_json::from_slice(rest.get(1).ok_or("no spec")?.as_bytes()).map_err(|e| e.to_string())?;
    let flags =
        CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    unshare(flags).map_err(e("cannot make the Upgrade Side's namespaces (unshare)"))?;
    let none = None::<&str>;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none).map_err(e("cannot make the mounts private"))?;
    // The trees first: a bind mount made after the root went read-only would be read-only too.
    for (new, old) in &spec.binds {
        mount(Some(new), old, none, MsFlags::MS_BIND | MsFlags::MS_REC, none)
            .map_err(|err| format!("cannot bind {} at {}: {err}", new.display(), old.display()))?;
    }
    mount(none, "/", none, MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY, none)
        .map_err(e("cannot make the root file system read-only"))?;
    for path in spec.hide.iter().filter(|p| p.is_dir()) {
        mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755"))
            .map_err(|err| format!("cannot hide {}: {err}", path.display()))?;
    }
    if Path::new("/dev/shm").is_dir() {
        mount(Some("tmpfs"), "/dev/shm", Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=1777"))
            .map_err(e("cannot make a private /dev/shm"))?;
    }
    nix::unistd::sethostname(&spec.hostname).map_err(e("cannot set the host name"))?;
    let up = command::output("ip", &["link".into(), "set".into(), "lo".into(), "up".into()])
        .map_err(|err| format!("cannot bring the loopback interface up (is iproute2 installed?): {err}"))?;
    if !up.success() {
        return Err(format!("cannot bring the loopback interface up: {}", up.why()));
    }
    println!("ready");
    std::io::stdout().flush().map_err(|err| err.to_string())?;
    loop {
        nix::unistd::pause();
    }
}

/// Joins the holder's namespaces (checking it is still the same process).
fn join(pid: &OsString, started: &OsString) -> Result<(), String> {
    let pid: u32 = pid.to_str().and_then(|p| p.parse().ok()).ok_or("bad pid")?;
    let started: u64 = started.to_str().and_then(|p| p.parse().ok()).ok_or("bad start time")?;
    if !command::alive(pid, started) {
        return Err("the Upgrade Side is down (restart it: `duet resume` after a restart step, or abort)".into());
    }
    let open = |ns: &str| {
        File::open(format!("/proc/{pid}/ns/{ns}")).map_err(|e| format!("cannot open its {ns} namespace: {e}"))
    };
    let namespaces = [
        (open("ipc")?, CloneFlags::CLONE_NEWIPC),
        (open("uts")?, CloneFlags::CLONE_NEWUTS),
        (open("net")?, CloneFlags::CLONE_NEWNET),
        (open("mnt")?, CloneFlags::CLONE_NEWNS),
    ];
    for (file, kind) in &namespaces {
        setns(file, *kind).map_err(|e| format!("cannot join the Upgrade Side ({kind:?}): {e}"))?;
    }
    Ok(())
}

fn enter(rest: &[OsString]) -> Result<u8, String> {
    let [_, pid, started, cwd, dashes, argv @ ..] = rest else {
        return Err("usage: enter PID START CWD -- PROGRAM ARGS".into());
    };
    if dashes != "--" || argv.is_empty() {
        return Err("usage: enter PID START CWD -- PROGRAM ARGS".into());
    }
    join(pid, started)?;
    if nix::unistd::chdir(Path::new(cwd)).is_err() {
        let _ = nix::unistd::chdir("/");
    }
    let c = |s: &OsString| CString::new(s.as_bytes()).map_err(|_| "an argument holds a NUL byte".to_owned());
    let program = c(&argv[0])?;
    let c_argv: Vec<CString> = argv.iter().map(c).collect::<Result<_, _>>()?;
    // The side's scratch space is its private /dev/shm (the rest of the host is read-only).
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != "TMPDIR")
        .filter_map(|(k, v)| CString::new([k.as_bytes(), b"=", v.as_bytes()].concat()).ok())
        .collect();
    env.push(c"TMPDIR=/dev/shm".to_owned());
    let err = nix::unistd::execvpe(&program, &c_argv, &env).unwrap_err();
    Err(format!("cannot run {} on the Upgrade Side: {err}", argv[0].to_string_lossy()))
}

/// An HTTP GET made from inside the side: prints `{"status":N,"body":[...]}` or `{"failure":...}`.
fn http(rest: &[OsString]) -> Result<u8, String> {
    let [_, pid, started, url, timeout_ms] = rest else { return Err("usage: http PID START URL TIMEOUT_MS".into()) };
    join(pid, started)?;
    let timeout = Duration::from_millis(timeout_ms.to_str().and_then(|t| t.parse().ok()).unwrap_or(5_000));
    let answer = super::super::http::get_blocking(&url.to_string_lossy(), timeout);
    let json = match answer {
        Ok(a) => serde_json::json!({"status": a.status, "body": a.body}),
        Err(super::super::HttpFailure::TimedOut) => serde_json::json!({"failure": "timed out"}),
        Err(super::super::HttpFailure::Failed(why)) => serde_json::json!({"failure": why}),
    };
    println!("{json}");
    Ok(0)
}
