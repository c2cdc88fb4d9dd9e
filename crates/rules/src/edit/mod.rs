//! Changing a rule file the way an admin would by hand: the console's edits applied to the file's
//! text, every untouched line, comment and blank kept as written (toml_edit for TOML; JSON by
//! splicing the values' own text). It must not judge the result (the caller compiles it with
//! `compile_texts_with`, as `check` would) nor read or write files.

use serde_json::value::RawValue;

mod block;
mod member;
mod rule;
pub use block::set_block;
pub use member::{set_member, MEMBER_KEYS};
pub use rule::{add_rule, remove_rule};

/// Move rule `rule` of pipeline `pipeline` to position `to` (0-based, clamped) among that
/// pipeline's rules in this file. Returns the new text; an unknown pipeline or rule is an error
/// in words.
pub fn move_rule(text: &str, json: bool, pipeline: &str, rule: &str, to: usize) -> Result<String, String> {
    if json {
        move_rule_json(text, pipeline, rule, to)
    } else {
        move_rule_toml(text, pipeline, rule, to)
    }
}

fn reorder<T>(items: &mut Vec<T>, from: usize, to: usize) {
    let to = to.min(items.len().saturating_sub(1));
    let item = items.remove(from);
    items.insert(to, item);
}

fn move_rule_toml(text: &str, pipeline: &str, rule: &str, to: usize) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| e.to_string())?;
    let pipelines = doc
        .get_mut("pipeline")
        .and_then(|p| p.as_array_of_tables_mut())
        .ok_or_else(|| "this file defines no [[pipeline]]".to_string())?;
    let p = pipelines
        .iter_mut()
        .find(|p| p.get("id").and_then(|i| i.as_str()) == Some(pipeline))
        .ok_or_else(|| format!("no pipeline `{pipeline}` in this file"))?;
    let rules = p
        .get_mut("rule")
        .and_then(|r| r.as_array_of_tables_mut())
        .ok_or_else(|| format!("pipeline `{pipeline}` has no [[pipeline.rule]] tables in this file"))?;
    let mut tables: Vec<toml_edit::Table> = rules.iter().cloned().collect();
    let from = tables
        .iter()
        .position(|t| t.get("id").and_then(|i| i.as_str()) == Some(rule))
        .ok_or_else(|| format!("no rule `{rule}` in pipeline `{pipeline}`"))?;
    // The document writes tables in the order of their positions: the moved rules take the
    // positions the rules had, in their new order.
    let mut positions: Vec<Option<isize>> = tables.iter().map(|t| t.position()).collect();
    positions.sort();
    reorder(&mut tables, from, to);
    rules.clear();
    for (mut t, at) in tables.into_iter().zip(positions) {
        if let Some(at) = at {
            t.set_position(Some(at));
        }
        rules.push(t);
    }
    Ok(doc.to_string())
}

fn move_rule_json(text: &str, pipeline: &str, rule: &str, to: usize) -> Result<String, String> {
    let rules = json_rules(text, pipeline)?;
    let from = rules
        .iter()
        .position(|r| json_id(r).as_deref() == Some(rule))
        .ok_or_else(|| format!("no rule `{rule}` in pipeline `{pipeline}`"))?;
    // Each rule's own text goes into a slot of the array as written: what lies between the
    // elements (commas, line breaks, indentation) stays where it was.
    let offset = |v: &RawValue| v.get().as_ptr() as usize - text.as_ptr() as usize;
    let slots: Vec<(usize, usize)> = rules.iter().map(|r| (offset(r), offset(r) + r.get().len())).collect();
    let mut order: Vec<&str> = rules.iter().map(|r| r.get()).collect();
    reorder(&mut order, from, to);
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for ((start, end), body) in slots.iter().zip(order) {
        out.push_str(&text[last..*start]);
        out.push_str(body);
        last = *end;
    }
    out.push_str(&text[last..]);
    Ok(out)
}

/// The rules of pipeline `pipeline` in a JSON rule file, each as its own text within `text`.
fn json_rules<'t>(text: &'t str, pipeline: &str) -> Result<Vec<&'t RawValue>, String> {
    let root: std::collections::BTreeMap<String, &RawValue> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let pipelines: Vec<&RawValue> = root
        .get("pipeline")
        .map(|p| serde_json::from_str(p.get()))
        .transpose()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "this file defines no pipeline".to_string())?;
    let p = pipelines
        .iter()
        .find(|p| json_id(p).as_deref() == Some(pipeline))
        .ok_or_else(|| format!("no pipeline `{pipeline}` in this file"))?;
    let m: std::collections::BTreeMap<String, &RawValue> = serde_json::from_str(p.get()).map_err(|e| e.to_string())?;
    m.get("rule")
        .map(|r| serde_json::from_str(r.get()))
        .transpose()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("pipeline `{pipeline}` has no rules in this file"))
}

/// The `id` of a JSON object, when it has a string one.
fn json_id(v: &RawValue) -> Option<String> {
    let m: std::collections::BTreeMap<String, &RawValue> = serde_json::from_str(v.get()).ok()?;
    serde_json::from_str(m.get("id")?.get()).ok()
}

/// The table of pipeline `pipeline` in a TOML rule file.
fn toml_pipeline<'d>(doc: &'d mut toml_edit::DocumentMut, pipeline: &str) -> Result<&'d mut toml_edit::Table, String> {
    doc.get_mut("pipeline")
        .and_then(|p| p.as_array_of_tables_mut())
        .ok_or_else(|| "this file defines no [[pipeline]]".to_string())?
        .iter_mut()
        .find(|p| p.get("id").and_then(|i| i.as_str()) == Some(pipeline))
        .ok_or_else(|| format!("no pipeline `{pipeline}` in this file"))
}

/// The rule table `rule` of pipeline `pipeline` in a TOML rule file.
fn toml_rule<'d>(
    doc: &'d mut toml_edit::DocumentMut,
    pipeline: &str,
    rule: &str,
) -> Result<&'d mut toml_edit::Table, String> {
    toml_pipeline(doc, pipeline)?
        .get_mut("rule")
        .and_then(|r| r.as_array_of_tables_mut())
        .ok_or_else(|| format!("pipeline `{pipeline}` has no [[pipeline.rule]] tables in this file"))?
        .iter_mut()
        .find(|t| t.get("id").and_then(|i| i.as_str()) == Some(rule))
        .ok_or_else(|| format!("no rule `{rule}` in pipeline `{pipeline}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETAIL: &str = "# Retail: first match wins.\n[[pipeline]]\nid = \"retail\"\n\n\
        # VIPs first\n[[pipeline.rule]]\nid = \"vip\"\nmember = \"round_robin\"   # fair\n\n\
        # then by province\n[[pipeline.rule]]\nid = \"province\"\nteam = { territory = \"province\" }\nmember = \"fewest_open\"\n\n\
        [[pipeline.rule]]\nid = \"anyone\"\nmember = \"random\"\n";

    #[test]
    fn a_rule_moved_in_toml_takes_its_comments_along_and_every_other_line_stays_as_written() {
        let moved = move_rule(RETAIL, false, "retail", "province", 0).expect("move");
        let ids: Vec<&str> = moved.lines().filter_map(|l| l.strip_prefix("id = ")).collect();
        assert_eq!(ids, ["\"retail\"", "\"province\"", "\"vip\"", "\"anyone\""], "{moved}");
        assert!(
            moved.contains("# then by province\n[[pipeline.rule]]\nid = \"province\""),
            "its comment moves with it:\n{moved}"
        );
        assert!(moved.contains("member = \"round_robin\"   # fair"), "untouched lines as written:\n{moved}");
        let mut a: Vec<&str> = moved.lines().collect();
        let mut b: Vec<&str> = RETAIL.lines().collect();
        a.sort();
        b.sort();
        assert_eq!(a, b, "the same lines, in another order");
        let back = move_rule(&moved, false, "retail", "province", 1).expect("back");
        assert_eq!(back, RETAIL, "moved back, byte for byte");
    }

    #[test]
    fn a_rule_moved_in_json_keeps_the_files_layout() {
        let text = "{\n  \"pipeline\": [\n    {\n      \"id\": \"corp\",\n      \"rule\": [\n        {\"id\": \"a\", \"member\": \"random\"},\n        {\"id\": \"b\", \"member\": \"fewest_open\"}\n      ]\n    }\n  ]\n}\n";
        let moved = move_rule(text, true, "corp", "b", 0).expect("move");
        assert_eq!(
            moved,
            text.replace(
                "{\"id\": \"a\", \"member\": \"random\"},\n        {\"id\": \"b\", \"member\": \"fewest_open\"}",
                "{\"id\": \"b\", \"member\": \"fewest_open\"},\n        {\"id\": \"a\", \"member\": \"random\"}"
            )
        );
    }

    #[test]
    fn a_rule_moved_in_the_example_rules_compiles_to_the_same_rules_in_the_new_order() {
        let (dir, fields) = crate::example_rules();
        let files = crate::read_files(&dir).expect("read");
        let ids = |e: &engine::Engine| -> Vec<String> {
            e.pipelines["retail"].rules.iter().map(|r| r.id.to_string()).collect()
        };
        let texts = |f: &[(std::path::PathBuf, String)]| -> Vec<(String, String)> {
            f.iter().map(|(p, t)| (p.display().to_string(), t.clone())).collect()
        };
        let compile = |t: &[(String, String)]| {
            let pairs: Vec<(&str, &str)> = t.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
            crate::compile_texts(&pairs, &fields).expect("compiles")
        };
        let before = ids(&compile(&texts(&files)));
        let mut edited = files.clone();
        let retail = edited.iter_mut().find(|(p, _)| p.ends_with("10-retail.toml")).expect("10-retail.toml");
        retail.1 = move_rule(&retail.1, false, "retail", &before[1], 0).expect("move");
        let after = ids(&compile(&texts(&edited)));
        let mut expected = before.clone();
        expected.swap(0, 1);
        assert_eq!(after, expected);
    }

    #[test]
    fn moving_what_is_not_there_says_so() {
        assert_eq!(
            move_rule(RETAIL, false, "wealth", "vip", 0).expect_err("no such pipeline"),
            "no pipeline `wealth` in this file"
        );
        assert_eq!(
            move_rule(RETAIL, false, "retail", "nope", 0).expect_err("no such rule"),
            "no rule `nope` in pipeline `retail`"
        );
    }
}
