//! `cargo xtask`: the README's test command, on a machine that has only Rust.
//!
//! Owns the set-up the test suite needs beyond Rust — PostgreSQL's server binaries, the `postgres`
//! user, systemd-analyze, setpriv and unshare, Chromium, Node.js and npm, readelf, cargo-deb — and
//! running every suite with `cargo test --no-fail-fast`. It installs only what is missing, with
//! the system's package manager (Debian's apt-get, through sudo when not root), and says what it
//! installs and why, one line each. It knows nothing of the router, and it must never skip a
//! suite: what it cannot install is one line naming the package, and a failure.
//!
//! ```text
//! cargo xtask test [ARGS]   install what is missing, then `cargo test --no-fail-fast ARGS`
//! cargo xtask setup         install what is missing, nothing else (.ci/run, before its lints)
//! cargo xtask needs         list what the tests need, and which of it is here
//! cargo xtask outdated      warn of each dependency a semver-incompatible release is out for
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// One thing the suite needs from the machine.
struct Need {
    what: &'static str,
    why: &'static str,
    here: fn() -> bool,
    how: How,
}

/// How a missing need is installed.
enum How {
    /// Debian packages, with apt-get.
    Apt(&'static [&'static str]),
    /// A crate's binary, with `cargo install --locked`.
    Crate { name: &'static str, version: &'static str },
    /// The system user `postgres` (initdb refuses root).
    PostgresUser,
}

const NEEDS: &[Need] = &[
    Need {
        what: "PostgreSQL's server binaries",
        why: "every suite starts a throwaway cluster from them (initdb, postgres, pgbench)",
        here: postgres_here,
        how: How::Apt(&["postgresql"]),
    },
    Need {
        what: "the `postgres` user",
        why: "as root, clusters run as `postgres`: initdb refuses root",
        here: postgres_user_here,
        how: How::PostgresUser,
    },
    Need {
        what: "systemd-analyze",
        why: "tests/service.rs verifies the shipped unit and rates its exposure",
        here: || on_path("systemd-analyze"),
        how: How::Apt(&["systemd"]),
    },
    Need {
        what: "setpriv and unshare",
        why: "tests/service.rs runs the daemon under the unit's sandbox",
        here: || on_path("setpriv") && on_path("unshare"),
        how: How::Apt(&["util-linux"]),
    },
    Need {
        what: "Chromium",
        why: "tests/report.rs renders the HTML report headless and measures its bars",
        here: || Path::new("/usr/bin/chromium").exists(),
        how: How::Apt(&["chromium"]),
    },
    Need {
        what: "chromedriver",
        why: "tests/browser.rs drives the web console in Chromium (log in, drag a rule, try, save)",
        here: || Path::new("/usr/bin/chromedriver").exists(),
        how: How::Apt(&["chromium-driver"]),
    },
    Need {
        what: "git",
        why: "the console commits each save when the rules directory is a git repository (tests/console.rs)",
        here: || on_path("git"),
        how: How::Apt(&["git"]),
    },
    Need {
        what: "Node.js and npm",
        why: "tests/bench.rs runs the drain benchmark, which measures graphile-worker beside the router",
        here: || on_path("node") && on_path("npm"),
        how: How::Apt(&["nodejs", "npm"]),
    },
    Need {
        what: "readelf and dpkg-deb",
        why: "tests/package.rs inspects the Debian package and its binary",
        here: || on_path("readelf") && on_path("dpkg-deb"),
        how: How::Apt(&["binutils", "dpkg"]),
    },
    Need {
        what: "cargo-deb",
        why: "tests/package.rs builds the Debian package",
        here: cargo_deb_here,
        how: How::Crate { name: "cargo-deb", version: "3.8.0" },
    },
];

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let done = match task.as_str() {
        "test" => setup().and_then(|()| test(&rest)),
        "setup" => setup().map(|()| ExitCode::SUCCESS),
        "needs" => Ok(needs()),
        "outdated" => Ok(outdated()),
        _ => {
            eprintln!("usage: cargo xtask test [CARGO TEST ARGS] | setup | needs | outdated");
            return ExitCode::from(64);
        }
    };
    done.unwrap_or_else(|e| {
        eprintln!("xtask: {e}");
        ExitCode::FAILURE
    })
}

/// Print each need, whether it is here, and why the suite needs it.
fn needs() -> ExitCode {
    for n in NEEDS {
        let state = if (n.here)() { "here   " } else { "missing" };
        println!("{state}  {} ({}): {}", n.what, how_words(&n.how), n.why);
    }
    ExitCode::SUCCESS
}

/// Each dependency whose newest release `Cargo.toml` does not allow (cargo's own "Unchanged …
/// (available: …)"), as a warning: CI says it, and goes on. The lock file is not touched.
fn outdated() -> ExitCode {
    let out = Command::new(cargo()).current_dir(root()).args(["update", "--dry-run", "--verbose"]).output();
    let Ok(out) = out else {
        println!("xtask: warning: cannot run `cargo update --dry-run` to look for newer releases");
        return ExitCode::SUCCESS;
    };
    let text = String::from_utf8_lossy(&out.stderr);
    let behind: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Unchanged "))
        .filter(|l| l.contains("(available: "))
        .map(|l| l.replace("(available: ", "(newer release out: "))
        .collect();
    if !out.status.success() {
        println!("xtask: warning: the registry could not be asked for newer releases");
    } else if behind.is_empty() {
        println!("xtask: every dependency is on its newest release line");
    }
    for b in behind {
        println!("xtask: warning: behind: {b}");
    }
    ExitCode::SUCCESS
}

fn how_words(how: &How) -> String {
    match how {
        How::Apt(pkgs) => format!("Debian: {}", pkgs.join(" ")),
        How::Crate { name, version } => format!("cargo install {name} --locked --version {version}"),
        How::PostgresUser => "useradd --system postgres".into(),
    }
}

/// Install every missing need: Debian packages first (they bring the `postgres` user), then the
/// user, then crates. Each is checked again after its install.
fn setup() -> Result<(), String> {
    let missing: Vec<&Need> = NEEDS.iter().filter(|n| !(n.here)()).collect();
    if missing.is_empty() {
        println!("xtask: everything the tests need is here (`cargo xtask needs` lists it)");
        return Ok(());
    }
    for n in &missing {
        println!("xtask: installing {} ({}): {}", n.what, how_words(&n.how), n.why);
    }
    let apt: Vec<&str> = missing
        .iter()
        .filter_map(|n| if let How::Apt(p) = n.how { Some(p) } else { None })
        .flatten()
        .copied()
        .collect();
    if !apt.is_empty() {
        apt_install(&apt)?;
    }
    if !postgres_user_here() {
        as_root(&["useradd", "--system", "--home", "/var/lib/postgresql", "--shell", "/bin/sh", "postgres"])?;
    }
    for n in &missing {
        if let How::Crate { name, version } = n.how {
            run(Command::new(cargo()).args(["install", "--quiet", "--locked", name, "--version", version]))?;
        }
    }
    match NEEDS.iter().find(|n| !(n.here)()) {
        Some(n) => Err(format!("{} is still missing after its install ({})", n.what, how_words(&n.how))),
        None => Ok(()),
    }
}

fn apt_install(pkgs: &[&str]) -> Result<(), String> {
    if !on_path("apt-get") {
        return Err(format!(
            "this machine has no apt-get: install the packages named above by hand ({}), then run again",
            pkgs.join(" ")
        ));
    }
    as_root(&["apt-get", "update", "-qq"])?;
    let mut install = vec!["apt-get", "install", "-y", "-qq"];
    install.extend_from_slice(pkgs);
    as_root(&install)
}

/// Run a command as root: directly when root, through sudo otherwise.
fn as_root(argv: &[&str]) -> Result<(), String> {
    let mut cmd = if is_root() {
        Command::new(argv[0])
    } else if on_path("sudo") {
        let mut c = Command::new("sudo");
        c.args(["env", "DEBIAN_FRONTEND=noninteractive", argv[0]]);
        c
    } else {
        return Err(format!("`{}` needs root, and this is not root and has no sudo: run it as root", argv.join(" ")));
    };
    run(cmd.args(&argv[1..]).env("DEBIAN_FRONTEND", "noninteractive"))
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let words = format!("{cmd:?}");
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("{words} failed ({s})")),
        Err(e) => Err(format!("{words} could not start: {e}")),
    }
}

/// `cargo test --no-fail-fast`: every suite runs and reports, whichever fails first.
fn test(rest: &[String]) -> Result<ExitCode, String> {
    println!("xtask: cargo test --no-fail-fast {}", rest.join(" "));
    let status = Command::new(cargo())
        .current_dir(root())
        .args(["test", "--no-fail-fast"])
        .args(rest)
        .status()
        .map_err(|e| format!("cargo test could not start: {e}"))?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The workspace's root: this crate's parent folder.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Where the router's harness looks: `$PG_BIN`, `pg_config --bindir`, /usr/lib/postgresql/*/bin.
fn postgres_here() -> bool {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file() && d.join("pgbench").is_file();
    if std::env::var_os("PG_BIN").is_some_and(|p| has(Path::new(&p))) {
        return true;
    }
    if let Ok(o) = Command::new("pg_config").arg("--bindir").output() {
        if has(Path::new(String::from_utf8_lossy(&o.stdout).trim())) {
            return true;
        }
    }
    std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|d| d.flatten().any(|e| has(&e.path().join("bin"))))
}

fn postgres_user_here() -> bool {
    !is_root() || Command::new("id").arg("postgres").output().is_ok_and(|o| o.status.success())
}

fn cargo_deb_here() -> bool {
    Command::new(cargo()).args(["deb", "--version"]).output().is_ok_and(|o| o.status.success())
}
