//! Each check kind passing and failing on a simulated machine, through the step as the loop
//! runs it (a hand-built plan and context); the HTTP checks against a server this test starts
//! on 127.0.0.1. The readiness probe of a version hop too (it reads the same inventory).

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use duet_compiler::compiled::{CompiledPlan, Gate, Op, RequestName, Retry, Source, StepKind, Versions, step_id};
use duet_contract::record::Entry;
use indexmap::IndexMap;
use tokio::sync::mpsc;

use super::*;
use crate::platform::sim::Sim;
use crate::run::Options;
use crate::run::program::Programs;

/// The 320Ma with instant operations and SQL Server 15.0.2 installed, in `root/state`.
fn machine(root: &Path) -> Sim {
    let durations = "durations: {split: 200ms, merge: 200ms, resync: 500ms}";
    let machine = crate::platform::sim::testing::built_in_without_software();
    assert!(machine.contains(durations), "the built-in inventory's durations changed: update this test");
    let text = machine
        .replace(durations, "durations: {split: 0s, merge: 0s, commit: 0s, abort: 0s, finish: 0s, resync: 0s}")
        .replace("event_logs:", "software:\n  - {name: SQL Server, version: \"15.0.2\"}\nevent_logs:");
    let path = root.join("inventory.yaml");
    std::fs::write(&path, text).unwrap();
    Sim::open(&root.join("state"), Some(&path), true).unwrap()
}

fn plan(checks: Vec<Check>, versions: Option<Versions>) -> CompiledPlan {
    let mut plan = CompiledPlan::from_json(
        r#"{"format_version": 1, "title": null, "comments": null, "sources": [], "inventory": null,
            "disks": {"system": [], "data": []}, "services": [], "actions": [],
            "logs": {"staging_dir": null, "backup": []}, "requests": {}}"#,
    )
    .unwrap();
    plan.unattended.checks = checks;
    plan.unattended.versions = versions;
    plan
}

fn check(id: &str, kind: CheckKind, retry: Option<Retry>) -> Check {
    Check {
        id: id.into(),
        before: Gate::Merge,
        check: kind,
        timeout_ms: 10_000,
        retry,
        source: Source { file: "plan.yaml".into(), line: 1 },
    }
}

/// Three tries, a few milliseconds apart.
const THREE_TRIES: Option<Retry> = Some(Retry { times: 2, interval_ms: 5 });

fn step(kind: StepKind, op: Op, id: &str, item: Option<&str>) -> Step {
    Step { item: item.map(str::to_owned), ..Step::new(id, kind, Side::Upgrade, op) }
}

/// Runs one step on `sim` with `plan`: its result and the notes it sent.
async fn run_step(sim: &Sim, plan: &CompiledPlan, session_dir: &Path, step: &Step) -> (StepResult, Vec<String>) {
    let programs = Programs::new(plan);
    let (saved, approvals, options) = (IndexMap::new(), HashMap::new(), Options::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let ctx = StepCtx {
        platform: sim,
        plan,
        programs: &programs,
        request: RequestName::PrepareMerge,
        session_dir,
        session_id: "test-session",
        saved: &saved,
        approvals: &approvals,
        options: &options,
        tx,
        output_dir: std::cell::Cell::new(false),
    };
    let result = match step.kind {
        StepKind::Verify => run(&ctx, step, 1).await,
        _ => crate::run::steps::probe::run(&ctx, step).await,
    };
    drop(ctx);
    let mut notes = Vec::new();
    while let Ok(message) = rx.try_recv() {
        if let Entry::Note { message, .. } = message.entry {
            notes.push(message);
        }
    }
    (result, notes)
}

/// Runs the check `c` as a verify step on a machine with SQL Server 15.0.2.
async fn verify(c: Check) -> (StepResult, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let sim = machine(dir.path());
    let id = c.id.clone();
    let plan = plan(vec![c], None);
    let session = dir.path().join("session");
    run_step(&sim, &plan, &session, &step(StepKind::Verify, Op::Verify, &step_id::verify(&id), Some(&id))).await
}

fn message(result: &StepResult) -> &str {
    match result {
        StepResult::Success { message } | StepResult::Failed { message, .. } => message,
        other => panic!("not a success or failure: {other:?}"),
    }
}

fn sh(script: &str, stdout: Option<&str>) -> CheckKind {
    CheckKind::Run { file: "/bin/sh".into(), args: vec!["-c".into(), script.into()], stdout: stdout.map(str::to_owned) }
}

#[tokio::test]
async fn a_run_check_passes_on_exit_0_and_a_matching_output() {
    let (result, notes) =
        verify(check("smoke", sh("echo SQL Server 15.0.4 ready", Some(r"15\.0\.\d+ ready")), None)).await;
    assert!(result.succeeded(), "{result:?}");
    assert_eq!(
        message(&result),
        r"verification `smoke` passed: `/bin/sh` exited with value 0, its output matching /15\.0\.\d+ ready/"
    );
    assert!(notes.is_empty());
}

#[tokio::test]
async fn a_run_check_that_fails_every_try_says_what_it_saw_and_notes_each_try() {
    let (result, notes) = verify(check("smoke", sh("exit 3", None), THREE_TRIES)).await;
    assert!(!result.succeeded());
    assert_eq!(
        message(&result),
        "verification `smoke` failed: expected `/bin/sh` to exit with value 0, it exited with value 3 (3 tries)"
    );
    assert_eq!(
        notes,
        [
            "verification `smoke` try 1 of 3 failed: it exited with value 3; trying again in 5ms",
            "verification `smoke` try 2 of 3 failed: it exited with value 3; trying again in 5ms",
        ]
    );
}

#[tokio::test]
async fn a_run_check_whose_output_does_not_match_fails_with_the_output() {
    let (result, _) = verify(check("smoke", sh("echo starting; echo degraded", Some("^ready$")), None)).await;
    assert_eq!(
        message(&result),
        "verification `smoke` failed: expected `/bin/sh` to exit with value 0 and print output matching /^ready$/, \
         its output did not match: \"degraded\""
    );
}

#[tokio::test]
async fn a_run_check_passes_once_a_retry_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("warm");
    // Fails the first try, passes the second (the first leaves the flag).
    let script = format!("test -e {0} || {{ touch {0}; exit 1; }}", flag.display());
    let (result, notes) = verify(check("warm", sh(&script, None), THREE_TRIES)).await;
    assert_eq!(message(&result), "verification `warm` passed: `/bin/sh` exited with value 0 (2 tries)");
    assert_eq!(notes.len(), 1, "{notes:?}");
}

#[tokio::test]
async fn a_version_check_reads_the_upgrade_sides_software() {
    let kind = |c: &str| CheckKind::Version { software: "SQL Server".into(), constraint: c.into() };
    let (result, _) = verify(check("sql-version", kind(">=15.0"), None)).await;
    assert_eq!(message(&result), "verification `sql-version` passed: SQL Server 15.0.2 meets >=15.0");
    let (result, notes) = verify(check("sql-version", kind(">=15.0.4"), THREE_TRIES)).await;
    assert_eq!(
        message(&result),
        "verification `sql-version` failed: expected SQL Server >=15.0.4 on the Upgrade Side, found 15.0.2 (3 tries)"
    );
    assert_eq!(notes.len(), 2);
    let missing = CheckKind::Version { software: "Oracle".into(), constraint: "=19".into() };
    let (result, _) = verify(check("ora", missing, None)).await;
    assert_eq!(
        message(&result),
        "verification `ora` failed: expected Oracle =19 on the Upgrade Side, found no Oracle installed"
    );
    let (result, _) = verify(check("bad", kind("~15"), None)).await;
    assert!(message(&result).starts_with("verification `bad` cannot run: \"~15\" is not a version constraint"));
}

/// A server on 127.0.0.1 answering every connection with `response`, until dropped.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Server {
    /// With an empty `response`, the server reads each request and never answers it (it keeps
    /// the connection open until it stops).
    fn start(response: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut served, mut held) = (0, Vec::new());
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                served += 1;
                if response.is_empty() {
                    held.push(stream);
                } else {
                    let _ = stream.write_all(response.as_bytes());
                }
            }
            drop(held);
            served
        });
        Self { port, stop, thread: Some(thread) }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/status", self.port)
    }

    /// Stops the server; how many requests it answered.
    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        self.thread.take().unwrap().join().unwrap()
    }
}

const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 20\r\nConnection: close\r\n\r\nstatus: all services";
const BROKEN: &str = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndown";

fn http_check(url: &str, status: u16, contains: Option<&str>) -> CheckKind {
    CheckKind::Http { url: url.into(), status, contains: contains.map(str::to_owned) }
}

#[tokio::test]
async fn an_http_check_passes_on_the_status_and_the_body_it_expects() {
    let server = Server::start(OK);
    let url = server.url();
    let (result, _) = verify(check("page", http_check(&url, 200, Some("all services")), None)).await;
    assert_eq!(
        message(&result),
        format!("verification `page` passed: GET {url} answered 200 with \"all services\" in its body")
    );
    assert_eq!(server.stop(), 1);
}

#[tokio::test]
async fn an_http_check_fails_on_another_status_after_its_tries() {
    let server = Server::start(BROKEN);
    let url = server.url();
    let (result, notes) = verify(check("page", http_check(&url, 200, None), THREE_TRIES)).await;
    assert_eq!(
        message(&result),
        format!("verification `page` failed: expected GET {url} to answer 200, it answered 503 (3 tries)")
    );
    assert_eq!(notes.len(), 2);
    assert_eq!(server.stop(), 3, "one request a try");
}

#[tokio::test]
async fn an_http_check_fails_when_the_body_lacks_the_text() {
    let server = Server::start(OK);
    let url = server.url();
    let (result, _) = verify(check("page", http_check(&url, 200, Some("version 12")), None)).await;
    assert_eq!(
        message(&result),
        format!(
            "verification `page` failed: expected GET {url} to answer 200 with a body containing \"version 12\", \
             it answered 200, but its body (20 bytes) does not contain it"
        )
    );
    server.stop();
}

#[tokio::test]
async fn an_http_check_counts_a_refused_connection_as_a_failed_try() {
    // A port that was just free: nothing listens on it.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/");
    let (result, notes) =
        verify(check("page", http_check(&url, 200, None), Some(Retry { times: 1, interval_ms: 5 }))).await;
    let message = message(&result);
    assert!(
        message.starts_with(&format!(
            "verification `page` failed: expected GET {url} to answer 200, the request failed: "
        )),
        "{message}"
    );
    assert!(message.to_lowercase().contains("refused") && message.ends_with(" (2 tries)"), "{message}");
    assert_eq!(notes.len(), 1);
}

fn hop(from: &str) -> Versions {
    Versions {
        software: "SQL Server".into(),
        from: from.into(),
        to: "16.0".into(),
        max_major_hop: None,
        source: Source { file: "plan.yaml".into(), line: 1 },
    }
}

async fn versions_probe(versions: Versions) -> StepResult {
    let dir = tempfile::tempdir().unwrap();
    let sim = machine(dir.path());
    let plan = plan(Vec::new(), Some(versions));
    let probe = step(StepKind::Probe, Op::Versions, &step_id::probe("versions"), None);
    run_step(&sim, &plan, &dir.path().join("session"), &probe).await.0
}

#[tokio::test]
async fn the_version_probe_refuses_a_machine_that_is_not_where_the_hop_starts() {
    let result = versions_probe(hop("15.0")).await;
    assert_eq!(message(&result), "SQL Server 15.0.2 is installed: the plan upgrades from 15.0");
    let result = versions_probe(hop("15.1")).await;
    assert!(!result.succeeded());
    assert_eq!(
        message(&result),
        "the machine has SQL Server 15.0.2; the plan upgrades from 15.1: upgrade to 15.1 first (or correct versions.from)"
    );
    let result = versions_probe(Versions { software: "Ivanti UWM".into(), ..hop("10.2") }).await;
    assert_eq!(
        message(&result),
        "the machine has no Ivanti UWM installed (it has SQL Server); the plan upgrades it from 10.2"
    );
}

#[tokio::test]
async fn an_http_check_that_gets_no_answer_fails_at_its_timeout() {
    let server = Server::start("");
    let url = server.url();
    let silent = Check { timeout_ms: 100, ..check("page", http_check(&url, 200, None), None) };
    let (result, _) = verify(silent).await;
    assert_eq!(
        message(&result),
        format!("verification `page` failed: expected GET {url} to answer 200, it did not answer within 100ms")
    );
    assert_eq!(server.stop(), 1);
}

#[tokio::test]
async fn a_run_check_that_hangs_is_stopped_at_its_timeout() {
    let hangs = Check { timeout_ms: 100, ..check("smoke", sh("sleep 30", None), None) };
    let (result, _) = verify(hangs).await;
    assert_eq!(
        message(&result),
        "verification `smoke` failed: expected `/bin/sh` to exit with value 0, it timed out after 100ms and was stopped"
    );
}
