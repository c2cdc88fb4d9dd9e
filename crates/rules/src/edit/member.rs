//! A member's pause and open cap in the rule files, as an admin would set them by hand: a key of
//! the member's `[[member]]` table given a value or removed (its comment kept), or, for a member
//! the files do not list yet (the CRM's), a new `[[member]]` at the end of the file. It must not
//! touch a key but these, nor judge the result (the caller compiles it).

use serde_json::value::RawValue;

/// The member keys the console sets.
pub const MEMBER_KEYS: &[&str] = &["paused", "max_open"];

/// Set `key` of member `member` to `value` (TOML or JSON text, as the file is written), or remove
/// it; a member the file does not list is added with that key alone (`add` must say so: only the
/// file the caller chose for new members gets one). Returns the new text.
pub fn set_member(
    text: &str,
    json: bool,
    member: &str,
    key: &str,
    value: Option<&str>,
    add: bool,
) -> Result<String, String> {
    if !MEMBER_KEYS.contains(&key) {
        return Err(format!("`{key}` is not a member key the console sets ({})", MEMBER_KEYS.join(", ")));
    }
    if json {
        set_json(text, member, key, value, add)
    } else {
        set_toml(text, member, key, value, add)
    }
}

fn set_toml(text: &str, member: &str, key: &str, value: Option<&str>, add: bool) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| e.to_string())?;
    let found = doc
        .get_mut("member")
        .and_then(|m| m.as_array_of_tables_mut())
        .and_then(|ms| ms.iter_mut().find(|t| t.get("id").and_then(|i| i.as_str()) == Some(member)));
    let new = value.map(super::block::toml_value).transpose()?;
    match (found, new) {
        (Some(t), Some(mut v)) => match t.get_mut(key) {
            Some(toml_edit::Item::Value(old)) => {
                *v.decor_mut() = old.decor().clone();
                *old = v;
            }
            _ => {
                v.decor_mut().set_prefix(" ");
                t.insert(key, toml_edit::Item::Value(v));
            }
        },
        (Some(t), None) => {
            t.remove(key);
        }
        (None, None) => {}
        (None, Some(v)) if add => {
            let mut t = toml_edit::Table::new();
            t.insert("id", toml_edit::value(member));
            t.insert(key, toml_edit::Item::Value(v));
            if doc.get("member").is_none() {
                doc.insert("member", toml_edit::Item::ArrayOfTables(toml_edit::ArrayOfTables::new()));
            }
            let ms = doc
                .get_mut("member")
                .and_then(|m| m.as_array_of_tables_mut())
                .ok_or_else(|| "`member` in this file is not a list of [[member]] tables".to_string())?;
            ms.push(t);
        }
        (None, Some(_)) => return Err(format!("no member `{member}` in this file")),
    }
    Ok(doc.to_string())
}

fn set_json(text: &str, member: &str, key: &str, value: Option<&str>, add: bool) -> Result<String, String> {
    if let Some(v) = value {
        serde_json::from_str::<&RawValue>(v.trim()).map_err(|e| format!("not a JSON value: {e}"))?;
    }
    let root: std::collections::BTreeMap<String, &RawValue> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let members: Vec<&RawValue> = match root.get("member") {
        Some(m) => serde_json::from_str(m.get()).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let Some(m) = members.iter().find(|m| super::json_id(m).as_deref() == Some(member)) else {
        return match (value, add) {
            (None, _) => Ok(text.to_string()),
            _ => Err(format!("no member `{member}` in this JSON file: add it by hand, or to a TOML rule file")),
        };
    };
    // The member's object is a rule-like object: the block editor's splicing applies to it.
    super::block::set_json_object(text, m, key, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEOPLE: &str = "[[member]]\nid = \"101\"\nname = \"An\"\nmax_open = 400   # busy\n\n[[member]]\nid = \"102\"\nname = \"Bình\"\n";

    #[test]
    fn a_pause_and_a_cap_are_set_and_lifted_in_the_members_own_table() {
        let paused = set_member(PEOPLE, false, "102", "paused", Some("true"), false).expect("pause");
        assert_eq!(paused, format!("{PEOPLE}paused = true\n"));
        assert_eq!(set_member(&paused, false, "102", "paused", None, false).expect("unpause"), PEOPLE);
        let cap = set_member(PEOPLE, false, "101", "max_open", Some("25"), false).expect("cap");
        assert_eq!(cap, PEOPLE.replace("max_open = 400   # busy", "max_open = 25   # busy"));
    }

    #[test]
    fn a_member_only_the_crm_lists_is_added_where_asked_and_refused_elsewhere() {
        let added = set_member(PEOPLE, false, "999", "paused", Some("true"), true).expect("added");
        assert_eq!(added, format!("{PEOPLE}\n[[member]]\nid = \"999\"\npaused = true\n"));
        let e = set_member(PEOPLE, false, "999", "paused", Some("true"), false).expect_err("not here");
        assert_eq!(e, "no member `999` in this file");
        assert_eq!(set_member(PEOPLE, false, "999", "paused", None, false).expect("nothing to lift"), PEOPLE);
        assert!(set_member(PEOPLE, false, "101", "name", Some("\"x\""), false).is_err(), "only pause and cap");
    }

    #[test]
    fn a_json_member_is_paused_in_place() {
        let text = "{\"member\": [{\"id\": \"7\", \"name\": \"Lan\"}]}\n";
        let out = set_member(text, true, "7", "paused", Some("true"), false).expect("pause");
        assert_eq!(out, "{\"member\": [{\"id\": \"7\", \"name\": \"Lan\", \"paused\": true}]}\n");
        assert_eq!(set_member(&out, true, "7", "paused", None, false).expect("lift"), text);
    }
}
