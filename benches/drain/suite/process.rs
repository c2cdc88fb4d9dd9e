//! The binary, run as systemd would: spawned with a notify socket, READY read from it, its peak
//! RSS and CPU time read from /proc, stopped with SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary, run as systemd would: READY from its notify socket.
pub(super) struct Daemon {
    child: Child,
    socket: UnixDatagram,
    started: Instant,
}

impl Daemon {
    pub(super) fn spawn(dir: &Path, config: &Path, log: &str) -> Daemon {
        let path = dir.join(format!("notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("notify socket");
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_oppty-router"))
            .args(["--config", &config.display().to_string(), "run"])
            .env("NOTIFY_SOCKET", &path)
            .env("RUST_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the daemon");
        Daemon { child, socket, started }
    }

    /// Time from spawn to READY=1.
    pub(super) fn wait_ready(&mut self, limit: Duration) -> Duration {
        let mut buf = [0u8; 4096];
        self.socket.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        loop {
            if let Ok(n) = self.socket.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1") {
                    return self.started.elapsed();
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the daemon exited before READY: {status}");
            }
            assert!(self.started.elapsed() < limit, "no READY within {limit:?}");
        }
    }

    /// The process's peak resident set so far, in MB.
    pub(super) fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("/proc status");
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmHWM");
        kb / 1024.0
    }

    /// The process's CPU time so far (user + system), in seconds.
    pub(super) fn cpu_secs(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("/proc stat");
        // After the command's closing parenthesis: state is field 3; utime and stime are 14 and 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let f: Vec<f64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0.0)).collect();
        // /proc counts in USER_HZ, which Linux fixes at 100 per second.
        (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
    }

    /// SIGTERM, and wait for a clean exit.
    pub(super) fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "the daemon stops cleanly on SIGTERM: {status}");
    }
}
