//! The commands that read and tell: `status`, `explain`, `simulate` and `report`. They change
//! nothing; what they print comes from the modules that read (`status`, `explain`, `simulate`).

use std::path::PathBuf;

use super::out::write_whole;
use super::{connect, since, CommandError, Invocation};
use crate::config::Config;
use crate::{explain, status};

pub async fn status(inv: &Invocation, json: bool) -> Result<(), CommandError> {
    let (cfg, client) = connect(inv, " status").await?;
    let report = status::report(&client, &cfg).await.map_err(|e| CommandError::db(e, &cfg))?;
    if json {
        say!("{}", serde_json::to_string_pretty(&report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")));
    } else {
        say_raw!("{}", report.text());
    }
    if report.healthy {
        Ok(())
    } else {
        Err(CommandError::Failure(String::new()))
    }
}

pub async fn explain(inv: &Invocation, opportunity_id: &str, json: bool) -> Result<(), CommandError> {
    let (cfg, client) = connect(inv, " explain").await?;
    let found = if json {
        let (doc, found) =
            explain::explain_json(&client, &cfg, opportunity_id).await.map_err(|e| CommandError::db(e, &cfg))?;
        say!("{}", serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")));
        found
    } else {
        let (text, found) =
            explain::explain(&client, &cfg, opportunity_id).await.map_err(|e| CommandError::db(e, &cfg))?;
        say_raw!("{text}");
        found
    };
    if found {
        Ok(())
    } else {
        Err(CommandError::Failure(String::new()))
    }
}

/// What `simulate` and `report` replay, and how they print.
pub struct Replay {
    pub window: humantime::Duration,
    pub ids: Option<PathBuf>,
    pub json: bool,
    pub html: Option<PathBuf>,
    pub seed: u64,
    pub in_force: bool,
}

impl Replay {
    /// The library's options: the window's start, the ids of `--opportunities FILE`.
    fn options(&self) -> Result<crate::simulate::Options, CommandError> {
        let ids = match &self.ids {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| CommandError::Failure(format!("--opportunities {}: {e}", path.display())))?;
                Some(crate::simulate::ids_from(&text))
            }
            None => None,
        };
        let window = match &self.ids {
            Some(path) => format!("the opportunities of {}", path.display()),
            None => format!("first decided in the last {}", self.window),
        };
        Ok(crate::simulate::Options {
            since: since(Some(self.window)).unwrap_or_else(chrono::Utc::now),
            ids,
            seed: self.seed,
            window,
            in_force: self.in_force,
        })
    }

    /// The report on stdout (text or JSON), and as a page when `--html` says where.
    fn print(&self, report: &crate::report::Report) -> Result<(), CommandError> {
        if self.json {
            say!("{}", serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")));
        } else {
            say_raw!("{}", report.text());
        }
        if let Some(path) = &self.html {
            write_whole(path, &crate::report::html::render(report))
                .map_err(|e| CommandError::Failure(format!("--html {}: {e}", path.display())))?;
            eprintln!("wrote {}", path.display());
        }
        Ok(())
    }
}

/// A replay's failure: the rules or mapping (78), or the database.
fn replay_error(e: crate::simulate::SimulateError, cfg: &Config) -> CommandError {
    match e {
        crate::simulate::SimulateError::Sql(e) => CommandError::db(e, cfg),
        e => CommandError::Config(e.to_string()),
    }
}

pub async fn simulate(inv: &Invocation, rules: Option<PathBuf>, replay: Replay) -> Result<(), CommandError> {
    let (mut cfg, mut client) = connect(inv, " simulate").await?;
    if let Some(rules) = rules {
        cfg.router.rules_dir = rules;
    }
    let opts = replay.options()?;
    let (engine, sql) =
        crate::simulate::rules_as_routed(&client, &cfg, replay.in_force).await.map_err(|e| replay_error(e, &cfg))?;
    let report =
        crate::simulate::simulate(&mut client, &cfg, &sql, &engine, &opts).await.map_err(|e| replay_error(e, &cfg))?;
    replay.print(&report)
}

pub async fn report(inv: &Invocation, replay: Replay) -> Result<(), CommandError> {
    let (cfg, mut client) = connect(inv, " report").await?;
    let opts = replay.options()?;
    let (engine, sql) =
        crate::simulate::rules_as_routed(&client, &cfg, true).await.map_err(|e| replay_error(e, &cfg))?;
    let report =
        crate::simulate::report(&mut client, &cfg, &sql, &engine, &opts).await.map_err(|e| replay_error(e, &cfg))?;
    replay.print(&report)
}
