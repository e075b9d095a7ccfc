//! A small fluent runner for the `duet` binary, and temporary plan trees.

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

    /// Starts duet without waiting (for tests that kill it or race it).
    pub(crate) fn spawn(mut self) -> std::process::Child {
        self.command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        self.command.spawn().expect("duet starts")
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

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
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
