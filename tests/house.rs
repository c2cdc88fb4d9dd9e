//! The house rules, checked on the source itself: functions stay short, each module keeps to its
//! room (what ARCHITECTURE.md says it must not do, where a look at the source can tell), every
//! invariant names the test that enforces it, and the lint policy is in force.

use std::path::{Path, PathBuf};

use syn::visit::Visit;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The longest a function in `src/` may be, in lines (DEVELOPERS.md: "well under ~100").
const MAX_FUNCTION_LINES: usize = 100;

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every function (free, in an impl, in a trait with a body) with its first line and length.
#[derive(Default)]
struct Functions {
    found: Vec<(String, usize, usize)>,
}

impl Functions {
    fn note(&mut self, name: &syn::Ident, span: proc_macro2::Span) {
        let (start, end) = (span.start().line, span.end().line);
        self.found.push((name.to_string(), start, end + 1 - start));
    }
}

impl<'a> Visit<'a> for Functions {
    fn visit_item_fn(&mut self, f: &'a syn::ItemFn) {
        self.note(&f.sig.ident, syn::spanned::Spanned::span(f));
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'a syn::ImplItemFn) {
        self.note(&f.sig.ident, syn::spanned::Spanned::span(f));
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_trait_item_fn(&mut self, f: &'a syn::TraitItemFn) {
        if f.default.is_some() {
            self.note(&f.sig.ident, syn::spanned::Spanned::span(f));
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

#[test]
fn no_function_in_src_is_over_100_lines() {
    let mut long = Vec::new();
    let mut seen = 0;
    for path in rust_files(&Path::new(ROOT).join("src")) {
        let text = std::fs::read_to_string(&path).expect("read");
        let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut v = Functions::default();
        v.visit_file(&file);
        seen += v.found.len();
        for (name, line, len) in v.found {
            if len > MAX_FUNCTION_LINES {
                let rel = path.strip_prefix(ROOT).unwrap_or(&path).display().to_string();
                long.push(format!("{rel}:{line}: `{name}` is {len} lines"));
            }
        }
    }
    assert!(seen > 500, "the visitor found only {seen} functions: is it reading the source?");
    assert!(long.is_empty(), "functions over {MAX_FUNCTION_LINES} lines (split them into steps):\n{}", long.join("\n"));
}

/// What a module must not do, where its source can tell: (files under `src/`, a text that must
/// not appear in their code, why).
const ROOMS: &[(&str, &str, &str)] = &[
    ("engine/", "::now(", "`engine` reads no clock: time is handed in"),
    ("engine/", "Instant", "`engine` reads no clock: time is handed in"),
    ("engine/", "SystemTime", "`engine` reads no clock: time is handed in"),
    ("engine/", "tokio", "`engine` does no I/O"),
    ("engine/", "std::fs", "`engine` does no I/O"),
    ("engine/", "std::net", "`engine` does no I/O"),
    ("engine/", "std::env", "`engine` does no I/O"),
    ("engine/", "thread_rng", "`engine` is handed its randomness"),
    ("engine/", "make_rng", "`engine` is handed its randomness"),
    ("engine/", "rand::rng()", "`engine` is handed its randomness"),
    ("engine/", "JsonSchema", "rule files' serde structs stay in `rules`; the engine sees compiled types"),
    ("engine/", "deny_unknown_fields", "rule files' serde structs stay in `rules`; the engine sees compiled types"),
    ("rules/", "tokio_postgres", "nothing from a rule file reaches SQL: `rules` has no database"),
    ("rules/", "::now(", "compiling and the files' tests read no clock (a test's `now` is in the file)"),
    ("config.rs", "tokio_postgres", "`config` does not touch the database"),
    ("reload/", "tokio_postgres", "`reload` does not touch the database"),
    ("drain/shares.rs", "tokio_postgres", "`drain::shares` reads nothing: committed decisions are handed in"),
    ("drain/shares.rs", "route(", "`drain::shares` decides nothing"),
    ("reload/people.rs", "std::fs", "`reload::people` reads nothing: both sets are handed in"),
    ("status/people.rs", "Client", "`status::people` reads nothing: the set is handed in"),
    ("daemon/directory.rs", ".live", "the directory refresh never puts a set in force (the session promotes)"),
    ("daemon/directory.rs", "send_replace", "a directory change goes through the reloader like a file edit"),
    ("status/", "INSERT ", "`status` changes nothing"),
    ("status/", "UPDATE ", "`status` changes nothing"),
    ("status/", "DELETE ", "`status` changes nothing"),
    ("explain.rs", "INSERT ", "`explain` changes nothing"),
    ("explain.rs", "UPDATE ", "`explain` changes nothing"),
    ("explain.rs", "DELETE ", "`explain` changes nothing"),
    ("drain/", "r.get(", "a daemon path reads rows with `try_get` (a panic is an outage)"),
    ("drain/", "row.get(", "a daemon path reads rows with `try_get` (a panic is an outage)"),
    ("daemon/", "r.get(", "a daemon path reads rows with `try_get` (a panic is an outage)"),
    ("daemon/", "row.get(", "a daemon path reads rows with `try_get` (a panic is an outage)"),
    ("drain/", "db::connect", "`drain` does not connect"),
    ("drain/", "notify::", "`drain` does not watch files"),
    (
        "drain/mod.rs",
        "tokio::time::sleep",
        "`drain` does not wait but in `drain::rounds` (a connection done with its round waits for the others)",
    ),
    (
        "drain/claims.rs",
        "tokio::time::sleep",
        "`drain` does not wait but in `drain::rounds` (a connection done with its round waits for the others)",
    ),
    (
        "drain/process.rs",
        "tokio::time::sleep",
        "`drain` does not wait but in `drain::rounds` (a connection done with its round waits for the others)",
    ),
    (
        "drain/reclaim.rs",
        "tokio::time::sleep",
        "`drain` does not wait but in `drain::rounds` (a connection done with its round waits for the others)",
    ),
    (
        "drain/crm_count.rs",
        "tokio::time::sleep",
        "`drain` does not wait but in `drain::rounds` (a connection done with its round waits for the others)",
    ),
    (
        "drain/shares.rs",
        "tokio::time::sleep",
        "`drain` does not wait but in `drain::rounds` (a connection done with its round waits for the others)",
    ),
    ("rules/locate.rs", "match_indices", "positions come from the parser's spans, never a text search"),
    ("rules/locate.rs", "text.find", "positions come from the parser's spans, never a text search"),
    ("store/", "crm::", "`store` holds nothing of the CRM's"),
    ("store/", "rules::", "`store` holds nothing from a rule file"),
    ("store/", "tokio_postgres::Client", "`store` writes SQL and rows; it does not run statements"),
    ("drain/", "\"SELECT ", "the router's SQL is `store`'s, the mapping's is `crm`'s"),
    ("drain/", "\"UPDATE ", "the router's SQL is `store`'s, the mapping's is `crm`'s"),
    ("drain/", "\"INSERT ", "the router's SQL is `store`'s, the mapping's is `crm`'s"),
    ("drain/", "\"DELETE ", "the router's SQL is `store`'s, the mapping's is `crm`'s"),
    ("status/", "\"SELECT ", "the router's SQL is `store`'s, the mapping's is `crm`'s"),
    ("report/", "tokio_postgres", "`report` reads no database: it is handed the decisions"),
    ("report/", "std::fs", "`report` reads and writes no file: the binary writes the page"),
    ("report/", "::now(", "`report` reads no clock"),
    ("simulate.rs", "INSERT ", "`simulate` writes nothing"),
    ("simulate.rs", "UPDATE ", "`simulate` writes nothing"),
    ("simulate.rs", "DELETE ", "`simulate` writes nothing"),
    ("simulate.rs", "\"SELECT ", "the router's SQL is `store`'s, the mapping's is `crm`'s"),
];

/// Where a row may be read by position: the directory queries, whose SQL the admin writes
/// (`directory.*`, documented as "one text column", "two text columns", …).
const POSITIONAL_ROWS_ALLOWED: &[&str] = &["crm/directory.rs", "crm/territories.rs"];

#[test]
fn rows_are_read_by_column_name() {
    let src = Path::new(ROOT).join("src");
    let mut positional = Vec::new();
    for path in rust_files(&src) {
        let rel = path.strip_prefix(&src).unwrap_or(&path).to_string_lossy().to_string();
        if POSITIONAL_ROWS_ALLOWED.contains(&rel.as_str()) {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&path).expect("read"));
        for (n, line) in code.lines().enumerate() {
            for call in [".get(", ".try_get("] {
                let hits = line.match_indices(call).map(|(i, _)| i + call.len());
                for at in hits.filter(|at| line[*at..].starts_with(|c: char| c.is_ascii_digit())) {
                    positional.push(format!("src/{rel}:{}:{}: `{}`", n + 1, at, line.trim()));
                }
            }
        }
    }
    assert!(
        positional.is_empty(),
        "rows read by position (name the column in the SQL and read it by that name, or use `typed_row!`):\n{}",
        positional.join("\n")
    );
}

/// The code of a file without its comments (a comment may name what the code must not do).
fn code_of(text: &str) -> String {
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

#[test]
fn each_module_keeps_to_its_room() {
    let src = Path::new(ROOT).join("src");
    let mut broken = Vec::new();
    let mut checked = 0;
    for (room, forbidden, why) in ROOMS {
        let files: Vec<PathBuf> = rust_files(&src)
            .into_iter()
            .filter(|p| p.strip_prefix(&src).is_ok_and(|r| r.to_string_lossy().starts_with(room)))
            .collect();
        assert!(!files.is_empty(), "no file under src/{room}: the table is out of date");
        for path in files {
            checked += 1;
            let code = code_of(&std::fs::read_to_string(&path).expect("read"));
            for (n, line) in code.lines().enumerate() {
                if line.contains(forbidden) {
                    let rel = path.strip_prefix(ROOT).unwrap_or(&path).display();
                    broken.push(format!("{rel}:{}: `{forbidden}`: {why}", n + 1));
                }
            }
        }
    }
    assert!(checked > 30, "only {checked} files checked");
    assert!(broken.is_empty(), "modules out of their rooms:\n{}", broken.join("\n"));
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
    // Never skipped when a tool is missing: installed instead.
    assert!(ci.contains("rustup component add"), ".ci/run must install rustfmt and clippy when missing");
    assert!(!ci.contains("if cargo clippy --version"), ".ci/run must not skip clippy when it is missing");
    assert!(ci.contains("cargo deny --locked check licenses bans sources"), ".ci/run must check the dependencies");
    assert!(Path::new(ROOT).join("deny.toml").is_file(), "deny.toml holds the dependency policy");
}
