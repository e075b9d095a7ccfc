//! Operator experience (issue 15), as a person or a pipeline uses it: shell completions in real
//! shells, man pages through `man`, `duet run --format json` and `duet log --follow` read while
//! a run proceeds.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::machine::Machine;
use crate::support::duet;

/// How long a test waits for something that should happen at once.
const PATIENCE: Duration = Duration::from_secs(60);

/// A program on PATH, or `None` with the reason the test tier skips printed.
fn program(name: &str, package: &str) -> Option<String> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!("SKIPPED: `{name}` is not installed (Debian package `{package}`; .ci/run installs it)");
    }
    found.map(|p| p.display().to_string())
}

fn shell(program: &str, args: &[&str]) -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_duet")).parent().unwrap().display().to_string();
    let path = format!("{bin}:{}", std::env::var("PATH").unwrap_or_default());
    let out = Command::new(program).args(args).env("PATH", path).output().expect("the shell runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{program} {args:?} failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

#[test]
fn bash_completes_commands_and_flags() {
    let Some(bash) = program("bash", "bash") else { return };
    let complete = |words: &str| {
        let script = format!(
            "source <(duet completions bash) && complete -p duet >/dev/null && COMP_WORDS=({words}) && \
             COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)) && _duet duet \"${{COMP_WORDS[COMP_CWORD]}}\" && printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        shell(&bash, &["-c", &script])
    };
    let commands = complete("duet re");
    let mut got: Vec<&str> = commands.lines().collect();
    got.sort_unstable();
    assert_eq!(got, ["readiness", "recover", "report", "resume", "retry"], "{commands}");
    let flags = complete("duet log --fo");
    assert!(flags.lines().any(|l| l == "--follow") && flags.lines().any(|l| l == "--format"), "{flags}");
}

#[test]
fn fish_completes_commands() {
    let Some(fish) = program("fish", "fish") else { return };
    let out = shell(&fish, &["-c", "duet completions fish | source; complete -C 'duet comp'"]);
    assert!(out.lines().any(|l| l.starts_with("compile\t")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("completions\t")), "{out}");
}

#[test]
fn zsh_reads_its_completion_script() {
    let Some(zsh) = program("zsh", "zsh") else { return };
    let dir = tempfile::tempdir().unwrap();
    let script = duet(&["completions", "zsh"]).run();
    script.code(0);
    assert!(script.stdout.starts_with("#compdef duet"), "{}", script.stdout);
    let file = dir.path().join("_duet");
    std::fs::write(&file, &script.stdout).unwrap();
    // zsh parses it (a syntax error fails), and the completion function it defines exists.
    let out = shell(&zsh, &["-c", &format!("autoload -U compinit; source {}; whence -w _duet", file.display())]);
    assert!(out.contains("_duet: function"), "{out}");
}

#[test]
fn man_pages_render_through_man() {
    let Some(man) = program("man", "man-db") else { return };
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man1");
    duet(&["man", "--out-dir", &out_dir.display().to_string()]).run().code(0).stdout_has("man pages to");
    for page in ["duet.1", "duet-run.1", "duet-log.1", "duet-console.1", "duet-report.1"] {
        assert!(out_dir.join(page).is_file(), "{page} was not written");
    }
    let out = Command::new(man).arg("-l").arg(out_dir.join("duet-log.1")).env("MANWIDTH", "100").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("duet-log") && text.contains("--follow"), "{text}");
    // A directory that cannot be written is a diagnostic, not a panic.
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    duet(&["man", "--out-dir", &file.join("x").display().to_string()])
        .run()
        .code(1)
        .stderr_has("cannot write the man pages")
        .stderr_has("help:");
}

/// The lines a child prints, as they come.
pub(crate) struct Lines {
    rx: mpsc::Receiver<String>,
    pub(crate) seen: Vec<String>,
}

impl Lines {
    pub(crate) fn of(child: &mut Child) -> Self {
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { rx, seen: Vec::new() }
    }

    /// Reads until a line holds `fragment` (failing after [`PATIENCE`]); returns it.
    #[track_caller]
    pub(crate) fn until(&mut self, fragment: &str) -> String {
        let start = Instant::now();
        loop {
            let left = PATIENCE.saturating_sub(start.elapsed());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(fragment) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("no line with {fragment:?} came; seen:\n{}", self.seen.join("\n"))
                }
            }
        }
    }

    /// Every line until the child closes its stdout.
    pub(crate) fn rest(&mut self) -> &[String] {
        while let Ok(line) = self.rx.recv_timeout(PATIENCE) {
            self.seen.push(line);
        }
        &self.seen
    }
}

/// Waits for `child` to exit (at most [`PATIENCE`]); its exit code.
pub(crate) fn exit_of(child: &mut Child) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().expect("exited, not killed");
        }
        if start.elapsed() > PATIENCE {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("pid {} did not exit within {PATIENCE:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

const BLOCKED: &str = "action:stop@production";

#[test]
fn run_format_json_streams_each_event_as_it_happens() {
    let m = Machine::new();
    std::fs::write(m.rec().join(format!("block-{BLOCKED}")), "").unwrap();
    let mut run = m.duet(&["run", &m.plan(), "--format", "json"]).spawn();
    let mut lines = Lines::of(&mut run);
    let started = lines.until(&format!("\"step\":\"{BLOCKED}\""));
    // The step's start is on stdout while the step is still running, and the run waits for it.
    assert!(run.try_wait().unwrap().is_none(), "the run ended before its blocked step was released");
    let started: Value = serde_json::from_str(&started).unwrap();
    assert_eq!(started["entry"]["step-started"]["step"], BLOCKED);
    std::fs::write(m.rec().join("go"), "").unwrap();
    let all = lines.rest().to_vec();
    assert_eq!(exit_of(&mut run), 0);
    let events: Vec<Value> = all
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON event per line ({e}): {l}")))
        .collect();
    assert!(events.iter().all(|e| e["format_version"] == 1), "every event has the format version");
    let kinds: std::collections::BTreeSet<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), ["entry", "message", "request", "status"]);
    assert_eq!(events.last().unwrap()["event"], "status");
    assert_eq!(events.last().unwrap()["upgrade"], "Idle");
    // The entries are the journal's, numbered as the journal numbers them.
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    let history = std::fs::read_dir(m.state().join("history")).unwrap().next().unwrap().unwrap().path();
    let id = history.file_name().unwrap().to_string_lossy().into_owned();
    let log = m.run(&["log", "--session", &id, "--format", "json"]).code(0).json();
    let logged: Vec<u64> = log.as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, logged[2..], "every record after begin and the operation, once each, in order");
}

#[test]
fn log_follow_prints_a_session_another_process_drives_and_ends_with_it() {
    let m = Machine::new();
    let mut follow = m.duet(&["log", "--follow", "--format", "json"]).spawn();
    let mut followed = Lines::of(&mut follow);
    std::fs::write(m.rec().join(format!("block-{BLOCKED}")), "").unwrap();
    let mut run = m.duet(&["run", &m.plan(), "--through", "commit"]).spawn();
    followed.until(&format!("{BLOCKED} started"));
    assert!(run.try_wait().unwrap().is_none(), "the run ended before its blocked step was released");
    std::fs::write(m.rec().join("go"), "").unwrap();
    followed.until("Commit completed: Ready");
    assert_eq!(exit_of(&mut run), 0);
    // The session is still in progress (committed, not finished): following goes on.
    assert!(follow.try_wait().unwrap().is_none(), "follow stopped while the session is in progress");
    m.run(&["finish"]).code(0);
    let all = followed.rest().to_vec();
    assert_eq!(exit_of(&mut follow), 0);
    let stderr = std::io::read_to_string(follow.stderr.take().unwrap()).unwrap();
    assert!(stderr.contains("is no longer in progress"), "{stderr}");
    let seqs: Vec<u64> =
        all.iter().map(|l| serde_json::from_str::<Value>(l).unwrap()["seq"].as_u64().unwrap()).collect();
    let id = m.state().join("history");
    let id = std::fs::read_dir(id).unwrap().next().unwrap().unwrap().file_name().to_string_lossy().into_owned();
    let log = m.run(&["log", "--session", &id, "--format", "json"]).code(0).json();
    let logged: Vec<u64> = log.as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, logged, "follow printed every record of the session once, in order");
}

#[test]
fn log_follow_as_text_and_its_refusals() {
    let m = Machine::new();
    m.run(&["run", &m.plan(), "--through", "split"]).code(0);
    let mut follow = m.duet(&["log", "--follow"]).spawn();
    let mut lines = Lines::of(&mut follow);
    lines.until("ExecuteSplit completed: Ready");
    m.run(&["abort"]).code(0);
    lines.until("AbortFromSplit completed: Ready");
    m.run(&["finish"]).code(0);
    lines.rest();
    assert_eq!(exit_of(&mut follow), 0);
    m.run(&["log", "--follow", "--format", "xml"]).code(1).stderr_has("not XML").stderr_has("help:");
    m.run(&["log", "--follow", "--session", "x"]).code(2).stderr_has("cannot be used with");
}
