//! A rehearsal rig for the runtime tests: a temporary directory with a state dir, a plan tree
//! whose actions record what they saw, and a fast inventory of the guide's 320Ma.
//!
//! Every action of the generated plans runs `rec`, a shell script that appends one line to
//! `REC/SIDE.log` (`step|side|state|request|hw_split|attempt|args`) and then:
//! - exits 3 if `REC/fail-STEP` or `REC/fail-STEP-REQUEST` exists (STEP with `:` and `@` as
//!   they are, REQUEST the `ACTIVE_UPGRADE_REQUEST`), so a test can make one step fail and
//!   later "correct the problem" by removing the file;
//! - blocks until `REC/go` exists if `REC/block-STEP` exists, after writing `REC/blocked`
//!   (its pid), so a test can kill duet while an action runs without relying on timing.

use crate::support::{Duet, Run, duet};
use std::path::{Path, PathBuf};

/// The recorder every action runs.
const REC: &str = r#"#!/bin/sh
step="$DUET_STEP"
echo "$step|$ACTIVE_UPGRADE_SIDE|$ACTIVE_UPGRADE_STATE|$ACTIVE_UPGRADE_REQUEST|$ACTIVE_UPGRADE_HW_SPLIT|$DUET_ATTEMPT|$*" >> "$REC/$ACTIVE_UPGRADE_SIDE.log"
if [ -e "$REC/block-$step" ]; then
  echo $$ > "$REC/blocked.tmp" && mv "$REC/blocked.tmp" "$REC/blocked"
  while [ ! -e "$REC/go" ]; do sleep 0.01; done
fi
if [ -e "$REC/fail-$step" ] || [ -e "$REC/fail-$step-$ACTIVE_UPGRADE_REQUEST" ]; then
  echo "failing as asked" >&2
  exit 3
fi
echo "ok $step"
"#;

/// The guide's 320Ma with instant operations; services of every kind the tests need.
pub(crate) const INVENTORY: &str = "version: 1
model: Express5800/320Ma
duplex: true
disks:
  - {id: disk0, location: internal, rdr: true, synced: true}
  - {id: disk1, location: internal, rdr: true, synced: true}
  - {id: disk2, location: internal, rdr: true, synced: true}
  - {id: disk3, location: external}
volumes:
  - {id: C, mount: /, disks: [disk0], boot: true, paging: true}
  - {id: E, mount: /opt, disks: [disk1]}
  - {id: D, mount: /srv/data, disks: [disk2]}
network:
  teams:
    - name: team0
      embedded: true
      adapters: [{enclosure: 10, link: true}, {enclosure: 11, link: true}]
      address: 192.0.2.10
vtms: [{enclosure: 10, configured: true}, {enclosure: 11, configured: true}]
remote_desktop: true
services:
  - {name: AppServer, startup: manual, running: true}
  - {name: W3SVC, startup: automatic, running: true}
  - {name: Spooler, startup: automatic, running: true}
  - {name: Reports, startup: manual, running: false}
event_logs: [Application, System, Security]
simulation:
  durations: {split: 0s, merge: 0s, commit: 0s, abort: 0s, finish: 0s, resync: 0s}
";

/// A plan with actions of every control type and several timings, three services (one
/// that was not running) and a log backup.
pub(crate) const PLAN: &str = r#"version: 1
title: rehearsal
disks: {system: [disk0, disk1], data: [disk2]}
services:
  - AppServer
  - {name: W3SVC, after: [AppServer]}
  - Reports
actions:
  - {id: ready, file: rec, control: readiness}
  - {id: stop-early, file: rec, control: stop, timing: early, args: [stop, "%ACTIVE_UPGRADE_SIDE%"]}
  - {id: stop, file: rec, control: stop}
  - {id: start, file: rec, control: start, args: ["%ACTIVE_UPGRADE_REQUEST%", "100%%"]}
  - {id: save, file: rec, control: backup, rerun: unsafe}
  - {id: adv-late, file: rec, control: advanced, timing: late}
  - {id: adv-early, file: rec, control: advanced, timing: early}
logs:
  staging_dir: /srv/data/upgrade-logs
  backup: [Application, System]
"#;

pub(crate) struct Machine {
    pub(crate) dir: tempfile::TempDir,
}

impl Machine {
    /// A rig with the standard plan and inventory.
    pub(crate) fn new() -> Self {
        Self::with(PLAN, INVENTORY)
    }

    pub(crate) fn with(plan: &str, inventory: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let m = Self { dir };
        std::fs::create_dir_all(m.rec()).expect("rec dir");
        std::fs::create_dir_all(m.path("plans")).expect("plans dir");
        m.write("plans/plan.yaml", plan);
        m.write("inventory.yaml", inventory);
        m.write("plans/rec", REC);
        make_executable(&m.path("plans/rec"));
        m
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub(crate) fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path(rel), text).expect("write");
    }

    pub(crate) fn rec(&self) -> PathBuf {
        self.path("rec")
    }

    pub(crate) fn state(&self) -> PathBuf {
        self.path("state")
    }

    pub(crate) fn plan(&self) -> String {
        self.path("plans/plan.yaml").display().to_string()
    }

    /// `duet ARGS --state-dir STATE --inventory INVENTORY`, with `REC` set for the actions.
    pub(crate) fn duet(&self, args: &[&str]) -> Duet {
        let state = self.state().display().to_string();
        let inventory = self.path("inventory.yaml").display().to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--state-dir", &state]);
        let with_inventory = !matches!(args.first(), Some(&"log"));
        if with_inventory {
            all.extend(["--inventory", &inventory]);
        }
        duet(&all).env("REC", self.rec()).in_dir(self.dir.path())
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        self.duet(args).run()
    }

    /// `duet status --json`.
    pub(crate) fn status(&self) -> serde_json::Value {
        self.run(&["status", "--json"]).code(0).json()
    }

    /// The lines the actions recorded on one side (`Production` or `Upgrade`).
    pub(crate) fn recorded(&self, side: &str) -> Vec<String> {
        std::fs::read_to_string(self.rec().join(format!("{side}.log")))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Both sides' recorded lines, each as `step|request|attempt`.
    pub(crate) fn runs(&self) -> Vec<String> {
        let mut all = Vec::new();
        for side in ["Production", "Upgrade"] {
            for line in self.recorded(side) {
                let f: Vec<&str> = line.split('|').collect();
                all.push(format!("{}|{}|{}", f[0], f[3], f[5]));
            }
        }
        all
    }

    /// Makes step STEP (e.g. `action:stop@upgrade`, or `action:x@upgrade-PrepareMerge` for
    /// one request only) exit 3 until [`Machine::heal`].
    pub(crate) fn fail(&self, step: &str) {
        std::fs::write(self.rec().join(format!("fail-{step}")), "").expect("marker");
    }

    pub(crate) fn heal(&self, step: &str) {
        std::fs::remove_file(self.rec().join(format!("fail-{step}"))).expect("marker");
    }

    /// Runs `duet ARGS` until action step STEP runs, then kills duet with SIGKILL, as a crash
    /// would, leaving the action blocked; returns the action's pid. `REC/go` releases it.
    pub(crate) fn kill_inside(&self, step: &str, args: &[&str]) -> String {
        std::fs::write(self.rec().join(format!("block-{step}")), "").expect("marker");
        let mut duet = self.duet(args).spawn();
        let blocked = self.rec().join("blocked");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !blocked.exists() {
            assert!(std::time::Instant::now() < deadline, "{step} never started");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        duet.kill().expect("kill duet");
        duet.wait().expect("reap duet");
        std::fs::remove_file(self.rec().join(format!("block-{step}"))).expect("marker");
        std::fs::read_to_string(&blocked).expect("pid").trim().to_owned()
    }

    /// The session id in progress.
    pub(crate) fn session(&self) -> String {
        self.status()["session"].as_str().expect("a session is in progress").to_owned()
    }

    /// `(startup, running)` of a service on a side, from `status --json`.
    pub(crate) fn service(&self, name: &str, side: &str) -> (String, bool) {
        let status = self.status();
        let s = status["services"]
            .as_array()
            .expect("services")
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no service {name} in {status:#}"));
        let side = &s[side];
        (side["startup"].as_str().expect("startup").to_owned(), side["running"].as_bool().expect("running"))
    }

    /// The simulated machine's state file, for "nothing changed" checks.
    pub(crate) fn sim_state(&self) -> String {
        std::fs::read_to_string(self.state().join("sim/state.json")).unwrap_or_default()
    }

    pub(crate) fn journal(&self) -> Vec<u8> {
        std::fs::read(self.state().join("session/journal")).unwrap_or_default()
    }

    pub(crate) fn upgrade_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.state().join(format!("sim/sides/upgrade/logs/{name}.log"))).expect("upgrade log")
    }
}

pub(crate) fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}
