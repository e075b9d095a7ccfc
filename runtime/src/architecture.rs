//! The architecture, checked (docs/architecture.md): which top-level parts of the runtime may
//! use which, and that no two modules anywhere use each other in a circle. Read from the
//! sources (every `crate::` and `super::` path), so a new import that breaks the layering fails
//! here, naming the files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level part and the parts it may use. Lower layers first; a part uses only parts
/// listed before it.
const LAYERS: &[(&str, &[&str])] = &[
    ("state", &[]),
    ("store", &["state"]),
    ("process", &[]),
    ("platform", &["process", "store"]),
    ("error", &["platform", "store"]),
    ("outcome", &["process"]),
    ("run", &["error", "platform", "process", "state", "store"]),
    ("view", &["error", "outcome", "platform", "state", "store"]),
    ("cli", &["error", "outcome", "platform", "process", "run", "state", "store", "view"]),
];

/// Every module of `src/` (`run::steps::action`) and the modules its paths name.
fn uses() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let module_of = |path: &Path| -> String {
        let rel = path.strip_prefix(&src).unwrap().with_extension("");
        let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        parts.into_iter().filter(|p| p != "mod" && p != "lib" && p != "main").collect::<Vec<_>>().join("::")
    };
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(file);
        let text = std::fs::read_to_string(file).unwrap();
        // Test modules may reach anywhere (a test builds what it tests from its parts): an
        // inline `mod tests { .. }` is left out; a `mod tests;` is a file of its own, read (and
        // skipped) as `..::tests`.
        let text = without_inline_tests(&text);
        if module.ends_with("::tests") || module == "tests" {
            continue;
        }
        for path in paths(&text) {
            let absolute = resolve(&module, &path);
            // The longest module this path names (the rest names an item in it).
            let mut target = absolute.as_str();
            while !target.is_empty() && !modules.contains(target) {
                target = target.rsplit_once("::").map_or("", |(head, _)| head);
            }
            if !target.is_empty() && target != module {
                uses.entry(module.clone()).or_default().insert(target.to_owned());
            }
        }
    }
    uses
}

/// The text without its inline `#[cfg(test)] mod tests { ... }` block (found by matching its
/// braces).
fn without_inline_tests(text: &str) -> String {
    let Some(at) = text.find("#[cfg(test)]\nmod tests {") else { return text.to_owned() };
    let open = at + text[at..].find('{').expect("the block's brace");
    let mut depth = 0usize;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return format!("{}{}", &text[..at], without_inline_tests(&text[open + i + 1..]));
                }
            }
            _ => {}
        }
    }
    text[..at].to_owned()
}

/// The `crate::a::b` and `super::a` paths of a source text (in `use` lines and in code), with
/// grouped imports expanded: `use crate::{a::B, c}` names `crate::a::B` and `crate::c`.
fn paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for start in ["crate::", "super::"] {
        let mut rest = text;
        while let Some(at) = rest.find(start) {
            let before = rest[..at].chars().next_back();
            let tail = &rest[at..];
            let end = tail.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(tail.len());
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                let head = tail[..end].trim_end_matches(':');
                if tail[end..].starts_with('{') {
                    found.extend(expand(head, braced(&tail[end..])));
                } else {
                    found.push(head.to_owned());
                }
            }
            rest = &tail[end.max(1)..];
        }
    }
    found
}

/// The text between a `{` at the start of `text` and its matching `}`.
fn braced(text: &str) -> &str {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &text[1..i];
                }
            }
            _ => {}
        }
    }
    &text[1..]
}

/// `head::{a::b, c::{d, e}}` as `head::a::b`, `head::c::d`, `head::c::e` (`self` is `head`).
fn expand(head: &str, group: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    let mut items = Vec::new();
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    for item in items.into_iter().map(str::trim).filter(|i| !i.is_empty()) {
        let item = item.split(" as ").next().unwrap_or(item).trim();
        if let Some(open) = item.find('{') {
            let inner = item[..open].trim_end_matches(':');
            out.extend(expand(&format!("{head}::{inner}"), braced(&item[open..])));
        } else if item == "self" {
            out.push(head.to_owned());
        } else {
            out.push(format!("{head}::{item}"));
        }
    }
    out
}

/// `super::x` from `run::steps::action` is `run::steps::x`; `crate::x` is `x`.
fn resolve(module: &str, path: &str) -> String {
    let mut base: Vec<&str> = if module.is_empty() { Vec::new() } else { module.split("::").collect() };
    let mut parts = path.split("::").peekable();
    if parts.peek() == Some(&"crate") {
        parts.next();
        base.clear();
    }
    while parts.peek() == Some(&"super") {
        parts.next();
        base.pop();
    }
    base.extend(parts);
    base.join("::")
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

#[test]
fn each_part_uses_only_the_layers_below_it() {
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut wrong = Vec::new();
    for (module, targets) in uses() {
        if module.is_empty() || module == "architecture" {
            continue; // lib.rs names the parts (and the fuzzing entry points); this file quotes them
        }
        let Some(may) = allowed.get(top(&module)) else {
            wrong.push(format!("{module}: a top-level part docs/architecture.md and LAYERS do not list"));
            continue;
        };
        for target in targets.iter().filter(|t| top(t) != top(&module) && !may.contains(&top(t))) {
            wrong.push(format!("{module} uses {target}"));
        }
    }
    assert!(wrong.is_empty(), "imports against the layering (architecture.rs LAYERS):\n{}", wrong.join("\n"));
}

#[test]
fn no_modules_use_each_other_in_a_circle() {
    // Inside a part, a module and its own children may use each other (a parent holds what its
    // children share); between siblings, uses run one way.
    let mut sibling: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, targets) in uses().into_iter().filter(|(m, _)| m != "architecture") {
        for target in targets {
            let (a, b): (Vec<&str>, Vec<&str>) = (module.split("::").collect(), target.split("::").collect());
            let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
            if common < a.len() && common < b.len() {
                let from = a[..=common].join("::");
                let to = b[..=common].join("::");
                sibling.entry(from).or_default().insert(to);
            }
        }
    }
    let mut circles = Vec::new();
    for start in sibling.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, path)) = stack.pop() {
            for next in sibling.get(&at).into_iter().flatten() {
                if next == start {
                    circles.push(format!("{} -> {start}", path.join(" -> ")));
                } else if !path.contains(next) && next > start {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    assert!(circles.is_empty(), "modules that use each other in a circle:\n{}", circles.join("\n"));
}

/// lib.rs only declares the parts: a re-export there would let a part name another through
/// the crate root (`crate::Alias`), past the layering check.
#[test]
fn the_crate_root_re_exports_nothing() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let outside_fuzzing = lib.split("pub mod fuzzing").next().unwrap_or_default();
    let reexports: Vec<&str> = outside_fuzzing
        .lines()
        .filter(|l| l.trim_start().starts_with("pub(crate) use") || l.trim_start().starts_with("pub use"))
        .collect();
    assert!(reexports.is_empty(), "lib.rs re-exports: {reexports:?}");
}

#[test]
fn the_reader_sees_paths_as_rust_resolves_them() {
    assert_eq!(
        paths("use crate::{run::Options, store::{self, session::X as Y}};"),
        ["crate::run::Options", "crate::store", "crate::store::session::X"]
    );
    let text =
        "use crate::a;\n#[cfg(test)]\nmod tests {\n    use crate::b;\n    fn f() { if x { y } }\n}\nuse crate::c;\n";
    assert_eq!(paths(&without_inline_tests(text)), ["crate::a", "crate::c"]);
    assert_eq!(
        paths(&without_inline_tests("use crate::a;\n#[cfg(test)]\nmod tests;\nuse crate::c;")),
        ["crate::a", "crate::c"]
    );
    assert_eq!(resolve("run::steps::action", "super::StepCtx"), "run::steps::StepCtx");
    assert_eq!(resolve("run::steps", "super::super::error"), "error");
    assert_eq!(resolve("cli::upgrade", "crate::store::session::Session"), "store::session::Session");
    assert_eq!(
        paths("use crate::a::{b, c};\nlet x = super::y(); my_crate::z"),
        ["crate::a::b", "crate::a::c", "super::y"]
    );
    let uses = uses();
    assert!(uses["run::runner"].contains("run::steps"), "{:?}", uses["run::runner"]);
    assert!(uses["cli::upgrade"].contains("store::session"));
}
