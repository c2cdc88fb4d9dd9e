//! The house rules, checked on the source itself: functions stay short, each module keeps to its
//! room (what ARCHITECTURE.md says it must not do, where a look at the source can tell), every
//! invariant names the test that enforces it, and the lint policy is in force.

mod crates;
mod graph;
mod rooms;
mod source;
mod waits;

use std::path::Path;

use rooms::{breaches, Never, EXCEPTIONS, POSITIONAL_ROWS_ALLOWED, ROOMS, SQL_ROOMS, SQL_WORDS};
use source::{facts, facts_of_text, parse, product_files, rel, Functions, ROOT};
use syn::visit::Visit;

/// The longest a function in the product may be, in lines (DEVELOPERS.md: "well under ~100").
const MAX_FUNCTION_LINES: usize = 100;

#[test]
fn no_function_in_src_is_over_100_lines() {
    let mut long = Vec::new();
    let mut seen = 0;
    for path in product_files() {
        let mut v = Functions::default();
        v.visit_file(&parse(&path));
        seen += v.found.len();
        for (name, line, len) in v.found {
            if len > MAX_FUNCTION_LINES {
                long.push(format!("{}:{line}: `{name}` is {len} lines", rel(&path)));
            }
        }
    }
    assert!(seen > 500, "the visitor found only {seen} functions: is it reading the source?");
    assert!(long.is_empty(), "functions over {MAX_FUNCTION_LINES} lines (split them into steps):\n{}", long.join("\n"));
}

/// The longest a room may be, in lines (issue #29: "no room over ~600 lines"; split before adding).
const MAX_ROOM_LINES: usize = 600;

#[test]
fn no_room_in_src_is_over_600_lines() {
    let long: Vec<String> = (product_files().iter())
        .map(|p| (rel(p), std::fs::read_to_string(p).expect("read").lines().count()))
        .filter(|(_, n)| *n > MAX_ROOM_LINES)
        .map(|(p, n)| format!("{p}: {n} lines"))
        .collect();
    assert!(long.is_empty(), "rooms over {MAX_ROOM_LINES} lines (split them by concern):\n{}", long.join("\n"));
}

/// Every file of a room, with the lines where its code breaks `never`.
fn room_breaches(room: &str, never: Never) -> (usize, Vec<(String, usize)>) {
    let files: Vec<_> = product_files().into_iter().filter(|p| rel(p).starts_with(room)).collect();
    let mut found = Vec::new();
    for path in &files {
        found.extend(breaches(&facts(&parse(path)), never).into_iter().map(|l| (rel(path), l)));
    }
    (files.len(), found)
}

#[test]
fn each_module_keeps_to_its_room() {
    let mut broken = Vec::new();
    for (krate, room, never, why) in ROOMS {
        let room = format!("{krate}{room}");
        let (files, found) = room_breaches(&room, *never);
        assert!(files > 0, "no file under {room}: the table is out of date");
        let allowed = |f: &str| EXCEPTIONS.contains(&(f, *why));
        broken.extend(found.into_iter().filter(|(f, _)| !allowed(f)).map(|(f, l)| format!("{f}:{l}: {why}")));
    }
    assert!(broken.is_empty(), "modules out of their rooms:\n{}", broken.join("\n"));
}

/// The checker itself can fail: each kind of rule finds its breach in a sample, and not in a
/// comment or a look-alike.
#[test]
fn the_room_rules_see_each_kind_of_breach_in_code_and_none_in_comments() {
    let code = r#"
        use std::fs;
        use tokio::time::{sleep, timeout};
        // std::net, Utc::now(), "SELECT 1" in a comment break nothing
        #[derive(schemars::JsonSchema)]
        struct S;
        fn f(row: Row, crm: u32) {
            let _ = Utc::now();
            let _ = row.get(0);
            let _ = format!("SELECT {} FROM t", crm);
            let _ = x.live;
            let _ = crate::crm::fit::check();
        }
        #[cfg(test)]
        mod tests { fn t() { let _ = Utc::now(); } }
    "#;
    let f = facts_of_text(code);
    let cases: &[(Never, usize)] = &[
        (Never::Path("std::fs"), 1),
        (Never::Path("std::net"), 0),
        (Never::Path("tokio::time::sleep"), 1),
        (Never::Path("sleep"), 1),
        (Never::Call("now"), 1),
        (Never::Method(&["row"], "get"), 1),
        (Never::Positional, 1),
        (Never::Sql("SELECT"), 1),
        (Never::Words("FROM t"), 1),
        (Never::Field("live"), 1),
        (Never::Attr("JsonSchema"), 1),
        (Never::Path("crm::"), 1),
    ];
    for (never, lines) in cases {
        let found = breaches(&f, *never);
        assert_eq!(found.len(), *lines, "{found:?}");
    }
    assert_eq!(breaches(&f, Never::Path("std::fs"))[0], 2, "the line of the breach");
}

#[test]
fn rows_are_read_by_column_name() {
    let mut positional = Vec::new();
    for path in product_files() {
        if POSITIONAL_ROWS_ALLOWED.contains(&rel(&path).as_str()) {
            continue;
        }
        let lines = breaches(&facts(&parse(&path)), Never::Positional);
        positional.extend(lines.into_iter().map(|l| format!("{}:{l}", rel(&path))));
    }
    assert!(
        positional.is_empty(),
        "rows read by position (name the column in the SQL and read it by that name, or use `typed_row!`):\n{}",
        positional.join("\n")
    );
}

/// ARCHITECTURE.md: the router's SQL lives in `store`, the mapping's in `crm`, the triggers' in
/// `capture`, the schema's in `install`, the probes' in `grants`; nowhere else.
#[test]
fn sql_is_written_only_where_the_map_says() {
    let mut stray = Vec::new();
    for path in product_files() {
        let r = rel(&path);
        if SQL_ROOMS.iter().any(|room| r.starts_with(room)) {
            continue;
        }
        let f = facts(&parse(&path));
        for word in SQL_WORDS {
            stray.extend(breaches(&f, Never::Sql(word)).into_iter().map(|l| format!("{r}:{l}: {word} …")));
        }
    }
    stray.sort();
    stray.dedup();
    assert!(stray.is_empty(), "SQL written outside its rooms (move it to `store` or `crm`):\n{}", stray.join("\n"));
}

#[test]
fn no_module_imports_in_a_circle() {
    let mut found = Vec::new();
    let mut arrows = 0;
    for root in source::crate_roots() {
        let g = graph::arrows(&root);
        arrows += g.values().map(Vec::len).sum::<usize>();
        found.extend(graph::circles(&g).iter().map(|c| graph::words(&root, c)));
    }
    assert!(arrows > 100, "only {arrows} arrows: is the graph read?");
    assert!(
        found.is_empty(),
        "modules importing each other in a circle (move what both need to a leaf):\n{}",
        found.join("\n")
    );
}

/// The graph reader finds a circle when there is one: two sibling modules naming each other.
#[test]
fn the_circle_finder_finds_a_circle_of_siblings_and_not_a_parent_and_its_child() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
    write("lib.rs", "mod a; mod b; mod c; pub struct Root;");
    write("a.rs", "use crate::b::B; pub struct A;");
    write("b.rs", "use crate::a::A; pub struct B;");
    write("c.rs", "use crate::Root; use super::a::A;");
    let g = graph::arrows(dir.path());
    let circles = graph::circles(&g);
    assert_eq!(circles.len(), 1, "{g:?}");
    assert_eq!(circles[0], vec![vec!["a".to_string()], vec!["b".to_string()]]);
}

/// The crate graph is the map: the engine has no I/O crate and no clock, the rules have no
/// database, the daemon never reaches the demo, and every crate follows the workspace's lints.
#[test]
fn the_crate_graph_enforces_the_maps_must_nots() {
    let engine = crates::dependencies("crates/engine/Cargo.toml");
    let odd: Vec<_> = engine.iter().filter(|d| !crates::ENGINE_MAY_USE.contains(&d.as_str())).collect();
    assert!(odd.is_empty(), "crates/engine depends on {odd:?}: the engine does no I/O (ARCHITECTURE.md)");
    let rules = crates::dependencies("crates/rules/Cargo.toml");
    let io: Vec<_> = rules.iter().filter(|d| crates::IO_CRATES.contains(&d.as_str())).collect();
    assert!(io.is_empty(), "crates/rules depends on {io:?}: nothing from a rule file reaches SQL");
    let daemon = crates::dependencies("crates/daemon/Cargo.toml");
    assert!(!daemon.iter().any(|d| d.contains("devkit")), "the daemon's library must not reach the demo");
    let console = crates::dependencies("crates/console/Cargo.toml");
    assert!(!console.iter().any(|d| d.contains("devkit")), "the console must not reach the demo");
    assert!(
        !console.iter().any(|d| d == "tokio-postgres-rustls" || d == "notify"),
        "the console reads through the daemon's library"
    );
    let root = crates::manifest("Cargo.toml");
    let chrono = &root["workspace"]["dependencies"]["chrono"];
    let features = chrono.get("features").and_then(|f| f.as_array()).cloned().unwrap_or_default();
    assert!(!features.iter().any(|f| f.as_str() == Some("clock")), "the workspace's chrono has no clock: {chrono}");
    let engine_chrono = &crates::manifest("crates/engine/Cargo.toml")["dependencies"]["chrono"];
    assert!(engine_chrono.get("features").is_none(), "the engine adds no chrono feature: {engine_chrono}");
    for m in ["crates/engine", "crates/rules", "crates/daemon", "crates/console", "crates/devkit", "xtask", "."] {
        let t = crates::manifest(&format!("{m}/Cargo.toml"));
        let lints = t.get("lints").and_then(|l| l.get("workspace")).and_then(|w| w.as_bool());
        let own = m == "xtask";
        assert!(lints == Some(true) || own, "{m}/Cargo.toml: `[lints] workspace = true`");
    }
}

/// The source of a test file, for finding its tests by name.
fn test_source(file: &str) -> Option<String> {
    std::fs::read_to_string(Path::new(ROOT).join("tests").join(file)).ok()
}

#[test]
fn every_invariant_names_a_test_that_exists() {
    let text = std::fs::read_to_string(Path::new(ROOT).join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let section = text.split("## Invariants").nth(1).expect("an Invariants section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let bullets: Vec<&str> = section.split("\n- **").skip(1).collect();
    assert!(bullets.len() >= 20, "only {} invariants found", bullets.len());
    let mut wrong = Vec::new();
    for b in &bullets {
        let title = b.split("**").next().unwrap_or(b);
        let Some(refs) = b.split("Enforced by").nth(1) else {
            wrong.push(format!("`{title}`: names no test (\"Enforced by `tests/<file>.rs::<test>`\")"));
            continue;
        };
        let names: Vec<&str> = refs.split('`').skip(1).step_by(2).filter(|r| r.starts_with("tests/")).collect();
        if names.is_empty() {
            wrong.push(format!("`{title}`: \"Enforced by\" names no `tests/<file>.rs::<test>`"));
        }
        for r in names {
            let Some((file, test)) = r.trim_start_matches("tests/").split_once("::") else {
                wrong.push(format!("`{title}`: `{r}` is not `tests/<file>.rs::<test>`"));
                continue;
            };
            let found = test_source(file).is_some_and(|s| s.contains(&format!("fn {test}(")));
            if !found {
                wrong.push(format!("`{title}`: `{r}` does not exist"));
            }
        }
    }
    assert!(wrong.is_empty(), "ARCHITECTURE.md invariants:\n{}", wrong.join("\n"));
}

#[test]
fn the_lint_policy_denies_unwrap_and_ci_fails_on_any_lint_or_format_difference() {
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).expect("Cargo.toml");
    assert!(manifest.contains("unwrap_used = \"deny\""), "Cargo.toml [lints.clippy] must deny unwrap_used");
    let ci = std::fs::read_to_string(Path::new(ROOT).join(".ci/run")).expect(".ci/run");
    assert!(
        ci.contains("cargo clippy --workspace --all-targets --locked -- -D warnings"),
        ".ci/run must run clippy with -D warnings"
    );
    assert!(ci.contains("cargo fmt --all -- --check"), ".ci/run must check formatting");
    for alone in ["oppty-router-engine", "oppty-router-rules"] {
        let line = format!("cargo check --locked -p {alone}\n");
        assert!(ci.contains(&line), ".ci/run must build {alone} on its own (no feature of another crate reaches it)");
    }
    // Never skipped when a tool is missing: installed instead.
    assert!(ci.contains("rustup component add"), ".ci/run must install rustfmt and clippy when missing");
    assert!(!ci.contains("if cargo clippy --version"), ".ci/run must not skip clippy when it is missing");
    assert!(ci.contains("cargo deny --locked check licenses bans sources"), ".ci/run must check the dependencies");
    assert!(Path::new(ROOT).join("deny.toml").is_file(), "deny.toml holds the dependency policy");
}
