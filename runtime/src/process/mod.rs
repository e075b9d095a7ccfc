//! Running custom actions: the one place that spawns processes (through duct).
//!
//! [`run`] starts one program (never through a shell) in its own process group, captures
//! stdout and stderr separately and supervises it until it exits or its timeout; [`expand`]
//! does the `%NAME%` substitution of its arguments.
//!
//! **Output.** Each stream is a pipe read on the tokio reactor (no thread per run). Everything
//! read goes to `<output_base>.stdout` / `.stderr`, a file created on the first byte (a silent
//! action creates none); memory holds only the last [`TAIL_BYTES`] of each stream, so an action
//! printing gigabytes costs a 64 KiB read buffer and a 16 KiB tail per stream. When a file
//! write fails (disk full), the error is recorded and the pipe is still drained, so the child
//! never blocks on a full pipe.
//!
//! **When output ends.** A pipe reaches EOF only when every process holding its write end has
//! closed it, and an action may leave a daemon behind that keeps its stdout. So the rule is:
//! once the main process has exited, everything it (and every process of its tree that exited
//! before it) wrote is already in the pipe, because a `write` to a pipe completes before it
//! returns. We then read with non-blocking reads until EOF, until a read would block, or until we
//! have read as much as the pipe can hold (`fcntl` `F_GETPIPE_SZ`, so a background process
//! that keeps writing cannot keep us reading), and stop. Nothing depends on timing. What a
//! background process writes after that is not captured, and once our read end is closed its
//! writes to the inherited stdout fail with `EPIPE` (`SIGPIPE`): a daemon should redirect its
//! output, as it must anyway once duet itself exits.
//!
//! **Exit and timeout.** The exit is noticed through `SIGCHLD` (tokio's signal driver) plus a
//! `waitid(WNOWAIT)` peek, so no thread blocks in `wait`, and the main process stays an
//! unreaped zombie until we are done with its group: its pid, which is the group id, cannot be
//! reused meanwhile, so `killpg` never hits a stranger. At the timeout the group gets SIGTERM;
//! when the main process has exited or `kill_grace` has passed, the group gets SIGKILL, and
//! [`run`] returns only once no live member of the group is left (checked in `/proc`, bounded by
//! [`GROUP_EXIT_LIMIT`]). A process that left the group (`setsid`, a double fork) is still found
//! by the attempt's [`Marks`] in its environment and stopped the same way, so "its whole process
//! tree" is true of everything that still carries them. A normal exit kills nothing: what the
//! action left running on purpose keeps running (and is stopped before another attempt of the
//! same step starts: see `run::reconcile`).
//!
//! Dropping the [`run`] future before the main process has exited (cancellation) SIGKILLs the
//! whole group, so a cancelled attempt leaves nothing behind; duct reaps the zombie later.
//!
//! The runtime must have its I/O driver enabled (`enable_all`/`enable_io`): the pipes and the
//! `SIGCHLD` stream both need it.
//!
//! The rooms: this file (spawn, supervise, the outcome), [`capture`] (the output pipes),
//! [`tree`] (process groups and leftovers in `/proc`), [`marks`] (the environment marks),
//! [`interrupt`] (signals to duet itself).

mod capture;
pub(crate) mod command;
pub(crate) mod interrupt;
mod marks;
mod tree;

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use tokio::net::unix::pipe::Receiver;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::process::interrupt::Interrupt;
use capture::{Sink, pump};
pub(crate) use marks::Marks;
#[cfg(test)]
use tree::is_live;
use tree::stop_tree;
pub(crate) use tree::{leftovers, stop_leftovers};

/// One process to run.
#[derive(Clone, Debug)]
pub(crate) struct ProcessSpec {
    pub(crate) program: PathBuf,
    /// Already `%VAR%`-expanded (see [`expand`]).
    pub(crate) args: Vec<String>,
    /// Set on top of the inherited environment.
    pub(crate) env: Vec<(String, String)>,
    pub(crate) cwd: PathBuf,
    pub(crate) timeout: Duration,
    /// After the timeout: SIGTERM to the process group, then SIGKILL after this grace.
    pub(crate) kill_grace: Duration,
    /// The full output of this attempt goes to `<output_base>.stdout` and `<output_base>.stderr`,
    /// each created only when its stream produced output.
    pub(crate) output_base: PathBuf,
    /// At its second signal the process group is stopped as at the timeout
    /// ([`Exit::Interrupted`]).
    pub(crate) interrupt: Interrupt,
    /// What identifies this attempt's processes (also set in their environment): at a timeout
    /// or a second signal, every live process carrying them is stopped with the group, including
    /// those that left it. Empty: the group alone.
    pub(crate) marks: Marks,
}

/// How the process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    Code(i32),
    Signal(i32),
    /// Killed with its process group after the timeout.
    TimedOut,
    /// Stopped with its process group: duet was told to stop (a second Ctrl-C or SIGTERM).
    Interrupted,
    /// It never ran: `not_found` when the executable does not exist.
    SpawnFailed {
        message: String,
        not_found: bool,
    },
}

/// One output stream: the last bytes in memory, everything in the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Captured {
    /// The last [`TAIL_BYTES`] of the stream, lossily decoded.
    pub(crate) tail: String,
    /// Total bytes the stream produced.
    pub(crate) bytes: u64,
    /// The file holding the whole stream, if it produced anything.
    pub(crate) file: Option<PathBuf>,
    /// Writing the file failed (the output past that point is lost); why.
    pub(crate) write_error: Option<String>,
}

/// Bytes of each stream kept in memory and in the journal.
pub(crate) const TAIL_BYTES: usize = 16 * 1024;

/// The guide's text for a custom action whose executable is missing.
pub(crate) const NOT_FOUND_MESSAGE: &str = "The executable filename does not exist.";

/// After the SIGKILL, how long [`run`] waits for the group's members to be gone. Only a process
/// stuck in an uninterruptible sleep (a dead NFS mount) takes longer; we stop waiting then.
const GROUP_EXIT_LIMIT: Duration = Duration::from_secs(5);

/// One read from a pipe; the default pipe capacity, so one read usually empties it.
const CHUNK: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProcessOutcome {
    pub(crate) exit: Exit,
    pub(crate) stdout: Captured,
    pub(crate) stderr: Captured,
    pub(crate) duration: Duration,
    /// What the platform could not record about the run (its own log): the run stands, but
    /// duet stops after it (a file of duet's own it could not write).
    pub(crate) record_error: Option<String>,
}

/// Runs one process to its end (or its timeout).
pub(crate) async fn run(spec: &ProcessSpec) -> ProcessOutcome {
    let started = Instant::now();
    let mut stdout = Sink::new(with_suffix(&spec.output_base, "stdout"));
    let mut stderr = Sink::new(with_suffix(&spec.output_base, "stderr"));
    let exit = match Child::spawn(spec) {
        Ok(child) => child.supervise(spec, &mut stdout, &mut stderr).await,
        Err(failed) => failed,
    };
    ProcessOutcome {
        exit,
        stdout: stdout.finish(),
        stderr: stderr.finish(),
        duration: started.elapsed(),
        record_error: None,
    }
}

/// Expands `%NAME%` from `env` (`%%` is a literal `%`; an unknown name stays as written).
///
/// `%` signs pair up from the left, as the compiler's variable check reads them: `%NAME%` with
/// `NAME` set in `env` becomes its value (the first entry with that name wins, so a caller can
/// put the action's own variables before the inherited ones), `%%` becomes `%`, any other pair
/// stays as written, and a last unpaired `%` stays too. So `100% of %X%` is left alone (its
/// pair is `% of %`); write `100%% of %X%`.
pub(crate) fn expand(arg: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(open) = rest.find('%') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('%') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after[..close];
        if name.is_empty() {
            out.push('%');
        } else if let Some((_, value)) = env.iter().find(|(n, _)| n == name) {
            out.push_str(value);
        } else {
            out.push_str(&rest[open..=open + 1 + close]);
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// A started process: its duct handle, the read ends of its pipes, and its group.
struct Child {
    handle: duct::Handle,
    /// The main process's pid, which is also its process group id.
    pid: Pid,
    stdout: Receiver,
    stderr: Receiver,
    sigchld: ExitWatch,
}

impl Child {
    fn spawn(spec: &ProcessSpec) -> Result<Self, Exit> {
        let broken = |what: &str, e: &io::Error| Exit::SpawnFailed {
            message: format!("{what}: {}", describe(e)),
            not_found: false,
        };
        let (out_read, out_write) = pipe().map_err(|e| broken("create the stdout pipe", &e))?;
        let (err_read, err_write) = pipe().map_err(|e| broken("create the stderr pipe", &e))?;
        // Listening before the spawn means no SIGCHLD of this child can be missed.
        let sigchld = ExitWatch::new();
        let mut expression = duct::cmd(&spec.program, &spec.args)
            .dir(&spec.cwd)
            .stdin_null()
            .stdout_file(out_write)
            .stderr_file(err_write)
            .unchecked()
            .before_spawn(|command| {
                command.process_group(0);
                Ok(())
            });
        for (name, value) in &spec.env {
            expression = expression.env(name, value);
        }
        let started = expression.start();
        // The expression owns our copies of the write ends: drop it so that EOF can happen.
        drop(expression);
        let handle = started.map_err(|e| spawn_error(spec, &e))?;
        let raw = handle.pids().first().copied().and_then(|pid| i32::try_from(pid).ok());
        let pid = Pid::from_raw(raw.expect("duct returns the pid of the one process it started"));
        let receiver = |fd| Receiver::from_owned_fd(fd).map_err(|e| broken("watch the output pipes", &e));
        let (stdout, stderr) = match (receiver(out_read), receiver(err_read)) {
            (Ok(stdout), Ok(stderr)) => (stdout, stderr),
            (Err(e), _) | (_, Err(e)) => {
                let _ = killpg(pid, Signal::SIGKILL);
                let _ = handle.wait();
                return Err(e);
            }
        };
        Ok(Self { handle, pid, stdout, stderr, sigchld })
    }

    /// Waits for the exit (or enforces the timeout) while draining both pipes into the sinks.
    async fn supervise(self, spec: &ProcessSpec, stdout: &mut Sink, stderr: &mut Sink) -> Exit {
        let Self { handle, pid, stdout: out_pipe, stderr: err_pipe, mut sigchld } = self;
        let mut guard = GroupGuard { pgid: pid, armed: true };
        let (exited_tx, exited_rx) = watch::channel(false);
        let supervisor = async {
            let stopped = tokio::select! {
                // An exit seen in the same poll as the signal is an exit: it is not stopped.
                biased;
                exited = tokio::time::timeout(spec.timeout, sigchld.exited(pid)) => {
                    exited.is_err().then_some(Exit::TimedOut)
                }
                () = spec.interrupt.escalation() => Some(Exit::Interrupted),
            };
            if stopped.is_some() {
                stop_tree(pid, spec, &mut sigchld).await;
            }
            guard.armed = false;
            exited_tx.send_replace(true);
            stopped
        };
        let (stopped, (), ()) =
            tokio::join!(supervisor, pump(&out_pipe, stdout, exited_rx.clone()), pump(&err_pipe, stderr, exited_rx));
        // The main process is a zombie by now, so this returns at once; it reaps it.
        let status = handle.wait().map(|output| output.status);
        if let Some(stopped) = stopped {
            return stopped;
        }
        match status {
            Ok(status) => match (status.code(), status.signal()) {
                (Some(code), _) => Exit::Code(code),
                (None, Some(signal)) => Exit::Signal(signal),
                (None, None) => {
                    Exit::SpawnFailed { message: format!("unexpected wait status {status}"), not_found: false }
                }
            },
            Err(e) => {
                Exit::SpawnFailed { message: format!("wait for the process: {}", describe(&e)), not_found: false }
            }
        }
    }
}

/// Kills the group if [`run`] is dropped before the main process has exited.
struct GroupGuard {
    pgid: Pid,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
    }
}

/// Tells when the main process has exited, without reaping it.
enum ExitWatch {
    Sigchld(tokio::signal::unix::Signal),
    /// Installing the `SIGCHLD` handler failed: look every few milliseconds instead.
    Poll,
}

impl ExitWatch {
    fn new() -> Self {
        signal(SignalKind::child()).map_or(Self::Poll, Self::Sigchld)
    }

    async fn exited(&mut self, pid: Pid) {
        loop {
            // WNOWAIT leaves the zombie in place; any error means there is nothing left to wait for.
            match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(_) | Err(_) => return,
            }
            match self {
                Self::Sigchld(stream) => {
                    stream.recv().await;
                }
                Self::Poll => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }
}

/// A pipe whose ends are closed on exec, so concurrent spawns do not inherit each other's.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)
}

fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Why the spawn failed, in the guide's words when the executable is missing.
fn spawn_error(spec: &ProcessSpec, e: &io::Error) -> Exit {
    if e.kind() == io::ErrorKind::NotFound {
        // ENOENT also comes from a missing working directory or a missing `#!` interpreter.
        if !spec.cwd.is_dir() {
            let message = format!("working directory {} does not exist", spec.cwd.display());
            return Exit::SpawnFailed { message, not_found: false };
        }
        if !spec.program.is_file() || spec.program.components().count() == 1 {
            return Exit::SpawnFailed { message: NOT_FOUND_MESSAGE.to_owned(), not_found: true };
        }
        let message = format!("{}: its interpreter (the #! line) was not found", describe(e));
        return Exit::SpawnFailed { message, not_found: false };
    }
    Exit::SpawnFailed { message: describe(e), not_found: false }
}

/// An I/O error as a lowercase fragment naming the errno: "permission denied (EACCES)".
fn describe(e: &io::Error) -> String {
    let Some(code) = e.raw_os_error() else { return e.to_string() };
    let errno = Errno::from_raw(code);
    let desc = errno.desc();
    let mut chars = desc.chars();
    let lowered = match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if !second.is_uppercase() => {
            first.to_lowercase().chain(desc[1..].chars()).collect()
        }
        _ => desc.to_owned(),
    };
    format!("{lowered} ({errno:?})")
}

/// Peak resident memory of this process in KiB (Linux `VmHWM`), for the journal's
/// `request-finished` records.
pub(crate) fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn spec(dir: &Path, program: &str, args: &[&str]) -> ProcessSpec {
        ProcessSpec {
            program: program.into(),
            args: args.iter().map(|&a| a.to_owned()).collect(),
            env: Vec::new(),
            cwd: dir.to_owned(),
            timeout: Duration::from_secs(60),
            kill_grace: Duration::from_secs(5),
            output_base: dir.join("out"),
            interrupt: Interrupt::default(),
            marks: Marks::default(),
        }
    }

    fn sh(dir: &Path, script: &str) -> ProcessSpec {
        spec(dir, "/bin/sh", &["-c", script])
    }

    /// Pids of live processes whose command line contains `marker`.
    fn processes_with(marker: &str) -> Vec<i32> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
            // A zombie's command line reads empty, so only live processes match. The marker is
            // a whole argument: `300.12853` must not match another test's `300.128537`.
            if cmdline.split(|&b| b == 0).any(|arg| arg == marker.as_bytes()) {
                found.push(pid);
            }
        }
        found
    }

    /// A `sleep` duration no other test (nor another test binary) uses, to find its processes.
    fn marker(n: u32) -> String {
        format!("300.{:07}{n:02}", std::process::id())
    }

    #[test]
    fn expand_follows_the_guide() {
        let env: Vec<(String, String)> =
            [("ACTIVE_UPGRADE_SIDE", "Upgrade"), ("A", "1"), ("A", "shadowed"), ("EMPTY", "")]
                .iter()
                .map(|&(n, v)| (n.to_owned(), v.to_owned()))
                .collect();
        let cases = [
            ("plain", "plain"),
            ("", ""),
            ("%ACTIVE_UPGRADE_SIDE%", "Upgrade"),
            ("side=%ACTIVE_UPGRADE_SIDE%.", "side=Upgrade."),
            ("%A%%A%", "11"),
            ("%A%", "1"),
            ("[%EMPTY%]", "[]"),
            ("100%%", "100%"),
            ("%%A%%", "%A%"),
            ("%%", "%"),
            ("%%%", "%%"),
            ("%UNKNOWN%", "%UNKNOWN%"),
            ("%UNKNOWN%A%", "%UNKNOWN%A%"),
            ("x%UNKNOWN%%A%", "x%UNKNOWN%1"),
            ("%", "%"),
            ("50% off", "50% off"),
            ("a%b", "a%b"),
            ("100% of %A%", "100% of %A%"),
            ("100%% of %A%", "100% of 1"),
            ("é%A%ü", "é1ü"),
            ("%a%", "%a%"),
        ];
        for (arg, expected) in cases {
            assert_eq!(expand(arg, &env), expected, "expand({arg:?})");
        }
    }

    #[tokio::test]
    async fn exit_codes_and_signals() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(run(&sh(dir.path(), "exit 0")).await.exit, Exit::Code(0));
        assert_eq!(run(&sh(dir.path(), "exit 3")).await.exit, Exit::Code(3));
        assert_eq!(run(&sh(dir.path(), "kill -KILL $$")).await.exit, Exit::Signal(9));
    }

    #[tokio::test]
    async fn env_cwd_and_args_arrive_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sh(
            dir.path(),
            r#"printf '%s|%s|%s|%s|%s|%s' "$ACTIVE_UPGRADE_SIDE" "$ACTIVE_UPGRADE_STATE" "$ACTIVE_UPGRADE_REQUEST" "$ACTIVE_UPGRADE_HW_SPLIT" "$PATH" "$(pwd)""#,
        );
        s.env = [
            ("ACTIVE_UPGRADE_SIDE", "Upgrade"),
            ("ACTIVE_UPGRADE_STATE", "Split"),
            ("ACTIVE_UPGRADE_REQUEST", "ExecuteSplit"),
            ("ACTIVE_UPGRADE_HW_SPLIT", "Yes"),
        ]
        .iter()
        .map(|&(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
        let out = run(&s).await;
        assert_eq!(out.exit, Exit::Code(0));
        let cwd = dir.path().canonicalize().unwrap();
        let path = std::env::var("PATH").unwrap();
        assert_eq!(out.stdout.tail, format!("Upgrade|Split|ExecuteSplit|Yes|{path}|{}", cwd.display()));

        // No shell between duet and the program: spaces, `$HOME` and `*` arrive untouched.
        let out = run(&spec(dir.path(), "/usr/bin/printf", &["[%s]", "a b", "$HOME", "*", "'q'"])).await;
        assert_eq!(out.exit, Exit::Code(0));
        assert_eq!(out.stdout.tail, "[a b][$HOME][*]['q']");
    }

    #[tokio::test]
    async fn streams_are_captured_separately_and_files_only_when_non_empty() {
        let dir = tempfile::tempdir().unwrap();
        let out = run(&sh(dir.path(), "echo out; echo err >&2; echo more")).await;
        assert_eq!(out.exit, Exit::Code(0));
        assert_eq!((out.stdout.tail.as_str(), out.stdout.bytes), ("out\nmore\n", 9));
        assert_eq!((out.stderr.tail.as_str(), out.stderr.bytes), ("err\n", 4));
        assert_eq!(out.stdout.file.as_deref(), Some(dir.path().join("out.stdout").as_path()));
        assert_eq!(std::fs::read_to_string(dir.path().join("out.stdout")).unwrap(), "out\nmore\n");
        assert_eq!(std::fs::read_to_string(dir.path().join("out.stderr")).unwrap(), "err\n");

        let quiet = tempfile::tempdir().unwrap();
        let out = run(&sh(quiet.path(), "echo only-err >&2")).await;
        assert_eq!(out.stdout, Captured::default());
        assert_eq!(out.stderr.tail, "only-err\n");
        assert!(!quiet.path().join("out.stdout").exists());

        let silent = tempfile::tempdir().unwrap();
        let out = run(&spec(silent.path(), "/bin/true", &[])).await;
        assert_eq!((out.exit, out.stdout, out.stderr), (Exit::Code(0), Captured::default(), Captured::default()));
        assert_eq!(std::fs::read_dir(silent.path()).unwrap().count(), 0, "a silent action creates no file");
    }

    #[tokio::test]
    async fn large_output_keeps_only_the_tail_in_memory_and_everything_on_disk() {
        const SIZE: u64 = 50 * 1024 * 1024;
        let dir = tempfile::tempdir().unwrap();
        // 50 MB of zeros, then a recognisable end; stderr gets a little.
        let script = format!("head -c {SIZE} /dev/zero; printf END; echo e >&2");
        let out = run(&sh(dir.path(), &script)).await;
        assert_eq!(out.exit, Exit::Code(0));
        assert_eq!(out.stdout.bytes, SIZE + 3);
        assert_eq!(std::fs::metadata(dir.path().join("out.stdout")).unwrap().len(), SIZE + 3);
        assert_eq!(out.stdout.tail.len(), TAIL_BYTES);
        assert!(out.stdout.tail.ends_with("\0\0END"));
        assert_eq!(out.stdout.write_error, None);
        assert_eq!(out.stderr.tail, "e\n");
    }

    #[tokio::test]
    async fn a_tail_cut_inside_a_character_drops_the_broken_start() {
        let dir = tempfile::tempdir().unwrap();
        // "é" is two bytes: TAIL_BYTES + 1 bytes of them cut the first one in half.
        let script = format!(
            "head -c {} /dev/zero | tr '\\0' x; i=0; while [ $i -lt {} ]; do printf 'éé'; i=$((i+1)); done",
            10,
            TAIL_BYTES / 4 + 1
        );
        let out = run(&sh(dir.path(), &script)).await;
        assert_eq!(out.stdout.bytes, 10 + 4 * (TAIL_BYTES as u64 / 4 + 1));
        assert!(out.stdout.tail.chars().all(|c| c == 'é'), "no replacement character");
        assert_eq!(out.stdout.tail.len(), TAIL_BYTES);
    }

    #[tokio::test]
    async fn a_failing_file_write_keeps_the_tail_and_drains_the_pipe() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sh(dir.path(), "head -c 1000000 /dev/zero; echo done");
        s.output_base = dir.path().join("missing-dir").join("out");
        let out = run(&s).await;
        assert_eq!(out.exit, Exit::Code(0), "the child was never blocked");
        assert_eq!(out.stdout.bytes, 1_000_005);
        assert!(out.stdout.tail.ends_with("done\n"));
        assert_eq!(out.stdout.file, None);
        let error = out.stdout.write_error.unwrap();
        assert!(error.starts_with("create ") && error.ends_with("no such file or directory (ENOENT)"), "{error}");
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_tree() {
        let dir = tempfile::tempdir().unwrap();
        let marker = marker(1);
        let mut s = sh(dir.path(), &format!("sleep {marker} & sleep {marker} & echo started; wait"));
        s.timeout = Duration::from_millis(300);
        let out = run(&s).await;
        assert_eq!(out.exit, Exit::TimedOut);
        assert_eq!(processes_with(&marker), Vec::<i32>::new(), "no process of the group survives");
        assert!(out.duration >= s.timeout);
    }

    #[tokio::test]
    async fn a_tree_that_ignores_sigterm_gets_sigkill_after_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let marker = marker(2);
        let mut s = sh(dir.path(), &format!("trap '' TERM; sleep {marker} & sleep {marker} & wait"));
        s.timeout = Duration::from_millis(300);
        s.kill_grace = Duration::from_millis(300);
        let out = run(&s).await;
        assert_eq!(out.exit, Exit::TimedOut);
        assert_eq!(processes_with(&marker), Vec::<i32>::new());
        assert!(out.duration >= s.timeout + s.kill_grace, "the grace was waited for: {:?}", out.duration);
    }

    #[tokio::test]
    async fn a_timeout_also_stops_what_left_the_group_but_carries_the_marks() {
        let dir = tempfile::tempdir().unwrap();
        let marker = marker(4);
        // Two children leave the group (one ignoring SIGTERM); the action says `ready` once both
        // have written their pids, then waits for its timeout.
        let script = format!(
            "setsid sh -c 'echo $$ > p1; exec sleep {marker}' & \
             setsid sh -c 'trap \"\" TERM; echo $$ > p2; exec sleep {marker}' & \
             while [ ! -s p1 ] || [ ! -s p2 ]; do sleep 0.01; done; echo ready; wait"
        );
        let mut s = sh(dir.path(), &script);
        s.marks = Marks(vec![("DUET_TEST_MARK", marker.clone())]);
        s.env = s.marks.env().collect();
        s.timeout = Duration::from_secs(3);
        s.kill_grace = Duration::from_millis(200);
        let out = run(&s).await;
        assert_eq!(out.exit, Exit::TimedOut);
        assert_eq!(out.stdout.tail, "ready\n", "both children had left the group before the timeout");
        for file in ["p1", "p2"] {
            let pid: u32 = std::fs::read_to_string(dir.path().join(file)).unwrap().trim().parse().unwrap();
            assert!(!is_live(pid), "{file}: process {pid} left the group and survived the timeout");
        }
        assert_eq!(processes_with(&marker), Vec::<i32>::new());
    }

    #[tokio::test]
    async fn a_daemon_holding_stdout_neither_blocks_nor_dies() {
        let dir = tempfile::tempdir().unwrap();
        let marker = marker(3);
        let s = sh(dir.path(), &format!("sleep {marker} & echo $!; echo bye >&2"));
        let out =
            tokio::time::timeout(Duration::from_secs(60), run(&s)).await.expect("run returned while the daemon lives");
        assert_eq!(out.exit, Exit::Code(0));
        assert_eq!(out.stderr.tail, "bye\n");
        let daemon: i32 = out.stdout.tail.trim().parse().unwrap();
        // `$!` is known as soon as the shell forks; the child may not have become `sleep` yet
        // when the script has exited (on a loaded machine), so wait for it a little.
        let mut alive = processes_with(&marker);
        for _ in 0..100 {
            if !alive.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            alive = processes_with(&marker);
        }
        // Clean up before asserting: the daemon is this test's own child's child.
        let _ = nix::sys::signal::kill(Pid::from_raw(daemon), Signal::SIGKILL);
        assert_eq!(alive, vec![daemon], "a process left running on purpose is not killed");
    }

    #[tokio::test]
    async fn leftovers_of_a_killed_supervisor_are_found_by_their_marks_and_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let mark = marker(7);
        // What an action's tree looks like after the duet running it died: still running,
        // carrying the attempt's marks.
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "trap '' TERM; sleep 300 & wait"])
            .env("DUET_TEST_MARK", &mark)
            .env("DUET_STEP", "action:x@upgrade")
            .current_dir(dir.path())
            .spawn()
            .unwrap();
        let marks = Marks(vec![("DUET_TEST_MARK", mark.clone()), ("DUET_STEP", "action:x@upgrade".into())]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut found = leftovers(&marks);
        while found.len() < 2 {
            assert!(Instant::now() < deadline, "the shell and its sleep never showed up: {found:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
            found = leftovers(&marks);
        }
        assert!(found.contains(&child.id()), "{found:?}");
        assert!(
            leftovers(&Marks(vec![("DUET_TEST_MARK", mark.clone()), ("DUET_STEP", "action:y@upgrade".into())]))
                .is_empty()
        );
        assert!(leftovers(&Marks::default()).is_empty(), "no marks match nothing, not everything");
        let stopped = stop_leftovers(&marks, Duration::from_millis(100)).await;
        assert_eq!(stopped, found);
        let _ = child.wait();
        assert!(leftovers(&marks).is_empty(), "the shell ignored SIGTERM and still got SIGKILL");
    }

    #[tokio::test]
    async fn a_missing_program_is_reported_in_the_guides_words() {
        let dir = tempfile::tempdir().unwrap();
        let out = run(&spec(dir.path(), &dir.path().join("nope.sh").display().to_string(), &[])).await;
        assert_eq!(out.exit, Exit::SpawnFailed { message: NOT_FOUND_MESSAGE.to_owned(), not_found: true });
        assert_eq!((out.stdout, out.stderr), (Captured::default(), Captured::default()));
        let out = run(&spec(dir.path(), "duet-no-such-program", &[])).await;
        assert_eq!(out.exit, Exit::SpawnFailed { message: NOT_FOUND_MESSAGE.to_owned(), not_found: true });
    }

    #[tokio::test]
    async fn a_program_that_cannot_run_names_the_errno() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script.sh");
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = run(&spec(dir.path(), &script.display().to_string(), &[])).await;
        assert_eq!(out.exit, Exit::SpawnFailed { message: "permission denied (EACCES)".to_owned(), not_found: false });

        std::fs::write(&script, "#!/no/such/interpreter\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let Exit::SpawnFailed { message, not_found } =
            run(&spec(dir.path(), &script.display().to_string(), &[])).await.exit
        else {
            panic!("a missing interpreter cannot run")
        };
        assert!(!not_found && message.contains("interpreter"), "{message}");

        let mut s = spec(dir.path(), "/bin/true", &[]);
        s.cwd = dir.path().join("gone");
        let out = run(&s).await;
        assert!(
            matches!(out.exit, Exit::SpawnFailed { not_found: false, ref message } if message.contains("working directory")),
            "{:?}",
            out.exit
        );
    }

    #[test]
    fn the_run_future_can_move_between_threads() {
        fn assert_send<T: Send>(_: &T) {}
        let s = sh(Path::new("/"), "true");
        assert_send(&run(&s));
    }
}
