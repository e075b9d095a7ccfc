//! Where duet keeps what, spelled once (execution model 6):
//!
//! ```text
//! STATE_DIR/
//!   lock                    held by the one process driving this directory
//!   sim/                    the simulated machine (platform::sim)
//!   session/                the session in progress, if any
//!     journal               append-only, checksummed (journal.rs)
//!     plan/compiled.json    the compiled plan the session runs, whatever happens to the files
//!     plan/sources.json     where each source file came from
//!     plan/sources/N-NAME   a copy of every plan file, as compiled
//!     output/REQUEST/STEP.ATTEMPT.{stdout,stderr}   the full output of each action attempt
//!     evidence/, logs/      Upgrade Side evidence and log backups, when the plan has no staging_dir
//!   readiness/              the last readiness check run in Idle (same layout)
//!   history/ID/             finished (or never started) sessions
//!   .new-PID/, .old-PID/    directories being built or replaced (store::staged); swept
//! ```

use std::path::{Path, PathBuf};

use duet_compiler::compiled::RequestName;

use crate::store::error::{StoreError, StoreResult};
use crate::store::fsutil::{self, at};

/// Where duet keeps its state.
#[derive(Clone, Debug)]
pub(crate) struct StateDir {
    pub(crate) root: PathBuf,
}

impl StateDir {
    pub(crate) fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub(crate) fn session(&self) -> PathBuf {
        self.root.join("session")
    }

    /// Whether a session is in progress (its journal exists).
    pub(crate) fn in_session(&self) -> bool {
        SessionDir(&self.session()).journal().exists()
    }

    pub(crate) fn readiness(&self) -> PathBuf {
        self.root.join("readiness")
    }

    pub(crate) fn history(&self) -> PathBuf {
        self.root.join("history")
    }

    /// A scratch directory name of this process (`.new-PID`, `.old-PID`): [`StateDir::sweep`]
    /// removes it if the process dies before it is renamed into place.
    pub(crate) fn scratch(&self, kind: Scratch) -> PathBuf {
        let prefix = match kind {
            Scratch::New => ".new-",
            Scratch::Old => ".old-",
        };
        self.root.join(format!("{prefix}{}", std::process::id()))
    }

    /// Refuses a state directory that is something else (a file).
    pub(crate) fn usable(&self) -> StoreResult<()> {
        if self.root.exists() && !self.root.is_dir() {
            return Err(StoreError::refused(
                format!("the state directory {} is not a directory", self.root.display()),
                "give a directory with `--state-dir DIR` (or DUET_STATE_DIR)",
            ));
        }
        Ok(())
    }

    pub(crate) fn ensure(&self) -> StoreResult<()> {
        self.usable()?;
        fsutil::create_dir_all_durable(&self.root).map_err(|e| {
            StoreError::refused(
                at("create", &self.root)(e).to_string(),
                "choose a state directory you can write (`--state-dir DIR`, DUET_STATE_DIR)",
            )
        })
    }

    /// Removes directories a killed process left half-built (they were never renamed into place).
    pub(crate) fn sweep(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".new-") || name.starts_with(".old-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// What a scratch directory is for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scratch {
    /// A directory being built, to be renamed into place.
    New,
    /// A directory being moved out of the way of another.
    Old,
}

/// The files of one session (or readiness check) directory.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SessionDir<'a>(pub(crate) &'a Path);

impl SessionDir<'_> {
    pub(crate) fn journal(self) -> PathBuf {
        self.0.join("journal")
    }

    pub(crate) fn compiled(self) -> PathBuf {
        self.0.join("plan/compiled.json")
    }

    pub(crate) fn sources_manifest(self) -> PathBuf {
        self.0.join("plan/sources.json")
    }

    pub(crate) fn sources(self) -> PathBuf {
        self.0.join("plan/sources")
    }

    /// The copy of the `n`th source file (from 1), relative to the session directory.
    pub(crate) fn source(n: usize, name: &str) -> String {
        format!("plan/sources/{n}-{name}")
    }

    /// Where an action attempt's full output goes (`.stdout` and `.stderr` are added).
    pub(crate) fn output(self, request: RequestName, step: &str, attempt: u32) -> PathBuf {
        self.0.join(format!("output/{request}/{}.{attempt}", file_name(step)))
    }

    /// Where one try of a verification gate's command puts its output (`.stdout`, `.stderr`
    /// added): beside its step's attempts, one file per try.
    pub(crate) fn check_output(self, request: RequestName, step: &str, attempt: u32, try_number: u32) -> PathBuf {
        self.0.join(format!("output/{request}/{}.{attempt}.try{try_number}", file_name(step)))
    }

    /// Where a notification's output goes (`.stdout`, `.stderr` added).
    pub(crate) fn notify_output(self, event: &str, id: &str) -> PathBuf {
        self.0.join(format!("output/notify/{}-{}", file_name(event), file_name(id)))
    }

    /// Where `duet approve` leaves the approval of an approval step for the waiting duet.
    pub(crate) fn approval(self, step: &str) -> PathBuf {
        self.0.join("approvals").join(format!("{}.json", file_name(step)))
    }

    /// Event logs backed up (`Backup::Logs`) or evidence collected before an abort.
    pub(crate) fn backups(self, kind: Backup) -> PathBuf {
        self.0.join(kind.as_str())
    }
}

/// What a backup step copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backup {
    Logs,
    Evidence,
}

impl Backup {
    /// Its directory's name, in the session directory or under the plan's staging directory.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Logs => "logs",
            Self::Evidence => "evidence",
        }
    }
}

/// Step ids as file names: `action:x@upgrade` -> `action-x@upgrade`.
fn file_name(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || "@.-_".contains(c) { c } else { '-' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_ids_become_safe_file_names() {
        assert_eq!(file_name("action:app-stop@upgrade"), "action-app-stop@upgrade");
        assert_eq!(file_name("service:W3 SVC/x@production"), "service-W3-SVC-x@production");
        let dir = SessionDir(Path::new("/s"));
        let output = dir.output(RequestName::ExecuteSplit, "action:a/b@upgrade", 2);
        assert_eq!(output, Path::new("/s/output/ExecuteSplit/action-a-b@upgrade.2"));
    }
}
