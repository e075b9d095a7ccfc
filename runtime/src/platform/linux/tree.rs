//! Application trees and their generations: the ground truth of the Linux platform.
//!
//! ```text
//! PARENT/NAME -> .duet/NAME.gen/N      the tree P, a relative symlink (adopted once)
//! PARENT/.duet/NAME.gen/N/             generation N (a directory, or a btrfs subvolume)
//! PARENT/.duet/NAME.gen/.N.partial/    a clone being made (removed and redone if found)
//! PARENT/.duet/NAME.swap               the next symlink, renamed over P (atomic)
//! PARENT/.duet/trash/                  generations given up (commit, abort), deleted later
//! ```
//!
//! Everything lives in P's parent directory, so on P's file system: the swap is one `rename`,
//! and a generation is moved to the trash by a `rename` too. Each step is idempotent.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::{MetadataExt as _, symlink};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::process::command;
use crate::store::fsutil;

/// `statfs` magic of btrfs.
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;
/// The inode number of a btrfs subvolume's root.
const BTRFS_SUBVOLUME_INO: u64 = 256;

/// One application tree of the machine file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tree {
    pub(crate) name: String,
    /// P: where the application is found.
    pub(crate) path: PathBuf,
}

/// How a generation was made at the split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Clone {
    /// A btrfs snapshot (O(1)).
    Snapshot,
    /// `cp -a --reflink=auto` (shares blocks where the file system can).
    Copy,
}

impl std::fmt::Display for Clone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Snapshot => "a btrfs snapshot",
            Self::Copy => "a copy",
        })
    }
}

impl Tree {
    pub(crate) fn parent(&self) -> &Path {
        self.path.parent().unwrap_or_else(|| Path::new("/"))
    }

    fn duet_dir(&self) -> PathBuf {
        self.parent().join(".duet")
    }

    pub(crate) fn store(&self) -> PathBuf {
        self.duet_dir().join(format!("{}.gen", self.name))
    }

    pub(crate) fn generation(&self, n: u32) -> PathBuf {
        self.store().join(n.to_string())
    }

    pub(crate) fn trash(&self) -> PathBuf {
        self.duet_dir().join("trash")
    }

    fn link_text(&self, n: u32) -> PathBuf {
        PathBuf::from(format!(".duet/{}.gen/{n}", self.name))
    }

    /// The generation P points at: `Ok(None)` when P is not one of duet's symlinks (not adopted).
    pub(crate) fn current(&self) -> io::Result<Option<u32>> {
        let meta = match std::fs::symlink_metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if !meta.file_type().is_symlink() {
            return Ok(None);
        }
        let target = std::fs::read_link(&self.path)?;
        let prefix = format!(".duet/{}.gen/", self.name);
        Ok(target.to_str().and_then(|t| t.strip_prefix(&prefix)).and_then(|n| n.parse().ok()))
    }

    /// Points P at generation `n` in one rename (the old symlink is replaced, never missing).
    pub(crate) fn point_at(&self, n: u32) -> io::Result<()> {
        if self.current()? == Some(n) {
            return Ok(());
        }
        let next = self.duet_dir().join(format!("{}.swap", self.name));
        let _ = std::fs::remove_file(&next);
        symlink(self.link_text(n), &next)?;
        std::fs::rename(&next, &self.path)?;
        fsutil::sync_dir(self.parent())
    }

    /// Adopts the tree: its directory becomes generation 1 and P a symlink to it. Run again after
    /// a kill, it finishes what it started. Returns the generation P points at.
    pub(crate) fn adopt(&self) -> Result<u32, String> {
        if let Some(n) = self.current().map_err(|e| self.io("read", &e))? {
            return Ok(n);
        }
        let first = self.generation(1);
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.is_dir() => {
                if is_mount_point(&self.path) {
                    return Err(format!(
                        "{} is a mount point: duet cannot rename it into a generation; adopt a directory on the file system of {}",
                        self.path.display(),
                        self.parent().display()
                    ));
                }
                fsutil::create_dir_all_durable(&self.store()).map_err(|e| self.io("create", &e))?;
                if !same_file_system(&self.path, &self.store()) {
                    return Err(format!(
                        "{} and its generations' directory {} are on different file systems: a generation could not be renamed into place atomically; keep {} on the file system of {} (unmount what is mounted there)",
                        self.path.display(),
                        self.store().display(),
                        self.duet_dir().display(),
                        self.path.display()
                    ));
                }
                if first.exists() {
                    return Err(format!(
                        "{} is a directory, and {} already exists: a half-done adoption of another tree?",
                        self.path.display(),
                        first.display()
                    ));
                }
                fsutil::rename_durable(&self.path, &first).map_err(|e| self.io("move", &e))?;
            }
            Ok(_) => return Err(format!("{} is not a directory", self.path.display())),
            // Killed between the move and the symlink: the generation is there.
            Err(e) if e.kind() == io::ErrorKind::NotFound && first.is_dir() => {}
            Err(e) => return Err(self.io("read", &e)),
        }
        self.point_at(1).map_err(|e| self.io("link", &e))?;
        Ok(1)
    }

    /// Undoes the adoption: the current generation becomes the directory P again (the others
    /// are left in the store for the administrator).
    pub(crate) fn unadopt(&self) -> Result<(), String> {
        let Some(n) = self.current().map_err(|e| self.io("read", &e))? else {
            return Ok(());
        };
        let back = self.duet_dir().join(format!("{}.unadopt", self.name));
        let _ = std::fs::remove_dir(&back);
        fsutil::rename_durable(&self.generation(n), &back).map_err(|e| self.io("move", &e))?;
        std::fs::remove_file(&self.path).map_err(|e| self.io("remove", &e))?;
        fsutil::rename_durable(&back, &self.path).map_err(|e| self.io("move", &e))?;
        let _ = std::fs::remove_dir(self.store());
        let _ = std::fs::remove_dir(self.trash());
        let _ = std::fs::remove_dir(self.duet_dir());
        Ok(())
    }

    /// Makes generation `to` from `from`: a btrfs snapshot when `from` is a subvolume, else a copy
    /// into `.N.partial` and a rename. An existing `to` is kept (a repeated split).
    pub(crate) fn clone_generation(&self, from: u32, to: u32) -> Result<Clone, String> {
        let (src, dest) = (self.generation(from), self.generation(to));
        let method = if is_subvolume(&src) { Clone::Snapshot } else { Clone::Copy };
        if dest.is_dir() {
            return Ok(method);
        }
        let partial = self.store().join(format!(".{to}.partial"));
        remove_generation(&partial).map_err(|e| self.io("remove", &e))?;
        let out = match method {
            Clone::Snapshot => command::output(
                "btrfs",
                &["subvolume".into(), "snapshot".into(), src.clone().into(), partial.clone().into()],
            ),
            Clone::Copy => command::output(
                "cp",
                &[
                    OsString::from("-a"),
                    "--reflink=auto".into(),
                    "--".into(),
                    src.clone().into(),
                    partial.clone().into(),
                ],
            ),
        }
        .map_err(|e| format!("cannot run {}: {e}", if method == Clone::Snapshot { "btrfs" } else { "cp" }))?;
        if !out.success() {
            let _ = remove_generation(&partial);
            return Err(format!("cannot make generation {to} of tree {}: {}", self.name, out.why()));
        }
        // The copy's contents reach the disk before it gets its name: a power cut leaves either
        // no generation n+1 or a whole one (one syncfs: cp itself syncs nothing).
        let dir = std::fs::File::open(&partial).map_err(|e| self.io("open", &e))?;
        nix::unistd::syncfs(&dir).map_err(|e| self.io("sync", &io::Error::from(e)))?;
        fsutil::sync_dir(&self.store()).map_err(|e| self.io("sync", &e))?;
        fsutil::rename_durable(&partial, &dest).map_err(|e| self.io("move", &e))?;
        Ok(method)
    }

    /// Moves generation `n` into the trash (instant); nothing if it is gone already.
    pub(crate) fn discard(&self, n: u32) -> io::Result<()> {
        let gen_dir = self.generation(n);
        if !gen_dir.exists() {
            return Ok(());
        }
        fsutil::create_dir_all_durable(&self.trash())?;
        let dest = self.trash().join(format!("{}.{n}.{}", self.name, std::process::id()));
        fsutil::rename_durable(&gen_dir, &dest)?;
        fsutil::sync_dir(&self.store())
    }

    fn io(&self, op: &str, e: &io::Error) -> String {
        format!("cannot {op} in tree {} ({}): {e}", self.name, self.path.display())
    }
}

/// Removes a generation: a btrfs subvolume by `btrfs subvolume delete`, a directory by walking it.
pub(crate) fn remove_generation(path: &Path) -> io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    if is_subvolume(path) {
        let out = command::output("btrfs", &["subvolume".into(), "delete".into(), path.into()])?;
        if out.success() {
            return Ok(());
        }
    }
    std::fs::remove_dir_all(path)
}

/// Whether `path` is the root of a btrfs subvolume.
pub(crate) fn is_subvolume(path: &Path) -> bool {
    let on_btrfs = nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == BTRFS_SUPER_MAGIC);
    on_btrfs && std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && m.ino() == BTRFS_SUBVOLUME_INO)
}

/// The mount points of this mount namespace (`/proc/self/mountinfo`, octal escapes decoded).
pub(crate) fn mount_points() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines().filter_map(|line| line.split(' ').nth(4)).map(|m| PathBuf::from(unescape(m))).collect()
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn is_mount_point(path: &Path) -> bool {
    let Ok(real) = std::fs::canonicalize(path) else { return false };
    mount_points().contains(&real)
}

/// Whether two existing paths lie on one mount (a rename between them is atomic). Mounts, not
/// device numbers: each btrfs subvolume has a device number of its own, and a rename between
/// subvolumes of one mount is refused by the kernel only across mounts.
pub(crate) fn same_file_system(a: &Path, b: &Path) -> bool {
    let (a, b) = (mount_of(a), mount_of(b));
    a.is_some() && a == b
}

/// The mount a path lies on: the longest mount point that is a prefix of its real path.
pub(crate) fn mount_of(path: &Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(path).ok()?;
    mount_points().into_iter().filter(|m| real.starts_with(m)).max_by_key(|m| m.components().count())
}

/// Bytes a directory tree holds (files' apparent sizes), for the space check.
pub(crate) fn size_of(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() && !meta.file_type().is_symlink() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// Tier A of the Linux platform's tests: the generation and symlink logic, unprivileged, in
/// temporary directories, every step repeated.
#[cfg(test)]
mod tests {
    use super::*;

    fn tree_in(dir: &Path) -> Tree {
        let path = dir.join("opt/app");
        std::fs::create_dir_all(path.join("bin")).unwrap();
        std::fs::write(path.join("VERSION"), "1\n").unwrap();
        std::fs::write(path.join("bin/run"), "#!/bin/sh\n").unwrap();
        Tree { name: "app".into(), path }
    }

    #[test]
    fn adoption_is_idempotent_finishes_a_half_done_one_and_is_undone() {
        let dir = tempfile::tempdir().unwrap();
        let t = tree_in(dir.path());
        assert_eq!(t.current().unwrap(), None);
        assert_eq!(t.adopt().unwrap(), 1);
        assert_eq!(t.adopt().unwrap(), 1, "again: nothing to do");
        assert_eq!(std::fs::read_link(&t.path).unwrap(), Path::new(".duet/app.gen/1"));
        assert_eq!(std::fs::read_to_string(t.path.join("VERSION")).unwrap(), "1\n");
        // Killed between the move and the symlink: the next adoption finishes it.
        std::fs::remove_file(&t.path).unwrap();
        assert_eq!(t.adopt().unwrap(), 1);
        assert_eq!(std::fs::read_to_string(t.path.join("VERSION")).unwrap(), "1\n");
        t.unadopt().unwrap();
        t.unadopt().unwrap();
        assert!(t.path.is_dir() && !t.path.is_symlink());
        assert_eq!(std::fs::read_to_string(t.path.join("VERSION")).unwrap(), "1\n");
        assert!(!dir.path().join("opt/.duet").exists(), "nothing of duet's is left");
    }

    #[test]
    fn a_file_is_not_adopted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("opt")).unwrap();
        std::fs::write(dir.path().join("opt/app"), "").unwrap();
        let t = Tree { name: "app".into(), path: dir.path().join("opt/app") };
        assert!(t.adopt().unwrap_err().ends_with("is not a directory"));
    }

    #[test]
    fn a_generation_is_copied_once_a_partial_copy_is_redone_and_the_swap_is_repeatable() {
        let dir = tempfile::tempdir().unwrap();
        let t = tree_in(dir.path());
        t.adopt().unwrap();
        // A copy cut short by a kill.
        std::fs::create_dir_all(t.store().join(".2.partial/junk")).unwrap();
        assert_eq!(t.clone_generation(1, 2).unwrap(), Clone::Copy);
        assert!(!t.store().join(".2.partial").exists());
        std::fs::write(t.generation(2).join("VERSION"), "2\n").unwrap();
        assert_eq!(t.clone_generation(1, 2).unwrap(), Clone::Copy, "again: the generation is kept");
        assert_eq!(std::fs::read_to_string(t.generation(2).join("VERSION")).unwrap(), "2\n");
        assert!(t.generation(2).join("bin/run").exists(), "the whole tree was copied");
        for _ in 0..2 {
            t.point_at(2).unwrap();
            assert_eq!(t.current().unwrap(), Some(2));
            assert_eq!(std::fs::read_to_string(t.path.join("VERSION")).unwrap(), "2\n");
        }
        for _ in 0..2 {
            t.point_at(1).unwrap();
            assert_eq!(t.current().unwrap(), Some(1));
        }
        for _ in 0..2 {
            t.discard(2).unwrap();
        }
        assert!(!t.generation(2).exists());
        let trashed: Vec<_> = std::fs::read_dir(t.trash()).unwrap().collect();
        assert_eq!(trashed.len(), 1, "one generation in the trash");
        for entry in std::fs::read_dir(t.trash()).unwrap() {
            remove_generation(&entry.unwrap().path()).unwrap();
        }
        assert_eq!(std::fs::read_dir(t.trash()).unwrap().count(), 0);
    }

    #[test]
    fn a_symlink_duet_did_not_make_is_not_a_generation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("opt/elsewhere")).unwrap();
        std::os::unix::fs::symlink("elsewhere", dir.path().join("opt/app")).unwrap();
        let t = Tree { name: "app".into(), path: dir.path().join("opt/app") };
        assert_eq!(t.current().unwrap(), None);
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape(r"/mnt/with\040space"), "/mnt/with space");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/a\134b"), r"/a\b");
    }
}
