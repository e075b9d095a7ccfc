//! A platform failure, typed by what recovery fits it: the runtime turns a [`Storage`] failure
//! into a stop that `resume` continues (nothing about the upgrade failed), and every other kind
//! into a failed step whose help says what to do. The Linux platform and a fleet node add kinds
//! of their own here.
//!
//! [`Storage`]: PlatformErrorKind::Storage

use crate::store::fsutil::{FsError, STORAGE_FIX};

/// What recovery fits a platform failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PlatformErrorKind {
    /// The machine is not in the state the operation needs, or has no such thing (a service, an
    /// event log): trying again changes nothing until the plan or the machine is corrected.
    Refused,
    /// The operation failed this time, and trying it again may succeed.
    Transient,
    /// A side (or the machine) does not answer: check it, then try again.
    Unreachable,
    /// duet could not read or write a file of its own while it drove the machine (the sim's
    /// state, an event log it keeps): fix the disk, then `duet resume`.
    Storage,
}

/// What failed, in words an administrator can act on, and what to do next (a failed step shows
/// both).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct PlatformError {
    pub(crate) kind: PlatformErrorKind,
    pub(crate) message: String,
    pub(crate) help: Option<String>,
    /// For a storage failure: what fixes it (`FsError::fix`).
    pub(crate) fix: &'static str,
}

impl PlatformError {
    fn of(kind: PlatformErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), help: None, fix: STORAGE_FIX }
    }

    pub(crate) fn refused(message: impl Into<String>) -> Self {
        Self::of(PlatformErrorKind::Refused, message)
    }

    pub(crate) fn transient(message: impl Into<String>) -> Self {
        Self::of(PlatformErrorKind::Transient, message)
    }

    pub(crate) fn unreachable(message: impl Into<String>) -> Self {
        Self::of(PlatformErrorKind::Unreachable, message)
    }

    pub(crate) fn storage(message: impl Into<String>) -> Self {
        Self::of(PlatformErrorKind::Storage, message)
    }

    #[must_use]
    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// An I/O error on the platform's own files (the sim's machine under the state directory).
impl From<FsError> for PlatformError {
    fn from(e: FsError) -> Self {
        Self { fix: e.fix(), ..Self::storage(e.to_string()) }
    }
}

pub(crate) type PlatformResult<T> = Result<T, PlatformError>;
