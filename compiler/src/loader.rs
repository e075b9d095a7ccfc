//! Loading a plan tree: the root plan and, recursively, every plan it includes. Reads each file
//! once (a diamond is included once), refuses cycles naming every file on them, and validates
//! every file against its schema so one run reports the problems of all of them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::plan::{Include, PlanFile};
use crate::schema::Schema;
use crate::source::{self, FileId, Loc, ReadError, SourceFile, SourceMap, Span};
use crate::suggest;
use crate::trust::{self, Key};
use crate::yaml::{self, Node};

/// Includes nested deeper than this are refused (a vendor template inside a site plan inside a
/// fleet plan is three).
pub const MAX_INCLUDE_DEPTH: usize = 64;
/// Most files one plan tree may have.
pub const MAX_FILES: usize = 10_000;

#[derive(Debug)]
pub struct LoadedPlan {
    pub file: FileId,
    pub plan: PlanFile,
    /// Indexes into [`PlanTree::plans`], in include order.
    pub children: Vec<usize>,
}

#[derive(Debug)]
pub struct PlanTree {
    pub plans: Vec<LoadedPlan>,
    pub root: usize,
    /// Children before parents, in include order: the order resolution combines them in.
    pub post_order: Vec<usize>,
}

/// Reads, parses and schema-checks one YAML document. `via` is the include entry (or command
/// line flag) that named it, where an unreadable file is reported. Returns the file and its
/// tree when it could be parsed; schema errors are reported but do not withhold the tree.
pub fn read_document(
    path: &Path,
    display: &str,
    via: Option<Loc>,
    schema: Schema,
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
) -> Option<(FileId, Node)> {
    prepare(path, display, via, schema).commit(sources, diags)
}

/// The file id of a document prepared off the loader's thread, before it has its real one.
const PENDING: FileId = FileId(u32::MAX);

/// A document read, parsed and schema-checked without touching shared state, so that the
/// files of one include level can be prepared in parallel. Its diagnostics point at
/// [`PENDING`] until [`Prepared::commit`] gives the file its id, in the loader's order.
struct Prepared {
    source: Option<SourceFile>,
    root: Option<Node>,
    diags: Vec<Diagnostic>,
}

fn prepare(path: &Path, display: &str, via: Option<Loc>, schema: Schema) -> Prepared {
    let what = match schema {
        Schema::Plan if via.is_some() => "included plan",
        Schema::Plan => "plan",
        Schema::Inventory => "inventory",
        Schema::Fleet => "fleet plan",
    };
    let (canonical, text, bom) = match source::read_text_bom(path) {
        Ok(ok) => ok,
        Err(e) => {
            let mut d = Diagnostic::error("duet::file::unreadable", format!("cannot read {what} `{display}`: {e}"));
            d = match via {
                Some(loc) => d.at(loc, "named here"),
                None => d.in_file(display),
            };
            d = if e == ReadError::NotFound {
                d.help(
                    sibling_hint(path)
                        .unwrap_or_else(|| "check the file name and the directory duet is run from".into()),
                )
            } else {
                d.help_opt(e.help().map(str::to_owned))
            };
            return Prepared { source: None, root: None, diags: vec![d] };
        }
    };
    let dir = std::path::absolute(path).ok().and_then(|p| p.parent().map(Path::to_path_buf));
    let mut source = SourceFile::new(display.to_owned(), canonical, text.into());
    source.bom = bom;
    let source = match dir {
        Some(dir) => source.with_dir(dir),
        None => source,
    };
    let parsed = yaml::parse(&source);
    if !parsed.errors.is_empty() {
        let diags = parsed.errors.into_iter().map(|e| e.into_diagnostic(PENDING)).collect();
        return Prepared { source: Some(source), root: None, diags };
    }
    let Some(root) = parsed.root else {
        let d = Diagnostic::error("duet::file::empty", format!("{what} `{display}` is empty"))
            .at(Loc { file: PENDING, span: Span::new(0, 0) }, "no YAML document here")
            .help("a plan or inventory starts with `version: 1`");
        return Prepared { source: Some(source), root: None, diags: vec![d] };
    };
    let diags = schema.validate(&root, PENDING);
    Prepared { source: Some(source), root: Some(root), diags }
}

impl Prepared {
    /// Adds the file to the map and its diagnostics to the list, now that it has an id.
    fn commit(self, sources: &mut SourceMap, diags: &mut Diagnostics) -> Option<(FileId, Node)> {
        let Some(source) = self.source else {
            diags.extend(self.diags);
            return None;
        };
        let file = sources.add(source);
        let fix = |loc: &mut Loc| {
            if loc.file == PENDING {
                loc.file = file;
            }
        };
        for mut d in self.diags {
            d.primary.iter_mut().for_each(|l| fix(&mut l.loc));
            d.related.iter_mut().for_each(|l| fix(&mut l.loc));
            diags.push(d);
        }
        self.root.map(|root| (file, root))
    }
}

/// Prepares documents on every core (plan trees are wide: a site plan includes many
/// application plans), returning them in the order given.
fn prepare_all(jobs: &[(PathBuf, String, Loc)]) -> Vec<Prepared> {
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(8);
    if jobs.len() < 2 || workers < 2 {
        return jobs.iter().map(|(path, display, via)| prepare(path, display, Some(*via), Schema::Plan)).collect();
    }
    let chunk = jobs.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(path, display, via)| prepare(path, display, Some(*via), Schema::Plan))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a document worker does not panic")).collect()
    })
}

/// "did you mean `vendor.yaml`?" from the YAML files next to a missing one.
fn sibling_hint(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut siblings: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| crate::plan::is_yaml_name(n))
        .collect();
    siblings.sort();
    // Compare the names without their extensions: `.yaml` in common makes any two names look alike.
    let stem = |n: &str| Path::new(n).file_stem().and_then(|s| s.to_str()).unwrap_or(n).to_owned();
    let wanted = stem(name);
    let stems: Vec<String> = siblings.iter().map(|s| stem(s)).collect();
    let found = stems.iter().position(|s| *s == wanted).or_else(|| {
        let closest = suggest::closest(&wanted, stems.iter().map(String::as_str))?;
        stems.iter().position(|s| s == closest)
    })?;
    Some(format!("did you mean `{}`?", siblings[found]))
}

struct Frame {
    canonical: PathBuf,
    display: String,
    via: Option<Loc>,
}

struct Loader<'a> {
    sources: &'a mut SourceMap,
    diags: &'a mut Diagnostics,
    plans: Vec<LoadedPlan>,
    by_canonical: HashMap<PathBuf, usize>,
    stack: Vec<Frame>,
    post_order: Vec<usize>,
    /// Children prepared in parallel, waiting for the walk to reach them.
    prepared: HashMap<PathBuf, Prepared>,
    /// Keys trusted to sign templates: the keyring's, then the top-level plan's `trust:`.
    keys: Vec<Key>,
}

/// Loads the tree rooted at `root`. `None` when the root itself could not be read or parsed.
pub fn load(root: &Path, sources: &mut SourceMap, diags: &mut Diagnostics) -> Option<PlanTree> {
    load_trusting(root, None, sources, diags)
}

/// [`load`], trusting the minisign keys of a keyring directory (and the root plan's `trust:`)
/// to sign the templates whose includes require a signature.
pub fn load_trusting(
    root: &Path,
    keyring: Option<&Path>,
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
) -> Option<PlanTree> {
    let keys = keyring.map(|dir| trust::load_keyring(dir, diags)).unwrap_or_default();
    let mut loader = Loader {
        sources,
        diags,
        plans: Vec::new(),
        by_canonical: HashMap::new(),
        stack: Vec::new(),
        post_order: Vec::new(),
        prepared: HashMap::new(),
        keys,
    };
    let display = root.display().to_string();
    let root = loader.visit(root, display, None)?;
    Some(PlanTree { plans: loader.plans, root, post_order: loader.post_order })
}

impl Loader<'_> {
    fn visit(&mut self, path: &Path, display: String, rule: Option<&Include>) -> Option<usize> {
        let via = rule.map(|r| r.file.loc);
        let checked = rule.filter(|r| r.sha256.is_some() || r.signed.is_some());
        if let Ok(canonical) = std::fs::canonicalize(path) {
            if let Some(pos) = self.stack.iter().position(|f| f.canonical == canonical) {
                self.report_cycle(pos, &display, via);
                return None;
            }
            if let Some(&done) = self.by_canonical.get(&canonical) {
                // A diamond: every include that pins or requires a signature checks the bytes.
                if let Some(rule) = checked {
                    let file = self.plans[done].file;
                    match trust::verify(rule, path, self.sources.get(file), &self.keys) {
                        Ok(verified) => trust::mark(self.sources, file, verified),
                        Err(d) => {
                            self.diags.push(*d);
                            return None;
                        }
                    }
                }
                return Some(done);
            }
        }
        if let Some(via) = via {
            if self.stack.len() > MAX_INCLUDE_DEPTH {
                self.diags.push(
                    Diagnostic::error(
                        "duet::include::too-deep",
                        format!("includes are nested more than {MAX_INCLUDE_DEPTH} levels deep"),
                    )
                    .at(via, "too deep")
                    .help("flatten the include chain"),
                );
                return None;
            }
            if self.plans.len() >= MAX_FILES {
                self.diags.push(
                    Diagnostic::error(
                        "duet::include::too-many",
                        format!("the plan tree has more than {MAX_FILES} files"),
                    )
                    .at(via, "limit reached here")
                    .help("a plan tree this large is not a plan; split it into separate plans"),
                );
                return None;
            }
        }
        let mut prepared = self.prepared.remove(path).unwrap_or_else(|| prepare(path, &display, via, Schema::Plan));
        if let (Some(rule), Some(source)) = (checked, prepared.source.as_mut()) {
            // A template that fails its check contributes nothing, not even its own problems.
            match trust::verify(rule, path, source, &self.keys) {
                Ok(verified) => source.verified = Some(verified),
                Err(d) => {
                    self.diags.push(*d);
                    return None;
                }
            }
        }
        let (file, root) = prepared.commit(self.sources, self.diags)?;
        let mut found = Vec::new();
        let plan = PlanFile::from_node(&root, self.sources.get(file), file, &mut found);
        self.diags.extend(found);
        if via.is_none() {
            self.keys.extend(trust::plan_keys(&plan.trust, self.diags));
        } else if let Some(first) = plan.trust.first() {
            self.diags.push(
                Diagnostic::note("duet::trust::ignored", "`trust` in an included plan is ignored")
                    .at(first.loc, "ignored")
                    .help("only the top-level plan (and --keyring) says which keys sign templates: a template cannot vouch for itself"),
            );
        }
        let canonical = self.sources.get(file).canonical.clone();
        let index = self.plans.len();
        self.by_canonical.insert(canonical.clone(), index);
        let includes = plan.includes.clone();
        self.plans.push(LoadedPlan { file, plan, children: Vec::new() });

        let dir = self.sources.get(file).dir().to_path_buf();
        let display_dir = Path::new(&display).parent().map(Path::to_path_buf).unwrap_or_default();
        self.stack.push(Frame { canonical, display, via });
        let children: Vec<(PathBuf, String, Include)> = includes
            .into_iter()
            .map(|i| (dir.join(&i.file.value), display_dir.join(&i.file.value).display().to_string(), i))
            .collect();
        let jobs: Vec<(PathBuf, String, Loc)> =
            children.iter().map(|(p, d, i)| (p.clone(), d.clone(), i.file.loc)).collect();
        self.prepare_new(&jobs);
        for (path, child_display, rule) in children {
            if let Some(child) = self.visit(&path, child_display, Some(&rule)) {
                if !self.plans[index].children.contains(&child) {
                    self.plans[index].children.push(child);
                }
            }
        }
        self.stack.pop();
        self.post_order.push(index);
        Some(index)
    }

    /// Prepares, in parallel, the children that the walk will read: not those already loaded or
    /// on the include stack (a diamond or a cycle).
    fn prepare_new(&mut self, children: &[(PathBuf, String, Loc)]) {
        let known = |path: &Path| {
            std::fs::canonicalize(path)
                .is_ok_and(|c| self.by_canonical.contains_key(&c) || self.stack.iter().any(|f| f.canonical == c))
        };
        let jobs: Vec<(PathBuf, String, Loc)> =
            children.iter().filter(|(path, ..)| !self.prepared.contains_key(path) && !known(path)).cloned().collect();
        for (job, prepared) in jobs.iter().zip(prepare_all(&jobs)) {
            self.prepared.insert(job.0.clone(), prepared);
        }
    }

    fn report_cycle(&mut self, start: usize, display: &str, via: Option<Loc>) {
        let mut names: Vec<&str> = self.stack[start..].iter().map(|f| f.display.as_str()).collect();
        names.push(display);
        let mut d = Diagnostic::error("duet::include::cycle", format!("include cycle: {}", names.join(" -> ")))
            .help("a plan cannot include itself, directly or through other plans; remove one include on the cycle");
        if let Some(via) = via {
            d = d.at(via, "this include closes the cycle");
        }
        for frame in &self.stack[start + 1..] {
            if let Some(loc) = frame.via {
                d = d.related(loc, format!("`{}` included here", frame.display));
            }
        }
        self.diags.push(d);
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{Tree, expect_at, found};

    /// A chain of includes `c0.yaml` -> `c1.yaml` -> ... -> `c{last}.yaml`.
    fn chain(last: usize) -> Tree {
        let texts: Vec<(String, String)> = (0..=last)
            .map(|i| {
                let include = if i < last { format!("include: [c{}.yaml]\n", i + 1) } else { String::new() };
                (format!("c{i}.yaml"), format!("version: 1\n{include}"))
            })
            .collect();
        Tree::new(&texts.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect::<Vec<_>>())
    }

    /// The top-level plan and at most 64 levels of includes below it (plan format section 8).
    #[test]
    fn includes_nest_at_most_64_levels_deep() {
        let codes = |t: &Tree| found(&t.compile("c0.yaml")).into_iter().map(|f| f.code).collect::<Vec<_>>();
        assert_eq!(codes(&chain(super::MAX_INCLUDE_DEPTH)), Vec::<&str>::new());
        let t = chain(super::MAX_INCLUDE_DEPTH + 1);
        let c = t.compile("c0.yaml");
        let m = expect_at(&c, "duet::include::too-deep", "c64.yaml", 2, 11);
        assert_eq!(m, "includes are nested more than 64 levels deep");
    }

    /// At most 10,000 files in one tree: the top-level plan and 9,999 includes are read, the
    /// 10,000th include is refused.
    #[test]
    fn a_tree_has_at_most_10000_files() {
        let names: Vec<String> = (0..super::MAX_FILES).map(|i| format!("c{i}.yaml")).collect();
        let root = format!("version: 1\ninclude: [{}]\n", names.join(", "));
        let mut files: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "version: 1\n")).collect();
        files.push(("root.yaml", &root));
        let t = Tree::new(&files);
        let c = t.compile("root.yaml");
        let codes: Vec<&str> = found(&c).iter().map(|f| f.code).collect();
        assert_eq!(codes, ["duet::include::too-many", "duet::check::stopped"]);
        let m = expect_at(&c, "duet::include::too-many", "root.yaml", 2, 118_889);
        assert_eq!(m, "the plan tree has more than 10000 files");
        assert_eq!(c.sources.files().count(), super::MAX_FILES);
    }

    /// Children are prepared on several threads, but file ids, sources and diagnostics follow
    /// the include order every time.
    #[test]
    fn a_wide_tree_loads_in_include_order_whatever_the_threads_do() {
        let names: Vec<String> = (0..24).map(|i| format!("c{i:02}.yaml")).collect();
        let root = format!("version: 1\ninclude: [{}]\n", names.join(", "));
        let children: Vec<String> = (0..24).map(|i| format!("version: 1\nservices: [S{i}]\nbogus{i}: 1\n")).collect();
        let mut files: Vec<(&str, &str)> = vec![("root.yaml", root.as_str())];
        files.extend(names.iter().map(String::as_str).zip(children.iter().map(String::as_str)));
        let t = Tree::new(&files);
        let expected: Vec<String> = names.clone();
        for _ in 0..5 {
            let c = t.compile("root.yaml");
            let errors: Vec<String> =
                found(&c).into_iter().filter(|f| f.code == "duet::schema::unknown-key").map(|f| f.file).collect();
            assert_eq!(errors, expected);
            let ids: Vec<String> = (1..=24)
                .map(|i| c.sources.get(crate::source::FileId(i)).display.rsplit('/').next().unwrap().to_owned())
                .collect();
            assert_eq!(ids, expected);
        }
    }
}
