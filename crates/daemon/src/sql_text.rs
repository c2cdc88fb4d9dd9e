//! The SQL ops write in the config, read as PostgreSQL reads it: comments (`--`, nested `/* */`),
//! strings (`'…'` with doubled quotes, `E'…'` with backslash escapes, `$tag$…$tag$`), quoted
//! identifiers (`"…"` with doubled quotes), casts (`::type`) and array slices (`a[1:2]`). Owns
//! turning `:name` parameters into positional ones (`write_back.statement`,
//! `reclaim_statement`), what can be told wrong of the text without a server (`lint`, for
//! `check --offline`), and which columns of the row `o` an expression reads (`columns_of`).
//!
//! It must not change anything else of the text: what the server parses is the statement as
//! written, with each parameter replaced by `($n::text)`. It imports nothing of the crate.

/// Replace `:name` parameters with `($n::text)` (they are all sent as text). Returns the SQL and,
/// for each `$n`, the index in `names` of the value it takes.
pub fn bind_named(sql: &str, names: &[&str]) -> Result<(String, Vec<usize>), String> {
    let b = sql.as_bytes();
    let mut used: Vec<usize> = Vec::new();
    let mut out = String::with_capacity(sql.len() + 16);
    let (mut i, mut brackets) = (0, 0usize);
    while i < b.len() {
        if let Some(end) = quoted_or_comment(sql, i) {
            let end = end.unwrap_or_else(|open| open);
            out.push_str(&sql[i..end]);
            i = end;
            continue;
        }
        match b[i] {
            b'[' => brackets += 1,
            b']' => brackets = brackets.saturating_sub(1),
            b':' if b.get(i + 1) == Some(&b':') => {
                out.push_str("::");
                i += 2;
                continue;
            }
            b':' if brackets == 0 && b.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') => {
                let end = word_end(b, i + 1);
                let name = &sql[i + 1..end];
                let k = names.iter().position(|n| *n == name).ok_or_else(|| {
                    format!(
                        "unknown parameter `:{name}`; use {}",
                        names.iter().map(|n| format!(":{n}")).collect::<Vec<_>>().join(", ")
                    )
                })?;
                let n = used.iter().position(|u| *u == k).unwrap_or_else(|| {
                    used.push(k);
                    used.len() - 1
                });
                out.push_str(&format!("(${}::text)", n + 1));
                i = end;
                continue;
            }
            _ => {}
        }
        let ch = sql[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    Ok((out, used))
}

/// Where a name's characters (`[A-Za-z0-9_]`) starting at `i` end.
fn word_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    i
}

/// Where a span that begins at some point ends: `Ok` where it is closed, `Err(the end of the
/// text)` when it never is.
type SpanEnd = Result<usize, usize>;

/// When a comment, string, quoted identifier or dollar-quoted text begins at `i`: where it ends.
fn quoted_or_comment(sql: &str, i: usize) -> Option<SpanEnd> {
    let b = sql.as_bytes();
    let next = b.get(i + 1).copied();
    let after_word = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
    match b[i] {
        b'-' if next == Some(b'-') => Some(Ok(sql[i..].find('\n').map_or(sql.len(), |n| i + n + 1))),
        b'/' if next == Some(b'*') => Some(block_comment_end(b, i)),
        b'\'' => Some(quote_end(b, i, b'\'', false)),
        b'"' => Some(quote_end(b, i, b'"', false)),
        b'E' | b'e' if next == Some(b'\'') && !after_word => Some(quote_end(b, i + 1, b'\'', true)),
        b'$' if !after_word => dollar_quote_end(sql, i),
        _ => None,
    }
}

/// The end of a nested `/* … */` comment beginning at `i`.
fn block_comment_end(b: &[u8], i: usize) -> SpanEnd {
    let (mut depth, mut j) = (0usize, i);
    while j + 1 < b.len() {
        if b[j] == b'/' && b[j + 1] == b'*' {
            depth += 1;
            j += 2;
        } else if b[j] == b'*' && b[j + 1] == b'/' {
            depth -= 1;
            j += 2;
            if depth == 0 {
                return Ok(j);
            }
        } else {
            j += 1;
        }
    }
    Err(b.len())
}

/// The end of text quoted with `q` beginning at `i` (a doubled `q` stands for one; with
/// `backslash`, `\` escapes the next character, as in `E'…'`).
fn quote_end(b: &[u8], i: usize, q: u8, backslash: bool) -> SpanEnd {
    let mut j = i + 1;
    while j < b.len() {
        let escaped = backslash && b[j] == b'\\';
        if escaped || (b[j] == q && b.get(j + 1) == Some(&q)) {
            j += 2;
        } else if b[j] == q {
            return Ok(j + 1);
        } else {
            j += 1;
        }
    }
    Err(b.len())
}

/// The end of `$tag$ … $tag$` beginning at `i`, when a dollar quote begins there (`$1`, a
/// positional parameter, is not one).
fn dollar_quote_end(sql: &str, i: usize) -> Option<SpanEnd> {
    let b = sql.as_bytes();
    let tag_end = if b.get(i + 1) == Some(&b'$') {
        i + 2
    } else if b.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_') {
        let e = word_end(b, i + 1);
        if b.get(e) != Some(&b'$') {
            return None;
        }
        e + 1
    } else {
        return None;
    };
    let tag = &sql[i..tag_end];
    Some(sql[tag_end..].find(tag).map(|n| tag_end + n + tag.len()).ok_or(sql.len()))
}

/// What can be told wrong of ops-written SQL without a server, in words: a string, quoted name,
/// dollar quote or comment never closed; parentheses that do not pair; and, in an `expression`, a
/// `;` (one expression, not statements). Quotes and comments are read as PostgreSQL reads them.
pub fn lint(sql: &str, expression: bool) -> Vec<String> {
    let b = sql.as_bytes();
    let (mut problems, mut depth, mut i) = (Vec::new(), 0i64, 0);
    while i < b.len() {
        if let Some(end) = quoted_or_comment(sql, i) {
            match end {
                Ok(end) => i = end,
                Err(_) => {
                    problems.push(format!("{} opened at character {} is never closed", span_name(sql, i), i + 1));
                    break;
                }
            }
            continue;
        }
        match b[i] {
            b'(' => depth += 1,
            b')' if depth == 0 => problems.push(format!("`)` at character {} closes nothing", i + 1)),
            b')' => depth -= 1,
            b';' if expression => {
                problems.push(format!("`;` at character {}: write one expression, not statements", i + 1))
            }
            _ => {}
        }
        i += 1;
    }
    if depth > 0 {
        problems.push(format!("{depth} `(` never closed"));
    }
    problems
}

/// A piece of SQL text as the lexer sees it (strings, comments and dollar quotes are dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A name or keyword as written (not folded).
    Word(String),
    /// A quoted name, without its quotes (`""` read as `"`).
    Quoted(String),
    /// Any other character that is not white space.
    Punct(char),
}

impl Token {
    /// Whether this is the keyword `kw` (any letter case).
    pub fn is(&self, kw: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    /// A name as the catalog spells it: a quoted name as written, an unquoted one in lower case.
    pub fn name(&self) -> Option<String> {
        match self {
            Token::Word(w) => Some(w.to_ascii_lowercase()),
            Token::Quoted(q) => Some(q.clone()),
            Token::Punct(_) => None,
        }
    }
}

/// The text's names, keywords and punctuation, in order.
pub fn tokens(sql: &str) -> Vec<Token> {
    let b = sql.as_bytes();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < b.len() {
        if b[i] == b'"' {
            let end = quote_end(b, i, b'"', false).unwrap_or_else(|open| open);
            out.push(Token::Quoted(sql[i + 1..end.saturating_sub(1).max(i + 1)].replace("\"\"", "\"")));
            i = end;
            continue;
        }
        if let Some(end) = quoted_or_comment(sql, i) {
            i = end.unwrap_or_else(|open| open);
            continue;
        }
        if b[i].is_ascii_alphabetic() || b[i] == b'_' || b[i] >= 0x80 {
            let mut e = i;
            while e < b.len() && (b[e].is_ascii_alphanumeric() || b[e] == b'_' || b[e] == b'$' || b[e] >= 0x80) {
                e += 1;
            }
            out.push(Token::Word(sql[i..e].to_string()));
            i = e;
            continue;
        }
        let ch = sql[i..].chars().next().unwrap_or(' ');
        if !ch.is_whitespace() {
            out.push(Token::Punct(ch));
        }
        i += ch.len_utf8();
    }
    out
}

/// What begins at `i`, in words.
fn span_name(sql: &str, i: usize) -> &'static str {
    match sql.as_bytes()[i] {
        b'/' => "a comment `/*`",
        b'"' => "a quoted name `\"`",
        b'$' => "a dollar quote",
        _ => "a string `'`",
    }
}

/// The columns of the row `alias` that ops SQL reads (`alias.col`, `alias."Col"`), outside
/// strings and comments, as the catalog names them (an unquoted name in lower case).
pub fn columns_of(sql: &str, alias: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if let Some(end) = quoted_or_comment(sql, i) {
            i = end.unwrap_or_else(|open| open);
            continue;
        }
        let starts_word = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'.');
        let after = i + alias.len();
        let named = sql.get(i..after).is_some_and(|w| w.eq_ignore_ascii_case(alias));
        if starts_word && named && b.get(after) == Some(&b'.') {
            let col = if b.get(after + 1) == Some(&b'"') {
                let end = quote_end(b, after + 1, b'"', false).unwrap_or_else(|open| open);
                sql[after + 2..end.saturating_sub(1).max(after + 2)].replace("\"\"", "\"")
            } else {
                sql[after + 1..word_end(b, after + 1)].to_ascii_lowercase()
            };
            if !col.is_empty() && !out.contains(&col) {
                out.push(col);
            }
            i = after + 1;
            continue;
        }
        i += sql[i..].chars().next().map_or(1, char::len_utf8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &["opportunity_id", "owner", "team", "previous_owner"];

    #[test]
    fn what_can_be_caught_without_a_server_is_said_in_words() {
        assert!(lint("o.a = 'x' AND (o.b IS NULL)", true).is_empty());
        assert!(lint("o.note = 'a;b' -- ; in a comment\n", true).is_empty());
        let cases = [
            ("o.a = 'it''s", "a string `'` opened at character 7 is never closed"),
            ("o.\"a = 1", "a quoted name `\"` opened at character 3 is never closed"),
            ("/* a /* b */ o.a", "a comment `/*` opened at character 1 is never closed"),
            ("$x$ a", "a dollar quote opened at character 1 is never closed"),
            ("(o.a = 1", "1 `(` never closed"),
            ("o.a = 1)", "`)` at character 8 closes nothing"),
            ("true; drop table x", "`;` at character 5: write one expression, not statements"),
        ];
        for (sql, want) in cases {
            assert_eq!(lint(sql, true), vec![want.to_string()], "{sql}");
        }
        assert!(lint("UPDATE t SET a = 1;", false).is_empty());
    }

    #[test]
    fn the_columns_an_expression_reads_are_named_as_the_catalog_names_them() {
        let sql = "o.\"ownerId\" IS NULL AND coalesce(o.assigned_to, '[]') = 'o.not_this' AND foo.x AND o.\"ownerId\" <> 1 -- o.nor_this";
        assert_eq!(columns_of(sql, "o"), vec!["ownerId".to_string(), "assigned_to".to_string()]);
        assert_eq!(columns_of("(O.Stage)", "o"), vec!["stage".to_string()]);
    }

    #[test]
    fn tokens_are_names_keywords_and_punctuation_outside_strings_and_comments() {
        let t = tokens("UPDATE crm.\"Deal\" SET note = 'a -- b', \"x\"\"y\" = 1 /* c */ -- d\nRETURNING Nguyễn");
        let want = [
            Token::Word("UPDATE".into()),
            Token::Word("crm".into()),
            Token::Punct('.'),
            Token::Quoted("Deal".into()),
            Token::Word("SET".into()),
            Token::Word("note".into()),
            Token::Punct('='),
            Token::Punct(','),
            Token::Quoted("x\"y".into()),
            Token::Punct('='),
            Token::Punct('1'),
            Token::Word("RETURNING".into()),
            Token::Word("Nguyễn".into()),
        ];
        assert_eq!(t, want);
    }

    #[test]
    fn named_parameters_become_positional_and_casts_survive() {
        let sql = "UPDATE t SET owner = :owner::int, note = 'at :owner' WHERE id = :opportunity_id::uuid";
        assert_eq!(
            bind_named(sql, NAMES).expect("binds"),
            (
                "UPDATE t SET owner = ($1::text)::int, note = 'at :owner' WHERE id = ($2::text)::uuid".to_string(),
                vec![1, 0]
            )
        );
        assert!(bind_named("SELECT :nope", NAMES).expect_err("unknown").contains(":opportunity_id"));
    }

    #[test]
    fn what_postgresql_reads_as_a_comment_a_string_or_a_slice_is_left_as_written() {
        let cases = [
            // An apostrophe in a comment once swallowed the parameters after it.
            (
                "UPDATE t SET o = :owner -- not already in \"Assign To\"'s list\nWHERE id = :opportunity_id",
                "UPDATE t SET o = ($1::text) -- not already in \"Assign To\"'s list\nWHERE id = ($2::text)",
            ),
            (
                "/* :owner /* nested ' */ still :team */ SELECT :owner",
                "/* :owner /* nested ' */ still :team */ SELECT ($1::text)",
            ),
            ("SELECT E'it\\'s :owner', :team", "SELECT E'it\\'s :owner', ($1::text)"),
            ("SELECT 'it''s :owner', \"a\"\":team\", :team", "SELECT 'it''s :owner', \"a\"\":team\", ($1::text)"),
            ("SELECT $q$ :owner ' $q$, $$ :team $$, :owner", "SELECT $q$ :owner ' $q$, $$ :team $$, ($1::text)"),
            ("SELECT a[1:2], b[2:3][1:1], :owner::int[]", "SELECT a[1:2], b[2:3][1:1], ($1::text)::int[]"),
            ("SELECT $1, :owner", "SELECT $1, ($1::text)"),
            ("SELECT 'Nguyễn :owner', :owner", "SELECT 'Nguyễn :owner', ($1::text)"),
        ];
        for (sql, want) in cases {
            assert_eq!(bind_named(sql, NAMES).expect(sql).0, want, "{sql}");
        }
    }
}
