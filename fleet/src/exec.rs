//! Running the fleet's scripts: a command with the fleet's environment, under its timeout,
//! killed by its PID when it overruns. And the coordinator's [`Executor`] over them: role
//! probes, notifications, preconditions (check, fix, check again), `run_once` steps, restores.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indexmap::IndexMap;

use crate::coordinator::Executor;
use crate::journal::Outcome;
use crate::plan::Command;
use crate::spec::{FleetSpec, RoleRule};

/// What a script sees: `DUET_FLEET_NODE` (the node it acts for, or `coordinator`),
/// `DUET_FLEET_SIM` (the simulated world's directory), `DUET_FLEET_RUN`.
#[derive(Clone, Debug)]
pub struct Env {
    pub sim: PathBuf,
    pub run: String,
}

/// Runs `command` for `node`; Ok when it exits 0, else why not (with its output's last line).
/// Its output is read as it comes (duct's reader threads), so a chatty script never blocks on a
/// full pipe; one that overruns its timeout is killed by the PID this function started.
pub fn run(command: &Command, node: &str, env: &Env) -> Result<(), String> {
    let handle = duct::cmd(&command.path, &command.args)
        .env("DUET_FLEET_NODE", node)
        .env("DUET_FLEET_SIM", &env.sim)
        .env("DUET_FLEET_RUN", &env.run)
        .stdin_null()
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .start()
        .map_err(|e| format!("cannot start `{}`: {e}", command.file))?;
    let deadline = Instant::now() + command.timeout;
    loop {
        if let Some(out) = handle.try_wait().map_err(|e| e.to_string())? {
            let text = String::from_utf8_lossy(&out.stdout);
            for line in text.lines() {
                eprintln!("  [{node}] {line}");
            }
            if out.status.success() {
                return Ok(());
            }
            let last = text.lines().last().unwrap_or("no output");
            return Err(format!("`{} {}` exited with {} ({last})", command.file, command.args.join(" "), out.status));
        }
        if Instant::now() > deadline {
            let _ = handle.kill();
            return Err(format!("`{}` did not finish within {:?} and was killed", command.file, command.timeout));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn outcome(r: Result<(), String>) -> Outcome {
    match r {
        Ok(()) => Outcome::Ok,
        Err(why) => Outcome::Failed(why),
    }
}

/// The coordinator's executor: runs the scripts itself (the simulated nodes share its host).
pub struct Scripts {
    pub env: Env,
}

impl Executor for Scripts {
    fn roles(&mut self, spec: &FleetSpec) -> Result<IndexMap<String, Vec<String>>, String> {
        let mut roles: IndexMap<String, Vec<String>> = IndexMap::new();
        for (name, role) in &spec.roles {
            let RoleRule::Probe(probe) = &role.rule else { continue };
            let members = &spec.groups[&role.group].members;
            let holders: Vec<String> = members.iter().filter(|n| run(probe, n, &self.env).is_ok()).cloned().collect();
            if holders.len() != role.count as usize {
                return Err(format!(
                    "role `{name}` is held by {} node(s) of group `{}` ({}), expected {}; check the cluster, then `duet-fleet resume`",
                    holders.len(),
                    role.group,
                    if holders.is_empty() { "none".into() } else { holders.join(", ") },
                    role.count
                ));
            }
            roles.insert(name.clone(), holders);
        }
        for (name, role) in &spec.roles {
            if let RoleRule::Not(other) = &role.rule {
                let taken = roles.get(other).cloned().unwrap_or_default();
                let rest = spec.groups[&role.group].members.iter().filter(|n| !taken.contains(n)).cloned().collect();
                roles.insert(name.clone(), rest);
            }
        }
        Ok(roles)
    }

    fn notify(&mut self, spec: &FleetSpec, id: &str) -> Outcome {
        let step = spec.notify.iter().find(|s| s.id == id).expect("a notify step of the spec");
        outcome(run(&step.command, "coordinator", &self.env))
    }

    fn precondition(&mut self, spec: &FleetSpec, id: &str, node: &str) -> Outcome {
        let p = spec.preconditions.iter().find(|p| p.id == id).expect("a precondition of the spec");
        if run(&p.check, node, &self.env).is_ok() {
            return Outcome::Ok;
        }
        let Some(fix) = &p.fix else {
            return Outcome::Failed(format!("`{}` failed and the precondition has no fix", p.check.file));
        };
        outcome(run(fix, node, &self.env).and_then(|()| run(&p.check, node, &self.env)))
    }

    fn run_once(&mut self, spec: &FleetSpec, stage: &str, step: &str, node: &str) -> Outcome {
        let s = spec.stages.iter().find(|s| s.id == stage).expect("a stage of the spec");
        let step = s.run_once.iter().find(|x| x.id == step).expect("a run_once step of the stage");
        let on = if step.on == crate::plan::Place::Coordinator { "coordinator" } else { node };
        outcome(run(&step.command, on, &self.env))
    }

    fn restore(&mut self, spec: &FleetSpec, id: &str, node: &str) -> Outcome {
        let p = spec.preconditions.iter().find(|p| p.id == id).expect("a precondition of the spec");
        p.restore.as_ref().map_or(Outcome::Ok, |r| outcome(run(r, node, &self.env)))
    }
}

/// Writes `bytes` to `path` atomically and durably: a temporary file, fsync, rename, fsync
/// of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::time::Duration;

    use super::{Env, run};
    use crate::plan::Command;

    fn script(dir: &std::path::Path, body: &str, timeout: Duration) -> Command {
        let path = dir.join("s");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Command { file: "s".into(), path, args: vec!["x".into()], timeout, loc: None }
    }

    #[test]
    fn a_script_is_run_with_the_fleet_environment_and_judged_by_its_exit() {
        let dir = tempfile::tempdir().expect("dir");
        let env = Env { sim: dir.path().to_owned(), run: "r".into() };
        let ok = script(dir.path(), r#"[ "$DUET_FLEET_NODE/$DUET_FLEET_RUN/$1" = "n1/r/x" ]"#, Duration::from_secs(30));
        assert_eq!(run(&ok, "n1", &env), Ok(()));
        let bad = script(dir.path(), "echo first; echo 'the last line' >&2; exit 3", Duration::from_secs(30));
        let why = run(&bad, "n1", &env).expect_err("exit 3");
        assert!(why.contains("exited with exit status: 3") && why.contains("(the last line)"), "{why}");
    }

    /// More output than a pipe holds: read as it comes, so the script ends, not its timeout.
    #[test]
    fn a_chatty_script_is_not_blocked_by_its_own_output() {
        let dir = tempfile::tempdir().expect("dir");
        let env = Env { sim: dir.path().to_owned(), run: "r".into() };
        let chatty =
            script(dir.path(), "head -c 1000000 /dev/zero | tr '\\0' 'x' | fold -w 100", Duration::from_secs(60));
        assert_eq!(run(&chatty, "n1", &env), Ok(()));
    }

    #[test]
    fn a_script_over_its_timeout_is_killed() {
        let dir = tempfile::tempdir().expect("dir");
        let env = Env { sim: dir.path().to_owned(), run: "r".into() };
        let slow = script(dir.path(), "exec sleep 600", Duration::from_millis(200));
        let why = run(&slow, "n1", &env).expect_err("killed");
        assert!(why.contains("did not finish within 200ms and was killed"), "{why}");
    }
}
