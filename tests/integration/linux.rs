//! The Linux platform (docs/linux.md) through the real binary, on this host.
//!
//! Tiers (issue 13): the generation and symlink logic without privileges is unit-tested in
//! `runtime/src/platform/linux/tree.rs`, and binding a plan to a Linux machine file here;
//! everything that makes an Upgrade Side (namespaces, mounts) needs root, and each such test
//! says why it skips when it is not root (CI runs as root). The btrfs test also needs
//! `mkfs.btrfs` and a loop device. A real systemd (tier C, `systemd-nspawn`) is in
//! `linux_systemd.rs`.
//!
//! Every host is a temporary directory: `opt/app` is the tree (its service `svc` is a shell
//! script that writes its pid file and execs `sleep`), `srv/data` the data path. Every process a
//! test starts (directly or through duet: services, the Upgrade Side's holder) carries the
//! host's mark in its environment, and is killed when the host is dropped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{Run, duet, indoc};

const PATIENCE: Duration = Duration::from_secs(30);

/// The test plan: app 1.0.0 -> 2.0.0 by one upgrade task and a version check, with more upgrade
/// tasks, checks and top-level keys (YAML lines; ROOT is the host's directory).
fn plan(upgrade: &str, verify: &str, top: &str) -> String {
    let base = indoc(
        r#"
        version: 1
        title: app 1.0.0 -> 2.0.0
        services: [svc]
        upgrade:
          - {id: install, file: install, args: [ROOT/opt/app], timeout: 1m, rerun: safe, installs: {software: app, version: "2.0.0"}}
        "#,
    );
    format!(
        "{base}{upgrade}verify:\n  - {{id: installed, before: merge, version: {{software: app, constraint: \">=2.0.0\"}}}}\n{verify}{top}"
    )
}

/// Whether this test can make namespaces and mounts; says why not.
fn root_or_skip(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("SKIPPED {test}: needs root (the Upgrade Side is made of mount and network namespaces)");
    }
    root
}

const SERVICE: &str =
    "#!/bin/sh\n# The tree's service: records its pid, then waits.\necho $$ > \"$1\"\nexec sleep 3600\n";
const INSTALL: &str = "#!/bin/sh\n# The upgrade task: app 2.0.0, and one line per run.\nset -eu\nprintf '2.0.0\\n' > \"$1/VERSION\"\necho run >> \"$1/installs.log\"\n";

/// A Linux host in a temporary directory.
pub(crate) struct Host {
    dir: tempfile::TempDir,
    mark: String,
}

impl Host {
    pub(crate) fn new() -> Self {
        Self::with("", &plan("", "", ""))
    }

    /// A host whose machine file's `linux` section gets `machine_extra`, with the plan `plan_text`
    /// (ROOT stands for the host's directory in both).
    pub(crate) fn with(machine_extra: &str, plan_extra: &str) -> Self {
        Self::build(tempfile::tempdir().expect("temp dir"), false, machine_extra, plan_extra)
    }

    /// A host in `dir`; with `subvolume`, its tree is a btrfs subvolume (`dir` is on btrfs).
    fn build(dir: tempfile::TempDir, subvolume: bool, machine_extra: &str, plan_extra: &str) -> Self {
        let mark = format!("{}-{}", std::process::id(), dir.path().file_name().expect("name").to_string_lossy());
        let host = Self { dir, mark };
        if subvolume {
            std::fs::create_dir_all(host.path("opt")).expect("opt");
            let made =
                std::process::Command::new("btrfs").args(["subvolume", "create"]).arg(host.path("opt/app")).output();
            assert!(made.expect("btrfs runs").status.success(), "btrfs subvolume create");
        }
        host.write("opt/app/VERSION", "1.0.0\n");
        host.write("opt/app/bin/svc", SERVICE);
        host.write("opt/app/share/page.html", "<p>app 1</p>\n");
        host.write("srv/data/secret", "the data disk\n");
        host.write("plan/install", INSTALL);
        for f in ["opt/app/bin/svc", "plan/install"] {
            make_executable(&host.path(f));
        }
        let machine = format!(
            "version: 1\nplatform: linux\nmodel: test host\nlinux:\n  trees: [{{name: app, path: ROOT/opt/app}}]\n  \
             data: [{{name: data, path: ROOT/srv/data}}]\n  services:\n    - name: svc\n      exec: {{start: \
             [ROOT/opt/app/bin/svc, ROOT/srv/data/svc.pid], pid_file: ROOT/srv/data/svc.pid, stop_timeout: 5s}}\n  \
             event_logs: [{{name: svc, file: ROOT/srv/data/svc.log}}]\n  software: [{{name: app, tree: app, file: \
             VERSION}}]\n{machine_extra}"
        );
        host.write("machine.yaml", &host.rooted(&machine));
        host.write("plan/plan.yaml", &host.rooted(plan_extra));
        host
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    fn rooted(&self, text: &str) -> String {
        text.replace("ROOT", &self.root().display().to_string())
    }

    pub(crate) fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("dir");
        std::fs::write(path, text).expect("write");
    }

    pub(crate) fn plan(&self) -> String {
        self.path("plan/plan.yaml").display().to_string()
    }

    /// `duet ARGS` on this host's state directory and machine file (for the commands that take
    /// one), marked, with `env` set.
    pub(crate) fn duet_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        self.command(args, env).run()
    }

    pub(crate) fn duet(&self, args: &[&str]) -> Run {
        self.duet_env(args, &[])
    }

    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> crate::support::Duet {
        let machine = self.path("machine.yaml");
        let mut all: Vec<&str> = args.to_vec();
        let takes_machine =
            !matches!(args.first(), Some(&("status" | "log" | "approve" | "check" | "compile" | "adopt")));
        let machine_arg = machine.display().to_string();
        if takes_machine {
            all.extend(["--inventory", &machine_arg]);
        }
        let mut command = duet(&all).env("DUET_STATE_DIR", self.path("state")).env("DUET_TEST_HOST", &self.mark);
        for (k, v) in env {
            command = command.env(k, v);
        }
        command
    }

    /// Adopts the tree and starts its service as an administrator would (outside duet).
    pub(crate) fn adopted_and_running(&self) -> u32 {
        self.duet(&["adopt", "--inventory", &self.path("machine.yaml").display().to_string()]).code(0);
        self.start_service_by_hand()
    }

    pub(crate) fn start_service_by_hand(&self) -> u32 {
        let _ = std::fs::remove_file(self.path("srv/data/svc.pid"));
        let child = std::process::Command::new(self.path("opt/app/bin/svc"))
            .arg(self.path("srv/data/svc.pid"))
            .env("DUET_TEST_HOST", &self.mark)
            .current_dir("/")
            .process_group(0)
            .spawn()
            .expect("the service starts");
        // Reaped by a thread, so it never lingers as a zombie of the test.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        wait_for("the service's pid file", || self.service_pid().is_some());
        self.service_pid().expect("running")
    }

    /// The pid the service's pid file names, if that process runs.
    pub(crate) fn service_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.path("srv/data/svc.pid")).ok()?.trim().parse().ok()?;
        alive(pid).then_some(pid)
    }

    /// The generation the tree's symlink points at.
    pub(crate) fn generation(&self) -> Option<String> {
        let link = std::fs::read_link(self.path("opt/app")).ok()?;
        Some(link.display().to_string())
    }

    /// The generations in the store, sorted.
    pub(crate) fn generations(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path("opt/.duet/app.gen"))
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    pub(crate) fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    pub(crate) fn status(&self) -> serde_json::Value {
        self.duet(&["status", "--json"]).json()
    }

    /// Waits until the background deletion has emptied the trash.
    pub(crate) fn purged(&self) {
        let trash = self.path("opt/.duet/trash");
        wait_for("the old generations' deletion", || {
            std::fs::read_dir(&trash).map_or(true, |mut d| d.next().is_none())
        });
    }

    /// The pids of the processes carrying this host's mark.
    pub(crate) fn processes(&self) -> BTreeSet<u32> {
        let wanted = format!("DUET_TEST_HOST={}", self.mark);
        let Ok(entries) = std::fs::read_dir("/proc") else { return BTreeSet::new() };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == wanted.as_bytes()))
            })
            .filter(|&pid| alive(pid))
            .collect()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for _ in 0..50 {
            let left = self.processes();
            if left.is_empty() {
                break;
            }
            for pid in left {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid")),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

use std::os::unix::process::CommandExt as _;

pub(crate) fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A live process (not a zombie).
pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rfind(')').is_some_and(|i| !matches!(s[i + 1..].split_whitespace().next(), Some("Z" | "X"))))
}

pub(crate) fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < PATIENCE, "waited {PATIENCE:?} for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn text(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Binding (no privileges needed).

#[test]
fn a_plan_binds_to_a_linux_machine_file_with_the_same_disk_rules_and_diagnostics() {
    let host = Host::new();
    let machine = host.path("machine.yaml").display().to_string();
    duet(&["check", &host.plan(), "--inventory", &machine]).run().code(0);
    // The staging directory must be on a data path; the tree is a system disk.
    host.write(
        "plan/logs.yaml",
        &host.rooted(
            "version: 1\ntitle: logs\nservices: [svc]\nlogs:\n  staging_dir: ROOT/opt/app/logs\n  backup: [svc]\n",
        ),
    );
    duet(&["check", &host.path("plan/logs.yaml").display().to_string(), "--inventory", &machine])
        .run()
        .code(1)
        .stderr_has("duet::logs::staging-on-system-disk")
        .stderr_has("on volume `app` (system)");
    host.write("plan/logs.yaml", &host.rooted("version: 1\ntitle: logs\nservices: [svc, nginx]\nlogs:\n  staging_dir: ROOT/srv/data/logs\n  backup: [svc]\n"));
    duet(&["check", &host.path("plan/logs.yaml").display().to_string(), "--inventory", &machine])
        .run()
        .code(1)
        .stderr_has("service `nginx` does not exist on")
        .stderr_has("logs.yaml:3:");
}

#[test]
fn a_linux_machine_file_is_checked_where_it_is_written() {
    let host = Host::new();
    host.write(
        "bad.yaml",
        &host.rooted(
            "version: 1\nplatform: linux\ndisks: []\nlinux:\n  trees:\n    - {name: app, path: ROOT/opt/app}\n    - {name: inner, path: ROOT/opt/app/lib}\n    - {name: dots, path: ROOT/opt/../etc}\n  software: [{name: x, tree: ap, file: VERSION}]\n",
        ),
    );
    let bad = host.path("bad.yaml").display().to_string();
    duet(&["check", &host.plan(), "--inventory", &bad])
        .run()
        .code(1)
        .stderr_has("`disks` is not written in a linux machine file")
        .stderr_has("bad.yaml:3:1")
        .stderr_has("lie inside one another")
        .stderr_has("is not a plain absolute path")
        .stderr_has("software names tree `ap`, which is not listed")
        .stderr_has("did you mean `app`?");
}

// ---------------------------------------------------------------------------------------------
// Root: whole cycles.

#[test]
fn a_full_cycle_upgrades_the_tree_and_restarts_the_service_from_the_new_generation() {
    if !root_or_skip("a_full_cycle_upgrades_the_tree") {
        return;
    }
    let host = Host::new();
    let before = host.adopted_and_running();
    assert_eq!(host.generation().as_deref(), Some(".duet/app.gen/1"));
    host.duet(&["run", &host.plan(), "-q"]).code(0);
    assert_eq!(host.generation().as_deref(), Some(".duet/app.gen/2"), "the tree points at the new generation");
    assert_eq!(host.read("opt/app/VERSION"), "2.0.0\n");
    assert_eq!(host.read("opt/app/installs.log"), "run\n", "the task ran once");
    let after = host.service_pid().expect("the service runs after the commit");
    assert_ne!(after, before, "the service was restarted");
    assert!(!alive(before), "the old service process is gone");
    let exe = std::fs::read_to_string(format!("/proc/{after}/cmdline")).expect("cmdline");
    assert!(exe.contains("sleep"), "{exe}");
    host.purged();
    assert_eq!(host.generations(), ["2"], "the old generation is deleted after the commit");
    let status = host.status();
    assert_eq!((text(&status["upgrade"]), text(&status["operational"])), ("Idle", "Ready"), "{status:#}");
    // Only the service is left: the Upgrade Side's holder is gone.
    assert_eq!(host.processes(), BTreeSet::from([after]));
}

/// The resync (the trash's background deletion) is resumed by the next command that drives the
/// machine when it stopped before the end (a reboot, a kill): here, a retired generation left
/// in the trash with no deletion running.
#[test]
fn a_resync_that_stopped_is_resumed_by_the_next_command() {
    if !root_or_skip("a_resync_that_stopped") {
        return;
    }
    let host = Host::new();
    host.adopted_and_running();
    host.duet(&["run", &host.plan(), "-q"]).code(0);
    host.purged();
    host.write("opt/.duet/trash/app.1.999/bin/svc", "left by a deletion that was killed\n");
    assert_eq!(host.status()["resyncing"], serde_json::json!(true), "status shows the resync");
    host.duet(&["readiness", &host.plan(), "-q"]).code(0);
    host.purged();
    assert!(!host.path("opt/.duet/trash/app.1.999").exists());
}

#[test]
fn an_abort_from_split_leaves_the_old_version_running_exactly_as_before() {
    if !root_or_skip("an_abort_from_split") {
        return;
    }
    let host = Host::new();
    let before = host.adopted_and_running();
    host.duet(&["split", &host.plan(), "-q"]).code(0);
    host.duet(&["upgrade", "-q"]).code(0);
    assert_eq!(host.read("opt/.duet/app.gen/2/VERSION"), "2.0.0\n", "the upgrade went into generation 2");
    assert_eq!(host.read("opt/app/VERSION"), "1.0.0\n", "the Production Side still sees 1.0.0");
    host.duet(&["abort", "-q"]).code(0);
    host.duet(&["finish", "-q"]).code(0);
    assert_eq!(host.service_pid(), Some(before), "the production service was never stopped");
    assert_eq!(host.generation().as_deref(), Some(".duet/app.gen/1"));
    host.purged();
    assert_eq!(host.generations(), ["1"]);
    assert_eq!(host.processes(), BTreeSet::from([before]), "the Upgrade Side and its processes are gone");
}

#[test]
fn an_abort_after_the_merge_swaps_back_and_restarts_the_old_version() {
    if !root_or_skip("an_abort_after_the_merge") {
        return;
    }
    let host = Host::new();
    let before = host.adopted_and_running();
    host.duet(&["run", &host.plan(), "--through", "merge", "-q"]).code(0);
    assert_eq!(host.generation().as_deref(), Some(".duet/app.gen/2"));
    let merged = host.service_pid().expect("the new version runs");
    host.duet(&["abort", "-q"]).code(0);
    assert_eq!(host.generation().as_deref(), Some(".duet/app.gen/1"));
    assert_eq!(host.read("opt/app/VERSION"), "1.0.0\n");
    let back = host.service_pid().expect("the old version runs again");
    assert!(!alive(merged) && back != before && !alive(before), "restarted from the old generation");
    host.duet(&["finish", "-q"]).code(0);
    host.purged();
    assert_eq!(host.generations(), ["1"]);
}

#[test]
fn every_operation_repeated_is_harmless() {
    if !root_or_skip("every_operation_repeated_is_harmless") {
        return;
    }
    let host = Host::new();
    host.adopted_and_running();
    let machine = host.path("machine.yaml").display().to_string();
    host.duet(&["adopt", "--inventory", &machine]).code(0).stdout_has("-> .duet/app.gen/1");
    host.duet(&["split", &host.plan(), "-q"]).code(0);
    // The runtime repeats an operation whose end it did not record: the platform's own state
    // says split, so a second split is refused by the state model, not the platform; the
    // platform-level repetition is what the crash test below exercises at every boundary.
    host.duet(&["split", &host.plan(), "-q"]).code(1).stderr_has("cannot split");
    host.duet(&["upgrade", "-q"]).code(0);
    host.duet(&["merge", "-q"]).code(0);
    host.duet(&["commit", "-q"]).code(0);
    host.duet(&["finish", "-q"]).code(0);
    host.duet(&["adopt", "--inventory", &machine]).code(0).stdout_has("-> .duet/app.gen/2");
}

// ---------------------------------------------------------------------------------------------
// Root: what the Upgrade Side can and cannot do.

#[test]
fn the_upgrade_side_cannot_reach_the_network_or_the_data_paths_and_writes_only_the_new_generation() {
    if !root_or_skip("the_upgrade_side_is_isolated") {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    let port = listener.local_addr().expect("addr").port();
    let probe = format!(
        "#!/bin/sh\n# Runs on the Upgrade Side: what it can reach goes into the tree (generation 2).\nout=$1/probe.txt\n\
         python3 -c 'import socket,sys; socket.create_connection((\"127.0.0.1\", {port}), 2)' 2>/dev/null && echo net=reached >> $out || echo net=refused >> $out\n\
         echo from-upgrade > ROOT/srv/data/written 2>/dev/null || echo data=not-writable >> $out\n\
         ls -A ROOT/srv/data | grep -v '^svc[.]' | tr '\\n' ' ' | sed 's/^/data=[/; s/ *$/]/' >> $out; echo >> $out\n\
         cat ROOT/srv/data/secret >/dev/null 2>&1 && echo secret=read >> $out || echo secret=unreadable >> $out\n\
         touch ROOT/outside 2>/dev/null && echo outside=written >> $out || echo outside=read-only >> $out\n\
         echo host=$(hostname) >> $out\necho tmp=$TMPDIR >> $out\n"
    );
    let host =
        Host::with("", &plan("  - {id: probe, file: probe, args: [ROOT/opt/app], timeout: 1m, rerun: safe}\n", "", ""));
    host.write("plan/probe", &host.rooted(&probe));
    make_executable(&host.path("plan/probe"));
    host.adopted_and_running();
    host.duet(&["split", &host.plan(), "-q"]).code(0);
    host.duet(&["upgrade", "-q"]).code(0);
    let seen = host.read("opt/.duet/app.gen/2/probe.txt");
    let name = nix::unistd::gethostname().expect("hostname").to_string_lossy().into_owned();
    assert_eq!(
        seen,
        // The data path is an empty private tmpfs there: what the probe wrote, and whatever the
        // Upgrade Side's own service wrote before the split stopped it (its `svc.*` files, left
        // out: they depend on how far it got), never the host's files.
        format!(
            "net=refused\ndata=[written]\nsecret=unreadable\noutside=read-only\nhost={name}-upgrade\ntmp=/dev/shm\n"
        ),
        "what the Upgrade Side saw"
    );
    assert!(!host.path("opt/.duet/app.gen/1/probe.txt").exists(), "generation 1 is untouched");
    assert_eq!(host.read("opt/app/VERSION"), "1.0.0\n", "the Production Side sees its own generation");
    assert!(!host.path("outside").exists());
    assert_eq!(host.read("srv/data/secret"), "the data disk\n");
    assert!(!host.path("srv/data/written").exists(), "the Upgrade Side's write to the data path stays there");
    drop(listener);
    host.duet(&["abort", "-q"]).code(0);
}

/// The README's demo (`plans/linux/demo`): webapp 1.0.0 serving on 127.0.0.1:18080 is upgraded
/// to 2.0.0 by `duet run`, and the merge downtime is printed from the activity log.
#[test]
fn the_demo_upgrades_the_web_application_and_prints_its_downtime() {
    if !root_or_skip("the_demo") {
        return;
    }
    // The demo's plan asks its port by a fixed URL: a host where it is taken cannot run it.
    if std::net::TcpListener::bind("127.0.0.1:18080").is_err() {
        eprintln!("SKIPPED the_demo: 127.0.0.1:18080 is in use on this host");
        return;
    }
    if !has("curl") || !has("python3") {
        eprintln!("SKIPPED the_demo: it needs curl and python3");
        return;
    }
    let host = Host::new();
    let dir = host.path("demo");
    let out = std::process::Command::new("bash")
        .arg(crate::support::repo().join("plans/linux/demo"))
        .arg(&dir)
        .env("DUET", env!("CARGO_BIN_EXE_duet"))
        .env("DUET_TEST_HOST", &host.mark)
        .env_remove("DUET_STATE_DIR")
        .output()
        .expect("bash runs the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the demo failed:\n{stdout}\n{stderr}");
    for line in ["before: webapp 1.0.0", "after:  webapp 2.0.0", "session ", " finished; its record is in "] {
        assert!(stdout.contains(line), "the demo printed no `{line}`:\n{stdout}");
    }
    let downtime =
        regex::Regex::new(r"merge downtime: \d+ ms \(stopping the Production Side's services \d+ ms").expect("a regex");
    assert!(downtime.is_match(&stdout), "no downtime line:\n{stdout}");
    assert_eq!(std::fs::read_to_string(dir.join("opt/webapp/VERSION")).expect("VERSION"), "2.0.0\n");
    assert_eq!(
        std::fs::read_link(dir.join("opt/webapp")).expect("the tree is a symlink"),
        Path::new(".duet/app.gen/2")
    );
}

fn has(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn an_http_check_before_the_merge_is_made_from_the_isolated_upgrade_side() {
    if !root_or_skip("an_http_check_before_the_merge") {
        return;
    }
    // The host serves on loopback; the Upgrade Side's loopback is its own, so the check fails
    // there (it would pass from the host).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    let port = listener.local_addr().expect("addr").port();
    let extra = format!("  - {{id: page, before: merge, http: {{url: \"http://127.0.0.1:{port}/\"}}, timeout: 5s}}\n");
    let host = Host::with("", &plan("", &extra, ""));
    host.adopted_and_running();
    host.duet(&["run", &host.plan(), "--through", "merge", "-q"])
        .code(1)
        .stderr_has("verification `page` failed")
        .stderr_has("Connection refused");
    drop(listener);
}

#[test]
fn the_merge_is_refused_while_another_process_uses_the_old_tree() {
    if !root_or_skip("the_merge_is_refused_while_busy") {
        return;
    }
    let host = Host::new();
    host.adopted_and_running();
    host.duet(&["split", &host.plan(), "-q"]).code(0);
    host.duet(&["upgrade", "-q"]).code(0);
    let mut stray = std::process::Command::new("sleep")
        .arg("600")
        .current_dir(host.path("opt/app/share"))
        .env("DUET_TEST_HOST", &host.mark)
        .spawn()
        .expect("a stray process");
    let pid = stray.id();
    host.duet(&["merge", "-q"])
        .code(1)
        .stderr_has(&format!("process {pid} (sleep) still uses tree app outside the plan's services"))
        .stderr_has("stop it, or add its service to the plan");
    stray.kill().expect("kill");
    stray.wait().expect("reaped");
    host.duet(&["retry", "-q"]).code(0);
    host.duet(&["abort", "-q"]).code(0);
}

#[test]
fn a_production_tree_changed_since_the_split_is_a_warning_or_by_the_machine_file_a_refusal() {
    if !root_or_skip("drift") {
        return;
    }
    for (extra, code) in [("", 0), ("  on_drift: refuse\n", 1)] {
        let host = Host::with(extra, &plan("", "", ""));
        host.adopted_and_running();
        host.duet(&["split", &host.plan(), "-q"]).code(0);
        host.duet(&["upgrade", "-q"]).code(0);
        host.write("opt/app/share/page.html", "<p>edited on the Production Side</p>\n");
        let merge = host.duet(&["merge"]);
        merge.code(code);
        let said = format!("{}{}", merge.stdout, merge.stderr);
        assert!(
            said.contains("the Production Side's tree app changed since the split (share/page.html): these changes are lost at the commit"),
            "{said}"
        );
        host.duet(&["abort", "-q"]).code(0);
    }
}

#[test]
fn duet_recover_after_a_reboot_while_merged_goes_back_unless_told_to_keep() {
    if !root_or_skip("duet_recover") {
        return;
    }
    for (extra, generation) in [("", ".duet/app.gen/1"), ("  on_reboot: keep\n", ".duet/app.gen/2")] {
        let host = Host::with(extra, &plan("", "", ""));
        host.adopted_and_running();
        host.duet(&["run", &host.plan(), "--through", "merge", "-q"]).code(0);
        host.duet(&["recover", "-q"]).code(0);
        assert_eq!(host.generation().as_deref(), Some(generation), "{extra}");
        host.duet(&["recover", "-q"]).code(0);
        assert_eq!(host.generation().as_deref(), Some(generation), "recover is idempotent");
    }
}

#[test]
fn adopt_refuses_a_mount_point_and_a_busy_tree_and_is_undone_by_undo() {
    if !root_or_skip("adopt_refuses") {
        return;
    }
    let host = Host::new();
    let machine = host.path("machine.yaml").display().to_string();
    let mut user = std::process::Command::new("sleep")
        .arg("600")
        .current_dir(host.path("opt/app"))
        .env("DUET_TEST_HOST", &host.mark)
        .spawn()
        .expect("a process in the tree");
    host.duet(&["adopt", "--inventory", &machine])
        .code(1)
        .stderr_has("is in use by process")
        .stderr_has("stop the application first");
    user.kill().expect("kill");
    user.wait().expect("reaped");
    host.duet(&["adopt", "--inventory", &machine]).code(0);
    host.duet(&["adopt", "--undo", "--inventory", &machine]).code(0).stdout_has("is a plain directory again");
    assert!(host.path("opt/app").is_dir() && !host.path("opt/app").is_symlink());
    assert_eq!(host.read("opt/app/VERSION"), "1.0.0\n");
    let mount = std::process::Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(host.path("opt/app")).status();
    assert!(mount.expect("mount").success(), "mount a tmpfs on the tree");
    let refused = host.duet(&["adopt", "--inventory", &machine]);
    let _ = std::process::Command::new("umount").arg(host.path("opt/app")).status();
    refused.code(1).stderr_has("is a mount point");
    std::fs::create_dir_all(host.path("opt/.duet")).expect("the generations' directory");
    let mount = std::process::Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(host.path("opt/.duet")).status();
    assert!(mount.expect("mount").success(), "mount a tmpfs on the generations' directory");
    let refused = host.duet(&["adopt", "--inventory", &machine]);
    let _ = std::process::Command::new("umount").arg(host.path("opt/.duet")).status();
    refused.code(1).stderr_has("are on different file systems");
    assert!(host.path("opt/app").is_dir() && !host.path("opt/app").is_symlink(), "the tree is left as it was");
}

// ---------------------------------------------------------------------------------------------
// Root: kill -9 at every record boundary.

/// Resumes (or runs) until the session is finished, as an operator would after a kill.
fn drive_to_the_end(host: &Host) -> Vec<String> {
    for _ in 0..10 {
        let status = host.status();
        let upgrade = text(&status["upgrade"]).to_owned();
        let finished = std::fs::read_dir(host.path("state/history")).map_or(0, Iterator::count) > 0;
        if finished && upgrade == "Idle" && status["session"].is_null() {
            return Vec::new();
        }
        let mut out = host.duet(&["resume", "-q"]);
        if out.code == 1 && (out.stderr.contains("nothing to resume") || out.stderr.contains("no upgrade session")) {
            out = host.duet(&["run", &host.plan(), "-q"]);
        }
        let by_itself = out.code == 1 && format!("{}{}", out.stdout, out.stderr).contains("aborting by itself");
        if (out.code != 0 && !by_itself) || out.stderr.contains("panicked") {
            return vec![format!(
                "in {upgrade} ({}): exit {}: {}{}",
                status["operational"], out.code, out.stdout, out.stderr
            )];
        }
    }
    vec![format!("the cycle did not end: {}", host.status())]
}

fn journal_records(host: &Host) -> usize {
    let history = host.path("state/history");
    let session = std::fs::read_dir(&history).expect("history").flatten().next().expect("a session").path();
    crate::machine::read_journal(&session.join("journal")).unwrap_or_else(|e| panic!("{e}")).len()
}

/// What a finished host looks like: where the tree points, the generations, the version, the
/// task's runs, whether the service runs.
fn final_picture(host: &Host) -> (Option<String>, Vec<String>, String, String, bool) {
    host.purged();
    let runs = host.read("opt/app/installs.log");
    (host.generation(), host.generations(), host.read("opt/app/VERSION"), runs, host.service_pid().is_some())
}

/// `duet run PLAN` killed after each record of the uninterrupted run in turn, then resumed to
/// the end: each ends as the uninterrupted run did, with nothing of duet's left running.
fn every_boundary(rig: fn() -> Host, exit: i32) {
    let (records, want) = {
        let host = rig();
        host.adopted_and_running();
        assert_eq!(host.duet(&["run", &host.plan(), "-q"]).code, exit, "the uninterrupted run");
        // The records of that first command (an abort by itself stops it before the finish).
        let in_progress = host.path("state/session/journal");
        let records = if in_progress.exists() {
            crate::machine::read_journal(&in_progress).unwrap_or_else(|e| panic!("{e}")).len()
        } else {
            journal_records(&host)
        };
        assert!(drive_to_the_end(&host).is_empty());
        (records, final_picture(&host))
    };
    let started = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(1);
    let failed = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n > records {
                        break;
                    }
                    let problems = kill_point(rig, n, records, &want);
                    if !problems.is_empty() {
                        failed.lock().expect("lock").push(format!("kill after record {n}: {}", problems.join("; ")));
                    }
                }
            });
        }
    });
    eprintln!("{records} kill points in {:.1?}", started.elapsed());
    let mut failed = failed.into_inner().expect("lock");
    failed.sort();
    assert!(failed.is_empty(), "{} of {records} kill points went wrong:\n{}", failed.len(), failed.join("\n"));
}

fn kill_point(
    rig: fn() -> Host,
    n: usize,
    records: usize,
    want: &(Option<String>, Vec<String>, String, String, bool),
) -> Vec<String> {
    use std::os::unix::process::ExitStatusExt as _;
    let host = rig();
    host.adopted_and_running();
    let count = n.to_string();
    let first = host.command(&["run", &host.plan(), "-q"], &[("DUET_KILL_AFTER_RECORDS", &count)]).output();
    let mut problems = Vec::new();
    if n < records && first.status.signal() != Some(9) {
        problems.push(format!("the first run was not killed: {:?}", first.status));
    }
    problems.extend(drive_to_the_end(&host));
    if problems.is_empty() {
        let got = final_picture(&host);
        if got != *want {
            problems.push(format!("ended as {got:?}, the uninterrupted run as {want:?}"));
        }
        let service: BTreeSet<u32> = host.service_pid().into_iter().collect();
        let left = host.processes();
        if left != service {
            problems.push(format!("processes left: {left:?} (the service: {service:?})"));
        }
    }
    problems
}

const FAIL: &str = "#!/bin/sh\necho 'this step fails' >&2\nexit 3\n";

/// A failing upgrade task: duet aborts from the split by itself.
fn failing_task() -> Host {
    let host =
        Host::with("", &plan("  - {id: broken, file: fail, timeout: 1m, rerun: safe}\n", "", "on_failure: abort\n"));
    host.write("plan/fail", FAIL);
    make_executable(&host.path("plan/fail"));
    host
}

/// A check before the commit that fails: duet aborts from the merge by itself.
fn failing_check() -> Host {
    let host = Host::with("", &plan("", "  - {id: fails, before: commit, run: {file: fail}}\n", "on_failure: abort\n"));
    host.write("plan/fail", FAIL);
    make_executable(&host.path("plan/fail"));
    host
}

#[test]
fn a_kill_at_every_record_boundary_of_a_linux_cycle_ends_as_the_uninterrupted_run() {
    if !root_or_skip("a_kill_at_every_record_boundary_of_a_linux_cycle") {
        return;
    }
    every_boundary(Host::new, 0);
}

#[test]
fn a_kill_at_every_record_boundary_of_an_abort_from_split_ends_as_the_uninterrupted_run() {
    if !root_or_skip("a_kill_at_every_record_boundary_of_an_abort_from_split") {
        return;
    }
    every_boundary(failing_task, 1);
}

#[test]
fn a_kill_at_every_record_boundary_of_an_abort_from_merge_ends_as_the_uninterrupted_run() {
    if !root_or_skip("a_kill_at_every_record_boundary_of_an_abort_from_merge") {
        return;
    }
    every_boundary(failing_check, 1);
}

// ---------------------------------------------------------------------------------------------
// Root: btrfs on a loop device.

/// A btrfs file system on a loop device, mounted in a temporary directory; unmounted and
/// detached when dropped.
struct Btrfs {
    dir: tempfile::TempDir,
    device: String,
}

impl Btrfs {
    fn new() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let image = dir.path().join("fs.img");
        std::fs::File::create(&image).and_then(|f| f.set_len(400 << 20)).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("losetup").args(["--find", "--show"]).arg(&image).output();
        let out = out.map_err(|e| format!("losetup: {e}"))?;
        if !out.status.success() {
            return Err(format!("losetup: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        let device = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let fs = Self { dir, device };
        let run = |program: &str, args: &[&std::ffi::OsStr]| -> Result<(), String> {
            let out = std::process::Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
            out.status
                .success()
                .then_some(())
                .ok_or_else(|| format!("{program}: {}", String::from_utf8_lossy(&out.stderr).trim()))
        };
        run("mkfs.btrfs", &["-q".as_ref(), fs.device.as_ref()])?;
        std::fs::create_dir(fs.mount()).map_err(|e| e.to_string())?;
        run("mount", &[fs.device.as_ref(), fs.mount().as_os_str()])?;
        Ok(fs)
    }

    fn mount(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("--lazy").arg(self.mount()).status();
        let _ = std::process::Command::new("losetup").args(["--detach", &self.device]).status();
    }
}

#[test]
fn on_btrfs_the_split_snapshots_the_subvolume_and_the_cycle_runs_to_the_commit() {
    if !root_or_skip("on_btrfs") {
        return;
    }
    if !crate::linux::installed("mkfs.btrfs") || !crate::linux::installed("btrfs") {
        eprintln!("SKIPPED on_btrfs: mkfs.btrfs (btrfs-progs) is not installed; .ci/run installs it");
        return;
    }
    let fs = match Btrfs::new() {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED on_btrfs: no btrfs on a loop device here: {why}");
            return;
        }
    };
    let host = Host::build(tempfile::tempdir_in(fs.mount()).expect("dir"), true, "", &plan("", "", ""));
    let before = host.adopted_and_running();
    host.duet(&["split", &host.plan(), "-q"]).code(0);
    let state: serde_json::Value =
        serde_json::from_str(&host.read("state/linux/state.json")).expect("the platform's state");
    assert_eq!(state["trees"]["app"]["clone"], "snapshot", "{state:#}");
    let inode = |rel: &str| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(host.path(rel)).expect("stat"));
    assert_eq!(inode("opt/.duet/app.gen/2"), 256, "generation 2 is a subvolume of its own");
    host.duet(&["run", &host.plan(), "-q"]).code(0);
    assert_eq!(host.read("opt/app/VERSION"), "2.0.0\n");
    assert!(host.service_pid().is_some_and(|p| p != before));
    host.purged();
    assert_eq!(host.generations(), ["2"], "the old subvolume is deleted after the commit");
    drop(host);
}

/// Whether a program is on PATH.
pub(crate) fn installed(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}
