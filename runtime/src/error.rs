//! The runtime's errors, by cause: what went wrong (naming the file, step or state it is about)
//! and what to do next. Each lower layer has its own typed error (the store's [`FsError`],
//! [`JournalError`] and [`LockError`], the machine's [`PlatformError`]); they convert into
//! [`Error`] at the command boundary, keeping them (a storage error keeps its `FsError`), and
//! the command reports it with [`Error::report`]. Every error fails the command
//! (`Outcome::Failure`, whose exit code `outcome.rs` decides).

use crate::platform::{PlatformError, PlatformErrorKind};
use crate::store::error::StoreError;
use crate::store::fsutil::{FsError, STORAGE_FIX};
use crate::store::journal::JournalError;
use crate::store::lock::LockError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The command cannot do what was asked (the state model refused it, an input is wrong, a
    /// file is not what duet wrote): nothing changed, and `help` says what would let it.
    #[error("{message}")]
    Refused { message: String, help: Option<String> },
    /// duet could not read or write a file of its own (the state directory: journal, snapshot,
    /// output, the simulated machine): nothing about the upgrade failed, and once `fix` is done
    /// `resume` continues.
    #[error("{message}")]
    Storage {
        message: String,
        fix: &'static str,
        /// The I/O error itself, for a caller to inspect. Not the `source()`: the message
        /// already says it, and a report walking the chain would say it twice (fsutil.rs).
        fs: Option<FsError>,
    },
    #[error(transparent)]
    Journal(JournalError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
}

impl Error {
    /// A refusal (see [`Error::Refused`]); [`Error::help`] adds what to do.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self::Refused { message: message.into(), help: None }
    }

    /// An I/O error on duet's own files, which freeing space (or making the file system
    /// writable again) mends; see [`Error::Storage`].
    pub(crate) fn storage(message: impl Into<String>) -> Self {
        Self::Storage { message: message.into(), fix: STORAGE_FIX, fs: None }
    }

    /// Sets what to do next (a refusal's; other errors say it themselves).
    #[must_use]
    pub(crate) fn help(self, help: impl Into<String>) -> Self {
        match self {
            Self::Refused { message, .. } => Self::Refused { message, help: Some(help.into()) },
            other => other,
        }
    }

    /// The same error, about `what` (`cannot create the session in DIR: ...`).
    #[must_use]
    pub(crate) fn within(self, what: &str) -> Self {
        match self {
            Self::Refused { message, help } => Self::Refused { message: format!("{what}: {message}"), help },
            Self::Storage { message, fix, fs } => Self::Storage { message: format!("{what}: {message}"), fix, fs },
            Self::Journal(JournalError::Io(e)) => Self::from(e).within(what),
            Self::Journal(e) => Self::Refused { message: format!("{what}: {e}"), help: Some(e.help().to_owned()) },
            other => other,
        }
    }

    /// What fixes a storage error (before "then" and the command that continues), if it is one.
    pub(crate) fn storage_fix(&self) -> Option<&'static str> {
        match self {
            Self::Storage { fix, .. } => Some(fix),
            Self::Journal(JournalError::Io(e)) => Some(e.fix()),
            Self::Platform(e) if e.kind == PlatformErrorKind::Storage => Some(e.fix),
            _ => None,
        }
    }

    /// What to do next.
    pub(crate) fn next(&self) -> Option<String> {
        if let Some(fix) = self.storage_fix() {
            return Some(format!("{fix}, then `duet resume`: it continues from the journal"));
        }
        match self {
            Self::Refused { help, .. } => help.clone(),
            Self::Journal(e) => Some(e.help().to_owned()),
            Self::Lock(e) => Some(e.help().to_owned()),
            Self::Platform(e) => e.help.clone(),
            Self::Storage { .. } => None,
        }
    }

    /// The error as a command reports it: `error: ...` and `  help: ...`, with `help` in place
    /// of [`Error::next`] when given. A message may quote a file name or a plan's text: shown,
    /// never obeyed by the terminal.
    pub(crate) fn report(&self, help: Option<String>) -> String {
        let mut out = format!("error: {}", duet_compiler::text::escape(&self.to_string()));
        if let Some(help) = help.or_else(|| self.next()) {
            out.push_str("\n  help: ");
            out.push_str(&duet_compiler::text::escape(&help));
        }
        out
    }
}

impl From<FsError> for Error {
    fn from(e: FsError) -> Self {
        Self::Storage { message: e.to_string(), fix: e.fix(), fs: Some(e) }
    }
}

impl From<JournalError> for Error {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Io(e) => e.into(),
            e => Self::Journal(e),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Fs(e) => e.into(),
            StoreError::Journal(e) => e.into(),
            StoreError::Refused { message, help } => Self::Refused { message, help: Some(help) },
            StoreError::Within { what, source } => Self::from(*source).within(&what),
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_error_says_to_fix_the_disk_then_resume_and_keeps_its_source() {
        let e = Error::from(FsError::new("write", std::path::Path::new("/s/journal"), std::io::Error::other("full")));
        assert_eq!(e.storage_fix(), Some(STORAGE_FIX));
        assert!(matches!(&e, Error::Storage { fs: Some(_), .. }), "the I/O error is kept");
        assert_eq!(
            e.within("cannot create the session in /s").report(None),
            format!(
                "error: cannot create the session in /s: cannot write /s/journal: full\n  help: {STORAGE_FIX}, then `duet resume`: it continues from the journal"
            )
        );
    }

    #[test]
    fn a_refusal_reports_its_help_escaped() {
        let e = Error::new("cannot merge: no session\u{1b}[2J").help("run `duet split PLAN` first");
        assert_eq!(e.storage_fix(), None);
        assert_eq!(e.report(None), "error: cannot merge: no session\\x{1b}[2J\n  help: run `duet split PLAN` first");
    }

    #[test]
    fn a_platform_error_keeps_its_kind() {
        let unreachable = Error::from(PlatformError::unreachable("the Upgrade Side is not responding"));
        assert_eq!(unreachable.storage_fix(), None);
        assert!(Error::from(PlatformError::storage("cannot write the event log")).storage_fix().is_some());
    }
}
