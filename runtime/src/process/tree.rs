//! Process trees: stopping an attempt's group and everything that carries its marks, and
//! finding, in `/proc`, what an earlier attempt left running.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::{ExitWatch, GROUP_EXIT_LIMIT, Marks, ProcessSpec};

/// At the timeout or a second signal: SIGTERM to the group and to every process carrying the
/// attempt's marks (those that left the group), SIGKILL once the main process has exited or the
/// grace has passed, then wait for the group to be gone; what carries the marks gets what is
/// left of the grace, then SIGKILL too.
pub(super) async fn stop_tree(pgid: Pid, spec: &ProcessSpec, sigchld: &mut ExitWatch) {
    let started = Instant::now();
    let _ = killpg(pgid, Signal::SIGTERM);
    signal_each(&leftovers(&spec.marks), Signal::SIGTERM);
    let _ = tokio::time::timeout(spec.kill_grace, sigchld.exited(pgid)).await;
    let _ = killpg(pgid, Signal::SIGKILL);
    // The main process stays unreaped (see the module header), so `pgid` is still ours here.
    sigchld.exited(pgid).await;
    let deadline = Instant::now() + GROUP_EXIT_LIMIT;
    let mut pause = Duration::from_millis(1);
    while group_has_live_members(pgid) && Instant::now() < deadline {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    stop_leftovers(&spec.marks, spec.kill_grace.saturating_sub(started.elapsed())).await;
}

/// Whether any process of group `pgid` is still running (zombies are dead: they only wait to be
/// reaped, by us or by init).
fn group_has_live_members(pgid: Pid) -> bool {
    if killpg(pgid, None) == Err(Errno::ESRCH) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries.flatten().any(|entry| {
        let Some(member) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { return false };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{member}/stat")) else { return false };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        let Some(fields) = stat.rfind(')').map(|end| &stat[end + 1..]) else { return false };
        let mut fields = fields.split_ascii_whitespace();
        let (state, pgrp) = (fields.next(), fields.nth(1));
        pgrp.and_then(|p| p.parse::<i32>().ok()) == Some(pgid.as_raw()) && !matches!(state, Some("Z" | "X" | "x"))
    })
}

/// Live processes whose environment holds every mark of `marks`: what an attempt of a step left
/// running (an action's tree inherits the marks). Sorted, this process excluded; nothing for
/// empty marks (which would match every process).
pub(crate) fn leftovers(marks: &Marks) -> Vec<u32> {
    if marks.is_empty() {
        return Vec::new();
    }
    let wanted = marks.wanted();
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut found: Vec<u32> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|&pid| pid != me && is_live(pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| wanted.iter().all(|w| env.split(|&b| b == 0).any(|var| var == w.as_slice())))
        })
        .collect();
    found.sort_unstable();
    found
}

pub(super) fn is_live(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rfind(')').and_then(|end| stat[end + 1..].split_ascii_whitespace().next());
    !matches!(state, None | Some("Z" | "X" | "x"))
}

/// Stops [`leftovers`]: SIGTERM, then SIGKILL to what is still there after `grace`. The marked
/// processes are looked for again after each signal (one may have forked meanwhile), until none
/// is left or [`GROUP_EXIT_LIMIT`] has passed. Returns every pid it found.
pub(crate) async fn stop_leftovers(marks: &Marks, grace: Duration) -> Vec<u32> {
    let mut found = leftovers(marks);
    if found.is_empty() {
        return found;
    }
    signal_each(&found, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while found.iter().any(|&pid| is_live(pid)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + GROUP_EXIT_LIMIT;
    loop {
        let live = leftovers(marks);
        for pid in &live {
            if let Err(at) = found.binary_search(pid) {
                found.insert(at, *pid);
            }
        }
        if live.is_empty() || Instant::now() >= deadline {
            break;
        }
        signal_each(&live, Signal::SIGKILL);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    found
}

fn signal_each(pids: &[u32], signal: Signal) {
    for &pid in pids {
        if let Ok(raw) = i32::try_from(pid) {
            let _ = nix::sys::signal::kill(Pid::from_raw(raw), signal);
        }
    }
}
