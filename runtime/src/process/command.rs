//! Helper commands a platform runs to do its own work (`cp`, `btrfs`, `ip`, `systemctl`,
//! `journalctl`), and detached processes it starts and tracks itself (a service of the `exec`
//! backend, the Upgrade Side's namespace holder). Never through a shell.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{self, BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};

use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

/// How a helper command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CommandOutput {
    /// The exit code; `None` when a signal ended it.
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl CommandOutput {
    pub(crate) fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The first line of stderr (or stdout), for a message.
    pub(crate) fn why(&self) -> String {
        let text = if self.stderr.trim().is_empty() { &self.stdout } else { &self.stderr };
        let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        match (line.is_empty(), self.code) {
            (false, _) => line.to_owned(),
            (true, Some(code)) => format!("exit value {code}"),
            (true, None) => "killed by a signal".to_owned(),
        }
    }
}

/// Runs a helper command to its end and captures its output. `Err` when it cannot start (not
/// installed).
pub(crate) fn output(program: &str, args: &[OsString]) -> io::Result<CommandOutput> {
    let mut line = vec![OsString::from(program)];
    line.extend_from_slice(args);
    output_argv(&line)
}

/// A pid as nix takes it.
pub(crate) fn pid(raw: u32) -> Pid {
    Pid::from_raw(i32::try_from(raw).unwrap_or(i32::MAX))
}

/// Whether a helper program is on `PATH`.
pub(crate) fn installed(program: &str) -> bool {
    which(program).is_some()
}

/// Where `program` is on `PATH`: the first directory that holds a file of that name.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|dir| dir.join(program)).find(|p| p.is_file())
}

/// Replaces this process with `program ARGS` (`duet fleet` is `duet-fleet`); returns only if
/// that failed.
pub(crate) fn exec(program: &Path, args: &[OsString]) -> io::Error {
    use std::os::unix::process::CommandExt as _;
    std::process::Command::new(program).args(args).exec()
}

/// Starts `argv` detached: its own process group (a Ctrl-C to duet does not reach it), stdin
/// from `/dev/null`, stdout and stderr appended to `log`, `env` on top of duet's. Returns its
/// pid at once; the process outlives duet.
pub(crate) fn spawn_detached(argv: &[OsString], log: &Path, env: &[(String, String)]) -> io::Result<u32> {
    let (program, rest) = argv.split_first().ok_or_else(|| io::Error::other("an empty command"))?;
    let out = OpenOptions::new().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    let mut command = std::process::Command::new(program);
    command.args(rest).stdin(std::process::Stdio::null()).stdout(out).stderr(err).process_group(0);
    command.envs(env.iter().map(|(k, v)| (k, v)));
    let child = command.spawn()?;
    Ok(child.id())
}

/// Starts `argv` detached like [`spawn_detached`], and waits until it prints its first line on
/// stdout (a holder saying it is ready), which is returned; stderr goes to `log`.
pub(crate) fn spawn_until_ready(argv: &[OsString], log: &Path, env: &[(String, String)]) -> io::Result<(u32, String)> {
    let (program, rest) = argv.split_first().ok_or_else(|| io::Error::other("an empty command"))?;
    let err = OpenOptions::new().create(true).append(true).open(log)?;
    let mut command = std::process::Command::new(program);
    command
        .args(rest)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(err)
        .process_group(0);
    command.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = command.spawn()?;
    let pid = child.id();
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or_else(|| io::Error::other("no stdout"))?;
    BufReader::new(stdout).read_line(&mut line)?;
    Ok((pid, line.trim_end().to_owned()))
}

/// A process's start time (clock ticks since boot, `/proc/PID/stat` field 22): with its pid,
/// it names one process for good (a pid is reused, the pair is not). `None` when it is gone or
/// a zombie (one of ours is reaped here).
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let raw = i32::try_from(pid).ok()?;
    // Reap it if it is our exited child; a stranger's pid answers ECHILD, which is fine.
    let _ = waitpid(Pid::from_raw(raw), Some(WaitPidFlag::WNOHANG));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = &stat[stat.rfind(')')? + 1..];
    let mut fields = fields.split_ascii_whitespace();
    let state = fields.next()?;
    if matches!(state, "Z" | "X" | "x") {
        return None;
    }
    // Field 3 is the state; the start time is field 22.
    fields.nth(18)?.parse().ok()
}

/// Whether the process `pid` that started at `started` still runs.
pub(crate) fn alive(pid: u32, started: u64) -> bool {
    start_time(pid) == Some(started)
}

/// [`output`] of a whole argument vector.
pub(crate) fn output_argv(argv: &[OsString]) -> io::Result<CommandOutput> {
    let (program, rest) = argv.split_first().ok_or_else(|| io::Error::other("an empty command"))?;
    let out = duct::cmd(program, rest).stdin_null().stdout_capture().stderr_capture().unchecked().run()?;
    Ok(CommandOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
