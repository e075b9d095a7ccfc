//! Spanned YAML: the only module that touches the YAML parser. It turns text into a [`Node`] tree
//! where every node knows its byte span, resolving plain scalars with the YAML 1.2 core schema.
//!
//! The tree is built iteratively from parser events under hard limits, so hostile input (alias
//! bombs, deep nesting, huge documents) gets a diagnostic instead of a hang or a stack overflow.

use std::collections::HashMap;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Span as YSpan};

use crate::source::{SourceFile, Span};

/// Deeper nesting than this is refused. A plan needs five levels; this leaves room for
/// hand-written inventories and stops `[[[[...` inputs long before they cost anything.
pub const MAX_DEPTH: usize = 64;
/// Most nodes one file may expand to, counting every node an alias copies.
pub const MAX_NODES: usize = 2_000_000;

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub span: Span,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_span: Span,
    pub value: Node,
}

impl Node {
    /// The node's text. JSON has no infinities or NaN, so `.inf`, `-.inf` and `.nan` are
    /// strings to the schema, and read as the same strings here (a title `.inf` is kept).
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            Value::Float(f) => non_finite_spelling(*f),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self.value {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.as_map()?.iter().find(|e| e.key == key)
    }

    /// The span to label when a diagnostic is about a whole mapping or sequence: its first line,
    /// not every line of it.
    pub fn head(&self) -> Span {
        match &self.value {
            Value::Map(entries) => entries.first().map_or(self.span, |e| e.key_span),
            Value::Seq(items) => {
                items.first().map_or(self.span, |n| Span::new(self.span.start, n.span.start.max(self.span.start + 1)))
            }
            _ => self.span,
        }
    }

    /// What a type error says the node is: "a string", "a list", ...
    pub fn kind_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The node as JSON, for schema validation.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map_or_else(|| J::String(non_finite_spelling(*f).unwrap_or_default().to_owned()), J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(entries.iter().map(|e| (e.key.clone(), e.value.to_json())).collect()),
        }
    }
}

/// A problem found while reading YAML: a syntax error or a limit or rule of ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YamlError {
    pub code: &'static str,
    pub message: String,
    pub span: Span,
    pub label: String,
    pub related: Option<(Span, String)>,
    pub help: Option<String>,
}

impl YamlError {
    fn new(code: &'static str, message: impl Into<String>, span: Span, label: &str) -> Self {
        Self { code, message: message.into(), span, label: label.into(), related: None, help: None }
    }
}

/// The document of a file (`None` when the file holds no document) and every problem found.
/// When `errors` is not empty the tree is absent or partial and must not be used.
#[derive(Debug)]
pub struct Parsed {
    pub root: Option<Node>,
    pub errors: Vec<YamlError>,
}

enum Frame {
    Seq {
        start: usize,
        anchor: usize,
        items: Vec<Node>,
        weight: usize,
    },
    Map {
        start: usize,
        anchor: usize,
        entries: Vec<Entry>,
        key: Option<(String, Span)>,
        seen: HashMap<String, Span>,
        weight: usize,
    },
}

struct Builder<'a> {
    file: &'a SourceFile,
    ascii: bool,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    nodes: usize,
    root: Option<Node>,
    documents: usize,
    errors: Vec<YamlError>,
}

pub fn parse(file: &SourceFile) -> Parsed {
    let text: &str = &file.text;
    let mut b = Builder {
        file,
        ascii: text.is_ascii(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        root: None,
        documents: 0,
        errors: Vec::new(),
    };
    for event in Parser::new_from_str(text) {
        match event {
            Ok((event, span)) => {
                if let Err(e) = b.event(event, span) {
                    b.errors.push(*e);
                    break;
                }
            }
            Err(e) => {
                let at = b.offset(*e.marker());
                let mut err = YamlError::new(
                    "duet::yaml::syntax",
                    format!("invalid YAML: {}", e.info()),
                    Span::new(at, at + 1),
                    "here",
                );
                let at_char = b.file.text.get(at..).and_then(|t| t.chars().next());
                if at_char == Some('%') || e.info().contains('%') {
                    err.help = Some("a value that starts with `%` must be quoted: \"%ACTIVE_UPGRADE_SIDE%\"".into());
                }
                if e.info().contains("tab") {
                    err.help = Some("YAML indentation must use spaces; replace the tab characters with spaces".into());
                }
                b.errors.push(err);
                break;
            }
        }
    }
    Parsed { root: b.root, errors: b.errors }
}

impl Builder<'_> {
    fn offset(&self, m: Marker) -> usize {
        if self.ascii { m.index().min(self.file.text.len()) } else { self.file.offset_of(m.line(), m.col()) }
    }

    fn span(&self, s: YSpan) -> Span {
        Span::new(self.offset(s.start), self.offset(s.end))
    }

    fn event(&mut self, event: Event<'_>, yspan: YSpan) -> Result<(), Box<YamlError>> {
        let span = self.span(yspan);
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(Box::new(
                        YamlError::new(
                            "duet::yaml::multiple-documents",
                            "a plan file holds one YAML document, but this file has more",
                            Span::new(span.start, span.start + 3),
                            "second document starts here",
                        )
                        .with_help("split the documents into separate files and list them under `include`"),
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let value = match check_tag(tag.as_deref(), span, &["str", "int", "float", "bool", "null"])? {
                    Some("str") => Value::Str(text.into_owned()),
                    // `!!int "5"`: a core tag asks for the value resolved as that type.
                    Some(_) => resolve_plain(&text),
                    None if style == ScalarStyle::Plain => resolve_plain(&text),
                    None => Value::Str(text.into_owned()),
                };
                self.complete(Node { span, value }, anchor, 1, 1)?;
            }
            Event::SequenceStart(anchor, tag) => {
                check_tag(tag.as_deref(), span, &["seq"])?;
                self.open(span)?;
                self.stack.push(Frame::Seq { start: span.start, anchor, items: Vec::new(), weight: 1 });
            }
            Event::MappingStart(anchor, tag) => {
                check_tag(tag.as_deref(), span, &["map"])?;
                self.open(span)?;
                self.stack.push(Frame::Map {
                    start: span.start,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                    seen: HashMap::new(),
                    weight: 1,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let frame = self.stack.pop().expect("parser balances start and end events");
                let (node, anchor, weight) = match frame {
                    Frame::Seq { start, anchor, items, weight } => {
                        let end = items.last().map_or(span.end, |n| n.span.end).max(start);
                        (Node { span: Span::new(start, end), value: Value::Seq(items) }, anchor, weight)
                    }
                    Frame::Map { start, anchor, entries, weight, .. } => {
                        let end = entries.last().map_or(span.end, |e| e.value.span.end).max(start);
                        (Node { span: Span::new(start, end), value: Value::Map(entries) }, anchor, weight)
                    }
                };
                // The children were counted as they completed: the container adds itself.
                self.complete(node, anchor, weight, 1)?;
            }
            Event::Alias(id) => {
                let (node, weight) = self.anchors.get(&id).cloned().ok_or_else(|| {
                    Box::new(YamlError::new(
                        "duet::yaml::alias",
                        "alias refers to an unknown anchor",
                        span,
                        "unknown anchor",
                    ))
                })?;
                // The alias is shown where it is used, not where its anchor was defined.
                let node = Node { span, value: node.value };
                self.complete(node, 0, weight, weight)?;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        Ok(())
    }

    fn open(&self, span: Span) -> Result<(), Box<YamlError>> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(Box::new(
                YamlError::new(
                    "duet::yaml::too-deep",
                    format!("YAML is nested more than {MAX_DEPTH} levels deep"),
                    Span::new(span.start, span.start + 1),
                    "too deep",
                )
                .with_help("plans need only a few levels of nesting; this file is probably not a plan"),
            ));
        }
        Ok(())
    }

    /// Attaches a finished node to its parent. `weight` is the node's size counting its subtree
    /// (what an alias to it copies); `added` is how many nodes this adds to the file's total.
    fn complete(&mut self, node: Node, anchor: usize, weight: usize, added: usize) -> Result<(), Box<YamlError>> {
        self.nodes = self.nodes.saturating_add(added);
        if self.nodes > MAX_NODES {
            return Err(Box::new(YamlError::new("duet::yaml::too-large", format!("YAML expands to more than {MAX_NODES} nodes"), node.span, "expansion limit reached here")
                .with_help("aliases (`*name`) copy whole subtrees; a file this large is not a plan (a YAML alias bomb looks like this)")));
        }
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), weight));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, weight: w, .. }) => {
                *w += weight;
                items.push(node);
            }
            Some(Frame::Map { entries, key, seen, weight: w, .. }) => {
                *w += weight;
                if let Some((key, key_span)) = key.take() {
                    entries.push(Entry { key, key_span, value: node });
                } else {
                    {
                        let name = match node.value {
                            Value::Str(s) => s,
                            Value::Null => String::new(),
                            Value::Bool(_) | Value::Int(_) | Value::Float(_) => {
                                self.file.text[node.span.start..node.span.end].trim().to_owned()
                            }
                            Value::Seq(_) | Value::Map(_) => {
                                return Err(Box::new(YamlError::new(
                                    "duet::yaml::complex-key",
                                    "mapping keys must be plain names, not lists or mappings",
                                    node.span,
                                    "complex key",
                                )));
                            }
                        };
                        if let Some(&first) = seen.get(&name) {
                            let mut e = YamlError::new(
                                "duet::yaml::duplicate-key",
                                format!("duplicate key `{name}`"),
                                node.span,
                                "defined again here",
                            );
                            e.related = Some((first, "first defined here".into()));
                            e.help = Some("YAML keys must be unique in a mapping; remove or merge one of them".into());
                            self.errors.push(e);
                        } else {
                            seen.insert(name.clone(), node.span);
                        }
                        *key = Some((name, node.span));
                    }
                }
            }
        }
        Ok(())
    }
}

impl YamlError {
    fn with_help(mut self, help: &str) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn into_diagnostic(self, file: crate::source::FileId) -> crate::diagnostic::Diagnostic {
        let at = |span| crate::source::Loc { file, span };
        let mut d = crate::diagnostic::Diagnostic::error(self.code, self.message)
            .at(at(self.span), self.label)
            .help_opt(self.help);
        if let Some((span, text)) = self.related {
            d = d.related(at(span), text);
        }
        d
    }
}

/// The core-schema suffix of a tag this node may carry (`!!str` on a scalar, `!!seq` on a
/// list, ...), or an error for any other tag: plans are plain data.
fn check_tag<'t>(
    tag: Option<&'t saphyr_parser::Tag>,
    span: Span,
    allowed: &[&str],
) -> Result<Option<&'t str>, Box<YamlError>> {
    match tag {
        None => Ok(None),
        Some(t) if t.is_yaml_core_schema() && allowed.contains(&t.suffix.as_str()) => Ok(Some(t.suffix.as_str())),
        Some(t) => Err(Box::new(
            YamlError::new(
                "duet::yaml::tag",
                format!("unsupported YAML tag `{}{}`", t.handle, t.suffix),
                span,
                "tag not supported",
            )
            .with_help("plans use plain YAML values; remove the tag"),
        )),
    }
}

fn non_finite_spelling(f: f64) -> Option<&'static str> {
    if f.is_nan() {
        Some(".nan")
    } else if f.is_infinite() {
        Some(if f > 0.0 { ".inf" } else { "-.inf" })
    } else {
        None
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().map_or_else(|_| Value::Float(s.parse().unwrap_or(f64::NAN)), Value::Int);
    }
    if let Some(hex) = s.strip_prefix("0x") {
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return i64::from_str_radix(hex, 16).map_or(Value::Str(s.into()), Value::Int);
        }
    }
    if let Some(oct) = s.strip_prefix("0o") {
        if !oct.is_empty() && oct.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return i64::from_str_radix(oct, 8).map_or(Value::Str(s.into()), Value::Int);
        }
    }
    if is_float(digits) {
        if let Ok(f) = s.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(s.into())
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn is_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            !(int.is_empty() && frac.is_empty()) && int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|b| b.is_ascii_digit()),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    });
    mantissa_ok && exponent_ok && (s.contains('.') || exponent.is_some())
}

#[cfg(test)]
mod tests {
    use std::fmt::Write;
    use std::path::PathBuf;

    use super::*;

    fn parse_str(text: &str) -> (SourceFile, Parsed) {
        let file = SourceFile::new("t.yaml".into(), PathBuf::from("/t.yaml"), text.into());
        let parsed = parse(&file);
        (file, parsed)
    }

    fn first_error(text: &str) -> (&'static str, (usize, usize)) {
        let (file, parsed) = parse_str(text);
        let e = parsed.errors.first().unwrap_or_else(|| panic!("expected an error for {text:?}"));
        (e.code, file.line_col(e.span.start))
    }

    #[test]
    fn spans_point_at_nodes() {
        let (file, parsed) = parse_str("version: 1\nservices:\n  - name: café\n    after: [a, \"b\"]\n");
        assert!(parsed.errors.is_empty());
        let root = parsed.root.unwrap();
        let services = &root.get("services").unwrap().value;
        let entry = &services.as_seq().unwrap()[0];
        let name = &entry.get("name").unwrap().value;
        assert_eq!(name.as_str(), Some("café"));
        assert_eq!(file.line_col(name.span.start), (3, 11));
        let after = &entry.get("after").unwrap().value;
        let b = &after.as_seq().unwrap()[1];
        assert_eq!(file.line_col(b.span.start), (4, 16));
        assert_eq!(root.get("version").unwrap().value.as_int(), Some(1));
    }

    #[test]
    fn plain_scalars_follow_the_core_schema() {
        for (text, expected) in [
            ("~", Value::Null),
            ("", Value::Null),
            ("true", Value::Bool(true)),
            ("FALSE", Value::Bool(false)),
            ("42", Value::Int(42)),
            ("-7", Value::Int(-7)),
            ("0x1F", Value::Int(31)),
            ("1.5", Value::Float(1.5)),
            ("1e3", Value::Float(1000.0)),
            ("30s", Value::Str("30s".into())),
            ("yes", Value::Str("yes".into())),
            ("1.2.3", Value::Str("1.2.3".into())),
            (".", Value::Str(".".into())),
        ] {
            assert_eq!(resolve_plain(text), expected, "{text:?}");
        }
        let (_, parsed) = parse_str("a: '42'\nb: !!str 7\n");
        let root = parsed.root.unwrap();
        assert_eq!(root.get("a").unwrap().value.as_str(), Some("42"));
        assert_eq!(root.get("b").unwrap().value.as_str(), Some("7"));
        let (_, parsed) = parse_str("a: !!int \"5\"\nb: !!seq [x]\nc: .inf\n");
        let root = parsed.root.unwrap();
        assert_eq!(root.get("a").unwrap().value.as_int(), Some(5), "a core tag resolves the quoted text as that type");
        assert!(root.get("b").unwrap().value.as_seq().is_some());
        assert_eq!(root.get("c").unwrap().value.to_json(), serde_json::json!(".inf"), "JSON has no infinity");
        assert_eq!(root.get("c").unwrap().value.as_str(), Some(".inf"), "read as the string it is to the schema");
    }

    #[test]
    fn duplicate_keys_name_both_places() {
        let (file, parsed) = parse_str("version: 1\ntitle: a\ntitle: b\n");
        let e = &parsed.errors[0];
        assert_eq!(e.code, "duet::yaml::duplicate-key");
        assert_eq!(file.line_col(e.span.start), (3, 1));
        assert_eq!(file.line_col(e.related.as_ref().unwrap().0.start), (2, 1));
    }

    #[test]
    fn hostile_yaml_gets_errors_not_crashes() {
        assert_eq!(first_error("a:\n\tb: 1\n").0, "duet::yaml::syntax");
        assert_eq!(first_error("a: [1, 2\n").0, "duet::yaml::syntax");
        assert_eq!(first_error("a: 1\n---\nb: 2\n"), ("duet::yaml::multiple-documents", (2, 1)));
        assert_eq!(first_error("a: !custom x\n").0, "duet::yaml::tag");
        assert_eq!(first_error("a: !custom [x]\n").0, "duet::yaml::tag");
        assert_eq!(first_error("a: !!str {x: 1}\n").0, "duet::yaml::tag");
        let (_, percent) = parse_str("a: [%A%]\n");
        assert!(percent.errors[0].help.as_deref().is_some_and(|h| h.contains("must be quoted")));
        assert_eq!(first_error("? [a]\n: 1\n").0, "duet::yaml::complex-key");
        let deep = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        // The parser itself limits flow nesting; either way it is an error, never a crash.
        assert!(first_error(&deep).0.starts_with("duet::yaml::"));
        let block: String = (0..200).fold(String::new(), |mut s, i| {
            let _ = writeln!(s, "{}k{i}:", "  ".repeat(i));
            s
        });
        assert_eq!(first_error(&block), ("duet::yaml::too-deep", (65, 129)));
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            let _ =
                writeln!(bomb, "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]");
        }
        assert_eq!(first_error(&bomb).0, "duet::yaml::too-large");
    }

    /// The node budget counts each node once: 700,000 scalars three levels deep are well
    /// within it (counting every container's subtree again would put them over).
    #[test]
    fn nested_nodes_count_once_against_the_limit() {
        let items = vec!["x"; 700_000].join(",");
        let (_, parsed) = parse_str(&format!("a:\n  b:\n    c: [{items}]\n"));
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors.first());
    }

    #[test]
    fn aliases_copy_their_anchor() {
        let (_, parsed) = parse_str("base: &b {x: 1}\ncopy: *b\n");
        assert!(parsed.errors.is_empty());
        let root = parsed.root.unwrap();
        assert_eq!(root.get("copy").unwrap().value.to_json(), serde_json::json!({"x": 1}));
    }

    #[test]
    fn empty_input_has_no_document() {
        let (_, parsed) = parse_str("");
        assert!(parsed.root.is_none() && parsed.errors.is_empty());
        let (_, parsed) = parse_str("# only a comment\n");
        assert!(parsed.root.is_none());
    }
}
