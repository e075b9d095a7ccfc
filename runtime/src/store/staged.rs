//! A directory built aside and put in place in one step (rustup's component transaction is the
//! model): it is made under a scratch name, filled, then committed over its destination
//! durably; dropped uncommitted (an error, a panic), a new one is removed and an adopted one
//! goes back where it was. The destination holds the old directory or the new one, never half
//! of one. Two windows remain, both crashes of an adopted directory's move: between `adopt`'s
//! rename and the commit, and inside the fallback of a file system that cannot exchange; the
//! moved directory is then under its scratch name, which the next sweep removes (the readiness
//! check it holds is lost; nothing of a session in progress is ever adopted).

use std::path::{Path, PathBuf};

use crate::store::fsutil::{self, FsError, at};
use crate::store::layout::{Scratch, StateDir};

#[derive(Debug)]
pub(crate) struct StagedDir {
    path: PathBuf,
    committed: bool,
    /// An adopted directory's own place: dropped uncommitted, it goes back there.
    origin: Option<PathBuf>,
}

/// How a commit treats what is at the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Commit {
    /// The destination must not exist.
    New,
    /// An existing destination is replaced in one exchange, then removed.
    Replace,
}

/// Why a commit did not happen.
#[derive(Debug)]
pub(crate) enum CommitError {
    /// [`Commit::New`], and the destination exists.
    Exists,
    Io(FsError),
}

impl StagedDir {
    /// An empty directory at this process's `.new-PID` (what a killed earlier process of the
    /// same pid left there is removed first).
    pub(crate) fn create(state: &StateDir) -> Result<Self, FsError> {
        let path = state.scratch(Scratch::New);
        let _ = std::fs::remove_dir_all(&path);
        fsutil::create_dir_all_durable(&path).map_err(at("create", &path))?;
        Ok(Self { path, committed: false, origin: None })
    }

    /// `dir` (a complete directory), moved to this process's `.old-PID` to be committed
    /// elsewhere: the exchange of a commit leaves the old destination under the staged name,
    /// which must be one nobody reads.
    pub(crate) fn adopt(state: &StateDir, dir: &Path) -> Result<Self, FsError> {
        let path = state.scratch(Scratch::Old);
        let _ = std::fs::remove_dir_all(&path);
        fsutil::rename_durable(dir, &path).map_err(at("rename", dir))?;
        Ok(Self { path, committed: false, origin: Some(dir.to_owned()) })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Puts the directory at `dest`, durably.
    pub(crate) fn commit(mut self, dest: &Path, how: Commit) -> Result<(), CommitError> {
        let done = match how {
            Commit::New if dest.exists() => return Err(CommitError::Exists),
            Commit::New => fsutil::rename_durable(&self.path, dest).map_err(at("rename", &self.path)),
            Commit::Replace => fsutil::replace_dir_durable(&self.path, dest).map_err(at("replace", dest)),
        };
        done.map_err(CommitError::Io)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // An adopted directory is someone's record: it goes back where it was, not away.
        let restored = self.origin.as_ref().is_some_and(|origin| fsutil::rename_durable(&self.path, origin).is_ok());
        if !restored {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> (tempfile::TempDir, StateDir) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().to_owned());
        (dir, state)
    }

    #[test]
    fn dropped_uncommitted_it_leaves_nothing() {
        let (_dir, state) = state();
        let staged = StagedDir::create(&state).unwrap();
        std::fs::write(staged.path().join("journal"), "half").unwrap();
        let path = staged.path().to_owned();
        drop(staged);
        assert!(!path.exists());
    }

    #[test]
    fn a_new_commit_refuses_an_existing_destination_and_cleans_up() {
        let (_dir, state) = state();
        let dest = state.root.join("session");
        std::fs::create_dir(&dest).unwrap();
        let staged = StagedDir::create(&state).unwrap();
        let path = staged.path().to_owned();
        assert!(matches!(staged.commit(&dest, Commit::New), Err(CommitError::Exists)));
        assert!(!path.exists(), "the staged directory is removed");
    }

    #[test]
    fn a_replacing_commit_swaps_in_the_new_directory_and_removes_the_old() {
        let (_dir, state) = state();
        let dest = state.root.join("readiness");
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("journal"), "old").unwrap();
        let staged = StagedDir::create(&state).unwrap();
        std::fs::write(staged.path().join("journal"), "new").unwrap();
        staged.commit(&dest, Commit::Replace).unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("journal")).unwrap(), "new");
        let left: Vec<_> = std::fs::read_dir(&state.root).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["readiness"], "no scratch directory is left");
    }

    #[test]
    fn an_adopted_directory_replaces_another() {
        let (_dir, state) = state();
        let (session, readiness) = (state.root.join("session"), state.root.join("readiness"));
        for (dir, text) in [(&session, "check"), (&readiness, "older check")] {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("journal"), text).unwrap();
        }
        StagedDir::adopt(&state, &session).unwrap().commit(&readiness, Commit::Replace).unwrap();
        assert!(!session.exists());
        assert_eq!(std::fs::read_to_string(readiness.join("journal")).unwrap(), "check");
    }
}
