//! systemd's notify protocol: `READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=…` and the
//! watchdog's `WATCHDOG=1`. Owns nothing but these messages; every call does nothing when the
//! process was not started by systemd (no `NOTIFY_SOCKET`), and a failure to send is ignored (the
//! daemon's work never depends on systemd hearing it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        let _ = send_to(&path, states);
    }
}

/// One datagram of `states` to the notify socket at `path` (`@name`: the abstract namespace),
/// without ever waiting: when the service manager is not reading and the socket's queue is full,
/// the message is dropped (`WouldBlock`), so a stalled systemd (or any reader that stopped reading)
/// can never stall routing or shutdown.
fn send_to(path: &OsStr, states: &[NotifyState]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let msg: String = states.iter().map(|s| format!("{s}\n")).collect();
    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    match path.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(msg.as_bytes(), &addr)?;
        }
        None => {
            sock.send_to(msg.as_bytes(), std::path::Path::new(path))?;
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notify_socket_nobody_reads_never_blocks_the_daemon() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let reader = UnixDatagram::bind(&path).expect("bind");
        // The first message arrives as systemd reads it.
        send_to(path.as_os_str(), &[NotifyState::Ready, NotifyState::Status("routing")]).expect("send");
        let mut buf = [0u8; 256];
        let n = reader.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=routing\n");
        // Then nobody reads: the queue fills and every later message is dropped at once.
        let (done, finished) = std::sync::mpsc::channel();
        let target = path.clone();
        std::thread::spawn(move || {
            let status = "x".repeat(1_000);
            let dropped =
                (0..10_000).filter(|_| send_to(target.as_os_str(), &[NotifyState::Status(&status)]).is_err()).count();
            let _ = done.send(dropped);
        });
        let dropped =
            finished.recv_timeout(std::time::Duration::from_secs(20)).expect("sending never waits for a reader");
        assert!(dropped > 0, "a full queue drops messages instead of waiting");
        drop(reader);
    }
}
