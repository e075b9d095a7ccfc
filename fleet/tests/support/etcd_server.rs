//! One etcd member of a test's own: started on free 127.0.0.1 ports with a temporary data
//! directory, ready once its `/health` says so, stopped by the PID the test started. Without the
//! `etcd` binary a test says why it skips (and fails under CI, which installs it). Shared by the
//! library's etcd tests and the fleet's end-to-end tests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct EtcdServer {
    child: Child,
    /// `127.0.0.1:PORT`, the client endpoint.
    pub(crate) endpoint: String,
    data: tempfile::TempDir,
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("addr").port()
}

fn etcd_binary() -> Option<PathBuf> {
    ["/usr/bin/etcd", "/usr/local/bin/etcd"].iter().map(PathBuf::from).find(|p| p.exists())
}

impl EtcdServer {
    /// Starts etcd, or returns `None` (saying why) when it is not installed.
    pub(crate) fn start() -> Option<Self> {
        let Some(binary) = etcd_binary() else {
            assert!(std::env::var_os("CI").is_none(), "etcd is not installed; .ci/run installs Debian's etcd-server");
            eprintln!("skipped: etcd is not installed (apt-get install etcd-server etcd-client)");
            return None;
        };
        let data = tempfile::tempdir().expect("temp dir");
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("127.0.0.1:{client}");
        let child = Command::new(binary)
            .args(["--name", "t1", "--data-dir"])
            .arg(data.path().join("etcd"))
            .args(["--listen-client-urls", &format!("http://{endpoint}")])
            .args(["--advertise-client-urls", &format!("http://{endpoint}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-cluster", &format!("t1=http://127.0.0.1:{peer}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(data.path().join("etcd.log")).expect("log"))
            .spawn()
            .expect("start etcd");
        let server = Self { child, endpoint, data };
        server.wait_ready();
        Some(server)
    }

    fn healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(&self.endpoint) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        if write!(s, "GET /health HTTP/1.0\r\nHost: {}\r\n\r\n", self.endpoint).is_err() {
            return false;
        }
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.contains("\"health\":\"true\"")
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.healthy() {
            let log = std::fs::read_to_string(self.data.path().join("etcd.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "etcd did not answer on {} within 30 s; its log:\n{log}", self.endpoint);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // The PID this test started, and only it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
