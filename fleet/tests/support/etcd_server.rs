//! etcd of a test's own: one member (or a cluster of several) started on free 127.0.0.1 ports
//! with temporary data directories, ready once every member's `/health` says so, stopped by the
//! PIDs the test started. Without the `etcd` binary a test says why it skips (and fails under
//! CI, which installs it). Shared by the library's etcd tests and the fleet's end-to-end tests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct EtcdServer {
    /// Each member's process, `None` once the test killed it.
    members: Vec<Option<Child>>,
    /// Every member's client endpoint (`127.0.0.1:PORT`), in member order.
    pub(crate) endpoints: Vec<String>,
    data: tempfile::TempDir,
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("addr").port()
}

fn etcd_binary() -> Option<PathBuf> {
    ["/usr/bin/etcd", "/usr/local/bin/etcd"].iter().map(PathBuf::from).find(|p| p.exists())
}

impl EtcdServer {
    /// Starts one etcd member, or returns `None` (saying why) when etcd is not installed.
    pub(crate) fn start() -> Option<Self> {
        Self::start_cluster(1)
    }

    /// Starts a cluster of `n` members, each on its own free ports, or `None` without etcd.
    pub(crate) fn start_cluster(n: usize) -> Option<Self> {
        let Some(binary) = etcd_binary() else {
            assert!(std::env::var_os("CI").is_none(), "etcd is not installed; .ci/run installs Debian's etcd-server");
            eprintln!("skipped: etcd is not installed (apt-get install etcd-server etcd-client)");
            return None;
        };
        let data = tempfile::tempdir().expect("temp dir");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let cluster: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, peer))| format!("t{i}=http://127.0.0.1:{peer}")).collect();
        let token = data.path().file_name().expect("a name").to_string_lossy().into_owned();
        let mut members = Vec::new();
        let mut endpoints = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let endpoint = format!("127.0.0.1:{client}");
            let child = Command::new(&binary)
                .args(["--name", &format!("t{i}"), "--data-dir"])
                .arg(data.path().join(format!("etcd{i}")))
                .args(["--listen-client-urls", &format!("http://{endpoint}")])
                .args(["--advertise-client-urls", &format!("http://{endpoint}")])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args(["--initial-cluster", &cluster.join(",")])
                .args(["--initial-cluster-token", &token, "--initial-cluster-state", "new"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(data.path().join(format!("etcd{i}.log"))).expect("log"))
                .spawn()
                .expect("start etcd");
            members.push(Some(child));
            endpoints.push(endpoint);
        }
        let server = Self { members, endpoints, data };
        server.wait_ready();
        Some(server)
    }

    /// `kill -9` of member `i` (the PID this test started), reaped.
    #[allow(dead_code, reason = "not every test binary kills a member")]
    pub(crate) fn kill_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The index of the member that leads, as `etcdctl endpoint status` says.
    #[allow(dead_code, reason = "not every test binary asks")]
    pub(crate) fn leader(&self) -> Option<usize> {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.endpoints.join(","))
            .args(["endpoint", "status", "--write-out", "json"])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // One object per endpoint, in the order given: its own member id and its leader's.
        let ids = |key: &str| -> Vec<String> {
            let pattern = format!("\"{key}\":");
            text.match_indices(&pattern)
                .map(|(at, m)| text[at + m.len()..].chars().take_while(char::is_ascii_digit).collect())
                .collect()
        };
        let (members, leaders) = (ids("member_id"), ids("leader"));
        let leader = leaders.first()?;
        members.iter().position(|m| m == leader)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            while !healthy(endpoint) {
                let log = std::fs::read_to_string(self.data.path().join(format!("etcd{i}.log"))).unwrap_or_default();
                assert!(Instant::now() < deadline, "etcd did not answer on {endpoint} within 30 s; its log:\n{log}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn healthy(endpoint: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(endpoint) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(s, "GET /health HTTP/1.0\r\nHost: {endpoint}\r\n\r\n").is_err() {
        return false;
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.contains("\"health\":\"true\"")
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // The PIDs this test started, and only them.
        for child in self.members.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
