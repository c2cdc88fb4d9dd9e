//! What operators scrape and probe: the Prometheus endpoint (`/metrics`), `/livez` and `/readyz`,
//! served only when `[metrics] listen` is set (by default on localhost only).
//!
//! Owns the metrics recorder, the listener and [`Health`], which the daemon's session updates as
//! it connects, stands by, leads and drains. The listener speaks just enough HTTP/1.1: one GET per
//! connection, the request bounded in size and time, one response, then close. It must not touch
//! the database nor wait on the drain: a scrape reads atomics and the recorder's snapshot. The
//! drain records with the `metrics` macros, which cost nothing while no recorder is installed.

use std::net::SocketAddr;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;

/// Histogram buckets, in seconds: a batch phase takes milliseconds, an owner arrives in
/// milliseconds to minutes.
const BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Buckets of one decision's time in the engine, in seconds: microseconds to tens of milliseconds.
const DECISION_BUCKETS: &[f64] =
    &[0.000_005, 0.00001, 0.000_025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.05];

/// The largest request head read; a longer one is refused.
const MAX_REQUEST: usize = 8 * 1024;
/// Requests answered at once.
const MAX_CLIENTS: usize = 32;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("metrics.listen = {addr}: cannot listen there: {source}; pick a free port, or leave `[metrics]` out")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("a metrics recorder is already installed in this process: {0}")]
    Recorder(String),
}

/// The daemon's role, for `/readyz` and the `oppty_router_leading` gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// Not connected, or connecting.
    Starting = 0,
    /// Connected; another replica leads.
    StandingBy = 1,
    Leading = 2,
}

/// What `/readyz` decides from.
#[derive(Debug)]
pub struct Health {
    role: AtomicU8,
    rules_loaded: AtomicBool,
    /// Age of the oldest event waiting to be drained, in ms, as the leader last saw it.
    lag_ms: AtomicU64,
    /// Ready only while the leader's lag is at most this.
    max_lag: Duration,
    /// Why the last session ended, while no new one is connected.
    last_error: std::sync::Mutex<Option<String>>,
}

impl Health {
    pub fn new(max_lag: Duration) -> Health {
        Health {
            role: AtomicU8::new(Role::Starting as u8),
            rules_loaded: AtomicBool::new(false),
            lag_ms: AtomicU64::new(0),
            max_lag,
            last_error: std::sync::Mutex::new(None),
        }
    }

    pub fn set_role(&self, role: Role) {
        self.role.store(role as u8, Ordering::Relaxed);
        metrics::gauge!("oppty_router_leading").set(if role == Role::Leading { 1.0 } else { 0.0 });
        if role != Role::Starting {
            *crate::held::held(&self.last_error) = None;
        }
    }

    /// A session ended (lost, or refused): not ready until the next one connects.
    pub fn session_ended(&self, why: &str) {
        self.set_role(Role::Starting);
        *crate::held::held(&self.last_error) = Some(why.to_string());
    }

    pub fn set_rules_loaded(&self, loaded: bool) {
        self.rules_loaded.store(loaded, Ordering::Relaxed);
    }

    /// The oldest event waiting, as the leader just saw it.
    pub fn set_lag(&self, lag: Duration) {
        self.lag_ms.store(lag.as_millis().min(u128::from(u64::MAX)) as u64, Ordering::Relaxed);
        metrics::gauge!("oppty_router_oldest_pending_event_seconds").set(lag.as_secs_f64());
    }

    /// `Ok` when ready, else why not.
    pub fn ready(&self) -> Result<(), String> {
        if !self.rules_loaded.load(Ordering::Relaxed) {
            return Err("no rule set loaded".into());
        }
        match self.role.load(Ordering::Relaxed) {
            r if r == Role::StandingBy as u8 => Ok(()),
            r if r == Role::Leading as u8 => {
                let lag = Duration::from_millis(self.lag_ms.load(Ordering::Relaxed));
                if lag > self.max_lag {
                    return Err(format!(
                        "the oldest event has waited {} (metrics.ready_max_lag = {})",
                        humantime::format_duration(Duration::from_secs(lag.as_secs())),
                        humantime::format_duration(self.max_lag)
                    ));
                }
                Ok(())
            }
            _ => {
                let last = crate::held::held(&self.last_error).clone();
                Err(match last {
                    Some(why) => format!("not connected to the database: {why}"),
                    None => "not connected to the database yet".into(),
                })
            }
        }
    }
}

/// Install the recorder and serve `/metrics`, `/livez` and `/readyz` on `addr` until `shutdown`.
/// Returns the address bound (port 0 picks a free one).
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> Result<SocketAddr, TelemetryError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| TelemetryError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| TelemetryError::Bind { addr, source })?;
    let decision = metrics_exporter_prometheus::Matcher::Full("oppty_router_decision_seconds".into());
    let handle = PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(decision, DECISION_BUCKETS))
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| TelemetryError::Recorder(e.to_string()))?;
    describe();
    let clients = Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    tokio::spawn(async move {
        // Samples gather between scrapes; folding them in now and then bounds the memory they
        // hold when nobody scrapes.
        let mut upkeep = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = upkeep.tick() => handle.run_upkeep(),
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    // At most MAX_CLIENTS at once: more are closed unanswered.
                    let Ok(permit) = clients.clone().try_acquire_owned() else { continue };
                    let (handle, health) = (handle.clone(), health.clone());
                    tokio::spawn(async move {
                        answer(stream, &handle, &health).await;
                        drop(permit);
                    });
                }
            }
        }
    });
    Ok(bound)
}

/// One request, one response.
async fn answer(mut stream: TcpStream, handle: &PrometheusHandle, health: &Health) {
    let Ok(Ok(head)) = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await else {
        return;
    };
    let (status, kind, body) = respond(&head, handle, health);
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The request's head, up to the blank line (at most [`MAX_REQUEST`] bytes).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        if buf.len() > MAX_REQUEST {
            break;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The status line, content type and body for a request head.
fn respond(head: &str, handle: &PrometheusHandle, health: &Health) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if head.len() > MAX_REQUEST {
        return ("431 Request Header Fields Too Large", TEXT, "request too large\n".into());
    }
    if method != "GET" {
        return ("405 Method Not Allowed", TEXT, "only GET\n".into());
    }
    match target.split('?').next().unwrap_or("") {
        "/metrics" => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", handle.render()),
        "/livez" => ("200 OK", TEXT, "ok\n".into()),
        "/readyz" => match health.ready() {
            Ok(()) => ("200 OK", TEXT, "ready\n".into()),
            Err(why) => ("503 Service Unavailable", TEXT, format!("not ready: {why}\n")),
        },
        _ => ("404 Not Found", TEXT, "try /metrics, /livez or /readyz\n".into()),
    }
}

/// The rule set now in force: its version's sequence number (`14` of `14-3fa9…`).
pub fn rules_in_force(version: &str) {
    if let Some(n) = version.split('-').next().and_then(|n| n.parse::<f64>().ok()) {
        metrics::gauge!("oppty_router_rules_version").set(n);
    }
}

/// The opportunities held now (waiting): a gauge, never a decision.
pub fn held(n: i64) {
    metrics::gauge!("oppty_router_held_opportunities").set(n as f64);
}

/// The `pipeline` and `rule` label values of a decision: as the rules name them, or `other` for
/// a value the rule files do not know (a pipeline a CRM user typed), so the series stay as many
/// as the rules make.
pub fn bounded_labels<'a>(engine: &'a Engine, pipeline: &'a str, rule: Option<&'a str>) -> (&'a str, &'a str) {
    let Some(p) = engine.pipelines.get(pipeline) else { return (OTHER, rule.map_or("", |_| OTHER)) };
    let rule = match rule {
        None => "",
        Some(r) if p.rules.iter().any(|x| &*x.id == r) => r,
        Some(_) => OTHER,
    };
    (pipeline, rule)
}

/// The label value for anything the rule files do not name.
pub const OTHER: &str = "other";

/// Each team's open load as the leader's ledger has it.
pub fn team_loads(loads: &[(std::sync::Arc<str>, i64)]) {
    for (team, open) in loads {
        metrics::gauge!("oppty_router_team_open_load", "team" => team.to_string()).set(*open as f64);
    }
}

/// Each team's fairness since the leader started: received over expected by the rules, largest
/// over smallest (+Inf when someone who could receive got none; not set while too few decisions
/// to measure), and the Gini coefficient of the same, the figures `report` shows.
pub fn team_fairness(teams: &[(std::sync::Arc<str>, crate::report::Fairness)]) {
    for (team, f) in teams {
        let gini = metrics::gauge!("oppty_router_team_fairness_gini", "team" => team.to_string());
        gini.set(f.gini);
        if f.measured > 0 {
            let ratio = metrics::gauge!("oppty_router_team_fairness_max_min", "team" => team.to_string());
            ratio.set(f.max_min.unwrap_or(f64::INFINITY));
        }
    }
}

/// Help texts of the metrics, as Prometheus shows them.
fn describe() {
    metrics::describe_counter!(
        "oppty_router_events_drained_total",
        "Events done with (their transaction committed), by kind: route, changed, activity, edit"
    );
    metrics::describe_counter!(
        "oppty_router_decisions_total",
        "Routing decisions committed, by final outcome (rule, fallback, unassigned), pipeline and rule (`other`: one the rule files do not name); a hold is not a decision"
    );
    metrics::describe_counter!("oppty_router_dead_letters_total", "Events moved to the dead letter table");
    metrics::describe_gauge!(
        "oppty_router_team_fairness_gini",
        "Per team, since the leader started: Gini of each member's received over what they could expect by the rules (0 = everyone got their share)"
    );
    metrics::describe_gauge!(
        "oppty_router_team_fairness_max_min",
        "Per team, since the leader started: the largest received/expected over the smallest (1 = even; +Inf: someone who could receive got none)"
    );
    metrics::describe_histogram!(
        "oppty_router_batch_phase_seconds",
        metrics::Unit::Seconds,
        "Time in each phase of a batch (claim, context, route, write, record, commit)"
    );
    metrics::describe_histogram!(
        "oppty_router_decision_seconds",
        metrics::Unit::Seconds,
        "Time the engine took to decide one opportunity (rules, candidates, pick)"
    );
    metrics::describe_histogram!(
        "oppty_router_insert_to_owner_seconds",
        metrics::Unit::Seconds,
        "From the CRM's change (its event) to the commit of the owner's write"
    );
    metrics::describe_gauge!("oppty_router_leading", "1 while this replica leads");
    metrics::describe_gauge!("oppty_router_rules_version", "Sequence number of the rule set in force");
    metrics::describe_gauge!("oppty_router_team_open_load", "Open opportunities of each team's members");
    metrics::describe_counter!("oppty_router_rule_reloads_total", "Rule reloads, by result (ok, refused)");
    metrics::describe_counter!("oppty_router_reclaims_total", "Opportunities reclaimed from an idle owner");
    metrics::describe_counter!("oppty_router_sessions_lost_total", "Database sessions lost (then reconnected)");
    metrics::describe_gauge!("oppty_router_oldest_pending_event_seconds", "Age of the oldest event waiting");
    metrics::describe_gauge!(
        "oppty_router_held_opportunities",
        "Opportunities held now: waiting for capacity, an away team or required fields"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_what_is_missing() {
        let h = Health::new(Duration::from_secs(30));
        assert_eq!(h.ready(), Err("no rule set loaded".into()));
        h.set_rules_loaded(true);
        assert_eq!(h.ready(), Err("not connected to the database yet".into()));
        h.session_ended("connection refused");
        assert_eq!(h.ready(), Err("not connected to the database: connection refused".into()));
        h.set_role(Role::StandingBy);
        assert_eq!(h.ready(), Ok(()), "a healthy standby is ready");
        h.set_role(Role::Leading);
        h.set_lag(Duration::from_secs(31));
        assert_eq!(h.ready(), Err("the oldest event has waited 31s (metrics.ready_max_lag = 30s)".into()));
        h.set_lag(Duration::from_secs(2));
        assert_eq!(h.ready(), Ok(()));
    }
}
