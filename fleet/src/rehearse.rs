//! `duet-fleet run FLEET` with no `--sim`: a rehearsal of the whole fleet on this machine, in one
//! command. It starts a private etcd (one member on free 127.0.0.1 ports, its data in the
//! rehearsal's directory), the simulated cluster's starting state (`worlds/STEM/` beside the
//! fleet file, copied into `world/`), the status pages it lists (`worlds/STEM/status-pages`:
//! one `127.0.0.1:PORT` a line, answering `200 Success` to every GET, as the products' pages
//! would), one agent process per node, and then leads the run as its coordinator. At the end it
//! writes the fleet journal to `fleet-journal.ndjson`, prints the status, and stops every
//! process it started by its PID. The directory stays: each node's duet state, the world, the
//! logs.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use duet_fleet::coordination::Coordination as _;
use duet_fleet::etcd::Etcd;

use crate::{Conn, Operator, RunArgs};

/// The processes a rehearsal started, stopped by their PIDs however it ends.
#[derive(Default)]
struct Started(Vec<(String, Child)>);

impl Drop for Started {
    fn drop(&mut self) {
        for (_, child) in self.0.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) fn rehearse(fleet: &Path, dir: Option<PathBuf>) -> Result<ExitCode, String> {
    let spec = crate::compile(fleet)?;
    let stem = fleet.file_stem().map_or_else(|| "fleet".to_owned(), |s| s.to_string_lossy().into_owned());
    let dir = match dir {
        Some(dir) => dir,
        None => default_dir(&stem)?,
    };
    if dir.exists() && std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?.next().is_some() {
        return Err(format!("{} is not empty: pass --dir with a new directory for this rehearsal", dir.display()));
    }
    let world = dir.join("world");
    let logs = dir.join("logs");
    for d in [&world, &logs] {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let preset = fleet.parent().unwrap_or(Path::new(".")).join("worlds").join(&stem);
    if preset.is_dir() {
        duet_fleet::copy_tree(&preset, &world)
            .map_err(|e| format!("cannot copy {} into {}: {e}", preset.display(), world.display()))?;
        // What the rehearsal serves, not part of the world.
        let _ = std::fs::remove_file(world.join("status-pages"));
    }
    serve_status_pages(&preset.join("status-pages"))?;
    let mut started = Started::default();
    let endpoint = start_etcd(&dir, &mut started)?;
    let conn =
        Conn { etcd: vec![endpoint.clone()], run: "rehearsal".into(), etcd_ca: None, etcd_cert: None, etcd_key: None };
    let me = std::env::current_exe().map_err(|e| format!("cannot find duet-fleet itself: {e}"))?;
    for node in spec.nodes.keys() {
        let log = std::fs::File::create(logs.join(format!("{node}.log"))).map_err(|e| e.to_string())?;
        let child = Command::new(&me)
            .arg("agent")
            .arg(fleet)
            .args(["--node", node, "--run", "rehearsal", "--etcd", &endpoint])
            .arg("--state-dir")
            .arg(dir.join("nodes").join(node))
            .arg("--sim")
            .arg(&world)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start the agent of `{node}`: {e}"))?;
        started.0.push((node.clone(), child));
    }
    eprintln!(
        "rehearsal of {} in {}: etcd on {endpoint}, {} agent(s) (logs/NODE.log)",
        fleet.display(),
        dir.display(),
        spec.nodes.len()
    );
    let args =
        RunArgs { fleet: fleet.to_owned(), conn: conn.clone(), sim: Some(world.clone()), name: "rehearsal".into() };
    let outcome = crate::run(&args, &Operator::None);
    // The agents end by themselves once the run finished; after a halt they would wait.
    let deadline = Instant::now()
        + Duration::from_secs(if outcome.as_ref().is_ok_and(|c| *c == ExitCode::SUCCESS) { 60 } else { 0 });
    for (_, child) in started.0.iter_mut().filter(|(name, _)| name != "etcd") {
        while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    keep_journal(&conn, &dir.join("fleet-journal.ndjson"));
    let _ = crate::status(fleet, &conn, false);
    drop(started);
    eprintln!(
        "kept in {}: nodes/NODE/duet (`duet status --state-dir ...`, `duet log`), nodes/NODE/agent.json, world/, logs/, fleet-journal.ndjson",
        dir.display()
    );
    outcome
}

/// `$DUET_STATE_DIR/fleets/STEM-SECONDS`, else the same under `$XDG_STATE_HOME/duet` or
/// `~/.local/state/duet` (duet's own state directory rule).
fn default_dir(stem: &str) -> Result<PathBuf, String> {
    let state = std::env::var_os("DUET_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_STATE_HOME").map(|x| PathBuf::from(x).join("duet")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/duet")))
        .ok_or("no state directory: pass --dir, or set DUET_STATE_DIR")?;
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Ok(state.join("fleets").join(format!("{stem}-{secs}")))
}

/// The status pages the world lists, each on its 127.0.0.1 port, for as long as this process
/// lives (threads of its own).
fn serve_status_pages(list: &Path) -> Result<(), String> {
    let Ok(text) = std::fs::read_to_string(list) else { return Ok(()) };
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let port = line.strip_prefix("127.0.0.1:").and_then(|p| p.parse::<u16>().ok()).ok_or_else(|| {
            format!("{}: `{line}` is not 127.0.0.1:PORT (a rehearsal serves loopback only)", list.display())
        })?;
        let listener = TcpListener::bind(("127.0.0.1", port)).map_err(|e| {
            format!("cannot serve the status page on {line} ({e}): is the product, or another rehearsal, using it?")
        })?;
        duet_fleet::status_page::serve(listener);
    }
    Ok(())
}

/// A free 127.0.0.1 port (the kernel's pick; etcd binding it a moment later may lose a race to
/// another program, and then the rehearsal says so).
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free 127.0.0.1 port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// One etcd member on free loopback ports, its data under `dir/etcd`; its client endpoint.
fn start_etcd(dir: &Path, started: &mut Started) -> Result<String, String> {
    let (client, peer) = (free_port()?, free_port()?);
    let endpoint = format!("127.0.0.1:{client}");
    let log = std::fs::File::create(dir.join("logs/etcd.log")).map_err(|e| e.to_string())?;
    let child = Command::new("etcd")
        .args(["--name", "rehearsal", "--data-dir"])
        .arg(dir.join("etcd"))
        .args(["--listen-client-urls", &format!("http://{endpoint}")])
        .args(["--advertise-client-urls", &format!("http://{endpoint}")])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-cluster", &format!("rehearsal=http://127.0.0.1:{peer}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start etcd ({e}): a rehearsal runs its own; install it (Debian: apt-get install etcd-server)"
            )
        })?;
    started.0.push(("etcd".into(), child));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(etcd) = Etcd::connect(std::slice::from_ref(&endpoint), "rehearsal") {
            if etcd.revision().is_ok() {
                return Ok(endpoint);
            }
        }
        let exited = started.0.last_mut().is_some_and(|(_, c)| matches!(c.try_wait(), Ok(Some(_))));
        if exited || Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("logs/etcd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            return Err(format!(
                "the rehearsal's etcd did not answer on {endpoint}; the end of {}:\n{}",
                dir.join("logs/etcd.log").display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn keep_journal(conn: &Conn, to: &Path) {
    let Ok(mut etcd) = Etcd::connect(&conn.etcd, &conn.run) else { return };
    let Ok(entries) = etcd.journal() else { return };
    let text: String = entries.iter().map(|e| serde_json::to_string(e).expect("an entry serializes") + "\n").collect();
    let _ = std::fs::write(to, text);
}
