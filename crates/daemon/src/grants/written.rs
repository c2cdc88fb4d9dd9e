//! What a statement writes, read from its body as PostgreSQL deparses it (`pg_get_functiondef`
//! of the probe): the columns each `UPDATE … SET` assigns, each `INSERT INTO … (…)` fills, and the
//! tables `DELETE FROM` empties, in CTEs too. The deparsed form is regular (an `INSERT` always
//! lists its columns, no comments), so the rights printed are exactly the columns written, never
//! the ones a `WHERE` or `RETURNING` reads.
//!
//! It reads text only: names are resolved against the catalog by the caller.

use crate::sql_text::{tokens, Token};

/// One write: the operation (`UPDATE`, `INSERT`, `DELETE`), the relation as the body names it
/// (qualified when not on the search path), and the columns written (as the catalog names them;
/// empty for `DELETE`, or an `INSERT` that lists none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub op: &'static str,
    pub relation: String,
    pub columns: Vec<String>,
}

/// Every write of a deparsed statement.
pub fn targets(body: &str) -> Vec<Target> {
    let t = tokens(body);
    let mut out = Vec::new();
    for i in 0..t.len() {
        let found = if t[i].is("UPDATE") {
            update(&t, i + 1)
        } else if t[i].is("INSERT") && t.get(i + 1).is_some_and(|n| n.is("INTO")) {
            insert(&t, i + 2)
        } else if t[i].is("DELETE") && t.get(i + 1).is_some_and(|n| n.is("FROM")) {
            relation(&t, i + 2).map(|(relation, _)| Target { op: "DELETE", relation, columns: Vec::new() })
        } else {
            None
        };
        out.extend(found);
    }
    out
}

/// A relation's name at `i` (`a`, `a.b`, quoted or not): as SQL text, and the index after it.
fn relation(t: &[Token], mut i: usize) -> Option<(String, usize)> {
    if t.get(i).is_some_and(|w| w.is("ONLY")) {
        i += 1;
    }
    let mut parts = Vec::new();
    loop {
        let part = match t.get(i)? {
            Token::Word(w) => w.clone(),
            Token::Quoted(q) => format!("\"{}\"", q.replace('"', "\"\"")),
            Token::Punct(_) => return None,
        };
        parts.push(part);
        i += 1;
        if t.get(i) != Some(&Token::Punct('.')) {
            return Some((parts.join("."), i));
        }
        i += 1;
    }
}

/// `UPDATE rel [AS] [alias] SET a = …, (b, c) = …` from `i`: the columns assigned.
fn update(t: &[Token], i: usize) -> Option<Target> {
    let (relation, mut i) = relation(t, i)?;
    while i < t.len() && !t[i].is("SET") {
        if !(t[i].is("AS") || matches!(t[i], Token::Word(_) | Token::Quoted(_))) {
            return None;
        }
        i += 1;
    }
    if i >= t.len() {
        return None; // `FOR UPDATE OF …`: a lock, not a write
    }
    let mut columns = Vec::new();
    // Between `SET`/`,` and `=`: a target (`a`, `a.field`, `a[1]`, or `(a, b)`); its first name
    // (each first name in parentheses) is the column.
    let (mut depth, mut in_target, mut named) = (0i32, true, false);
    for tok in t.iter().skip(i + 1) {
        match tok {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') if depth == 0 => break,
            Token::Punct(')') => depth -= 1,
            Token::Punct(',') if depth == 0 => (in_target, named) = (true, false),
            Token::Punct(',') if in_target => named = false,
            Token::Punct('=') if depth == 0 => in_target = false,
            Token::Punct(';') => break,
            w if depth == 0 && (w.is("FROM") || w.is("WHERE") || w.is("RETURNING")) => break,
            Token::Word(_) | Token::Quoted(_) if in_target && !named => {
                columns.extend(tok.name());
                named = true;
            }
            _ => {}
        }
    }
    columns.dedup();
    Some(Target { op: "UPDATE", relation, columns })
}

/// `INSERT INTO rel [AS alias] (a, b, …)` from `i`: the columns filled.
fn insert(t: &[Token], i: usize) -> Option<Target> {
    let (relation, mut i) = relation(t, i)?;
    if t.get(i).is_some_and(|w| w.is("AS")) {
        i += 2;
    }
    let mut columns = Vec::new();
    if t.get(i) == Some(&Token::Punct('(')) {
        for tok in &t[i + 1..] {
            match tok {
                Token::Punct(')') => break,
                Token::Word(_) | Token::Quoted(_) => columns.extend(tok.name()),
                _ => {}
            }
        }
    }
    Some(Target { op: "INSERT", relation, columns })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(op: &'static str, relation: &str, columns: &[&str]) -> Target {
        Target { op, relation: relation.into(), columns: columns.iter().map(|c| c.to_string()).collect() }
    }

    #[test]
    fn only_the_columns_written_are_named_never_those_read() {
        // As pg_get_functiondef deparses an ops statement: a CTE updating, an insert after it.
        let body = "CREATE OR REPLACE FUNCTION pg_temp.p1(text, text)\n RETURNS void\n LANGUAGE sql\nBEGIN ATOMIC\n \
            WITH u AS (\n UPDATE crm.\"Deal\" SET \"ownerId\" = ($1)::integer, note = (\"Deal\".note || 'x = y'::text)\n \
            WHERE ((\"Deal\".id = ($2)::integer) AND (\"Deal\".deleted = false))\n RETURNING \"Deal\".id, \"Deal\".name\n )\n \
            INSERT INTO log (opp, who) SELECT u.id, ($1)::integer AS int4 FROM u\n RETURNING log.id;\nEND";
        assert_eq!(
            targets(body),
            vec![target("UPDATE", "crm.\"Deal\"", &["ownerId", "note"]), target("INSERT", "log", &["opp", "who"])]
        );
    }

    #[test]
    fn a_row_lock_is_not_a_write() {
        assert_eq!(targets("SELECT o.id FROM crm.opportunity o FOR NO KEY UPDATE OF o SKIP LOCKED;"), vec![]);
    }

    #[test]
    fn an_alias_a_from_list_and_a_delete_are_read_too() {
        let body = "UPDATE ONLY crm.opportunity o SET \"accountOwnerId\" = (u.owner)::integer, (a, b) = (1, 2), c.f = 3, \"salesTeamId\" = \
            COALESCE((u.team)::integer, o.\"salesTeamId\") FROM unnest($1, $2) u(id, owner) WHERE (o.id = u.id); \
            DELETE FROM crm.queue WHERE (queue.id = 1)";
        assert_eq!(
            targets(body),
            vec![
                target("UPDATE", "crm.opportunity", &["accountOwnerId", "a", "b", "c", "salesTeamId"]),
                target("DELETE", "crm.queue", &[]),
            ]
        );
    }
}
