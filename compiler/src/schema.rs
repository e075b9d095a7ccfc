//! JSON Schema validation: the only module that touches the jsonschema crate. The schemas in
//! `schemas/` are compiled in, validated against the JSON form of a [`Node`] tree, and each error
//! is mapped back to the YAML node it is about, with a message a person can act on.

use std::sync::OnceLock;

use jsonschema::paths::LocationSegment;
use jsonschema::{Draft, Validator, error::ValidationErrorKind};
use serde_json::Value as Json;

use crate::diagnostic::Diagnostic;
use crate::source::{FileId, Loc, Span};
use crate::suggest;
use crate::yaml::{Node, Value};

pub const PLAN_SCHEMA: &str = include_str!("../../schemas/plan.v1.schema.json");
pub const INVENTORY_SCHEMA: &str = include_str!("../../schemas/inventory.v1.schema.json");
/// The fleet plan (`kind: fleet`), read by the `duet-fleet` crate (issue 14).
pub const FLEET_SCHEMA: &str = include_str!("../../schemas/fleet.v1.schema.json");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    Plan,
    Inventory,
    Fleet,
}

impl Schema {
    fn what(self) -> &'static str {
        match self {
            Self::Plan => "plan",
            Self::Inventory => "inventory",
            Self::Fleet => "fleet plan",
        }
    }

    fn compiled(self) -> &'static (Json, Validator) {
        static PLAN: OnceLock<(Json, Validator)> = OnceLock::new();
        static INVENTORY: OnceLock<(Json, Validator)> = OnceLock::new();
        static FLEET: OnceLock<(Json, Validator)> = OnceLock::new();
        let (cell, text) = match self {
            Self::Plan => (&PLAN, PLAN_SCHEMA),
            Self::Inventory => (&INVENTORY, INVENTORY_SCHEMA),
            Self::Fleet => (&FLEET, FLEET_SCHEMA),
        };
        cell.get_or_init(|| {
            let json: Json = serde_json::from_str(text).expect("bundled schema is valid JSON");
            let validator =
                jsonschema::options().with_draft(Draft::Draft202012).build(&json).expect("bundled schema compiles");
            (json, validator)
        })
    }

    /// Validates one document; each problem becomes an error at its node.
    pub fn validate(self, root: &Node, file: FileId) -> Vec<Diagnostic> {
        let (schema, validator) = self.compiled();
        let instance = root.to_json();
        let mut out: Vec<Diagnostic> = Vec::new();
        for error in validator.iter_errors(&instance) {
            let path: Vec<Seg> = error
                .instance_path()
                .iter()
                .map(|s| match s {
                    LocationSegment::Property(p) => Seg::Key(p.into_owned()),
                    LocationSegment::Index(i) => Seg::Index(i),
                })
                .collect();
            let schema_path: Vec<String> = error.schema_path().iter().map(|s| s.to_string()).collect();
            let (node, key_span) = lookup(root, &path);
            let located = Error {
                kind: self,
                schema,
                schema_path: &schema_path,
                file,
                node,
                key_span,
                field: field_name(&path),
                at_root: path.is_empty(),
            };
            let found = match error.kind() {
                // The plan and inventory extractors report an unusable name precisely.
                ValidationErrorKind::Pattern { pattern } if pattern == crate::name::PATTERN => continue,
                ValidationErrorKind::AdditionalProperties { unexpected } => {
                    unexpected.iter().map(|key| located.unknown_key(key)).collect()
                }
                kind => vec![located.describe(kind)],
            };
            for diagnostic in found {
                if !out.contains(&diagnostic) {
                    out.push(diagnostic);
                }
            }
        }
        out
    }
}

enum Seg {
    Key(String),
    Index(usize),
}

/// The node at an instance path, and the span of the key that holds it (if a key does).
fn lookup<'a>(root: &'a Node, path: &[Seg]) -> (&'a Node, Option<Span>) {
    let mut node = root;
    let mut key_span = None;
    for seg in path {
        let next = match (seg, &node.value) {
            (Seg::Key(k), Value::Map(entries)) => {
                entries.iter().find(|e| &e.key == k).map(|e| (&e.value, Some(e.key_span)))
            }
            (Seg::Index(i), Value::Seq(items)) => items.get(*i).map(|n| (n, None)),
            _ => None,
        };
        match next {
            Some((n, k)) => {
                node = n;
                key_span = k;
            }
            None => break,
        }
    }
    (node, key_span)
}

/// Walks a keyword location through the schema, following local `$ref`s.
fn schema_at<'a>(schema: &'a Json, path: &[String]) -> Option<&'a Json> {
    let mut at = schema;
    for seg in path {
        at = if seg == "$ref" {
            let target = at.get("$ref")?.as_str()?.strip_prefix('#')?;
            schema.pointer(target)?
        } else {
            at.get(seg.as_str())?
        };
    }
    Some(at)
}

fn field_name(path: &[Seg]) -> String {
    let mut parts = Vec::new();
    for seg in path {
        match seg {
            Seg::Key(k) => parts.push(k.clone()),
            Seg::Index(i) => {
                if let Some(last) = parts.last_mut() {
                    *last = format!("{last}[{}]", i + 1);
                }
            }
        }
    }
    if parts.is_empty() { "the document".into() } else { format!("`{}`", parts.join(".")) }
}

fn json_type_name(v: &Json) -> &'static str {
    match v.as_str() {
        Some("string") => "a string",
        Some("integer") => "an integer",
        Some("number") => "a number",
        Some("boolean") => "true or false",
        Some("array") => "a list",
        Some("object") => "a mapping",
        _ => "another type",
    }
}

/// One schema error, located: the node it is about and how to name it.
struct Error<'a> {
    kind: Schema,
    schema: &'a Json,
    schema_path: &'a [String],
    file: FileId,
    node: &'a Node,
    key_span: Option<Span>,
    /// `` `actions[1].timeout` ``, or "the document".
    field: String,
    at_root: bool,
}

impl Error<'_> {
    fn at(&self, span: Span) -> Loc {
        Loc { file: self.file, span }
    }

    /// "this plan" at the top level, the field name below it.
    fn place(&self) -> String {
        if self.at_root { format!("this {}", self.kind.what()) } else { self.field.clone() }
    }

    fn unknown_key(&self, key: &str) -> Diagnostic {
        let parent = schema_at(self.schema, &self.schema_path[..self.schema_path.len().saturating_sub(1)]);
        let allowed: Vec<&str> = parent
            .and_then(|p| p.get("properties"))
            .and_then(Json::as_object)
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let span = self.node.get(key).map_or(self.node.head(), |e| e.key_span);
        let hint = if key == "<<" {
            "YAML merge keys (`<<`) are not supported: write the keys out, or share them through an included plan"
                .to_owned()
        } else {
            suggest::did_you_mean(key, allowed.iter().copied())
                .unwrap_or_else(|| format!("allowed keys here: {}", allowed.join(", ")))
        };
        Diagnostic::error("duet::schema::unknown-key", format!("unknown key `{key}` in {}", self.place()))
            .at(self.at(span), "unknown key")
            .help(hint)
    }

    fn not_one_of(&self, options: &Json) -> Diagnostic {
        let options: Vec<&str> =
            options.as_array().map(|a| a.iter().filter_map(Json::as_str).collect()).unwrap_or_default();
        let shown = self.node.as_str().map_or_else(|| self.node.kind_name().to_owned(), |s| format!("`{s}`"));
        Diagnostic::error("duet::schema::invalid-value", format!("invalid value {shown} for {}", self.field))
            .at(self.at(self.node.span), format!("expected one of: {}", options.join(", ")))
            .help_opt(self.node.as_str().and_then(|s| suggest::did_you_mean(s, options.iter().copied())))
    }

    fn constant(&self, expected: &Json) -> Diagnostic {
        if self.field == "`version`" {
            if let Some(text) = self.node.as_str() {
                return Diagnostic::error(
                    "duet::schema::version",
                    format!("`version` must be the number {expected}, found the string \"{text}\""),
                )
                .at(self.at(self.node.span), "a string")
                .help(format!("write the number without quotes: `version: {expected}`"));
            }
            return Diagnostic::error(
                "duet::schema::version",
                format!("unsupported {} format version {}", self.kind.what(), self.node.to_json()),
            )
            .at(self.at(self.node.span), format!("this duet reads version {expected}"))
            .help(format!("write `version: {expected}`, or use the duet release that reads this version"));
        }
        Diagnostic::error("duet::schema::invalid-value", format!("{} must be {expected}", self.field))
            .at(self.at(self.node.span), "here")
    }

    fn wrong_type(&self) -> Diagnostic {
        let node = self.node;
        if self.at_root {
            let message = format!("a {} must be a YAML mapping of keys, found {}", self.kind.what(), node.kind_name());
            return Diagnostic::error("duet::schema::type", message).at(self.at(node.head()), "not a mapping");
        }
        let expected = schema_at(self.schema, self.schema_path).map_or("another type", |t| match t {
            Json::Array(types) => types.first().map_or("another type", json_type_name),
            t => json_type_name(t),
        });
        let help = self.type_help(expected);
        Diagnostic::error(
            "duet::schema::type",
            format!("{} must be {expected}, found {}", self.field, node.kind_name()),
        )
        .at(self.at(node.span), format!("expected {expected}"))
        .help(help)
    }

    /// What to write instead, knowing which field this is.
    fn type_help(&self, expected: &str) -> String {
        let node = self.node;
        let parent = schema_at(self.schema, &self.schema_path[..self.schema_path.len().saturating_sub(1)]);
        let is_duration =
            parent.and_then(|p| p.get("pattern")).and_then(Json::as_str).is_some_and(|p| p.contains("ms|s|m|h"));
        // A service or log entry that is neither a name nor a `{name: ...}` mapping.
        let short_form = matches!(self.schema_path, [defs, entry, ty] if defs == "$defs" && (entry == "service" || entry == "log") && ty == "type");
        match (&node.value, expected) {
            (Value::Int(n), _) if is_duration => format!("durations need a unit: {n}s, {n}m or {n}ms"),
            (Value::Int(_) | Value::Float(_), "a string") if self.field == "`version`" => "write `version: 1`".into(),
            (Value::Str(s), _) if self.field == "`version`" => format!("write the number without quotes: `version: {s}`"),
            (Value::Str(s), "true or false") => match s.to_ascii_lowercase().as_str() {
                "yes" | "on" | "y" => "write `true` (plans use YAML 1.2, where `yes` is a string)".into(),
                "no" | "off" | "n" => "write `false` (plans use YAML 1.2, where `no` is a string)".into(),
                _ => "write true or false".into(),
            },
            (Value::Str(s), "a list") if self.field.ends_with(".args`") => {
                let items: Vec<String> = s.split_whitespace().map(|a| format!("\"{a}\"")).collect();
                format!("write one list item per argument, quoted: [{}]", items.join(", "))
            }
            (Value::Str(s), "a list") => format!("write a list: [{s}]"),
            (Value::Int(_) | Value::Float(_) | Value::Bool(_) | Value::Null, _) if short_form => {
                "write the name as a string (quote it if it looks like a number: \"123\"), or use the long form `{name: ...}`".into()
            }
            (Value::Int(_) | Value::Float(_) | Value::Bool(_) | Value::Null, "a string") => {
                "quote the value to make it a string, e.g. \"1.0\"".into()
            }
            _ => format!("write {expected} here"),
        }
    }

    fn missing(&self, property: &Json) -> Diagnostic {
        let key = property.as_str().unwrap_or("?");
        let span = if self.at_root { Span::new(0, 0) } else { self.key_span.unwrap_or_else(|| self.node.head()) };
        let d =
            Diagnostic::error("duet::schema::missing-key", format!("missing required key `{key}` in {}", self.place()))
                .at(self.at(span), format!("`{key}` is required"));
        if key == "version" {
            d.help("start the file with `version: 1`")
        } else {
            d.help(format!("add `{key}:` to it"))
        }
    }

    fn pattern(&self, pattern: &str) -> Diagnostic {
        let value = self.node.as_str().unwrap_or_default();
        let field = &self.field;
        let (message, help) = if pattern.contains("ms|s|m|h") {
            (format!("invalid duration `{value}` for {field}"), "write a whole number and a unit: 500ms, 30s, 2m or 1h")
        } else if pattern.contains("{64}") {
            (
                format!("{field} must be a SHA-256: 64 hexadecimal digits, found `{value}`"),
                "write the template's hash as `duet sign` or `sha256sum FILE` prints it",
            )
        } else if pattern == "^/" {
            (format!("{field} must be an absolute path, found `{value}`"), "write the full path, starting with /")
        } else {
            (
                format!("invalid value `{value}` for {field}"),
                "use letters, digits, `.`, `_` and `-`, starting with a letter or digit",
            )
        };
        Diagnostic::error("duet::schema::invalid-value", message).at(self.at(self.node.span), "here").help(help)
    }

    fn describe(&self, error: &ValidationErrorKind) -> Diagnostic {
        let here = self.at(self.node.span);
        let field = &self.field;
        match error {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                self.unknown_key(unexpected.first().map_or("", String::as_str))
            }
            ValidationErrorKind::Enum { options } => self.not_one_of(options),
            ValidationErrorKind::Constant { expected_value } => self.constant(expected_value),
            ValidationErrorKind::Type { .. } => self.wrong_type(),
            ValidationErrorKind::Required { property } => self.missing(property),
            ValidationErrorKind::Pattern { pattern } => self.pattern(pattern),
            ValidationErrorKind::MinLength { .. } => {
                Diagnostic::error("duet::schema::empty", format!("{field} must not be empty"))
                    .at(here, "empty")
                    .help("give it a value, or remove the key")
            }
            ValidationErrorKind::MinItems { limit } => Diagnostic::error(
                "duet::schema::too-few",
                if *limit == 1 {
                    format!("{field} must not be an empty list")
                } else {
                    format!("{field} must list at least {limit} items")
                },
            )
            .at(here, "too few items")
            .help("list at least that many, or remove the key"),
            ValidationErrorKind::Minimum { limit } => {
                Diagnostic::error("duet::schema::invalid-value", format!("{field} must be at least {limit}"))
                    .at(here, "too small")
                    .help(format!("use {limit} or more"))
            }
            other => Diagnostic::error("duet::schema::invalid", format!("{field} is invalid: {other:?}"))
                .at(here, "here")
                .help("see docs/plan-format.md for the accepted values"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::source::SourceFile;

    /// Code, message, line and column, help.
    type Found = (&'static str, String, (usize, usize), Option<String>);

    fn errors(schema: Schema, text: &str) -> Vec<Found> {
        let file = SourceFile::new("t.yaml".into(), PathBuf::from("/t.yaml"), text.into());
        let root = crate::yaml::parse(&file).root.expect("document");
        let mut out = schema
            .validate(&root, FileId(0))
            .into_iter()
            .map(|d| {
                let label = d.primary.expect("every schema error has a position");
                (d.code, d.message, file.line_col(label.loc.span.start), d.help)
            })
            .collect::<Vec<_>>();
        out.sort_by_key(|e| e.2);
        out
    }

    #[test]
    fn unknown_keys_point_at_the_key_and_suggest() {
        let e = errors(Schema::Plan, "version: 1\nservies: [a]\nactions:\n  - id: x\n    timout: 5m\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0].0, "duet::schema::unknown-key");
        assert_eq!(e[0].2, (2, 1));
        assert_eq!(e[0].3.as_deref(), Some("did you mean `services`?"));
        assert_eq!(e[1].1, "unknown key `timout` in `actions[1]`");
        assert_eq!(e[1].2, (5, 5));
        assert_eq!(e[1].3.as_deref(), Some("did you mean `timeout`?"));
    }

    #[test]
    fn enum_type_pattern_and_version_errors() {
        let e = errors(
            Schema::Plan,
            "version: 2\ntitle: [x]\nactions:\n  - {file: a, control: Stop, timeout: 5 min}\nservices:\n  - {after: [x]}\n",
        );
        let codes: Vec<_> = e.iter().map(|x| (x.0, x.2)).collect();
        assert!(codes.contains(&("duet::schema::version", (1, 10))), "{e:?}");
        assert!(codes.contains(&("duet::schema::type", (2, 8))), "{e:?}");
        assert!(codes.contains(&("duet::schema::invalid-value", (4, 24))), "{e:?}");
        assert!(codes.contains(&("duet::schema::invalid-value", (4, 39))), "{e:?}");
        assert!(codes.contains(&("duet::schema::missing-key", (6, 6))), "{e:?}");
        let control = e.iter().find(|x| x.2 == (4, 24)).unwrap();
        assert_eq!(control.3.as_deref(), Some("did you mean `stop`?"));
    }

    #[test]
    fn root_must_be_a_mapping_with_a_version() {
        let e = errors(Schema::Plan, "- a\n- b\n");
        assert_eq!(e[0].1, "a plan must be a YAML mapping of keys, found a list");
        let e = errors(Schema::Inventory, "model: x\n");
        assert_eq!(e[0].1, "missing required key `version` in this inventory");
    }
    fn parse_file(path: &std::path::Path) -> (SourceFile, Node) {
        let text = std::fs::read_to_string(path).unwrap();
        let file = SourceFile::new(path.display().to_string(), path.to_path_buf(), text.into());
        let root = crate::yaml::parse(&file).root.expect("document");
        (file, root)
    }

    /// Every plan and inventory shipped under `plans/` is valid against its schema; the
    /// schema files themselves are what editors load through the `$schema` modeline.
    #[test]
    fn schemas_accept_every_shipped_plan_and_inventory() {
        let plans = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans");
        let mut checked = 0;
        for (dir, schema, modeline) in [
            (plans.clone(), Schema::Plan, "../schemas/plan.v1.schema.json"),
            (plans.join("machines"), Schema::Inventory, "../../schemas/inventory.v1.schema.json"),
        ] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "yaml") {
                    let (file, root) = parse_file(&path);
                    let errors = schema.validate(&root, FileId(0));
                    assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
                    assert!(
                        file.text.starts_with(&format!("# yaml-language-server: $schema={modeline}")),
                        "{} lacks the $schema modeline",
                        path.display()
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 4, "expected the shipped plans and an inventory, checked {checked}");
    }

    #[test]
    fn schemas_reject_known_bad_documents() {
        for bad in [
            "title: no version\n",
            "version: 1\nunknown: 1\n",
            "version: 1\ninclude: notalist.yaml\n",
            "version: 1\nservices: [{after: [x]}]\n",
            "version: 1\nservices: [{name: a, enabled: maybe}]\n",
            "version: 1\nactions: [{file: x, control: sometimes}]\n",
            "version: 1\nactions: [{file: x, timing: soon}]\n",
            "version: 1\nactions: [{file: x, timeout: 10}]\n",
            "version: 1\nactions: [{file: x, rerun: never}]\n",
            "version: 1\nactions: [{id: \"bad id\", file: x}]\n",
            "version: 1\nactions: [{file: x, args: [[nested]]}]\n",
            "version: 1\ndisks: {system: disk0}\n",
            "version: 1\nlogs: {backup: [{name: System, extra: 1}]}\n",
            "version: 1\nupgrade: [{file: x, restart: yes}]\n",
            "version: 1\nupgrade: [{file: x, installs: {software: a}}]\n",
            "version: 1\nverify: [{before: merge, run: {file: x}}]\n",
            "version: 1\nverify: [{id: c, before: later, run: {file: x}}]\n",
            "version: 1\nverify: [{id: c, http: {url: x, status: 99}}]\n",
            "version: 1\nverify: [{id: c, retry: {times: 0, interval: 1s}}]\n",
            "version: 1\nverify: [{id: c, version: {software: a}}]\n",
            "version: 1\napprove: [{id: a, on_expiry: later}]\n",
            "version: 1\napprove: [{id: a, expires: 4 hours}]\n",
            "version: 1\nversions: {software: a, from: \"1\"}\n",
            "version: 1\nversions: {software: a, from: \"1\", to: \"2\", max_major_hop: 0}\n",
            "version: 1\nnotify: [{file: x, on: [sometimes]}]\n",
            "version: 1\non_failure: maybe\n",
        ] {
            assert!(!errors(Schema::Plan, bad).is_empty(), "plan schema accepted {bad:?}");
        }
        for bad in [
            "model: x\n",
            "version: 1\ndisks: [{id: d, location: nearby}]\n",
            "version: 1\nvolumes: [{id: V, mount: relative, disks: [d]}]\n",
            "version: 1\nvolumes: [{id: V, mount: /, disks: []}]\n",
            "version: 1\nservices: [{name: S, startup: sometimes}]\n",
            "version: 1\nsimulation: {faults: [{op: explode, fail_times: 1}]}\n",
            "version: 1\nsimulation: {faults: [{service: S}]}\n",
            "version: 1\nsimulation: {durations: {split: fast}}\n",
            "version: 1\nsoftware: [{name: App}]\n",
            "version: 1\nsoftware: [{name: App, version: \"1\", vendor: x}]\n",
        ] {
            assert!(!errors(Schema::Inventory, bad).is_empty(), "inventory schema accepted {bad:?}");
        }
    }

    #[test]
    fn every_unknown_key_is_reported_and_help_knows_the_field() {
        let e = errors(
            Schema::Plan,
            "version: \"1\"\ntitel: a\ncoments: b\n<<: {x: 1}\nservices: [123, {name: A, enabled: yes}]\nactions:\n  - {file: x, timeout: 30, args: \"%A% %B%\", timming: early, tmeout: 1}\n",
        );
        let helps: Vec<(usize, &str)> = e.iter().map(|x| (x.2.0, x.3.as_deref().unwrap_or(""))).collect();
        assert_eq!(
            helps,
            [
                (1, "write the number without quotes: `version: 1`"),
                (2, "did you mean `title`?"),
                (3, "did you mean `comments`?"),
                (
                    4,
                    "YAML merge keys (`<<`) are not supported: write the keys out, or share them through an included plan"
                ),
                (
                    5,
                    "write the name as a string (quote it if it looks like a number: \"123\"), or use the long form `{name: ...}`"
                ),
                (5, "write `true` (plans use YAML 1.2, where `yes` is a string)"),
                (7, "durations need a unit: 30s, 30m or 30ms"),
                (7, "write one list item per argument, quoted: [\"%A%\", \"%B%\"]"),
                (7, "did you mean `timing`?"),
                (7, "did you mean `timeout`?"),
            ]
        );
    }

    /// The schemas' `$defs/name` pattern is `name::PATTERN`, and agrees with `name::problem`
    /// (but for the length, which a pattern cannot count in bytes).
    #[test]
    fn the_name_pattern_agrees_with_the_name_check() {
        use crate::name::{
            self,
            tests::{UNUSABLE, USABLE},
        };
        for schema in [Schema::Plan, Schema::Inventory] {
            assert_eq!(schema.compiled().0["$defs"]["name"]["pattern"], name::PATTERN, "{schema:?}");
        }
        let validator = jsonschema::validator_for(&serde_json::json!({ "type": "string", "pattern": name::PATTERN }))
            .expect("the pattern compiles");
        for text in USABLE.iter().chain(UNUSABLE) {
            assert_eq!(validator.is_valid(&serde_json::json!(text)), name::problem(text).is_none(), "{text:?}");
        }
    }
}
