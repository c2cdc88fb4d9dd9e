//! One block of a rule set, removed or given a new value as the admin wrote it (a TOML value in a
//! TOML file, JSON in a JSON file): the key's own comments and every other line kept as written.
//! It must not judge the value (the caller compiles the result) nor add a key a rule cannot have.

use serde_json::value::RawValue;

use super::{json_rules, toml_rule};
use crate::outline::BLOCKS;

/// Set block `key` of rule `rule` in pipeline `pipeline` to `value` (the value's text in the
/// file's own syntax), or remove it (`None`). Returns the new text.
pub fn set_block(
    text: &str,
    json: bool,
    pipeline: &str,
    rule: &str,
    key: &str,
    value: Option<&str>,
) -> Result<String, String> {
    if !BLOCKS.contains(&key) {
        return Err(format!("`{key}` is not a block of a rule (blocks: {})", BLOCKS.join(", ")));
    }
    if json {
        set_json(text, pipeline, rule, key, value)
    } else {
        set_toml(text, pipeline, rule, key, value)
    }
}

fn set_toml(text: &str, pipeline: &str, rule: &str, key: &str, value: Option<&str>) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| e.to_string())?;
    let table = toml_rule(&mut doc, pipeline, rule)?;
    match value {
        None => {
            table.remove(key).ok_or_else(|| format!("rule `{rule}` has no `{key}`"))?;
        }
        Some(v) => {
            let mut new = toml_value(v)?;
            match table.get_mut(key) {
                Some(toml_edit::Item::Value(old)) => {
                    *new.decor_mut() = old.decor().clone();
                    *old = new;
                }
                Some(other) => *other = toml_edit::Item::Value(new),
                None => {
                    new.decor_mut().set_prefix(" ");
                    table.insert(key, toml_edit::Item::Value(new));
                }
            }
        }
    }
    Ok(doc.to_string())
}

/// A TOML value from its text, as it would follow `key = ` on a line.
pub(super) fn toml_value(text: &str) -> Result<toml_edit::Value, String> {
    let doc: toml_edit::DocumentMut =
        format!("v = {}\n", text.trim()).parse().map_err(|e: toml_edit::TomlError| not_a_value(&e.to_string()))?;
    match doc.get("v") {
        Some(toml_edit::Item::Value(v)) if doc.len() == 1 => {
            let mut v = v.clone();
            v.decor_mut().clear();
            Ok(v)
        }
        _ => Err(not_a_value("it is not one value")),
    }
}

fn not_a_value(why: &str) -> String {
    let why = why.lines().rfind(|l| !l.trim().is_empty()).unwrap_or(why).trim().to_string();
    format!("not a TOML value: {why} (a string in quotes, a number, [a, list] or {{ key = value }})")
}

fn set_json(text: &str, pipeline: &str, rule: &str, key: &str, value: Option<&str>) -> Result<String, String> {
    if let Some(v) = value {
        serde_json::from_str::<&RawValue>(v.trim()).map_err(|e| format!("not a JSON value: {e}"))?;
    }
    let rules = json_rules(text, pipeline)?;
    let r = rules
        .iter()
        .find(|r| super::json_id(r).as_deref() == Some(rule))
        .ok_or_else(|| format!("no rule `{rule}` in pipeline `{pipeline}`"))?;
    if value.is_none() && !raw_members(r.get())?.iter().any(|(k, _)| k == key) {
        return Err(format!("rule `{rule}` has no `{key}`"));
    }
    set_json_object(text, r, key, value)
}

/// Set member `key` of the JSON object `object` (a slice of `text`) to `value`, or remove it:
/// the value's own text replaced, or a member added before the closing brace, or one removed
/// with one comma beside it.
pub(super) fn set_json_object(text: &str, object: &RawValue, key: &str, value: Option<&str>) -> Result<String, String> {
    let members = raw_members(object.get())?;
    let offset = |v: &str| v.as_ptr() as usize - text.as_ptr() as usize;
    let found = members.iter().find(|(k, _)| k == key);
    let out = match (found, value) {
        (Some((_, v)), Some(new)) => splice(text, offset(v.get()), offset(v.get()) + v.get().len(), new.trim()),
        (Some((_, v)), None) => {
            let (start, end) = member_span(text, key, offset(v.get()), offset(v.get()) + v.get().len())?;
            splice(text, start, end, "")
        }
        (None, Some(new)) => {
            let close = offset(object.get()) + object.get().len() - 1;
            let body = text[offset(object.get()) + 1..close].trim_end();
            let comma = if body.trim().is_empty() { "" } else { "," };
            let at = offset(object.get()) + 1 + body.len();
            let key = serde_json::to_string(key).map_err(|e| e.to_string())?;
            splice(text, at, at, &format!("{comma} {key}: {}", new.trim()))
        }
        (None, None) => return Ok(text.to_string()),
    };
    Ok(out)
}

/// An object's members in order, each value as its own text.
fn raw_members(object: &str) -> Result<Vec<(String, &RawValue)>, String> {
    struct Members<'a>(Vec<(String, &'a RawValue)>);
    impl<'de> serde::Deserialize<'de> for Members<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Members<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                    let mut out = Vec::new();
                    while let Some((k, v)) = m.next_entry::<String, &'de RawValue>()? {
                        out.push((k, v));
                    }
                    Ok(Members(out))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_str::<Members<'_>>(object).map(|m| m.0).map_err(|e| e.to_string())
}

/// The span of member `key` (its key, colon, value and one comma beside it) whose value is at
/// `start..end`.
fn member_span(text: &str, key: &str, start: usize, end: usize) -> Result<(usize, usize), String> {
    let quoted = serde_json::to_string(key).map_err(|e| e.to_string())?;
    let before = text[..start].trim_end().strip_suffix(':').map(str::trim_end);
    let key_at = before
        .filter(|b| b.ends_with(&quoted))
        .map(|b| b.len() - quoted.len())
        .ok_or_else(|| format!("`{key}` is written in a way this editor does not follow; edit the file by hand"))?;
    let lead = text[..key_at].trim_end();
    if let Some(comma) = lead.strip_suffix(',') {
        return Ok((comma.len(), end));
    }
    let after = &text[end..];
    let trail = after.trim_start();
    match trail.strip_prefix(',') {
        Some(rest) => Ok((key_at, end + (after.len() - rest.trim_start().len()))),
        None => Ok((key_at, end)),
    }
}

fn splice(text: &str, start: usize, end: usize, with: &str) -> String {
    format!("{}{with}{}", &text[..start], &text[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETAIL: &str = "[[pipeline]]\nid = \"retail\"\n\n[[pipeline.rule]]\nid = \"province\"\n\
        team = { territory = \"province\" }   # the province's team\nmember = \"fewest_open\"\n\n\
        [[pipeline.rule]]\nid = \"anyone\"\nmember = \"random\"\n";

    #[test]
    fn a_toml_block_takes_a_new_value_and_keeps_its_comment_and_every_other_line() {
        let out = set_block(RETAIL, false, "retail", "province", "team", Some("\"hanoi-retail\"")).expect("set");
        assert_eq!(
            out,
            RETAIL.replace("team = { territory = \"province\" }   #", "team = \"hanoi-retail\"   #"),
            "{out}"
        );
        let added = set_block(RETAIL, false, "retail", "anyone", "when_full", Some("\"fallback\"")).expect("add");
        assert_eq!(added, RETAIL.replace("member = \"random\"\n", "member = \"random\"\nwhen_full = \"fallback\"\n"));
        let removed = set_block(&added, false, "retail", "anyone", "when_full", None).expect("remove");
        assert_eq!(removed, RETAIL, "added then removed: as it was");
    }

    #[test]
    fn a_json_block_is_set_added_and_removed_in_the_files_own_layout() {
        let text = "{\"pipeline\": [{\"id\": \"corp\", \"rule\": [\n  {\"id\": \"a\", \"member\": \"random\"},\n  {\"id\": \"b\"}\n]}]}\n";
        let set = set_block(text, true, "corp", "a", "member", Some("\"fewest_open\"")).expect("set");
        assert_eq!(set, text.replace("\"member\": \"random\"", "\"member\": \"fewest_open\""));
        let added = set_block(text, true, "corp", "b", "team", Some("{\"territory\": \"province\"}")).expect("add");
        assert_eq!(added, text.replace("{\"id\": \"b\"}", "{\"id\": \"b\", \"team\": {\"territory\": \"province\"}}"));
        assert_eq!(set_block(&added, true, "corp", "b", "team", None).expect("remove"), text);
        let first = set_block(text, true, "corp", "a", "member", None).expect("remove");
        assert_eq!(first, text.replace("{\"id\": \"a\", \"member\": \"random\"}", "{\"id\": \"a\"}"));
    }

    #[test]
    fn what_is_not_a_value_or_not_a_block_is_refused_in_words() {
        let e = set_block(RETAIL, false, "retail", "province", "team", Some("{ territory = ")).expect_err("bad");
        assert!(e.starts_with("not a TOML value"), "{e}");
        let e = set_block(RETAIL, false, "retail", "province", "id", Some("\"x\"")).expect_err("not a block");
        assert!(e.contains("not a block of a rule"), "{e}");
        let e = set_block("{\"pipeline\": []}", true, "p", "r", "team", Some("nope")).expect_err("bad json");
        assert!(e.starts_with("not a JSON value"), "{e}");
        let e = set_block(RETAIL, false, "retail", "anyone", "team", None).expect_err("nothing to remove");
        assert_eq!(e, "rule `anyone` has no `team`");
    }
}
