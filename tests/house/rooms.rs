//! What a module must not do, where its code can tell, as rules on the facts syn reads (never a
//! search of the text: a comment naming what a module must not do breaks nothing).

use crate::source::{Call, Facts};

/// One thing a room's code must not hold.
#[derive(Clone, Copy)]
pub enum Never {
    /// A path with these segments in a row (`std::fs` in `std::fs::read`, in `use std::fs`); a
    /// pattern ending in `::` matches only a segment with more after it (`crm::` is a module used,
    /// not a variable named `crm`).
    Path(&'static str),
    /// A function or method called this.
    Call(&'static str),
    /// A method called on a receiver with one of these names.
    Method(&'static [&'static str], &'static str),
    /// A string literal that begins with this word: SQL.
    Sql(&'static str),
    /// A string literal that holds these words anywhere.
    Words(&'static str),
    /// A field read (`x.live`).
    Field(&'static str),
    /// An attribute holding these words (`JsonSchema` in a derive).
    Attr(&'static str),
    /// `.get(0)`, `.try_get(1)`: a row read by position.
    Positional,
}

/// The lines of `facts` where `never` is broken.
pub fn breaches(facts: &Facts, never: Never) -> Vec<usize> {
    match never {
        Never::Path(p) => {
            let open = p.ends_with("::");
            let want: Vec<&str> = p.trim_end_matches("::").split("::").collect();
            let hit = |segs: &[String]| {
                segs.windows(want.len())
                    .enumerate()
                    .any(|(i, w)| w.iter().zip(&want).all(|(a, b)| a == b) && (!open || i + want.len() < segs.len()))
            };
            facts.paths.iter().filter(|(s, _)| hit(s)).map(|(_, l)| *l).collect()
        }
        Never::Call(name) => calls(facts, |c| c.name == name),
        Never::Method(on, name) => {
            calls(facts, |c| c.name == name && c.receiver.as_deref().is_some_and(|r| on.contains(&r)))
        }
        Never::Positional => calls(facts, |c| (c.name == "get" || c.name == "try_get") && c.first_int),
        Never::Sql(word) => strings(facts, |s| {
            s.trim_start().strip_prefix(word).is_some_and(|rest| rest.starts_with(char::is_whitespace))
        }),
        Never::Words(w) => strings(facts, |s| s.contains(w)),
        Never::Field(f) => facts.fields.iter().filter(|(n, _)| n == f).map(|(_, l)| *l).collect(),
        Never::Attr(w) => facts.attrs.iter().filter(|(a, _)| a.contains(w)).map(|(_, l)| *l).collect(),
    }
}

fn calls(facts: &Facts, f: impl Fn(&Call) -> bool) -> Vec<usize> {
    facts.calls.iter().filter(|c| f(c)).map(|c| c.line).collect()
}

fn strings(facts: &Facts, f: impl Fn(&str) -> bool) -> Vec<usize> {
    facts.strings.iter().filter(|(s, _)| f(s)).map(|(_, l)| *l).collect()
}

const ENGINE: &str = "crates/engine/src/";
const RULES: &str = "crates/rules/src/";
const D: &str = "crates/daemon/src/";

/// (files under this path, what their code must not hold, why). The crate graph says the rest:
/// the engine has no runtime, database client or clock; rules have no database (tests `crates`).
pub const ROOMS: &[(&str, &str, Never, &str)] = &[
    (ENGINE, "", Never::Call("now"), "`engine` reads no clock: time is handed in"),
    (ENGINE, "", Never::Path("Instant"), "`engine` reads no clock: time is handed in"),
    (ENGINE, "", Never::Path("SystemTime"), "`engine` reads no clock: time is handed in"),
    (ENGINE, "", Never::Path("std::fs"), "`engine` does no I/O"),
    (ENGINE, "", Never::Path("std::net"), "`engine` does no I/O"),
    (ENGINE, "", Never::Path("std::env"), "`engine` does no I/O"),
    (ENGINE, "", Never::Path("std::io"), "`engine` does no I/O"),
    (ENGINE, "", Never::Call("thread_rng"), "`engine` is handed its randomness"),
    (ENGINE, "", Never::Call("make_rng"), "`engine` is handed its randomness"),
    (ENGINE, "", Never::Path("rand::rng"), "`engine` is handed its randomness"),
    (ENGINE, "", Never::Attr("deny_unknown_fields"), "rule files' serde structs stay in `rules`"),
    (RULES, "", Never::Call("now"), "compiling and the files' tests read no clock (a test's `now` is in the file)"),
    (D, "config", Never::Path("tokio_postgres"), "`config` does not touch the database"),
    (D, "reload/", Never::Path("tokio_postgres"), "`reload` does not touch the database"),
    (D, "drain/shares.rs", Never::Path("tokio_postgres"), "`drain::shares` reads nothing"),
    (D, "drain/shares.rs", Never::Call("route"), "`drain::shares` decides nothing"),
    (D, "reload/people.rs", Never::Path("std::fs"), "`reload::people` reads nothing: both sets are handed in"),
    (D, "status/people.rs", Never::Path("Client"), "`status::people` reads nothing: the set is handed in"),
    (D, "daemon/directory.rs", Never::Field("live"), "the directory refresh never puts a set in force"),
    (D, "daemon/directory.rs", Never::Call("send_replace"), "a directory change goes through the reloader"),
    (D, "status/", Never::Words("INSERT "), "`status` changes nothing"),
    (D, "status/", Never::Words("UPDATE "), "`status` changes nothing"),
    (D, "status/", Never::Words("DELETE "), "`status` changes nothing"),
    (D, "explain.rs", Never::Words("INSERT "), "`explain` changes nothing"),
    (D, "explain.rs", Never::Words("UPDATE "), "`explain` changes nothing"),
    (D, "explain.rs", Never::Words("DELETE "), "`explain` changes nothing"),
    (D, "simulate.rs", Never::Words("INSERT "), "`simulate` writes nothing"),
    (D, "simulate.rs", Never::Words("UPDATE "), "`simulate` writes nothing"),
    (D, "simulate.rs", Never::Words("DELETE "), "`simulate` writes nothing"),
    (D, "drain/", Never::Method(&["r", "row"], "get"), "a daemon path reads rows with `try_get`"),
    (D, "daemon/", Never::Method(&["r", "row"], "get"), "a daemon path reads rows with `try_get`"),
    (D, "drain/", Never::Path("db::connect"), "`drain` does not connect"),
    (D, "drain/", Never::Path("notify::"), "`drain` does not watch files"),
    (D, "drain/", Never::Path("sleep"), "`drain` does not wait but in `drain::rounds`"),
    (RULES, "locate.rs", Never::Call("match_indices"), "positions come from the parser's spans"),
    (RULES, "locate.rs", Never::Method(&["text"], "find"), "positions come from the parser's spans"),
    (D, "store/", Never::Path("crm::"), "`store` holds nothing of the CRM's"),
    (D, "store/", Never::Path("rules::"), "`store` holds nothing from a rule file"),
    (D, "store/", Never::Path("tokio_postgres::Client"), "`store` writes SQL and rows; it does not run them"),
    (D, "report/", Never::Path("tokio_postgres"), "`report` reads no database: it is handed the decisions"),
    (D, "report/", Never::Path("std::fs"), "`report` reads and writes no file: the binary writes the page"),
    (D, "report/", Never::Call("now"), "`report` reads no clock"),
];

/// The one file of a room a rule does not hold for, with the rule's why.
pub const EXCEPTIONS: &[(&str, &str)] =
    &[("crates/daemon/src/drain/rounds.rs", "`drain` does not wait but in `drain::rounds`")];

/// Where the router's SQL may be written: `store` (the router's tables), `crm` (the mapping's
/// statements), `capture` (the trigger bodies), `install` (schema files), `grants` (the probes
/// and scripts), `check` and `admin` (through `store`), and the demo's sample CRM.
pub const SQL_ROOMS: &[&str] = &[
    "crates/daemon/src/store/",
    "crates/daemon/src/crm/",
    "crates/daemon/src/capture.rs",
    "crates/daemon/src/install.rs",
    "crates/daemon/src/grants/",
    "crates/devkit/src/",
];

/// The words a statement of the router's begins with.
pub const SQL_WORDS: &[&str] = &["SELECT", "INSERT", "UPDATE", "DELETE", "WITH"];

/// Where a row may be read by position: the directory queries, whose SQL the admin writes
/// (`directory.*`, documented as "one text column", "two text columns", …).
pub const POSITIONAL_ROWS_ALLOWED: &[&str] =
    &["crates/daemon/src/crm/directory.rs", "crates/daemon/src/crm/territories.rs"];
