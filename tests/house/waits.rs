//! The tests' own house rule: a test waits for what it asserts (`common::wait_until`,
//! `common::holds_within`), never a fixed time. A pause that is the tempo of someone the test
//! plays is `common::pace`; `sleep` itself is called only in `tests/common`.

use std::path::{Path, PathBuf};

use crate::source::{facts, facts_of_text, parse, rel, rust_files, ROOT};

/// The lines of a file that call a `sleep` (`tokio::time::sleep`, `std::thread::sleep`, a method
/// named so); `pg_sleep` inside SQL is text, not a call.
fn sleeps(f: &crate::source::Facts) -> Vec<usize> {
    f.calls.iter().filter(|c| c.name == "sleep").map(|c| c.line).collect()
}

/// Every test and benchmark file but the harness that holds the waits.
fn test_files() -> Vec<PathBuf> {
    let mut files = rust_files(&Path::new(ROOT).join("tests"));
    files.extend(rust_files(&Path::new(ROOT).join("crates")).into_iter().filter(|p| rel(p).contains("/tests/")));
    files.retain(|p| !rel(p).starts_with("tests/common/") && !rel(p).starts_with("tests/house/"));
    files
}

#[test]
fn no_test_waits_a_fixed_time() {
    let files = test_files();
    assert!(files.len() > 20, "only {} test files found: is it reading tests/?", files.len());
    let found: Vec<String> = (files.iter())
        .flat_map(|p| sleeps(&facts(&parse(p))).into_iter().map(move |l| format!("{}:{l}", rel(p))))
        .collect();
    assert!(
        found.is_empty(),
        "a test sleeps: wait for what it asserts with common::wait_until (or holds_within), or, for the tempo \
         of someone the test plays, common::pace:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_sleep_finder_sees_each_kind_of_sleep_and_not_sql_or_a_pace() {
    let sample = "async fn t() {\n\
        tokio::time::sleep(D).await;\n\
        std::thread::sleep(D);\n\
        sleep(D).await;\n\
        pace(D).await;\n\
        db.count(\"SELECT pg_sleep(1)\").await;\n\
        // tokio::time::sleep(D) in a comment\n\
        }";
    assert_eq!(sleeps(&facts_of_text(sample)), [2, 3, 4]);
}
