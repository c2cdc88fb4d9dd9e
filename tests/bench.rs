//! The drain benchmark in its quick mode (seconds, meaningless numbers): every section runs on a
//! real PostgreSQL and the real binary, so the benchmark cannot rot. The figures are in
//! BENCHMARKS.md (`cargo bench --bench drain`).

#[path = "../benches/drain/suite/mod.rs"]
mod suite;

#[test]
fn the_drain_benchmark_measures_every_row_in_quick_mode() {
    let table = suite::run(&suite::Options::quick());
    for measure in [
        "yardstick",
        "CRM inserts, 8 clients, without",
        "CRM inserts, router installed, daemon busy",
        "CRM inserts, daemon killed while it waited",
        "CRM inserts, every insert NOTIFYs",
        "bare SQL floor",
        "drain of",
        "peak RSS",
        "start-up to READY",
        "latency at 100/s offered, p50",
        "latency at 100/s offered, p99",
        "PL/pgSQL trigger (",
        "graphile-worker",
    ] {
        let v = table.get(measure).unwrap_or_else(|| panic!("no row `{measure}`:{}", table.render()));
        assert!(v.is_finite() && v > 0.0, "`{measure}` measured {v}");
    }
    let over = table.get("PL/pgSQL trigger: assignments past").expect("the trigger's cap violations");
    assert!(over.is_finite() && over.fract() == 0.0 && over.is_sign_positive(), "a count of assignments: {over}");
    let text = table.render();
    assert!(text.contains("× the yardstick"), "the drain is put against the yardstick: {text}");
    assert!(text.contains("× graphile-worker"), "and against graphile-worker: {text}");
}
