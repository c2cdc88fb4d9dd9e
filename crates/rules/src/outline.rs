//! The rule files as an admin wrote them, for the console's blocks: each pipeline's rules in file
//! order, each rule's blocks (when, team, filters, member, when full, when away, turn) in the
//! file's own words, and where each is written. It must not judge meaning (`compile` does; the
//! console shows its problems on the blocks) nor change a file (`edit`).

use std::path::PathBuf;

use serde_json::value::RawValue;

use crate::text::line_col;
use crate::tree::{JsonNode, Node, TomlNode};

/// Every pipeline of a rule set, in the order its files and definitions come.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outline {
    pub pipelines: Vec<PipelineOutline>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PipelineOutline {
    pub id: String,
    pub file: PathBuf,
    pub line: usize,
    pub rules: Vec<RuleOutline>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuleOutline {
    pub id: String,
    pub description: String,
    pub line: usize,
    pub blocks: Vec<Block>,
}

/// One key of a rule, as written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Block {
    pub key: String,
    pub text: String,
    pub line: usize,
}

/// A rule's blocks, in the order a rule is read: which opportunities, which team, who is left
/// out, who is picked, and what happens when nobody can take it.
pub const BLOCKS: &[&str] = &["when", "team", "filters", "member", "when_full", "when_away", "turn"];

/// The words a block may be set to when it is one word (`member = "round_robin"`): the ways to
/// pick a member, what a rule does when everyone is full or away, whose turn; none for a block
/// that is a table or a list.
pub fn block_words(key: &str) -> &'static [&'static str] {
    use crate::format::{PickWord, TurnWord, WhenAwayWord, WhenFullWord};
    match key {
        "member" => PickWord::WORDS,
        "when_full" => WhenFullWord::WORDS,
        "when_away" => WhenAwayWord::WORDS,
        "turn" => TurnWord::WORDS,
        _ => &[],
    }
}

/// The outline of these files (name, text); a file that does not parse adds nothing (the
/// compiler says why).
pub fn outline(files: &[(PathBuf, String)]) -> Outline {
    let mut pipelines = Vec::new();
    for (path, text) in files {
        let json = path.extension().is_some_and(|e| e == "json");
        if json {
            if let Ok(raw) = serde_json::from_str::<&RawValue>(text) {
                pipelines.extend(of_root(&JsonNode { raw, origin: text }, path, text));
            }
        } else if let Ok(doc) = toml_edit::Document::parse(text.as_str()) {
            pipelines.extend(of_root(&TomlNode(doc.as_item().clone()), path, text));
        }
    }
    Outline { pipelines }
}

fn of_root<N: Node>(root: &N, path: &std::path::Path, text: &str) -> Vec<PipelineOutline> {
    let line = |at: Option<usize>| at.map_or(1, |a| line_col(text, a).0);
    let Some(pipelines) = root.get("pipeline").and_then(|p| p.items()) else { return Vec::new() };
    pipelines
        .iter()
        .map(|p| PipelineOutline {
            id: p.get("id").and_then(|i| i.text()).unwrap_or_default(),
            file: path.to_path_buf(),
            line: line(p.at()),
            rules: p.get("rule").and_then(|r| r.items()).unwrap_or_default().iter().map(|r| rule(r, &line)).collect(),
        })
        .collect()
}

fn rule<N: Node>(r: &N, line: &impl Fn(Option<usize>) -> usize) -> RuleOutline {
    let blocks = BLOCKS
        .iter()
        .filter_map(|k| r.get(k).map(|v| Block { key: k.to_string(), text: v.written(), line: line(v.at()) }))
        .collect();
    RuleOutline {
        id: r.get("id").and_then(|i| i.text()).unwrap_or_default(),
        description: r.get("description").and_then(|d| d.text()).unwrap_or_default(),
        line: line(r.at()),
        blocks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_block_offers_the_words_the_compiler_takes_and_a_table_block_none() {
        assert!(block_words("member").contains(&"fewest_open") && block_words("member").contains(&"best_kpi"));
        assert_eq!(block_words("when_away"), &["next_rule", "wait"]);
        assert!(block_words("team").is_empty() && block_words("when").is_empty());
    }

    fn files(list: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
        list.iter().map(|(n, t)| (PathBuf::from(n), t.to_string())).collect()
    }

    #[test]
    fn each_pipelines_rules_come_in_file_order_with_their_blocks_in_the_files_own_words() {
        let toml = "# retail first\n[[pipeline]]\nid = \"retail\"\n\n[[pipeline.rule]]\nid = \"vip\"\ndescription = \"VIPs to the wealth desk\"\n\
                    when = { field = \"segment\", eq = \"vip\" }   # the CRM's segment\nteam = { id = \"wealth\" }\nmember = \"round_robin\"\nwhen_full = \"next_rule\"\n\n\
                    [[pipeline.rule]]\nid = \"province\"\nteam = { territory = \"province\" }\nmember = \"fewest_open\"\n";
        let json = r#"{"pipeline": [{"id": "corporate", "rule": [{"id": "any", "member": {"pick": "random"}}]}]}"#;
        let o =
            outline(&files(&[("10-retail.toml", toml), ("20-corp.json", json), ("30-broken.toml", "[[pipeline]\n")]));
        let ids: Vec<(&str, Vec<&str>)> =
            o.pipelines.iter().map(|p| (p.id.as_str(), p.rules.iter().map(|r| r.id.as_str()).collect())).collect();
        assert_eq!(
            ids,
            [("retail", vec!["vip", "province"]), ("corporate", vec!["any"])],
            "a broken file adds nothing"
        );
        let vip = &o.pipelines[0].rules[0];
        assert_eq!((vip.line, vip.description.as_str()), (5, "VIPs to the wealth desk"));
        let blocks: Vec<(&str, &str, usize)> =
            vip.blocks.iter().map(|b| (b.key.as_str(), b.text.as_str(), b.line)).collect();
        assert_eq!(
            blocks,
            [
                ("when", "{ field = \"segment\", eq = \"vip\" }", 8),
                ("team", "{ id = \"wealth\" }", 9),
                ("member", "\"round_robin\"", 10),
                ("when_full", "\"next_rule\"", 11),
            ]
        );
        assert_eq!(o.pipelines[1].rules[0].blocks[0].text, r#"{"pick": "random"}"#, "JSON as written");
        assert_eq!(o.pipelines[1].file, PathBuf::from("20-corp.json"));
    }

    #[test]
    fn the_example_rules_outline_to_the_pipelines_and_rules_the_compiler_sees() {
        let (dir, fields) = crate::example_rules();
        let engine = crate::load_dir(&dir, &fields).expect("the example rules compile");
        let o = outline(&crate::read_files(&dir).expect("read"));
        assert_eq!(o.pipelines.len(), engine.pipelines.len(), "{o:?}");
        for p in &o.pipelines {
            let compiled: Vec<&str> = engine.pipelines[&p.id].rules.iter().map(|r| &*r.id).collect();
            let outlined: Vec<&str> = p.rules.iter().map(|r| r.id.as_str()).collect();
            assert_eq!(outlined, compiled, "pipeline {}", p.id);
            assert!(p.rules.iter().all(|r| r.blocks.iter().any(|b| b.key == "member")), "every rule picks a member");
        }
    }
}
