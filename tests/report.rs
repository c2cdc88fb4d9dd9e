//! Sales-ops try a rule change before saving it (`simulate`), and read what really happened
//! (`report`): the real binary against a CRM the daemon routed, its figures checked against the
//! audit, and its HTML page rendered in headless Chromium, each chart's bars measured on the
//! screenshot against the report's numbers.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use oppty_router::report::html;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_oppty-router");
const CHROMIUM: &str = "/usr/bin/chromium";

/// Run the binary; its exit code, stdout and stderr.
fn cli(config: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).arg("-c").arg(config).args(args).output().expect("run oppty-router");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// The example rules with Bình (102) on leave, and the files' own tests left out (they expect
/// her to receive work): the edit an admin wants to try first.
fn with_binh_on_leave(dir: &Path, keep_tests: bool) -> PathBuf {
    let rules = dir.join(if keep_tests { "candidate-tested" } else { "candidate" });
    copy_rules(&rules_dir(), &rules);
    let people = rules.join("01-people.toml");
    let text = std::fs::read_to_string(&people).expect("read");
    std::fs::write(&people, text.replacen("id = \"102\"\n", "id = \"102\"\npaused = true\n", 1)).expect("edit");
    if !keep_tests {
        for f in ["10-retail.toml", "30-wealth.toml"] {
            let text = std::fs::read_to_string(rules.join(f)).expect("read");
            let cut = text.find("[[test]]").unwrap_or(text.len());
            std::fs::write(rules.join(f), &text[..cut]).expect("write");
        }
    }
    rules
}

/// Each opportunity's first decision, as the audit holds it: (opp, outcome, owner).
async fn first_decisions(db: &TestDb) -> Vec<(String, String, Option<String>)> {
    db.client
        .query(
            "SELECT DISTINCT ON (opp_id) opp_id, outcome, owner_id FROM oppty_router.assignments \
             WHERE outcome <> 'reclaim' ORDER BY opp_id, id",
            &[],
        )
        .await
        .expect("audit")
        .iter()
        .map(|r| (r.get("opp_id"), r.get("outcome"), r.get("owner_id")))
        .collect()
}

/// Everything the router and the CRM hold about owners, to show nothing was written.
async fn fingerprint(db: &TestDb) -> (i64, i64, String) {
    let audit = db.count("SELECT count(*) FROM oppty_router.assignments").await;
    let events = db.count("SELECT count(*) FROM oppty_router.events").await;
    let owners: String = db
        .client
        .query_one("SELECT md5(string_agg(\"oppId\"::text || ':' || coalesce(\"accountOwnerId\"::text, '-'), ',' ORDER BY \"oppId\")) AS h FROM crm.opportunity", &[])
        .await
        .expect("owners")
        .get("h");
    (audit, events, owners)
}

fn member<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["members"].as_array().expect("members").iter().find(|m| m["id"] == id).unwrap_or(&Value::Null)
}

/// The page rendered by headless Chromium at 1 device pixel per CSS pixel, as RGB rows.
fn screenshot(page: &Path, dir: &Path) -> (u32, u32, Vec<u8>) {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: `apt-get install chromium` (`cargo xtask test` does)"
    );
    let png = dir.join("page.png");
    let status = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--force-color-profile=srgb",
            "--window-size=1200,4000",
        ])
        .arg(format!("--user-data-dir={}", dir.join("chromium").display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(png.exists(), "no screenshot: {}", String::from_utf8_lossy(&status.stderr));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).expect("open png")));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let step = info.color_type.samples();
    let rgb = buf[..info.buffer_size()].chunks(step).flat_map(|p| [p[0], p[1], p[2]]).collect();
    (info.width, info.height, rgb)
}

fn rgb(hex: &str) -> [u8; 3] {
    let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).expect("colour");
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

/// The horizontal bars of one colour, top to bottom: their lengths in pixels. A bar is a block
/// of rows `BAR_HEIGHT` high, each with the same run of that colour (the key's swatch is not).
fn bars_of(shot: &(u32, u32, Vec<u8>), colour: &str) -> Vec<u32> {
    let (w, h, px) = shot;
    let c = rgb(colour);
    let run_in = |y: u32| -> Option<(u32, u32)> {
        let row = &px[(y * w * 3) as usize..((y + 1) * w * 3) as usize];
        let xs: Vec<u32> = (0..*w).filter(|x| row[(*x * 3) as usize..(*x * 3 + 3) as usize] == c).collect();
        Some((*xs.first()?, xs.len() as u32))
    };
    let mut bars = Vec::new();
    let mut y = 0;
    while y < *h {
        let Some(run) = run_in(y) else {
            y += 1;
            continue;
        };
        let mut rows = 1;
        while y + rows < *h && run_in(y + rows) == Some(run) {
            rows += 1;
        }
        if rows == html::BAR_HEIGHT {
            bars.push(run.1);
        }
        y += rows;
    }
    bars
}

/// The vertical columns of one colour standing on the chart's baseline, left to right: their
/// heights in pixels (the key's swatch, above the chart, is not one of them).
fn columns_of(shot: &(u32, u32, Vec<u8>), colour: &str) -> Vec<u32> {
    let (w, h, px) = shot;
    let c = rgb(colour);
    let at = |x: u32, y: u32| px[((y * w + x) * 3) as usize..((y * w + x) * 3 + 3) as usize] == c;
    // Every vertical run of the colour: (x, top, bottom).
    let mut runs = Vec::new();
    for x in 0..*w {
        let mut y = 0;
        while y < *h {
            if at(x, y) {
                let top = y;
                while y < *h && at(x, y) {
                    y += 1;
                }
                runs.push((x, top, y));
            }
            y += 1;
        }
    }
    let Some(base) = runs.iter().map(|r| r.2).max() else { return Vec::new() };
    let mut columns: Vec<(u32, u32, u32)> = Vec::new(); // (last x, top, height)
    for (x, top, bottom) in runs.into_iter().filter(|r| r.2 == base) {
        match columns.last_mut() {
            Some(last) if last.0 + 1 == x && last.1 == top => last.0 = x,
            _ => columns.push((x, top, bottom - top)),
        }
    }
    columns.into_iter().map(|c| c.2).collect()
}

/// What a chart's bars must measure: every non-zero value, before then after, row by row.
fn expected_bars(values: &[(i64, Option<i64>)]) -> (Vec<u32>, Vec<u32>) {
    let max = values.iter().map(|(b, a)| (*b).max(a.unwrap_or(0))).max().unwrap_or(0);
    let len = |v: i64| html::length(v, max, html::BAR_SPAN);
    let before = values.iter().map(|(b, _)| len(*b)).filter(|l| *l > 0).collect();
    let after = values.iter().filter_map(|(_, a)| a.map(len)).filter(|l| *l > 0).collect();
    (before, after)
}

/// Each measured bar within a pixel of what the numbers say.
fn assert_bars(measured: &[u32], expected: &[u32], what: &str) {
    assert!(!expected.is_empty(), "{what}: nothing to measure");
    assert_eq!(measured.len(), expected.len(), "{what}: bars measured {measured:?}, expected {expected:?}");
    for (m, e) in measured.iter().zip(expected) {
        assert!(
            m.abs_diff(*e) <= 1,
            "{what}: a bar of {m} px where the numbers say {e} px: {measured:?} vs {expected:?}"
        );
    }
}

fn pair(v: &Value) -> (i64, Option<i64>) {
    (v["before"].as_i64().expect("before"), v["after"].as_i64())
}

/// The load and rule charts of `page`, measured on its screenshot against `report`.
fn check_charts(report: &Value, page: &Path, dir: &Path) {
    let shot = screenshot(page, dir);
    let loads: Vec<(i64, Option<i64>)> =
        report["members"].as_array().expect("members").iter().map(|m| pair(&m["load"])).collect();
    let rules: Vec<(i64, Option<i64>)> =
        report["rules_used"].as_array().expect("rules").iter().map(|r| pair(&r["assigned"])).collect();
    for (chart, values) in [(&html::LOAD, &loads), (&html::RULES, &rules)] {
        let (before, after) = expected_bars(values);
        assert_bars(&bars_of(&shot, chart.before), &before, &format!("{} chart, now", chart.id));
        if report["compares"] == true {
            assert_bars(&bars_of(&shot, chart.after), &after, &format!("{} chart, candidate rules", chart.id));
        }
    }
    let fallbacks: Vec<(i64, Option<i64>)> =
        report["fallbacks_over_time"].as_array().expect("buckets").iter().map(|b| pair(&b["fallbacks"])).collect();
    let chart = &html::FALLBACKS;
    let max = fallbacks.iter().map(|(b, a)| (*b).max(a.unwrap_or(0))).max().unwrap_or(0);
    let len = |v: i64| html::length(v, max, html::COLUMN_SPAN);
    let before: Vec<u32> = fallbacks.iter().map(|(b, _)| len(*b)).filter(|l| *l > 0).collect();
    assert_bars(&columns_of(&shot, chart.before), &before, "fallbacks chart, now");
    if report["compares"] == true {
        let after: Vec<u32> = fallbacks.iter().filter_map(|(_, a)| a.map(len)).filter(|l| *l > 0).collect();
        if !after.is_empty() {
            assert_bars(&columns_of(&shot, chart.after), &after, "fallbacks chart, candidate rules");
        }
    }
}

/// The daemon routes a morning's retail opportunities; the test's CRM then holds what a real one
/// would: owners, the audit, loads.
async fn a_routed_morning() -> TestDb {
    let db = crm_db("simulate").await;
    db.install().await;
    devkit::demo::insert_opportunities(&db.client, 90, "retail", 5, 0).await.expect("opportunities");
    let daemon = db.start();
    db.wait_drained(Duration::from_secs(30)).await;
    daemon.stop().await;
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulating_binh_on_leave_moves_each_of_her_opportunities_to_a_colleague_writes_nothing_and_draws_the_right_bars(
) {
    let db = a_routed_morning().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(dir.path(), &db.cfg.database.url, "");
    let past = first_decisions(&db).await;
    let hers = past.iter().filter(|p| p.2.as_deref() == Some("102")).count();
    assert!(hers > 0, "Bình received work this morning: {past:?}");
    let before = fingerprint(&db).await;

    let candidate = with_binh_on_leave(dir.path(), false);
    let page = dir.path().join("simulate.html");
    let args = ["simulate", "--rules", candidate.to_str().expect("path"), "--since", "1h", "--json", "--html"];
    let (code, out, err) = cli(&config, &[&args[..], &[page.to_str().expect("page")]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON report");
    assert_eq!(fingerprint(&db).await, before, "simulate writes nothing");

    assert_eq!(report["opportunities"], past.len(), "every opportunity of the window replayed");
    let outcome = |o: &str| past.iter().filter(|p| p.1 == o).count();
    assert_eq!(report["outcomes"]["before"]["rule"], outcome("rule"));
    assert_eq!(report["outcomes"]["before"]["fallback"], outcome("fallback"));
    assert_eq!(member(&report, "102")["assigned"]["before"], hers);
    assert_eq!(member(&report, "102")["assigned"]["after"], 0, "on leave, she gets nothing");
    let changes = report["changes"].as_array().expect("changes");
    let from_her: Vec<&Value> = changes.iter().filter(|c| c["before"] == "102").collect();
    assert_eq!(from_her.len(), hers, "each of hers changes owner");
    for c in &from_her {
        let reason = c["reason"].as_str().expect("reason");
        assert!(c["after"] != "102" && reason.contains("102 paused"), "why is given: {c}");
    }
    let hanoi = report["teams"].as_array().expect("teams").iter().find(|t| t["id"] == "hanoi-retail").expect("team");
    assert!(hanoi["fairness"]["after"]["gini"].is_number(), "fairness per team: {hanoi}");
    check_charts(&report, &page, dir.path());
    // As text, people are named: in the team sections and in the changes with their reasons.
    let (code, text, _) = cli(&config, &["simulate", "--rules", candidate.to_str().expect("path"), "--since", "1h"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("Trần Thị Bình (102) → "), "{text}");
    let picks: Vec<&str> = text.split("picked ").skip(1).map(|p| p.split(':').next().unwrap_or("")).collect();
    assert!(!picks.is_empty() && picks.iter().all(|p| p.contains(" (")), "each pick named: {picks:?}");
    assert!(text.contains("(expected "), "each member's entitlement beside what they got: {text}");

    // The same edit with the files' tests still in it: refused, saying which test, nothing replayed.
    let tested = with_binh_on_leave(dir.path(), true);
    let (code, out, err) = cli(&config, &["simulate", "--rules", tested.to_str().expect("path")]);
    assert_eq!(code, Some(78), "a candidate whose tests fail is refused: {out}{err}");
    assert!(err.contains("102") && err.contains("test"), "the failing test is named: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_counts_what_the_audit_holds_per_member_and_outcome_and_draws_it() {
    let db = a_routed_morning().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(dir.path(), &db.cfg.database.url, "");
    let page = dir.path().join("report.html");
    let (code, out, err) = cli(&config, &["report", "--since", "1h", "--json", "--html", page.to_str().expect("page")]);
    assert_eq!(code, Some(0), "{out}{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON report");
    let past = first_decisions(&db).await;
    assert_eq!(report["opportunities"], past.len());
    assert_eq!(report["compares"], false);
    for id in ["101", "102", "103", "201", "100"] {
        let n = past.iter().filter(|p| p.2.as_deref() == Some(id)).count();
        assert_eq!(member(&report, id)["assigned"]["before"], n, "{id}'s count is the audit's");
    }
    let fallbacks = past.iter().filter(|p| p.1 == "fallback").count();
    let over_time: u64 = report["fallbacks_over_time"]
        .as_array()
        .expect("buckets")
        .iter()
        .filter_map(|b| b["fallbacks"]["before"].as_u64())
        .sum();
    assert_eq!(over_time, fallbacks as u64, "the fallback chart holds every fallback");
    check_charts(&report, &page, dir.path());
    let (code, text, _) = cli(&config, &["report", "--since", "1h"]);
    assert_eq!(code, Some(0));
    assert!(text.contains("hanoi-retail") && text.contains("Gini"), "{text}");
}

/// A copy of the rules where Đà Nẵng (DN) is covered by the Hà Nội team instead of its own.
fn with_danang_moved_to_hanoi(dir: &Path) -> PathBuf {
    let rules = dir.join("moved");
    copy_rules(&rules_dir(), &rules);
    let teams = rules.join("02-teams.toml");
    let text = std::fs::read_to_string(&teams).expect("read");
    let text = text.replacen("territories = [\"HN\"]", "territories = [\"HN\", \"DN\"]", 1).replacen(
        "territories = [\"DN\"]",
        "territories = []",
        1,
    );
    std::fs::write(&teams, text).expect("edit");
    for f in ["10-retail.toml", "30-wealth.toml"] {
        let text = std::fs::read_to_string(rules.join(f)).expect("read");
        let cut = text.find("[[test]]").unwrap_or(text.len());
        std::fs::write(rules.join(f), &text[..cut]).expect("write");
    }
    rules
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_replays_what_the_router_saw_so_the_rules_in_force_change_nothing_and_a_moved_territory_moves_exactly_its_own(
) {
    let db = a_routed_morning().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(dir.path(), &db.cfg.database.url, "");
    // Since then the router's own writes are CRM data (every deal has an owner and a team, which
    // the sticky fields read), and the CRM moved every account to another province: none of it
    // is what the router saw.
    db.client.batch_execute("UPDATE crm.account SET \"provinceCode\" = 'CT'").await.expect("the CRM moves on");
    let routed: Vec<(String, Option<String>, Option<String>)> = db
        .client
        .query(
            "SELECT opp_id, team_id, rule_id FROM oppty_router.assignments WHERE outcome <> 'reclaim' ORDER BY id",
            &[],
        )
        .await
        .expect("audit")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();

    let (code, out, err) = cli(&config, &["simulate", "--in-force", "--since", "1h", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON report");
    assert_eq!(report["opportunities"], routed.len(), "every decision replayed: {report}");
    assert_eq!(report["changes"], serde_json::json!([]), "the rules in force decide again what they decided");
    // The same files as a candidate (no reload in the window): the same, no change.
    let same = rules_dir();
    let (code, out, err) =
        cli(&config, &["simulate", "--rules", same.to_str().expect("path"), "--since", "1h", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON report");
    assert_eq!(report["changes"], serde_json::json!([]), "unchanged rules as a candidate change nothing");

    let moved = with_danang_moved_to_hanoi(dir.path());
    let (code, out, err) =
        cli(&config, &["simulate", "--rules", moved.to_str().expect("path"), "--since", "1h", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON report");
    let mut expected: Vec<&str> = (routed.iter())
        .filter(|(_, team, rule)| team.as_deref() == Some("danang-retail") && rule.as_deref() == Some("province-team"))
        .map(|(id, _, _)| id.as_str())
        .collect();
    expected.sort_unstable();
    assert!(!expected.is_empty(), "the morning had Đà Nẵng opportunities");
    let changes = report["changes"].as_array().expect("changes");
    let mut got: Vec<&str> = changes.iter().filter_map(|c| c["opp_id"].as_str()).collect();
    got.sort_unstable();
    assert_eq!(got, expected, "exactly the opportunities the province-team rule gave Đà Nẵng move");
    for c in changes {
        assert!(["101", "102"].contains(&c["after"].as_str().unwrap_or("")), "to Hà Nội: {c}");
    }
}
