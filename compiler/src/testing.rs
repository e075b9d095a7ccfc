//! Test helpers: write a plan tree into a temporary directory, compile it, and look at the
//! diagnostics by code, file, line and column.

use std::path::{Path, PathBuf};

use crate::compile::{Compilation, Options, compile};
use crate::diagnostic::Severity;

pub(crate) struct Tree {
    pub(crate) dir: tempfile::TempDir,
}

impl Tree {
    /// Files as `(name, text)`; `name` may contain `/` for subdirectories. Files named
    /// `*.sh` or under `bin/` are made executable.
    pub(crate) fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
            std::fs::write(&path, text).expect("write");
            if Path::new(name).extension().is_some_and(|e| e == "sh") || name.starts_with("bin/") {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            }
        }
        Self { dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn compile(&self, root: &str) -> Compilation {
        compile(&Options { plan: self.path(root), inventory: None, keyring: None })
    }

    pub(crate) fn compile_with(&self, root: &str, inventory: &str) -> Compilation {
        compile(&Options { plan: self.path(root), inventory: Some(self.path(inventory)), keyring: None })
    }
}

/// A diagnostic reduced to what tests compare: severity, code, file name, line, column.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) severity: Severity,
    pub(crate) code: &'static str,
    pub(crate) file: String,
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) message: String,
}

pub(crate) fn found(c: &Compilation) -> Vec<Found> {
    c.diagnostics
        .iter()
        .map(|d| {
            let (file, line, column) = d.position(&c.sources);
            let file = file
                .map(|f| Path::new(&f).file_name().map_or_else(|| f.clone(), |n| n.to_string_lossy().into_owned()))
                .unwrap_or_default();
            Found {
                severity: d.severity,
                code: d.code,
                file,
                line: line.unwrap_or(0),
                column: column.unwrap_or(0),
                message: d.message.clone(),
            }
        })
        .collect()
}

/// Asserts one diagnostic with this code is at `file:line:column`, and returns its message.
#[track_caller]
pub(crate) fn expect_at(c: &Compilation, code: &str, file: &str, line: usize, column: usize) -> String {
    let all = found(c);
    all.iter()
        .find(|f| f.code == code && f.file == file && f.line == line && f.column == column)
        .map_or_else(|| panic!("no {code} at {file}:{line}:{column}; found:\n{all:#?}"), |f| f.message.clone())
}

#[track_caller]
pub(crate) fn expect_clean(c: &Compilation) {
    let all = found(c);
    assert!(all.iter().all(|f| f.severity == Severity::Note), "expected no errors or warnings, found:\n{all:#?}");
    assert!(c.is_valid(), "expected a compiled plan");
}
