//! The command line, as clap parses it. Usage errors exit 2 (clap's default).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
        /// `human` renders each problem with its source; `json` is for CI.
        #[arg(long, value_enum, default_value_t = CheckFormat::Human)]
        format: CheckFormat,
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
    },
    /// Show which file and line set each resolved setting, and what it overrode.
    Explain {
        /// The top-level plan file.
        plan: PathBuf,
        /// One setting: `title`, `comments`, `disks`, `logs.staging_dir`, `service:NAME`, `action:ID`, `log:NAME`.
        key: Option<String>,
        /// Also check against this machine inventory.
        #[arg(long, value_name = "FILE")]
        inventory: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum CheckFormat {
    Human,
    Json,
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
}
