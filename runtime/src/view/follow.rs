//! Following a journal that another process writes (`duet log --follow`, `duet console`): the
//! records appended since the last look, read from the open file, so a session that finishes
//! (its directory renamed into `history/`) is read to its last record. Reads only; takes no lock.

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;

use duet_contract::record::Entry;

use crate::store::journal::{Journal, JournalError, Record};

/// What a look at the journal found.
#[derive(Debug)]
pub(crate) enum Polled {
    /// No journal there yet (no session in progress).
    Absent,
    /// The records written since the last look (perhaps none).
    Records(Vec<Record<Entry>>),
    /// The journal was moved away (the session finished, or was set aside) and has been read
    /// to its end: nothing more will come.
    Ended,
}

/// Reads a journal as it grows.
pub(crate) struct Follower {
    path: PathBuf,
    file: Option<(File, u64)>,
    bytes: Vec<u8>,
    /// The last record handed out.
    seen: u64,
}

impl Follower {
    /// Follows the journal at `path` (which need not exist yet).
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path, file: None, bytes: Vec::new(), seen: 0 }
    }

    /// The records appended since the last call. A last record still being written is left
    /// for the next call; any other damage is an error.
    pub(crate) fn poll(&mut self) -> Result<Polled, JournalError> {
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(file) => {
                    let inode = file.metadata().map_err(crate::store::fsutil::at("read", &self.path))?.ino();
                    self.file = Some((file, inode));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Polled::Absent),
                Err(e) => return Err(crate::store::fsutil::FsError::new("open", &self.path, e).into()),
            }
        }
        let (file, inode) = self.file.as_mut().expect("opened above");
        // Whether it was moved is asked before reading, so that what was written before the
        // move is read in this call.
        let moved = std::fs::metadata(&self.path).map_or(true, |m| m.ino() != *inode);
        let before = self.bytes.len();
        file.read_to_end(&mut self.bytes).map_err(crate::store::fsutil::at("read", &self.path))?;
        let mut records = Vec::new();
        if self.bytes.len() > before {
            let seen = self.seen;
            let damage = Journal::<Entry>::read_bytes(&self.path, &self.bytes, |r| {
                if r.seq > seen {
                    records.push(r);
                }
            })?;
            if let Some(damage) = damage.filter(|d| !d.unfinished) {
                return Err(JournalError::Damaged(damage));
            }
            self.seen = records.last().map_or(self.seen, |r| r.seq);
        }
        if moved && records.is_empty() {
            return Ok(Polled::Ended);
        }
        Ok(Polled::Records(records))
    }
}

#[cfg(test)]
mod tests {
    use duet_compiler::compiled::RequestName;
    use duet_contract::record::Entry;

    use super::{Follower, Polled};
    use crate::store::journal::{Durability, Journal};

    fn started(request: RequestName) -> Entry {
        Entry::RequestStarted { request }
    }

    #[test]
    fn records_come_as_they_are_appended_and_a_moved_journal_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut follower = Follower::new(path.clone());
        assert!(matches!(follower.poll().unwrap(), Polled::Absent));
        let mut journal = Journal::<Entry>::create(&path).unwrap();
        assert!(matches!(follower.poll().unwrap(), Polled::Records(r) if r.is_empty()));
        journal.append(&started(RequestName::PrepareSplit), Durability::Buffered).unwrap();
        journal.append(&started(RequestName::ExecuteSplit), Durability::Buffered).unwrap();
        let Polled::Records(first) = follower.poll().unwrap() else { panic!("records") };
        assert_eq!(first.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
        journal.append(&started(RequestName::PrepareMerge), Durability::Buffered).unwrap();
        // Moved, with a record it has not read yet: that record comes first, then the end.
        std::fs::rename(&path, dir.path().join("moved")).unwrap();
        let Polled::Records(last) = follower.poll().unwrap() else { panic!("the last record") };
        assert_eq!(last.iter().map(|r| r.entry.clone()).collect::<Vec<_>>(), [started(RequestName::PrepareMerge)]);
        assert!(matches!(follower.poll().unwrap(), Polled::Ended));
    }

    #[test]
    fn a_record_being_written_waits_for_its_end_of_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let _journal = Journal::<Entry>::create(&path).unwrap();
        let mut follower = Follower::new(path.clone());
        let whole = "{\"seq\":1,\"t\":0,\"e\":{\"request-started\":{\"request\":\"Commit\"}}}";
        let line = format!("{:08x} {whole}", crc32fast::hash(whole.as_bytes()));
        let append = |text: &str| {
            use std::io::Write as _;
            std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(text.as_bytes()).unwrap();
        };
        append(&line[..20]);
        assert!(matches!(follower.poll().unwrap(), Polled::Records(r) if r.is_empty()));
        append(&format!("{}\n", &line[20..]));
        assert!(matches!(follower.poll().unwrap(), Polled::Records(r) if r.len() == 1));
    }
}
