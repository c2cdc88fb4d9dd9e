//! Reading one rule file into its serde structs, with every problem of the file at once: a syntax
//! error stops the file (nothing after it can be trusted), but a wrong type or an unknown key is
//! looked for in every definition, each reported as `file:line:column: key.path: message`
//! (`member[3].max_open: expected a non-negative integer, found the string "five"`).
//!
//! Owns where a problem is (its key path and position) and how a serde message reads to an admin.
//! It must not check meaning (ids, references, values: that is compilation) nor read files.

use serde::de::{DeserializeOwned, IgnoredAny, IntoDeserializer};
use serde_json::value::RawValue;

use super::format::{
    RawFile, RawMember, RawPipeline, RawRule, RawSchedule, RawSettings, RawTagRule, RawTeam, RawTerritory, RawTest,
};
use super::locate::{Source, Spot};

/// The keys a rule file may have at its top level (a test checks them against [`RawFile`]).
pub(super) const TOP_LEVEL: &[&str] =
    &["$schema", "settings", "territory", "schedule", "member", "team", "tag", "pipeline", "test"];

/// One problem of a file: where (a byte offset), the key path, what is wrong.
struct Problem {
    at: Option<usize>,
    path: String,
    message: String,
}

/// Parse one file; on failure, every problem found, rendered for the admin.
pub(super) fn parse(src: &Source) -> Result<RawFile, Vec<String>> {
    let problems = if src.is_json() { parse_json(&src.text) } else { parse_toml(&src.text) };
    match problems {
        Ok(f) => Ok(f),
        Err(mut ps) => {
            ps.sort_by_key(|p| p.at);
            Err(ps.into_iter().map(|p| render(src, p)).collect())
        }
    }
}

fn render(src: &Source, p: Problem) -> String {
    let file = src.path.display();
    let at = match p.at {
        Some(off) => {
            let (l, c) = src.line_col(off);
            format!("{file}:{l}:{c}")
        }
        None => file.to_string(),
    };
    if p.path.is_empty() {
        format!("{at}: {}", p.message)
    } else {
        format!("{at}: {}: {}", p.path, p.message)
    }
}

fn parse_toml(text: &str) -> Result<RawFile, Vec<Problem>> {
    // A file that reads whole is read in one pass; only one that does not is walked definition by
    // definition for every problem (a large file is never copied node by node for nothing).
    if let Ok(f) = toml::from_str::<RawFile>(text) {
        return Ok(f);
    }
    let doc = toml_edit::Document::parse(text).map_err(|e| {
        vec![Problem { at: e.span().map(|s| s.start), path: String::new(), message: e.message().trim().to_string() }]
    })?;
    let root = TomlNode(doc.as_item().clone());
    whole_file(&root)
}

fn parse_json(text: &str) -> Result<RawFile, Vec<Problem>> {
    let syntax = |e: serde_json::Error| {
        let msg = e.to_string();
        let msg = msg.rsplit_once(" at line ").map_or(msg.as_str(), |(m, _)| m).to_string();
        vec![Problem { at: Some(offset_of(text, e.line(), e.column())), path: String::new(), message: msg }]
    };
    // Typed first: its syntax messages are the most precise ("trailing comma").
    match serde_json::from_str::<RawFile>(text) {
        Ok(f) => return Ok(f),
        Err(e) if e.classify() != serde_json::error::Category::Data => return Err(syntax(e)),
        Err(_) => {}
    }
    let raw: &RawValue = serde_json::from_str(text).map_err(syntax)?;
    let root = JsonNode { raw, origin: text };
    whole_file(&root)
}

/// Every key and value of a file with its key path and where each is written, in file order
/// (`locate` reads positions for compile-time messages from them). Empty when the file does not
/// parse.
pub(super) fn spots(json: bool, text: &str) -> Vec<Spot> {
    let mut out = Vec::new();
    if json {
        if let Ok(raw) = serde_json::from_str::<&RawValue>(text) {
            spots_of(&JsonNode { raw, origin: text }, "", None, &mut out);
        }
    } else if let Ok(doc) = toml_edit::Document::parse(text) {
        spots_of(&TomlNode(doc.as_item().clone()), "", None, &mut out);
    }
    out.sort_by_key(|s| s.value_at.or(s.key_at).unwrap_or(usize::MAX));
    out
}

fn spots_of<N: Node>(node: &N, path: &str, key_at: Option<usize>, out: &mut Vec<Spot>) {
    out.push(Spot { path: path.to_string(), key_at, value_at: node.at(), text: node.text() });
    if let Some(items) = node.items() {
        for (i, item) in items.iter().enumerate() {
            spots_of(item, &format!("{path}[{i}]"), None, out);
        }
        return;
    }
    for (key, value) in node.entries() {
        let at = node.key_at(&key, &value);
        let path = if path.is_empty() { key } else { format!("{path}.{key}") };
        spots_of(&value, &path, at, out);
    }
}

/// The file as a whole when it fits; else every problem of every definition.
fn whole_file<N: Node>(root: &N) -> Result<RawFile, Vec<Problem>> {
    let mut whole = Vec::new();
    if let Some(f) = root.check::<RawFile>("", &mut whole) {
        return Ok(f);
    }
    let mut each = Vec::new();
    walk(root, &mut each);
    Err(if each.is_empty() { whole } else { each })
}

/// A part of a parsed file that knows where it is.
trait Node: Sized {
    /// The keys of a table and what each holds, in one pass.
    fn entries(&self) -> Vec<(String, Self)>;
    fn get(&self, key: &str) -> Option<Self>;
    /// The elements when it is a list (or an array of tables).
    fn items(&self) -> Option<Vec<Self>>;
    /// Byte offset in the file.
    fn at(&self) -> Option<usize>;
    /// Byte offset of the key `key` of this table.
    fn key_at(&self, key: &str, value: &Self) -> Option<usize>;
    /// The value, when it is a string.
    fn text(&self) -> Option<String>;
    /// Deserialize as `T` with these keys left out; the problem (with `path` before its own key
    /// path) and the key of this table it is under, when it does not fit.
    fn try_without<T: DeserializeOwned>(&self, removed: &[String], path: &str) -> Result<T, (Problem, Option<String>)>;

    /// Deserialize as `T`; every problem of it when it does not fit (after one, its key is left out
    /// and the rest looked at again, so two bad keys of one member are two problems).
    fn check<T: DeserializeOwned>(&self, path: &str, out: &mut Vec<Problem>) -> Option<T> {
        const MAX_PER_DEFINITION: usize = 20;
        let mut removed: Vec<String> = Vec::new();
        loop {
            match self.try_without::<T>(&removed, path) {
                Ok(v) => return removed.is_empty().then_some(v),
                Err((problem, key)) => {
                    // A key left out for its own problem is not also missing.
                    if removed.iter().any(|k| problem.message == format!("missing field `{k}`")) {
                        return None;
                    }
                    out.push(problem);
                    match key {
                        Some(k) if !removed.contains(&k) && removed.len() < MAX_PER_DEFINITION => removed.push(k),
                        _ => return None,
                    }
                }
            }
        }
    }
}

/// The first key of a problem's path inside the value checked.
fn first_key(path: &serde_path_to_error::Path) -> Option<String> {
    match path.iter().next()? {
        serde_path_to_error::Segment::Map { key } => Some(key.clone()),
        _ => None,
    }
}

/// Check every definition on its own, so one bad member does not hide the next one's mistake.
fn walk<N: Node>(root: &N, out: &mut Vec<Problem>) {
    for (key, v) in root.entries() {
        match key.as_str() {
            "$schema" => drop(v.check::<String>(&key, out)),
            "settings" => drop(v.check::<RawSettings>(&key, out)),
            "territory" => each::<RawTerritory, N>(&v, &key, out),
            "schedule" => each::<RawSchedule, N>(&v, &key, out),
            "member" => each::<RawMember, N>(&v, &key, out),
            "team" => each::<RawTeam, N>(&v, &key, out),
            "tag" => each::<RawTagRule, N>(&v, &key, out),
            "test" => each::<RawTest, N>(&v, &key, out),
            "pipeline" => match v.items() {
                Some(pipelines) => {
                    for (i, p) in pipelines.iter().enumerate() {
                        let path = format!("pipeline[{i}]");
                        // The pipeline's own keys, then each of its rules on its own.
                        let _ = p.check::<RawPipeline<IgnoredAny>>(&path, out);
                        if let Some(rules) = p.get("rule") {
                            each::<RawRule, N>(&rules, &format!("{path}.rule"), out);
                        }
                    }
                }
                None => drop(v.check::<Vec<RawPipeline>>(&key, out)),
            },
            other => {
                let expected: Vec<String> = TOP_LEVEL.iter().map(|k| format!("`{k}`")).collect();
                out.push(Problem {
                    at: v.at(),
                    path: String::new(),
                    message: format!("unknown field `{other}`, expected one of {}", expected.join(", ")),
                });
            }
        }
    }
}

fn each<T: DeserializeOwned, N: Node>(v: &N, key: &str, out: &mut Vec<Problem>) {
    match v.items() {
        Some(items) => {
            for (i, item) in items.iter().enumerate() {
                let _ = item.check::<T>(&format!("{key}[{i}]"), out);
            }
        }
        None => drop(v.check::<Vec<T>>(key, out)),
    }
}

fn join_path(prefix: &str, inner: &serde_path_to_error::Path) -> String {
    let inner = inner.to_string();
    match (prefix.is_empty(), inner.as_str()) {
        (_, ".") => prefix.to_string(),
        (true, i) => i.to_string(),
        (false, i) if i.starts_with('[') => format!("{prefix}{i}"),
        (false, i) => format!("{prefix}.{i}"),
    }
}

struct TomlNode(toml_edit::Item);

impl Node for TomlNode {
    fn entries(&self) -> Vec<(String, Self)> {
        let Some(t) = self.0.as_table_like() else { return Vec::new() };
        t.iter().map(|(k, v)| (k.to_string(), TomlNode(v.clone()))).collect()
    }

    fn get(&self, key: &str) -> Option<Self> {
        self.0.get(key).cloned().map(TomlNode)
    }

    fn items(&self) -> Option<Vec<Self>> {
        match &self.0 {
            toml_edit::Item::ArrayOfTables(a) => {
                Some(a.iter().map(|t| TomlNode(toml_edit::Item::Table(t.clone()))).collect())
            }
            toml_edit::Item::Value(toml_edit::Value::Array(a)) => {
                Some(a.iter().map(|v| TomlNode(toml_edit::Item::Value(v.clone()))).collect())
            }
            _ => None,
        }
    }

    fn at(&self) -> Option<usize> {
        self.0.span().map(|s| s.start)
    }

    fn key_at(&self, key: &str, _: &Self) -> Option<usize> {
        self.0.as_table_like()?.key(key)?.span().map(|s| s.start)
    }

    fn text(&self) -> Option<String> {
        self.0.as_str().map(str::to_string)
    }

    fn try_without<T: DeserializeOwned>(&self, removed: &[String], path: &str) -> Result<T, (Problem, Option<String>)> {
        let at = self.at();
        let mut item = self.0.clone();
        if let Some(t) = item.as_table_like_mut() {
            removed.iter().for_each(|k| drop(t.remove(k)));
        }
        let value = match item {
            toml_edit::Item::Table(t) => toml_edit::Value::InlineTable(t.into_inline_table()),
            toml_edit::Item::ArrayOfTables(a) => toml_edit::Value::Array(a.into_array()),
            toml_edit::Item::Value(v) => v,
            toml_edit::Item::None => toml_edit::Value::InlineTable(toml_edit::InlineTable::new()),
        };
        serde_path_to_error::deserialize::<_, T>(value.into_deserializer()).map_err(|e| {
            let (p, key) = (join_path(path, e.path()), first_key(e.path()));
            let inner = e.into_inner();
            (Problem { at: inner.span().map(|s| s.start).or(at), path: p, message: humane(inner.message()) }, key)
        })
    }
}

struct JsonNode<'a> {
    raw: &'a RawValue,
    /// The whole file: the raw value is a slice of it.
    origin: &'a str,
}

impl<'a> Node for JsonNode<'a> {
    fn entries(&self) -> Vec<(String, Self)> {
        let map: std::collections::BTreeMap<String, &'a RawValue> =
            serde_json::from_str(self.raw.get()).unwrap_or_default();
        map.into_iter().map(|(k, raw)| (k, JsonNode { raw, origin: self.origin })).collect()
    }

    fn get(&self, key: &str) -> Option<Self> {
        let map: std::collections::BTreeMap<String, &'a RawValue> = serde_json::from_str(self.raw.get()).ok()?;
        map.get(key).map(|raw| JsonNode { raw, origin: self.origin })
    }

    fn items(&self) -> Option<Vec<Self>> {
        let items: Vec<&'a RawValue> = serde_json::from_str(self.raw.get()).ok()?;
        Some(items.into_iter().map(|raw| JsonNode { raw, origin: self.origin }).collect())
    }

    fn at(&self) -> Option<usize> {
        (self.raw.get().as_ptr() as usize).checked_sub(self.origin.as_ptr() as usize)
    }

    /// Read back from the value: `"key"` `:` `value`, blanks between (JSON's own grammar); the
    /// offset of the key's first character, inside its quotes.
    fn key_at(&self, _: &str, value: &Self) -> Option<usize> {
        let before = self.origin.get(..value.at()?)?.trim_end().strip_suffix(':')?.trim_end();
        let inner = before.strip_suffix('"')?;
        let bytes = inner.as_bytes();
        let open = (0..bytes.len()).rev().find(|&i| bytes[i] == b'"' && (i == 0 || bytes[i - 1] != b'\\'))?;
        Some(open + 1)
    }

    fn text(&self) -> Option<String> {
        serde_json::from_str::<String>(self.raw.get()).ok()
    }

    fn try_without<T: DeserializeOwned>(&self, removed: &[String], path: &str) -> Result<T, (Problem, Option<String>)> {
        let original = self.raw.get();
        // With keys left out, the object is written anew: a problem then points at its key's value.
        let members: Option<std::collections::BTreeMap<String, &'a RawValue>> =
            if removed.is_empty() { None } else { serde_json::from_str(original).ok() };
        let text = match &members {
            None => original.to_string(),
            Some(m) => {
                let kept: Vec<String> = m
                    .iter()
                    .filter(|(k, _)| !removed.contains(k))
                    .map(|(k, v)| format!("{}:{}", serde_json::Value::from(k.as_str()), v.get()))
                    .collect();
                format!("{{{}}}", kept.join(","))
            }
        };
        let mut de = serde_json::Deserializer::from_str(&text);
        serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
            let (p, key) = (join_path(path, e.path()), first_key(e.path()));
            let inner = e.into_inner();
            let msg = inner.to_string();
            let msg = msg.rsplit_once(" at line ").map_or(msg.as_str(), |(m, _)| m).to_string();
            let at = match &members {
                None => self.at().map(|base| base + offset_of(&text, inner.line(), inner.column())),
                Some(m) => key.as_ref().and_then(|k| m.get(k)).map_or(self.at(), |v| self.at_of(v)),
            };
            (Problem { at, path: p, message: humane(&msg) }, key)
        })
    }
}

impl JsonNode<'_> {
    fn at_of(&self, v: &RawValue) -> Option<usize> {
        (v.get().as_ptr() as usize).checked_sub(self.origin.as_ptr() as usize)
    }
}

/// Byte offset of a 1-based line and column (serde_json's) in `text`.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let start: usize = text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
    (start + column.saturating_sub(1)).min(text.len())
}

/// A serde message as an admin reads it: "invalid type: string "ten", expected u32" becomes
/// "expected a non-negative integer, found the string "ten"".
pub(super) fn humane(msg: &str) -> String {
    let msg = msg.trim();
    let Some(rest) = msg.strip_prefix("invalid type: ").or_else(|| msg.strip_prefix("invalid value: ")) else {
        return msg.to_string();
    };
    let Some((found, expected)) = rest.rsplit_once(", expected ") else { return msg.to_string() };
    let expected = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer".to_string(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".to_string(),
        "f32" | "f64" => "a number".to_string(),
        "a sequence" => "a list".to_string(),
        "a map" => "a table".to_string(),
        e if e.starts_with("struct ") => "a table".to_string(),
        e => e.to_string(),
    };
    let found = if let Some(s) = found.strip_prefix("string ") {
        format!("the string {s}")
    } else if let Some((kind, v)) = found.split_once(' ') {
        match kind {
            "integer" | "floating" | "boolean" => v.trim_start_matches("point ").trim_matches('`').to_string(),
            _ => found.to_string(),
        }
    } else {
        match found {
            "sequence" => "a list".to_string(),
            "map" => "a table".to_string(),
            f => f.to_string(),
        }
    };
    format!("expected {expected}, found {found}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_read_plainly() {
        assert_eq!(
            humane("invalid type: string \"ten\", expected u32"),
            "expected a non-negative integer, found the string \"ten\""
        );
        assert_eq!(humane("invalid value: integer `-3`, expected u32"), "expected a non-negative integer, found -3");
        assert_eq!(
            humane("invalid type: floating point `1.5`, expected u32"),
            "expected a non-negative integer, found 1.5"
        );
        assert_eq!(humane("invalid type: sequence, expected a string"), "expected a string, found a list");
        assert_eq!(humane("missing field `id`"), "missing field `id`");
    }

    #[test]
    fn the_top_level_keys_are_those_of_a_rule_file() {
        let schema = schemars::schema_for!(RawFile);
        let props = schema.get("properties").and_then(|p| p.as_object());
        let mut props: Vec<String> = props.map(|o| o.keys().cloned().collect()).unwrap_or_default();
        props.sort();
        let mut top: Vec<String> = TOP_LEVEL.iter().map(|s| s.to_string()).collect();
        top.sort();
        assert_eq!(props, top);
    }
}
