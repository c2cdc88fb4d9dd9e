//! Statements prepared once per connection and reused: the first use of a statement's text parses
//! and plans it on the server (a round trip), every later use only binds and executes.
//!
//! Owns the cache of one connection's statements, keyed by their text. It must not outlive its
//! connection (a statement belongs to the session that prepared it: a new session starts with a
//! new cache), nor build SQL: callers hand it text that `store` or `crm` wrote.
//!
//! A statement whose result type changed under it (the CRM's DDL: SQLSTATE 0A000 "cached plan must
//! not change result type") fails like any other mapping error and ends the session; the next
//! session prepares it again.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio_postgres::types::ToSql;

use tokio_postgres::{Error, GenericClient, Row, Statement};

use crate::held::held;

/// One connection's prepared statements.
#[derive(Debug, Default)]
pub struct Prepared {
    cache: Mutex<HashMap<String, Statement>>,
}

/// A statement's parameters, as tokio-postgres takes them.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl Prepared {
    pub fn new() -> Prepared {
        Prepared::default()
    }

    /// The statement for `sql`, prepared on `client`'s connection the first time only.
    pub async fn statement<C: GenericClient + Sync>(&self, client: &C, sql: &str) -> Result<Statement, Error> {
        if let Some(s) = self.lock().get(sql) {
            return Ok(s.clone());
        }
        let s = client.prepare(sql).await?;
        self.lock().insert(sql.to_string(), s.clone());
        Ok(s)
    }

    /// Prepare those of `sqls` not prepared yet. Statements then sent together (futures joined)
    /// each go out on their first poll, in the order they are joined; a first use would wait for
    /// its parse and go out after the rest.
    pub async fn prepare_all<C: GenericClient + Sync>(&self, client: &C, sqls: &[&str]) -> Result<(), Error> {
        for sql in sqls {
            self.statement(client, sql).await?;
        }
        Ok(())
    }

    pub async fn query<C: GenericClient + Sync>(&self, c: &C, sql: &str, p: Params<'_>) -> Result<Vec<Row>, Error> {
        let s = self.statement(c, sql).await?;
        c.query(&s, p).await
    }

    pub async fn query_one<C: GenericClient + Sync>(&self, c: &C, sql: &str, p: Params<'_>) -> Result<Row, Error> {
        let s = self.statement(c, sql).await?;
        c.query_one(&s, p).await
    }

    pub async fn query_opt<C: GenericClient + Sync>(
        &self,
        c: &C,
        sql: &str,
        p: Params<'_>,
    ) -> Result<Option<Row>, Error> {
        let s = self.statement(c, sql).await?;
        c.query_opt(&s, p).await
    }

    pub async fn execute<C: GenericClient + Sync>(&self, c: &C, sql: &str, p: Params<'_>) -> Result<u64, Error> {
        let s = self.statement(c, sql).await?;
        c.execute(&s, p).await
    }

    /// How many statements this connection holds prepared.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The map, even if a panic elsewhere poisoned the lock (it only ever holds finished entries).
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Statement>> {
        held(&self.cache)
    }
}
