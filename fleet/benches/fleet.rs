//! The fleet's coordination overhead (issue 14, docs/performance.md): a fleet of 100 simulated
//! nodes, one stage over all of them with `serial: 10`, each node running a small plan (the EFT
//! seed's node plan: an upgrade task, a version check, the whole split/merge/commit on its own
//! simulated machine), against Ansible's `serial: 10` over 100 local hosts running the same
//! command, and against the same commands run ten at a time by this program with no
//! coordination at all (the nodes' own work).
//!
//! Per node, the overhead is (wall time - the nodes' own work) / 100, for duet's fleet and for
//! Ansible, measured in the same run, in turn (duet, Ansible, raw, duet, Ansible, raw ...), so a
//! drift of the machine's speed hits all three alike. The dispatch is measured from the fleet
//! journal and the agents' own journals: from the coordinator's assignment of a batch to the
//! start of each of its nodes' upgrades.
//!
//! `cargo bench -p duet-fleet --bench fleet`; knobs `DUET_BENCH_RUNS` (rounds, default 3) and
//! `DUET_BENCH_NODES` (default 100). It skips, saying why, without `etcd` or `ansible-playbook`
//! (`pip install ansible-core`). Everything lives in a temporary directory; etcd listens on free
//! 127.0.0.1 ports; every process is stopped by the PID this program started.

#[path = "../tests/support/etcd_server.rs"]
mod etcd_server;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_server::EtcdServer;

const FLEET_BIN: &str = env!("CARGO_BIN_EXE_duet-fleet");
const DUET_BIN: &str = env!("CARGO_BIN_EXE_duet-node");
const SERIAL: usize = 10;

fn seeds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans/fleets").canonicalize().expect("plans/fleets")
}

fn main() {
    if Command::new("ansible-playbook").arg("--version").output().is_err() {
        println!("skipped: ansible-playbook is not installed (pip install ansible-core)");
        return;
    }
    let Some(etcd) = EtcdServer::start() else { return };
    let runs: usize = std::env::var("DUET_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let nodes: usize = std::env::var("DUET_BENCH_NODES").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let work = Work::new(nodes);
    let (mut fleet, mut ansible, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    let (mut fleet_gaps, mut ansible_gaps, mut parts) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..runs {
        let (t, gaps, dispatch) = work.fleet(&etcd, round);
        fleet.push(t);
        fleet_gaps.extend(gaps);
        parts.extend(dispatch);
        let (t, gaps) = work.ansible(round);
        ansible.push(t);
        ansible_gaps.extend(gaps);
        raw.push(work.raw(round));
        eprintln!(
            "round {round}: fleet {:.0} ms, ansible {:.0} ms, raw {:.0} ms",
            fleet[round], ansible[round], raw[round]
        );
    }
    report(nodes, (&fleet, &ansible, &raw), (&mut fleet_gaps, &mut ansible_gaps));
    let (mut coord, mut agent): (Vec<f64>, Vec<f64>) = parts.into_iter().unzip();
    let mut total: Vec<f64> = coord.iter().zip(&agent).map(|(c, a)| c + a).collect();
    println!(
        "dispatch of a node after the first batch, over {} nodes: median {:.0} ms = the coordination (last session's end -> the agent accepts) {:.0} ms + the agent (accepts -> its duet's first entry) {:.0} ms; 90th percentile {:.0} ms",
        total.len(),
        median(&mut total),
        median(&mut coord),
        median(&mut agent),
        total.get(total.len() * 9 / 10).copied().unwrap_or(f64::NAN)
    );
}

fn report(nodes: usize, (fleet, ansible, raw): (&[f64], &[f64], &[f64]), (fg, ag): (&mut [f64], &mut [f64])) {
    let per_node = |wall: &[f64]| -> Vec<f64> {
        wall.iter().zip(raw).map(|(w, r)| (w - r) / f64::from(u32::try_from(nodes).expect("nodes"))).collect()
    };
    let (mut f, mut a) = (per_node(fleet), per_node(ansible));
    let ratios: Vec<f64> = f.iter().zip(&a).map(|(f, a)| a / f).collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{nodes} nodes, serial {SERIAL}: wall time medians: duet fleet {:.0} ms {fleet:.0?}, ansible {:.0} ms {ansible:.0?}, the nodes' own work (ten at a time, no coordination) {:.0} ms {raw:.0?}",
        median(&mut fleet.to_vec()),
        median(&mut ansible.to_vec()),
        median(&mut raw.to_vec())
    );
    let _ = writeln!(
        out,
        "coordination overhead per node: duet fleet {:.1} ms {f:.1?}, ansible {:.1} ms {a:.1?}; ansible / duet, round by round: {ratios:.1?} (goal ≥ 20x)",
        median(&mut f),
        median(&mut a)
    );
    let (fmax, amax) = (fg.iter().copied().fold(0.0, f64::max), ag.iter().copied().fold(0.0, f64::max));
    let _ = writeln!(
        out,
        "between two batches (the last session's end to the next batch's first start, from the nodes' duet journals): duet fleet median {:.0} ms (max {fmax:.0}), ansible median {:.0} ms (max {amax:.0}), over {} and {} gaps (goal: dispatch < 20 ms)",
        median(fg),
        median(ag),
        fg.len(),
        ag.len()
    );
    print!("{out}");
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

/// The fleet file, the node plan and the directories of every round.
struct Work {
    dir: tempfile::TempDir,
    nodes: Vec<String>,
}

impl Work {
    fn new(count: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let plans = dir.path().join("plans");
        std::fs::create_dir_all(plans.join("machines")).expect("mkdir");
        std::fs::create_dir_all(plans.join("scripts")).expect("mkdir");
        for file in ["eft-node.yaml", "machines/node.yaml", "scripts/installer"] {
            std::fs::copy(seeds().join(file), plans.join(file)).expect("copy the seed's node plan");
        }
        let nodes: Vec<String> = (0..count).map(|i| format!("n{i:03}")).collect();
        let mut fleet =
            String::from("version: 1\nkind: fleet\ntitle: a benchmark fleet, ten nodes at a time\nnodes:\n");
        for n in &nodes {
            let _ = writeln!(fleet, "  {n}: {{plan: eft-node.yaml, inventory: machines/node.yaml, groups: [all]}}");
        }
        let _ = write!(
            fleet,
            "stages:\n  - {{id: all, group: all, serial: {SERIAL}}}\npolicy: {{max_failed: 0, retries: 0, on_failure: halt}}\n"
        );
        std::fs::write(plans.join("fleet.yaml"), fleet).expect("write the fleet");
        let checked = Command::new(FLEET_BIN).arg("check").arg(plans.join("fleet.yaml")).output().expect("check");
        assert!(
            checked.status.success(),
            "the benchmark's fleet does not check:\n{}",
            String::from_utf8_lossy(&checked.stderr)
        );
        Self { dir, nodes }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `duet run PLAN` of one node, as an agent, Ansible and the raw loop all run it.
    fn node_command(&self, node: &str, state: &Path) -> Command {
        let mut cmd = Command::new(DUET_BIN);
        cmd.arg("run")
            .arg(self.path("plans/eft-node.yaml"))
            .arg("--quiet")
            .arg("--state-dir")
            .arg(state)
            .arg("--inventory")
            .arg(self.path("plans/machines/node.yaml"))
            .env("DUET_FLEET_NODE", node)
            .env_remove("DUET_STATE_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// One fleet run: agents up and registered (not timed), then `duet-fleet run` timed; the
    /// dispatch latencies from the journals.
    fn fleet(&self, etcd: &EtcdServer, round: usize) -> (f64, Vec<f64>, Vec<(f64, f64)>) {
        let root = self.path(&format!("fleet-{round}"));
        let world = root.join("world");
        std::fs::create_dir_all(&world).expect("mkdir");
        let run = format!("bench{round}");
        let fleet = self.path("plans/fleet.yaml");
        let fleet_cmd = || {
            let mut cmd = Command::new(FLEET_BIN);
            cmd.env("DUET_FLEET_ETCD", etcd.endpoints.join(",")).env_remove("DUET_STATE_DIR");
            cmd
        };
        let mut agents = Processes::default();
        for node in &self.nodes {
            let log = std::fs::File::create(root.join(format!("{node}.log"))).expect("log");
            let child = fleet_cmd()
                .arg("agent")
                .arg(&fleet)
                .args(["--run", &run, "--node", node, "--duet", DUET_BIN])
                .arg("--state-dir")
                .arg(root.join(node))
                .arg("--sim")
                .arg(&world)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("start an agent");
            agents.0.push(child);
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = fleet_cmd().arg("status").arg(&fleet).args(["--run", &run, "--json"]).output().expect("status");
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let live = status["nodes"].as_array().map_or(0, |n| n.iter().filter(|n| n["agent"] == "live").count());
            if live == self.nodes.len() {
                break;
            }
            assert!(Instant::now() < deadline, "only {live} of {} agents registered within 120 s", self.nodes.len());
            std::thread::sleep(Duration::from_millis(100));
        }
        let clock = Instant::now();
        let out = fleet_cmd()
            .arg("run")
            .arg(&fleet)
            .args(["--run", &run, "--name", "bench"])
            .arg("--sim")
            .arg(&world)
            .stdin(Stdio::null())
            .output()
            .expect("duet-fleet run");
        let wall = clock.elapsed().as_secs_f64() * 1000.0;
        assert!(
            out.status.success(),
            "duet-fleet run failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for child in &mut agents.0 {
            let _ = child.wait();
        }
        let agents: Vec<PathBuf> = self.nodes.iter().map(|n| root.join(n)).collect();
        let states: Vec<PathBuf> = agents.iter().map(|a| a.join("duet")).collect();
        (wall, batch_gaps(&states), dispatch_parts(&agents))
    }

    /// The same 100 commands under `ansible-playbook`, `serial: 10`, `forks: 10`, local hosts.
    fn ansible(&self, round: usize) -> (f64, Vec<f64>) {
        let root = self.path(&format!("ansible-{round}"));
        std::fs::create_dir_all(&root).expect("mkdir");
        let mut inventory = String::from("[nodes]\n");
        for n in &self.nodes {
            let _ = writeln!(inventory, "{n} ansible_connection=local ansible_python_interpreter={}", python());
        }
        std::fs::write(root.join("hosts.ini"), inventory).expect("inventory");
        let playbook = format!(
            "- hosts: nodes\n  serial: {SERIAL}\n  gather_facts: false\n  tasks:\n    - name: the node's upgrade\n      command: >-\n        {DUET_BIN} run {plan} --quiet --state-dir {root}/{{{{ inventory_hostname }}}} --inventory {inv}\n      environment:\n        DUET_FLEET_NODE: \"{{{{ inventory_hostname }}}}\"\n",
            plan = self.path("plans/eft-node.yaml").display(),
            root = root.display(),
            inv = self.path("plans/machines/node.yaml").display(),
        );
        std::fs::write(root.join("upgrade.yaml"), playbook).expect("playbook");
        let clock = Instant::now();
        let out = Command::new("ansible-playbook")
            .args(["-i", "hosts.ini", "--forks", &SERIAL.to_string(), "upgrade.yaml"])
            .current_dir(&root)
            .env("ANSIBLE_HOST_KEY_CHECKING", "False")
            .env("ANSIBLE_LOCAL_TEMP", root.join("ansible-tmp"))
            .env("ANSIBLE_REMOTE_TEMP", root.join("ansible-tmp"))
            .env("ANSIBLE_HOME", root.join("ansible-home"))
            .env_remove("DUET_STATE_DIR")
            .stdin(Stdio::null())
            .output()
            .expect("ansible-playbook");
        let wall = clock.elapsed().as_secs_f64() * 1000.0;
        assert!(out.status.success(), "ansible-playbook failed:\n{}", String::from_utf8_lossy(&out.stdout));
        let states: Vec<PathBuf> = self.nodes.iter().map(|n| root.join(n)).collect();
        (wall, batch_gaps(&states))
    }

    /// The nodes' own work: the same commands, ten at a time, started and waited for here.
    fn raw(&self, round: usize) -> f64 {
        let root = self.path(&format!("raw-{round}"));
        let clock = Instant::now();
        for batch in self.nodes.chunks(SERIAL) {
            let mut running: Vec<Child> =
                batch.iter().map(|n| self.node_command(n, &root.join(n)).spawn().expect("duet")).collect();
            for child in &mut running {
                assert!(child.wait().expect("wait").success(), "a node's duet run failed");
            }
        }
        clock.elapsed().as_secs_f64() * 1000.0
    }
}

fn python() -> String {
    let out = Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().expect("python3");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Kills and reaps what it holds when dropped (a failed round leaves no agent behind).
#[derive(Default)]
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Each node's duet session: its first and last activity-log times (ms since the epoch), read
/// with `duet log --format json` from the node's state directory.
fn session_span(state: &Path) -> (i64, i64) {
    let id = std::fs::read_dir(state.join("history"))
        .expect("the node's history")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("one finished session");
    let out = Command::new(DUET_BIN)
        .args(["log", "--format", "json", "--session", &id, "--state-dir"])
        .arg(state)
        .env_remove("DUET_STATE_DIR")
        .output()
        .expect("duet log");
    let log: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("the activity log as JSON");
    let times: Vec<i64> = log.iter().filter_map(|e| e["time"].as_str()).map(epoch_ms).collect();
    (*times.iter().min().expect("a time"), *times.iter().max().expect("a time"))
}

/// An RFC 3339 time (`YYYY-MM-DDTHH:MM:SS.mmmZ`) in ms since the epoch.
fn epoch_ms(t: &str) -> i64 {
    let at = humantime::parse_rfc3339(t).expect("an RFC 3339 time");
    let ms = at.duration_since(std::time::UNIX_EPOCH).expect("after the epoch").as_millis();
    i64::try_from(ms).expect("ms fit")
}

/// The gaps between batches, in ms: from the end of a batch's last node's session to the start
/// of the next batch's first one. What is in a gap is what the coordination does between two
/// batches (for the fleet: the agents' reports after their journals have them, the coordinator's
/// decision, the assignments, the agents' start of `duet run`; for Ansible, its own between two
/// serial batches), plus one `duet` start-up, the same for both.
fn batch_gaps(states: &[PathBuf]) -> Vec<f64> {
    let mut spans: Vec<(i64, i64)> = states.iter().map(|s| session_span(s)).collect();
    spans.sort_unstable();
    let batches: Vec<&[(i64, i64)]> = spans.chunks(SERIAL).collect();
    batches
        .windows(2)
        .map(|w| {
            let end = w[0].iter().map(|s| s.1).max().expect("a batch");
            let start = w[1].iter().map(|s| s.0).min().expect("a batch");
            #[allow(clippy::cast_precision_loss)]
            let gap = (start - end) as f64;
            gap
        })
        .collect()
}

/// Each node's dispatch after the first batch, in two parts (ms): from the end of the last
/// session of the batch before to the agent's acceptance of its assignment (the coordination:
/// that duet's exit, its agent's journal and report, the coordinator's decision, the fenced
/// journal write, the assignment, the watch), and from the acceptance to the first entry of
/// the node's session (the agent: its journal, one `duet status`, `duet run` starting).
fn dispatch_parts(agents: &[PathBuf]) -> Vec<(f64, f64)> {
    let mut nodes: Vec<((i64, i64), i64)> = agents
        .iter()
        .map(|a| {
            let journal: serde_json::Value =
                serde_json::from_slice(&std::fs::read(a.join("agent.json")).expect("the agent journal")).expect("JSON");
            let accepted = journal["work"][0]["accepted_at"].as_str().map(epoch_ms).expect("accepted_at");
            (session_span(&a.join("duet")), accepted)
        })
        .collect();
    nodes.sort_unstable();
    let batches: Vec<&[((i64, i64), i64)]> = nodes.chunks(SERIAL).collect();
    let mut out = Vec::new();
    for w in batches.windows(2) {
        let end = w[0].iter().map(|n| n.0.1).max().expect("a batch");
        for &((start, _), accepted) in w[1] {
            #[allow(clippy::cast_precision_loss)]
            out.push(((accepted - end) as f64, (start - accepted) as f64));
        }
    }
    out
}
