//! Sessions on disk (execution model 6): each session's snapshot of the plan, and its journal,
//! in the layout [`crate::store::layout`] spells. A session directory is built aside and
//! committed into place ([`StagedDir`]), so it either exists whole or not at all; finishing
//! renames it into `history/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use duet_compiler::Compilation;
use duet_compiler::compiled::CompiledPlan;
use serde::{Deserialize, Serialize};

use crate::state::Progress;
use crate::store::error::{StoreError, StoreResult};
use crate::store::fsutil::{self, at};
use crate::store::journal::{Damage, Durability, Journal, Record};
use crate::store::layout::{SessionDir, StateDir};
use crate::store::staged::{Commit, CommitError, StagedDir};
use duet_contract::event::RunEvent;
use duet_contract::record::{Entry, Output, StepResult};
use duet_contract::status::{Change, ChangedFile};

#[cfg(test)]
pub(crate) mod tests;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotFile {
    /// As the user named it.
    pub(crate) file: String,
    /// Absolute path at the time of the snapshot.
    pub(crate) path: String,
    /// The copy, relative to the session directory.
    pub(crate) snapshot: String,
    /// A template an include pinned or required a signature of: the SHA-256 of the bytes
    /// verified (which are the bytes copied), and the trusted key that signed them (its
    /// signature copied beside the snapshot, as `SNAPSHOT.minisig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) signed_by: Option<String>,
}

/// What a new session directory holds and where it goes ([`Session::create`]).
pub(crate) struct NewSession<'a> {
    pub(crate) dest: &'a Path,
    pub(crate) commit: Commit,
    /// The compilation the plan came from: its source files are snapshot.
    pub(crate) compilation: &'a Compilation,
    /// `begin` and the `operation` that starts the session.
    pub(crate) first: [&'a Entry; 2],
}

/// A session (or a readiness check) with its journal open for appending. Recording an entry
/// is the one place that publishes it: every [`Observer`] sees it once the journal holds it.
pub(crate) struct Session {
    pub(crate) dir: PathBuf,
    pub(crate) journal: Journal<Entry>,
    pub(crate) progress: Progress,
    pub(crate) compiled: Arc<CompiledPlan>,
    observers: Vec<Observer>,
}

/// Sees every event of a session as it is recorded (the console, a follower, a fleet agent).
pub(crate) type Observer = Box<dyn FnMut(&RunEvent<'_>)>;

/// A read-only view, for `status` and `log`: never modifies anything, reports damage.
pub(crate) struct View {
    pub(crate) dir: PathBuf,
    pub(crate) records: Vec<Record<Entry>>,
    pub(crate) damage: Option<Damage>,
    pub(crate) progress: Progress,
    /// The last failed action attempt's output: step id, and the tails.
    pub(crate) failed_output: Option<(String, Output)>,
}

pub(crate) fn new_id() -> String {
    let now = SystemTime::now();
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
    let nanos = now.duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or_default();
    let salt = (nanos ^ std::process::id().rotate_left(16)) & 0xffff;
    format!("{}-{}-{salt:04x}", &digits[..8], &digits[8..14])
}

impl Session {
    /// Builds a session directory at `new.dest`: the snapshot, then a journal starting with
    /// `begin` and the `operation` that starts it. Built aside and committed into place, so a
    /// session always says what it was started to do; with [`Commit::Replace`] (the last
    /// readiness check's record) the old one stays until the new one replaces it, whatever
    /// happens in between.
    pub(crate) fn create(state: &StateDir, new: &NewSession<'_>, compiled: CompiledPlan) -> StoreResult<Self> {
        // A full disk or an I/O error halfway leaves nothing behind: no half-built session.
        let within = || format!("cannot create the session in {}", state.root.display());
        let staged = StagedDir::create(state).map_err(|e| StoreError::from(e).within(within()))?;
        let mut journal = Self::build(SessionDir(staged.path()), new, &compiled).map_err(|e| e.within(within()))?;
        match staged.commit(new.dest, new.commit) {
            Ok(()) => {}
            Err(CommitError::Exists) => {
                return Err(StoreError::refused(
                    format!("{} already exists", new.dest.display()),
                    "another session was started meanwhile: run `duet status`",
                ));
            }
            Err(CommitError::Io(e)) => return Err(e.into()),
        }
        journal.moved_to(SessionDir(new.dest).journal());
        let mut progress = Progress::default();
        for entry in new.first {
            progress.apply(entry);
        }
        progress.plan_tasks = !compiled.unattended.tasks.is_empty();
        crash_point(2);
        Ok(Self { dir: new.dest.to_owned(), journal, progress, compiled: Arc::new(compiled), observers: Vec::new() })
    }

    /// The snapshot of the plan and the journal's first two records, in `dir`.
    fn build(dir: SessionDir<'_>, new: &NewSession<'_>, compiled: &CompiledPlan) -> StoreResult<Journal<Entry>> {
        let sources_dir = dir.sources();
        fsutil::create_dir_all_durable(&sources_dir).map_err(at("create", &sources_dir))?;
        let mut manifest = Vec::new();
        let wanted: Vec<&str> = compiled.sources.iter().map(|s| s.path.as_str()).collect();
        let files = new.compilation.sources.files().filter(|f| wanted.contains(&&*f.canonical.to_string_lossy()));
        for (i, file) in files.enumerate() {
            let name = file.canonical.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let rel = SessionDir::source(i + 1, &name);
            let path = dir.0.join(&rel);
            // The bytes as read (and, for a pinned or signed template, as verified).
            fsutil::write_atomic(&path, &file.raw_bytes()).map_err(at("write", &path))?;
            let verified = file.verified.as_ref();
            let signed = verified.and_then(|v| v.signed_by.as_ref());
            if let Some((_, signature)) = signed {
                let sig = dir.0.join(format!("{rel}{}", duet_compiler::trust::SIGNATURE_SUFFIX));
                fsutil::write_atomic(&sig, signature.as_bytes()).map_err(at("write", &sig))?;
            }
            manifest.push(SnapshotFile {
                file: file.display.clone(),
                path: file.canonical.display().to_string(),
                snapshot: rel,
                sha256: verified.map(|v| v.sha256.clone()),
                signed_by: signed.map(|(name, _)| name.clone()),
            });
        }
        let write = |path: PathBuf, json: serde_json::Result<String>| -> StoreResult<()> {
            let text = json.expect("plain data serializes") + "\n";
            fsutil::write_atomic(&path, text.as_bytes()).map_err(at("write", &path))?;
            Ok(())
        };
        write(dir.sources_manifest(), serde_json::to_string_pretty(&manifest))?;
        // Compact: a resume reads it whole (`duet compile --format json` prints it for people).
        write(dir.compiled(), serde_json::to_string(compiled))?;
        let mut journal = Journal::create(&dir.journal())?;
        let [begin, operation] = new.first;
        journal.append(begin, Durability::Durable)?;
        crash_point(1);
        journal.append(operation, Durability::Durable)?;
        Ok(journal)
    }

    /// Opens a session for appending: replays its journal, refusing any damage.
    pub(crate) fn open(dir: &Path) -> StoreResult<Self> {
        // The two big reads, the compiled plan and the journal, on both cores at once.
        let (journal, mut fold, compiled) = std::thread::scope(|scope| {
            let compiled = scope.spawn(|| read_compiled(dir));
            let mut fold = Fold::default();
            let journal = Journal::open(&SessionDir(dir).journal(), |r| fold.add(&r));
            (journal, fold, compiled.join().expect("reading the compiled plan does not panic"))
        });
        let journal = journal?;
        fold.begins(dir)?;
        let compiled = compiled?;
        fold.progress.plan_tasks = !compiled.unattended.tasks.is_empty();
        Ok(Self {
            dir: dir.to_owned(),
            journal,
            progress: fold.progress,
            compiled: Arc::new(compiled),
            observers: Vec::new(),
        })
    }

    /// Appends an entry, folds it into the progress and publishes it; an entry the journal
    /// could not take is published as unrecorded.
    pub(crate) fn record(&mut self, entry: &Entry, durability: Durability) -> StoreResult<()> {
        if let Err(e) = self.journal.append(entry, durability) {
            self.publish(&RunEvent::Unrecorded(entry));
            return Err(e.into());
        }
        self.progress.apply(entry);
        self.publish(&RunEvent::Recorded { entry, durable: durability == Durability::Durable });
        crash_point(self.progress.records);
        Ok(())
    }

    /// Adds an observer of everything recorded from now on.
    pub(crate) fn subscribe(&mut self, observer: Observer) {
        self.observers.push(observer);
    }

    /// Tells every observer of an event that is not a journal write (a request continuing, an
    /// entry shown although the journal is lost).
    pub(crate) fn publish(&mut self, event: &RunEvent<'_>) {
        for observer in &mut self.observers {
            observer(event);
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.progress.id
    }
}

impl View {
    /// Reads a session or readiness directory without changing it. `None` if there is none.
    /// While another process drives it (`driven`), a last record without its end of line is
    /// one being written, not damage. The records themselves are kept only when `records`
    /// (the activity log); `status` needs only what they add up to.
    pub(crate) fn read(dir: &Path, driven: bool, records: bool) -> StoreResult<Option<Self>> {
        let journal = SessionDir(dir).journal();
        if !journal.exists() {
            return Ok(None);
        }
        let mut fold = Fold::default();
        let mut kept = Vec::new();
        let read = Journal::<Entry>::read_with(&journal, |r| {
            fold.add(&r);
            if records {
                kept.push(r);
            }
        });
        let mut damage = match read {
            // Moved meanwhile by the process driving it (finished into history/, or a failed
            // readiness check set aside): there is no such directory any more.
            Err(crate::store::journal::JournalError::Io(e)) if e.source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None);
            }
            other => other?,
        };
        fold.begins(dir)?;
        if driven && damage.as_ref().is_some_and(|d| d.unfinished) {
            damage = None;
        }
        Ok(Some(Self {
            dir: dir.to_owned(),
            records: kept,
            damage,
            progress: fold.progress,
            failed_output: fold.failed_output,
        }))
    }

    /// The compiled plan the session runs (read on demand: it is the largest file).
    pub(crate) fn compiled(&self) -> Option<CompiledPlan> {
        compiled_in(&self.dir)
    }

    /// Plan files that changed since the snapshot (the session keeps using the snapshot).
    pub(crate) fn changed_sources(&self) -> Vec<ChangedFile> {
        let Ok(text) = fsutil::read_regular_text(&SessionDir(&self.dir).sources_manifest(), MAX_PLAN_BYTES) else {
            return Vec::new();
        };
        let Ok(files) = serde_json::from_str::<Vec<SnapshotFile>>(&text) else { return Vec::new() };
        // A plan file is at most what the compiler reads; a FIFO or a device in its place (or
        // one that grew past that) reads as an error, so as modified, and never hangs `status`.
        let read = |path: &Path| fsutil::read_regular(path, duet_compiler::source::MAX_FILE_BYTES);
        files
            .into_iter()
            .filter_map(|f| {
                let then = read(&self.dir.join(&f.snapshot)).ok();
                match read(Path::new(&f.path)) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Some(ChangedFile { file: f.file, change: Change::Deleted })
                    }
                    now => (now.ok() != then).then_some(ChangedFile { file: f.file, change: Change::Modified }),
                }
            })
            .collect()
    }
}

/// Fault injection for the crash tests: with `DUET_KILL_AFTER_RECORDS=N`, the process kills
/// itself with SIGKILL right after the journal holds N records, exactly as `kill -9` at that
/// step boundary would. Unset in normal use: one environment lookup per process.
fn crash_point(records: usize) {
    static LIMIT: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let limit = LIMIT.get_or_init(|| std::env::var("DUET_KILL_AFTER_RECORDS").ok().and_then(|v| v.parse().ok()));
    if *limit == Some(records) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// The records of a journal, added up as they are read.
#[derive(Default)]
struct Fold {
    progress: Progress,
    first_is_begin: Option<bool>,
    failed_output: Option<(String, Output)>,
}

impl Fold {
    fn add(&mut self, record: &Record<Entry>) {
        self.first_is_begin.get_or_insert(matches!(record.entry, Entry::Begin { .. }));
        if let Entry::StepFinished { step, result: StepResult::Failed { .. }, output: Some(output), .. } = &record.entry
        {
            self.failed_output = Some((step.clone(), output.clone()));
        }
        self.progress.apply(&record.entry);
    }

    /// A session's journal starts with its `begin` record: one that does not (emptied, or
    /// another file) is no session, and is not taken for an Idle one.
    fn begins(&self, dir: &Path) -> StoreResult<()> {
        let journal = SessionDir(dir).journal();
        let damaged = |why: String| {
            let help = format!(
                "the session directory is damaged: keep a copy, then move {} aside to start again",
                dir.display()
            );
            Err(StoreError::refused(format!("{}: {why}", journal.display()), help))
        };
        match self.first_is_begin {
            // The id names directories (history/ID, STAGING/ID): one that is a path is not an
            // id this duet wrote.
            Some(true) if duet_compiler::name::problem(&self.progress.id).is_some() => {
                damaged(format!("the journal's session id `{}` is not a session id", self.progress.id))
            }
            Some(true) => Ok(()),
            _ => damaged("the journal holds no session (its first record is not `begin`)".to_owned()),
        }
    }
}

/// The largest compiled plan (and source list) duet reads from a session: a 10,000-step plan's
/// is a few MiB.
const MAX_PLAN_BYTES: u64 = 256 << 20;

/// The compiled plan of a session directory, if it has a readable one.
pub(crate) fn compiled_in(dir: &Path) -> Option<CompiledPlan> {
    read_compiled(dir).ok()
}

fn read_compiled(dir: &Path) -> StoreResult<CompiledPlan> {
    let path = SessionDir(dir).compiled();
    let text = fsutil::read_regular_text(&path, MAX_PLAN_BYTES).map_err(at("read", &path))?;
    CompiledPlan::from_json(&text).map_err(|why| {
        StoreError::refused(
            format!("{}: {why}", path.display()),
            "this session was written by another duet version: finish it with that version",
        )
    })
}

/// The last readiness check and the finished sessions, newest first (by their journals'
/// modification times): what `log` shows, and what `status` reports, with no session in
/// progress.
pub(crate) fn finished_records(state: &StateDir) -> Vec<PathBuf> {
    let modified = |dir: &Path| std::fs::metadata(SessionDir(dir).journal()).and_then(|m| m.modified()).ok();
    let mut latest: Vec<_> = std::fs::read_dir(state.history())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .chain([state.readiness()])
        .filter_map(|d| Some((modified(&d)?, d)))
        .collect();
    latest.sort();
    latest.into_iter().rev().map(|(_, d)| d).collect()
}

/// Moves a finished session into `history/`.
pub(crate) fn archive(state: &StateDir, dir: &Path, id: &str) -> StoreResult<PathBuf> {
    debug_assert!(
        duet_compiler::name::problem(id).is_none(),
        "session id {id:?} was checked when its journal was read"
    );
    let history = state.history();
    fsutil::create_dir_all_durable(&history).map_err(at("create", &history))?;
    let mut dest = history.join(id);
    let mut n = 1;
    while dest.exists() {
        n += 1;
        dest = history.join(format!("{id}.{n}"));
    }
    fsutil::rename_durable(dir, &dest).map_err(at("rename", dir))?;
    Ok(dest)
}

/// Replaces `dest` (a directory) with `src`, keeping the old one until the swap is done.
pub(crate) fn replace_dir(state: &StateDir, src: &Path, dest: &Path) -> StoreResult<()> {
    match StagedDir::adopt(state, src)?.commit(dest, Commit::Replace) {
        Ok(()) => Ok(()),
        Err(CommitError::Io(e)) => Err(e.into()),
        Err(CommitError::Exists) => unreachable!("a replacing commit replaces"),
    }
}
