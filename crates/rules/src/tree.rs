//! A parsed rule file as a tree of parts that know where they are written: the same walk over
//! toml_edit's document and serde_json's raw values, each part with its key path and byte offset.
//! From it, `parse` reads every problem of a file (a part checked on its own, serde's message made
//! plain) and `locate` reads the spots (every key and value, in file order).
//!
//! It must not judge meaning (that is compilation) nor read files.

use serde::de::{DeserializeOwned, IntoDeserializer};
use serde_json::value::RawValue;

/// One problem of a file: where (a byte offset), the key path, what is wrong.
pub(crate) struct Problem {
    pub(crate) at: Option<usize>,
    pub(crate) path: String,
    pub(crate) message: String,
}

/// A key and its value as written in a file: the key path, where the key and the value start,
/// and the value when it is a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spot {
    pub(crate) path: String,
    pub(crate) key_at: Option<usize>,
    pub(crate) value_at: Option<usize>,
    pub(crate) text: Option<String>,
}

impl Spot {
    /// The last key of the path, without an index (`rule` of `pipeline[0].rule[2]`).
    pub(crate) fn name(&self) -> &str {
        last_name(&self.path)
    }

    /// `<section>[n].id`, or one nested in another definition (`pipeline[0].rule[2].id`): every
    /// key before `id` is an element of a list. A team stage's `team = { id = "…" }` is not one.
    pub(crate) fn is_definition(&self) -> bool {
        self.path.strip_suffix(".id").is_some_and(|owner| owner.split('.').all(|seg| seg.ends_with(']')))
    }
}

pub(crate) fn last_name(path: &str) -> &str {
    let last = path.rsplit('.').next().unwrap_or(path);
    last.split('[').next().unwrap_or(last)
}

/// Every key and value of a file with its key path and where each is written, in file order
/// (`locate` reads positions for compile-time messages from them). Empty when the file does not
/// parse.
pub(crate) fn spots(json: bool, text: &str) -> Vec<Spot> {
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

/// A part of a parsed file that knows where it is.
pub(crate) trait Node: Sized {
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
    /// The value as the file writes it (a table inline), without the comments around it.
    fn written(&self) -> String;
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

fn join_path(prefix: &str, inner: &serde_path_to_error::Path) -> String {
    let inner = inner.to_string();
    match (prefix.is_empty(), inner.as_str()) {
        (_, ".") => prefix.to_string(),
        (true, i) => i.to_string(),
        (false, i) if i.starts_with('[') => format!("{prefix}{i}"),
        (false, i) => format!("{prefix}.{i}"),
    }
}

pub(crate) struct TomlNode(pub(crate) toml_edit::Item);

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

    fn written(&self) -> String {
        let mut value = match self.0.clone() {
            toml_edit::Item::Value(v) => v,
            toml_edit::Item::Table(t) => toml_edit::Value::InlineTable(t.into_inline_table()),
            toml_edit::Item::ArrayOfTables(a) => toml_edit::Value::Array(a.into_array()),
            toml_edit::Item::None => return String::new(),
        };
        value.decor_mut().clear();
        value.to_string()
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

pub(crate) struct JsonNode<'a> {
    pub(crate) raw: &'a RawValue,
    /// The whole file: the raw value is a slice of it.
    pub(crate) origin: &'a str,
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

    fn written(&self) -> String {
        self.raw.get().to_string()
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
pub(crate) fn offset_of(text: &str, line: usize, column: usize) -> usize {
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
}
