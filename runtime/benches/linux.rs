//! `sudo cargo bench -p duet --bench linux`: the Linux platform's merge downtime and split time.
//! See docs/performance.md ("Linux platform"). Needs root (namespaces, mounts); the btrfs part
//! also needs `mkfs.btrfs` and a loop device, and is skipped with a reason otherwise.
//!
//! - **Merge downtime**: a tree whose exec service is a shell script that writes its pid file
//!   and execs `sleep` (stops at once on SIGTERM, starts in one spawn); `duet split`,
//!   `duet upgrade`, then `duet merge`. Downtime = from the start of the Production Side's
//!   `service:svc@production` stop step to the end of `service:svc@upgrade` (the service
//!   started from the new generation), from the session's activity log (ms resolution).
//!   Measured alone in the same round: the bench stops the service (SIGTERM, wait until it is
//!   gone) and starts it again (one spawn), which is the service's own stop + start. The goal:
//!   downtime − own ≤ 50 ms.
//! - **Split time**: the `platform:split` step's duration (clone, manifest, the Upgrade Side
//!   brought up) for a tree of 10 MB and of 1 GB: on btrfs (a subvolume, so a snapshot) and on
//!   the state directory's file system (a copy, `cp -a --reflink=auto`), next to `cp -a` of the
//!   same tree run by the bench in the same round, alternating (duet, cp, duet, cp), and `cp -a`
//!   followed by `sync -f` (duet makes the copy durable before it names it). The part of the
//!   split that makes the generation is the time its progress line reports.
//!
//! Knobs: `DUET_BENCH_RUNS` (rounds, default 5), `DUET_BENCH_BIG_MB` (the big tree, default 1024).

#![allow(
    clippy::many_single_char_names,
    clippy::cast_possible_wrap,
    clippy::cast_precision_loss,
    clippy::zombie_processes,
    reason = "a benchmark: pids and milliseconds are small, its services are reaped by `alive` and killed at the end"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const DUET: &str = env!("CARGO_BIN_EXE_duet");
const SERVICE: &str = "#!/bin/sh\necho $$ > \"$1\"\nexec sleep 3600\n";
const INSTALL: &str = "#!/bin/sh\nprintf '2.0.0\\n' > \"$1/VERSION\"\n";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "the Linux platform's benchmark: run it with `sudo cargo bench -p duet --bench linux` (docs/performance.md)"
        );
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: the Linux platform's benchmark needs root (namespaces and mounts)");
        return;
    }
    let runs: usize = std::env::var("DUET_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let big: u64 = std::env::var("DUET_BENCH_BIG_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    merge_downtime(runs);
    let base = tempfile::tempdir().expect("temp dir");
    for mb in [10, big] {
        split_time("copy", base.path(), mb, runs.min(3));
    }
    match Btrfs::new() {
        Ok(fs) => {
            for mb in [10, big] {
                split_time("btrfs snapshot", &fs.mount(), mb, runs.min(3));
            }
        }
        Err(why) => println!("split on btrfs: skipped ({why})"),
    }
}

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new(parent: &Path, subvolume: bool, mb: u64) -> Self {
        let dir = tempfile::tempdir_in(parent).expect("temp dir");
        let host = Self { dir };
        std::fs::create_dir_all(host.path("opt")).expect("opt");
        if subvolume {
            run("btrfs", &["subvolume", "create", &host.path("opt/app").display().to_string()]);
        }
        host.write("opt/app/VERSION", "1.0.0\n");
        host.write("opt/app/bin/svc", SERVICE);
        host.write("plan/install", INSTALL);
        std::fs::create_dir_all(host.path("srv/data")).expect("data");
        for f in ["opt/app/bin/svc", "plan/install"] {
            run("chmod", &["755", &host.path(f).display().to_string()]);
        }
        if mb > 0 {
            // Files of 10 MB of incompressible bytes.
            std::fs::create_dir_all(host.path("opt/app/lib")).expect("lib");
            let chunk: Vec<u8> = (0..10u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
            for i in 0..mb.div_ceil(10) {
                std::fs::write(host.path(&format!("opt/app/lib/part{i:04}.bin")), &chunk).expect("data");
            }
            // On disk, as an installed application is (a btrfs snapshot would flush it otherwise).
            run("sync", &[]);
        }
        let root = host.root().display().to_string();
        let machine = format!(
            "version: 1\nplatform: linux\nlinux:\n  trees: [{{name: app, path: {root}/opt/app}}]\n  data: [{{name: data, path: {root}/srv/data}}]\n  services:\n    - {{name: svc, exec: {{start: [{root}/opt/app/bin/svc, {root}/srv/data/svc.pid], pid_file: {root}/srv/data/svc.pid}}}}\n"
        );
        host.write("machine.yaml", &machine);
        let plan = format!(
            "version: 1\ntitle: bench\nservices: [svc]\nupgrade:\n  - {{id: install, file: install, args: [{root}/opt/app], timeout: 1m}}\n"
        );
        host.write("plan/plan.yaml", &plan);
        host.duet(&["adopt", "--inventory", &host.path("machine.yaml").display().to_string()]);
        host
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        std::fs::write(p, text).expect("write");
    }

    fn duet(&self, args: &[&str]) -> String {
        let machine = self.path("machine.yaml").display().to_string();
        let mut all = args.to_vec();
        if !matches!(args[0], "adopt" | "log") {
            all.extend(["--inventory", &machine, "-q"]);
        }
        let out = Command::new(DUET).args(&all).env("DUET_STATE_DIR", self.path("state")).output().expect("duet");
        assert!(out.status.success(), "duet {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts the service (as an administrator would), returns its pid.
    fn start_service(&self) -> u32 {
        let _ = std::fs::remove_file(self.path("srv/data/svc.pid"));
        Command::new(self.path("opt/app/bin/svc")).arg(self.path("srv/data/svc.pid")).spawn().expect("service");
        wait(|| self.pid().is_some());
        self.pid().expect("pid")
    }

    fn pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.path("srv/data/svc.pid")).ok()?.trim().parse().ok()?;
        alive(pid).then_some(pid)
    }

    /// The activity log's entries of the session in progress.
    fn log(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.duet(&["log", "--format", "json"])).expect("log JSON")
    }

    fn stop_all(&self) {
        if let Some(pid) = self.pid() {
            signal(pid);
        }
    }
}

fn alive(pid: u32) -> bool {
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rfind(')').is_some_and(|i| !matches!(s[i + 1..].split_whitespace().next(), Some("Z" | "X"))))
}

fn signal(pid: u32) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
}

fn wait(mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < Duration::from_secs(30), "waited 30 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().expect(program);
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn millis(entry: &serde_json::Value) -> i64 {
    let t = entry["time"].as_str().expect("time");
    // 2026-12-07T01:48:21.618Z: hours, minutes, seconds and milliseconds are enough within a run.
    let (h, m, s, ms) = (&t[11..13], &t[14..16], &t[17..19], &t[20..23]);
    let n = |x: &str| x.parse::<i64>().expect("a number");
    ((n(h) * 60 + n(m)) * 60 + n(s)) * 1000 + n(ms)
}

fn find<'a>(log: &'a [serde_json::Value], message: &str) -> &'a serde_json::Value {
    log.iter()
        .find(|e| e["message"].as_str().is_some_and(|m| m.starts_with(message)))
        .unwrap_or_else(|| panic!("no {message:?} in the log"))
}

fn merge_downtime(runs: usize) {
    let base = tempfile::tempdir().expect("temp dir");
    let (mut downtime, mut own) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let host = Host::new(base.path(), false, 0);
        let pid = host.start_service();
        // The service's own stop + start, alone.
        let t = Instant::now();
        signal(pid);
        wait(|| !alive(pid));
        let _ = std::fs::remove_file(host.path("srv/data/svc.pid"));
        Command::new(host.path("opt/app/bin/svc")).arg(host.path("srv/data/svc.pid")).spawn().expect("service");
        own.push(t.elapsed().as_secs_f64() * 1000.0);
        wait(|| host.pid().is_some());
        host.duet(&["split", &host.path("plan/plan.yaml").display().to_string()]);
        host.duet(&["upgrade"]);
        host.duet(&["merge"]);
        let log = host.log();
        let stop = millis(find(&log, "service:svc@production started"));
        let started = millis(find(&log, "service:svc@upgrade: startup type restored"));
        downtime.push((started - stop) as f64);
        host.stop_all();
        host.duet(&["abort"]);
        host.stop_all();
    }
    let (d, o) = (median(&mut downtime), median(&mut own));
    println!(
        "merge downtime: median {d:.0} ms (runs {downtime:?}); the service's own stop + start alone: median {o:.1} ms; duet's share {:.0} ms (goal ≤ 50 ms)",
        d - o
    );
}

fn split_time(how: &str, parent: &Path, mb: u64, runs: usize) {
    let (mut duet, mut clone, mut cp, mut cp_sync) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let host = Host::new(parent, how.starts_with("btrfs"), mb);
        host.start_service();
        // The tree was just written: flush it first, as before each cp below, so that the
        // split's syncfs writes only its own copy.
        run("sync", &[]);
        host.duet(&["split", &host.path("plan/plan.yaml").display().to_string()]);
        let log = host.log();
        let step = find(&log, "platform:split: split done");
        duet.push(step["detail"]["duration_ms"].as_f64().expect("duration_ms"));
        // "generation 2 of tree app made (a copy, 12 ms)": the split times the clone itself.
        let made = find(&log, "generation 2 of tree app made")["message"].as_str().expect("a message").to_owned();
        let ms = made.rsplit(", ").next().and_then(|t| t.strip_suffix(" ms)")).expect("N ms");
        clone.push(ms.parse::<f64>().expect("a number"));
        host.stop_all();
        host.duet(&["abort"]);
        let (from, copy) = (host.path("opt/.duet/app.gen/1").display().to_string(), host.path("cp-copy"));
        let to = copy.display().to_string();
        // cp -a as an administrator would run it, then the same followed by `sync -f` (what duet
        // does to make the copy durable before naming it), both with a cold page cache for
        // the written blocks: each starts after a sync.
        run("sync", &[]);
        let t = Instant::now();
        run("cp", &["-a", &from, &to]);
        cp.push(t.elapsed().as_secs_f64() * 1000.0);
        let _ = std::fs::remove_dir_all(&copy);
        run("sync", &[]);
        let t = Instant::now();
        run("cp", &["-a", &from, &to]);
        run("sync", &["-f", &to]);
        cp_sync.push(t.elapsed().as_secs_f64() * 1000.0);
        let _ = std::fs::remove_dir_all(&copy);
        host.stop_all();
    }
    let (d, k, c, cs) = (median(&mut duet), median(&mut clone), median(&mut cp), median(&mut cp_sync));
    println!(
        "split of a {mb} MB tree ({how}): the split step median {d:.0} ms {duet:?}, of which making the generation \
         {k:.0} ms {clone:?}; cp -a {c:.0} ms {cp:?}; cp -a + sync -f {cs:.0} ms {cp_sync:?}; \
         ratios: generation / (cp -a + sync -f) {:.2}, split step / cp -a {:.2}",
        k / cs,
        d / c
    );
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Btrfs {
    dir: tempfile::TempDir,
    device: String,
}

impl Btrfs {
    fn new() -> Result<Self, String> {
        if Command::new("mkfs.btrfs").arg("--version").output().is_err() {
            return Err("mkfs.btrfs is not installed (btrfs-progs)".into());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let image = dir.path().join("fs.img");
        std::fs::File::create(&image).and_then(|f| f.set_len(8 << 30)).map_err(|e| e.to_string())?;
        let out = Command::new("losetup").args(["--find", "--show"]).arg(&image).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        let fs = Self { dir, device: String::from_utf8_lossy(&out.stdout).trim().to_owned() };
        run("mkfs.btrfs", &["-q", &fs.device]);
        std::fs::create_dir(fs.mount()).map_err(|e| e.to_string())?;
        run("mount", &[&fs.device, &fs.mount().display().to_string()]);
        Ok(fs)
    }

    fn mount(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("--lazy").arg(self.mount()).status();
        let _ = Command::new("losetup").args(["--detach", &self.device]).status();
    }
}
