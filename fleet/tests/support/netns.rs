//! Network namespaces of a test's own, for a partition: each is held by a `sleep` started with
//! `unshare --net` (its PID is the namespace's process, stopped by that PID), joined with
//! `nsenter --net=/proc/PID/ns/net`, and linked to another by a veth pair. Nothing is created in
//! the host's namespace and nothing in these namespaces can reach any other network. Needs root
//! (CI runs as root); without it a test says why it skips.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Netns {
    holder: Child,
}

impl Netns {
    /// A new network namespace with its loopback up, or `None` (saying why) when this process
    /// cannot make one (not root, no `unshare`).
    pub(crate) fn new() -> Option<Self> {
        let root = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")));
        if root != Some(true) {
            assert!(std::env::var_os("CI").is_none(), "CI runs as root: the partition tests must run there");
            eprintln!("skipped: network namespaces need root (the partition tests run in CI)");
            return None;
        }
        let holder = Command::new("unshare")
            .args(["--net", "sleep", "3600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("start unshare --net sleep");
        let ns = Self { holder };
        // `unshare` makes the namespace, then becomes `sleep`: wait for the first.
        let own = std::fs::read_link("/proc/self/ns/net").expect("own netns");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(ns.path()).ok().is_none_or(|l| l == own) {
            assert!(Instant::now() < deadline, "unshare --net made no namespace within 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        ns.ip(&["link", "set", "lo", "up"]);
        Some(ns)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.holder.id()
    }

    pub(crate) fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid()))
    }

    /// `program` run inside this namespace (`nsenter` becomes it: the PID is the program's).
    pub(crate) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path().display())).arg("--").arg(program);
        cmd
    }

    /// `ip ARGS` in this namespace; it must succeed.
    pub(crate) fn ip(&self, args: &[&str]) {
        let out = self.command("ip").args(args).output().expect("run ip");
        assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }

    /// A veth pair from this namespace (`name`, address `addr`) to `other` (`peer`,
    /// `peer_addr`), both up, in a /24 of their own.
    pub(crate) fn link(&self, name: &str, addr: &str, other: &Self, peer: &str, peer_addr: &str) {
        let pid = other.pid().to_string();
        self.ip(&["link", "add", name, "type", "veth", "peer", "name", peer, "netns", &pid]);
        self.ip(&["addr", "add", &format!("{addr}/24"), "dev", name]);
        other.ip(&["addr", "add", &format!("{peer_addr}/24"), "dev", peer]);
        self.ip(&["link", "set", name, "up"]);
        other.ip(&["link", "set", peer, "up"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // The PID this test started; the namespace (and its veth end) goes with it.
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
