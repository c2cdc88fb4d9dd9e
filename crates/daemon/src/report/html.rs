//! The report as one self-contained HTML page: no script, no network, every chart inline SVG.
//!
//! Every bar is a `rect` of a colour its chart alone uses, sized in whole pixels in proportion to
//! its figure (`crispEdges`), so a screenshot can be measured: `tests/report.rs` renders the page
//! in headless Chromium and checks each bar's length against the report's numbers. Everything
//! from the CRM or a rule file (ids, names, reasons) is escaped.

use std::fmt::Write;

use super::{Fairness, Pair, Report};

/// A chart's id and its two colours (before, after), each used by no other chart.
pub struct Chart {
    pub id: &'static str,
    pub before: &'static str,
    pub after: &'static str,
}

pub const LOAD: Chart = Chart { id: "load", before: "#1f6fb4", after: "#f07f0e" };
pub const RULES: Chart = Chart { id: "rules", before: "#2ca02c", after: "#d62728" };
pub const FALLBACKS: Chart = Chart { id: "fallbacks", before: "#9467bd", after: "#8c564b" };

/// Horizontal charts: the label column, the longest bar, a bar's thickness and a row's height.
pub const LABEL_WIDTH: u32 = 240;
pub const BAR_SPAN: u32 = 560;
pub const BAR_HEIGHT: u32 = 10;
const ROW: u32 = 26;
/// The fallback chart: its tallest bar.
pub const COLUMN_SPAN: u32 = 160;

/// The page.
pub fn render(r: &Report) -> String {
    let mut out = String::with_capacity(64 * 1024);
    head(&mut out, r);
    summary(&mut out, r);
    let load: Vec<(String, Pair<i64>)> = r
        .members
        .iter()
        .map(|m| (label(&m.name, &m.id), Pair { before: m.load.before, after: m.load.after }))
        .collect();
    section(&mut out, "Open load per member", "Open at the start of the window plus what the window gave them.");
    bars(&mut out, &LOAD, &load, r.compares);
    let rules: Vec<(String, Pair<i64>)> =
        r.rules_used.iter().map(|x| (format!("{}/{}", x.pipeline, x.rule), widen(x.assigned))).collect();
    section(&mut out, "Assignments per rule", "Opportunities each rule gave an owner.");
    bars(&mut out, &RULES, &rules, r.compares);
    section(&mut out, "Fallbacks over time", "Opportunities that went to a fallback owner, per time bucket.");
    columns(&mut out, r);
    teams(&mut out, r);
    changes(&mut out, r);
    out.push_str("</main></body></html>\n");
    out
}

fn widen(p: Pair<usize>) -> Pair<i64> {
    Pair { before: p.before as i64, after: p.after.map(|a| a as i64) }
}

fn label(name: &str, id: &str) -> String {
    if name == id {
        id.to_string()
    } else {
        format!("{name} ({id})")
    }
}

/// Text made safe for HTML and SVG, attributes included.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn head(out: &mut String, r: &Report) {
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>\
         body{{font:14px/1.4 sans-serif;margin:0;color:#222;background:#fff}}main{{padding:16px 24px;max-width:1100px}}\
         h1{{font-size:20px}}h2{{font-size:16px;margin:28px 0 4px}}p.note{{color:#555;margin:0 0 8px}}\
         table{{border-collapse:collapse}}td,th{{border-bottom:1px solid #ddd;padding:3px 10px;text-align:left}}\
         .key span{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}}\
         </style></head><body><main><h1>{}</h1><p>{} · rules {} · {} opportunities</p>",
        escape(&r.title),
        escape(&r.title),
        escape(&r.window),
        escape(&r.rules),
        r.opportunities
    );
}

fn summary(out: &mut String, r: &Report) {
    let o = &r.outcomes;
    let cell = |f: fn(&super::Outcomes) -> usize| match &o.after {
        Some(a) => format!("<td>{}</td><td>{}</td>", f(&o.before), f(a)),
        None => format!("<td>{}</td>", f(&o.before)),
    };
    let head = if r.compares { "<th></th><th>now</th><th>candidate rules</th>" } else { "<th></th><th>count</th>" };
    let _ = write!(
        out,
        "<table id=\"outcomes\"><tr>{head}</tr><tr><td>by a rule</td>{}</tr><tr><td>fallback owner</td>{}</tr>\
         <tr><td>by a reclaim</td>{}</tr><tr><td>still waiting (held)</td>{}</tr><tr><td>unassigned</td>{}</tr>\
         <tr><td>not written</td>{}</tr><tr><td>owned, closed or deleted in the CRM first</td>{}</tr></table>",
        cell(|o| o.rule),
        cell(|o| o.fallback),
        cell(|o| o.reclaimed),
        cell(|o| o.held),
        cell(|o| o.unassigned),
        cell(|o| o.unwritten),
        cell(|o| o.elsewhere)
    );
    for (why, n) in &r.skipped {
        let _ = write!(out, "<p class=\"note\">Not replayed: {n} ({}).</p>", escape(why));
    }
    for (p, n) in &r.reclaims {
        let _ = write!(out, "<p>Reclaimed in pipeline {}: {n}.</p>", escape(p));
    }
}

fn section(out: &mut String, title: &str, note: &str) {
    let _ = write!(out, "<h2>{title}</h2><p class=\"note\">{note}</p>");
}

/// The colour key of a chart.
fn key(out: &mut String, c: &Chart, compares: bool) {
    let _ = write!(
        out,
        "<p class=\"key\"><span style=\"background:{}\"></span>{}",
        c.before,
        if compares { "now" } else { "count" }
    );
    if compares {
        let _ = write!(out, "<span style=\"background:{}\"></span>candidate rules", c.after);
    }
    out.push_str("</p>");
}

/// A bar's length in whole pixels: `v` of `max` over `span`.
pub fn length(v: i64, max: i64, span: u32) -> u32 {
    if max <= 0 || v <= 0 {
        return 0;
    }
    ((v as f64 / max as f64) * f64::from(span)).round() as u32
}

/// A horizontal bar chart: a row per item, a bar before (and after) each.
fn bars(out: &mut String, c: &Chart, rows: &[(String, Pair<i64>)], compares: bool) {
    key(out, c, compares);
    let max = rows.iter().map(|(_, p)| p.before.max(p.after.unwrap_or(0))).max().unwrap_or(0);
    let height = ROW * rows.len() as u32 + 8;
    let width = LABEL_WIDTH + BAR_SPAN + 80;
    let _ = write!(
        out,
        "<svg id=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" shape-rendering=\"crispEdges\">",
        c.id
    );
    for (i, (name, p)) in rows.iter().enumerate() {
        let y = ROW * i as u32 + 4;
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"12\">{}</text>",
            LABEL_WIDTH - 8,
            y + 14,
            escape(name)
        );
        bar(out, c.before, name, p.before, max, y);
        if let Some(a) = p.after {
            bar(out, c.after, name, a, max, y + BAR_HEIGHT + 1);
        }
    }
    out.push_str("</svg>");
}

fn bar(out: &mut String, colour: &str, name: &str, v: i64, max: i64, y: u32) {
    let w = length(v, max, BAR_SPAN);
    let _ = write!(
        out,
        "<rect x=\"{LABEL_WIDTH}\" y=\"{y}\" width=\"{w}\" height=\"{BAR_HEIGHT}\" fill=\"{colour}\" data-value=\"{v}\"><title>{}: {v}</title></rect>\
         <text x=\"{}\" y=\"{}\" font-size=\"10\">{v}</text>",
        escape(name),
        LABEL_WIDTH + w + 4,
        y + BAR_HEIGHT - 1
    );
}

/// The fallback chart: a column per time bucket, before (and after) side by side.
fn columns(out: &mut String, r: &Report) {
    let c = &FALLBACKS;
    key(out, c, r.compares);
    let b = &r.fallbacks_over_time;
    let max = b.iter().map(|x| x.fallbacks.before.max(x.fallbacks.after.unwrap_or(0))).max().unwrap_or(0) as i64;
    let slot = (900 / b.len().max(1) as u32).clamp(6, 40);
    let bar = if r.compares { slot / 2 - 1 } else { slot - 2 };
    let (w, h) = ((slot * b.len() as u32 + 60).max(480), COLUMN_SPAN + 40);
    let _ = write!(out, "<svg id=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" shape-rendering=\"crispEdges\">", c.id);
    let base = COLUMN_SPAN + 10;
    let _ = write!(out, "<line x1=\"0\" y1=\"{base}\" x2=\"{w}\" y2=\"{base}\" stroke=\"#999\"/>");
    for (i, x) in b.iter().enumerate() {
        let left = slot * i as u32 + 4;
        let mut col = |colour: &str, v: usize, at: u32| {
            let len = length(v as i64, max, COLUMN_SPAN);
            let _ = write!(
                out,
                "<rect x=\"{at}\" y=\"{}\" width=\"{bar}\" height=\"{len}\" fill=\"{colour}\" data-value=\"{v}\"><title>{}: {v}</title></rect>",
                base - len,
                escape(&x.start)
            );
        };
        col(c.before, x.fallbacks.before, left);
        if let Some(a) = x.fallbacks.after {
            col(c.after, a, left + bar + 1);
        }
    }
    if let (Some(first), Some(last)) = (b.first(), b.last()) {
        let _ = write!(
            out,
            "<text x=\"4\" y=\"{}\" font-size=\"11\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            base + 16,
            escape(&first.start),
            w - 4,
            base + 30,
            escape(&last.start)
        );
    }
    out.push_str("</svg>");
}

fn fair(f: &Fairness) -> String {
    format!("{} · Gini {:.3}", f.ratio_text(), f.gini)
}

fn teams(out: &mut String, r: &Report) {
    section(
        out,
        "Fairness within each team",
        "Each member's received over expected (what they could have received by the rules: while active, not paused, not away, not full; by weight), largest over smallest (∞: someone who could receive got none), and the Gini coefficient of the same.",
    );
    let after = if r.compares { "<th>candidate rules</th>" } else { "" };
    let _ =
        write!(out, "<table id=\"teams\"><tr><th>team</th><th>assigned</th><th>now</th>{after}<th>shares</th></tr>");
    for t in &r.teams {
        let shares: Vec<String> = t
            .members
            .iter()
            .map(|m| {
                let (p, e) = (&m.assigned, &m.expected);
                let who = escape(&m.label(t.paused.contains(&m.id)));
                match (p.after, e.after) {
                    (Some(a), Some(ea)) => format!("{who} {}→{a} (expected {:.1}→{ea:.1})", p.before, e.before),
                    _ => format!("{who} {} (expected {:.1})", p.before, e.before),
                }
            })
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td>{}<td>{}</td></tr>",
            escape(&t.id),
            t.assigned.after.map_or(t.assigned.before.to_string(), |a| format!("{} → {a}", t.assigned.before)),
            fair(&t.fairness.before),
            t.fairness.after.map_or(String::new(), |a| format!("<td>{}</td>", fair(&a))),
            shares.join(", ")
        );
    }
    out.push_str("</table>");
}

fn changes(out: &mut String, r: &Report) {
    if !r.compares {
        return;
    }
    section(out, "Opportunities whose owner would change", &format!("{} in all, oldest first.", r.changes.len()));
    out.push_str("<table id=\"changes\"><tr><th>opportunity</th><th>now</th><th>candidate rules</th><th>why</th></tr>");
    let who = |o: &Option<String>| escape(&r.who(o.as_deref()));
    for c in &r.changes {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td></tr>",
            escape(&c.opp_id),
            who(&c.before),
            who(&c.after),
            escape(&c.after_outcome),
            escape(&c.reason)
        );
    }
    out.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_reasons_from_the_crm_or_a_rule_file_are_escaped() {
        assert_eq!(
            escape("<script>\"a\" & 'b'</script>"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
        assert_eq!((length(5, 10, 560), length(0, 10, 560), length(3, 0, 560)), (280, 0, 0));
    }
}
