//! The connections the drain works on: the session's own and the lanes (`router.drain_connections`
//! − 1), each claiming batches of its own, and the drain over all of them until the queue is empty
//! or the round's time is up. It must not decide when to wait (`drain::rounds` does).

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::config::Config;
use crate::db::prepared::Prepared;
use crate::held::held;

use super::{BatchReport, Drain, DrainError, Round, Tries, Working, STEADY_CONNECTIONS};

/// A connection the drain works on, and the statements prepared on it.
pub(super) struct Conn<'c> {
    pub(super) client: &'c mut Client,
    pub(super) prep: &'c Prepared,
}

/// One more connection the drain works on beside the session's own, on batches of its own
/// (`router.drain_connections`). While it is open it holds the lanes' shared advisory lock, so a
/// replica taking over ends it as it ends the old leader's session (`daemon::lease`).
pub struct Lane {
    pub(super) client: Client,
    pub(super) prep: Prepared,
}

impl Lane {
    /// A lane on `client` (a connection of its own): it takes the lanes' lock first.
    pub async fn start(client: Client, cfg: &Config) -> Result<Lane, tokio_postgres::Error> {
        client.execute(crate::store::LANE_LOCK, &[&crate::store::lane_key(&cfg.router.schema)]).await?;
        Ok(Lane { client, prep: Prepared::new() })
    }

    /// The lane's connection.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl Drain {
    /// Add a connection to drain on (`router.drain_connections`), beside the session's own.
    pub fn add_lane(&mut self, lane: Lane) {
        self.lanes.push(lane);
        held(&self.batches).push(Tries::default());
    }

    /// Batches that claimed events so far, per connection: the session's, then each lane's.
    pub fn batches_per_connection(&self) -> Vec<usize> {
        held(&self.batches).iter().map(|t| t.claimed).collect()
    }

    /// Claims tried so far, per connection, whether they found events or not.
    pub fn claims_per_connection(&self) -> Vec<usize> {
        held(&self.batches).iter().map(|t| t.tried).collect()
    }

    /// Drain until every connection finds the queue empty, or `stop` says so between batches: on
    /// the session's connection and on each lane at once, each claiming batches of its own.
    pub async fn drain_all(
        &mut self,
        client: &mut Client,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<BatchReport, DrainError> {
        Ok(self.drain_for(client, stop, None).await?.0)
    }

    /// Like [`Drain::drain_all`], for at most about `limit` (a batch under way is finished), so
    /// the session can see to its other duties between rounds. Also says whether the backlog is
    /// worked off: each connection's last batch came back short.
    pub async fn drain_for(
        &mut self,
        client: &mut Client,
        stop: &tokio_util::sync::CancellationToken,
        limit: Option<Duration>,
    ) -> Result<(BatchReport, bool), DrainError> {
        let until = limit.map(|l| Instant::now() + l);
        let prep = std::mem::take(&mut self.prep);
        let mut lanes = std::mem::take(&mut self.lanes);
        // Past the first two, connections join only while there is a backlog: a steady stream
        // split more ways is only more, smaller batches, each a commit of its own.
        let joining = if self.backlog { lanes.len() } else { lanes.len().min(STEADY_CONNECTIONS - 1) };
        let progress = self.progress.clone();
        let working = Working::new(1 + joining, &progress);
        let result = {
            let this = &*self;
            let round = Round { stop, until, working: &working };
            let main =
                async { this.drain_on(Conn { client: &mut *client, prep: &prep }, 0, round).await.map_err(|e| (0, e)) };
            let others = (lanes.iter_mut().take(joining).enumerate()).map(|(i, l)| async move {
                this.drain_on(Conn { client: &mut l.client, prep: &l.prep }, i + 1, round).await.map_err(|e| (i + 1, e))
            });
            // The first error ends the session: the other lanes' batches are dropped (rolled back, undone).
            futures_util::future::try_join(main, futures_util::future::try_join_all(others)).await
        };
        self.prep = prep;
        self.lanes = lanes;
        let ((mut total, mut caught_up), others) = match result {
            Ok(v) => {
                self.progress.beat();
                v
            }
            Err((failed, e)) => {
                self.give_back_all_but(client, failed).await;
                return Err(e);
            }
        };
        for (r, c) in &others {
            total.add(r);
            caught_up &= c;
        }
        self.backlog = !caught_up;
        Ok((total, caught_up))
    }

    /// Batches on connection `n` (0: the session's) while there are events, until the round ends.
    /// Also says whether its last batch came back short. A connection with nothing more to do
    /// waits for the others, looking for new events every poll meanwhile.
    pub(super) async fn drain_on(
        &self,
        mut conn: Conn<'_>,
        n: usize,
        round: Round<'_>,
    ) -> Result<(BatchReport, bool), DrainError> {
        let mut total = BatchReport::default();
        let poll = self.cfg.router.poll_interval.min(Duration::from_millis(100));
        loop {
            crate::systemd::watchdog();
            round.working.in_batch(n, true);
            let r = self.batch_on(&mut conn, n).await?;
            round.working.in_batch(n, false);
            total.add(&r);
            let short = r.claimed < self.cfg.router.batch_size as usize && r.contended == 0;
            let more = r.claimed > 0 || r.contended > 0 || r.deferred > 0;
            if more && !round.over() {
                continue;
            }
            if round.working.rest() || !round.working.wait(&round, poll).await {
                return Ok((total, short));
            }
        }
    }
}
