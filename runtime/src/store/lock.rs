//! The state directory's lock: one process at a time drives a session (execution model 6).
//!
//! `STATE_DIR/lock` carries an open-file-description lock (`F_OFD_SETLK`) for as long as the
//! driving process lives; the kernel drops it when the process dies however it dies, so a
//! `kill -9` never leaves a stale lock. The file's content (pid, command, start time) is only
//! for messages. [`StateLock::holder`] asks the kernel whether the lock is held (`F_OFD_GETLK`)
//! without taking it, so `status` never gets in a driver's way.
//!
//! **Who holds it.** The kernel does not report an OFD lock's owner through `F_OFD_GETLK` (its
//! `l_pid` is -1), and the file's content is written just after the lock is taken, so a loser
//! of a race may read the previous holder's pid, or nothing. The holder is therefore the
//! process whose open file description of this file the kernel lists the lock under
//! (`/proc/PID/fdinfo/FD`, `lock: ... OFDLCK ... WRITE`); the file's command and start time are
//! shown only when the file names that same pid. When the kernel does not say (no `/proc`, a
//! process of another user), the holder is reported as unknown, never guessed.

use std::fs::{File, OpenOptions};
use std::io::Seek as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, fcntl};
use nix::libc;

/// Who holds the lock, as `status` reports it.
pub(crate) use duet_contract::status::Driver as Holder;

#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    #[error("another duet process is driving {dir}: {holder}")]
    Held { dir: String, holder: Holder },
    #[error("cannot lock {path}: {why}")]
    Io { path: String, why: String },
}

impl LockError {
    pub(crate) fn help(&self) -> &'static str {
        match self {
            Self::Held { holder: Holder { pid: Some(_), .. }, .. } => {
                "wait for it to finish (`duet status` shows its progress); if it is stuck, stop that process and `duet resume`"
            }
            Self::Held { .. } => "wait for it to finish (`duet status` shows its progress), then run the command again",
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

/// The holder of the write lock on `file`'s inode, as the kernel lists it.
fn read_holder(file: &mut File) -> Holder {
    let pid = file.metadata().ok().and_then(|m| lock_owner(m.dev(), m.ino()));
    let bytes = file.rewind().and_then(|()| crate::store::fsutil::read_bounded(file, 4096)).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let mut lines = text.lines();
    let recorded: Option<u32> = lines.next().and_then(|l| l.parse().ok());
    let (command, since) = match (pid, recorded) {
        (Some(pid), Some(recorded)) if pid == recorded => {
            (lines.next().map(str::to_owned), lines.next().map(str::to_owned))
        }
        _ => (None, None),
    };
    Holder { pid, command, since }
}

/// The process whose open file description holds an OFD write lock on inode `inode` of device
/// `dev`: found through `/proc/PID/fd` (the same inode) and `/proc/PID/fdinfo` (the lock is
/// listed under the description that owns it).
fn lock_owner(dev: u64, inode: u64) -> Option<u32> {
    let device = format!("{:02x}:{:02x}:{inode} ", nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let same = std::fs::metadata(fd.path()).is_ok_and(|m| m.dev() == dev && m.ino() == inode);
            if !same {
                continue;
            }
            let info = std::fs::read_to_string(entry.path().join("fdinfo").join(fd.file_name())).unwrap_or_default();
            let locked = info
                .lines()
                .any(|l| l.starts_with("lock:") && l.contains("OFDLCK") && l.contains("WRITE") && l.contains(&device));
            if locked {
                return Some(pid);
            }
        }
    }
    None
}

impl StateLock {
    /// Takes the lock or says who has it. Never waits.
    pub(crate) fn acquire(root: &Path, command: &str) -> Result<Self, LockError> {
        let path = lock_path(root);
        let io = |e: &dyn std::fmt::Display| LockError::Io { path: path.display().to_string(), why: e.to_string() };
        let mut file = crate::store::fsutil::open_regular(
            OpenOptions::new().read(true).write(true).create(true).truncate(false),
            &path,
        )
        .map_err(|e| io(&e))?;
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
        let mut file = crate::store::fsutil::open_regular(OpenOptions::new().read(true), &lock_path(root)).ok()?;
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
        assert_eq!((holder.pid, holder.command.as_deref()), (Some(std::process::id()), Some("duet run plan.yaml")));
        let err = StateLock::acquire(dir.path(), "duet merge").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {} since", std::process::id())) && text.contains("`duet run plan.yaml`"),
            "{text}"
        );
        drop(first);
        assert_eq!(StateLock::holder(dir.path()), None);
        let _again = StateLock::acquire(dir.path(), "duet merge").unwrap();
    }

    #[test]
    fn a_lock_file_naming_another_process_is_not_believed() {
        let dir = tempfile::tempdir().unwrap();
        let _held = StateLock::acquire(dir.path(), "duet run plan.yaml").unwrap();
        // What a loser of a race reads: the previous holder's content (or none at all).
        for stale in ["1\nduet run old.yaml\n2026-01-01T00:00:00Z\n", ""] {
            std::fs::write(dir.path().join("lock"), stale).unwrap();
            let holder = StateLock::holder(dir.path()).unwrap();
            assert_eq!(holder, Holder { pid: Some(std::process::id()), command: None, since: None });
            let text = StateLock::acquire(dir.path(), "duet merge").unwrap_err().to_string();
            assert!(
                text.ends_with(&format!(
                    "pid {} (it has just taken the lock; its command is not recorded yet)",
                    std::process::id()
                )),
                "{text}"
            );
        }
    }

    #[test]
    fn an_unknown_holder_is_never_named() {
        let holder = Holder { pid: None, command: None, since: None };
        let err = LockError::Held { dir: "/state".into(), holder };
        assert_eq!(
            err.to_string(),
            "another duet process is driving /state: a process duet cannot identify (the kernel does not say which)"
        );
        assert!(!err.help().contains("stop that process"), "{}", err.help());
    }
}
