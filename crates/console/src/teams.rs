//! Teams and members: the directory as the rules route with it (the rule files merged with what
//! the CRM says), each member's state and where it comes from (paused in the rule files, disabled
//! or paused in a team by the CRM), caps and open load, working hours and remit; an editor pauses,
//! lifts a pause or sets an open cap, which goes into their draft like any change. It must not
//! write anything but through the draft (`drafts`, then `save`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{html, Markup};
use oppty_router::engine::{Engine, Member, Team};

use crate::accounts::Role;
use crate::editing::{check_with, draft_of};
use crate::gate::editor;
use crate::gate::{refuse, session};
use crate::pages;
use crate::state::Console;

pub async fn page(State(c): State<Arc<Console>>, h: HeaderMap) -> Response {
    let Some((_, s)) = session(&c, &h) else { return Redirect::to("/login").into_response() };
    let body = match draft_of(&c, &s) {
        Err(e) => html! { p.problem role="alert" { "Cannot read the rule files: " (e) } },
        Ok((begun, draft)) => {
            let (read, loads) = match c.directory_and_loads().await {
                Ok((d, l)) => (Ok(d), l),
                Err(e) => (Err(e), HashMap::new()),
            };
            let checked = check_with(&c, draft.files.clone(), read.clone());
            let csrf = (s.role == Role::Editor).then_some(s.csrf.as_str());
            match checked.engine {
                Some(e) => directory(&e, &loads, csrf, begun, &checked.how),
                // A draft that does not compile: the files on disk are shown, and why the draft
                // cannot be, so the editor can undo or discard it.
                None => {
                    let disk = rules::read_files(&c.cfg.router.rules_dir).unwrap_or_default();
                    let on_disk = check_with(&c, disk, read);
                    html! {
                        div.refusal role="alert" {
                            p { "Your draft does not compile, so the directory below is the files on disk. Undo the change, or discard the draft on " a href="/pipelines" { "the pipelines page" } ":" }
                            ul { @for p in &checked.problems { li { code { (p) } } } }
                        }
                        @if let Some(e) = &on_disk.engine { (directory(e, &loads, csrf, false, &on_disk.how)) }
                    }
                }
            }
        }
    };
    Html(pages::page("Teams and members", Some(&s), html! { h1 { "Teams and members" } (body) }).into_string())
        .into_response()
}

fn directory(e: &Engine, loads: &HashMap<String, i64>, csrf: Option<&str>, draft: bool, how: &str) -> Markup {
    let in_team: std::collections::HashSet<usize> = e.teams.iter().flat_map(|t| t.members.iter().copied()).collect();
    let alone: Vec<usize> = (0..e.members.len()).filter(|i| !in_team.contains(i)).collect();
    html! {
        section id="teams" {
            p.checked { (how) @if draft { " Shown with your draft's changes; " a href="/pipelines" { "save or discard it" } " on the pipelines page." } }
            @for t in &e.teams { (team(e, t, loads, csrf)) }
            @if !alone.is_empty() {
                article.team {
                    h2 { "Not in any team" }
                    (members(e, None, &alone, loads, csrf))
                }
            }
        }
    }
}

fn team(e: &Engine, t: &Team, loads: &HashMap<String, i64>, csrf: Option<&str>) -> Markup {
    let territories: Vec<&str> =
        t.territories.iter().filter_map(|i| e.territories.written.get(*i as usize)).map(String::as_str).collect();
    html! {
        article.team id=(format!("team-{}", t.id)) {
            h2 { (t.name) " " code { (t.id) } }
            p.where {
                @if let Some(crm) = &t.crm_id { "CRM team " code { (crm) } ". " }
                @if let Some(lead) = &t.lead { "Lead: " (lead) ". " }
                @if !territories.is_empty() { "Covers " (territories.join(", ")) "." }
            }
            (members(e, Some(t), &t.members, loads, csrf))
        }
    }
}

fn members(e: &Engine, t: Option<&Team>, ids: &[usize], loads: &HashMap<String, i64>, csrf: Option<&str>) -> Markup {
    html! {
        table.members {
            thead { tr { th { "Member" } th { "State" } th { "Caps" } th { "Open now" } th { "Working hours" } th { "Remit" } @if csrf.is_some() { th { "Change" } } } }
            tbody {
                @for i in ids {
                    @if let Some(m) = e.members.get(*i) {
                        tr {
                            td { (m.name) " (" (m.id) ")" }
                            td { (state(m, t.is_some_and(|t| t.paused_here.contains(i)))) }
                            td { (caps(m, loads.get(&*m.id).copied().unwrap_or(0))) }
                            td.n { (loads.get(&*m.id).copied().unwrap_or(0)) }
                            td { (hours(e, m)) }
                            td { (m.accepts.as_ref().map(|a| a.describe()).unwrap_or_default()) }
                            @if let Some(csrf) = csrf { td { (controls(csrf, m)) } }
                        }
                    }
                }
            }
        }
    }
}

/// Each cap in words, an open cap with how full it is now.
fn caps(m: &Member, open: i64) -> String {
    let words: Vec<String> = m
        .caps
        .iter()
        .map(|c| match c.window {
            oppty_router::engine::Window::Open => format!("{open} of {} open", c.max),
            _ => format!("{} per {}", c.max, c.label),
        })
        .collect();
    words.join("; ")
}

/// What stops a member from receiving, and who said so.
fn state(m: &Member, paused_in_team: bool) -> Markup {
    html! {
        @if !m.active { span.problem { "disabled in the CRM" } }
        @else if m.paused { span.problem { "paused (rule files)" } }
        @else if paused_in_team { span.problem { "paused in this team (CRM)" } }
        @else { "receiving" }
    }
}

fn hours(e: &Engine, m: &Member) -> String {
    let Some(s) = m.schedule.and_then(|i| e.schedules.get(i as usize)) else { return "any time".into() };
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let days: Vec<String> = s
        .week
        .iter()
        .zip(DAYS)
        .filter_map(|(w, d)| {
            w.map(|(from, to)| format!("{d} {:02}:{:02}–{:02}:{:02}", from / 60, from % 60, to / 60, to % 60))
        })
        .collect();
    format!("{} ({})", days.join(", "), s.tz.name())
}

/// Pause or lift the pause; set or remove the open cap.
fn controls(csrf: &str, m: &Member) -> Markup {
    let open_cap = m.caps.iter().find(|c| matches!(c.window, oppty_router::engine::Window::Open)).map(|c| c.max);
    html! {
        form.inline method="post" action="/teams/member" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="member" value=(m.id);
            input type="hidden" name="key" value="paused";
            @if m.paused {
                button type="submit" name="action" value="remove" aria-label=(format!("Lift {}'s pause", m.name)) { "Lift pause" }
            } @else {
                input type="hidden" name="value" value="true";
                button type="submit" name="action" value="set" aria-label=(format!("Pause {}", m.name)) { "Pause" }
            }
        }
        form.inline method="post" action="/teams/member" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="member" value=(m.id);
            input type="hidden" name="key" value="max_open";
            label { "Open cap " input type="number" name="value" min="0" max="100000" size="5" value=[open_cap]; }
            button type="submit" name="action" value="set" { "Set" }
        }
    }
}

#[derive(serde::Deserialize)]
pub struct MemberForm {
    csrf: Option<String>,
    member: String,
    key: String,
    value: Option<String>,
    action: Option<String>,
}

pub async fn set_member(State(c): State<Arc<Console>>, h: HeaderMap, Form(f): Form<MemberForm>) -> Response {
    let s = match editor(&c, &h, f.csrf.as_deref()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let value = match (f.action.as_deref(), f.value.as_deref().map(str::trim)) {
        (Some("remove"), _) | (_, None | Some("")) => None,
        (_, Some(v)) => Some(v.to_string()),
    };
    if f.key == "max_open" && value.as_deref().is_some_and(|v| v.parse::<u32>().is_err()) {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not changed",
            "An open cap is a whole number (0 or more). Nothing was changed.",
        );
    }
    match c.drafts.change(&s.user, &c.cfg.router.rules_dir, |d| d.set_member(&f.member, &f.key, value.as_deref())) {
        Ok(_) => Redirect::to("/teams").into_response(),
        Err(e) => refuse(StatusCode::UNPROCESSABLE_ENTITY, "Not changed", &format!("{e}. Nothing was changed.")),
    }
}
