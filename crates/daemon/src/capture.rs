//! The capture triggers installed on the CRM's tables, generated from the mapping.
//!
//! Owns the SQL text of the trigger functions and triggers. Every identifier comes quoted from
//! `ident`, every value (unowned placeholders, polymorphic type values, the channel) as an escaped
//! literal; the only SQL fragments are the ops-written `{ sql = … }` links and actors of activity
//! and `[[related]]` tables (the daemon config is ops-owned, and `check` prepares them); nothing
//! from a rule file is spliced in here.
//! The triggers write one event row per change (the truth) and NOTIFY only while the daemon has
//! said it is idle (a hint), and ignore the router's own writes (`oppty_router.origin`).

use crate::config::{ActivityLink, ActivityMap, Config, RelatedMap, RowValue};
use crate::ident::literal;

/// The GUC the daemon sets (`SET LOCAL`) in its own transactions so the triggers skip them.
pub const ORIGIN_SETTING: &str = "oppty_router.origin";

/// Trigger functions run with the rights of their owner (the role that ran `install`, owner of the
/// router's tables), never of whoever writes to the CRM: a CRM role with no rights on the router's
/// schema still inserts its opportunities. The search path is pinned so nothing the caller puts on
/// it can stand in for a function or table the body names (every name in the bodies is qualified).
/// String literals read as written whatever the caller's session says (a legacy CRM's session may
/// run with `standard_conforming_strings` off).
const DEFINER: &str = "SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on";

/// The functions' header: [`DEFINER`], and the zone naive timestamps are written in, so that an
/// activity's time is read the same whatever zone the CRM's session has.
fn definer(cfg: &Config) -> String {
    match &cfg.database.naive_timestamps {
        Some(zone) => format!("{DEFINER} SET TimeZone = {}", literal(zone)),
        None => DEFINER.to_string(),
    }
}

/// The SQL of the daemon config that runs inside the capture functions, by config key: what
/// `install --dry-run` lists before the functions, so that a DBA reads every piece of ops SQL the
/// CRM's writes will execute.
pub fn config_fragments(cfg: &Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(w) = &cfg.opportunity.unowned_when {
        out.push(("opportunity.unowned_when".to_string(), w.clone()));
    }
    for (i, a) in cfg.activities.iter().enumerate() {
        if let ActivityLink::Sql { sql, .. } = &a.link {
            out.push((format!("activity[{i}].opportunity.sql"), sql.clone()));
        }
        if let RowValue::Sql(e) = &a.actor {
            out.push((format!("activity[{i}].actor.sql"), e.clone()));
        }
    }
    for (i, r) in cfg.related.iter().enumerate() {
        if let RowValue::Sql(q) = &r.opportunity {
            out.push((format!("related[{i}].opportunity.sql"), q.clone()));
        }
    }
    out
}

/// Trigger names all start with this, so `uninstall` finds exactly what `install` added.
pub const TRIGGER_PREFIX: &str = "oppty_router_";

/// SQL creating (or replacing) the trigger functions and triggers for this mapping.
pub fn install_sql(cfg: &Config) -> String {
    // The function bodies are dollar-quoted; should a configured name contain the tag, pick one
    // that appears nowhere else.
    let mut n = 0u32;
    loop {
        let tag = if n == 0 { "$oppty$".to_string() } else { format!("$oppty{n}$") };
        let sql = install_sql_with_tag(cfg, &tag);
        let functions = 1 + cfg.activities.len() + cfg.related.len() + usize::from(cfg.opportunity.edited_by.is_some());
        if sql.matches(tag.as_str()).count() == 2 * functions {
            return sql;
        }
        n += 1;
    }
}

/// Which rows the router's own writes are: skipped in the triggers' WHEN clauses, evaluated
/// without calling PL/pgSQL, so the write-back of a batch costs the CRM no function call per row.
fn not_router() -> String {
    format!("current_setting('{ORIGIN_SETTING}', true) IS DISTINCT FROM 'router'")
}

fn install_sql_with_tag(cfg: &Config, tag: &str) -> String {
    let not_router = not_router();
    let mut sql = capture_opportunity(cfg, tag);
    sql.push_str(&opportunity_triggers(cfg));
    sql.push_str(&capture_edit(cfg, tag));
    for (i, a) in cfg.activities.iter().enumerate() {
        sql.push_str(&capture_activity(cfg, i, a, tag));
    }
    for (i, r) in cfg.related.iter().enumerate() {
        sql.push_str(&related_sql(cfg, i, r, tag, &not_router));
    }
    sql
}

/// The opportunity table's capture function: a new or owner-cleared row is queued to route
/// (and wakes the daemon when it is idle); an owner, open-ness or soft-delete change is queued as
/// a change.
fn capture_opportunity(cfg: &Config, tag: &str) -> String {
    let definer = definer(cfg);
    let s = cfg.router.schema.quoted();
    let o = &cfg.opportunity;
    let id = o.id.quoted();
    let owner = o.owner.quoted();
    let channel = literal(cfg.router.channel.as_str());
    let unowned = crate::crm::unowned_pred(cfg, "NEW");
    format!(
        r#"CREATE OR REPLACE FUNCTION {s}.capture_opportunity() RETURNS trigger
LANGUAGE plpgsql {definer} AS {tag}
BEGIN
    IF current_setting('{ORIGIN_SETTING}', true) = 'router' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        INSERT INTO {s}.events (kind, opp_id, old_owner) VALUES ('changed', OLD.{id}::text, OLD.{owner}::text);
        RETURN NULL;
    END IF;
    IF {unowned} THEN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO {s}.events (kind, opp_id) VALUES ('route', NEW.{id}::text);
        ELSIF OLD.{owner} IS DISTINCT FROM NEW.{owner} THEN
            INSERT INTO {s}.events (kind, opp_id, old_owner) VALUES ('route', NEW.{id}::text, OLD.{owner}::text);
        ELSE
            -- Still unowned, and a watched column changed: it may have become routable (reopened,
            -- restored, converted to an opportunity). The daemon routes it if it now is.
            INSERT INTO {s}.events (kind, opp_id) VALUES ('route', NEW.{id}::text);
        END IF;
        IF (SELECT idle AND idle_until > now() FROM {s}.wakeup) THEN
            PERFORM pg_notify({channel}, '');
        END IF;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO {s}.events (kind, opp_id, new_owner) VALUES ('changed', NEW.{id}::text, NEW.{owner}::text);
    ELSE
        INSERT INTO {s}.events (kind, opp_id, old_owner, new_owner)
        VALUES ('changed', NEW.{id}::text, OLD.{owner}::text, NEW.{owner}::text);
    END IF;
    RETURN NULL;
END
{tag};
REVOKE ALL ON FUNCTION {s}.capture_opportunity() FROM PUBLIC;
"#
    )
}

/// The opportunity table's triggers: inserts and deletes, and updates of the owner or a watched
/// column.
fn opportunity_triggers(cfg: &Config) -> String {
    let s = cfg.router.schema.quoted();
    let o = &cfg.opportunity;
    let table = o.table.quoted();
    let not_router = not_router();
    let mut watched = vec![o.owner.clone()];
    for c in &o.watch_columns {
        if !watched.contains(c) {
            watched.push(c.clone());
        }
    }
    let of_cols = watched.iter().map(|c| c.quoted()).collect::<Vec<_>>().join(", ");
    let when = (watched.iter())
        .map(|c| format!("OLD.{q} IS DISTINCT FROM NEW.{q}", q = c.quoted()))
        .collect::<Vec<_>>()
        .join(" OR ");
    format!(
        "CREATE TRIGGER {TRIGGER_PREFIX}capture AFTER INSERT OR DELETE ON {table}\n    \
         FOR EACH ROW WHEN ({not_router}) EXECUTE FUNCTION {s}.capture_opportunity();\n\
         CREATE TRIGGER {TRIGGER_PREFIX}capture_update AFTER UPDATE OF {of_cols} ON {table}\n    \
         FOR EACH ROW WHEN ({not_router} AND ({when})) EXECUTE FUNCTION {s}.capture_opportunity();\n"
    )
}

/// An edit by the owner (the CRM's "last changed by" column names the owner): an interaction
/// for reclaim rules that count owner edits. Any update counts, whatever columns it changes.
fn capture_edit(cfg: &Config, tag: &str) -> String {
    let Some(by) = &cfg.opportunity.edited_by else { return String::new() };
    let definer = definer(cfg);
    let s = cfg.router.schema.quoted();
    let o = &cfg.opportunity;
    let (table, id, owner) = (o.table.quoted(), o.id.quoted(), o.owner.quoted());
    let not_router = not_router();
    let by = by.quoted();
    format!(
        r#"CREATE OR REPLACE FUNCTION {s}.capture_edit() RETURNS trigger
LANGUAGE plpgsql {definer} AS {tag}
BEGIN
    INSERT INTO {s}.events (kind, opp_id, actor) VALUES ('edit', NEW.{id}::text, NEW.{by}::text);
    RETURN NULL;
END
{tag};
REVOKE ALL ON FUNCTION {s}.capture_edit() FROM PUBLIC;
CREATE TRIGGER {TRIGGER_PREFIX}capture_edit AFTER UPDATE ON {table}
    FOR EACH ROW WHEN ({not_router} AND NEW.{by} IS NOT NULL AND NEW.{by}::text = NEW.{owner}::text)
    EXECUTE FUNCTION {s}.capture_edit();
"#
    )
}

/// An activity table's capture function and trigger: a new row is an interaction.
fn capture_activity(cfg: &Config, i: usize, a: &ActivityMap, tag: &str) -> String {
    let definer = definer(cfg);
    let s = cfg.router.schema.quoted();
    let not_router = not_router();
    let (insert, when) = activity_insert(&s, a);
    let atable = a.table.quoted();
    format!(
        r#"CREATE OR REPLACE FUNCTION {s}.capture_activity_{i}() RETURNS trigger
LANGUAGE plpgsql {definer} AS {tag}
BEGIN
    {insert}
    RETURN NULL;
END
{tag};
REVOKE ALL ON FUNCTION {s}.capture_activity_{i}() FROM PUBLIC;
CREATE TRIGGER {TRIGGER_PREFIX}activity_{i} AFTER INSERT ON {atable}
    FOR EACH ROW WHEN ({not_router}{when}) EXECUTE FUNCTION {s}.capture_activity_{i}();
"#
    )
}

/// An activity's event insert, and the trigger's extra WHEN conditions. Plain columns take the
/// fast path (one VALUES row); an SQL link or actor reads the row as `r`.
fn activity_insert(s: &str, a: &ActivityMap) -> (String, String) {
    let at_of = |row: &str| {
        a.at.as_ref()
            .map(|c| format!("{row}.{}::timestamptz", c.quoted()))
            .unwrap_or_else(|| "clock_timestamp()".into())
    };
    let filter = |col: &crate::ident::Ident, value: &str| format!(" AND NEW.{} = {}", col.quoted(), literal(value));
    match (&a.link, &a.actor) {
        (ActivityLink::Column(link) | ActivityLink::Polymorphic { id_column: link, .. }, RowValue::Column(actor)) => {
            let when = match &a.link {
                ActivityLink::Polymorphic { type_column, type_value, .. } => filter(type_column, type_value),
                _ => String::new(),
            };
            (
                format!(
                    "INSERT INTO {s}.events (kind, opp_id, actor, at) VALUES ('activity', NEW.{l}::text, NEW.{}::text, {});",
                    actor.quoted(),
                    at_of("NEW"),
                    l = link.quoted()
                ),
                format!(" AND NEW.{} IS NOT NULL{when}", link.quoted()),
            )
        }
        (link, actor) => {
            let (ids, when) = match link {
                ActivityLink::Column(c) => (format!("SELECT r.{}", c.quoted()), String::new()),
                ActivityLink::Polymorphic { type_column, type_value, id_column } => {
                    (format!("SELECT r.{}", id_column.quoted()), filter(type_column, type_value))
                }
                ActivityLink::Sql { sql, filter: f } => {
                    (sql.clone(), f.as_ref().map(|(c, v)| filter(c, v)).unwrap_or_default())
                }
            };
            let actor = match actor {
                RowValue::Column(c) => format!("r.{}::text", c.quoted()),
                RowValue::Sql(e) => format!("({e})::text"),
            };
            (
                format!(
                    "INSERT INTO {s}.events (kind, opp_id, actor, at)\n        SELECT 'activity', q.id::text, {actor}, {} \
                     FROM (SELECT NEW.*) AS r, LATERAL ({ids}) AS q(id) WHERE q.id IS NOT NULL;",
                    at_of("r")
                ),
                when,
            )
        }
    }
}

/// A related table's trigger: an insert or update there re-queues the opportunity it belongs to
/// (the daemon routes it if it is still unowned and routable; owned ones are skipped cheaply).
fn related_sql(cfg: &Config, i: usize, r: &RelatedMap, tag: &str, not_router: &str) -> String {
    let definer = definer(cfg);
    let s = cfg.router.schema.quoted();
    let channel = literal(cfg.router.channel.as_str());
    let (insert, mut when) = match &r.opportunity {
        RowValue::Column(c) => (
            format!("INSERT INTO {s}.events (kind, opp_id) VALUES ('route', NEW.{}::text);", c.quoted()),
            format!(" AND NEW.{} IS NOT NULL", c.quoted()),
        ),
        RowValue::Sql(q) => (
            format!(
                "INSERT INTO {s}.events (kind, opp_id)
        SELECT 'route', q.id::text FROM (SELECT NEW.*) AS r, LATERAL ({q}) AS q(id) WHERE q.id IS NOT NULL;"
            ),
            String::new(),
        ),
    };
    if let Some((col, value)) = &r.filter {
        when.push_str(&format!(" AND NEW.{} = {}", col.quoted(), literal(value)));
    }
    let table = r.table.quoted();
    format!(
        r#"CREATE OR REPLACE FUNCTION {s}.capture_related_{i}() RETURNS trigger
LANGUAGE plpgsql {definer} AS {tag}
BEGIN
    {insert}
    IF FOUND AND (SELECT idle AND idle_until > now() FROM {s}.wakeup) THEN
        PERFORM pg_notify({channel}, '');
    END IF;
    RETURN NULL;
END
{tag};
REVOKE ALL ON FUNCTION {s}.capture_related_{i}() FROM PUBLIC;
CREATE TRIGGER {TRIGGER_PREFIX}related_{i} AFTER INSERT OR UPDATE ON {table}
    FOR EACH ROW WHEN ({not_router}{when}) EXECUTE FUNCTION {s}.capture_related_{i}();
"#
    )
}

/// Lists `(table, trigger)` for every trigger whose function lives in the router's schema:
/// exactly the triggers `install` added, whatever the mapping says today.
pub const FIND_TRIGGERS_SQL: &str = "SELECT t.tgrelid::regclass::text AS tbl, t.tgname::text AS name \
     FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid \
     WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1) AND NOT t.tgisinternal \
     ORDER BY 1, 2";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_name_holding_the_dollar_quote_tag_cannot_end_the_function_body() {
        let text = r#"
[database]
url = "host=/tmp"
[opportunity]
table = "deals"
id = "id"
owner = "x$oppty$y"
"#;
        let cfg = Config::parse(text, std::path::Path::new("t.toml")).expect("valid");
        let sql = install_sql(&cfg);
        assert!(sql.contains("AS $oppty1$"), "{sql}");
        assert_eq!(sql.matches("$oppty1$").count(), 2);
    }
}
