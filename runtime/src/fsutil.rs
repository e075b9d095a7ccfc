//! Durable file primitives: the few ways the runtime changes its state directory so that a crash
//! (process killed, power lost) at any instant leaves either the old state or the new one.
//!
//! A write is durable only when the file's data *and* the directory entry naming it have reached
//! the disk, so each primitive fsyncs the file and then the directory (or directories) it changed.
//! [`write_atomic`] never lets a reader see a partial file: it writes a temporary file beside the
//! target and renames it over the target.
//!
//! The primitives return plain [`io::Error`]s; call sites name the file and the operation with
//! [`at`]: `fs::read(p).map_err(at("read", p))?`, which reads as `cannot read /x/y: ...`.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// An I/O error, with the file and what was being done to it.
#[derive(Debug)]
pub(crate) struct FsError {
    pub(crate) path: PathBuf,
    /// A verb that reads after "cannot": `read`, `write`, `create`, `rename`, ...
    pub(crate) op: &'static str,
    pub(crate) source: io::Error,
}

impl FsError {
    pub(crate) fn new(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self { path: path.to_owned(), op, source }
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {} {}: {}", self.op, self.path.display(), self.source)
    }
}

// The OS error is part of the message (users see `to_string()`), so it is not also reported as
// the `source()`: a report walking the chain would print it twice.
impl std::error::Error for FsError {}

/// `map_err(at("read", path))`: names the file and the operation of an I/O error.
pub(crate) fn at(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FsError + use<> {
    let path = path.to_owned();
    move |source| FsError { path, op, source }
}

/// Makes the entries of `dir` (files created, renamed or removed in it) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes`: a reader sees the old content or the new one, never a mix, and
/// once this returns the new content survives a crash. On error `path` is unchanged and the
/// temporary file is removed.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_with(path, |tmp| write_new(tmp, bytes))
}

/// [`write_atomic`] with the content of the file `from` (copied in the kernel, not through
/// memory: the simulated disks copy whole event logs). A missing `from` gives an empty file.
pub(crate) fn copy_atomic(from: &Path, path: &Path) -> io::Result<()> {
    replace_with(path, |tmp| match fs::copy(from, tmp) {
        Ok(_) => File::open(tmp)?.sync_all(),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !from.exists() => write_new(tmp, b""),
        Err(e) => Err(e),
    })
}

/// Makes a temporary file beside `path` with `fill`, renames it over `path`, syncs the directory.
fn replace_with(path: &Path, fill: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    // Unique among the processes and threads writing into one directory.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name =
        path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file"))?;
    let dir = parent(path);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.tmp-{}-{n}", name.to_string_lossy(), std::process::id()));
    let _ = fs::remove_file(&tmp);
    let written = fill(&tmp).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let open = || OpenOptions::new().write(true).create_new(true).open(path);
    let mut file = match open() {
        // Left by a killed process that had our pid: nobody else writes this name.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(path)?;
            open()?
        }
        file => file?,
    };
    file.write_all(bytes)?;
    file.sync_all()
}

/// `fs::create_dir_all`, made durable: each directory it creates is fsynced into its parent.
pub(crate) fn create_dir_all_durable(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = dir;
    loop {
        match fs::metadata(cur) {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => return Err(nix::errno::Errno::ENOTDIR.into()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(cur),
            Err(e) => return Err(e),
        }
        match cur.parent() {
            Some(p) if !p.as_os_str().is_empty() => cur = p,
            _ => break,
        }
    }
    for dir in missing.into_iter().rev() {
        match fs::create_dir(dir) {
            Ok(()) => {}
            // Created meanwhile by someone else: fine, as long as it is a directory.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(e),
        }
        sync_dir(parent(dir))?;
    }
    Ok(())
}

/// `fs::rename`, made durable: both directories whose entries changed are fsynced.
pub(crate) fn rename_durable(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    let (from_dir, to_dir) = (parent(from), parent(to));
    sync_dir(to_dir)?;
    if from_dir != to_dir {
        sync_dir(from_dir)?;
    }
    Ok(())
}

/// The directory holding `path` (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn write_atomic_creates_and_replaces_leaving_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        write_atomic(&path, b"two, longer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two, longer");
        write_atomic(&path, b"").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"");
        assert_eq!(names(dir.path()), ["state.json"]);
    }

    #[test]
    fn write_atomic_failure_keeps_the_old_file_and_removes_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        // Renaming a file over a non-empty directory fails after the temporary file was written.
        let target = dir.path().join("target");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("keep"), "x").unwrap();
        let err = write_atomic(&target, b"new").unwrap_err();
        assert!(matches!(err.kind(), io::ErrorKind::IsADirectory | io::ErrorKind::DirectoryNotEmpty), "{err:?}");
        assert_eq!(names(dir.path()), ["target"]);
        assert_eq!(names(&target), ["keep"]);
    }

    #[test]
    fn write_atomic_in_a_missing_directory_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(&dir.path().join("no/such/file"), b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn copy_atomic_copies_or_empties() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        fs::write(&to, "old").unwrap();
        copy_atomic(&from, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"", "a missing source gives an empty file");
        fs::write(&from, "log lines\n").unwrap();
        copy_atomic(&from, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"log lines\n");
        assert_eq!(names(dir.path()), ["from", "to"]);
    }

    #[test]
    fn a_stale_temporary_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        // What a killed process that had our pid would have left.
        let tmp = dir.path().join(".f.tmp-1-0");
        fs::write(&tmp, "stale and longer").unwrap();
        write_new(&tmp, b"fresh").unwrap();
        assert_eq!(fs::read(&tmp).unwrap(), b"fresh");
    }

    #[test]
    fn create_dir_all_durable_creates_every_missing_component() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dir_all_durable(&deep).unwrap();
        assert!(deep.is_dir());
        // Existing directories are fine, including the whole path.
        create_dir_all_durable(&deep).unwrap();
        create_dir_all_durable(&dir.path().join("a/b/d")).unwrap();
        assert_eq!(names(&dir.path().join("a/b")), ["c", "d"]);
    }

    #[test]
    fn create_dir_all_durable_refuses_a_file_in_the_way() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("file"), "x").unwrap();
        for path in ["file", "file/sub"] {
            let err = create_dir_all_durable(&dir.path().join(path)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotADirectory, "{path}: {err:?}");
        }
    }

    #[test]
    fn rename_durable_moves_across_directories() {
        let dir = tempfile::tempdir().unwrap();
        create_dir_all_durable(&dir.path().join("from")).unwrap();
        create_dir_all_durable(&dir.path().join("to")).unwrap();
        fs::write(dir.path().join("from/x"), "data").unwrap();
        rename_durable(&dir.path().join("from/x"), &dir.path().join("to/y")).unwrap();
        assert!(names(&dir.path().join("from")).is_empty());
        assert_eq!(fs::read(dir.path().join("to/y")).unwrap(), b"data");
        let err = rename_durable(&dir.path().join("from/x"), &dir.path().join("to/z")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn fs_error_names_the_operation_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing");
        let err = fs::read(&path).map_err(at("read", &path)).unwrap_err();
        assert_eq!(err.to_string(), format!("cannot read {}: No such file or directory (os error 2)", path.display()));
        let full = FsError::new("write", Path::new("/x/y"), io::Error::from_raw_os_error(28));
        assert_eq!(full.to_string(), "cannot write /x/y: No space left on device (os error 28)");
    }
}
