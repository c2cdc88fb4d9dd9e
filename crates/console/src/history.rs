//! History and revert: every version that was in force (as the router kept it), when, what changed
//! from the one before in the reloader's words, and its diff; an editor reverts to one, which
//! writes its files (checked first as the daemon will check them) as `oppty-router revert` does.
//! It must not write but through `oppty_router::history` and `rule_files`.

use std::sync::Arc;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{html, Markup};
use oppty_router::history::{self, Version};

use crate::accounts::Role;
use crate::editing::check;
use crate::gate::editor;
use crate::gate::{refuse, session};
use crate::state::Console;
use crate::{overview, pages};

/// How many versions the page shows.
const SHOWN: i64 = 50;

async fn versions(c: &Console) -> Result<Vec<Version>, String> {
    let db = c.connected().await?;
    let Some(client) = db.as_ref() else { return Err("not connected".into()) };
    history::latest(client, &c.cfg, SHOWN).await.map_err(|e| oppty_router::db::describe(&e))
}

pub async fn page(State(c): State<Arc<Console>>, h: HeaderMap) -> Response {
    let Some((_, s)) = session(&c, &h) else { return Redirect::to("/login").into_response() };
    let body = match versions(&c).await {
        Ok(v) => list(&c, &v, (s.role == Role::Editor).then_some(s.csrf.as_str())),
        Err(e) => html! { p.problem role="alert" { "Cannot read the versions kept: " (e) } },
    };
    Html(pages::page("History", Some(&s), html! { h1 { "History" } (body) }).into_string()).into_response()
}

fn list(c: &Console, versions: &[Version], csrf: Option<&str>) -> Markup {
    let summaries = history::summaries(&c.cfg, versions);
    let by = crate::state::authors(&c.cfg.console.journal);
    html! {
        @if versions.is_empty() { p { "No rule set has been kept yet: the daemon keeps each one it puts in force." } }
        ol.history {
            @for (i, v) in versions.iter().enumerate() {
                li.version id=(format!("version-{}", v.version)) {
                    h2 { code { (v.version) } }
                    p.where {
                        "In force from " (v.in_force_at) @if i == 0 { " (the latest)" }
                        @if let Some(who) = v.version.split_once('-').and_then(|(_, h)| by.get(h)) { "; " (who) }
                    }
                    p { (summaries[i]) }
                    @if let Some(older) = versions.get(i + 1) {
                        details { summary { "Diff from " (older.version) } pre.diff { (history::diff(&older.files, &v.files)) } }
                    }
                    @if let (Some(csrf), true) = (csrf, i > 0) {
                        form.inline method="post" action="/history/revert" {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="version" value=(v.version);
                            button type="submit" { "Revert to " (v.version) }
                        }
                    }
                }
            }
        }
    }
}

#[derive(serde::Deserialize)]
pub struct RevertForm {
    csrf: Option<String>,
    version: String,
}

pub async fn revert(State(c): State<Arc<Console>>, h: HeaderMap, Form(f): Form<RevertForm>) -> Response {
    let s = match editor(&c, &h, f.csrf.as_deref()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let vs = match versions(&c).await {
        Ok(v) => v,
        Err(e) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not reverted",
                &format!("Cannot read the versions kept: {e}"),
            )
        }
    };
    let Some(v) = vs.iter().find(|v| v.version == f.version) else {
        return refuse(StatusCode::NOT_FOUND, "Not reverted", &format!("No version `{}` was kept.", f.version));
    };
    let dir = &c.cfg.router.rules_dir;
    let now = match rules::read_files(dir) {
        Ok(n) => n,
        Err(e) => return refuse(StatusCode::CONFLICT, "Not reverted", &e.to_string()),
    };
    let plan = history::plan(dir, &now, v);
    let checked = check(&c, plan.applied_to(&now)).await;
    let Some(hash) = checked.hash else {
        let why = format!(
            "The daemon would refuse these files with the CRM as it is now; nothing was written:\n{}",
            checked.problems.join("\n")
        );
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, "Not reverted", &why);
    };
    if let Err(e) = history::apply(dir, &plan, &v.version) {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, "Not reverted", &format!("{}: {e}", dir.display()));
    }
    let said = format!("revert to {} (in force from {})", v.version, v.in_force_at);
    let commit = oppty_router::rule_files::commit(
        dir,
        &plan.paths(),
        &s.user,
        &format!("{said} (oppty-router console, by {})", s.user),
    );
    oppty_router::rule_files::record(
        &c.cfg.console.journal,
        "revert",
        &s.user,
        &plan.paths(),
        std::slice::from_ref(&said),
        &hash,
    );
    c.drafts.drop_draft(&s.user);
    let report = c.report().await.ok();
    let body = html! {
        h1 { "Reverted" }
        p { (said) ": " (plan.write.len()) " file(s) written, " (plan.set_aside.len()) " set aside (kept as hidden files)." }
        @if let Err(e) = &commit { p.problem role="alert" { "Written, but not committed to git: " (e) } }
        p.expect { "The daemon reloads the files: they go in force as the version ending in " strong.hash data-hash=(hash) { (hash) } "." }
        @if let Some(r) = &report { (overview::section(r, c.author(r).as_deref())) }
    };
    Html(pages::page("Reverted", Some(&s), body).into_string()).into_response()
}
