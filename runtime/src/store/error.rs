//! The store's errors: an I/O error on duet's own files ([`FsError`]), a journal that cannot be
//! read or written ([`JournalError`]), or a directory that is not what duet wrote or expects (a
//! state directory that is a file, a session that exists already, a journal that holds no
//! session). The runtime's `Error` wraps them at the command boundary.

use crate::store::fsutil::FsError;
use crate::store::journal::JournalError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Nothing changed; `help` says what would let the command go on.
    #[error("{message}")]
    Refused { message: String, help: String },
    /// `source`, about `what` (`cannot create the session in DIR`).
    #[error("{what}: {source}")]
    Within {
        what: String,
        #[source]
        source: Box<StoreError>,
    },
}

impl StoreError {
    pub(crate) fn refused(message: impl Into<String>, help: impl Into<String>) -> Self {
        Self::Refused { message: message.into(), help: help.into() }
    }

    #[must_use]
    pub(crate) fn within(self, what: impl Into<String>) -> Self {
        Self::Within { what: what.into(), source: Box::new(self) }
    }
}

pub(crate) type StoreResult<T> = Result<T, StoreError>;
