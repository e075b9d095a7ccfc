//! `duet console` in a real terminal: tmux (its own server, on a socket in a temporary
//! directory) runs the console while the test drives a run or presses keys, and reads the
//! screen with `capture-pane`. The console follows a run another process drives, survives
//! resizes and a small terminal, shows no colour with `NO_COLOR`, drives a whole upgrade
//! itself (commit asks first), and a killed console leaves its running request running.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::machine::Machine;
use crate::operator::exit_of;

const PATIENCE: Duration = Duration::from_secs(60);

/// A tmux server of the test's own, with one session `duet` running one command.
struct Tmux {
    socket: PathBuf,
    server: Option<u32>,
    _dir: tempfile::TempDir,
}

impl Tmux {
    /// `None` (the tier skips, saying why) without tmux.
    fn start(command: &str, (width, height): (u16, u16)) -> Option<Self> {
        if Command::new("tmux").arg("-V").output().is_err() {
            eprintln!("SKIPPED: tmux is not installed (Debian package `tmux`; .ci/run installs it)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut tmux = Self { socket: dir.path().join("tmux.sock"), server: None, _dir: dir };
        let (w, h) = (width.to_string(), height.to_string());
        tmux.run(&["-f", "/dev/null", "new-session", "-d", "-s", "duet", "-x", &w, "-y", &h, command]);
        tmux.run(&["set-option", "-g", "remain-on-exit", "on"]);
        tmux.server = tmux.run(&["display-message", "-p", "#{pid}"]).trim().parse().ok();
        Some(tmux)
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-S").arg(&self.socket).args(args).output().expect("tmux runs");
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "duet"];
        args.extend(keys);
        self.run(&args);
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "duet"])
    }

    /// The screen with its escape sequences (colours, bold, reverse video).
    fn screen_escaped(&self) -> String {
        self.run(&["capture-pane", "-p", "-e", "-t", "duet"])
    }

    /// Polls the screen until `ready` holds; the screen then.
    #[track_caller]
    fn until(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(start.elapsed() < PATIENCE, "waited {PATIENCE:?} for {what}; the screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[track_caller]
    fn shows(&self, text: &str) -> String {
        self.until(text, |s| s.contains(text))
    }

    fn pane(&self, format: &str) -> String {
        self.run(&["display-message", "-p", "-t", "duet", format]).trim().to_owned()
    }

    fn resize(&self, width: u16, height: u16) {
        self.run(&["resize-window", "-t", "duet", "-x", &width.to_string(), "-y", &height.to_string()]);
    }

    /// The console's exit status, as the shell that ran it prints it once it exited (on the
    /// screen or, once the console gave the terminal back, in the pane's history).
    fn exit_status(&self) -> String {
        let start = Instant::now();
        loop {
            let all = self.run(&["capture-pane", "-p", "-S", "-", "-t", "duet"]);
            if let Some(line) = all.lines().find(|l| l.contains("console exited with ")) {
                return line.rsplit(' ').next().unwrap().to_owned();
            }
            assert!(start.elapsed() < PATIENCE, "the console did not exit:\n{all}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The console's pid: the child of the shell in the pane.
    fn console_pid(&self) -> i32 {
        let shell = self.pane("#{pane_pid}");
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap();
        children.split_whitespace().next().expect("the console runs").parse().unwrap()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-S").arg(&self.socket).arg("kill-server").output();
        if let Some(pid) = self.server {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid"));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
        }
    }
}

/// `duet console ARGS` as a shell command for tmux, with the rig's state and inventory; the
/// shell says how it exited.
fn console(m: &Machine, args: &[&str], colour: bool) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let colour = if colour { "-u NO_COLOR" } else { "NO_COLOR=1" };
    let mut line = format!(
        "env {colour} REC={} {} console",
        quote(&m.rec().display().to_string()),
        quote(env!("CARGO_BIN_EXE_duet"))
    );
    for arg in args {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    let (state, inventory) = (m.state().display().to_string(), m.path("inventory.yaml").display().to_string());
    let _ = write!(line, " --state-dir {} --inventory {}", quote(&state), quote(&inventory));
    line.push_str("; echo \"console exited with $?\"");
    line
}

/// The SGR parameters of an escaped screen that set a colour (30-49, 90-107; 39 and 49 are
/// the terminal's own colours).
fn colours(escaped: &str) -> Vec<String> {
    let mut found = Vec::new();
    for part in escaped.split("\u{1b}[").skip(1) {
        let Some(end) = part.find(|c: char| c.is_ascii_alphabetic()) else { continue };
        if &part[end..=end] != "m" {
            continue;
        }
        let params = &part[..end];
        let coloured = params
            .split(';')
            .filter_map(|p| p.parse::<u32>().ok())
            .any(|p| (30..=49).contains(&p) && p != 39 && p != 49 || (90..=107).contains(&p));
        if coloured {
            found.push(params.to_owned());
        }
    }
    found
}

/// Releases every blocked action when dropped, so that a `duet` the test (or the console)
/// started ends even if the test fails first; and kills the one the test started itself.
struct Cleanup {
    rec: PathBuf,
    child: Option<std::process::Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.rec.join("go"), "");
        if let Some(mut child) = self.child.take() {
            if std::thread::panicking() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// Gone, or a zombie its parent has not reaped yet.
fn gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_or(true, |s| s.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')))
}

fn wait_for(what: &str, ready: impl Fn() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < PATIENCE, "waited {PATIENCE:?} for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const BLOCKED: &str = "action:stop@production";

/// Keeps a screen as a test artifact (the target directory's scratch space).
fn keep(name: &str, screen: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), screen).unwrap();
}

#[test]
fn the_console_follows_a_run_another_process_drives() {
    let m = Machine::new();
    std::fs::write(m.rec().join(format!("block-{BLOCKED}")), "").unwrap();
    let mut cleanup = Cleanup { rec: m.rec(), child: Some(m.duet(&["run", &m.plan()]).spawn()) };
    wait_for("the run to reach its blocked step", || m.rec().join("blocked").exists());
    let Some(tmux) = Tmux::start(&console(&m, &[], false), (120, 40)) else { return };
    // The page of the request in progress, its running step, and the status bar.
    let screen = tmux.shows("| Merge | Busy");
    keep("console-merge.txt", &screen);
    assert!(screen.contains("duet console — Merge"), "{screen}");
    assert!(screen.lines().any(|l| l.contains(BLOCKED) && l.contains("running")), "{screen}");
    assert!(screen.contains("is running (pid"), "the driver is named:\n{screen}");
    let none: Vec<String> = Vec::new();
    assert_eq!(colours(&tmux.screen_escaped()), none, "NO_COLOR: no colour on the screen");
    // Smaller, too small, and back.
    tmux.resize(70, 20);
    let small = tmux.until("the console at 70x20", |s| s.lines().count() <= 20 && s.contains("Partner: OS Up"));
    assert!(small.lines().all(|l| l.chars().count() <= 70), "{small}");
    tmux.resize(40, 10);
    tmux.shows("needs 60x14");
    tmux.resize(120, 40);
    tmux.shows("Partner: OS Up");
    // The activity log, as the run goes on to its end.
    tmux.keys(&["a"]);
    keep("console-activity.txt", &tmux.shows(&format!("{BLOCKED} started")));
    std::fs::write(m.rec().join("go"), "").unwrap();
    let done = tmux.shows("Finish completed: Ready");
    assert!(done.contains("Fault Tolerant | Idle | Ready"), "{done}");
    assert_eq!(exit_of(cleanup.child.as_mut().unwrap()), 0);
    // The detail of the last entry, then out.
    tmux.keys(&["Enter"]);
    tmux.shows("Activity Log Detail");
    tmux.keys(&["Escape"]);
    tmux.until("the detail to close", |s| !s.contains("Activity Log Detail"));
    // Closing the terminal (the tmux server goes, and the console's terminal with it) ends it.
    let console_pid = tmux.console_pid();
    drop(tmux);
    wait_for("the console to end with its terminal", || gone(console_pid));
}

#[test]
fn an_operator_runs_a_whole_upgrade_from_the_console_and_a_killed_console_stops_nothing() {
    let m = Machine::new();
    let plan = m.plan();
    let Some(tmux) = Tmux::start(&console(&m, &[&plan], true), (120, 40)) else { return };
    let _cleanup = Cleanup { rec: m.rec(), child: None };
    tmux.shows("Enter readiness");
    assert!(!colours(&tmux.screen_escaped()).is_empty(), "without NO_COLOR the console has colours");
    // Split (the fourth page: Right from Readiness, where the console opens).
    tmux.keys(&["Right"]);
    tmux.shows("split is available");
    tmux.keys(&["Enter"]);
    tmux.shows("Production Side | Split | Ready");
    // Merge, blocked in a step; the console is killed while it runs.
    std::fs::write(m.rec().join(format!("block-{BLOCKED}")), "").unwrap();
    tmux.keys(&["5"]);
    tmux.shows("merge is available");
    tmux.keys(&["Enter"]);
    wait_for("the merge to reach its blocked step", || m.rec().join("blocked").exists());
    tmux.shows("| Merge | Busy");
    let console_pid = tmux.console_pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(console_pid), nix::sys::signal::SIGKILL).unwrap();
    assert_eq!(tmux.exit_status(), "137", "killed by SIGKILL");
    drop(tmux);
    std::fs::write(m.rec().join("go"), "").unwrap();
    wait_for("the merge to end Ready without its console", || {
        let status = m.status();
        status["upgrade"] == "Merge" && status["operational"] == "Ready" && status["driver"].is_null()
    });
    // A new console: commit (it asks first), then finish.
    let Some(tmux) = Tmux::start(&console(&m, &[&plan], true), (120, 40)) else { return };
    tmux.shows("Fault Tolerant | Merge | Ready");
    tmux.keys(&["6"]);
    tmux.shows("duet console — Commit");
    tmux.keys(&["Enter"]);
    tmux.shows("cannot be undone");
    tmux.keys(&["n"]);
    tmux.until("the confirmation to close", |s| !s.contains("cannot be undone"));
    assert_eq!(m.status()["upgrade"], "Merge", "`n` commits nothing");
    tmux.keys(&["Enter"]);
    tmux.shows("cannot be undone");
    tmux.keys(&["y"]);
    tmux.shows("Fault Tolerant | Commit | Ready");
    tmux.keys(&["8"]);
    tmux.shows("duet console — Finish");
    tmux.keys(&["Enter"]);
    tmux.shows("`duet finish` ended: done");
    tmux.shows("Fault Tolerant | Idle | Ready");
    let history: Vec<_> = std::fs::read_dir(m.state().join("history")).unwrap().collect();
    assert_eq!(history.len(), 1, "the session finished");
    tmux.keys(&["q"]);
    let status = tmux.exit_status();
    assert_eq!(status, "0", "{}", tmux.screen());
}

#[test]
fn the_console_needs_a_terminal() {
    let m = Machine::new();
    m.run(&["console"]).code(1).stderr_has("needs a terminal").stderr_has("help:");
}

/// On a terminal, a step in progress has a progress line with its elapsed time (indicatif),
/// gone when it ends; in a pipe (every other test), only the plain lines.
#[test]
fn a_run_on_a_terminal_shows_the_step_in_progress_with_its_time() {
    let m = Machine::new();
    std::fs::write(m.rec().join(format!("block-{BLOCKED}")), "").unwrap();
    let _cleanup = Cleanup { rec: m.rec(), child: None };
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let command = format!(
        "env REC={} {} run {} --state-dir {} --inventory {}; echo \"run exited with $?\"",
        quote(&m.rec().display().to_string()),
        quote(env!("CARGO_BIN_EXE_duet")),
        quote(&m.plan()),
        quote(&m.state().display().to_string()),
        quote(&m.path("inventory.yaml").display().to_string())
    );
    let Some(tmux) = Tmux::start(&command, (120, 40)) else { return };
    let progress =
        |s: &str| s.lines().any(|l| l.contains(BLOCKED) && l.trim_end().ends_with("s)") && !l.contains(" ok "));
    let screen = tmux.until("the progress line of the blocked step", progress);
    let line = screen.lines().find(|l| l.contains(BLOCKED) && l.trim_end().ends_with("s)")).unwrap().to_owned();
    // The elapsed time goes on while the step runs.
    tmux.until("the elapsed time to advance", |s| {
        s.lines().any(|l| l.contains(BLOCKED) && l.trim_end().ends_with("s)") && l != line)
    });
    std::fs::write(m.rec().join("go"), "").unwrap();
    let all = |t: &Tmux| t.run(&["capture-pane", "-p", "-S", "-", "-t", "duet"]);
    let start = Instant::now();
    while !all(&tmux).contains("run exited with 0") {
        assert!(start.elapsed() < PATIENCE, "the run did not end:\n{}", all(&tmux));
        std::thread::sleep(Duration::from_millis(50));
    }
    let done = all(&tmux);
    assert!(done.lines().any(|l| l.starts_with("  ok      action:stop@production")), "{done}");
    assert!(
        !done.lines().any(|l| l.contains(BLOCKED) && l.trim_end().ends_with("s)")),
        "the progress line is gone:\n{done}"
    );
}

/// The commands that take a reason, typed in the console: a failed action skipped, then the
/// approval the run waits at given; both journaled with the reason.
#[test]
fn an_operator_skips_a_failed_action_and_approves_from_the_console() {
    let plan = format!("{}approve:\n  - {{id: go, before: commit}}\n", crate::machine::PLAN);
    let m = Machine::with(&plan, crate::machine::INVENTORY);
    m.fail("action:adv-late@production-ExecuteSplit");
    m.run(&["run", &m.plan()]).code(1);
    let Some(tmux) = Tmux::start(&console(&m, &[&m.plan()], false), (120, 40)) else { return };
    let _cleanup = Cleanup { rec: m.rec(), child: None };
    tmux.shows("| Split | Broken");
    tmux.shows("s skip");
    tmux.keys(&["s"]);
    tmux.shows("Why is it safe to go on without action:adv-late@production?");
    tmux.keys(&["Enter"]);
    tmux.shows("give a reason");
    tmux.run(&["send-keys", "-t", "duet", "-l", "late trace only, checked by hand"]);
    tmux.shows("Reason: late trace only, checked by hand_");
    tmux.keys(&["Enter"]);
    // The skip carries on to where `duet run` was headed, and waits at the approval.
    tmux.shows("p approve");
    tmux.keys(&["p"]);
    tmux.shows("Why may the run go on?");
    tmux.run(&["send-keys", "-t", "duet", "-l", "CAB change 4711"]);
    tmux.keys(&["Enter"]);
    tmux.shows("Fault Tolerant | Idle | Ready");
    tmux.keys(&["q"]);
    assert_eq!(tmux.exit_status(), "0");
    let id = std::fs::read_dir(m.state().join("history")).unwrap().next().unwrap().unwrap().file_name();
    let log = m.run(&["log", "--session", &id.to_string_lossy()]).code(0).stdout.clone();
    assert!(log.contains("skipped by") && log.contains("late trace only, checked by hand"), "{log}");
    assert!(log.contains("approve:go: approved by") && log.contains("CAB change 4711"), "{log}");
}

/// `T` on a step's line of the activity log retries the Broken request from that step, with the
/// operator's reason: a failed action fixed by hand, then run again from the console.
#[test]
fn an_operator_retries_from_a_step_selected_in_the_activity_log() {
    let m = Machine::with(crate::machine::PLAN, crate::machine::INVENTORY);
    m.fail("action:adv-late@production-ExecuteSplit");
    m.run(&["run", &m.plan(), "--through", "split"]).code(1);
    m.heal("action:adv-late@production-ExecuteSplit");
    let Some(tmux) = Tmux::start(&console(&m, &[&m.plan()], false), (120, 40)) else { return };
    let _cleanup = Cleanup { rec: m.rec(), child: None };
    tmux.shows("| Split | Broken");
    tmux.keys(&["a"]);
    tmux.shows("T retry from here");
    // From the last line up, until `T` offers the failed action's line.
    let mut offered = false;
    for _ in 0..60 {
        tmux.keys(&["T"]);
        let screen = tmux.until("T answered", |s| s.contains("Retry from") || s.contains("select a step's line"));
        if screen.contains("Retry from action:adv-late@production") {
            offered = true;
            break;
        }
        if screen.contains("Retry from") {
            tmux.keys(&["Escape"]);
            tmux.until("the prompt closed", |s| !s.contains("Retry from"));
        }
        // A key clears what the console said, so the next `T`'s answer is its own.
        tmux.keys(&["Up"]);
        tmux.until("the message cleared", |s| !s.contains("select a step's line"));
    }
    assert!(offered, "no line of the activity log offered a retry from the failed action:\n{}", tmux.screen());
    tmux.shows("Why run action:adv-late@production and every step after it again?");
    tmux.run(&["send-keys", "-t", "duet", "-l", "fixed the trace share by hand"]);
    tmux.keys(&["Enter"]);
    tmux.shows("| Split | Ready");
    tmux.keys(&["q"]);
    assert_eq!(tmux.exit_status(), "0");
    let log = m.run(&["log"]).code(0).stdout.clone();
    assert!(
        log.contains("retry of ExecuteSplit from action:adv-late@production")
            && log.contains(": fixed the trace share by hand"),
        "{log}"
    );
}
