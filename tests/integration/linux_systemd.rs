//! Tier C of the Linux platform (issue 13, docs/linux.md): a real systemd. Each test boots one
//! in `systemd-nspawn` (Debian's `systemd-container`, the host's own systemd version): the
//! host's `/usr` read-only, everything else a fresh tmpfs (`--volatile=yes`), no network
//! (`--private-network`), the test's temporary directory bound in at the same path and the
//! `duet` binary at `/opt/duet/duet`. The test writes a real unit there, enables it, and drives
//! duet inside the container (`nsenter` into its namespaces), with the machine file naming the
//! service by its unit (`systemd: duetapp.service`) and its event log by the journal.
//!
//! What it shows: the merge stops the unit and starts it from the new generation, its startup
//! type on the Production Side is never changed (enabled before, during and after), the event
//! log comes from `journalctl`, a commit keeps the new version and an abort after the merge
//! finds the old version running exactly as before, and a reboot while merged runs
//! `docs/duet-recover.service` before the unit (back to the old version, or the new one kept
//! with `on_reboot: keep`). It skips with a reason when not root or
//! without `systemd-nspawn`; the container is powered off (SIGTERM to nspawn, by its pid) when
//! the test ends, and killed if it does not stop.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::support::indoc;

static CONTAINERS: AtomicU32 = AtomicU32::new(0);

/// A booted systemd in a container, with the test's directory bound in.
struct Container {
    dir: tempfile::TempDir,
    nspawn: Child,
    leader: u32,
}

impl Container {
    /// Boots one, or says why this host cannot (and the test then skips).
    fn boot(test: &str) -> Option<Self> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED {test}: needs root (systemd-nspawn boots a container)");
            return None;
        }
        if !Path::new("/usr/bin/systemd-nspawn").exists() {
            eprintln!("SKIPPED {test}: systemd-nspawn is not installed (Debian: systemd-container)");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("etc-systemd")).expect("the units' directory");
        let mut container = Self { nspawn: Self::spawn(dir.path()), dir, leader: 0 };
        container.wait_booted();
        Some(container)
    }

    /// Starts `systemd-nspawn` over `dir`: `/etc/systemd/system` is `dir/etc-systemd`, so the
    /// units written and enabled there are still there at the next boot (everything else but
    /// `dir` is new at each boot).
    fn spawn(dir: &Path) -> Child {
        let n = CONTAINERS.fetch_add(1, Ordering::SeqCst);
        let name = format!("duet-test-{}-{n}", std::process::id());
        let console =
            std::fs::OpenOptions::new().create(true).append(true).open(dir.join("console.log")).expect("console log");
        Command::new("systemd-nspawn")
            .args(["--quiet", "--register=no", "--keep-unit", "--directory=/", "--volatile=yes"])
            .args(["--private-network", "--console=pipe"])
            .arg(format!("--machine={name}"))
            .arg(format!("--bind={}", dir.display()))
            .arg(format!("--bind={}:/etc/systemd/system", dir.join("etc-systemd").display()))
            .arg(format!("--bind-ro={}:/opt/duet/duet", env!("CARGO_BIN_EXE_duet")))
            // Boot only to basic.target: the host's installed services stay down in there, and
            // nothing waits for a network the container does not have.
            .args(["--boot", "systemd.firstboot=off", "systemd.unit=basic.target"])
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("console"))
            .stderr(console)
            .process_group(0)
            .spawn()
            .expect("systemd-nspawn starts")
    }

    /// Powers the container off (as a reboot would: the units stop) and boots it again.
    fn reboot(&mut self) {
        self.power_off();
        self.nspawn = Self::spawn(self.dir.path());
        self.leader = 0;
        self.wait_booted();
    }

    fn power_off(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.nspawn.id()).expect("a pid"));
        // SIGTERM asks nspawn to power the container off; SIGKILL if it has not within 30 s.
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.nspawn.try_wait(), Ok(None)) {
            if Instant::now() >= deadline {
                let _ = self.nspawn.kill();
                let _ = self.nspawn.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_booted(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                panic!("systemd-nspawn ended ({status}) before the container booted:\n{}", self.console());
            }
            if self.leader == 0 {
                self.leader = child_of(self.nspawn.id()).unwrap_or(0);
            }
            if self.leader != 0 {
                let state = self.sh("systemctl is-system-running 2>/dev/null || true");
                if matches!(String::from_utf8_lossy(&state.stdout).trim(), "running" | "degraded") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "the container did not boot within 60 s:\n{}", self.console());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.path("console.log")).unwrap_or_default()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `sh -c SCRIPT` inside the container (its namespaces, root and working directory), with
    /// `$D` the test's directory and `duet` on the PATH.
    fn sh(&self, script: &str) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.leader.to_string(), "-a", "-r", "-w"])
            .args(["/usr/bin/env", &format!("D={}", self.dir.path().display())])
            .args([&format!("DUET_STATE_DIR={}", self.path("state").display()), "PATH=/opt/duet:/usr/bin:/usr/sbin"])
            .args(["sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .expect("nsenter runs")
    }

    /// Like [`sh`](Self::sh), and the script must succeed; its stdout.
    fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "`{script}` failed in the container ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// The version the unit's running process wrote (checked to be the unit's main process), and
    /// the unit's startup type (`systemctl is-enabled`).
    fn running(&self) -> (String, String) {
        let file = self.ok("cat $D/srv/data/running");
        let main = self.ok("systemctl show --property=MainPID --value duetapp.service");
        let (version, pid) = file.trim().split_once(' ').expect("VERSION PID");
        assert_eq!(pid, main.trim(), "the unit's main process is the one that wrote `running`");
        (version.to_owned(), self.ok("systemctl is-enabled duetapp.service").trim().to_owned())
    }

    /// The application 1.0.0 in a tree under `$D/opt/app`, its unit enabled and started, the
    /// tree adopted, and the plan that upgrades it to 2.0.0.
    fn with_app(&self) {
        let d = self.dir.path().display().to_string();
        let write = |rel: &str, text: &str, exec: bool| {
            let path = self.path(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
            std::fs::write(&path, text.replace("$D", &d)).expect("write");
            if exec {
                crate::linux::make_executable(&path);
            }
        };
        write("opt/app/VERSION", "1.0.0\n", false);
        write(
            "opt/app/bin/svc",
            "#!/bin/sh\n# The application: says which version runs, then serves (waits).\n\
             echo \"$(cat $D/opt/app/VERSION) $$\" > $D/srv/data/running\n\
             cat $D/opt/app/VERSION >> $D/srv/data/starts\nexec sleep 3600\n",
            true,
        );
        write("srv/data/orders", "the data disk\n", false);
        write("plan/install", "#!/bin/sh\nset -eu\nprintf '2.0.0\\n' > \"$1/VERSION\"\n", true);
        write(
            "machine.yaml",
            &indoc(
                "
                version: 1
                platform: linux
                model: nspawn container
                linux:
                  trees: [{name: app, path: $D/opt/app}]
                  data: [{name: data, path: $D/srv/data}]
                  services: [{name: svc, systemd: duetapp.service}]
                  event_logs: [{name: svc, unit: duetapp.service}]
                  software: [{name: app, tree: app, file: VERSION}]
                ",
            ),
            false,
        );
        write(
            "plan/plan.yaml",
            &indoc(
                r#"
                version: 1
                title: app 1.0.0 -> 2.0.0 under systemd
                services: [svc]
                logs: {staging_dir: $D/srv/data/upgrade-logs, backup: [svc]}
                upgrade:
                  - {id: install, file: install, args: [$D/opt/app], timeout: 1m, rerun: safe, installs: {software: app, version: "2.0.0"}}
                verify:
                  - {id: installed, before: merge, version: {software: app, constraint: ">=2.0.0"}}
                "#,
            ),
            false,
        );
        self.ok(&format!(
            "printf '%s\\n' '[Unit]' 'Description=duet test application' '[Service]' 'ExecStart={d}/opt/app/bin/svc' \
             '[Install]' 'WantedBy=basic.target' > /etc/systemd/system/duetapp.service && systemctl daemon-reload"
        ));
        self.ok("duet adopt --inventory $D/machine.yaml");
        self.ok("systemctl enable --now duetapp.service");
        self.wait_running("1.0.0");
    }

    /// Waits until the unit runs `version` (it writes `running` just after systemd started it).
    fn wait_running(&self, version: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.sh("cat $D/srv/data/running").stdout.starts_with(version.as_bytes())
            || self.ok("systemctl is-active duetapp.service || true").trim() != "active"
        {
            assert!(Instant::now() < deadline, "the unit does not run {version}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.power_off();
    }
}

/// The first child of `pid` (nspawn's child is the container's PID 1).
fn child_of(pid: u32) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children.split_ascii_whitespace().next()?.parse().ok()
}

#[test]
fn a_systemd_unit_is_upgraded_and_committed_and_its_startup_type_is_never_changed() {
    let Some(c) = Container::boot("a_systemd_unit_is_upgraded") else { return };
    c.with_app();
    assert_eq!(c.running(), ("1.0.0".to_owned(), "enabled".to_owned()));
    c.ok("duet split $D/plan/plan.yaml --inventory $D/machine.yaml -q");
    // Split: the Production Side's unit runs on, still enabled; the Upgrade Side got the task.
    c.ok("duet upgrade --inventory $D/machine.yaml -q");
    assert_eq!(c.running(), ("1.0.0".to_owned(), "enabled".to_owned()), "the Production Side while split");
    assert_eq!(std::fs::read_to_string(c.path("opt/.duet/app.gen/2/VERSION")).expect("gen 2"), "2.0.0\n");
    c.ok("duet merge --inventory $D/machine.yaml -q");
    c.wait_running("2.0.0");
    assert_eq!(c.running(), ("2.0.0".to_owned(), "enabled".to_owned()), "after the merge");
    c.ok("duet commit --inventory $D/machine.yaml -q && duet finish --inventory $D/machine.yaml -q");
    assert_eq!(c.running(), ("2.0.0".to_owned(), "enabled".to_owned()), "after the commit");
    assert_eq!(std::fs::read_link(c.path("opt/app")).expect("a symlink"), Path::new(".duet/app.gen/2"));
    let status = c.ok("duet status --json");
    assert!(status.contains("\"Idle\""), "{status}");
    // The event log backup came from the journal: systemd's own lines about the unit.
    let evidence = c.ok("find $D/srv/data/upgrade-logs $D/state/history -type f -name '*svc*' -exec cat {} +");
    assert!(evidence.contains("duetapp.service"), "no journal lines of the unit were backed up:\n{evidence}");
}

#[test]
fn an_abort_after_the_merge_under_systemd_finds_the_old_version_running_as_before() {
    let Some(c) = Container::boot("an_abort_after_the_merge_under_systemd") else { return };
    c.with_app();
    c.ok("duet run $D/plan/plan.yaml --inventory $D/machine.yaml --through merge -q");
    c.wait_running("2.0.0");
    c.ok("duet abort --inventory $D/machine.yaml -q");
    c.wait_running("1.0.0");
    assert_eq!(c.running(), ("1.0.0".to_owned(), "enabled".to_owned()), "after the abort");
    assert_eq!(std::fs::read_link(c.path("opt/app")).expect("a symlink"), Path::new(".duet/app.gen/1"));
    assert_eq!(std::fs::read_to_string(c.path("opt/app/VERSION")).expect("VERSION"), "1.0.0\n");
    assert_eq!(std::fs::read_to_string(c.path("srv/data/orders")).expect("data"), "the data disk\n");
    c.ok("duet finish --inventory $D/machine.yaml -q");
    assert_eq!(c.running(), ("1.0.0".to_owned(), "enabled".to_owned()), "after the finish");
}

impl Container {
    /// Installs `docs/duet-recover.service` as the guide says (its state directory edited, the
    /// binary's path the container's) and enables it.
    fn with_recover_at_boot(&self) {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/duet-recover.service");
        let unit = std::fs::read_to_string(&shipped).expect("docs/duet-recover.service");
        assert!(
            unit.contains("Environment=DUET_STATE_DIR=/var/lib/duet") && unit.contains("ExecStart=/usr/local/bin/duet")
        );
        let unit = unit
            .replace("DUET_STATE_DIR=/var/lib/duet", &format!("DUET_STATE_DIR={}", self.path("state").display()))
            .replace("/usr/local/bin/duet", "/opt/duet/duet");
        std::fs::write(self.path("etc-systemd/duet-recover.service"), unit).expect("install the unit");
        self.ok("systemctl daemon-reload && systemctl enable duet-recover.service");
    }

    /// The versions the unit started, in order.
    fn starts(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("srv/data/starts")).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    /// With `duet-recover.service` installed: the upgrade run through the merge (2.0.0 running),
    /// the container rebooted, and `version` running again. Returns the versions the unit
    /// started at that boot.
    fn merged_then_rebooted(&mut self, version: &str) -> Vec<String> {
        self.with_recover_at_boot();
        self.ok("duet run $D/plan/plan.yaml --inventory $D/machine.yaml --through merge -q");
        self.wait_running("2.0.0");
        let before = self.starts().len();
        self.reboot();
        self.wait_running(version);
        self.starts().split_off(before)
    }

    /// What `duet recover` said at this boot.
    fn recover_said(&self) -> String {
        self.ok("journalctl --boot -u duet-recover.service -o cat --no-pager; systemctl status duet-recover.service --no-pager || true")
    }
}

#[test]
fn a_reboot_while_merged_goes_back_to_the_old_version_before_the_application_starts() {
    let Some(mut c) = Container::boot("a_reboot_while_merged_goes_back") else { return };
    c.with_app();
    // duet recover ran before the unit: the one process that started at this boot is 1.0.0.
    assert_eq!(c.merged_then_rebooted("1.0.0"), ["1.0.0"], "the versions started at this boot");
    let said = c.recover_said();
    assert!(said.contains("going back to the old version"), "{said}");
    assert_eq!(c.running(), ("1.0.0".to_owned(), "enabled".to_owned()), "after the reboot:\n{said}");
    assert_eq!(std::fs::read_link(c.path("opt/app")).expect("a symlink"), Path::new(".duet/app.gen/1"));
    assert_eq!(std::fs::read_to_string(c.path("srv/data/orders")).expect("data"), "the data disk\n");
    c.ok("duet finish --inventory $D/machine.yaml -q");
    let status = c.ok("duet status --json");
    assert!(status.contains("\"Idle\""), "{status}");
    // At the next boot there is nothing to recover, and the old version starts as usual.
    c.reboot();
    c.wait_running("1.0.0");
    let said = c.recover_said();
    assert!(said.contains("nothing to recover"), "{said}");
}

#[test]
fn a_reboot_while_merged_keeps_the_new_version_when_the_machine_file_says_keep() {
    let Some(mut c) = Container::boot("a_reboot_while_merged_keeps") else { return };
    c.with_app();
    let machine = std::fs::read_to_string(c.path("machine.yaml")).expect("machine file");
    std::fs::write(c.path("machine.yaml"), machine.replace("linux:\n", "linux:\n  on_reboot: keep\n")).expect("write");
    assert_eq!(c.merged_then_rebooted("2.0.0"), ["2.0.0"], "the versions started at this boot");
    let said = c.recover_said();
    assert!(said.contains("the new version stays"), "{said}");
    c.ok("duet commit --inventory $D/machine.yaml -q && duet finish --inventory $D/machine.yaml -q");
    assert_eq!(c.running(), ("2.0.0".to_owned(), "enabled".to_owned()), "after the commit");
    assert_eq!(std::fs::read_link(c.path("opt/app")).expect("a symlink"), Path::new(".duet/app.gen/2"));
}
