//! The runtime's user-facing error: what went wrong (naming the file, step or state it is
//! about) and what to do next. Library-level errors convert into it at the command boundary.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Error {
    pub(crate) message: String,
    pub(crate) help: Option<String>,
    /// duet could not read or write a file of its own (the state directory: journal, snapshot,
    /// output, the simulated machine): nothing about the upgrade failed, and once the disk is
    /// fixed `resume` continues.
    pub(crate) storage: bool,
    /// For a storage error: what fixes it (see [`crate::store::fsutil::FsError::fix`]).
    pub(crate) fix: &'static str,
}

impl Error {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), help: None, storage: false, fix: STORAGE_FIX }
    }

    /// An I/O error on duet's own files; see [`Error::storage`].
    pub(crate) fn storage(message: impl Into<String>) -> Self {
        Self::storage_fixed(message, STORAGE_FIX)
    }

    /// A storage error that `fix` (not freeing space) mends.
    pub(crate) fn storage_fixed(message: impl Into<String>, fix: &'static str) -> Self {
        Self { storage: true, fix, ..Self::new(message) }
            .help(format!("{fix}, then `duet resume`: it continues from the journal"))
    }

    #[must_use]
    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A message may quote a file name or a plan's text: shown, never obeyed by the terminal.
        write!(f, "error: {}", duet_compiler::text::escape(&self.message))?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {}", duet_compiler::text::escape(help))?;
        }
        Ok(())
    }
}

use crate::store::fsutil::STORAGE_FIX;

impl From<crate::store::fsutil::FsError> for Error {
    fn from(e: crate::store::fsutil::FsError) -> Self {
        Self::storage_fixed(e.to_string(), e.fix())
    }
}

impl From<crate::store::journal::JournalError> for Error {
    fn from(e: crate::store::journal::JournalError) -> Self {
        match e {
            crate::store::journal::JournalError::Io(e) => e.into(),
            e => {
                let help = e.help();
                Self::new(e.to_string()).help(help)
            }
        }
    }
}

impl From<crate::store::lock::LockError> for Error {
    fn from(e: crate::store::lock::LockError) -> Self {
        let help = e.help();
        Self::new(e.to_string()).help(help)
    }
}

pub(crate) type Result<T> = std::result::Result<T, Error>;
