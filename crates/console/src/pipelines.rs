//! The pipelines page: each pipeline's rules in order, each rule drawn as its blocks in the file's
//! own words, every problem the compiler finds shown on the block (or rule) it is written in, and,
//! for an editor, the controls that change the order (buttons a keyboard reaches, and drag and
//! drop through the script) and the draft's save and discard. It must not read or write anything:
//! it is given the outline, the problems and the draft.

use std::path::PathBuf;

use maud::{html, Markup};
use rules::outline::{Outline, PipelineOutline, RuleOutline};

/// A compiler's problem placed in its file: the line it names and its words after the position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: Option<PathBuf>,
    pub line: usize,
    pub text: String,
}

/// Read `file:line:column: message` lines against the files the draft holds (a path may hold a
/// colon); a line that names none of them is kept whole, placed nowhere.
pub fn place(problems: &[String], files: &[(PathBuf, String)]) -> Vec<Problem> {
    problems
        .iter()
        .map(|p| {
            files
                .iter()
                .find_map(|(path, _)| {
                    let rest = p.strip_prefix(path.to_str()?)?.strip_prefix(':')?;
                    let (line, rest) = rest.split_once(':')?;
                    let rest = rest
                        .split_once(':')
                        .map_or(rest, |(col, r)| if col.parse::<usize>().is_ok() { r } else { rest });
                    Some(Problem { file: Some(path.clone()), line: line.parse().ok()?, text: rest.trim().to_string() })
                })
                .unwrap_or(Problem { file: None, line: 0, text: p.clone() })
        })
        .collect()
}

/// What the page shows about the draft.
pub struct DraftView<'a> {
    pub changes: &'a [String],
    /// The hash the draft's rules will have in force, when they compile.
    pub hash: Option<&'a str>,
}

/// What the page is given.
pub struct View<'a> {
    pub outline: &'a Outline,
    pub problems: &'a [Problem],
    /// The editor's draft, when they have one.
    pub draft: Option<DraftView<'a>>,
    /// The session's CSRF token, for an editor; none for a viewer (no controls are drawn).
    pub csrf: Option<&'a str>,
    /// How the rules were checked (with the CRM's directory, or why not).
    pub checked: &'a str,
    /// The names a block may use (`names`), when the rules compile.
    pub names: Option<Markup>,
    /// The teams' ids, for a team block's choices.
    pub teams: Vec<String>,
}

/// The page's section.
pub fn section(v: &View<'_>) -> Markup {
    let placed: Vec<&Problem> = v.problems.iter().filter(|p| rule_of(v.outline, p).is_some()).collect();
    let elsewhere: Vec<&Problem> = v.problems.iter().filter(|p| !placed.contains(p)).collect();
    html! {
        section id="pipelines" {
            (draft_bar(v))
            p.checked { (v.checked) }
            @if let Some(n) = &v.names { (n) }
            @if !elsewhere.is_empty() {
                div.refusal role="alert" {
                    p { "Problems outside any rule:" }
                    ul { @for p in &elsewhere { li { code { (where_of(p)) (p.text) } } } }
                }
            }
            @for p in &v.outline.pipelines { (pipeline(v, p)) }
        }
    }
}

fn where_of(p: &Problem) -> String {
    match &p.file {
        Some(f) => format!("{}:{}: ", f.file_name().and_then(|n| n.to_str()).unwrap_or(""), p.line),
        None => String::new(),
    }
}

fn draft_bar(v: &View<'_>) -> Markup {
    let Some(d) = &v.draft else {
        return html! { @if v.csrf.is_some() { p.draft { "No draft: the rules below are the files on disk. A change begins one; nothing is saved until you save." } } };
    };
    html! {
        div.draft role="region" aria-label="Your draft" {
            p { strong { "Your draft: " (d.changes.len()) " change(s), not saved." } }
            ul.changes { @for c in d.changes { li { (c) } } }
            @if d.hash.is_some() { p { a href="/try" { "Try the draft on the last days' opportunities" } " before you save it." } }
            @if let Some(csrf) = v.csrf {
                form.inline method="post" action="/draft/save" {
                    input type="hidden" name="csrf" value=(csrf);
                    @if d.hash.is_some() {
                        button type="submit" { "Save" }
                    } @else {
                        button type="submit" disabled title="The draft has problems: fix them first" { "Save" }
                    }
                }
                form.inline method="post" action="/draft/discard" {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { "Discard" }
                }
            }
            @if d.hash.is_none() { p.problem role="alert" { "The draft does not compile: see the problems on the blocks below. It cannot be saved as it is." } }
        }
    }
}

fn pipeline(v: &View<'_>, p: &PipelineOutline) -> Markup {
    let file = p.file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    html! {
        article.pipeline id=(format!("pipeline-{}", p.id)) {
            h2 { "Pipeline " code { (p.id) } }
            p.where { (file) ":" (p.line) }
            ol.rules data-pipeline=(p.id) {
                @for (i, r) in p.rules.iter().enumerate() { (rule(v, p, i, r)) }
            }
            @if let Some(csrf) = v.csrf {
                form.inline.add-rule method="post" action="/pipelines/rule" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="pipeline" value=(p.id);
                    input type="hidden" name="action" value="add";
                    label { "New rule's id " input name="rule" required pattern="[A-Za-z0-9_.-]+" placeholder="e.g. vip-first"; }
                    button type="submit" { "Add a rule at the end" }
                }
            }
        }
    }
}

fn rule(v: &View<'_>, p: &PipelineOutline, i: usize, r: &RuleOutline) -> Markup {
    let mine: Vec<&Problem> = v
        .problems
        .iter()
        .filter(|q| rule_of(v.outline, q).is_some_and(|(pp, rr)| pp.id == p.id && rr.id == r.id))
        .collect();
    let on_rule: Vec<&&Problem> = mine.iter().filter(|q| block_of(r, q).is_none()).collect();
    html! {
        li.rule id=(format!("rule-{}-{}", p.id, r.id)) data-rule=(r.id) data-index=(i) draggable=[v.csrf.map(|_| "true")] {
            header {
                span.position { (i + 1) "." }
                h3 { code { (r.id) } }
                @if !r.description.is_empty() { span.description { (r.description) } }
                @if let Some(csrf) = v.csrf { (moves(csrf, p, i, r)) }
            }
            @for q in &on_rule { p.problem role="alert" { (q.text) } }
            div.blocks {
                @for b in &r.blocks {
                    div class=(format!("block block-{}", b.key)) {
                        span.key { (label(&b.key)) }
                        pre { code { (b.text) } }
                        @for q in mine.iter().filter(|q| block_of(r, q).is_some_and(|k| k == b.key)) {
                            p.problem role="alert" { (q.text) }
                        }
                        @if let Some(csrf) = v.csrf {
                            (choices(csrf, p, r, (&b.key, &b.text), &choices_of(v, p, &b.key)))
                            (block_form(csrf, p, r, &b.key, &b.text))
                        }
                    }
                }
            }
            @if let Some(csrf) = v.csrf { (add_form(csrf, p, r)) }
        }
    }
}

/// Move up and move down: buttons in forms, so a keyboard (and a browser without script) can
/// reorder; drag and drop posts the same form.
fn moves(csrf: &str, p: &PipelineOutline, i: usize, r: &RuleOutline) -> Markup {
    let last = p.rules.len().saturating_sub(1);
    html! {
        form.move method="post" action="/pipelines/move" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="pipeline" value=(p.id);
            input type="hidden" name="rule" value=(r.id);
            @if i > 0 {
                button type="submit" name="to" value=(i - 1) aria-label=(format!("Move rule {} up", r.id)) { "↑" }
            }
            @if i < last {
                button type="submit" name="to" value=(i + 1) aria-label=(format!("Move rule {} down", r.id)) { "↓" }
            }
        }
        form.inline method="post" action="/pipelines/rule" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="pipeline" value=(p.id);
            input type="hidden" name="rule" value=(r.id);
            input type="hidden" name="action" value="remove";
            button.remove type="submit" aria-label=(format!("Remove rule {}", r.id)) { "Remove" }
        }
    }
}

/// The values a block may take at a click, in the file's own syntax: a word block's words; a
/// team block's teams by id, or by the opportunity's tags.
fn choices_of(v: &View<'_>, p: &PipelineOutline, key: &str) -> Vec<(String, String)> {
    let json = p.file.extension().is_some_and(|e| e == "json");
    let quoted = |w: &str| serde_json::to_string(w).unwrap_or_default();
    match key {
        "team" => {
            let table = |k: &str, w: &str| {
                if json {
                    format!("{{\"{k}\": {}}}", quoted(w))
                } else {
                    format!("{{ {k} = {} }}", quoted(w))
                }
            };
            let mut out: Vec<(String, String)> =
                v.teams.iter().map(|t| (table("id", t), format!("team {t}"))).collect();
            out.push((table("tags", "any"), "the team whose tags match the opportunity's".into()));
            out
        }
        _ => rules::outline::block_words(key).iter().map(|w| (quoted(w), (*w).to_string())).collect(),
    }
}

/// A block set at a click: one of its choices (a select and a button, for a keyboard too).
fn choices(
    csrf: &str,
    p: &PipelineOutline,
    r: &RuleOutline,
    (key, now): (&str, &str),
    options: &[(String, String)],
) -> Markup {
    html! {
        @if !options.is_empty() {
            form.choice method="post" action="/pipelines/block" {
                (hidden(csrf, p, r))
                input type="hidden" name="key" value=(key);
                input type="hidden" name="action" value="set";
                label { "Choose "
                    select name="value" required aria-label=(format!("Choose the {} of rule {}", label(key).to_lowercase(), r.id)) {
                        @if !options.iter().any(|(v, _)| v.trim() == now.trim()) {
                            option value="" disabled selected { "(as written above)" }
                        }
                        @for (value, words) in options { option value=(value) selected[value.trim() == now.trim()] { (words) } }
                    }
                }
                " "
                button type="submit" { "Use" }
            }
        }
    }
}

/// A block's editor: its value as written, checked as it is typed (the script posts it to
/// `/pipelines/check`), applied or removed.
fn block_form(csrf: &str, p: &PipelineOutline, r: &RuleOutline, key: &str, text: &str) -> Markup {
    let rows = text.lines().count().clamp(1, 12);
    html! {
        details.edit {
            summary { "Edit " (label(key).to_lowercase()) }
            form.block method="post" action="/pipelines/block" {
                (hidden(csrf, p, r))
                input type="hidden" name="key" value=(key);
                label { "Value, as the file writes it"
                    textarea name="value" rows=(rows) spellcheck="false" data-check="/pipelines/check" { (text) }
                }
                output.checked aria-live="polite" {}
                button type="submit" name="action" value="set" { "Apply" }
                " "
                button.remove type="submit" name="action" value="remove" { "Remove this block" }
            }
        }
    }
}

/// A new block for a rule: the blocks it does not have yet.
fn add_form(csrf: &str, p: &PipelineOutline, r: &RuleOutline) -> Markup {
    let missing: Vec<&&str> =
        rules::outline::BLOCKS.iter().filter(|k| !r.blocks.iter().any(|b| b.key == **k)).collect();
    html! {
        @if !missing.is_empty() {
            details.edit.add {
                summary { "Add a block" }
                form.block method="post" action="/pipelines/block" {
                    (hidden(csrf, p, r))
                    label { "Block "
                        select name="key" { @for k in &missing { option value=(k) { (label(k)) } } }
                    }
                    label { "Value, as the file writes it"
                        textarea name="value" rows="2" spellcheck="false" data-check="/pipelines/check" {}
                    }
                    output.checked aria-live="polite" {}
                    button type="submit" name="action" value="set" { "Add" }
                }
            }
        }
    }
}

fn hidden(csrf: &str, p: &PipelineOutline, r: &RuleOutline) -> Markup {
    html! {
        input type="hidden" name="csrf" value=(csrf);
        input type="hidden" name="pipeline" value=(p.id);
        input type="hidden" name="rule" value=(r.id);
    }
}

/// The words an admin reads on a block.
fn label(key: &str) -> &str {
    match key {
        "when" => "When",
        "team" => "Team",
        "filters" => "Only members who",
        "member" => "Pick the member",
        "when_full" => "When everyone is full",
        "when_away" => "When everyone is away",
        "turn" => "Turns",
        other => other,
    }
}

/// The problems written in rule `rule` of pipeline `pipeline`.
pub fn problems_in<'p>(o: &Outline, problems: &'p [Problem], pipeline: &str, rule: &str) -> Vec<&'p Problem> {
    problems.iter().filter(|q| rule_of(o, q).is_some_and(|(p, r)| p.id == pipeline && r.id == rule)).collect()
}

/// The pipeline and rule a problem is written in: its file, and a line from the rule's first to
/// the last line of its last block.
fn rule_of<'o>(o: &'o Outline, q: &Problem) -> Option<(&'o PipelineOutline, &'o RuleOutline)> {
    let file = q.file.as_ref()?;
    o.pipelines
        .iter()
        .filter(|p| &p.file == file)
        .find_map(|p| p.rules.iter().find(|r| r.line <= q.line && q.line <= last_line(r)).map(|r| (p, r)))
}

fn last_line(r: &RuleOutline) -> usize {
    r.blocks.iter().map(|b| b.line + b.text.lines().count().saturating_sub(1)).max().unwrap_or(r.line).max(r.line)
}

/// The block of `r` a problem is written in: the last block beginning at or before its line.
fn block_of<'r>(r: &'r RuleOutline, q: &Problem) -> Option<&'r str> {
    r.blocks.iter().filter(|b| b.line <= q.line).max_by_key(|b| b.line).map(|b| b.key.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_placed_in_its_file_even_when_the_path_holds_a_colon() {
        let files = vec![(PathBuf::from("/r/a:b.toml"), String::new()), (PathBuf::from("/r/c.toml"), String::new())];
        let placed = place(
            &[
                "/r/a:b.toml:12:5: pipeline.rule.team: no team `x` (teams: a, b)".into(),
                "/r/c.toml:3: duplicate id".into(),
                "the rules directory is empty".into(),
            ],
            &files,
        );
        assert_eq!(
            placed[0],
            Problem {
                file: Some(files[0].0.clone()),
                line: 12,
                text: "pipeline.rule.team: no team `x` (teams: a, b)".into()
            }
        );
        assert_eq!(placed[1], Problem { file: Some(files[1].0.clone()), line: 3, text: "duplicate id".into() });
        assert_eq!(placed[2], Problem { file: None, line: 0, text: "the rules directory is empty".into() });
    }
}
