//! Leadership: one replica drains at a time. The session advisory lock decides who leads; the
//! lease row (`<schema>.leader_lease`) says whether the leader is alive. A task of the leader
//! renews it on a connection of its own every third of `router.leader_lease`; a standby that finds
//! it expired ends the leader's session (`pg_terminate_backend`; the server then releases its
//! lock) and takes over. A frozen leader (SIGSTOP) or one cut off by a partition the server has not
//! noticed stops renewing, so it is taken over within the lease; when it wakes, its session is gone
//! and it stands by.
//!
//! Owns the lock key, the lease's statements and the takeover. It must not drain or decide
//! anything else. Every time compared is the server's clock.

use std::time::Duration;

use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db;
use crate::db::row::FromRow;
use crate::store::{LeaseStatements, StaleLeader};

fn key(cfg: &Config) -> String {
    format!("oppty-router leader {}", cfg.router.schema.as_str())
}

fn ttl_ms(cfg: &Config) -> f64 {
    cfg.router.leader_lease.as_secs_f64() * 1000.0
}

/// This process, as the lease names it.
pub fn holder() -> String {
    format!("{} pid {}", super::this_host(), std::process::id())
}

/// Try to lead: true once this session holds the lock and the lease names it. Otherwise, if the
/// leader's lease has expired, end its session so the lock is free at the next try.
pub async fn try_lead(client: &Client, cfg: &Config, said_cannot: &mut bool) -> Result<bool, tokio_postgres::Error> {
    let sql = LeaseStatements::new(&cfg.router.schema);
    let got: bool = client.query_one(&sql.lock, &[&key(cfg)]).await?.try_get("got")?;
    if got {
        end_lanes(client, cfg, &sql, said_cannot).await?;
        client.execute(&sql.take, &[&holder(), &ttl_ms(cfg)]).await?;
        return Ok(true);
    }
    take_over_if_stale(client, cfg, &sql, said_cannot).await?;
    Ok(false)
}

/// Holding the lock, before taking the lease: end the lanes of a leader that is gone (this
/// session has none yet). A lane of a frozen leader would otherwise hold the lease row, and the
/// take would wait for it.
async fn end_lanes(
    client: &Client,
    cfg: &Config,
    sql: &LeaseStatements,
    said_cannot: &mut bool,
) -> Result<(), tokio_postgres::Error> {
    match client.query_one(&sql.end_lanes, &[&crate::store::lane_key(&cfg.router.schema)]).await {
        Ok(r) => {
            let ended: i64 = r.try_get("ended")?;
            if ended > 0 {
                tracing::warn!(lanes = ended, "ended the drain connections a previous leader left open");
            }
            Ok(())
        }
        Err(e) if db::kind_of(&e) == db::ErrorKind::Refused => {
            if !std::mem::replace(said_cannot, true) {
                tracing::error!(error = %db::describe(&e),
                    "a previous leader's drain connections are open but this role may not end them: run every replica \
                     with the same role, or grant it pg_signal_backend");
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// End the session of a leader whose lease has expired (only the one holding the lock, and only
/// if the lease names that very session).
async fn take_over_if_stale(
    client: &Client,
    cfg: &Config,
    sql: &LeaseStatements,
    said_cannot: &mut bool,
) -> Result<(), tokio_postgres::Error> {
    let Some(row) = client.query_opt(&sql.stale, &[&key(cfg)]).await? else { return Ok(()) };
    let StaleLeader { pid, holder, silent_ms } = StaleLeader::from_row(&row)?;
    match client.query_one(&sql.terminate, &[&pid]).await {
        Ok(r) if r.try_get::<_, bool>("ended")? => {
            tracing::warn!(leader = %holder, backend = pid, silent_ms,
                "the leader stopped renewing its lease (frozen or cut off): ended its session to take over");
        }
        Ok(_) => {}
        Err(e) if db::kind_of(&e) == db::ErrorKind::Refused => {
            if !std::mem::replace(said_cannot, true) {
                tracing::error!(leader = %holder, backend = pid, error = %db::describe(&e),
                    "the leader's lease expired but this role may not end its session: run every replica with the same \
                     role, or grant it pg_signal_backend; until then a frozen leader holds the lock until the server drops it");
            }
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Renew the lease of the leader session `backend` every third of the lease, on a connection of
/// its own, until `stop`, while the drain makes progress: a drain whose `progress` has not beaten
/// for a lease (a statement that never returns, a loop that never yields) is not renewed for, so
/// a standby takes over within about two leases. Cancels `lost` (and ends) when the lease is no
/// longer this session's, or when it was not renewed for a lease (a standby ends the session then
/// anyway).
pub fn spawn_renewer(
    cfg: std::sync::Arc<Config>,
    backend: i32,
    progress: std::sync::Arc<crate::drain::Progress>,
    stop: CancellationToken,
    lost: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = cfg.router.leader_lease / 3;
        let sql = LeaseStatements::new(&cfg.router.schema).renew;
        let mut client: Option<Client> = None;
        let mut last_ok = tokio::time::Instant::now();
        let mut said_stuck = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => return,
            }
            let stuck = progress.age();
            if stuck >= cfg.router.leader_lease {
                if !std::mem::replace(&mut said_stuck, true) {
                    tracing::error!(stuck_ms = stuck.as_millis() as u64,
                        "the drain has made no progress for a whole lease: no longer renewing it, so a standby takes over");
                }
            } else {
                said_stuck = false;
                match renew_once(&cfg, &mut client, &sql, backend, every).await {
                    Renewal::Renewed => last_ok = tokio::time::Instant::now(),
                    Renewal::Failed => {}
                    Renewal::Lost => {
                        tracing::warn!("the leader lease names another session now; leaving leadership");
                        lost.cancel();
                        return;
                    }
                }
            }
            if last_ok.elapsed() >= cfg.router.leader_lease {
                tracing::warn!("the leader lease was not renewed in time; leaving leadership");
                lost.cancel();
                return;
            }
        }
    })
}

/// What one try at renewing did.
enum Renewal {
    Renewed,
    /// Not this time (no connection, an error, too slow): counted by the time since the last one.
    Failed,
    /// The lease names another session.
    Lost,
}

/// One renewal, on the renewer's connection (made again when gone): its session joins the lanes'
/// lock, so a leader taking over ends it with the rest. Nothing here waits longer than `every`
/// (a partition hangs, it does not fail).
async fn renew_once(cfg: &Config, client: &mut Option<Client>, sql: &str, backend: i32, every: Duration) -> Renewal {
    if client.as_ref().is_none_or(|c| c.is_closed()) {
        let connect = async {
            let c = super::connect::connect_daemon(cfg, " lease").await.ok()?;
            c.execute(crate::store::LANE_LOCK, &[&crate::store::lane_key(&cfg.router.schema)]).await.ok()?;
            Some(c)
        };
        *client = tokio::time::timeout(every, connect).await.ok().flatten();
    }
    let Some(c) = client.as_ref() else { return Renewal::Failed };
    match tokio::time::timeout(every, c.execute(sql, &[&ttl_ms(cfg), &backend])).await {
        Ok(Ok(0)) => Renewal::Lost,
        Ok(Ok(_)) => Renewal::Renewed,
        Ok(Err(e)) => {
            tracing::warn!(error = %db::describe(&e), "could not renew the leader lease");
            *client = None;
            Renewal::Failed
        }
        Err(_) => {
            tracing::warn!("renewing the leader lease timed out");
            *client = None;
            Renewal::Failed
        }
    }
}

/// How long a standby waits between two looks at the lock.
pub fn standby_poll(cfg: &Config) -> Duration {
    cfg.router.poll_interval.min(cfg.router.leader_lease / 4)
}
