//! Writing back row by row when a batch's one statement cannot (a row the CRM refuses): each row
//! alone, the first cause kept. It must not decide owners.

use tokio_postgres::Transaction;

use crate::db::prepared::Prepared;

/// Run an ops write statement once per row, pipelined; `row` holds the values of
/// [`crate::crm::WRITE_PARAMS`] (opportunity id first, owner second), `params` which of them each
/// `$n` takes. Returns each row written with the owner the statement says it set (its `owner`
/// column: the one wanted if any row returned says so, else the first given); a statement that
/// returns no row, or no owner, wrote nothing.
pub(super) async fn write_per_row(
    prep: &Prepared,
    tx: &Transaction<'_>,
    sql: &str,
    params: &[usize],
    rows: impl Iterator<Item = [Option<String>; 4]>,
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    let stmt = prep.statement(tx, sql).await?;
    let futs = rows.map(|row| {
        let stmt = stmt.clone();
        let values: Vec<Option<String>> = params.iter().map(|k| row[*k].clone()).collect();
        async move {
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                values.iter().map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
            let returned = tx.query(&stmt, &refs).await?;
            let owners: Vec<String> = returned
                .iter()
                .map(|r| r.try_get::<_, Option<String>>("owner"))
                .filter_map(Result::transpose)
                .collect::<Result<_, _>>()?;
            let [id, wanted, ..] = row;
            let owners: Vec<String> = owners.into_iter().map(|o| o.trim_end().to_string()).collect();
            let owner = owners.iter().find(|o| Some(*o) == wanted.as_ref()).or(owners.first()).cloned();
            Ok::<_, tokio_postgres::Error>(id.zip(owner))
        }
    });
    Ok(first_cause(futures_util::future::join_all(futs).await)?.into_iter().flatten().collect())
}

/// The results of pipelined statements, or the error that failed their transaction: the first
/// one that is not 25P02 (`current transaction is aborted`, which only follows another
/// statement's failure, and may be seen first).
pub(super) fn first_cause<T>(
    results: impl IntoIterator<Item = Result<T, tokio_postgres::Error>>,
) -> Result<Vec<T>, tokio_postgres::Error> {
    let aborted =
        |e: &tokio_postgres::Error| e.code() == Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION);
    let (mut oks, mut errors) = (Vec::new(), Vec::new());
    for r in results {
        match r {
            Ok(v) => oks.push(v),
            Err(e) => errors.push(e),
        }
    }
    match errors.iter().position(|e| !aborted(e)) {
        Some(i) => Err(errors.swap_remove(i)),
        None => errors.into_iter().next().map_or(Ok(oks), Err),
    }
}

pub(super) fn clamp_i32(v: i64) -> i32 {
    v.clamp(0, i64::from(i32::MAX)) as i32
}

/// The server's message (SQLSTATE, detail, hint) without the driver's prefix.
pub fn db_message(e: &tokio_postgres::Error) -> String {
    crate::db::describe(e)
}
