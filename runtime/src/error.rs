//! The runtime's user-facing error: what went wrong (naming the file, step or state it is
//! about) and what to do next. Library-level errors convert into it at the command boundary.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Error {
    pub(crate) message: String,
    pub(crate) help: Option<String>,
}

impl Error {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), help: None }
    }

    #[must_use]
    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl From<crate::fsutil::FsError> for Error {
    fn from(e: crate::fsutil::FsError) -> Self {
        Self::new(e.to_string()).help("check the state directory's permissions and free space, then `duet resume`")
    }
}

impl From<crate::journal::JournalError> for Error {
    fn from(e: crate::journal::JournalError) -> Self {
        let help = e.help();
        Self::new(e.to_string()).help(help)
    }
}

impl From<crate::lock::LockError> for Error {
    fn from(e: crate::lock::LockError) -> Self {
        let help = e.help();
        Self::new(e.to_string()).help(help)
    }
}

pub(crate) type Result<T> = std::result::Result<T, Error>;
