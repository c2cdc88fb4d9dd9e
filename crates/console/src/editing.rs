//! The pipelines page and the draft's life: shown (the files on disk, or the editor's draft),
//! changed (a rule moved), checked by the compiler the daemon uses with the CRM's directory as the
//! daemon reads it, saved (`save`) or discarded. Only an editor changes anything; a viewer sees the
//! same page without its controls. It must not write a file but through `save`, nor the database.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::html;

use crate::accounts::Role;
use crate::drafts::Draft;
use crate::gate::{editor, refuse, session};
use crate::pipelines::{self, DraftView, View};
use crate::sessions::Session;
use crate::state::Console;
use crate::{overview, pages, save};

/// A draft (or the files on disk) as the compiler sees it.
pub(crate) struct Checked {
    pub files: Vec<(PathBuf, String)>,
    pub problems: Vec<String>,
    /// The version's hash the rules will have in force, when they compile.
    pub hash: Option<String>,
    /// The rules compiled, when they compile.
    pub engine: Option<oppty_router::engine::Engine>,
    /// How they were checked.
    pub how: String,
}

/// Compile `files` as the daemon will: with the CRM's directory when it can be read.
pub(crate) async fn check(c: &Console, files: Vec<(PathBuf, String)>) -> Checked {
    check_with(c, files, c.directory().await)
}

/// [`check`] with the directory already read (or why it could not be).
pub(crate) fn check_with(
    c: &Console,
    files: Vec<(PathBuf, String)>,
    read: Result<rules::Directory, String>,
) -> Checked {
    let (directory, how) = match read {
        Ok(d) => (d, "Checked as you change it, with the CRM's directory as the daemon reads it.".to_string()),
        Err(why) => (
            oppty_router::directory_flags(&c.cfg),
            format!(
                "Checked without the CRM's directory (it cannot be read now: {why}); the daemon checks again with it."
            ),
        ),
    };
    match oppty_router::compile_rules_with(&c.cfg, &files, &directory) {
        Ok(engine) => {
            Checked { files, problems: Vec::new(), hash: Some(engine.hash.clone()), engine: Some(engine), how }
        }
        Err(e) => Checked { files, problems: e.problems, hash: None, engine: None, how },
    }
}

/// What an account works on: their draft (true), or the files on disk as a draft of nothing.
pub(crate) fn draft_of(c: &Console, s: &Session) -> Result<(bool, Draft), String> {
    if let Some(d) = c.drafts.get(&s.user) {
        return Ok((true, d));
    }
    rules::read_files(&c.cfg.router.rules_dir).map(|f| (false, Draft::of(f))).map_err(|e| e.to_string())
}

pub async fn page(State(c): State<Arc<Console>>, h: HeaderMap) -> Response {
    let Some((_, s)) = session(&c, &h) else { return Redirect::to("/login").into_response() };
    let body = match draft_of(&c, &s) {
        Ok((begun, draft)) => {
            let checked = check(&c, draft.files.clone()).await;
            let outline = rules::outline::outline(&checked.files);
            let problems = pipelines::place(&checked.problems, &checked.files);
            let draft = begun.then(|| DraftView { changes: &draft.changes, hash: checked.hash.as_deref() });
            let csrf = (s.role == Role::Editor).then_some(s.csrf.as_str());
            let fields: Vec<String> = c.cfg.opportunity.fields.iter().map(|f| f.name.clone()).collect();
            let names = checked.engine.as_ref().map(|e| crate::names::section(e, &fields));
            let teams =
                checked.engine.as_ref().map(|e| e.teams.iter().map(|t| t.id.to_string()).collect()).unwrap_or_default();
            let view =
                View { outline: &outline, problems: &problems, draft, csrf, checked: &checked.how, names, teams };
            pipelines::section(&view)
        }
        Err(e) => html! { p.problem role="alert" { "Cannot read the rule files: " (e) } },
    };
    Html(pages::page("Pipelines", Some(&s), html! { h1 { "Pipelines" } (body) }).into_string()).into_response()
}

#[derive(serde::Deserialize)]
pub struct MoveForm {
    csrf: Option<String>,
    pipeline: String,
    rule: String,
    to: usize,
}

pub async fn move_rule(State(c): State<Arc<Console>>, h: HeaderMap, Form(f): Form<MoveForm>) -> Response {
    let s = match editor(&c, &h, f.csrf.as_deref()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match c.drafts.change(&s.user, &c.cfg.router.rules_dir, |d| d.move_rule(&f.pipeline, &f.rule, f.to)) {
        Ok(_) => Redirect::to(&format!("/pipelines#rule-{}-{}", f.pipeline, f.rule)).into_response(),
        Err(e) => refuse(StatusCode::CONFLICT, "Not moved", &format!("{e}. Nothing was changed.")),
    }
}

#[derive(serde::Deserialize)]
pub struct RuleForm {
    csrf: Option<String>,
    pipeline: String,
    rule: String,
    /// `add` or `remove`.
    action: String,
}

pub async fn add_or_remove_rule(State(c): State<Arc<Console>>, h: HeaderMap, Form(f): Form<RuleForm>) -> Response {
    let s = match editor(&c, &h, f.csrf.as_deref()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let changed = c.drafts.change(&s.user, &c.cfg.router.rules_dir, |d| match f.action.as_str() {
        "remove" => d.remove_rule(&f.pipeline, &f.rule),
        _ => d.add_rule(&f.pipeline, &f.rule),
    });
    match changed {
        Ok(_) => Redirect::to(&format!("/pipelines#pipeline-{}", f.pipeline)).into_response(),
        Err(e) => refuse(StatusCode::UNPROCESSABLE_ENTITY, "Not changed", &format!("{e}. Nothing was changed.")),
    }
}

#[derive(serde::Deserialize)]
pub struct BlockForm {
    csrf: Option<String>,
    pipeline: String,
    rule: String,
    key: String,
    value: Option<String>,
    /// `set` (the default) or `remove`.
    action: Option<String>,
}

impl BlockForm {
    /// The value to set, or none to remove the block.
    fn value(&self) -> Option<&str> {
        match self.action.as_deref() {
            Some("remove") => None,
            _ => Some(self.value.as_deref().unwrap_or("")),
        }
    }
}

pub async fn set_block(State(c): State<Arc<Console>>, h: HeaderMap, Form(f): Form<BlockForm>) -> Response {
    let s = match editor(&c, &h, f.csrf.as_deref()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match c.drafts.change(&s.user, &c.cfg.router.rules_dir, |d| d.set_block(&f.pipeline, &f.rule, &f.key, f.value())) {
        Ok(_) => Redirect::to(&format!("/pipelines#rule-{}-{}", f.pipeline, f.rule)).into_response(),
        Err(e) => refuse(StatusCode::UNPROCESSABLE_ENTITY, "Not changed", &format!("{e}. Nothing was changed.")),
    }
}

/// A block's value checked as it is typed: the draft with it, compiled; the problems written in
/// that rule (or the value's own syntax), as a fragment. The draft itself is not changed.
pub async fn check_block(State(c): State<Arc<Console>>, h: HeaderMap, Form(f): Form<BlockForm>) -> Response {
    let s = match editor(&c, &h, f.csrf.as_deref()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut draft = match draft_of(&c, &s) {
        Ok((_, d)) => d,
        Err(e) => return Html(html! { span.problem { (e) } }.into_string()).into_response(),
    };
    if let Err(e) = draft.set_block(&f.pipeline, &f.rule, &f.key, f.value()) {
        return Html(html! { span.problem { (e) } }.into_string()).into_response();
    }
    let checked = check(&c, draft.files.clone()).await;
    let outline = rules::outline::outline(&checked.files);
    let problems = pipelines::place(&checked.problems, &checked.files);
    let here = pipelines::problems_in(&outline, &problems, &f.pipeline, &f.rule);
    let elsewhere = checked.problems.len() - here.len();
    let fragment = html! {
        @if checked.problems.is_empty() { span.ok { "✓ the draft compiles with this value" } }
        @for q in &here { span.problem { (q.text) } br; }
        @if elsewhere > 0 { span.problem { (elsewhere) " problem(s) elsewhere in the draft" } }
    };
    Html(fragment.into_string()).into_response()
}

#[derive(serde::Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

pub async fn discard(State(c): State<Arc<Console>>, h: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    match editor(&c, &h, f.csrf.as_deref()) {
        Ok(s) => {
            c.drafts.drop_draft(&s.user);
            Redirect::to("/pipelines").into_response()
        }
        Err(r) => r,
    }
}

pub async fn save_draft(State(c): State<Arc<Console>>, h: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    let s = match editor(&c, &h, f.csrf.as_deref()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(draft) = c.drafts.get(&s.user) else {
        return refuse(StatusCode::CONFLICT, "Nothing to save", "You have no draft: change a rule first.");
    };
    // The CRM's directory read once, for the draft and for the files it began from.
    let directory = c.directory().await;
    let checked = check_with(&c, draft.files.clone(), directory.clone());
    let (Some(hash), Some(engine)) = (checked.hash, checked.engine) else {
        let why = format!("The draft does not compile; nothing was saved:\n{}", checked.problems.join("\n"));
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, "Not saved", &why);
    };
    // A change that routes alike (a comment, the layout) leaves the version in force as it is.
    let before = check_with(&c, draft.base.clone(), directory).engine;
    let alike = before.is_some_and(|b| oppty_router::reload::summarize(&b, &engine).is_none());
    let saved = match save::save(&c.cfg.router.rules_dir, &draft, &s.user) {
        Ok(saved) => saved,
        Err(e) => return refuse(StatusCode::CONFLICT, "Not saved", &e.to_string()),
    };
    oppty_router::rule_files::record(&c.cfg.console.journal, "save", &s.user, &saved.files, &draft.changes, &hash);
    c.drafts.drop_draft(&s.user);
    let report = c.report().await.ok();
    let by = report.as_ref().and_then(|r| c.author(r));
    let expect = Expect { hash: &hash, alike, by };
    Html(pages::page("Saved", Some(&s), saved_body(&saved, &draft.changes, &expect, report.as_ref())).into_string())
        .into_response()
}

/// What the daemon does with a save.
struct Expect<'a> {
    hash: &'a str,
    /// It routes alike the files before it: the version in force stays.
    alike: bool,
    /// Who put the version now in force in the files, if known.
    by: Option<String>,
}

fn saved_body(
    saved: &save::Saved,
    changes: &[String],
    expect: &Expect<'_>,
    report: Option<&oppty_router::status::Report>,
) -> maud::Markup {
    html! {
        h1 { "Saved" }
        p { "Written: " @for (i, f) in saved.files.iter().enumerate() { @if i > 0 { ", " } code { (f.display()) } } "." }
        ul.changes { @for c in changes { li { (c) } } }
        @match &saved.commit {
            Ok(Some(h)) => p { "Committed to the rules' git repository as " code { (h) } "." },
            Ok(None) => {},
            Err(e) => p.problem role="alert" { "Saved, but not committed to git: " (e) },
        }
        @if expect.alike {
            p.expect { "These changes route alike (comments or layout): the version in force stays as it is." }
        } @else {
            p.expect {
                "The daemon reloads the files within seconds: the rules go in force as the version ending in "
                strong.hash data-hash=(expect.hash) { (expect.hash) } ", or the overview below shows its refusal."
            }
        }
        @if let Some(r) = report { (overview::section(r, expect.by.as_deref())) }
        p { a href="/pipelines" { "Back to the pipelines" } }
    }
}
