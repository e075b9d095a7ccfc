//! The journal: an append-only, checksummed, versioned log of records (execution model 6).
//!
//! ```text
//! duet-journal 1
//! 1c291ca3 {"seq":1,"t":1764600000000,"e":{...}}
//! ...
//! ```
//!
//! The first line names the format and its version. Each record is one line, `CRC32 JSON`: the
//! CRC-32 (IEEE) of the JSON text in 8 lowercase hex digits, a space, and
//! `{"seq":N,"t":UNIX_MS,"e":ENTRY}`, with `seq` counting up from 1. A record is written with a
//! single `write` on a file opened for appending, so a crash leaves at most one incomplete line,
//! at the end. [`Durability::Durable`] records are `fdatasync`ed before `append` returns.
//!
//! A reader checks the header, every checksum and the sequence. Damage is classified, never
//! skipped: a bad **tail** (the last line incomplete or failing its check, as a crash or power
//! loss mid-write leaves it) can be repaired by setting the damaged bytes aside; damage
//! **followed by intact records** is not a crash artefact and cannot be repaired by truncation.
//! Writers refuse a damaged journal; readers (`status`, `log`) get the intact prefix and the
//! damage.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::store::fsutil;

/// The format this duet writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;
const MAGIC: &str = "duet-journal";
/// The largest journal duet reads (a 10,000-step session's is a few MiB): a file past it is not
/// a journal duet wrote, and is refused rather than read into memory.
pub(crate) const MAX_BYTES: u64 = 256 << 20;

/// Whether a record must reach the disk before `append` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Written (it survives the process being killed), not synced (a power loss may drop it).
    Buffered,
    /// Written and `fdatasync`ed: it survives a power loss.
    Durable,
}

/// One record as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record<T> {
    pub(crate) seq: u64,
    /// Unix time in milliseconds.
    pub(crate) time_ms: u64,
    pub(crate) entry: T,
}

#[derive(Serialize)]
struct Out<'a, T> {
    seq: u64,
    t: u64,
    e: &'a T,
}

#[derive(Deserialize)]
struct In<T> {
    seq: u64,
    t: u64,
    e: T,
}

/// Where and how a journal is damaged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Damage {
    pub(crate) path: PathBuf,
    /// 1-based line of the first damaged record.
    pub(crate) line: usize,
    /// Byte offset where the damage starts (the intact prefix ends here).
    pub(crate) offset: u64,
    pub(crate) why: String,
    /// Intact records follow the damage: not a torn write, so not repairable by truncation.
    pub(crate) followed_by_intact: bool,
    /// The last record has no end of line: a crash cut the write short, or (for a reader
    /// while a driver runs) it is being written right now.
    pub(crate) unfinished: bool,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.followed_by_intact { "is corrupt" } else { "has a torn or corrupt tail" };
        write!(f, "{} {what} at line {}, byte {}: {}", self.path.display(), self.line, self.offset, self.why)
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum JournalError {
    #[error(transparent)]
    Io(#[from] fsutil::FsError),
    #[error("{0}")]
    Damaged(Damage),
    #[error("{path}: {why}")]
    Format { path: String, why: String },
}

impl JournalError {
    /// What to do next, for the user-facing error.
    pub(crate) fn help(&self) -> &'static str {
        match self {
            Self::Io(e) => e.fix(),
            Self::Damaged(d) if d.followed_by_intact => {
                "this is not a crash artefact: keep a copy of the state directory, inspect the journal, and restore it from a backup"
            }
            Self::Damaged(_) => {
                "`duet resume --repair-journal` sets the damaged bytes aside and continues from the last intact record"
            }
            Self::Format { .. } => "finish this session with the duet version that started it",
        }
    }
}

/// Everything a journal file holds: its intact records, and the damage after them, if any.
#[derive(Debug)]
pub(crate) struct Replay<T> {
    pub(crate) records: Vec<Record<T>>,
    pub(crate) damage: Option<Damage>,
}

/// How a scan ended.
struct Scan {
    damage: Option<Damage>,
    last_seq: u64,
}

/// A journal open for appending.
#[derive(Debug)]
pub(crate) struct Journal<T> {
    path: PathBuf,
    file: File,
    next_seq: u64,
    /// The length of the records written: where a failed write is cut back to.
    len: u64,
    /// The length known to be on disk (the last successful sync): where a failed sync is cut
    /// back to.
    synced: u64,
    /// A write failed: nothing more is appended by this process (see [`Journal::append`]).
    failed: Option<String>,
    buf: Vec<u8>,
    _entries: PhantomData<fn(&T)>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn header() -> String {
    format!("{MAGIC} {FORMAT_VERSION}\n")
}

impl<T: Serialize + DeserializeOwned> Journal<T> {
    /// Creates a new, empty journal (it must not exist), durable before this returns.
    pub(crate) fn create(path: &Path) -> Result<Self, JournalError> {
        let mut file = OpenOptions::new()
            .append(true)
            .read(true)
            .create_new(true)
            .open(path)
            .map_err(fsutil::at("create", path))?;
        file.write_all(header().as_bytes()).and_then(|()| file.sync_all()).map_err(fsutil::at("write", path))?;
        if let Some(dir) = path.parent() {
            fsutil::sync_dir(dir).map_err(fsutil::at("sync", dir))?;
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            next_seq: 1,
            len: header().len() as u64,
            synced: header().len() as u64,
            failed: None,
            buf: Vec::with_capacity(512),
            _entries: PhantomData,
        })
    }

    /// Opens a journal for appending, handing each record to `each` in order (none is kept:
    /// a resume folds them). Any damage is refused.
    pub(crate) fn open(path: &Path, each: impl FnMut(Record<T>)) -> Result<Self, JournalError> {
        let file =
            fsutil::open_regular(OpenOptions::new().read(true).append(true), path).map_err(fsutil::at("open", path))?;
        let bytes = fsutil::read_bounded(&file, MAX_BYTES).map_err(fsutil::at("read", path))?;
        let scan = Self::scan(path, &bytes, each)?;
        if let Some(damage) = scan.damage {
            return Err(JournalError::Damaged(damage));
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            next_seq: scan.last_seq + 1,
            len: bytes.len() as u64,
            synced: bytes.len() as u64,
            failed: None,
            buf: Vec::with_capacity(512),
            _entries: PhantomData,
        })
    }

    /// Reads a journal without changing it, handing each intact record to `each`; says where
    /// the intact records end.
    pub(crate) fn read_with(path: &Path, each: impl FnMut(Record<T>)) -> Result<Option<Damage>, JournalError> {
        let bytes = fsutil::read_regular(path, MAX_BYTES).map_err(fsutil::at("read", path))?;
        Self::read_bytes(path, &bytes, each)
    }

    /// [`Journal::read_with`] on bytes already read; `path` names them in messages.
    pub(crate) fn read_bytes(
        path: &Path,
        bytes: &[u8],
        each: impl FnMut(Record<T>),
    ) -> Result<Option<Damage>, JournalError> {
        Ok(Self::scan(path, bytes, each)?.damage)
    }

    /// The journal's file was renamed (its directory moved into place): name the new path in
    /// messages. The open file is the same.
    pub(crate) fn moved_to(&mut self, path: PathBuf) {
        self.path = path;
    }

    #[cfg(test)]
    /// Reads a journal without changing it: the intact records and any damage after them. A
    /// missing or unreadable file, or another format version, is an error.
    pub(crate) fn read(path: &Path) -> Result<Replay<T>, JournalError> {
        let bytes = fsutil::read_regular(path, MAX_BYTES).map_err(fsutil::at("read", path))?;
        Self::parse(path, &bytes)
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<Replay<T>, JournalError> {
        let mut records = Vec::new();
        let scan = Self::scan(path, bytes, |r| records.push(r))?;
        Ok(Replay { records, damage: scan.damage })
    }

    /// Checks the header, then each record in order, handing the intact ones to `each`.
    fn scan(path: &Path, bytes: &[u8], mut each: impl FnMut(Record<T>)) -> Result<Scan, JournalError> {
        let format = |why: String| JournalError::Format { path: path.display().to_string(), why };
        let Some(end) = bytes.iter().position(|&b| b == b'\n') else {
            return Err(format("not a duet journal: it has no header line (`duet-journal 1`)".into()));
        };
        let first = String::from_utf8_lossy(&bytes[..end]);
        let version = first.strip_prefix(MAGIC).and_then(|v| v.strip_prefix(' ')).map(str::trim);
        match version.map(str::parse::<u32>) {
            Some(Ok(FORMAT_VERSION)) => {}
            Some(Ok(v)) => {
                return Err(format(format!(
                    "journal format version {v}; this duet reads version {FORMAT_VERSION} only"
                )));
            }
            _ => return Err(format(format!("not a duet journal: its first line is `{}`", first.escape_debug()))),
        }
        let mut last_seq = 0;
        let mut offset = end + 1;
        let mut line = 1;
        let mut damage = None;
        while offset < bytes.len() {
            line += 1;
            let rest = &bytes[offset..];
            let (text, len) = match rest.iter().position(|&b| b == b'\n') {
                Some(n) => (&rest[..n], n + 1),
                None => (rest, rest.len()),
            };
            let complete = len > text.len();
            let expected = last_seq + 1;
            let checked = if complete {
                check::<T>(text, expected)
            } else {
                Err(Bad::Damaged("the last record is incomplete (a write was cut short)".to_owned()))
            };
            match checked {
                Ok(record) => {
                    last_seq = record.seq;
                    each(record);
                }
                Err(Bad::Unknown(e)) => {
                    return Err(format(format!(
                        "line {line} is an intact record this duet cannot read ({e}); \
                         a newer duet wrote it, or another program"
                    )));
                }
                Err(Bad::Damaged(why)) => {
                    // Zeros where a record should be are what a power loss leaves of pages that
                    // never reached the disk: a crash artefact, whatever follows.
                    let zeroed = text.contains(&0);
                    let followed_by_intact = complete && !zeroed && intact_after(&bytes[offset + len..]);
                    damage = Some(Damage {
                        path: path.to_owned(),
                        line,
                        offset: offset as u64,
                        why,
                        followed_by_intact,
                        unfinished: !complete,
                    });
                    break;
                }
            }
            offset += len;
        }
        Ok(Scan { damage, last_seq })
    }

    /// Sets a damaged tail aside (`journal.damaged-OFFSET`) and truncates the journal to its
    /// last intact record. Refuses damage followed by intact records. Says what it did.
    pub(crate) fn repair(path: &Path) -> Result<String, JournalError> {
        let bytes = fsutil::read_regular(path, MAX_BYTES).map_err(fsutil::at("read", path))?;
        let replay = Self::parse(path, &bytes)?;
        let Some(damage) = replay.damage else {
            return Ok(format!("{} has no damage: nothing to repair", path.display()));
        };
        if damage.followed_by_intact {
            return Err(JournalError::Damaged(damage));
        }
        let cut = usize::try_from(damage.offset).unwrap_or(bytes.len());
        let aside = path.with_file_name(format!(
            "{}.damaged-{}",
            path.file_name().map_or("journal".into(), |n| n.to_string_lossy()),
            damage.offset
        ));
        fsutil::write_atomic(&aside, &bytes[cut..]).map_err(fsutil::at("write", &aside))?;
        let file = fsutil::open_regular(OpenOptions::new().write(true), path).map_err(fsutil::at("open", path))?;
        file.set_len(damage.offset).and_then(|()| file.sync_all()).map_err(fsutil::at("truncate", path))?;
        Ok(format!(
            "journal repaired: {} bytes from line {} ({}) moved to {}; the journal continues after record {}",
            bytes.len() - cut,
            damage.line,
            damage.why,
            aside.display(),
            replay.records.last().map_or(0, |r| r.seq)
        ))
    }

    /// Appends one record with a single `write`; a durable one is synced before this returns.
    ///
    /// If the write or the sync fails (a full disk, an I/O error, a file system remounted
    /// read-only), the file is cut back to its last intact record, so that it stays readable
    /// and `resume` needs no repair once the disk is fixed; the record counts as not written,
    /// and this journal refuses every later append (after a failed `fdatasync` the kernel may
    /// have dropped pages it had accepted, so nothing written since can be trusted to follow).
    pub(crate) fn append(&mut self, entry: &T, durability: Durability) -> Result<(), JournalError> {
        if let Some(why) = &self.failed {
            return Err(JournalError::Io(fsutil::FsError::new(
                "write",
                &self.path,
                std::io::Error::other(format!("an earlier write failed ({why}); nothing more is written")),
            )));
        }
        let json = serde_json::to_string(&Out { seq: self.next_seq, t: now_ms(), e: entry })
            .map_err(|e| JournalError::Format { path: self.path.display().to_string(), why: e.to_string() })?;
        self.buf.clear();
        let crc = crc32fast::hash(json.as_bytes());
        writeln!(self.buf, "{crc:08x} {json}").expect("writing to a Vec cannot fail");
        let failed = match self.file.write_all(&self.buf) {
            Err(e) => Some((e, self.len)),
            Ok(()) if durability == Durability::Durable => self.file.sync_data().err().map(|e| (e, self.synced)),
            Ok(()) => None,
        };
        if let Some((e, keep)) = failed {
            self.failed = Some(e.to_string());
            // Truncating frees space and needs none, so it works on a full disk.
            let cut = self.file.set_len(keep).and_then(|()| self.file.sync_all());
            let why = match cut {
                Ok(()) => e.to_string(),
                Err(cut) => format!(
                    "{e}; and it could not be cut back to its last record ({cut}): \
                     `duet resume --repair-journal` sets the partial record aside"
                ),
            };
            return Err(JournalError::Io(fsutil::FsError::new(
                "write",
                &self.path,
                std::io::Error::new(e.kind(), why),
            )));
        }
        self.len += self.buf.len() as u64;
        if durability == Durability::Durable {
            self.synced = self.len;
        }
        self.next_seq += 1;
        Ok(())
    }
}

/// Parses and checks one complete line.
///
/// A line that passes its checksum was written whole by some duet: if it cannot be read as a
/// record of this version, it is no damage (repairing would throw away what a newer duet
/// wrote) but a record from elsewhere: [`Bad::Unknown`].
fn check<T: DeserializeOwned>(line: &[u8], expected_seq: u64) -> Result<Record<T>, Bad> {
    let damaged = |why: String| Bad::Damaged(why);
    let text = std::str::from_utf8(line).map_err(|_| damaged("the record is not UTF-8".to_owned()))?;
    let (crc, json) = text.split_once(' ').ok_or_else(|| damaged("the record has no checksum".to_owned()))?;
    let crc =
        u32::from_str_radix(crc, 16).map_err(|_| damaged(format!("`{}` is not a checksum", crc.escape_debug())))?;
    if crc32fast::hash(json.as_bytes()) != crc {
        return Err(damaged("the record fails its checksum".into()));
    }
    let record: In<T> = serde_json::from_str(json).map_err(|e| Bad::Unknown(e.to_string()))?;
    if record.seq != expected_seq {
        return Err(damaged(format!("record {} where record {expected_seq} was expected", record.seq)));
    }
    Ok(Record { seq: record.seq, time_ms: record.t, entry: record.e })
}

/// Why a line is not a record.
enum Bad {
    /// Cut short, corrupted, or out of sequence.
    Damaged(String),
    /// Intact, but not a record this version knows.
    Unknown(String),
}

/// Whether any complete line after the damage passes its checksum.
fn intact_after(rest: &[u8]) -> bool {
    rest.split(|&b| b == b'\n').any(|line| {
        let Ok(text) = std::str::from_utf8(line) else { return false };
        let Some((crc, json)) = text.split_once(' ') else { return false };
        u32::from_str_radix(crc, 16).is_ok_and(|crc| crc32fast::hash(json.as_bytes()) == crc)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type J = Journal<serde_json::Value>;

    fn write(dir: &Path, n: u64) -> PathBuf {
        let path = dir.join("journal");
        let mut j = J::create(&path).unwrap();
        for i in 0..n {
            j.append(&serde_json::json!({"i": i}), if i % 2 == 0 { Durability::Durable } else { Durability::Buffered })
                .unwrap();
        }
        path
    }

    #[test]
    fn records_round_trip_and_appends_continue_the_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 3);
        let mut records = Vec::new();
        let mut j = J::open(&path, |r| records.push(r)).unwrap();
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(records[2].entry, serde_json::json!({"i": 2}));
        j.append(&serde_json::json!("four"), Durability::Durable).unwrap();
        let replay = J::read(&path).unwrap();
        assert!(replay.damage.is_none());
        assert_eq!(replay.records.last().unwrap().seq, 4);
        assert!(std::fs::read_to_string(&path).unwrap().starts_with("duet-journal 1\n"));
    }

    #[test]
    fn a_torn_tail_is_reported_refused_and_repairable() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 3);
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 7]).unwrap();
        let replay = J::read(&path).unwrap();
        assert_eq!(replay.records.len(), 2);
        let damage = replay.damage.unwrap();
        assert_eq!(damage.line, 4);
        assert!(!damage.followed_by_intact);
        assert!(damage.why.contains("incomplete"), "{}", damage.why);
        assert!(matches!(J::open(&path, drop), Err(JournalError::Damaged(_))));
        let said = J::repair(&path).unwrap();
        assert!(said.contains("continues after record 2"), "{said}");
        let mut records = 0;
        J::open(&path, |_| records += 1).unwrap();
        assert_eq!(records, 2);
        let aside = dir.path().join(format!("journal.damaged-{}", damage.offset));
        assert_eq!(std::fs::read(aside).unwrap(), full[usize::try_from(damage.offset).unwrap()..full.len() - 7]);
    }

    #[test]
    fn a_flipped_byte_in_the_last_record_fails_its_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 2);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let damage = J::read(&path).unwrap().damage.unwrap();
        assert_eq!((damage.line, damage.why.as_str()), (3, "the record fails its checksum"));
        assert!(!damage.followed_by_intact);
    }

    #[test]
    fn damage_followed_by_intact_records_is_not_repairable() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 4);
        let text = std::fs::read_to_string(&path).unwrap();
        let broken = text.replacen("{\"i\":1}", "{\"i\":9}", 1);
        std::fs::write(&path, broken).unwrap();
        let damage = J::read(&path).unwrap().damage.unwrap();
        assert!(damage.followed_by_intact);
        assert!(damage.to_string().contains("is corrupt at line 3"), "{damage}");
        assert!(matches!(J::repair(&path), Err(JournalError::Damaged(_))));
    }

    #[test]
    fn zeros_where_records_should_be_are_a_repairable_power_loss() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 4);
        let mut bytes = std::fs::read(&path).unwrap();
        // Record 2's bytes never reached the disk; records 3 and 4 did.
        let start = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(1).unwrap().0 + 1;
        let end = start + bytes[start..].iter().position(|&b| b == b'\n').unwrap();
        bytes[start..end].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        let damage = J::read(&path).unwrap().damage.unwrap();
        assert_eq!(damage.line, 3);
        assert!(!damage.followed_by_intact, "{damage}");
        J::repair(&path).unwrap();
        assert_eq!(J::read(&path).unwrap().records.len(), 1);
    }

    #[test]
    fn sequence_gaps_and_other_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 3);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&path, format!("{}\n{}\n{}\n", lines[0], lines[1], lines[3])).unwrap();
        let damage = J::read(&path).unwrap().damage.unwrap();
        assert_eq!(damage.why, "record 3 where record 2 was expected");
        std::fs::write(&path, "duet-journal 2\n").unwrap();
        let err = J::read(&path).unwrap_err().to_string();
        assert!(err.contains("journal format version 2; this duet reads version 1 only"), "{err}");
        std::fs::write(&path, "\u{0}\u{1}binary\n").unwrap();
        assert!(J::read(&path).unwrap_err().to_string().contains("not a duet journal"));
        std::fs::write(&path, "").unwrap();
        assert!(J::read(&path).unwrap_err().to_string().contains("no header line"));
    }
}
