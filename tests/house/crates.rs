//! The crate graph's must-nots, read from the manifests: what each crate may depend on.

use std::path::Path;

use crate::source::ROOT;

pub fn manifest(rel: &str) -> toml::Table {
    let text = std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    text.parse().unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The names a crate's manifest depends on (normal dependencies only), by the name it uses.
pub fn dependencies(rel: &str) -> Vec<String> {
    let m = manifest(rel);
    m.get("dependencies").and_then(|d| d.as_table()).map(|d| d.keys().cloned().collect()).unwrap_or_default()
}

/// The engine's allowed dependencies: time arithmetic (no clock), randomness it is handed,
/// hashing, serde. Anything else is a change to the map, decided in ARCHITECTURE.md first.
pub const ENGINE_MAY_USE: &[&str] = &["chrono", "chrono-tz", "humantime", "rand", "rustc-hash", "serde", "serde_json"];

/// What no crate but the daemon's and the demo's may use: a runtime, a database client, a watcher.
pub const IO_CRATES: &[&str] = &[
    "tokio",
    "tokio-postgres",
    "tokio-util",
    "postgres",
    "notify",
    "futures-util",
    "rustls",
    "metrics-exporter-prometheus",
];
