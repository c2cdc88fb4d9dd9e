//! The commands behind the binary, one function each: the binary parses the command line and
//! calls one of these; each returns `Result<(), CommandError>`, and [`CommandError::exit_code`] is
//! the one place an error becomes an exit code.
//!
//! Owns reading the config a command names, connecting for it, and what it prints. It must not
//! parse a command line (the binary does) nor hold the work itself: each command calls the module
//! that does it (`check`, `install`, `grants`, `admin`, `status`, `explain`, `simulate`, `daemon`).

#[macro_use]
pub mod out;
mod error;
mod logging;
mod queue;
mod read;
mod revert;
mod run;
mod setup;

use std::path::PathBuf;

use crate::config::Config;
use crate::db;

pub use error::CommandError;
pub use logging::init_tracing;
pub use queue::{requeue, unpause};
pub use read::{explain, report, simulate, status, Replay};
pub use revert::revert;
pub use run::run;
pub use setup::{backfill, check, grants, install, install_dry_run, uninstall};

/// What every command is given: the config file, and a connection string in place of its
/// `database.url` (`--database-url`).
pub struct Invocation {
    pub config: PathBuf,
    pub database_url: Option<String>,
}

/// The config named on the command line, with `--database-url` in place of its `database.url`.
pub fn load_config(inv: &Invocation) -> Result<Config, CommandError> {
    let mut cfg = Config::load(&inv.config).map_err(|e| CommandError::Config(e.to_string()))?;
    if let Some(url) = inv.database_url.as_deref() {
        if let Err(e) = db::parse_url(url) {
            let e = e.to_string();
            return Err(CommandError::Config(format!("--database-url: {}", e.trim_start_matches("database.url: "))));
        }
        cfg.database.url = url.to_string();
        cfg.database.password_file = None;
    }
    Ok(cfg)
}

/// The config and a connection to the database it names, for the one-shot commands.
pub async fn connect(inv: &Invocation, label: &str) -> Result<(Config, tokio_postgres::Client), CommandError> {
    let cfg = load_config(inv)?;
    let client = db::connect(&cfg.database, label).await.map_err(CommandError::connect)?;
    Ok((cfg, client))
}

/// The longest `--since` reaches back: a hundred years.
pub const SINCE_MAX_DAYS: u64 = 36_500;

/// A `--since` value: a duration (`2h`, `7d`), at most a hundred years.
pub fn since_arg(text: &str) -> Result<humantime::Duration, String> {
    let d: humantime::Duration =
        text.parse().map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. 2h, 7d"))?;
    if std::time::Duration::from(d) > std::time::Duration::from_secs(SINCE_MAX_DAYS * 86_400) {
        return Err(format!("`{text}` reaches back too far; use at most {SINCE_MAX_DAYS}d (a hundred years)"));
    }
    Ok(d)
}

/// A `--since` duration as the moment it reaches back to (range-checked by [`since_arg`]).
pub fn since(d: Option<humantime::Duration>) -> Option<chrono::DateTime<chrono::Utc>> {
    d.and_then(|d| chrono::Duration::from_std(d.into()).ok()).and_then(|d| chrono::Utc::now().checked_sub_signed(d))
}
