//! The Linux platform's own commands: `duet adopt` (a tree becomes generation 1, once),
//! `duet inventory --platform linux` (a machine file from this host) and `duet recover` (after a
//! reboot while merged and not committed: back to the old version, or keep the new one).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use duet_compiler::diagnostic::Diagnostics;
use duet_compiler::inventory::Inventory;
use duet_compiler::inventory::linux::{LinuxMachine, OnReboot};
use duet_compiler::report;
use duet_compiler::source::SourceMap;

use crate::cli::args::{InventoryArgs, RunArgs};
use crate::cli::{Context, upgrade};
use crate::error::{Error, Result};
use crate::outcome::Outcome;
use crate::platform::linux::{inspect, tree::Tree};
use crate::platform::{self, Phase, Platform as _};
use crate::store::fsutil;
use crate::view::console;

fn report(result: Result<String>) -> Outcome {
    match result {
        Ok(said) => console::print(&said),
        Err(e) => {
            console::eprintln(&e.report(None));
            Outcome::Failure
        }
    }
}

/// Reads a Linux machine file (its problems shown as the compiler reports them).
fn load(path: &Path) -> Result<LinuxMachine> {
    let (mut sources, mut diags) = (SourceMap::default(), Diagnostics::default());
    let inventory = Inventory::load(path, &mut sources, &mut diags);
    if diags.has_errors() || inventory.is_none() {
        let shown = report::render_human(&diags.into_sorted(), &sources, false);
        return Err(Error::new(format!("{}: the machine file is invalid\n{}", path.display(), shown.trim_end()))
            .help("fix it, then run the command again"));
    }
    inventory.and_then(|i| i.linux).ok_or_else(|| {
        Error::new(format!("{} is not a Linux machine file", path.display()))
            .help("`duet adopt` works on the trees of a `platform: linux` machine file (docs/linux.md)")
    })
}

/// `duet adopt --inventory FILE [--undo]`.
pub(crate) fn adopt(machine: &Path, undo: bool) -> Outcome {
    report(adopt_trees(machine, undo))
}

fn adopt_trees(machine: &Path, undo: bool) -> Result<String> {
    let machine = load(machine)?;
    let mut said = String::new();
    for t in machine.trees.iter().map(|t| Tree { name: t.name.clone(), path: PathBuf::from(&t.path) }) {
        if undo {
            t.unadopt()
                .map_err(|why| Error::new(why).help("fix the tree's directory, then run `duet adopt --undo` again"))?;
            let _ = writeln!(said, "tree {}: {} is a plain directory again", t.name, t.path.display());
            continue;
        }
        if t.current().ok().flatten().is_none() && t.path.is_dir() {
            let real = std::fs::canonicalize(&t.path).unwrap_or_else(|_| t.path.clone());
            if let Some(user) = inspect::users(&real, &BTreeSet::new()).first() {
                return Err(Error::new(format!(
                    "tree {} ({}) is in use by process {} ({})",
                    t.name,
                    t.path.display(),
                    user.pid,
                    user.name
                ))
                .help("stop the application first: adoption moves its directory (once)"));
            }
        }
        let n =
            t.adopt().map_err(|why| Error::new(why).help("fix the tree's directory, then run `duet adopt` again"))?;
        let _ = writeln!(said, "tree {}: {} -> .duet/{}.gen/{n}", t.name, t.path.display(), t.name);
    }
    Ok(said)
}

/// `duet inventory --platform linux --tree NAME=PATH ... [-o FILE]`.
pub(crate) fn inventory(args: &InventoryArgs) -> Outcome {
    report(write_inventory(args))
}

fn pair(text: &str, what: &str) -> Result<(String, String)> {
    text.split_once('=').map(|(a, b)| (a.to_owned(), b.to_owned())).ok_or_else(|| {
        Error::new(format!("--{what} {text:?} is not NAME=VALUE")).help(format!("write it as --{what} NAME=VALUE"))
    })
}

fn write_inventory(args: &InventoryArgs) -> Result<String> {
    let mut out = String::from(
        "# A Linux machine file (docs/linux.md), written by `duet inventory --platform linux`.\nversion: 1\nplatform: linux\n",
    );
    let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let _ = writeln!(out, "model: {}", serde_json::to_string(&format!("{host} (Linux)")).expect("a string"));
    out.push_str("linux:\n  trees:\n");
    for (name, path) in args.tree.iter().map(|t| pair(t, "tree")).collect::<Result<Vec<_>>>()? {
        if !Path::new(&path).exists() {
            return Err(Error::new(format!("tree {name}: {path} does not exist"))
                .help("give the directory the application is installed in"));
        }
        let _ = writeln!(out, "    - {{name: {name}, path: {}}}", serde_json::to_string(&path).expect("a string"));
    }
    let data: Vec<_> = args.data.iter().map(|t| pair(t, "data")).collect::<Result<_>>()?;
    if !data.is_empty() {
        out.push_str("  data:\n");
    }
    for (name, path) in data {
        let _ = writeln!(out, "    - {{name: {name}, path: {}}}", serde_json::to_string(&path).expect("a string"));
    }
    let systemd: Vec<_> = args.systemd.iter().map(|t| pair(t, "systemd")).collect::<Result<_>>()?;
    if !systemd.is_empty() {
        out.push_str("  services:\n");
    }
    for (name, unit) in systemd {
        let known = crate::process::command::output("systemctl", &["cat".into(), unit.clone().into()])
            .is_ok_and(|o| o.success());
        if !known {
            return Err(Error::new(format!("service {name}: systemd has no unit {unit}")).help(
                "name a unit `systemctl list-unit-files --type=service` shows, or write an `exec` service by hand",
            ));
        }
        let _ = writeln!(out, "    - {{name: {name}, systemd: {}}}", serde_json::to_string(&unit).expect("a string"));
    }
    // What is written must be a valid machine file.
    let dir = tempfile_dir()?;
    let check = dir.join("machine.yaml");
    std::fs::write(&check, &out).map_err(|e| Error::new(format!("cannot write {}: {e}", check.display())))?;
    let loaded = load(&check);
    let _ = std::fs::remove_dir_all(&dir);
    loaded?;
    match &args.output {
        Some(file) => {
            fsutil::write_atomic(file, out.as_bytes()).map_err(|e| {
                Error::new(format!("cannot write {}: {e}", file.display())).help("choose a file you can write")
            })?;
            Ok(format!("wrote {}\n", file.display()))
        }
        None => Ok(out),
    }
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("duet-inventory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::new(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// `duet recover`: run at boot (docs/duet-recover.service), before the applications. A Linux
/// machine merged and not committed goes back to the old version (`duet abort`), unless its
/// machine file says `on_reboot: keep`.
pub(crate) fn recover(run: &RunArgs) -> Outcome {
    let ctx = Context::reading(&run.state);
    let found = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(e.to_string()))
        .and_then(|rt| {
            rt.block_on(async {
                let Some(machine) = platform::existing(&ctx.state.root, None, false)? else { return Ok(None) };
                let keep = machine.inventory().linux.as_ref().map(|l| l.on_reboot);
                Ok(Some((machine.observe().await?.phase, keep)))
            })
        });
    match found {
        Err(e) => report(Err(e)),
        Ok(Some((Phase::Merged, Some(OnReboot::Revert)))) => {
            console::print("duet recover: the machine was merged and not committed: going back to the old version\n");
            // At boot the applications' units wait for this one: their starts are queued.
            platform::linux::queue_starts();
            upgrade::execute(run, &upgrade::Request::Abort)
        }
        Ok(Some((Phase::Merged, Some(OnReboot::Keep)))) => console::print(
            "duet recover: the machine is merged and not committed; the machine file says `on_reboot: keep`: the new version stays (commit or abort when ready)\n",
        ),
        Ok(_) => console::print("duet recover: nothing to recover (no Linux machine merged and not committed)\n"),
    }
}
