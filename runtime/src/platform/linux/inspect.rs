//! What the merge readiness looks at: the Production tree's manifest at the split (to see drift:
//! changes there are lost at the commit, guide 3-3) and the processes that still use a tree.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One entry of a tree, as the drift check compares it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Item {
    /// `d`, `f`, `l` or `o` (other).
    kind: char,
    mode: u32,
    size: u64,
    mtime_ns: i128,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    link: Option<String>,
}

/// Relative path -> entry, sorted.
pub(crate) type Manifest = BTreeMap<String, Item>;

/// The manifest of the tree at `root` (symlinks are not followed).
pub(crate) fn manifest(root: &Path) -> Manifest {
    let mut out = Manifest::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&rel)) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let path = rel.join(entry.file_name());
            let kind = match meta.file_type() {
                t if t.is_symlink() => 'l',
                t if t.is_dir() => 'd',
                t if t.is_file() => 'f',
                _ => 'o',
            };
            if kind == 'd' {
                stack.push(path.clone());
            }
            let link = (kind == 'l')
                .then(|| std::fs::read_link(entry.path()).ok())
                .flatten()
                .map(|l| l.to_string_lossy().into_owned());
            let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
            let item = Item {
                kind,
                mode: meta.permissions().mode(),
                size: if kind == 'd' { 0 } else { meta.len() },
                mtime_ns: if kind == 'd' { 0 } else { mtime_ns },
                link,
            };
            out.insert(path.to_string_lossy().into_owned(), item);
        }
    }
    out
}

/// Paths added, removed or changed between two manifests, sorted.
pub(crate) fn drift(before: &Manifest, now: &Manifest) -> Vec<String> {
    let keys: BTreeSet<&String> = before.keys().chain(now.keys()).collect();
    keys.into_iter().filter(|k| before.get(*k) != now.get(*k)).cloned().collect()
}

/// A process that uses a directory: its pid and command name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct User {
    pub(crate) pid: u32,
    pub(crate) name: String,
}

/// Processes of this mount namespace (other than duet, the `exclude`d pids and their process
/// groups) whose
/// working directory, root, executable, open files or mapped files lie under `dir` (a real
/// path). Sorted by pid.
pub(crate) fn users(dir: &Path, exclude: &BTreeSet<u32>) -> Vec<User> {
    let me = std::process::id();
    let my_ns = std::fs::read_link("/proc/self/ns/mnt").ok();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut out: Vec<User> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|&pid| pid != me)
        .filter(|&pid| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok() == my_ns)
        .filter(|&pid| !exclude.contains(&pid) && group_of(pid).is_none_or(|g| !exclude.contains(&g)))
        .filter(|&pid| uses(pid, dir))
        .map(|pid| User {
            pid,
            name: std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_owned(),
        })
        .collect();
    out.sort_by_key(|u| u.pid);
    out
}

fn group_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_ascii_whitespace().nth(2)?.parse().ok()
}

fn uses(pid: u32, dir: &Path) -> bool {
    let under = |p: &Path| p.starts_with(dir);
    let links = ["cwd", "root", "exe"].into_iter().filter_map(|l| std::fs::read_link(format!("/proc/{pid}/{l}")).ok());
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok());
    if links.chain(fds).any(|p| under(&p)) {
        return true;
    }
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    maps.lines().filter_map(|l| l.split_ascii_whitespace().nth(5)).any(|p| under(Path::new(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_names_what_was_added_removed_and_changed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/app.conf"), "a=1\n").unwrap();
        std::fs::write(root.join("gone"), "x").unwrap();
        let before = manifest(root);
        assert!(drift(&before, &manifest(root)).is_empty(), "nothing changed");
        std::fs::write(root.join("etc/app.conf"), "a=22\n").unwrap();
        std::fs::remove_file(root.join("gone")).unwrap();
        std::fs::write(root.join("new"), "y").unwrap();
        assert_eq!(drift(&before, &manifest(root)), ["etc/app.conf", "gone", "new"]);
    }

    #[test]
    fn a_process_working_in_a_tree_uses_it_unless_excluded() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep").arg("60").current_dir(dir.path()).spawn().unwrap();
        let pid = child.id();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        let found = users(&real, &BTreeSet::new());
        let excluded = users(&real, &BTreeSet::from([pid]));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.iter().any(|u| u.pid == pid && u.name == "sleep"), "{found:?}");
        assert!(!excluded.iter().any(|u| u.pid == pid), "{excluded:?}");
    }
}
