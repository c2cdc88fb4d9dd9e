//! Engine benchmark on a synthetic bank (prints figures; `cargo bench --bench engine`).
//!
//! 10,000 members, 500 teams, 30 pipelines, 1,000 rules, a four-level territory tree
//! (country › 63 provinces › 700 districts › 10,000 wards). Measures, on one thread: compiling
//! the rule set (JSON text → engine, tests included), the memory it holds, and the time of one
//! decision (p50/p99 over 200,000 decisions with loads updating as they go).

// The one use of `unsafe` in the project: a global allocator that counts live heap bytes, to
// measure the memory a compiled rule set holds. It only forwards to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

mod common;

use chrono::{DateTime, Utc};
use common::bank;
use oppty_router::engine::{Ledger, Opportunity};
use oppty_router::rules::compile_texts;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

const FIELDS: &[&str] =
    &["ward", "district", "province", "score", "segment", "product", "source", "last_owner", "language"];

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let fields: Vec<String> = FIELDS.iter().map(|f| f.to_string()).collect();
    let mut rng = SmallRng::seed_from_u64(7);
    let text = bank(&mut rng);
    println!("oppty-router engine benchmark: 10,000 members, 500 teams, 30 pipelines, 1,000+ rules, 10,000 wards");
    println!("rule file: {:.1} MB of JSON", text.len() as f64 / 1e6);

    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let e = compile_texts(&[("bank.json", &text)], &fields).unwrap_or_else(|e| panic!("{e}"));
        times.push(t.elapsed().as_secs_f64() * 1e3);
        drop(e);
    }
    let before = LIVE.load(Ordering::Relaxed);
    let engine = compile_texts(&[("bank.json", &text)], &fields).unwrap_or_else(|e| panic!("{e}"));
    let held = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    times.sort_by(|a, b| a.total_cmp(b));
    let rules: usize = engine.pipelines.values().map(|p| p.rules.len()).sum();
    println!("compile (parse + check + index, {rules} rules): median {:.0} ms, best {:.0} ms", times[2], times[0]);
    println!(
        "memory held by the compiled rule set and its indexes: {:.1} MB (live heap after compiling, parse buffers freed); process RSS {:.0} MB",
        held as f64 / 1e6,
        rss_kib() as f64 / 1024.0
    );

    let mut ledger = Ledger::for_engine(&engine, None);
    for (i, l) in ledger.open.iter_mut().enumerate() {
        *l = (i % 17) as i64;
    }
    let now: DateTime<Utc> = DateTime::parse_from_rfc3339("2030-01-07T03:00:00Z").expect("time").with_timezone(&Utc);
    let segments = ["mass", "affluent", "priority", "sme", "corporate"];
    let products = ["HOME", "AUTO", "CARD", "SAVE", "TRADE", "CASH", "FX", "INS"];
    let opps: Vec<(String, Vec<Option<String>>)> = (0..10_000)
        .map(|i| {
            let w = rng.random_range(0..10_000);
            let d = w % 700;
            let p = d % 63;
            (
                format!("pl{}", rng.random_range(0..30)),
                vec![
                    Some(format!("W{w}")),
                    Some(format!("D{d}")),
                    Some(format!("P{p}")),
                    Some(rng.random_range(0..200).to_string()),
                    Some(segments[i % 5].to_string()),
                    Some(products[rng.random_range(0..8)].to_string()),
                    Some(["web", "instagram", "branch"][i % 3].to_string()),
                    if i % 4 == 0 { Some(format!("u{}", rng.random_range(0..10_000))) } else { None },
                    Some(["vi", "en"][i % 2].to_string()),
                ],
            )
        })
        .collect();
    let mut pick_rng = SmallRng::seed_from_u64(1);
    let mut lat = Vec::with_capacity(200_000);
    let mut outcomes = std::collections::HashMap::new();
    for round in 0..20 {
        // Loads keep growing as decisions are made; trim them back each round like closings do.
        for l in ledger.open.iter_mut() {
            *l = (*l).min(15);
        }
        for q in ledger.recent.iter_mut() {
            q.clear();
        }
        for (pipeline, fields) in &opps {
            let opp = Opportunity {
                id: "x",
                pipeline: Some(pipeline),
                fields,
                waiting_since: now,
                exclude: &[],
                only_team: None,
            };
            let t = Instant::now();
            let d = engine.route(&opp, &mut ledger, now, &mut pick_rng);
            lat.push(t.elapsed().as_nanos() as u64);
            if round == 0 {
                *outcomes.entry(d.outcome.as_str()).or_insert(0usize) += 1;
            }
            std::hint::black_box(&d);
        }
    }
    lat.sort_unstable();
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    println!(
        "decision (route + explanation), {} decisions: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
        lat.len(),
        q(0.5),
        q(0.99),
        q(0.999),
        q(1.0)
    );
    let mut o: Vec<_> = outcomes.into_iter().collect();
    o.sort();
    println!("outcomes of the first 10,000: {o:?}");
}
