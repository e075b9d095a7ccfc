//! The machine's software inventory and the verification gates through the real binary
//! (issue 12): an inventory's `software` checked where it is written and shown per side by
//! `status`; each check kind passing and failing in a real run (HTTP against a server this test
//! starts on 127.0.0.1); the version hop refused by readiness; the shipped unattended plans
//! rehearsed. The steps' own unit tests are in runtime/src/run/steps/verify/tests.rs.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::machine::{INVENTORY, Machine, PLAN};
use crate::support::{duet, indoc, repo, tree};

fn with_software() -> String {
    format!(
        "{INVENTORY}software:\n  - {{name: SQL Server, version: \"15.0.2\"}}\n  - {{name: IIS, version: \"10.0\"}}\n"
    )
}

#[test]
fn status_shows_the_software_of_both_sides_once_the_machine_is_built_from_the_inventory() {
    let m = Machine::with(PLAN, &with_software());
    m.run(&["readiness", &m.plan()]).code(0);
    let status = m.status();
    assert_eq!(
        status["software"],
        serde_json::json!([
            {"name": "IIS", "production": "10.0", "upgrade": "10.0"},
            {"name": "SQL Server", "production": "15.0.2", "upgrade": "15.0.2"},
        ]),
        "{status:#}"
    );
    m.run(&["status"]).code(0).stdout_has(
        "Software:\n              Production Side         Upgrade Side\n  \
         IIS         10.0                    10.0\n  \
         SQL Server  15.0.2                  15.0.2\n",
    );
}

#[test]
fn a_machine_without_software_shows_none() {
    let m = Machine::new();
    m.run(&["readiness", &m.plan()]).code(0);
    let status = m.status();
    assert!(status.get("software").is_none(), "{status:#}");
    let text = m.run(&["status"]).code(0).stdout.clone();
    assert!(!text.contains("Software:"), "{text}");
}

#[test]
fn a_bad_software_entry_is_refused_where_it_is_written() {
    let inventory = "version: 1\nsoftware:\n  - {name: SQL Server, version: 10.2}\n  - {name: IIS, version: \"ten\"}\n  - {name: IIS, version: \"10\"}\n";
    let dir = tree(&[("plan.yaml", b"version: 1\n"), ("inv.yaml", inventory.as_bytes())]);
    let out = duet(&["check", "plan.yaml", "--inventory", "inv.yaml"]).in_dir(dir.path()).run();
    out.code(1)
        .stderr_has("inv.yaml:3:33]")
        .stderr_has("invalid software version: YAML reads this version as a number, which loses its spelling")
        .stderr_has("inv.yaml:4:26]")
        .stderr_has("\"ten\" is not a version")
        .stderr_has("inv.yaml:5:12]")
        .stderr_has("software `IIS` is listed twice");
}

/// A web server on 127.0.0.1 (an ephemeral port) answering every GET with `status` and `body`,
/// until dropped.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(status: u16, body: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind on loopback");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let mut reader = BufReader::new(&stream);
                        let mut line = String::new();
                        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                            line.clear();
                        }
                        let reason = if status == 200 { "OK" } else { "Service Unavailable" };
                        let _ = write!(
                            &stream,
                            "HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        Self { port, stop, thread: Some(thread) }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The rig's plan with `verify` (and what else `extra` says), on the inventory with software.
fn gated(extra: &str) -> Machine {
    Machine::with(&format!("{PLAN}{}", indoc(extra)), &with_software())
}

#[test]
fn each_check_kind_passes_in_a_real_run() {
    let server = Server::start(200, "Status: Success");
    let m = gated(&format!(
        "
        verify:
          - {{id: sql-level, before: merge, version: {{software: SQL Server, constraint: \">=15.0\"}}}}
          - {{id: answers, before: merge, run: {{file: rec, args: [check], stdout: \"^ok \"}}}}
          - {{id: site, before: commit, http: {{url: \"http://127.0.0.1:{}/status\", contains: Success}}}}
        ",
        server.port
    ));
    m.run(&["run", &m.plan()]).code(0).stdout_has("verify:site@upgrade").stdout_has("Finish (Idle)");
    let history = std::fs::read_dir(m.state().join("history")).unwrap().next().unwrap().unwrap().file_name();
    let log = m.run(&["log", "--session", &history.to_string_lossy()]).code(0).stdout.clone();
    for step in ["verify:sql-level@upgrade", "verify:answers@upgrade", "verify:site@upgrade"] {
        assert!(log.contains(step), "{step} ran: {log}");
    }
}

#[test]
fn a_failing_check_says_what_it_expected_and_what_it_saw_and_aborts_when_the_plan_says_so() {
    let version = gated(
        "
        verify:
          - {id: sql-level, before: merge, version: {software: SQL Server, constraint: \">=15.0.4\"}}
        ",
    );
    version
        .run(&["run", &version.plan()])
        .code(1)
        .stderr_has("PrepareMerge is Broken at step verify:sql-level@upgrade")
        .stderr_has("15.0.2");
    let status = version.status();
    assert_eq!((&status["upgrade"], &status["operational"]), (&"PrepareMerge".into(), &"Broken".into()), "{status:#}");

    let server = Server::start(503, "down for maintenance");
    let http = gated(&format!(
        "
        on_failure: abort
        verify:
          - {{id: site, before: commit, http: {{url: \"http://127.0.0.1:{}/status\"}}, retry: {{times: 2, interval: 10ms}}}}
        ",
        server.port
    ));
    http.run(&["run", &http.plan()])
        .code(1)
        .stderr_has("verify:site@upgrade")
        .stderr_has("503")
        .stdout_has("aborting by itself");
    let status = http.status();
    assert_eq!((&status["upgrade"], &status["operational"]), (&"Abort".into(), &"Ready".into()), "{status:#}");
    assert_eq!(status["aborted_by_duet"]["step"], "verify:site@upgrade", "{status:#}");
    drop(server);

    let refused = gated(
        "
        verify:
          - {id: site, before: merge, http: {url: \"http://127.0.0.1:9/status\"}}
          - {id: answers, before: merge, run: {file: rec, args: [check], stdout: \"^never\"}}
        ",
    );
    refused.run(&["run", &refused.plan()]).code(1).stderr_has("verify:site@upgrade");
}

#[test]
fn readiness_refuses_a_machine_that_is_not_where_the_version_hop_starts() {
    let inventory = format!("{INVENTORY}software:\n  - {{name: Ivanti UWM, version: \"10.1.3\"}}\n");
    let plan = format!("{PLAN}versions: {{software: Ivanti UWM, from: \"10.2\", to: \"12.1\", max_major_hop: 2}}\n");
    let m = Machine::with(&plan, &inventory);
    m.run(&["readiness", &m.plan()]).code(1).stderr_has("probe:versions").stderr_has("10.1.3").stderr_has("10.2");
    let m2 = Machine::with(&plan, &inventory.replace("10.1.3", "10.2.7"));
    m2.run(&["readiness", &m2.plan()]).code(0);
}

/// The shipped unattended plans rehearse on the built-in machine: the SQL Server one up to its
/// approval, which the test gives; the UWM one with its two status pages served by this test
/// (their ports rewritten to the server's).
#[test]
fn the_shipped_unattended_plans_rehearse_on_the_built_in_machine() {
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("sql").display().to_string();
    let run = duet(&["run", "plans/unattended-sql.yaml", "--state-dir", &state_dir]).spawn();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let status = duet(&["status", "--json", "--state-dir", &state_dir]).run();
        if status.code == 0 && status.json()["awaiting_approval"].is_object() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the SQL plan never waited for its approval: {}", status.stdout);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    duet(&["approve", "--reason", "rehearsal", "--state-dir", &state_dir]).run().code(0);
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Finish (Idle)"));

    let server = Server::start(200, "<p>Success</p>");
    let plans = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("plans/unattended-uwm.yaml"))
        .unwrap()
        .replace("127.0.0.1:7771", &format!("127.0.0.1:{}", server.port))
        .replace("127.0.0.1:7751", &format!("127.0.0.1:{}", server.port))
        .replace("file: scripts/", &format!("file: {}/plans/scripts/", repo().display()));
    std::fs::write(plans.path().join("uwm.yaml"), text).unwrap();
    let plan = plans.path().join("uwm.yaml").display().to_string();
    let state_dir = state.path().join("uwm").display().to_string();
    duet(&["run", &plan, "--state-dir", &state_dir])
        .run()
        .code(0)
        .stdout_has("verify:management-status@upgrade")
        .stdout_has("Finish (Idle)");
}
