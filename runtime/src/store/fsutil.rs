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

    /// What fixes it, before "then" and the command to run again.
    pub(crate) fn fix(&self) -> &'static str {
        if self.source.get_ref().is_some_and(<dyn std::error::Error + Send + Sync>::is::<NotOurs>) {
            "that is not the file duet wrote there: put back the one it wrote (from a backup of the state directory)"
        } else {
            STORAGE_FIX
        }
    }
}

/// What fixes an I/O error on duet's own files (a full or read-only file system, a failing disk).
pub(crate) const STORAGE_FIX: &str = "free space on that file system (or make it writable again)";

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

/// Opens `path` with `options` only if it is a regular file (following symlinks): opened
/// non-blocking, so a FIFO cannot hang duet in `open`, then checked with `fstat` on what was
/// opened, so nothing can be swapped in between. A FIFO, device, socket or directory is an
/// [`io::ErrorKind::InvalidInput`] error saying what it is.
pub(crate) fn open_regular(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = match options.custom_flags(nix::libc::O_NONBLOCK).open(path) {
        Ok(file) => file,
        // Opening a FIFO (or a socket) for writing, with nothing at the other end.
        Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {
            let kind = fs::metadata(path).map_err(|_| e)?.file_type();
            return Err(not_regular(kind));
        }
        Err(e) => return Err(e),
    };
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        // Back to blocking, as every other file of duet's: reads and writes wait for the disk.
        let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL)?;
        let blocking = nix::fcntl::OFlag::from_bits_truncate(flags) - nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(blocking))?;
        return Ok(file);
    }
    Err(not_regular(kind))
}

fn not_regular(kind: fs::FileType) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, NotOurs(format!("it is {}, not a regular file", describe_kind(kind))))
}

/// Why a file in duet's place is not one duet wrote there: not a regular file, or larger than
/// any duet writes. Not a disk problem, so freeing space is not the fix ([`FsError::fix`]).
#[derive(Debug)]
struct NotOurs(String);

impl fmt::Display for NotOurs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotOurs {}

fn describe_kind(kind: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Reads the whole of `path`, a regular file of at most `limit` bytes (see [`open_regular`]):
/// what every file of duet's own is read with, so that neither a FIFO nor a device (a journal
/// linked to `/dev/zero`) nor a runaway file can hang duet or exhaust its memory.
pub(crate) fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    read_bounded(&open_regular(OpenOptions::new().read(true), path)?, limit)
}

/// The whole of an open regular file (from its current offset), if it holds at most `limit`
/// bytes.
pub(crate) fn read_bounded(mut file: &File, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let too_large = |bytes: u64| {
        io::Error::new(
            io::ErrorKind::FileTooLarge,
            NotOurs(format!("it is {bytes} bytes, more than the {} duet reads from such a file", bytes_text(limit))),
        )
    };
    let len = file.metadata()?.len();
    if len > limit {
        return Err(too_large(len));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // A writer may grow the file after the length check: `take` keeps the bound regardless.
    std::io::Read::by_ref(&mut file).take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// [`read_regular`] as UTF-8 text.
pub(crate) fn read_regular_text(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read_regular(path, limit)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("it is not UTF-8 text ({e})")))
}

fn bytes_text(n: u64) -> String {
    if n >= 1 << 20 { format!("{} MiB", n >> 20) } else { format!("{n} bytes") }
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

/// Creates `path` with `bytes`, readable and writable by its owner only (a secret key), and
/// makes it durable. Refuses to replace an existing file; on error nothing is left behind.
pub(crate) fn write_new_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(path);
        return Err(e);
    }
    sync_dir(parent(path))
}

/// [`write_atomic`] with the content of the file `from` (copied in the kernel, not through
/// memory: the simulated disks copy whole event logs). A missing `from` gives an empty file.
/// Only a regular file is copied ([`open_regular`]): a FIFO or a device in its place is an error.
pub(crate) fn copy_atomic(from: &Path, path: &Path) -> io::Result<()> {
    replace_with(path, |tmp| {
        let mut source = match open_regular(OpenOptions::new().read(true), from) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return write_new(tmp, b""),
            Err(e) => return Err(e),
        };
        let mut copy = OpenOptions::new().write(true).create_new(true).open(tmp)?;
        // File to file: the standard library copies in the kernel (copy_file_range).
        io::copy(&mut source, &mut copy)?;
        copy.sync_all()
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

/// Puts the directory `src` in the place of `dest`, which may exist: a reader (or a crash) sees
/// the old `dest` or the new one, never neither. An existing `dest` is exchanged with `src` in
/// one `renameat2(RENAME_EXCHANGE)`, then removed from `src`'s name, so `src` must be a scratch
/// name nobody reads (a `.new-` or `.old-` directory, which the state directory's sweep clears
/// after a crash). Where the file system cannot exchange, `dest` is moved aside first.
pub(crate) fn replace_dir_durable(src: &Path, dest: &Path) -> io::Result<()> {
    use nix::errno::Errno;
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    if fs::symlink_metadata(dest).is_err() {
        return rename_durable(src, dest);
    }
    match renameat2(AT_FDCWD, src, AT_FDCWD, dest, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => {
            sync_dir(parent(dest))?;
            if parent(src) != parent(dest) {
                sync_dir(parent(src))?;
            }
        }
        Err(Errno::EINVAL) => {
            let aside = src.with_extension("replaced");
            rename_durable(dest, &aside)?;
            rename_durable(src, dest)?;
            let _ = fs::remove_dir_all(&aside);
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }
    // `src` now names the old directory.
    let _ = fs::remove_dir_all(src);
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
    fn replace_dir_puts_the_new_directory_in_place_whether_or_not_the_old_one_exists() {
        let dir = tempfile::tempdir().unwrap();
        let (new, dest) = (dir.path().join(".new-1"), dir.path().join("record"));
        create_dir_all_durable(&new).unwrap();
        fs::write(new.join("journal"), "first").unwrap();
        replace_dir_durable(&new, &dest).unwrap();
        assert_eq!(fs::read(dest.join("journal")).unwrap(), b"first");
        create_dir_all_durable(&new).unwrap();
        fs::write(new.join("journal"), "second").unwrap();
        replace_dir_durable(&new, &dest).unwrap();
        assert_eq!(fs::read(dest.join("journal")).unwrap(), b"second");
        assert_eq!(names(dir.path()), ["record"], "the old directory is gone, nothing left aside");
    }

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"12345").unwrap();
        assert_eq!(read_regular(&file, 5).unwrap(), b"12345");
        let err = read_regular(&file, 4).unwrap_err();
        assert_eq!(err.to_string(), "it is 5 bytes, more than the 4 bytes duet reads from such a file");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Neither reading nor opening for writing waits for the other end.
        assert_eq!(read_regular(&fifo, 100).unwrap_err().to_string(), "it is a FIFO (named pipe), not a regular file");
        let err = open_regular(OpenOptions::new().append(true), &fifo).unwrap_err();
        assert_eq!(err.to_string(), "it is a FIFO (named pipe), not a regular file");
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert_eq!(read_regular(&zero, 100).unwrap_err().to_string(), "it is a character device, not a regular file");
        assert_eq!(read_regular(dir.path(), 100).unwrap_err().to_string(), "it is a directory, not a regular file");
        let opened = open_regular(OpenOptions::new().read(true), &file).unwrap();
        let flags = nix::fcntl::fcntl(&opened, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert_eq!(flags & nix::libc::O_NONBLOCK, 0, "a regular file is left blocking");
        fs::write(&file, [0xff, b'a']).unwrap();
        assert!(read_regular_text(&file, 10).unwrap_err().to_string().starts_with("it is not UTF-8 text"));
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
