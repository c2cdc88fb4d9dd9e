//! The overview: what is in force and since when, the latest refusal in the admin's words
//! (`file:line:column: key: message`), the queue and its oldest wait, what is left unowned and
//! why, and the decisions of the last hour by outcome. Read exactly as `status` reads it
//! (`oppty_router::status::report`), so the two always agree. It must not write anything.

use maud::{html, Markup};
use oppty_router::status::Report;

/// The overview's section (the page holds it, and the script fetches it again every few seconds).
pub fn section(r: &Report, by: Option<&str>) -> Markup {
    html! {
        section id="overview" data-refresh="/overview" aria-live="polite" {
            @if let Some(why) = &r.not_installed {
                p.problem { "The router is not installed here: " (why) }
            } @else {
                (in_force(r, by))
                (queue(r))
                (decided(r))
                (unowned(r))
            }
        }
    }
}

fn in_force(r: &Report, by: Option<&str>) -> Markup {
    html! {
        h2 { "Rules in force" }
        @match &r.daemon {
            None => p { "No daemon has led on this database yet." },
            Some(d) => {
                p {
                    "Version " strong.version { (d.rules_version) }
                    " in force since " (d.rules_in_force_since.as_deref().unwrap_or("the daemon's start"))
                    @if let Some(who) = by { " (" (who) ")" }
                    "; " (d.reloads) " sets put in force, " (d.refused_reloads) " refused."
                }
                p.daemon {
                    @if d.stopped_at.is_some() { "Daemon: stopped cleanly; none is leading." }
                    @else if r.healthy { "Daemon: running on " (d.host) " (pid " (d.pid) ")." }
                    @else { strong { "Daemon: NOT RESPONDING" } " (last heartbeat " (format!("{:.0}", d.last_heartbeat_secs)) " s ago)." }
                }
                @if let Some((at, problems)) = &d.last_refused {
                    div.refusal role="alert" {
                        p { "Latest refusal, at " (at) " (the rules above stay in force until the files are fixed):" }
                        ul { @for line in problems.lines() { li { code { (line) } } } }
                    }
                }
            }
        }
    }
}

fn queue(r: &Report) -> Markup {
    let q = &r.queue;
    html! {
        h2 { "Queue" }
        p.queue {
            (q.waiting) " waiting"
            @if let Some(o) = q.oldest_waiting_secs { " (oldest " (format!("{o:.1}")) " s)" }
            ", " (q.held_or_retrying) " held or retrying later, " (q.dead_lettered) " dead-lettered."
        }
    }
}

fn decided(r: &Report) -> Markup {
    html! {
        h2 { "Decisions in the last hour" }
        @if r.decided_last_hour.is_empty() { p { "None." } }
        @else {
            table.decided {
                thead { tr { th { "Outcome" } th { "Decisions" } } }
                tbody { @for o in &r.decided_last_hour { tr { td { (o.outcome) } td.n { (o.count) } } } }
            }
        }
    }
}

fn unowned(r: &Report) -> Markup {
    html! {
        h2 { "Left unowned" }
        @if r.unowned.is_empty() { p { "None." } }
        @else {
            table.unowned {
                thead { tr { th { "Outcome" } th { "Why" } th { "Opportunities" } th { "Since" } } }
                tbody {
                    @for u in &r.unowned {
                        tr { td { (u.outcome) } td { (u.reason) } td.n { (u.count) } td { (u.since) } }
                    }
                }
            }
        }
    }
}
