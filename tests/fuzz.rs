//! Hostile input, bounded: rule files mangled at random (from the shipped examples: lines cut,
//! repeated, swapped, values replaced by odd ones), arbitrary text as TOML and JSON, and arbitrary
//! SQL and identifiers for `bind_named` and the identifier parsers. Nothing panics, nothing hangs
//! (each case is killed after a few seconds), every failure is an error with a message. The
//! unbounded runs are the cargo-fuzz targets in `fuzz/` (see BENCHMARKS.md).

use oppty_router::ident::{Ident, TableName};
use oppty_router::rules::compile_texts;
use oppty_router::sql_text::bind_named;
use proptest::prelude::*;

const EXAMPLES: &[(&str, &str)] = &[
    ("00-settings.toml", include_str!("../config/rules/00-settings.toml")),
    ("01-people.toml", include_str!("../config/rules/01-people.toml")),
    ("02-teams.toml", include_str!("../config/rules/02-teams.toml")),
    ("05-tags.toml", include_str!("../config/rules/05-tags.toml")),
    ("10-retail.toml", include_str!("../config/rules/10-retail.toml")),
    ("20-corporate.json", include_str!("../config/rules/20-corporate.json")),
    ("30-wealth.toml", include_str!("../config/rules/30-wealth.toml")),
];

fn fields() -> Vec<String> {
    ["province", "district", "ward", "country", "product", "segment", "score", "source", "amount", "created"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Values an admin (or a corrupted save) might put anywhere.
const ODD: &[&str] = &[
    "\"\"",
    "0",
    "-1",
    "99999999999999999999",
    "1e308",
    "nan",
    "true",
    "[]",
    "{}",
    "[[]]",
    "\"\\u0000\"",
    "\"Hà Nội\"",
    "\"25:99-00:00\"",
    "\"-5m\"",
    "\"999999999999d\"",
    "\"x\\\"y\"",
    "{ territory = \"province\" }",
    "{ all = [] }",
    "{ any = [{ field = \"score\", op = \"between\", value = [] }] }",
    "\"fewest_open\"",
    "\"weighted_round_robin\"",
];

#[derive(Debug, Clone)]
enum Mangle {
    Cut(usize, usize),
    Repeat(usize, usize),
    Swap(usize, usize),
    Value(usize, usize),
    Truncate(usize),
}

fn mangle() -> impl Strategy<Value = Mangle> {
    prop_oneof![
        (any::<usize>(), 1usize..6).prop_map(|(a, n)| Mangle::Cut(a, n)),
        (any::<usize>(), 1usize..30).prop_map(|(a, n)| Mangle::Repeat(a, n)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mangle::Swap(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, v)| Mangle::Value(a, v)),
        any::<usize>().prop_map(Mangle::Truncate),
    ]
}

fn apply(text: &str, m: &Mangle) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        return String::new();
    }
    let n = lines.len();
    match *m {
        Mangle::Cut(a, k) => {
            let a = a % n;
            lines.drain(a..(a + k).min(n));
        }
        Mangle::Repeat(a, k) => {
            let line = lines[a % n].clone();
            for _ in 0..k {
                lines.insert(a % n, line.clone());
            }
        }
        Mangle::Swap(a, b) => lines.swap(a % n, b % n),
        Mangle::Value(a, v) => {
            let l = &mut lines[a % n];
            if let Some(eq) = l.find(['=', ':']) {
                let key = l[..=eq].to_string();
                *l = format!("{key} {}", ODD[v % ODD.len()]);
            }
        }
        Mangle::Truncate(a) => lines.truncate(a % n),
    }
    lines.join("\n")
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 300, timeout: 5_000, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    /// A rule set with its files mangled compiles or is refused with messages; never a panic or
    /// a hang. An error names a file.
    #[test]
    fn mangled_rule_files_are_compiled_or_refused_with_a_message(
        edits in prop::collection::vec((0usize..EXAMPLES.len(), mangle()), 1..8),
    ) {
        let mut files: Vec<(String, String)> = EXAMPLES.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect();
        for (f, m) in &edits {
            files[*f].1 = apply(&files[*f].1, m);
        }
        let refs: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        if let Err(e) = compile_texts(&refs, &fields()) {
            let msg = e.to_string();
            prop_assert!(!msg.trim().is_empty());
            prop_assert!(EXAMPLES.iter().any(|(p, _)| msg.contains(p)), "an error names its file: {msg}");
        }
    }

    /// Arbitrary text as a TOML or a JSON rule file: an error (or, rarely, a set), never a panic.
    #[test]
    fn arbitrary_text_as_a_rule_file_never_panics(text in ".{0,400}", json in any::<bool>()) {
        let name = if json { "x.json" } else { "x.toml" };
        let _ = compile_texts(&[(name, &text)], &fields());
    }

    /// Arbitrary SQL with `:name` parameters: numbered placeholders or an error; the names used
    /// are among those given.
    #[test]
    fn bind_named_never_panics_and_only_binds_known_names(sql in "[ -~:'\"$\\\\\\n]{0,200}") {
        let names = ["id", "owner", "team", "old_owner"];
        if let Ok((out, used)) = bind_named(&sql, &names) {
            prop_assert!(used.iter().all(|i| *i < names.len()), "{used:?}");
            prop_assert!(used.len() <= names.len() && out.len() <= sql.len() * 2 + 8, "{out}");
        }
    }

    /// SQL made of what PostgreSQL reads as comments, strings (doubled quotes, `E''` escapes,
    /// dollar quotes), quoted identifiers, casts and slices, each holding a `:name`, between real
    /// parameters: only the real ones are replaced, everything else stays as written.
    #[test]
    fn only_real_parameters_are_replaced_whatever_surrounds_them(
        toks in prop::collection::vec((0usize..10, 0usize..4), 0..30),
    ) {
        let ns = ["id", "owner", "team", "old_owner"];
        let (mut sql, mut want, mut used) = (String::new(), String::new(), Vec::<usize>::new());
        for (t, k) in toks {
            let n = ns[k];
            let text = match t {
                0 => format!(":{n}"),
                1 => format!("-- it's :{n}\n"),
                2 => format!("/* :{n} /* ' */ :{n} */"),
                3 => format!("'it''s :{n}'"),
                4 => format!("E'it\\'s :{n}'"),
                5 => format!("$t$ :{n} ' $t$"),
                6 => format!("\"a\"\":{n}\""),
                7 => "::int".to_string(),
                8 => "a[1:2]".to_string(),
                _ => "SELECT".to_string(),
            };
            let expected = if t == 0 {
                let pos = used.iter().position(|u| *u == k).unwrap_or_else(|| {
                    used.push(k);
                    used.len() - 1
                });
                format!("(${}::text)", pos + 1)
            } else {
                text.clone()
            };
            sql.push_str(&text);
            sql.push(' ');
            want.push_str(&expected);
            want.push(' ');
        }
        let (out, got) = bind_named(&sql, &ns).expect("binds");
        prop_assert_eq!(out, want);
        prop_assert_eq!(got, used);
    }

    /// Arbitrary identifiers: parsed or refused; a parsed one, quoted, parses back to itself.
    #[test]
    fn identifiers_parse_or_are_refused_and_round_trip_through_quoting(raw in "\\PC{0,40}") {
        if let Ok(id) = Ident::parse(&raw) {
            let again = Ident::parse(&id.quoted()).expect("a quoted identifier parses");
            prop_assert_eq!(again, id);
        }
        let _ = TableName::parse(&raw);
    }
}

/// What the fuzzer once found: a JSON file ending inside an unclosed string whose last character
/// takes two bytes (the parser's position fell inside it). Refused with a position, no panic.
#[test]
fn a_json_rule_file_cut_inside_a_character_is_refused_with_its_position() {
    for text in ["\"¡", "{\"member\": [{\"id\": \"Nguyễ", "\"𹰟", "[[member]]\nname = \"Ng\u{1ec5}"] {
        let name = if text.starts_with('[') { "x.toml" } else { "x.json" };
        let e = compile_texts(&[(name, text)], &fields()).expect_err("refused");
        assert!(e.to_string().contains(&format!("{name}:1:")) || e.to_string().contains(&format!("{name}:2:")), "{e}");
    }
}
