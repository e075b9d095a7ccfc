//! Entry points for the fuzz targets (`tests/fuzz`) and for the test that replays their seeds:
//! each takes untrusted bytes as duet reads them from disk, compiles them, and renders the
//! result every way the command line can. Whatever the bytes are, each must return: a panic,
//! a hang or an abort is a bug (docs/fuzzing.md).

use std::path::PathBuf;

use crate::compile::{Options, compile};
use crate::compiled::CompiledPlan;
use crate::render::{explain, graph, summary};
use crate::report;

/// The machine the example plans are written for: fuzzed plans are compiled against it too.
const INVENTORY: &str = include_str!("../../plans/machines/320ma.yaml");
/// A plan that uses every field: fuzzed inventories are checked with it.
const PLAN: &str = include_str!("../../plans/quickstart.yaml");
/// The executables the example plans name, so that plans can bind to the inventory.
const SCRIPTS: [&str; 3] = ["scripts/appctl", "scripts/sqlctl", "scripts/trace"];

/// `plan_tree` splits its bytes into at most this many files at NUL bytes.
pub const TREE_FILES: usize = 8;

/// A directory the entry points write their inputs to, set up once per process: the
/// inventory, the quickstart plan and the scripts the example plans run.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// Sets up `dir` (created if missing; the caller removes it).
    pub fn new(dir: PathBuf) -> std::io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir.join("scripts"))?;
        std::fs::write(dir.join("inventory.yaml"), INVENTORY)?;
        std::fs::write(dir.join("quickstart.yaml"), PLAN)?;
        for script in SCRIPTS {
            let path = dir.join(script);
            std::fs::write(&path, "#!/bin/sh\n")?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(Self { dir })
    }

    /// A fresh directory under the system's temporary directory, for a fuzzing process (which
    /// exits without running destructors: the directory stays behind, a few kilobytes).
    pub fn in_temp_dir() -> Self {
        let dir = std::env::temp_dir().join(format!("duet-fuzz-{}", std::process::id()));
        Self::new(dir).expect("the temporary directory is writable")
    }

    /// `bytes` as one plan file, compiled alone and against the inventory.
    pub fn plan_file(&self, bytes: &[u8]) {
        let plan = self.write("plan.yaml", bytes);
        run(&Options { plan: plan.clone(), inventory: None, keyring: None });
        run(&Options { plan, inventory: Some(self.dir.join("inventory.yaml")), keyring: None });
    }

    /// `bytes` as a plan tree: split at NUL bytes into `p0.yaml` (the top-level plan),
    /// `p1.yaml`, ... (at most [`TREE_FILES`]; the rest is dropped), which include one another
    /// by name. Files of an earlier input that this one does not have are removed, so a tree
    /// is the same whatever ran before it.
    pub fn plan_tree(&self, bytes: &[u8]) {
        let mut parts = bytes.split(|&b| b == 0);
        for i in 0..TREE_FILES {
            let name = format!("p{i}.yaml");
            match parts.next() {
                Some(part) => {
                    self.write(&name, part);
                }
                None => {
                    let _ = std::fs::remove_file(self.dir.join(name));
                }
            }
        }
        let plan = self.dir.join("p0.yaml");
        run(&Options { plan: plan.clone(), inventory: None, keyring: None });
        run(&Options { plan, inventory: Some(self.dir.join("inventory.yaml")), keyring: None });
    }

    /// `bytes` as an inventory, with the quickstart plan checked against it.
    pub fn inventory(&self, bytes: &[u8]) {
        let inventory = self.write("machine.yaml", bytes);
        run(&Options { plan: self.dir.join("quickstart.yaml"), inventory: Some(inventory), keyring: None });
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, bytes).expect("the scratch directory is writable");
        path
    }
}

/// Compiles, then renders everything as `check`, `compile` and `explain` would print it.
fn run(options: &Options) {
    let c = compile(options);
    let _ = report::render_human(&c.diagnostics, &c.sources, false);
    let _ = serde_json::to_string(&report::to_json(&c.diagnostics, &c.sources)).expect("diagnostics serialize");
    if let Some(resolved) = &c.resolved {
        let _ = explain::render(resolved, &c.sources, None);
        for key in explain::keys(resolved).iter().take(8) {
            explain::render(resolved, &c.sources, Some(key)).expect("a listed key is explained");
        }
        let _ = explain::render(resolved, &c.sources, Some("action:no-such-action"));
        if let Some(plan) = &c.compiled {
            let _ = summary::render(plan, resolved, &c.sources, c.inventory.as_ref());
            let _ = (graph::to_dot(plan), graph::to_mermaid(plan));
            let json = serde_json::to_string_pretty(plan).expect("compiled plan serializes");
            let back = CompiledPlan::from_json(&json);
            assert_eq!(back.as_ref(), Ok(plan), "the compiled plan reads back as it was written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Scratch;

    /// Every committed seed of the compiler's fuzz targets (and every finding kept there),
    /// through the same entry point as the fuzzer, on stable.
    #[test]
    fn the_fuzz_seeds_compile_without_panicking() {
        type Target = fn(&Scratch, &[u8]);
        let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz/seeds");
        let dir = tempfile::tempdir().unwrap();
        let scratch = Scratch::new(dir.path().join("scratch")).unwrap();
        let targets: [(&str, Target); 3] =
            [("plan_file", Scratch::plan_file), ("plan_tree", Scratch::plan_tree), ("inventory", Scratch::inventory)];
        for (target, run) in targets {
            let mut files: Vec<_> = std::fs::read_dir(seeds.join(target)).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            assert!(files.len() >= 4, "{target}: seeds missing from {}", seeds.display());
            for file in files {
                eprintln!("{target}: {}", file.display());
                run(&scratch, &std::fs::read(&file).unwrap());
            }
        }
    }
}
