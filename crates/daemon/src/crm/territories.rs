//! The CRM's territory tree (`directory.territories`: a parent column, or a nested set with `lft`
//! and `rgt`) and the territories each team covers (`directory.team_territories`), read like the
//! rest of the directory and refreshed with it.
//!
//! It must not run a query (`crm::directory` runs them and hands the rows in) nor judge the tree
//! (unknown parents, cycles): `rules` does, naming these keys.

use tokio_postgres::Row;

use crate::rules::CrmTerritory;

/// What a row of the wrong shape misses, as "must return …" says it.
type Want = String;

/// (team crm id, territory id) pairs from `directory.team_territories`' rows.
pub(super) fn coverage(rows: &[Row]) -> Result<Vec<(String, String)>, Want> {
    let want = || "two text columns (team crm id, territory id)".to_string();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let team: Option<String> = r.try_get(0).map_err(|_| want())?;
        let terr: Option<String> = r.try_get(1).map_err(|_| want())?;
        if let (Some(t), Some(x)) = (team, terr) {
            out.push((t.trim().to_string(), x.trim().to_string()));
        }
    }
    Ok(out)
}

fn text(r: &Row, i: Option<usize>, what: &str) -> Result<Option<String>, Want> {
    i.map_or(Ok(None), |i| r.try_get(i).map_err(|_| format!("column `{what}` as text")))
}

fn int(r: &Row, i: usize, what: &str) -> Result<Option<i64>, Want> {
    r.try_get::<_, Option<i32>>(i)
        .map(|v| v.map(i64::from))
        .or_else(|_| r.try_get::<_, Option<i64>>(i))
        .map_err(|_| format!("column `{what}` as an integer"))
}

/// The tree from its rows, read by column name: `id`; optional `name`, `aliases` (text[] or
/// comma-separated text), and `parent` or else `lft` and `rgt` (a nested set: a node's parent is
/// the innermost node whose interval holds its own).
pub(super) fn tree_of(rows: &[Row]) -> Result<Vec<CrmTerritory>, Want> {
    let Some(first) = rows.first() else { return Ok(Vec::new()) };
    let col = |name: &str| first.columns().iter().position(|c| c.name() == name);
    let want = "a column named `id` (text), and optionally `name`, `parent` (or `lft` and `rgt`), `aliases`";
    let id = col("id").ok_or_else(|| want.to_string())?;
    let (name, parent, aliases) = (col("name"), col("parent"), col("aliases"));
    let nested = match (parent, col("lft"), col("rgt")) {
        (None, Some(l), Some(r)) => Some((l, r)),
        _ => None,
    };
    let mut out = Vec::with_capacity(rows.len());
    let mut bounds = Vec::new();
    for r in rows {
        let Some(id) = text(r, Some(id), "id")?.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) else {
            continue;
        };
        if let Some((l, rg)) = nested {
            if let (Some(l), Some(rg)) = (int(r, l, "lft")?, int(r, rg, "rgt")?) {
                bounds.push((l, rg, out.len()));
            }
        }
        out.push(CrmTerritory {
            id,
            name: text(r, name, "name")?.unwrap_or_default(),
            parent: text(r, parent, "parent")?.map(|p| p.trim().to_string()).filter(|p| !p.is_empty()),
            aliases: aliases_of(r, aliases)?,
        });
    }
    parents_of_nested_set(&mut out, bounds);
    Ok(out)
}

/// `aliases` as a text[] or as comma-separated text.
fn aliases_of(r: &Row, col: Option<usize>) -> Result<Vec<String>, Want> {
    let Some(i) = col else { return Ok(Vec::new()) };
    let list: Vec<String> = match r.try_get::<_, Option<Vec<String>>>(i) {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => r
            .try_get::<_, Option<String>>(i)
            .map_err(|_| "column `aliases` as text[] or comma-separated text".to_string())?
            .map(|s| s.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
    };
    Ok(list.into_iter().map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect())
}

/// Parents from a nested set's (lft, rgt, node) bounds: in `lft` order, the innermost interval
/// still open holds the next node.
fn parents_of_nested_set(nodes: &mut [CrmTerritory], mut bounds: Vec<(i64, i64, usize)>) {
    bounds.sort_unstable();
    let mut open: Vec<(i64, usize)> = Vec::new();
    for (l, r, n) in bounds {
        while open.last().is_some_and(|(rg, _)| *rg < l) {
            open.pop();
        }
        if let Some((_, p)) = open.last() {
            let parent = nodes[*p].id.clone();
            nodes[n].parent = Some(parent);
        }
        open.push((r, n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> CrmTerritory {
        CrmTerritory { id: id.into(), ..Default::default() }
    }

    #[test]
    fn a_nested_set_gives_each_node_the_innermost_node_around_it() {
        // VN [1, 10] › HN [2, 7] › BD [3, 4], HK [5, 6]; SG [8, 9].
        let mut nodes = vec![node("HK"), node("VN"), node("SG"), node("HN"), node("BD")];
        let bounds = vec![(5, 6, 0), (1, 10, 1), (8, 9, 2), (2, 7, 3), (3, 4, 4)];
        parents_of_nested_set(&mut nodes, bounds);
        let parent = |i: usize| nodes[i].parent.clone();
        assert_eq!(
            (parent(0), parent(1), parent(2), parent(3), parent(4)),
            (Some("HN".into()), None, Some("VN".into()), Some("VN".into()), Some("HN".into()))
        );
    }
}
