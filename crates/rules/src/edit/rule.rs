//! A rule added to a pipeline (at its end, with a first block to edit) or removed from it, in the
//! file's own text: TOML through toml_edit, JSON by splicing the array's own text, every other line
//! as written. It must not judge the result (the caller compiles it: an id used twice is the
//! compiler's to refuse).

use super::{json_id, json_rules, toml_pipeline, toml_rule};

/// The block a new rule starts with: something to pick the member by, to be edited.
const FIRST_MEMBER: &str = "round_robin";

/// Add rule `rule` at the end of pipeline `pipeline`'s rules in this file.
pub fn add_rule(text: &str, json: bool, pipeline: &str, rule: &str) -> Result<String, String> {
    if rule.trim().is_empty() || rule.chars().any(|c| c.is_control()) {
        return Err("a rule's id is a word or two, e.g. `vip-first`".into());
    }
    if json {
        add_json(text, pipeline, rule)
    } else {
        add_toml(text, pipeline, rule)
    }
}

/// Remove rule `rule` of pipeline `pipeline` from this file (its comments go with it).
pub fn remove_rule(text: &str, json: bool, pipeline: &str, rule: &str) -> Result<String, String> {
    if json {
        remove_json(text, pipeline, rule)
    } else {
        remove_toml(text, pipeline, rule)
    }
}

fn add_toml(text: &str, pipeline: &str, rule: &str) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| e.to_string())?;
    let p = toml_pipeline(&mut doc, pipeline)?;
    let mut t = toml_edit::Table::new();
    t.insert("id", toml_edit::value(rule));
    t.insert("member", toml_edit::value(FIRST_MEMBER));
    t.decor_mut().set_prefix("\n");
    // After the pipeline's last rule (or its last table), before whatever the file holds next.
    let at = p
        .get("rule")
        .and_then(|r| r.as_array_of_tables())
        .and_then(|r| r.iter().filter_map(|t| t.position()).max())
        .or_else(|| p.position());
    if let Some(at) = at {
        shift_after(&mut doc, at);
        t.set_position(Some(at + 1));
    }
    let p = toml_pipeline(&mut doc, pipeline)?;
    match p.get_mut("rule").and_then(|r| r.as_array_of_tables_mut()) {
        Some(rules) => rules.push(t),
        None => {
            let mut rules = toml_edit::ArrayOfTables::new();
            rules.push(t);
            p.insert("rule", toml_edit::Item::ArrayOfTables(rules));
        }
    }
    Ok(doc.to_string())
}

/// Every table of the document written after position `at` moves one later, to make room.
fn shift_after(doc: &mut toml_edit::DocumentMut, at: isize) {
    fn walk(t: &mut toml_edit::Table, at: isize) {
        if let Some(p) = t.position().filter(|p| *p > at) {
            t.set_position(Some(p + 1));
        }
        for (_, item) in t.iter_mut() {
            match item {
                toml_edit::Item::Table(t) => walk(t, at),
                toml_edit::Item::ArrayOfTables(a) => a.iter_mut().for_each(|t| walk(t, at)),
                _ => {}
            }
        }
    }
    walk(doc.as_table_mut(), at);
}

fn remove_toml(text: &str, pipeline: &str, rule: &str) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| e.to_string())?;
    toml_rule(&mut doc, pipeline, rule)?;
    let p = toml_pipeline(&mut doc, pipeline)?;
    if let Some(rules) = p.get_mut("rule").and_then(|r| r.as_array_of_tables_mut()) {
        rules.retain(|t| t.get("id").and_then(|i| i.as_str()) != Some(rule));
        if rules.is_empty() {
            p.remove("rule");
        }
    }
    Ok(doc.to_string())
}

fn add_json(text: &str, pipeline: &str, rule: &str) -> Result<String, String> {
    let rules = json_rules(text, pipeline)?;
    let offset = |v: &str| v.as_ptr() as usize - text.as_ptr() as usize;
    let new = format!(
        "{{\"id\": {}, \"member\": {}}}",
        serde_json::to_string(rule).map_err(|e| e.to_string())?,
        serde_json::to_string(FIRST_MEMBER).map_err(|e| e.to_string())?
    );
    let Some(last) = rules.last() else {
        return Err(format!("pipeline `{pipeline}` has no rules to add after: add the first by hand"));
    };
    let end = offset(last.get()) + last.get().len();
    // The layout between two rules (a comma, a line break, the indent), or a comma and a space.
    let between = match rules.len() {
        1 => ", ".to_string(),
        n => text[offset(rules[n - 2].get()) + rules[n - 2].get().len()..offset(last.get())].to_string(),
    };
    Ok(format!("{}{between}{new}{}", &text[..end], &text[end..]))
}

fn remove_json(text: &str, pipeline: &str, rule: &str) -> Result<String, String> {
    let rules = json_rules(text, pipeline)?;
    let at = rules
        .iter()
        .position(|r| json_id(r).as_deref() == Some(rule))
        .ok_or_else(|| format!("no rule `{rule}` in pipeline `{pipeline}`"))?;
    let offset = |v: &str| v.as_ptr() as usize - text.as_ptr() as usize;
    let span = |i: usize| (offset(rules[i].get()), offset(rules[i].get()) + rules[i].get().len());
    let (start, end) = match (at, rules.len()) {
        (_, 1) => span(at),
        (i, n) if i + 1 < n => (span(i).0, span(i + 1).0),
        (i, _) => (span(i - 1).1, span(i).1),
    };
    Ok(format!("{}{}", &text[..start], &text[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETAIL: &str = "[[pipeline]]\nid = \"retail\"\n\n# first\n[[pipeline.rule]]\nid = \"a\"\nmember = \"random\"\n\n\
        # second\n[[pipeline.rule]]\nid = \"b\"\nmember = \"fewest_open\"\n\n[[test]]\nname = \"t\"\npipeline = \"retail\"\n";

    #[test]
    fn a_rule_added_to_toml_comes_after_the_pipelines_rules_and_removing_it_gives_the_file_back() {
        let added = add_rule(RETAIL, false, "retail", "c").expect("added");
        let (b, c, test) = (added.find("id = \"b\""), added.find("id = \"c\""), added.find("[[test]]"));
        assert!(b < c && c < test, "after the last rule, before the file's tests:\n{added}");
        assert!(added.contains("[[pipeline.rule]]\nid = \"c\"\nmember = \"round_robin\"\n"), "{added}");
        let removed = remove_rule(&added, false, "retail", "c").expect("removed");
        assert_eq!(removed, RETAIL);
        let without_a = remove_rule(RETAIL, false, "retail", "a").expect("removed");
        assert!(
            !without_a.contains("id = \"a\"") && !without_a.contains("# first"),
            "its comment goes too:\n{without_a}"
        );
        assert!(without_a.contains("# second\n[[pipeline.rule]]\nid = \"b\""), "{without_a}");
    }

    #[test]
    fn a_rule_added_to_json_takes_the_layout_between_rules_and_removing_it_gives_the_file_back() {
        let text = "{\"pipeline\": [{\"id\": \"corp\", \"rule\": [\n    {\"id\": \"a\", \"member\": \"random\"},\n    {\"id\": \"b\", \"member\": \"random\"}\n]}]}\n";
        let added = add_rule(text, true, "corp", "c").expect("added");
        assert_eq!(
            added,
            text.replace(
                "\"b\", \"member\": \"random\"}\n",
                "\"b\", \"member\": \"random\"},\n    {\"id\": \"c\", \"member\": \"round_robin\"}\n"
            )
        );
        assert_eq!(remove_rule(&added, true, "corp", "c").expect("removed"), text);
        let without_a = remove_rule(text, true, "corp", "a").expect("removed");
        assert_eq!(without_a, text.replace("{\"id\": \"a\", \"member\": \"random\"},\n    ", ""));
    }

    #[test]
    fn removing_or_adding_where_there_is_nothing_says_so() {
        assert_eq!(remove_rule(RETAIL, false, "retail", "z").expect_err("none"), "no rule `z` in pipeline `retail`");
        assert_eq!(add_rule(RETAIL, false, "wealth", "z").expect_err("none"), "no pipeline `wealth` in this file");
        assert!(add_rule(RETAIL, false, "retail", " ").is_err(), "an id is needed");
    }
}
