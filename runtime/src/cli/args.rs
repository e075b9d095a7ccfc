//! The command line, as clap parses it. Usage errors exit 2 (clap's default).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use duet_contract::record::Through;

#[derive(Debug, Parser)]
#[command(
    name = "duet",
    version,
    about = "Declarative, checkable, interruptible online server upgrades",
    propagate_version = true
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check a plan (and the plans it includes) for every mistake, offline.
    Check {
        /// The top-level plan file.
        plan: PathBuf,
        /// Check against this machine inventory (disks, executables, services, event logs).
        #[arg(long, value_name = "FILE")]
        inventory: Option<PathBuf>,
        /// `human` renders each problem with its source; `json`, `sarif` (SARIF 2.1.0, for
        /// code-scanning UIs) and `junit` (`JUnit` XML, for test reports) are for CI.
        #[arg(long, value_enum, default_value_t = CheckFormat::Human)]
        format: CheckFormat,
        /// Trust the minisign public keys (NAME.pub) in this directory to sign templates.
        #[arg(long, value_name = "DIR", env = "DUET_KEYRING")]
        keyring: Option<PathBuf>,
    },
    /// Compile a plan to the steps of every request.
    Compile {
        /// The top-level plan file.
        plan: PathBuf,
        /// Bind to this machine inventory: classify its disks and check executables, services and logs.
        #[arg(long, value_name = "FILE")]
        inventory: Option<PathBuf>,
        /// What to print.
        #[arg(long, value_enum, default_value_t = CompileFormat::Summary)]
        format: CompileFormat,
        /// Trust the minisign public keys (NAME.pub) in this directory to sign templates.
        #[arg(long, value_name = "DIR", env = "DUET_KEYRING")]
        keyring: Option<PathBuf>,
    },
    /// Show which file and line set each resolved setting, and what it overrode.
    Explain {
        /// The top-level plan file.
        plan: PathBuf,
        /// One setting: `title`, `comments`, `disks`, `logs.staging_dir`, `versions`, `on_failure`, `service:NAME`,
        /// `action:ID`, `log:NAME`, `task:ID`, `check:ID`, `approval:ID`, `notify:ID`.
        key: Option<String>,
        /// Also check against this machine inventory.
        #[arg(long, value_name = "FILE")]
        inventory: Option<PathBuf>,
        /// Trust the minisign public keys (NAME.pub) in this directory to sign templates.
        #[arg(long, value_name = "DIR", env = "DUET_KEYRING")]
        keyring: Option<PathBuf>,
    },
    /// Make a minisign key pair for signing templates: NAME.key (secret) and NAME.pub.
    Keygen {
        /// Where to write them: `DIR/NAME` gives `DIR/NAME.key` and `DIR/NAME.pub`.
        #[arg(value_name = "PATH")]
        out: PathBuf,
    },
    /// Sign a template with a secret key: writes FILE.minisig next to it.
    Sign {
        /// The template to sign.
        file: PathBuf,
        /// The secret key (`duet keygen`'s NAME.key, or an unencrypted `minisign -G -W` key).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The signature's trusted comment (signed too) [default: the file's name].
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
    },
    /// Run a readiness check (guide table 5-1, the plan's readiness and advanced actions) in Idle.
    Readiness {
        /// The top-level plan file.
        plan: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Start a session: readiness check, PrepareSplit, ExecuteSplit.
    Split {
        /// The top-level plan file (snapshotted into the session).
        plan: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run the plan's upgrade tasks on the Upgrade Side (state Split).
    Upgrade {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Let a `duet run` waiting for an approval go on (journaled with who and why).
    Approve {
        /// Why it may go on (shown in the activity log).
        #[arg(long, value_parser = reason)]
        reason: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// PrepareMerge and ExecuteMerge: the applications restart from the Upgrade Side.
    Merge {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Make the upgrade permanent (cannot be undone).
    Commit {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Return to the original software (from Prepare Split, Split, Prepare Merge or Merge).
    Abort {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Clean up after a commit or an abort; the session moves to history/.
    Finish {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run a Broken request again from its failed step, then the rest of its operation.
    ///
    /// With `--from STEP`, run that earlier step of the current request again, and every step
    /// after it (the steps that depend on it). Refused for platform steps, for a step whose
    /// re-run would repeat a platform operation the machine is past, and after a commit.
    Retry {
        /// The step to run again, with everything after it (`action:ID@SIDE`, `service:NAME@SIDE`, `logs:backup`).
        #[arg(long, value_name = "STEP", requires = "reason")]
        from: Option<String>,
        /// Why (recorded in the journal and the activity log, with who and when).
        #[arg(long, value_name = "TEXT", value_parser = reason)]
        reason: Option<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Mark a failed action step of the Broken request done without running it, then go on.
    ///
    /// Refused for anything but a failed action step, and after a commit. Recorded with who,
    /// when and why in the journal and the activity log.
    Skip {
        /// The failed action step (`action:ID@SIDE`; `duet status` names it).
        step: String,
        /// Why it is safe to go on without it.
        #[arg(long, value_name = "TEXT", value_parser = reason)]
        reason: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Continue an interrupted request (after a crash or kill) where it stopped.
    Resume {
        /// Set a torn or corrupt journal tail aside and continue from the last intact record.
        #[arg(long)]
        repair_journal: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Drive consecutive requests from the current state to `--through` (a full rehearsal on the sim).
    Run {
        /// The top-level plan file (a session in progress goes on only if it was started from it).
        plan: PathBuf,
        /// Where to stop.
        #[arg(long, default_value = "finish", value_parser = through())]
        through: Through,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Adopt the trees of a Linux machine file: each becomes generation 1, its path a symlink (once; reversible)
    Adopt {
        /// The Linux machine file (`platform: linux`).
        #[arg(long, value_name = "FILE")]
        inventory: PathBuf,
        /// Make each tree a plain directory again (its current generation).
        #[arg(long)]
        undo: bool,
    },
    /// Write a machine file from this host (`--platform linux`): its trees, data paths and services
    Inventory(InventoryArgs),
    /// At boot, before the applications: a Linux machine merged and not committed goes back (or keeps the new version)
    Recover {
        #[command(flatten)]
        run: RunArgs,
    },
    /// A fleet of machines coordinated through etcd: `duet fleet check|run|status|resume|retry|abort|log ...`, carried out by the `duet-fleet` program
    #[command(disable_help_flag = true)]
    Fleet {
        /// What `duet-fleet` gets (`duet fleet --help` lists its commands).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
        args: Vec<std::ffi::OsString>,
    },
    /// One node's fleet agent: `duet-fleet agent ...`
    #[command(disable_help_flag = true)]
    Agent {
        /// What `duet-fleet agent` gets (`duet agent --help` lists them).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
        args: Vec<std::ffi::OsString>,
    },
    /// The status bar (hardware | upgrade state | operational state, partner) and the services.
    Status {
        /// Machine-readable.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// The activity log of the session in progress, else of the latest readiness check or finished session.
    Log {
        /// `text` for people, `json` for programs, `xml` as the guide saves it.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        format: LogFormat,
        /// A finished session (its id under `STATE_DIR/history`).
        #[arg(long, value_name = "ID")]
        session: Option<String>,
        /// Keep printing the session in progress as another `duet` drives it, until it finishes
        /// (waits for one to start); `--format json` prints one event per line.
        #[arg(long, short, conflicts_with = "session")]
        follow: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// The terminal console: navigation bar, pages, the activity log as a tree, the status bar.
    ///
    /// It follows a session another `duet` drives (reading, never locking) and runs commands
    /// itself (each in a process of its own: closing the console never stops one).
    Console {
        /// The plan a readiness check or a split starts from [default: the session's].
        plan: Option<PathBuf>,
        #[command(flatten)]
        state: StateArgs,
    },
    /// The session as one self-contained HTML file for a change board: timeline, DAGs, failures,
    /// operators' actions, backups.
    Report {
        /// A finished session (its id under `STATE_DIR/history`) [default: the session in
        /// progress, else the latest].
        #[arg(long, value_name = "ID")]
        session: Option<String>,
        /// Write it to FILE (replaced atomically) instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Print a shell completion script (README: "Shell completions and man pages").
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Write the man pages, duet(1) and one per command (`duet-run.1`, ...), into a directory.
    Man {
        /// Where to write them (created if missing; existing pages are replaced).
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
    },
}

/// `duet inventory`.
#[derive(Clone, Debug, Args)]
pub(crate) struct InventoryArgs {
    /// The platform the machine file is for.
    #[arg(long, value_enum)]
    pub(crate) platform: InventoryPlatform,
    /// An application tree, `NAME=PATH` (a system disk: split and swapped).
    #[arg(long, value_name = "NAME=PATH", required = true)]
    pub(crate) tree: Vec<String>,
    /// A data path, `NAME=PATH` (shared, hidden from the Upgrade Side).
    #[arg(long, value_name = "NAME=PATH")]
    pub(crate) data: Vec<String>,
    /// A service of systemd, `NAME=UNIT` (exec services are written by hand: docs/linux.md).
    #[arg(long, value_name = "NAME=UNIT")]
    pub(crate) systemd: Vec<String>,
    /// Write the machine file here (atomically) instead of to stdout.
    #[arg(long, short, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum InventoryPlatform {
    Linux,
}

/// Where duet keeps sessions and the simulated machine.
#[derive(Clone, Debug, Args)]
pub(crate) struct StateArgs {
    /// The state directory [default: `$XDG_STATE_HOME/duet`, else `~/.local/state/duet`].
    #[arg(long, value_name = "DIR", env = "DUET_STATE_DIR")]
    pub(crate) state_dir: Option<PathBuf>,
    /// Build the simulated machine from this inventory (default: the built-in 320Ma).
    #[arg(long, value_name = "FILE")]
    pub(crate) inventory: Option<PathBuf>,
}

/// What every upgrade command takes.
#[derive(Clone, Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) state: StateArgs,
    /// How long a service may take to stop or start.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    pub(crate) service_timeout: std::time::Duration,
    /// Print only requests and problems, not every step.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    /// Trust the minisign public keys (NAME.pub) in this directory to sign templates.
    #[arg(long, value_name = "DIR", env = "DUET_KEYRING")]
    pub(crate) keyring: Option<PathBuf>,
    /// `human`: a line per event (with progress lines on a terminal); `json`: newline-delimited
    /// JSON events with a `format_version`, for pipelines (docs/runtime.md).
    #[arg(long, value_enum, default_value_t = RunFormat::Human)]
    pub(crate) format: RunFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum RunFormat {
    Human,
    Json,
}

/// `--through`: one of [`Through::ALL`], listed in `--help` and in the usage error.
fn through() -> impl clap::builder::TypedValueParser<Value = Through> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Through::ALL.map(Through::as_str))
        .map(|name| Through::from_name(&name).expect("one of the possible values"))
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    duet_compiler::duration::parse(text).map(std::time::Duration::from_millis)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
    Xml,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum CheckFormat {
    Human,
    Json,
    /// SARIF 2.1.0: code-scanning UIs show each problem on its line.
    Sarif,
    /// `JUnit` XML: one test case per plan file, a failure per file with errors.
    Junit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompileFormat {
    /// The guide's Upgrade Summary and the steps of each request.
    Summary,
    /// The compiled plan: the contract the runtime executes.
    Json,
    /// Graphviz DOT, one cluster per request.
    Dot,
    /// Mermaid flowchart, one subgraph per request.
    Mermaid,
    /// For every step of every request, what a failure there leads to (hold, or the abort).
    Failures,
}

/// An operator's reason: one line of text (it becomes one line of the activity log, so it
/// cannot forge others), not blank.
fn reason(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("give a reason: it is recorded with who asked and when".into());
    }
    if text.chars().any(char::is_control) {
        return Err("a reason is one line of text, without control characters".into());
    }
    Ok(text.to_owned())
}
