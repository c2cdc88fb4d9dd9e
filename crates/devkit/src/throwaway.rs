//! A throwaway PostgreSQL cluster from the system's binaries, for `demo` and the tests.
//!
//! Owns finding the binaries, `initdb` (as a non-root user: initdb refuses root), starting the
//! server on a private Unix socket, and making sure it goes away: `stop`, or a watchdog that stops
//! it when the owning process dies. It must never touch a cluster it did not create.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(thiserror::Error)]
pub enum ClusterError {
    #[error("no PostgreSQL server binaries found (looked at $PG_BIN, `pg_config --bindir`, /usr/lib/postgresql/*/bin): install Debian's `postgresql` package (`apt-get install postgresql`; `cargo xtask test` installs what the tests need)")]
    NoBinaries,
    #[error("running as root, and there is no `postgres` user to run initdb as (initdb refuses root): create one with `useradd --system postgres` (`cargo xtask test` does)")]
    NoUser,
    #[error("PostgreSQL's server binaries are missing and cannot be installed from here ({0}): install Debian's `postgresql` package (`sudo apt-get install postgresql`), or set $PG_BIN to a folder holding initdb")]
    CannotInstall(String),
    #[error("{step} failed: {detail}")]
    Step { step: String, detail: String },
}

/// Its words, also where a test's `expect` prints it: the line names the command that installs
/// what is missing.
impl std::fmt::Debug for ClusterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// How a throwaway cluster listens, beyond its private Unix socket (always there, `trust`).
#[derive(Default, Clone)]
pub struct ClusterOptions {
    /// PostgreSQL's defaults for durability (the demo); tests turn fsync off.
    pub durable: bool,
    /// Also listen on 127.0.0.1, on a free port.
    pub tcp: bool,
    /// Serve TLS with this certificate and key (PEM); `ca` verifies client certificates.
    pub tls: Option<ServerTls>,
    /// The whole `pg_hba.conf` (keep a `local all all trust` line for the harness).
    pub hba: Option<String>,
    /// More server settings, `name=value` each (the benchmark's `track_commit_timestamp=on`).
    pub settings: Vec<String>,
}

#[derive(Clone)]
pub struct ServerTls {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: Option<String>,
}

/// A running throwaway cluster.
pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    run_as: Option<(u32, u32)>,
    stopped: bool,
    keep: bool,
    /// The server's options, for a start after [`Cluster::stop_server`].
    server_opts: String,
}

fn find_bin_dir() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PG_BIN") {
        let p = PathBuf::from(p);
        if p.join("initdb").exists() {
            return Some(p);
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if p.join("initdb").exists() && p.join("postgres").exists() {
            return Some(p);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

/// For the demo on a machine with only Rust: installs Debian's `postgresql` package when no server
/// binaries are found, and creates the `postgres` user when root has none, saying each in one
/// line through `say`. Tests never call it: a missing binary fails them with the command that
/// installs it.
pub fn provide(say: &dyn Fn(&str)) -> Result<(), ClusterError> {
    if find_bin_dir().is_none() {
        say("PostgreSQL's server binaries are missing: installing Debian's `postgresql` package (apt-get install postgresql)");
        as_root(&["apt-get", "update", "-qq"])?;
        as_root(&["apt-get", "install", "-y", "-qq", "postgresql"])?;
        find_bin_dir().ok_or(ClusterError::NoBinaries)?;
    }
    let root = nix::unistd::geteuid().is_root();
    if root && nix::unistd::User::from_name("postgres").ok().flatten().is_none() {
        say("creating the `postgres` user to run the cluster as (initdb refuses root)");
        as_root(&["useradd", "--system", "--home", "/var/lib/postgresql", "--shell", "/bin/sh", "postgres"])?;
    }
    Ok(())
}

/// Run an installing command as root: directly when root, through `sudo` otherwise.
fn as_root(argv: &[&str]) -> Result<(), ClusterError> {
    let on_path =
        |n: &str| std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(n).is_file()));
    if !on_path(argv[0]) && !Path::new("/usr/sbin").join(argv[0]).is_file() {
        return Err(ClusterError::CannotInstall(format!("no {}", argv[0])));
    }
    let mut cmd = if nix::unistd::geteuid().is_root() {
        Command::new(argv[0])
    } else if on_path("sudo") {
        let mut c = Command::new("sudo");
        c.args(["env", "DEBIAN_FRONTEND=noninteractive", argv[0]]);
        c
    } else {
        return Err(ClusterError::CannotInstall("not root, and no sudo".into()));
    };
    // Its chatter (debconf's notes) is shown only when it fails.
    let out = cmd.args(&argv[1..]).env("DEBIAN_FRONTEND", "noninteractive").output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(ClusterError::CannotInstall(format!(
            "`{}` failed ({}): {}",
            argv.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ))),
        Err(e) => Err(ClusterError::CannotInstall(format!("`{}` could not start: {e}", argv.join(" ")))),
    }
}

fn step_err(step: &str, out: std::io::Result<std::process::Output>) -> Result<(), ClusterError> {
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(ClusterError::Step {
            step: step.into(),
            detail: format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
        }),
        Err(e) => Err(ClusterError::Step { step: step.into(), detail: e.to_string() }),
    }
}

impl Cluster {
    /// Create and start a cluster in a new temporary directory. `durable = false` turns fsync
    /// off (tests); the demo keeps PostgreSQL's defaults so its figures mean something.
    pub fn start(durable: bool) -> Result<Cluster, ClusterError> {
        Self::start_with(ClusterOptions { durable, ..Default::default() })
    }

    /// [`Cluster::start`] with TCP, TLS and an authentication file of the caller's.
    pub fn start_with(opts: ClusterOptions) -> Result<Cluster, ClusterError> {
        let durable = opts.durable;
        let bin = find_bin_dir().ok_or(ClusterError::NoBinaries)?;
        let run_as = if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("postgres").ok().flatten().ok_or(ClusterError::NoUser)?;
            Some((user.uid.as_raw(), user.gid.as_raw()))
        } else {
            None
        };
        let base = std::env::temp_dir().join(format!("oppty-router-pg-{}-{}", std::process::id(), nanos()));
        std::fs::create_dir_all(&base)
            .map_err(|e| ClusterError::Step { step: "mkdir".into(), detail: e.to_string() })?;
        if let Some((uid, gid)) = run_as {
            nix::unistd::chown(&base, Some(uid.into()), Some(gid.into()))
                .map_err(|e| ClusterError::Step { step: "chown".into(), detail: e.to_string() })?;
        }
        let port = if opts.tcp { free_port()? } else { 5432 };
        let mut c = Cluster { dir: base, port, bin, run_as, stopped: false, keep: false, server_opts: String::new() };
        let data = c.data_dir();
        step_err(
            "initdb",
            c.cmd("initdb")
                .args(["-D"])
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"])
                .output(),
        )?;
        let listen = if opts.tcp { "127.0.0.1" } else { "" };
        let mut server_opts = format!(
            "-k {} -p {port} -c listen_addresses='{listen}' -c max_connections=200 -c shared_buffers=256MB",
            c.dir.display()
        );
        if !durable {
            server_opts.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        for setting in &opts.settings {
            if !setting.chars().all(|c| c.is_ascii_alphanumeric() || "_.=".contains(c)) {
                return Err(ClusterError::Step {
                    step: "settings".into(),
                    detail: format!("unsafe setting `{setting}`"),
                });
            }
            server_opts.push_str(&format!(" -c {setting}"));
        }
        if let Some(tls) = &opts.tls {
            c.write_owned("server.crt", &tls.cert_pem)?;
            c.write_owned("server.key", &tls.key_pem)?;
            server_opts.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                c.dir.join("server.crt").display(),
                c.dir.join("server.key").display()
            ));
            if let Some(ca) = &tls.ca_pem {
                c.write_owned("ca.crt", ca)?;
                server_opts.push_str(&format!(" -c ssl_ca_file={}", c.dir.join("ca.crt").display()));
            }
        }
        if let Some(hba) = &opts.hba {
            c.write_owned("data/pg_hba.conf", hba)?;
        }
        c.server_opts = server_opts;
        let opts = &c.server_opts;
        step_err(
            "pg_ctl start",
            c.cmd("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(c.dir.join("server.log"))
                .args(["-o", opts, "-w", "-t", "60", "start"])
                .stdin(Stdio::null())
                .output(),
        )?;
        Ok(c)
    }

    /// Write a file under the cluster's directory, owned by the server's user, readable only by it
    /// (the server refuses a key file others can read).
    fn write_owned(&self, rel: &str, text: &str) -> Result<(), ClusterError> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(rel);
        let err = |e: String| ClusterError::Step { step: format!("write {rel}"), detail: e };
        std::fs::write(&path, text).map_err(|e| err(e.to_string()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|e| err(e.to_string()))?;
        if let Some((uid, gid)) = self.run_as {
            nix::unistd::chown(&path, Some(uid.into()), Some(gid.into())).map_err(|e| err(e.to_string()))?;
        }
        Ok(())
    }

    /// A TCP connection string (`host=localhost hostaddr=127.0.0.1`) for database `db` as `user`;
    /// only for a cluster started with `tcp`.
    pub fn tcp_url(&self, db: &str, user: &str) -> String {
        format!("host=localhost hostaddr=127.0.0.1 port={} user={user} dbname={db}", self.port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn cmd(&self, prog: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(prog));
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir(&self.dir);
        cmd
    }

    /// A libpq connection string for database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("host={} port={} user=postgres dbname={db}", self.dir.display(), self.port)
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The directory holding the PostgreSQL binaries in use.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// Stop the cluster when process `pid` is gone, even if it is killed: a small shell loop.
    pub fn stop_when_gone(&self, pid: u32) {
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; {} -D {} -m immediate stop >/dev/null 2>&1; rm -rf {}",
            self.bin.join("pg_ctl").display(),
            self.data_dir().display(),
            self.dir.display()
        );
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        let _ = cmd.spawn();
    }

    /// Restart the server (`pg_ctl restart -m fast`: sessions are ended, the data stays).
    pub fn restart(&self) -> Result<(), ClusterError> {
        step_err(
            "pg_ctl restart",
            self.cmd("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_path())
                .args(["-m", "fast", "-w", "-t", "60", "restart"])
                .stdin(Stdio::null())
                .output(),
        )
    }

    /// Stop the server, keeping its data (`pg_ctl stop -m fast`): an outage, until
    /// [`Cluster::start_server`].
    pub fn stop_server(&self) -> Result<(), ClusterError> {
        step_err(
            "pg_ctl stop",
            self.cmd("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "fast", "-w", "stop"])
                .stdin(Stdio::null())
                .output(),
        )
    }

    /// Start a server stopped by [`Cluster::stop_server`]; returns once it accepts connections.
    pub fn start_server(&self) -> Result<(), ClusterError> {
        step_err(
            "pg_ctl start",
            self.cmd("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_path())
                .args(["-o", &self.server_opts, "-w", "-t", "60", "start"])
                .stdin(Stdio::null())
                .output(),
        )
    }

    /// Leave the cluster running after this value is dropped.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// Stop the server and remove its directory.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let _ = self.cmd("pg_ctl").arg("-D").arg(self.data_dir()).args(["-m", "fast", "-w", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.keep {
            self.stop();
        }
    }
}

/// A port nobody listens on right now, for the cluster's TCP listener.
fn free_port() -> Result<u16, ClusterError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| ClusterError::Step { step: "find a free port".into(), detail: e.to_string() })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| ClusterError::Step { step: "find a free port".into(), detail: e.to_string() })
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    /// Where the installer is missing (not Debian, say), the demo says in one sentence which
    /// package to install, and how, instead of trying.
    #[test]
    fn a_machine_that_cannot_install_postgresql_is_told_the_package_in_one_sentence() {
        let e = super::as_root(&["no-such-package-manager", "install", "postgresql"]).expect_err("refused");
        let said = e.to_string();
        assert!(!said.contains('\n'), "one sentence: {said}");
        assert!(said.contains("no no-such-package-manager"), "{said}");
        assert!(said.contains("install Debian's `postgresql` package (`sudo apt-get install postgresql`)"), "{said}");
    }
}
