//! Fleet runs end to end, multi-process: a real etcd of the test's own on free 127.0.0.1 ports,
//! one `duet-fleet agent` process per simulated node (each with its own state directory, so its
//! own duet session, journal, lock and simulated machine), and a `duet-fleet run` coordinator.
//! Every process is stopped by the PID the test started; everything lives in temp dirs. The
//! results are checked from the agents' journals, the nodes' duet state and the fleet journal.
//! Every wait is on a condition, with a generous bound.

#[path = "support/etcd_server.rs"]
mod etcd_server;
#[path = "support/netns.rs"]
mod netns;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use etcd_server::EtcdServer;
use netns::Netns;
use serde_json::Value;

const FLEET_BIN: &str = env!("CARGO_BIN_EXE_duet-fleet");
const DUET_BIN: &str = env!("CARGO_BIN_EXE_duet-node");

fn seeds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans/fleets").canonicalize().expect("plans/fleets")
}

/// Polls `f` until it gives a value, for at most `secs` seconds; `what` and `context()` say
/// what did not happen.
#[track_caller]
fn wait_for<T>(secs: u64, what: &str, context: impl Fn() -> String, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {secs} s: {what}\n{}", context());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One fleet run's world: etcd, the processes, their directories.
struct Run {
    etcd: EtcdServer,
    dir: tempfile::TempDir,
    fleet: PathBuf,
    agents: BTreeMap<String, Child>,
    coordinators: BTreeMap<String, Child>,
    starts: usize,
    /// For a partition: every process runs in namespace `a` (etcd's), but those named in
    /// `in_b`, which run in `b`, linked to `a` by a veth pair. Last: dropped after the processes.
    net: Option<Partition>,
    /// Environment for every `duet-fleet` this run starts (TLS files).
    env: Vec<(String, PathBuf)>,
}

struct Partition {
    a: Netns,
    b: Netns,
    in_b: Vec<String>,
}

impl Run {
    fn new(fleet: PathBuf) -> Option<Self> {
        Some(Self::on(EtcdServer::start()?, fleet))
    }

    fn on(etcd: EtcdServer, fleet: PathBuf) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("world")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("logs")).expect("mkdir");
        Self {
            etcd,
            dir,
            fleet,
            agents: BTreeMap::new(),
            coordinators: BTreeMap::new(),
            starts: 0,
            net: None,
            env: Vec::new(),
        }
    }

    /// The cluster's shared world the fleet's scripts act on.
    fn world(&self) -> PathBuf {
        self.dir.path().join("world")
    }

    fn state_dir(&self, node: &str) -> PathBuf {
        self.dir.path().join("nodes").join(node)
    }

    fn log_file(&mut self, name: &str) -> std::fs::File {
        self.starts += 1;
        let path = self.dir.path().join("logs").join(format!("{:02}-{name}.log", self.starts));
        std::fs::File::create(path).expect("log file")
    }

    fn fleet_cmd(&self) -> Command {
        self.fleet_cmd_as("")
    }

    /// `duet-fleet` for the process called `name`, in its namespace when the run has them.
    fn fleet_cmd_as(&self, name: &str) -> Command {
        let mut cmd = match &self.net {
            Some(p) if p.in_b.iter().any(|n| n == name) => p.b.command(FLEET_BIN),
            Some(p) => p.a.command(FLEET_BIN),
            None => Command::new(FLEET_BIN),
        };
        cmd.env("DUET_FLEET_ETCD", self.etcd.endpoints.join(",")).env_remove("DUET_STATE_DIR");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn start_agent(&mut self, node: &str) {
        let log = self.log_file(node);
        let child = self
            .fleet_cmd_as(node)
            .arg("agent")
            .arg(&self.fleet)
            .args(["--run", "t", "--node", node, "--duet", DUET_BIN])
            .arg("--state-dir")
            .arg(self.state_dir(node))
            .arg("--sim")
            .arg(self.world())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start an agent");
        self.agents.insert(node.to_owned(), child);
    }

    /// `kill -9` of the agent's PID (the one this test started), reaped.
    fn kill_agent(&mut self, node: &str) {
        let mut child = self.agents.remove(node).expect("a running agent");
        child.kill().expect("SIGKILL the agent");
        child.wait().expect("reap the agent");
    }

    fn start_coordinator(&mut self, name: &str) {
        self.start_coordinator_with(name, &["run"], &[]);
    }

    /// `duet-fleet VERB FLEET [ARGS] --run t --name NAME --sim WORLD`: a coordinator.
    fn start_coordinator_with(&mut self, name: &str, verb: &[&str], args: &[&str]) {
        let log = self.log_file(name);
        let child = self
            .fleet_cmd_as(name)
            .args(verb)
            .arg(&self.fleet)
            .args(args)
            .args(["--run", "t", "--name", name])
            .arg("--sim")
            .arg(self.world())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start a coordinator");
        self.coordinators.insert(name.to_owned(), child);
    }

    /// `kill -9` of a coordinator's PID (the one this test started), reaped.
    fn kill_coordinator(&mut self, name: &str) {
        let mut child = self.coordinators.remove(name).expect("a running coordinator");
        child.kill().expect("SIGKILL the coordinator");
        child.wait().expect("reap the coordinator");
    }

    /// The output of the process started as `name` (every start of it).
    fn log_of(&self, name: &str) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.dir.path().join("logs")).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().ends_with(&format!("-{name}.log")) {
                out.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        out
    }

    /// Every process's output so far, for a failure message.
    fn logs(&self) -> String {
        let mut names: Vec<PathBuf> =
            std::fs::read_dir(self.dir.path().join("logs")).into_iter().flatten().flatten().map(|e| e.path()).collect();
        names.sort();
        let mut out = String::new();
        for p in &names {
            let _ = write!(out, "--- {}\n{}", p.display(), std::fs::read_to_string(p).unwrap_or_default());
        }
        out
    }

    fn wait_coordinator(&mut self, name: &str, secs: u64) -> ExitStatus {
        let mut child = self.coordinators.remove(name).expect("a coordinator");
        wait_for(secs, "the coordinator finishes the run", || self.logs(), || child.try_wait().expect("wait"))
    }

    /// Each agent exits by itself once the run finished.
    fn wait_agents(&mut self, secs: u64) {
        let nodes: Vec<String> = self.agents.keys().cloned().collect();
        for node in nodes {
            let mut child = self.agents.remove(&node).expect("agent");
            let status =
                wait_for(secs, &format!("agent {node} exits"), || self.logs(), || child.try_wait().expect("wait"));
            assert!(status.success(), "agent {node}: {status}\n{}", self.logs());
        }
    }

    /// The fleet journal, as `duet-fleet log` prints it.
    fn journal(&self) -> Vec<Value> {
        let out = self.fleet_cmd().args(["log", "--run", "t"]).output().expect("duet-fleet log");
        assert!(out.status.success(), "duet-fleet log: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON entry")).collect()
    }

    fn status_json(&self) -> Value {
        let out =
            self.fleet_cmd().arg("status").arg(&self.fleet).args(["--run", "t", "--json"]).output().expect("status");
        assert!(out.status.success(), "duet-fleet status: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    fn agent_journal(&self, node: &str) -> Value {
        let path = self.state_dir(node).join("agent.json");
        serde_json::from_slice(&std::fs::read(&path).expect("the agent journal")).expect("agent journal JSON")
    }

    fn duet(&self, node: &str, args: &[&str]) -> Output {
        let inventory = seeds().join("machines/node.yaml");
        Command::new(DUET_BIN)
            .args(args)
            .arg("--state-dir")
            .arg(self.state_dir(node).join("duet"))
            .arg("--inventory")
            .arg(inventory)
            .env_remove("DUET_STATE_DIR")
            .output()
            .expect("duet")
    }

    /// The node's finished duet sessions.
    fn history(&self, node: &str) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.state_dir(node).join("duet/history"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        ids.sort();
        ids
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if std::env::var_os("DUET_FLEET_TEST_LOGS").is_some() {
            eprintln!("{}", self.logs());
        }
        // Only the PIDs this test started.
        for child in self.agents.values_mut().chain(self.coordinators.values_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `entry` names of the journal, with their stage and node where they have one.
fn summary(journal: &[Value]) -> Vec<String> {
    journal
        .iter()
        .map(|e| {
            let mut s = e["entry"].as_str().unwrap_or("?").to_owned();
            for key in ["stage", "step", "id", "node", "attempt"] {
                if let Some(v) = e.get(key) {
                    s.push(' ');
                    s.push_str(&v.as_str().map_or_else(|| v.to_string(), str::to_owned));
                }
            }
            if let Some(o) = e.get("outcome") {
                s.push(' ');
                s.push_str(o["outcome"].as_str().unwrap_or("?"));
            }
            s
        })
        .collect()
}

/// The cluster before the upgrade: eft1 owns the EFT Server group; the shared configuration.
fn eft_world(run: &Run) {
    std::fs::write(run.world().join("owner-eft"), "eft1\n").expect("owner");
    std::fs::create_dir_all(run.world().join("shared/config")).expect("mkdir");
    std::fs::write(run.world().join("shared/config/ftp.cfg"), "site=eft\n").expect("config");
}

/// What the uninterrupted EFT run ends with, checked from every side.
fn assert_eft_upgraded(run: &Run) {
    let journal = summary(&run.journal());
    let expected = [
        "started",
        "roles",
        "run-once-started passive-first backup-shared-config eft2",
        "run-once passive-first backup-shared-config eft2 ok",
        "dispatched passive-first eft2 1",
    ];
    assert_eq!(journal[..expected.len()], expected, "{journal:#?}");
    assert_eft_end_state(run);
}

/// The end state of every EFT run, however it was interrupted: stage order, one attempt per
/// node with each step done once, one committed session per node, ownership back on eft1.
fn assert_eft_end_state(run: &Run) {
    let journal = summary(&run.journal());
    let at =
        |what: &str| journal.iter().position(|e| e == what).unwrap_or_else(|| panic!("no `{what}` in {journal:#?}"));
    // Stage order: the passive node is done before the other node starts.
    assert!(at("reported passive-first eft2 1 ok") < at("stage-done passive-first"));
    assert!(at("stage-done passive-first") < at("dispatched other-node eft1 1"));
    assert!(at("reported other-node eft1 1 ok") < at("stage-done other-node"));
    assert_eq!(journal.last().map(String::as_str), Some("finished"), "{journal:#?}");
    assert_eq!(journal.iter().filter(|e| e.starts_with("dispatched")).count(), 2, "{journal:#?}");

    // The agents' own journals: one piece of work each, every step done once, the outcome ok.
    for (node, stage) in [("eft2", "passive-first"), ("eft1", "other-node")] {
        let local = run.agent_journal(node);
        let work = local["work"].as_array().expect("work");
        assert_eq!(work.len(), 1, "{node}: {local:#}");
        assert_eq!(work[0]["assignment"]["stage"], stage, "{node}: {local:#}");
        assert_eq!(work[0]["done"], serde_json::json!(["upgrade", "failover"]), "{node}: {local:#}");
        assert_eq!(work[0]["outcome"]["outcome"], "ok", "{node}: {local:#}");

        // The node's duet: one finished session, the new version on the production side.
        assert_eq!(run.history(node).len(), 1, "{node}: {:?}", run.history(node));
        let status = run.duet(node, &["status", "--json"]);
        let status: Value = serde_json::from_slice(&status.stdout).expect("duet status JSON");
        assert_eq!(status["upgrade"], "Idle", "{node}: {status:#}");
        let eft = status["software"].as_array().and_then(|s| s.iter().find(|s| s["name"] == "EFT Server")).cloned();
        assert_eq!(eft.as_ref().map(|s| s["production"].clone()), Some(Value::from("8.1.0")), "{node}: {status:#}");
    }
    // The cluster: ownership went to the upgraded passive node and back; the config backed up.
    assert_eq!(std::fs::read_to_string(run.world().join("owner-eft")).expect("owner").trim(), "eft1");
    assert!(run.world().join("shared/config.backup/ftp.cfg").exists(), "the shared config was backed up");
    let status = run.status_json();
    assert_eq!(status["run"], "finished", "{status:#}");
}

#[test]
fn the_eft_seed_fleet_upgrades_both_nodes_through_etcd() {
    let Some(mut run) = Run::new(seeds().join("eft.yaml")) else { return };
    eft_world(&run);
    run.start_agent("eft1");
    run.start_agent("eft2");
    run.start_coordinator("coordinator-1");
    let status = run.wait_coordinator("coordinator-1", 180);
    assert!(status.success(), "the coordinator: {status}\n{}", run.logs());
    run.wait_agents(60);
    assert_eft_upgraded(&run);
}

/// A copy of the seed fleets whose installer stands in for a slow one: it records each start
/// and waits until the test lets it finish.
/// What the copied seed installer does on each node.
#[derive(Clone, Copy)]
enum Installer {
    /// Waits until the test creates `WORLD/go`.
    Held,
    /// Fails on a node while `WORLD/fail-NODE` exists.
    Failing,
}

impl Run {
    /// The EFT seed fleet, copied with `installer`, on `etcd`, its world ready.
    fn eft(etcd: EtcdServer, installer: Installer) -> Self {
        let mut run = Self::on(etcd, PathBuf::new());
        let (into, world) = (run.dir.path().join("fleets"), run.world());
        run.fleet = match installer {
            Installer::Held => fleets_with_a_held_installer(&into, &world),
            Installer::Failing => fleets_with_a_failing_installer(&into, &world),
        };
        eft_world(&run);
        run
    }

    /// Waits until `node`'s installer has started; returns the file of installer starts.
    fn wait_installer_start(&self, node: &str) -> PathBuf {
        let starts = self.world().join("installer-starts");
        wait_for(
            120,
            &format!("{node}'s installer starts"),
            || self.logs(),
            || std::fs::read_to_string(&starts).ok().filter(|s| s.contains(node)),
        );
        starts
    }
}

fn fleets_with_a_held_installer(into: &Path, world: &Path) -> PathBuf {
    let script = format!(
        "#!/bin/sh\n# The seed installer, held until the test creates {w}/go.\necho \"$DUET_FLEET_NODE\" >> {w}/installer-starts\nwhile [ ! -e {w}/go ]; do sleep 0.05; done\necho \"installer: installed $*\"\n",
        w = world.display()
    );
    fleets_with_installer(into, &script)
}

/// A copy of the seed fleets whose installer records each start and fails on a node while
/// `WORLD/fail-NODE` exists.
fn fleets_with_a_failing_installer(into: &Path, world: &Path) -> PathBuf {
    let script = format!(
        "#!/bin/sh\necho \"$DUET_FLEET_NODE\" >> {w}/installer-starts\nif [ -e {w}/fail-$DUET_FLEET_NODE ]; then echo 'installer: the package is corrupt' >&2; exit 3; fi\necho \"installer: installed $*\"\n",
        w = world.display()
    );
    fleets_with_installer(into, &script)
}

fn fleets_with_installer(into: &Path, script: &str) -> PathBuf {
    copy_tree(&seeds(), into);
    let installer = into.join("scripts/installer");
    std::fs::write(&installer, script).expect("installer");
    std::fs::set_permissions(&installer, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    into.join("eft.yaml")
}

fn copy_tree(from: &Path, to: &Path) {
    duet_fleet::copy_tree(from, to).expect("copy the seed fleets");
}

#[test]
fn an_agent_killed_during_its_upgrade_is_restarted_and_the_run_finishes_with_no_step_run_twice() {
    let Some(etcd) = EtcdServer::start() else { return };
    let mut run = Run::eft(etcd, Installer::Held);
    run.start_agent("eft1");
    run.start_agent("eft2");
    run.start_coordinator("coordinator-1");
    let starts = run.wait_installer_start("eft2");

    // kill -9 of the agent while its node's duet runs the installer.
    run.kill_agent("eft2");
    let lost = |r: &Run| summary(&r.journal()).iter().any(|e| e == "lost passive-first eft2 1");
    wait_for(60, "the coordinator counts eft2's work lost", || run.logs(), || lost(&run).then_some(()));
    let status = run.status_json();
    let eft2 = status["nodes"].as_array().and_then(|n| n.iter().find(|n| n["node"] == "eft2")).cloned();
    assert_eq!(eft2.as_ref().map(|n| n["agent"].clone()), Some(Value::from("unreachable")), "{status:#}");
    assert!(
        !summary(&run.journal()).iter().any(|e| e.starts_with("dispatched other-node")),
        "the other node's stage does not start while eft2's work is unsettled"
    );

    run.start_agent("eft2");
    std::fs::write(run.world().join("go"), "").expect("let the installer finish");
    let status = run.wait_coordinator("coordinator-1", 180);
    assert!(status.success(), "the coordinator: {status}\n{}", run.logs());
    run.wait_agents(60);

    // Each node's installer ran once: the killed agent's duet finished it, and the restarted
    // agent took that session's result instead of upgrading again.
    let starts = std::fs::read_to_string(&starts).expect("installer starts");
    assert_eq!(starts.lines().collect::<Vec<_>>(), ["eft2", "eft1"], "{}", run.logs());
    let journal = summary(&run.journal());
    assert!(
        !journal.iter().any(|e| e.starts_with("dispatched passive-first eft2 2")),
        "no second attempt: {journal:#?}"
    );
    assert!(journal.iter().any(|e| e == "reported passive-first eft2 1 ok"), "{journal:#?}");
    let local = run.agent_journal("eft2");
    assert_eq!(local["work"].as_array().map(Vec::len), Some(1), "{local:#}");
    assert_eq!(local["work"][0]["done"], serde_json::json!(["upgrade", "failover"]), "{local:#}");
    for node in ["eft1", "eft2"] {
        let history = run.history(node);
        assert_eq!(history.len(), 1, "{node}: {history:?}");
        // The node's duet journal: each step of the session started once.
        let log = run.duet(node, &["log", "--format", "json", "--session", &history[0]]);
        let log: Vec<Value> = serde_json::from_slice(&log.stdout).expect("duet log JSON");
        let started: Vec<&str> =
            log.iter().filter_map(|e| e["message"].as_str()).filter(|m| m.ends_with(" started")).collect();
        for step in ["task:eft-repair@upgrade started", "platform:split started", "platform:commit started"] {
            assert_eq!(started.iter().filter(|m| **m == step).count(), 1, "{node}: {started:#?}");
        }
    }
    assert_eq!(std::fs::read_to_string(run.world().join("owner-eft")).expect("owner").trim(), "eft1");
}

#[test]
fn a_coordinator_killed_mid_run_is_replaced_by_the_one_that_waited_and_the_run_finishes() {
    let Some(etcd) = EtcdServer::start() else { return };
    let mut run = Run::eft(etcd, Installer::Held);
    run.start_agent("eft1");
    run.start_agent("eft2");
    run.start_coordinator("coordinator-1");
    run.start_coordinator("coordinator-2");
    let starts = run.wait_installer_start("eft2");
    let leading = |r: &Run, name: &str| r.log_of(name).contains(": leading");
    let (leader, other) = if leading(&run, "coordinator-1") {
        ("coordinator-1", "coordinator-2")
    } else {
        ("coordinator-2", "coordinator-1")
    };
    assert!(leading(&run, leader), "one coordinator leads\n{}", run.logs());
    assert!(!leading(&run, other), "only one coordinator leads\n{}", run.logs());

    // kill -9 of the leader with eft2's work dispatched and not reported.
    run.kill_coordinator(leader);
    wait_for(60, "the other coordinator takes over", || run.logs(), || leading(&run, other).then_some(()));
    std::fs::write(run.world().join("go"), "").expect("let the installer finish");
    let status = run.wait_coordinator(other, 180);
    assert!(status.success(), "{other}: {status}\n{}", run.logs());
    run.wait_agents(60);

    let journal = summary(&run.journal());
    assert_eq!(journal.iter().filter(|e| *e == "started").count(), 1, "one run: {journal:#?}");
    assert_eq!(std::fs::read_to_string(&starts).expect("starts").lines().collect::<Vec<_>>(), ["eft2", "eft1"]);
    assert_eft_upgraded(&run);
}

/// The repository's `plans/` copied into `into` (the seed fleets name node plans and scripts
/// outside `plans/fleets`); returns the copy's `plans/fleets`.
fn copied_plans(into: &Path) -> PathBuf {
    let plans = into.join("plans");
    copy_tree(&seeds().join(".."), &plans);
    plans.join("fleets")
}

/// A status page on a free 127.0.0.1 port: `200` with `Success` to every GET; counts them.
struct StatusPage {
    port: u16,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl StatusPage {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("addr").port();
        Self { port, hits: duet_fleet::status_page::serve(listener) }
    }
}

impl Run {
    /// The UWM seed fleet, copied with its node plan's status pages moved to one the test
    /// serves on a free loopback port.
    fn uwm(etcd: EtcdServer) -> (Self, StatusPage) {
        let mut run = Self::on(etcd, PathBuf::new());
        let page = StatusPage::start();
        let fleets = copied_plans(run.dir.path());
        let plan = fleets.join("../unattended-uwm.yaml");
        let text = std::fs::read_to_string(&plan).expect("the UWM plan");
        let port = format!("127.0.0.1:{}", page.port);
        std::fs::write(&plan, text.replace("127.0.0.1:7751", &port).replace("127.0.0.1:7771", &port)).expect("write");
        run.fleet = fleets.join("uwm.yaml");
        (run, page)
    }
}

/// Starts an agent for each node and a coordinator, and waits for the run to finish.
fn run_to_completion(run: &mut Run, nodes: &[&str]) {
    for node in nodes {
        run.start_agent(node);
    }
    run.start_coordinator("coordinator-1");
    let status = run.wait_coordinator("coordinator-1", 300);
    assert!(status.success(), "the coordinator: {status}\n{}", run.logs());
    run.wait_agents(60);
    assert_eq!(run.status_json()["run"], "finished");
    let journal = summary(&run.journal());
    assert_eq!(journal.last().map(String::as_str), Some("finished"), "{journal:#?}");
}

/// Each node's duet finished exactly one session, committed, with `software` at `version` on
/// the production side (when given).
fn assert_upgraded_once(run: &Run, nodes: &[&str], software: Option<(&str, &str)>) {
    for node in nodes {
        let history = run.history(node);
        assert_eq!(history.len(), 1, "{node}: {history:?}\n{}", run.logs());
        let log = run.duet(node, &["log", "--format", "json", "--session", &history[0]]);
        let log: Vec<Value> = serde_json::from_slice(&log.stdout).expect("duet log JSON");
        assert!(
            log.iter().any(|e| e["message"].as_str().is_some_and(|m| m.starts_with("Commit completed"))),
            "{node}: no commit in its session"
        );
        if let Some((name, version)) = software {
            let status: Value = serde_json::from_slice(&run.duet(node, &["status", "--json"]).stdout).expect("status");
            let sw = status["software"].as_array().and_then(|s| s.iter().find(|s| s["name"] == name)).cloned();
            assert_eq!(sw.map(|s| s["production"].clone()), Some(Value::from(version)), "{node}: {status:#}");
        }
        let local = run.agent_journal(node);
        for work in local["work"].as_array().expect("work") {
            assert_eq!(work["outcome"]["outcome"], "ok", "{node}: {local:#}");
        }
    }
}

/// The journal position of `what`.
#[track_caller]
fn at(journal: &[String], what: &str) -> usize {
    journal.iter().position(|e| e == what).unwrap_or_else(|| panic!("no `{what}` in {journal:#?}"))
}

#[test]
fn the_eft_shared_storage_seed_fleet_takes_the_group_offline_and_moves_ownership_first() {
    let Some(mut run) = Run::new(seeds().join("eft-shared.yaml")) else { return };
    eft_world(&run);
    run_to_completion(&mut run, &["eft1", "eft2"]);
    let journal = summary(&run.journal());
    assert!(
        at(&journal, "run-once active-first backup-shared-config eft1 ok")
            < at(&journal, "dispatched active-first eft1 1")
    );
    assert!(
        at(&journal, "run-once active-first group-offline eft1 ok") < at(&journal, "dispatched active-first eft1 1")
    );
    assert!(at(&journal, "stage-done active-first") < at(&journal, "dispatched previously-passive eft2 1"));
    assert!(at(&journal, "stage-done previously-passive") < at(&journal, "run-once online group-online eft2 ok"));
    assert_upgraded_once(&run, &["eft1", "eft2"], Some(("EFT Server", "8.1.0")));
    // Ownership moved to eft2 before its upgrade (`when: before`) and stays there; the group is
    // online again; the shared configuration was backed up.
    let local = run.agent_journal("eft2");
    assert_eq!(local["work"][0]["done"], serde_json::json!(["failover-before", "upgrade"]), "{local:#}");
    assert_eq!(local["work"][1]["done"], serde_json::json!([]), "the online stage upgrades nothing: {local:#}");
    assert_eq!(std::fs::read_to_string(run.world().join("owner-eft")).expect("owner").trim(), "eft2");
    assert!(!run.world().join("group-offline").exists(), "the group is back online");
    assert!(run.world().join("shared/config.backup/ftp.cfg").exists());
}

#[test]
fn the_flowtraq_seed_fleet_upgrades_servers_before_the_ui_one_worker_at_a_time() {
    const NODES: [&str; 5] = ["ft-portal", "ft-worker1", "ft-worker2", "ft-worker3", "ft-web"];
    let Some(mut run) = Run::new(seeds().join("flowtraq.yaml")) else { return };
    let custom = run.world().join("nodes/ft-web/var/www/flowtraq/custom");
    std::fs::create_dir_all(&custom).expect("mkdir");
    std::fs::write(custom.join("logo.css"), "/* the site's own */\n").expect("custom file");
    run_to_completion(&mut run, &NODES);
    let journal = summary(&run.journal());
    // Users told first; the portal, then the workers, then the web UI.
    assert!(at(&journal, "notified tell-users ok") < at(&journal, "dispatched portal ft-portal 1"));
    assert!(at(&journal, "stage-done portal") < at(&journal, "dispatched workers ft-worker1 1"));
    assert!(at(&journal, "stage-done workers") < at(&journal, "dispatched web-ui ft-web 1"));
    // One worker at a time (serial 1, min_up 2 of 3): each is reported before the next starts.
    for (a, b) in [("ft-worker1", "ft-worker2"), ("ft-worker2", "ft-worker3")] {
        assert!(
            at(&journal, &format!("reported workers {a} 1 ok")) < at(&journal, &format!("dispatched workers {b} 1")),
            "{journal:#?}"
        );
    }
    assert_upgraded_once(&run, &NODES[..4], Some(("FlowTraq", "23.0.0")));
    assert_upgraded_once(&run, &NODES[4..], None);
    let told = std::fs::read_to_string(run.world().join("notifications")).expect("notifications");
    assert!(told.contains("FlowTraq is being upgraded"), "{told}");
    assert_eq!(std::fs::read_dir(run.world().join("drained")).expect("drained").count(), 0, "every worker undrained");
    let kept = run.state_dir("ft-web").join("preserved/web-ui/var/www/flowtraq/custom/logo.css");
    assert_eq!(std::fs::read_to_string(&kept).expect("the preserved custom file"), "/* the site's own */\n");
}

#[test]
fn the_uwm_seed_fleet_turns_replication_off_upgrades_the_database_once_and_turns_it_back_on() {
    const NODES: [&str; 3] = ["uwm1", "uwm2", "uwm3"];
    let Some(etcd) = EtcdServer::start() else { return };
    let (mut run, page) = Run::uwm(etcd);
    for node in NODES {
        std::fs::create_dir_all(run.world().join("replication")).expect("mkdir");
        std::fs::write(run.world().join("replication").join(node), "").expect("replication on");
    }
    run_to_completion(&mut run, &NODES);
    let journal = summary(&run.journal());
    for node in NODES {
        assert!(
            at(&journal, &format!("precondition replication-disabled {node} ok"))
                < at(&journal, "dispatched servers uwm1 1")
        );
        assert!(at(&journal, "stage-done servers") < at(&journal, &format!("restored replication-disabled {node} ok")));
        assert!(run.world().join("replication").join(node).exists(), "replication back on on {node}");
    }
    // The first server holds the exclusive section alone; the other two go together after it.
    let first = journal.iter().position(|e| e.starts_with("dispatched servers")).expect("a dispatch");
    assert_eq!(journal[first], "dispatched servers uwm1 1");
    let uwm1 = run.agent_journal("uwm1");
    assert_eq!(uwm1["work"][0]["assignment"]["exclusive"], true, "{uwm1:#}");
    assert!(at(&journal, "reported servers uwm1 1 ok") < at(&journal, "dispatched servers uwm2 1"));
    assert!(at(&journal, "reported servers uwm1 1 ok") < at(&journal, "dispatched servers uwm3 1"));
    for node in ["uwm2", "uwm3"] {
        let local = run.agent_journal(node);
        assert_eq!(local["work"][0]["assignment"]["exclusive"], false, "{node}: {local:#}");
    }
    assert_eq!(std::fs::read_to_string(run.world().join("database-version")).expect("db").trim(), "12.1");
    assert_upgraded_once(&run, &NODES, Some(("Ivanti UWM", "12.1.0")));
    assert!(page.hits.load(std::sync::atomic::Ordering::SeqCst) >= 6, "both status pages checked on each node");
    assert_eq!(std::fs::read_dir(run.world().join("drained")).expect("drained").count(), 0, "every server undrained");
}

#[test]
fn a_node_that_fails_for_good_halts_the_run_and_an_audited_retry_finishes_it() {
    let Some(etcd) = EtcdServer::start() else { return };
    let mut run = Run::eft(etcd, Installer::Failing);
    std::fs::write(run.world().join("fail-eft2"), "").expect("break eft2's installer");
    run.start_agent("eft1");
    run.start_agent("eft2");
    run.start_coordinator("coordinator-1");
    let status = run.wait_coordinator("coordinator-1", 180);
    assert_eq!(status.code(), Some(1), "a halted run exits 1\n{}", run.logs());

    // Two attempts (`retries: 1`), then the budget (`max_failed: 0`) is spent: no other batch.
    let journal = summary(&run.journal());
    assert!(at(&journal, "reported passive-first eft2 1 failed") < at(&journal, "dispatched passive-first eft2 2"));
    assert!(at(&journal, "reported passive-first eft2 2 failed") < at(&journal, "halted"));
    assert!(!journal.iter().any(|e| e.starts_with("dispatched other-node")), "{journal:#?}");
    let status = run.status_json();
    assert_eq!(status["run"], "halted", "{status:#}");
    assert!(status["reason"].as_str().is_some_and(|r| r.contains("eft2")), "{status:#}");
    let eft2 = status["nodes"].as_array().and_then(|n| n.iter().find(|n| n["node"] == "eft2")).cloned().expect("eft2");
    assert_eq!(eft2["state"], "failed", "{status:#}");
    let failure = eft2["failure"].as_str().unwrap_or_default();
    assert!(failure.contains("node `eft2`") && failure.contains("passive-first"), "{failure}");
    assert!(run.history("eft1").is_empty(), "eft1 was not touched");

    // A retry of something that did not fail is refused, changing nothing.
    let refused = run
        .fleet_cmd()
        .arg("retry")
        .arg(&run.fleet)
        .args(["other-node", "eft1", "--reason", "r", "--run", "t", "--sim"])
        .arg(run.world())
        .output()
        .expect("retry");
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("node `eft1` has no work in it in stage `other-node`"), "{said}");
    assert_eq!(summary(&run.journal()), journal, "a refused retry journals nothing");

    // The operator fixes the installer and retries the node: the run goes on and finishes.
    std::fs::remove_file(run.world().join("fail-eft2")).expect("fix eft2's installer");
    run.start_coordinator_with(
        "operator",
        &["retry"],
        &["passive-first", "eft2", "--reason", "installer package replaced"],
    );
    let status = run.wait_coordinator("operator", 180);
    assert!(status.success(), "the retry: {status}\n{}", run.logs());
    run.wait_agents(60);
    let entries = run.journal();
    let retried = entries.iter().find(|e| e["entry"] == "retried").expect("a retried entry");
    assert_eq!(
        (retried["by"].as_str(), retried["reason"].as_str()),
        (Some("operator"), Some("installer package replaced"))
    );
    let journal = summary(&entries);
    assert!(at(&journal, "retried passive-first eft2") < at(&journal, "dispatched passive-first eft2 3"));
    assert!(at(&journal, "reported passive-first eft2 3 ok") < at(&journal, "dispatched other-node eft1 1"));
    assert_eq!(journal.last().map(String::as_str), Some("finished"));

    // eft2: two aborted sessions and the committed one, each attempt in its agent's journal.
    let local = run.agent_journal("eft2");
    let outcomes: Vec<&str> = local["work"]
        .as_array()
        .expect("work")
        .iter()
        .map(|w| w["outcome"]["outcome"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(outcomes, ["failed", "failed", "ok"], "{local:#}");
    assert_eq!(run.history("eft2").len(), 3, "{:?}", run.history("eft2"));
    assert_upgraded_once(&run, &["eft1"], Some(("EFT Server", "8.1.0")));
    let starts = std::fs::read_to_string(run.world().join("installer-starts")).expect("starts");
    assert_eq!(starts.lines().collect::<Vec<_>>(), ["eft2", "eft2", "eft2", "eft1"]);
    assert_eq!(std::fs::read_to_string(run.world().join("owner-eft")).expect("owner").trim(), "eft1");
}

#[test]
fn an_exclusive_section_interrupted_by_its_agents_death_waits_for_an_audited_retry_on_the_same_node() {
    const NODES: [&str; 3] = ["uwm1", "uwm2", "uwm3"];
    let Some(etcd) = EtcdServer::start() else { return };
    let (mut run, _page) = Run::uwm(etcd);
    let fleets = run.fleet.parent().expect("the fleets' directory").to_owned();
    // The database upgrade (the exclusive section) records each start and is held until `go`.
    let cluster = fleets.join("scripts/cluster");
    std::fs::rename(&cluster, fleets.join("scripts/cluster.seed")).expect("rename");
    let w = run.world();
    let wrapper = format!(
        "#!/bin/sh\nif [ \"$1\" = database ]; then echo \"$DUET_FLEET_NODE\" >> {w}/database-starts\n  while [ ! -e {w}/go ]; do sleep 0.05; done\nfi\nexec {seed} \"$@\"\n",
        w = w.display(),
        seed = fleets.join("scripts/cluster.seed").display()
    );
    std::fs::write(&cluster, wrapper).expect("wrapper");
    std::fs::set_permissions(&cluster, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for node in NODES {
        run.start_agent(node);
    }
    run.start_coordinator("coordinator-1");
    let starts = run.world().join("database-starts");
    wait_for(120, "uwm1 starts the database upgrade", || run.logs(), || std::fs::read_to_string(&starts).ok());

    // kill -9 of the holder's agent inside the section; its lease (and etcd's lock) go.
    run.kill_agent("uwm1");
    let lost = |r: &Run| summary(&r.journal()).iter().any(|e| e == "lost servers uwm1 1");
    wait_for(60, "the coordinator counts uwm1's work lost", || run.logs(), || lost(&run).then_some(()));
    run.start_agent("uwm1");
    std::fs::write(run.world().join("go"), "").expect("let the killed agent's database step finish");
    // The run halts (the budget of 0 counts the lost holder); the restarted agent does not run
    // the section again by itself (`rerun: manual`), and says so.
    let status = run.wait_coordinator("coordinator-1", 180);
    assert_eq!(status.code(), Some(1), "{}", run.logs());
    let journal = summary(&run.journal());
    assert!(!journal.iter().any(|e| e.starts_with("dispatched servers uwm2")), "{journal:#?}");
    assert!(!journal.iter().any(|e| e.starts_with("dispatched servers uwm3")), "{journal:#?}");
    assert_eq!(run.status_json()["run"], "halted");
    let why = wait_for(
        60,
        "the restarted agent records its outcome",
        || run.logs(),
        || run.agent_journal("uwm1")["work"][0]["outcome"]["reason"].as_str().map(str::to_owned),
    );
    assert!(
        why.contains("exclusive section `database` was interrupted") && why.contains("duet-fleet retry servers uwm1"),
        "{why}"
    );
    assert_eq!(std::fs::read_to_string(&starts).expect("starts").lines().collect::<Vec<_>>(), ["uwm1"]);

    // The operator checks the database and lets the same node go again.
    run.start_coordinator_with(
        "operator",
        &["retry"],
        &["servers", "uwm1", "--reason", "database checked: upgrade again"],
    );
    let status = run.wait_coordinator("operator", 180);
    assert!(status.success(), "the retry: {status}\n{}", run.logs());
    run.wait_agents(60);
    let journal = summary(&run.journal());
    assert!(at(&journal, "dispatched servers uwm1 2") < at(&journal, "dispatched servers uwm2 1"), "{journal:#?}");
    assert_eq!(std::fs::read_to_string(&starts).expect("starts").lines().collect::<Vec<_>>(), ["uwm1", "uwm1"]);
    assert_upgraded_once(&run, &NODES[1..], Some(("Ivanti UWM", "12.1.0")));
    assert_eq!(std::fs::read_to_string(run.world().join("database-version")).expect("db").trim(), "12.1");
}

#[test]
fn the_etcd_leader_killed_mid_run_the_run_finishes_on_the_other_two_members() {
    let Some(etcd) = EtcdServer::start_cluster(3) else { return };
    let mut run = Run::eft(etcd, Installer::Held);
    run.start_agent("eft1");
    run.start_agent("eft2");
    run.start_coordinator("coordinator-1");
    run.start_coordinator("coordinator-2");
    let starts = run.wait_installer_start("eft2");
    let leader = wait_for(30, "etcd has a leader", || run.logs(), || run.etcd.leader());
    run.etcd.kill_member(leader);
    std::fs::write(run.world().join("go"), "").expect("let the installer finish");
    // Whichever coordinator leads (or takes over) finishes the run.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut finished = false;
    while !finished {
        assert!(Instant::now() < deadline, "no coordinator finished the run\n{}", run.logs());
        for name in ["coordinator-1", "coordinator-2"] {
            let Some(child) = run.coordinators.get_mut(name) else { continue };
            if let Some(status) = child.try_wait().expect("wait") {
                run.coordinators.remove(name);
                finished |= status.success();
            }
        }
        assert!(
            finished || !run.coordinators.is_empty(),
            "every coordinator stopped without finishing\n{}",
            run.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    run.wait_agents(60);
    assert_eq!(std::fs::read_to_string(&starts).expect("starts").lines().collect::<Vec<_>>(), ["eft2", "eft1"]);
    assert_eft_upgraded(&run);
}

#[test]
fn an_abort_stops_new_batches_while_the_work_in_flight_finishes() {
    let Some(etcd) = EtcdServer::start() else { return };
    let mut run = Run::eft(etcd, Installer::Held);
    run.start_agent("eft1");
    run.start_agent("eft2");
    run.start_coordinator("coordinator-1");
    run.wait_installer_start("eft2");

    let abort = |r: &Run| {
        r.fleet_cmd()
            .args(["abort", "--run", "t", "--name", "alice", "--reason", "the change window closed"])
            .output()
            .expect("abort")
    };
    let out = abort(&run);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), run.logs());
    assert!(String::from_utf8_lossy(&out.stdout).contains("aborted"), "{}", String::from_utf8_lossy(&out.stdout));
    let status = run.wait_coordinator("coordinator-1", 60);
    assert_eq!(status.code(), Some(1), "a halted run exits 1\n{}", run.logs());
    let entries = run.journal();
    let halted = entries.iter().find(|e| e["entry"] == "halted").expect("halted");
    assert_eq!(halted["reason"], "aborted by alice: the change window closed");
    assert_eq!(run.status_json()["run"], "halted");

    // eft2's upgrade in flight finishes (its agent's journal has it); no new batch started.
    std::fs::write(run.world().join("go"), "").expect("let the installer finish");
    let outcome = wait_for(
        120,
        "eft2's work in flight finishes",
        || run.logs(),
        || run.agent_journal("eft2")["work"][0]["outcome"]["outcome"].as_str().map(str::to_owned),
    );
    assert_eq!(outcome, "ok");
    assert!(!summary(&run.journal()).iter().any(|e| e.starts_with("dispatched other-node")));
    assert!(run.history("eft1").is_empty(), "eft1 was not touched");
    // Aborting a halted run again changes nothing.
    let again = abort(&run);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("halted already"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert_eq!(run.journal().len(), entries.len());
}

#[test]
fn an_abort_with_no_coordinator_running_is_journaled_by_the_command_itself() {
    let Some(mut run) = Run::new(seeds().join("eft.yaml")) else { return };
    eft_world(&run);
    let out = run.fleet_cmd().args(["abort", "--run", "t", "--reason", "not tonight"]).output().expect("abort");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(summary(&run.journal()), ["halted"]);
    // A coordinator started later finds the run halted and starts nothing.
    run.start_coordinator("coordinator-1");
    let status = run.wait_coordinator("coordinator-1", 60);
    assert_eq!(status.code(), Some(1), "{}", run.logs());
    assert!(run.log_of("coordinator-1").contains("halted: aborted by operator: not tonight"), "{}", run.logs());
    assert!(!summary(&run.journal()).iter().any(|e| e.starts_with("dispatched")));
}

#[test]
fn work_handed_to_an_agent_that_died_before_taking_it_is_done_by_the_restarted_agent_as_the_same_attempt() {
    let Some(etcd) = EtcdServer::start() else { return };
    let mut run = Run::eft(etcd, Installer::Failing);
    run.start_agent("eft1");
    run.start_agent("eft2");
    for node in ["eft1", "eft2"] {
        wait_for(
            60,
            &format!("{node} registers"),
            || run.logs(),
            || run.log_of(node).contains("registered").then_some(()),
        );
    }
    // eft2 dies idle; the coordinator hands it its work anyway (it may still look live), and
    // counts it lost once its lease is gone.
    run.kill_agent("eft2");
    run.start_coordinator("coordinator-1");
    let lost = |r: &Run| summary(&r.journal()).iter().any(|e| e == "lost passive-first eft2 1");
    wait_for(60, "eft2's work is counted lost", || run.logs(), || lost(&run).then_some(()));
    run.start_agent("eft2");
    let status = run.wait_coordinator("coordinator-1", 180);
    assert!(status.success(), "{status}\n{}", run.logs());
    run.wait_agents(60);
    let journal = summary(&run.journal());
    assert!(journal.iter().any(|e| e == "reported passive-first eft2 1 ok"), "{journal:#?}");
    assert!(!journal.iter().any(|e| e.starts_with("dispatched passive-first eft2 2")), "no new attempt: {journal:#?}");
    let starts = std::fs::read_to_string(run.world().join("installer-starts")).expect("starts");
    assert_eq!(starts.lines().collect::<Vec<_>>(), ["eft2", "eft1"]);
    assert_eft_upgraded(&run);
}

/// A small deterministic generator (xorshift64*) for the soak's choices, seeded and printed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// The crash soak of fleets: EFT runs on a three-member etcd with two coordinators, and in each
/// one process (an agent, a coordinator or an etcd member) is killed with SIGKILL at a random
/// moment and, but for etcd, started again. Every run must end in the uninterrupted run's state
/// with no node upgraded twice. A coordinator killed inside a `run_once` step leaves it for the
/// operator (it never runs twice by itself): the soak then retries it, as an operator would.
/// `DUET_FLEET_SOAK_RUNS` (default 3) and `DUET_FLEET_SOAK_SEED` (default: the clock) say how
/// many runs and which.
#[test]
fn soak_a_process_killed_at_a_random_moment_never_changes_the_outcome() {
    let runs: u64 = std::env::var("DUET_FLEET_SOAK_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let seed: u64 = std::env::var("DUET_FLEET_SOAK_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
    });
    eprintln!("soak: {runs} run(s), DUET_FLEET_SOAK_SEED={seed}");
    let mut rng = Rng(seed);
    for i in 0..runs {
        let victim = ["eft1", "eft2", "coordinator-1", "coordinator-2", "etcd"][rng.below(5) as usize];
        let delay = Duration::from_millis(rng.below(3000));
        let what = format!("soak run {i} (DUET_FLEET_SOAK_SEED={seed}): kill -9 of {victim} after {delay:?}");
        eprintln!("{what}");
        let Some(etcd) = EtcdServer::start_cluster(3) else { return };
        let mut run = Run::eft(etcd, Installer::Failing);
        run.start_agent("eft1");
        run.start_agent("eft2");
        run.start_coordinator("coordinator-1");
        run.start_coordinator("coordinator-2");
        // The moment is the random choice; no outcome depends on it.
        std::thread::sleep(delay);
        match victim {
            "etcd" => {
                let member = rng.below(3) as usize;
                run.etcd.kill_member(member);
            }
            "eft1" | "eft2" => {
                if run.agents.contains_key(victim) {
                    run.kill_agent(victim);
                    run.start_agent(victim);
                }
            }
            coordinator => {
                if run.coordinators.contains_key(coordinator) {
                    run.kill_coordinator(coordinator);
                    run.start_coordinator(coordinator);
                }
            }
        }
        finish_soak_run(&mut run, &what);
        run.wait_agents(60);
        let starts = std::fs::read_to_string(run.world().join("installer-starts")).expect("starts");
        assert_eq!(
            starts.lines().collect::<Vec<_>>(),
            ["eft2", "eft1"],
            "{what}: each node upgraded once\n{}",
            run.logs()
        );
        assert_eft_end_state(&run);
    }
}

/// Waits until a coordinator finishes the run; one that halts because a `run_once` step was
/// interrupted gets the operator's retry.
fn finish_soak_run(run: &mut Run, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut retries = 0;
    loop {
        assert!(Instant::now() < deadline, "{what}: no coordinator finished the run\n{}", run.logs());
        let names: Vec<String> = run.coordinators.keys().cloned().collect();
        for name in names {
            let Some(status) = run.coordinators.get_mut(&name).and_then(|c| c.try_wait().expect("wait")) else {
                continue;
            };
            run.coordinators.remove(&name);
            if status.success() {
                return;
            }
            let state = run.status_json();
            if state["run"] != "halted" {
                continue; // a refused or outrun retry: another coordinator carries on
            }
            let reason = state["reason"].as_str().unwrap_or_default().to_owned();
            assert!(
                reason.contains("run_once step `backup-shared-config` was started by a coordinator that stopped")
                    && retries < 3,
                "{what}: {name} stopped: {status}, the run: {reason}\n{}",
                run.logs()
            );
            if !run.coordinators.keys().any(|n| n.starts_with("operator")) {
                retries += 1;
                let operator = format!("operator-{retries}");
                run.start_coordinator_with(
                    &operator,
                    &["retry"],
                    &["passive-first", "--reason", "soak: the backup again"],
                );
            }
        }
        if run.coordinators.is_empty() {
            run.start_coordinator("coordinator-3");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A partitioned agent: eft2's agent runs in a network namespace of its own, linked to etcd's
/// by a veth pair, and the link goes down while its node's upgrade runs. Within its lease the
/// agent starts no step (its upgrade, local, finishes; the failover after it does not start);
/// the coordinator counts the work lost and, with the budget spent by it, starts nothing else.
/// The link comes back up: the agent takes a new lease, does the failover, reports the attempt
/// (late, and counted), registers again, and the run ends in the uninterrupted run's state.
#[test]
fn a_partitioned_agent_starts_no_step_without_its_lease_and_rejoins_after() {
    let (Some(a), Some(b)) = (Netns::new(), Netns::new()) else { return };
    a.link("veth-etcd", "10.231.0.1", &b, "veth-eft2", "10.231.0.2");
    let Some(etcd) = EtcdServer::start_in(|program| a.command(program), "10.231.0.1") else { return };
    let mut run = Run::eft(etcd, Installer::Held);
    run.net = Some(Partition { a, b, in_b: vec!["eft2".into()] });
    run.start_agent("eft1");
    run.start_agent("eft2");
    run.start_coordinator("coordinator-1");
    let starts = run.wait_installer_start("eft2");

    // Link down while eft2's duet runs the installer.
    let net = run.net.as_ref().expect("namespaces");
    net.b.ip(&["link", "set", "veth-eft2", "down"]);
    let lost = |r: &Run| summary(&r.journal()).iter().any(|e| e == "lost passive-first eft2 1");
    wait_for(60, "the coordinator counts eft2's work lost", || run.logs(), || lost(&run).then_some(()));
    std::fs::write(run.world().join("go"), "").expect("let the installer finish");
    // The upgrade finishes locally; the failover, the next step, waits for the lease.
    wait_for(
        120,
        "eft2's agent stops before the failover",
        || run.logs(),
        || run.log_of("eft2").contains("no step starts until it is back").then_some(()),
    );
    let done = |r: &Run| r.agent_journal("eft2")["work"][0]["done"].clone();
    wait_for(
        120,
        "eft2's upgrade is done locally",
        || run.logs(),
        || (done(&run) == serde_json::json!(["upgrade"])).then_some(()),
    );
    assert!(run.agents.get_mut("eft2").expect("eft2").try_wait().expect("wait").is_none(), "the agent waits, alive");
    assert_eq!(std::fs::read_to_string(run.world().join("owner-eft")).expect("owner"), "eft1\n", "no failover");
    let journal = summary(&run.journal());
    assert!(!journal.iter().any(|e| e.starts_with("halted")), "an unreachable node holds the run: {journal:#?}");
    assert!(!journal.iter().any(|e| e.starts_with("dispatched other-node")), "{journal:#?}");
    let status = run.status_json();
    assert!(
        status["waiting"].to_string().contains("eft2 unreachable with work in flight"),
        "status says what the run waits for: {status:#}"
    );

    // Link up: the agent carries on, reports, rejoins; the run finishes.
    run.net.as_ref().expect("namespaces").b.ip(&["link", "set", "veth-eft2", "up"]);
    let status = run.wait_coordinator("coordinator-1", 180);
    assert!(status.success(), "the coordinator: {status}\n{}", run.logs());
    run.wait_agents(60);
    assert!(run.log_of("eft2").contains("etcd is back; carrying on"), "{}", run.logs());
    let journal = summary(&run.journal());
    assert!(journal.iter().any(|e| e == "reported passive-first eft2 1 ok"), "the late report counts: {journal:#?}");
    assert!(!journal.iter().any(|e| e.starts_with("dispatched passive-first eft2 2")), "no second attempt");
    assert_eq!(std::fs::read_to_string(&starts).expect("starts").lines().collect::<Vec<_>>(), ["eft2", "eft1"]);
    assert_eft_end_state(&run);
}

/// `duet-fleet run FLEET` without `--sim` rehearses each seed fleet on this machine in one
/// command (`duet fleet run plans/fleets/X.yaml` hands over to it): its own etcd on loopback,
/// an agent per node, the world of `worlds/X/` (UWM's status pages served on 127.0.0.1), the
/// run led to its end, the fleet journal kept, and every process it started stopped.
#[test]
fn a_seed_fleet_is_rehearsed_in_one_command() {
    if std::process::Command::new("etcd").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "etcd is not installed; .ci/run installs it");
        eprintln!("skipped: etcd is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    for (fleet, nodes) in [
        ("eft", &["eft1", "eft2"][..]),
        ("eft-shared", &["eft1", "eft2"]),
        ("flowtraq", &["ft-portal", "ft-worker1", "ft-worker2", "ft-worker3", "ft-web"]),
        ("uwm", &["uwm1", "uwm2", "uwm3"]),
    ] {
        let at = dir.path().join(fleet);
        let out = Command::new(FLEET_BIN)
            .arg("run")
            .arg(seeds().join(format!("{fleet}.yaml")))
            .arg("--dir")
            .arg(&at)
            .env_remove("DUET_FLEET_ETCD")
            .env_remove("DUET_STATE_DIR")
            .stdin(Stdio::null())
            .output()
            .expect("duet-fleet run");
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{fleet}: {said}");
        assert!(said.contains("finished; every stage done"), "{fleet}: {said}");
        let journal: Vec<Value> = std::fs::read_to_string(at.join("fleet-journal.ndjson"))
            .expect("the fleet journal kept")
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect();
        assert_eq!(summary(&journal).last().map(String::as_str), Some("finished"), "{fleet}");
        for node in nodes {
            let history = std::fs::read_dir(at.join("nodes").join(node).join("duet/history")).expect("history").count();
            assert_eq!(history, 1, "{fleet}: {node} upgraded once");
        }
        // The etcd it started is gone: its endpoint no longer answers.
        let endpoint =
            said.split("etcd on ").nth(1).and_then(|r| r.split(',').next()).expect("the endpoint").to_owned();
        assert!(std::net::TcpStream::connect(&endpoint).is_err(), "{fleet}: etcd still answers on {endpoint}");
    }
    let preserved = dir.path().join("flowtraq/nodes/ft-web/preserved/web-ui/var/www/flowtraq/custom/logo.css");
    assert!(preserved.exists(), "FlowTraq's custom file kept");

    // A rehearsal never reuses a directory with something in it.
    let out = Command::new(FLEET_BIN)
        .arg("run")
        .arg(seeds().join("eft.yaml"))
        .arg("--dir")
        .arg(dir.path().join("eft"))
        .output()
        .expect("duet-fleet run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not empty: pass --dir with a new directory"));
}

/// Test certificates made with the `openssl` tool: a CA, etcd's server certificate for
/// 127.0.0.1 and a client certificate, all signed by it (P-256, PEM). Returns the directory.
fn certificates(dir: &Path) -> Option<()> {
    if Command::new("openssl").arg("version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "openssl is not installed");
        eprintln!("skipped: the openssl tool makes the test certificates");
        return None;
    }
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=duet test CA"],
        ]
        .concat(),
    );
    for (name, usage) in [("server", "serverAuth,clientAuth"), ("client", "clientAuth")] {
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!("subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n"),
        )
        .expect("ext");
        let (key, csr, pem, ext) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
        openssl(&[&["req"][..], &ec, &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN=duet {name}")]].concat());
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }
    Some(())
}

/// Over TLS with client certificates (etcd `--client-cert-auth`): the EFT fleet runs end to end
/// with `DUET_FLEET_ETCD_CA`, `_CERT` and `_KEY`; a client without the CA, or with the CA but no
/// certificate of its own, is refused with what to check.
#[test]
fn a_fleet_runs_over_tls_to_etcd_with_client_certificates() {
    let certs = tempfile::tempdir().expect("temp dir");
    if certificates(certs.path()).is_none() {
        return;
    }
    let c = |f: &str| certs.path().join(f);
    let Some(etcd) = EtcdServer::start_tls(&c("ca.pem"), &c("server.pem"), &c("server.key")) else { return };
    let mut run = Run::on(etcd, seeds().join("eft.yaml"));
    // With the CA but no client certificate: refused at once, saying what to check. (Plain text
    // to it fails too, after the retries a lost member gets: it cannot be told from one.)
    let no_cert =
        run.fleet_cmd().args(["log", "--run", "t"]).env("DUET_FLEET_ETCD_CA", c("ca.pem")).output().expect("log");
    assert_eq!(no_cert.status.code(), Some(1), "{no_cert:?}");
    assert!(
        String::from_utf8_lossy(&no_cert.stderr).contains("check --etcd-ca, --etcd-cert and --etcd-key"),
        "{no_cert:?}"
    );
    let half = run.fleet_cmd().args(["log", "--run", "t", "--etcd-cert"]).arg(c("client.pem")).output().expect("log");
    assert_eq!(half.status.code(), Some(2), "--etcd-cert without --etcd-key is a usage error: {half:?}");

    run.env = vec![
        ("DUET_FLEET_ETCD_CA".into(), c("ca.pem")),
        ("DUET_FLEET_ETCD_CERT".into(), c("client.pem")),
        ("DUET_FLEET_ETCD_KEY".into(), c("client.key")),
    ];
    eft_world(&run);
    run_to_completion(&mut run, &["eft1", "eft2"]);
    assert_eft_upgraded(&run);
}
