//! Why a batch or a sweep failed, sorted by what the session does next: end (the connection, the
//! fence, a refusal, the mapping) or try its events again. It must not retry anything itself.

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    /// The lease no longer names this leader's session: another replica leads. Nothing of the
    /// batch was written; the session ends and stands by.
    #[error("the leader lease names another session: another replica leads now")]
    Fenced,
    /// The connection failed or the server said to go away: reconnect, nothing is lost.
    #[error("database connection problem: {}", crate::db::describe(.0))]
    Connection(tokio_postgres::Error),
    /// The server refused the daemon something no retry fixes (a missing grant, the router's
    /// schema gone): stop, and say so; no event is charged for it.
    #[error("the database refused the daemon: {}", crate::db::describe(.0))]
    Refused(tokio_postgres::Error),
    /// A statement of the mapping no longer fits the CRM (a column or function gone): end the
    /// session; the mapping is checked again on reconnect. No event is charged for it.
    #[error("the CRM no longer fits the mapping: {}", crate::db::describe(.0))]
    Mapping(tokio_postgres::Error),
    /// A statement of the drain's own (a claim, a retry, a dead letter) met another transaction
    /// or a lock it would not wait for: the session goes on and tries again shortly.
    #[error("the queue met another transaction: {}", crate::db::describe(.0))]
    Contention(tokio_postgres::Error),
    /// A statement of the drain's own ran past `router.statement_timeout` (or was cancelled):
    /// the session goes on and tries again shortly.
    #[error("a statement of the queue timed out: {}", crate::db::describe(.0))]
    Timeout(tokio_postgres::Error),
    /// A statement of the drain's own failed on the data it read or wrote: the session goes on
    /// and tries again shortly.
    #[error("a statement of the queue failed: {}", crate::db::describe(.0))]
    Row(tokio_postgres::Error),
}

impl DrainError {
    /// The error as its kind says (`db::kind_of`): what ends the session (refused: stop; the
    /// mapping: check it again; the connection: reconnect), and what the session waits out.
    pub fn from_pg(e: tokio_postgres::Error) -> DrainError {
        match crate::db::kind_of(&e) {
            crate::db::ErrorKind::Refused => DrainError::Refused(e),
            crate::db::ErrorKind::Mapping => DrainError::Mapping(e),
            crate::db::ErrorKind::Connection => DrainError::Connection(e),
            crate::db::ErrorKind::Contention => DrainError::Contention(e),
            crate::db::ErrorKind::Timeout => DrainError::Timeout(e),
            crate::db::ErrorKind::Row => DrainError::Row(e),
        }
    }

    /// Whether the session must end for it (else it waits a moment and goes on).
    pub fn ends_session(&self) -> bool {
        matches!(self, DrainError::Fenced | DrainError::Connection(_) | DrainError::Refused(_) | DrainError::Mapping(_))
    }
}

/// Whether an error ends the session (`db::ErrorKind::ends_session`).
pub(super) fn ends_session(e: &tokio_postgres::Error) -> bool {
    crate::db::kind_of(e).ends_session()
}
