//! Source files: reading them from disk under hard limits, and mapping byte offsets to the
//! line/column positions every diagnostic reports.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A plan or inventory larger than this is refused before it is parsed. Real plans are a few
/// KB; the 10,000-service benchmark tree is a few MB spread over 100 files.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Index of a file in a [`SourceMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub(crate) u32);

/// A byte range in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end: end.max(start) }
    }

    pub fn len(self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

/// A position inside a named file: what a diagnostic or a provenance record points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Loc {
    pub file: FileId,
    pub span: Span,
}

/// One loaded file: the path it is shown as, its canonical path, its text and line starts.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as the user wrote it (or as joined from the including file's directory):
    /// stable across machines, so it is what diagnostics and outputs print.
    pub display: String,
    /// Absolute path with symlinks resolved: the file's identity (diamonds, cycles).
    pub canonical: PathBuf,
    pub text: Arc<str>,
    line_starts: Vec<usize>,
    /// The directory of the path as it was named (not of the symlink's target): where the
    /// plan's includes and relative action paths are looked up, as the user sees them.
    dir: PathBuf,
    /// The file started with a UTF-8 byte-order mark (removed from `text`).
    pub bom: bool,
    /// Set when an include pinned or required a signature of these bytes and they passed.
    pub verified: Option<Verified>,
}

/// What an included template was verified against ([`crate::trust`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// SHA-256 of the bytes read, lowercase hex.
    pub sha256: String,
    /// The name of the trusted key whose signature verified, and the signature's text.
    pub signed_by: Option<(String, String)>,
}

impl SourceFile {
    pub fn new(display: String, canonical: PathBuf, text: Arc<str>) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let dir = canonical.parent().unwrap_or(Path::new("/")).to_path_buf();
        Self { display, canonical, text, line_starts, dir, bom: false, verified: None }
    }

    /// The bytes as read from disk: what a pin or signature is checked against and what a
    /// session snapshots.
    pub fn raw_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.text.len() + 3);
        if self.bom {
            bytes.extend_from_slice("\u{feff}".as_bytes());
        }
        bytes.extend_from_slice(self.text.as_bytes());
        bytes
    }

    /// Looks up includes and relative paths in `dir` instead of the real file's directory.
    #[must_use]
    pub fn with_dir(mut self, dir: PathBuf) -> Self {
        self.dir = dir;
        self
    }

    /// 1-based line and 1-based column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let column = self.text.get(start..offset).map_or(offset - start, |s| s.chars().count());
        (line + 1, column + 1)
    }

    /// Byte offset of a 1-based line and 0-based character column (what the YAML parser reports).
    pub(crate) fn offset_of(&self, line: usize, col_chars: usize) -> usize {
        let Some(&start) = self.line_starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        let rest = &self.text[start..];
        rest.char_indices().nth(col_chars).map_or(self.text.len(), |(i, _)| start + i)
    }

    /// The directory the file lives in, for resolving includes and relative action paths.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Every file read while compiling one plan tree, indexed by [`FileId`].
#[derive(Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn add(&mut self, file: SourceFile) -> FileId {
        self.files.push(file);
        FileId(u32::try_from(self.files.len() - 1).expect("fewer than 2^32 files"))
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    pub(crate) fn get_mut(&mut self, id: FileId) -> &mut SourceFile {
        &mut self.files[id.0 as usize]
    }

    /// Every file read, in the order it was read (the runtime snapshots them into a session).
    pub fn files(&self) -> impl Iterator<Item = &SourceFile> {
        self.files.iter()
    }

    /// `file:line` for a location, as outputs and provenance print it.
    pub fn describe(&self, loc: Loc) -> String {
        let file = self.get(loc.file);
        format!("{}:{}", file.display, file.line_col(loc.span.start).0)
    }
}

/// Why a file could not be read as text. Each names what to do about it.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    NotFound,
    IsDirectory,
    NotRegular,
    SymlinkLoop,
    PermissionDenied,
    TooLarge { bytes: u64 },
    Binary,
    NotUtf8 { line: usize, column: usize },
    Io(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("no such file"),
            Self::IsDirectory => f.write_str("it is a directory, not a plan file"),
            Self::NotRegular => f.write_str("it is not a regular file (a device, socket or pipe)"),
            Self::SymlinkLoop => f.write_str("too many levels of symbolic links (a symlink loop)"),
            Self::PermissionDenied => f.write_str("permission denied"),
            Self::TooLarge { bytes } => write!(
                f,
                "it is {bytes} bytes, larger than the {} MiB limit for one file",
                MAX_FILE_BYTES / (1024 * 1024)
            ),
            Self::Binary => f.write_str("it contains NUL bytes: a binary file, not YAML text"),
            Self::NotUtf8 { line, column } => {
                write!(f, "it is not UTF-8 text (invalid byte at line {line}, column {column})")
            }
            Self::Io(e) => f.write_str(e),
        }
    }
}

impl ReadError {
    /// What to do about it.
    pub fn help(&self) -> Option<&'static str> {
        Some(match self {
            Self::NotFound => return None,
            Self::IsDirectory => "name a plan file (*.yaml), not the directory that holds it",
            Self::NotRegular => "name a regular file; plans are read from files, not devices or pipes",
            Self::SymlinkLoop => "fix the symbolic link so it points at a real file",
            Self::PermissionDenied => "make the file readable by the user running duet",
            Self::TooLarge { .. } => "plans and inventories are small YAML files: check that you named the right file",
            Self::Binary | Self::NotUtf8 { .. } => "save the file as UTF-8 text",
            Self::Io(_) => "check the file system, then run duet again",
        })
    }
}

/// Reads a file as UTF-8 text, refusing directories, devices, oversized and binary files.
/// Returns the canonical path and the text (a leading BOM removed).
pub fn read_text(path: &Path) -> Result<(PathBuf, String), ReadError> {
    read_text_bom(path).map(|(canonical, text, _)| (canonical, text))
}

/// [`read_text`], also saying whether a leading BOM was removed (so the bytes on disk can be
/// rebuilt exactly: [`SourceFile::raw_bytes`]).
pub fn read_text_bom(path: &Path) -> Result<(PathBuf, String, bool), ReadError> {
    // What the path names (following links) first: `/dev/stdin` is a pipe, not a missing file.
    let meta = std::fs::metadata(path).map_err(|e| io_error(&e))?;
    if meta.is_dir() {
        return Err(ReadError::IsDirectory);
    }
    if !meta.is_file() {
        return Err(ReadError::NotRegular);
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge { bytes: meta.len() });
    }
    let canonical = std::fs::canonicalize(path).map_err(|e| io_error(&e))?;
    let file = std::fs::File::open(&canonical).map_err(|e| io_error(&e))?;
    // The length check above can race with a writer; `take` keeps the bound regardless.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| io_error(&e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge { bytes: bytes.len() as u64 });
    }
    if bytes.contains(&0) {
        return Err(ReadError::Binary);
    }
    let mut text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        // `valid` is valid UTF-8 by construction.
        let prefix = std::str::from_utf8(valid).unwrap_or_default();
        let line = prefix.matches('\n').count() + 1;
        let column = prefix.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ReadError::NotUtf8 { line, column }
    })?;
    let bom = text.starts_with('\u{feff}');
    if bom {
        text.drain(..3);
    }
    Ok((canonical, text, bom))
}

fn io_error(e: &std::io::Error) -> ReadError {
    match e.kind() {
        std::io::ErrorKind::NotFound => ReadError::NotFound,
        std::io::ErrorKind::PermissionDenied => ReadError::PermissionDenied,
        std::io::ErrorKind::IsADirectory => ReadError::IsDirectory,
        _ if e.raw_os_error() == Some(40) => ReadError::SymlinkLoop, // ELOOP on Linux
        _ => ReadError::Io(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_from_one() {
        let f = SourceFile::new("p.yaml".into(), PathBuf::from("/p.yaml"), "ab\ncé d\n".into());
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(3), (2, 1));
        // "é" is two bytes: offset of "d" is 3 + 4 = 7, the fourth character.
        assert_eq!(f.line_col(7), (2, 4));
        assert_eq!(f.offset_of(2, 3), 7);
    }

    #[test]
    fn read_text_refuses_hostile_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_text(dir.path()).unwrap_err(), ReadError::IsDirectory);
        assert_eq!(read_text(&dir.path().join("missing.yaml")).unwrap_err(), ReadError::NotFound);

        let bin = dir.path().join("bin.yaml");
        std::fs::write(&bin, b"version: 1\0\x01").unwrap();
        assert_eq!(read_text(&bin).unwrap_err(), ReadError::Binary);

        let latin1 = dir.path().join("latin1.yaml");
        std::fs::write(&latin1, b"version: 1\ntitle: caf\xe9\n").unwrap();
        assert_eq!(read_text(&latin1).unwrap_err(), ReadError::NotUtf8 { line: 2, column: 11 });

        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yaml");
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        assert_eq!(read_text(&a).unwrap_err(), ReadError::SymlinkLoop);

        let big = dir.path().join("big.yaml");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_FILE_BYTES + 1).unwrap();
        assert_eq!(read_text(&big).unwrap_err(), ReadError::TooLarge { bytes: MAX_FILE_BYTES + 1 });

        assert_eq!(read_text(Path::new("/dev/null")).unwrap_err(), ReadError::NotRegular);

        let bom = dir.path().join("bom.yaml");
        std::fs::write(&bom, "\u{feff}version: 1\n").unwrap();
        assert_eq!(read_text(&bom).unwrap().1, "version: 1\n");
    }
}
