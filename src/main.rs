//! The `oppty-router` binary: parse the command line and the config, set up logging, build the
//! runtime, and call the library. Exit codes are documented in the README (sysexits).

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use clap::{Parser, Subcommand};
use oppty_router::config::{Config, LogFormat};
use oppty_router::{check, daemon, db, demo, exit, explain, install, load_rules};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "oppty-router",
    version,
    about = "Routes a legacy CRM's sales opportunities to the right team and member"
)]
struct Cli {
    /// The daemon config.
    #[arg(
        short,
        long,
        global = true,
        env = "OPPTY_ROUTER_CONFIG",
        default_value = "/etc/oppty-router/oppty-router.toml"
    )]
    config: PathBuf,
    /// Connect with this connection string instead of the config's `database.url` (and without its
    /// `database.password_file`): for a DBA running `install` or `grants` as the database owner.
    #[arg(long, global = true, env = "OPPTY_ROUTER_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: drain captured changes, route, write owners back.
    Run,
    /// Validate the config and the rules (and the mapping against the database when reachable).
    Check {
        /// Do not connect to the database.
        #[arg(long)]
        offline: bool,
        /// Check this rules directory instead of the config's `router.rules_dir`.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Create the router's schema and the capture triggers (idempotent).
    Install {
        /// Print the SQL instead of running it.
        #[arg(long)]
        dry_run: bool,
        /// Do not queue the open, unowned opportunities already in the CRM (see `backfill`).
        #[arg(long)]
        no_backfill: bool,
    },
    /// Queue every open, unowned opportunity for routing (those from before `install`, or left
    /// behind); prints how many. Nothing already queued is queued twice.
    Backfill {
        /// Only those created this recently (`2h`, `7d`; needs opportunity.created_at).
        #[arg(long)]
        since: Option<humantime::Duration>,
        /// Count them, queue nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove the capture triggers and the router's schema; the CRM's tables are untouched.
    Uninstall {
        /// Print the SQL instead of running it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Everything on a throwaway database: sample CRM, live routing, summary, latency.
    Demo {
        /// Leave the database running and print how to connect.
        #[arg(long)]
        keep: bool,
        /// How long to stream opportunities.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Opportunities per second in the stream.
        #[arg(long, default_value_t = 300)]
        rate: u32,
        /// Opportunities queued while the daemon is stopped, to measure the drain rate.
        #[arg(long, default_value_t = 20_000)]
        backlog: u32,
        /// Rules directory (default: config/rules).
        #[arg(long)]
        rules: Option<PathBuf>,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Put opportunities left behind back in the queue: those the router left unassigned, or
    /// whose events were dead-lettered (after fixing the cause: see `status`).
    Requeue {
        /// The opportunities left unassigned (no rule yielded anybody, no fallback owner).
        #[arg(long, required_unless_present = "dead_letter")]
        unassigned: bool,
        /// The dead-lettered events.
        #[arg(long)]
        dead_letter: bool,
        /// Only those left (or failed) this recently (`2h`, `7d`).
        #[arg(long)]
        since: Option<humantime::Duration>,
    },
    /// Print the GRANT statements a dedicated daemon role needs (run them as the database owner).
    Grants {
        /// The daemon's role (as it will log in: `user=` in database.url).
        role: String,
    },
    /// Show the daemon's state: rules in force, the last refused reload, the queue.
    Status {
        /// Print the report as JSON (for scripts and monitoring).
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of rule files (committed as config/rules.schema.json).
    Schema,
    /// Lift a member's pause for letting opportunities lapse (see `status`); the daemon gives them
    /// work again from its next sweep.
    Unpause {
        /// The member's CRM user id.
        member: String,
        /// Who lifts it, recorded with the pause (default: the login name).
        #[arg(long)]
        by: Option<String>,
    },
    /// Show why the router assigned an opportunity the way it did.
    Explain {
        /// The opportunity's id, as text.
        opportunity_id: String,
    },
}

fn init_tracing(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colours only for a person at a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn load_config(path: &std::path::Path, url: Option<&str>) -> Result<Config, i32> {
    let mut cfg = Config::load(path).map_err(|e| {
        eprintln!("{e}");
        exit::CONFIG
    })?;
    if let Some(url) = url {
        if let Err(e) = db::parse_url(url) {
            eprintln!("--database-url: {}", e.to_string().trim_start_matches("database.url: "));
            return Err(exit::CONFIG);
        }
        cfg.database.url = url.to_string();
        cfg.database.password_file = None;
    }
    Ok(cfg)
}

/// The config and a connection to the database it names, for the one-shot commands; the exit code
/// to return otherwise (78 for a bad config, 69 for an unreachable database).
async fn connect_with_config(
    path: &std::path::Path,
    url: Option<&str>,
    label: &str,
) -> Result<(Config, tokio_postgres::Client), i32> {
    let cfg = load_config(path, url)?;
    match db::connect(&cfg.database, label).await {
        Ok(client) => Ok((cfg, client)),
        Err(e) => {
            eprintln!("{e}");
            Err(connect_exit_code(&e))
        }
    }
}

fn requeue_failure(e: oppty_router::backfill::BackfillError, cfg: &Config) -> i32 {
    match e {
        oppty_router::backfill::BackfillError::Sql(e) => db_failure(&e, cfg),
        e => {
            eprintln!("{}: {e}", cfg.path.display());
            exit::CONFIG
        }
    }
}

/// 78 when the server refuses us for a reason a retry will not fix, 69 when it cannot be reached.
fn connect_exit_code(e: &db::DbError) -> i32 {
    match e.kind() {
        db::ErrorKind::Refused => exit::CONFIG,
        _ => exit::UNAVAILABLE,
    }
}

/// Print a failed statement as the server said it; the exit code by its kind (78 for a refusal
/// such as a missing router schema or grant or a mapping that does not fit, 69 for a lost
/// connection, 75 for a deadlock, a lock or a timeout, 1 for a row's data).
fn db_failure(e: &tokio_postgres::Error, cfg: &Config) -> i32 {
    eprintln!("{}", db::describe(e));
    match db::kind_of(e) {
        db::ErrorKind::Refused => {
            eprintln!(
                "hint: is the router installed in this database (`oppty-router install`), and does this role have \
                 its grants (`oppty-router grants ROLE`)? schema: {}",
                cfg.router.schema.as_str()
            );
            exit::CONFIG
        }
        db::ErrorKind::Connection => exit::UNAVAILABLE,
        db::ErrorKind::Contention | db::ErrorKind::Timeout => exit::TEMPFAIL,
        db::ErrorKind::Mapping => exit::CONFIG,
        db::ErrorKind::Row => exit::FAILURE,
    }
}

fn main() {
    let cli = Cli::parse();
    let code = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("oppty-router").build() {
        Ok(rt) => rt.block_on(real_main(cli)),
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            exit::FAILURE
        }
    };
    std::process::exit(code);
}

async fn real_main(cli: Cli) -> i32 {
    match cli.command {
        Command::Demo { keep, seconds, rate, backlog, rules, seed } => {
            init_tracing(LogFormat::Text, "warn");
            match demo::run(demo::DemoOptions { seconds, rate, backlog, keep, rules_dir: rules, seed }).await {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!("demo failed: {e:#}");
                    exit::FAILURE
                }
            }
        }
        Command::Check { offline, rules } => {
            let mut cfg = match load_config(&cli.config, cli.database_url.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if let Some(r) = rules {
                cfg.router.rules_dir = r;
            }
            init_tracing(LogFormat::Text, "warn");
            let report = check::check(&cfg, offline).await;
            for l in &report.lines {
                println!("{l}");
            }
            report.exit_code()
        }
        Command::Install { dry_run, .. } | Command::Uninstall { dry_run }
            if dry_run && matches!(cli.command, Command::Install { .. }) =>
        {
            let cfg = match load_config(&cli.config, cli.database_url.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            print!("{}", install::dry_run_sql(&cfg));
            exit::OK
        }
        Command::Install { .. } | Command::Uninstall { .. } => {
            let uninstall = matches!(cli.command, Command::Uninstall { .. });
            let dry_run = matches!(cli.command, Command::Uninstall { dry_run: true });
            let cfg = match load_config(&cli.config, cli.database_url.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_tracing(cfg.log_format, &cfg.log_level);
            let mut client = match db::connect(&cfg.database, " install").await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return connect_exit_code(&e);
                }
            };
            if uninstall {
                let result = if dry_run {
                    install::uninstall_sql(&mut client, &cfg).await
                } else {
                    install::uninstall(&mut client, &cfg).await
                };
                match result {
                    Ok(sql) if dry_run => {
                        print!("{sql}");
                        exit::OK
                    }
                    Ok(_) => {
                        println!(
                            "uninstalled: the capture triggers and schema {} are gone",
                            cfg.router.schema.as_str()
                        );
                        exit::OK
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        exit::FAILURE
                    }
                }
            } else {
                if let Err(e) = oppty_router::crm::prepare(&client, &cfg).await {
                    eprintln!("{}: {e}", cfg.path.display());
                    return exit::CONFIG;
                }
                let backfill = !matches!(cli.command, Command::Install { no_backfill: true, .. });
                match install::install_with(&mut client, &cfg, backfill).await {
                    Ok(r) => {
                        if r.applied.is_empty() {
                            println!("schema {} is up to date", cfg.router.schema.as_str());
                        }
                        for a in r.applied {
                            println!("applied {a}");
                        }
                        for t in r.triggers {
                            println!("trigger {t}");
                        }
                        if backfill {
                            println!("queued {} open, unowned opportunities already in the CRM", r.backfilled);
                        }
                        exit::OK
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        exit::FAILURE
                    }
                }
            }
        }
        Command::Grants { role } => {
            let (cfg, mut client) = match connect_with_config(&cli.config, cli.database_url.as_deref(), " grants").await
            {
                Ok(x) => x,
                Err(code) => return code,
            };
            match oppty_router::grants::grants(&mut client, &cfg, &role).await {
                Ok(script) => {
                    print!("{script}");
                    exit::OK
                }
                Err(oppty_router::grants::GrantsError::Sql(e)) => db_failure(&e, &cfg),
                Err(e) => {
                    eprintln!("{}: {e}", cfg.path.display());
                    exit::CONFIG
                }
            }
        }
        Command::Backfill { since, dry_run } => {
            let (cfg, client) = match connect_with_config(&cli.config, cli.database_url.as_deref(), " backfill").await {
                Ok(x) => x,
                Err(code) => return code,
            };
            let since = since.and_then(|d| chrono::Duration::from_std(d.into()).ok()).map(|d| chrono::Utc::now() - d);
            match oppty_router::backfill::backfill(&client, &cfg, since, dry_run).await {
                Ok(n) if dry_run => {
                    println!("{n} open, unowned opportunities would be queued (dry run: nothing queued)");
                    exit::OK
                }
                Ok(n) => {
                    println!("queued {n} open, unowned opportunities for routing");
                    exit::OK
                }
                Err(oppty_router::backfill::BackfillError::Sql(e)) => db_failure(&e, &cfg),
                Err(e) => {
                    eprintln!("{}: {e}", cfg.path.display());
                    exit::CONFIG
                }
            }
        }
        Command::Requeue { unassigned, dead_letter, since } => {
            let (cfg, client) = match connect_with_config(&cli.config, cli.database_url.as_deref(), " requeue").await {
                Ok(x) => x,
                Err(code) => return code,
            };
            let since = since.and_then(|d| chrono::Duration::from_std(d.into()).ok()).map(|d| chrono::Utc::now() - d);
            let mut code = exit::OK;
            if unassigned {
                match oppty_router::backfill::requeue_unassigned(&client, &cfg, since).await {
                    Ok(n) => println!("queued {n} unassigned opportunities again"),
                    Err(e) => code = requeue_failure(e, &cfg),
                }
            }
            if dead_letter && code == exit::OK {
                match oppty_router::backfill::requeue_dead_letters(&client, &cfg, since).await {
                    Ok(n) => println!("moved {n} dead-lettered events back into the queue"),
                    Err(e) => code = requeue_failure(e, &cfg),
                }
            }
            code
        }
        Command::Schema => {
            print!("{}", oppty_router::rules::json_schema());
            exit::OK
        }
        Command::Status { json } => {
            let (cfg, client) = match connect_with_config(&cli.config, cli.database_url.as_deref(), " status").await {
                Ok(x) => x,
                Err(code) => return code,
            };
            match oppty_router::status::report(&client, &cfg).await {
                Ok(report) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
                        );
                    } else {
                        print!("{}", report.text());
                    }
                    if report.healthy {
                        exit::OK
                    } else {
                        exit::FAILURE
                    }
                }
                Err(e) => db_failure(&e, &cfg),
            }
        }
        Command::Unpause { member, by } => {
            let (cfg, client) = match connect_with_config(&cli.config, cli.database_url.as_deref(), " unpause").await {
                Ok(x) => x,
                Err(code) => return code,
            };
            let by = by.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "admin".into());
            match oppty_router::status::unpause(&client, &cfg, &member, &by).await {
                Ok(true) => {
                    println!("{member}: pause lifted by {by}; the daemon gives them work again from its next sweep");
                    exit::OK
                }
                Ok(false) => {
                    eprintln!("{member}: not paused for lapses (see `oppty-router status`)");
                    exit::FAILURE
                }
                Err(e) => db_failure(&e, &cfg),
            }
        }
        Command::Explain { opportunity_id } => {
            let (cfg, client) = match connect_with_config(&cli.config, cli.database_url.as_deref(), " explain").await {
                Ok(x) => x,
                Err(code) => return code,
            };
            match explain::explain(&client, &cfg, &opportunity_id).await {
                Ok((text, found)) => {
                    print!("{text}");
                    if found {
                        exit::OK
                    } else {
                        exit::FAILURE
                    }
                }
                Err(e) => db_failure(&e, &cfg),
            }
        }
        Command::Run => {
            let cfg = match load_config(&cli.config, cli.database_url.as_deref()) {
                Ok(c) => Arc::new(c),
                Err(code) => return code,
            };
            init_tracing(cfg.log_format, &cfg.log_level);
            run_daemon(cfg).await
        }
    }
}

async fn run_daemon(cfg: Arc<Config>) -> i32 {
    let engine = match load_rules(&cfg) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            return exit::CONFIG;
        }
    };
    tracing::info!(config = %cfg.path.display(), database = %cfg.redacted_url(), rules = %engine.version, "starting");
    let rules = Arc::new(ArcSwap::from_pointee(engine));
    let directory = Arc::new(ArcSwap::from_pointee(oppty_router::directory_flags(&cfg)));
    let reloader = Arc::new(oppty_router::reload::Reloader::new(cfg.clone(), rules.clone(), directory.clone()));
    let shutdown = CancellationToken::new();
    let watcher = {
        let (reloader, dir, debounce, shutdown) =
            (reloader.clone(), cfg.router.rules_dir.clone(), cfg.router.reload_debounce, shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = oppty_router::reload::watch(reloader, dir.clone(), debounce, shutdown).await {
                tracing::error!(dir = %dir.display(), error = %e, "cannot watch the rules directory; edits load on SIGHUP only");
            }
        })
    };

    // Signals: SIGTERM/SIGINT stop (finish the batch, commit, exit 0); SIGHUP reloads the rules.
    let signals = {
        let shutdown = shutdown.clone();
        let reloader = reloader.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
                (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
            else {
                tracing::error!("cannot install signal handlers");
                shutdown.cancel();
                return;
            };
            loop {
                tokio::select! {
                    _ = term.recv() => { tracing::info!("SIGTERM: finishing the batch, then exiting"); break; }
                    _ = int.recv() => { tracing::info!("SIGINT: finishing the batch, then exiting"); break; }
                    _ = hup.recv() => {
                        // Logged by the reloader, with what changed or every problem. Not awaited
                        // here, so a SIGTERM is heard at once.
                        let reloader = reloader.clone();
                        tokio::spawn(async move {
                            oppty_router::systemd::reloading();
                            let r = reloader.reload_in_background("SIGHUP").await;
                            let version = reloader.status.load().version.clone();
                            oppty_router::systemd::reloaded(&match r {
                                Ok(_) => format!("routing with rules {version}"),
                                Err(_) => format!("routing with rules {version}; the last edit was refused (see the log)"),
                            });
                        });
                    }
                }
            }
            oppty_router::systemd::stopping();
            shutdown.cancel();
        })
    };

    let run = daemon::run(
        cfg.clone(),
        rules,
        shutdown.clone(),
        daemon::RunOptions { notify_systemd: true, directory, reloader: Some(reloader), ..Default::default() },
    );
    tokio::pin!(run);
    let result = tokio::select! {
        r = &mut run => r,
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(cfg.router.shutdown_timeout).await;
        } => {
            tracing::error!("the last batch did not finish within router.shutdown_timeout; exiting (its events stay queued)");
            signals.abort();
            return exit::FAILURE;
        }
    };
    signals.abort();
    watcher.abort();
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("{}: {e}", cfg.path.display());
            match &e {
                daemon::DaemonError::Mapping(_) => {
                    tracing::error!(error = %e, "stopping: the mapping does not match the database")
                }
                daemon::DaemonError::Refused(_) => {
                    tracing::error!(error = %e, "stopping: the database refuses the daemon, and retrying will not help")
                }
            }
            exit::CONFIG
        }
    }
}
