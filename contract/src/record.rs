//! What the journal records (execution model 6 and 7): the entries of a session's or a
//! readiness check's journal. The journal itself (framing, checksums, versions) is the
//! runtime's `store::journal`; this is its vocabulary. Every activity-log line is derived from these.

use duet_compiler::compiled::RequestName;
use duet_compiler::inventory::Startup;
use serde::{Deserialize, Serialize};

/// How far `duet run` should drive the session; `resume` carries on to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Through {
    Split,
    Merge,
    Commit,
    Finish,
}

impl Through {
    /// In order: each goes further than the one before.
    pub const ALL: [Self; 4] = [Self::Split, Self::Merge, Self::Commit, Self::Finish];

    /// As typed (`--through merge`) and as journaled.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Split => "split",
            Self::Merge => "merge",
            Self::Commit => "commit",
            Self::Finish => "finish",
        }
    }
}

/// How a step attempt ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum StepResult {
    Success {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        message: String,
    },
    Failed {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        help: Option<String>,
    },
    /// Not run now: found already done on the platform when reconciling after a crash.
    Reconciled { message: String },
    /// Cut short: duet was told to stop (a second signal). Neither done nor failed: like an
    /// attempt a crash interrupted, `resume` reconciles it. (Journals written before
    /// `storage-failed` existed use this for that cause too.)
    Interrupted { message: String },
    /// Cut short: duet could not write what the step needs (the platform's state, a record it
    /// must keep before going on). Neither done nor failed: once the disk is fixed, `resume`
    /// reconciles it as it does an interrupted attempt.
    StorageFailed { message: String },
    /// Never started: duet could not prepare it (a file of its own it could not write). The
    /// step is pending again; `resume` runs it.
    NotStarted { message: String },
    /// Not run: an operator marked it done (`duet skip`), saying why.
    Skipped { reason: String, user: String },
}

impl StepResult {
    pub fn succeeded(&self) -> bool {
        matches!(self, Self::Success { .. } | Self::Reconciled { .. } | Self::Skipped { .. })
    }

    /// Cut short, by a signal or a storage failure: the attempt may have done part of its work,
    /// and a resume reconciles it.
    pub fn cut_short(&self) -> bool {
        matches!(self, Self::Interrupted { .. } | Self::StorageFailed { .. })
    }
}

/// The output of an action attempt: the tail of each stream and where the whole of it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    pub stdout: Stream,
    pub stderr: Stream,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tail: String,
    #[serde(default)]
    pub bytes: u64,
    /// Relative to the session directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// Externally tagged (`{"step-finished": {...}}`): read without buffering each record first,
/// which an internally tagged enum costs (a third of reading a 10,000-step journal).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Entry {
    /// The first entry of every journal.
    Begin {
        /// Session id (or `readiness-<time>` for a readiness check in Idle).
        id: String,
        plan: String,
        platform: String,
        duet: String,
    },
    /// A command started driving requests. `goal` is where `duet run` is headed.
    Operation {
        /// The command (`split` is CheckReadiness, PrepareSplit, ExecuteSplit).
        operation: Command,
        requests: Vec<RequestName>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        goal: Option<Through>,
        command: String,
        user: String,
        /// Started by duet itself, not by an operator: the plan says `on_failure: abort` (or an
        /// approval's `on_expiry: abort`), and this step failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        automatic: Option<Broken>,
    },
    RequestStarted {
        request: RequestName,
    },
    StepStarted {
        request: RequestName,
        step: String,
        attempt: u32,
    },
    StepFinished {
        request: RequestName,
        step: String,
        attempt: u32,
        /// Nested, not flattened: serde's `flatten` buffers every record twice on reading, and
        /// a resume reads one of these per completed step.
        result: StepResult,
        duration_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Output>,
    },
    /// A service's startup type and run state, saved before ExecuteSplit disables it, so
    /// ExecuteMerge can restore it (and a repeated step never saves `Disabled`).
    ServiceSaved {
        service: String,
        startup: Startup,
        running: bool,
    },
    /// Information for the activity log: progress, readiness findings, reconciliation.
    Note {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<RequestName>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<String>,
        severity: Severity,
        message: String,
    },
    RequestFinished {
        request: RequestName,
        /// `None`: Ready. `Some`: Broken, and why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        broken: Option<Broken>,
        /// duet's peak resident memory so far, in KiB (Linux `VmHWM`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peak_rss_kib: Option<u64>,
    },
    /// An operator asked to retry the failed request (audit trail); with `from`, to run that
    /// step and every step after it (`steps`) again (`duet retry --from`).
    Retry {
        request: RequestName,
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        steps: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An approval step started waiting; `deadline_ms` (Unix ms) is when it expires, fixed at
    /// the first wait so that a resume does not extend it.
    AwaitingApproval {
        request: RequestName,
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline_ms: Option<u64>,
    },
    /// An operator approved (`duet approve`), saying why.
    Approved {
        request: RequestName,
        step: String,
        user: String,
        reason: String,
    },
    /// An operator marked a failed action step done without running it (`duet skip`).
    Skip {
        request: RequestName,
        step: String,
        user: String,
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broken {
    pub step: String,
    pub message: String,
}

/// Severity of an activity-log entry (guide table 4-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    Success,
    Pending,
    Information,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::Pending => "Pending",
            Self::Information => "Information",
            Self::Warning => "Warning",
            Self::Error => "Error",
        }
    }
}

/// A command the state model can accept or refuse; the journal's `operation` records name the
/// one that started them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    Readiness,
    Split,
    /// Runs the plan's upgrade tasks (the `Upgrade` request).
    Upgrade,
    Merge,
    Commit,
    Abort,
    Finish,
    Retry,
    Resume,
    Skip,
}

impl Command {
    /// Every command the state model judges.
    pub const ALL: [Self; 10] = [
        Self::Readiness,
        Self::Split,
        Self::Upgrade,
        Self::Merge,
        Self::Commit,
        Self::Abort,
        Self::Finish,
        Self::Retry,
        Self::Resume,
        Self::Skip,
    ];

    /// As typed: `duet readiness`, `duet split`, ...
    pub fn name(self) -> &'static str {
        match self {
            Self::Readiness => "readiness",
            Self::Upgrade => "upgrade",
            other => other.verb(),
        }
    }

    /// What it does, after "cannot".
    pub fn verb(self) -> &'static str {
        match self {
            Self::Readiness => "run a readiness check",
            Self::Split => "split",
            Self::Upgrade => "run the upgrade tasks",
            Self::Merge => "merge",
            Self::Commit => "commit",
            Self::Abort => "abort",
            Self::Finish => "finish",
            Self::Retry => "retry",
            Self::Resume => "resume",
            Self::Skip => "skip",
        }
    }
}
