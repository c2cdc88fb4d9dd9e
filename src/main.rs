//! The `oppty-router` binary: parse the command line and the config, set up logging, build the
//! runtime, and call the library. Exit codes are documented in the README (sysexits).

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use clap::{CommandFactory, Parser, Subcommand};
use oppty_router::config::{Config, LogFormat};
use oppty_router::{admin, backfill, check, daemon, db, demo, exit, explain, grants, install, load_rules, status};
use tokio_util::sync::CancellationToken;

/// Print a line on stdout; a closed pipe (`explain … | head`) ends the command quietly (exit 0).
macro_rules! say {
    () => { out(format_args!(""), true) };
    ($($t:tt)*) => { out(format_args!($($t)*), true) };
}

/// [`say!`] without the newline.
macro_rules! say_raw {
    ($($t:tt)*) => { out(format_args!($($t)*), false) };
}

fn out(args: std::fmt::Arguments<'_>, newline: bool) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let written = o.write_fmt(args).and_then(|()| if newline { o.write_all(b"\n") } else { Ok(()) });
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(exit::OK);
        }
    }
}

#[derive(Parser)]
#[command(
    name = "oppty-router",
    version,
    about = "Routes a legacy CRM's sales opportunities to the right team and member",
    after_long_help = "Exit status: 0 success; 1 a failure at run time (see the message); 69 the database \
        cannot be reached, or the metrics port is taken; 75 the database was busy (run again); 78 the config, \
        the rules or the mapping are wrong (systemd does not restart on it).\n\nFiles: \
        /etc/oppty-router/oppty-router.toml (the config), /etc/oppty-router/rules (the rule files). \
        Documentation: /usr/share/doc/oppty-router (README, ARCHITECTURE, rules)."
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
        #[arg(long, value_parser = since_arg)]
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
        #[arg(long, value_parser = since_arg)]
        since: Option<humantime::Duration>,
        /// Only these opportunities (repeat it, or separate ids with commas).
        #[arg(long = "id", value_name = "OPPORTUNITY", value_delimiter = ',')]
        ids: Vec<String>,
    },
    /// Print the GRANT statements a dedicated daemon role needs, in parts by who can grant them
    /// (the owners of the CRM's tables and of the router's schema, the database owner).
    Grants {
        /// The daemon's role (as it will log in: `user=` in database.url).
        role: String,
        /// Print the REVOKE statements withdrawing them instead (before or after `uninstall`).
        #[arg(long)]
        revoke: bool,
    },
    /// Show the daemon's state: rules in force, the latest refusal of new rules, the queue.
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
        /// Print the decisions as JSON (each with its stored explanation).
        #[arg(long)]
        json: bool,
    },
    /// Replay past opportunities through a candidate rules directory, writing nothing: what each
    /// team and member would have received, fairness, fallbacks, and every owner that would change.
    Simulate {
        /// The candidate rules directory (a copy of the rules, with your edits).
        #[arg(long, required_unless_present = "in_force")]
        rules: Option<PathBuf>,
        /// Replay each decision with the rule set that made it (as the router kept it), from what
        /// it saw: what the router did, decided again; anything that would change is a fault.
        #[arg(long, conflicts_with = "rules")]
        in_force: bool,
        /// Replay the opportunities first decided this recently (`7d`, `36h`).
        #[arg(long, default_value = "7d", conflicts_with = "opportunities", value_parser = since_arg)]
        since: humantime::Duration,
        /// Replay exactly these opportunities: a file with one id a line (or a CSV, id first).
        #[arg(long, value_name = "FILE")]
        opportunities: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also write the report as one self-contained HTML page (charts inline, no network).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// The replay's randomness (random picks, ties): the same seed gives the same replay.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// What the router did: assignments per team, member and rule, fairness, fallbacks, reclaims.
    Report {
        /// The opportunities first decided this recently (`30d`, `12h`).
        #[arg(long, default_value = "30d", value_parser = since_arg)]
        since: humantime::Duration,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also write the report as one self-contained HTML page (charts inline, no network).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) to stdout, or write one page per command into a directory.
    Manpage {
        /// Write `oppty-router.1` and `oppty-router-<command>.1` here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
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

/// Why a command failed: what is printed, and the exit code (sysexits, as the README lists them).
#[derive(Debug)]
enum CliError {
    /// The config, the rules or the mapping are wrong: a person must fix them (78).
    Config(String),
    /// The database cannot be reached (69).
    Unavailable(String),
    /// A statement failed: the server's words, and the code by its kind.
    Db { error: tokio_postgres::Error, schema: String },
    /// Anything else (1); an empty message when the command printed its own report.
    Failure(String),
}

impl CliError {
    fn exit_code(&self) -> i32 {
        match self {
            CliError::Config(_) => exit::CONFIG,
            CliError::Unavailable(_) => exit::UNAVAILABLE,
            CliError::Failure(_) => exit::FAILURE,
            // 78 for a refusal (a missing router schema or grant) or a mapping that does not fit,
            // 69 for a lost connection, 75 for a deadlock, a lock or a timeout, 1 for a row's data.
            CliError::Db { error, .. } => match db::kind_of(error) {
                db::ErrorKind::Refused | db::ErrorKind::Mapping => exit::CONFIG,
                db::ErrorKind::Connection => exit::UNAVAILABLE,
                db::ErrorKind::Contention | db::ErrorKind::Timeout => exit::TEMPFAIL,
                db::ErrorKind::Row => exit::FAILURE,
            },
        }
    }

    fn print(&self) {
        match self {
            CliError::Config(m) | CliError::Unavailable(m) | CliError::Failure(m) if !m.is_empty() => eprintln!("{m}"),
            CliError::Db { error, schema } => {
                eprintln!("{}", db::describe(error));
                if db::kind_of(error) == db::ErrorKind::Refused {
                    eprintln!(
                        "hint: is the router installed in this database (`oppty-router install`), and does this role \
                         have its grants (`oppty-router grants ROLE`)? schema: {schema}"
                    );
                }
            }
            _ => {}
        }
    }

    /// A statement that failed under this config.
    fn db(error: tokio_postgres::Error, cfg: &Config) -> CliError {
        CliError::Db { error, schema: cfg.router.schema.as_str().to_string() }
    }

    /// `install` or `uninstall` failed: the words said, the exit code by the error's kind.
    fn install(e: install::InstallError) -> CliError {
        let m = e.to_string();
        match e.kind() {
            db::ErrorKind::Refused | db::ErrorKind::Mapping => CliError::Config(m),
            db::ErrorKind::Connection => CliError::Unavailable(m),
            _ => CliError::Failure(m),
        }
    }

    /// A connection that failed: 78 when the server refuses us for a reason a retry will not fix,
    /// 69 when it cannot be reached.
    fn connect(e: db::DbError) -> CliError {
        match e.kind() {
            db::ErrorKind::Refused => CliError::Config(e.to_string()),
            _ => CliError::Unavailable(e.to_string()),
        }
    }
}

/// The config named on the command line, with `--database-url` in place of its `database.url`.
fn load_config(cli: &Cli) -> Result<Config, CliError> {
    let mut cfg = Config::load(&cli.config).map_err(|e| CliError::Config(e.to_string()))?;
    if let Some(url) = cli.database_url.as_deref() {
        if let Err(e) = db::parse_url(url) {
            let e = e.to_string();
            return Err(CliError::Config(format!("--database-url: {}", e.trim_start_matches("database.url: "))));
        }
        cfg.database.url = url.to_string();
        cfg.database.password_file = None;
    }
    Ok(cfg)
}

/// The config and a connection to the database it names, for the one-shot commands.
async fn connect(cli: &Cli, label: &str) -> Result<(Config, tokio_postgres::Client), CliError> {
    let cfg = load_config(cli)?;
    let client = db::connect(&cfg.database, label).await.map_err(CliError::connect)?;
    Ok((cfg, client))
}

/// The longest `--since` reaches back: a hundred years.
const SINCE_MAX_DAYS: u64 = 36_500;

/// A `--since` value: a duration (`2h`, `7d`), at most a hundred years.
fn since_arg(text: &str) -> Result<humantime::Duration, String> {
    let d: humantime::Duration =
        text.parse().map_err(|e| format!("`{text}` is not a duration ({e}); write e.g. 2h, 7d"))?;
    if std::time::Duration::from(d) > std::time::Duration::from_secs(SINCE_MAX_DAYS * 86_400) {
        return Err(format!("`{text}` reaches back too far; use at most {SINCE_MAX_DAYS}d (a hundred years)"));
    }
    Ok(d)
}

/// A `--since` duration as the moment it reaches back to (range-checked by [`since_arg`]).
fn since(d: Option<humantime::Duration>) -> Option<chrono::DateTime<chrono::Utc>> {
    d.and_then(|d| chrono::Duration::from_std(d.into()).ok()).and_then(|d| chrono::Utc::now().checked_sub_signed(d))
}

fn main() {
    let cli = Cli::parse();
    let code = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("oppty-router").build() {
        Ok(rt) => {
            let done = rt.block_on(run(cli));
            // A reload compiling on a blocking thread never holds up the exit.
            rt.shutdown_timeout(std::time::Duration::from_millis(200));
            match done {
                Ok(()) => exit::OK,
                Err(e) => {
                    e.print();
                    e.exit_code()
                }
            }
        }
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            exit::FAILURE
        }
    };
    std::process::exit(code);
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Demo { keep, seconds, rate, backlog, rules, seed } => {
            init_tracing(LogFormat::Text, "warn");
            let options = demo::DemoOptions {
                seconds: *seconds,
                rate: *rate,
                backlog: *backlog,
                keep: *keep,
                rules_dir: rules.clone(),
                seed: *seed,
            };
            demo::run(options).await.map_err(|e| CliError::Failure(format!("demo failed: {e:#}")))
        }
        Command::Check { offline, rules } => cmd_check(&cli, *offline, rules.clone()).await,
        Command::Install { dry_run: true, .. } => {
            say_raw!("{}", install::dry_run_sql(&load_config(&cli)?));
            Ok(())
        }
        Command::Install { no_backfill, .. } => cmd_install(&cli, !no_backfill).await,
        Command::Uninstall { dry_run } => cmd_uninstall(&cli, *dry_run).await,
        Command::Grants { role, revoke } => cmd_grants(&cli, role, *revoke).await,
        Command::Backfill { since: s, dry_run } => cmd_backfill(&cli, since(*s), *dry_run).await,
        Command::Requeue { unassigned, dead_letter, since: s, ids } => {
            let ids = (!ids.is_empty()).then_some(ids.as_slice());
            cmd_requeue(&cli, *unassigned, *dead_letter, since(*s), ids).await
        }
        Command::Schema => {
            say_raw!("{}", oppty_router::rules::json_schema());
            Ok(())
        }
        Command::Status { json } => cmd_status(&cli, *json).await,
        Command::Unpause { member, by } => cmd_unpause(&cli, member, by.clone()).await,
        Command::Explain { opportunity_id, json } => cmd_explain(&cli, opportunity_id, *json).await,
        Command::Simulate { rules, in_force, since: s, opportunities, json, html, seed } => {
            let replay = Replay {
                window: *s,
                ids: opportunities.clone(),
                json: *json,
                html: html.clone(),
                seed: *seed,
                in_force: *in_force,
            };
            cmd_simulate(&cli, rules.clone(), replay).await
        }
        Command::Report { since: s, json, html } => {
            let replay = Replay { window: *s, ids: None, json: *json, html: html.clone(), seed: 1, in_force: false };
            cmd_report(&cli, replay).await
        }
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "oppty-router", &mut std::io::stdout());
            Ok(())
        }
        Command::Manpage { dir } => match dir {
            Some(dir) => clap_mangen::generate_to(Cli::command(), dir),
            None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()),
        }
        .map_err(|e| CliError::Failure(format!("cannot write the man page: {e}"))),
        Command::Run => {
            let cfg = Arc::new(load_config(&cli)?);
            init_tracing(cfg.log_format, &cfg.log_level);
            run_daemon(cfg).await
        }
    }
}

async fn cmd_check(cli: &Cli, offline: bool, rules: Option<PathBuf>) -> Result<(), CliError> {
    let mut cfg = load_config(cli)?;
    if let Some(r) = rules {
        cfg.router.rules_dir = r;
    }
    init_tracing(LogFormat::Text, "warn");
    let report = check::check(&cfg, offline).await;
    for l in &report.lines {
        say!("{l}");
    }
    match report.exit_code() {
        exit::OK => Ok(()),
        exit::UNAVAILABLE => Err(CliError::Unavailable(String::new())),
        _ => Err(CliError::Config(String::new())),
    }
}

async fn cmd_install(cli: &Cli, backfill: bool) -> Result<(), CliError> {
    let cfg = load_config(cli)?;
    init_tracing(cfg.log_format, &cfg.log_level);
    let mut client = db::connect(&cfg.database, " install").await.map_err(CliError::connect)?;
    if let Err(e) = oppty_router::crm::prepare(&client, &cfg).await {
        return Err(CliError::Config(format!("{}: {e}", cfg.path.display())));
    }
    let r = install::install_with(&mut client, &cfg, backfill).await.map_err(CliError::install)?;
    if r.applied.is_empty() {
        say!("schema {} is up to date", cfg.router.schema.as_str());
    }
    for a in r.applied {
        say!("applied {a}");
    }
    for t in r.triggers {
        say!("trigger {t}");
    }
    if backfill {
        say!("queued {} open, unowned opportunities already in the CRM", r.backfilled);
    }
    Ok(())
}

async fn cmd_uninstall(cli: &Cli, dry_run: bool) -> Result<(), CliError> {
    let cfg = load_config(cli)?;
    init_tracing(cfg.log_format, &cfg.log_level);
    let mut client = db::connect(&cfg.database, " install").await.map_err(CliError::connect)?;
    if dry_run {
        say_raw!("{}", install::uninstall_sql(&mut client, &cfg).await.map_err(CliError::install)?);
    } else {
        install::uninstall(&mut client, &cfg).await.map_err(CliError::install)?;
        say!("uninstalled: the capture triggers and schema {} are gone", cfg.router.schema.as_str());
        say!(
            "the daemon's role still holds its privileges on the CRM's tables: `oppty-router grants --revoke ROLE` \
             prints the REVOKE statements"
        );
    }
    Ok(())
}

async fn cmd_grants(cli: &Cli, role: &str, revoke: bool) -> Result<(), CliError> {
    let (cfg, mut client) = connect(cli, " grants").await?;
    let script = if revoke {
        grants::revoke(&mut client, &cfg, role).await
    } else {
        grants::grants(&mut client, &cfg, role).await
    };
    match script {
        Ok(script) => {
            say_raw!("{script}");
            Ok(())
        }
        Err(grants::GrantsError::Sql(e)) => Err(CliError::db(e, &cfg)),
        Err(e) => Err(CliError::Config(format!("{}: {e}", cfg.path.display()))),
    }
}

async fn cmd_backfill(cli: &Cli, since: Option<chrono::DateTime<chrono::Utc>>, dry_run: bool) -> Result<(), CliError> {
    let (cfg, client) = connect(cli, " backfill").await?;
    let n = backfill::backfill(&client, &cfg, since, dry_run).await.map_err(|e| match e {
        backfill::BackfillError::Sql(e) => CliError::db(e, &cfg),
        e => CliError::Config(format!("{}: {e}", cfg.path.display())),
    })?;
    if dry_run {
        say!("{n} open, unowned opportunities would be queued (dry run: nothing queued)");
    } else {
        say!("queued {n} open, unowned opportunities for routing");
    }
    Ok(())
}

async fn cmd_requeue(
    cli: &Cli,
    unassigned: bool,
    dead_letter: bool,
    since: Option<chrono::DateTime<chrono::Utc>>,
    ids: Option<&[String]>,
) -> Result<(), CliError> {
    let (cfg, client) = connect(cli, " requeue").await?;
    // The ids as the router stores them (blanks trimmed, a uuid in its canonical form).
    let ids = match ids {
        Some(given) => {
            Some(oppty_router::crm::stored_ids(&client, &cfg, given).await.map_err(|e| CliError::db(e, &cfg))?)
        }
        None => None,
    };
    let mut matched = std::collections::HashSet::new();
    if unassigned {
        let done =
            admin::requeue_unassigned(&client, &cfg, since, ids.as_deref()).await.map_err(|e| CliError::db(e, &cfg))?;
        say!("queued {} unassigned opportunities again", done.len());
        matched.extend(done);
    }
    if dead_letter {
        let done = admin::requeue_dead_letters(&client, &cfg, since, ids.as_deref())
            .await
            .map_err(|e| CliError::db(e, &cfg))?;
        say!("moved {} dead-lettered events back into the queue", done.len());
        matched.extend(done);
    }
    let Some(ids) = ids else { return Ok(()) };
    let what = match (unassigned, dead_letter) {
        (true, true) => "neither unassigned nor dead-lettered",
        (true, false) => "not unassigned (owned, held, or already queued)",
        _ => "not dead-lettered",
    };
    let missed: Vec<&String> = ids.iter().filter(|i| !matched.contains(*i)).collect();
    for id in &missed {
        eprintln!("--id {id}: matched nothing: {what} (`oppty-router explain {id}` says what happened to it)");
    }
    if !ids.is_empty() && missed.len() == ids.len() {
        return Err(CliError::Failure("no --id matched anything to requeue".into()));
    }
    Ok(())
}

async fn cmd_status(cli: &Cli, json: bool) -> Result<(), CliError> {
    let (cfg, client) = connect(cli, " status").await?;
    let report = status::report(&client, &cfg).await.map_err(|e| CliError::db(e, &cfg))?;
    if json {
        say!("{}", serde_json::to_string_pretty(&report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")));
    } else {
        say_raw!("{}", report.text());
    }
    if report.healthy {
        Ok(())
    } else {
        Err(CliError::Failure(String::new()))
    }
}

async fn cmd_unpause(cli: &Cli, member: &str, by: Option<String>) -> Result<(), CliError> {
    let (cfg, client) = connect(cli, " unpause").await?;
    let by = by.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "admin".into());
    if admin::unpause(&client, &cfg, member, &by).await.map_err(|e| CliError::db(e, &cfg))? {
        say!("{member}: pause lifted by {by}; the daemon gives them work again from its next sweep");
        Ok(())
    } else {
        Err(CliError::Failure(format!("{member}: not paused for lapses (see `oppty-router status`)")))
    }
}

async fn cmd_explain(cli: &Cli, opportunity_id: &str, json: bool) -> Result<(), CliError> {
    let (cfg, client) = connect(cli, " explain").await?;
    let found = if json {
        let (doc, found) =
            explain::explain_json(&client, &cfg, opportunity_id).await.map_err(|e| CliError::db(e, &cfg))?;
        say!("{}", serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")));
        found
    } else {
        let (text, found) = explain::explain(&client, &cfg, opportunity_id).await.map_err(|e| CliError::db(e, &cfg))?;
        say_raw!("{text}");
        found
    };
    if found {
        Ok(())
    } else {
        Err(CliError::Failure(String::new()))
    }
}

/// What `simulate` and `report` replay, and how they print.
struct Replay {
    window: humantime::Duration,
    ids: Option<PathBuf>,
    json: bool,
    html: Option<PathBuf>,
    seed: u64,
    in_force: bool,
}

impl Replay {
    /// The library's options: the window's start, the ids of `--opportunities FILE`.
    fn options(&self) -> Result<oppty_router::simulate::Options, CliError> {
        let ids = match &self.ids {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| CliError::Failure(format!("--opportunities {}: {e}", path.display())))?;
                Some(oppty_router::simulate::ids_from(&text))
            }
            None => None,
        };
        let window = match &self.ids {
            Some(path) => format!("the opportunities of {}", path.display()),
            None => format!("first decided in the last {}", self.window),
        };
        Ok(oppty_router::simulate::Options {
            since: since(Some(self.window)).unwrap_or_else(chrono::Utc::now),
            ids,
            seed: self.seed,
            window,
            in_force: self.in_force,
        })
    }

    /// The report on stdout (text or JSON), and as a page when `--html` says where.
    fn print(&self, report: &oppty_router::report::Report) -> Result<(), CliError> {
        if self.json {
            say!("{}", serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")));
        } else {
            say_raw!("{}", report.text());
        }
        if let Some(path) = &self.html {
            write_whole(path, &oppty_router::report::html::render(report))
                .map_err(|e| CliError::Failure(format!("--html {}: {e}", path.display())))?;
            eprintln!("wrote {}", path.display());
        }
        Ok(())
    }
}

/// A file written whole or not at all: a temporary file beside it, renamed over it.
fn write_whole(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// A replay's failure: the rules or mapping (78), or the database.
fn replay_error(e: oppty_router::simulate::SimulateError, cfg: &Config) -> CliError {
    match e {
        oppty_router::simulate::SimulateError::Sql(e) => CliError::db(e, cfg),
        e => CliError::Config(e.to_string()),
    }
}

async fn cmd_simulate(cli: &Cli, rules: Option<PathBuf>, replay: Replay) -> Result<(), CliError> {
    let (mut cfg, mut client) = connect(cli, " simulate").await?;
    if let Some(rules) = rules {
        cfg.router.rules_dir = rules;
    }
    let opts = replay.options()?;
    let (engine, sql) = oppty_router::simulate::rules_as_routed(&client, &cfg, replay.in_force)
        .await
        .map_err(|e| replay_error(e, &cfg))?;
    let report = oppty_router::simulate::simulate(&mut client, &cfg, &sql, &engine, &opts)
        .await
        .map_err(|e| replay_error(e, &cfg))?;
    replay.print(&report)
}

async fn cmd_report(cli: &Cli, replay: Replay) -> Result<(), CliError> {
    let (cfg, mut client) = connect(cli, " report").await?;
    let opts = replay.options()?;
    let (engine, sql) =
        oppty_router::simulate::rules_as_routed(&client, &cfg, true).await.map_err(|e| replay_error(e, &cfg))?;
    let report = oppty_router::simulate::report(&mut client, &cfg, &sql, &engine, &opts)
        .await
        .map_err(|e| replay_error(e, &cfg))?;
    replay.print(&report)
}

/// The daemon until SIGTERM (0), a config or mapping a person must fix (78), or a last batch
/// that outlived `router.shutdown_timeout` (1).
async fn run_daemon(cfg: Arc<Config>) -> Result<(), CliError> {
    let engine = load_rules(&cfg).map_err(|e| CliError::Config(e.to_string()))?;
    tracing::info!(config = %cfg.path.display(), database = %cfg.redacted_url(), rules = %engine.version, "starting");
    let rules = Arc::new(ArcSwap::from_pointee(engine));
    let directory = Arc::new(ArcSwap::from_pointee(oppty_router::directory_flags(&cfg)));
    let reloader = Arc::new(oppty_router::reload::Reloader::new(cfg.clone(), rules.clone(), directory.clone()));
    let shutdown = CancellationToken::new();
    let watcher = spawn_watcher(&cfg, reloader.clone(), shutdown.clone());
    let signals = spawn_signals(reloader.clone(), shutdown.clone());
    let health = serve_telemetry(&cfg, &shutdown).await?;
    let run = daemon::run(
        cfg.clone(),
        rules,
        shutdown.clone(),
        daemon::RunOptions { notify_systemd: true, directory, reloader: Some(reloader), health, ..Default::default() },
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
            return Err(CliError::Failure(String::new()));
        }
    };
    signals.abort();
    watcher.abort();
    result.map_err(|e| {
        match &e {
            daemon::DaemonError::Mapping(_) => {
                tracing::error!(error = %e, "stopping: the mapping does not match the database")
            }
            daemon::DaemonError::Refused(_) => {
                tracing::error!(error = %e, "stopping: the database refuses the daemon, and retrying will not help")
            }
        }
        CliError::Config(format!("{}: {e}", cfg.path.display()))
    })
}

/// `/metrics`, `/livez` and `/readyz`, when `[metrics]` says where. A port taken is 69: a
/// restart may find it free.
async fn serve_telemetry(
    cfg: &Config,
    shutdown: &CancellationToken,
) -> Result<Option<Arc<oppty_router::telemetry::Health>>, CliError> {
    let Some(m) = &cfg.metrics else { return Ok(None) };
    let health = Arc::new(oppty_router::telemetry::Health::new(m.ready_max_lag));
    let bound = oppty_router::telemetry::serve(m.listen, health.clone(), shutdown.clone())
        .await
        .map_err(|e| CliError::Unavailable(format!("{}: {e}", cfg.path.display())))?;
    tracing::info!(listen = %bound, "serving /metrics, /livez and /readyz");
    Ok(Some(health))
}

/// The rules directory's watcher, on a task of its own.
fn spawn_watcher(
    cfg: &Config,
    reloader: Arc<oppty_router::reload::Reloader>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (dir, debounce) = (cfg.router.rules_dir.clone(), cfg.router.reload_debounce);
    tokio::spawn(async move {
        if let Err(e) = oppty_router::reload::watch(reloader, dir.clone(), debounce, shutdown).await {
            tracing::error!(dir = %dir.display(), error = %e, "cannot watch the rules directory; edits load on SIGHUP only");
        }
    })
}

/// Signals: SIGTERM/SIGINT stop (finish the batch, commit, exit 0); SIGHUP reloads the rules.
fn spawn_signals(
    reloader: Arc<oppty_router::reload::Reloader>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
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
                // Not awaited here, so a SIGTERM is heard at once.
                _ = hup.recv() => { tokio::spawn(reload_on_sighup(reloader.clone())); }
            }
        }
        oppty_router::systemd::stopping();
        shutdown.cancel();
    })
}

/// A SIGHUP's reload, told to systemd; logged by the reloader, with what changed or every problem.
async fn reload_on_sighup(reloader: Arc<oppty_router::reload::Reloader>) {
    oppty_router::systemd::reloading();
    let r = reloader.reload_in_background(oppty_router::reload::SIGHUP).await;
    let version = reloader.status.load().version.clone();
    oppty_router::systemd::reloaded(&match r {
        Ok(_) => format!("routing with rules {version}"),
        Err(_) => format!("routing with rules {version}; the last edit was refused (see the log)"),
    });
}
