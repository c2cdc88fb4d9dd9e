//! systemd's notify protocol: `READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=…` and the
//! watchdog's `WATCHDOG=1`. Owns nothing but these messages; every call does nothing when the
//! process was not started by systemd (no `NOTIFY_SOCKET`), and a failure to send is ignored (the
//! daemon's work never depends on systemd hearing it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let _ = sd_notify::notify(states);
    }
}

/// Started: connected, leading (or standing by) and routing with the loaded rules.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Reloading the rule files (SIGHUP); [`reloaded`] ends it.
pub fn reloading() {
    send(&[NotifyState::Reloading, NotifyState::Status("reloading the rule files")]);
}

/// The reload ended (whatever its outcome: a refused edit leaves the last good rules in force).
pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Stopping (SIGTERM): finishing the batch in flight.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping: finishing the batch in flight")]);
}

/// What the daemon is doing now, for `systemctl status` (at most once a second for the same
/// kind of news is the caller's business: this sends every time).
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

static LAST_PING: AtomicU64 = AtomicU64::new(0);

/// Alive: called from the drain loop between batches and while it waits. Sent at most once a
/// second (the unit's `WatchdogSec` is far longer).
pub fn watchdog() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if LAST_PING.swap(now, Ordering::Relaxed) != now {
        send(&[NotifyState::Watchdog]);
    }
}
