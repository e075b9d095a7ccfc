//! Output capture: each stream's pipe read into its file and a bounded tail in memory, drained
//! without waiting on processes that keep the pipe open (the rule in the module header).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write as _};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use tokio::net::unix::pipe::Receiver;
use tokio::sync::watch;

use super::{CHUNK, Captured, TAIL_BYTES, describe};

/// Reads `pipe` into `sink` until EOF, or until the main process has exited and the pipe holds
/// nothing more (the rule in the module header).
pub(super) async fn pump(pipe: &Receiver, sink: &mut Sink, mut exited: watch::Receiver<bool>) {
    let mut buf = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = exited.wait_for(|exited| *exited) => {
                drain_after_exit(pipe, sink, &mut buf);
                return;
            }
            ready = pipe.readable() => {
                if ready.is_err() {
                    return;
                }
                if buf.is_empty() {
                    buf = vec![0; CHUNK];
                }
                match pipe.try_read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => sink.push(&buf[..n]),
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                    Err(e) => {
                        sink.read_failed(&e);
                        return;
                    }
                }
            }
        }
    }
}

/// The last reads after the main process exited. These go straight to `read(2)`: tokio's
/// `try_read` answers `WouldBlock` without reading when the reactor has not yet seen the pipe
/// become readable, which would lose the last lines the process wrote.
fn drain_after_exit(pipe: &Receiver, sink: &mut Sink, buf: &mut Vec<u8>) {
    let capacity = fcntl(pipe, FcntlArg::F_GETPIPE_SZ).ok().and_then(|n| usize::try_from(n).ok()).unwrap_or(CHUNK);
    let mut budget = capacity.max(CHUNK);
    while budget > 0 {
        if buf.is_empty() {
            *buf = vec![0; CHUNK];
        }
        let want = budget.min(buf.len());
        match nix::unistd::read(pipe, &mut buf[..want]) {
            Ok(0) | Err(Errno::EAGAIN) => return,
            Ok(n) => {
                sink.push(&buf[..n]);
                budget -= n;
            }
            Err(Errno::EINTR) => {}
            Err(e) => {
                sink.read_failed(&io::Error::from(e));
                return;
            }
        }
    }
}

/// Where one stream goes: its file (opened on the first byte) and the tail kept in memory.
pub(super) struct Sink {
    path: PathBuf,
    file: Option<File>,
    /// The file was created (even if writing it failed later).
    created: bool,
    tail: VecDeque<u8>,
    bytes: u64,
    write_error: Option<String>,
}

impl Sink {
    pub(super) fn new(path: PathBuf) -> Self {
        Self { path, file: None, created: false, tail: VecDeque::new(), bytes: 0, write_error: None }
    }

    pub(super) fn push(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        self.write(chunk);
        if chunk.len() >= TAIL_BYTES {
            self.tail.clear();
            self.tail.extend(&chunk[chunk.len() - TAIL_BYTES..]);
        } else {
            let overflow = (self.tail.len() + chunk.len()).saturating_sub(TAIL_BYTES);
            self.tail.drain(..overflow);
            self.tail.extend(chunk);
        }
    }

    /// Writes through to the file. Output files are not fsync'd: they are a record for people,
    /// not state duet resumes from. Writes go to the page cache, so doing them on the reactor
    /// thread costs less than handing each chunk to a blocking thread.
    fn write(&mut self, chunk: &[u8]) {
        if self.write_error.is_some() {
            return;
        }
        if self.file.is_none() {
            match File::create(&self.path) {
                Ok(file) => {
                    self.file = Some(file);
                    self.created = true;
                }
                Err(e) => {
                    self.write_error = Some(format!("create {}: {}", self.path.display(), describe(&e)));
                    return;
                }
            }
        }
        if let Some(Err(e)) = self.file.as_mut().map(|file| file.write_all(chunk)) {
            self.write_error = Some(format!("write {}: {}", self.path.display(), describe(&e)));
            self.file = None;
        }
    }

    fn read_failed(&mut self, e: &io::Error) {
        if self.write_error.is_none() {
            self.write_error = Some(format!("read the output pipe: {}", describe(e)));
        }
    }

    pub(super) fn finish(mut self) -> Captured {
        let cut = self.bytes > self.tail.len() as u64;
        let tail = self.tail.make_contiguous();
        // A tail cut from a longer stream may start inside a UTF-8 sequence: drop those bytes
        // rather than show a replacement character.
        let skip = if cut { tail.iter().take(3).take_while(|&&b| b & 0xC0 == 0x80).count() } else { 0 };
        Captured {
            tail: String::from_utf8_lossy(&tail[skip..]).into_owned(),
            bytes: self.bytes,
            file: self.created.then_some(self.path),
            write_error: self.write_error,
        }
    }
}
