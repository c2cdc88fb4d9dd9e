//! Reload benchmark (prints figures; `cargo bench --bench reload`): from the save of a rule file to
//! the new rule set in force, through the real watcher, for the 1,000-rule synthetic bank of the
//! engine benchmark. The drain picks a new set up before its next batch.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use oppty_router::config::Config;
use oppty_router::reload::{self, Reloader};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio_util::sync::CancellationToken;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let saves: usize = std::env::var("OPPTY_BENCH_SAVES").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("rules");
    std::fs::create_dir(&dir).expect("mkdir");
    let text = common::bank(&mut SmallRng::seed_from_u64(7));
    std::fs::write(dir.join("bank.json"), &text).expect("write");
    let fields: String = common::FIELDS.iter().map(|f| format!("{f} = \"{f}\"\n")).collect();
    let cfg_text = format!(
        "[database]\nurl = \"host=/nonexistent\"\n[router]\nrules_dir = \"{}\"\n[opportunity]\ntable = \"t\"\nid = \"id\"\nowner = \"owner\"\n[opportunity.fields]\n{fields}",
        dir.display()
    );
    let cfg = Arc::new(Config::parse(&cfg_text, Path::new("bench.toml")).expect("config"));
    let debounce = cfg.router.reload_debounce;
    let engine = oppty_router::load_rules(&cfg).expect("bank compiles");
    let rules = Arc::new(ArcSwap::from_pointee(engine));
    let reloader =
        Arc::new(Reloader::new(cfg.clone(), rules.clone(), Arc::new(ArcSwap::from_pointee(Default::default()))));
    let mut lat = Vec::new();
    rt.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(reload::watch(reloader.clone(), dir.clone(), debounce, shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        for i in 0..saves {
            // An admin's edit: one member renamed; saved by writing a temp file and renaming it
            // over the original, as editors do.
            let edited = text.replacen("{\"id\":\"u0\",", &format!("{{\"id\":\"u0\",\"name\":\"renamed {i}\","), 1);
            assert_ne!(edited, text, "the edit changes the file");
            let before = reloader.latest().hash.clone();
            std::fs::write(dir.join(".bank.json.tmp"), &edited).expect("write temp");
            let saved = Instant::now();
            std::fs::rename(dir.join(".bank.json.tmp"), dir.join("bank.json")).expect("rename");
            while reloader.latest().hash == before {
                assert!(
                    saved.elapsed() < Duration::from_secs(10),
                    "save {i} never took effect: {:?}",
                    reloader.status.load()
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            lat.push(saved.elapsed().as_secs_f64() * 1e3);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        shutdown.cancel();
    });
    lat.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "oppty-router reload benchmark: the 1,000-rule synthetic bank ({:.1} MB of JSON), debounce {debounce:?}",
        text.len() as f64 / 1e6
    );
    println!(
        "save → new rule set offered to the daemon, {} saves: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        lat.len(),
        q(0.5),
        q(0.99),
        q(1.0)
    );
    refusals();
}

/// Refusing a file of many invalid definitions: the time grows with the file, not its square.
fn refusals() {
    for n in [4_000usize, 20_000] {
        let bad_team: String = (0..n)
            .map(|i| format!("[[team]]\nid = \"t{i}\"\nmembers = [\"nobody-{i}\"]\npipelines = [\"p\"]\n\n"))
            .collect();
        let bad_type: String = (0..n)
            .map(|i| format!("[[pipeline]]\nid = \"p{i}\"\n[[pipeline.rule]]\nid = \"r{i}\"\nteam = \"t{i}\"\n\n"))
            .collect();
        for (what, text) in [("unknown members", &bad_team), ("values of the wrong type", &bad_type)] {
            let started = Instant::now();
            let problems = match oppty_router::rules::compile_texts(&[("big.toml", text)], &[]) {
                Ok(_) => 0,
                Err(e) => e.problems.len(),
            };
            println!(
                "refusing {n} invalid definitions ({what}, {:.1} MB): {:.0} ms, {problems} problems",
                text.len() as f64 / 1e6,
                started.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}
