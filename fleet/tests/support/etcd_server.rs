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

/// A free 127.0.0.1 port below the kernel's ephemeral range, so that no outgoing connection
/// (the kernel picks those ports from that range) takes it between this probe and the server's
/// bind; each port is handed out once per test process. A collision that is left (another
/// program binding it) makes the member fail to bind, and [`EtcdServer::start_cluster`] starts
/// again on new ports.
fn free_port() -> u16 {
    use std::sync::Mutex;
    static NEXT: Mutex<Option<u16>> = Mutex::new(None);
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()))
        .unwrap_or(32768);
    let mut next = NEXT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Start at a place of this process's own (tests in other processes probe elsewhere).
    let low = 10_000u16.min(ephemeral.saturating_sub(1000));
    let span = ephemeral.saturating_sub(low).max(1);
    let mut port = next.unwrap_or_else(|| low + u16::try_from(std::process::id() % u32::from(span)).unwrap_or(0));
    for _ in 0..span {
        port = if port + 1 >= ephemeral { low } else { port + 1 };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            *next = Some(port);
            return port;
        }
    }
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
        let mut tries = 0;
        loop {
            let mut server = Self::spawn_cluster(&binary, n);
            match server.wait_ready() {
                Ok(()) => return Some(server),
                // A port taken since it was probed: again, on new ports.
                Err(log) if log.contains("address already in use") && tries < 5 => {
                    tries += 1;
                    for i in 0..n {
                        server.kill_member(i);
                    }
                }
                Err(log) => panic!("{log}"),
            }
        }
    }

    fn spawn_cluster(binary: &std::path::Path, n: usize) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let cluster: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, peer))| format!("t{i}=http://127.0.0.1:{peer}")).collect();
        let token = data.path().file_name().expect("a name").to_string_lossy().into_owned();
        let mut members = Vec::new();
        let mut endpoints = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let endpoint = format!("127.0.0.1:{client}");
            let child = Command::new(binary)
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
        Self { members, endpoints, data }
    }

    /// One member inside a network namespace of the test's own (`enter` makes a command run
    /// in it), serving clients on `host:2379`: the namespace is new, so its ports are free.
    #[allow(dead_code, reason = "only the partition test runs etcd in a namespace")]
    pub(crate) fn start_in(enter: impl Fn(&std::path::Path) -> Command, host: &str) -> Option<Self> {
        let binary = etcd_binary()?;
        let data = tempfile::tempdir().expect("temp dir");
        let endpoint = format!("{host}:2379");
        let child = enter(&binary)
            .args(["--name", "t0", "--data-dir"])
            .arg(data.path().join("etcd0"))
            .args(["--listen-client-urls", &format!("http://{endpoint}")])
            .args(["--advertise-client-urls", &format!("http://{endpoint}")])
            .args(["--listen-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-cluster", "t0=http://127.0.0.1:2380"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(data.path().join("etcd0.log")).expect("log"))
            .spawn()
            .expect("start etcd");
        let server = Self { members: vec![Some(child)], endpoints: vec![endpoint.clone()], data };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = enter(std::path::Path::new("etcdctl"))
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &endpoint, "endpoint", "health"])
                .output()
                .expect("etcdctl");
            if health.status.success() {
                return Some(server);
            }
            let log = std::fs::read_to_string(server.data.path().join("etcd0.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "etcd did not answer on {endpoint} within 30 s; its log:\n{log}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One member serving clients over TLS only (`https://127.0.0.1:PORT`, its certificate
    /// `cert`/`key` signed by `ca`) and asking each client for a certificate signed by `ca`.
    #[allow(dead_code, reason = "only the TLS test runs etcd with TLS")]
    pub(crate) fn start_tls(ca: &std::path::Path, cert: &std::path::Path, key: &std::path::Path) -> Option<Self> {
        let binary = etcd_binary()?;
        let data = tempfile::tempdir().expect("temp dir");
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("127.0.0.1:{client}");
        let child = Command::new(&binary)
            .args(["--name", "t0", "--data-dir"])
            .arg(data.path().join("etcd0"))
            .args(["--listen-client-urls", &format!("https://{endpoint}")])
            .args(["--advertise-client-urls", &format!("https://{endpoint}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-cluster", &format!("t0=http://127.0.0.1:{peer}")])
            .arg("--cert-file")
            .arg(cert)
            .arg("--key-file")
            .arg(key)
            .arg("--trusted-ca-file")
            .arg(ca)
            .arg("--client-cert-auth")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(data.path().join("etcd0.log")).expect("log"))
            .spawn()
            .expect("start etcd");
        let mut server = Self { members: vec![Some(child)], endpoints: vec![endpoint.clone()], data };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Any TLS client certificate signed by the CA will do for the health check: the
            // server's own (it has clientAuth too).
            let health = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &format!("https://{endpoint}"), "--cacert"])
                .arg(ca)
                .arg("--cert")
                .arg(cert)
                .arg("--key")
                .arg(key)
                .args(["endpoint", "health"])
                .output()
                .expect("etcdctl");
            if health.status.success() {
                return Some(server);
            }
            let exited = server.members[0].as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            let log = std::fs::read_to_string(server.data.path().join("etcd0.log")).unwrap_or_default();
            assert!(
                !exited && Instant::now() < deadline,
                "etcd over TLS did not answer on {endpoint}; its log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
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

    /// Every member healthy, or the log of the first one that is not (within 30 s, or at once
    /// when it exited).
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        for i in 0..self.endpoints.len() {
            while !healthy(&self.endpoints[i]) {
                let log = std::fs::read_to_string(self.data.path().join(format!("etcd{i}.log"))).unwrap_or_default();
                let exited = self.members[i].as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
                if exited || Instant::now() > deadline {
                    return Err(format!("etcd did not answer on {} within 30 s; its log:\n{log}", self.endpoints[i]));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
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
