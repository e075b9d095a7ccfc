//! A small fluent runner for the `duet` binary, and temporary plan trees.
//!
//! A run's streams are checked whole (`stdout`, `stderr`: what a user reads, every line of it)
//! or by fragment (`stdout_has`, `stderr_has`: for runs that are killed, raced or random).
//! [`Run::normalized`] replaces the parts of an output that differ from run to run, so that
//! whole outputs can be compared; [`indoc`] lets a fixture (or an expected output) read as the file it stands for.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

pub(crate) struct Duet {
    command: Command,
}

/// `duet ARGS...`, run from the workspace root unless `in_dir` says otherwise.
pub(crate) fn duet(args: &[&str]) -> Duet {
    let mut command = Command::new(env!("CARGO_BIN_EXE_duet"));
    command.args(args).current_dir(repo()).env("NO_COLOR", "1").env_remove("RUST_BACKTRACE");
    Duet { command }
}

impl Duet {
    pub(crate) fn env(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(name, value);
        self
    }

    pub(crate) fn env_remove(mut self, name: &str) -> Self {
        self.command.env_remove(name);
        self
    }

    /// Starts duet without waiting (for tests that kill it or race it).
    pub(crate) fn spawn(mut self) -> std::process::Child {
        self.command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        self.command.spawn().expect("duet starts")
    }

    /// Runs duet to its end, however it ends (for tests that have it killed).
    pub(crate) fn output(mut self) -> std::process::Output {
        self.command.output().expect("duet runs")
    }

    pub(crate) fn in_dir(mut self, dir: &Path) -> Self {
        self.command.current_dir(dir);
        self
    }

    pub(crate) fn run(mut self) -> Run {
        let out = self.command.output().expect("duet runs");
        Run {
            code: out.status.code().expect("duet exits, not killed by a signal"),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    #[track_caller]
    pub(crate) fn code(&self, expected: i32) -> &Self {
        assert_eq!(self.code, expected, "exit code\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        assert!(!self.stderr.contains("panicked"), "duet panicked:\n{}", self.stderr);
        self
    }

    #[track_caller]
    pub(crate) fn stderr_has(&self, fragment: &str) -> &Self {
        assert!(self.stderr.contains(fragment), "stderr lacks {fragment:?}:\n{}", self.stderr);
        self
    }

    #[track_caller]
    pub(crate) fn stdout_has(&self, fragment: &str) -> &Self {
        assert!(self.stdout.contains(fragment), "stdout lacks {fragment:?}:\n{}", self.stdout);
        self
    }

    /// The whole of stdout is `expected`, to the last newline.
    #[track_caller]
    pub(crate) fn stdout(&self, expected: &str) -> &Self {
        assert_text("stdout", expected, &self.stdout);
        self
    }

    /// The whole of stderr is `expected`, to the last newline.
    #[track_caller]
    pub(crate) fn stderr(&self, expected: &str) -> &Self {
        assert_text("stderr", expected, &self.stderr);
        self
    }

    /// The run with both streams through [`normalize`], for comparing whole outputs.
    pub(crate) fn normalized(&self, dir: &Path) -> Run {
        Run { code: self.code, stdout: normalize(&self.stdout, dir), stderr: normalize(&self.stderr, dir) }
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// `text` with what differs from one run to the next replaced by placeholders:
/// - `[DIR]`: the temporary directory `dir` (as given, and canonical), wherever it appears;
/// - `[ID]`: a session id (`20261206-210349-ab12`: date, time, four hex digits);
/// - `[T]`: a measured duration as duet prints steps' (`0.1s`, `12.3s`: digits, one decimal, `s`).
///
/// Durations written otherwise (`200ms`, `2m`) come from plans and inventories, and are kept.
pub(crate) fn normalize(text: &str, dir: &Path) -> String {
    let mut text = text.to_owned();
    // The canonical path first: it may be the longer one (`/private/tmp/...` for `/tmp/...`).
    if let Ok(canonical) = dir.canonicalize() {
        text = text.replace(&canonical.display().to_string(), "[DIR]");
    }
    text = text.replace(&dir.display().to_string(), "[DIR]");
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'.');
        let found = if starts_word {
            [(session_id_len(&bytes[i..]), "[ID]"), (duration_len(&bytes[i..]), "[T]")]
                .into_iter()
                .find_map(|(len, placeholder)| len.map(|len| (len, placeholder)))
                .filter(|&(len, _)| bytes.get(i + len).is_none_or(|b| !b.is_ascii_alphanumeric()))
        } else {
            None
        };
        if let Some((len, placeholder)) = found {
            out.push_str(placeholder);
            i += len;
        } else {
            // A placeholder starts on an ASCII byte: everything else is copied whole.
            let c = text[i..].chars().next().expect("a character starts here");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `20261206-210349-ab12` at the start of `s`: its length.
fn session_id_len(s: &[u8]) -> Option<usize> {
    let all = |range: std::ops::Range<usize>, class: fn(&u8) -> bool| s.get(range).is_some_and(|b| b.iter().all(class));
    let id = all(0..8, u8::is_ascii_digit)
        && s.get(8) == Some(&b'-')
        && all(9..15, u8::is_ascii_digit)
        && s.get(15) == Some(&b'-')
        && all(16..20, u8::is_ascii_hexdigit);
    id.then_some(20)
}

/// `12.3s` at the start of `s`: its length.
fn duration_len(s: &[u8]) -> Option<usize> {
    let whole = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let tenths = s.get(whole) == Some(&b'.') && s.get(whole + 1).is_some_and(u8::is_ascii_digit);
    (whole > 0 && tenths && s.get(whole + 2) == Some(&b's')).then_some(whole + 3)
}

/// `actual` is `expected`, whole; if not, fails showing how they differ, line by line.
#[track_caller]
pub(crate) fn assert_text(what: &str, expected: &str, actual: &str) {
    assert!(expected == actual, "{}", mismatch(what, expected, actual));
}

/// Why a text is not what was expected: a line diff (`-` expected, `+` actual).
fn mismatch(what: &str, expected: &str, actual: &str) -> String {
    let (want, got): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    // common[i][j]: how many lines want[i..] and got[j..] have in common, in order.
    let mut common = vec![vec![0_usize; got.len() + 1]; want.len() + 1];
    for i in (0..want.len()).rev() {
        for j in (0..got.len()).rev() {
            common[i][j] =
                if want[i] == got[j] { common[i + 1][j + 1] + 1 } else { common[i + 1][j].max(common[i][j + 1]) };
        }
    }
    let mut out = format!("{what} is not what was expected (- expected, + actual):\n");
    let (mut i, mut j) = (0, 0);
    while i < want.len() || j < got.len() {
        if i < want.len() && j < got.len() && want[i] == got[j] {
            let _ = writeln!(out, "  {}", want[i]);
            (i, j) = (i + 1, j + 1);
        } else if i < want.len() && (j == got.len() || common[i + 1][j] >= common[i][j + 1]) {
            let _ = writeln!(out, "- {}", want[i]);
            i += 1;
        } else {
            let _ = writeln!(out, "+ {}", got[j]);
            j += 1;
        }
    }
    if want == got {
        let _ = writeln!(
            out,
            "(the lines are the same; the ends differ: expected ...{:?}, actual ...{:?})",
            tail(expected),
            tail(actual)
        );
    }
    out
}

fn tail(s: &str) -> &str {
    let mut from = s.len().saturating_sub(12);
    while !s.is_char_boundary(from) {
        from += 1;
    }
    &s[from..]
}

/// A fixture (or an expected output) written as an indented block in a raw string, so that it
/// reads as the file it stands for (the `indoc` crate's macro, as a function):
///
/// ```text
/// let plan = indoc(r"
///     version: 1
///     services: [AppServer]
///     ");                      // "version: 1\nservices: [AppServer]\n"
/// ```
///
/// The line break after the opening quote goes, and so does the line of the closing quote if it
/// holds only spaces; each line loses the indentation every non-blank line shares, or that of the
/// closing quote if it is less (so that a block whose lines are all indented can say so), and
/// blank lines become empty. A block whose last line runs into the closing quote has no final
/// newline.
pub(crate) fn indoc(block: &str) -> String {
    let block = block.strip_prefix('\n').unwrap_or(block);
    let (block, closing) = match block.rsplit_once('\n') {
        Some((body, closing)) if closing.trim_start_matches(' ').is_empty() => (&block[..=body.len()], Some(closing)),
        _ => (block, None),
    };
    let indent = block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start_matches(' ').len())
        .chain(closing.map(str::len))
        .min()
        .unwrap_or(0);
    let mut out = String::with_capacity(block.len());
    for line in block.split_inclusive('\n') {
        if line.trim().is_empty() {
            out.push_str(line.trim_start_matches(' '));
        } else {
            out.push_str(&line[indent..]);
        }
    }
    out
}

/// A temporary directory holding the given files.
pub(crate) fn tree(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, bytes) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
    }
    dir
}

// The helpers' own rules, which the whole-output tests rely on.

#[test]
fn normalize_replaces_only_what_varies() {
    let dir = Path::new("/tmp/.tmpAbC123");
    let text = "session 20261206-210349-ab12: /tmp/.tmpAbC123/plans/p.yaml\n  ok  x  exit value 0  12.3s\n";
    assert_eq!(normalize(text, dir), "session [ID]: [DIR]/plans/p.yaml\n  ok  x  exit value 0  [T]\n");
    // Durations from plans and inventories, versions, addresses and longer numbers stay.
    let kept = "split in progress (simulated, 200ms); timeout 2m; duet 0.1.0; 192.0.2.10; 1.25s; 0.5sec; \
                readiness-20261206-210349-ab12x\n";
    assert_eq!(normalize(kept, dir), kept);
}

#[test]
fn indoc_keeps_the_text_between_the_margin_and_the_closing_quote() {
    let plan = indoc(
        r"
        version: 1
        services:
          - AppServer

        title: t
        ",
    );
    assert_eq!(plan, "version: 1\nservices:\n  - AppServer\n\ntitle: t\n");
    assert_eq!(indoc("\n    a: [\n    "), "a: [\n");
    assert_eq!(indoc("\n    a: ["), "a: [", "no closing line: no final newline");
    assert_eq!(indoc("\n      indented\n    "), "  indented\n", "the closing quote marks the margin");
    assert_eq!(indoc("version: 1\n"), "version: 1\n");
}

#[test]
fn a_mismatch_shows_each_line_that_differs() {
    let shown = mismatch("stdout", "same\nwanted\nend\n", "same\ngot\nend\n");
    assert_eq!(shown, "stdout is not what was expected (- expected, + actual):\n  same\n- wanted\n+ got\n  end\n");
    let ends = mismatch("stderr", "a\n", "a");
    assert!(
        ends.ends_with("(the lines are the same; the ends differ: expected ...\"a\\n\", actual ...\"a\")\n"),
        "{ends}"
    );
}
