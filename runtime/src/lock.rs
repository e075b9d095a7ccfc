//! The state directory's lock: one process at a time drives a session (execution model 6).
//!
//! `STATE_DIR/lock` carries an open-file-description lock (`F_OFD_SETLK`) for as long as the
//! driving process lives; the kernel drops it when the process dies however it dies, so a
//! `kill -9` never leaves a stale lock. The file's content (pid, command, start time) is only
//! for messages. [`StateLock::holder`] asks the kernel whether the lock is held (`F_OFD_GETLK`)
//! without taking it, so `status` never gets in a driver's way.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _};
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, fcntl};
use nix::libc;

/// Who holds the lock, as the lock file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Holder {
    pub(crate) pid: u32,
    pub(crate) command: String,
    pub(crate) since: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    #[error(
        "another duet process is driving {dir}: pid {} since {}: `{}`",
        holder.pid,
        holder.since,
        holder.command
    )]
    Held { dir: String, holder: Holder },
    #[error("cannot lock {path}: {why}")]
    Io { path: String, why: String },
}

impl LockError {
    pub(crate) fn help(&self) -> &'static str {
        match self {
            Self::Held { .. } => {
                "wait for it to finish (`duet status` shows its progress); if it is stuck, stop that process and `duet resume`"
            }
            Self::Io { .. } => "check the state directory's permissions (`--state-dir`, DUET_STATE_DIR)",
        }
    }
}

/// Held while it lives.
#[derive(Debug)]
pub(crate) struct StateLock {
    _file: File,
}

fn lock_path(root: &Path) -> PathBuf {
    root.join("lock")
}

fn whole_file(kind: libc::c_short) -> libc::flock {
    libc::flock { l_type: kind, l_whence: libc::SEEK_SET as libc::c_short, l_start: 0, l_len: 0, l_pid: 0 }
}

fn read_holder(file: &mut File) -> Holder {
    let mut text = String::new();
    let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
    let mut lines = text.lines();
    Holder {
        pid: lines.next().and_then(|l| l.parse().ok()).unwrap_or(0),
        command: lines.next().unwrap_or("?").to_owned(),
        since: lines.next().unwrap_or("?").to_owned(),
    }
}

impl StateLock {
    /// Takes the lock or says who has it. Never waits.
    pub(crate) fn acquire(root: &Path, command: &str) -> Result<Self, LockError> {
        let path = lock_path(root);
        let io = |e: &dyn std::fmt::Display| LockError::Io { path: path.display().to_string(), why: e.to_string() };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(|e| io(&e))?;
        match fcntl(&file, FcntlArg::F_OFD_SETLK(&whole_file(libc::F_WRLCK as libc::c_short))) {
            Ok(_) => {}
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => {
                return Err(LockError::Held { dir: root.display().to_string(), holder: read_holder(&mut file) });
            }
            Err(e) => return Err(io(&e)),
        }
        let since = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        let text = format!("{}\n{}\n{since}\n", std::process::id(), command.replace('\n', " "));
        // Written over, then cut to length: a reader never sees it empty.
        std::os::unix::fs::FileExt::write_all_at(&file, text.as_bytes(), 0)
            .and_then(|()| file.set_len(text.len() as u64))
            .map_err(|e| io(&e))?;
        Ok(Self { _file: file })
    }

    /// Who drives the state directory now, if anyone (without taking the lock).
    pub(crate) fn holder(root: &Path) -> Option<Holder> {
        let mut file = File::open(lock_path(root)).ok()?;
        let mut probe = whole_file(libc::F_WRLCK as libc::c_short);
        fcntl(&file, FcntlArg::F_OFD_GETLK(&mut probe)).ok()?;
        (i32::from(probe.l_type) != libc::F_UNLCK).then(|| read_holder(&mut file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_first_holder_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(StateLock::holder(dir.path()), None);
        let first = StateLock::acquire(dir.path(), "duet run plan.yaml").unwrap();
        let holder = StateLock::holder(dir.path()).unwrap();
        assert_eq!((holder.pid, holder.command.as_str()), (std::process::id(), "duet run plan.yaml"));
        let err = StateLock::acquire(dir.path(), "duet merge").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())) && text.contains("`duet run plan.yaml`"),
            "{text}"
        );
        drop(first);
        assert_eq!(StateLock::holder(dir.path()), None);
        let _again = StateLock::acquire(dir.path(), "duet merge").unwrap();
    }
}
