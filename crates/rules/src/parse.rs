//! Reading one rule file into its serde structs, with every problem of the file at once: a syntax
//! error stops the file (nothing after it can be trusted), but a wrong type or an unknown key is
//! looked for in every definition, each reported as `file:line:column: key.path: message`
//! (`member[3].max_open: expected a non-negative integer, found the string "five"`).
//!
//! Owns where a problem is (its key path and position) and how a serde message reads to an admin.
//! It must not check meaning (ids, references, values: that is compilation) nor read files.

use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::value::RawValue;

use super::format::{
    RawFile, RawMember, RawPipeline, RawRule, RawSchedule, RawSettings, RawTagRule, RawTeam, RawTerritory, RawTest,
};
use super::locate::Source;
use super::tree::{offset_of, JsonNode, Node, Problem, TomlNode};

/// The keys a rule file may have at its top level (a test checks them against [`RawFile`]).
pub(super) const TOP_LEVEL: &[&str] =
    &["$schema", "settings", "territory", "schedule", "member", "team", "tag", "pipeline", "test"];

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

#[cfg(test)]
mod tests {
    use super::*;

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
