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
