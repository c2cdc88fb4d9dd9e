//! Try before saving: the editor's draft replayed on the last days' opportunities beside what the
//! rules in force did (`simulate`'s own replay and report: per member before and after, fairness
//! per team, fallbacks, and every opportunity whose owner would change, with why), and one
//! opportunity explained under the rules in force and under the draft, side by side. It must not
//! write anything: a try reads the database in a read-only transaction, as `simulate` does.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{html, Markup};
use oppty_router::report::{Report, Routed};
use oppty_router::simulate::{self, Options, SimulateError};

use crate::gate::session;
use crate::pages;
use crate::state::Console;

#[derive(serde::Deserialize)]
pub struct TryQuery {
    /// The window, in days (default 7).
    days: Option<u32>,
    /// An opportunity to explain side by side.
    opp: Option<String>,
}

pub async fn page(State(c): State<Arc<Console>>, h: HeaderMap, Query(q): Query<TryQuery>) -> Response {
    let Some((_, s)) = session(&c, &h) else { return Redirect::to("/login").into_response() };
    let days = q.days.unwrap_or(7).clamp(1, 90);
    let opp = q.opp.as_deref().map(str::trim).filter(|o| !o.is_empty());
    let draft = c.drafts.get(&s.user);
    // The replay of the window can take a while on a busy CRM: the page comes at once, and the
    // script loads the replay's figures into it (`/try/report`) when they are ready.
    let body = match tried(&c, draft.as_ref().map(|d| d.files.as_slice()), days, opp, false).await {
        Ok(t) => tried_body(&t, days, opp, draft.is_some()),
        Err(problems) => html! {
            div.refusal role="alert" {
                p { "The draft cannot be tried:" }
                ul { @for p in &problems { li { code { (p) } } } }
            }
        },
    };
    Html(pages::page("Try", Some(&s), html! { h1 { "Try before saving" } (body) }).into_string()).into_response()
}

/// The draft's replay of the window, as a section the try page loads (`data-load`).
pub async fn report_section(State(c): State<Arc<Console>>, h: HeaderMap, Query(q): Query<TryQuery>) -> Response {
    let Some((_, s)) = session(&c, &h) else { return Redirect::to("/login").into_response() };
    let days = q.days.unwrap_or(7).clamp(1, 90);
    let draft = c.drafts.get(&s.user);
    let section = match tried(&c, draft.as_ref().map(|d| d.files.as_slice()), days, None, true).await {
        Ok(Tried { report: Some(r), .. }) => report(&r),
        Ok(_) => html! { section id="simulated" { p { "You have no draft to replay." } } },
        Err(problems) => html! {
            section id="simulated" { div.refusal role="alert" { ul { @for p in &problems { li { code { (p) } } } } } }
        },
    };
    Html(section.into_string()).into_response()
}

/// What a try found.
struct Tried {
    /// The draft's replay beside what happened; none without a draft.
    report: Option<Report>,
    /// The opportunity asked about: as decided, under the rules in force, under the draft.
    side_by_side: Option<SideBySide>,
}

struct SideBySide {
    decided: Option<Routed>,
    in_force: Option<Routed>,
    draft: Option<Routed>,
}

/// Compile the rules in force and the draft with the CRM's directory, then replay.
async fn tried(
    c: &Console,
    draft: Option<&[(std::path::PathBuf, String)]>,
    days: u32,
    opp: Option<&str>,
    replay: bool,
) -> Result<Tried, Vec<String>> {
    let words = |e: SimulateError| match e {
        SimulateError::Sql(e) => vec![oppty_router::db::describe(&e)],
        SimulateError::Config(p) => p,
    };
    // A replay reads for a while: on a connection of its own, so the console's other pages (and
    // the other editors) do not wait for it.
    let (mut own, mut shared) = (None, None);
    let client: &mut tokio_postgres::Client = if replay {
        let fresh =
            oppty_router::db::connect(&c.cfg.database, " console replay").await.map_err(|e| vec![e.to_string()])?;
        own.insert(fresh)
    } else {
        let guard = shared.insert(c.connected().await.map_err(|e| vec![e])?);
        guard.as_mut().ok_or_else(|| vec!["not connected".to_string()])?
    };
    let (directory, sql) = simulate::directory_as_routed(client, &c.cfg).await.map_err(words)?;
    let mut as_routed = directory.clone();
    as_routed.tests_warn = true;
    let in_force = oppty_router::load_rules_with(&c.cfg, &as_routed).map_err(|e| e.problems)?;
    let draft = match draft {
        Some(files) => Some(oppty_router::compile_rules_with(&c.cfg, files, &directory).map_err(|e| e.problems)?),
        None => None,
    };
    let since = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
    let window = format!("the last {days} days");
    let opts = Options { since, ids: None, seed: 1, window, in_force: false };
    let report = match &draft {
        Some(d) if replay => Some(simulate::simulate(client, &c.cfg, &sql, d, &opts).await.map_err(words)?),
        _ => None,
    };
    let side_by_side = match opp {
        Some(id) => {
            let one = Options { ids: Some(vec![id.to_string()]), ..opts };
            let (decided, under_force) =
                simulate::replay_each(client, &c.cfg, &sql, &in_force, &one).await.map_err(words)?;
            let under_draft = match &draft {
                Some(d) => simulate::replay_each(client, &c.cfg, &sql, d, &one).await.map_err(words)?.1,
                None => Vec::new(),
            };
            Some(SideBySide {
                decided: decided.into_iter().next(),
                in_force: under_force.into_iter().next(),
                draft: under_draft.into_iter().next(),
            })
        }
        None => None,
    };
    Ok(Tried { report, side_by_side })
}

fn tried_body(t: &Tried, days: u32, opp: Option<&str>, has_draft: bool) -> Markup {
    html! {
        form.try method="get" action="/try" {
            label { "Days " input type="number" name="days" min="1" max="90" value=(days); }
            label { "Explain opportunity " input name="opp" value=(opp.unwrap_or("")) placeholder="an opportunity id"; }
            button type="submit" { "Try" }
        }
        @if !has_draft {
            p { "You have no draft: change a rule on the " a href="/pipelines" { "pipelines" } " page to try it here. An opportunity is explained under the rules in force." }
        }
        @if let Some(s) = &t.side_by_side { (side_by_side(s, opp.unwrap_or(""), has_draft)) }
        @if let Some(r) = &t.report { (report(r)) }
        @else if has_draft {
            section id="simulated" data-load=(format!("/try/report?days={days}")) aria-live="polite" {
                p { "Replaying the last " (days) " day(s) with your draft…" }
                noscript { a href=(format!("/try/report?days={days}")) { "See the replay" } }
            }
        }
    }
}

fn side_by_side(s: &SideBySide, id: &str, has_draft: bool) -> Markup {
    html! {
        section id="explain" {
            h2 { "Opportunity " code { (id) } }
            @if s.decided.is_none() {
                p { "The router has made no decision about it in the window: nothing to replay." }
            } @else {
                table.side {
                    thead { tr { th {} th { "Decided" } th { "Rules in force" } @if has_draft { th { "Your draft" } } } }
                    tbody {
                        (row("Outcome", s, has_draft, |r| r.outcome.clone()))
                        (row("Owner", s, has_draft, |r| r.owner.clone().unwrap_or_else(|| "-".into())))
                        (row("Team", s, has_draft, |r| r.team.clone().unwrap_or_else(|| "-".into())))
                        (row("Rule", s, has_draft, |r| r.rule.clone().unwrap_or_else(|| "-".into())))
                        (row("Why", s, has_draft, |r| r.reason.clone()))
                    }
                }
            }
        }
    }
}

fn row(name: &str, s: &SideBySide, has_draft: bool, f: impl Fn(&Routed) -> String) -> Markup {
    let cell = |r: &Option<Routed>| r.as_ref().map(&f).unwrap_or_default();
    html! {
        tr { th { (name) } td { (cell(&s.decided)) } td { (cell(&s.in_force)) } @if has_draft { td { (cell(&s.draft)) } } }
    }
}

fn report(r: &Report) -> Markup {
    let after = |n: Option<usize>| n.map_or_else(|| "-".to_string(), |n| n.to_string());
    let o = &r.outcomes;
    html! {
        section id="simulated" {
            h2 { "Your draft on " (r.window) }
            p { (r.opportunities) " opportunities replayed; " strong { (r.changes.len()) } " would change owner." }
            table.outcomes {
                thead { tr { th { "Outcome" } th { "Happened" } th { "With your draft" } } }
                tbody {
                    tr { td { "by a rule" } td.n { (o.before.rule) } td.n { (after(o.after.map(|a| a.rule))) } }
                    tr { td { "fallback owner" } td.n { (o.before.fallback) } td.n { (after(o.after.map(|a| a.fallback))) } }
                    tr { td { "held" } td.n { (o.before.held) } td.n { (after(o.after.map(|a| a.held))) } }
                    tr { td { "unassigned" } td.n { (o.before.unassigned) } td.n { (after(o.after.map(|a| a.unassigned))) } }
                }
            }
            h3 { "Per member" }
            table.members {
                thead { tr { th { "Member" } th { "Received" } th { "With your draft" } th { "Open load" } th { "With your draft" } } }
                tbody {
                    @for m in &r.members {
                        tr {
                            td { (m.name) " (" (m.id) ")" }
                            td.n { (m.assigned.before) } td.n { (after(m.assigned.after)) }
                            td.n { (m.load.before) } td.n { (m.load.after.map_or_else(|| "-".into(), |l| l.to_string())) }
                        }
                    }
                }
            }
            h3 { "Fairness per team" }
            table.teams {
                thead { tr { th { "Team" } th { "Max/min now" } th { "With your draft" } th { "Gini now" } th { "With your draft" } } }
                tbody {
                    @for t in &r.teams {
                        tr {
                            td { (t.id) }
                            td.n { (t.fairness.before.ratio_text()) } td.n { (t.fairness.after.map(|f| f.ratio_text()).unwrap_or_default()) }
                            td.n { (format!("{:.2}", t.fairness.before.gini)) } td.n { (t.fairness.after.map(|f| format!("{:.2}", f.gini)).unwrap_or_default()) }
                        }
                    }
                }
            }
            h3 { "Opportunities whose owner would change" }
            @if r.changes.is_empty() { p { "None." } }
            @else {
                table.changes {
                    thead { tr { th { "Opportunity" } th { "Owner now" } th { "With your draft" } th { "Rule" } th { "Why" } } }
                    tbody {
                        @for ch in r.changes.iter().take(200) {
                            tr {
                                td { a href=(format!("/try?opp={}", query_value(&ch.opp_id))) { code { (ch.opp_id) } } }
                                td { (ch.before.as_deref().unwrap_or("-")) " " small { (ch.before_rule.as_deref().unwrap_or("")) } }
                                td { (ch.after.as_deref().unwrap_or("-")) }
                                td { (ch.after_rule.as_deref().unwrap_or(&ch.after_outcome)) }
                                td { (ch.reason) }
                            }
                        }
                    }
                }
                @if r.changes.len() > 200 { p { "… and " (r.changes.len() - 200) " more (`oppty-router simulate` lists them all)." } }
            }
        }
    }
}

/// A value as a URL's query holds it: unreserved characters as they are, every other byte as %XX.
fn query_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
