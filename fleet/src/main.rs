//! `duet-fleet`: the fleet commands. Kept out of the `duet` binary so the single-node build
//! carries no etcd client; `duet-fleet agent` drives the real `duet` binary per node.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use duet_fleet::coordination::{CoordError, Coordination, Fence};
use duet_fleet::etcd::{AbortRequest, Etcd, Tls};
use duet_fleet::journal::{Entry, RunState};
use duet_fleet::spec::FleetSpec;
use duet_fleet::{agent, coordinator, exec, scheduler};

mod rehearse;

#[derive(Parser)]
#[command(name = "duet-fleet", version, about = "Upgrade a cluster of machines with duet, coordinated through etcd")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Conn {
    /// etcd client endpoints, comma-separated.
    #[arg(long, env = "DUET_FLEET_ETCD", value_delimiter = ',', default_value = "127.0.0.1:2379")]
    etcd: Vec<String>,
    /// The run's name: its keys live under /duet/fleet/<run>/.
    #[arg(long, default_value = "default")]
    run: String,
    /// TLS to etcd: the CA certificate (PEM) that signed etcd's; the endpoints are then https.
    #[arg(long, env = "DUET_FLEET_ETCD_CA", value_name = "FILE")]
    etcd_ca: Option<PathBuf>,
    /// This client's certificate (PEM), for an etcd with --client-cert-auth; needs --etcd-key.
    #[arg(long, env = "DUET_FLEET_ETCD_CERT", value_name = "FILE", requires = "etcd_key")]
    etcd_cert: Option<PathBuf>,
    /// This client's private key (PEM); needs --etcd-cert.
    #[arg(long, env = "DUET_FLEET_ETCD_KEY", value_name = "FILE", requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
}

impl Conn {
    fn tls(&self) -> Result<Option<Tls>, String> {
        let identity = self.etcd_cert.clone().zip(self.etcd_key.clone());
        match (&self.etcd_ca, identity) {
            (Some(ca), identity) => Ok(Some(Tls { ca: ca.clone(), identity })),
            (None, Some(_)) => {
                Err("--etcd-cert and --etcd-key need --etcd-ca, the CA that signed etcd's certificate".into())
            }
            (None, None) => Ok(None),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Check a fleet plan and every node plan it names; print every problem.
    Check {
        fleet: PathBuf,
        /// Print the checked fleet as JSON (what a run journals).
        #[arg(long)]
        json: bool,
    },
    /// Coordinate a fleet run: win the election, then carry the run out (or on) from its journal.
    /// Without `--sim`: rehearse the whole fleet on this machine (its own etcd on loopback, one
    /// agent per node, the simulated cluster of `worlds/FLEET/`), in one command.
    Run {
        #[command(flatten)]
        args: RunArgs,
        /// Where a rehearsal keeps everything (default: DUET_STATE_DIR/fleets/FLEET-SECONDS).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Like `run`, and a run paused after a failure within its budget goes on (journaled, by
    /// this coordinator's name).
    Resume(RunArgs),
    /// Let a stage's failed nodes (or one of them, or its failed or interrupted `run_once`
    /// step) go again, journaled with who and why, then carry the run on like `run`.
    Retry {
        #[command(flatten)]
        args: RunArgs,
        /// The stage (`duet-fleet status` names what it waits for).
        stage: String,
        /// Only this node of the stage.
        node: Option<String>,
        /// Why it is safe to go again (kept in the fleet journal).
        #[arg(long)]
        reason: String,
    },
    /// Every node's state, the stage, the batch, the budget left and what the run waits for.
    Status {
        fleet: PathBuf,
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        json: bool,
    },
    /// Stop the run: no new batch starts; the nodes' work in flight finishes. Journaled with
    /// who and why by the leading coordinator (or by this command when none runs).
    Abort {
        #[command(flatten)]
        conn: Conn,
        /// Why (kept in the fleet journal).
        #[arg(long)]
        reason: String,
        /// Who asks.
        #[arg(long, default_value = "operator")]
        name: String,
    },
    /// The fleet journal, one JSON entry a line.
    Log {
        #[command(flatten)]
        conn: Conn,
    },
    /// Run one node's agent: register, take assignments, upgrade the node with `duet`, report.
    Agent {
        fleet: PathBuf,
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        node: String,
        /// The node's own state directory (its duet sessions and the agent's journal).
        #[arg(long)]
        state_dir: PathBuf,
        /// The simulated world the fleet's scripts act on.
        #[arg(long)]
        sim: PathBuf,
        /// The runtime's `duet` binary (default: `duet-node` next to this binary, the same build).
        #[arg(long)]
        duet: Option<PathBuf>,
    },
}

#[derive(Args)]
struct RunArgs {
    fleet: PathBuf,
    #[command(flatten)]
    conn: Conn,
    /// The simulated world the fleet's scripts act on (`run` without it rehearses).
    #[arg(long)]
    sim: Option<PathBuf>,
    /// This coordinator's name in the election and the journal.
    #[arg(long, default_value = "coordinator")]
    name: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { fleet, json } => return check(&fleet, json),
        Command::Run { args, dir } if args.sim.is_none() => rehearse::rehearse(&args.fleet, dir),
        Command::Run { args, .. } => run(&args, &Operator::None),
        Command::Resume(args) => run(&args, &Operator::Resume),
        Command::Retry { args, stage, node, reason } => run(&args, &Operator::Retry { stage, node, reason }),
        Command::Status { fleet, conn, json } => status(&fleet, &conn, json),
        Command::Log { conn } => log(&conn),
        Command::Abort { conn, reason, name } => abort(&conn, &AbortRequest { by: name, reason }),
        Command::Agent { fleet, conn, node, state_dir, sim, duet } => {
            // duet-node (built with the fleet), else the duet beside it (`duet agent` / `duet
            // fleet` hand over from there).
            let duet = duet.unwrap_or_else(|| {
                let node = sibling("duet-node");
                if node.exists() { node } else { sibling("duet") }
            });
            serve(&fleet, &conn, node, state_dir, sim, duet)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("duet-fleet: {e}");
            ExitCode::from(duet_contract::exit::FAILURE)
        }
    }
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join(name))).unwrap_or_else(|| PathBuf::from(name))
}

fn compile(path: &Path) -> Result<FleetSpec, String> {
    let compilation = duet_fleet::compile::compile(path);
    eprint!("{}", compilation.render_human(false));
    let errors = compilation.errors();
    compilation.spec.ok_or_else(|| format!("{}: {errors} error(s); nothing was run", path.display()))
}

fn check(path: &Path, json: bool) -> ExitCode {
    let spec = match compile(path) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(duet_contract::exit::FAILURE);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&spec).expect("a spec serializes"));
    } else {
        println!("{}: valid ({} nodes, {} stages)", path.display(), spec.nodes.len(), spec.stages.len());
    }
    ExitCode::SUCCESS
}

fn connect(conn: &Conn) -> Result<Etcd, String> {
    let tls = conn.tls()?;
    let how = |e: CoordError| {
        let how = if tls.is_some() {
            "check --etcd-ca, --etcd-cert and --etcd-key (DUET_FLEET_ETCD_CA, _CERT, _KEY)"
        } else {
            "start etcd (docs/fleet.md), pass --etcd, or --etcd-ca for an etcd that speaks TLS"
        };
        format!("etcd at {}: {e}; {how}", conn.etcd.join(","))
    };
    let etcd = Etcd::connect_with(&conn.etcd, &conn.run, tls.as_ref()).map_err(how)?;
    // The connection is made on the first call: made here, a refusal is said with what to check.
    etcd.revision().map_err(how)?;
    Ok(etcd)
}

/// What the operator asked for besides carrying the run on.
enum Operator {
    None,
    Resume,
    Retry { stage: String, node: Option<String>, reason: String },
}

fn run(args: &RunArgs, operator: &Operator) -> Result<ExitCode, String> {
    if args.sim.is_none() {
        return Err(format!(
            "--sim DIR is required: the simulated world of the run (`duet-fleet run {}` without it rehearses a new run instead)",
            args.fleet.display()
        ));
    }
    let spec = compile(&args.fleet)?;
    let mut etcd = connect(&args.conn)?;
    etcd.grant_lease(5).map_err(|e| e.to_string())?;
    eprintln!("coordinator {}: campaigning for run `{}`", args.name, args.conn.run);
    let fence = etcd.elect(&args.name).map_err(|e| e.to_string())?;
    eprintln!("coordinator {}: leading (fence {})", args.name, fence.0);
    let journal = etcd.journal().map_err(|e| e.to_string())?;
    if journal.is_empty() {
        etcd.append(fence, &[Entry::Started { coordinator: args.name.clone() }]).map_err(|e| e.to_string())?;
    } else {
        eprintln!("coordinator {}: replaying {} journal entries", args.name, journal.len());
    }
    let again = coordinator::take_over(&mut etcd, fence).map_err(|e| e.to_string())?;
    if again > 0 {
        eprintln!("coordinator {}: {again} node(s) have work in flight; handed out again", args.name);
    }
    // The lease goes with the outcome, whatever it is: the next coordinator leads at once.
    let result = lead(&spec, &mut etcd, fence, &journal, args, operator);
    let _ = etcd.revoke_lease();
    result
}

fn lead(
    spec: &FleetSpec,
    etcd: &mut Etcd,
    fence: Fence,
    journal: &[Entry],
    args: &RunArgs,
    operator: &Operator,
) -> Result<ExitCode, String> {
    let state = RunState::fold(journal);
    match operator {
        Operator::None => {}
        Operator::Resume => {
            if state.paused.is_some() {
                etcd.append(fence, &[Entry::Resumed { by: args.name.clone() }]).map_err(|e| e.to_string())?;
                eprintln!("coordinator {}: the paused run goes on", args.name);
            }
        }
        Operator::Retry { stage, node, reason } => {
            let entries = retries(spec, &state, stage, node.as_deref(), &args.name, reason)?;
            etcd.append(fence, &entries).map_err(|e| e.to_string())?;
            for e in &entries {
                if let Entry::Retried { stage, node, .. } = e {
                    eprintln!("coordinator {}: stage `{stage}` node `{node}` goes again ({reason})", args.name);
                }
            }
        }
    }
    let sim = args.sim.clone().unwrap_or_default();
    let mut scripts = exec::Scripts { env: exec::Env { sim, run: args.conn.run.clone() } };
    coordinate(spec, etcd, fence, &mut scripts)
}

/// The `Retried` entries `duet-fleet retry STAGE [NODE]` journals, or why there is nothing to
/// retry.
fn retries(
    spec: &FleetSpec,
    journal: &RunState,
    stage: &str,
    node: Option<&str>,
    by: &str,
    reason: &str,
) -> Result<Vec<Entry>, String> {
    let Some(stage_spec) = spec.stages.iter().find(|s| s.id == stage) else {
        let known: Vec<&str> = spec.stages.iter().map(|s| s.id.as_str()).collect();
        return Err(format!("stage `{stage}` is not in {}; its stages are: {}", spec.file, known.join(", ")));
    };
    let retried = |node: &str| Entry::Retried {
        stage: stage.to_owned(),
        node: node.to_owned(),
        by: by.to_owned(),
        reason: reason.to_owned(),
    };
    let run = journal.stages.get(stage).cloned().unwrap_or_default();
    let failed: Vec<&String> =
        run.nodes.iter().filter(|(_, n)| n.failed.is_some() && !n.in_flight).map(|(k, _)| k).collect();
    if let Some(node) = node {
        if failed.iter().any(|f| *f == node) {
            return Ok(vec![retried(node)]);
        }
        let what = run.nodes.get(node).map_or("has no work in it", |n| {
            if n.in_flight {
                "is running it"
            } else if n.done {
                "is done"
            } else {
                "has not failed"
            }
        });
        return Err(format!("node `{node}` {what} in stage `{stage}`: nothing to retry; see `duet-fleet status`"));
    }
    let mut entries: Vec<Entry> = failed.iter().map(|n| retried(n)).collect();
    if entries.is_empty() && (run.run_once_failed.is_some() || !run.run_once_started.is_empty()) {
        // The run_once step again, on the node it runs for.
        let members = spec.members(&stage_spec.target, &journal.roles.clone().unwrap_or_default());
        entries.push(retried(members.first().map_or("", String::as_str)));
    }
    if entries.is_empty() {
        return Err(format!(
            "stage `{stage}` has no failed node and no failed run_once step: nothing to retry; see `duet-fleet status`"
        ));
    }
    Ok(entries)
}

fn coordinate(
    spec: &FleetSpec,
    etcd: &mut Etcd,
    fence: Fence,
    scripts: &mut exec::Scripts,
) -> Result<ExitCode, String> {
    let mut shown = Vec::new();
    loop {
        let revision = etcd.revision().map_err(|e| e.to_string())?;
        if let Some(request) = etcd.abort_request().map_err(|e| e.to_string())? {
            let state = RunState::fold(&etcd.journal().map_err(|e| e.to_string())?);
            if !state.finished && state.halted.is_none() {
                etcd.append(fence, &[aborted(&request)]).map_err(|e| e.to_string())?;
            }
            etcd.clear_abort_request().map_err(|e| e.to_string())?;
        }
        let decision = coordinator::step(spec, etcd, fence, scripts).map_err(|e| e.to_string())?;
        let state = RunState::fold(&etcd.journal().map_err(|e| e.to_string())?);
        if state.finished {
            println!("fleet {}: finished; every stage done", spec.file);
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(why) = &state.halted {
            println!("fleet {}: halted: {why}", spec.file);
            return Ok(ExitCode::from(duet_contract::exit::FAILURE));
        }
        // Paused for the operator: this coordinator steps down (its lease goes with it), so
        // that `duet-fleet resume` can lead.
        if let Some(why) = &state.paused {
            println!("fleet {}: paused: {why}; `duet-fleet resume {}` goes on", spec.file, spec.file);
            return Ok(ExitCode::from(duet_contract::exit::FAILURE));
        }
        if decision.actions.is_empty() {
            if decision.waiting != shown {
                for w in &decision.waiting {
                    eprintln!("waiting: {w}");
                }
                shown.clone_from(&decision.waiting);
            }
            etcd.wait_for_change(revision, Duration::from_secs(1)).map_err(|e| e.to_string())?;
        }
    }
}

fn status(path: &Path, conn: &Conn, json: bool) -> Result<ExitCode, String> {
    let spec = compile(path)?;
    let mut etcd = connect(conn)?;
    let journal = etcd.journal().map_err(|e| e.to_string())?;
    let live = etcd.live().map_err(|e| e.to_string())?;
    let state = RunState::fold(&journal);
    let decision = scheduler::decide(&spec, &state, &live);
    let view = duet_fleet::status::Status::of(&spec, &state, &live, &decision);
    if json {
        println!("{}", serde_json::to_string_pretty(&view).expect("status serializes"));
    } else {
        print!("{}", view.render());
    }
    Ok(ExitCode::SUCCESS)
}

fn aborted(request: &AbortRequest) -> Entry {
    Entry::Halted { reason: format!("aborted by {}: {}", request.by, request.reason) }
}

fn abort(conn: &Conn, request: &AbortRequest) -> Result<ExitCode, String> {
    let mut etcd = connect(conn)?;
    let state = RunState::fold(&etcd.journal().map_err(|e| e.to_string())?);
    if state.finished {
        return Err(format!("run `{}` has finished: nothing to abort", conn.run));
    }
    if state.halted.is_some() {
        println!("run `{}` is halted already: no new batch starts", conn.run);
        return Ok(ExitCode::SUCCESS);
    }
    if etcd.has_coordinator().map_err(|e| e.to_string())? {
        // The leader journals it at its next step.
        etcd.request_abort(request).map_err(|e| e.to_string())?;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let revision = etcd.revision().map_err(|e| e.to_string())?;
            if etcd.journal().map_err(|e| e.to_string())?.contains(&aborted(request)) {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "the coordinator of run `{}` did not take the abort within 60 s; the request stays in etcd; see `duet-fleet status`",
                    conn.run
                ));
            }
            etcd.wait_for_change(revision, Duration::from_secs(1)).map_err(|e| e.to_string())?;
        }
    } else {
        etcd.grant_lease(5).map_err(|e| e.to_string())?;
        let fence = etcd.elect(&request.by).map_err(|e| e.to_string())?;
        etcd.journal().map_err(|e| e.to_string())?;
        let written = etcd.append(fence, &[aborted(request)]).map_err(|e| e.to_string());
        let _ = etcd.revoke_lease();
        written?;
    }
    println!("run `{}` aborted: no new batch starts; the nodes' work in flight finishes", conn.run);
    Ok(ExitCode::SUCCESS)
}

fn log(conn: &Conn) -> Result<ExitCode, String> {
    let mut etcd = connect(conn)?;
    for entry in etcd.journal().map_err(|e| e.to_string())? {
        println!("{}", serde_json::to_string(&entry).expect("an entry serializes"));
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(
    fleet: &Path,
    conn: &Conn,
    node: String,
    state_dir: PathBuf,
    sim: PathBuf,
    duet: PathBuf,
) -> Result<ExitCode, String> {
    let spec = compile(fleet)?;
    if !spec.nodes.contains_key(&node) {
        return Err(format!(
            "node `{node}` is not in {}; its nodes are: {}",
            fleet.display(),
            spec.nodes.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let mut etcd = connect(conn)?;
    let agent = agent::Agent { spec, node, state_dir, env: exec::Env { sim, run: conn.run.clone() }, duet };
    agent.serve(&mut etcd)?;
    Ok(ExitCode::SUCCESS)
}
