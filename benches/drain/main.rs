//! The drain benchmark: `cargo bench --bench drain` (full, minutes) or `-- --quick` (seconds, the
//! numbers meaningless; the test suite runs it so the benchmark cannot rot). Prints one table; see
//! `suite` for what each row measures and BENCHMARKS.md for the figures.

mod suite;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks; nothing to list here
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let quick = std::env::args().any(|a| a == "--quick");
    let opts = if quick { suite::Options::quick() } else { suite::Options::from_env() };
    let table = suite::run(&opts);
    print!("{}", table.render());
}
