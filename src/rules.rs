//! Rule files (TOML or JSON, the same structure): parse, check, compile into an [`Engine`].
//!
//! Owns the file format (the serde structs stay in here) and every message an admin sees about a
//! rule file, as `file:line:column: key: message`. All the files of a directory form one rule set;
//! ids are unique across files. Nothing read here ever reaches SQL: rules refer to fields by the
//! names the daemon config gives them.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::engine::{self, Engine, Pick, TeamStage};

/// Every problem of a rule set, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct RulesError {
    pub problems: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    settings: Option<RawSettings>,
    #[serde(default)]
    member: Vec<RawMember>,
    #[serde(default)]
    team: Vec<RawTeam>,
    #[serde(default)]
    pipeline: Vec<RawPipeline>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    fallback_owner: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    id: String,
    #[serde(default)]
    name: String,
    max_open: Option<u32>,
    #[serde(default)]
    paused: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeam {
    id: String,
    #[serde(default)]
    name: String,
    crm_id: Option<String>,
    #[serde(default)]
    pipelines: Vec<String>,
    #[serde(default)]
    territories: Vec<String>,
    members: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    id: String,
    fallback_owner: Option<String>,
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    #[serde(default)]
    description: String,
    team: Option<RawTeamStage>,
    member: RawPick,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeamStage {
    id: Option<String>,
    territory_of: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawPick {
    FewestOpen,
}

/// One file's text, kept for messages.
struct Source {
    path: PathBuf,
    text: String,
}

impl Source {
    /// `file:line:column` of the first occurrence of `needle` (a quoted id), else `file`.
    fn locate(&self, needle: &str) -> String {
        let quoted = format!("\"{needle}\"");
        match self.text.find(&quoted) {
            Some(off) => {
                let before = &self.text[..off];
                let line = before.matches('\n').count() + 1;
                let col = before.rfind('\n').map(|i| off - i).unwrap_or(off + 1);
                format!("{}:{line}:{col}", self.path.display())
            }
            None => self.path.display().to_string(),
        }
    }
}

/// Load every `*.toml` and `*.json` file of `dir` (in name order) as one rule set, compiled against
/// the field names the daemon config maps (in their fetch order).
pub fn load_dir(dir: &Path, fields: &[String]) -> Result<Engine, RulesError> {
    let entries = std::fs::read_dir(dir).map_err(|e| RulesError {
        problems: vec![format!("{}: cannot read the rules directory: {e}", dir.display())],
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("toml") | Some("json")))
        .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
        .collect();
    paths.sort();
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push(Source { path, text }),
            Err(e) => problems.push(format!("{}: cannot read: {e}", path.display())),
        }
    }
    if files.is_empty() && problems.is_empty() {
        problems.push(format!("{}: no .toml or .json rule files", dir.display()));
    }
    if !problems.is_empty() {
        return Err(RulesError { problems });
    }
    compile_sources(files, fields)
}

/// Compile rule files given as (name, text) pairs; the name's extension picks the format.
pub fn compile_texts(files: &[(&str, &str)], fields: &[String]) -> Result<Engine, RulesError> {
    compile_sources(
        files.iter().map(|(p, t)| Source { path: PathBuf::from(p), text: (*t).to_string() }).collect(),
        fields,
    )
}

fn parse(src: &Source) -> Result<RawFile, String> {
    let file = src.path.display();
    if src.path.extension().and_then(|e| e.to_str()) == Some("json") {
        serde_json::from_str(&src.text).map_err(|e| format!("{file}:{}:{}: {e}", e.line(), e.column()))
    } else {
        toml::from_str(&src.text).map_err(|e| {
            let off = e.span().map(|s| s.start).unwrap_or(0);
            let before = &src.text[..off.min(src.text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.rfind('\n').map(|i| off - i).unwrap_or(off + 1);
            format!("{file}:{line}:{col}: {}", e.message().trim())
        })
    }
}

fn compile_sources(files: Vec<Source>, fields: &[String]) -> Result<Engine, RulesError> {
    let mut problems = Vec::new();
    let mut parsed = Vec::new();
    let mut hasher = Sha256::new();
    for (i, src) in files.iter().enumerate() {
        hasher.update(src.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        hasher.update([0]);
        hasher.update(&src.text);
        hasher.update([0]);
        match parse(src) {
            Ok(f) => parsed.push((i, f)),
            Err(e) => problems.push(e),
        }
    }
    if !problems.is_empty() {
        return Err(RulesError { problems });
    }
    let version: String = hasher.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect();

    let field_index: HashMap<&str, usize> = fields.iter().enumerate().map(|(i, f)| (f.as_str(), i)).collect();
    let mut global_fallback: Option<(String, usize)> = None;
    let mut members = Vec::new();
    let mut member_at: HashMap<String, usize> = HashMap::new(); // id -> file
    let mut raw_teams = Vec::new();
    let mut raw_pipelines = Vec::new();
    let mut team_at: HashMap<String, usize> = HashMap::new();
    let mut pipeline_at: HashMap<String, usize> = HashMap::new();

    for (fi, f) in parsed {
        let src = &files[fi];
        if let Some(s) = f.settings {
            if let Some(o) = s.fallback_owner {
                if let Some((_, other)) = &global_fallback {
                    problems.push(format!(
                        "{}: settings.fallback_owner: set again (also in {}); keep one",
                        src.locate(&o),
                        files[*other].path.display()
                    ));
                }
                global_fallback = Some((o, fi));
            }
        }
        for (mi, m) in f.member.into_iter().enumerate() {
            let key = format!("member[{mi}]");
            if m.id.trim().is_empty() {
                problems.push(format!("{}: {key}.id: is empty; use the CRM user id", src.path.display()));
                continue;
            }
            if let Some(other) = member_at.insert(m.id.clone(), fi) {
                problems.push(format!(
                    "{}: {key}.id: member `{}` is defined twice (also in {})",
                    src.locate(&m.id),
                    m.id,
                    files[other].path.display()
                ));
                continue;
            }
            members.push(engine::Member {
                name: if m.name.is_empty() { m.id.clone() } else { m.name },
                id: m.id,
                max_open: m.max_open,
                paused: m.paused,
            });
        }
        for (ti, t) in f.team.into_iter().enumerate() {
            if let Some(other) = team_at.insert(t.id.clone(), fi) {
                problems.push(format!(
                    "{}: team[{ti}].id: team `{}` is defined twice (also in {})",
                    src.locate(&t.id),
                    t.id,
                    files[other].path.display()
                ));
                continue;
            }
            raw_teams.push((fi, ti, t));
        }
        for (pi, p) in f.pipeline.into_iter().enumerate() {
            if let Some(other) = pipeline_at.insert(p.id.clone(), fi) {
                problems.push(format!(
                    "{}: pipeline[{pi}].id: pipeline `{}` is defined twice (also in {})",
                    src.locate(&p.id),
                    p.id,
                    files[other].path.display()
                ));
                continue;
            }
            raw_pipelines.push((fi, pi, p));
        }
    }

    let member_index: HashMap<&str, usize> = members.iter().enumerate().map(|(i, m)| (m.id.as_str(), i)).collect();
    let mut teams = Vec::new();
    let mut team_pipelines = Vec::new();
    for (fi, ti, t) in &raw_teams {
        let src = &files[*fi];
        if t.members.is_empty() {
            problems.push(format!(
                "{}: team[{ti}].members: team `{}` has no members; list CRM user ids defined as [[member]]",
                src.locate(&t.id),
                t.id
            ));
        }
        let mut ms = Vec::new();
        for (k, m) in t.members.iter().enumerate() {
            match member_index.get(m.as_str()) {
                Some(i) => ms.push(*i),
                None => problems.push(format!(
                    "{}: team[{ti}].members[{k}]: unknown member `{m}`; define it with [[member]] id = \"{m}\"",
                    src.locate(m)
                )),
            }
        }
        teams.push(engine::Team {
            id: t.id.clone(),
            name: if t.name.is_empty() { t.id.clone() } else { t.name.clone() },
            crm_id: t.crm_id.clone(),
            members: ms,
            territories: t.territories.iter().cloned().collect(),
        });
        team_pipelines.push(t.pipelines.clone());
        for (k, p) in t.pipelines.iter().enumerate() {
            if !pipeline_at.contains_key(p) {
                problems.push(format!("{}: team[{ti}].pipelines[{k}]: unknown pipeline `{p}`", src.locate(p)));
            }
        }
    }
    let team_index: HashMap<&str, usize> = teams.iter().enumerate().map(|(i, t)| (t.id.as_str(), i)).collect();

    let mut pipelines = HashMap::new();
    for (fi, pi, p) in raw_pipelines {
        let src = &files[fi];
        let pteams: Vec<usize> =
            team_pipelines.iter().enumerate().filter(|(_, ps)| ps.contains(&p.id)).map(|(i, _)| i).collect();
        let mut rules = Vec::new();
        let mut rule_ids = HashSet::new();
        for (ri, r) in p.rule.into_iter().enumerate() {
            let key = format!("pipeline[{pi}].rule[{ri}]");
            if !rule_ids.insert(r.id.clone()) {
                problems.push(format!(
                    "{}: {key}.id: rule `{}` appears twice in pipeline `{}`",
                    src.locate(&r.id),
                    r.id,
                    p.id
                ));
            }
            let _ = &r.description;
            let team = match r.team {
                None => {
                    if pteams.is_empty() {
                        problems.push(format!(
                            "{}: {key}: no team takes part in pipeline `{}`; add it to a team's `pipelines`",
                            src.locate(&r.id),
                            p.id
                        ));
                    }
                    TeamStage::AllPipelineTeams
                }
                Some(RawTeamStage { id: Some(t), territory_of: None }) => match team_index.get(t.as_str()) {
                    Some(i) => TeamStage::Fixed(*i),
                    None => {
                        problems.push(format!("{}: {key}.team.id: unknown team `{t}`", src.locate(&t)));
                        continue;
                    }
                },
                Some(RawTeamStage { id: None, territory_of: Some(f) }) => match field_index.get(f.as_str()) {
                    Some(i) => TeamStage::TerritoryOf { field: *i, field_name: f.clone() },
                    None => {
                        let known = if fields.is_empty() { "none are mapped".to_string() } else { fields.join(", ") };
                        problems.push(format!("{}: {key}.team.territory_of: unknown field `{f}`; fields mapped in the daemon config: {known}", src.locate(&f)));
                        continue;
                    }
                },
                Some(_) => {
                    problems
                        .push(format!("{}: {key}.team: give exactly one of `id` or `territory_of`", src.locate(&r.id)));
                    continue;
                }
            };
            let pick = match r.member {
                RawPick::FewestOpen => Pick::FewestOpen,
            };
            rules.push(engine::Rule { id: r.id, team, pick });
        }
        pipelines.insert(
            p.id.clone(),
            engine::Pipeline { id: p.id, rules, fallback_owner: p.fallback_owner, teams: pteams },
        );
    }

    if !problems.is_empty() {
        return Err(RulesError { problems });
    }
    Ok(Engine { version, members, teams, pipelines, global_fallback: global_fallback.map(|(o, _)| o) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Opportunity, Outcome};

    const RULES: &str = r#"
[settings]
fallback_owner = "900"

[[member]]
id = "101"
max_open = 2
[[member]]
id = "102"
[[member]]
id = "201"
paused = true

[[team]]
id = "hanoi"
crm_id = "11"
pipelines = ["retail"]
territories = ["HN"]
members = ["101", "102"]

[[team]]
id = "saigon"
pipelines = ["retail"]
territories = ["HCM"]
members = ["201"]

[[pipeline]]
id = "retail"
[[pipeline.rule]]
id = "by-province"
team = { territory_of = "province" }
member = "fewest_open"
"#;

    fn engine() -> Engine {
        compile_texts(&[("r.toml", RULES)], &["province".to_string()]).expect("rules compile")
    }

    #[test]
    fn an_opportunity_from_hanoi_goes_to_the_least_loaded_hanoi_member() {
        let e = engine();
        let fields = vec![Some("HN".to_string())];
        let opp = Opportunity { id: "1", pipeline: Some("retail"), fields: &fields };
        let loads: HashMap<String, i64> = [("101".to_string(), 1), ("102".to_string(), 0)].into();
        let d = e.route(&opp, &loads);
        assert_eq!(d.owner.as_deref(), Some("102"));
        assert_eq!(d.team_crm_id.as_deref(), Some("11"));
        assert_eq!(d.outcome, Outcome::Rule);
    }

    #[test]
    fn a_member_at_cap_is_skipped_and_paused_members_fall_back() {
        let e = engine();
        let hn = vec![Some("HN".to_string())];
        let loads: HashMap<String, i64> = [("101".to_string(), 2), ("102".to_string(), 5)].into();
        let d = e.route(&Opportunity { id: "1", pipeline: Some("retail"), fields: &hn }, &loads);
        assert_eq!(d.owner.as_deref(), Some("102"), "101 is at its cap of 2");
        let hcm = vec![Some("HCM".to_string())];
        let d = e.route(&Opportunity { id: "2", pipeline: Some("retail"), fields: &hcm }, &loads);
        assert_eq!((d.owner.as_deref(), d.outcome), (Some("900"), Outcome::Fallback));
        assert!(d.explanation.to_string().contains("paused"), "{}", d.explanation);
    }

    #[test]
    fn unknown_references_are_reported_with_file_line_and_key() {
        let bad =
            RULES.replace("territory_of = \"province\"", "territory_of = \"provnce\"").replace("\"102\"]", "\"103\"]");
        let err = compile_texts(&[("r.toml", &bad)], &["province".to_string()]).expect_err("bad rules");
        let s = err.to_string();
        assert!(s.contains("r.toml:19:19:") && s.contains("team[0].members[1]: unknown member `103`"), "{s}");
        assert!(s.contains("pipeline[0].rule[0].team.territory_of: unknown field `provnce`"), "{s}");
    }

    #[test]
    fn json_files_use_the_same_structure() {
        let json = r#"{"member":[{"id":"1"}],"team":[{"id":"t","pipelines":["p"],"members":["1"]}],
                      "pipeline":[{"id":"p","rule":[{"id":"r","member":"fewest_open"}]}]}"#;
        let e = compile_texts(&[("a.json", json)], &[]).expect("json rules");
        let d = e.route(&Opportunity { id: "x", pipeline: Some("p"), fields: &[] }, &HashMap::new());
        assert_eq!(d.owner.as_deref(), Some("1"));
        let err = compile_texts(&[("a.json", "{\"member\": [}")], &[]).expect_err("bad json");
        assert!(err.to_string().starts_with("a.json:1:"), "{err}");
    }
}
